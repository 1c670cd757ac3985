/*
 * stage_inbox.c - applying the webhook events of the inbox (stage_inbox.h):
 * one event through the engine, settled or put back for later, and the
 * inbox thread that applies what is due.
 *
 * An event is applied as the item is now: a Plane cancel cancels the item
 * from whatever stage it reached meanwhile; a Gitea review event applies
 * only while the item is still in review in the cycle it arrived in
 * (otherwise it is superseded: that review no longer exists). Errors never
 * drop an event: anything but a settled outcome puts it back with a
 * backoff.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "orch/clock.h"
#include "orch/log.h"
#include "stage_svc.h"

#define INBOX_PASS_MAX    32   /* events one pass of the thread applies */
#define INBOX_BACKOFF_MS  1000 /* first retry */
#define INBOX_BACKOFF_MAX 15000

int64_t stage_inbox_stale_ms(const stage_svc *ss)
{
    /* Past any engine call: its budget (60 s) plus an effect's. */
    return 2 * (60000 + (int64_t)ss->effects.timeout_ms);
}

static int64_t backoff_ms(int attempts)
{
    int shift = attempts > 1 ? attempts - 1 : 0;
    if (shift > 4)
        shift = 4;
    int64_t ms = (int64_t)INBOX_BACKOFF_MS << shift;
    return ms < INBOX_BACKOFF_MAX ? ms : INBOX_BACKOFF_MAX;
}

/* The edge the event asks of the item as it is now; false (with why) when
 * the event no longer applies. */
static bool event_edge(const stage_inbox_row *row, const stage_task *t, stage_id *from,
                       stage_id *to, char *why, size_t n)
{
    *from = t->stage;
    if (row->kind == STAGE_INBOX_CANCEL) {
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
    *to = row->kind == STAGE_INBOX_APPROVE ? STAGE_TESTING : STAGE_DEVELOPMENT;
    if (t->stage != STAGE_REVIEW || t->cycle != row->seen_cycle) {
        snprintf(why, n,
                 "%s is in stage %s (cycle %d); the review event was for review in cycle %d",
                 t->work_item, stage_name(t->stage), t->cycle, row->seen_cycle);
        return false;
    }
    return true;
}

static void settle_as(stage_inbox_result *res, bool done, const char *outcome)
{
    res->done = done;
    snprintf(res->outcome, sizeof res->outcome, "%s", outcome);
}

/* One engine call for the event; true when the result settles it (or is to
 * be put back), false when the item moved under us: look again. */
static bool attempt(stage_svc *ss, const stage_inbox_row *row, stage_id from, stage_id to,
                    stage_inbox_result *res)
{
    orch_verdicts ev;
    orch_verdicts_init(&ev);
    if (row->kind != STAGE_INBOX_CANCEL)
        (void)orch_verdicts_set(&ev, "review_verdict",
                                row->kind == STAGE_INBOX_APPROVE ? "APPROVE" : "REQUEST_CHANGES");
    const char *reason = row->kind == STAGE_INBOX_CANCEL   ? "cancelled in Plane"
                         : row->kind == STAGE_INBOX_REJECT ? "review rejected in Gitea"
                                                           : "";
    stage_advance_req ar = { row->work_item, stage_name(from), stage_name(to),
                             "webhook",      reason,           &ev };
    stage_advance_res ares;
    uint64_t t0 = orch_mono_ns();
    orch_code code =
        stage_advance(ss, &ar, orch_mono_ms() + 60000, &ares, res->detail, sizeof res->detail);
    stage_count_transition(ss, ar.expected_from, ar.to, ares.result);
    orch_histogram_observe_ns(ss->m_advance_latency, 0, orch_mono_ns() - t0);
    res->tr = ares.result;
    res->code = code;
    res->stage = ares.task.stage != STAGE_NONE && ares.task.work_item[0] ? ares.task.stage : from;
    res->epoch = ares.epoch;
    if (ares.holder)
        snprintf(res->holder, sizeof res->holder, "%s", ares.holder->actor);
    bool settled = true;
    if (code == ORCH_CODE_OK &&
        (ares.result == STAGE_RESULT_ADVANCED || ares.result == STAGE_RESULT_ROLLED_BACK)) {
        settle_as(res, true, "applied");
    } else if (code == ORCH_CODE_OK && ares.result == STAGE_RESULT_GATE_FAILED) {
        settle_as(res, true, "gate_failed");
        if (ares.nfails)
            snprintf(res->detail, sizeof res->detail, "%s", ares.fails[0]);
    } else if (code == ORCH_CODE_OK) {
        /* deferred, effect_failed (not done, not a verdict), effect_unknown */
        settle_as(res, false, stage_transition_results[ares.result]);
        if (ares.result == STAGE_RESULT_DEFERRED)
            snprintf(res->detail, sizeof res->detail, "lease held by %s",
                     res->holder[0] ? res->holder : "another actor");
        else if (ares.neffects)
            snprintf(res->detail, sizeof res->detail, "%s", ares.effects[0].detail);
    } else if (code == ORCH_CODE_FAILED_PRECONDITION || code == ORCH_CODE_ABORTED) {
        settle_as(res, false, code == ORCH_CODE_ABORTED ? "aborted" : "moved");
        settled = false;
    } else if (code == ORCH_CODE_NOT_FOUND || code == ORCH_CODE_INVALID_ARGUMENT) {
        settle_as(res, true, "rejected");
    } else {
        settle_as(res, false, "error"); /* unavailable, deadline: try again later */
    }
    stage_advance_res_free(&ares);
    return settled;
}

/* Works out the event's outcome (res), without settling the row. */
static void apply_row(stage_svc *ss, const stage_inbox_row *row, stage_inbox_result *res)
{
    /* A lost race re-reads the item: bounded, each turn is one engine call. */
    for (int turn = 0; turn < 3; turn++) {
        stage_task t;
        uint64_t dl = orch_mono_ms() + 10000;
        orch_db_conn *c = NULL;
        orch_err err = orch_db_acquire(ss->db, dl, &c);
        if (!err)
            err = stage_store_get(c, dl, row->work_item, &t);
        orch_db_release(c);
        if (err == ORCH_ENOTFOUND) {
            settle_as(res, true, "rejected");
            snprintf(res->detail, sizeof res->detail, "no task %s", row->work_item);
            return;
        }
        if (err) {
            settle_as(res, false, "error");
            snprintf(res->detail, sizeof res->detail, "reading the task: %s", orch_strerror(err));
            return;
        }
        res->stage = t.stage;
        stage_id from, to;
        if (!event_edge(row, &t, &from, &to, res->detail, sizeof res->detail)) {
            settle_as(res, true, "superseded");
            return;
        }
        if (attempt(ss, row, from, to, res))
            return;
    }
    /* Still moving under us (or an effect in progress): later. */
}

void stage_inbox_apply(stage_svc *ss, const stage_inbox_row *row, stage_inbox_result *res)
{
    memset(res, 0, sizeof *res);
    res->tr = -1;
    res->stage = row->seen_stage;
    apply_row(ss, row, res);
    res->retry_ms = res->done ? 0 : backoff_ms(row->attempts);
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    bool settled = false;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_inbox_settle(c, dl, row->id, ss->inbox_claimer, res->done, res->outcome,
                                 res->detail, res->retry_ms, &settled);
    orch_db_release(c);
    if (err)
        orch_warn("webhook event %" PRId64 " (%s %s): recording %s failed: %s; it is applied "
                  "again once its claim is stale",
                  row->id, row->source, row->delivery, res->outcome, orch_strerror(err));
    else if (!settled)
        orch_warn("webhook event %" PRId64 ": the claim was taken over while it was applied",
                  row->id);
    if (res->done)
        orch_info("webhook event %" PRId64 " (%s %s %s of %s) %s after %d attempt(s): %s", row->id,
                  row->source, stage_inbox_kind_name(row->kind), row->delivery, row->work_item,
                  res->outcome, row->attempts, res->detail);
    else
        orch_info("webhook event %" PRId64 " (%s %s of %s): %s (%s); again in %" PRId64 " ms",
                  row->id, row->source, stage_inbox_kind_name(row->kind), row->work_item,
                  res->outcome, res->detail, res->retry_ms);
}

int stage_inbox_pass(stage_svc *ss)
{
    int n = 0;
    for (; n < INBOX_PASS_MAX; n++) {
        stage_inbox_row row;
        bool claimed = false;
        uint64_t dl = orch_mono_ms() + 10000;
        orch_db_conn *c = NULL;
        orch_err err = orch_db_acquire(ss->db, dl, &c);
        if (!err)
            err = stage_inbox_claim_next(c, dl, ss->inbox_claimer, stage_inbox_stale_ms(ss), &row,
                                         &claimed);
        orch_db_release(c);
        if (err) {
            orch_warn("webhook inbox: claiming the next event: %s", orch_strerror(err));
            break;
        }
        if (!claimed)
            break;
        stage_inbox_result res;
        stage_inbox_apply(ss, &row, &res);
    }
    return n;
}

bool stage_inbox_tick(void *arg)
{
    (void)stage_inbox_pass(arg);
    return true;
}
