/*
 * stage_intents.c - step 4 of AdvanceStage (see stage_engine.c): the
 * side-effect intents of an edge, claimed in a statement that checks the
 * lease epoch, run or resolved by their claimer alone, their outcome
 * recorded; and, before a rollback or cancel, the resolution of the
 * cycle's intents whose outcome is unknown (docs/architecture/pipeline.md,
 * "Rollback and cancel over an effect of unknown outcome").
 *
 * Threading: any RPC worker; each call checks out its own connections.
 * Errors: TR_* results and orch_code with a message, as the engine's.
 * Ownership: every pointer argument is borrowed for the call.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "orch/alert.h"
#include "orch/clock.h"
#include "orch/log.h"
#include "stage_svc.h"

static orch_err with_conn(stage_svc *ss, uint64_t dl, orch_db_conn **c)
{
    return orch_db_acquire(ss->db, dl, c);
}

/* Whether this caller (lease `epoch`, 0: none) may take over intent `row`
 * of `eff`: failed (it did not happen) or unknown, or pending under a
 * superseded epoch, or pending without a lease and past its expiry. */
static bool may_take_over(const stage_svc *ss, stage_effect_id eff, uint64_t epoch,
                          const stage_intent *row)
{
    bool superseded = epoch && row->epoch && row->epoch < epoch;
    /* A claim made without a lease has no owner to judge: it is given up
     * only once its claimer certainly stopped working on it (start window
     * + the effect's longest run + the record budget + margin,
     * stage_effect_claim_expiry_ms), whoever asks. */
    bool abandoned =
        !row->epoch && row->age_ms > (int64_t)stage_effect_claim_expiry_ms(&ss->effects, eff);
    return strcmp(row->outcome, "failed") == 0 || strcmp(row->outcome, "unknown") == 0 ||
           (strcmp(row->outcome, "pending") == 0 && (superseded || abandoned));
}

/* Takes over intent `row` (seen as it is) under `epoch`; *sent is set
 * just before the statement. STAGE_RESULT_ADVANCED when this call now owns it, else
 * STAGE_RESULT_ABORTED / STAGE_RESULT_ERROR with *code and `msg`. */
static int take_over(stage_svc *ss, uint64_t dl, const stage_task *t, stage_effect_id eff,
                     uint64_t epoch, const stage_intent *row, uint64_t *sent, char *msg, size_t mn,
                     orch_code *code)
{
    if (!may_take_over(ss, eff, epoch, row)) {
        snprintf(msg, mn, "%s of %s is in progress by another actor (epoch %" PRIu64 ")",
                 stage_effect_name(eff), t->work_item, row->epoch);
        *code = ORCH_CODE_ABORTED;
        return STAGE_RESULT_ABORTED;
    }
    orch_db_conn *c = NULL;
    bool took = false;
    orch_err err = with_conn(ss, dl, &c);
    *sent = orch_mono_ms();
    if (!err)
        err = stage_store_intent_takeover(c, dl, t->work_item, row, epoch, &took);
    orch_db_release(c);
    if (err) {
        *code = stage_db_fail(err, "side-effect intent", msg, mn);
        return STAGE_RESULT_ERROR;
    }
    if (!took) {
        snprintf(msg, mn, "%s of %s was taken over by another actor", stage_effect_name(eff),
                 t->work_item);
        *code = ORCH_CODE_ABORTED;
        return STAGE_RESULT_ABORTED;
    }
    return STAGE_RESULT_ADVANCED;
}

/* Without a lease, the claim's expiry assumes the effect starts within the
 * start window of the claim: a claimer that was held up longer leaves it
 * pending for the next caller rather than race a taker. True (with *code
 * and `msg`) when this call must stop. */
static bool started_late(stage_svc *ss, const stage_task *t, stage_effect_id eff, uint64_t epoch,
                         uint64_t sent, char *msg, size_t mn, orch_code *code)
{
    if (epoch || orch_mono_ms() - sent <= STAGE_EFFECT_START_WINDOW_MS)
        return false;
    snprintf(msg, mn,
             "%s of %s was claimed but could not start within %d ms of the claim: left "
             "pending; a later attempt takes it over after %" PRIu64 " ms",
             stage_effect_name(eff), t->work_item, STAGE_EFFECT_START_WINDOW_MS,
             stage_effect_claim_expiry_ms(&ss->effects, eff));
    *code = ORCH_CODE_ABORTED;
    return true;
}

/* Runs (or resolves) the effect of `call`, whose intent `id` this call
 * owns, and records its outcome in *out and `ae`. STAGE_RESULT_ADVANCED when the
 * outcome was recorded, else STAGE_RESULT_ERROR / STAGE_RESULT_ABORTED with *code and `msg`. */
static int exec_effect(stage_svc *ss, const stage_effect_call *call, int64_t id,
                       stage_advance_effect *ae, stage_effect_outcome *out, char *msg, size_t mn,
                       orch_code *code)
{
    const stage_task *t = call->task;
    char digest[128] = "";
    stage_effect_outcome o =
        stage_effect_run(&ss->effects, call, ae->detail, sizeof ae->detail, digest, sizeof digest);
    if (call->check_only && o == STAGE_EFFECT_ERROR) {
        /* Not sent (or not addressable): says nothing of the first
         * attempt, which may have happened. */
        o = STAGE_EFFECT_UNKNOWN;
    }
    ae->ran = true;
    ae->epoch = call->epoch;
    snprintf(ae->outcome, sizeof ae->outcome, "%s", stage_effect_outcome_name(o));
    orch_counter_add2(ss->m_effects, (size_t)call->effect,
                      o == STAGE_EFFECT_ERROR ? STAGE_EFFECT_FAILED : (size_t)o, 1);
    orch_info("effect %s of %s (%s, epoch %" PRIu64 "%s): %s: %s", stage_effect_name(call->effect),
              t->work_item, call->transition, call->epoch, call->check_only ? ", resolve" : "",
              ae->outcome, ae->detail);
    stage_fault_point(ss, STAGE_FAULT_CRASH_BEFORE_RECORD, t->work_item);

    /* The outcome is recorded even past the caller's deadline: losing it
     * would leave an effect that happened marked pending. The outcome and
     * the digest the effect returned are one transaction: an intent marked
     * ok without its digest would never run again, and the image-freshness
     * gate would refuse the item for good. If neither is written, the intent
     * stays pending and the next attempt resolves it (same idempotency key). */
    uint64_t rdl = orch_mono_ms() + STAGE_EFFECT_RECORD_BUDGET_MS;
    bool recorded = false;
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, rdl, &c);
    if (!err)
        err = stage_store_intent_finish(
            c, rdl, id, call->epoch, ae->outcome, ae->detail, t,
            o == STAGE_EFFECT_OK && digest[0] ? "built_image_digest" : NULL, digest, &recorded);
    orch_db_release(c);
    if (err) {
        *code = stage_db_fail(err, "recording the effect's outcome", msg, mn);
        return STAGE_RESULT_ERROR;
    }
    if (!recorded) {
        snprintf(msg, mn,
                 "%s of %s: the intent was taken over while it ran (a newer lease "
                 "epoch): this call stops",
                 stage_effect_name(call->effect), t->work_item);
        *code = ORCH_CODE_ABORTED;
        return STAGE_RESULT_ABORTED;
    }
    stage_fault_point(ss, STAGE_FAULT_CRASH_AFTER_EFFECT, t->work_item);
    *out = o;
    return STAGE_RESULT_ADVANCED;
}

/* Claims the intent of `eff` for step 4. STAGE_RESULT_ADVANCED with *run false: it
 * is done (ok) already; with *run true: this call owns it (*resolve: its
 * previous outcome must be found out). Else the result that ends the call. */
static int claim_effect(stage_svc *ss, uint64_t dl, const stage_task *t, const char *transition,
                        stage_effect_id eff, uint64_t epoch, stage_advance_effect *ae,
                        stage_intent *row, bool *run, bool *resolve, char *msg, size_t mn,
                        orch_code *code)
{
    orch_db_conn *c = NULL;
    stage_intent_state st;
    orch_err err = with_conn(ss, dl, &c);
    uint64_t sent = orch_mono_ms(); /* before the claim: its row's clock starts later */
    if (!err)
        err = stage_store_intent_claim(c, dl, t->work_item, transition, stage_effect_name(eff),
                                       t->cycle, epoch, &st, row);
    orch_db_release(c);
    if (err) {
        *code = stage_db_fail(err, "side-effect intent", msg, mn);
        return STAGE_RESULT_ERROR;
    }
    *run = *resolve = false;
    if (st == STAGE_INTENT_EXISTS) {
        snprintf(ae->outcome, sizeof ae->outcome, "%s", row->outcome);
        snprintf(ae->detail, sizeof ae->detail, "%s", row->detail);
        ae->epoch = row->epoch;
        if (strcmp(row->outcome, "ok") == 0)
            return STAGE_RESULT_ADVANCED; /* done before: never again */
        int r = take_over(ss, dl, t, eff, epoch, row, &sent, msg, mn, code);
        if (r != STAGE_RESULT_ADVANCED)
            return r;
        /* failed: it did not happen, run it; unknown or an owner's pending
         * under a superseded epoch: it may have happened, resolve it. */
        *resolve = strcmp(row->outcome, "failed") != 0;
        st = STAGE_INTENT_CLAIMED;
    }
    if (st == STAGE_INTENT_STALE) {
        snprintf(msg, mn,
                 "lease epoch %" PRIu64 " of %s is no longer the live grant: "
                 "%s not started",
                 epoch, t->work_item, stage_effect_name(eff));
        *code = ORCH_CODE_ABORTED;
        return STAGE_RESULT_ABORTED;
    }
    ae->claimed = true; /* from here the intent row is ours: durable */
    if (started_late(ss, t, eff, epoch, sent, msg, mn, code))
        return STAGE_RESULT_ABORTED;
    *run = true;
    return STAGE_RESULT_ADVANCED;
}

/* Step 4 for one effect. Returns STAGE_RESULT_ADVANCED to go on, else the result that
 * ends the call (with a message). */
int stage_run_effect(stage_svc *ss, uint64_t dl, const stage_task *t, const char *transition,
                     stage_effect_id eff, uint64_t epoch, const orch_verdicts *ev,
                     stage_advance_effect *ae, char *msg, size_t mn, orch_code *code)
{
    stage_intent row;
    bool run = false, resolve = false;
    ae->effect = eff;
    ae->epoch = epoch;
    int r =
        claim_effect(ss, dl, t, transition, eff, epoch, ae, &row, &run, &resolve, msg, mn, code);
    if (r != STAGE_RESULT_ADVANCED || !run)
        return r;
    /* This call owns the intent: run the effect, then record its outcome. */
    stage_effect_call call = { .effect = eff,
                               .task = t,
                               .transition = transition,
                               .epoch = epoch,
                               .ev = ev,
                               .resolve = resolve,
                               .db = ss->db,
                               .deadline = dl };
    stage_effect_outcome o = STAGE_EFFECT_UNKNOWN;
    r = exec_effect(ss, &call, row.id, ae, &o, msg, mn, code);
    if (r != STAGE_RESULT_ADVANCED)
        return r;
    switch (o) {
    case STAGE_EFFECT_OK: return STAGE_RESULT_ADVANCED;
    case STAGE_EFFECT_UNKNOWN: return STAGE_RESULT_EFFECT_UNKNOWN;
    case STAGE_EFFECT_FAILED:
        return stage_effect_rolls_back(eff) ? STAGE_RESULT_ROLLED_BACK : STAGE_RESULT_EFFECT_FAILED;
    case STAGE_EFFECT_ERROR: return STAGE_RESULT_EFFECT_FAILED;
    }
    return STAGE_RESULT_ERROR;
}

/* The edge and effect an intent row names ("review->testing", "merge_pr");
 * false when the pipeline has no such edge or effect. */
static bool intent_edge(const char *tr, const char *eff, const stage_edge **e, stage_effect_id *id)
{
    const char *arrow = strstr(tr, "->");
    if (!arrow)
        return false;
    char from[32];
    snprintf(from, sizeof from, "%.*s", (int)(arrow - tr), tr);
    *e = stage_pipeline_edge(stage_parse(from), stage_parse(arrow + 2));
    for (int i = 0; i < STAGE_EFF_COUNT; i++) {
        if (strcmp(stage_effect_name((stage_effect_id)i), eff) == 0) {
            *id = (stage_effect_id)i;
            return *e != NULL;
        }
    }
    return false;
}

/* Finds out, under `epoch`, the outcome of intent `row` (effect `eff` of
 * edge `e` in t's cycle) the way a retried edge does (takeover, same
 * idempotency key, the call's own epoch as fence), but starting nothing
 * the first attempt did not (stage_effect_call.check_only), and records it.
 * STAGE_RESULT_ADVANCED when settled (ae->outcome ok or failed); STAGE_RESULT_EFFECT_UNKNOWN
 * when still unknown; else STAGE_RESULT_ABORTED / STAGE_RESULT_ERROR with *code and `msg`. */
static int resolve_intent(stage_svc *ss, uint64_t dl, const stage_task *t, const stage_edge *e,
                          stage_effect_id eff, uint64_t epoch, const stage_intent *row,
                          stage_advance_effect *ae, char *msg, size_t mn, orch_code *code)
{
    char transition[64];
    orch_verdicts ev;
    stage_gate_input gi;
    stage_edge_transition(e, transition, sizeof transition);
    /* The verdicts and the pull request the first attempt acted on. */
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, dl, &c);
    if (!err)
        err = stage_gate_input_read(c, dl, t, e, &ev, &gi);
    orch_db_release(c);
    if (err) {
        *code = stage_db_fail(err, "reading the effect's verdicts", msg, mn);
        return STAGE_RESULT_ERROR;
    }
    stage_task acted = *t;
    if (gi.pr_number)
        acted.pr_number = gi.pr_number;
    uint64_t sent = 0;
    int r = take_over(ss, dl, t, eff, epoch, row, &sent, msg, mn, code);
    if (r != STAGE_RESULT_ADVANCED)
        return r;
    ae->claimed = true;
    if (started_late(ss, t, eff, epoch, sent, msg, mn, code))
        return STAGE_RESULT_ABORTED;
    stage_effect_call call = { .effect = eff,
                               .task = &acted,
                               .transition = transition,
                               .epoch = epoch,
                               .ev = &ev,
                               .resolve = true,
                               .db = ss->db,
                               .deadline = dl,
                               .check_only = true };
    stage_effect_outcome o = STAGE_EFFECT_UNKNOWN;
    r = exec_effect(ss, &call, row->id, ae, &o, msg, mn, code);
    if (r != STAGE_RESULT_ADVANCED)
        return r;
    return o == STAGE_EFFECT_UNKNOWN ? STAGE_RESULT_EFFECT_UNKNOWN : STAGE_RESULT_ADVANCED;
}

/* The refusal of a rollback or cancel over intent `row` that could not be
 * settled: `why` says what the attempt to find its outcome met. */
static orch_code refuse_unresolved(const stage_task *t, stage_id to, const stage_intent *row,
                                   const char *tr, const char *eff, const char *why, char *msg,
                                   size_t mn)
{
    const char *what = to == STAGE_CANCELLED ? "cancel" : "rollback";
    snprintf(msg, mn,
             "%s of %s refused: effect %s of %s (cycle %d, epoch %" PRIu64 ") is %s, so it may "
             "have happened and the %s would abandon it; asking again under its idempotency key "
             "did not settle it (%.300s); every later attempt asks again: retry the %s once "
             "that is fixed",
             what, t->work_item, eff, tr, t->cycle, row->epoch,
             strcmp(row->outcome, "pending") == 0 ? "pending (claimed, outcome never recorded)"
                                                  : "unknown",
             what, why, what);
    return ORCH_CODE_FAILED_PRECONDITION;
}

/* Reads the first unresolved intent (unknown or pending) of t's cycle. */
static orch_code find_unresolved(stage_svc *ss, uint64_t dl, const stage_task *t, bool *found,
                                 stage_intent *row, char *tr, char *eff, char *msg, size_t mn)
{
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, dl, &c);
    if (!err)
        err = stage_store_unresolved_effect(c, dl, t->work_item, t->cycle, found, row, tr, eff);
    orch_db_release(c);
    return err ? stage_db_fail(err, "reading the cycle's side effects", msg, mn) : ORCH_CODE_OK;
}

/* Logs an intent settled before a rollback or cancel; a deploy that had
 * started goes on without the item (the deployer's to stop): an alert. */
static void note_settled(const stage_task *t, stage_id to, const char *tr,
                         const stage_advance_effect *ae)
{
    const char *what = to == STAGE_CANCELLED ? "cancel" : "rollback";
    orch_info("%s: effect %s of %s (cycle %d) found out before the %s: %s: %s", t->work_item,
              stage_effect_name(ae->effect), tr, t->cycle, what, ae->outcome, ae->detail);
    if (ae->effect == STAGE_EFF_DEPLOY_START && strcmp(ae->outcome, "ok") == 0)
        orch_alert("stage.deploy-left-running", t->work_item,
                   "%s: deploy_start of %s (cycle %d) had started; the %s to %s goes on and the "
                   "deploy is the deployer's to stop: %s",
                   t->work_item, tr, t->cycle, what, stage_name(to), ae->detail);
}

/* A rollback or cancel must not abandon an effect of the current cycle
 * whose outcome is not known (unknown, or pending: claimed and never
 * recorded): it may have happened (a deploy that started). Each such
 * effect is first resolved under the call's lease (resolve_intent); once
 * it is ok or failed nothing is abandoned (docs/architecture/pipeline.md,
 * "Rollback and cancel over an effect of unknown outcome"). OK when every
 * effect of the cycle is settled; FAILED_PRECONDITION naming the effect
 * that stays unknown or in progress; a database error's code otherwise. */
orch_code stage_settle_unresolved(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                                  stage_advance_res *res, char *msg, size_t mn)
{
    for (int i = 0; i <= STAGE_EFF_COUNT; i++) {
        stage_intent row;
        char tr[64] = "", eff[64] = "", why[512] = "";
        bool found = false;
        orch_code code = find_unresolved(ss, dl, t, &found, &row, tr, eff, msg, mn);
        if (code || !found)
            return code;
        stage_advance_effect scratch, *ae = &scratch;
        if (res->neffects < STAGE_ADV_MAX_EFFECTS)
            ae = &res->effects[res->neffects++];
        memset(ae, 0, sizeof *ae);
        snprintf(ae->outcome, sizeof ae->outcome, "%s", row.outcome);
        ae->epoch = row.epoch;
        const stage_edge *e = NULL;
        stage_effect_id id = STAGE_EFF_COUNT;
        int r = STAGE_RESULT_ERROR;
        code = ORCH_CODE_FAILED_PRECONDITION;
        if (intent_edge(tr, eff, &e, &id)) {
            ae->effect = id;
            r = resolve_intent(ss, dl, t, e, id, res->epoch, &row, ae, why, sizeof why, &code);
        } else {
            snprintf(why, sizeof why, "the pipeline has no edge %s with effect %s", tr, eff);
        }
        if (ae->claimed)
            res->durable = true;
        if (r == STAGE_RESULT_EFFECT_UNKNOWN)
            snprintf(why, sizeof why, "still unknown: %.480s", ae->detail);
        if (r != STAGE_RESULT_ADVANCED) {
            orch_code refused = refuse_unresolved(t, to, &row, tr, eff, why, msg, mn);
            return r == STAGE_RESULT_ERROR && e ? code : refused;
        }
        note_settled(t, to, tr, ae);
    }
    snprintf(msg, mn, "%s: the effects of cycle %d did not settle", t->work_item, t->cycle);
    return ORCH_CODE_FAILED_PRECONDITION;
}
