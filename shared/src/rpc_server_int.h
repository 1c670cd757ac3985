/*
 * rpc_server_int.h - the RPC server's internal state, shared by
 * rpc_server.c (contexts, workers, dispatch, life cycle) and
 * rpc_server_tables.c (the method, metrics and handler tables built at
 * start). Not part of the library's interface.
 */
#ifndef ORCH_RPC_SERVER_INT_H
#define ORCH_RPC_SERVER_INT_H

#include <nng/nng.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "orch/metrics.h"
#include "orch/rpc.h"
#include "orch/v1/envelope.pb-c.h"
#include "rpc_dedup.h"
#include "rpc_tls.h"

typedef enum slot_state { S_RECV, S_WORK, S_PARKED, S_SEND, S_IDLE } slot_state;

/* How long a worker waits for a reply queued behind others on a busy
 * connection; past it the reply is dropped (the caller's deadline reports
 * it), so a peer that stops reading cannot hold the workers. */
#define SEND_WAIT_MS 2000

typedef struct slot {
    orch_rpc_server *srv;
    nng_ctx ctx;
    nng_aio *aio;  /* receive, and sends from NNG's threads; calls slot_cb */
    nng_aio *saio; /* sends from workers; no callback */
    slot_state state;
    nng_msg *req;
    uint64_t recv_ns;
    struct slot *next; /* work queue */
} slot;

struct orch_rpc_server {
    orch_rpc_server_opts o;
    char *auth_token;
    orch_rpc_service *svcs;
    orch_rpc_handler **handlers; /* [service][method index], desc->n_methods each */
    unsigned **roles;            /* [service][method index]: who may call it */
    orch__role_tokens *tokens;   /* NULL = no roles known: no authorization */
    char *url;                   /* as handed to NNG (tls+tcp:// with TLS) */
    size_t nsvcs;
    size_t *method_base;        /* first metrics index of each service */
    const char **method_names;  /* metrics label values, last = "unknown" */
    const char **latency_names; /* the same, NULL (no series) for long polls */
    size_t nmethods;
    const char *code_labels[ORCH_CODE_COUNT];     /* metrics label values */
    const char *role_labels[ORCH_ROLE_COUNT + 1]; /* "none", then each role */
    orch_counter *m_requests;
    orch_counter *m_denied;
    orch_histogram *m_latency;

    nng_socket sock;
    nng_listener listener;
    int port;
    slot *slots;
    int nslots;
    pthread_t *workers;
    int nworkers;
    orch__dedup *dedup;

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* work queued or quitting */
    pthread_cond_t idle_cv; /* a slot became idle */
    slot *qhead, *qtail;
    bool stopping, quit, stopped, owns_metrics;
    bool any_nonblocking;
};

struct orch_rpc_call {
    orch_rpc_server *srv;
    const Orch__V1__RequestEnvelope *env;
    const char *method;
    unsigned role;
    uint64_t deadline;
    uint8_t *reply;
    size_t reply_len;
    char msg[512];
    char peer[64]; /* the sender's address, the log's caller by default */
};

/* The metrics label tables (method names, codes, roles) and the RPC
 * metrics, registered in s->o.metrics (or a private registry). */
orch_err orch__rpc_build_method_table(orch_rpc_server *s) ORCH_NODISCARD;
/* Resolves every service's handler table into s->handlers (rpc_match.c)
 * and s->roles; ORCH_EINVAL (logged) for a table that does not match. */
orch_err orch__rpc_match_handlers(orch_rpc_server *s) ORCH_NODISCARD;

#endif
