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
    const stage_edge *edges = stage_pipeline_edges(&n);
    const stage_edge *e =
        stage_pipeline_edge(stage_parse(from ? from : ""), stage_parse(to ? to : ""));
    if (e && (size_t)(e - edges) < ss->nedge_labels - 1)
        idx = (size_t)(e - edges);
    orch_counter_add2(ss->m_transitions, idx, (size_t)result, 1);
}

const char *const stage_transition_results[STAGE_RESULT_COUNT] = {
    "advanced", "deferred",      "gate_failed",    "rolled_back",
    "aborted",  "effect_failed", "effect_unknown", "error",
};

#define LEASE_ACQUIRE "orch.v1.LeaseService/Acquire"
#define LEASE_RELEASE "orch.v1.LeaseService/Release"

void stage_advance_res_free(stage_advance_res *res)
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
                                  const char *actor, stage_advance_res *res, char *msg, size_t mn)
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

orch_code stage_db_fail(orch_err err, const char *what, char *msg, size_t mn)
{
    snprintf(msg, mn, "%s: %s", what, orch_strerror(err));
    return err == ORCH_EDB_UNKNOWN ? ORCH_CODE_UNAVAILABLE : orch_err_to_code(err);
}

/* The CAS, one helper for advance, rollback and cancel. */
static orch_code write_stage(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                             bool rollback, bool fenced, uint64_t epoch, const char *actor,
                             const char *reason, uint64_t pr_number, stage_advance_res *res,
                             bool *won, char *msg, size_t mn)
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
        return stage_db_fail(err, "stage write", msg, mn);
    return ORCH_CODE_OK;
}

/* Reads the task after a lost CAS to name the stage it is in. */
static void lost_race(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                      stage_advance_res *res, char *msg, size_t mn)
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
        err = stage_store_cycle_verdict(c, dl, t->work_item, dev_review, "pr_number", pr, sizeof pr,
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

/* A failed rollback gate (or the merge gate): back to development through
 * the same CAS, with an alert; a lost race changes nothing and says so. */
static orch_code roll_back(stage_svc *ss, uint64_t dl, const stage_task *t, bool fenced,
                           const char *actor, const char *why, stage_advance_res *res, char *msg,
                           size_t mn)
{
    bool won = false;
    orch_code code = stage_settle_unresolved(ss, dl, t, STAGE_DEVELOPMENT, res, msg, mn);
    if (code)
        return code;
    code = write_stage(ss, dl, t, STAGE_DEVELOPMENT, true, fenced, res->epoch, actor, why, 0, res,
                       &won, msg, mn);
    if (code)
        return code;
    if (!won) {
        lost_race(ss, dl, t, STAGE_DEVELOPMENT, res, msg, mn);
        res->result = STAGE_RESULT_ABORTED;
        return ORCH_CODE_ABORTED;
    }
    orch_alert("stage.rolled-back", t->work_item, "%s rolled back from %s to development: %s",
               t->work_item, stage_name(t->stage), why);
    res->result = STAGE_RESULT_ROLLED_BACK;
    return ORCH_CODE_OK;
}

/* Step 3's reads under the lease: the task (still in e->from), then the
 * call's verdicts recorded for this edge (fenced by the lease epoch), then
 * what the gates see. ABORTED when the task moved or the lease is no
 * longer live: then nothing was recorded. */
static orch_code read_locked(stage_svc *ss, const stage_advance_req *req, uint64_t dl,
                             const stage_edge *e, const char *transition, stage_task *t,
                             orch_verdicts *ev, stage_gate_input *gi, stage_advance_res *res,
                             char *msg, size_t mn)
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
        return stage_db_fail(err, "reading the task", msg, mn);
    res->task = *t;
    res->result = STAGE_RESULT_ABORTED;
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
    res->result = STAGE_RESULT_ERROR;
    return ORCH_CODE_OK;
}

/* Step 4: the edge's effects in order. ORCH_CODE_OK with *done false to go
 * on to the stage write; otherwise the call ends with res->result. */
static orch_code run_effects(stage_svc *ss, const stage_advance_req *req, uint64_t *dl,
                             const stage_edge *e, const char *transition, bool fenced,
                             const stage_task *t, const orch_verdicts *ev, stage_advance_res *res,
                             bool *done, char *msg, size_t mn)
{
    *done = true;
    for (int i = 0; i < e->neffects; i++) {
        orch_code code = ORCH_CODE_OK;
        stage_advance_effect *ae = &res->effects[res->neffects++];
        int r = stage_run_effect(ss, *dl, t, transition, e->effects[i], res->epoch, ev, ae, msg, mn,
                                 &code);
        if (ae->claimed)
            res->durable = true;
        /* An effect ran: what follows (the stage write, a rollback) gets
         * its own short budget even if the caller's ran out, so the
         * transition is not left half done. */
        uint64_t floor = orch_mono_ms() + 10000;
        if (*dl < floor)
            *dl = floor;
        if (r == STAGE_RESULT_ADVANCED)
            continue;
        if (r == STAGE_RESULT_ROLLED_BACK) {
            /* The merge gate: the forge refused the pull request. */
            char why[600];
            snprintf(why, sizeof why, "%s failed: %s", stage_effect_name(e->effects[i]),
                     ae->detail);
            snprintf(res->fails[0], STAGE_GATE_WHY_MAX, "%.*s", STAGE_GATE_WHY_MAX - 1, why);
            res->nfails = 1;
            return roll_back(ss, *dl, t, fenced, req->actor, why, res, msg, mn);
        }
        res->result = r;
        if (r == STAGE_RESULT_EFFECT_FAILED || r == STAGE_RESULT_EFFECT_UNKNOWN)
            return ORCH_CODE_OK;
        return code ? code : ORCH_CODE_INTERNAL;
    }
    *done = false;
    return ORCH_CODE_OK;
}

/* Steps 3-5 under the lease (or without one). */
static orch_code advance_locked(stage_svc *ss, const stage_advance_req *req, uint64_t dl,
                                const stage_edge *e, const char *transition, bool fenced,
                                stage_advance_res *res, char *msg, size_t mn)
{
    stage_task t;
    orch_verdicts ev;
    stage_gate_input gi;
    orch_code code = read_locked(ss, req, dl, e, transition, &t, &ev, &gi, res, msg, mn);
    if (code)
        return code;
    bool won = false;
    if (e->kind == STAGE_EDGE_FORWARD) {
        stage_gates_outcome g =
            stage_pipeline_run_gates(e, &gi, res->fails, STAGE_ADV_MAX_FAILS, &res->nfails);
        if (g == STAGE_GATES_REFUSE) {
            res->result = STAGE_RESULT_GATE_FAILED;
            return ORCH_CODE_OK;
        }
        if (g == STAGE_GATES_ROLLBACK)
            return roll_back(ss, dl, &t, fenced, req->actor, res->fails[0], res, msg, mn);
        /* The effects act on the cycle's own pull request. */
        if (gi.pr_number)
            t.pr_number = gi.pr_number;
        bool done = false;
        code = run_effects(ss, req, &dl, e, transition, fenced, &t, &ev, res, &done, msg, mn);
        if (done)
            return code;
    } else {
        code = stage_settle_unresolved(ss, dl, &t, e->to, res, msg, mn);
        if (code)
            return code;
    }

    bool rollback = e->kind == STAGE_EDGE_ROLLBACK;
    /* development->review may name the cycle's pull request. */
    uint64_t pr =
        e->from == STAGE_DEVELOPMENT && e->to == STAGE_REVIEW ? stage_pipeline_pr_number(&ev) : 0;
    code = write_stage(ss, dl, &t, e->to, rollback, fenced, res->epoch, req->actor, req->reason, pr,
                       res, &won, msg, mn);
    if (code)
        return code;
    if (!won) {
        lost_race(ss, dl, &t, e->to, res, msg, mn);
        res->result = STAGE_RESULT_ABORTED;
        return ORCH_CODE_ABORTED;
    }
    if (rollback)
        orch_alert("stage.rolled-back", t.work_item, "%s rolled back from %s to development: %s",
                   t.work_item, stage_name(t.stage), req->reason ? req->reason : "");
    res->result = rollback ? STAGE_RESULT_ROLLED_BACK : STAGE_RESULT_ADVANCED;
    return ORCH_CODE_OK;
}

/* Whether the RPC layer forgets a reply with `code` (rpc_server.c's
 * cacheable(): by contract nothing durable happened). */
static bool forgotten_code(orch_code code)
{
    return code == ORCH_CODE_UNAVAILABLE || code == ORCH_CODE_DEADLINE_EXCEEDED ||
           code == ORCH_CODE_RESOURCE_EXHAUSTED;
}

orch_code stage_advance(stage_svc *ss, const stage_advance_req *req, uint64_t dl,
                        stage_advance_res *res, char *msg, size_t mn)
{
    memset(res, 0, sizeof *res);
    res->result = STAGE_RESULT_ERROR;
    msg[0] = '\0';
    stage_id from = stage_parse(req->expected_from), to = stage_parse(req->to);
    if (from == STAGE_NONE || to == STAGE_NONE) {
        snprintf(msg, mn,
                 "unknown stage \"%.60s\" (stages: backlog analysis architecture "
                 "development review testing staging deploy done cancelled)",
                 from == STAGE_NONE ? req->expected_from : req->to);
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    const stage_edge *e = stage_pipeline_edge(from, to);
    if (!e) {
        snprintf(msg, mn, "no edge %s->%s in the pipeline (see orchctl stage pipeline)",
                 stage_name(from), stage_name(to));
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    char transition[64];
    stage_edge_transition(e, transition, sizeof transition);

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
        return stage_db_fail(err, "reading the task", msg, mn);
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
            res->result = STAGE_RESULT_DEFERRED;
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
