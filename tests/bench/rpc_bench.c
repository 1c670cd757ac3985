/*
 * rpc_bench.c - the cost of the orch RPC layer over a raw NNG round trip.
 *
 * Measures, in one run, three stacks carrying the same call over tcp on
 * 127.0.0.1:
 *   orch  orch.v1.HealthService/Check on a running lease-service through
 *         orch_rpc_invoke(): request id, envelope pack, NNG, the server's
 *         context, decoding and dispatch through the protoc-c descriptors,
 *         the handler (on NNG's thread: HealthService is nonblocking), the
 *         reply envelope, client decode;
 *   orch-worker  the same call to an orch RPC server whose HealthService is
 *         not nonblocking (bench_blocking.h): the path of every handler
 *         that may block, with the hand-off to a worker thread, which
 *         sends the reply; its handler can sleep (--block-us);
 *   raw   an NNG REQ/REP echo of the packed RequestEnvelope of that call
 *         (bench_echo.h), called as the library's client calls: one REQ
 *         socket, one context per caller, resend disabled.
 * Two modes: one caller, and K callers sharing one client (one REQ socket).
 * Each round runs both modes; within a mode the stacks take turns in
 * slices (raw, orch, orch-worker, orch, orch-worker, raw, ...), so that the drift of this machine
 * over seconds touches both alike, and the stack that starts alternates from
 * round to round. The report gives the medians of the rounds
 * (bench_report.h). It also reads from /proc the resident memory of the
 * services named with --pids, and the CPU time and context switches per
 * call of the servers and of this process.
 *
 * With --tls-lease-url, a third measurement compares the same Check over
 * tcp:// and over tls+tcp:// (mutual TLS, bench_tls.h) and prints what TLS
 * adds per round trip.
 * It prints figures and never passes or fails on them. Exit status: 0 when
 * every call succeeded, 1 when a call or a setup step failed, 2 on bad usage.
 * Threading: the main thread drives; the callers of a slice are joined before
 * the next slice starts. Every loop is bounded by a count or a deadline.
 */
#include <getopt.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/envelope.pb-c.h"
#include "orch/v1/health.pb-c.h"
#include "orch/clock.h"
#include "orch/ident.h"
#include "orch/rpc.h"
#include "rpc_client_int.h"
#include "bench_blocking.h"
#include "bench_common.h"
#include "bench_echo.h"
#include "bench_proc.h"
#include "bench_report.h"
#include "bench_tls.h"

#define MAX_MSG_BYTES    (1u << 20) /* NNG_OPT_RECVMAXSZ on every socket */
#define ECHO_CONTEXTS    64         /* as the services' ORCH_RPC_CONCURRENCY default */
#define LOCAL_ITERATIONS 20000
#define MAX_CALLS        10000000u
#define MAX_INFLIGHT     256u
#define WORKERS          8 /* as the services' ORCH_RPC_WORKERS default */

/* Both stacks, as the callers see them; borrowed by the callers. */
typedef struct stacks {
    orch_rpc_client *orch;   /* to lease-service */
    orch_rpc_client *worker; /* to the worker-path server */
    nng_socket raw;          /* REQ socket dialed to the echo child */
    pid_t server[NSTACKS];
    const uint8_t *frame;
    size_t frame_len;
    unsigned timeout_ms;
} stacks;

/* One calling thread's own state; its bench_worker points here. */
typedef struct caller {
    const stacks *st;
    orch_rpc_client *client; /* orch and orch-worker */
    nng_ctx ctx;             /* raw only */
    nng_aio *aio;
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

/* ---- one call on each stack --------------------------------------------------- */

/* The exchange of the library's client (rpc_client.c), on our own context. */
static bool raw_call(bench_worker *w)
{
    caller *c = w->arg;
    const stacks *st = c->st;
    nng_msg *m;
    int rv = nng_msg_alloc(&m, st->frame_len);
    if (rv != 0)
        return bench_failf(w, "raw: nng_msg_alloc: %s", nng_strerror(rv));
    memcpy(nng_msg_body(m), st->frame, st->frame_len);
    nng_aio_set_timeout(c->aio, (nng_duration)st->timeout_ms);
    nng_aio_set_msg(c->aio, m);
    nng_ctx_send(c->ctx, c->aio);
    nng_aio_wait(c->aio);
    if ((rv = nng_aio_result(c->aio)) != 0) {
        nng_msg_free(nng_aio_get_msg(c->aio));
        return bench_failf(w, "raw: send: %s", nng_strerror(rv));
    }
    nng_ctx_recv(c->ctx, c->aio);
    nng_aio_wait(c->aio);
    if ((rv = nng_aio_result(c->aio)) != 0)
        return bench_failf(w, "raw: recv: %s", nng_strerror(rv));
    m = nng_aio_get_msg(c->aio);
    size_t len = nng_msg_len(m);
    nng_msg_free(m);
    if (len != st->frame_len)
        return bench_failf(w, "raw: echo of %zu bytes for %zu sent", len, st->frame_len);
    return true;
}

/* orch_rpc_invoke() as orchctl calls it; the reply must say SERVING. */
static bool orch_call(bench_worker *w)
{
    const caller *c = w->arg;
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    orch_rpc_call_opts o = { .timeout_ms = c->st->timeout_ms };
    orch_rpc_status status;
    ProtobufCMessage *reply = NULL;
    orch_code code =
        orch_rpc_invoke(c->client, BENCH_METHOD, &req.base,
                        &orch__v1__health_check_response__descriptor, &o, &status, &reply);
    if (code != ORCH_CODE_OK)
        return bench_failf(w, "%s: %s", orch_code_name(code), status.message);
    const Orch__V1__HealthCheckResponse *r = (const Orch__V1__HealthCheckResponse *)reply;
    bool serving =
        r->status == ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_SERVING;
    protobuf_c_message_free_unpacked(reply, NULL);
    return serving ? true : bench_failf(w, "the server is not SERVING");
}

/* ---- a mode: K callers, warm-up, start gate, timed calls ------------------------ */

static void caller_close(caller *c, bench_worker *w)
{
    if (c->aio) {
        nng_aio_free(c->aio);
        nng_ctx_close(c->ctx);
    }
    bench_worker_free(w);
}

static bool caller_open(caller *c, bench_worker *w, const stacks *st, int stack, unsigned warmup,
                        unsigned n)
{
    c->st = st;
    c->client = stack == STACK_WORKER ? st->worker : st->orch;
    if (!bench_worker_init(w, stack == STACK_RAW ? raw_call : orch_call, c, warmup, n))
        return false;
    if (stack != STACK_RAW)
        return true;
    int rv = nng_ctx_open(&c->ctx, st->raw);
    if (rv != 0)
        return bench_failf(w, "nng_ctx_open: %s", nng_strerror(rv));
    nng_ctx_set_ms(c->ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    if ((rv = nng_aio_alloc(&c->aio, NULL, NULL)) != 0) {
        nng_ctx_close(c->ctx);
        return bench_failf(w, "nng_aio_alloc: %s", nng_strerror(rv));
    }
    return true;
}

/* What the slices of one stack in one mode add up to. */
typedef struct accum {
    bench_accum calls;
    bench_use srv, cli; /* used during the slices; srv.switches < 0: unknown */
} accum;

static bool accum_init(accum *a, size_t cap)
{
    *a = (accum){ .srv = { 0, 0 } };
    return bench_accum_init(&a->calls, cap);
}

/* Adds the callers' timed calls, the slice's duration and what it used. */
static void accum_add(accum *a, const bench_worker *ws, unsigned k, uint64_t t0,
                      const sample *before, const sample *after)
{
    bench_accum_add(&a->calls, ws, k, t0);
    bench_use_add(&a->srv, &before->srv, &after->srv);
    a->cli.switches += after->cli.switches - before->cli.switches;
    a->cli.cpu_ns += after->cli.cpu_ns - before->cli.cpu_ns;
}

/* Turns the accumulated calls into figures; sorts the latencies. */
static void accum_figures(accum *a, bench_figures *out)
{
    bench_lat l = bench_accum_lat(&a->calls);
    double n = (double)(l.n ? l.n : 1);
    out->p50_us = l.p50_us;
    out->p90_us = l.p90_us;
    out->p99_us = l.p99_us;
    out->calls = l.n;
    out->calls_per_s = l.per_s;
    out->srv_switches = a->srv.switches >= 0 ? (double)a->srv.switches / n : -1.0;
    out->srv_cpu_us = a->srv.switches >= 0 ? (double)a->srv.cpu_ns / 1000.0 / n : -1.0;
    out->cli_switches = (double)a->cli.switches / n;
    out->cli_cpu_us = (double)a->cli.cpu_ns / 1000.0 / n;
}

/* The samples of one slice, taken around its timed calls. */
typedef struct slice_samples {
    pid_t server;
    sample before, after;
} slice_samples;

static void sample_slice(void *arg, bool after)
{
    slice_samples *ss = arg;
    *(after ? &ss->after : &ss->before) = take_sample(ss->server);
}

/* One slice: `k` callers of `stack`, each `warmup` untimed then `n` timed
 * calls, added to `a`. Returns false, after a message on stderr, when a call
 * failed. */
static bool run_slice(const stacks *st, int stack, unsigned k, unsigned warmup, unsigned n,
                      accum *a)
{
    caller *cs = calloc(k, sizeof *cs);
    bench_worker *ws = calloc(k, sizeof *ws);
    slice_samples ss = { .server = st->server[stack] };
    unsigned opened = 0;
    bool ok = cs != NULL && ws != NULL;

    if (!ok)
        fprintf(stderr, "rpc_bench: out of memory\n");
    for (; ok && opened < k; opened++) {
        if (!caller_open(&cs[opened], &ws[opened], st, stack, warmup, n)) {
            fprintf(stderr, "rpc_bench: %s\n", ws[opened].err);
            caller_close(&cs[opened], &ws[opened]);
            ok = false;
            break;
        }
    }
    uint64_t t0 = ok ? bench_run_workers(ws, k, sample_slice, &ss) : 0;
    ok = ok && t0 != 0;
    for (unsigned i = 0; ok && i < k; i++) {
        if (ws[i].err[0]) {
            fprintf(stderr, "rpc_bench: %s caller %u: %s\n", bench_stack_names[stack], i,
                    ws[i].err);
            ok = false;
        }
    }
    if (ok)
        accum_add(a, ws, k, t0, &ss.before, &ss.after);
    for (unsigned i = 0; i < opened; i++)
        caller_close(&cs[i], &ws[i]);
    free(cs);
    free(ws);
    return ok;
}

/* One mode of one round: both stacks, in slices whose order alternates, so
 * that drift on a scale of seconds touches both alike. `first` is the stack
 * of the first slice; `n` the timed calls of each caller in all. */
static bool run_mode(const bench_options *o, const stacks *st, int first, unsigned k,
                     unsigned warmup, unsigned n, bench_figures out[NSTACKS])
{
    accum a[NSTACKS];
    bool ok = true;
    for (int s = 0; s < NSTACKS; s++)
        ok = accum_init(&a[s], (size_t)k * n) && ok;
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
        bench_accum_free(&a[s].calls);
    }
    return ok;
}

static bool run_rounds(const bench_options *o, const stacks *st, bench_results *r)
{
    for (unsigned i = 0; i < o->rounds; i++) {
        r->first[i] = (int)(i % NSTACKS);
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
    char rid[ORCH__RPC_ID_HEX + 1] = "0123456789abcdef0123456789abcdef";
    uint64_t t0 = orch_mono_ns();
    for (unsigned i = 0; i < LOCAL_ITERATIONS; i++)
        if (orch__rpc_request_id(rid) != ORCH_OK)
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

/* Opens an orch client of `url` and checks that the server answers; keeps
 * the reply of one Check (malloc'ed, caller frees) for its size and
 * decoding. */
static bool open_orch(const bench_options *o, const char *url, const uint8_t *frame,
                      size_t frame_len, orch_rpc_client **out, void **reply, size_t *reply_len)
{
    orch_rpc_client_opts co = { .max_msg_bytes = MAX_MSG_BYTES,
                                .default_timeout_ms = o->timeout_ms,
                                .auth_token = getenv("ORCH_RPC_AUTH_TOKEN") };
    if (orch_rpc_client_open(url, &co, out) != ORCH_OK) {
        fprintf(stderr, "rpc_bench: bad address '%s'\n", url);
        return false;
    }
    orch_err err = orch_rpc_raw(*out, frame, frame_len, o->timeout_ms, reply, reply_len);
    if (err != ORCH_OK) {
        fprintf(stderr, "rpc_bench: no Check reply from %s: %s\n", url, orch_strerror(err));
        return false;
    }
    return true;
}

/* The worker-path server's client, checked like lease-service's. */
static bool open_worker(const bench_options *o, int port, const uint8_t *frame, size_t frame_len,
                        orch_rpc_client **out)
{
    char url[64];
    void *reply = NULL;
    size_t len = 0;
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    bool ok = open_orch(o, url, frame, frame_len, out, &reply, &len);
    free(reply);
    return ok;
}

/* The clients of the three stacks, checked; fills the rest of `st`. The
 * reply of lease-service's first Check goes to *reply (caller frees). */
static bool open_clients(const bench_options *o, bench_results *r, const uint8_t *frame, stacks *st,
                         void **reply)
{
    if (!open_orch(o, o->lease_url, frame, r->frame_len, &st->orch, reply, &r->reply_len) ||
        !open_worker(o, r->worker_port, frame, r->frame_len, &st->worker))
        return false;
    int rv = raw_client_open(r->echo_port, &st->raw);
    if (rv != 0) {
        fprintf(stderr, "rpc_bench: raw client: %s\n", nng_strerror(rv));
        return false;
    }
    st->frame = frame;
    st->frame_len = r->frame_len;
    st->timeout_ms = o->timeout_ms;
    return true;
}

/* ---- options --------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out, "usage: rpc_bench [options]\n"
                 "  Compares the Check RPC of a running lease-service through the orch RPC\n"
                 "  layer (answered on NNG's thread) and of a child orch server that hands it\n"
                 "  to a worker thread (orch-worker) with a raw NNG REQ/REP echo of the same\n"
                 "  request bytes, and reports the services' memory. Prints figures; exit 0\n"
                 "  when every call succeeded.\n"
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
                 "  --workers N          worker threads of the orch-worker server (8)\n"
                 "  --block-us N         its Check handler sleeps N us before replying (0)\n"
                 "  --json               one JSON document instead of text (the TLS line\n"
                 "                       then goes to stderr)\n"
                 "  --tls-lease-url URL  also time Check against this lease-service, which\n"
                 "                       serves mutual TLS, beside --lease-url over tcp\n"
                 "  --tls-cert-dir DIR   tests/support/tls_certs.sh's files for it\n"
                 "  -h, --help           this help\n");
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
        ok = idx >= 0 && bench_parse_uint(eq + 1, 1, 0x7fffffffu, &pid);
        if (ok)
            pids[idx] = (pid_t)pid;
        else
            fprintf(stderr, "rpc_bench: --pids: bad entry '%s' (lease|stage|guard|launcher=PID)\n",
                    tok);
    }
    free(copy);
    return ok;
}

/* Applies option `ch` (getopt_long's value) with its argument; false when
 * the value is bad or the option unknown. */
static bool apply_opt(int ch, const char *arg, bench_options *o)
{
    switch (ch) {
    case 'u': o->lease_url = arg; return true;
    case 'p': return parse_pids(arg, o->pids);
    case 'n': return bench_parse_uint(arg, 1, MAX_CALLS, &o->calls);
    case 'w': return bench_parse_uint(arg, 0, MAX_CALLS, &o->warmup);
    case 'k': return bench_parse_uint(arg, 1, MAX_INFLIGHT, &o->inflight);
    case 't': return bench_parse_uint(arg, 1, MAX_CALLS, &o->per_thread);
    case 'r': return bench_parse_uint(arg, 1, BENCH_MAX_ROUNDS, &o->rounds);
    case 's': return bench_parse_uint(arg, 1, 1000, &o->slices);
    case 'T': return bench_parse_uint(arg, 1, 600000, &o->timeout_ms);
    case 'W': {
        unsigned n;
        bool ok = bench_parse_uint(arg, 1, 256, &n);
        o->workers = (int)n;
        return ok;
    }
    case 'B': return bench_parse_uint(arg, 0, 1000000, &o->block_us);
    case 'j': o->json = true; return true;
    case 'L': o->tls_url = arg; return true;
    case 'D': o->tls_dir = arg; return true;
    default: return false;
    }
}

/* After the options: no stray argument, the counts consistent. False after
 * a message. */
static bool check_args(int argc, char **argv, const bench_options *o)
{
    if (optind < argc) {
        fprintf(stderr, "rpc_bench: unexpected argument '%s'\n", argv[optind]);
        return false;
    }
    if (o->slices > o->calls || o->slices > o->per_thread) {
        fprintf(stderr, "rpc_bench: --slices exceeds --calls or --calls-per-thread\n");
        return false;
    }
    if ((unsigned long long)o->inflight * o->per_thread > MAX_CALLS) {
        fprintf(stderr, "rpc_bench: --inflight x --calls-per-thread exceeds %u\n", MAX_CALLS);
        return false;
    }
    return true;
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
        { "workers", required_argument, NULL, 'W' },
        { "block-us", required_argument, NULL, 'B' },
        { "json", no_argument, NULL, 'j' },
        { "tls-lease-url", required_argument, NULL, 'L' },
        { "tls-cert-dir", required_argument, NULL, 'D' },
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
                          .echo_contexts = ECHO_CONTEXTS,
                          .workers = WORKERS };
    int ch, li = -1;
    bool ok = true;
    while (ok && (ch = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return 0;
        }
        ok = apply_opt(ch, optarg, o);
        if (!ok && ch != 'p' && ch != '?' && li >= 0)
            fprintf(stderr, "rpc_bench: bad value '%s' for --%s\n", optarg, longopts[li].name);
    }
    ok = ok && check_args(argc, argv, o);
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
    bench_sleep_ms(BENCH_IDLE_WAIT_MS);
    for (int i = 0; i < BENCH_NSERVICES; i++)
        if (o->pids[i])
            r->rss_idle[i] = bench_proc_mib(o->pids[i], "VmRSS");
}

/* After the rounds: lease-service's memory, then the figures. */
static void report(const bench_options *o, bench_results *r)
{
    if (o->pids[0]) {
        r->lease_rss_after = bench_proc_mib(o->pids[0], "VmRSS");
        r->lease_hwm_after = bench_proc_mib(o->pids[0], "VmHWM");
    }
    if (o->json)
        bench_print_json(o, r);
    else
        bench_print_summary(o, r);
}

/* tcp:// against tls+tcp://, one caller (bench_tls.h); the line goes to
 * stdout, or stderr beside --json's document. */
static bool report_tls(const bench_options *o)
{
    bench_tls_figures f;
    if (!bench_tls_compare(o->lease_url, o->tls_url, o->tls_dir ? o->tls_dir : ".", o->calls,
                           o->warmup, o->slices, o->timeout_ms, &f))
        return false;
    fprintf(o->json ? stderr : stdout,
            "tls: Check, one caller, %lu calls each: tcp p50 %.1f us p99 %.1f us; tls+tcp (mutual) "
            "p50 %.1f us p99 %.1f us; TLS adds %.1f us per round trip (x%.2f)\n",
            f.calls, f.tcp_p50_us, f.tcp_p99_us, f.tls_p50_us, f.tls_p99_us,
            f.tls_p50_us - f.tcp_p50_us, f.tcp_p50_us > 0 ? f.tls_p50_us / f.tcp_p50_us : 0.0);
    return true;
}

int main(int argc, char **argv)
{
    bench_options o;
    static bench_results r;
    stacks st = { .orch = NULL };
    void *reply = NULL;
    char rid[33];
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    bench_prog = "rpc_bench";
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
    pid_t worker =
        bench_blocking_spawn(MAX_MSG_BYTES, o.echo_contexts, o.workers, o.block_us, &r.worker_port);
    if (worker < 0)
        goto out_echo;
    st.server[STACK_RAW] = echo;
    st.server[STACK_ORCH] = o.pids[0];
    st.server[STACK_WORKER] = worker;
    if (!open_clients(&o, &r, frame, &st, &reply))
        goto out_orch;
    measure_local(reply, r.reply_len, &r.local);
    if (!o.json)
        bench_print_header(&o, &r);

    if (run_rounds(&o, &st, &r)) {
        rc = 0;
        report(&o, &r);
    }
    if (rc == 0 && o.tls_url && !report_tls(&o))
        rc = 1;
    nng_close(st.raw);
out_orch:
    orch_rpc_client_close(st.orch);
    orch_rpc_client_close(st.worker);
    bench_echo_reap(worker);
    free(reply);
out_echo:
    bench_echo_reap(echo);
out_frame:
    free(frame);
    return rc;
}
