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
    ST_BACKLOG,
    ST_ANALYSIS,
    ST_ARCHITECTURE,
    ST_DEVELOPMENT,
    ST_REVIEW,
    ST_TESTING,
    ST_STAGING,
    ST_DEPLOY,
    ST_DONE,
    ST_CANCELLED,
    ST_COUNT,
    ST_NONE = -1,
} stage_id;

typedef enum edge_kind { EDGE_FORWARD, EDGE_ROLLBACK, EDGE_CANCEL } edge_kind;

typedef enum effect_id {
    EFF_MERGE_PR,         /* Gitea: merge the item's pull request */
    EFF_COVERAGE_RATCHET, /* raise the repo's coverage baseline, never lower it */
    EFF_IMAGE_REBUILD,    /* POST to the image-build hook */
    EFF_DEPLOY_START,     /* POST to the production-deploy hook */
    EFF_COUNT,
} effect_id;

typedef enum gate_result {
    GATE_PASS,
    GATE_FAIL,    /* the verdict says no */
    GATE_MISSING, /* the key is missing or its value malformed */
} gate_result;

/* What a gate may read. */
typedef struct gate_input {
    const orch_verdicts *ev;      /* the verdicts recorded for this edge in this cycle */
    bool has_baseline;            /* the repo has a coverage baseline */
    double coverage_baseline;     /* percent */
    unsigned long long pr_number; /* the cycle's own pull request (pipeline_cycle_pr), 0: none */
    int cycle;                    /* the task's cycle (rollbacks so far) */
    unsigned long long task_pr;   /* the task's pull request as stored (maybe an earlier cycle's) */
} gate_input;

typedef gate_result (*gate_fn)(const gate_input *in, char *why, size_t n);

typedef struct gate_def {
    const char *name; /* "check_review" */
    gate_fn fn;
    bool rolls_back; /* GATE_FAIL sends the item back to development */
} gate_def;

#define EDGE_MAX_GATES   4
#define EDGE_MAX_EFFECTS 3

typedef struct stage_edge {
    stage_id from, to;
    edge_kind kind;
    const gate_def *gates[EDGE_MAX_GATES]; /* NULL-terminated */
    effect_id effects[EDGE_MAX_EFFECTS];
    int neffects;
} stage_edge;

/* "development" <-> ST_DEVELOPMENT; ST_NONE when unknown. */
const char *stage_name(stage_id s);
stage_id stage_parse(const char *name);
const char *edge_kind_name(edge_kind k);
const char *effect_name(effect_id e);
/* Whether a failure of the effect (the outside system refused it for good,
 * e.g. a pull request that cannot be merged) is a failed gate that rolls the
 * item back: the merge gate. */
bool effect_rolls_back(effect_id e);

/* The edge from -> to, or NULL if the table has none. */
const stage_edge *pipeline_edge(stage_id from, stage_id to);
/* The forward edge out of `from`, or NULL (done, cancelled). */
const stage_edge *pipeline_forward(stage_id from);
/* Every edge, in table order. */
const stage_edge *pipeline_edges(size_t *n);

/* Writes "review->testing". */
void edge_transition(const stage_edge *e, char *out, size_t n);

/* Verdict keys an actor may report, and those only the engine records
 * (the digest returned by the image build). */
bool verdict_key_reportable(const char *key);
bool verdict_key_engine_only(const char *key);
extern const char *const verdict_keys[]; /* NULL-terminated, reportable */

/* The pull request an actor names at development->review (`pr_number`, a
 * positive integer), or 0 when absent or malformed (check_development
 * refuses a malformed one). */
unsigned long long pipeline_pr_number(const orch_verdicts *ev);

/* The pull request of a cycle: the one reported (pr_number) at
 * development->review of that cycle; in cycle 0 without one, the task's own
 * (CreateTask). A later cycle without a reported one has none: its pull
 * request would be an earlier cycle's, already merged or abandoned. */
unsigned long long pipeline_cycle_pr(int cycle, unsigned long long task_pr,
                                     unsigned long long reported_pr);

/* Parses a percentage the way the database stores it: digits with an
 * optional fraction, 0..100; false for anything else (signs, exponents,
 * hex, inf, nan). */
bool pipeline_parse_pct(const char *s, double *out);

typedef enum gates_outcome {
    GATES_PASS,     /* every gate passed */
    GATES_REFUSE,   /* a gate failed or lacks its key: the stage stays */
    GATES_ROLLBACK, /* a gate that rolls back said no: back to development */
} gates_outcome;

#define GATE_WHY_MAX 200

/* Runs every gate of `e`, in order. One message per failing gate goes into
 * `fails` (up to `maxfails`); *nfails is their count. A rollback gate's
 * explicit failure wins over any other failure. */
gates_outcome pipeline_run_gates(const stage_edge *e, const gate_input *in,
                                 char (*fails)[GATE_WHY_MAX], size_t maxfails, size_t *nfails);

#endif
