/*
 * stage_engine.c - AdvanceStage, in the order docs/adr/0003 fixes:
 *   1. validate the edge and read the item (its stage must be expected_from);
 *   2. if the lease applies to the repo, Acquire it: HELD -> DEFERRED, and
 *      nothing else happens (no gate, no effect);
 *   3. run the gates on the recorded verdicts; a failing rollback gate sends
 *      the item back to development through the same CAS;
 *   4. for each effect of the edge, claim its intent row in a statement that
 *      also checks the epoch; only the claimer runs it and records the
 *      outcome; an existing row is never run again unless its outcome says
 *      it did not happen (failed) or must be found out (unknown, or pending
 *      under a superseded epoch);
 *   5. write the stage with the CAS (expected stage + live epoch) and append
 *      the history in the same transaction;
 *   6. release the lease (retried in the background if lease-service cannot
 *      be reached).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/alert.h"
#include "orch/clock.h"
#include "orch/log.h"
#include "stage_svc.h"

void stage_count_transition(stage_svc *ss, const char *from, const char *to, int result)
{
    size_t n, idx = ss->nedge_labels - 1; /* "other" */
    const stage_edge *edges = pipeline_edges(&n);
    const stage_edge *e = pipeline_edge(stage_parse(from ? from : ""), stage_parse(to ? to : ""));
    if (e && (size_t)(e - edges) < ss->nedge_labels - 1)
        idx = (size_t)(e - edges);
    orch_counter_add2(ss->m_transitions, idx, (size_t)result, 1);
}

const char *const stage_transition_results[TR_NKINDS] = {
    "advanced", "deferred",      "gate_failed",    "rolled_back",
    "aborted",  "effect_failed", "effect_unknown", "error",
};

#define LEASE_ACQUIRE "orch.v1.LeaseService/Acquire"
#define LEASE_RELEASE "orch.v1.LeaseService/Release"

void advance_res_free(advance_res *res)
{
    if (res->holder)
        protobuf_c_message_free_unpacked(&res->holder->base, NULL);
    res->holder = NULL;
}

void stage_release_queue(stage_svc *ss, const stage_release_retry *e)
{
    pthread_mutex_lock(&ss->retry_mu);
    if (ss->nretries < STAGE_RETRY_MAX) {
        ss->retries[ss->nretries++] = *e;
    } else {
        orch_error("release retry list full: lease %s (epoch %" PRIu64
                   ", 0 = by owner) stays held until lease-service's ceiling",
                   e->work_item, e->epoch);
    }
    pthread_mutex_unlock(&ss->retry_mu);
}

void stage_release_later(stage_svc *ss, const char *work_item, uint64_t epoch)
{
    stage_release_retry e;
    memset(&e, 0, sizeof e);
    snprintf(e.work_item, sizeof e.work_item, "%s", work_item);
    e.epoch = epoch;
    stage_release_queue(ss, &e);
}

void stage_release_owned_later(stage_svc *ss, const char *work_item, const char *instance)
{
    stage_release_retry e;
    memset(&e, 0, sizeof e);
    snprintf(e.work_item, sizeof e.work_item, "%s", work_item);
    snprintf(e.instance, sizeof e.instance, "%s", instance);
    /* The lost Acquire carried an absolute deadline that has passed; past
     * it lease-service refuses it, or releases a grant made too late. A
     * margin of one more timeout covers a request still being answered. */
    e.settle_after_ms = orch_mono_ms() + ss->lease_timeout_ms + 1000;
    stage_release_queue(ss, &e);
}

void stage_owner_msg(const stage_svc *ss, const char *instance, Orch__V1__Owner *m)
{
    orch__v1__owner__init(m);
    m->host_id = (char *)ss->me->host_id;
    m->boot_id = (char *)ss->me->boot_id;
    m->pid = (int32_t)ss->me->pid;
    m->start_ticks = ss->me->start_ticks;
    m->instance_id = (char *)instance;
}

/* Whether an error answer to Acquire proves that nothing was granted. */
static bool definitely_not_granted(orch_code code)
{
    switch (code) {
    case ORCH_CODE_INVALID_ARGUMENT:
    case ORCH_CODE_NOT_FOUND:
    case ORCH_CODE_ALREADY_EXISTS:
    case ORCH_CODE_PERMISSION_DENIED:
    case ORCH_CODE_FAILED_PRECONDITION:
    case ORCH_CODE_UNAUTHENTICATED:
    case ORCH_CODE_UNIMPLEMENTED:
    case ORCH_CODE_OUT_OF_RANGE: return true;
    default: return false; /* deadline, unavailable, aborted, internal... */
    }
}

/* Releases `epoch`; a stale epoch (FAILED_PRECONDITION) is fine: someone
 * else already ended it. Unreachable lease-service: retried later. */
static void release_lease(stage_svc *ss, const char *work_item, uint64_t epoch)
{
    if (epoch == 0)
        return;
    Orch__V1__ReleaseRequest rq = ORCH__V1__RELEASE_REQUEST__INIT;
    rq.work_item = (char *)work_item;
    rq.epoch = epoch;
    orch_rpc_call_opts o = { .timeout_ms = ss->lease_timeout_ms };
    orch_rpc_status st;
    orch_code code = orch_rpc_invoke(ss->lease, LEASE_RELEASE, &rq.base, NULL, &o, &st, NULL);
    if (code == ORCH_CODE_OK || code == ORCH_CODE_FAILED_PRECONDITION ||
        code == ORCH_CODE_NOT_FOUND)
        return;
    orch_warn("release of lease %s epoch %" PRIu64 " failed (%s: %s); retrying in the background",
              work_item, epoch, orch_code_name(code), st.message);
    stage_release_later(ss, work_item, epoch);
}

typedef enum { LEASE_NONE, LEASE_GOT, LEASE_HELD, LEASE_ERR } lease_answer;

static lease_answer acquire_lease(stage_svc *ss, const stage_task *t, const char *transition,
                                  const char *actor, advance_res *res, char *msg, size_t mn)
{
    Orch__V1__Owner ow;
    char instance[64];
    /* One owner per call: two calls in this process are two owners, so a
     * second one is told HELD rather than "already held". */
    snprintf(instance, sizeof instance, "%s.%" PRIu64, ss->me->instance_id,
             atomic_fetch_add(&ss->call_seq, 1) + 1);
    stage_owner_msg(ss, instance, &ow);
    Orch__V1__AcquireRequest rq = ORCH__V1__ACQUIRE_REQUEST__INIT;
    rq.work_item = (char *)t->work_item;
    rq.repo = (char *)t->repo;
    rq.transition = (char *)transition;
    rq.actor = (char *)actor;
    rq.owner = &ow;
    orch_rpc_call_opts o = { .timeout_ms = ss->lease_timeout_ms };
    orch_rpc_status st;
    Orch__V1__AcquireReply *rep = NULL;
    orch_code code =
        orch_rpc_invoke(ss->lease, LEASE_ACQUIRE, &rq.base, &orch__v1__acquire_reply__descriptor,
                        &o, &st, (ProtobufCMessage **)&rep);
    if (code != ORCH_CODE_OK) {
        snprintf(msg, mn, "lease-service Acquire: %s: %s", orch_code_name(code), st.message);
        /* The grant may have committed with its answer lost: find it again
         * as this owner and release it, in the background. */
        if (!definitely_not_granted(code))
            stage_release_owned_later(ss, t->work_item, instance);
        return LEASE_ERR;
    }
    lease_answer a;
    if (rep->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__GRANTED) {
        res->epoch = rep->epoch;
        a = rep->inert ? LEASE_NONE : LEASE_GOT;
        if (rep->reclaimed)
            orch_info("lease %s epoch %" PRIu64 " taken over from a dead owner", t->work_item,
                      rep->epoch);
    } else {
        a = LEASE_HELD;
        res->holder = rep->holder;
        rep->holder = NULL;
        res->holder_liveness = rep->holder_liveness;
        res->epoch = 0;
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return a;
}

static orch_err with_conn(stage_svc *ss, uint64_t dl, orch_db_conn **c)
{
    return orch_db_acquire(ss->db, dl, c);
}

static orch_code db_fail(orch_err err, const char *what, char *msg, size_t mn)
{
    snprintf(msg, mn, "%s: %s", what, orch_strerror(err));
    return err == ORCH_EDB_UNKNOWN ? ORCH_CODE_UNAVAILABLE : orch_err_to_code(err);
}

/* The CAS, one helper for advance, rollback and cancel. */
static orch_code write_stage(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                             bool rollback, bool fenced, uint64_t epoch, const char *actor,
                             const char *reason, uint64_t pr_number, advance_res *res, bool *won,
                             char *msg, size_t mn)
{
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, dl, &c);
    stage_cas cas = {
        .work_item = t->work_item,
        .expected = t->stage,
        .to = to,
        .rollback = rollback,
        .conditional = fenced,
        .epoch = epoch,
        .actor = actor,
        .reason = reason,
        .pr_number = pr_number,
    };
    if (!err)
        err = stage_store_cas(c, dl, &cas, won, &res->task);
    if (err && c)
        orch_warn("stage write of %s failed: %s (SQLSTATE %s: %s)", t->work_item,
                  orch_strerror(err), orch_db_last_sqlstate(c), orch_db_last_error(c));
    orch_db_release(c);
    if (err == ORCH_EDB_UNKNOWN) {
        /* It may have committed: a reply the RPC layer remembers, so that a
         * resend of this request is told the same, not "wrong stage". */
        res->durable = true;
        snprintf(msg, mn,
                 "the stage write %s->%s of %s may have committed (connection lost during "
                 "its commit): read the task (GetTask) before trying again",
                 stage_name(t->stage), stage_name(to), t->work_item);
        return ORCH_CODE_UNKNOWN;
    }
    if (err)
        return db_fail(err, "stage write", msg, mn);
    return ORCH_CODE_OK;
}

/* Reads the task after a lost CAS to name the stage it is in. */
static void lost_race(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                      advance_res *res, char *msg, size_t mn)
{
    orch_db_conn *c = NULL;
    stage_task now = *t;
    if (!with_conn(ss, dl, &c)) {
        if (stage_store_get(c, dl, t->work_item, &now))
            now = *t;
        orch_db_release(c);
    }
    res->task = now;
    snprintf(msg, mn, "lost the race: %s is in stage %s, the write %s->%s changed nothing",
             t->work_item, stage_name(now.stage), stage_name(t->stage), stage_name(to));
}

static void fault_point(stage_svc *ss, stage_fault at, const char *work_item)
{
    if (ss->fault == at) {
        orch_error("ORCH_STAGE_TEST_FAULT: exiting at the fault point (work item %s)", work_item);
        _exit(86);
    }
}

/* Whether this caller (lease `epoch`, 0: none) may take over intent `row`
 * of `eff`: failed (it did not happen) or unknown, or pending under a
 * superseded epoch, or pending without a lease and past its expiry. */
static bool may_take_over(const stage_svc *ss, effect_id eff, uint64_t epoch,
                          const stage_intent *row)
{
    bool superseded = epoch && row->epoch && row->epoch < epoch;
    /* A claim made without a lease has no owner to judge: it is given up
     * only once its claimer certainly stopped working on it (start window
     * + the effect's longest run + the record budget + margin,
     * effect_claim_expiry_ms), whoever asks. */
    bool abandoned =
        !row->epoch && row->age_ms > (int64_t)effect_claim_expiry_ms(&ss->effects, eff);
    return strcmp(row->outcome, "failed") == 0 || strcmp(row->outcome, "unknown") == 0 ||
           (strcmp(row->outcome, "pending") == 0 && (superseded || abandoned));
}

/* Takes over intent `row` (seen as it is) under `epoch`; *sent is set
 * just before the statement. TR_ADVANCED when this call now owns it, else
 * TR_ABORTED / TR_ERROR with *code and `msg`. */
static int take_over(stage_svc *ss, uint64_t dl, const stage_task *t, effect_id eff, uint64_t epoch,
                     const stage_intent *row, uint64_t *sent, char *msg, size_t mn, orch_code *code)
{
    if (!may_take_over(ss, eff, epoch, row)) {
        snprintf(msg, mn, "%s of %s is in progress by another actor (epoch %" PRIu64 ")",
                 effect_name(eff), t->work_item, row->epoch);
        *code = ORCH_CODE_ABORTED;
        return TR_ABORTED;
    }
    orch_db_conn *c = NULL;
    bool took = false;
    orch_err err = with_conn(ss, dl, &c);
    *sent = orch_mono_ms();
    if (!err)
        err = stage_store_intent_takeover(c, dl, t->work_item, row, epoch, &took);
    orch_db_release(c);
    if (err) {
        *code = db_fail(err, "side-effect intent", msg, mn);
        return TR_ERROR;
    }
    if (!took) {
        snprintf(msg, mn, "%s of %s was taken over by another actor", effect_name(eff),
                 t->work_item);
        *code = ORCH_CODE_ABORTED;
        return TR_ABORTED;
    }
    return TR_ADVANCED;
}

/* Without a lease, the claim's expiry assumes the effect starts within the
 * start window of the claim: a claimer that was held up longer leaves it
 * pending for the next caller rather than race a taker. True (with *code
 * and `msg`) when this call must stop. */
static bool started_late(stage_svc *ss, const stage_task *t, effect_id eff, uint64_t epoch,
                         uint64_t sent, char *msg, size_t mn, orch_code *code)
{
    if (epoch || orch_mono_ms() - sent <= EFFECT_START_WINDOW_MS)
        return false;
    snprintf(msg, mn,
             "%s of %s was claimed but could not start within %d ms of the claim: left "
             "pending; a later attempt takes it over after %" PRIu64 " ms",
             effect_name(eff), t->work_item, EFFECT_START_WINDOW_MS,
             effect_claim_expiry_ms(&ss->effects, eff));
    *code = ORCH_CODE_ABORTED;
    return true;
}

/* Runs (or resolves) the effect of `call`, whose intent `id` this call
 * owns, and records its outcome in *out and `ae`. TR_ADVANCED when the
 * outcome was recorded, else TR_ERROR / TR_ABORTED with *code and `msg`. */
static int exec_effect(stage_svc *ss, const effect_call *call, int64_t id, advance_effect *ae,
                       effect_outcome *out, char *msg, size_t mn, orch_code *code)
{
    const stage_task *t = call->task;
    char digest[128] = "";
    effect_outcome o =
        effect_run(&ss->effects, call, ae->detail, sizeof ae->detail, digest, sizeof digest);
    if (call->check_only && o == EFFECT_ERROR) {
        /* Not sent (or not addressable): says nothing of the first
         * attempt, which may have happened. */
        o = EFFECT_UNKNOWN;
    }
    ae->ran = true;
    ae->epoch = call->epoch;
    snprintf(ae->outcome, sizeof ae->outcome, "%s", effect_outcome_name(o));
    orch_counter_add2(ss->m_effects, (size_t)call->effect,
                      o == EFFECT_ERROR ? EFFECT_FAILED : (size_t)o, 1);
    orch_info("effect %s of %s (%s, epoch %" PRIu64 "%s): %s: %s", effect_name(call->effect),
              t->work_item, call->transition, call->epoch, call->check_only ? ", resolve" : "",
              ae->outcome, ae->detail);
    fault_point(ss, FAULT_CRASH_BEFORE_RECORD, t->work_item);

    /* The outcome is recorded even past the caller's deadline: losing it
     * would leave an effect that happened marked pending. The outcome and
     * the digest the effect returned are one transaction: an intent marked
     * ok without its digest would never run again, and the image-freshness
     * gate would refuse the item for good. If neither is written, the intent
     * stays pending and the next attempt resolves it (same idempotency key). */
    uint64_t rdl = orch_mono_ms() + EFFECT_RECORD_BUDGET_MS;
    bool recorded = false;
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, rdl, &c);
    if (!err)
        err = stage_store_intent_finish(c, rdl, id, call->epoch, ae->outcome, ae->detail, t,
                                        o == EFFECT_OK && digest[0] ? "built_image_digest" : NULL,
                                        digest, &recorded);
    orch_db_release(c);
    if (err) {
        *code = db_fail(err, "recording the effect's outcome", msg, mn);
        return TR_ERROR;
    }
    if (!recorded) {
        snprintf(msg, mn,
                 "%s of %s: the intent was taken over while it ran (a newer lease "
                 "epoch): this call stops",
                 effect_name(call->effect), t->work_item);
        *code = ORCH_CODE_ABORTED;
        return TR_ABORTED;
    }
    fault_point(ss, FAULT_CRASH_AFTER_EFFECT, t->work_item);
    *out = o;
    return TR_ADVANCED;
}

/* Claims the intent of `eff` for step 4. TR_ADVANCED with *run false: it
 * is done (ok) already; with *run true: this call owns it (*resolve: its
 * previous outcome must be found out). Else the result that ends the call. */
static int claim_effect(stage_svc *ss, uint64_t dl, const stage_task *t, const char *transition,
                        effect_id eff, uint64_t epoch, advance_effect *ae, stage_intent *row,
                        bool *run, bool *resolve, char *msg, size_t mn, orch_code *code)
{
    orch_db_conn *c = NULL;
    intent_state st;
    orch_err err = with_conn(ss, dl, &c);
    uint64_t sent = orch_mono_ms(); /* before the claim: its row's clock starts later */
    if (!err)
        err = stage_store_intent_claim(c, dl, t->work_item, transition, effect_name(eff), t->cycle,
                                       epoch, &st, row);
    orch_db_release(c);
    if (err) {
        *code = db_fail(err, "side-effect intent", msg, mn);
        return TR_ERROR;
    }
    *run = *resolve = false;
    if (st == INTENT_EXISTS) {
        snprintf(ae->outcome, sizeof ae->outcome, "%s", row->outcome);
        snprintf(ae->detail, sizeof ae->detail, "%s", row->detail);
        ae->epoch = row->epoch;
        if (strcmp(row->outcome, "ok") == 0)
            return TR_ADVANCED; /* done before: never again */
        int r = take_over(ss, dl, t, eff, epoch, row, &sent, msg, mn, code);
        if (r != TR_ADVANCED)
            return r;
        /* failed: it did not happen, run it; unknown or an owner's pending
         * under a superseded epoch: it may have happened, resolve it. */
        *resolve = strcmp(row->outcome, "failed") != 0;
        st = INTENT_CLAIMED;
    }
    if (st == INTENT_STALE) {
        snprintf(msg, mn,
                 "lease epoch %" PRIu64 " of %s is no longer the live grant: "
                 "%s not started",
                 epoch, t->work_item, effect_name(eff));
        *code = ORCH_CODE_ABORTED;
        return TR_ABORTED;
    }
    ae->claimed = true; /* from here the intent row is ours: durable */
    if (started_late(ss, t, eff, epoch, sent, msg, mn, code))
        return TR_ABORTED;
    *run = true;
    return TR_ADVANCED;
}

/* Step 4 for one effect. Returns TR_ADVANCED to go on, else the result that
 * ends the call (with a message). */
static int run_effect(stage_svc *ss, uint64_t dl, const stage_task *t, const char *transition,
                      effect_id eff, uint64_t epoch, const orch_verdicts *ev, advance_effect *ae,
                      char *msg, size_t mn, orch_code *code)
{
    stage_intent row;
    bool run = false, resolve = false;
    ae->effect = eff;
    ae->epoch = epoch;
    int r =
        claim_effect(ss, dl, t, transition, eff, epoch, ae, &row, &run, &resolve, msg, mn, code);
    if (r != TR_ADVANCED || !run)
        return r;
    /* This call owns the intent: run the effect, then record its outcome. */
    effect_call call = { .effect = eff,
                         .task = t,
                         .transition = transition,
                         .epoch = epoch,
                         .ev = ev,
                         .resolve = resolve,
                         .db = ss->db,
                         .deadline = dl };
    effect_outcome o = EFFECT_UNKNOWN;
    r = exec_effect(ss, &call, row.id, ae, &o, msg, mn, code);
    if (r != TR_ADVANCED)
        return r;
    switch (o) {
    case EFFECT_OK: return TR_ADVANCED;
    case EFFECT_UNKNOWN: return TR_EFFECT_UNKNOWN;
    case EFFECT_FAILED: return effect_rolls_back(eff) ? TR_ROLLED_BACK : TR_EFFECT_FAILED;
    case EFFECT_ERROR: return TR_EFFECT_FAILED;
    }
    return TR_ERROR;
}

orch_err stage_gate_input_read(orch_db_conn *c, uint64_t dl, const stage_task *t,
                               const stage_edge *e, orch_verdicts *ev, gate_input *gi)
{
    char transition[64], dev_review[64], pr[64];
    bool named = false;
    edge_transition(e, transition, sizeof transition);
    edge_transition(pipeline_edge(ST_DEVELOPMENT, ST_REVIEW), dev_review, sizeof dev_review);
    memset(gi, 0, sizeof *gi);
    gi->ev = ev;
    gi->cycle = t->cycle;
    gi->task_pr = t->pr_number;
    orch_err err = stage_store_load_evidence(c, dl, t->work_item, transition, ev);
    if (!err)
        err = stage_store_baseline(c, dl, t->repo, &gi->has_baseline, &gi->coverage_baseline);
    if (!err)
        err = stage_store_cycle_verdict(c, dl, t->work_item, dev_review, "pr_number", pr, sizeof pr,
                                        &named);
    if (err)
        return err;
    unsigned long long reported = 0;
    if (named) {
        orch_verdicts one;
        orch_verdicts_init(&one);
        if (orch_verdicts_set(&one, "pr_number", pr))
            reported = pipeline_pr_number(&one);
    }
    gi->pr_number = pipeline_cycle_pr(t->cycle, t->pr_number, reported);
    return ORCH_OK;
}

/* The edge and effect an intent row names ("review->testing", "merge_pr");
 * false when the pipeline has no such edge or effect. */
static bool intent_edge(const char *tr, const char *eff, const stage_edge **e, effect_id *id)
{
    const char *arrow = strstr(tr, "->");
    if (!arrow)
        return false;
    char from[32];
    snprintf(from, sizeof from, "%.*s", (int)(arrow - tr), tr);
    *e = pipeline_edge(stage_parse(from), stage_parse(arrow + 2));
    for (int i = 0; i < EFF_COUNT; i++) {
        if (strcmp(effect_name((effect_id)i), eff) == 0) {
            *id = (effect_id)i;
            return *e != NULL;
        }
    }
    return false;
}

/* Finds out, under `epoch`, the outcome of intent `row` (effect `eff` of
 * edge `e` in t's cycle) the way a retried edge does (takeover, same
 * idempotency key, the call's own epoch as fence), but starting nothing
 * the first attempt did not (effect_call.check_only), and records it.
 * TR_ADVANCED when settled (ae->outcome ok or failed); TR_EFFECT_UNKNOWN
 * when still unknown; else TR_ABORTED / TR_ERROR with *code and `msg`. */
static int resolve_intent(stage_svc *ss, uint64_t dl, const stage_task *t, const stage_edge *e,
                          effect_id eff, uint64_t epoch, const stage_intent *row,
                          advance_effect *ae, char *msg, size_t mn, orch_code *code)
{
    char transition[64];
    orch_verdicts ev;
    gate_input gi;
    edge_transition(e, transition, sizeof transition);
    /* The verdicts and the pull request the first attempt acted on. */
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, dl, &c);
    if (!err)
        err = stage_gate_input_read(c, dl, t, e, &ev, &gi);
    orch_db_release(c);
    if (err) {
        *code = db_fail(err, "reading the effect's verdicts", msg, mn);
        return TR_ERROR;
    }
    stage_task acted = *t;
    if (gi.pr_number)
        acted.pr_number = gi.pr_number;
    uint64_t sent = 0;
    int r = take_over(ss, dl, t, eff, epoch, row, &sent, msg, mn, code);
    if (r != TR_ADVANCED)
        return r;
    ae->claimed = true;
    if (started_late(ss, t, eff, epoch, sent, msg, mn, code))
        return TR_ABORTED;
    effect_call call = { .effect = eff,
                         .task = &acted,
                         .transition = transition,
                         .epoch = epoch,
                         .ev = &ev,
                         .resolve = true,
                         .db = ss->db,
                         .deadline = dl,
                         .check_only = true };
    effect_outcome o = EFFECT_UNKNOWN;
    r = exec_effect(ss, &call, row->id, ae, &o, msg, mn, code);
    if (r != TR_ADVANCED)
        return r;
    return o == EFFECT_UNKNOWN ? TR_EFFECT_UNKNOWN : TR_ADVANCED;
}

/* The refusal of a rollback or cancel over intent `row` that could not be
 * settled: `why` says what the attempt to find its outcome met. */
static orch_code refuse_unresolved(const stage_task *t, stage_id to, const stage_intent *row,
                                   const char *tr, const char *eff, const char *why, char *msg,
                                   size_t mn)
{
    const char *what = to == ST_CANCELLED ? "cancel" : "rollback";
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
    return err ? db_fail(err, "reading the cycle's side effects", msg, mn) : ORCH_CODE_OK;
}

/* Logs an intent settled before a rollback or cancel; a deploy that had
 * started goes on without the item (the deployer's to stop): an alert. */
static void note_settled(const stage_task *t, stage_id to, const char *tr, const advance_effect *ae)
{
    const char *what = to == ST_CANCELLED ? "cancel" : "rollback";
    orch_info("%s: effect %s of %s (cycle %d) found out before the %s: %s: %s", t->work_item,
              effect_name(ae->effect), tr, t->cycle, what, ae->outcome, ae->detail);
    if (ae->effect == EFF_DEPLOY_START && strcmp(ae->outcome, "ok") == 0)
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
static orch_code settle_unresolved(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                                   advance_res *res, char *msg, size_t mn)
{
    for (int i = 0; i <= EFF_COUNT; i++) {
        stage_intent row;
        char tr[64] = "", eff[64] = "", why[512] = "";
        bool found = false;
        orch_code code = find_unresolved(ss, dl, t, &found, &row, tr, eff, msg, mn);
        if (code || !found)
            return code;
        advance_effect scratch, *ae = &scratch;
        if (res->neffects < ADV_MAX_EFFECTS)
            ae = &res->effects[res->neffects++];
        memset(ae, 0, sizeof *ae);
        snprintf(ae->outcome, sizeof ae->outcome, "%s", row.outcome);
        ae->epoch = row.epoch;
        const stage_edge *e = NULL;
        effect_id id = EFF_COUNT;
        int r = TR_ERROR;
        code = ORCH_CODE_FAILED_PRECONDITION;
        if (intent_edge(tr, eff, &e, &id)) {
            ae->effect = id;
            r = resolve_intent(ss, dl, t, e, id, res->epoch, &row, ae, why, sizeof why, &code);
        } else {
            snprintf(why, sizeof why, "the pipeline has no edge %s with effect %s", tr, eff);
        }
        if (ae->claimed)
            res->durable = true;
        if (r == TR_EFFECT_UNKNOWN)
            snprintf(why, sizeof why, "still unknown: %.480s", ae->detail);
        if (r != TR_ADVANCED) {
            orch_code refused = refuse_unresolved(t, to, &row, tr, eff, why, msg, mn);
            return r == TR_ERROR && e ? code : refused;
        }
        note_settled(t, to, tr, ae);
    }
    snprintf(msg, mn, "%s: the effects of cycle %d did not settle", t->work_item, t->cycle);
    return ORCH_CODE_FAILED_PRECONDITION;
}

/* A failed rollback gate (or the merge gate): back to development through
 * the same CAS, with an alert; a lost race changes nothing and says so. */
static orch_code roll_back(stage_svc *ss, uint64_t dl, const stage_task *t, bool fenced,
                           const char *actor, const char *why, advance_res *res, char *msg,
                           size_t mn)
{
    bool won = false;
    orch_code code = settle_unresolved(ss, dl, t, ST_DEVELOPMENT, res, msg, mn);
    if (code)
        return code;
    code = write_stage(ss, dl, t, ST_DEVELOPMENT, true, fenced, res->epoch, actor, why, 0, res,
                       &won, msg, mn);
    if (code)
        return code;
    if (!won) {
        lost_race(ss, dl, t, ST_DEVELOPMENT, res, msg, mn);
        res->result = TR_ABORTED;
        return ORCH_CODE_ABORTED;
    }
    orch_alert("stage.rolled-back", t->work_item, "%s rolled back from %s to development: %s",
               t->work_item, stage_name(t->stage), why);
    res->result = TR_ROLLED_BACK;
    return ORCH_CODE_OK;
}

/* Step 3's reads under the lease: the task (still in e->from), then the
 * call's verdicts recorded for this edge (fenced by the lease epoch), then
 * what the gates see. ABORTED when the task moved or the lease is no
 * longer live: then nothing was recorded. */
static orch_code read_locked(stage_svc *ss, const advance_req *req, uint64_t dl,
                             const stage_edge *e, const char *transition, stage_task *t,
                             orch_verdicts *ev, gate_input *gi, advance_res *res, char *msg,
                             size_t mn)
{
    orch_db_conn *c = NULL;
    bool recorded = true;
    orch_err err = with_conn(ss, dl, &c);
    if (!err)
        err = stage_store_get(c, dl, req->work_item, t);
    if (!err && t->stage == e->from && req->evidence && req->evidence->n) {
        err = stage_store_record_evidence(c, dl, t, transition, res->epoch, req->evidence,
                                          req->actor, &recorded);
        if (!err && recorded)
            res->durable = true;
    }
    if (!err && t->stage == e->from && recorded)
        err = stage_gate_input_read(c, dl, t, e, ev, gi);
    orch_db_release(c);
    if (err)
        return db_fail(err, "reading the task", msg, mn);
    res->task = *t;
    res->result = TR_ABORTED;
    if (t->stage != e->from) {
        /* Moved between our first read and the lease: a lost race. */
        snprintf(msg, mn, "lost the race: %s is now in stage %s, not %s", t->work_item,
                 stage_name(t->stage), stage_name(e->from));
        return ORCH_CODE_ABORTED;
    }
    if (!recorded) {
        snprintf(msg, mn,
                 "lost the race: the verdicts for %s of %s were not recorded (it left stage %s, "
                 "or lease epoch %" PRIu64 " is no longer the live grant)",
                 transition, t->work_item, stage_name(e->from), res->epoch);
        return ORCH_CODE_ABORTED;
    }
    res->result = TR_ERROR;
    return ORCH_CODE_OK;
}

/* Step 4: the edge's effects in order. ORCH_CODE_OK with *done false to go
 * on to the stage write; otherwise the call ends with res->result. */
static orch_code run_effects(stage_svc *ss, const advance_req *req, uint64_t *dl,
                             const stage_edge *e, const char *transition, bool fenced,
                             const stage_task *t, const orch_verdicts *ev, advance_res *res,
                             bool *done, char *msg, size_t mn)
{
    *done = true;
    for (int i = 0; i < e->neffects; i++) {
        orch_code code = ORCH_CODE_OK;
        advance_effect *ae = &res->effects[res->neffects++];
        int r =
            run_effect(ss, *dl, t, transition, e->effects[i], res->epoch, ev, ae, msg, mn, &code);
        if (ae->claimed)
            res->durable = true;
        /* An effect ran: what follows (the stage write, a rollback) gets
         * its own short budget even if the caller's ran out, so the
         * transition is not left half done. */
        uint64_t floor = orch_mono_ms() + 10000;
        if (*dl < floor)
            *dl = floor;
        if (r == TR_ADVANCED)
            continue;
        if (r == TR_ROLLED_BACK) {
            /* The merge gate: the forge refused the pull request. */
            char why[600];
            snprintf(why, sizeof why, "%s failed: %s", effect_name(e->effects[i]), ae->detail);
            snprintf(res->fails[0], GATE_WHY_MAX, "%.*s", GATE_WHY_MAX - 1, why);
            res->nfails = 1;
            return roll_back(ss, *dl, t, fenced, req->actor, why, res, msg, mn);
        }
        res->result = r;
        if (r == TR_EFFECT_FAILED || r == TR_EFFECT_UNKNOWN)
            return ORCH_CODE_OK;
        return code ? code : ORCH_CODE_INTERNAL;
    }
    *done = false;
    return ORCH_CODE_OK;
}

/* Steps 3-5 under the lease (or without one). */
static orch_code advance_locked(stage_svc *ss, const advance_req *req, uint64_t dl,
                                const stage_edge *e, const char *transition, bool fenced,
                                advance_res *res, char *msg, size_t mn)
{
    stage_task t;
    orch_verdicts ev;
    gate_input gi;
    orch_code code = read_locked(ss, req, dl, e, transition, &t, &ev, &gi, res, msg, mn);
    if (code)
        return code;
    bool won = false;
    if (e->kind == EDGE_FORWARD) {
        gates_outcome g = pipeline_run_gates(e, &gi, res->fails, ADV_MAX_FAILS, &res->nfails);
        if (g == GATES_REFUSE) {
            res->result = TR_GATE_FAILED;
            return ORCH_CODE_OK;
        }
        if (g == GATES_ROLLBACK)
            return roll_back(ss, dl, &t, fenced, req->actor, res->fails[0], res, msg, mn);
        /* The effects act on the cycle's own pull request. */
        if (gi.pr_number)
            t.pr_number = gi.pr_number;
        bool done = false;
        code = run_effects(ss, req, &dl, e, transition, fenced, &t, &ev, res, &done, msg, mn);
        if (done)
            return code;
    } else {
        code = settle_unresolved(ss, dl, &t, e->to, res, msg, mn);
        if (code)
            return code;
    }

    bool rollback = e->kind == EDGE_ROLLBACK;
    /* development->review may name the cycle's pull request. */
    uint64_t pr = e->from == ST_DEVELOPMENT && e->to == ST_REVIEW ? pipeline_pr_number(&ev) : 0;
    code = write_stage(ss, dl, &t, e->to, rollback, fenced, res->epoch, req->actor, req->reason, pr,
                       res, &won, msg, mn);
    if (code)
        return code;
    if (!won) {
        lost_race(ss, dl, &t, e->to, res, msg, mn);
        res->result = TR_ABORTED;
        return ORCH_CODE_ABORTED;
    }
    if (rollback)
        orch_alert("stage.rolled-back", t.work_item, "%s rolled back from %s to development: %s",
                   t.work_item, stage_name(t.stage), req->reason ? req->reason : "");
    res->result = rollback ? TR_ROLLED_BACK : TR_ADVANCED;
    return ORCH_CODE_OK;
}

/* Whether the RPC layer forgets a reply with `code` (rpc_server.c's
 * cacheable(): by contract nothing durable happened). */
static bool forgotten_code(orch_code code)
{
    return code == ORCH_CODE_UNAVAILABLE || code == ORCH_CODE_DEADLINE_EXCEEDED ||
           code == ORCH_CODE_RESOURCE_EXHAUSTED;
}

orch_code stage_advance(stage_svc *ss, const advance_req *req, uint64_t dl, advance_res *res,
                        char *msg, size_t mn)
{
    memset(res, 0, sizeof *res);
    res->result = TR_ERROR;
    msg[0] = '\0';
    stage_id from = stage_parse(req->expected_from), to = stage_parse(req->to);
    if (from == ST_NONE || to == ST_NONE) {
        snprintf(msg, mn,
                 "unknown stage \"%.60s\" (stages: backlog analysis architecture "
                 "development review testing staging deploy done cancelled)",
                 from == ST_NONE ? req->expected_from : req->to);
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    const stage_edge *e = pipeline_edge(from, to);
    if (!e) {
        snprintf(msg, mn, "no edge %s->%s in the pipeline (see orchctl stage pipeline)",
                 stage_name(from), stage_name(to));
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    char transition[64];
    edge_transition(e, transition, sizeof transition);

    /* Step 1: the item in the expected stage. Nothing is recorded yet: the
     * call's verdicts are recorded under the lease (step 3), so a call that
     * defers or fails before it changes nothing the gates see. */
    stage_task t;
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, dl, &c);
    if (!err)
        err = stage_store_get(c, dl, req->work_item, &t);
    orch_db_release(c);
    if (err == ORCH_ENOTFOUND) {
        snprintf(msg, mn, "no task %s", req->work_item);
        return ORCH_CODE_NOT_FOUND;
    }
    if (err)
        return db_fail(err, "reading the task", msg, mn);
    res->task = t;
    if (t.stage != from) {
        snprintf(msg, mn, "%s is in stage %s, not %s", t.work_item, stage_name(t.stage),
                 stage_name(from));
        return ORCH_CODE_FAILED_PRECONDITION;
    }

    /* Step 2: the lease, where it applies. */
    bool applies = ss->scope.enabled && lease_in_scope(&ss->scope, t.repo);
    bool fenced = applies;
    if (applies) {
        lease_answer a = acquire_lease(ss, &t, transition, req->actor, res, msg, mn);
        if (a == LEASE_ERR)
            return ORCH_CODE_UNAVAILABLE;
        if (a == LEASE_HELD) {
            res->result = TR_DEFERRED;
            return ORCH_CODE_OK;
        }
        /* An inert answer (lease-service configured off) keeps the
         * expected-stage condition. */
    }
    orch_code code = advance_locked(ss, req, dl, e, transition, fenced, res, msg, mn);
    release_lease(ss, t.work_item, res->epoch);
    if (res->durable && forgotten_code(code)) {
        /* Something durable happened before the failure: a resend of this
         * request must be told the same, so the answer is one the RPC
         * layer remembers. */
        char why[600];
        snprintf(why, sizeof why, "%s", msg);
        snprintf(msg, mn,
                 "outcome unknown: %s failed after this call recorded verdicts or claimed an "
                 "effect (%s: %s); read the task (GetTask) before trying again",
                 transition, orch_code_name(code), why);
        code = ORCH_CODE_UNKNOWN;
    }
    return code;
}
