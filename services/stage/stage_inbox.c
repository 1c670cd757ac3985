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
#include "stage_engine.h"
#include "stage_inbox.h"

#define INBOX_PASS_MAX 32 /* events one pass of the thread applies */

int64_t stage_inbox_stale_ms(const stage_svc *ss)
{
    return stage_logic_inbox_stale_ms(ss->effects.timeout_ms);
}

static void settle_as(stage_inbox_result *res, bool done, const char *outcome)
{
    res->done = done;
    snprintf(res->outcome, sizeof res->outcome, "%s", outcome);
}

/* The detail of an event the engine call `o` did not settle for good. */
static void pending_detail(const stage_outcome *o, stage_inbox_result *res)
{
    if (o->result == STAGE_RESULT_DEFERRED)
        snprintf(res->detail, sizeof res->detail, "lease held by %s",
                 res->holder[0] ? res->holder : "another actor");
    else if (o->neffects)
        snprintf(res->detail, sizeof res->detail, "%s", o->effects[0].detail);
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
    stage_outcome o;
    uint64_t t0 = orch_mono_ns();
    orch_err err = stage_advance(ss, &ar, orch_mono_ms() + 60000, &o);
    stage_count_transition(ss, ar.expected_from, ar.to, o.result);
    orch_histogram_observe_ns(ss->m_advance_latency, 0, orch_mono_ns() - t0);
    snprintf(res->detail, sizeof res->detail, "%s", o.fail.msg);
    res->ran = true;
    res->result = o.result;
    res->failure = err ? o.fail.kind : STAGE_FAIL_NONE;
    res->stage = o.task.stage != STAGE_NONE && o.task.work_item[0] ? o.task.stage : from;
    res->epoch = o.epoch;
    if (o.holder)
        snprintf(res->holder, sizeof res->holder, "%s", o.holder->actor);
    stage_inbox_verdict v = stage_logic_inbox_settle(res->failure, o.fail.err, o.result);
    settle_as(res, v.done, v.outcome);
    if (!err && o.result == STAGE_RESULT_GATE_FAILED && o.nfails)
        snprintf(res->detail, sizeof res->detail, "%s", o.fails[0]);
    else if (!err && !v.done)
        pending_detail(&o, res);
    stage_outcome_free(&o);
    return !v.look_again;
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
        stage_id from = t.stage, to;
        if (!stage_logic_event_edge(row->kind, row->seen_cycle, &t, &to, res->detail,
                                    sizeof res->detail)) {
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
    res->stage = row->seen_stage;
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, row->work_item);
    apply_row(ss, row, res);
    orch_log_ctx_set_epoch(res->epoch);
    res->retry_ms = res->done ? 0 : stage_logic_inbox_backoff_ms(row->attempts);
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    bool settled = false;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_inbox_settle(c, dl,
                                 &(stage_inbox_settlement){ row->id, ss->inbox_claimer, res->done,
                                                            res->outcome, res->detail,
                                                            res->retry_ms },
                                 &settled);
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
            err = stage_inbox_claim_next(
                c, dl, &(stage_inbox_claimer){ ss->inbox_claimer, stage_inbox_stale_ms(ss) }, &row,
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
        orch_log_ctx_clear();
    }
    return n;
}

bool stage_inbox_tick(void *arg)
{
    (void)stage_inbox_pass(arg);
    return true;
}
