/*
 * test_launcher_reaper.c - the job reaper never waits for a job row another
 * transaction keeps locked (a launcher frozen inside a job's finish, here a
 * separate libpq connection in an open transaction): that job is left for a
 * later pass and the other jobs are reaped in this one. Real
 * launcher-service and lease-service binaries on one database.
 */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "test_launcher_util.h"
#include "test_lease_util.h"

static th_svc launcher, lease;
static char db[512], outdir[256], workdir[256];
static PGconn *holder;

static void setup(void)
{
    th_db_fresh(db, sizeof db);
    ln_tmpdir(outdir, sizeof outdir);
    ln_tmpdir(workdir, sizeof workdir);
    memset(&launcher, 0, sizeof launcher);
    memset(&lease, 0, sizeof lease);
    holder = NULL;
}

static void teardown(void)
{
    if (holder)
        PQfinish(holder);
    if (launcher.pid > 0 && th_svc_stop(&launcher, SIGTERM, 10000) != 0)
        th_svc_dump_log(&launcher);
    if (lease.pid > 0 && th_svc_stop(&lease, SIGTERM, 10000) != 0)
        th_svc_dump_log(&lease);
    lt_cleanup();
}

TestSuite(launcher_reaper, .init = setup, .fini = teardown, .timeout = 120);

static void start_both(void)
{
    const char *lenv[] = { "ORCH_HOST_ID=" LT_HOST, "ORCH_LEASE_REAPER_INTERVAL_MS=3600000",
                           "ORCH_LEASE_RECOVERY_WAIT_MS=0", NULL };
    th_svc_start(&lease, "lease", db, lenv, true);
    char lurl[128];
    snprintf(lurl, sizeof lurl, "ORCH_LEASE_RPC_URL=%s", lease.rpc_url);
    const char *env[] = { "ORCH_HOST_ID=" LT_HOST, "ORCH_STAGE_RPC_URL=", lurl,
                          "ORCH_LAUNCHER_REAPER_INTERVAL_MS=300", NULL };
    ln_start(&launcher, db, outdir, env);
}

/* A job left running by a previous instance of this host, run by `o`'s
 * process: Tier-2 reaps it at the first pass after that process is gone. */
static void plant_job(const char *item, const lt_owner *o)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO jobs (role, work_item, status, host_id, boot_id, instance_id, pid,"
             " start_ticks, timeout_s, started_at, prompt, workdir, stage)"
             " VALUES ('tester', '%s', 'running', '%s', '%s', 'old-instance', %d, %llu, 60,"
             " now(), 'fake: say test_status: PASS', '%s', 'testing') RETURNING id",
             item, LT_HOST, lt_kernel_boot_id(), (int)o->claimed_pid,
             (unsigned long long)o->start_ticks, workdir);
    free(th_sql(db, sql));
}

static void holder_exec(const char *sql)
{
    PGresult *r = PQexec(holder, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    PQclear(r);
}

Test(launcher_reaper, a_locked_job_row_does_not_hold_up_the_reaper_pass)
{
    start_both();
    /* The job to be locked is planted while its process lives (the reaper
     * leaves it alone), locked, and only then its process dies; it comes
     * first in the pass (lower id). */
    lt_owner o1, o2;
    lt_owner_spawn(&o1, LT_HOST, NULL);
    lt_owner_spawn(&o2, LT_HOST, NULL);
    plant_job("ORCH-REAP-LOCKED", &o1);
    holder = PQconnectdb(db);
    cr_assert_eq(PQstatus(holder), CONNECTION_OK, "%s", PQerrorMessage(holder));
    holder_exec("BEGIN");
    holder_exec("SELECT id FROM jobs WHERE work_item = 'ORCH-REAP-LOCKED' FOR NO KEY UPDATE");
    lt_owner_kill(&o1);
    lt_owner_kill(&o2);
    plant_job("ORCH-REAP-FREE", &o2);
    uint64_t t0 = orch_mono_ms();
    /* The reaper runs every 300 ms; a pass that waited for the locked row
     * would take the whole lock_timeout (5 s) before reaching the other. */
    cr_assert(lt_sql_wait(db, 1, 3000,
                          "SELECT count(*) FROM jobs WHERE work_item = 'ORCH-REAP-FREE'"
                          " AND status = 'failed' AND finish_reason LIKE 'reaped: tier-2%%'"),
              "the free job was not reaped within 3 s: the pass waited for the locked row");
    cr_log_info("free job reaped %llu ms after it was planted",
                (unsigned long long)(orch_mono_ms() - t0));
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM jobs WHERE work_item = 'ORCH-REAP-LOCKED'"
                                " AND status = 'running'"),
                 1, "the locked job was finished through the lock?");
    /* Once the lock holder's transaction ends, a later pass reaps it. */
    holder_exec("ROLLBACK");
    cr_assert(lt_sql_wait(db, 1, 5000,
                          "SELECT count(*) FROM jobs WHERE work_item = 'ORCH-REAP-LOCKED'"
                          " AND status = 'failed' AND finish_reason LIKE 'reaped: tier-2%%'"),
              "the job once unlocked was not reaped");
}
