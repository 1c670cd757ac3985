/*
 * rpc_fixture.c - the test service and helpers of rpc_fixture.h.
 */
#include "rpc_fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/clock.h"
#include "orch/log.h"

atomic_int echo_runs;
atomic_int slow_runs;
atomic_int slow_finished;

void sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---- the test service --------------------------------------------------- */

orch_code echo_handler(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
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

const orch_rpc_method handlers[] = {
    { .name = "Echo", .handler = echo_handler, .roles = ORCH_ROLE_ANY },
    { .name = "Slow", .handler = slow_handler, .roles = ORCH_ROLE_ANY }
};

orch_rpc_server_opts default_opts(void)
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

orch_rpc_server *start_with(const orch_rpc_server_opts *o, const orch_rpc_method *h)
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

orch_rpc_server *start(const orch_rpc_server_opts *o)
{
    return start_with(o, handlers);
}

orch_rpc_client *client_with(const orch_rpc_server *s, const char *token, uint32_t timeout_ms)
{
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", orch_rpc_server_port(s));
    orch_rpc_client_opts o = { .default_timeout_ms = timeout_ms, .auth_token = token };
    orch_rpc_client *c = NULL;
    cr_assert_eq(orch_rpc_client_open(url, &o, &c), ORCH_OK);
    return c;
}

orch_rpc_client *client(const orch_rpc_server *s)
{
    return client_with(s, NULL, 2000);
}

orch_rpc_server *serve(const orch_rpc_server_opts *o, const orch_rpc_method *h, orch_rpc_client **c)
{
    orch_rpc_server_opts d = default_opts();
    orch_rpc_server *s = start_with(o ? o : &d, h ? h : handlers);
    *c = client(s);
    return s;
}

void unserve(orch_rpc_server *s, orch_rpc_client *c)
{
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

/* Calls Echo; on OK the reply text is copied into `out` (may be NULL). */
orch_code echo_call(orch_rpc_client *c, const char *text, const orch_rpc_call_opts *o,
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

void slow_call(slow_job *j)
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

void *slow_thread(void *arg)
{
    slow_call(arg);
    return NULL;
}

/* Waits until `counter` reaches `n`; fails the test after 3 s. */
void wait_for(atomic_int *counter, int n, const char *what)
{
    for (int i = 0; i < 3000; i++) {
        if (atomic_load(counter) >= n)
            return;
        sleep_ms(1);
    }
    cr_assert_fail("timed out waiting for %s", what);
}

/* Packs a RequestEnvelope by hand; returns a malloc'ed frame. */
uint8_t *pack_envelope(const char *method, const char *rid, uint32_t timeout_ms,
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
Orch__V1__ReplyEnvelope *raw_call(orch_rpc_client *c, const void *frame, size_t len,
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

/* Starts a Slow call of `ms` on a thread and waits until it runs. */
pthread_t start_slow(slow_job *j)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, slow_thread, j), 0);
    wait_for(&slow_runs, 1, "Slow to start");
    return t;
}
