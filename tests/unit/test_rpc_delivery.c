/*
 * test_rpc_delivery.c - how requests get through between the RPC client
 * (shared/src/rpc_client.c) and server (rpc_server.c): deadlines, re-sent
 * request ids answered once, many threads on one client, stopping the
 * server with requests in flight, and oversized messages.
 * The test service and helpers are in rpc_fixture.c.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "orch/log.h"
#include "orch/metrics.h"
#include "orch/rpc.h"
#include "rpc_fixture.h"

/* ---- tests -------------------------------------------------------------- */

Test(rpc, deadline_in_the_past_is_exceeded_and_runs_nothing)
{
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
    orch_rpc_call_opts past = { 1000, orch_wall_ms() - 1000, NULL };
    orch_rpc_status st;
    orch_code code = echo_call(c, "late", &past, &st, NULL, 0);
    cr_expect_eq(code, ORCH_CODE_DEADLINE_EXCEEDED, "%s: %s", orch_code_name(code), st.message);
    cr_expect_eq(atomic_load(&echo_runs), 0, "the handler ran after its deadline");
    /* A deadline in the future is honoured. */
    orch_rpc_call_opts future = { 1000, orch_wall_ms() + 5000, NULL };
    cr_assert_eq(echo_call(c, "on time", &future, &st, NULL, 0), ORCH_CODE_OK, "%s", st.message);
    cr_assert_eq(atomic_load(&echo_runs), 1);
    unserve(s, c);
}

Test(rpc, request_whose_budget_passes_in_the_queue_is_not_handled)
{
    orch_rpc_server_opts o = default_opts();
    o.workers = 1;
    o.concurrency = 4;
    orch_rpc_client *c;
    orch_rpc_server *s = serve(&o, NULL, &c);

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
    cr_expect_eq(rep->status->code, ORCH__V1__CODE__CODE_DEADLINE_EXCEEDED, "got %d: %s",
                 rep->status->code, rep->status->message);
    cr_expect_eq(atomic_load(&echo_runs), 0, "the handler ran after the budget had passed");
    orch__v1__reply_envelope__free_unpacked(rep, NULL);
    free(frame);

    pthread_join(t, NULL);
    cr_expect_eq(busy.code, ORCH_CODE_OK, "%s", busy.st.message);
    cr_assert_eq(echo_call(c, "after", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    cr_assert_eq(atomic_load(&echo_runs), 1);
    unserve(s, c);
}

Test(rpc, same_request_id_sent_twice_runs_once)
{
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
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
    unserve(s, c);
}

Test(rpc, same_request_id_sent_concurrently_runs_once)
{
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
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
    unserve(s, c);
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
    unserve(s, c);
}

Test(rpc, stop_waits_for_the_handler_in_flight_then_serves_nothing)
{
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
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
    unserve(s, c);
}

/*
 * Regression: stopping the server must not close the connections of the
 * requests in flight (closing the NNG listener first did, and the caller of
 * a running handler got "Connection reset" instead of its reply).
 */
Test(rpc, stop_lets_the_request_in_flight_finish)
{
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
    slow_job j = { .c = c, .ms = 500, .timeout_ms = 3000 };
    pthread_t t = start_slow(&j);
    orch_rpc_server_stop(s, 5000);
    pthread_join(t, NULL);
    cr_expect_eq(j.code, ORCH_CODE_OK, "in-flight call got %s after %llu ms (%s)",
                 orch_code_name(j.code), (unsigned long long)j.elapsed_ms, j.st.message);
    cr_expect_eq(j.reply_run, 1);
    unserve(s, c);
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
    orch_rpc_client *c;
    orch_rpc_server *s = serve(&o, NULL, &c);
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
    unserve(s, c);
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
    orch_rpc_client *c;
    orch_rpc_server *s = serve(&o, NULL, &c);
    cr_assert_eq(echo_call(c, "warm-up", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    orch_rpc_status st;
    uint64_t elapsed = 0;
    orch_code code = echo_big(c, 16 * 1024, &st, &elapsed);
    cr_expect_eq(code, ORCH_CODE_DEADLINE_EXCEEDED, "%s after %llu ms: %s", orch_code_name(code),
                 (unsigned long long)elapsed, st.message);
    cr_expect_lt(elapsed, 1500, "waited %llu ms", (unsigned long long)elapsed);
    unserve(s, c);
}
