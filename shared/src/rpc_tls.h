/*
 * rpc_tls.h - the security pieces the RPC server and client share
 * (internal): address rewriting, NNG TLS configurations, role tokens and
 * the process's client defaults.
 *
 * Threading: the client defaults are written once at start-up
 * (orch_rpc_client_defaults) and read afterwards; everything else is pure
 * or works on caller-owned objects.
 */
#ifndef ORCH_RPC_TLS_H
#define ORCH_RPC_TLS_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "orch/rpc.h"

/* The address to hand NNG: `url` with tcp:// rewritten to tls+tcp:// when
 * `mode` is not OFF. Malloc'ed into *out (caller frees). ORCH_EINVAL for a
 * tls+tcp:// address without TLS. */
orch_err orch__tls_url(const char *url, orch_tls_mode mode, char **out) ORCH_NODISCARD;

/* A new NNG TLS configuration for a listener (`server`) or a dialer to
 * `host` (its certificate must name it; NULL = any name the CA signed).
 * Caller frees with nng_tls_config_free. Logs and returns ORCH_EINVAL when
 * a file does not load. */
orch_err orch__tls_config(const orch_rpc_tls *tls, bool server, const char *host,
                          nng_tls_config **out) ORCH_NODISCARD;

/* A parsed role_tokens value. */
typedef struct orch__role_tokens {
    size_t n;
    char **token;
    unsigned *role;
} orch__role_tokens;

/* Parses `spec` into *out (caller frees with orch__role_tokens_free). */
orch_err orch__role_tokens_parse(const char *spec, orch__role_tokens **out, char *why,
                                 size_t n) ORCH_NODISCARD;
void orch__role_tokens_free(orch__role_tokens *t); /* NULL ok */
/* The role of `token`, 0 when it is not listed. Compares in constant time
 * per listed token. */
unsigned orch__role_of(const orch__role_tokens *t, const char *token);

/* The server's role tokens from its options: *out stays NULL when there
 * are none (no authorization); ORCH_EINVAL, logged, for a bad list or one
 * given beside `auth_token`. Caller frees with orch__role_tokens_free. */
orch_err orch__role_tokens_load(const char *auth_token, const char *role_tokens,
                                orch__role_tokens **out) ORCH_NODISCARD;
/* Index of `role`'s lowest bit among the labels "none", "operator", ...
 * (orch_rpc_role_name order, 0 = "none"). */
size_t orch__role_label(unsigned role);
/* The roles of every method of the matched service `svc`, in descriptor
 * order, into out[0..desc->n_methods). */
void orch__method_roles(const orch_rpc_service *svc, unsigned *out);
/* Puts the TLS configuration of `tls` (NULL or OFF: none) on listener `l`.
 * NNG error code. */
int orch__listener_tls(nng_listener l, const orch_rpc_tls *tls);

/* The process's client defaults (borrowed; NULL when unset). */
const orch_rpc_tls *orch__client_default_tls(void);
const char *orch__client_default_token(void);

#endif
