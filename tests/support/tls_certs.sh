#!/usr/bin/env bash
# tls_certs.sh DIR — makes throw-away certificates for the TLS tests and the
# benchmark: nothing here is secret or kept; every run makes new keys.
#
#   DIR/ca.pem                 the deployment CA (its key: DIR/ca.key)
#   DIR/server.{pem,key}       a service certificate (CN=orch-service, SAN
#                              127.0.0.1 and localhost), signed by ca
#   DIR/ROLE.{pem,key}         a client certificate per role (CN=ROLE):
#                              operator stage launcher lease guard
#   DIR/other-ca.pem           an unrelated CA, and certificates it signed:
#   DIR/other-server.{pem,key} DIR/other-client.{pem,key}
#
# EC P-256 keys, unencrypted PEM, valid 2 days. docs/operations/deploy.md
# shows the same steps for a real deployment.
set -euo pipefail
dir="${1:?usage: tls_certs.sh DIR}"
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name subject
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 2 -out "$1.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
}

leaf() { # name cn ca server|client
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
    local ext="$1.ext"
    if [ "$4" = server ]; then
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:127.0.0.1,DNS:localhost,IP:127.0.0.1\n' >"$ext"
    else
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' >"$ext"
    fi
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 2 \
        -extfile "$ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$ext"
}

ca ca "orch test CA"
leaf server orch-service ca server
for role in operator stage launcher lease guard; do
    leaf "$role" "$role" ca client
done
ca other-ca "unrelated CA"
leaf other-server orch-service other-ca server
leaf other-client operator other-ca client
chmod 600 ./*.key
