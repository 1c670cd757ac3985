/*
 * test_rpc_dispatch.c - what the RPC server (shared/src/rpc_server.c) does
 * with one request before and around its handler: resolving the method,
 * decoding the envelope and payload, checking the auth token and UTF-8,
 * counting it in the metrics, and choosing NNG's thread or a worker.
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

Test(rpc, round_trip)
{
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
    char text[64] = "";
    orch_rpc_status st;
    cr_assert_eq(echo_call(c, "hello", NULL, &st, text, sizeof text), ORCH_CODE_OK, "%s",
                 st.message);
    cr_assert_str_eq(text, "hello");
    cr_assert_eq(st.code, ORCH_CODE_OK);
    cr_assert_eq(atomic_load(&echo_runs), 1);
    unserve(s, c);
}

Test(rpc, handler_sees_request_id_and_full_method)
{
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
    char text[256] = "";
    orch_rpc_call_opts co = { 0, 0, "0123456789abcdef0123456789abcdef" };
    cr_assert_eq(echo_call(c, "whoami", &co, NULL, text, sizeof text), ORCH_CODE_OK);
    cr_assert_str_eq(text, "0123456789abcdef0123456789abcdef " ECHO);
    unserve(s, c);
}

Test(rpc, unknown_method_is_unimplemented_and_runs_nothing)
{
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
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
    unserve(s, c);
}

Test(rpc, declared_method_without_handler_is_unimplemented)
{
    static const orch_rpc_method echo_only[] = {
        { .name = "Echo", .handler = echo_handler, .roles = ORCH_ROLE_ANY },
        { .name = "Slow", .handler = NULL, .roles = ORCH_ROLE_ANY }
    };
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, echo_only, &c);
    slow_job j = { .c = c, .ms = 1, .timeout_ms = 2000 };
    slow_call(&j);
    cr_expect_eq(j.code, ORCH_CODE_UNIMPLEMENTED, "%s", orch_code_name(j.code));
    cr_expect_eq(atomic_load(&slow_runs), 0);
    cr_assert_eq(echo_call(c, "e", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    unserve(s, c);
}

Test(rpc, undecodable_payload_is_invalid_argument)
{
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
    static const uint8_t junk[] = { 0xff, 0xff, 0xff };
    size_t len = 0;
    uint8_t *frame = pack_envelope(ECHO, "bad-payload-0001", 1000, junk, sizeof junk, &len);
    Orch__V1__ReplyEnvelope *rep = raw_call(c, frame, len, 2000);
    cr_expect_eq(rep->status->code, ORCH__V1__CODE__CODE_INVALID_ARGUMENT, "got %d: %s",
                 rep->status->code, rep->status->message);
    cr_expect_str_eq(rep->request_id, "bad-payload-0001");
    cr_expect_not_null(strstr(rep->status->message, "orch.test.EchoRequest"), "%s",
                       rep->status->message);
    cr_expect_eq(rep->payload.len, 0);
    cr_expect_eq(atomic_load(&echo_runs), 0, "the handler ran on junk");
    orch__v1__reply_envelope__free_unpacked(rep, NULL);
    free(frame);
    unserve(s, c);
}

Test(rpc, frame_that_is_not_protobuf_gets_invalid_argument)
{
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
    static const uint8_t frame1[] = { 0xff, 0xff, 0xff, 0xff };
    static const uint8_t frame2[] = { 0x0a, 0x10, 'a' }; /* field 1 claims 16 bytes, has 1 */
    const struct {
        const uint8_t *p;
        size_t n;
    } frames[] = { { frame1, sizeof frame1 }, { frame2, sizeof frame2 } };
    for (size_t i = 0; i < 2; i++) {
        Orch__V1__ReplyEnvelope *rep = raw_call(c, frames[i].p, frames[i].n, 2000);
        cr_expect_eq(rep->status->code, ORCH__V1__CODE__CODE_INVALID_ARGUMENT, "frame %zu: %d %s",
                     i, rep->status->code, rep->status->message);
        cr_expect_str_eq(rep->request_id, "");
        orch__v1__reply_envelope__free_unpacked(rep, NULL);
    }
    cr_expect_eq(atomic_load(&echo_runs), 0);
    cr_assert_eq(echo_call(c, "alive", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    unserve(s, c);
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

Test(rpc, requests_are_counted_in_the_metrics)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    orch_rpc_server_opts o = default_opts();
    o.metrics = m;
    orch_rpc_client *c;
    orch_rpc_server *s = serve(&o, NULL, &c);
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

Test(rpc, long_poll_is_counted_but_not_timed)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    orch_rpc_server_opts o = default_opts();
    o.metrics = m;
    const orch_rpc_method polls[] = {
        handlers[0], { .name = "Slow", .handler = handlers[1].handler, .long_poll = true }
    };
    orch_rpc_client *c;
    orch_rpc_server *s = serve(&o, polls, &c);
    cr_assert_eq(echo_call(c, "1", NULL, NULL, NULL, 0), ORCH_CODE_OK);
    slow_job j = { .c = c, .ms = 20, .text = "poll" };
    slow_call(&j);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.st.message);
    orch_rpc_client_close(c);
    orch_rpc_server_stop(s, 1000);

    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(orch_metrics_render(m, &text, &len), ORCH_OK);
    cr_expect_not_null(strstr(text, "orch_rpc_requests_total{method=\"" SLOW "\",code=\"OK\"} 1\n"),
                       "%s", text);
    cr_expect_not_null(
        strstr(text, "orch_rpc_request_duration_seconds_count{method=\"" ECHO "\"} 1\n"), "%s",
        text);
    cr_expect_null(strstr(text, "orch_rpc_request_duration_seconds_count{method=\"" SLOW "\"}"),
                   "%s", text);
    cr_expect_null(strstr(text, "{method=\"" SLOW "\",le="), "%s", text);
    free(text);
    orch_rpc_server_free(s);
    orch_metrics_free(m);
}

/* Starts EchoService and QuickService (Ping answered by echo_handler) with
 * one worker; QuickService is nonblocking as asked. The caller frees it. */
static orch_rpc_server *start_with_quick(bool nonblocking)
{
    static const orch_rpc_method quick[] = {
        { .name = "Ping", .handler = echo_handler, .roles = ORCH_ROLE_ANY }
    };
    orch_rpc_server_opts o = default_opts();
    o.workers = 1;
    orch_log_init("unit-rpc", ORCH_LOG_WARN);
    orch_rpc_service svcs[] = {
        { &orch__test__echo_service__descriptor, handlers, 2, NULL, false },
        { &orch__test__quick_service__descriptor, quick, 1, NULL, nonblocking },
    };
    orch_rpc_server *s = NULL;
    cr_assert_eq(orch_rpc_server_start(&o, svcs, 2, &s), ORCH_OK);
    return s;
}

/* A nonblocking service is answered on NNG's thread, so it is not queued
 * behind a worker busy with a slow handler; a blocking one is. */
static uint64_t ping_ms(bool nonblocking)
{
    orch_rpc_server *s = start_with_quick(nonblocking);
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
    unserve(s, c);
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
    orch_rpc_client *c;
    orch_rpc_server *s = serve(NULL, NULL, &c);
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
    unserve(s, c);
}

/* protobuf lets a later method field win over an earlier one. A request
 * that names a nonblocking method first and a blocking one last must be
 * handled on a worker, never on NNG's callback thread (found by
 * tests/fuzz/fuzz_envelope when the server chose by peeking at the first
 * field; it decodes the whole envelope now). */
Test(rpc, repeated_method_field_does_not_run_a_blocking_handler_on_nng_thread)
{
    orch_rpc_server *s = start_with_quick(true);
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
    cr_assert_eq(rep->status->code, ORCH__V1__CODE__CODE_OK, "%s", rep->status->message);
    cr_assert_geq(took, 400,
                  "the blocking Echo ran at once (%llu ms) instead of waiting for the only "
                  "worker: it ran on NNG's callback thread",
                  (unsigned long long)took);
    orch__v1__reply_envelope__free_unpacked(rep, NULL);
    free(frame);
    free(env);
    unserve(s, c);
}
