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

/* RECV: waiting in NNG; WORK: being checked on NNG's thread, queued, run
 * by a handler or parked as a duplicate of a running request; SEND: reply
 * in NNG; IDLE: stopped. */
typedef enum slot_state { S_RECV, S_WORK, S_SEND, S_IDLE } slot_state;

/* How long a reply may wait in NNG behind others on a busy connection; past
 * it the send fails and the context goes back to receiving (the caller's
 * deadline reports the loss), so a peer that stops reading cannot hold the
 * contexts. Nothing waits for the send meanwhile. */
#define SEND_WAIT_MS 2000
/* A reply buffer grown past this is freed after its call rather than kept
 * for the context's next one. */
#define REPLY_KEEP_BYTES 4096

struct orch_rpc_call {
    orch_rpc_server *srv;
    const Orch__V1__RequestEnvelope *env;
    const char *method;
    unsigned role;
    uint64_t deadline;
    uint8_t *reply; /* the packed reply payload: reply_len of reply_cap bytes */
    size_t reply_len, reply_cap;
    nng_pipe pipe; /* the connection the request came on (its peer labels logs) */
    char msg[512];
};

typedef struct outcome {
    orch_code code;
    bool ran; /* the handler ran */
    size_t metric_idx;
} outcome;

/* One NNG context and the request it holds. Between the receive and the
 * reply, the fields below `state` belong to the one thread handling the
 * request: NNG's callback thread, then (once queued) one worker. */
typedef struct slot {
    orch_rpc_server *srv;
    nng_ctx ctx;
    nng_aio *aio; /* receive and send; calls slot_cb */
    slot_state state;
    uint64_t recv_ns;
    orch_rpc_call call;
    outcome oc;
    Orch__V1__RequestEnvelope *env;
    ProtobufCMessage *req; /* the decoded payload */
    size_t si;             /* service index */
    const ProtobufCMethodDescriptor *md;
    bool dedup;        /* this request runs a dedup entry and must finish it */
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
};

/* The metrics label tables (method names, codes, roles) and the RPC
 * metrics, registered in s->o.metrics (or a private registry). */
orch_err orch__rpc_build_method_table(orch_rpc_server *s) ORCH_NODISCARD;
/* Resolves every service's handler table into s->handlers (rpc_match.c)
 * and s->roles; ORCH_EINVAL (logged) for a table that does not match. */
orch_err orch__rpc_match_handlers(orch_rpc_server *s) ORCH_NODISCARD;

#endif
