/*
 * stage_engine.c - AdvanceStage, in the order docs/adr/0003 fixes:
 *   1. validate the edge and read the item (its stage must be expected_from);
 *   2. if the lease applies to the repo, Acquire it: HELD -> DEFERRED, and
 *      nothing else happens (no gate, no effect);
 *   3. run the gates on the recorded verdicts; a failing rollback gate sends
 *      the item back to development through the same CAS, once every
 *      effect of the cycle whose outcome is unknown has been found out
 *      (stage_settle_unresolved);
 *   4. for each effect of the edge, claim its intent row in a statement that
 *      also checks the epoch; only the claimer runs it and records the
 *      outcome; an existing row is never run again unless its outcome says
 *      it did not happen (failed) or must be found out (unknown, or pending
 *      under a superseded epoch) (stage_intents.c);
 *   5. write the stage with the CAS (expected stage + live epoch) and append
 *      the history in the same transaction;
 *   6. release the lease: a won fenced write released it in its own
 *      statement; otherwise by RPC (retried in the background if
 *      lease-service cannot be reached).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/alert.h"
#include "orch/clock.h"
#include "orch/log.h"
#include "stage_engine.h"
#include "stage_intents.h"

void stage_count_transition(stage_svc *ss, const char *from, const char *to, stage_result result)
{
    size_t idx = stage_logic_edge_label(from, to, ss->nedge_labels);
    orch_counter_add2(ss->m_transitions, idx, (size_t)result, 1);
}

void stage_outcome_free(stage_outcome *out)
{
    if (out->holder)
        protobuf_c_message_free_unpacked(&out->holder->base, NULL);
    out->holder = NULL;
}

/* Releases `epoch` (0: none); a grant already gone is fine, an
 * unreachable lease-service is retried in the background. */
static void release_lease(stage_svc *ss, const char *work_item, uint64_t epoch)
{
    orch_lease_release_or_later(ss->releaser, work_item, epoch);
}

typedef enum { LEASE_NONE, LEASE_GOT, LEASE_HELD, LEASE_ERR } lease_answer;

static lease_answer acquire_lease(stage_svc *ss, const stage_task *t, const char *transition,
                                  const char *actor, stage_outcome *res)
{
    Orch__V1__Owner ow;
    char instance[64];
    /* One owner per call: two calls in this process are two owners, so a
     * second one is told HELD rather than "already held". */
    snprintf(instance, sizeof instance, "%s.%" PRIu64, ss->me->instance_id,
             atomic_fetch_add(&ss->call_seq, 1) + 1);
    orch_lease_owner_msg(ss->me, instance, &ow);
    orch_lease_acquire_req rq = { t->work_item, t->repo, transition, actor, &ow };
    orch_rpc_status st;
    orch_lease_acquire_res r;
    /* An error answer that may hide a grant queues its release by owner. */
    orch_err err = orch_lease_releaser_acquire(ss->releaser, &rq, &st, &r);
    if (err) {
        stage_fail_by(&res->fail, STAGE_FAIL_LEASE_UNAVAILABLE, err,
                      "lease-service Acquire: %s: %s", orch_code_name(st.code), st.message);
        return LEASE_ERR;
    }
    lease_answer a;
    if (r.granted) {
        res->epoch = r.epoch;
        a = r.inert ? LEASE_NONE : LEASE_GOT;
        if (r.reclaimed)
            orch_info("lease %s epoch %" PRIu64 " taken over from a dead owner", t->work_item,
                      r.epoch);
    } else {
        a = LEASE_HELD;
        res->holder = orch_lease_acquire_take_holder(&r);
        res->holder_liveness = r.holder_liveness;
        res->epoch = 0;
    }
    orch_lease_acquire_res_free(&r);
    return a;
}

static orch_err with_conn(stage_svc *ss, uint64_t dl, orch_db_conn **c)
{
    return orch_db_acquire(ss->db, dl, c);
}

static orch_err vfail(stage_failure *f, stage_failure_kind kind, orch_err err, const char *fmt,
                      va_list ap) __attribute__((format(printf, 4, 0)));

static orch_err vfail(stage_failure *f, stage_failure_kind kind, orch_err err, const char *fmt,
                      va_list ap)
{
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    f->kind = kind;
    f->err = err;
    return err;
}

orch_err stage_fail(stage_failure *f, stage_failure_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    orch_err err =
        vfail(f, kind, kind == STAGE_FAIL_NO_TASK ? ORCH_ENOTFOUND : ORCH_EINVAL, fmt, ap);
    va_end(ap);
    return err;
}

orch_err stage_fail_by(stage_failure *f, stage_failure_kind kind, orch_err err, const char *fmt,
                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    err = vfail(f, kind, err, fmt, ap);
    va_end(ap);
    return err;
}

orch_err stage_db_fail(stage_failure *f, orch_err err, const char *what)
{
    return stage_fail_by(f, STAGE_FAIL_DATABASE, err, "%s: %s", what, orch_strerror(err));
}

/* The CAS, one helper for advance, rollback and cancel: `cas` as
 * stage_store_cas() takes it; *won false when the race was lost. */
static orch_err write_stage(stage_svc *ss, uint64_t dl, const stage_cas *cas, stage_outcome *res,
                            bool *won)
{
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, dl, &c);
    if (!err)
        err = stage_store_cas(c, dl, cas, won, &res->task);
    if (err && c)
        orch_warn("stage write of %s failed: %s (SQLSTATE %s: %s)", cas->work_item,
                  orch_strerror(err), orch_db_last_sqlstate(c), orch_db_last_error(c));
    orch_db_release(c);
    if (err == ORCH_EDB_UNKNOWN) {
        /* It may have committed: a reply the RPC layer remembers, so that a
         * resend of this request is told the same, not "wrong stage". */
        res->durable = true;
        return stage_fail_by(&res->fail, STAGE_FAIL_WRITE_UNKNOWN, err,
                             "the stage write %s->%s of %s may have committed (connection lost "
                             "during its commit): read the task (GetTask) before trying again",
                             stage_name(cas->expected), stage_name(cas->to), cas->work_item);
    }
    if (err)
        return stage_db_fail(&res->fail, err, "stage write");
    return ORCH_OK;
}

/* Reads the task after a lost CAS to name the stage it is in; the call
 * ends ABORTED. */
static orch_err lost_race(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                          stage_outcome *res)
{
    orch_db_conn *c = NULL;
    stage_task now = *t;
    if (!with_conn(ss, dl, &c)) {
        if (stage_store_get(c, dl, t->work_item, &now))
            now = *t;
        orch_db_release(c);
    }
    res->task = now;
    res->result = STAGE_RESULT_ABORTED;
    return stage_fail(&res->fail, STAGE_FAIL_LOST_RACE,
                      "lost the race: %s is in stage %s, the write %s->%s changed nothing",
                      t->work_item, stage_name(now.stage), stage_name(t->stage), stage_name(to));
}

orch_err stage_gate_input_read(orch_db_conn *c, uint64_t dl, const stage_task *t,
                               const stage_edge *e, orch_verdicts *ev, stage_gate_input *gi)
{
    char transition[64], dev_review[64], pr[64];
    bool named = false;
    stage_edge_transition(e, transition, sizeof transition);
    stage_edge_transition(stage_pipeline_edge(STAGE_DEVELOPMENT, STAGE_REVIEW), dev_review,
                          sizeof dev_review);
    memset(gi, 0, sizeof *gi);
    gi->ev = ev;
    gi->cycle = t->cycle;
    gi->task_pr = t->pr_number;
    orch_err err = stage_store_load_evidence(c, dl, t->work_item, transition, ev);
    if (!err)
        err = stage_store_baseline(c, dl, t->repo, &gi->has_baseline, &gi->coverage_baseline);
    if (!err)
        err = stage_store_cycle_verdict(
            c, dl, &(stage_verdict_ref){ t->work_item, dev_review, "pr_number" }, pr, sizeof pr,
            &named);
    if (err)
        return err;
    unsigned long long reported = 0;
    if (named) {
        orch_verdicts one;
        orch_verdicts_init(&one);
        if (orch_verdicts_set(&one, "pr_number", pr))
            reported = stage_pipeline_pr_number(&one);
    }
    gi->pr_number = stage_pipeline_cycle_pr(t->cycle, t->pr_number, reported);
    return ORCH_OK;
}

/* One transition attempt under way: the request, its edge, and what the
 * steps under the lease share. */
typedef struct advance_call {
    const stage_advance_req *req;
    const stage_edge *e;
    char transition[64];
    bool fenced; /* the lease applies: the stage write checks the epoch */
    /* The call's verdicts are recorded by the stage write, not before it
     * (read_locked); a call that ends without that write records them on
     * its own (record_pending). */
    bool verdicts_pending;
    stage_outcome_later later; /* the last effect's ok outcome, for the stage write */
    uint64_t dl;               /* raised once an effect ran (run_effects) */
    stage_task t;              /* as read under the lease */
    orch_verdicts ev;
    stage_gate_input gi;
} advance_call;

/* The stage write of `ac` as `cas` asks (to, rollback, reason, pull
 * request; the rest comes from the call); ABORTED (after naming the stage
 * the item is in) when the race was lost. */
static orch_err write_to(stage_svc *ss, const advance_call *ac, stage_cas cas, stage_outcome *res)
{
    bool won = false, recorded = false;
    stage_intent_outcome io;
    if (ac->later.pending) {
        /* The last effect's outcome goes with the write (one commit). */
        const stage_advance_effect *ae = &res->effects[res->neffects - 1];
        io = (stage_intent_outcome){
            ac->later.id,    ac->later.epoch, ae->outcome,
            ae->detail,      &ac->t,          ac->later.digest[0] ? "built_image_digest" : NULL,
            ac->later.digest
        };
        cas.outcome = &io;
        cas.outcome_recorded = &recorded;
    }
    cas.work_item = ac->t.work_item;
    cas.expected = ac->t.stage;
    cas.conditional = ac->fenced;
    cas.epoch = res->epoch;
    cas.actor = ac->req->actor;
    /* A won fenced write releases the grant in its own statement. */
    cas.released = ac->fenced && res->epoch ? &res->lease_released : NULL;
    orch_err err = write_stage(ss, ac->dl, &cas, res, &won);
    if (err)
        return err;
    if (cas.outcome && !recorded) {
        res->result = STAGE_RESULT_ABORTED;
        return stage_fail_taken_over(&res->fail, ac->e->effects[ac->e->neffects - 1],
                                     ac->t.work_item);
    }
    return won ? ORCH_OK : lost_race(ss, ac->dl, &ac->t, cas.to, res);
}

/* A failed rollback gate (or the merge gate): back to development through
 * the same CAS, with an alert; a lost race changes nothing and says so. */
static orch_err roll_back(stage_svc *ss, const advance_call *ac, const char *why,
                          stage_outcome *res)
{
    orch_err err = stage_settle_unresolved(ss, ac->dl, &ac->t, STAGE_DEVELOPMENT, res);
    if (!err)
        err = write_to(
            ss, ac, (stage_cas){ .to = STAGE_DEVELOPMENT, .rollback = true, .reason = why }, res);
    if (err)
        return err;
    orch_alert("stage.rolled-back", ac->t.work_item, "%s rolled back from %s to development: %s",
               ac->t.work_item, stage_name(ac->t.stage), why);
    res->result = STAGE_RESULT_ROLLED_BACK;
    return ORCH_OK;
}

/* The end of a call whose task moved, or whose verdicts were not recorded
 * (it left the stage, or the lease is no longer live): ABORTED. */
static orch_err not_recorded(const advance_call *ac, bool here, stage_outcome *res)
{
    res->task = ac->t;
    res->result = STAGE_RESULT_ABORTED;
    if (!here) /* Moved between our first read and the lease: a lost race. */
        return stage_fail(&res->fail, STAGE_FAIL_LOST_RACE,
                          "lost the race: %s is now in stage %s, not %s", ac->t.work_item,
                          stage_name(ac->t.stage), stage_name(ac->e->from));
    return stage_fail(&res->fail, STAGE_FAIL_LOST_RACE,
                      "lost the race: the verdicts for %s of %s were not recorded (it left "
                      "stage %s, or lease epoch %" PRIu64 " is no longer the live grant)",
                      ac->transition, ac->t.work_item, stage_name(ac->e->from), res->epoch);
}

/* Records the call's verdicts for its edge, fenced by the lease epoch;
 * *recorded false when the task left the stage or the epoch is no longer
 * the live grant. */
static orch_err record_verdicts(orch_db_conn *c, advance_call *ac, stage_outcome *res,
                                bool *recorded)
{
    stage_evidence_write w = { &ac->t, ac->transition, res->epoch, ac->req->evidence,
                               ac->req->actor };
    orch_err err = stage_store_record_evidence(c, ac->dl, &w, recorded);
    if (!err && *recorded)
        res->durable = true;
    return err;
}

/* The gates' view of verdicts not recorded yet (ac->verdicts_pending): the
 * call's own, over the recorded ones, as if recorded (the latest value of a
 * key counts, and the development->review pull request is the cycle's). */
static void overlay_verdicts(advance_call *ac)
{
    const orch_verdicts *vs = ac->req->evidence;
    for (size_t i = 0; i < vs->n; i++)
        (void)orch_verdicts_set(&ac->ev, vs->v[i].key, vs->v[i].value);
    if (ac->e->from == STAGE_DEVELOPMENT && ac->e->to == STAGE_REVIEW &&
        orch_verdicts_get(vs, "pr_number"))
        ac->gi.pr_number =
            stage_pipeline_cycle_pr(ac->t.cycle, ac->t.pr_number, stage_pipeline_pr_number(vs));
}

/* Step 3's reads under the lease: the task (still in e->from), then the
 * call's verdicts recorded for this edge (fenced by the lease epoch), then
 * what the gates see. A forward edge without effects defers the record to
 * its stage write (ac->verdicts_pending), which records them in the same
 * statement. LOST_RACE (result ABORTED) when the task moved or the lease
 * is no longer live: then nothing was recorded. */
static orch_err read_locked(stage_svc *ss, advance_call *ac, stage_outcome *res)
{
    const stage_advance_req *req = ac->req;
    const stage_edge *e = ac->e;
    orch_db_conn *c = NULL;
    bool recorded = true;
    bool has = req->evidence && req->evidence->n;
    /* Left to the stage write (no effects) or the first intent claim (under
     * a lease); else recorded here. */
    ac->verdicts_pending =
        has && e->kind == STAGE_EDGE_FORWARD && (e->neffects == 0 || (ac->fenced && res->epoch));
    orch_err err = with_conn(ss, ac->dl, &c);
    if (!err)
        err = stage_store_get(c, ac->dl, req->work_item, &ac->t);
    bool here = !err && ac->t.stage == e->from;
    if (here && has && !ac->verdicts_pending)
        err = record_verdicts(c, ac, res, &recorded);
    if (!err && here && recorded)
        err = stage_gate_input_read(c, ac->dl, &ac->t, e, &ac->ev, &ac->gi);
    if (!err && here && ac->verdicts_pending)
        overlay_verdicts(ac);
    orch_db_release(c);
    if (err)
        return stage_db_fail(&res->fail, err, "reading the task");
    if (!here || !recorded)
        return not_recorded(ac, here, res);
    res->task = ac->t;
    res->result = STAGE_RESULT_ERROR;
    return ORCH_OK;
}

/* Records the verdicts left for the stage write (ac->verdicts_pending) when
 * the call ends without it (a gate refused or rolls back), as they would
 * have been recorded before the gates: LOST_RACE when they cannot be. */
static orch_err record_pending(stage_svc *ss, advance_call *ac, stage_outcome *res)
{
    if (!ac->verdicts_pending)
        return ORCH_OK;
    ac->verdicts_pending = false;
    orch_db_conn *c = NULL;
    bool recorded = false;
    orch_err err = with_conn(ss, ac->dl, &c);
    if (!err)
        err = record_verdicts(c, ac, res, &recorded);
    orch_db_release(c);
    if (err)
        return stage_db_fail(&res->fail, err, "recording the verdicts");
    return recorded ? ORCH_OK : not_recorded(ac, true, res);
}

/* Step 4: the edge's effects in order. ORCH_OK with *done false to go on
 * to the stage write; otherwise the call ends with res->result. */
static orch_err run_effects(stage_svc *ss, advance_call *ac, stage_outcome *res, bool *done)
{
    *done = true;
    for (int i = 0; i < ac->e->neffects; i++) {
        stage_advance_effect *ae = &res->effects[res->neffects++];
        stage_effect_call call = { .effect = ac->e->effects[i],
                                   .task = &ac->t,
                                   .transition = ac->transition,
                                   .epoch = res->epoch,
                                   .ev = &ac->ev,
                                   .db = ss->db,
                                   .deadline = ac->dl };
        bool last = i == ac->e->neffects - 1 && ac->fenced && res->epoch, rec = false;
        stage_evidence_write w = { &ac->t, ac->transition, res->epoch, ac->req->evidence,
                                   ac->req->actor };
        if (ac->verdicts_pending) { /* recorded by this claim */
            call.verdicts = &w;
            call.verdicts_recorded = &rec;
        }
        stage_result r = stage_run_effect(ss, &call, ae, last ? &ac->later : NULL, &res->fail);
        if (rec)
            res->durable = true;
        ac->verdicts_pending = false;
        if (ae->claimed)
            res->durable = true;
        /* An effect ran: what follows (the stage write, a rollback) gets
         * its own short budget even if the caller's ran out, so the
         * transition is not left half done. */
        uint64_t floor = orch_mono_ms() + 10000;
        if (ac->dl < floor)
            ac->dl = floor;
        switch (stage_logic_after_effect(r)) {
        case STAGE_NEXT_CONTINUE: continue;
        case STAGE_NEXT_ROLLBACK: {
            /* The merge gate: the forge refused the pull request. */
            char why[600];
            snprintf(why, sizeof why, "%s failed: %s", stage_effect_name(call.effect), ae->detail);
            snprintf(res->fails[0], STAGE_GATE_WHY_MAX, "%.*s", STAGE_GATE_WHY_MAX - 1, why);
            res->nfails = 1;
            return roll_back(ss, ac, why, res);
        }
        case STAGE_NEXT_ANSWER: res->result = r; return ORCH_OK;
        case STAGE_NEXT_FAIL:
            res->result = r;
            if (res->fail.kind == STAGE_FAIL_NONE)
                stage_fail(&res->fail, STAGE_FAIL_INTERNAL, "%s", "");
            return res->fail.err;
        }
    }
    *done = false;
    return ORCH_OK;
}

/* Step 3 and 4 of a forward edge: the gates, then the effects. *done
 * false to go on to the stage write. */
static orch_err gates_and_effects(stage_svc *ss, advance_call *ac, stage_outcome *res, bool *done)
{
    *done = true;
    stage_gates_outcome g =
        stage_pipeline_run_gates(ac->e, &ac->gi, res->fails, STAGE_ADV_MAX_FAILS, &res->nfails);
    if (g != STAGE_GATES_PASS) {
        orch_err err = record_pending(ss, ac, res);
        if (err)
            return err;
    }
    if (g == STAGE_GATES_REFUSE) {
        res->result = STAGE_RESULT_GATE_FAILED;
        return ORCH_OK;
    }
    if (g == STAGE_GATES_ROLLBACK)
        return roll_back(ss, ac, res->fails[0], res);
    /* The effects act on the cycle's own pull request. */
    if (ac->gi.pr_number)
        ac->t.pr_number = ac->gi.pr_number;
    return run_effects(ss, ac, res, done);
}

/* Steps 3-5 under the lease (or without one). */
static orch_err advance_locked(stage_svc *ss, advance_call *ac, stage_outcome *res)
{
    orch_err err = read_locked(ss, ac, res);
    if (err)
        return err;
    const stage_edge *e = ac->e;
    if (e->kind == STAGE_EDGE_FORWARD) {
        bool done = false;
        err = gates_and_effects(ss, ac, res, &done);
        if (done)
            return err;
    } else {
        err = stage_settle_unresolved(ss, ac->dl, &ac->t, e->to, res);
        if (err)
            return err;
    }
    bool rollback = e->kind == STAGE_EDGE_ROLLBACK;
    stage_cas cas = { .to = e->to,
                      .rollback = rollback,
                      .reason = ac->req->reason,
                      .pr_number = stage_logic_written_pr(e, &ac->ev),
                      .evidence = ac->verdicts_pending ? ac->req->evidence : NULL,
                      .transition = ac->transition };
    err = write_to(ss, ac, cas, res);
    if (err)
        return err;
    if (rollback)
        orch_alert("stage.rolled-back", ac->t.work_item,
                   "%s rolled back from %s to development: %s", ac->t.work_item,
                   stage_name(ac->t.stage), ac->req->reason ? ac->req->reason : "");
    res->result = rollback ? STAGE_RESULT_ROLLED_BACK : STAGE_RESULT_ADVANCED;
    return ORCH_OK;
}

/* Step 1: the item in the expected stage `from`. Nothing is recorded yet:
 * the call's verdicts are recorded under the lease (step 3), so a call
 * that defers or fails before it changes nothing the gates see. */
static orch_err read_task(stage_svc *ss, const advance_call *ac, stage_task *t, stage_outcome *res)
{
    orch_db_conn *c = NULL;
    orch_err err = with_conn(ss, ac->dl, &c);
    if (!err)
        err = stage_store_get(c, ac->dl, ac->req->work_item, t);
    orch_db_release(c);
    if (err == ORCH_ENOTFOUND)
        return stage_fail(&res->fail, STAGE_FAIL_NO_TASK, "no task %s", ac->req->work_item);
    if (err)
        return stage_db_fail(&res->fail, err, "reading the task");
    res->task = *t;
    if (t->stage != ac->e->from)
        return stage_fail(&res->fail, STAGE_FAIL_WRONG_STAGE, "%s is in stage %s, not %s",
                          t->work_item, stage_name(t->stage), stage_name(ac->e->from));
    return ORCH_OK;
}

/* A failure after something durable: answered UNKNOWN, a code the RPC
 * layer remembers, so that a resend of the request is told the same. The
 * message names the code the failure would have had. The cause stays. */
static void answer_unknown(const advance_call *ac, stage_outcome *res)
{
    char why[600];
    snprintf(why, sizeof why, "%.599s", res->fail.msg);
    orch_code was = stage_failure_code(res->fail.kind, res->fail.err);
    stage_fail_by(&res->fail, STAGE_FAIL_UNKNOWN_AFTER_DURABLE, res->fail.err,
                  "outcome unknown: %s failed after this call recorded verdicts or claimed an "
                  "effect (%s: %s); read the task (GetTask) before trying again",
                  ac->transition, orch_code_name(was), why);
}

orch_err stage_advance(stage_svc *ss, const stage_advance_req *req, uint64_t dl, stage_outcome *res)
{
    memset(res, 0, sizeof *res);
    res->result = STAGE_RESULT_ERROR;
    advance_call ac = { .req = req, .dl = dl };
    char why[STAGE_MSG_MAX];
    ac.e = stage_logic_request_edge(req->expected_from, req->to, why, sizeof why);
    if (!ac.e)
        return stage_fail(&res->fail, STAGE_FAIL_BAD_REQUEST, "%s", why);
    stage_edge_transition(ac.e, ac.transition, sizeof ac.transition);
    stage_task t;
    orch_err err = read_task(ss, &ac, &t, res);
    if (err)
        return err;

    /* Step 2: the lease, where it applies. */
    bool applies = ss->scope.enabled && orch_lease_in_scope(&ss->scope, t.repo);
    ac.fenced = applies;
    if (applies) {
        lease_answer a = acquire_lease(ss, &t, ac.transition, req->actor, res);
        if (a == LEASE_ERR)
            return res->fail.err;
        if (a == LEASE_HELD) {
            res->result = STAGE_RESULT_DEFERRED;
            return ORCH_OK;
        }
        /* An inert answer (lease-service configured off) keeps the
         * expected-stage condition. */
    }
    err = advance_locked(ss, &ac, res);
    if (!res->lease_released)
        release_lease(ss, t.work_item, res->epoch);
    if (err && stage_logic_failure_unknown(res->durable, res->fail.kind, res->fail.err))
        answer_unknown(&ac, res);
    return err;
}
