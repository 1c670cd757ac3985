#!/usr/bin/env bash
# pg_access.sh — system test of the PostgreSQL access that
# docs/operations/database.md documents: a non-superuser role that owns its
# database, reached (1) over the Unix socket with peer authentication (an
# ident map from the service's OS user to the role), (2) over TCP with
# scram-sha-256 and a password file (PGPASSFILE), refused without it, and
# (3) through pgbouncer in session mode, where the migration advisory lock and
# the prepared statements hold: lease-service migrates and serves, and an
# Acquire/Release round trip through orchctl succeeds.
#
# Usage: pg_access.sh [BUILD_DIR]     (default: build/ of this source tree)
#
# Needs PostgreSQL 15 (tests/support/pgctl.sh) and pgbouncer; as root, the
# services run as the cluster's owner (postgres), as peer authentication
# needs a user that is not root. Exit status: 0 pass, 1 fail, 77 skip (no
# PostgreSQL or no pgbouncer).
# ORCH_TEST_LOG_DIR: when set, the service, pgbouncer and database logs are
# copied there.

set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(realpath -m -- "${1:-$SRC_DIR/build}")"
readonly SRC_DIR BUILD
readonly PGCTL="$SRC_DIR/tests/support/pgctl.sh"
readonly PG_BINDIR="${ORCH_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
readonly PG_OWNER="${ORCH_PG_USER:-postgres}"
readonly ROLE=orch_app
readonly PASSWORD="pw-$$-$RANDOM"

FAILED=0
TMP="" PGDIR="" BOUNCER_PID="" SVC_PID=""

say() { printf '%s %s\n' "$(date +%T)" "$*"; }
pass() { say "PASS: $*"; }
fail() {
  say "FAIL: $*"
  FAILED=1
}
skip() {
  echo "SKIP: $*"
  exit 77
}
is_root() { [[ "$(id -u)" -eq 0 ]]; }
# as_owner CMD...: runs CMD as the cluster's owner (root cannot do peer
# authentication for another role, pgbouncer refuses to run as root).
as_owner() {
  if is_root; then
    (cd / && runuser -u "$PG_OWNER" -- "$@")
  else
    "$@"
  fi
}

cleanup() {
  set +e
  [[ -n "$TMP" ]] && pkill -KILL -f "^$TMP/(lease-service|orchctl)" 2>/dev/null
  [[ -n "$TMP" ]] && pkill -TERM -f "^$BOUNCER $TMP/" 2>/dev/null
  [[ -n "$BOUNCER_PID" ]] && wait "$BOUNCER_PID" 2>/dev/null
  if [[ -n "${ORCH_TEST_LOG_DIR:-}" && -n "$TMP" ]]; then
    mkdir -p "$ORCH_TEST_LOG_DIR/pg_access"
    cp "$TMP"/*.log "$ORCH_TEST_LOG_DIR/pg_access/" 2>/dev/null || true
    [[ -n "$PGDIR" ]] && cp "$PGDIR/postgres.log" "$ORCH_TEST_LOG_DIR/pg_access/" 2>/dev/null
  fi
  [[ -n "$PGDIR" ]] && bash "$PGCTL" destroy "$PGDIR" >/dev/null 2>&1
  [[ -n "$TMP" ]] && rm -rf -- "$TMP"
  return 0
}
trap cleanup EXIT

[[ -x "$PG_BINDIR/postgres" ]] || skip "PostgreSQL 15 is not installed ($PG_BINDIR)"
BOUNCER="$(command -v pgbouncer || true)"
[[ -n "$BOUNCER" ]] || BOUNCER=/usr/sbin/pgbouncer
[[ -x "$BOUNCER" ]] || skip "pgbouncer is not installed"
for b in services/lease/lease-service tools/orchctl/orchctl; do
  [[ -x "$BUILD/$b" ]] || {
    echo "FAIL: $BUILD/$b not found (build first, or pass the build folder as \$1)"
    exit 1
  }
done

# The ports of pgbouncer and lease-service (tests/support/free_ports.py).
read -r BPORT LEASE_RPC_PORT LEASE_HTTP_PORT <<<"$(python3 "$SRC_DIR/tests/support/free_ports.py" 3)"

# The programs are copied where the cluster's owner may run them (the build
# folder may be private to root); they link only system libraries.
TMP="$(mktemp -d /tmp/orch-pga-XXXXXX)"
chmod 0755 "$TMP"
install -m 0755 "$BUILD/services/lease/lease-service" "$BUILD/tools/orchctl/orchctl" "$TMP/"
is_root && chown "$PG_OWNER" "$TMP"
OS_USER="$(as_owner id -un)"

# ---- a cluster with the documented roles and authentication ---------------
PGDIR="$TMP/pg"
as_owner mkdir "$PGDIR"
bash "$PGCTL" init "$PGDIR" >/dev/null
PGPORT="$(<"$PGDIR/port")"
# The documented pg_hba.conf lines (docs/operations/database.md), with the
# test's own map line; the superuser keeps trust on the socket for set-up.
as_owner tee "$PGDIR/data/pg_hba.conf" >/dev/null <<EOF
local   all       postgres                trust
local   all       $ROLE                   peer map=orch
host    all       $ROLE     127.0.0.1/32  scram-sha-256
EOF
as_owner tee "$PGDIR/data/pg_ident.conf" >/dev/null <<EOF
# MAPNAME  SYSTEM-USERNAME  PG-USERNAME
orch       $OS_USER         $ROLE
EOF
bash "$PGCTL" start "$PGDIR" >/dev/null
PGPORT="$(<"$PGDIR/port")"
psql_super() {
  as_owner "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PGPORT" -U postgres "$@"
}
# The role and database as docs/operations/database.md creates them.
psql_super -d postgres -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" \
  -c "CREATE DATABASE $ROLE OWNER $ROLE"
psql_super -d postgres -tAc "SELECT rolsuper FROM pg_roles WHERE rolname = '$ROLE'" |
  grep -qx f || fail "$ROLE must not be a superuser"

# migrate URL [ENV...]: runs lease-service --migrate-only as the cluster's
# owner against URL; sets RC and leaves the log in $TMP/migrate.log.
RC=0
migrate() {
  local url="$1"
  shift
  RC=0
  as_owner env -i PATH=/usr/bin:/bin ORCH_RUNTIME=test ORCH_HOST_ID=pga \
    ORCH_BOOT_ID_PATH="$TMP/boot_id" ORCH_DATABASE_URL="$url" ORCH_DB_CONNECT_TIMEOUT_S=2 \
    ORCH_DB_STARTUP_WAIT_S=3 "$@" "$TMP/lease-service" --migrate-only >"$TMP/migrate.log" 2>&1 ||
    RC=$?
}
as_owner tee "$TMP/boot_id" >/dev/null <<<"pga-boot"

# (1) peer authentication over the Unix socket.
migrate "postgresql:///$ROLE?host=$PGDIR&port=$PGPORT&user=$ROLE"
if ((RC == 0)); then
  pass "peer authentication over the socket: migrations applied as $ROLE"
else
  fail "peer authentication over the socket: exit $RC: $(tail -3 "$TMP/migrate.log")"
fi
owner="$(psql_super -d "$ROLE" -tAc "SELECT tableowner FROM pg_tables WHERE tablename = 'transition_lease'")"
[[ "$owner" == "$ROLE" ]] && pass "the schema belongs to $ROLE" ||
  fail "transition_lease belongs to '$owner', not $ROLE"

# (2) scram-sha-256 over TCP: refused without a password, served with PGPASSFILE.
TCP_URL="postgresql://$ROLE@127.0.0.1:$PGPORT/$ROLE"
migrate "$TCP_URL"
if ((RC == 1)) && grep -q "password" "$TMP/migrate.log"; then
  pass "scram over TCP without a password: refused (exit 1, the log names the password)"
else
  fail "scram over TCP without a password: exit $RC: $(tail -3 "$TMP/migrate.log")"
fi
as_owner tee "$TMP/pgpass" >/dev/null <<EOF
127.0.0.1:$PGPORT:$ROLE:$ROLE:$PASSWORD
EOF
as_owner chmod 0600 "$TMP/pgpass"
migrate "$TCP_URL" PGPASSFILE="$TMP/pgpass"
((RC == 0)) && pass "scram over TCP with PGPASSFILE: connected and migrated" ||
  fail "scram over TCP with PGPASSFILE: exit $RC: $(tail -3 "$TMP/migrate.log")"

# (3) pgbouncer in session mode between lease-service and PostgreSQL.
as_owner tee "$TMP/userlist.txt" >/dev/null <<<"\"$ROLE\" \"$PASSWORD\""
as_owner tee "$TMP/pgbouncer.ini" >/dev/null <<EOF
[databases]
$ROLE = host=127.0.0.1 port=$PGPORT dbname=$ROLE
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $TMP/userlist.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = $TMP/pgbouncer.log
pidfile = $TMP/pgbouncer.pid
EOF
as_owner "$BOUNCER" "$TMP/pgbouncer.ini" >/dev/null 2>&1 &
BOUNCER_PID=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null && break
  sleep 0.1
done
as_owner tee -a "$TMP/pgpass" >/dev/null <<<"127.0.0.1:$BPORT:$ROLE:$ROLE:$PASSWORD"
B_URL="postgresql://$ROLE@127.0.0.1:$BPORT/$ROLE"
migrate "$B_URL" PGPASSFILE="$TMP/pgpass"
((RC == 0)) && pass "through pgbouncer (session mode): migrations ran under the advisory lock" ||
  fail "through pgbouncer: --migrate-only exit $RC: $(tail -3 "$TMP/migrate.log")"

RPC_URL="tcp://127.0.0.1:$LEASE_RPC_PORT"
as_owner env -i PATH=/usr/bin:/bin ORCH_RUNTIME=test ORCH_HOST_ID=pga \
  ORCH_BOOT_ID_PATH="$TMP/boot_id" ORCH_DATABASE_URL="$B_URL" PGPASSFILE="$TMP/pgpass" \
  ORCH_LEASE_RPC_URL="$RPC_URL" ORCH_LEASE_HTTP_ADDR="127.0.0.1:$LEASE_HTTP_PORT" \
  ORCH_DB_STARTUP_WAIT_S=10 ORCH_SHUTDOWN_GRACE_S=5 \
  "$TMP/lease-service" >"$TMP/lease-service.log" 2>&1 &
SVC_PID=$!
ctl() {
  env -i PATH=/usr/bin:/bin ORCH_HOST_ID=pga ORCH_BOOT_ID_PATH="$TMP/boot_id" \
    ORCH_LEASE_RPC_URL="$RPC_URL" "$TMP/orchctl" --timeout 5000 "$@"
}
up=0
for _ in $(seq 100); do
  if ctl health lease >/dev/null 2>&1; then
    up=1
    break
  fi
  sleep 0.1
done
((up == 1)) && pass "lease-service serves through pgbouncer" ||
  fail "lease-service did not become healthy through pgbouncer: $(tail -3 "$TMP/lease-service.log")"
sleep 30 &
OWNER=$!
# Several rounds, so that the prepared statements are used again on the
# same session after they were first prepared.
ok=1
for i in 1 2 3; do
  out="$(ctl --json lease acquire "PGA-$i" --owner-pid "$OWNER" --actor pga 2>&1)" || ok=0
  epoch="$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("epoch", ""))' 2>/dev/null || true)"
  [[ "$out" == *GRANTED* && -n "$epoch" ]] || ok=0
  ctl lease release "PGA-$i" "$epoch" >/dev/null 2>&1 || ok=0
done
kill "$OWNER" 2>/dev/null
((ok == 1)) && pass "Acquire and Release through pgbouncer: granted and released, 3 rounds" ||
  fail "Acquire/Release through pgbouncer: $out"
events="$(psql_super -d "$ROLE" -tAc "SELECT count(*) FROM lease_events WHERE work_item LIKE 'PGA-%'")"
[[ "$events" -ge 6 ]] && pass "the lease events are in the database ($events)" ||
  fail "expected at least 6 lease events, found '$events'"
# SIGTERM to the service itself (SVC_PID is the shell that runs it as the
# cluster's owner).
pkill -TERM -f "^$TMP/lease-service" || true
wait "$SVC_PID" 2>/dev/null && pass "lease-service stopped cleanly" ||
  fail "lease-service did not exit 0 on SIGTERM"
SVC_PID=""

if ((FAILED)); then
  echo "pg_access: FAILED"
  exit 1
fi
echo "pg_access: all checks passed"
