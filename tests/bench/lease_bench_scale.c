/*
 * lease_bench_scale.c - the scale mode of lease_bench (--scale N): does
 * Acquire stay as fast when transition_lease holds the history of many work
 * items? For 10^3 and then 10^6 rows, in the same run: the tables are
 * emptied, filled with one INSERT ... SELECT FROM generate_series of
 * released rows (as finished transitions leave them: epochs 1 to 50,
 * acquired and released over the last 30 days, a tenth released by the
 * ceiling) and their 'granted' and 'released' events, then VACUUM ANALYZE
 * (what autovacuum does to a table that grew); both timed, the fill bounded
 * by a statement_timeout. One caller then re-acquires released rows through
 * lease-service, scattered over the table, N timed Acquires after untimed
 * warm-up ones, each followed by its (untimed) Release. Printed: the fill
 * time, Acquire p50/p99 for each size, p99(10^6)/p99(10^3) against the
 * target of 1.2, and at 10^6 rows the plans of the Acquire statement
 * (EXPLAIN ANALYZE inside a transaction rolled back) and of the reaper's two
 * reads of the table. Main thread, with one caller thread per size.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "lease_bench.h"

#define SCALE_TARGET    1.2
#define SCALE_WARMUP    200
#define FILL_TIMEOUT_MS 600000 /* the fill of 10^6 rows and their events */

static const unsigned sizes[] = { 1000, 1000000 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

typedef struct scale_result {
    double fill_s, vacuum_s;
    double p50_us, p99_us, mean_us;
    unsigned n;
} scale_result;

/* Runs `sql` on the admin connection; false after a message. */
static bool admin_exec(lb_ctx *cx, const char *sql)
{
    PGresult *r = PQexec(cx->admin, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "lease_bench: scale: %.60s...: %s", sql,
                r ? PQresultErrorMessage(r) : PQerrorMessage(cx->admin));
    PQclear(r);
    return ok;
}

/* Fills `rows` released leases bench-scale-1..rows and two events each. */
static bool fill(lb_ctx *cx, unsigned rows, scale_result *res)
{
    char sql[1600];
    snprintf(sql, sizeof sql, "SET statement_timeout = %d", FILL_TIMEOUT_MS);
    if (!lb_truncate_tables(cx) || !admin_exec(cx, sql))
        return false;
    uint64_t t0 = orch_mono_ms();
    snprintf(
        sql, sizeof sql,
        "WITH g AS (SELECT g, 1 + g %% 50 AS ep,"
        "   now() - make_interval(secs => (g %% 2592000) + 3600) AS acq,"
        "   now() - make_interval(secs => (g %% 2592000)) AS rel FROM generate_series(1, %u) g),"
        " l AS (INSERT INTO transition_lease (work_item, epoch, owner_host, owner_boot_id,"
        "   owner_pid, owner_start_ticks, owner_instance, actor, transition, repo,"
        "   acquired_at, released_at, release_reason)"
        "   SELECT 'bench-scale-' || g, ep, '%s', md5(g::text), 1000 + g %% 30000, g * 7,"
        "     md5(ep::text || g), 'stage-service', 'review->testing', '%s', acq, rel,"
        "     CASE WHEN g %% 10 = 0 THEN 'ceiling-released' ELSE 'released' END FROM g)"
        " INSERT INTO lease_events (work_item, epoch, kind, actor, detail, at)"
        " SELECT 'bench-scale-' || g, ep, k.kind, 'stage-service', '', k.at FROM g,"
        "   LATERAL (VALUES ('granted', acq), (CASE WHEN g %% 10 = 0 THEN 'ceiling-released'"
        "     ELSE 'released' END, rel)) AS k(kind, at)",
        rows, cx->o->host_id, cx->o->repo);
    if (!admin_exec(cx, sql))
        return false;
    res->fill_s = (double)(orch_mono_ms() - t0) / 1000.0;
    t0 = orch_mono_ms();
    bool ok = admin_exec(cx, "VACUUM ANALYZE transition_lease") &&
              admin_exec(cx, "VACUUM ANALYZE lease_events") &&
              admin_exec(cx, "SET statement_timeout = 0");
    res->vacuum_s = (double)(orch_mono_ms() - t0) / 1000.0;
    return ok;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n), n >= 1, in us. */
static double pct_us(const uint64_t *v, unsigned n, double p)
{
    unsigned k = (unsigned)(p * n + 0.999999);
    k = k < 1 ? 1 : k > n ? n : k;
    return (double)v[k - 1] / 1000.0;
}

/* One caller: warm-up, then cx->o->scale timed Acquires. */
static bool measure(lb_ctx *cx, unsigned rows, scale_result *res)
{
    lb_caller c = { .cx = cx, .stack = LB_SERVICE, .rows = rows, .cap = cx->o->scale };
    bench_worker w;
    snprintf(c.actor, sizeof c.actor, "bench-scale");
    c.acq_ns = calloc(c.cap, sizeof *c.acq_ns);
    bool ok = c.acq_ns && orch_random_hex(c.instance, 16) == ORCH_OK &&
              bench_worker_init(&w, lb_scale_call, &c, SCALE_WARMUP, cx->o->scale);
    if (!ok) {
        fprintf(stderr, "lease_bench: scale: out of memory\n");
        free(c.acq_ns);
        return false;
    }
    ok = bench_run_workers(&w, 1, NULL, NULL) != 0 && !w.err[0] && c.nacq > 0;
    if (!ok)
        fprintf(stderr, "lease_bench: scale, %u rows: %s\n", rows, w.err);
    if (ok) {
        uint64_t sum = 0;
        qsort(c.acq_ns, c.nacq, sizeof *c.acq_ns, cmp_u64);
        for (unsigned i = 0; i < c.nacq; i++)
            sum += c.acq_ns[i];
        res->n = c.nacq;
        res->p50_us = pct_us(c.acq_ns, c.nacq, 0.50);
        res->p99_us = pct_us(c.acq_ns, c.nacq, 0.99);
        res->mean_us = (double)sum / c.nacq / 1000.0;
    }
    bench_worker_free(&w);
    free(c.acq_ns);
    return ok;
}

/* Prints the plan of `sql` (EXPLAIN `how`) with its parameters; inside a
 * transaction rolled back, as EXPLAIN ANALYZE of a write runs it. */
static void print_plan(lb_ctx *cx, const char *title, const char *how, const char *sql, int n,
                       const char *const *p)
{
    size_t len = strlen(sql) + 64;
    char *text = malloc(len);
    if (!text || !admin_exec(cx, "BEGIN")) {
        free(text);
        return;
    }
    snprintf(text, len, "EXPLAIN (%s) %s", how, sql);
    PGresult *r = PQexecParams(cx->admin, text, n, NULL, p, NULL, NULL, 0);
    printf("\n  plan of %s:\n", title);
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK)
        for (int i = 0; i < PQntuples(r); i++)
            printf("    %s\n", PQgetvalue(r, i, 0));
    else
        printf("    (EXPLAIN failed: %s)\n",
               r ? PQresultErrorMessage(r) : PQerrorMessage(cx->admin));
    PQclear(r);
    free(text);
    (void)admin_exec(cx, "ROLLBACK");
}

static void print_plans(lb_ctx *cx)
{
    const lb_ctx *k = cx;
    const char *acq[] = {
        "bench-scale-500000", k->me.host_id, k->me.boot_id, k->pid_s, k->ticks_s, "explain",
        "bench-scale",        TRANSITION,    k->o->repo
    };
    print_plan(cx, "Acquire (lease_sql_acquire) of a released row", "ANALYZE, BUFFERS, COSTS OFF",
               lease_sql_acquire, 9, acq);
    const char *held[] = { "", "", "1000" };
    print_plan(cx, "the reaper's dead-owner page (lease_store_list_held_after)",
               "ANALYZE, BUFFERS, COSTS OFF", lease_sql_list_held_after, 3, held);
    const char *ceil[] = { "3600", "1000" };
    print_plan(cx, "the reaper's ceiling scan (lease_store_list_over_ceiling)",
               "ANALYZE, BUFFERS, COSTS OFF", lease_sql_list_over_ceiling, 2, ceil);
}

bool lb_run_scale(lb_ctx *cx)
{
    scale_result res[NSIZES] = { { 0 } };
    printf("lease benchmark, scale mode: Acquire of a released row through lease-service at %s%s%s,"
           " one caller, %u timed Acquires (after %u untimed) per table size\n",
           cx->o->service_url, cx->o->label[0] ? " " : "", cx->o->label, cx->o->scale,
           SCALE_WARMUP);
    for (size_t i = 0; i < NSIZES; i++) {
        if (!fill(cx, sizes[i], &res[i]) || !measure(cx, sizes[i], &res[i]))
            return false;
        printf("  %7u rows: fill %.1f s, vacuum analyze %.1f s; Acquire p50 %.1f us, p99 %.1f "
               "us, mean %.1f us (%u)\n",
               sizes[i], res[i].fill_s, res[i].vacuum_s, res[i].p50_us, res[i].p99_us,
               res[i].mean_us, res[i].n);
        fflush(stdout);
    }
    double ratio = res[0].p99_us > 0 ? res[1].p99_us / res[0].p99_us : -1.0;
    printf("  p99(10^6) / p99(10^3) = %.2f (target <= %.1f: %s); p50 ratio %.2f\n", ratio,
           SCALE_TARGET, ratio >= 0 && ratio <= SCALE_TARGET ? "met" : "NOT met",
           res[0].p50_us > 0 ? res[1].p50_us / res[0].p50_us : -1.0);
    print_plans(cx);
    fflush(stdout);
    return true;
}
