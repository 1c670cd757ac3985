/*
 * rpc_bench.c - the cost of the orch RPC layer over a raw NNG round trip.
 *
 * Measures, in one run, two stacks carrying the same request bytes over tcp
 * on 127.0.0.1:
 *   orch  orch.v1.HealthService/Check on a running lease-service through
 *         orch_rpc_invoke(): request id, envelope pack, NNG, the server's
 *         context, hand-off to a worker thread, dispatch through the protoc-c
 *         descriptors, the handler, the reply envelope, client decode;
 *   raw   an NNG REQ/REP echo of the packed RequestEnvelope of that call
 *         (bench_echo.h), called as the library's client calls: one REQ
 *         socket, one context per caller, resend disabled.
 * Two modes: one caller, and K callers sharing one client (one REQ socket).
 * Each round runs both modes; within a mode the two stacks take turns in
 * slices (raw, orch, orch, raw, ...), so that the drift of this machine
 * over seconds touches both alike, and the stack that starts alternates from
 * round to round. The report gives the medians of the rounds
 * (bench_report.h). It also reads from /proc the resident memory of the
 * services named with --pids, and the CPU time and context switches per
 * call of both servers and of this process.
 *
 * It prints figures and never passes or fails on them. Exit status: 0 when
 * every call succeeded, 1 when a call or a setup step failed, 2 on bad usage.
 * Threading: the main thread drives; the callers of a slice are joined before
 * the next slice starts. Every loop is bounded by a count or a deadline.
 */
#include <errno.h>
#include <getopt.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/v1/envelope.pb-c.h"
#include "orch/v1/health.pb-c.h"
#include "orch/clock.h"
#include "orch/ident.h"
#include "orch/rpc.h"
#include "bench_echo.h"
#include "bench_proc.h"
#include "bench_report.h"

#define MAX_MSG_BYTES    (1u << 20) /* NNG_OPT_RECVMAXSZ on every socket */
#define ECHO_CONTEXTS    64         /* as the services' ORCH_RPC_CONCURRENCY default */
#define LOCAL_ITERATIONS 20000
#define MAX_CALLS        10000000u
#define MAX_INFLIGHT     256u

/* Both stacks, as the callers see them; borrowed by the callers. */
typedef struct stacks {
    orch_rpc_client *orch;
    nng_socket raw; /* REQ socket dialed to the echo child */
    pid_t server[NSTACKS];
    const uint8_t *frame;
    size_t frame_len;
    unsigned timeout_ms;
} stacks;

/* Holds the callers after their warm-up until the main thread opens it. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready; /* callers waiting */
    bool open;
} gate;

/* One calling thread. */
typedef struct caller {
    const stacks *st;
    int stack;
    nng_ctx ctx; /* raw only */
    nng_aio *aio;
    unsigned warmup, n;
    uint64_t *lat_ns; /* n entries */
    unsigned done;
    uint64_t end_ns;
    gate *start;
    atomic_bool *stop;
    pthread_t tid;
    char err[320];
} caller;

/* What the server and this process used so far, read together. */
typedef struct sample {
    bench_use srv, cli; /* srv.switches < 0: unknown */
} sample;

static sample take_sample(pid_t server)
{
    sample s = { .srv = { -1, -1 }, .cli = bench_self_use() };
    if (server > 0)
        s.srv = bench_proc_use(server);
    return s;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- one call on each stack --------------------------------------------------- */

static bool failf(caller *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool failf(caller *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return false;
}

/* The exchange of the library's client (rpc_client.c), on our own context. */
static bool raw_call(caller *c)
{
    const stacks *st = c->st;
    nng_msg *m;
    int rv = nng_msg_alloc(&m, st->frame_len);
    if (rv != 0)
        return failf(c, "raw: nng_msg_alloc: %s", nng_strerror(rv));
    memcpy(nng_msg_body(m), st->frame, st->frame_len);
    nng_aio_set_timeout(c->aio, (nng_duration)st->timeout_ms);
    nng_aio_set_msg(c->aio, m);
    nng_ctx_send(c->ctx, c->aio);
    nng_aio_wait(c->aio);
    if ((rv = nng_aio_result(c->aio)) != 0) {
        nng_msg_free(nng_aio_get_msg(c->aio));
        return failf(c, "raw: send: %s", nng_strerror(rv));
    }
    nng_ctx_recv(c->ctx, c->aio);
    nng_aio_wait(c->aio);
    if ((rv = nng_aio_result(c->aio)) != 0)
        return failf(c, "raw: recv: %s", nng_strerror(rv));
    m = nng_aio_get_msg(c->aio);
    size_t len = nng_msg_len(m);
    nng_msg_free(m);
    if (len != st->frame_len)
        return failf(c, "raw: echo of %zu bytes for %zu sent", len, st->frame_len);
    return true;
}

/* orch_rpc_invoke() as orchctl calls it; the reply must say SERVING. */
static bool orch_call(caller *c)
{
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    orch_rpc_call_opts o = { .timeout_ms = c->st->timeout_ms };
    orch_rpc_status status;
    ProtobufCMessage *reply = NULL;
    orch_code code =
        orch_rpc_invoke(c->st->orch, BENCH_METHOD, &req.base,
                        &orch__v1__health_check_response__descriptor, &o, &status, &reply);
    if (code != ORCH_CODE_OK)
        return failf(c, "orch: %s: %s", orch_code_name(code), status.message);
    const Orch__V1__HealthCheckResponse *r = (const Orch__V1__HealthCheckResponse *)reply;
    bool serving = r->status == ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    protobuf_c_message_free_unpacked(reply, NULL);
    return serving ? true : failf(c, "orch: lease-service is not SERVING");
}

static bool call_once(caller *c)
{
    return c->stack == STACK_RAW ? raw_call(c) : orch_call(c);
}

/* ---- a mode: K callers, warm-up, start gate, timed calls ------------------------ */

static void *caller_main(void *arg)
{
    caller *c = arg;
    bool ok = true;
    for (unsigned i = 0; ok && i < c->warmup && !atomic_load(c->stop); i++)
        ok = call_once(c);
    if (!ok)
        atomic_store(c->stop, true);
    pthread_mutex_lock(&c->start->mu);
    c->start->ready++;
    pthread_cond_broadcast(&c->start->cv);
    while (!c->start->open)
        pthread_cond_wait(&c->start->cv, &c->start->mu);
    pthread_mutex_unlock(&c->start->mu);
    for (unsigned i = 0; ok && i < c->n && !atomic_load(c->stop); i++) {
        uint64_t t0 = orch_mono_ns();
        ok = call_once(c);
        c->lat_ns[i] = orch_mono_ns() - t0;
        if (ok)
            c->done = i + 1;
    }
    c->end_ns = orch_mono_ns();
    if (!ok)
        atomic_store(c->stop, true);
    return NULL;
}

static void caller_close(caller *c)
{
    if (c->aio) {
        nng_aio_free(c->aio);
        nng_ctx_close(c->ctx);
    }
    free(c->lat_ns);
}

static bool caller_open(caller *c, const stacks *st, int stack, unsigned warmup, unsigned n)
{
    c->st = st;
    c->stack = stack;
    c->warmup = warmup;
    c->n = n;
    c->lat_ns = calloc(n, sizeof *c->lat_ns);
    if (!c->lat_ns)
        return failf(c, "out of memory");
    if (stack != STACK_RAW)
        return true;
    int rv = nng_ctx_open(&c->ctx, st->raw);
    if (rv != 0)
        return failf(c, "nng_ctx_open: %s", nng_strerror(rv));
    nng_ctx_set_ms(c->ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    if ((rv = nng_aio_alloc(&c->aio, NULL, NULL)) != 0) {
        nng_ctx_close(c->ctx);
        return failf(c, "nng_aio_alloc: %s", nng_strerror(rv));
    }
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n-1], n >= 1, in microseconds. */
static double pct_us(const uint64_t *v, size_t n, double p)
{
    size_t k = (size_t)(p * (double)n + 0.999999);
    k = k == 0 ? 0 : k - 1;
    return (double)v[k < n ? k : n - 1] / 1000.0;
}

/* What the slices of one stack in one mode add up to. */
typedef struct accum {
    uint64_t *lat_ns; /* every timed call */
    size_t n, cap;
    uint64_t busy_ns;   /* summed durations of the slices */
    bench_use srv, cli; /* used during the slices; srv.switches < 0: unknown */
} accum;

static bool accum_init(accum *a, size_t cap)
{
    *a = (accum){ .lat_ns = malloc((cap ? cap : 1) * sizeof *a->lat_ns), .cap = cap };
    return a->lat_ns != NULL;
}

/* Adds the callers' timed calls, the slice's duration and what it used. */
static void accum_add(accum *a, const caller *cs, unsigned k, uint64_t t0, const sample *before,
                      const sample *after)
{
    uint64_t end = t0;
    for (unsigned i = 0; i < k; i++) {
        size_t n = cs[i].done <= a->cap - a->n ? cs[i].done : a->cap - a->n;
        memcpy(a->lat_ns + a->n, cs[i].lat_ns, n * sizeof *a->lat_ns);
        a->n += n;
        end = cs[i].end_ns > end ? cs[i].end_ns : end;
    }
    a->busy_ns += end - t0;
    if (a->srv.switches >= 0 && before->srv.switches >= 0 &&
        after->srv.switches >= before->srv.switches) {
        a->srv.switches += after->srv.switches - before->srv.switches;
        a->srv.cpu_ns += after->srv.cpu_ns - before->srv.cpu_ns;
    } else {
        a->srv = (bench_use){ -1, -1 };
    }
    a->cli.switches += after->cli.switches - before->cli.switches;
    a->cli.cpu_ns += after->cli.cpu_ns - before->cli.cpu_ns;
}

/* Turns the accumulated calls into figures; sorts a->lat_ns. */
static void accum_figures(accum *a, bench_figures *out)
{
    size_t n = a->n ? a->n : 1;
    qsort(a->lat_ns, a->n, sizeof *a->lat_ns, cmp_u64);
    out->p50_us = a->n ? pct_us(a->lat_ns, n, 0.50) : 0.0;
    out->p90_us = a->n ? pct_us(a->lat_ns, n, 0.90) : 0.0;
    out->p99_us = a->n ? pct_us(a->lat_ns, n, 0.99) : 0.0;
    out->calls = a->n;
    out->calls_per_s = a->busy_ns ? (double)a->n * 1e9 / (double)a->busy_ns : 0.0;
    out->srv_switches = a->srv.switches >= 0 ? (double)a->srv.switches / (double)n : -1.0;
    out->srv_cpu_us = a->srv.switches >= 0 ? (double)a->srv.cpu_ns / 1000.0 / (double)n : -1.0;
    out->cli_switches = (double)a->cli.switches / (double)n;
    out->cli_cpu_us = (double)a->cli.cpu_ns / 1000.0 / (double)n;
}

/* Starts `k` callers, waits until all have warmed up, samples what the
 * processes used and opens the gate; after joining them, samples again. Returns
 * the instant the gate opened, or 0 when a thread could not start (the
 * started ones are told to stop). The callers are joined either way. */
static uint64_t start_and_join(caller *cs, unsigned k, gate *g, pid_t server, sample *before,
                               sample *after)
{
    unsigned started = 0;
    uint64_t t0 = 0;
    while (started < k && pthread_create(&cs[started].tid, NULL, caller_main, &cs[started]) == 0)
        started++;
    pthread_mutex_lock(&g->mu);
    if (started < k)
        atomic_store(cs[0].stop, true);
    while (started == k && g->ready < k)
        pthread_cond_wait(&g->cv, &g->mu);
    *before = take_sample(server);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (started == k)
        t0 = orch_mono_ns();
    else
        fprintf(stderr, "rpc_bench: cannot start %u threads\n", k);
    for (unsigned i = 0; i < started; i++)
        pthread_join(cs[i].tid, NULL);
    *after = take_sample(server);
    return t0;
}

/* One slice: `k` callers of `stack`, each `warmup` untimed then `n` timed
 * calls, added to `a`. Returns false, after a message on stderr, when a call
 * failed. */
static bool run_slice(const stacks *st, int stack, unsigned k, unsigned warmup, unsigned n,
                      accum *a)
{
    caller *cs = calloc(k, sizeof *cs);
    gate g = { .ready = 0, .open = false };
    atomic_bool stop;
    sample before, after;
    unsigned opened = 0;
    bool ok = cs != NULL;

    if (!cs)
        fprintf(stderr, "rpc_bench: out of memory\n");
    atomic_init(&stop, false);
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    for (; ok && opened < k; opened++) {
        cs[opened].stop = &stop;
        cs[opened].start = &g;
        if (!caller_open(&cs[opened], st, stack, warmup, n)) {
            fprintf(stderr, "rpc_bench: %s\n", cs[opened].err);
            caller_close(&cs[opened]);
            ok = false;
            break;
        }
    }
    uint64_t t0 = ok ? start_and_join(cs, k, &g, st->server[stack], &before, &after) : 0;
    ok = ok && t0 != 0;
    for (unsigned i = 0; ok && i < k; i++) {
        if (cs[i].err[0]) {
            fprintf(stderr, "rpc_bench: %s caller %u: %s\n", bench_stack_names[stack], i,
                    cs[i].err);
            ok = false;
        }
    }
    if (ok)
        accum_add(a, cs, k, t0, &before, &after);
    for (unsigned i = 0; i < opened; i++)
        caller_close(&cs[i]);
    free(cs);
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cv);
    return ok;
}

/* One mode of one round: both stacks, in slices whose order alternates, so
 * that drift on a scale of seconds touches both alike. `first` is the stack
 * of the first slice; `n` the timed calls of each caller in all. */
static bool run_mode(const bench_options *o, const stacks *st, int first, unsigned k,
                     unsigned warmup, unsigned n, bench_figures out[NSTACKS])
{
    accum a[NSTACKS];
    bool ok = accum_init(&a[0], (size_t)k * n);
    ok = accum_init(&a[1], (size_t)k * n) && ok;
    if (!ok)
        fprintf(stderr, "rpc_bench: out of memory for %zu latencies\n", (size_t)k * n);
    for (unsigned j = 0; ok && j < o->slices; j++) {
        unsigned nj = n / o->slices + (j < n % o->slices ? 1 : 0);
        /* All of the warm-up before the first slices, a little before later ones. */
        unsigned wj = j == 0 ? warmup : warmup / o->slices;
        for (int i = 0; ok && i < NSTACKS; i++) {
            int s = (first + (int)j + i) % NSTACKS;
            ok = run_slice(st, s, k, wj, nj, &a[s]);
        }
    }
    for (int s = 0; s < NSTACKS; s++) {
        if (ok)
            accum_figures(&a[s], &out[s]);
        free(a[s].lat_ns);
    }
    return ok;
}

static bool run_rounds(const bench_options *o, const stacks *st, bench_results *r)
{
    for (unsigned i = 0; i < o->rounds; i++) {
        r->first[i] = i % 2 ? STACK_ORCH : STACK_RAW;
        if (!run_mode(o, st, r->first[i], 1, o->warmup, o->calls, r->f[i][MODE_SEQ]) ||
            !run_mode(o, st, r->first[i], o->inflight, o->warmup / o->inflight, o->per_thread,
                      r->f[i][MODE_INFLIGHT]))
            return false;
        if (!o->json)
            bench_print_round(o, r, i);
    }
    return true;
}

/* ---- set-up ---------------------------------------------------------------------- */

/* Packs the RequestEnvelope of a Check call with request id `rid`, as
 * orch_rpc_invoke() builds it, into a malloc'ed buffer (caller frees). */
static uint8_t *pack_check_frame(const char *rid, unsigned timeout_ms, const char *token,
                                 size_t *len)
{
    Orch__V1__RequestEnvelope env = ORCH__V1__REQUEST_ENVELOPE__INIT;
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    size_t plen = orch__v1__health_check_request__get_packed_size(&req);
    uint8_t *payload = malloc(plen ? plen : 1);
    if (!payload)
        return NULL;
    env.method = (char *)BENCH_METHOD;
    env.request_id = (char *)rid;
    env.timeout_ms = timeout_ms;
    env.auth_token = (char *)(token ? token : "");
    env.payload.data = payload;
    env.payload.len = orch__v1__health_check_request__pack(&req, payload);
    *len = orch__v1__request_envelope__get_packed_size(&env);
    uint8_t *frame = malloc(*len ? *len : 1);
    if (frame)
        orch__v1__request_envelope__pack(&env, frame);
    free(payload);
    return frame;
}

/* Client-side CPU of an orch call's parts, without the network. */
static void measure_local(const uint8_t *reply, size_t reply_len, bench_local_costs *lc)
{
    char rid[33] = "0123456789abcdef0123456789abcdef";
    uint64_t t0 = orch_mono_ns();
    for (unsigned i = 0; i < LOCAL_ITERATIONS; i++)
        if (orch_random_hex(rid, 16) != ORCH_OK)
            break;
    lc->request_id_ns = (double)(orch_mono_ns() - t0) / LOCAL_ITERATIONS;

    t0 = orch_mono_ns();
    for (unsigned i = 0; i < LOCAL_ITERATIONS; i++) {
        size_t len;
        free(pack_check_frame(rid, 5000, NULL, &len));
    }
    lc->pack_ns = (double)(orch_mono_ns() - t0) / LOCAL_ITERATIONS;

    t0 = orch_mono_ns();
    for (unsigned i = 0; i < LOCAL_ITERATIONS; i++) {
        Orch__V1__ReplyEnvelope *rep = orch__v1__reply_envelope__unpack(NULL, reply_len, reply);
        if (!rep)
            break;
        Orch__V1__HealthCheckResponse *h =
            orch__v1__health_check_response__unpack(NULL, rep->payload.len, rep->payload.data);
        if (h)
            orch__v1__health_check_response__free_unpacked(h, NULL);
        orch__v1__reply_envelope__free_unpacked(rep, NULL);
    }
    lc->decode_ns = (double)(orch_mono_ns() - t0) / LOCAL_ITERATIONS;
}

static int raw_client_open(int port, nng_socket *out)
{
    char url[64];
    nng_socket s;
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    int rv = nng_req0_open(&s);
    if (rv != 0)
        return rv;
    if ((rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, MAX_MSG_BYTES)) != 0 ||
        (rv = nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
        (rv = nng_dial(s, url, NULL, 0)) != 0) {
        nng_close(s);
        return rv;
    }
    *out = s;
    return 0;
}

/* Opens the orch client and checks that the service answers; keeps the
 * reply of one Check (malloc'ed, caller frees) for its size and decoding. */
static bool open_orch(const bench_options *o, const uint8_t *frame, size_t frame_len,
                      orch_rpc_client **out, void **reply, size_t *reply_len)
{
    orch_rpc_client_opts co = { .max_msg_bytes = MAX_MSG_BYTES,
                                .default_timeout_ms = o->timeout_ms,
                                .auth_token = getenv("ORCH_RPC_AUTH_TOKEN") };
    if (orch_rpc_client_open(o->lease_url, &co, out) != ORCH_OK) {
        fprintf(stderr, "rpc_bench: bad lease-service address '%s'\n", o->lease_url);
        return false;
    }
    orch_err err = orch_rpc_raw(*out, frame, frame_len, o->timeout_ms, reply, reply_len);
    if (err != ORCH_OK) {
        fprintf(stderr, "rpc_bench: no Check reply from %s: %s\n", o->lease_url,
                orch_strerror(err));
        return false;
    }
    return true;
}

/* ---- options --------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out, "usage: rpc_bench [options]\n"
                 "  Compares the Check RPC of a running lease-service through the orch RPC\n"
                 "  layer with a raw NNG REQ/REP echo of the same request bytes, and reports\n"
                 "  the services' memory. Prints figures; exit 0 when every call succeeded.\n"
                 "\n"
                 "  --lease-url URL      lease-service RPC address (default $ORCH_LEASE_RPC_URL,\n"
                 "                       else tcp://127.0.0.1:7701)\n"
                 "  --pids LIST          lease=PID,stage=PID,guard=PID,launcher=PID: services\n"
                 "                       whose memory is reported (lease: also its CPU)\n"
                 "  --calls N            timed sequential calls per stack and round (20000)\n"
                 "  --warmup N           untimed calls before each measurement (2000; split\n"
                 "                       among the callers in flight)\n"
                 "  --inflight K         callers sharing one client in the second mode (16)\n"
                 "  --calls-per-thread N timed calls of each of the K callers (5000)\n"
                 "  --rounds R           rounds, the first stack alternating (3)\n"
                 "  --slices S           slices per mode and round; the two stacks take turns\n"
                 "                       slice by slice (10)\n"
                 "  --timeout MS         deadline of each call (5000)\n"
                 "  --json               one JSON document instead of text\n"
                 "  -h, --help           this help\n");
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

/* Parses "lease=PID,stage=PID,..." into pids[]. */
static bool parse_pids(const char *arg, pid_t pids[BENCH_NSERVICES])
{
    char *copy = strdup(arg), *save = NULL;
    bool ok = copy != NULL;
    for (char *tok = ok ? strtok_r(copy, ",", &save) : NULL; ok && tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        unsigned pid;
        int idx = -1;
        if (eq) {
            *eq = '\0';
            for (int i = 0; i < BENCH_NSERVICES; i++)
                if (strcmp(tok, bench_svc_names[i]) == 0)
                    idx = i;
        }
        ok = idx >= 0 && parse_uint(eq + 1, 1, 0x7fffffffu, &pid);
        if (ok)
            pids[idx] = (pid_t)pid;
        else
            fprintf(stderr, "rpc_bench: --pids: bad entry '%s' (lease|stage|guard|launcher=PID)\n",
                    tok);
    }
    free(copy);
    return ok;
}

/* Returns -1 to go on, else an exit status. */
static int parse_args(int argc, char **argv, bench_options *o)
{
    static const struct option longopts[] = {
        { "lease-url", required_argument, NULL, 'u' },
        { "pids", required_argument, NULL, 'p' },
        { "calls", required_argument, NULL, 'n' },
        { "warmup", required_argument, NULL, 'w' },
        { "inflight", required_argument, NULL, 'k' },
        { "calls-per-thread", required_argument, NULL, 't' },
        { "rounds", required_argument, NULL, 'r' },
        { "slices", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 'T' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *env = getenv("ORCH_LEASE_RPC_URL");
    *o = (bench_options){ .lease_url = env && env[0] ? env : "tcp://127.0.0.1:7701",
                          .calls = 20000,
                          .warmup = 2000,
                          .inflight = 16,
                          .per_thread = 5000,
                          .rounds = 3,
                          .slices = 10,
                          .timeout_ms = 5000,
                          .echo_contexts = ECHO_CONTEXTS };
    int ch, li = -1;
    bool ok = true;
    while (ok && (ch = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        switch (ch) {
        case 'u': o->lease_url = optarg; break;
        case 'p': ok = parse_pids(optarg, o->pids); break;
        case 'n': ok = parse_uint(optarg, 1, MAX_CALLS, &o->calls); break;
        case 'w': ok = parse_uint(optarg, 0, MAX_CALLS, &o->warmup); break;
        case 'k': ok = parse_uint(optarg, 1, MAX_INFLIGHT, &o->inflight); break;
        case 't': ok = parse_uint(optarg, 1, MAX_CALLS, &o->per_thread); break;
        case 'r': ok = parse_uint(optarg, 1, BENCH_MAX_ROUNDS, &o->rounds); break;
        case 's': ok = parse_uint(optarg, 1, 1000, &o->slices); break;
        case 'T': ok = parse_uint(optarg, 1, 600000, &o->timeout_ms); break;
        case 'j': o->json = true; break;
        case 'h': usage(stdout); return 0;
        default: ok = false; break;
        }
        if (!ok && ch != 'p' && ch != '?' && li >= 0)
            fprintf(stderr, "rpc_bench: bad value '%s' for --%s\n", optarg, longopts[li].name);
    }
    if (ok && optind < argc) {
        fprintf(stderr, "rpc_bench: unexpected argument '%s'\n", argv[optind]);
        ok = false;
    }
    if (ok && (o->slices > o->calls || o->slices > o->per_thread)) {
        fprintf(stderr, "rpc_bench: --slices exceeds --calls or --calls-per-thread\n");
        ok = false;
    }
    if (ok && (unsigned long long)o->inflight * o->per_thread > MAX_CALLS) {
        fprintf(stderr, "rpc_bench: --inflight x --calls-per-thread exceeds %u\n", MAX_CALLS);
        ok = false;
    }
    if (!ok) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* ---- main ------------------------------------------------------------------------ */

/* Idle memory of the services, which have been idle since they answered
 * their health check. */
static void read_idle_rss(const bench_options *o, bench_results *r)
{
    bool any = false;
    for (int i = 0; i < BENCH_NSERVICES; i++) {
        r->rss_idle[i] = -1.0;
        any = any || o->pids[i];
    }
    if (!any)
        return;
    sleep_ms(BENCH_IDLE_WAIT_MS);
    for (int i = 0; i < BENCH_NSERVICES; i++)
        if (o->pids[i])
            r->rss_idle[i] = bench_proc_mib(o->pids[i], "VmRSS");
}

int main(int argc, char **argv)
{
    bench_options o;
    static bench_results r;
    stacks st = { .orch = NULL };
    void *reply = NULL;
    char rid[33];
    int rc = parse_args(argc, argv, &o), rv;
    if (rc >= 0)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    read_idle_rss(&o, &r);

    uint8_t *frame =
        orch_random_hex(rid, 16) == ORCH_OK
            ? pack_check_frame(rid, o.timeout_ms, getenv("ORCH_RPC_AUTH_TOKEN"), &r.frame_len)
            : NULL;
    if (!frame) {
        fprintf(stderr, "rpc_bench: cannot build the request frame\n");
        return 1;
    }
    rc = 1;
    /* Before this process uses NNG: the child must not inherit its threads. */
    pid_t echo = bench_echo_spawn(MAX_MSG_BYTES, o.echo_contexts, &r.echo_port);
    if (echo < 0)
        goto out_frame;
    if (!open_orch(&o, frame, r.frame_len, &st.orch, &reply, &r.reply_len))
        goto out_orch;
    if ((rv = raw_client_open(r.echo_port, &st.raw)) != 0) {
        fprintf(stderr, "rpc_bench: raw client: %s\n", nng_strerror(rv));
        goto out_orch;
    }
    st.server[STACK_RAW] = echo;
    st.server[STACK_ORCH] = o.pids[0];
    st.frame = frame;
    st.frame_len = r.frame_len;
    st.timeout_ms = o.timeout_ms;
    measure_local(reply, r.reply_len, &r.local);
    if (!o.json)
        bench_print_header(&o, &r);

    if (run_rounds(&o, &st, &r)) {
        rc = 0;
        if (o.pids[0]) {
            r.lease_rss_after = bench_proc_mib(o.pids[0], "VmRSS");
            r.lease_hwm_after = bench_proc_mib(o.pids[0], "VmHWM");
        }
        if (o.json)
            bench_print_json(&o, &r);
        else
            bench_print_summary(&o, &r);
    }
    nng_close(st.raw);
out_orch:
    orch_rpc_client_close(st.orch);
    bench_echo_reap(echo);
    free(reply);
out_frame:
    free(frame);
    return rc;
}
