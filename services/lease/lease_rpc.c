/*
 * lease_rpc.c - decodes, validates and answers lease-service's RPCs.
 *
 * Each handler checks its input (clear INVALID_ARGUMENT messages), borrows a
 * database connection only for its statements, and never waits for a lease
 * holder: a held lease is an answer (HELD), not a wait.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/lease.pb-c.h"
#include "lease_batch.h"
#include "lease_rpc.h"
#include "lease_svc.h"
#include "orch/alert.h"
#include "orch/clock.h"
#include "orch/ident.h"
#include "orch/log.h"

/* ---- conversions --------------------------------------------------------- */

static bool owner_from_msg(const Orch__V1__Owner *m, lease_owner *o, char *why, size_t n)
{
    memset(o, 0, sizeof *o);
    if (!m) {
        snprintf(why, n, "owner is missing");
        return false;
    }
    if (strlen(m->host_id) >= sizeof o->host_id || strlen(m->boot_id) >= sizeof o->boot_id ||
        strlen(m->instance_id) >= sizeof o->instance_id) {
        snprintf(why, n, "owner identity field too long");
        return false;
    }
    snprintf(o->host_id, sizeof o->host_id, "%s", m->host_id);
    snprintf(o->boot_id, sizeof o->boot_id, "%s", m->boot_id);
    snprintf(o->instance_id, sizeof o->instance_id, "%s", m->instance_id);
    o->pid = m->pid;
    o->start_ticks = m->start_ticks;
    return lease_valid_owner(o, why, n);
}

/* Fills `m` (and `om`) from `row`; pointers borrow from row. */
static void lease_to_msg(const lease_row *row, Orch__V1__Lease *m, Orch__V1__Owner *om)
{
    orch__v1__lease__init(m);
    orch__v1__owner__init(om);
    om->host_id = (char *)row->owner.host_id;
    om->boot_id = (char *)row->owner.boot_id;
    om->pid = row->owner.pid;
    om->start_ticks = row->owner.start_ticks;
    om->instance_id = (char *)row->owner.instance_id;
    m->work_item = (char *)row->work_item;
    m->epoch = row->epoch;
    m->owner = om;
    m->actor = (char *)row->actor;
    m->transition = (char *)row->transition;
    m->repo = (char *)row->repo;
    m->acquired_unix_ms = row->acquired_ms;
    m->released_unix_ms = row->released_ms;
    m->release_reason = (char *)row->release_reason;
    m->held = row->held;
}

static orch_code db_fail(orch_rpc_call *call, orch_err err, orch_db_conn *c)
{
    orch_code code = orch_err_to_code(err);
    if (code == ORCH_CODE_INVALID_ARGUMENT)
        code = ORCH_CODE_INTERNAL; /* inputs are validated before SQL */
    return orch_rpc_fail(call, code, "database: %s%s%s", orch_strerror(err), c ? ": " : "",
                         c ? orch_db_last_error(c) : "");
}

/* ---- input checks (lease_rpc.h) --------------------------------------------- */

static orch_code check_epoch(uint64_t epoch, char *why, size_t n)
{
    if (epoch == 0) {
        snprintf(why, n, "epoch must be positive");
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    return ORCH_CODE_OK;
}

static orch_code check_acquire(const Orch__V1__AcquireRequest *req, lease_owner *owner, char *why,
                               size_t n)
{
    lease_owner scratch;
    if (!lease_valid_text("work_item", req->work_item, why, n) ||
        !lease_valid_text("repo", req->repo, why, n) ||
        !lease_valid_text("transition", req->transition, why, n) ||
        !lease_valid_text("actor", req->actor, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    if (!owner_from_msg(req->owner, owner ? owner : &scratch, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    return ORCH_CODE_OK;
}

/* A Release names its epoch, or (epoch 0) the owner whose grant it gives
 * back; an owner given with an epoch must match too. */
static orch_code check_release(const Orch__V1__ReleaseRequest *req, lease_owner *owner, char *why,
                               size_t n)
{
    lease_owner scratch;
    if (!lease_valid_text("work_item", req->work_item, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    if (req->epoch == 0 && !req->owner) {
        snprintf(why, n, "epoch must be positive, or owner set to release by owner");
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    if (req->owner && !owner_from_msg(req->owner, owner ? owner : &scratch, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    return ORCH_CODE_OK;
}

static orch_code check_force_release(const Orch__V1__ForceReleaseRequest *req, char *why, size_t n)
{
    if (!lease_valid_text("work_item", req->work_item, why, n) ||
        !lease_valid_text("reason", req->reason, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    if (req->epoch == 0) {
        snprintf(why, n, "epoch is required: read the lease (Get) and name the grant to release");
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    if (req->operator_[0] && !lease_valid_text("operator", req->operator_, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    return ORCH_CODE_OK;
}

static orch_code check_list(const Orch__V1__ListLeasesRequest *req, char *why, size_t n)
{
    unsigned limit = req->limit ? req->limit : 100;
    if (limit > 1000) {
        snprintf(why, n, "limit %u is over 1000", req->limit);
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    if (strlen(req->repo) > LEASE_MAX_FIELD) {
        snprintf(why, n, "repo is too long");
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    return ORCH_CODE_OK;
}

static orch_code check_probe_owner(const Orch__V1__ProbeOwnerRequest *req, char *why, size_t n)
{
    if (req->pid <= 0) {
        snprintf(why, n, "pid must be positive, got %d", (int)req->pid);
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    if (req->start_ticks == 0) {
        snprintf(why, n, "start_ticks must be positive");
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    if (!lease_valid_text("boot_id", req->boot_id, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    return ORCH_CODE_OK;
}

orch_code lease_rpc_check(const ProtobufCMessage *msg, lease_owner *owner, char *why, size_t n)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    orch_code code;
    if (d == &orch__v1__acquire_request__descriptor)
        return check_acquire((const Orch__V1__AcquireRequest *)msg, owner, why, n);
    if (d == &orch__v1__release_request__descriptor)
        return check_release((const Orch__V1__ReleaseRequest *)msg, owner, why, n);
    if (d == &orch__v1__validate_request__descriptor) {
        const Orch__V1__ValidateRequest *req = (const Orch__V1__ValidateRequest *)msg;
        if (!lease_valid_text("work_item", req->work_item, why, n))
            return ORCH_CODE_INVALID_ARGUMENT;
        return check_epoch(req->epoch, why, n);
    }
    if (d == &orch__v1__force_release_request__descriptor)
        return check_force_release((const Orch__V1__ForceReleaseRequest *)msg, why, n);
    if (d == &orch__v1__get_lease_request__descriptor) {
        const Orch__V1__GetLeaseRequest *req = (const Orch__V1__GetLeaseRequest *)msg;
        if (!lease_valid_text("work_item", req->work_item, why, n))
            return ORCH_CODE_INVALID_ARGUMENT;
        return ORCH_CODE_OK;
    }
    if (d == &orch__v1__list_leases_request__descriptor)
        return check_list((const Orch__V1__ListLeasesRequest *)msg, why, n);
    if (d == &orch__v1__probe_owner_request__descriptor)
        return check_probe_owner((const Orch__V1__ProbeOwnerRequest *)msg, why, n);
    code = ORCH_CODE_INVALID_ARGUMENT;
    snprintf(why, n, "%s is not a LeaseService request", d->name);
    return code;
}

/* Runs lease_rpc_check() on a handler's request. Returns ORCH_CODE_OK, or
 * INVALID_ARGUMENT with the reason set on the call (the handler returns it). */
static orch_code check_request(orch_rpc_call *call, const ProtobufCMessage *msg, lease_owner *owner)
{
    char why[200];
    if (lease_rpc_check(msg, owner, why, sizeof why) != ORCH_CODE_OK)
        return orch_rpc_fail(call, ORCH_CODE_INVALID_ARGUMENT, "%s", why);
    return ORCH_CODE_OK;
}

/* ---- Acquire --------------------------------------------------------------- */

static orch_code reply_granted(orch_rpc_call *call, uint64_t epoch, bool reclaimed, bool already,
                               bool inert)
{
    Orch__V1__AcquireReply rep = ORCH__V1__ACQUIRE_REPLY__INIT;
    rep.outcome = ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_GRANTED;
    rep.epoch = epoch;
    rep.reclaimed = reclaimed;
    rep.already_held = already;
    rep.inert = inert;
    return orch_rpc_reply(call, &rep.base);
}

static orch_code reply_held(orch_rpc_call *call, const lease_row *row, lease_liveness l)
{
    Orch__V1__AcquireReply rep = ORCH__V1__ACQUIRE_REPLY__INIT;
    Orch__V1__Lease lm;
    Orch__V1__Owner om;
    lease_to_msg(row, &lm, &om);
    rep.outcome = ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_HELD;
    rep.epoch = row->epoch;
    rep.holder = &lm;
    rep.holder_liveness = l == LEASE_ALIVE ? ORCH__V1__LIVENESS__LIVENESS_ALIVE
                                           : ORCH__V1__LIVENESS__LIVENESS_UNKNOWN;
    return orch_rpc_reply(call, &rep.base);
}

/* Takes the lease if it is free, else reads who holds it: one statement
 * (of a batch, with group commit on, unless the batch hands it back), and a
 * second read only when another caller took it in between. */
static orch_err read_or_grant(lease_svc *ls, const lease_claim *cl, uint64_t dl, lease_row *row,
                              bool *found, bool *granted, uint64_t *epoch)
{
    orch_db_conn *c = NULL;
    lease_acquired a = { 0 };
    orch_err err = ORCH_OK;
    bool alone = true; /* not decided by a batch */
    if (ls->batch)
        err = lease_batch_acquire(ls->batch, dl, cl, &a, &alone);
    if (!err && alone && !(err = orch_db_acquire(ls->db, dl, &c)))
        err = lease_store_acquire(c, dl, cl, &a.granted, &a.epoch, &a.row, &a.found);
    if (!err && !a.granted && (!a.found || !a.row.held)) { /* lost the race: see who won */
        if (!c)
            err = orch_db_acquire(ls->db, dl, &c);
        if (!err)
            err = lease_store_get(c, dl, cl->work_item, &a.row, &a.found);
    }
    orch_db_release(c);
    if (err)
        return err;
    *row = a.row;
    *found = a.found;
    *granted = a.granted;
    *epoch = a.epoch;
    return ORCH_OK;
}

/* The same owner asked again: its grant moves to the next epoch
 * (lease_store_regrant). */
static orch_err regrant(lease_svc *ls, const lease_claim *cl, const lease_row *row, uint64_t dl,
                        bool *granted, uint64_t *epoch)
{
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (!err)
        err = lease_store_regrant(c, dl, cl, row->epoch, granted, epoch);
    orch_db_release(c);
    return err;
}

static orch_err reclaim(lease_svc *ls, const lease_claim *cl, const lease_row *row, const char *why,
                        uint64_t dl, bool *granted, uint64_t *epoch)
{
    char detail[512];
    orch_db_conn *c = NULL;
    snprintf(detail, sizeof detail, "owner %s pid %d (%s, epoch %" PRIu64 "): %s",
             row->owner.host_id, (int)row->owner.pid, row->actor, row->epoch, why);
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (err)
        return err;
    err = lease_store_reclaim(c, dl, cl, row->epoch, detail, granted, epoch);
    orch_db_release(c);
    if (!err && *granted)
        orch_alert("lease.reclaimed-stale", cl->work_item,
                   "lease taken over by %s at epoch %" PRIu64 "; previous %s", cl->actor, *epoch,
                   detail);
    return err;
}

/* Answers a committed grant. When the caller's deadline passed meanwhile,
 * nobody waits for the answer (the server drops late replies) and the call
 * fails. A new grant (`moved` false) is then released here, fenced on its
 * epoch, which no other request is ever answered with (a same-owner retry
 * gets the next epoch), so the caller's view (no grant) holds. A grant
 * moved to the next epoch for its owner (`moved`: the owner held the lease
 * before this call and may have been told so) is left held: releasing it
 * would free the item under an owner that believes it holds it. That owner
 * settles it with its next Acquire (the next epoch) or a release by owner. */
static orch_code answer_grant(orch_rpc_call *call, lease_svc *ls, const lease_claim *cl,
                              uint64_t epoch, bool reclaimed, bool moved)
{
    orch_log_ctx_set_epoch(epoch);
    if (orch_deadline_left_ms(orch_rpc_call_deadline(call)) > 0)
        return reply_granted(call, epoch, reclaimed, moved, false);
    if (moved)
        return orch_rpc_fail(call, ORCH_CODE_DEADLINE_EXCEEDED,
                             "%s moved to epoch %" PRIu64 " after the deadline; still held by"
                             " this owner (ask again, or release by owner)",
                             cl->work_item, epoch);
    uint64_t dl = orch_mono_ms() + 2000;
    orch_db_conn *c = NULL;
    bool released = false;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (!err)
        err = lease_store_release(c, dl, cl->work_item, epoch, "released", "lease-service",
                                  "granted after its caller's deadline: nobody waited for it",
                                  &released);
    if (err)
        orch_warn("lease %s epoch %" PRIu64 " was granted after its caller's deadline and could"
                  " not be released (%s); its owner releases it",
                  cl->work_item, epoch, orch_strerror(err));
    orch_db_release(c);
    if (released)
        orch_counter_add(ls->m_release, REL_RELEASED, 1);
    return orch_rpc_fail(call, ORCH_CODE_DEADLINE_EXCEEDED,
                         "granted epoch %" PRIu64 " after the deadline; released again", epoch);
}

static void record_deferral(lease_svc *ls, const lease_claim *cl, const lease_row *row,
                            lease_liveness l, uint64_t dl)
{
    char detail[512];
    orch_db_conn *c = NULL;
    snprintf(detail, sizeof detail, "held by %s pid %d (%s), owner %s", row->owner.host_id,
             (int)row->owner.pid, row->actor, l == LEASE_ALIVE ? "alive" : "unknown");
    if (orch_db_acquire(ls->db, dl, &c) != ORCH_OK)
        return;
    if (lease_store_event_async(c, dl, cl->work_item, row->epoch, "deferred", cl->actor, detail))
        orch_warn("could not record the deferral of %s: %s", cl->actor, orch_db_last_error(c));
    orch_db_release(c);
}

static orch_code acquire_claim(orch_rpc_call *call, lease_svc *ls, const lease_claim *cl)
{
    uint64_t dl = orch_rpc_call_deadline(call);
    for (int round = 0; round < 4; round++) {
        lease_row row;
        bool found, granted;
        uint64_t epoch = 0;
        orch_err err = read_or_grant(ls, cl, dl, &row, &found, &granted, &epoch);
        if (err)
            return db_fail(call, err, NULL);
        if (granted) {
            orch_counter_add(ls->m_acquire, ACQ_GRANTED, 1);
            return answer_grant(call, ls, cl, epoch, false, false);
        }
        if (!found || !row.held)
            continue; /* released in between: try again */
        if (lease_same_owner(&row.owner, cl->owner)) {
            err = regrant(ls, cl, &row, dl, &granted, &epoch);
            if (err)
                return db_fail(call, err, NULL);
            if (!granted)
                continue; /* released meanwhile (a late grant's release): again */
            orch_counter_add(ls->m_acquire, ACQ_ALREADY_HELD, 1);
            return answer_grant(call, ls, cl, epoch, false, true);
        }
        const char *why;
        lease_liveness l = lease_svc_judge(ls, &row.owner, dl, &why);
        if (l == LEASE_DEAD) {
            err = reclaim(ls, cl, &row, why, dl, &granted, &epoch);
            if (err)
                return db_fail(call, err, NULL);
            if (granted) {
                orch_counter_add(ls->m_acquire, ACQ_RECLAIMED, 1);
                orch_counter_add(ls->m_release, REL_STALE, 1);
                return answer_grant(call, ls, cl, epoch, true, false);
            }
            continue; /* someone else moved it first */
        }
        record_deferral(ls, cl, &row, l, dl);
        orch_counter_add(ls->m_acquire, ACQ_HELD, 1);
        orch_debug("%s defers on %s: epoch %" PRIu64 " held by %s pid %d (%s)", cl->actor,
                   cl->work_item, row.epoch, row.owner.host_id, (int)row.owner.pid, why);
        return reply_held(call, &row, l);
    }
    return orch_rpc_fail(call, ORCH_CODE_ABORTED, "the lease of %s kept changing; try again",
                         cl->work_item);
}

static orch_code acquire(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    lease_svc *ls = arg;
    const Orch__V1__AcquireRequest *req = (const Orch__V1__AcquireRequest *)msg;
    lease_owner owner;
    uint64_t t0 = orch_mono_ns();

    orch_code bad = check_request(call, msg, &owner);
    if (bad != ORCH_CODE_OK)
        return bad;
    if (!orch_lease_in_scope(&ls->scope, req->repo)) {
        orch_counter_add(ls->m_acquire, ACQ_INERT, 1);
        return reply_granted(call, 0, false, false, true);
    }
    lease_claim cl = { req->work_item, req->repo, req->transition, req->actor, &owner };
    orch_code code = acquire_claim(call, ls, &cl);
    orch_histogram_observe_ns(ls->m_acquire_latency, 0, orch_mono_ns() - t0);
    return code;
}

/* ---- Release, Validate, ForceRelease ------------------------------------- */

/* Release by owner (epoch 0): gives back whatever live grant exactly this
 * owner holds, so a caller whose Acquire answer was lost can end a grant it
 * never heard of without taking a new one. */
static orch_code release_by_owner(orch_rpc_call *call, lease_svc *ls,
                                  const Orch__V1__ReleaseRequest *req, const lease_owner *owner)
{
    uint64_t dl = orch_rpc_call_deadline(call);
    orch_db_conn *c = NULL;
    uint64_t epoch = 0;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (err)
        return db_fail(call, err, NULL);
    err = lease_store_release_by_owner(c, dl, req->work_item, owner,
                                       "released by owner: its Acquire answer was lost", &epoch);
    orch_code code = err ? db_fail(call, err, c) : ORCH_CODE_OK;
    orch_db_release(c);
    if (code)
        return code;
    if (epoch == 0)
        return orch_rpc_fail(call, ORCH_CODE_NOT_FOUND, "%s is not held by that owner",
                             req->work_item);
    orch_counter_add(ls->m_release, REL_RELEASED, 1);
    orch_log_ctx_set_epoch(epoch);
    orch_info("lease %s epoch %" PRIu64 " released by its owner %s (answer lost)", req->work_item,
              epoch, owner->instance_id);
    Orch__V1__ReleaseReply rep = ORCH__V1__RELEASE_REPLY__INIT;
    rep.released_epoch = epoch;
    return orch_rpc_reply(call, &rep.base);
}

/* A plain Release (the hot path) is one statement, of a batch with group
 * commit on: *batched says the batch decided it (*released); false when
 * not batched, or handed back (its row was locked): release it alone.
 * Epochs are bigint in the database: a larger one is never the live grant. */
static orch_err release_in_batch(lease_svc *ls, const Orch__V1__ReleaseRequest *req, uint64_t dl,
                                 bool *batched, bool *released)
{
    bool alone = true;
    orch_err err = ORCH_OK;
    if (ls->batch && !req->owner && req->epoch <= INT64_MAX)
        err = lease_batch_release(ls->batch, dl, req->work_item, req->epoch, released, &alone);
    *batched = !err && !alone;
    return err;
}

static orch_code release(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    lease_svc *ls = arg;
    const Orch__V1__ReleaseRequest *req = (const Orch__V1__ReleaseRequest *)msg;
    uint64_t dl = orch_rpc_call_deadline(call);
    orch_db_conn *c = NULL;
    lease_owner owner;
    lease_row row;
    bool released = false, found = false;
    char why[200];

    if (lease_rpc_check(msg, &owner, why, sizeof why) != ORCH_CODE_OK)
        return orch_rpc_fail(call, ORCH_CODE_INVALID_ARGUMENT, "%s", why);
    if (req->epoch == 0)
        return release_by_owner(call, ls, req, &owner);
    bool batched = false;
    orch_err err = release_in_batch(ls, req, dl, &batched, &released);
    if (!err && !released)
        err = orch_db_acquire(ls->db, dl, &c);
    if (err)
        return db_fail(call, err, NULL);
    /* Only an owner named beside the epoch needs the row read first. */
    if (req->owner)
        err = lease_store_get(c, dl, req->work_item, &row, &found);
    bool mine = !req->owner || (found && lease_same_owner(&row.owner, &owner));
    if (!err && !batched && mine && req->epoch <= INT64_MAX)
        err = lease_store_release(c, dl, req->work_item, req->epoch, "released", "holder", "",
                                  &released);
    if (!err && !released)
        err = lease_store_get(c, dl, req->work_item, &row, &found);
    orch_code code = err ? db_fail(call, err, c) : ORCH_CODE_OK;
    orch_db_release(c);
    if (code)
        return code;
    Orch__V1__ReleaseReply rep = ORCH__V1__RELEASE_REPLY__INIT;
    if (released) {
        orch_counter_add(ls->m_release, REL_RELEASED, 1);
        rep.released_epoch = req->epoch;
        return orch_rpc_reply(call, &rep.base);
    }
    if (!found)
        return orch_rpc_fail(call, ORCH_CODE_NOT_FOUND, "no lease for %s", req->work_item);
    if (!mine && row.held && row.epoch == req->epoch)
        return orch_rpc_fail(call, ORCH_CODE_FAILED_PRECONDITION,
                             "epoch %" PRIu64 " of %s is held by another owner", req->epoch,
                             req->work_item);
    if (row.epoch == req->epoch && strcmp(row.release_reason, "released") == 0) {
        rep.already_released = true; /* a retried Release */
        return orch_rpc_reply(call, &rep.base);
    }
    return orch_rpc_fail(
        call, ORCH_CODE_FAILED_PRECONDITION,
        "epoch %" PRIu64 " of %s is not the live grant (current epoch %" PRIu64 ", %s)", req->epoch,
        req->work_item, row.epoch, row.held ? "held" : row.release_reason);
}

/* Reads the lease of `work_item` on a borrowed connection. Returns OK or the
 * failure already set on the call. */
static orch_code read_lease(orch_rpc_call *call, lease_svc *ls, const char *work_item,
                            lease_row *row, bool *found)
{
    uint64_t dl = orch_rpc_call_deadline(call);
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (err)
        return db_fail(call, err, NULL);
    err = lease_store_get(c, dl, work_item, row, found);
    orch_code code = err ? db_fail(call, err, c) : ORCH_CODE_OK;
    orch_db_release(c);
    return code;
}

static orch_code validate(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    const Orch__V1__ValidateRequest *req = (const Orch__V1__ValidateRequest *)msg;
    lease_row row;
    bool found = false;

    orch_code bad = check_request(call, msg, NULL);
    if (bad != ORCH_CODE_OK)
        return bad;
    orch_code code = read_lease(call, arg, req->work_item, &row, &found);
    if (code)
        return code;
    Orch__V1__ValidateReply rep = ORCH__V1__VALIDATE_REPLY__INIT;
    rep.held = found && row.held;
    rep.current_epoch = found ? row.epoch : 0;
    rep.valid = rep.held && row.epoch == req->epoch;
    return orch_rpc_reply(call, &rep.base);
}

/* Answers a ForceRelease that released nothing: the named grant is not the
 * live one. A resend of a release that already happened is answered OK. */
static orch_code force_release_refused(orch_rpc_call *call,
                                       const Orch__V1__ForceReleaseRequest *req,
                                       const lease_row *row, bool found)
{
    if (!found)
        return orch_rpc_fail(call, ORCH_CODE_NOT_FOUND, "no lease for %s", req->work_item);
    if (!row->held && row->epoch == req->epoch &&
        strcmp(row->release_reason, "force-released") == 0) {
        Orch__V1__ForceReleaseReply rep = ORCH__V1__FORCE_RELEASE_REPLY__INIT;
        rep.released_epoch = row->epoch;
        rep.already_released = true;
        return orch_rpc_reply(call, &rep.base);
    }
    if (row->epoch != req->epoch)
        return orch_rpc_fail(call, ORCH_CODE_FAILED_PRECONDITION,
                             "%s is at epoch %" PRIu64 " (%s), not %" PRIu64 ": left alone",
                             req->work_item, row->epoch, row->held ? "held" : row->release_reason,
                             req->epoch);
    return orch_rpc_fail(call, ORCH_CODE_FAILED_PRECONDITION,
                         "epoch %" PRIu64 " of %s is not held (%s)", req->epoch, req->work_item,
                         row->release_reason);
}

/* Releases exactly the grant the request names (its epoch is required), so
 * that a resend, even after a restart of lease-service, never releases a
 * newer grant. */
static orch_code force_release(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    lease_svc *ls = arg;
    const Orch__V1__ForceReleaseRequest *req = (const Orch__V1__ForceReleaseRequest *)msg;
    uint64_t dl = orch_rpc_call_deadline(call);
    const char *op = req->operator_[0] ? req->operator_ : "operator";
    orch_db_conn *c = NULL;
    lease_row row;
    bool found = false, released = false;

    orch_code bad = check_request(call, msg, NULL);
    if (bad != ORCH_CODE_OK)
        return bad;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (err)
        return db_fail(call, err, NULL);
    if (req->epoch <= INT64_MAX)
        err = lease_store_release(c, dl, req->work_item, req->epoch, "force-released", op,
                                  req->reason, &released);
    if (!err)
        err = lease_store_get(c, dl, req->work_item, &row, &found);
    orch_code code = err ? db_fail(call, err, c) : ORCH_CODE_OK;
    orch_db_release(c);
    if (code)
        return code;
    if (!released)
        return force_release_refused(call, req, &row, found);
    orch_counter_add(ls->m_release, REL_FORCE, 1);
    orch_alert("lease.force-released", req->work_item,
               "%s released epoch %" PRIu64 " held by %s pid %d (%s): %s", op, req->epoch,
               row.owner.host_id, (int)row.owner.pid, row.actor, req->reason);
    Orch__V1__ForceReleaseReply rep = ORCH__V1__FORCE_RELEASE_REPLY__INIT;
    rep.released_epoch = req->epoch;
    return orch_rpc_reply(call, &rep.base);
}

/* ---- Get, List, ProbeOwner ------------------------------------------------ */

static orch_code get(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    const Orch__V1__GetLeaseRequest *req = (const Orch__V1__GetLeaseRequest *)msg;
    lease_row row;
    bool found = false;

    orch_code bad = check_request(call, msg, NULL);
    if (bad != ORCH_CODE_OK)
        return bad;
    orch_code code = read_lease(call, arg, req->work_item, &row, &found);
    if (code)
        return code;
    if (!found)
        return orch_rpc_fail(call, ORCH_CODE_NOT_FOUND, "no lease for %s", req->work_item);
    Orch__V1__Lease m;
    Orch__V1__Owner om;
    lease_to_msg(&row, &m, &om);
    return orch_rpc_reply(call, &m.base);
}

typedef struct list_acc {
    lease_row *rows;
    size_t n, cap;
    bool oom;
} list_acc;

static void list_collect(const lease_row *row, void *arg)
{
    list_acc *a = arg;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 16;
        lease_row *r = realloc(a->rows, nc * sizeof *r);
        if (!r) {
            a->oom = true;
            return;
        }
        a->rows = r;
        a->cap = nc;
    }
    a->rows[a->n++] = *row;
}

static Orch__V1__Liveness liveness_msg(lease_liveness l)
{
    switch (l) {
    case LEASE_ALIVE: return ORCH__V1__LIVENESS__LIVENESS_ALIVE;
    case LEASE_DEAD: return ORCH__V1__LIVENESS__LIVENESS_DEAD;
    case LEASE_UNKNOWN: return ORCH__V1__LIVENESS__LIVENESS_UNKNOWN;
    }
    return ORCH__V1__LIVENESS__LIVENESS_UNKNOWN;
}

static orch_code list_reply(orch_rpc_call *call, lease_svc *ls, const list_acc *a, bool judge)
{
    Orch__V1__ListLeasesReply rep = ORCH__V1__LIST_LEASES_REPLY__INIT;
    Orch__V1__Lease *ms = calloc(a->n ? a->n : 1, sizeof *ms);
    Orch__V1__Owner *os = calloc(a->n ? a->n : 1, sizeof *os);
    Orch__V1__Lease **ps = calloc(a->n ? a->n : 1, sizeof *ps);
    Orch__V1__Liveness *lv = calloc(a->n ? a->n : 1, sizeof *lv);
    orch_code code;
    if (!ms || !os || !ps || !lv) {
        code = orch_rpc_fail(call, ORCH_CODE_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        uint64_t dl = orch_rpc_call_deadline(call);
        for (size_t i = 0; i < a->n; i++) {
            lease_to_msg(&a->rows[i], &ms[i], &os[i]);
            ps[i] = &ms[i];
            if (judge) {
                const char *reason;
                lv[i] = a->rows[i].held
                            ? liveness_msg(lease_svc_judge(ls, &a->rows[i].owner, dl, &reason))
                            : ORCH__V1__LIVENESS__LIVENESS_DEAD;
            }
        }
        rep.n_leases = a->n;
        rep.leases = ps;
        if (judge) {
            rep.n_liveness = a->n;
            rep.liveness = lv;
        }
        code = orch_rpc_reply(call, &rep.base);
    }
    free(ms);
    free(os);
    free(ps);
    free(lv);
    return code;
}

static orch_code list(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    lease_svc *ls = arg;
    const Orch__V1__ListLeasesRequest *req = (const Orch__V1__ListLeasesRequest *)msg;
    uint64_t dl = orch_rpc_call_deadline(call);
    unsigned limit = req->limit ? req->limit : 100;
    list_acc acc = { 0 };
    orch_db_conn *c = NULL;

    orch_code bad = check_request(call, msg, NULL);
    if (bad != ORCH_CODE_OK)
        return bad;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (err)
        return db_fail(call, err, NULL);
    err = lease_store_list(c, dl, req->held_only, req->repo, NULL, limit, list_collect, &acc);
    orch_code code = err ? db_fail(call, err, c) : ORCH_CODE_OK;
    orch_db_release(c);
    if (!code && acc.oom)
        code = orch_rpc_fail(call, ORCH_CODE_RESOURCE_EXHAUSTED, "out of memory");
    if (!code)
        code = list_reply(call, ls, &acc, req->judge);
    free(acc.rows);
    return code;
}

static orch_code probe_owner(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    lease_svc *ls = arg;
    const Orch__V1__ProbeOwnerRequest *req = (const Orch__V1__ProbeOwnerRequest *)msg;
    uint64_t ticks = 0;
    const char *reason;

    orch_code bad = check_request(call, msg, NULL);
    if (bad != ORCH_CODE_OK)
        return bad;
    /* /proc is read only for this boot: another boot id is no verdict. */
    bool mine = strcmp(req->boot_id, ls->me->boot_id) == 0;
    lease_proc_read proc = mine ? lease_svc_read_proc(req->pid, &ticks) : LEASE_PROC_UNREADABLE;
    lease_liveness l =
        lease_judge_probe(req->boot_id, ls->me->boot_id, proc, ticks, req->start_ticks, &reason);
    Orch__V1__ProbeOwnerReply rep = ORCH__V1__PROBE_OWNER_REPLY__INIT;
    rep.liveness = liveness_msg(l);
    rep.reason = (char *)reason;
    rep.host_id = (char *)ls->me->host_id;
    rep.boot_id = (char *)ls->me->boot_id;
    return orch_rpc_reply(call, &rep.base);
}

/* Matched to the service block of lease.proto by name at registration. */
#define OP       ORCH_ROLE_OPERATOR
#define STAGE    ORCH_ROLE_STAGE
#define LAUNCHER ORCH_ROLE_LAUNCHER
#define PEER     ORCH_ROLE_LEASE

/* Handlers and the roles that may call them (docs/rpc.md, "Authorization"):
 * stage-service holds leases for its work; launcher-service watches and
 * reaps its jobs' leases; peers ask each other about owners on their host. */
static const orch_rpc_method methods[] = {
    { .name = "Acquire", .handler = acquire, .roles = OP | STAGE | LAUNCHER },
    { .name = "Release", .handler = release, .roles = OP | STAGE | LAUNCHER },
    { .name = "Validate", .handler = validate, .roles = OP | STAGE | LAUNCHER },
    { .name = "ForceRelease", .handler = force_release, .roles = OP | STAGE | LAUNCHER },
    { .name = "Get", .handler = get, .roles = OP | STAGE | LAUNCHER },
    { .name = "List", .handler = list, .roles = OP | STAGE | LAUNCHER },
    { .name = "ProbeOwner", .handler = probe_owner, .roles = PEER | LAUNCHER },
};

orch_err lease_rpc_register(orch_service *svc, lease_svc *ls)
{
    orch_rpc_service rpc = { .desc = &orch__v1__lease_service__descriptor,
                             .methods = methods,
                             .nmethods = sizeof methods / sizeof *methods,
                             .arg = ls };
    return orch_service_add_rpc(svc, &rpc);
}
