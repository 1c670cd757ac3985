/*
 * stage_logic.c - the pure rules of the stage engine (see stage_logic.h).
 */
#include "stage_logic.h"

#include <stdio.h>
#include <string.h>

#include "stage_effects.h"

const char *const stage_result_names[STAGE_RESULT_COUNT] = {
    "advanced", "deferred",      "gate_failed",    "rolled_back",
    "aborted",  "effect_failed", "effect_unknown", "error",
};

const char *stage_result_name(stage_result r)
{
    return r >= 0 && r < STAGE_RESULT_COUNT ? stage_result_names[r] : "error";
}

/* ---- side-effect intents ------------------------------------------------ */

bool stage_logic_may_take_over(const stage_intent *row, uint64_t epoch, uint64_t expiry_ms)
{
    bool superseded = epoch && row->epoch && row->epoch < epoch;
    /* A claim made without a lease has no owner to judge: it is given up
     * only once its claimer certainly stopped working on it (start window
     * + the effect's longest run + the record budget + margin), whoever
     * asks. */
    bool abandoned = !row->epoch && row->age_ms > (int64_t)expiry_ms;
    return strcmp(row->outcome, "failed") == 0 || strcmp(row->outcome, "unknown") == 0 ||
           (strcmp(row->outcome, "pending") == 0 && (superseded || abandoned));
}

stage_intent_action stage_logic_intent_action(const stage_intent *row, uint64_t epoch,
                                              uint64_t expiry_ms)
{
    if (strcmp(row->outcome, "ok") == 0)
        return STAGE_INTENT_DONE;
    if (!stage_logic_may_take_over(row, epoch, expiry_ms))
        return STAGE_INTENT_BUSY;
    /* failed: it did not happen, run it; unknown or an abandoned pending:
     * it may have happened, resolve it. */
    return strcmp(row->outcome, "failed") == 0 ? STAGE_INTENT_RUN : STAGE_INTENT_RESOLVE;
}

bool stage_logic_started_late(uint64_t epoch, uint64_t sent_ms, uint64_t now_ms)
{
    return !epoch && now_ms - sent_ms > STAGE_EFFECT_START_WINDOW_MS;
}

/* ---- effect outcomes ------------------------------------------------------ */

stage_effect_outcome stage_logic_observed(bool check_only, stage_effect_outcome o)
{
    return check_only && o == STAGE_EFFECT_ERROR ? STAGE_EFFECT_UNKNOWN : o;
}

size_t stage_logic_outcome_label(stage_effect_outcome o)
{
    return o == STAGE_EFFECT_ERROR ? STAGE_EFFECT_FAILED : (size_t)o;
}

stage_result stage_logic_effect_result(stage_effect_id eff, stage_effect_outcome o)
{
    switch (o) {
    case STAGE_EFFECT_OK: return STAGE_RESULT_ADVANCED;
    case STAGE_EFFECT_UNKNOWN: return STAGE_RESULT_EFFECT_UNKNOWN;
    case STAGE_EFFECT_FAILED:
        return stage_effect_rolls_back(eff) ? STAGE_RESULT_ROLLED_BACK : STAGE_RESULT_EFFECT_FAILED;
    case STAGE_EFFECT_ERROR: return STAGE_RESULT_EFFECT_FAILED;
    }
    return STAGE_RESULT_ERROR;
}

stage_effect_next stage_logic_after_effect(stage_result r)
{
    switch (r) {
    case STAGE_RESULT_ADVANCED: return STAGE_NEXT_CONTINUE;
    case STAGE_RESULT_ROLLED_BACK: return STAGE_NEXT_ROLLBACK;
    case STAGE_RESULT_EFFECT_FAILED:
    case STAGE_RESULT_EFFECT_UNKNOWN: return STAGE_NEXT_ANSWER;
    default: return STAGE_NEXT_FAIL;
    }
}

stage_effect_outcome stage_logic_transport_outcome(bool unsent)
{
    return unsent ? STAGE_EFFECT_ERROR : STAGE_EFFECT_UNKNOWN;
}

stage_merge_answer stage_logic_merge_answer(long status)
{
    if (status >= 200 && status < 300)
        return STAGE_MERGE_DONE;
    if (status == 405 || status == 409)
        return STAGE_MERGE_CHECK;
    /* 401/403 (credentials), 404 (no such repo or pull request), 422, 429
     * (rate limit): not merged, and nothing said about the change. */
    if (status >= 400 && status < 500)
        return STAGE_MERGE_REFUSED;
    return STAGE_MERGE_UNKNOWN;
}

stage_effect_outcome stage_logic_hook_outcome(long status)
{
    if (status >= 200 && status < 300)
        return STAGE_EFFECT_OK;
    if (status >= 400 && status < 500)
        return STAGE_EFFECT_FAILED;
    return STAGE_EFFECT_UNKNOWN;
}

/* ---- edges --------------------------------------------------------------- */

const stage_edge *stage_logic_request_edge(const char *from, const char *to, char *why, size_t n)
{
    stage_id f = stage_parse(from), t = stage_parse(to);
    if (f == STAGE_NONE || t == STAGE_NONE) {
        snprintf(why, n,
                 "unknown stage \"%.60s\" (stages: backlog analysis architecture "
                 "development review testing staging deploy done cancelled)",
                 f == STAGE_NONE ? from : to);
        return NULL;
    }
    const stage_edge *e = stage_pipeline_edge(f, t);
    if (!e)
        snprintf(why, n, "no edge %s->%s in the pipeline (see orchctl stage pipeline)",
                 stage_name(f), stage_name(t));
    return e;
}

bool stage_logic_intent_edge(const char *transition, const char *effect, const stage_edge **e,
                             stage_effect_id *id)
{
    const char *arrow = strstr(transition, "->");
    if (!arrow)
        return false;
    char from[32];
    snprintf(from, sizeof from, "%.*s", (int)(arrow - transition), transition);
    *e = stage_pipeline_edge(stage_parse(from), stage_parse(arrow + 2));
    for (int i = 0; i < STAGE_EFF_COUNT; i++) {
        if (strcmp(stage_effect_name((stage_effect_id)i), effect) == 0) {
            *id = (stage_effect_id)i;
            return *e != NULL;
        }
    }
    return false;
}

uint64_t stage_logic_written_pr(const stage_edge *e, const orch_verdicts *ev)
{
    return e->from == STAGE_DEVELOPMENT && e->to == STAGE_REVIEW ? stage_pipeline_pr_number(ev) : 0;
}

const stage_edge *stage_logic_reconcile_edge(stage_id s)
{
    const stage_edge *e = stage_pipeline_forward(s);
    return e && e->gates[0] ? e : NULL;
}

size_t stage_logic_edge_label(const char *from, const char *to, size_t nlabels)
{
    size_t n, idx = nlabels - 1; /* "other" */
    const stage_edge *edges = stage_pipeline_edges(&n);
    const stage_edge *e =
        stage_pipeline_edge(stage_parse(from ? from : ""), stage_parse(to ? to : ""));
    if (e && (size_t)(e - edges) < nlabels - 1)
        idx = (size_t)(e - edges);
    return idx;
}

const char *stage_logic_backward_word(stage_id to)
{
    return to == STAGE_CANCELLED ? "cancel" : "rollback";
}

/* ---- answers ------------------------------------------------------------- */

orch_code stage_failure_code(stage_failure_kind kind, orch_err cause)
{
    switch (kind) {
    case STAGE_FAIL_NONE: return ORCH_CODE_OK;
    case STAGE_FAIL_BAD_REQUEST: return ORCH_CODE_INVALID_ARGUMENT;
    case STAGE_FAIL_NO_TASK: return ORCH_CODE_NOT_FOUND;
    case STAGE_FAIL_WRONG_STAGE:
    case STAGE_FAIL_UNRESOLVED_EFFECT: return ORCH_CODE_FAILED_PRECONDITION;
    case STAGE_FAIL_LOST_RACE:
    case STAGE_FAIL_EFFECT_BUSY:
    case STAGE_FAIL_EFFECT_LATE: return ORCH_CODE_ABORTED;
    case STAGE_FAIL_LEASE_UNAVAILABLE: return ORCH_CODE_UNAVAILABLE;
    case STAGE_FAIL_DATABASE:
        /* A read or an intent statement whose commit answer was lost: a
         * code the RPC layer forgets; once anything durable happened the
         * engine answers UNKNOWN instead (stage_logic_failure_unknown). */
        if (cause == ORCH_OK)
            break; /* a failure is never answered OK */
        return cause == ORCH_EDB_UNKNOWN ? ORCH_CODE_UNAVAILABLE : orch_err_to_code(cause);
    case STAGE_FAIL_WRITE_UNKNOWN:
    case STAGE_FAIL_UNKNOWN_AFTER_DURABLE: return ORCH_CODE_UNKNOWN;
    case STAGE_FAIL_INTERNAL:
    case STAGE_FAIL_COUNT: break;
    }
    return ORCH_CODE_INTERNAL;
}

bool stage_logic_answer_unknown(bool durable, orch_code code)
{
    return durable && (code == ORCH_CODE_UNAVAILABLE || code == ORCH_CODE_DEADLINE_EXCEEDED ||
                       code == ORCH_CODE_RESOURCE_EXHAUSTED);
}

bool stage_logic_failure_unknown(bool durable, stage_failure_kind kind, orch_err cause)
{
    return stage_logic_answer_unknown(durable, stage_failure_code(kind, cause));
}

/* ---- the webhook inbox ------------------------------------------------------ */

bool stage_logic_event_edge(stage_inbox_kind kind, int seen_cycle, const stage_task *t,
                            stage_id *to, char *why, size_t n)
{
    if (kind == STAGE_INBOX_CANCEL) {
        *to = STAGE_CANCELLED;
        if (t->stage == STAGE_CANCELLED) {
            snprintf(why, n, "%s is already cancelled", t->work_item);
            return false;
        }
        if (!stage_pipeline_edge(t->stage, STAGE_CANCELLED)) {
            snprintf(why, n, "%s is %s: there is nothing to cancel", t->work_item,
                     stage_name(t->stage));
            return false;
        }
        return true;
    }
    *to = kind == STAGE_INBOX_APPROVE ? STAGE_TESTING : STAGE_DEVELOPMENT;
    if (t->stage != STAGE_REVIEW || t->cycle != seen_cycle) {
        snprintf(why, n,
                 "%s is in stage %s (cycle %d); the review event was for review in cycle %d",
                 t->work_item, stage_name(t->stage), t->cycle, seen_cycle);
        return false;
    }
    return true;
}

#define INBOX_BACKOFF_MS  1000 /* first retry */
#define INBOX_BACKOFF_MAX 15000

int64_t stage_logic_inbox_backoff_ms(int attempts)
{
    int shift = attempts > 1 ? attempts - 1 : 0;
    if (shift > 4)
        shift = 4;
    int64_t ms = (int64_t)INBOX_BACKOFF_MS << shift;
    return ms < INBOX_BACKOFF_MAX ? ms : INBOX_BACKOFF_MAX;
}

int64_t stage_logic_inbox_stale_ms(uint32_t effect_timeout_ms)
{
    return 2 * (60000 + (int64_t)effect_timeout_ms);
}

/* The verdict of a call that came to `result`. */
static stage_inbox_verdict result_verdict(stage_result result)
{
    stage_inbox_verdict v = { .done = true, .look_again = false, .outcome = "applied" };
    if (result == STAGE_RESULT_GATE_FAILED) {
        v.outcome = "gate_failed";
    } else if (result != STAGE_RESULT_ADVANCED && result != STAGE_RESULT_ROLLED_BACK) {
        /* deferred, effect_failed (not done, not a verdict), effect_unknown */
        v.done = false;
        v.outcome = stage_result_name(result);
    }
    return v;
}

/* The verdict of a database error `cause`: a lost serialization or lock
 * race looks again (aborted), a row or value the database refused settles
 * the event (rejected), anything else is tried again later (error). */
static stage_inbox_verdict database_verdict(orch_err cause)
{
    stage_inbox_verdict v = { .done = false, .look_again = false, .outcome = "error" };
    if (cause == ORCH_EDB_RETRY || cause == ORCH_EDB_LOCKED) {
        v.look_again = true;
        v.outcome = "aborted";
    } else if (cause == ORCH_ENOTFOUND || cause == ORCH_EINVAL) {
        v.done = true;
        v.outcome = "rejected";
    }
    return v;
}

stage_inbox_verdict stage_logic_inbox_settle(stage_failure_kind kind, orch_err cause,
                                             stage_result result)
{
    stage_inbox_verdict v = { .done = false, .look_again = false, .outcome = "error" };
    switch (kind) {
    case STAGE_FAIL_NONE: return result_verdict(result);
    case STAGE_FAIL_WRONG_STAGE:
    case STAGE_FAIL_UNRESOLVED_EFFECT:
        v.look_again = true;
        v.outcome = "moved";
        break;
    case STAGE_FAIL_LOST_RACE:
    case STAGE_FAIL_EFFECT_BUSY:
    case STAGE_FAIL_EFFECT_LATE:
        v.look_again = true;
        v.outcome = "aborted";
        break;
    case STAGE_FAIL_NO_TASK:
    case STAGE_FAIL_BAD_REQUEST:
        v.done = true;
        v.outcome = "rejected";
        break;
    case STAGE_FAIL_DATABASE: return database_verdict(cause);
    case STAGE_FAIL_LEASE_UNAVAILABLE: /* unreachable, or unknown: later */
    case STAGE_FAIL_WRITE_UNKNOWN:
    case STAGE_FAIL_UNKNOWN_AFTER_DURABLE:
    case STAGE_FAIL_INTERNAL:
    case STAGE_FAIL_COUNT: break;
    }
    return v;
}

stage_inbox_verdict stage_logic_inbox_verdict(orch_code code, stage_result result)
{
    stage_inbox_verdict v = { .done = false, .look_again = false, .outcome = "error" };
    if (code == ORCH_CODE_OK) {
        v = result_verdict(result);
    } else if (code == ORCH_CODE_FAILED_PRECONDITION || code == ORCH_CODE_ABORTED) {
        v.look_again = true;
        v.outcome = code == ORCH_CODE_ABORTED ? "aborted" : "moved";
    } else if (code == ORCH_CODE_NOT_FOUND || code == ORCH_CODE_INVALID_ARGUMENT) {
        v.done = true;
        v.outcome = "rejected";
    }
    /* else unavailable, deadline: try again later ("error") */
    return v;
}
