/*
 * test_orchctl_cli.c - the real orchctl against a real lease-service and
 * stage-service: where addresses come from (environment < --config FILE <
 * --<svc>-url / --endpoints) and the usage errors of a bad file, key or
 * address; `version` with and without --services; the watch mode of
 * `lease list` and `stage queue` (--count, SIGINT/SIGTERM, the screen
 * cleared only on a terminal).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define ORCHCTL    ORCH_BINARY_DIR "/tools/orchctl/orchctl"
#define NOWHERE    "tcp://127.0.0.1:1"
#define RPC(code)  (64 + ORCH_CODE_##code)
#define CLEAR_SEEN "\033[H\033[2J"

static struct {
    char db[600], dir[256], conf[300];
    th_svc lease, stage;
    char env_stage[128];
    const char *env[6];
    char out[65536];
} T;

static void up(void)
{
    th_db_fresh(T.db, sizeof T.db);
    th_svc_start(&T.lease, "lease", T.db, NULL, true);
    char lease_env[128];
    snprintf(lease_env, sizeof lease_env, "ORCH_LEASE_RPC_URL=%s", T.lease.rpc_url);
    const char *const senv[] = { lease_env, NULL };
    th_svc_start(&T.stage, "stage", T.db, senv, true);
    snprintf(T.dir, sizeof T.dir, "/tmp/orch-cli-XXXXXX");
    cr_assert(mkdtemp(T.dir), "mkdtemp");
    snprintf(T.conf, sizeof T.conf, "%s/orchctl.env", T.dir);
    /* The environment points at nothing: only a later layer can reach. */
    snprintf(T.env_stage, sizeof T.env_stage, "ORCH_STAGE_RPC_URL=%s", T.stage.rpc_url);
    T.env[0] = "ORCH_LEASE_RPC_URL=" NOWHERE;
    T.env[1] = "ORCH_GUARD_RPC_URL=" NOWHERE;
    T.env[2] = "ORCH_LAUNCHER_RPC_URL=" NOWHERE;
    T.env[3] = T.env_stage;
    T.env[4] = NULL;
}

static void down(void)
{
    th_svc_stop(&T.stage, SIGTERM, 30000);
    th_svc_stop(&T.lease, SIGTERM, 30000);
    unlink(T.conf); /* the only file a test writes there */
    if (rmdir(T.dir) != 0)
        fprintf(stderr, "could not remove %s\n", T.dir);
}

static int ctl(const char *const *args)
{
    const char *argv[40];
    int n = 0;
    argv[n++] = ORCHCTL;
    for (const char *const *a = args; *a && n < 39; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    return th_run(argv, T.env, T.out, sizeof T.out, 30000);
}

#define CTL(...) ctl((const char *const[]){ __VA_ARGS__, NULL })

/* Runs `script` with sh -c; its output is in T.out. */
static int sh(const char *script)
{
    const char *argv[] = { "/bin/sh", "-c", script, NULL };
    return th_run(argv, T.env, T.out, sizeof T.out, 30000);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void out_has(const char *needle)
{
    cr_assert(strstr(T.out, needle), "output lacks \"%s\":\n%s", needle, T.out);
}

static int count_of(const char *needle)
{
    int n = 0;
    for (const char *p = T.out; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

TestSuite(orchctl_cli, .init = up, .fini = down, .timeout = 120);

Test(orchctl_cli, config_file_overrides_the_environment_and_flags_override_it)
{
    char text[1024];
    snprintf(text, sizeof text,
             "# as in .env\n"
             "\n"
             "ORCH_RUNTIME=staging\n"
             "export ORCH_LEASE_RPC_URL=\"%s\"\n"
             "ORCH_DATABASE_URL='postgresql://orch@127.0.0.1:5432/orch'\n"
             "ORCH_LOG_LEVEL=info   # a comment after a bare value\n"
             "DEPLOY_DB_PASSWORD=another tool's key\n",
             T.lease.rpc_url);
    write_file(T.conf, text);
    cr_assert_eq(CTL("--timeout", "500", "health", "lease"), RPC(DEADLINE_EXCEEDED), "%s", T.out);
    cr_assert_eq(CTL("--config", T.conf, "health", "lease"), 0, "%s", T.out);
    out_has(T.lease.rpc_url);
    /* A global option after the command, --name=VALUE. */
    char opt[400];
    snprintf(opt, sizeof opt, "--config=%s", T.conf);
    cr_assert_eq(CTL("health", "lease", "--json", opt), 0, "%s", T.out);
    /* The flag beats the file, in whichever order they come. */
    cr_assert_eq(
        CTL("--lease-url", NOWHERE, "--timeout", "500", "--config", T.conf, "health", "lease"),
        RPC(DEADLINE_EXCEEDED), "%s", T.out);
    out_has(NOWHERE);
    char ep[200];
    snprintf(ep, sizeof ep, "--endpoints=lease=%s,stage=%s", T.lease.rpc_url, T.stage.rpc_url);
    cr_assert_eq(CTL(ep, "health", "lease", "stage"), 0, "%s", T.out);
    cr_assert_eq(CTL("health", "lease", "--lease-url", T.lease.rpc_url), 0, "%s", T.out);
    /* .env.example itself is a valid file. */
    cr_assert_eq(CTL("--config", ORCH_SOURCE_DIR "/.env.example", "version"), 0, "%s", T.out);
}

Test(orchctl_cli, a_bad_file_key_or_address_is_a_usage_error)
{
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.env", T.dir);
    cr_assert_eq(CTL("--config", missing, "health"), 1, "%s", T.out);
    out_has("--config");
    out_has("none.env");

    write_file(T.conf, "ORCH_LOG_LEVEL=info\nthis is not a setting\n");
    cr_assert_eq(CTL("--config", T.conf, "health"), 1, "%s", T.out);
    out_has("orchctl.env:2: not KEY=value");

    write_file(T.conf, "ORCH_LEASE_RCP_URL=tcp://127.0.0.1:7701\n");
    cr_assert_eq(CTL("lease", "list", "--config", T.conf), 1, "%s", T.out);
    out_has("orchctl.env:1: unknown key ORCH_LEASE_RCP_URL");

    cr_assert_eq(CTL("--lease-url", "127.0.0.1:7701", "health"), 1, "%s", T.out);
    out_has("--lease-url: '127.0.0.1:7701' is not an address");
    cr_assert_eq(CTL("--endpoints", "leas=tcp://127.0.0.1:1", "health"), 1, "%s", T.out);
    out_has("--endpoints: 'leas' is not SERVICE=URL");
    cr_assert_eq(CTL("health", "--config"), 1, "%s", T.out);
    out_has("--config needs a value");
}

Test(orchctl_cli, version_and_the_services_versions)
{
    cr_assert_eq(CTL("--version"), 0, "%s", T.out);
    char mine[64];
    snprintf(mine, sizeof mine, "%.63s", T.out);
    cr_assert(strncmp(mine, "orchctl ", 8) == 0 && strlen(mine) > 9, "%s", mine);
    cr_assert_eq(CTL("version"), 0, "%s", T.out);
    cr_assert_str_eq(T.out, mine);

    cr_assert_eq(CTL("--json", "version"), 0, "%s", T.out);
    json_error_t err;
    json_t *j = json_loads(T.out, 0, &err);
    cr_assert(j, "not JSON: %s", T.out);
    const char *v = json_string_value(json_object_get(j, "orchctl"));
    cr_assert(v && strstr(mine, v), "%s", T.out);
    json_decref(j);

    /* guard and launcher are not running: their code, and exit 64 + the first. */
    char lease[120];
    snprintf(lease, sizeof lease, "--lease-url=%s", T.lease.rpc_url);
    cr_assert_eq(CTL("--timeout", "500", lease, "version", "--services"), RPC(DEADLINE_EXCEEDED),
                 "%s", T.out);
    char line[160];
    snprintf(line, sizeof line, "lease-service     %.*s  %s", (int)strcspn(mine + 8, "\n"),
             mine + 8, T.lease.rpc_url);
    out_has(line);
    out_has("guard-service     DEADLINE_EXCEEDED");
    cr_assert_eq(CTL("--json", "--timeout", "500", lease, "version", "--services"),
                 RPC(DEADLINE_EXCEEDED), "%s", T.out);
    j = json_loads(T.out, 0, &err);
    cr_assert(j, "not JSON: %s", T.out);
    json_t *svcs = json_object_get(j, "services");
    cr_assert_eq(json_array_size(svcs), 4, "%s", T.out);
    json_t *l = json_array_get(svcs, 0);
    cr_assert_str_eq(json_string_value(json_object_get(l, "service")), "lease-service");
    const char *lv = json_string_value(json_object_get(l, "version"));
    cr_assert(lv && lv[0] && strstr(mine, lv), "lease-service's version: %s", T.out);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(svcs, 2), "code")),
                     "DEADLINE_EXCEEDED");
    json_decref(j);
}

Test(orchctl_cli, watch_stops_after_count_refreshes)
{
    char lease[120];
    snprintf(lease, sizeof lease, "--lease-url=%s", T.lease.rpc_url);
    cr_assert_eq(CTL(lease, "lease", "list", "-w", "--count", "3", "--interval", "50"), 0, "%s",
                 T.out);
    cr_assert_eq(count_of("no held leases"), 3, "%s", T.out);
    cr_assert_null(strstr(T.out, "\033["), "escape codes when not a terminal:\n%s", T.out);
    /* Without --watch, --count changes nothing. */
    cr_assert_eq(CTL(lease, "lease", "list", "--count", "3"), 0, "%s", T.out);
    cr_assert_eq(count_of("no held leases"), 1, "%s", T.out);

    cr_assert_eq(CTL("stage", "queue", "--watch", "--count", "2", "--interval", "50"), 0, "%s",
                 T.out);
    cr_assert_eq(count_of("no tasks"), 2, "%s", T.out);
    cr_assert_eq(CTL("--json", "stage", "queue", "-w", "--count", "2", "--interval", "50"), 0, "%s",
                 T.out);
    json_error_t err;
    json_t *j = json_loads(T.out, JSON_DISABLE_EOF_CHECK, &err);
    cr_assert(j, "not JSON: %s", T.out);
    json_decref(j);
    cr_assert_eq(count_of("}\n{"), 1, "two JSON documents:\n%s", T.out);
    /* A refresh that fails ends the watch with its status. */
    cr_assert_eq(CTL("--timeout", "300", "lease", "list", "-w", "--interval", "50"),
                 RPC(DEADLINE_EXCEEDED), "%s", T.out);
}

Test(orchctl_cli, watch_ends_with_0_on_sigint_and_sigterm)
{
    const char *sigs[] = { "INT", "TERM" };
    for (size_t i = 0; i < 2; i++) {
        char script[600];
        snprintf(script, sizeof script,
                 "'%s' stage queue -w --interval 100 & p=$!; sleep 1; kill -%s $p; wait $p; "
                 "echo \"rc=$?\"",
                 ORCHCTL, sigs[i]);
        cr_assert_eq(sh(script), 0, "%s", T.out);
        out_has("rc=0");
        cr_assert_geq(count_of("no tasks"), 2, "SIG%s: %s", sigs[i], T.out);
    }
}

Test(orchctl_cli, watch_clears_the_screen_only_on_a_terminal)
{
    char script[600];
    /* script(1) gives orchctl a terminal. */
    snprintf(script, sizeof script,
             "script -qec \"'%s' stage queue -w --count 2 --interval 50\" /dev/null", ORCHCTL);
    cr_assert_eq(sh(script), 0, "%s", T.out);
    cr_assert_eq(count_of(CLEAR_SEEN), 2, "%s", T.out);
    cr_assert_eq(count_of("no tasks"), 2, "%s", T.out);
}
