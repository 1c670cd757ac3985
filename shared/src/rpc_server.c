/*
 * rpc_server.c - REP socket, contexts, worker threads, dispatch.
 *
 * Threading: each context's aio callback runs on an NNG thread and only
 * moves the context between states and onto the work queue; it never
 * blocks. Worker threads decode, dispatch, run the handler and send the
 * reply. A context is in exactly one state: RECV (waiting in NNG), WORK
 * (queued or being handled), PARKED (a duplicate waiting for the running
 * original), SEND (reply in NNG) or IDLE (stopped).
 * Hand-offs per request: NNG's callback thread queues it, a worker handles
 * it. A worker sends the reply on a second aio of the context that has no
 * callback and waits for it: NNG completes such a send at once on the
 * worker's own thread when the connection is not busy writing, so no NNG
 * thread is woken just to report the send, and the worker itself puts the
 * context back to receiving (a send that must queue behind another reply is
 * waited for, at most SEND_WAIT_MS). Replies sent from NNG's callback thread
 * (nonblocking services) keep the callback aio, which never waits.
 * Errors: every request gets a reply envelope with a status, except those
 * NNG drops before we see them (oversized messages).
 * Authorization: with role tokens configured, each request's token names
 * the caller's role, and a method that does not admit that role is
 * answered PERMISSION_DENIED (logged, counted in orch_rpc_denied_total)
 * before the deduplication and the handler, so a refused call changes
 * nothing.
 * Ownership: the server owns its contexts, messages and reply buffers.
 */
#include <arpa/inet.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/v1/envelope.pb-c.h"
#include "orch/clock.h"
#include "orch/log.h"
#include "orch/rpc.h"
#include "rpc_decode.h"
#include "rpc_server_int.h"

/* ---- handler-side API --------------------------------------------------- */

uint64_t orch_rpc_call_deadline(const orch_rpc_call *c)
{
    return c->deadline;
}
const char *orch_rpc_call_request_id(const orch_rpc_call *c)
{
    return c->env->request_id;
}
const char *orch_rpc_call_method(const orch_rpc_call *c)
{
    return c->method;
}
unsigned orch_rpc_call_role(const orch_rpc_call *c)
{
    return c->role;
}

const char *orch_rpc_call_metadata(const orch_rpc_call *c, const char *key)
{
    for (size_t i = 0; i < c->env->n_metadata; i++)
        if (strcmp(c->env->metadata[i]->key, key) == 0)
            return c->env->metadata[i]->value;
    return NULL;
}

orch_code orch_rpc_reply(orch_rpc_call *c, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return orch_rpc_fail(c, ORCH_CODE_INTERNAL, "out of memory packing reply");
    protobuf_c_message_pack(msg, buf);
    free(c->reply);
    c->reply = buf;
    c->reply_len = n;
    return ORCH_CODE_OK;
}

orch_code orch_rpc_fail(orch_rpc_call *c, orch_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- context state machine (NNG threads) -------------------------------- */

static void enqueue(orch_rpc_server *s, slot *sl)
{
    sl->next = NULL;
    if (s->qtail)
        s->qtail->next = sl;
    else
        s->qhead = sl;
    s->qtail = sl;
    pthread_cond_signal(&s->work_cv);
}

static void go_idle(orch_rpc_server *s, slot *sl)
{
    sl->state = S_IDLE;
    pthread_cond_broadcast(&s->idle_cv);
}

static void process(orch_rpc_server *s, slot *sl, bool on_worker);

/* Whether `msg` calls a method of a nonblocking service (rpc_decode.h);
 * anything unusual goes to the workers, where the full decode judges it. */
static bool wants_callback(const orch_rpc_server *s, nng_msg *msg)
{
    return s->any_nonblocking &&
           orch__rpc_calls_nonblocking(s->svcs, s->nsvcs, nng_msg_body(msg), nng_msg_len(msg));
}

static void slot_cb(void *arg)
{
    slot *sl = arg;
    orch_rpc_server *s = sl->srv;
    int rv = nng_aio_result(sl->aio);
    bool here = false;

    pthread_mutex_lock(&s->mu);
    if (sl->state == S_SEND && rv != 0)
        nng_msg_free(nng_aio_get_msg(sl->aio));
    if (sl->state == S_RECV && rv == 0) {
        sl->req = nng_aio_get_msg(sl->aio);
        sl->recv_ns = orch_mono_ns();
        sl->state = S_WORK;
        here = wants_callback(s, sl->req);
        if (!here)
            enqueue(s, sl);
    } else if (s->stopping || rv == NNG_ECLOSED) {
        go_idle(s, sl);
    } else {
        sl->state = S_RECV;
        nng_ctx_recv(sl->ctx, sl->aio);
    }
    pthread_mutex_unlock(&s->mu);
    if (here)
        process(s, sl, false);
}

static void set_state(orch_rpc_server *s, slot *sl, slot_state st)
{
    pthread_mutex_lock(&s->mu);
    sl->state = st;
    pthread_mutex_unlock(&s->mu);
}

/* Puts `sl` back to receiving, or idle when stopping. */
static void rearm(orch_rpc_server *s, slot *sl)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        go_idle(s, sl);
    } else {
        sl->state = S_RECV;
        nng_ctx_recv(sl->ctx, sl->aio);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Hands a packed reply to NNG on `sl`'s context; takes ownership of `m`.
 * On a worker the send completes here (see the top of this file) and the
 * context is rearmed at once; on NNG's thread slot_cb rearms it. */
static void send_reply(orch_rpc_server *s, slot *sl, nng_msg *m, bool on_worker)
{
    set_state(s, sl, S_SEND);
    if (!on_worker) {
        nng_aio_set_msg(sl->aio, m);
        nng_ctx_send(sl->ctx, sl->aio);
        return;
    }
    nng_aio_set_msg(sl->saio, m);
    nng_ctx_send(sl->ctx, sl->saio);
    nng_aio_wait(sl->saio);
    if (nng_aio_result(sl->saio) != 0) {
        nng_msg_free(nng_aio_get_msg(sl->saio));
        nng_aio_set_msg(sl->saio, NULL);
    }
    rearm(s, sl);
}

static nng_msg *msg_from(const void *buf, size_t len)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, len) != 0)
        return NULL;
    memcpy(nng_msg_body(m), buf, len);
    return m;
}

/* Packs a reply envelope into a malloc'ed buffer. */
static uint8_t *pack_reply(const char *rid, orch_code code, const char *msg, const uint8_t *payload,
                           size_t plen, size_t *len)
{
    Orch__V1__Status st = ORCH__V1__STATUS__INIT;
    Orch__V1__ReplyEnvelope rep = ORCH__V1__REPLY_ENVELOPE__INIT;
    st.code = (Orch__V1__Code)code;
    st.message = (char *)(msg ? msg : "");
    rep.request_id = (char *)(rid ? rid : "");
    rep.status = &st;
    rep.payload.data = (uint8_t *)payload;
    rep.payload.len = payload ? plen : 0;
    *len = orch__v1__reply_envelope__get_packed_size(&rep);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        orch__v1__reply_envelope__pack(&rep, buf);
    return buf;
}

/* ---- dispatch (worker threads) ----------------------------------------- */

static uint64_t compute_deadline(const orch_rpc_server *s, const Orch__V1__RequestEnvelope *env,
                                 uint64_t recv_ms)
{
    uint32_t t = env->timeout_ms ? env->timeout_ms : s->o.default_timeout_ms;
    uint64_t deadline = recv_ms + t;
    if (env->deadline_unix_ms) {
        uint64_t wall = orch_wall_ms();
        uint64_t mono = orch_mono_ms();
        uint64_t abs = env->deadline_unix_ms > wall ? mono + (env->deadline_unix_ms - wall) : 0;
        if (abs < deadline)
            deadline = abs;
    }
    return deadline;
}

/* Codes whose reply is not remembered: the handler did nothing durable, so
 * a retry with the same id should run again. */
static bool cacheable(orch_code code)
{
    return code != ORCH_CODE_UNAVAILABLE && code != ORCH_CODE_DEADLINE_EXCEEDED &&
           code != ORCH_CODE_RESOURCE_EXHAUSTED;
}

typedef struct outcome {
    orch_code code;
    bool ran; /* the handler ran */
    size_t metric_idx;
} outcome;

/* The handler of method `md` of service `si`, or NULL (UNIMPLEMENTED); never
 * reads past the table, whatever the descriptor holds. */
static orch_rpc_handler handler_of(const orch_rpc_server *s, size_t si,
                                   const ProtobufCMethodDescriptor *md)
{
    const ProtobufCServiceDescriptor *d = s->svcs[si].desc;
    if (md < d->methods || md >= d->methods + d->n_methods)
        return NULL;
    return s->handlers[si][md - d->methods];
}

/* Whether the caller's role admits method `md` of service `si`; logs and
 * counts a refusal. */
static bool authorized(orch_rpc_server *s, const Orch__V1__RequestEnvelope *env,
                       orch_rpc_call *call, outcome *oc, size_t si,
                       const ProtobufCMethodDescriptor *md)
{
    if (!s->tokens || (s->roles[si][md - s->svcs[si].desc->methods] & call->role))
        return true;
    const char *role = orch_rpc_role_name(call->role);
    orch_warn("permission denied: role %s may not call %s (request %.64s)", role, call->method,
              env->request_id);
    orch_counter_add2(s->m_denied, oc->metric_idx, orch__role_label(call->role), 1);
    oc->code = orch_rpc_fail(call, ORCH_CODE_PERMISSION_DENIED, "role %s may not call %s", role,
                             call->method);
    return false;
}

/* Authenticates, resolves the method and authorizes the caller; fills oc,
 * call->method and call->role. Returns false (with oc->code set) when the
 * request must be refused. */
static bool precheck(orch_rpc_server *s, const Orch__V1__RequestEnvelope *env, orch_rpc_call *call,
                     outcome *oc, size_t *si, const ProtobufCMethodDescriptor **md)
{
    if (s->auth_token && strcmp(env->auth_token, s->auth_token) != 0) {
        oc->code = orch_rpc_fail(call, ORCH_CODE_UNAUTHENTICATED, "missing or wrong auth token");
        return false;
    }
    if (s->tokens && !(call->role = orch__role_of(s->tokens, env->auth_token))) {
        oc->code = orch_rpc_fail(call, ORCH_CODE_UNAUTHENTICATED,
                                 "missing or unknown role token (ORCH_RPC_ROLE_TOKEN)");
        return false;
    }
    *md = orch__rpc_find_method(s->svcs, s->nsvcs, env->method, si);
    if (!*md || !handler_of(s, *si, *md)) {
        oc->code =
            orch_rpc_fail(call, ORCH_CODE_UNIMPLEMENTED, "unknown method '%.200s'", env->method);
        return false;
    }
    oc->metric_idx = s->method_base[*si] + (size_t)(*md - s->svcs[*si].desc->methods);
    call->method = s->method_names[oc->metric_idx];
    return authorized(s, env, call, oc, *si, *md);
}

/* Checks the deadline, decodes the payload and runs the handler. */
static void run_handler(orch_rpc_server *s, slot *sl, const Orch__V1__RequestEnvelope *env,
                        orch_rpc_call *call, outcome *oc, size_t si,
                        const ProtobufCMethodDescriptor *md)
{
    if (orch_deadline_left_ms(call->deadline) == 0) {
        oc->code = orch_rpc_fail(call, ORCH_CODE_DEADLINE_EXCEEDED,
                                 "deadline passed before the request was handled (queued %llu ms)",
                                 (unsigned long long)((orch_mono_ns() - sl->recv_ns) / 1000000));
        return;
    }
    ProtobufCMessage *req =
        protobuf_c_message_unpack(md->input, NULL, env->payload.len, env->payload.data);
    if (!req) {
        oc->code = orch_rpc_fail(call, ORCH_CODE_INVALID_ARGUMENT, "payload does not decode as %s",
                                 md->input->name);
        return;
    }
    const char *bad = orch__rpc_bad_string_field(req);
    if (bad) {
        oc->code =
            orch_rpc_fail(call, ORCH_CODE_INVALID_ARGUMENT, "field %s is not valid UTF-8", bad);
        protobuf_c_message_free_unpacked(req, NULL);
        return;
    }
    orch__rpc_log_fields lf;
    orch__rpc_log_fields_of(req, &lf);
    orch_log_set_request(env->request_id, call->method);
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, lf.work_item);
    orch_log_ctx_set(ORCH_LOG_TARGET, lf.target);
    orch_log_ctx_set(ORCH_LOG_CALLER, lf.caller ? lf.caller : call->peer);
    orch_log_ctx_set_epoch(lf.epoch);
    oc->ran = true;
    oc->code = handler_of(s, si, md)(call, req, s->svcs[si].arg);
    orch_log_set_request(NULL, NULL);
    orch_log_ctx_clear();
    protobuf_c_message_free_unpacked(req, NULL);
}

static void send_bytes(orch_rpc_server *s, slot *sl, const void *buf, size_t len, bool on_worker)
{
    nng_msg *m = buf ? msg_from(buf, len) : NULL;
    if (!m) {
        /* No memory for a reply: let the context go back to receiving; the
         * caller's deadline reports the loss. */
        orch_error("cannot allocate a reply; request dropped");
        rearm(s, sl);
        return;
    }
    send_reply(s, sl, m, on_worker);
}

/* Answers a request that is not an envelope; the caller has freed it. */
static void refuse_undecodable(orch_rpc_server *s, slot *sl, const outcome *oc, bool on_worker)
{
    size_t len = 0;
    uint8_t *out = pack_reply("", ORCH_CODE_INVALID_ARGUMENT,
                              "request is not an orch.v1.RequestEnvelope", NULL, 0, &len);
    orch_counter_add2(s->m_requests, oc->metric_idx, ORCH_CODE_INVALID_ARGUMENT, 1);
    send_bytes(s, sl, out, len, on_worker);
    free(out);
}

typedef enum { DEDUP_NONE, DEDUP_RUN, DEDUP_ANSWERED } dedup_step;

/* Registers an admitted request that carries a request id. DEDUP_ANSWERED:
 * the slot was joined to the first run or answered from its cached reply,
 * and env is freed; DEDUP_RUN: this slot runs it and must finish the entry;
 * DEDUP_NONE: run it unprotected (no memory for an entry). */
static dedup_step dedup_enter(orch_rpc_server *s, slot *sl, Orch__V1__RequestEnvelope *env,
                              bool on_worker)
{
    orch__dedup_verdict v;
    void *cached = NULL;
    size_t clen = 0;
    /* Parked before the lookup: once joined, the original's worker may
     * send this slot its reply (and move it on) at any moment. */
    set_state(s, sl, S_PARKED);
    orch_err err =
        orch__dedup_begin(s->dedup, env->request_id, orch_mono_ms(), sl, &v, &cached, &clen);
    if (!err && v == ORCH__DEDUP_JOINED) {
        orch__v1__request_envelope__free_unpacked(env, NULL);
        return DEDUP_ANSWERED;
    }
    set_state(s, sl, S_WORK);
    if (!err && v == ORCH__DEDUP_DONE) {
        orch_debug("request %s answered from the reply of its first run", env->request_id);
        send_bytes(s, sl, cached, clen, on_worker);
        free(cached);
        orch__v1__request_envelope__free_unpacked(env, NULL);
        return DEDUP_ANSWERED;
    }
    return err ? DEDUP_NONE : DEDUP_RUN;
}

/* Packs and counts the reply, hands it to the requests that joined this run
 * (dedup) and to this slot, then frees the call's reply and env. */
static void finish_call(orch_rpc_server *s, slot *sl, Orch__V1__RequestEnvelope *env,
                        orch_rpc_call *call, const outcome *oc, bool dedup, bool on_worker)
{
    size_t len = 0;
    uint8_t *out = pack_reply(env->request_id, oc->code, oc->code ? call->msg : "", call->reply,
                              call->reply_len, &len);
    orch_counter_add2(s->m_requests, oc->metric_idx, oc->code, 1);
    orch_histogram_observe_ns(s->m_latency, oc->metric_idx, orch_mono_ns() - sl->recv_ns);
    if (oc->code && oc->ran)
        orch_debug("%s (request %s) -> %s: %s", call->method, env->request_id,
                   orch_code_name(oc->code), call->msg);

    if (dedup) {
        void **waiters;
        size_t nw;
        orch__dedup_finish(s->dedup, env->request_id, orch_mono_ms(), out, len,
                           out && oc->ran && cacheable(oc->code), &waiters, &nw);
        for (size_t i = 0; i < nw; i++)
            send_bytes(s, waiters[i], out, len, on_worker);
        free(waiters);
    }
    send_bytes(s, sl, out, len, on_worker);
    free(out);
    free(call->reply);
    orch__v1__request_envelope__free_unpacked(env, NULL);
}

/* "tcp://a.b.c.d:port" (or the ipc path) of the pipe `m` came on; "" when
 * unknown. */
static void peer_of(nng_msg *m, char *out, size_t n)
{
    nng_sockaddr sa;
    out[0] = '\0';
    if (nng_pipe_get_addr(nng_msg_get_pipe(m), NNG_OPT_REMADDR, &sa) != 0)
        return;
    if (sa.s_family == NNG_AF_INET) {
        const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
        snprintf(out, n, "tcp://%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3],
                 (unsigned)ntohs(sa.s_in.sa_port));
    } else if (sa.s_family == NNG_AF_IPC) {
        /* A path longer than the caller's field is cut (it only labels logs). */
        snprintf(out, n, "ipc://%.56s", sa.s_ipc.sa_path);
    }
}

static void process(orch_rpc_server *s, slot *sl, bool on_worker)
{
    nng_msg *req = sl->req;
    orch_rpc_call call = { .srv = s, .method = "" };
    outcome oc = { ORCH_CODE_OK, false, s->nmethods - 1 };

    Orch__V1__RequestEnvelope *env =
        orch__v1__request_envelope__unpack(NULL, nng_msg_len(req), nng_msg_body(req));
    if (env && !on_worker && !orch__rpc_method_nonblocking(s->svcs, s->nsvcs, env->method)) {
        /* The peek saw a nonblocking method, the full decode another (the
         * method field repeats): a worker handles it. */
        orch__v1__request_envelope__free_unpacked(env, NULL);
        pthread_mutex_lock(&s->mu);
        enqueue(s, sl);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    sl->req = NULL;
    peer_of(req, call.peer, sizeof call.peer);
    nng_msg_free(req);
    if (!env) {
        refuse_undecodable(s, sl, &oc, on_worker);
        return;
    }
    call.env = env;
    call.deadline = compute_deadline(s, env, sl->recv_ns / 1000000);

    size_t si = 0;
    const ProtobufCMethodDescriptor *md = NULL;
    bool admitted = precheck(s, env, &call, &oc, &si, &md);
    bool dedup = false;
    if (admitted && env->request_id[0] != '\0') {
        dedup_step step = dedup_enter(s, sl, env, on_worker);
        if (step == DEDUP_ANSWERED)
            return;
        dedup = step == DEDUP_RUN;
    }
    if (admitted)
        run_handler(s, sl, env, &call, &oc, si, md);
    finish_call(s, sl, env, &call, &oc, dedup, on_worker);
}

static void *worker_main(void *arg)
{
    orch_rpc_server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->qhead && !s->quit)
            pthread_cond_wait(&s->work_cv, &s->mu);
        if (!s->qhead)
            break;
        slot *sl = s->qhead;
        s->qhead = sl->next;
        if (!s->qhead)
            s->qtail = NULL;
        pthread_mutex_unlock(&s->mu);
        process(s, sl, true);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- life cycle --------------------------------------------------------- */

static orch_err open_socket(orch_rpc_server *s)
{
    orch_err err = orch__tls_url(s->o.url, s->o.tls ? s->o.tls->mode : ORCH_TLS_OFF, &s->url);
    if (err) {
        orch_error("cannot listen on %s: tls+tcp:// needs TLS on", s->o.url);
        return err;
    }
    int rv = nng_rep0_open(&s->sock);
    if (rv == 0)
        rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, s->o.max_msg_bytes);
    if (rv == 0)
        rv = nng_listener_create(&s->listener, s->sock, s->url);
    if (rv == 0)
        rv = nng_listener_set_size(s->listener, NNG_OPT_RECVMAXSZ, s->o.max_msg_bytes);
    if (rv == 0)
        rv = orch__listener_tls(s->listener, s->o.tls);
    if (rv == 0)
        rv = nng_listener_start(s->listener, 0);
    if (rv == 0)
        rv = nng_listener_get_int(s->listener, NNG_OPT_TCP_BOUND_PORT, &s->port);
    if (rv != 0) {
        orch_error("cannot listen on %s: %s", s->url, nng_strerror(rv));
        return rv == NNG_ENOMEM ? ORCH_ENOMEM : ORCH_EIO;
    }
    return ORCH_OK;
}

static orch_err start_slots_and_workers(orch_rpc_server *s)
{
    s->slots = calloc((size_t)s->o.concurrency, sizeof *s->slots);
    s->workers = calloc((size_t)s->o.workers, sizeof *s->workers);
    if (!s->slots || !s->workers)
        return ORCH_ENOMEM;
    for (int i = 0; i < s->o.concurrency; i++) {
        slot *sl = &s->slots[i];
        sl->srv = s;
        sl->state = S_IDLE;
        if (nng_ctx_open(&sl->ctx, s->sock) != 0 || nng_aio_alloc(&sl->aio, slot_cb, sl) != 0 ||
            nng_aio_alloc(&sl->saio, NULL, NULL) != 0)
            return ORCH_ENOMEM;
        nng_aio_set_timeout(sl->saio, SEND_WAIT_MS);
        s->nslots++;
    }
    for (int i = 0; i < s->o.workers; i++) {
        if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0)
            return ORCH_ENOMEM;
        s->nworkers++;
    }
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nslots; i++) {
        s->slots[i].state = S_RECV;
        nng_ctx_recv(s->slots[i].ctx, s->slots[i].aio);
    }
    pthread_mutex_unlock(&s->mu);
    return ORCH_OK;
}

orch_err orch_rpc_server_start(const orch_rpc_server_opts *opts, const orch_rpc_service *services,
                               size_t nservices, orch_rpc_server **out)
{
    if (!opts || !opts->url || opts->concurrency < 1 || opts->workers < 1 ||
        opts->max_msg_bytes < 64 || opts->dedup_entries < 1)
        return ORCH_EINVAL;
    orch_rpc_server *s = calloc(1, sizeof *s);
    if (!s)
        return ORCH_ENOMEM;
    s->o = *opts;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    orch_err err = ORCH_ENOMEM;
    s->svcs = calloc(nservices ? nservices : 1, sizeof *s->svcs);
    if (!s->svcs)
        goto fail;
    memcpy(s->svcs, services, nservices * sizeof *s->svcs);
    s->nsvcs = nservices;
    for (size_t i = 0; i < nservices; i++)
        s->any_nonblocking = s->any_nonblocking || services[i].nonblocking;
    if ((err = orch__rpc_match_handlers(s)) ||
        (err = orch__role_tokens_load(opts->auth_token, opts->role_tokens, &s->tokens)))
        goto fail;
    err = ORCH_ENOMEM;
    if (opts->auth_token && opts->auth_token[0] && !(s->auth_token = strdup(opts->auth_token)))
        goto fail;
    if ((err = orch__rpc_build_method_table(s)) ||
        (err = orch__dedup_new(opts->dedup_entries, opts->dedup_ttl_ms, &s->dedup)) ||
        (err = open_socket(s)) || (err = start_slots_and_workers(s)))
        goto fail;
    orch_info("RPC listening on %s (%d contexts, %d workers, %s)", s->url, opts->concurrency,
              opts->workers,
              s->tokens ? "callers authorized by role" : "no roles known: every caller allowed");
    *out = s;
    return ORCH_OK;
fail:
    orch_rpc_server_free(s);
    return err;
}

int orch_rpc_server_port(const orch_rpc_server *s)
{
    return s->port;
}

static bool all_idle(const orch_rpc_server *s)
{
    for (int i = 0; i < s->nslots; i++)
        if (s->slots[i].state != S_IDLE)
            return false;
    return true;
}

void orch_rpc_server_stop(orch_rpc_server *s, uint32_t grace_ms)
{
    if (!s || s->stopped)
        return;
    s->stopped = true;
    /* The listener stays open until the socket closes: closing it would also
     * close the connections it accepted, and with them the replies owed. */

    /* Cancel the contexts waiting for a request; the others finish their
     * request and go idle in slot_cb because `stopping` is set. */
    nng_aio **cancel = calloc((size_t)s->nslots + 1, sizeof *cancel);
    int nc = 0;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    for (int i = 0; i < s->nslots; i++) {
        if (s->slots[i].state == S_RECV && cancel)
            cancel[nc++] = s->slots[i].aio;
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < nc; i++)
        nng_aio_cancel(cancel[i]);
    free(cancel);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += grace_ms / 1000;
    ts.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!all_idle(s))
        if (pthread_cond_timedwait(&s->idle_cv, &s->mu, &ts) != 0)
            break;
    if (!all_idle(s))
        orch_warn("RPC shutdown: grace period over with requests in flight");
    s->quit = true;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    s->nworkers = 0;
    /* Closing the socket completes anything still pending in NNG. */
    nng_close(s->sock);
    for (int i = 0; i < s->nslots; i++) {
        nng_aio_stop(s->slots[i].aio);
        nng_aio_stop(s->slots[i].saio);
    }
}

void orch_rpc_server_free(orch_rpc_server *s)
{
    if (!s)
        return;
    if (s->nslots || s->nworkers)
        orch_rpc_server_stop(s, 0);
    for (int i = 0; i < s->nslots; i++) {
        nng_aio_free(s->slots[i].aio);
        nng_aio_free(s->slots[i].saio);
        if (s->slots[i].req)
            nng_msg_free(s->slots[i].req);
    }
    if (!s->stopped)
        nng_close(s->sock); /* socket opened, start failed later */
    for (size_t i = 0; s->method_names && i + 1 < s->nmethods; i++)
        free((char *)s->method_names[i]);
    free(s->method_names);
    free(s->latency_names);
    free(s->method_base);
    for (size_t i = 0; s->handlers && i < s->nsvcs; i++)
        free(s->handlers[i]);
    free(s->handlers);
    for (size_t i = 0; s->roles && i < s->nsvcs; i++)
        free(s->roles[i]);
    free(s->roles);
    orch__role_tokens_free(s->tokens);
    free(s->url);
    if (s->owns_metrics)
        orch_metrics_free(s->o.metrics);
    orch__dedup_free(s->dedup);
    free(s->slots);
    free(s->workers);
    free(s->svcs);
    free(s->auth_token);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->idle_cv);
    free(s);
}
