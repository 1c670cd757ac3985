/*
 * stage_pipeline.h - the pipeline as data: stages, the allowed edges
 * (STAGE_TRANSITIONS), the gate checks of each edge (QG_CHECKS) and the side
 * effects each edge applies. docs/architecture/pipeline.md lists the same
 * table; `orchctl stage pipeline` prints it from the service.
 *
 * Gates are pure check_* functions of the recorded machine verdicts (and the
 * repo's coverage baseline): no I/O, fully determined by their inputs.
 */
#ifndef ORCH_STAGE_PIPELINE_H
#define ORCH_STAGE_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>

#include "orch/verdict.h"

typedef enum stage_id {
    STAGE_BACKLOG,
    STAGE_ANALYSIS,
    STAGE_ARCHITECTURE,
    STAGE_DEVELOPMENT,
    STAGE_REVIEW,
    STAGE_TESTING,
    STAGE_STAGING,
    STAGE_DEPLOY,
    STAGE_DONE,
    STAGE_CANCELLED,
    STAGE_COUNT,
    STAGE_NONE = -1,
} stage_id;

typedef enum stage_edge_kind {
    STAGE_EDGE_FORWARD,
    STAGE_EDGE_ROLLBACK,
    STAGE_EDGE_CANCEL
} stage_edge_kind;

typedef enum stage_effect_id {
    STAGE_EFF_MERGE_PR,         /* Gitea: merge the item's pull request */
    STAGE_EFF_COVERAGE_RATCHET, /* raise the repo's coverage baseline, never lower it */
    STAGE_EFF_IMAGE_REBUILD,    /* POST to the image-build hook */
    STAGE_EFF_DEPLOY_START,     /* POST to the production-deploy hook */
    STAGE_EFF_COUNT,
} stage_effect_id;

typedef enum stage_gate_result {
    STAGE_GATE_PASS,
    STAGE_GATE_FAIL,    /* the verdict says no */
    STAGE_GATE_MISSING, /* the key is missing or its value malformed */
} stage_gate_result;

/* What a gate may read. */
typedef struct stage_gate_input {
    const orch_verdicts *ev;  /* the verdicts recorded for this edge in this cycle */
    bool has_baseline;        /* the repo has a coverage baseline */
    double coverage_baseline; /* percent */
    unsigned long long
        pr_number; /* the cycle's own pull request (stage_pipeline_cycle_pr), 0: none */
    int cycle;     /* the task's cycle (rollbacks so far) */
    unsigned long long task_pr; /* the task's pull request as stored (maybe an earlier cycle's) */
} stage_gate_input;

typedef stage_gate_result (*stage_gate_fn)(const stage_gate_input *in, char *why, size_t n);

typedef struct stage_gate_def {
    const char *name; /* "check_review" */
    stage_gate_fn fn;
    bool rolls_back; /* STAGE_GATE_FAIL sends the item back to development */
} stage_gate_def;

#define STAGE_EDGE_MAX_GATES   4
#define STAGE_EDGE_MAX_EFFECTS 3

typedef struct stage_edge {
    stage_id from, to;
    stage_edge_kind kind;
    const stage_gate_def *gates[STAGE_EDGE_MAX_GATES]; /* NULL-terminated */
    stage_effect_id effects[STAGE_EDGE_MAX_EFFECTS];
    int neffects;
} stage_edge;

/* "development" <-> STAGE_DEVELOPMENT; STAGE_NONE when unknown. */
const char *stage_name(stage_id s);
stage_id stage_parse(const char *name);
const char *stage_edge_kind_name(stage_edge_kind k);
const char *stage_effect_name(stage_effect_id e);
/* Whether a failure of the effect (the outside system refused it for good,
 * e.g. a pull request that cannot be merged) is a failed gate that rolls the
 * item back: the merge gate. */
bool stage_effect_rolls_back(stage_effect_id e);

/* The edge from -> to, or NULL if the table has none. */
const stage_edge *stage_pipeline_edge(stage_id from, stage_id to);
/* The forward edge out of `from`, or NULL (done, cancelled). */
const stage_edge *stage_pipeline_forward(stage_id from);
/* Every edge, in table order. */
const stage_edge *stage_pipeline_edges(size_t *n);

/* Writes "review->testing". */
void stage_edge_transition(const stage_edge *e, char *out, size_t n);

/* Verdict keys an actor may report, and those only the engine records
 * (the digest returned by the image build). */
bool stage_verdict_key_reportable(const char *key);
bool stage_verdict_key_engine_only(const char *key);
extern const char *const stage_verdict_keys[]; /* NULL-terminated, reportable */

/* The pull request an actor names at development->review (`pr_number`, a
 * positive integer), or 0 when absent or malformed (check_development
 * refuses a malformed one). */
unsigned long long stage_pipeline_pr_number(const orch_verdicts *ev);

/* The pull request of a cycle: the one reported (pr_number) at
 * development->review of that cycle; in cycle 0 without one, the task's own
 * (CreateTask). A later cycle without a reported one has none: its pull
 * request would be an earlier cycle's, already merged or abandoned. */
unsigned long long stage_pipeline_cycle_pr(int cycle, unsigned long long task_pr,
                                           unsigned long long reported_pr);

/* Parses a percentage the way the database stores it: digits with an
 * optional fraction, 0..100; false for anything else (signs, exponents,
 * hex, inf, nan). */
bool stage_pipeline_parse_pct(const char *s, double *out);

typedef enum stage_gates_outcome {
    STAGE_GATES_PASS,     /* every gate passed */
    STAGE_GATES_REFUSE,   /* a gate failed or lacks its key: the stage stays */
    STAGE_GATES_ROLLBACK, /* a gate that rolls back said no: back to development */
} stage_gates_outcome;

#define STAGE_GATE_WHY_MAX 200

/* Runs every gate of `e`, in order. One message per failing gate goes into
 * `fails` (up to `maxfails`); *nfails is their count. A rollback gate's
 * explicit failure wins over any other failure. */
stage_gates_outcome stage_pipeline_run_gates(const stage_edge *e, const stage_gate_input *in,
                                             char (*fails)[STAGE_GATE_WHY_MAX], size_t maxfails,
                                             size_t *nfails);

#endif
