/*
 * test_lease_plans.c - the group-commit statements of lease_store.c keep
 * their generic plan: after the first executions on a connection a batch is
 * no longer planned again, whatever its size (planning one cost PostgreSQL
 * more CPU than running it).
 *
 * Seen in pg_prepared_statements on the connection that ran the batches.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease_store.h"
#include "orch/clock.h"
#include "orch/db.h"
#include "test_lease_util.h"

#define NRUNS 12

static th_svc svc;
static char db[600];
static orch_db_pool *pool;

static void setup(void)
{
    static const char *const env[] = { "ORCH_HOST_ID=" LT_HOST,
                                       "ORCH_LEASE_REAPER_INTERVAL_MS=60000", NULL };
    th_db_fresh(db, sizeof db); /* the service migrates it */
    th_svc_start(&svc, "lease", db, env, true);
    cr_assert(orch_db_pool_open(db, 1, &pool) == ORCH_OK);
}

static void teardown(void)
{
    orch_db_pool_close(pool);
    if (svc.pid > 0 && th_svc_stop(&svc, SIGTERM, 10000) != 0)
        th_svc_dump_log(&svc);
}

TestSuite(lease_plans, .init = setup, .fini = teardown, .timeout = 60);

/* generic_plans of the statement on c whose text contains `part`. */
static long generic_plans(orch_db_conn *c, const char *part)
{
    const char *p[] = { part };
    orch_db_result *r = NULL;
    orch_err err = orch_db_exec(c, orch_mono_ms() + 5000,
                                "SELECT generic_plans FROM pg_prepared_statements"
                                " WHERE strpos(statement, $1) > 0",
                                1, p, &r);
    cr_assert(err == ORCH_OK, "%s", orch_db_last_error(c));
    cr_assert_eq(orch_db_result_rows(r), 1, "statements with '%s'", part);
    long n = atol(orch_db_result_get(r, 0, 0));
    orch_db_result_free(r);
    return n;
}

/* Batches of 2, 3 and 4 claims on new items, then of their releases (a
 * batch of one runs the single statements). The plan made for a few rows
 * costs less than the generic plan (estimated for ten), so without the
 * subqueries such batches were planned every time. */
static void run_batches(orch_db_conn *c)
{
    lease_owner o = { .host_id = LT_HOST, .boot_id = "boot", .pid = 1, .start_ticks = 1 };
    snprintf(o.instance_id, sizeof o.instance_id, "plans");
    char items[NRUNS][4][32];
    for (int k = 0; k < NRUNS; k++) {
        size_t n = (size_t)(k % 3) + 2;
        lease_claim cl[4];
        const lease_claim *pc[4];
        lease_acquired acq[4];
        lease_acquired *pa[4];
        const char *names[4];
        uint64_t epochs[4];
        bool released[4], alone[4];
        for (size_t i = 0; i < n; i++) {
            snprintf(items[k][i], sizeof items[k][i], "plan-%d-%zu", k, i);
            cl[i] = (lease_claim){ items[k][i], "orch", "t", "a", &o };
            pc[i] = &cl[i];
            pa[i] = &acq[i];
        }
        cr_assert(lease_store_acquire_batch(c, orch_mono_ms() + 5000, pc, n, pa) == ORCH_OK, "%s",
                  orch_db_last_error(c));
        for (size_t i = 0; i < n; i++) {
            cr_assert(acq[i].granted && !acq[i].alone, "%s", items[k][i]);
            names[i] = items[k][i];
            epochs[i] = acq[i].epoch;
        }
        cr_assert(lease_store_release_batch(c, orch_mono_ms() + 5000, names, epochs, n, released,
                                            alone) == ORCH_OK,
                  "%s", orch_db_last_error(c));
        for (size_t i = 0; i < n; i++)
            cr_assert(released[i] && !alone[i], "%s", items[k][i]);
    }
}

Test(lease_plans, batch_statements_keep_their_generic_plan)
{
    /* Leases of earlier work, with statistics, as a service has them. */
    cr_assert_eq(lt_sql_num(db,
                            "INSERT INTO transition_lease SELECT 'old-' || g, 1, 'h', 'b', 1, 1,"
                            " 'i', 'a', 't', 'orch', now(), now(), 'released'"
                            " FROM generate_series(1, 20000) g"),
                 -1);
    cr_assert_eq(lt_sql_num(db, "ANALYZE transition_lease"), -1);
    orch_db_conn *c;
    cr_assert(orch_db_acquire(pool, orch_mono_ms() + 5000, &c) == ORCH_OK);
    run_batches(c);
    /* Five custom plans come first (plan_cache_mode auto), then generic. */
    long acq = generic_plans(c, "'granted', g_actor");
    long rel = generic_plans(c, "'released', 'holder'");
    orch_db_release(c);
    cr_assert_geq(acq, NRUNS - 5, "Acquire batch: %ld generic plans in %d runs", acq, NRUNS);
    cr_assert_geq(rel, NRUNS - 5, "Release batch: %ld generic plans in %d runs", rel, NRUNS);
}
