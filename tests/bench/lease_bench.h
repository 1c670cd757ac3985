/*
 * lease_bench.h - the parts of lease_bench (lease_bench.c, which describes
 * the benchmark) shared by its files: the run's context, a caller's state,
 * and the functions of the calls (lease_bench_calls.c), the set-up
 * (lease_bench_setup.c) and the options (lease_bench_options.c).
 * Threading: as lease_bench.c says; a caller touches only its own lb_caller
 * and reads the lb_ctx.
 */
#ifndef LEASE_BENCH_H
#define LEASE_BENCH_H

#include <libpq-fe.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "orch/ident.h"
#include "orch/rpc.h"
#include "bench_common.h"
#include "lease_report.h"
#include "lease_store.h"

#define MAX_OPS        10000000u
#define MAX_FIELD      LEASE_MAX_FIELD
#define MAX_ITEMS      1000u
#define CONTENDED_ITEM "bench-contended"
#define TRANSITION     "bench->bench"
#define METRICS_MS     2000 /* budget of one /metrics read */

/* Requests outstanding at once (an Acquire or a Release, timed calls only),
 * counted by the callers of one slice: the most at any instant, and the sum
 * of their durations (divided by the slice's time: the mean number, by
 * Little's law). Reset by the main thread between slices. */
typedef struct lb_inflight {
    atomic_int now, max;
    atomic_uint_fast64_t busy_ns;
} lb_inflight;

/* What the callers share; read-only while they run (but *inflight). */
typedef struct lb_ctx {
    const lb_options *o;
    orch_rpc_client *rpc;
    PGconn *conns[LB_MAX_CALLERS]; /* direct stack, one per caller */
    PGconn *admin;                 /* truncation, on the main thread */
    orch_ident me;                 /* the owners' identity */
    char pid_s[16], ticks_s[24];
    nng_url *metrics_url; /* NULL: /metrics not read */
    nng_http_client *http;
    lb_inflight *inflight;
} lb_ctx;

/* One calling thread's own state; its bench_worker points here. */
typedef struct lb_caller {
    const lb_ctx *cx;
    int stack;
    unsigned id, next;
    PGconn *pg; /* direct: borrowed from cx->conns[id] */
    char actor[32];
    char instance[33];
    char item[64];
    unsigned long grants, defers, aborts; /* timed attempts only */
    /* Scale mode: Acquires of rows bench-scale-1..rows, their latencies. */
    unsigned rows;
    uint64_t *acq_ns;
    unsigned nacq, cap;
} lb_caller;

/* Sums and counts of lease-service's histograms for Acquire and Release. */
typedef struct lb_metrics {
    bool ok;
    double acq_s, hnd_s, rel_s; /* seconds */
    double acq_n, hnd_n, rel_n;
} lb_metrics;

/* ---- lease_bench_calls.c: the units of work, on either stack ---- */

/* Acquire + Release of the caller's next work item, which must be free;
 * w->arg is the lb_caller. False after bench_failf. */
bool lb_pair_call(bench_worker *w);
/* One Acquire of the shared work item, and its Release when granted. */
bool lb_attempt_call(bench_worker *w);
/* Scale mode: Acquire (timed into c->acq_ns) and Release, through the
 * service, of the next of the caller's c->rows released rows. */
bool lb_scale_call(bench_worker *w);
/* Prepares the direct stack's statements on `pg`; false after a message. */
bool lb_prepare(PGconn *pg);

/* ---- lease_bench_scale.c ---- */

/* The scale mode (--scale): Acquire latency with 10^3 and then 10^6 rows
 * in transition_lease, printed with the ratio of the p99s and the plans of
 * the statements that read the table. False after a message. */
bool lb_run_scale(lb_ctx *cx);

/* ---- lease_bench_setup.c ---- */

/* Opens the connections, the RPC client and /metrics of cx->o, for up to
 * max_callers callers; false after a message. lb_teardown frees what it
 * opened, whether or not it succeeded. */
bool lb_setup(lb_ctx *cx, unsigned max_callers);
void lb_teardown(lb_ctx *cx);
/* Empties the lease tables; false after a message. */
bool lb_truncate_tables(lb_ctx *cx);
/* GET /metrics of lease-service; m->ok false when it could not be read. */
void lb_read_metrics(const lb_ctx *cx, lb_metrics *m);

/* ---- lease_bench_options.c ---- */

/* Fills *o from the environment and the command line. Returns -1 to go on,
 * else an exit status (0 after --help, 2 after a usage message). */
int lb_parse_args(int argc, char **argv, lb_options *o);

#endif
