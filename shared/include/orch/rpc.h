/*
 * rpc.h - protobuf over NNG request/reply.
 *
 * Wire: each request is one NNG message holding an orch.v1.RequestEnvelope,
 * each reply one NNG message holding an orch.v1.ReplyEnvelope (docs/rpc.md).
 *
 * Server: one REP socket, `concurrency` contexts, each with its own aio, so
 * that many requests are outstanding at once. The receive callback decodes
 * and checks the request (envelope, caller, method, request id, deadline,
 * payload) and answers every refusal and duplicate itself; a request that
 * passes is handed, decoded, to one of the server's own worker threads,
 * where its handler may block (libpq, libcurl) and which sends the reply
 * without waiting for NNG to write it. Services declared `nonblocking` are
 * the exception: their handlers run in the receive callback itself. The
 * method is looked up in the registered protobuf-c service descriptors
 * before the payload is decoded. Requests are deduplicated by request id:
 * a re-sent request is answered with the first run's reply (or joins it
 * while it runs) and is never handled twice.
 *
 * Client: one REQ socket with time-based resend disabled, a pool of
 * contexts so that one client serves many threads, a deadline on every call.
 * A client is thread-safe.
 *
 * Security (docs/rpc.md, "Transport security and authorization"): with TLS
 * on, listeners and dialers use NNG's tls+tcp transport (a tcp:// address is
 * rewritten to tls+tcp://). A caller's identity is its role, proved by a
 * per-role token (ORCH_RPC_TOKENS on the server); every method declares the
 * roles that may call it, and a server that knows its callers' roles refuses
 * any other with PERMISSION_DENIED before the handler runs.
 */
#ifndef ORCH_RPC_H
#define ORCH_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"
#include "orch/metrics.h"

/* ---- server ------------------------------------------------------------ */

typedef struct orch_rpc_server orch_rpc_server;
typedef struct orch_rpc_call orch_rpc_call;

/* A handler answers one request. `req` is the decoded request (borrowed for
 * the call). It returns ORCH_CODE_OK after orch_rpc_reply(), or an error
 * code, usually through orch_rpc_fail(). It runs on a worker thread (on
 * NNG's callback thread for a nonblocking service). */
typedef orch_code (*orch_rpc_handler)(orch_rpc_call *call, const ProtobufCMessage *req, void *arg);

/* Callers, as the roles a method admits (a bit set). The role of a call is
 * the one its token maps to (orch_rpc_server_opts.role_tokens). */
typedef enum orch_rpc_role {
    ORCH_ROLE_OPERATOR = 1u << 0, /* orchctl, people */
    ORCH_ROLE_STAGE = 1u << 1,    /* stage-service */
    ORCH_ROLE_LAUNCHER = 1u << 2, /* launcher-service */
    ORCH_ROLE_LEASE = 1u << 3,    /* lease-service peers */
    ORCH_ROLE_GUARD = 1u << 4,    /* guard-service */
} orch_rpc_role;
#define ORCH_ROLE_COUNT 5
#define ORCH_ROLE_ANY   ((1u << ORCH_ROLE_COUNT) - 1u)

/* The role's name ("operator"), or "none" for 0 and "unknown" otherwise. */
const char *orch_rpc_role_name(unsigned role);
/* The role named `name` (exactly one bit), or 0 when there is none. */
unsigned orch_rpc_role_parse(const char *name);

/* One entry of a handler table: a method named as in the .proto service
 * block ("Acquire"), its handler, and the roles that may call it (the
 * authorization table: docs/rpc.md repeats it and a test checks the two
 * agree). A NULL handler declares the method deliberately unimplemented:
 * it is answered UNIMPLEMENTED. A service's methods must name their roles
 * (orch_service_add_rpc refuses 0). A long poll (a handler that waits for an
 * event up to the caller's deadline) is left out of
 * orch_rpc_request_duration_seconds, whose quantiles it would own. */
typedef struct orch_rpc_method {
    const char *name;
    orch_rpc_handler handler;
    unsigned roles; /* ORCH_ROLE_* bits */
    bool long_poll;
} orch_rpc_method;

typedef struct orch_rpc_service {
    const ProtobufCServiceDescriptor *desc;
    /* The handler table, in any order, matched to desc by method name
     * (orch_rpc_match); borrowed for the server's life. */
    const orch_rpc_method *methods;
    size_t nmethods;
    void *arg; /* passed to every handler of this service */
    /* The handlers never block (no database, no HTTP, no waiting on a
     * contended lock): they run on NNG's callback thread, without the hand-off
     * to a worker. Everything else must leave this false. */
    bool nonblocking;
} orch_rpc_service;

/* Transport security of a listener or dialer. OFF: plain tcp://. ON: TLS,
 * the dialer verifies the listener's certificate against ca_file (and sends
 * its own certificate when it has one). MUTUAL: the listener also requires
 * and verifies a client certificate from ca_file. */
typedef enum orch_tls_mode { ORCH_TLS_OFF, ORCH_TLS_ON, ORCH_TLS_MUTUAL } orch_tls_mode;

typedef struct orch_rpc_tls {
    orch_tls_mode mode;
    const char *cert_file; /* PEM certificate (chain) of this process */
    const char *key_file;  /* PEM private key, unencrypted */
    const char *ca_file;   /* PEM CA certificate(s) that sign the peers */
} orch_rpc_tls;

/* Parses "off", "on" or "mutual". */
orch_err orch_rpc_tls_mode_parse(const char *text, orch_tls_mode *out) ORCH_NODISCARD;
/* Checks that `tls` is usable (files named and readable for ON/MUTUAL; a
 * server needs cert and key, a MUTUAL client too) and that `url` is
 * tcp:// or, with TLS, tls+tcp://. On a problem writes one line to `why`
 * and returns ORCH_EINVAL. */
orch_err orch_rpc_tls_check(const orch_rpc_tls *tls, bool server, const char *url, char *why,
                            size_t n) ORCH_NODISCARD;

/* Checks a role_tokens value ("role:token,..."): known roles, non-empty
 * tokens, no token given twice. On a problem writes one line to `why`
 * (never a token) and returns ORCH_EINVAL. */
orch_err orch_rpc_role_tokens_check(const char *spec, char *why, size_t n) ORCH_NODISCARD;

typedef struct orch_rpc_server_opts {
    const char *url;             /* "tcp://127.0.0.1:7701" (tls+tcp:// with TLS) */
    size_t max_msg_bytes;        /* NNG_OPT_RECVMAXSZ */
    int concurrency;             /* contexts = requests outstanding at once */
    int workers;                 /* handler threads */
    uint32_t default_timeout_ms; /* budget of a request that sets none */
    size_t dedup_entries;        /* remembered request ids */
    uint32_t dedup_ttl_ms;       /* how long a finished reply is remembered */
    const char *auth_token;      /* required token; NULL or "" = none */
    /* "role:token,role:token": the tokens callers present, each naming the
     * caller's role. Set, a call whose token is not listed is refused
     * UNAUTHENTICATED, and every method admits only its roles. NULL or ""
     * = no roles known: every caller may call every method. Exclusive with
     * auth_token. */
    const char *role_tokens;
    const orch_rpc_tls *tls; /* NULL = plain tcp; borrowed during start */
    orch_metrics *metrics;   /* optional; borrowed */
} orch_rpc_server_opts;

/* Matches svc->methods to svc->desc by name: every method of the descriptor
 * named exactly once, no name the descriptor lacks. On success writes the
 * handler of desc->methods[i] to out[i] (`nout` must be desc->n_methods;
 * `out` NULL = check only) and returns ORCH_OK; otherwise returns ORCH_EINVAL with `why` (n bytes)
 * naming the service and the method at fault, and leaves `out` untouched. */
orch_err orch_rpc_match(const orch_rpc_service *svc, orch_rpc_handler *out, size_t nout, char *why,
                        size_t n) ORCH_NODISCARD;

/* Binds and starts serving `services` (copied array; descriptors and
 * handler tables borrowed for the server's life). A handler table that does
 * not match its descriptor (orch_rpc_match) is logged and refused with
 * ORCH_EINVAL. */
orch_err orch_rpc_server_start(const orch_rpc_server_opts *opts, const orch_rpc_service *services,
                               size_t nservices, orch_rpc_server **out) ORCH_NODISCARD;
/* Stops accepting requests, lets in-flight ones finish (at most grace_ms),
 * joins the workers and closes the socket. Idempotent. */
void orch_rpc_server_stop(orch_rpc_server *srv, uint32_t grace_ms);
void orch_rpc_server_free(orch_rpc_server *srv); /* stops first; NULL ok */
/* The port actually bound (useful with "tcp://127.0.0.1:0"). */
int orch_rpc_server_port(const orch_rpc_server *srv);

/* Inside a handler. */
uint64_t orch_rpc_call_deadline(const orch_rpc_call *call); /* monotonic ms */
const char *orch_rpc_call_request_id(const orch_rpc_call *call);
const char *orch_rpc_call_method(const orch_rpc_call *call);
/* The caller's role (one ORCH_ROLE_* bit), 0 when the server knows none. */
unsigned orch_rpc_call_role(const orch_rpc_call *call);
/* Metadata value for `key` (borrowed for the call) or NULL. */
const char *orch_rpc_call_metadata(const orch_rpc_call *call, const char *key);
/* Packs `msg` as the reply payload; returns ORCH_CODE_OK, or INTERNAL on
 * allocation failure. */
orch_code orch_rpc_reply(orch_rpc_call *call, const ProtobufCMessage *msg);
/* Sets the status message (printf-style) and returns `code`. */
orch_code orch_rpc_fail(orch_rpc_call *call, orch_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- client ------------------------------------------------------------ */

typedef struct orch_rpc_client orch_rpc_client;

typedef struct orch_rpc_client_opts {
    size_t max_msg_bytes;        /* 0 = 1 MiB */
    uint32_t default_timeout_ms; /* 0 = 5000 */
    /* Sent with every call; NULL or "" = the process default
     * (orch_rpc_client_defaults), itself none unless set. */
    const char *auth_token;
    const orch_rpc_tls *tls; /* NULL = the process default; borrowed during open */
} orch_rpc_client_opts;

/* Sets what every client opened afterwards uses when its options name no
 * token or TLS (both copied; NULL clears). Call it once, before any thread
 * opens a client: svc.c does it from the configuration, tools from
 * orch_rpc_client_env. */
orch_err orch_rpc_client_defaults(const orch_rpc_tls *tls, const char *token) ORCH_NODISCARD;
/* For tools: reads ORCH_TLS_MODE, ORCH_TLS_CERT_FILE, ORCH_TLS_KEY_FILE,
 * ORCH_TLS_CA_FILE and the token (ORCH_RPC_ROLE_TOKEN, else
 * ORCH_RPC_AUTH_TOKEN) from the environment and makes them the client
 * defaults. On a problem writes one line to `why` and returns ORCH_EINVAL. */
orch_err orch_rpc_client_env(char *why, size_t n) ORCH_NODISCARD;

typedef struct orch_rpc_call_opts {
    uint32_t timeout_ms;       /* 0 = the client's default */
    uint64_t deadline_unix_ms; /* 0 = not set */
    const char *request_id;    /* NULL = a fresh id (random per process, then counted) */
} orch_rpc_call_opts;

typedef struct orch_rpc_status {
    orch_code code;
    char message[512];
} orch_rpc_status;

/* Dials `url` (non-blocking: the dial is retried in the background). */
orch_err orch_rpc_client_open(const char *url, const orch_rpc_client_opts *opts,
                              orch_rpc_client **out) ORCH_NODISCARD;
void orch_rpc_client_close(orch_rpc_client *c); /* NULL ok */

/* Calls `method` ("orch.v1.HealthService/Check") with `req`. Returns the
 * status code; `st` (may be NULL) receives code and message. On
 * ORCH_CODE_OK, if `reply_desc` and `reply` are given, *reply is the decoded
 * reply, freed by the caller with protobuf_c_message_free_unpacked(r, NULL).
 * Transport failures are reported as DEADLINE_EXCEEDED (no reply in time)
 * or UNAVAILABLE (cannot send). */
orch_code orch_rpc_invoke(orch_rpc_client *c, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *reply_desc,
                          const orch_rpc_call_opts *opts, orch_rpc_status *st,
                          ProtobufCMessage **reply);

/* Sends `len` raw bytes as one message and waits for one raw reply, which is
 * malloc'ed into *reply (caller frees). For tests and benchmarks. */
orch_err orch_rpc_raw(orch_rpc_client *c, const void *frame, size_t len, uint32_t timeout_ms,
                      void **reply, size_t *reply_len) ORCH_NODISCARD;

#endif
