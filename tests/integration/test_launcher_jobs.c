/*
 * test_launcher_jobs.c - launcher-service against real PostgreSQL with the
 * fake agent: spawn and finish with verdicts and usage recorded, timeout and
 * cancel kill the whole process group, an output flood stays bounded, bad
 * input gets INVALID_ARGUMENT, the monitor reports to a recording
 * StageService (advance on a good verdict, not on a bad one, DEFERRED asked
 * again).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_launcher_util.h"

static th_svc svc;
static char db[512], outdir[256], workdir[256];

static void setup_with(const char *const *extra)
{
    th_db_fresh(db, sizeof db);
    ln_tmpdir(outdir, sizeof outdir);
    ln_tmpdir(workdir, sizeof workdir);
    ln_start(&svc, db, outdir, extra);
}

static void setup(void)
{
    const char *extra[] = { "ORCH_STAGE_RPC_URL=", NULL };
    setup_with(extra);
}

static void teardown(void)
{
    if (svc.pid > 0 && th_svc_stop(&svc, SIGTERM, 10000) != 0)
        th_svc_dump_log(&svc);
}

TestSuite(launcher_jobs, .init = setup, .fini = teardown, .timeout = 120);

Test(launcher_jobs, spawn_and_finish_records_verdicts_and_usage)
{
    ln_job j = ln_spawn(&svc, "tester", "ORCH-1",
                        "run the tests\nfake: say test_status: PASS\nfake: say coverage_pct: 83.4\n"
                        "fake: usage\n",
                        workdir, 30, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    cr_assert_gt(j.id, 0);
    ln_job w = ln_wait(&svc, j.id, 20000);
    cr_assert_eq(w.code, ORCH_CODE_OK, "%s", w.message);
    cr_assert(w.finished, "status %s", w.status);
    cr_expect_str_eq(w.status, "SUCCEEDED");
    cr_assert(w.have_run);
    cr_expect_eq(w.exit_status, 0);
    cr_expect(strstr(w.verdicts, "test_status=PASS;") != NULL, "%s", w.verdicts);
    cr_expect(strstr(w.verdicts, "coverage_pct=83.4;") != NULL, "%s", w.verdicts);
    cr_expect(w.usage_known);
    cr_expect_eq(w.input_tokens, 1200);
    cr_expect_eq(w.output_tokens, 340);
    cr_expect(w.cost_known);
    cr_expect(w.cost_usd > 0.042 && w.cost_usd < 0.0422, "%f", w.cost_usd);
    char *n = th_sql(db, "SELECT count(*) FROM agent_runs WHERE role = 'tester' AND work_item = "
                         "'ORCH-1' AND (verdicts->>'test_status') = 'PASS'");
    cr_expect_str_eq(n, "1");
    free(n);
    /* The agent did not see the database URL. */
    FILE *f = fopen(w.stdout_path, "r");
    cr_assert_not_null(f, "%s", w.stdout_path);
    char buf[4096];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    cr_expect_null(strstr(buf, "leaked"), "%s", buf);
    /* The supervisor's lines about the job carry its work item as a key. */
    cr_expect(th_svc_wait_log(&svc, "\"work_item\":\"ORCH-1\",\"msg\":\"job ", 2000));
}

Test(launcher_jobs, absent_usage_is_unknown_not_zero)
{
    ln_job j = ln_spawn(&svc, "developer", "ORCH-2", "fake: say done: yes\n", workdir, 30, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    ln_job w = ln_wait(&svc, j.id, 20000);
    cr_assert(w.finished);
    cr_expect(!w.usage_known);
    cr_expect(!w.cost_known);
    char *n = th_sql(db, "SELECT count(*) FROM agent_runs WHERE input_tokens IS NULL AND "
                         "cost_usd IS NULL AND work_item = 'ORCH-2'");
    cr_expect_str_eq(n, "1");
    free(n);
}

Test(launcher_jobs, crash_and_nonzero_exit_are_failures)
{
    ln_job a = ln_spawn(&svc, "tester", "ORCH-3", "fake: crash\n", workdir, 30, NULL);
    ln_job b = ln_spawn(&svc, "tester", "ORCH-4", "fake: exit 3\n", workdir, 30, NULL);
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
    cr_assert_eq(b.code, ORCH_CODE_OK, "%s", b.message);
    ln_job wa = ln_wait(&svc, a.id, 20000), wb = ln_wait(&svc, b.id, 20000);
    cr_expect_str_eq(wa.status, "FAILED");
    cr_expect_eq(wa.exit_status, 128 + SIGSEGV);
    cr_expect_str_eq(wb.status, "FAILED");
    cr_expect_eq(wb.exit_status, 3);
}

Test(launcher_jobs, timeout_kills_the_whole_process_group)
{
    ln_job j = ln_spawn(&svc, "tester", "ORCH-5",
                        "fake: child\nfake: ignore-term\nfake: sleep 60\n", workdir, 1, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    char pidfile[400];
    snprintf(pidfile, sizeof pidfile, "%s/child.pid", workdir);
    pid_t child = 0;
    for (int i = 0; i < 100 && child == 0; i++, usleep(50000))
        child = ln_read_pid(pidfile);
    cr_assert_gt(child, 0, "the fake agent did not start its child");
    cr_assert(ln_proc_alive(child));
    ln_job w = ln_wait(&svc, j.id, 20000);
    cr_assert(w.finished, "status %s", w.status);
    cr_expect_str_eq(w.status, "TIMED_OUT");
    cr_expect_gt(w.pid, 0);
    cr_expect(!ln_proc_alive(w.pid), "the agent %d survived", (int)w.pid);
    cr_expect(!ln_proc_alive(child), "the agent's child %d survived (orphan)", (int)child);
}

Test(launcher_jobs, cancel_kills_the_job)
{
    ln_job j =
        ln_spawn(&svc, "reviewer", "ORCH-6", "fake: child\nfake: sleep 60\n", workdir, 60, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    char pidfile[400];
    snprintf(pidfile, sizeof pidfile, "%s/child.pid", workdir);
    pid_t child = 0;
    for (int i = 0; i < 100 && child == 0; i++, usleep(50000))
        child = ln_read_pid(pidfile);
    cr_assert_gt(child, 0);
    ln_job c = ln_cancel(&svc, j.id);
    cr_assert_eq(c.code, ORCH_CODE_OK, "%s", c.message);
    ln_job w = ln_wait(&svc, j.id, 10000);
    cr_expect_str_eq(w.status, "CANCELLED");
    cr_expect(!ln_proc_alive(child), "child %d survived the cancel", (int)child);
    ln_job again = ln_cancel(&svc, j.id);
    cr_expect_eq(again.code, ORCH_CODE_OK);
    cr_expect_str_eq(again.status, "CANCELLED");
}

Test(launcher_jobs, output_flood_is_bounded)
{
    teardown();
    const char *extra[] = { "ORCH_STAGE_RPC_URL=", "ORCH_LAUNCHER_OUTPUT_MAX_BYTES=1000000", NULL };
    ln_start(&svc, db, outdir, extra);
    ln_job j = ln_spawn(&svc, "tester", "ORCH-7",
                        "fake: flood 200000000\nfake: say test_status: PASS\n", workdir, 60, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    ln_job w = ln_wait(&svc, j.id, 30000);
    cr_assert(w.finished, "status %s", w.status);
    cr_expect_str_eq(w.status, "FAILED");
    cr_expect(strstr(w.finish_reason, "output") != NULL, "%s", w.finish_reason);
    struct stat st;
    cr_assert_eq(stat(w.stdout_path, &st), 0);
    cr_expect_lt(st.st_size, 100000000, "stdout grew to %lld bytes", (long long)st.st_size);
    cr_expect(th_svc_alive(&svc));
}

Test(launcher_jobs, bad_input_gets_invalid_argument)
{
    struct {
        const char *role, *item, *prompt, *workdir;
        uint32_t timeout;
        const char *stage;
    } cases[] = {
        { "wizard", "ORCH-8", "p", workdir, 10, NULL },          /* unknown role */
        { "tester", "ORCH-8", "", workdir, 10, NULL },           /* empty prompt */
        { "tester", "ORCH-8", "p", "/no/such/dir", 10, NULL },   /* missing workdir */
        { "tester", "ORCH-8", "p", "relative", 10, NULL },       /* not absolute */
        { "tester", "ORCH-8", "p", workdir, 0, NULL },           /* timeout 0 */
        { "tester", "ORCH-8", "p", workdir, 4000000000u, NULL }, /* huge timeout */
        { "tester", "", "p", workdir, 10, NULL },                /* no work item */
        { "tester", "ORCH-8", "p", workdir, 10, "deploy" },      /* no such route */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ln_job j = ln_spawn(&svc, cases[i].role, cases[i].item, cases[i].prompt, cases[i].workdir,
                            cases[i].timeout, cases[i].stage);
        cr_expect_eq(j.code, ORCH_CODE_INVALID_ARGUMENT, "case %zu: %s: %s", i,
                     orch_code_name(j.code), j.message);
    }
    ln_job w = ln_wait(&svc, 987654, 100);
    cr_expect_eq(w.code, ORCH_CODE_NOT_FOUND);
    ln_job z = ln_wait(&svc, 0, 100);
    cr_expect_eq(z.code, ORCH_CODE_INVALID_ARGUMENT);
    char *n = th_sql(db, "SELECT count(*) FROM jobs");
    cr_expect_str_eq(n, "0", "a rejected Spawn wrote a job");
    free(n);
    cr_expect(th_svc_alive(&svc));
}

/* ---- monitor ---------------------------------------------------------------- */

static char stage_url[64];

static void setup_stage(void)
{
    ln_stage_start(1, stage_url, sizeof stage_url);
    char var[128];
    snprintf(var, sizeof var, "ORCH_STAGE_RPC_URL=%s", stage_url);
    const char *extra[] = { var, "ORCH_LAUNCHER_MONITOR_RETRY_MS=200", NULL };
    setup_with(extra);
}

static void teardown_stage(void)
{
    teardown();
    ln_stage_stop();
}

TestSuite(launcher_monitor, .init = setup_stage, .fini = teardown_stage, .timeout = 120);

static bool wait_monitor(uint64_t id, const char *state, char *got, size_t n)
{
    for (int i = 0; i < 200; i++) {
        ln_job w = ln_wait(&svc, id, 100);
        snprintf(got, n, "%s", w.monitor_state);
        if (strcmp(w.monitor_state, state) == 0)
            return true;
        usleep(50000);
    }
    return false;
}

Test(launcher_monitor, good_verdict_advances_after_a_deferral)
{
    ln_job j =
        ln_spawn(&svc, "tester", "ORCH-10", "fake: say test_status: PASS\n", workdir, 30, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    char got[32];
    cr_assert(wait_monitor(j.id, "advanced", got, sizeof got), "monitor state %s", got);
    ln_stage_call calls[8];
    int n = ln_stage_calls(calls, 8);
    cr_assert_eq(n, 2, "%d AdvanceStage calls (one DEFERRED, then ADVANCED)", n);
    cr_expect_str_eq(calls[1].work_item, "ORCH-10");
    cr_expect_str_eq(calls[1].expected_from, "testing");
    cr_expect_str_eq(calls[1].to, "staging");
    cr_expect_str_eq(calls[1].actor, "monitor");
    cr_expect(strstr(calls[1].evidence, "test_status: PASS") != NULL, "%s", calls[1].evidence);
    cr_expect_eq(calls[1].nverdicts, 1);
}

Test(launcher_monitor, bad_verdict_does_not_advance)
{
    ln_job j =
        ln_spawn(&svc, "tester", "ORCH-11", "fake: say test_status: FAIL\n", workdir, 30, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    char got[32];
    cr_assert(wait_monitor(j.id, "not-advanced", got, sizeof got), "monitor state %s", got);
    usleep(500000);
    ln_stage_call calls[2];
    cr_expect_eq(ln_stage_calls(calls, 2), 0, "AdvanceStage was asked on a FAIL verdict");
}

Test(launcher_monitor, deploy_job_reports_as_deploy_finalizer)
{
    ln_job j = ln_spawn(&svc, "deployer", "ORCH-12", "fake: result deploy_status: SUCCESS\n",
                        workdir, 30, "deploy");
    cr_assert_eq(j.code, ORCH_CODE_OK, "%s", j.message);
    char got[32];
    cr_assert(wait_monitor(j.id, "advanced", got, sizeof got), "monitor state %s", got);
    ln_stage_call calls[4];
    int n = ln_stage_calls(calls, 4);
    cr_assert_geq(n, 1);
    cr_expect_str_eq(calls[n - 1].actor, "deploy-finalizer");
    cr_expect_str_eq(calls[n - 1].expected_from, "deploy");
    cr_expect_str_eq(calls[n - 1].to, "done");
}

/* Regression: every launcher reported every finished job, whichever host ran
 * it, so two hosts reported the same job twice. A job is reported by the
 * launcher of its own host only. */
Test(launcher_monitor, jobs_of_another_host_are_not_reported)
{
    free(th_sql(db, "INSERT INTO jobs (role, work_item, status, host_id, boot_id, instance_id,"
                    " pid, start_ticks, timeout_s, started_at, finished_at, stage,"
                    " monitor_state) VALUES ('tester', 'ORCH-13', 'succeeded', 'another-host',"
                    " 'b', 'i', 4242, 1, 60, now(), now(), 'testing', 'pending') RETURNING id"));
    usleep(1500000); /* several monitor passes at ORCH_LAUNCHER_MONITOR_RETRY_MS=200 */
    ln_stage_call calls[2];
    cr_expect_eq(ln_stage_calls(calls, 2), 0, "a job of another host was reported here");
    char *st = th_sql(db, "SELECT monitor_state FROM jobs WHERE work_item = 'ORCH-13'");
    cr_expect_str_eq(st, "pending", "left for its own host's launcher");
    free(st);
}
