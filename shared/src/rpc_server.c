/*
 * rpc_server.c - REP socket, contexts, worker threads, dispatch.
 *
 * Threading: each context's aio callback (slot_cb) runs on an NNG thread
 * and never blocks. It decodes the envelope, authenticates and authorizes
 * the caller, registers the request id (dedup), checks the deadline and
 * decodes and validates the payload; every refusal, duplicate and cached
 * reply is answered there. A request that must run a handler of a
 * nonblocking service runs there too; any other is queued, already
 * decoded, for a worker thread: the one hand-off of a request. The worker
 * checks the deadline again (it may have passed in the queue), runs the
 * handler and sends the reply itself on the context's aio; it does not
 * wait for the send: slot_cb sees it complete (or fail, at most
 * SEND_WAIT_MS behind others on a busy connection) and puts the context
 * back to receiving. A context is in exactly one state: RECV (waiting in
 * NNG), WORK (being checked, queued, handled, or parked as a duplicate of
 * a running request), SEND (reply in NNG) or IDLE (stopped).
 * Errors: every request gets a reply envelope with a status, except those
 * NNG drops before we see them (oversized messages).
 * Authorization: with role tokens configured, each request's token names
 * the caller's role, and a method that does not admit that role is
 * answered PERMISSION_DENIED (logged, counted in orch_rpc_denied_total)
 * before the deduplication and the handler, so a refused call changes
 * nothing.
 * Ownership: the server owns its contexts, messages and reply buffers; a
 * reply is packed straight into the NNG message that carries it.
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
    if (n > c->reply_cap) {
        uint8_t *buf = malloc(n);
        if (!buf)
            return orch_rpc_fail(c, ORCH_CODE_INTERNAL, "out of memory packing reply");
        free(c->reply);
        c->reply = buf;
        c->reply_cap = n;
    }
    c->reply_len = n ? protobuf_c_message_pack(msg, c->reply) : 0;
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

/* ---- context state machine ---------------------------------------------- */

static void go_idle(orch_rpc_server *s, slot *sl)
{
    sl->state = S_IDLE;
    pthread_cond_broadcast(&s->idle_cv);
}

/* With s->mu held: waits for the next request on `sl`, or goes idle when
 * stopping. */
static void arm_recv(orch_rpc_server *s, slot *sl)
{
    if (s->stopping) {
        go_idle(s, sl);
        return;
    }
    sl->state = S_RECV;
    nng_aio_set_timeout(sl->aio, NNG_DURATION_INFINITE);
    nng_ctx_recv(sl->ctx, sl->aio);
}

static void rearm(orch_rpc_server *s, slot *sl)
{
    pthread_mutex_lock(&s->mu);
    arm_recv(s, sl);
    pthread_mutex_unlock(&s->mu);
}

/* Hands the reply `m` (NULL: none could be made) to NNG on `sl`'s context;
 * slot_cb sees the send complete. From here on `sl` may be serving its next
 * request on another thread: the caller must not touch it again. */
static void send_msg(orch_rpc_server *s, slot *sl, nng_msg *m)
{
    if (!m) {
        /* No memory for a reply: let the context go back to receiving; the
         * caller's deadline reports the loss. */
        orch_error("cannot allocate a reply; request dropped");
        rearm(s, sl);
        return;
    }
    pthread_mutex_lock(&s->mu);
    sl->state = S_SEND;
    pthread_mutex_unlock(&s->mu);
    nng_aio_set_timeout(sl->aio, SEND_WAIT_MS);
    nng_aio_set_msg(sl->aio, m);
    nng_ctx_send(sl->ctx, sl->aio);
}

/* A reply envelope packed into a new NNG message; NULL without memory. */
static nng_msg *reply_msg(const char *rid, orch_code code, const char *msg, const uint8_t *payload,
                          size_t plen)
{
    Orch__V1__Status st = ORCH__V1__STATUS__INIT;
    Orch__V1__ReplyEnvelope rep = ORCH__V1__REPLY_ENVELOPE__INIT;
    st.code = (Orch__V1__Code)code;
    st.message = (char *)(msg ? msg : "");
    rep.request_id = (char *)(rid ? rid : "");
    rep.status = &st;
    rep.payload.data = (uint8_t *)payload;
    rep.payload.len = payload ? plen : 0;
    nng_msg *m;
    if (nng_msg_alloc(&m, orch__v1__reply_envelope__get_packed_size(&rep)) != 0)
        return NULL;
    orch__v1__reply_envelope__pack(&rep, nng_msg_body(m));
    return m;
}

static nng_msg *msg_from(const void *buf, size_t len)
{
    nng_msg *m;
    if (!buf || nng_msg_alloc(&m, len) != 0)
        return NULL;
    memcpy(nng_msg_body(m), buf, len);
    return m;
}

/* ---- admission (NNG's callback thread) ----------------------------------- */

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

/* Authenticates, resolves the method and authorizes the caller; fills
 * sl->oc, sl->si, sl->md, call->method and call->role. Returns false (with
 * sl->oc.code set) when the request must be refused. */
static bool precheck(orch_rpc_server *s, slot *sl, const Orch__V1__RequestEnvelope *env)
{
    orch_rpc_call *call = &sl->call;
    outcome *oc = &sl->oc;
    if (s->auth_token && strcmp(env->auth_token, s->auth_token) != 0) {
        oc->code = orch_rpc_fail(call, ORCH_CODE_UNAUTHENTICATED, "missing or wrong auth token");
        return false;
    }
    if (s->tokens && !(call->role = orch__role_of(s->tokens, env->auth_token))) {
        oc->code = orch_rpc_fail(call, ORCH_CODE_UNAUTHENTICATED,
                                 "missing or unknown role token (ORCH_RPC_ROLE_TOKEN)");
        return false;
    }
    sl->md = orch__rpc_find_method(s->svcs, s->nsvcs, env->method, &sl->si);
    if (!sl->md || !handler_of(s, sl->si, sl->md)) {
        oc->code =
            orch_rpc_fail(call, ORCH_CODE_UNIMPLEMENTED, "unknown method '%.200s'", env->method);
        return false;
    }
    oc->metric_idx = s->method_base[sl->si] + (size_t)(sl->md - s->svcs[sl->si].desc->methods);
    call->method = s->method_names[oc->metric_idx];
    return authorized(s, env, call, oc, sl->si, sl->md);
}

/* Whether the request's deadline passed before its handler could start
 * (then sl->oc says DEADLINE_EXCEEDED). */
static bool too_late(slot *sl)
{
    if (orch_deadline_left_ms(sl->call.deadline) != 0)
        return false;
    sl->oc.code = orch_rpc_fail(&sl->call, ORCH_CODE_DEADLINE_EXCEEDED,
                                "deadline passed before the request was handled (queued %llu ms)",
                                (unsigned long long)((orch_mono_ns() - sl->recv_ns) / 1000000));
    return true;
}

/* Checks the deadline and decodes and validates the payload into sl->req.
 * False (with sl->oc.code set) when the handler must not run. */
static bool decode_payload(slot *sl)
{
    const Orch__V1__RequestEnvelope *env = sl->env;
    if (too_late(sl))
        return false;
    sl->req = protobuf_c_message_unpack(sl->md->input, NULL, env->payload.len, env->payload.data);
    if (!sl->req) {
        sl->oc.code = orch_rpc_fail(&sl->call, ORCH_CODE_INVALID_ARGUMENT,
                                    "payload does not decode as %s", sl->md->input->name);
        return false;
    }
    const char *bad = orch__rpc_bad_string_field(sl->req);
    if (bad) {
        sl->oc.code = orch_rpc_fail(&sl->call, ORCH_CODE_INVALID_ARGUMENT,
                                    "field %s is not valid UTF-8", bad);
        return false;
    }
    return true;
}

/* "tcp://a.b.c.d:port" (or the ipc path) of pipe `p`; "" when unknown. */
static void peer_of(nng_pipe p, char *out, size_t n)
{
    nng_sockaddr sa;
    out[0] = '\0';
    if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
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

/* Runs the handler of the admitted, decoded request in `sl` on this thread,
 * with the request's log context. */
static void run_handler(orch_rpc_server *s, slot *sl)
{
    orch_rpc_call *call = &sl->call;
    orch__rpc_log_fields lf;
    char peer[64];
    orch__rpc_log_fields_of(sl->req, &lf);
    if (!lf.caller)
        peer_of(call->pipe, peer, sizeof peer);
    orch_log_set_request(sl->env->request_id, call->method);
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, lf.work_item);
    orch_log_ctx_set(ORCH_LOG_TARGET, lf.target);
    orch_log_ctx_set(ORCH_LOG_CALLER, lf.caller ? lf.caller : peer);
    orch_log_ctx_set_epoch(lf.epoch);
    sl->oc.ran = true;
    sl->oc.code = handler_of(s, sl->si, sl->md)(call, sl->req, s->svcs[sl->si].arg);
    orch_log_set_request(NULL, NULL);
    orch_log_ctx_clear();
}

/* Frees what the request in `sl` holds, except the reply buffer (kept for
 * the next call unless it grew large). */
static void release_request(slot *sl)
{
    if (sl->req)
        protobuf_c_message_free_unpacked(sl->req, NULL);
    if (sl->env)
        orch__v1__request_envelope__free_unpacked(sl->env, NULL);
    sl->req = NULL;
    sl->env = NULL;
    if (sl->call.reply_cap > REPLY_KEEP_BYTES) {
        free(sl->call.reply);
        sl->call.reply = NULL;
        sl->call.reply_cap = 0;
    }
}

/* Packs and counts the reply, hands it to the requests that joined this run
 * (dedup) and to this slot, after freeing the request. */
static void finish_call(orch_rpc_server *s, slot *sl)
{
    const orch_rpc_call *call = &sl->call;
    const outcome *oc = &sl->oc;
    const char *rid = sl->env ? sl->env->request_id : "";
    nng_msg *out = reply_msg(rid, oc->code, oc->code ? call->msg : "",
                             oc->code ? NULL : call->reply, call->reply_len);
    orch_counter_add2(s->m_requests, oc->metric_idx, oc->code, 1);
    orch_histogram_observe_ns(s->m_latency, oc->metric_idx, orch_mono_ns() - sl->recv_ns);
    if (oc->code && oc->ran)
        orch_debug("%s (request %s) -> %s: %s", call->method, rid, orch_code_name(oc->code),
                   call->msg);
    if (sl->dedup) {
        void **waiters;
        size_t nw;
        orch__dedup_finish(s->dedup, rid, orch_mono_ms(), out ? nng_msg_body(out) : NULL,
                           out ? nng_msg_len(out) : 0, out && oc->ran && cacheable(oc->code),
                           &waiters, &nw);
        for (size_t i = 0; i < nw; i++) {
            nng_msg *dup = NULL;
            if (out && nng_msg_dup(&dup, out) != 0)
                dup = NULL;
            send_msg(s, waiters[i], dup);
        }
        free(waiters);
    }
    release_request(sl);
    send_msg(s, sl, out);
}

typedef enum { DEDUP_NONE, DEDUP_RUN, DEDUP_ANSWERED } dedup_step;

/* Registers an admitted request that carries a request id. DEDUP_ANSWERED:
 * the slot was joined to the first run or answered from its cached reply,
 * and `env` is freed; DEDUP_RUN: this slot runs it and must finish the
 * entry; DEDUP_NONE: run it unprotected (no memory for an entry). Once
 * joined, the original's thread may answer the slot (and move it on) at
 * any moment: nothing here touches it afterwards. */
static dedup_step dedup_enter(orch_rpc_server *s, slot *sl, Orch__V1__RequestEnvelope *env)
{
    orch__dedup_verdict v;
    void *cached = NULL;
    size_t clen = 0;
    orch_err err =
        orch__dedup_begin(s->dedup, env->request_id, orch_mono_ms(), sl, &v, &cached, &clen);
    if (!err && v == ORCH__DEDUP_JOINED) {
        orch__v1__request_envelope__free_unpacked(env, NULL);
        return DEDUP_ANSWERED;
    }
    if (!err && v == ORCH__DEDUP_DONE) {
        orch_debug("request %s answered from the reply of its first run", env->request_id);
        nng_msg *m = msg_from(cached, clen);
        free(cached);
        sl->env = NULL;
        orch__v1__request_envelope__free_unpacked(env, NULL);
        release_request(sl);
        send_msg(s, sl, m);
        return DEDUP_ANSWERED;
    }
    return err ? DEDUP_NONE : DEDUP_RUN;
}

static void enqueue(orch_rpc_server *s, slot *sl)
{
    pthread_mutex_lock(&s->mu);
    sl->next = NULL;
    if (s->qtail)
        s->qtail->next = sl;
    else
        s->qhead = sl;
    s->qtail = sl;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
}

/* Resets the slot's call for the request just received on `pipe`. */
static void begin_call(orch_rpc_server *s, slot *sl, nng_pipe pipe)
{
    orch_rpc_call *call = &sl->call;
    call->srv = s;
    call->env = NULL;
    call->method = "";
    call->role = 0;
    call->reply_len = 0;
    call->pipe = pipe;
    call->msg[0] = '\0';
    sl->oc = (outcome){ ORCH_CODE_OK, false, s->nmethods - 1 };
    sl->env = NULL;
    sl->req = NULL;
    sl->md = NULL;
    sl->si = 0;
    sl->dedup = false;
}

/* Everything of a request up to its handler, on NNG's callback thread:
 * refusals, duplicates and nonblocking services are answered here, the
 * rest queued for a worker. Takes ownership of `msg`. */
static void admit(orch_rpc_server *s, slot *sl, nng_msg *msg)
{
    begin_call(s, sl, nng_msg_get_pipe(msg));
    Orch__V1__RequestEnvelope *env =
        orch__v1__request_envelope__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
    nng_msg_free(msg);
    if (!env) {
        orch_counter_add2(s->m_requests, sl->oc.metric_idx, ORCH_CODE_INVALID_ARGUMENT, 1);
        send_msg(s, sl,
                 reply_msg("", ORCH_CODE_INVALID_ARGUMENT,
                           "request is not an orch.v1.RequestEnvelope", NULL, 0));
        return;
    }
    sl->call.env = env;
    sl->call.deadline = compute_deadline(s, env, sl->recv_ns / 1000000);
    if (precheck(s, sl, env)) {
        if (env->request_id[0] != '\0') {
            dedup_step step = dedup_enter(s, sl, env);
            if (step == DEDUP_ANSWERED)
                return;
            sl->dedup = step == DEDUP_RUN;
        }
        sl->env = env;
        if (decode_payload(sl)) {
            if (!s->svcs[sl->si].nonblocking) {
                enqueue(s, sl);
                return;
            }
            run_handler(s, sl);
        }
    }
    sl->env = env;
    finish_call(s, sl);
}

static void slot_cb(void *arg)
{
    slot *sl = arg;
    orch_rpc_server *s = sl->srv;
    int rv = nng_aio_result(sl->aio);
    nng_msg *msg = NULL;

    pthread_mutex_lock(&s->mu);
    if (sl->state == S_SEND && rv != 0) {
        nng_msg_free(nng_aio_get_msg(sl->aio));
        nng_aio_set_msg(sl->aio, NULL);
    }
    if (sl->state == S_RECV && rv == 0) {
        msg = nng_aio_get_msg(sl->aio);
        sl->recv_ns = orch_mono_ns();
        sl->state = S_WORK;
    } else if (rv == NNG_ECLOSED) {
        go_idle(s, sl);
    } else {
        arm_recv(s, sl);
    }
    pthread_mutex_unlock(&s->mu);
    if (msg)
        admit(s, sl, msg);
}

/* ---- workers ------------------------------------------------------------- */

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
        /* The deadline may have passed while the request waited here. */
        if (!too_late(sl))
            run_handler(s, sl);
        finish_call(s, sl);
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
        if (nng_ctx_open(&sl->ctx, s->sock) != 0 || nng_aio_alloc(&sl->aio, slot_cb, sl) != 0)
            return ORCH_ENOMEM;
        s->nslots++;
    }
    for (int i = 0; i < s->o.workers; i++) {
        if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0)
            return ORCH_ENOMEM;
        s->nworkers++;
    }
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nslots; i++)
        arm_recv(s, &s->slots[i]);
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
     * request and go idle in slot_cb because `stopping` is set. Each cancel
     * is issued under `mu`, while its slot is still receiving: cancelled
     * after unlocking, a slot that had meanwhile received, run its handler
     * and queued the reply on the same aio would lose that reply (slot_cb
     * already calls into NNG under `mu`, and NNG calls slot_cb from its own
     * threads, never under its locks, so the order is the same). A receive
     * that completed but whose slot_cb still waits for `mu` is not undone:
     * that request is served. */
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    for (int i = 0; i < s->nslots; i++)
        if (s->slots[i].state == S_RECV)
            nng_aio_cancel(s->slots[i].aio);
    pthread_mutex_unlock(&s->mu);

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
    for (int i = 0; i < s->nslots; i++)
        nng_aio_stop(s->slots[i].aio);
}

void orch_rpc_server_free(orch_rpc_server *s)
{
    if (!s)
        return;
    if (s->nslots || s->nworkers)
        orch_rpc_server_stop(s, 0);
    /* Requests queued after the workers quit were never answered. */
    for (slot *sl = s->qhead; sl; sl = sl->next)
        release_request(sl);
    for (int i = 0; i < s->nslots; i++) {
        nng_aio_free(s->slots[i].aio);
        free(s->slots[i].call.reply);
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
