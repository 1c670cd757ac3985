/*
 * stage_intents.c - step 4 of AdvanceStage (see stage_engine.c): the
 * side-effect intents of an edge, claimed in a statement that checks the
 * lease epoch, run or resolved by their claimer alone, their outcome
 * recorded; and, before a rollback or cancel, the resolution of the
 * cycle's intents whose outcome is unknown (docs/architecture/pipeline.md,
 * "Rollback and cancel over an effect of unknown outcome").
 *
 * Threading: any RPC worker; each call checks out its own connections.
 * Errors: stage_result or orch_err, and the failure (its kind and
 * message) in a stage_failure, as the engine's.
 * Ownership: every pointer argument is borrowed for the call.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "orch/alert.h"
#include "orch/clock.h"
#include "orch/log.h"
#include "stage_intents.h"

static orch_err with_conn(stage_svc *ss, uint64_t dl, orch_db_conn **c)
{
    return orch_db_acquire(ss->db, dl, c);
}

/* Takes over intent `row` (seen as it is) for `call` under call->epoch;
 * *sent is set just before the statement. STAGE_RESULT_ADVANCED when this
 * call now owns it, else STAGE_RESULT_ABORTED / STAGE_RESULT_ERROR with `f`. */
static stage_result take_over(stage_svc *ss, const stage_effect_call *call, const stage_intent *row,
                              uint64_t *sent, stage_failure *f)
{
    const stage_task *t = call->task;
    const char *name = stage_effect_name(call->effect);
    uint64_t expiry = stage_effect_claim_expiry_ms(&ss->effects, call->effect);
    if (!stage_logic_may_take_over(row, call->epoch, expiry)) {
        stage_fail(f, STAGE_FAIL_EFFECT_BUSY,
                   "%s of %s is in progress by another actor (epoch %" PRIu64 ")", name,
                   t->work_item, row->epoch);
        return STAGE_RESULT_ABORTED;
    }
    orch_db_conn *c = NULL;
    bool took = false;
    orch_err err = with_conn(ss, call->deadline, &c);
    *sent = orch_mono_ms();
    if (!err)
        err = stage_store_intent_takeover(c, call->deadline, t->work_item, row, call->epoch, &took);
    orch_db_release(c);
    if (err) {
        stage_db_fail(f, err, "side-effect intent");
        return STAGE_RESULT_ERROR;
    }
    if (!took) {
        stage_fail(f, STAGE_FAIL_LOST_RACE, "%s of %s was taken over by another actor", name,
                   t->work_item);
        return STAGE_RESULT_ABORTED;
    }
    return STAGE_RESULT_ADVANCED;
}

/* Without a lease, the claim's expiry assumes the effect starts within the
 * start window of the claim (sent at `sent`): a claimer that was held up
 * longer leaves it pending for the next caller rather than race a taker.
 * True (with `f`) when this call must stop. */
static bool started_late(stage_svc *ss, const stage_effect_call *call, uint64_t sent,
                         stage_failure *f)
{
    if (!stage_logic_started_late(call->epoch, sent, orch_mono_ms()))
        return false;
    stage_fail(f, STAGE_FAIL_EFFECT_LATE,
               "%s of %s was claimed but could not start within %d ms of the claim: left "
               "pending; a later attempt takes it over after %" PRIu64 " ms",
               stage_effect_name(call->effect), call->task->work_item, STAGE_EFFECT_START_WINDOW_MS,
               stage_effect_claim_expiry_ms(&ss->effects, call->effect));
    return true;
}

orch_err stage_fail_taken_over(stage_failure *f, stage_effect_id effect, const char *work_item)
{
    return stage_fail(f, STAGE_FAIL_LOST_RACE,
                      "%s of %s: the intent was taken over while it ran (a newer lease "
                      "epoch): this call stops",
                      stage_effect_name(effect), work_item);
}

/* Records outcome `o` (and the image digest it returned) of `call`'s
 * intent `id` in one transaction, even past the caller's deadline.
 * STAGE_RESULT_ADVANCED when recorded, else ERROR / ABORTED with `f`. */
static stage_result record_outcome(stage_svc *ss, const stage_effect_call *call, int64_t id,
                                   const stage_advance_effect *ae, const char *digest,
                                   stage_failure *f)
{
    /* Losing the outcome would leave an effect that happened marked
     * pending. An intent marked ok without its digest would never run
     * again, and the image-freshness gate would refuse the item for good.
     * If neither is written, the intent stays pending and the next attempt
     * resolves it (same idempotency key). */
    uint64_t rdl = orch_mono_ms() + STAGE_EFFECT_RECORD_BUDGET_MS;
    bool recorded = false, ok = strcmp(ae->outcome, "ok") == 0;
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, rdl, &c);
    if (!err)
        err = stage_store_intent_finish(
            c, rdl,
            &(stage_intent_outcome){ id, call->epoch, ae->outcome, ae->detail, call->task,
                                     ok && digest[0] ? "built_image_digest" : NULL, digest },
            &recorded);
    orch_db_release(c);
    if (err) {
        stage_db_fail(f, err, "recording the effect's outcome");
        return STAGE_RESULT_ERROR;
    }
    if (!recorded) {
        stage_fail_taken_over(f, call->effect, call->task->work_item);
        return STAGE_RESULT_ABORTED;
    }
    return STAGE_RESULT_ADVANCED;
}

/* Runs (or resolves) the effect of `call`, whose intent `id` this call
 * owns, and records its outcome in *out and `ae`. STAGE_RESULT_ADVANCED
 * when the outcome was recorded, else ERROR / ABORTED with `f`. */
static stage_result exec_effect(stage_svc *ss, const stage_effect_call *call, int64_t id,
                                stage_advance_effect *ae, stage_outcome_later *later,
                                stage_effect_outcome *out, stage_failure *f)
{
    const stage_task *t = call->task;
    char digest[128] = "";
    stage_effect_outcome o = stage_logic_observed(
        call->check_only,
        stage_effect_run(&ss->effects, call, ae->detail, sizeof ae->detail, digest, sizeof digest));
    ae->ran = true;
    ae->epoch = call->epoch;
    snprintf(ae->outcome, sizeof ae->outcome, "%s", stage_effect_outcome_name(o));
    orch_counter_add2(ss->m_effects, (size_t)call->effect, stage_logic_outcome_label(o), 1);
    orch_info("effect %s of %s (%s, epoch %" PRIu64 "%s): %s: %s", stage_effect_name(call->effect),
              t->work_item, call->transition, call->epoch, call->check_only ? ", resolve" : "",
              ae->outcome, ae->detail);
    stage_fault_point(ss, STAGE_FAULT_CRASH_BEFORE_RECORD, t->work_item);
    *out = o;
    if (later && o == STAGE_EFFECT_OK && ss->fault != STAGE_FAULT_CRASH_AFTER_EFFECT) {
        /* Recorded by the stage write, in the same commit. */
        *later = (stage_outcome_later){ .pending = true, .id = id, .epoch = call->epoch };
        snprintf(later->digest, sizeof later->digest, "%s", digest);
        return STAGE_RESULT_ADVANCED;
    }
    stage_result r = record_outcome(ss, call, id, ae, digest, f);
    if (r != STAGE_RESULT_ADVANCED)
        return r;
    stage_fault_point(ss, STAGE_FAULT_CRASH_AFTER_EFFECT, t->work_item);
    return STAGE_RESULT_ADVANCED;
}

/* Claims the intent of call->effect for step 4. STAGE_RESULT_ADVANCED with
 * *run false: it is done (ok) already; with *run true: this call owns it
 * (call->resolve: its previous outcome must be found out). Else the
 * result that ends the call. */
static stage_result claim_effect(stage_svc *ss, stage_effect_call *call, stage_advance_effect *ae,
                                 stage_intent *row, bool *run, stage_failure *f)
{
    const stage_task *t = call->task;
    orch_db_conn *c = NULL;
    stage_intent_state st;
    orch_err err = with_conn(ss, call->deadline, &c);
    uint64_t sent = orch_mono_ms(); /* before the claim: its row's clock starts later */
    if (!err)
        err = stage_store_intent_claim(c, call->deadline,
                                       &(stage_intent_key){ t->work_item, call->transition,
                                                            stage_effect_name(call->effect),
                                                            t->cycle },
                                       call->epoch, call->verdicts, &st, row);
    orch_db_release(c);
    if (err) {
        stage_db_fail(f, err, "side-effect intent");
        return STAGE_RESULT_ERROR;
    }
    if (call->verdicts)
        *call->verdicts_recorded = st != STAGE_INTENT_STALE && st != STAGE_INTENT_MOVED;
    if (st == STAGE_INTENT_MOVED) {
        stage_fail(f, STAGE_FAIL_LOST_RACE,
                   "lost the race: %s left stage %s (cycle %d): its verdicts were not recorded "
                   "and %s was not started",
                   t->work_item, stage_name(call->verdicts->t->stage), t->cycle,
                   stage_effect_name(call->effect));
        return STAGE_RESULT_ABORTED;
    }
    *run = call->resolve = false;
    if (st == STAGE_INTENT_EXISTS) {
        snprintf(ae->outcome, sizeof ae->outcome, "%s", row->outcome);
        snprintf(ae->detail, sizeof ae->detail, "%s", row->detail);
        ae->epoch = row->epoch;
        stage_intent_action act = stage_logic_intent_action(
            row, call->epoch, stage_effect_claim_expiry_ms(&ss->effects, call->effect));
        if (act == STAGE_INTENT_DONE)
            return STAGE_RESULT_ADVANCED; /* done before: never again */
        stage_result r = take_over(ss, call, row, &sent, f);
        if (r != STAGE_RESULT_ADVANCED)
            return r;
        call->resolve = act == STAGE_INTENT_RESOLVE;
        st = STAGE_INTENT_CLAIMED;
    }
    if (st == STAGE_INTENT_STALE) {
        stage_fail(f, STAGE_FAIL_LOST_RACE,
                   "lease epoch %" PRIu64 " of %s is no longer the live grant: %s not started",
                   call->epoch, t->work_item, stage_effect_name(call->effect));
        return STAGE_RESULT_ABORTED;
    }
    ae->claimed = true; /* from here the intent row is ours: durable */
    if (started_late(ss, call, sent, f))
        return STAGE_RESULT_ABORTED;
    *run = true;
    return STAGE_RESULT_ADVANCED;
}

stage_result stage_run_effect(stage_svc *ss, const stage_effect_call *call,
                              stage_advance_effect *ae, stage_outcome_later *later,
                              stage_failure *f)
{
    stage_intent row;
    bool run = false;
    stage_effect_call own = *call;
    own.check_only = false;
    ae->effect = own.effect;
    ae->epoch = own.epoch;
    stage_result r = claim_effect(ss, &own, ae, &row, &run, f);
    if (r != STAGE_RESULT_ADVANCED || !run)
        return r;
    /* This call owns the intent: run the effect, then record its outcome. */
    stage_effect_outcome o = STAGE_EFFECT_UNKNOWN;
    r = exec_effect(ss, &own, row.id, ae, later, &o, f);
    if (r != STAGE_RESULT_ADVANCED)
        return r;
    return stage_logic_effect_result(own.effect, o);
}

/* Finds out, under base->epoch, the outcome of intent `row` (effect
 * base->effect of edge `e` in the cycle of base->task) the way a retried
 * edge does (takeover, same idempotency key, the call's own epoch as
 * fence), but starting nothing the first attempt did not
 * (stage_effect_call.check_only), and records it. STAGE_RESULT_ADVANCED
 * when settled (ae->outcome ok or failed); STAGE_RESULT_EFFECT_UNKNOWN when
 * still unknown; else ABORTED / ERROR with `f`. */
static stage_result resolve_intent(stage_svc *ss, const stage_effect_call *base,
                                   const stage_edge *e, const stage_intent *row,
                                   stage_advance_effect *ae, stage_failure *f)
{
    char transition[64];
    orch_verdicts ev;
    stage_gate_input gi;
    stage_edge_transition(e, transition, sizeof transition);
    /* The verdicts and the pull request the first attempt acted on. */
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, base->deadline, &c);
    if (!err)
        err = stage_gate_input_read(c, base->deadline, base->task, e, &ev, &gi);
    orch_db_release(c);
    if (err) {
        stage_db_fail(f, err, "reading the effect's verdicts");
        return STAGE_RESULT_ERROR;
    }
    stage_task acted = *base->task;
    if (gi.pr_number)
        acted.pr_number = gi.pr_number;
    stage_effect_call call = *base;
    call.task = &acted;
    call.transition = transition;
    call.ev = &ev;
    call.resolve = call.check_only = true;
    uint64_t sent = 0;
    stage_result r = take_over(ss, &call, row, &sent, f);
    if (r != STAGE_RESULT_ADVANCED)
        return r;
    ae->claimed = true;
    if (started_late(ss, &call, sent, f))
        return STAGE_RESULT_ABORTED;
    stage_effect_outcome o = STAGE_EFFECT_UNKNOWN;
    r = exec_effect(ss, &call, row->id, ae, NULL, &o, f);
    if (r != STAGE_RESULT_ADVANCED)
        return r;
    return o == STAGE_EFFECT_UNKNOWN ? STAGE_RESULT_EFFECT_UNKNOWN : STAGE_RESULT_ADVANCED;
}

/* The refusal of a rollback or cancel over intent `u` that could not be
 * settled: `why` says what the attempt to find its outcome met. */
static void refuse_unresolved(const stage_task *t, stage_id to, const stage_open_intent *u,
                              const char *why, stage_failure *f)
{
    const char *what = stage_logic_backward_word(to);
    stage_fail(f, STAGE_FAIL_UNRESOLVED_EFFECT,
               "%s of %s refused: effect %s of %s (cycle %d, epoch %" PRIu64 ") is %s, so it may "
               "have happened and the %s would abandon it; asking again under its idempotency "
               "key did not settle it (%.300s); every later attempt asks again: retry the %s "
               "once that is fixed",
               what, t->work_item, u->effect, u->transition, t->cycle, u->row.epoch,
               strcmp(u->row.outcome, "pending") == 0 ? "pending (claimed, outcome never recorded)"
                                                      : "unknown",
               what, why, what);
}

/* Reads the first unresolved intent (unknown or pending) of t's cycle. */
static orch_err find_unresolved(stage_svc *ss, uint64_t dl, const stage_task *t, bool *found,
                                stage_open_intent *u, stage_failure *f)
{
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, dl, &c);
    if (!err)
        err = stage_store_unresolved_effect(c, dl, t->work_item, t->cycle, found, u);
    orch_db_release(c);
    return err ? stage_db_fail(f, err, "reading the cycle's side effects") : ORCH_OK;
}

/* Logs an intent settled before a rollback or cancel; a deploy that had
 * started goes on without the item (the deployer's to stop): an alert. */
static void note_settled(const stage_task *t, stage_id to, const char *tr,
                         const stage_advance_effect *ae)
{
    const char *what = stage_logic_backward_word(to);
    orch_info("%s: effect %s of %s (cycle %d) found out before the %s: %s: %s", t->work_item,
              stage_effect_name(ae->effect), tr, t->cycle, what, ae->outcome, ae->detail);
    if (ae->effect == STAGE_EFF_DEPLOY_START && strcmp(ae->outcome, "ok") == 0)
        orch_alert("stage.deploy-left-running", t->work_item,
                   "%s: deploy_start of %s (cycle %d) had started; the %s to %s goes on and the "
                   "deploy is the deployer's to stop: %s",
                   t->work_item, tr, t->cycle, what, stage_name(to), ae->detail);
}

/* Resolves one unresolved intent `u` before the move to `to` (listed in
 * out->effects while there is room). ORCH_OK when settled; else the
 * refusal in out->fail (with, for a database error, that error as its kind
 * and cause). */
static orch_err settle_one(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                           const stage_open_intent *u, stage_outcome *out)
{
    stage_advance_effect scratch, *ae = &scratch;
    if (out->neffects < STAGE_ADV_MAX_EFFECTS)
        ae = &out->effects[out->neffects++];
    memset(ae, 0, sizeof *ae);
    snprintf(ae->outcome, sizeof ae->outcome, "%s", u->row.outcome);
    ae->epoch = u->row.epoch;
    const stage_edge *e = NULL;
    stage_effect_id id = STAGE_EFF_COUNT;
    stage_result r = STAGE_RESULT_ERROR;
    stage_failure w = { .kind = STAGE_FAIL_UNRESOLVED_EFFECT };
    if (stage_logic_intent_edge(u->transition, u->effect, &e, &id)) {
        ae->effect = id;
        stage_effect_call base = {
            .effect = id, .task = t, .epoch = out->epoch, .db = ss->db, .deadline = dl
        };
        r = resolve_intent(ss, &base, e, &u->row, ae, &w);
    } else {
        snprintf(w.msg, sizeof w.msg, "the pipeline has no edge %s with effect %s", u->transition,
                 u->effect);
    }
    if (ae->claimed)
        out->durable = true;
    if (r == STAGE_RESULT_EFFECT_UNKNOWN)
        snprintf(w.msg, sizeof w.msg, "still unknown: %.480s", ae->detail);
    if (r != STAGE_RESULT_ADVANCED) {
        refuse_unresolved(t, to, u, w.msg, &out->fail);
        if (r == STAGE_RESULT_ERROR && e && w.kind == STAGE_FAIL_DATABASE) {
            out->fail.kind = w.kind;
            out->fail.err = w.err;
        }
        return out->fail.err;
    }
    note_settled(t, to, u->transition, ae);
    return ORCH_OK;
}

/* A rollback or cancel must not abandon an effect of the current cycle
 * whose outcome is not known (unknown, or pending: claimed and never
 * recorded): it may have happened (a deploy that started). Each such
 * effect is first resolved under the call's lease (resolve_intent); once
 * it is ok or failed nothing is abandoned (docs/architecture/pipeline.md,
 * "Rollback and cancel over an effect of unknown outcome"). */
orch_err stage_settle_unresolved(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                                 stage_outcome *out)
{
    for (int i = 0; i <= STAGE_EFF_COUNT; i++) {
        stage_open_intent u;
        bool found = false;
        orch_err err = find_unresolved(ss, dl, t, &found, &u, &out->fail);
        if (err || !found)
            return err;
        err = settle_one(ss, dl, t, to, &u, out);
        if (err)
            return err;
    }
    return stage_fail(&out->fail, STAGE_FAIL_UNRESOLVED_EFFECT,
                      "%s: the effects of cycle %d did not settle", t->work_item, t->cycle);
}
