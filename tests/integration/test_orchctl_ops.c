/*
 * test_orchctl_ops.c - the real orchctl against a real launcher-service
 * (fake agent) and lease-service: `job spawn|show|wait|cancel`, `runs
 * list|savings`, `lease probe`, human and --json output parsed, and the exit
 * codes of docs/operations/orchctl.md: an unreachable service, a usage
 * error, an RPC error.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "test_launcher_util.h"

#define ORCHCTL ORCH_BINARY_DIR "/tools/orchctl/orchctl"

static struct {
    char db[600], workdir[256], outdir[256];
    th_svc launcher, lease;
    char env_launcher[128], env_lease[128];
    const char *env[3];
    char out[32768];
} T;

static void up(void)
{
    th_db_fresh(T.db, sizeof T.db);
    ln_tmpdir(T.workdir, sizeof T.workdir);
    ln_tmpdir(T.outdir, sizeof T.outdir);
    th_svc_start(&T.lease, "lease", T.db, NULL, true);
    ln_start(&T.launcher, T.db, T.outdir, NULL);
    snprintf(T.env_launcher, sizeof T.env_launcher, "ORCH_LAUNCHER_RPC_URL=%s", T.launcher.rpc_url);
    snprintf(T.env_lease, sizeof T.env_lease, "ORCH_LEASE_RPC_URL=%s", T.lease.rpc_url);
    T.env[0] = T.env_launcher;
    T.env[1] = T.env_lease;
    T.env[2] = NULL;
}

static void down(void)
{
    th_svc_stop(&T.launcher, SIGTERM, 30000);
    th_svc_stop(&T.lease, SIGTERM, 30000);
}

static int ctl(const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = ORCHCTL;
    for (const char *const *a = args; *a && n < 31; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    return th_run(argv, T.env, T.out, sizeof T.out, 60000);
}

#define CTL(...) ctl((const char *const[]){ __VA_ARGS__, NULL })

static json_t *parse(void)
{
    json_error_t err;
    json_t *j = json_loads(T.out, 0, &err);
    cr_assert(j, "not JSON (%s):\n%s", err.text, T.out);
    return j;
}

/* The job id of a --json Spawn/Get reply (64-bit ids may come as strings). */
static long long job_id(json_t *reply)
{
    json_t *v = json_object_get(json_object_get(reply, "job"), "id");
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return (long long)json_integer_value(v);
}

static void out_has(const char *needle)
{
    cr_assert(strstr(T.out, needle), "output lacks \"%s\":\n%s", needle, T.out);
}

TestSuite(orchctl_ops, .init = up, .fini = down, .timeout = 180);

Test(orchctl_ops, job_spawn_show_wait_and_runs)
{
    cr_assert_eq(CTL("--json", "job", "spawn", "tester", "ORCH-J1", "--workdir", T.workdir,
                     "--prompt", "fake: say test_status: PASS\nfake: usage\n"),
                 0, "%s", T.out);
    json_t *j = parse();
    long long id = job_id(j);
    cr_assert_gt(id, 0, "%s", T.out);
    json_decref(j);
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", id);

    cr_assert_eq(CTL("job", "wait", ids), 0, "%s", T.out);
    out_has("SUCCEEDED");
    cr_assert_eq(CTL("job", "show", ids), 0, "%s", T.out);
    out_has("SUCCEEDED");
    cr_assert_eq(CTL("--json", "job", "show", ids), 0, "%s", T.out);
    j = parse();
    cr_assert(json_object_get(j, "job"), "%s", T.out);
    json_decref(j);

    cr_assert_eq(CTL("runs", "list", "--role", "tester"), 0, "%s", T.out);
    out_has("ORCH-J1");
    out_has("1200/340 tokens");
    cr_assert_eq(CTL("--json", "runs", "list", "--item", "ORCH-J1"), 0, "%s", T.out);
    j = parse();
    cr_assert_eq(json_array_size(json_object_get(j, "runs")), 1, "%s", T.out);
    json_decref(j);

    cr_assert_eq(CTL("runs", "savings"), 0, "%s", T.out);
    out_has("tester");
    cr_assert_eq(CTL("--json", "runs", "savings", "--since-days", "7"), 0, "%s", T.out);
    j = parse();
    cr_assert(json_is_array(json_object_get(j, "roles")), "%s", T.out);
    json_decref(j);
}

Test(orchctl_ops, job_cancel_stops_a_running_job)
{
    cr_assert_eq(CTL("--json", "job", "spawn", "developer", "ORCH-J2", "--workdir", T.workdir,
                     "--prompt", "fake: sleep 60\n"),
                 0, "%s", T.out);
    json_t *j = parse();
    long long id = job_id(j);
    json_decref(j);
    cr_assert_gt(id, 0, "%s", T.out);
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", id);
    cr_assert_eq(CTL("job", "cancel", ids, "operator test"), 0, "%s", T.out);
    /* wait: 2 = finished otherwise than succeeded. */
    cr_assert_eq(CTL("--json", "job", "wait", ids), 2, "%s", T.out);
    j = parse();
    const char *st = json_string_value(json_object_get(json_object_get(j, "job"), "status"));
    cr_expect(st && strstr(st, "CANCELLED"), "%s", T.out);
    json_decref(j);
}

Test(orchctl_ops, lease_probe_answers_for_this_process)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    /* A bad start-ticks/boot pair is not alive; the call itself succeeds. */
    cr_assert_eq(CTL("--json", "lease", "probe", pid, "1", "00000000-0000-0000-0000-000000000000"),
                 0, "%s", T.out);
    json_t *j = parse();
    cr_assert(json_is_object(j), "%s", T.out);
    json_decref(j);
}

Test(orchctl_ops, exit_codes_unreachable_usage_and_rpc_error)
{
    /* RPC error: NOT_FOUND is 64 + 5. */
    cr_assert_eq(CTL("job", "show", "999999"), 64 + 5, "%s", T.out);
    out_has("NOT_FOUND");
    cr_assert_eq(CTL("--json", "job", "show", "999999"), 64 + 5, "%s", T.out);
    json_t *j = parse();
    cr_assert_str_eq(json_string_value(json_object_get(j, "code")), "NOT_FOUND", "%s", T.out);
    json_decref(j);

    /* Usage errors: 1. */
    cr_assert_eq(CTL("job", "show", "not-a-number"), 1, "%s", T.out);
    cr_assert_eq(CTL("runs", "list", "stray"), 1, "%s", T.out);
    cr_assert_eq(CTL("nonsense"), 1, "%s", T.out);

    /* Unreachable: UNAVAILABLE (64 + 14) or DEADLINE_EXCEEDED (64 + 4). */
    char dead[128];
    snprintf(dead, sizeof dead, "ORCH_LAUNCHER_RPC_URL=tcp://127.0.0.1:%d", th_free_port());
    const char *env[] = { dead, NULL };
    const char *argv[] = { ORCHCTL, "--timeout", "500", "runs", "savings", NULL };
    int rc = th_run(argv, env, T.out, sizeof T.out, 30000);
    cr_assert(rc == 64 + 14 || rc == 64 + 4, "unreachable service: exit %d:\n%s", rc, T.out);
}

/* Runs orchctl with stdout alone kept in T.out (stderr thrown away). */
static int ctl_stdout(const char *const *args)
{
    const char *argv[36];
    int n = 0;
    argv[n++] = "/bin/sh";
    argv[n++] = "-c";
    argv[n++] = "exec \"$0\" \"$@\" 2>/dev/null";
    argv[n++] = ORCHCTL;
    for (const char *const *a = args; *a && n < 35; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    return th_run(argv, T.env, T.out, sizeof T.out, 60000);
}

#define CTL_STDOUT(...) ctl_stdout((const char *const[]){ __VA_ARGS__, NULL })

Test(orchctl_ops, global_options_after_the_subcommand_are_accepted)
{
    cr_assert_eq(CTL("runs", "savings", "--json"), 0, "%s", T.out);
    json_decref(parse());
    cr_assert_eq(CTL("-o", "json", "runs", "list"), 0, "%s", T.out);
    json_decref(parse());
    cr_assert_eq(CTL("runs", "list", "--limit", "5", "-o", "json", "--timeout", "5000"), 0, "%s",
                 T.out);
    json_decref(parse());
    cr_assert_eq(CTL("runs", "list", "-o", "yaml"), 1, "-o takes only json: %s", T.out);
    /* job spawn keeps its own --timeout (seconds): 5000000 is over the
     * global's bound (3600000 ms, a usage error, 1), so only the job's own
     * option reaches launcher-service, which refuses it (64 + 3). */
    cr_assert_eq(CTL("job", "spawn", "tester", "ORCH-T1", "--workdir", T.workdir, "--prompt",
                     "fake: say test_status: PASS\n", "--timeout", "5000000", "--json"),
                 64 + 3, "job spawn --timeout is the job's own: %s", T.out);
    out_has("timeout_s");
}

Test(orchctl_ops, json_rpc_error_goes_to_stderr_not_stdout)
{
    cr_assert_eq(CTL_STDOUT("--json", "job", "show", "999999"), 64 + 5, "%s", T.out);
    cr_assert_str_eq(T.out, "", "stdout holds only replies");
    cr_assert_eq(CTL("job", "show", "999999", "--json"), 64 + 5, "%s", T.out);
    json_t *j = parse();
    cr_assert_str_eq(json_string_value(json_object_get(j, "code")), "NOT_FOUND", "%s", T.out);
    json_decref(j);
}

Test(orchctl_ops, lease_acquire_usage_names_instance)
{
    cr_assert_eq(CTL("lease", "acquire"), 1, "%s", T.out);
    out_has("[--instance ID]");
    cr_assert_eq(CTL("lease", "acquire", "--help"), 0, "%s", T.out);
    out_has("[--instance ID]");
}

/* Spawns a job that runs about `sleep_s` seconds with job timeout 60 s;
 * its id into ids. */
static void spawn_sleeper(const char *item, int sleep_s, char *ids, size_t n)
{
    char prompt[96];
    snprintf(prompt, sizeof prompt, "fake: sleep %d\nfake: say test_status: PASS\n", sleep_s);
    cr_assert_eq(CTL("--json", "job", "spawn", "tester", item, "--workdir", T.workdir, "--prompt",
                     prompt, "--timeout", "60"),
                 0, "%s", T.out);
    json_t *j = parse();
    long long id = job_id(j);
    json_decref(j);
    cr_assert_gt(id, 0, "%s", T.out);
    snprintf(ids, n, "%lld", id);
}

Test(orchctl_ops, job_wait_outlasts_the_call_deadline_and_shows_progress_only_on_a_terminal)
{
    char ids[32];
    /* The job's own timeout bounds the wait, not --timeout (once the
     * bound): a 3 s job outlasts every 500 ms call. */
    spawn_sleeper("ORCH-W1", 3, ids, sizeof ids);
    cr_assert_eq(CTL("--timeout", "500", "job", "wait", ids), 0, "%s", T.out);
    out_has("SUCCEEDED");
    cr_assert_null(strchr(T.out, '\r'), "a status line when not a terminal:\n%s", T.out);
    cr_assert_null(strchr(T.out, '\033'), "escape codes when not a terminal:\n%s", T.out);

    /* On a terminal (script(1)): a status line rewritten in place, erased
     * before the result. */
    spawn_sleeper("ORCH-W2", 3, ids, sizeof ids);
    char cmd[600], line[64];
    snprintf(cmd, sizeof cmd, "script -qec \"'%s' --timeout 500 job wait %s\" /dev/null", ORCHCTL,
             ids);
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    cr_assert_eq(th_run(argv, T.env, T.out, sizeof T.out, 60000), 0, "%s", T.out);
    snprintf(line, sizeof line, "\rjob %s RUNNING ", ids);
    out_has(line);
    out_has("(timeout 60 s)\033[K");
    out_has("\r\033[Kjob ");
    out_has("SUCCEEDED");
}
