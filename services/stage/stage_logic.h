/*
 * stage_logic.h - the pure rules of the stage engine that are not the
 * pipeline table itself (stage_pipeline.h holds the edges and the gates):
 * what an existing side-effect intent allows (run, resolve, done, or in
 * progress by another: the takeover rule), how an effect's outcome becomes
 * the transition's result, which edge a request or a webhook event names,
 * when a failure after something durable is answered "unknown", how the
 * inbox settles an event after an engine call, and how the outside systems'
 * HTTP answers read as effect outcomes.
 *
 * No I/O: the facts (an intent row as read, a clock value, an HTTP status,
 * the engine's answer) come in as arguments, so every rule is unit-tested
 * on its own (tests/unit/test_stage_logic.c). Thread-safe. Every pointer
 * argument is borrowed for the call; returned pointers point into the
 * static pipeline table.
 */
#ifndef ORCH_STAGE_LOGIC_H
#define ORCH_STAGE_LOGIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"
#include "orch/verdict.h"
#include "stage_pipeline.h"

#define STAGE_MAX_FIELD  200 /* bytes of work item, repo, actor */
#define STAGE_MAX_TITLE  500
#define STAGE_MAX_REASON 500  /* bytes of a rollback or cancel reason */
#define STAGE_MAX_DETAIL 1000 /* bytes of a side effect's recorded detail */

/* A task as stored. */
typedef struct stage_task {
    int64_t id;
    char work_item[STAGE_MAX_FIELD + 1];
    char repo[STAGE_MAX_FIELD + 1];
    char title[STAGE_MAX_TITLE + 1];
    stage_id stage;
    uint64_t version;
    uint64_t pr_number;
    int cycle;
    uint64_t created_ms, updated_ms;
} stage_task;

/* A side-effect intent row as read. */
typedef struct stage_intent {
    int64_t id;
    char outcome[16]; /* pending | ok | failed | unknown */
    uint64_t epoch;   /* 0: claimed without a lease */
    char detail[512];
    int64_t age_ms; /* since it was claimed (or taken over), database clock */
} stage_intent;

/* The result of one transition attempt; also the label values of
 * orch_stage_transitions_total (stage_result_names). */
typedef enum stage_result {
    STAGE_RESULT_ADVANCED,
    STAGE_RESULT_DEFERRED,
    STAGE_RESULT_GATE_FAILED,
    STAGE_RESULT_ROLLED_BACK,
    STAGE_RESULT_ABORTED,
    STAGE_RESULT_EFFECT_FAILED,
    STAGE_RESULT_EFFECT_UNKNOWN,
    STAGE_RESULT_ERROR,
    STAGE_RESULT_COUNT
} stage_result;

extern const char *const stage_result_names[STAGE_RESULT_COUNT];
/* "advanced", "deferred" ...; "error" for a value out of range. */
const char *stage_result_name(stage_result r);

typedef enum stage_effect_outcome {
    STAGE_EFFECT_OK,
    STAGE_EFFECT_FAILED,  /* the outside system refused for good: it did not happen */
    STAGE_EFFECT_UNKNOWN, /* timeout, 5xx, lost connection: it may have happened */
    STAGE_EFFECT_ERROR,   /* did not happen, for a reason that is not a verdict on the
                           * change: not configured, credentials refused, rate limited,
                           * superseded epoch; recorded failed, never rolls back */
} stage_effect_outcome;

/* ---- side-effect intents ------------------------------------------------ */

/* What a caller may do with an intent row that already exists. */
typedef enum stage_intent_action {
    STAGE_INTENT_DONE,    /* ok: it happened; never run again */
    STAGE_INTENT_RUN,     /* failed (it did not happen): take it over and run it */
    STAGE_INTENT_RESOLVE, /* unknown, or an abandoned pending claim: take it over and find out */
    STAGE_INTENT_BUSY,    /* pending under a live claim: in progress by another actor */
} stage_intent_action;

/* The takeover rule: whether a caller holding lease `epoch` (0: none) may
 * take over intent `row`. Yes when its outcome is failed (it did not
 * happen) or unknown (it must be found out), or when it is pending and
 * abandoned: claimed under an epoch older than the caller's, or claimed
 * without a lease and older than `expiry_ms` (stage_effect_claim_expiry_ms
 * of its effect: its claimer certainly stopped working on it). An ok row
 * is never taken over. */
bool stage_logic_may_take_over(const stage_intent *row, uint64_t epoch, uint64_t expiry_ms);

/* The action for an existing intent `row`, by the takeover rule above. */
stage_intent_action stage_logic_intent_action(const stage_intent *row, uint64_t epoch,
                                              uint64_t expiry_ms);

/* Whether a claim sent at `sent_ms` without a lease (`epoch` 0) came too
 * late to start its effect at `now_ms` (monotonic): past
 * STAGE_EFFECT_START_WINDOW_MS, the claim's expiry no longer bounds the run,
 * so the effect is left pending for a later caller. Never with a lease. */
bool stage_logic_started_late(uint64_t epoch, uint64_t sent_ms, uint64_t now_ms);

/* ---- effect outcomes ------------------------------------------------------ */

/* The outcome to record for what an effect answered: a resolve that only
 * asks (`check_only`) and could not ask (ERROR) says nothing of the first
 * attempt, which may have happened: UNKNOWN. */
stage_effect_outcome stage_logic_observed(bool check_only, stage_effect_outcome o);

/* The metric label index (ok, failed, unknown) of an outcome: ERROR is failed. */
size_t stage_logic_outcome_label(stage_effect_outcome o);

/* The transition's result once effect `eff` of a forward edge recorded
 * outcome `o`: ADVANCED (go on), EFFECT_UNKNOWN, EFFECT_FAILED, or
 * ROLLED_BACK when the outside system refused an effect that is a gate
 * (the merge: stage_effect_rolls_back). */
stage_result stage_logic_effect_result(stage_effect_id eff, stage_effect_outcome o);

/* What a step-4 result means for the rest of the edge. */
typedef enum stage_effect_next {
    STAGE_NEXT_CONTINUE, /* ADVANCED: the next effect, then the stage write */
    STAGE_NEXT_ROLLBACK, /* ROLLED_BACK: the merge gate said no, roll the item back */
    STAGE_NEXT_ANSWER,   /* EFFECT_FAILED / EFFECT_UNKNOWN: the call answers that result */
    STAGE_NEXT_FAIL,     /* anything else: the call fails with its code */
} stage_effect_next;
stage_effect_next stage_logic_after_effect(stage_result r);

/* Effect outcomes of the outside systems' answers. */
/* A request that got no HTTP answer: never sent -> ERROR (tried again),
 * may have reached the peer -> UNKNOWN (resolved by the next attempt). */
stage_effect_outcome stage_logic_transport_outcome(bool unsent);

/* What Gitea's answer to POST .../merge means. */
typedef enum stage_merge_answer {
    STAGE_MERGE_DONE,    /* 2xx: merged */
    STAGE_MERGE_CHECK,   /* 405/409: refused; already merged or not mergeable: ask */
    STAGE_MERGE_REFUSED, /* other 4xx: not merged, says nothing of the change (ERROR) */
    STAGE_MERGE_UNKNOWN, /* anything else: it may have merged */
} stage_merge_answer;
stage_merge_answer stage_logic_merge_answer(long status);

/* An image-build or deploy hook's answer: 2xx OK, 4xx FAILED, else UNKNOWN. */
stage_effect_outcome stage_logic_hook_outcome(long status);

/* ---- edges --------------------------------------------------------------- */

/* The edge a request names by stage names. NULL with the reason in `why`
 * when a name is not a stage or the pipeline has no such edge. */
const stage_edge *stage_logic_request_edge(const char *from, const char *to, char *why, size_t n);

/* The edge and effect an intent row names ("review->testing", "merge_pr");
 * false when the pipeline has no such edge or effect. */
bool stage_logic_intent_edge(const char *transition, const char *effect, const stage_edge **e,
                             stage_effect_id *id);

/* The pull request the stage write of `e` records: the one reported with
 * the call's verdicts `ev` at development->review, else 0 (keep). */
uint64_t stage_logic_written_pr(const stage_edge *e, const orch_verdicts *ev);

/* The forward edge the reconciler may drive out of `s`: one with gates
 * (edges without gates are the actors' to decide), else NULL. */
const stage_edge *stage_logic_reconcile_edge(stage_id s);

/* The index of edge (from, to) among the metric's edge labels: the edge's
 * place in the table when it is below `nlabels` - 1, else the last label
 * ("other"). NULL names are no edge. */
size_t stage_logic_edge_label(const char *from, const char *to, size_t nlabels);

/* "rollback" or "cancel": the word for a move to `to`. */
const char *stage_logic_backward_word(stage_id to);

/* ---- answers ------------------------------------------------------------- */

/* Why an engine call ended without a result (stage_failure in
 * stage_engine.h); the RPC code of each is stage_failure_code(). */
typedef enum stage_failure_kind {
    STAGE_FAIL_NONE,                  /* no failure: the call came to a result */
    STAGE_FAIL_BAD_REQUEST,           /* the request names no edge of the pipeline */
    STAGE_FAIL_NO_TASK,               /* no such task */
    STAGE_FAIL_WRONG_STAGE,           /* the task is not in the request's expected stage */
    STAGE_FAIL_LOST_RACE,             /* another call moved the task, took the intent over or
                                       * holds a newer lease epoch: nothing was changed */
    STAGE_FAIL_EFFECT_BUSY,           /* an effect of the edge is in progress by another actor */
    STAGE_FAIL_EFFECT_LATE,           /* a claim without a lease could not start its effect
                                       * within the start window: left pending */
    STAGE_FAIL_UNRESOLVED_EFFECT,     /* a rollback or cancel would abandon an effect whose
                                       * outcome could not be found out */
    STAGE_FAIL_LEASE_UNAVAILABLE,     /* lease-service's Acquire failed (its error is the cause) */
    STAGE_FAIL_DATABASE,              /* a database error (the cause) before anything durable */
    STAGE_FAIL_WRITE_UNKNOWN,         /* the stage write may have committed: its answer was lost */
    STAGE_FAIL_UNKNOWN_AFTER_DURABLE, /* a transient failure after something durable */
    STAGE_FAIL_INTERNAL,              /* a step ended the call without saying why (a bug) */
    STAGE_FAIL_COUNT
} stage_failure_kind;

/* The one mapping of a failure to the RPC code it is answered with (as on
 * the wire; ORCH_CODE_OK for STAGE_FAIL_NONE). `cause` is the library error
 * behind a STAGE_FAIL_DATABASE (its orch_err_to_code(), except that a lost
 * commit answer of a step other than the stage write is UNAVAILABLE);
 * ignored for the other kinds. A kind outside the table, or a database
 * failure without a cause, is INTERNAL. */
orch_code stage_failure_code(stage_failure_kind kind, orch_err cause);

/* Whether a failure with `code` is answered UNKNOWN instead: something
 * durable happened (`durable`) and `code` is one the RPC layer forgets
 * (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED: by contract nothing
 * durable happened), so a resend must be told the same. */
bool stage_logic_answer_unknown(bool durable, orch_code code);

/* stage_logic_answer_unknown() for failure (`kind`, `cause`), by the code
 * stage_failure_code() gives it. */
bool stage_logic_failure_unknown(bool durable, stage_failure_kind kind, orch_err cause);

/* ---- the webhook inbox ------------------------------------------------------ */

typedef enum stage_inbox_kind {
    STAGE_INBOX_CANCEL,
    STAGE_INBOX_APPROVE,
    STAGE_INBOX_REJECT
} stage_inbox_kind;

/* The stage `to` an event of `kind` (that arrived while the item was in
 * cycle `seen_cycle`) asks of the item as it is now (`t`, from its stage):
 * a cancel from any
 * stage that has a cancel edge; a review event only while the item is in
 * review in the cycle it arrived in. False, with the reason in `why`, when
 * the event no longer applies (superseded). */
bool stage_logic_event_edge(stage_inbox_kind kind, int seen_cycle, const stage_task *t,
                            stage_id *to, char *why, size_t n);

/* The wait before the next attempt of an event tried `attempts` times:
 * 1 s doubling up to 15 s. */
int64_t stage_logic_inbox_backoff_ms(int attempts);

/* How old an inbox claim must be before another claimer takes it over:
 * past any engine call (its 60 s budget) plus an effect's, twice. */
int64_t stage_logic_inbox_stale_ms(uint32_t effect_timeout_ms);

/* How an engine call settles an inbox event. */
typedef struct stage_inbox_verdict {
    bool done;       /* settled for good */
    bool look_again; /* the item moved under the call: read it and try again */
    const char
        *outcome; /* applied | gate_failed | rejected | a result name | moved | aborted | error */
} stage_inbox_verdict;

/* How an engine call that ended with failure (`kind`, `cause`: as
 * stage_failure_code() takes them) and, for STAGE_FAIL_NONE, `result`
 * settles an inbox event: applied or gate_failed (done), the result's name
 * (deferred, effect_failed, effect_unknown: later), moved (wrong stage, an
 * unresolved effect) or aborted (a lost race, in the engine or the
 * database): look again, rejected (no task, not an edge: done), else error
 * (later). */
stage_inbox_verdict stage_logic_inbox_settle(stage_failure_kind kind, orch_err cause,
                                             stage_result result);

/* The same verdict stated by the RPC answer `code` (stage_failure_code() of
 * the failure) and, when OK, `result`: the contract stage_logic_inbox_settle
 * keeps for every failure (tests/unit/test_stage_logic.c). */
stage_inbox_verdict stage_logic_inbox_verdict(orch_code code, stage_result result);

#endif
