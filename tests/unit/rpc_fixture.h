/*
 * rpc_fixture.h - the test service and the helpers shared by the RPC server
 * and client tests (test_rpc_dispatch.c, test_rpc_delivery.c). The server
 * runs in the test's own process over tcp://127.0.0.1:0, with EchoService of
 * proto/testsvc.proto: Echo replies its text; Slow sleeps, then replies, and
 * counts its runs, so that tests can hold workers busy and prove that a
 * handler ran exactly as often as it should.
 *
 * Each Criterion test runs in its own process: the counters start at zero.
 * Helpers fail the test (cr_assert) rather than return errors.
 */
#ifndef ORCH_TEST_RPC_FIXTURE_H
#define ORCH_TEST_RPC_FIXTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/rpc.h"
#include "orch/v1/envelope.pb-c.h"
#include "proto/testsvc.pb-c.h"

#define ECHO "orch.test.EchoService/Echo"
#define SLOW "orch.test.EchoService/Slow"

extern atomic_int echo_runs;
extern atomic_int slow_runs;     /* Slow handlers started */
extern atomic_int slow_finished; /* Slow handlers about to reply */

/* Echo and Slow, in descriptor order. */
extern const orch_rpc_method handlers[];

void sleep_ms(unsigned ms);
orch_code echo_handler(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg);

orch_rpc_server_opts default_opts(void);
/* Starts EchoService with the handler table h (two entries); the caller frees
 * the server. */
orch_rpc_server *start_with(const orch_rpc_server_opts *o, const orch_rpc_method *h);
orch_rpc_server *start(const orch_rpc_server_opts *o);
/* A client of s; the caller closes it. token may be NULL. */
orch_rpc_client *client_with(const orch_rpc_server *s, const char *token, uint32_t timeout_ms);
orch_rpc_client *client(const orch_rpc_server *s);
/* The start of most tests: EchoService with `o` (default_opts() when NULL)
 * and the handler table h (handlers when NULL), and one client of it into
 * *c. unserve() closes the client, then stops and frees the server. */
orch_rpc_server *serve(const orch_rpc_server_opts *o, const orch_rpc_method *h,
                       orch_rpc_client **c);
void unserve(orch_rpc_server *s, orch_rpc_client *c);

/* Calls Echo; on OK the reply text is copied into `out` (may be NULL). */
orch_code echo_call(orch_rpc_client *c, const char *text, const orch_rpc_call_opts *o,
                    orch_rpc_status *st, char *out, size_t outlen);

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

/* Calls Slow as j describes and fills j's results. */
void slow_call(slow_job *j);
/* slow_call on a thread: arg is the slow_job. */
void *slow_thread(void *arg);
/* Starts a Slow call of `ms` on a thread and waits until it runs. */
pthread_t start_slow(slow_job *j);

/* Waits until `counter` reaches `n`; fails the test after 3 s. */
void wait_for(atomic_int *counter, int n, const char *what);

/* Packs a RequestEnvelope by hand; returns a malloc'ed frame. */
uint8_t *pack_envelope(const char *method, const char *rid, uint32_t timeout_ms,
                       const uint8_t *payload, size_t plen, size_t *len);
/* Sends a raw frame and decodes the reply envelope (caller frees it). */
Orch__V1__ReplyEnvelope *raw_call(orch_rpc_client *c, const void *frame, size_t len,
                                  uint32_t timeout_ms);

#endif
