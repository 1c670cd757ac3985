/*
 * test_pipeline_e2e.c - launcher-service, stage-service and lease-service
 * together, as in production: an agent job's verdicts become evidence, the
 * launcher's monitor asks the real stage-service to advance the item, and
 * the stage engine runs its gates and effects (against the imitation of the
 * hooks). A good verdict advances the item; a bad one does not.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stage_world.h"
#include "test_launcher_util.h"

static sw_world W;
static th_svc launcher;
static char outdir[256], workdir[256];

static void up(void)
{
    sw_up(&W, NULL);
    ln_tmpdir(outdir, sizeof outdir);
    ln_tmpdir(workdir, sizeof workdir);
    char stage_url[128], lease_url[128];
    snprintf(stage_url, sizeof stage_url, "ORCH_STAGE_RPC_URL=%s", W.stage.rpc_url);
    snprintf(lease_url, sizeof lease_url, "ORCH_LEASE_RPC_URL=%s", W.lease.rpc_url);
    const char *extra[] = { stage_url, lease_url, "ORCH_LAUNCHER_MONITOR_RETRY_MS=200", NULL };
    ln_start(&launcher, W.db, outdir, extra);
}

static void down(void)
{
    if (launcher.pid > 0 && th_svc_stop(&launcher, SIGTERM, 10000) != 0)
        th_svc_dump_log(&launcher);
    sw_down(&W);
}

TestSuite(pipeline_e2e, .init = up, .fini = down, .timeout = 120);

static bool wait_stage(const char *item, const char *want, char *got, size_t n)
{
    for (int i = 0; i < 200; i++) {
        sw_stage_of(&W, item, got, n);
        if (strcmp(got, want) == 0)
            return true;
        usleep(100000);
    }
    return false;
}

Test(pipeline_e2e, tester_pass_advances_through_the_real_engine)
{
    cr_assert_eq(sw_create(W.client, "E2E-1", "org/app", 9100), ORCH_CODE_OK);
    sw_walk_to(&W, "E2E-1", "testing");
    ln_job j = ln_spawn(&launcher, "tester", "E2E-1",
                        "fake: say test_status: PASS\n"
                        "fake: say security_status: PASS\n"
                        "fake: say coverage_pct: 88.5\n",
                        workdir, 30, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    char stage[32];
    cr_assert(wait_stage("E2E-1", "staging", stage, sizeof stage), "stage is %s", stage);
    char *who = th_sql(W.db, "SELECT actor FROM stage_history h JOIN tasks t ON t.id = h.task_id"
                             " WHERE t.work_item = 'E2E-1' ORDER BY h.id DESC LIMIT 1");
    cr_assert_str_eq(who, "monitor");
    free(who);
    cr_assert_eq(sw_counts_for_item("E2E-1").image_starts, 1, "the image was built once");
    char *pct = th_sql(W.db, "SELECT pct FROM coverage_baseline WHERE repo = 'org/app'");
    cr_assert_str_eq(pct, "88.5");
    free(pct);
    char *lease = th_sql(W.db, "SELECT count(*) FROM stage_history h JOIN tasks t"
                               " ON t.id = h.task_id WHERE t.work_item = 'E2E-1'"
                               " AND h.to_stage = 'staging' AND h.lease_epoch > 0");
    cr_assert_str_eq(lease, "1", "the monitor's transition held the lease");
    free(lease);
}

Test(pipeline_e2e, tester_fail_leaves_the_item_in_testing)
{
    cr_assert_eq(sw_create(W.client, "E2E-2", "org/app", 9101), ORCH_CODE_OK);
    sw_walk_to(&W, "E2E-2", "testing");
    ln_job j =
        ln_spawn(&launcher, "tester", "E2E-2", "fake: say test_status: FAIL\n", workdir, 30, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    ln_job w = { 0 };
    for (int i = 0; i < 100; i++) {
        w = ln_wait(&launcher, j.id, 100);
        if (strcmp(w.monitor_state, "not-advanced") == 0)
            break;
        usleep(50000);
    }
    cr_assert_str_eq(w.monitor_state, "not-advanced");
    usleep(500000);
    char stage[32];
    sw_stage_of(&W, "E2E-2", stage, sizeof stage);
    cr_assert_str_eq(stage, "testing");
    char *n = th_sql(W.db, "SELECT count(*) FROM stage_history WHERE actor = 'monitor'");
    cr_assert_str_eq(n, "0");
    free(n);
    cr_assert_eq(sw_counts_for_item("E2E-2").image_calls, 0);
}
