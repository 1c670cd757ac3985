/*
 * test_orchctl_stage.c - the real orchctl binary against a real
 * stage-service and lease-service (stage_world): the output and exit code
 * of every `orchctl stage` subcommand, a deferred transition while another
 * owner holds the lease, refused transitions, and bad input.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stage_world.h"

#define ORCHCTL     ORCH_BINARY_DIR "/tools/orchctl/orchctl"
#define EXIT_DEFER  4
#define EXIT_REFUSE 5
#define RPC(code)   (64 + ORCH_CODE_##code)

static sw_world W;

static struct {
    char stage_env[128], lease_env[128];
    const char *env[3];
    char out[32768];
} T;

static void up(void)
{
    sw_up(&W, NULL);
    snprintf(T.stage_env, sizeof T.stage_env, "ORCH_STAGE_RPC_URL=%s", W.stage.rpc_url);
    snprintf(T.lease_env, sizeof T.lease_env, "ORCH_LEASE_RPC_URL=%s", W.lease.rpc_url);
    T.env[0] = T.stage_env;
    T.env[1] = T.lease_env;
    T.env[2] = NULL;
}

static void down(void)
{
    sw_down(&W);
}

/* Runs orchctl with `args` (NULL-terminated); its output is in T.out. */
static int ctl(const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = ORCHCTL;
    for (const char *const *a = args; *a && n < 31; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    return th_run(argv, T.env, T.out, sizeof T.out, 30000);
}

#define CTL(...) ctl((const char *const[]){ __VA_ARGS__, NULL })

static json_t *parse(void)
{
    json_error_t err;
    json_t *j = json_loads(T.out, 0, &err);
    cr_assert(j, "not JSON (%s):\n%s", err.text, T.out);
    return j;
}

static const char *jstr(json_t *j, const char *path1, const char *path2)
{
    json_t *v = json_object_get(j, path1);
    if (path2)
        v = json_object_get(v, path2);
    return json_string_value(v) ? json_string_value(v) : "";
}

static void assert_stage(const char *item, const char *want)
{
    char now[32];
    sw_stage_of(&W, item, now, sizeof now);
    cr_assert_str_eq(now, want, "%s is in %s, expected %s", item, now, want);
}

static void assert_out_has(const char *needle)
{
    cr_assert(strstr(T.out, needle), "output lacks \"%s\":\n%s", needle, T.out);
}

Test(orchctl_stage, help_at_every_level_and_usage_errors, .init = up, .fini = down, .timeout = 120)
{
    cr_assert_eq(CTL("stage", "--help"), 0, "%s", T.out);
    assert_out_has("advance WORK_ITEM");
    assert_out_has("4 deferred");
    const char *subs[] = { "create", "show", "advance", "rollback", "cancel", "queue", "pipeline" };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        cr_assert_eq(CTL("stage", subs[i], "--help"), 0, "%s --help: %s", subs[i], T.out);
        assert_out_has("usage: orchctl [--json] stage");
    }
    cr_assert_eq(CTL("--help"), 0, "%s", T.out);
    assert_out_has("stage <subcommand>");
    cr_assert_eq(CTL("stage"), 1, "%s", T.out);
    cr_assert_eq(CTL("stage", "frobnicate"), 1, "%s", T.out);
    cr_assert_eq(CTL("stage", "create", "ORCH-U1"), 1, "no --repo: %s", T.out);
    cr_assert_eq(CTL("stage", "advance", "ORCH-U1", "--to", "analysis"), 1, "no --from: %s", T.out);
    cr_assert_eq(CTL("stage", "advance", "ORCH-U1", "--from", "backlog", "--to", "analysis",
                     "--verdict", "no-equals-sign"),
                 1, "%s", T.out);
    cr_assert_eq(CTL("stage", "advance", "ORCH-U1", "--from", "backlog", "--to", "analysis",
                     "--evidence-file", "/nonexistent/verdicts.txt"),
                 1, "%s", T.out);
    cr_assert_eq(CTL("stage", "rollback", "ORCH-U1", "--from", "review"), 1, "no reason: %s",
                 T.out);
    cr_assert_eq(CTL("stage", "queue", "--limit", "1001"), 1, "%s", T.out);
    cr_assert_eq(CTL("stage", "show"), 1, "%s", T.out);
    cr_assert_eq(CTL("stage", "pipeline", "extra"), 1, "%s", T.out);
    /* Nothing above reached the service: no task was created. */
    cr_assert_eq(CTL("stage", "show", "ORCH-U1"), RPC(NOT_FOUND), "%s", T.out);
}

Test(orchctl_stage, pipeline_prints_the_table, .init = up, .fini = down, .timeout = 120)
{
    cr_assert_eq(CTL("stage", "pipeline"), 0, "%s", T.out);
    assert_out_has("stages: backlog analysis architecture development review testing staging "
                   "deploy done cancelled");
    assert_out_has("review -> testing");
    assert_out_has("merge_pr");
    assert_out_has("check_security, check_coverage");
    assert_out_has("coverage_ratchet, image_rebuild");
    cr_assert_eq(CTL("--json", "stage", "pipeline"), 0, "%s", T.out);
    json_t *j = parse();
    json_t *edges = json_object_get(j, "edges");
    cr_assert_eq(json_array_size(edges), 20, "%s", T.out);
    int rollbacks = 0, cancels = 0;
    for (size_t i = 0; i < json_array_size(edges); i++) {
        const char *kind = jstr(json_array_get(edges, i), "kind", NULL);
        rollbacks += strcmp(kind, "rollback") == 0;
        cancels += strcmp(kind, "cancel") == 0;
    }
    cr_assert_eq(rollbacks, 4);
    cr_assert_eq(cancels, 8);
    json_t *ts = json_array_get(edges, 5); /* testing -> staging */
    cr_assert_str_eq(jstr(ts, "from_stage", NULL), "testing", "%s", T.out);
    cr_assert_eq(json_array_size(json_object_get(ts, "rollback_gates")), 2, "%s", T.out);
    json_decref(j);
}

/* ORCH-C1 goes architecture -> development with its verdict in a file
 * (prose around it ignored), then development -> review from stdin. */
static void advance_with_evidence_file_and_stdin(void)
{
    /* Verdict lines from a file, prose around them ignored. */
    char path[] = "/tmp/orch-ctl-evidence-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    static const char text[] = "Design written.\narchitecture_status: DONE\nthanks\n";
    cr_assert_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    int rc = CTL("stage", "advance", "ORCH-C1", "--from", "architecture", "--to", "development",
                 "--evidence-file", path);
    unlink(path);
    cr_assert_eq(rc, 0, "%s", T.out);
    assert_stage("ORCH-C1", "development");

    /* The same from stdin. */
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "printf 'dev_status: DONE\\n' | '%s' stage advance ORCH-C1 --from development "
             "--to review --evidence-file -",
             ORCHCTL);
    const char *sh[] = { "/bin/sh", "-c", cmd, NULL };
    cr_assert_eq(th_run(sh, T.env, T.out, sizeof T.out, 30000), 0, "%s", T.out);
    assert_stage("ORCH-C1", "review");
}

/* The walk's transitions on stage-service's /metrics, by edge and result. */
static void walk_transitions_were_counted(void)
{
    char *m = NULL;
    cr_assert_eq(th_http_get(W.stage.http_addr, "/metrics", &m), 200);
    cr_expect_eq(
        th_metric(m,
                  "orch_stage_transitions_total{edge=\"backlog->analysis\",result=\"advanced\"}"),
        1, "%s", m);
    cr_expect_eq(th_metric(m, "orch_stage_transitions_total{edge=\"analysis->architecture\","
                              "result=\"gate_failed\"}"),
                 1, "%s", m);
    cr_expect_eq(th_metric(m, "orch_stage_transitions_total{edge=\"development->review\","
                              "result=\"advanced\"}"),
                 1, "%s", m);
    free(m);
}

Test(orchctl_stage, walk_with_verdicts_evidence_files_and_stdin, .init = up, .fini = down,
     .timeout = 180)
{
    cr_assert_eq(
        CTL("stage", "create", "ORCH-C1", "--repo", "org/app", "--title", "cli walk", "--pr", "41"),
        0, "%s", T.out);
    assert_out_has("created:");
    assert_out_has("backlog");
    cr_assert_eq(CTL("--json", "stage", "create", "ORCH-C1", "--repo", "org/app", "--title",
                     "cli walk", "--pr", "41"),
                 0, "%s", T.out);
    json_t *j = parse();
    cr_assert(json_is_true(json_object_get(j, "already_exists")), "%s", T.out);
    json_decref(j);
    cr_assert_eq(CTL("stage", "create", "ORCH-C1", "--repo", "org/other"), RPC(ALREADY_EXISTS),
                 "%s", T.out);

    cr_assert_eq(CTL("stage", "advance", "ORCH-C1", "--from", "backlog", "--to", "analysis"), 0,
                 "%s", T.out);
    assert_out_has("ADVANCED ORCH-C1 backlog -> analysis");

    /* A gate without its key: refused, exit 5, the key named. */
    cr_assert_eq(CTL("stage", "advance", "ORCH-C1", "--from", "analysis", "--to", "architecture"),
                 EXIT_REFUSE, "%s", T.out);
    assert_out_has("GATE_FAILED ORCH-C1 stays in analysis");
    assert_out_has("analysis_status is missing");
    assert_stage("ORCH-C1", "analysis");

    cr_assert_eq(CTL("--json", "stage", "advance", "ORCH-C1", "--from", "analysis", "--to",
                     "architecture", "--verdict", "analysis_status=DONE", "--actor", "monitor"),
                 0, "%s", T.out);
    j = parse();
    cr_assert_str_eq(jstr(j, "outcome", NULL), "ADVANCED", "%s", T.out);
    cr_assert_str_eq(jstr(j, "task", "stage"), "architecture", "%s", T.out);
    cr_assert(json_integer_value(json_object_get(j, "lease_epoch")) > 0, "%s", T.out);
    json_decref(j);

    advance_with_evidence_file_and_stdin();

    /* show: the history, the verdicts recorded. */
    cr_assert_eq(CTL("stage", "show", "ORCH-C1"), 0, "%s", T.out);
    assert_out_has("development  -> review");
    assert_out_has("dev_status: DONE");
    cr_assert_eq(CTL("--json", "stage", "show", "ORCH-C1", "--history", "2"), 0, "%s", T.out);
    j = parse();
    cr_assert_eq(json_array_size(json_object_get(j, "history")), 2, "%s", T.out);
    cr_assert_str_eq(jstr(j, "task", "stage"), "review", "%s", T.out);
    json_decref(j);

    /* The transitions counted by edge and result (docs/operations/metrics.md). */
    walk_transitions_were_counted();
}

/* Takes the lease of `item` as another owner (this test process) with
 * `orchctl lease acquire`; returns its epoch. */
static long long hold_lease(const char *item)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    cr_assert_eq(CTL("--json", "lease", "acquire", item, "--repo", "org/app", "--owner-pid", pid,
                     "--actor", "monitor", "--transition", "review->testing"),
                 0, "%s", T.out);
    json_t *j = parse();
    long long epoch = json_integer_value(json_object_get(j, "epoch"));
    json_decref(j);
    cr_assert(epoch > 0, "%s", T.out);
    return epoch;
}

Test(orchctl_stage, deferred_while_another_owner_holds_the_lease, .init = up, .fini = down,
     .timeout = 180)
{
    cr_assert_eq(sw_create(W.client, "ORCH-C2", "org/app", 42), ORCH_CODE_OK);
    sw_walk_to(&W, "ORCH-C2", "review");
    long long epoch = hold_lease("ORCH-C2");

    cr_assert_eq(CTL("stage", "advance", "ORCH-C2", "--from", "review", "--to", "testing",
                     "--verdict", "review_verdict=APPROVE", "--actor", "webhook"),
                 EXIT_DEFER, "%s", T.out);
    assert_out_has("DEFERRED ORCH-C2 stays in review");
    assert_out_has("monitor");
    assert_out_has("owner alive");
    cr_assert_eq(CTL("--json", "stage", "advance", "ORCH-C2", "--from", "review", "--to", "testing",
                     "--actor", "reconciler"),
                 EXIT_DEFER, "%s", T.out);
    json_t *j = parse();
    cr_assert_str_eq(jstr(j, "outcome", NULL), "DEFERRED", "%s", T.out);
    cr_assert_str_eq(jstr(j, "holder", "actor"), "monitor", "%s", T.out);
    cr_assert_str_eq(jstr(j, "holder_liveness", NULL), "ALIVE", "%s", T.out);
    json_decref(j);
    cr_assert_eq(CTL("stage", "rollback", "ORCH-C2", "--from", "review", "--reason", "redo"),
                 EXIT_DEFER, "%s", T.out);
    assert_out_has("held by");
    cr_assert(!strstr(T.out, "unspecified"), "%s", T.out);
    cr_assert_eq(CTL("stage", "cancel", "ORCH-C2"), EXIT_DEFER, "%s", T.out);
    assert_stage("ORCH-C2", "review");
    cr_assert_eq(sw_counts_for_pr(42).merge_calls, 0, "a deferred call reached Gitea");

    /* queue shows the holder. */
    cr_assert_eq(CTL("stage", "queue", "--stage", "review"), 0, "%s", T.out);
    assert_out_has("ORCH-C2");
    assert_out_has("held by");

    /* Released: the same command now advances and merges once (its verdict
     * again: a deferred call records none). */
    char ep[24];
    snprintf(ep, sizeof ep, "%lld", epoch);
    cr_assert_eq(CTL("lease", "release", "ORCH-C2", ep), 0, "%s", T.out);
    cr_assert_eq(CTL("stage", "advance", "ORCH-C2", "--from", "review", "--to", "testing",
                     "--verdict", "review_verdict=APPROVE", "--actor", "webhook"),
                 0, "%s", T.out);
    assert_out_has("ADVANCED ORCH-C2 review -> testing");
    assert_out_has("merge_pr");
    cr_assert_eq(sw_counts_for_pr(42).merges, 1);
    assert_stage("ORCH-C2", "testing");

    /* The same transition again: the item is no longer in review. */
    cr_assert_eq(CTL("stage", "advance", "ORCH-C2", "--from", "review", "--to", "testing"),
                 RPC(FAILED_PRECONDITION), "%s", T.out);
    assert_out_has("is in stage testing");
    cr_assert_eq(sw_counts_for_pr(42).merges, 1);
}

/* An evidence file over the 64 KiB default is INVALID_ARGUMENT naming the
 * limit's variable. */
static void oversized_evidence_is_refused(void)
{
    char path[] = "/tmp/orch-ctl-big-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    char line[1024];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    for (int i = 0; i < 80; i++) /* 80 KiB, over the 64 KiB default */
        cr_assert_eq(write(fd, line, sizeof line), (ssize_t)sizeof line);
    close(fd);
    int rc = CTL("stage", "advance", "ORCH-C3", "--from", "development", "--to", "review",
                 "--evidence-file", path);
    unlink(path);
    cr_assert_eq(rc, RPC(INVALID_ARGUMENT), "%s", T.out);
    assert_out_has("ORCH_STAGE_MAX_EVIDENCE_BYTES");
}

/* Each bad request about ORCH-C3 (in development) gets its status. */
static void bad_input_gets_its_status(void)
{
    cr_assert_eq(CTL("stage", "advance", "ORCH-C3", "--from", "developing", "--to", "review"),
                 RPC(INVALID_ARGUMENT), "%s", T.out);
    assert_out_has("unknown stage");
    cr_assert_eq(CTL("stage", "advance", "ORCH-C3", "--from", "development", "--to", "done"),
                 RPC(INVALID_ARGUMENT), "%s", T.out);
    assert_out_has("no edge development->done");
    cr_assert_eq(CTL("stage", "advance", "ORCH-NOPE", "--from", "backlog", "--to", "analysis"),
                 RPC(NOT_FOUND), "%s", T.out);
    cr_assert_eq(CTL("stage", "advance", "ORCH-C3", "--from", "development", "--to", "review",
                     "--verdict", "mood=GOOD"),
                 RPC(INVALID_ARGUMENT), "%s", T.out);
    cr_assert_eq(CTL("stage", "advance", "bad item!", "--from", "development", "--to", "review"),
                 RPC(INVALID_ARGUMENT), "%s", T.out);
    cr_assert_eq(CTL("--json", "stage", "show", "ORCH-NOPE"), RPC(NOT_FOUND), "%s", T.out);
    json_t *j = parse();
    cr_assert_str_eq(jstr(j, "code", NULL), "NOT_FOUND", "%s", T.out);
    json_decref(j);
    oversized_evidence_is_refused();
    cr_assert_eq(CTL("stage", "rollback", "ORCH-C3", "--from", "backlog", "--reason", "x"),
                 RPC(INVALID_ARGUMENT), "%s", T.out);
    cr_assert_eq(CTL("stage", "rollback", "ORCH-C3", "--from", "review", "--reason", "x"),
                 RPC(FAILED_PRECONDITION), "%s", T.out);
}

Test(orchctl_stage, refused_rolled_back_cancelled_and_bad_input, .init = up, .fini = down,
     .timeout = 180)
{
    cr_assert_eq(sw_create(W.client, "ORCH-C3", "org/app", 43), ORCH_CODE_OK);
    sw_walk_to(&W, "ORCH-C3", "testing");

    /* A failing rollback gate: exit 5, back in development. */
    cr_assert_eq(CTL("stage", "advance", "ORCH-C3", "--from", "testing", "--to", "staging",
                     "--verdict", "test_status=PASS", "--verdict", "security_status=FAIL",
                     "--verdict", "coverage_pct=90"),
                 EXIT_REFUSE, "%s", T.out);
    assert_out_has("ROLLED_BACK ORCH-C3 testing -> development");
    assert_out_has("check_security: security_status is FAIL");
    assert_stage("ORCH-C3", "development");

    /* Bad input: each gets its status, nothing changes. */
    bad_input_gets_its_status();
    assert_stage("ORCH-C3", "development");

    /* An operator rollback, then a cancel from wherever the item is. */
    sw_walk_to(&W, "ORCH-C3", "review");
    cr_assert_eq(CTL("--json", "stage", "rollback", "ORCH-C3", "--from", "review", "--reason",
                     "wrong branch"),
                 0, "%s", T.out);
    json_t *j = parse();
    cr_assert_str_eq(jstr(j, "task", "stage"), "development", "%s", T.out);
    cr_assert(!json_is_true(json_object_get(j, "deferred")), "%s", T.out);
    json_decref(j);
    cr_assert_eq(CTL("stage", "cancel", "ORCH-C3", "--actor", "operator"), 0, "%s", T.out);
    assert_out_has("ADVANCED ORCH-C3 development -> cancelled");
    assert_stage("ORCH-C3", "cancelled");
    cr_assert_eq(CTL("stage", "cancel", "ORCH-C3"), RPC(INVALID_ARGUMENT), "%s", T.out);
    cr_assert_eq(CTL("stage", "cancel", "ORCH-NOPE"), RPC(NOT_FOUND), "%s", T.out);

    cr_assert_eq(CTL("--json", "stage", "queue", "--stage", "cancelled"), 0, "%s", T.out);
    j = parse();
    json_t *e = json_array_get(json_object_get(j, "entries"), 0);
    cr_assert_str_eq(jstr(json_object_get(e, "task"), "work_item", NULL), "ORCH-C3", "%s", T.out);
    json_decref(j);
    cr_assert_eq(CTL("stage", "queue", "--stage", "nowhere"), RPC(INVALID_ARGUMENT), "%s", T.out);
}
