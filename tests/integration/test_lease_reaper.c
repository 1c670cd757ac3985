/*
 * test_lease_reaper.c - the reaper's passes never stall on one row: a lease
 * row locked by a transaction that does not end (a stage-service frozen
 * inside its CAS holds the lease row FOR SHARE; here a separate libpq
 * connection does exactly that) is skipped, and a row whose release fails
 * costs that row only. In both cases the other leases over the ceiling are
 * released and the dead-owner scan still runs, in the next pass.
 */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "test_lease_util.h"

#define CEILING_S "3"

static th_svc svc;
static char db[600];
static PGconn *holder;

static void setup(void)
{
    memset(&svc, 0, sizeof svc);
    holder = NULL;
    th_db_fresh(db, sizeof db);
}

static void teardown(void)
{
    if (holder)
        PQfinish(holder);
    lt_cleanup();
    if (svc.pid > 0 && th_svc_stop(&svc, SIGTERM, 10000) != 0)
        th_svc_dump_log(&svc);
}

TestSuite(lease_reaper, .init = setup, .fini = teardown, .timeout = 60);

static th_svc *start(void)
{
    static const char *const env[] = { "ORCH_HOST_ID=" LT_HOST,
                                       "ORCH_REAPER_MAX_RUNNING_S=" CEILING_S,
                                       "ORCH_STEP_TIMEOUT_S=1", "ORCH_LEASE_REAPER_INTERVAL_MS=200",
                                       NULL };
    th_svc_start(&svc, "lease", db, env, true);
    return &svc;
}

static void holder_exec(const char *sql)
{
    PGresult *r = PQexec(holder, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    PQclear(r);
}

/* What a stage-service frozen inside its CAS transaction holds: the lease
 * row read FOR SHARE, in a transaction that never ends. */
static void hold_lease_row(const char *item)
{
    holder = PQconnectdb(db);
    cr_assert_eq(PQstatus(holder), CONNECTION_OK, "%s", PQerrorMessage(holder));
    holder_exec("BEGIN");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT epoch FROM transition_lease WHERE work_item = '%s'"
             " AND released_at IS NULL FOR SHARE",
             item);
    holder_exec(sql);
}

static long long events(const char *item, const char *kind)
{
    return lt_sql_num(
        db, "SELECT count(*) FROM lease_events WHERE work_item = '%s' AND kind = '%s'", item, kind);
}

/* Waits (bounded) until `item` is older than the ceiling, so that every
 * pass from now on has it as a ceiling candidate. */
static void wait_over_ceiling(const char *item)
{
    cr_assert(lt_sql_wait(db, 1, 10000,
                          "SELECT count(*) FROM transition_lease WHERE work_item = '%s'"
                          " AND acquired_at < now() - interval '" CEILING_S ".3 s'",
                          item),
              "%s never got over the ceiling", item);
}

/* The common part: `stuck` and `old` are granted to live owners and get
 * over the ceiling (arm() runs in between: it makes `stuck` unreleasable);
 * then `dead` is granted and its owner killed. Both `old` (ceiling) and
 * `dead` (dead owner) must be released by the next passes. */
static void expect_pass_goes_on(const char *stuck, void (*arm)(const char *))
{
    static const char old[] = "ORCH-REAP-OLD", dead[] = "ORCH-REAP-DEAD";
    th_svc *s = start();
    orch_rpc_client *c = lt_client(s);
    lt_owner o1, o2, o3;
    lt_owner_spawn(&o1, NULL, NULL);
    lt_owner_spawn(&o2, NULL, NULL);
    lt_owner_spawn(&o3, NULL, NULL);
    lt_acq gs = lt_acquire(c, stuck, "orch", &o1, "stage-service");
    cr_assert(gs.granted, "%s", gs.message);
    arm(stuck);
    lt_acq go = lt_acquire(c, old, "orch", &o2, "deployer");
    cr_assert(go.granted, "%s", go.message);
    wait_over_ceiling(stuck);
    wait_over_ceiling(old);

    lt_acq gd = lt_acquire(c, dead, "orch", &o3, "monitor");
    cr_assert(gd.granted, "%s", gd.message);
    lt_owner_kill(&o3);
    cr_assert(lt_sql_wait(db, 1, 5000,
                          "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                          " AND kind = 'reclaimed-stale' AND epoch = %llu",
                          dead, (unsigned long long)gd.epoch),
              "the dead owner's lease was not released: the dead-owner scan did not run");
    cr_assert(lt_sql_wait(db, 1, 5000,
                          "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                          " AND kind = 'ceiling-released' AND epoch = %llu",
                          old, (unsigned long long)go.epoch),
              "a lease over the ceiling was not released beside the stuck row");
    cr_assert(lt_validate(c, stuck, gs.epoch).valid, "the stuck row was released after all?");
    cr_assert_eq(events(stuck, "ceiling-released"), 0);
    lt_client_close(c);
}

static void lock_row(const char *item)
{
    hold_lease_row(item);
}

Test(lease_reaper, a_locked_lease_row_no_longer_stops_every_reaper_pass)
{
    static const char stuck[] = "ORCH-REAP-LOCKED";
    expect_pass_goes_on(stuck, lock_row);
    cr_assert(th_svc_wait_log(&svc, "its row is locked by another transaction", 2000),
              "the skipped row is not reported");
    /* Its line carries the lease's keys (the reaper's log context). */
    char keys[160];
    snprintf(keys, sizeof keys, "\"work_item\":\"%s\",\"epoch\":%llu,\"msg\":\"reaper: ", stuck,
             (unsigned long long)lt_validate(lt_client(&svc), stuck, 1).current_epoch);
    cr_assert(th_svc_wait_log(&svc, keys, 2000), "no reaper line with %s", keys);
    /* Once the frozen transaction ends, the next pass releases it too. */
    holder_exec("ROLLBACK");
    cr_assert(lt_sql_wait(db, 1, 5000,
                          "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                          " AND kind = 'ceiling-released'",
                          stuck),
              "the row once unlocked was not released");
}

/* A release of this one row fails (a trigger refuses it), as a row whose
 * statement errors for any reason would. */
static void poison_row(const char *item)
{
    char sql[600];
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
             " RAISE EXCEPTION 'release of %s refused by the test'; END $$",
             item);
    free(th_sql(db, sql));
    snprintf(sql, sizeof sql,
             "CREATE TRIGGER poison BEFORE UPDATE ON transition_lease FOR EACH ROW"
             " WHEN (NEW.work_item = '%s' AND NEW.released_at IS NOT NULL)"
             " EXECUTE FUNCTION poison()",
             item);
    free(th_sql(db, sql));
}

Test(lease_reaper, one_failing_lease_row_no_longer_stops_the_reaper_pass)
{
    static const char stuck[] = "ORCH-REAP-POISON";
    expect_pass_goes_on(stuck, poison_row);
    cr_assert(th_svc_wait_log(&svc, "refused by the test", 2000), "the failed row is not reported");
}

/* Regression: the dead-owner scan read only the 1000 oldest held leases,
 * so a dead owner behind a thousand live ones was never judged by the
 * reaper and its lease waited for the ceiling. The scan now pages through
 * every held lease. */
Test(lease_reaper, a_dead_owner_behind_a_thousand_live_leases_is_reclaimed)
{
    static const char *const env[] = { "ORCH_HOST_ID=" LT_HOST, "ORCH_REAPER_MAX_RUNNING_S=600",
                                       "ORCH_STEP_TIMEOUT_S=1", "ORCH_LEASE_REAPER_INTERVAL_MS=200",
                                       NULL };
    th_svc_start(&svc, "lease", db, env, true);
    orch_rpc_client *c = lt_client(&svc);
    lt_owner live, dead;
    lt_owner_spawn(&live, NULL, NULL);
    lt_owner_spawn(&dead, NULL, NULL);
    cr_assert_eq(lt_sql_num(db,
                            "WITH i AS (INSERT INTO transition_lease (work_item, epoch,"
                            " owner_host, owner_boot_id, owner_pid, owner_start_ticks,"
                            " owner_instance, actor, transition, repo, acquired_at)"
                            " SELECT 'ORCH-BULK-' || lpad(g::text, 5, '0'), 1, '%s', '%s', %d,"
                            " %llu, '%s', 'bulk', 'review->testing', 'orch',"
                            " now() - interval '60 s' FROM generate_series(1, 1200) g"
                            " RETURNING 1) SELECT count(*) FROM i",
                            live.host_id, live.boot_id, (int)live.claimed_pid,
                            (unsigned long long)live.start_ticks, live.instance_id),
                 1200);
    lt_acq g = lt_acquire(c, "ORCH-ZZ-DEAD", "orch", &dead, "monitor");
    cr_assert(g.granted, "%s", g.message);
    lt_owner_kill(&dead);
    cr_assert(lt_sql_wait(db, 1, 10000,
                          "SELECT count(*) FROM lease_events WHERE work_item = 'ORCH-ZZ-DEAD'"
                          " AND kind = 'reclaimed-stale'"),
              "the dead owner behind 1200 live leases was never reclaimed by the reaper");
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM transition_lease WHERE work_item LIKE"
                                " 'ORCH-BULK-%%' AND released_at IS NULL"),
                 1200, "a live owner's lease was released");
    lt_client_close(c);
}
