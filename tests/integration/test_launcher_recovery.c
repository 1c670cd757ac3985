/*
 * test_launcher_recovery.c - restart requeue, its ordering before
 * lease-service's start-up recovery, and the job reaper's tiers, with real
 * launcher-service and lease-service binaries on one database.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_launcher_util.h"
#include "test_lease_util.h"

static th_svc launcher, lease;
static char db[512], outdir[256], workdir[256];

static void setup(void)
{
    th_db_fresh(db, sizeof db);
    ln_tmpdir(outdir, sizeof outdir);
    ln_tmpdir(workdir, sizeof workdir);
    memset(&launcher, 0, sizeof launcher);
    memset(&lease, 0, sizeof lease);
}

static void teardown(void)
{
    if (launcher.pid > 0 && th_svc_stop(&launcher, SIGTERM, 10000) != 0)
        th_svc_dump_log(&launcher);
    if (lease.pid > 0 && th_svc_stop(&lease, SIGTERM, 10000) != 0)
        th_svc_dump_log(&lease);
    lt_cleanup();
}

TestSuite(launcher_recovery, .init = setup, .fini = teardown, .timeout = 180);

static void start_launcher(const char *const *more)
{
    const char *env[16] = { "ORCH_HOST_ID=" LT_HOST, "ORCH_STAGE_RPC_URL=" };
    size_t k = 2;
    for (size_t i = 0; more && more[i] && k < 15; i++)
        env[k++] = more[i];
    env[k] = NULL;
    ln_start(&launcher, db, outdir, env);
}

Test(launcher_recovery, restart_requeues_and_reruns_running_jobs)
{
    start_launcher(NULL);
    ln_job j =
        ln_spawn(&launcher, "tester", "ORCH-20",
                 "fake: child\nfake: sleep 2\nfake: say test_status: PASS\n", workdir, 60, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    cr_assert(lt_sql_wait(db, 1, 10000, "SELECT count(*) FROM jobs WHERE id = %llu AND pid > 0",
                          (unsigned long long)j.id));
    long long old_pid =
        lt_sql_num(db, "SELECT pid FROM jobs WHERE id = %llu", (unsigned long long)j.id);
    th_svc_stop(&launcher, SIGKILL, 5000); /* a crash: the job stays 'running' */
    cr_assert(lt_sql_wait(db, 1, 1000,
                          "SELECT count(*) FROM jobs WHERE id = %llu AND status = "
                          "'running'",
                          (unsigned long long)j.id));
    start_launcher(NULL);
    ln_job w = ln_wait(&launcher, j.id, 30000);
    cr_assert(w.finished, "status %s", w.status);
    cr_expect_str_eq(w.status, "SUCCEEDED");
    cr_expect_eq(
        lt_sql_num(db, "SELECT attempts FROM jobs WHERE id = %llu", (unsigned long long)j.id), 2);
    cr_expect_eq(lt_sql_num(db, "SELECT count(*) FROM jobs WHERE requeued_at IS NOT NULL"), 1);
    cr_expect(!ln_proc_alive((pid_t)old_pid), "the first run's agent %lld survived", old_pid);
    cr_expect_eq(
        lt_sql_num(db, "SELECT requeued FROM launcher_recovery WHERE host_id = '%s'", LT_HOST), 1);
}

Test(launcher_recovery, fail_policy_fails_running_jobs)
{
    start_launcher(NULL);
    ln_job j = ln_spawn(&launcher, "tester", "ORCH-21", "fake: sleep 30\n", workdir, 60, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK);
    cr_assert(lt_sql_wait(db, 1, 10000, "SELECT count(*) FROM jobs WHERE pid > 0"));
    th_svc_stop(&launcher, SIGKILL, 5000);
    const char *more[] = { "ORCH_LAUNCHER_RESTART_POLICY=fail", NULL };
    start_launcher(more);
    ln_job w = ln_wait(&launcher, j.id, 2000);
    cr_expect_str_eq(w.status, "FAILED");
    cr_expect(strstr(w.finish_reason, "restarted") != NULL, "%s", w.finish_reason);
}

/* A job left running by a dead instance whose agent held a lease. */
static void plant_dead_job_with_lease(const char *item)
{
    lt_owner o;
    lt_owner_spawn(&o, LT_HOST, NULL);
    int32_t pid = o.claimed_pid;
    unsigned long long ticks = (unsigned long long)o.start_ticks;
    lt_owner_kill(&o);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO jobs (role, work_item, status, host_id, boot_id, instance_id, pid,"
             " start_ticks, timeout_s, started_at, prompt, workdir, stage)"
             " VALUES ('tester', '%s', 'running', '%s', '%s', 'old-instance', %d, %llu, 60,"
             " now(), 'fake: say test_status: PASS', '%s', 'testing') RETURNING id",
             item, LT_HOST, lt_kernel_boot_id(), (int)pid, ticks, workdir);
    free(th_sql(db, sql));
    snprintf(sql, sizeof sql,
             "INSERT INTO transition_lease (work_item, epoch, owner_host, owner_boot_id,"
             " owner_pid, owner_start_ticks, owner_instance, actor, transition, repo)"
             " VALUES ('%s', 1, '%s', '%s', %d, %llu, 'x', 'monitor', 'testing->staging',"
             " 'orch') RETURNING epoch",
             item, LT_HOST, lt_kernel_boot_id(), (int)pid, ticks);
    free(th_sql(db, sql));
}

static void migrate_only(void)
{
    /* Any service applies the migrations at start. It registers its host:
     * the host of the lease-service started next, which (on loopback, with
     * no advertised address) would refuse to start beside another host. */
    const char *env[] = { "ORCH_HOST_ID=" LT_HOST, NULL };
    th_svc m;
    th_svc_start(&m, "lease", db, env, true);
    th_svc_stop(&m, SIGTERM, 10000);
}

Test(launcher_recovery, requeue_happens_before_lease_recovery)
{
    migrate_only();
    plant_dead_job_with_lease("ORCH-22");
    const char *lenv[] = { "ORCH_HOST_ID=" LT_HOST, "ORCH_LEASE_RECOVERY_WAIT_MS=60000", NULL };
    th_svc_start(&lease, "lease", db, lenv, false);
    cr_assert(th_svc_wait_log(&lease, "waits for the launcher", 10000),
              "lease-service's recovery did not wait for the launcher");
    lt_sleep_ms(1000);
    cr_expect_eq(lt_sql_num(db, "SELECT count(*) FROM transition_lease WHERE released_at IS NULL"),
                 1, "the lease was reclaimed before the launcher requeued its job");
    start_launcher(NULL);
    cr_assert(lt_sql_wait(db, 1, 20000,
                          "SELECT count(*) FROM transition_lease WHERE released_at IS NOT NULL"));
    cr_expect_eq(lt_sql_num(db, "SELECT count(*) FROM jobs j, transition_lease l WHERE"
                                " j.work_item = l.work_item AND j.requeued_at < l.released_at"),
                 1, "requeue must precede the lease's reclaim");
    cr_assert(th_svc_wait_health(&lease, TH_SERVING, 10000));
}

Test(launcher_recovery, lease_recovery_wait_is_bounded)
{
    migrate_only();
    plant_dead_job_with_lease("ORCH-23");
    const char *lenv[] = { "ORCH_HOST_ID=" LT_HOST, "ORCH_LEASE_RECOVERY_WAIT_MS=800", NULL };
    th_svc_start(&lease, "lease", db, lenv, true);
    cr_expect(th_svc_log_has(&lease, "without the launcher's requeue"));
    cr_expect_eq(lt_sql_num(db, "SELECT count(*) FROM transition_lease WHERE released_at IS NULL"),
                 0);
}

/* ---- reaper --------------------------------------------------------------- */

static void start_both(const char *ceiling)
{
    const char *lenv[] = { "ORCH_HOST_ID=" LT_HOST, "ORCH_LEASE_REAPER_INTERVAL_MS=3600000",
                           "ORCH_LEASE_RECOVERY_WAIT_MS=0", NULL };
    th_svc_start(&lease, "lease", db, lenv, true);
    char lurl[128], ceil[64];
    snprintf(lurl, sizeof lurl, "ORCH_LEASE_RPC_URL=%s", lease.rpc_url);
    snprintf(ceil, sizeof ceil, "ORCH_REAPER_MAX_RUNNING_S=%s", ceiling);
    const char *more[] = { lurl, ceil, "ORCH_LAUNCHER_REAPER_INTERVAL_MS=300", NULL };
    start_launcher(more);
}

Test(launcher_recovery, tier2_finishes_a_dead_job_and_releases_its_lease)
{
    start_both("3600");
    plant_dead_job_with_lease("ORCH-24");
    cr_assert(lt_sql_wait(db, 1, 10000,
                          "SELECT count(*) FROM jobs WHERE work_item = 'ORCH-24' AND status ="
                          " 'failed' AND finish_reason LIKE 'reaped: tier-2%%'"),
              "the dead job was not reaped");
    cr_expect(lt_sql_wait(db, 1, 5000,
                          "SELECT count(*) FROM transition_lease WHERE work_item = 'ORCH-24' AND"
                          " release_reason = 'force-released'"),
              "the reaped job's lease was not force-released");
    cr_expect_geq(lt_metric(&launcher, "orch_launcher_reaps_total{tier=\"tier_2\"}"), 1);
}

Test(launcher_recovery, tier2_defers_while_the_lease_owner_lives)
{
    start_both("3600");
    lt_owner holder;
    lt_owner_spawn(&holder, LT_HOST, NULL);
    char sql[1024];
    free(th_sql(db, "INSERT INTO jobs (role, work_item, status, host_id, boot_id, instance_id,"
                    " pid, start_ticks, timeout_s, started_at) VALUES ('tester', 'ORCH-25',"
                    " 'running', '" LT_HOST "', 'b', 'old', 999999, 1, 60, now()) RETURNING id"));
    long long id = lt_sql_num(db, "SELECT id FROM jobs WHERE work_item = 'ORCH-25'");
    snprintf(sql, sizeof sql,
             "INSERT INTO transition_lease (work_item, epoch, owner_host, owner_boot_id,"
             " owner_pid, owner_start_ticks, owner_instance, actor, transition, repo)"
             " VALUES ('ORCH-25', 1, '%s', '%s', %d, %llu, 'job-%lld', 'monitor', 't', 'orch')"
             " RETURNING epoch",
             LT_HOST, holder.boot_id, (int)holder.claimed_pid,
             (unsigned long long)holder.start_ticks, id);
    free(th_sql(db, sql));
    cr_assert(th_svc_wait_log(&launcher, "deferred", 10000), "the reaper did not defer");
    cr_expect_eq(lt_sql_num(db, "SELECT count(*) FROM jobs WHERE status = 'running'"), 1);
    cr_expect_eq(lt_sql_num(db, "SELECT count(*) FROM transition_lease WHERE released_at IS NULL"),
                 1);
    lt_owner_kill(&holder); /* now the owner is dead: reaped on a later pass */
    cr_expect(lt_sql_wait(db, 1, 10000, "SELECT count(*) FROM jobs WHERE status = 'failed'"));
}

Test(launcher_recovery, tier3_kills_a_job_over_the_ceiling)
{
    start_both("2");
    ln_job j = ln_spawn(&launcher, "tester", "ORCH-26", "fake: child\nfake: sleep 60\n", workdir,
                        120, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    ln_job w = ln_wait(&launcher, j.id, 15000);
    cr_assert(w.finished, "status %s", w.status);
    cr_expect_str_eq(w.status, "FAILED");
    cr_expect(strstr(w.finish_reason, "tier-3") != NULL, "%s", w.finish_reason);
    char pidfile[400];
    snprintf(pidfile, sizeof pidfile, "%s/child.pid", workdir);
    pid_t child = ln_read_pid(pidfile);
    cr_expect(child > 0 && !ln_proc_alive(child), "child %d survived", (int)child);
    cr_expect_geq(lt_metric(&launcher, "orch_launcher_reaps_total{tier=\"tier_3\"}"), 1);
}

/* Regression: a Tier-3 reap released whatever lease the work item had, even
 * one held by another live owner (a stage-service mid-merge). Only the
 * job's own grant may be released. */
Test(launcher_recovery, tier3_leaves_another_owners_lease_alone)
{
    start_both("2");
    lt_owner holder;
    lt_owner_spawn(&holder, LT_HOST, NULL);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO transition_lease (work_item, epoch, owner_host, owner_boot_id,"
             " owner_pid, owner_start_ticks, owner_instance, actor, transition, repo)"
             " VALUES ('ORCH-27', 7, '%s', '%s', %d, %llu, 'stage-service.1', 'monitor',"
             " 'review->testing', 'orch') RETURNING epoch",
             LT_HOST, holder.boot_id, (int)holder.claimed_pid,
             (unsigned long long)holder.start_ticks);
    free(th_sql(db, sql));
    ln_job j = ln_spawn(&launcher, "tester", "ORCH-27", "fake: sleep 60\n", workdir, 120, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    ln_job w = ln_wait(&launcher, j.id, 15000);
    cr_assert(w.finished, "status %s", w.status);
    cr_expect(strstr(w.finish_reason, "tier-3") != NULL, "%s", w.finish_reason);
    usleep(1000000); /* a reaper pass after the reap */
    cr_expect_eq(lt_sql_num(db, "SELECT count(*) FROM transition_lease WHERE work_item ="
                                " 'ORCH-27' AND released_at IS NULL AND epoch = 7"),
                 1, "the other owner's lease was released by the reap");
    lt_owner_kill(&holder);
}
