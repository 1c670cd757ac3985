/*
 * stage_pipeline.c - STAGE_TRANSITIONS and QG_CHECKS, and the check_*
 * gates. Change the pipeline here and in docs/architecture/pipeline.md.
 */
#include "stage_pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const stage_names[STAGE_COUNT] = {
    "backlog", "analysis", "architecture", "development", "review",
    "testing", "staging",  "deploy",       "done",        "cancelled",
};

const char *stage_name(stage_id s)
{
    return s >= 0 && s < STAGE_COUNT ? stage_names[s] : "?";
}

stage_id stage_parse(const char *name)
{
    for (int i = 0; i < STAGE_COUNT; i++)
        if (strcmp(stage_names[i], name) == 0)
            return (stage_id)i;
    return STAGE_NONE;
}

const char *stage_edge_kind_name(stage_edge_kind k)
{
    switch (k) {
    case STAGE_EDGE_FORWARD: return "forward";
    case STAGE_EDGE_ROLLBACK: return "rollback";
    case STAGE_EDGE_CANCEL: return "cancel";
    }
    return "?";
}

static const char *const effect_names[STAGE_EFF_COUNT] = {
    "merge_pr",
    "coverage_ratchet",
    "image_rebuild",
    "deploy_start",
};

const char *stage_effect_name(stage_effect_id e)
{
    return e >= 0 && e < STAGE_EFF_COUNT ? effect_names[e] : "?";
}

bool stage_effect_rolls_back(stage_effect_id e)
{
    return e == STAGE_EFF_MERGE_PR;
}

/* ---- verdict keys ------------------------------------------------------- */

const char *const stage_verdict_keys[] = {
    "analysis_status", "architecture_status", "dev_status",   "review_verdict",
    "test_status",     "security_status",     "coverage_pct", "staging_status",
    "deploy_status",   "image_digest",        "pr_number",    NULL,
};

/* Strict decimal: 1..18 digits, no sign, no leading '+', no spaces. */
static bool parse_uint(const char *s, unsigned long long *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18)
        return false;
    unsigned long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long long)(s[i] - '0');
    }
    *out = v;
    return true;
}

unsigned long long stage_pipeline_pr_number(const orch_verdicts *ev)
{
    const char *v = orch_verdicts_get(ev, "pr_number");
    unsigned long long n = 0;
    return v && parse_uint(v, &n) ? n : 0;
}

unsigned long long stage_pipeline_cycle_pr(int cycle, unsigned long long task_pr,
                                           unsigned long long reported_pr)
{
    if (reported_pr)
        return reported_pr;
    return cycle == 0 ? task_pr : 0;
}

bool stage_pipeline_parse_pct(const char *s, double *out)
{
    size_t i = 0, digits = 0, frac = 0;
    while (s[i] >= '0' && s[i] <= '9') {
        i++;
        digits++;
    }
    if (s[i] == '.') {
        i++;
        while (s[i] >= '0' && s[i] <= '9') {
            i++;
            frac++;
        }
    }
    if (s[i] != '\0' || digits == 0 || digits > 3 || frac > 12 || (s[digits] == '.' && !frac))
        return false;
    double v = strtod(s, NULL);
    if (v < 0 || v > 100)
        return false;
    *out = v;
    return true;
}

bool stage_verdict_key_reportable(const char *key)
{
    for (size_t i = 0; stage_verdict_keys[i]; i++)
        if (strcmp(stage_verdict_keys[i], key) == 0)
            return true;
    return false;
}

bool stage_verdict_key_engine_only(const char *key)
{
    return strcmp(key, "built_image_digest") == 0;
}

/* ---- gates -------------------------------------------------------------- */

/* A key whose value must be one of `pass` or one of the '|'-separated
 * `fail` words (case-insensitive). */
static stage_gate_result word_gate(const stage_gate_input *in, const char *key, const char *pass,
                                   const char *fail, char *why, size_t n)
{
    const char *v = orch_verdicts_get(in->ev, key);
    if (!v) {
        snprintf(why, n, "%s is missing", key);
        return STAGE_GATE_MISSING;
    }
    if (strcasecmp(v, pass) == 0)
        return STAGE_GATE_PASS;
    char words[64];
    snprintf(words, sizeof words, "%s", fail);
    char *save = NULL;
    for (char *w = strtok_r(words, "|", &save); w; w = strtok_r(NULL, "|", &save)) {
        if (strcasecmp(v, w) == 0) {
            snprintf(why, n, "%s is %s", key, v);
            return STAGE_GATE_FAIL;
        }
    }
    snprintf(why, n, "%s is malformed: \"%.60s\" (expected %s or %s)", key, v, pass, fail);
    return STAGE_GATE_MISSING;
}

static stage_gate_result check_analysis(const stage_gate_input *in, char *why, size_t n)
{
    return word_gate(in, "analysis_status", "DONE", "BLOCKED", why, n);
}

static stage_gate_result check_architecture(const stage_gate_input *in, char *why, size_t n)
{
    return word_gate(in, "architecture_status", "DONE", "BLOCKED", why, n);
}

static stage_gate_result check_development(const stage_gate_input *in, char *why, size_t n)
{
    const char *pr = orch_verdicts_get(in->ev, "pr_number");
    if (pr && stage_pipeline_pr_number(in->ev) == 0) {
        snprintf(why, n, "pr_number is malformed: \"%.40s\" (expected a positive integer)", pr);
        return STAGE_GATE_MISSING;
    }
    return word_gate(in, "dev_status", "DONE", "BLOCKED", why, n);
}

static stage_gate_result check_review(const stage_gate_input *in, char *why, size_t n)
{
    return word_gate(in, "review_verdict", "APPROVE", "REQUEST_CHANGES|REJECT", why, n);
}

static stage_gate_result check_pull_request(const stage_gate_input *in, char *why, size_t n)
{
    if (in->pr_number == 0 && in->cycle > 0 && in->task_pr) {
        snprintf(why, n,
                 "pr_number is missing: cycle %d has no pull request of its own (#%llu belongs "
                 "to an earlier cycle); report pr_number at development->review",
                 in->cycle, in->task_pr);
        return STAGE_GATE_MISSING;
    }
    if (in->pr_number == 0) {
        snprintf(why, n, "pr_number is missing: the task has no pull request to merge");
        return STAGE_GATE_MISSING;
    }
    return STAGE_GATE_PASS;
}

static stage_gate_result check_tests(const stage_gate_input *in, char *why, size_t n)
{
    return word_gate(in, "test_status", "PASS", "FAIL", why, n);
}

static stage_gate_result check_security(const stage_gate_input *in, char *why, size_t n)
{
    return word_gate(in, "security_status", "PASS", "FAIL", why, n);
}

static stage_gate_result check_coverage(const stage_gate_input *in, char *why, size_t n)
{
    const char *v = orch_verdicts_get(in->ev, "coverage_pct");
    if (!v) {
        snprintf(why, n, "coverage_pct is missing");
        return STAGE_GATE_MISSING;
    }
    double pct;
    if (!stage_pipeline_parse_pct(v, &pct)) {
        snprintf(why, n, "coverage_pct is malformed: \"%.60s\" (expected a number 0..100)", v);
        return STAGE_GATE_MISSING;
    }
    if (in->has_baseline && pct + 1e-9 < in->coverage_baseline) {
        snprintf(why, n, "coverage_pct %.3f is below the baseline %.3f", pct,
                 in->coverage_baseline);
        return STAGE_GATE_FAIL;
    }
    return STAGE_GATE_PASS;
}

static stage_gate_result check_staging(const stage_gate_input *in, char *why, size_t n)
{
    return word_gate(in, "staging_status", "SUCCESS", "FAILURE", why, n);
}

static bool digest_ok(const char *d)
{
    if (strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
        return false;
    for (const char *p = d + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* The image staged is the one the pipeline built for this cycle. */
static stage_gate_result check_image_fresh(const stage_gate_input *in, char *why, size_t n)
{
    const char *staged = orch_verdicts_get(in->ev, "image_digest");
    const char *built = orch_verdicts_get(in->ev, "built_image_digest");
    if (!staged || !digest_ok(staged)) {
        snprintf(why, n, "image_digest is %s (expected sha256:<64 hex>)",
                 staged ? "malformed" : "missing");
        return STAGE_GATE_MISSING;
    }
    if (!built) {
        snprintf(why, n, "built_image_digest is missing: no image was built in this cycle");
        return STAGE_GATE_MISSING;
    }
    if (strcmp(staged, built) != 0) {
        snprintf(why, n, "image_digest %.20s... is not the image built in this cycle (%.20s...)",
                 staged, built);
        return STAGE_GATE_FAIL;
    }
    return STAGE_GATE_PASS;
}

static stage_gate_result check_deploy(const stage_gate_input *in, char *why, size_t n)
{
    return word_gate(in, "deploy_status", "SUCCESS", "FAILURE", why, n);
}

static const stage_gate_def G_ANALYSIS = { "check_analysis", check_analysis, false };
static const stage_gate_def G_ARCHITECTURE = { "check_architecture", check_architecture, false };
static const stage_gate_def G_DEVELOPMENT = { "check_development", check_development, false };
static const stage_gate_def G_REVIEW = { "check_review", check_review, false };
static const stage_gate_def G_PULL_REQUEST = { "check_pull_request", check_pull_request, false };
static const stage_gate_def G_TESTS = { "check_tests", check_tests, false };
static const stage_gate_def G_SECURITY = { "check_security", check_security, true };
static const stage_gate_def G_COVERAGE = { "check_coverage", check_coverage, true };
static const stage_gate_def G_STAGING = { "check_staging", check_staging, false };
static const stage_gate_def G_IMAGE_FRESH = { "check_image_fresh", check_image_fresh, true };
static const stage_gate_def G_DEPLOY = { "check_deploy", check_deploy, false };

/* ---- STAGE_TRANSITIONS with QG_CHECKS ----------------------------------- */

#define CANCEL_FROM(s)                                            \
    {                                                             \
        s, STAGE_CANCELLED, STAGE_EDGE_CANCEL, { NULL }, { 0 }, 0 \
    }

static const stage_edge edges[] = {
    { STAGE_BACKLOG, STAGE_ANALYSIS, STAGE_EDGE_FORWARD, { NULL }, { 0 }, 0 },
    { STAGE_ANALYSIS, STAGE_ARCHITECTURE, STAGE_EDGE_FORWARD, { &G_ANALYSIS, NULL }, { 0 }, 0 },
    { STAGE_ARCHITECTURE,
      STAGE_DEVELOPMENT,
      STAGE_EDGE_FORWARD,
      { &G_ARCHITECTURE, NULL },
      { 0 },
      0 },
    { STAGE_DEVELOPMENT, STAGE_REVIEW, STAGE_EDGE_FORWARD, { &G_DEVELOPMENT, NULL }, { 0 }, 0 },
    { STAGE_REVIEW,
      STAGE_TESTING,
      STAGE_EDGE_FORWARD,
      { &G_REVIEW, &G_PULL_REQUEST, NULL },
      { STAGE_EFF_MERGE_PR },
      1 },
    { STAGE_TESTING,
      STAGE_STAGING,
      STAGE_EDGE_FORWARD,
      { &G_TESTS, &G_SECURITY, &G_COVERAGE, NULL },
      { STAGE_EFF_COVERAGE_RATCHET, STAGE_EFF_IMAGE_REBUILD },
      2 },
    { STAGE_STAGING,
      STAGE_DEPLOY,
      STAGE_EDGE_FORWARD,
      { &G_STAGING, &G_IMAGE_FRESH, NULL },
      { STAGE_EFF_DEPLOY_START },
      1 },
    { STAGE_DEPLOY, STAGE_DONE, STAGE_EDGE_FORWARD, { &G_DEPLOY, NULL }, { 0 }, 0 },
    { STAGE_REVIEW, STAGE_DEVELOPMENT, STAGE_EDGE_ROLLBACK, { NULL }, { 0 }, 0 },
    { STAGE_TESTING, STAGE_DEVELOPMENT, STAGE_EDGE_ROLLBACK, { NULL }, { 0 }, 0 },
    { STAGE_STAGING, STAGE_DEVELOPMENT, STAGE_EDGE_ROLLBACK, { NULL }, { 0 }, 0 },
    { STAGE_DEPLOY, STAGE_DEVELOPMENT, STAGE_EDGE_ROLLBACK, { NULL }, { 0 }, 0 },
    CANCEL_FROM(STAGE_BACKLOG),
    CANCEL_FROM(STAGE_ANALYSIS),
    CANCEL_FROM(STAGE_ARCHITECTURE),
    CANCEL_FROM(STAGE_DEVELOPMENT),
    CANCEL_FROM(STAGE_REVIEW),
    CANCEL_FROM(STAGE_TESTING),
    CANCEL_FROM(STAGE_STAGING),
    CANCEL_FROM(STAGE_DEPLOY),
};

#define NEDGES (sizeof edges / sizeof edges[0])

const stage_edge *stage_pipeline_edges(size_t *n)
{
    *n = NEDGES;
    return edges;
}

const stage_edge *stage_pipeline_edge(stage_id from, stage_id to)
{
    for (size_t i = 0; i < NEDGES; i++)
        if (edges[i].from == from && edges[i].to == to)
            return &edges[i];
    return NULL;
}

const stage_edge *stage_pipeline_forward(stage_id from)
{
    for (size_t i = 0; i < NEDGES; i++)
        if (edges[i].from == from && edges[i].kind == STAGE_EDGE_FORWARD)
            return &edges[i];
    return NULL;
}

void stage_edge_transition(const stage_edge *e, char *out, size_t n)
{
    snprintf(out, n, "%s->%s", stage_name(e->from), stage_name(e->to));
}

stage_gates_outcome stage_pipeline_run_gates(const stage_edge *e, const stage_gate_input *in,
                                             char (*fails)[STAGE_GATE_WHY_MAX], size_t maxfails,
                                             size_t *nfails)
{
    bool refuse = false, rollback = false;
    *nfails = 0;
    for (int i = 0; i < STAGE_EDGE_MAX_GATES && e->gates[i]; i++) {
        char why[STAGE_GATE_WHY_MAX - 32];
        why[0] = '\0';
        stage_gate_result r = e->gates[i]->fn(in, why, sizeof why);
        if (r == STAGE_GATE_PASS)
            continue;
        if (r == STAGE_GATE_FAIL && e->gates[i]->rolls_back)
            rollback = true;
        else
            refuse = true;
        if (*nfails < maxfails)
            snprintf(fails[*nfails], STAGE_GATE_WHY_MAX, "%s: %s", e->gates[i]->name, why);
        (*nfails)++;
    }
    if (*nfails > maxfails)
        *nfails = maxfails;
    return rollback ? STAGE_GATES_ROLLBACK : refuse ? STAGE_GATES_REFUSE : STAGE_GATES_PASS;
}
