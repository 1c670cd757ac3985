/*
 * bench_blocking.c - the worker-path child of rpc_bench (bench_blocking.h).
 *
 * Threading: the orch RPC server's own (NNG's threads, its workers); the
 * child's main thread waits for SIGTERM (bench_echo.c).
 */
#include "bench_blocking.h"

#include <nng/nng.h>

#include <stdio.h>
#include <time.h>

#include "orch/v1/health.pb-c.h"
#include "orch/log.h"
#include "orch/rpc.h"
#include "bench_echo.h"

typedef struct blocking_args {
    size_t max_msg_bytes;
    int contexts, workers;
    unsigned block_us;
    orch_rpc_server *srv;
} blocking_args;

static orch_code check(orch_rpc_call *call, const ProtobufCMessage *req, void *arg)
{
    const blocking_args *a = arg;
    (void)req;
    if (a->block_us) {
        struct timespec ts = { (time_t)(a->block_us / 1000000u),
                               (long)(a->block_us % 1000000u) * 1000L };
        nanosleep(&ts, NULL);
    }
    Orch__V1__HealthCheckResponse rep = ORCH__V1__HEALTH_CHECK_RESPONSE__INIT;
    rep.status = ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_SERVING;
    rep.server = (char *)"rpc_bench-worker";
    return orch_rpc_reply(call, &rep.base);
}

static const orch_rpc_method methods[] = {
    { .name = "Check", .handler = check, .roles = ORCH_ROLE_ANY },
};

static int blocking_start(void *arg, int *port)
{
    blocking_args *a = arg;
    orch_log_init("rpc_bench-worker", ORCH_LOG_WARN);
    orch_rpc_server_opts o = { .url = "tcp://127.0.0.1:0",
                               .max_msg_bytes = a->max_msg_bytes,
                               .concurrency = a->contexts,
                               .workers = a->workers,
                               .default_timeout_ms = 5000,
                               .dedup_entries = 4096,
                               .dedup_ttl_ms = 60000 };
    /* Not nonblocking: every Check takes the worker path. */
    orch_rpc_service svc = { &orch__v1__health_service__descriptor, methods, 1, a, false };
    orch_err err = orch_rpc_server_start(&o, &svc, 1, &a->srv);
    if (err != ORCH_OK) {
        fprintf(stderr, "rpc_bench: worker-path server: %s\n", orch_strerror(err));
        return NNG_EINVAL;
    }
    *port = orch_rpc_server_port(a->srv);
    return 0;
}

static void blocking_stop(void *arg)
{
    blocking_args *a = arg;
    orch_rpc_server_stop(a->srv, 1000); /* lets the cancelled receives settle */
    orch_rpc_server_free(a->srv);
}

pid_t bench_blocking_spawn(size_t max_msg_bytes, int contexts, int workers, unsigned block_us,
                           int *port)
{
    blocking_args a = { max_msg_bytes, contexts, workers, block_us, NULL };
    bench_child ch = { "worker-path orch server", blocking_start, blocking_stop, &a };
    return bench_child_spawn(&ch, port);
}
