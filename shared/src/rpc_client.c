/*
 * rpc_client.c - REQ socket with a pool of contexts.
 *
 * Threading: any number of threads may call at once; each call borrows a
 * context (created on demand, returned after the call) and blocks on its own
 * aio. NNG's time-based resend is disabled; when the connection is lost with
 * a request outstanding, the client itself sends the same frame again (same
 * request id, so the server runs it at most once) until the deadline.
 * Request ids: 128 random bits from a per-thread pool of the kernel's
 * randomness (rpc_client_int.h), one system call per 64 ids.
 * Security: TLS and the token come from the options or, when they name
 * none, from the process defaults (rpc_tls.h).
 * Ownership: the client owns its contexts; replies are handed to the caller.
 * A request envelope is packed straight into the NNG message that carries
 * it (again for each attempt, so no copy is kept).
 */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "orch/v1/envelope.pb-c.h"
#include "orch/clock.h"
#include "orch/ident.h"
#include "orch/rpc.h"
#include "rpc_client_int.h"
#include "rpc_tls.h"

typedef struct cslot {
    nng_ctx ctx;
    nng_aio *aio;
    struct cslot *next;
} cslot;

struct orch_rpc_client {
    nng_socket sock;
    char *url;
    char *auth_token;
    size_t max_msg_bytes;
    uint32_t default_timeout_ms;
    pthread_mutex_t mu;
    cslot *free;
};

/* The host part of "scheme://host:port" into `out` (empty when none). */
static void url_host(const char *url, char *out, size_t n)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *end = *p == '[' ? strchr(p, ']') : strrchr(p, ':');
    if (*p == '[')
        p++;
    size_t len = end && end >= p ? (size_t)(end - p) : strlen(p);
    snprintf(out, n, "%.*s", (int)(len < n ? len : n - 1), p);
}

/* Dials c->url, with TLS when `tls` says so. NNG error code. */
static int dial(orch_rpc_client *c, const orch_rpc_tls *tls)
{
    nng_dialer d;
    int rv = nng_dialer_create(&d, c->sock, c->url);
    if (rv == 0 && tls && tls->mode != ORCH_TLS_OFF) {
        char host[256];
        nng_tls_config *cfg = NULL;
        url_host(c->url, host, sizeof host);
        if (orch__tls_config(tls, false, host, &cfg) != ORCH_OK)
            return NNG_EINVAL;
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
        nng_tls_config_free(cfg); /* the dialer holds its own reference */
    }
    if (rv == 0)
        rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
    return rv;
}

orch_err orch_rpc_client_open(const char *url, const orch_rpc_client_opts *opts,
                              orch_rpc_client **out)
{
    const orch_rpc_tls *tls = opts && opts->tls ? opts->tls : orch__client_default_tls();
    const char *token = opts && opts->auth_token && opts->auth_token[0]
                            ? opts->auth_token
                            : orch__client_default_token();
    orch_rpc_client *c = calloc(1, sizeof *c);
    if (!c)
        return ORCH_ENOMEM;
    c->max_msg_bytes = opts && opts->max_msg_bytes ? opts->max_msg_bytes : 1u << 20;
    c->default_timeout_ms = opts && opts->default_timeout_ms ? opts->default_timeout_ms : 5000;
    pthread_mutex_init(&c->mu, NULL);
    orch_err uerr = orch__tls_url(url, tls ? tls->mode : ORCH_TLS_OFF, &c->url);
    if (uerr) {
        orch_rpc_client_close(c);
        return uerr;
    }
    if (token && token[0])
        c->auth_token = strdup(token);
    int rv = nng_req0_open(&c->sock);
    if (rv == 0)
        rv = nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, c->max_msg_bytes);
    if (rv == 0)
        rv = nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    if (rv == 0)
        rv = nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 20);
    if (rv == 0)
        rv = nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 500);
    if (rv == 0)
        rv = dial(c, tls);
    if (rv != 0) {
        orch_rpc_client_close(c);
        return rv == NNG_ENOMEM ? ORCH_ENOMEM : ORCH_EINVAL;
    }
    *out = c;
    return ORCH_OK;
}

void orch_rpc_client_close(orch_rpc_client *c)
{
    if (!c)
        return;
    nng_close(c->sock);
    while (c->free) {
        cslot *s = c->free;
        c->free = s->next;
        nng_aio_free(s->aio);
        free(s);
    }
    pthread_mutex_destroy(&c->mu);
    free(c->url);
    free(c->auth_token);
    free(c);
}

/* ---- request ids ------------------------------------------------------- */

/* Each id is 16 bytes of the kernel's randomness, as one getrandom() per
 * call used to give, but taken from a per-thread pool that one getrandom()
 * refills every RID_POOL / 16 ids. The pool is copied into a forked child
 * with the thread that forked, so the fork handler moves the generation on
 * and a pool of an older generation is refilled before use: a child never
 * repeats its parent's ids. */
#define RID_POOL 1024
static atomic_uint rid_gen;
static pthread_once_t rid_atfork = PTHREAD_ONCE_INIT;
static _Thread_local struct {
    uint8_t b[RID_POOL];
    size_t used;
    unsigned gen;
    bool filled;
} rid_pool;

static void rid_child(void)
{
    atomic_fetch_add(&rid_gen, 1);
}
static void rid_install_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, rid_child);
}

orch_err orch__rpc_request_id(char out[ORCH__RPC_ID_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    pthread_once(&rid_atfork, rid_install_atfork);
    unsigned gen = atomic_load(&rid_gen);
    if (!rid_pool.filled || rid_pool.gen != gen ||
        rid_pool.used + ORCH__RPC_ID_HEX / 2 > RID_POOL) {
        if (getrandom(rid_pool.b, RID_POOL, 0) != (ssize_t)RID_POOL) {
            rid_pool.filled = false;
            return ORCH_EIO;
        }
        rid_pool.used = 0;
        rid_pool.gen = gen;
        rid_pool.filled = true;
    }
    const uint8_t *r = rid_pool.b + rid_pool.used;
    rid_pool.used += ORCH__RPC_ID_HEX / 2;
    for (int i = 0; i < ORCH__RPC_ID_HEX / 2; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 0xf];
    }
    out[ORCH__RPC_ID_HEX] = '\0';
    return ORCH_OK;
}

/* ---- contexts and exchanges ---------------------------------------------- */

static cslot *borrow(orch_rpc_client *c)
{
    pthread_mutex_lock(&c->mu);
    cslot *s = c->free;
    if (s)
        c->free = s->next;
    pthread_mutex_unlock(&c->mu);
    if (s)
        return s;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (nng_ctx_open(&s->ctx, c->sock) != 0) {
        free(s);
        return NULL;
    }
    nng_ctx_set_ms(s->ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    if (nng_aio_alloc(&s->aio, NULL, NULL) != 0) {
        nng_ctx_close(s->ctx);
        free(s);
        return NULL;
    }
    return s;
}

static void give_back(orch_rpc_client *c, cslot *s)
{
    pthread_mutex_lock(&c->mu);
    s->next = c->free;
    c->free = s;
    pthread_mutex_unlock(&c->mu);
}

/* Errors after which the same frame may go again: the connection was lost
 * or refused, so the request may or may not have reached the server. Its
 * request id makes a second delivery harmless (the server deduplicates). */
static bool connection_lost(int rv)
{
    return rv == NNG_ECONNRESET || rv == NNG_ECONNSHUT || rv == NNG_ECONNREFUSED ||
           rv == NNG_ECONNABORTED;
}

/* What a call sends: an envelope packed into each attempt's message, or
 * `len` raw bytes copied into it. */
typedef struct frame {
    const Orch__V1__RequestEnvelope *env; /* NULL: raw */
    const void *raw;
    size_t len; /* packed size of env, or of raw */
} frame;

static int frame_msg(const frame *f, nng_msg **out)
{
    nng_msg *m;
    int rv = nng_msg_alloc(&m, f->len);
    if (rv != 0)
        return rv;
    if (f->env)
        orch__v1__request_envelope__pack(f->env, nng_msg_body(m));
    else
        memcpy(nng_msg_body(m), f->raw, f->len);
    *out = m;
    return 0;
}

/* One send and one receive on `s`, within what is left until `deadline`. */
static int attempt(cslot *s, const frame *f, uint64_t deadline, nng_msg **reply)
{
    nng_msg *m;
    int rv = frame_msg(f, &m);
    if (rv != 0)
        return rv;
    uint64_t left = orch_deadline_left_ms(deadline);
    nng_aio_set_timeout(s->aio, left ? (nng_duration)left : 1);
    nng_aio_set_msg(s->aio, m);
    nng_ctx_send(s->ctx, s->aio);
    nng_aio_wait(s->aio);
    rv = nng_aio_result(s->aio);
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(s->aio));
        return rv;
    }
    /* The send completes once the request is queued to a connected peer; the
     * receive gets what is left of the budget. */
    left = orch_deadline_left_ms(deadline);
    nng_aio_set_timeout(s->aio, left ? (nng_duration)left : 1);
    nng_ctx_recv(s->ctx, s->aio);
    nng_aio_wait(s->aio);
    rv = nng_aio_result(s->aio);
    if (rv == 0)
        *reply = nng_aio_get_msg(s->aio);
    return rv;
}

/* Sends `f` and waits for its reply until the deadline, sending the same
 * frame again after a lost connection. NNG_ETIMEDOUT when time runs out. */
static int exchange(orch_rpc_client *c, const frame *f, uint32_t timeout_ms, nng_msg **reply)
{
    cslot *s = borrow(c);
    if (!s)
        return NNG_ENOMEM;
    uint64_t deadline = orch_mono_ms() + timeout_ms;
    uint64_t backoff = 10;
    int rv;
    for (;;) {
        rv = attempt(s, f, deadline, reply);
        if (!connection_lost(rv))
            break;
        uint64_t left = orch_deadline_left_ms(deadline);
        if (left == 0) {
            rv = NNG_ETIMEDOUT;
            break;
        }
        nng_msleep((nng_duration)(backoff < left ? backoff : left));
        backoff = backoff < 200 ? backoff * 2 : 200;
    }
    give_back(c, s);
    return rv;
}

orch_err orch_rpc_raw(orch_rpc_client *c, const void *frame_bytes, size_t len, uint32_t timeout_ms,
                      void **reply, size_t *reply_len)
{
    nng_msg *m = NULL;
    frame f = { .raw = frame_bytes, .len = len };
    int rv = exchange(c, &f, timeout_ms ? timeout_ms : c->default_timeout_ms, &m);
    if (rv == NNG_ETIMEDOUT)
        return ORCH_ETIMEDOUT;
    if (rv != 0)
        return rv == NNG_ENOMEM ? ORCH_ENOMEM : ORCH_EIO;
    size_t n = nng_msg_len(m);
    void *buf = malloc(n ? n : 1);
    if (!buf) {
        nng_msg_free(m);
        return ORCH_ENOMEM;
    }
    memcpy(buf, nng_msg_body(m), n);
    nng_msg_free(m);
    *reply = buf;
    *reply_len = n;
    return ORCH_OK;
}

static orch_code set_status(orch_rpc_status *st, orch_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static orch_code set_status(orch_rpc_status *st, orch_code code, const char *fmt, ...)
{
    if (st) {
        va_list ap;
        va_start(ap, fmt);
        st->code = code;
        vsnprintf(st->message, sizeof st->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Decodes a reply envelope for request `rid` into st and *reply. */
static orch_code decode_reply(const uint8_t *buf, size_t len, const char *rid,
                              const ProtobufCMessageDescriptor *reply_desc, orch_rpc_status *st,
                              ProtobufCMessage **reply)
{
    Orch__V1__ReplyEnvelope *rep = orch__v1__reply_envelope__unpack(NULL, len, buf);
    if (!rep)
        return set_status(st, ORCH_CODE_INTERNAL, "reply is not an orch.v1.ReplyEnvelope");
    orch_code code = rep->status ? (orch_code)rep->status->code : ORCH_CODE_UNKNOWN;
    if (rep->request_id[0] && strcmp(rep->request_id, rid) != 0) {
        code = set_status(st, ORCH_CODE_INTERNAL, "reply carries request id %s, sent %s",
                          rep->request_id, rid);
    } else if (code != ORCH_CODE_OK) {
        set_status(st, code, "%s", rep->status ? rep->status->message : "no status");
    } else if (reply_desc && reply) {
        *reply = protobuf_c_message_unpack(reply_desc, NULL, rep->payload.len, rep->payload.data);
        if (!*reply)
            code = set_status(st, ORCH_CODE_INTERNAL, "reply payload does not decode as %s",
                              reply_desc->name);
        else
            set_status(st, code, "%s", "");
    } else {
        set_status(st, code, "%s", "");
    }
    orch__v1__reply_envelope__free_unpacked(rep, NULL);
    return code;
}

/* The envelope of a call of `method` with the packed request `payload`,
 * whose strings point into `rid` and the client. */
static void fill_envelope(const orch_rpc_client *c, Orch__V1__RequestEnvelope *env,
                          const char *method, char *rid, uint32_t timeout,
                          const orch_rpc_call_opts *opts, uint8_t *payload, size_t plen)
{
    env->method = (char *)method;
    env->request_id = rid;
    env->timeout_ms = timeout;
    /* Always an absolute deadline: a request that waited in a socket buffer
     * past it is refused by the server instead of run for nobody. */
    uint64_t abs = orch_wall_ms() + timeout;
    if (opts && opts->deadline_unix_ms && opts->deadline_unix_ms < abs)
        abs = opts->deadline_unix_ms;
    env->deadline_unix_ms = abs;
    env->auth_token = c->auth_token ? c->auth_token : (char *)"";
    env->payload.data = payload;
    env->payload.len = plen;
}

orch_code orch_rpc_invoke(orch_rpc_client *c, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *reply_desc,
                          const orch_rpc_call_opts *opts, orch_rpc_status *st,
                          ProtobufCMessage **reply)
{
    Orch__V1__RequestEnvelope env = ORCH__V1__REQUEST_ENVELOPE__INIT;
    char rid[ORCH__RPC_ID_HEX + 1];
    uint8_t small[256]; /* most payloads: no allocation */
    uint32_t timeout = opts && opts->timeout_ms ? opts->timeout_ms : c->default_timeout_ms;

    if (opts && opts->request_id) {
        snprintf(rid, sizeof rid, "%s", opts->request_id);
    } else if (orch__rpc_request_id(rid) != ORCH_OK) {
        return set_status(st, ORCH_CODE_INTERNAL, "no randomness for a request id");
    }
    size_t plen = req ? protobuf_c_message_get_packed_size(req) : 0;
    uint8_t *payload = plen <= sizeof small ? small : malloc(plen);
    if (!payload)
        return set_status(st, ORCH_CODE_RESOURCE_EXHAUSTED, "out of memory");
    if (req)
        protobuf_c_message_pack(req, payload);
    fill_envelope(c, &env, method, rid, timeout, opts, payload, plen);
    frame f = { .env = &env, .len = orch__v1__request_envelope__get_packed_size(&env) };

    nng_msg *m = NULL;
    int rv = exchange(c, &f, timeout, &m);
    if (payload != small)
        free(payload);
    if (rv == NNG_ETIMEDOUT)
        return set_status(st, ORCH_CODE_DEADLINE_EXCEEDED, "no reply from %s within %u ms", c->url,
                          timeout);
    if (rv != 0)
        return set_status(st, ORCH_CODE_UNAVAILABLE, "%s: %s", c->url, nng_strerror(rv));
    orch_code code = decode_reply(nng_msg_body(m), nng_msg_len(m), rid, reply_desc, st, reply);
    nng_msg_free(m);
    return code;
}
