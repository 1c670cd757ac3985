/*
 * test_rpc.c - the RPC server and client (shared/src/rpc_server.c,
 * rpc_client.c) in one process over tcp://127.0.0.1:0, with the test service
 * of proto/testsvc.proto. Echo replies its text; Slow sleeps, then replies,
 * and counts its runs, so that tests can hold workers busy and prove that a
 * handler ran exactly as often as it should.
 *
 * Each Criterion test runs in its own process: the counters start at zero.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/clock.h"
#include "orch/log.h"
#include "orch/metrics.h"
#include "orch/rpc.h"
#include "orch/v1/envelope.pb-c.h"
#include "proto/testsvc.pb-c.h"

#define ECHO "orch.test.EchoService/Echo"
#define SLOW "orch.test.EchoService/Slow"

static atomic_int echo_runs;
static atomic_int slow_runs;     /* Slow handlers started */
static atomic_int slow_finished; /* Slow handlers about to reply */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---- the test service --------------------------------------------------- */

static orch_code echo_handler(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    const Orch__Test__EchoRequest *req = (const Orch__Test__EchoRequest *)msg;
    int run = atomic_fetch_add(&echo_runs, 1) + 1;
    Orch__Test__EchoReply rep = ORCH__TEST__ECHO_REPLY__INIT;
    char who[256];
    if (strcmp(req->text, "whoami") == 0) {
        /* The handler's view of the call: request id and method. */
        snprintf(who, sizeof who, "%s %s", orch_rpc_call_request_id(call),
                 orch_rpc_call_method(call));
        rep.text = who;
    } else {
        rep.text = req->text;
    }
    rep.run = (uint64_t)run;
    return orch_rpc_reply(call, &rep.base);
}

static orch_code slow_handler(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    const Orch__Test__SlowRequest *req = (const Orch__Test__SlowRequest *)msg;
    int run = atomic_fetch_add(&slow_runs, 1) + 1;
    sleep_ms(req->ms);
    Orch__Test__EchoReply rep = ORCH__TEST__ECHO_REPLY__INIT;
    rep.text = req->text;
    rep.run = (uint64_t)run;
    atomic_fetch_add(&slow_finished, 1);
    return orch_rpc_reply(call, &rep.base);
}

static const orch_rpc_method handlers[] = { { "Echo", echo_handler }, { "Slow", slow_handler } };

static orch_rpc_server_opts default_opts(void)
{
    orch_rpc_server_opts o = {
        .url = "tcp://127.0.0.1:0",
        .max_msg_bytes = 64 * 1024,
        .concurrency = 16,
        .workers = 4,
        .default_timeout_ms = 2000,
        .dedup_entries = 256,
        .dedup_ttl_ms = 60000,
        .auth_token = NULL,
        .metrics = NULL,
    };
    return o;
}

static orch_rpc_server *start_with(const orch_rpc_server_opts *o, const orch_rpc_method *h)
{
    orch_log_init("unit-rpc", ORCH_LOG_WARN);
    const ProtobufCServiceDescriptor *d = &orch__test__echo_service__descriptor;
    cr_assert_eq(d->n_methods, 2);
    orch_rpc_service svc = { d, h, 2, NULL, false };
    orch_rpc_server *s = NULL;
    orch_err err = orch_rpc_server_start(o, &svc, 1, &s);
    cr_assert_eq(err, ORCH_OK, "server start: %s", orch_strerror(err));
    cr_assert_gt(orch_rpc_server_port(s), 0);
    return s;
}

static orch_rpc_server *start(const orch_rpc_server_opts *o)
{
    return start_with(o, handlers);
}

static orch_rpc_client *client_with(const orch_rpc_server *s, const char *token,
                                    uint32_t timeout_ms)
{
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", orch_rpc_server_port(s));
    orch_rpc_client_opts o = { 0, timeout_ms, token };
    orch_rpc_client *c = NULL;
    cr_assert_eq(orch_rpc_client_open(url, &o, &c), ORCH_OK);
    return c;
}

static orch_rpc_client *client(const orch_rpc_server *s)
{
    return client_with(s, NULL, 2000);
}

/* Calls Echo; on OK the reply text is copied into `out` (may be NULL). */
static orch_code echo_call(orch_rpc_client *c, const char *text, const orch_rpc_call_opts *o,
                           orch_rpc_status *st, char *out, size_t outlen)
{
    Orch__Test__EchoRequest req = ORCH__TEST__ECHO_REQUEST__INIT;
    req.text = (char *)text;
    ProtobufCMessage *rep = NULL;
    orch_code code =
        orch_rpc_invoke(c, ECHO, &req.base, &orch__test__echo_reply__descriptor, o, st, &rep);
    if (code == ORCH_CODE_OK) {
        cr_assert_not_null(rep);
        if (out)
            snprintf(out, outlen, "%s", ((Orch__Test__EchoReply *)rep)->text);
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return code;
}

typedef struct slow_job {
    orch_rpc_client *c;
    uint32_t ms;
    const char *request_id; /* NULL = fresh */
    uint32_t timeout_ms;
    const char *text;
    /* results */
    orch_code code;
    orch_rpc_status st;
    char reply_text[64];
    uint64_t reply_run;
    uint64_t elapsed_ms;
} slow_job;

static void slow_call(slow_job *j)
{
    Orch__Test__SlowRequest req = ORCH__TEST__SLOW_REQUEST__INIT;
    req.ms = j->ms;
    req.text = (char *)(j->text ? j->text : "slow");
    orch_rpc_call_opts o = { j->timeout_ms, 0, j->request_id };
    ProtobufCMessage *rep = NULL;
    uint64_t t0 = orch_mono_ms();
    j->code = orch_rpc_invoke(j->c, SLOW, &req.base, &orch__test__echo_reply__descriptor, &o,
                              &j->st, &rep);
    j->elapsed_ms = orch_mono_ms() - t0;
    if (j->code == ORCH_CODE_OK && rep) {
        const Orch__Test__EchoReply *r = (const Orch__Test__EchoReply *)rep;
        snprintf(j->reply_text, sizeof j->reply_text, "%s", r->text);
        j->reply_run = r->run;
        protobuf_c_message_free_unpacked(rep, NULL);
    }
}

static void *slow_thread(void *arg)
{
    slow_call(arg);
    return NULL;
}

/* Waits until `counter` reaches `n`; fails the test after 3 s. */
static void wait_for(atomic_int *counter, int n, const char *what)
{
    for (int i = 0; i < 3000; i++) {
        if (atomic_load(counter) >= n)
            return;
        sleep_ms(1);
    }
    cr_assert_fail("timed out waiting for %s", what);
}

/* Packs a RequestEnvelope by hand; returns a malloc'ed frame. */
static uint8_t *pack_envelope(const char *method, const char *rid, uint32_t timeout_ms,
                              const uint8_t *payload, size_t plen, size_t *len)
{
    Orch__V1__RequestEnvelope env = ORCH__V1__REQUEST_ENVELOPE__INIT;
    env.method = (char *)method;
    env.request_id = (char *)rid;
    env.timeout_ms = timeout_ms;
    env.payload.data = (uint8_t *)payload;
    env.payload.len = plen;
    *len = orch__v1__request_envelope__get_packed_size(&env);
    uint8_t *buf = malloc(*len ? *len : 1);
    cr_assert_not_null(buf);
    orch__v1__request_envelope__pack(&env, buf);
    return buf;
}

/* Sends a raw frame and decodes the reply envelope (caller frees it). */
static Orch__V1__ReplyEnvelope *raw_call(orch_rpc_client *c, const void *frame, size_t len,
                                         uint32_t timeout_ms)
{
    void *reply = NULL;
    size_t rlen = 0;
    orch_err err = orch_rpc_raw(c, frame, len, timeout_ms, &reply, &rlen);
    cr_assert_eq(err, ORCH_OK, "raw call: %s", orch_strerror(err));
    Orch__V1__ReplyEnvelope *rep = orch__v1__reply_envelope__unpack(NULL, rlen, reply);
    free(reply);
    cr_assert_not_null(rep, "the reply is not a ReplyEnvelope");
    cr_assert_not_null(rep->status, "the reply carries no status");
    return rep;
}

/* ---- tests -------------------------------------------------------------- */

Test(rpc, round_trip)
{
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    char text[64] = "";
    orch_rpc_status st;
    cr_assert_eq(echo_call(c, "hello", NULL, &st, text, sizeof text), ORCH_CODE_OK, "%s",
                 st.message);
    cr_assert_str_eq(text, "hello");
    cr_assert_eq(st.code, ORCH_CODE_OK);
    cr_assert_eq(atomic_load(&echo_runs), 1);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, handler_sees_request_id_and_full_method)
{
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    char text[256] = "";
    orch_rpc_call_opts co = { 0, 0, "0123456789abcdef0123456789abcdef" };
    cr_assert_eq(echo_call(c, "whoami", &co, NULL, text, sizeof text), ORCH_CODE_OK);
    cr_assert_str_eq(text, "0123456789abcdef0123456789abcdef " ECHO);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, unknown_method_is_unimplemented_and_runs_nothing)
{
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    static const char *const bad[] = {
        "orch.test.EchoService/Nope",
        "orch.test.NoSuchService/Echo",
        "orch.test.EchoService/echo",
        "Echo",
        "",
        "/Echo",
        "orch.test.EchoService/",
    };
    Orch__Test__EchoRequest req = ORCH__TEST__ECHO_REQUEST__INIT;
    req.text = (char *)"x";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        orch_rpc_status st;
        orch_code code = orch_rpc_invoke(c, bad[i], &req.base, NULL, NULL, &st, NULL);
        cr_expect_eq(code, ORCH_CODE_UNIMPLEMENTED, "'%s' -> %s (%s)", bad[i], orch_code_name(code),
                     st.message);
    }
    cr_expect_eq(atomic_load(&echo_runs), 0);
    cr_expect_eq(atomic_load(&slow_runs), 0);
    /* The server is still answering. */
    cr_assert_eq(echo_call(c, "alive", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    cr_assert_eq(atomic_load(&echo_runs), 1);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, declared_method_without_handler_is_unimplemented)
{
    static const orch_rpc_method echo_only[] = { { "Echo", echo_handler }, { "Slow", NULL } };
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start_with(&o, echo_only);
    orch_rpc_client *c = client(s);
    slow_job j = { .c = c, .ms = 1, .timeout_ms = 2000 };
    slow_call(&j);
    cr_expect_eq(j.code, ORCH_CODE_UNIMPLEMENTED, "%s", orch_code_name(j.code));
    cr_expect_eq(atomic_load(&slow_runs), 0);
    cr_assert_eq(echo_call(c, "e", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, undecodable_payload_is_invalid_argument)
{
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    static const uint8_t junk[] = { 0xff, 0xff, 0xff };
    size_t len = 0;
    uint8_t *frame = pack_envelope(ECHO, "bad-payload-0001", 1000, junk, sizeof junk, &len);
    Orch__V1__ReplyEnvelope *rep = raw_call(c, frame, len, 2000);
    cr_expect_eq(rep->status->code, ORCH__V1__CODE__INVALID_ARGUMENT, "got %d: %s",
                 rep->status->code, rep->status->message);
    cr_expect_str_eq(rep->request_id, "bad-payload-0001");
    cr_expect_not_null(strstr(rep->status->message, "orch.test.EchoRequest"), "%s",
                       rep->status->message);
    cr_expect_eq(rep->payload.len, 0);
    cr_expect_eq(atomic_load(&echo_runs), 0, "the handler ran on junk");
    orch__v1__reply_envelope__free_unpacked(rep, NULL);
    free(frame);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, frame_that_is_not_protobuf_gets_invalid_argument)
{
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    static const uint8_t frame1[] = { 0xff, 0xff, 0xff, 0xff };
    static const uint8_t frame2[] = { 0x0a, 0x10, 'a' }; /* field 1 claims 16 bytes, has 1 */
    const struct {
        const uint8_t *p;
        size_t n;
    } frames[] = { { frame1, sizeof frame1 }, { frame2, sizeof frame2 } };
    for (size_t i = 0; i < 2; i++) {
        Orch__V1__ReplyEnvelope *rep = raw_call(c, frames[i].p, frames[i].n, 2000);
        cr_expect_eq(rep->status->code, ORCH__V1__CODE__INVALID_ARGUMENT, "frame %zu: %d %s", i,
                     rep->status->code, rep->status->message);
        cr_expect_str_eq(rep->request_id, "");
        orch__v1__reply_envelope__free_unpacked(rep, NULL);
    }
    cr_expect_eq(atomic_load(&echo_runs), 0);
    cr_assert_eq(echo_call(c, "alive", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, deadline_in_the_past_is_exceeded_and_runs_nothing)
{
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    orch_rpc_call_opts past = { 1000, orch_wall_ms() - 1000, NULL };
    orch_rpc_status st;
    orch_code code = echo_call(c, "late", &past, &st, NULL, 0);
    cr_expect_eq(code, ORCH_CODE_DEADLINE_EXCEEDED, "%s: %s", orch_code_name(code), st.message);
    cr_expect_eq(atomic_load(&echo_runs), 0, "the handler ran after its deadline");
    /* A deadline in the future is honoured. */
    orch_rpc_call_opts future = { 1000, orch_wall_ms() + 5000, NULL };
    cr_assert_eq(echo_call(c, "on time", &future, &st, NULL, 0), ORCH_CODE_OK, "%s", st.message);
    cr_assert_eq(atomic_load(&echo_runs), 1);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, request_whose_budget_passes_in_the_queue_is_not_handled)
{
    orch_rpc_server_opts o = default_opts();
    o.workers = 1;
    o.concurrency = 4;
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);

    slow_job busy = { .c = c, .ms = 600, .timeout_ms = 3000 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, slow_thread, &busy), 0);
    wait_for(&slow_runs, 1, "Slow to start");

    /* Queued behind Slow with a 100 ms budget; wait for the server's own
     * answer rather than giving up locally. */
    Orch__Test__EchoRequest req = ORCH__TEST__ECHO_REQUEST__INIT;
    req.text = (char *)"queued";
    uint8_t payload[64];
    size_t plen = orch__test__echo_request__pack(&req, payload);
    size_t len = 0;
    uint8_t *frame = pack_envelope(ECHO, "queued-0001", 100, payload, plen, &len);
    Orch__V1__ReplyEnvelope *rep = raw_call(c, frame, len, 3000);
    cr_expect_eq(rep->status->code, ORCH__V1__CODE__DEADLINE_EXCEEDED, "got %d: %s",
                 rep->status->code, rep->status->message);
    cr_expect_eq(atomic_load(&echo_runs), 0, "the handler ran after the budget had passed");
    orch__v1__reply_envelope__free_unpacked(rep, NULL);
    free(frame);

    pthread_join(t, NULL);
    cr_expect_eq(busy.code, ORCH_CODE_OK, "%s", busy.st.message);
    cr_assert_eq(echo_call(c, "after", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    cr_assert_eq(atomic_load(&echo_runs), 1);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, same_request_id_sent_twice_runs_once)
{
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    slow_job a = {
        .c = c, .ms = 50, .request_id = "dup-seq-0001", .timeout_ms = 2000, .text = "first"
    };
    slow_job b = a;
    b.text = "second"; /* a re-send is answered from the first run */
    slow_call(&a);
    slow_call(&b);
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.st.message);
    cr_assert_eq(b.code, ORCH_CODE_OK, "%s", b.st.message);
    cr_expect_eq(atomic_load(&slow_runs), 1);
    cr_expect_str_eq(a.reply_text, "first");
    cr_expect_str_eq(b.reply_text, a.reply_text);
    cr_expect_eq(a.reply_run, 1);
    cr_expect_eq(b.reply_run, a.reply_run);
    /* A different id runs again. */
    slow_job d = { .c = c, .ms = 1, .request_id = "dup-seq-0002", .timeout_ms = 2000 };
    slow_call(&d);
    cr_assert_eq(d.code, ORCH_CODE_OK);
    cr_expect_eq(d.reply_run, 2);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, same_request_id_sent_concurrently_runs_once)
{
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    slow_job a = { .c = c, .ms = 400, .request_id = "dup-conc-0001", .timeout_ms = 3000 };
    slow_job b = a;
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, slow_thread, &a), 0);
    wait_for(&slow_runs, 1, "Slow to start");
    cr_assert_eq(pthread_create(&tb, NULL, slow_thread, &b), 0);
    sleep_ms(50);
    int finished_when_b_sent = atomic_load(&slow_finished);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert_eq(finished_when_b_sent, 0, "the second call came too late to join the first");
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.st.message);
    cr_assert_eq(b.code, ORCH_CODE_OK, "%s", b.st.message);
    cr_expect_eq(atomic_load(&slow_runs), 1, "Slow ran %d times", atomic_load(&slow_runs));
    cr_expect_eq(a.reply_run, 1);
    cr_expect_eq(b.reply_run, 1);
    cr_expect_str_eq(a.reply_text, b.reply_text);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

#define CALL_THREADS     16
#define CALLS_PER_THREAD 200

typedef struct burst {
    orch_rpc_client *c;
    int id;
    int ok;
} burst;

static void *burst_thread(void *arg)
{
    burst *b = arg;
    for (int i = 0; i < CALLS_PER_THREAD; i++) {
        char text[32], got[32] = "";
        snprintf(text, sizeof text, "t%d-%d", b->id, i);
        if (echo_call(b->c, text, NULL, NULL, got, sizeof got) == ORCH_CODE_OK &&
            strcmp(text, got) == 0)
            b->ok++;
    }
    return NULL;
}

Test(rpc, many_threads_share_one_client)
{
    orch_rpc_server_opts o = default_opts();
    o.concurrency = 32;
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client_with(s, NULL, 5000);
    burst b[CALL_THREADS];
    pthread_t t[CALL_THREADS];
    for (int i = 0; i < CALL_THREADS; i++) {
        b[i] = (burst){ c, i, 0 };
        cr_assert_eq(pthread_create(&t[i], NULL, burst_thread, &b[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < CALL_THREADS; i++) {
        pthread_join(t[i], NULL);
        cr_expect_eq(b[i].ok, CALLS_PER_THREAD, "thread %d: %d of %d", i, b[i].ok,
                     CALLS_PER_THREAD);
        ok += b[i].ok;
    }
    cr_assert_eq(ok, CALL_THREADS * CALLS_PER_THREAD);
    cr_assert_eq(atomic_load(&echo_runs), CALL_THREADS * CALLS_PER_THREAD);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

/* Starts a Slow call of `ms` on a thread and waits until it runs. */
static pthread_t start_slow(slow_job *j)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, slow_thread, j), 0);
    wait_for(&slow_runs, 1, "Slow to start");
    return t;
}

Test(rpc, stop_waits_for_the_handler_in_flight_then_serves_nothing)
{
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    slow_job j = { .c = c, .ms = 500, .timeout_ms = 3000 };
    pthread_t t = start_slow(&j);

    uint64_t t0 = orch_mono_ms();
    orch_rpc_server_stop(s, 5000);
    uint64_t stop_ms = orch_mono_ms() - t0;
    cr_expect_eq(atomic_load(&slow_finished), 1, "stop returned before the handler finished");
    cr_expect_lt(stop_ms, 4000, "stop waited for the grace period instead of the request");
    pthread_join(t, NULL);
    cr_expect_eq(atomic_load(&slow_runs), 1);

    /* Nothing is served any more. */
    orch_rpc_call_opts quick = { 300, 0, NULL };
    orch_rpc_status st;
    orch_code code = echo_call(c, "too late", &quick, &st, NULL, 0);
    cr_expect(code == ORCH_CODE_DEADLINE_EXCEEDED || code == ORCH_CODE_UNAVAILABLE, "%s: %s",
              orch_code_name(code), st.message);
    cr_expect_eq(atomic_load(&echo_runs), 0);
    orch_rpc_server_stop(s, 0); /* idempotent */
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

/*
 * Regression: stopping the server must not close the connections of the
 * requests in flight (closing the NNG listener first did, and the caller of
 * a running handler got "Connection reset" instead of its reply).
 */
Test(rpc, stop_lets_the_request_in_flight_finish)
{
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    slow_job j = { .c = c, .ms = 500, .timeout_ms = 3000 };
    pthread_t t = start_slow(&j);
    orch_rpc_server_stop(s, 5000);
    pthread_join(t, NULL);
    cr_expect_eq(j.code, ORCH_CODE_OK, "in-flight call got %s after %llu ms (%s)",
                 orch_code_name(j.code), (unsigned long long)j.elapsed_ms, j.st.message);
    cr_expect_eq(j.reply_run, 1);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, auth_token_is_required_when_configured)
{
    orch_rpc_server_opts o = default_opts();
    o.auth_token = "s3cret-token";
    orch_rpc_server *s = start(&o);
    orch_rpc_client *none = client_with(s, NULL, 2000);
    orch_rpc_client *wrong = client_with(s, "not-the-token", 2000);
    orch_rpc_client *right = client_with(s, "s3cret-token", 2000);
    orch_rpc_status st;
    cr_expect_eq(echo_call(none, "x", NULL, &st, NULL, 0), ORCH_CODE_UNAUTHENTICATED, "%s",
                 orch_code_name(st.code));
    cr_expect_eq(echo_call(wrong, "x", NULL, &st, NULL, 0), ORCH_CODE_UNAUTHENTICATED, "%s",
                 orch_code_name(st.code));
    cr_expect_eq(atomic_load(&echo_runs), 0);
    char text[16] = "";
    cr_assert_eq(echo_call(right, "ok", NULL, &st, text, sizeof text), ORCH_CODE_OK, "%s",
                 st.message);
    cr_assert_str_eq(text, "ok");
    cr_assert_eq(atomic_load(&echo_runs), 1);
    orch_rpc_client_close(none);
    orch_rpc_client_close(wrong);
    orch_rpc_client_close(right);
    orch_rpc_server_free(s);
}

/* docs/rpc.md §10: the token (step 2) is checked before deduplication
 * (step 4), so knowing a request id is not enough to read its reply. */
Test(rpc, unauthenticated_resend_does_not_get_the_stored_reply)
{
    orch_rpc_server_opts o = default_opts();
    o.auth_token = "s3cret-token";
    orch_rpc_server *s = start(&o);
    orch_rpc_client *right = client_with(s, "s3cret-token", 2000);
    orch_rpc_client *none = client_with(s, NULL, 2000);
    orch_rpc_call_opts co = { 0, 0, "a1b2c3d4e5f60718293a4b5c6d7e8f90" };
    cr_assert_eq(echo_call(right, "private reply", &co, NULL, NULL, 0), ORCH_CODE_OK);
    char leaked[64] = "";
    orch_rpc_status st;
    orch_code code = echo_call(none, "anything", &co, &st, leaked, sizeof leaked);
    cr_expect_eq(code, ORCH_CODE_UNAUTHENTICATED,
                 "a caller without the token got %s and the reply '%s'", orch_code_name(code),
                 leaked);
    orch_rpc_client_close(none);
    orch_rpc_client_close(right);
    orch_rpc_server_free(s);
}

/* Sends an Echo of `n` bytes with a 300 ms budget; returns its status. */
static orch_code echo_big(orch_rpc_client *c, size_t n, orch_rpc_status *st, uint64_t *elapsed)
{
    char *big = malloc(n + 1);
    cr_assert_not_null(big);
    memset(big, 'b', n);
    big[n] = '\0';
    orch_rpc_call_opts quick = { 300, 0, NULL };
    uint64_t t0 = orch_mono_ms();
    orch_code code = echo_call(c, big, &quick, st, NULL, 0);
    *elapsed = orch_mono_ms() - t0;
    free(big);
    return code;
}

Test(rpc, oversized_message_is_dropped_and_the_server_keeps_serving)
{
    orch_rpc_server_opts o = default_opts();
    o.max_msg_bytes = 4096;
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    cr_assert_eq(echo_call(c, "warm-up", NULL, NULL, NULL, 0), ORCH_CODE_OK);

    orch_rpc_status st;
    uint64_t elapsed = 0;
    orch_code code = echo_big(c, 16 * 1024, &st, &elapsed);
    cr_expect_neq(code, ORCH_CODE_OK);
    cr_expect_lt(elapsed, 1500, "waited %llu ms", (unsigned long long)elapsed);
    cr_expect_eq(atomic_load(&echo_runs), 1, "the oversized request reached the handler");

    orch_rpc_client *fresh = client(s);
    char text[16] = "";
    cr_assert_eq(echo_call(fresh, "still here", NULL, &st, text, sizeof text), ORCH_CODE_OK, "%s",
                 st.message);
    cr_assert_str_eq(text, "still here");
    cr_assert_eq(atomic_load(&echo_runs), 2);
    orch_rpc_client_close(fresh);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

/*
 * Regression: when the server drops the connection of a request already
 * sent (here: NNG's size limit, docs/rpc.md §9), the client must not report
 * UNAVAILABLE ("could not be sent"): it re-sends the same frame until its
 * deadline and then reports DEADLINE_EXCEEDED.
 */
Test(rpc, oversized_message_is_reported_as_deadline_exceeded)
{
    orch_rpc_server_opts o = default_opts();
    o.max_msg_bytes = 4096;
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    cr_assert_eq(echo_call(c, "warm-up", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    orch_rpc_status st;
    uint64_t elapsed = 0;
    orch_code code = echo_big(c, 16 * 1024, &st, &elapsed);
    cr_expect_eq(code, ORCH_CODE_DEADLINE_EXCEEDED, "%s after %llu ms: %s", orch_code_name(code),
                 (unsigned long long)elapsed, st.message);
    cr_expect_lt(elapsed, 1500, "waited %llu ms", (unsigned long long)elapsed);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

Test(rpc, requests_are_counted_in_the_metrics)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    orch_rpc_server_opts o = default_opts();
    o.metrics = m;
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    cr_assert_eq(echo_call(c, "1", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    cr_assert_eq(echo_call(c, "2", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    Orch__Test__EchoRequest req = ORCH__TEST__ECHO_REQUEST__INIT;
    cr_assert_eq(
        orch_rpc_invoke(c, "orch.test.EchoService/Nope", &req.base, NULL, NULL, NULL, NULL),
        ORCH_CODE_UNIMPLEMENTED);
    orch_rpc_client_close(c);
    orch_rpc_server_stop(s, 1000);

    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(orch_metrics_render(m, &text, &len), ORCH_OK);
    cr_expect_not_null(strstr(text, "orch_rpc_requests_total{method=\"" ECHO "\",code=\"OK\"} 2\n"),
                       "%s", text);
    cr_expect_not_null(
        strstr(text, "orch_rpc_requests_total{method=\"unknown\",code=\"UNIMPLEMENTED\"} 1\n"),
        "%s", text);
    cr_expect_not_null(
        strstr(text, "orch_rpc_request_duration_seconds_count{method=\"" ECHO "\"} 2\n"), "%s",
        text);
    free(text);
    orch_rpc_server_free(s);
    orch_metrics_free(m);
}

/* A nonblocking service is answered on NNG's thread, so it is not queued
 * behind a worker busy with a slow handler; a blocking one is. */
static uint64_t ping_ms(bool nonblocking)
{
    static const orch_rpc_method quick[] = { { "Ping", echo_handler } };
    orch_rpc_server_opts o = default_opts();
    o.workers = 1;
    orch_log_init("unit-rpc", ORCH_LOG_WARN);
    orch_rpc_service svcs[] = {
        { &orch__test__echo_service__descriptor, handlers, 2, NULL, false },
        { &orch__test__quick_service__descriptor, quick, 1, NULL, nonblocking },
    };
    orch_rpc_server *s = NULL;
    cr_assert_eq(orch_rpc_server_start(&o, svcs, 2, &s), ORCH_OK);
    orch_rpc_client *c = client(s);
    slow_job j = { .c = c, .ms = 800, .timeout_ms = 3000 };
    pthread_t t = start_slow(&j);
    Orch__Test__EchoRequest req = ORCH__TEST__ECHO_REQUEST__INIT;
    req.text = "ping";
    orch_rpc_status st;
    uint64_t t0 = orch_mono_ms();
    cr_assert_eq(
        orch_rpc_invoke(c, "orch.test.QuickService/Ping", &req.base, NULL, NULL, &st, NULL),
        ORCH_CODE_OK, "%s", st.message);
    uint64_t took = orch_mono_ms() - t0;
    pthread_join(t, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
    return took;
}

Test(rpc, nonblocking_service_is_not_queued_behind_busy_workers)
{
    uint64_t fast = ping_ms(true);
    cr_assert_lt(fast, 400, "nonblocking Ping took %llu ms behind an 800 ms handler",
                 (unsigned long long)fast);
}

Test(rpc, blocking_service_waits_for_a_free_worker)
{
    uint64_t slow = ping_ms(false);
    cr_assert_geq(slow, 400, "a blocking Ping should wait for the only worker (%llu ms)",
                  (unsigned long long)slow);
}

/* proto3 strings are UTF-8; protobuf-c does not check, so the server does,
 * before any handler sees the request. */
Test(rpc, string_field_that_is_not_utf8_is_rejected_before_the_handler)
{
    static const char *const bad[] = { "caf\xe9", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                       "abc\xe2\x82" };
    orch_rpc_server_opts o = default_opts();
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    orch_rpc_status st;
    int before = atomic_load(&echo_runs);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(echo_call(c, bad[i], NULL, &st, NULL, 0), ORCH_CODE_INVALID_ARGUMENT,
                     "case %zu", i);
        cr_assert(strstr(st.message, "field text is not valid UTF-8"), "%s", st.message);
    }
    cr_assert_eq(atomic_load(&echo_runs), before, "a handler saw invalid UTF-8");
    char out[64];
    cr_assert_eq(echo_call(c, "café ✓ 🙂", NULL, &st, out, sizeof out), ORCH_CODE_OK, "%s",
                 st.message);
    cr_assert_str_eq(out, "café ✓ 🙂");
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

/* The fast path peeks at the envelope's first method field only; protobuf
 * lets a later one win. A request that names a nonblocking method first and
 * a blocking one last must still be handled on a worker, never on NNG's
 * callback thread (found by tests/fuzz/fuzz_envelope). */
Test(rpc, repeated_method_field_does_not_run_a_blocking_handler_on_nng_thread)
{
    static const orch_rpc_method quick[] = { { "Ping", echo_handler } };
    orch_rpc_server_opts o = default_opts();
    o.workers = 1;
    orch_log_init("unit-rpc", ORCH_LOG_WARN);
    orch_rpc_service svcs[] = {
        { &orch__test__echo_service__descriptor, handlers, 2, NULL, false },
        { &orch__test__quick_service__descriptor, quick, 1, NULL, true },
    };
    orch_rpc_server *s = NULL;
    cr_assert_eq(orch_rpc_server_start(&o, svcs, 2, &s), ORCH_OK);
    orch_rpc_client *c = client(s);

    Orch__Test__EchoRequest req = ORCH__TEST__ECHO_REQUEST__INIT;
    req.text = "twice";
    size_t plen = orch__test__echo_request__get_packed_size(&req);
    uint8_t payload[64];
    cr_assert_leq(plen, sizeof payload);
    orch__test__echo_request__pack(&req, payload);
    size_t elen = 0;
    uint8_t *env = pack_envelope(ECHO, "", 3000, payload, plen, &elen);
    static const char first[] = "orch.test.QuickService/Ping";
    size_t flen = 2 + sizeof first - 1;
    uint8_t *frame = malloc(flen + elen);
    cr_assert_not_null(frame);
    frame[0] = 0x0a; /* field 1 (method), length-delimited */
    frame[1] = (uint8_t)(sizeof first - 1);
    memcpy(frame + 2, first, sizeof first - 1);
    memcpy(frame + flen, env, elen);

    slow_job j = { .c = c, .ms = 800, .timeout_ms = 3000 };
    pthread_t t = start_slow(&j);
    uint64_t t0 = orch_mono_ms();
    Orch__V1__ReplyEnvelope *rep = raw_call(c, frame, flen + elen, 3000);
    uint64_t took = orch_mono_ms() - t0;
    pthread_join(t, NULL);
    cr_assert_eq(rep->status->code, ORCH__V1__CODE__OK, "%s", rep->status->message);
    cr_assert_geq(took, 400,
                  "the blocking Echo ran at once (%llu ms) instead of waiting for the only "
                  "worker: it ran on NNG's callback thread",
                  (unsigned long long)took);
    orch__v1__reply_envelope__free_unpacked(rep, NULL);
    free(frame);
    free(env);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}
