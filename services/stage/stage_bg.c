/*
 * stage_bg.c - stage-service's background threads: lease releases that could
 * not reach lease-service are retried every second (the release-later queue
 * of orch/lease_client.h, on its own thread), and the reconciler
 * drives items whose recorded verdicts already pass the gates of their next
 * forward edge through AdvanceStage as actor "reconciler" (it defers on a
 * held lease like every other actor). Edges without gates are left to the
 * actors who decide them. A third thread applies the webhook events of the
 * inbox (stage_inbox.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/clock.h"
#include "orch/log.h"
#include "stage_bg.h"
#include "stage_engine.h"
#include "stage_inbox.h"

/* Whether the verdicts recorded for edge `e` in the item's current cycle
 * pass every gate of `e` (a pure check on data read without the lease: the
 * engine reads and runs the gates again under it). Verdicts reported at
 * another edge never count, so the reconciler drives no item on them. */
static bool gates_pass(stage_svc *ss, const stage_task *t, const stage_edge *e, uint64_t dl)
{
    orch_verdicts ev;
    stage_gate_input gi;
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_gate_input_read(c, dl, t, e, &ev, &gi);
    orch_db_release(c);
    if (err)
        return false;
    char fails[STAGE_ADV_MAX_FAILS][STAGE_GATE_WHY_MAX];
    size_t nf;
    /* A rollback verdict counts too: the engine then rolls the item back. */
    return stage_pipeline_run_gates(e, &gi, fails, STAGE_ADV_MAX_FAILS, &nf) != STAGE_GATES_REFUSE;
}

/* Drives task `t` along its forward edge `e` through the engine as actor
 * "reconciler". True when it advanced. */
static bool reconcile_one(stage_svc *ss, const stage_task *t, const stage_edge *e)
{
    stage_advance_req ar = { t->work_item, stage_name(e->from), stage_name(e->to), "reconciler", "",
                             NULL };
    stage_outcome o;
    orch_err err = stage_advance(ss, &ar, orch_mono_ms() + 60000, &o);
    stage_count_transition(ss, ar.expected_from, ar.to, o.result);
    orch_log_ctx_set_epoch(o.epoch); /* this call's grant; 0 (none) when deferred */
    if (err)
        orch_info("reconciler: %s %s->%s: %s: %s", t->work_item, stage_name(e->from),
                  stage_name(e->to), orch_code_name(stage_failure_code(o.fail.kind, o.fail.err)),
                  o.fail.msg);
    else
        orch_info("reconciler: %s %s->%s: %s", t->work_item, stage_name(e->from), stage_name(e->to),
                  stage_result_name(o.result));
    stage_outcome_free(&o);
    return !err && o.result == STAGE_RESULT_ADVANCED;
}

/* Tasks that can still move, by id after the last pass's cursor: a pass
 * sees the next batch, and every task is reached in turn however many are
 * done. Past the end of the table, from the first again. */
static orch_err list_batch(stage_svc *ss, uint64_t dl, stage_task **ts, int *n)
{
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_list_active(c, dl, ss->reconcile_cursor, ss->reconcile_batch * 4, ts, n);
    if (err == ORCH_OK && *n == 0 && ss->reconcile_cursor != 0) {
        ss->reconcile_cursor = 0;
        free(*ts);
        *ts = NULL;
        err = stage_store_list_active(c, dl, 0, ss->reconcile_batch * 4, ts, n);
    }
    orch_db_release(c);
    return err;
}

void stage_reconcile_pass(stage_svc *ss)
{
    uint64_t dl = orch_mono_ms() + 30000;
    stage_task *ts = NULL;
    int n = 0;
    orch_err err = list_batch(ss, dl, &ts, &n);
    if (err) {
        orch_warn("reconciler: listing tasks: %s", orch_strerror(err));
        return;
    }
    int limit = ss->reconcile_batch * 4;
    /* The next pass starts after the last task looked at; past the end of
     * the table it starts again from the first. */
    int64_t next = n == limit ? ts[n - 1].id : 0;
    int tried = 0, moved = 0;
    for (int i = 0; i < n && tried < ss->reconcile_batch; i++) {
        /* Every line about the task carries its work_item (and the epoch
         * of the reconciler's grant); cleared before the next one. */
        orch_log_ctx_set(ORCH_LOG_WORK_ITEM, ts[i].work_item);
        const stage_edge *e = stage_logic_reconcile_edge(ts[i].stage);
        if (e && gates_pass(ss, &ts[i], e, dl)) {
            tried++;
            if (reconcile_one(ss, &ts[i], e))
                moved++;
            if (tried == ss->reconcile_batch && i < n - 1)
                next = ts[i].id;
        }
        orch_log_ctx_clear();
    }
    ss->reconcile_cursor = next;
    free(ts);
    if (tried)
        orch_info("reconciler pass: %d item(s) tried, %d advanced", tried, moved);
}

/* Every second: a reconciler pass once ORCH_STAGE_RECONCILE_INTERVAL_MS
 * has passed since the end of the previous one (0 turns it off). */
static bool reconcile_tick(void *arg)
{
    stage_svc *ss = arg;
    if (ss->reconcile_interval_ms > 0 && orch_mono_ms() >= ss->next_reconcile_ms) {
        stage_reconcile_pass(ss);
        ss->next_reconcile_ms = orch_mono_ms() + (uint64_t)ss->reconcile_interval_ms;
    }
    return true;
}

orch_err stage_bg_start(stage_svc *ss)
{
    ss->next_reconcile_ms = orch_mono_ms() + (uint64_t)ss->reconcile_interval_ms;
    /* Lease releases are retried every second on their own thread, so a
     * long reconciler pass never delays them. */
    orch_lease_releaser_opts ro = {
        .client = ss->lease,
        .me = ss->me,
        .timeout_ms = ss->lease_timeout_ms,
        .interval_ms = 1000,
    };
    orch_err err = orch_lease_releaser_start(&ro, &ss->releaser);
    if (!err)
        err = orch_ticker_start("reconciler", 1000, 0, reconcile_tick, ss, &ss->reconcile_ticker);
    if (!err)
        err = orch_ticker_start("inbox", 500, 0, stage_inbox_tick, ss, &ss->inbox_ticker);
    return err;
}

void stage_bg_stop(stage_svc *ss)
{
    if (!ss->reconcile_ticker && !ss->releaser && !ss->inbox_ticker)
        return;
    /* All three are told at once, then joined in turn; the releaser last,
     * since the others may still queue releases. Releases still owed are
     * tried once more as it stops. */
    orch_ticker_cancel(ss->reconcile_ticker);
    orch_lease_releaser_cancel(ss->releaser);
    orch_ticker_cancel(ss->inbox_ticker);
    orch_ticker_stop(ss->reconcile_ticker);
    orch_ticker_stop(ss->inbox_ticker);
    orch_lease_releaser_stop(ss->releaser);
    ss->reconcile_ticker = ss->inbox_ticker = NULL;
    ss->releaser = NULL;
}
