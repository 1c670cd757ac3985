/*
 * test_stage_pipeline.c - the pipeline table and the check_* gates
 * (services/stage/stage_pipeline.c), table-driven; and a scan of the source
 * tree: the stage column is written in exactly one function.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stage_effects.h"
#include "stage_pipeline.h"

static const char digest_a[] =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
static const char digest_b[] =
    "sha256:2222222222222222222222222222222222222222222222222222222222222222";

Test(pipeline, stages_round_trip_and_unknown_names_fail)
{
    for (int i = 0; i < STAGE_COUNT; i++)
        cr_assert_eq(stage_parse(stage_name((stage_id)i)), i);
    cr_assert_eq(stage_parse("Done"), STAGE_NONE);
    cr_assert_eq(stage_parse(""), STAGE_NONE);
}

Test(pipeline, forward_edges_form_the_design_order)
{
    static const stage_id order[] = { STAGE_BACKLOG,     STAGE_ANALYSIS, STAGE_ARCHITECTURE,
                                      STAGE_DEVELOPMENT, STAGE_REVIEW,   STAGE_TESTING,
                                      STAGE_STAGING,     STAGE_DEPLOY,   STAGE_DONE };
    for (size_t i = 0; i + 1 < sizeof order / sizeof order[0]; i++) {
        const stage_edge *e = stage_pipeline_forward(order[i]);
        cr_assert_not_null(e, "%s has no forward edge", stage_name(order[i]));
        cr_assert_eq(e->to, order[i + 1]);
    }
    cr_assert_null(stage_pipeline_forward(STAGE_DONE));
    cr_assert_null(stage_pipeline_forward(STAGE_CANCELLED));
}

Test(pipeline, rollback_and_cancel_edges)
{
    static const stage_id rb[] = { STAGE_REVIEW, STAGE_TESTING, STAGE_STAGING, STAGE_DEPLOY };
    for (size_t i = 0; i < 4; i++) {
        const stage_edge *e = stage_pipeline_edge(rb[i], STAGE_DEVELOPMENT);
        cr_assert(e && e->kind == STAGE_EDGE_ROLLBACK && e->neffects == 0);
    }
    cr_assert_null(stage_pipeline_edge(STAGE_DONE, STAGE_DEVELOPMENT),
                   "nothing rolls back from done");
    cr_assert_null(stage_pipeline_edge(STAGE_ANALYSIS, STAGE_DEVELOPMENT));
    for (int s = STAGE_BACKLOG; s <= STAGE_DEPLOY; s++)
        cr_assert(stage_pipeline_edge((stage_id)s, STAGE_CANCELLED), "%s cannot be cancelled",
                  stage_name((stage_id)s));
    cr_assert_null(stage_pipeline_edge(STAGE_DONE, STAGE_CANCELLED));
    cr_assert_null(stage_pipeline_edge(STAGE_BACKLOG, STAGE_DONE));
}

Test(pipeline, effects_sit_on_their_edges)
{
    const stage_edge *e = stage_pipeline_edge(STAGE_REVIEW, STAGE_TESTING);
    cr_assert(e->neffects == 1 && e->effects[0] == STAGE_EFF_MERGE_PR);
    e = stage_pipeline_edge(STAGE_TESTING, STAGE_STAGING);
    cr_assert(e->neffects == 2 && e->effects[0] == STAGE_EFF_COVERAGE_RATCHET &&
              e->effects[1] == STAGE_EFF_IMAGE_REBUILD);
    e = stage_pipeline_edge(STAGE_STAGING, STAGE_DEPLOY);
    cr_assert(e->neffects == 1 && e->effects[0] == STAGE_EFF_DEPLOY_START);
    cr_assert(stage_effect_rolls_back(STAGE_EFF_MERGE_PR));
    cr_assert_not(stage_effect_rolls_back(STAGE_EFF_DEPLOY_START));
}

/* ---- gates, table-driven ------------------------------------------------- */

typedef struct gate_case {
    stage_id from, to;
    const char *verdicts; /* verdict lines */
    bool has_baseline;
    double baseline;
    unsigned long long pr;
    stage_gates_outcome want;
    const char *want_msg; /* substring of the first failure, or NULL */
} gate_case;

static const gate_case cases[] = {
    { STAGE_BACKLOG, STAGE_ANALYSIS, "", false, 0, 0, STAGE_GATES_PASS, NULL },
    { STAGE_ANALYSIS, STAGE_ARCHITECTURE, "analysis_status: DONE", false, 0, 0, STAGE_GATES_PASS,
      NULL },
    { STAGE_ANALYSIS, STAGE_ARCHITECTURE, "analysis_status: done", false, 0, 0, STAGE_GATES_PASS,
      NULL },
    { STAGE_ANALYSIS, STAGE_ARCHITECTURE, "", false, 0, 0, STAGE_GATES_REFUSE,
      "analysis_status is missing" },
    { STAGE_ANALYSIS, STAGE_ARCHITECTURE, "analysis_status: BLOCKED", false, 0, 0,
      STAGE_GATES_REFUSE, "analysis_status is BLOCKED" },
    { STAGE_ANALYSIS, STAGE_ARCHITECTURE, "analysis_status: maybe", false, 0, 0, STAGE_GATES_REFUSE,
      "analysis_status is malformed" },
    { STAGE_ARCHITECTURE, STAGE_DEVELOPMENT, "architecture_status: DONE", false, 0, 0,
      STAGE_GATES_PASS, NULL },
    { STAGE_DEVELOPMENT, STAGE_REVIEW, "dev_status: DONE", false, 0, 0, STAGE_GATES_PASS, NULL },
    { STAGE_DEVELOPMENT, STAGE_REVIEW, "dev_status: nope", false, 0, 0, STAGE_GATES_REFUSE,
      "dev_status" },
    { STAGE_REVIEW, STAGE_TESTING, "review_verdict: APPROVE", false, 0, 7, STAGE_GATES_PASS, NULL },
    { STAGE_REVIEW, STAGE_TESTING, "review_verdict: APPROVE", false, 0, 0, STAGE_GATES_REFUSE,
      "pr_number is missing" },
    { STAGE_REVIEW, STAGE_TESTING, "review_verdict: REQUEST_CHANGES", false, 0, 7,
      STAGE_GATES_REFUSE, "review_verdict is REQUEST_CHANGES" },
    { STAGE_REVIEW, STAGE_TESTING, "", false, 0, 7, STAGE_GATES_REFUSE,
      "review_verdict is missing" },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 80",
      false, 0, 0, STAGE_GATES_PASS, NULL },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 80",
      true, 80, 0, STAGE_GATES_PASS, NULL },
    { STAGE_TESTING, STAGE_STAGING, "test_status: FAIL\nsecurity_status: PASS\ncoverage_pct: 80",
      false, 0, 0, STAGE_GATES_REFUSE, "test_status is FAIL" },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: FAIL\ncoverage_pct: 80",
      false, 0, 0, STAGE_GATES_ROLLBACK, "security_status is FAIL" },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 79.9",
      true, 80, 0, STAGE_GATES_ROLLBACK, "below the baseline" },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 101",
      false, 0, 0, STAGE_GATES_REFUSE, "coverage_pct is malformed" },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: nan",
      false, 0, 0, STAGE_GATES_REFUSE, "coverage_pct is malformed" },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 80%",
      false, 0, 0, STAGE_GATES_REFUSE, "coverage_pct is malformed" },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 0x50",
      false, 0, 0, STAGE_GATES_REFUSE, "coverage_pct is malformed" },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 1e2",
      false, 0, 0, STAGE_GATES_REFUSE, "coverage_pct is malformed" },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 80.",
      false, 0, 0, STAGE_GATES_REFUSE, "coverage_pct is malformed" },
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 100.0",
      true, 100, 0, STAGE_GATES_PASS, NULL },
    { STAGE_TESTING, STAGE_STAGING,
      "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 80.0005", true, 80.0005, 0,
      STAGE_GATES_PASS, NULL },
    { STAGE_DEVELOPMENT, STAGE_REVIEW, "dev_status: DONE\npr_number: 12", false, 0, 0,
      STAGE_GATES_PASS, NULL },
    { STAGE_DEVELOPMENT, STAGE_REVIEW, "dev_status: DONE\npr_number: -3", false, 0, 0,
      STAGE_GATES_REFUSE, "pr_number is malformed" },
    { STAGE_DEVELOPMENT, STAGE_REVIEW, "dev_status: DONE\npr_number: 0", false, 0, 0,
      STAGE_GATES_REFUSE, "pr_number is malformed" },
    /* A missing security verdict is not a failed security check. */
    { STAGE_TESTING, STAGE_STAGING, "test_status: PASS\ncoverage_pct: 80", false, 0, 0,
      STAGE_GATES_REFUSE, "security_status is missing" },
    /* A rollback verdict wins over a plain failure. */
    { STAGE_TESTING, STAGE_STAGING, "test_status: FAIL\nsecurity_status: FAIL\ncoverage_pct: 80",
      false, 0, 0, STAGE_GATES_ROLLBACK, "test_status is FAIL" },
    { STAGE_DEPLOY, STAGE_DONE, "deploy_status: SUCCESS", false, 0, 0, STAGE_GATES_PASS, NULL },
    { STAGE_DEPLOY, STAGE_DONE, "deploy_status: FAILURE", false, 0, 0, STAGE_GATES_REFUSE,
      "deploy_status is FAILURE" },
};

static void load(orch_verdicts *vs, const char *lines)
{
    orch_verdicts_init(vs);
    orch_verdicts_parse(vs, lines, strlen(lines));
}

Test(gates, every_case_of_the_table)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const gate_case *c = &cases[i];
        orch_verdicts vs;
        load(&vs, c->verdicts);
        stage_gate_input in = { &vs, c->has_baseline, c->baseline, c->pr, 0, 0 };
        char fails[4][STAGE_GATE_WHY_MAX];
        size_t nf = 99;
        stage_gates_outcome got =
            stage_pipeline_run_gates(stage_pipeline_edge(c->from, c->to), &in, fails, 4, &nf);
        cr_assert_eq(got, c->want, "case %zu (%s->%s, \"%s\"): got %d want %d (%s)", i,
                     stage_name(c->from), stage_name(c->to), c->verdicts, got, c->want,
                     nf ? fails[0] : "");
        if (c->want == STAGE_GATES_PASS) {
            cr_assert_eq(nf, 0, "case %zu", i);
        } else {
            cr_assert_gt(nf, 0, "case %zu", i);
            cr_assert(strstr(fails[0], c->want_msg), "case %zu: \"%s\" lacks \"%s\"", i, fails[0],
                      c->want_msg);
        }
    }
}

Test(gates, image_freshness_compares_with_the_image_built_in_the_cycle)
{
    char lines[400];
    orch_verdicts vs;
    snprintf(lines, sizeof lines, "staging_status: SUCCESS\nimage_digest: %s", digest_a);
    load(&vs, lines);
    stage_gate_input in = { &vs, false, 0, 0, 0, 0 };
    char fails[4][STAGE_GATE_WHY_MAX];
    size_t nf;
    const stage_edge *e = stage_pipeline_edge(STAGE_STAGING, STAGE_DEPLOY);
    cr_assert_eq(stage_pipeline_run_gates(e, &in, fails, 4, &nf), STAGE_GATES_REFUSE);
    cr_assert(strstr(fails[0], "built_image_digest is missing"), "%s", fails[0]);
    cr_assert(orch_verdicts_set(&vs, "built_image_digest", digest_a));
    cr_assert_eq(stage_pipeline_run_gates(e, &in, fails, 4, &nf), STAGE_GATES_PASS);
    cr_assert(orch_verdicts_set(&vs, "built_image_digest", digest_b));
    cr_assert_eq(stage_pipeline_run_gates(e, &in, fails, 4, &nf), STAGE_GATES_ROLLBACK);
    cr_assert(orch_verdicts_set(&vs, "image_digest", "sha256:short"));
    cr_assert_eq(stage_pipeline_run_gates(e, &in, fails, 4, &nf), STAGE_GATES_REFUSE);
    cr_assert(strstr(fails[0], "image_digest is malformed"), "%s", fails[0]);
}

Test(gates, only_known_keys_are_reportable)
{
    for (size_t i = 0; stage_verdict_keys[i]; i++) {
        cr_assert(stage_verdict_key_reportable(stage_verdict_keys[i]));
        cr_assert(orch_verdict_key_valid(stage_verdict_keys[i]), "%s", stage_verdict_keys[i]);
    }
    cr_assert_not(stage_verdict_key_reportable("built_image_digest"), "only the engine sets it");
    cr_assert(stage_verdict_key_engine_only("built_image_digest"));
    cr_assert_not(stage_verdict_key_reportable("note"));
}

/* ---- the stage column is written in one place --------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static int scanned;

/* Every "UPDATE tasks" in C sources under dir must lie inside
 * stage_store_cas() of services/stage/stage_store.c. */
static void scan(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot read %s", dir);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            scan(path);
            continue;
        }
        size_t l = strlen(path);
        if (l < 2 || strcmp(path + l - 2, ".c") != 0)
            continue;
        char *src = slurp(path);
        cr_assert_not_null(src);
        scanned++;
        bool store = strstr(path, "services/stage/stage_store.c") != NULL;
        const char *fn = store ? strstr(src, "\norch_err stage_store_cas(") : NULL;
        const char *fn_end = fn ? strstr(fn, "\n}\n") : NULL;
        for (const char *p = src; (p = strcasestr(p, "UPDATE tasks")); p++) {
            bool inside = fn && fn_end && p > fn && p < fn_end;
            cr_assert(inside,
                      "%s writes tasks outside stage_store_cas(): every stage write "
                      "must go through the expected-stage CAS",
                      path);
        }
        free(src);
    }
    closedir(d);
}

Test(stage_cas, no_stage_write_outside_the_cas)
{
    scan(ORCH_SOURCE_DIR "/services");
    scan(ORCH_SOURCE_DIR "/shared");
    scan(ORCH_SOURCE_DIR "/tools");
    cr_assert_gt(scanned, 20, "the scan read only %d files", scanned);
    char *store = slurp(ORCH_SOURCE_DIR "/services/stage/stage_store.c");
    cr_assert_not_null(strstr(store, "UPDATE tasks"), "the CAS itself must be found");
    free(store);
}

/* ---- issue 12: the pull request of a cycle, the expiry of a claim -------- */

Test(pull_request, a_later_cycle_has_only_the_pull_request_it_reported)
{
    cr_assert_eq(stage_pipeline_cycle_pr(0, 12, 0), 12, "cycle 0: the task's own");
    cr_assert_eq(stage_pipeline_cycle_pr(0, 12, 13), 13, "a reported one wins");
    cr_assert_eq(stage_pipeline_cycle_pr(1, 12, 0), 0, "after a rollback #12 is not this cycle's");
    cr_assert_eq(stage_pipeline_cycle_pr(2, 12, 14), 14);
}

Test(pull_request, the_merge_gate_refuses_a_cycle_without_its_own)
{
    orch_verdicts vs;
    load(&vs, "review_verdict: APPROVE");
    stage_gate_input in = { &vs, false, 0, stage_pipeline_cycle_pr(1, 12, 0), 1, 12 };
    char fails[4][STAGE_GATE_WHY_MAX];
    size_t nf;
    const stage_edge *e = stage_pipeline_edge(STAGE_REVIEW, STAGE_TESTING);
    cr_assert_eq(stage_pipeline_run_gates(e, &in, fails, 4, &nf), STAGE_GATES_REFUSE);
    cr_assert(strstr(fails[0], "cycle 1 has no pull request of its own (#12"), "%s", fails[0]);
    in.pr_number = stage_pipeline_cycle_pr(1, 12, 15);
    cr_assert_eq(stage_pipeline_run_gates(e, &in, fails, 4, &nf), STAGE_GATES_PASS);
}

/* A live merge runs up to three requests of the effect timeout and then
 * records its outcome: a lease-less claim must outlive all of that (the
 * old rule, 2 x timeout + 1 s, did not). */
Test(claim_expiry, a_live_effect_is_never_taken_over)
{
    static const uint32_t timeouts[] = { 100, 1000, 60000, 1800000 };
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        stage_effects_cfg cfg = { .timeout_ms = timeouts[i] };
        uint64_t t = timeouts[i];
        cr_assert_eq(stage_effect_max_ms(&cfg, STAGE_EFF_MERGE_PR), 3 * t);
        cr_assert_eq(stage_effect_max_ms(&cfg, STAGE_EFF_DEPLOY_START), t);
        for (int e = 0; e < STAGE_EFF_COUNT; e++) {
            uint64_t busy = STAGE_EFFECT_START_WINDOW_MS +
                            stage_effect_max_ms(&cfg, (stage_effect_id)e) +
                            STAGE_EFFECT_RECORD_BUDGET_MS + STAGE_EFFECT_RECORD_SLACK_MS;
            cr_assert_gt(stage_effect_claim_expiry_ms(&cfg, (stage_effect_id)e), busy,
                         "%s at %u ms", stage_effect_name((stage_effect_id)e), timeouts[i]);
        }
        cr_assert_gt(stage_effect_claim_expiry_ms(&cfg, STAGE_EFF_MERGE_PR), 2 * t + 1000);
    }
}
