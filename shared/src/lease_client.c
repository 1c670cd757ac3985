/*
 * lease_client.c - see lease_client.h.
 *
 * Threading: the calls keep no state. The release queue's `mu` guards its
 * entries; a retry pass takes the whole queue out under `mu`, calls
 * lease-service without it, and puts back what is not settled, so callers
 * queueing never wait on lease-service.
 */
#include "orch/lease_client.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "orch/log.h"
#include "orch/ticker.h"

#define M(name) "orch.v1.LeaseService/" name
const char orch_lease_method_acquire[] = M("Acquire");
const char orch_lease_method_release[] = M("Release");
const char orch_lease_method_validate[] = M("Validate");
const char orch_lease_method_force_release[] = M("ForceRelease");
const char orch_lease_method_get[] = M("Get");
const char orch_lease_method_list[] = M("List");
const char orch_lease_method_probe_owner[] = M("ProbeOwner");
#undef M

/* ---- rules ----------------------------------------------------------------- */

bool orch_lease_in_scope(const orch_lease_scope *scope, const char *repo)
{
    if (!scope->enabled)
        return false;
    const char *list = scope->repos && scope->repos[0] ? scope->repos : scope->own_repo;
    size_t len = strlen(repo);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > p && last[-1] == ' ')
            last--;
        if ((size_t)(last - p) == len && len > 0 && strncmp(p, repo, len) == 0)
            return true;
        p = end;
    }
    return false;
}

void orch_lease_owner_msg(const orch_ident *me, const char *instance, Orch__V1__Owner *m)
{
    orch__v1__owner__init(m);
    m->host_id = (char *)me->host_id;
    m->boot_id = (char *)me->boot_id;
    m->pid = (int32_t)me->pid;
    m->start_ticks = me->start_ticks;
    m->instance_id = (char *)instance;
}

bool orch_lease_code_released(orch_code code)
{
    return code == ORCH_CODE_OK || code == ORCH_CODE_FAILED_PRECONDITION ||
           code == ORCH_CODE_NOT_FOUND;
}

bool orch_lease_not_granted(orch_code code)
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

/* ---- calls ----------------------------------------------------------------- */

static orch_err err_of(orch_code code)
{
    switch (code) {
    case ORCH_CODE_OK: return ORCH_OK;
    case ORCH_CODE_DEADLINE_EXCEEDED: return ORCH_ETIMEDOUT;
    case ORCH_CODE_UNAVAILABLE: return ORCH_EIO;
    case ORCH_CODE_INVALID_ARGUMENT: return ORCH_EINVAL;
    case ORCH_CODE_NOT_FOUND: return ORCH_ENOTFOUND;
    default: return ORCH_EPROTO;
    }
}

/* One call of `method`; on ORCH_OK *reply (if `desc`) is the decoded answer,
 * owned by the caller. `st` may be NULL. */
static orch_err call(orch_rpc_client *c, const orch_rpc_call_opts *o, const char *method,
                     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                     orch_rpc_status *st, ProtobufCMessage **reply)
{
    orch_rpc_status mine;
    orch_rpc_status *s = st ? st : &mine;
    ProtobufCMessage *m = NULL;
    orch_code code = orch_rpc_invoke(c, method, req, desc, o, s, desc ? &m : NULL);
    if (code == ORCH_CODE_OK && desc && !m) {
        s->code = ORCH_CODE_INTERNAL;
        snprintf(s->message, sizeof s->message, "%s answered without a reply", method);
        return ORCH_EPROTO;
    }
    if (code != ORCH_CODE_OK)
        return err_of(code);
    if (reply)
        *reply = m;
    else if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return ORCH_OK;
}

orch_err orch_lease_acquire(orch_rpc_client *c, const orch_rpc_call_opts *o,
                            const orch_lease_acquire_req *req, orch_rpc_status *st,
                            orch_lease_acquire_res *out)
{
    Orch__V1__AcquireRequest rq = ORCH__V1__ACQUIRE_REQUEST__INIT;
    rq.work_item = (char *)req->work_item;
    rq.repo = (char *)req->repo;
    rq.transition = (char *)req->transition;
    rq.actor = (char *)req->actor;
    rq.owner = (Orch__V1__Owner *)req->owner;
    Orch__V1__AcquireReply *rep = NULL;
    orch_err err = call(c, o, orch_lease_method_acquire, &rq.base,
                        &orch__v1__acquire_reply__descriptor, st, (ProtobufCMessage **)&rep);
    if (err)
        return err;
    memset(out, 0, sizeof *out);
    out->granted = rep->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_GRANTED;
    out->epoch = rep->epoch;
    out->inert = rep->inert;
    out->reclaimed = rep->reclaimed;
    out->already_held = rep->already_held;
    out->holder = out->granted ? NULL : rep->holder;
    out->holder_liveness = rep->holder_liveness;
    out->reply = rep;
    return ORCH_OK;
}

Orch__V1__Lease *orch_lease_acquire_take_holder(orch_lease_acquire_res *r)
{
    Orch__V1__Lease *h = r->holder;
    if (h && r->reply && r->reply->holder == h)
        r->reply->holder = NULL;
    r->holder = NULL;
    return h;
}

void orch_lease_acquire_res_free(orch_lease_acquire_res *r)
{
    if (!r)
        return;
    if (r->reply)
        protobuf_c_message_free_unpacked(&r->reply->base, NULL);
    memset(r, 0, sizeof *r);
}

orch_err orch_lease_release(orch_rpc_client *c, const orch_rpc_call_opts *o, const char *work_item,
                            uint64_t epoch, const Orch__V1__Owner *owner, orch_rpc_status *st,
                            orch_lease_release_res *out)
{
    Orch__V1__ReleaseRequest rq = ORCH__V1__RELEASE_REQUEST__INIT;
    rq.work_item = (char *)work_item;
    rq.epoch = epoch;
    rq.owner = (Orch__V1__Owner *)owner;
    Orch__V1__ReleaseReply *rep = NULL;
    orch_err err = call(c, o, orch_lease_method_release, &rq.base,
                        &orch__v1__release_reply__descriptor, st, (ProtobufCMessage **)&rep);
    if (err)
        return err;
    if (out)
        *out = (orch_lease_release_res){ rep->released_epoch, rep->already_released };
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return ORCH_OK;
}

orch_err orch_lease_validate(orch_rpc_client *c, const orch_rpc_call_opts *o, const char *work_item,
                             uint64_t epoch, orch_rpc_status *st, orch_lease_validate_res *out)
{
    Orch__V1__ValidateRequest rq = ORCH__V1__VALIDATE_REQUEST__INIT;
    rq.work_item = (char *)work_item;
    rq.epoch = epoch;
    Orch__V1__ValidateReply *rep = NULL;
    orch_err err = call(c, o, orch_lease_method_validate, &rq.base,
                        &orch__v1__validate_reply__descriptor, st, (ProtobufCMessage **)&rep);
    if (err)
        return err;
    *out = (orch_lease_validate_res){ rep->valid, rep->current_epoch, rep->held };
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return ORCH_OK;
}

orch_err orch_lease_get(orch_rpc_client *c, const orch_rpc_call_opts *o, const char *work_item,
                        orch_rpc_status *st, Orch__V1__Lease **out)
{
    Orch__V1__GetLeaseRequest rq = ORCH__V1__GET_LEASE_REQUEST__INIT;
    rq.work_item = (char *)work_item;
    return call(c, o, orch_lease_method_get, &rq.base, &orch__v1__lease__descriptor, st,
                (ProtobufCMessage **)out);
}

void orch_lease_free(Orch__V1__Lease *l)
{
    if (l)
        protobuf_c_message_free_unpacked(&l->base, NULL);
}

orch_err orch_lease_list(orch_rpc_client *c, const orch_rpc_call_opts *o,
                         const orch_lease_list_req *req, orch_rpc_status *st,
                         orch_lease_list_res *out)
{
    Orch__V1__ListLeasesRequest rq = ORCH__V1__LIST_LEASES_REQUEST__INIT;
    rq.held_only = req->held_only;
    rq.repo = (char *)(req->repo ? req->repo : "");
    rq.limit = req->limit;
    rq.judge = req->judge;
    Orch__V1__ListLeasesReply *rep = NULL;
    orch_err err = call(c, o, orch_lease_method_list, &rq.base,
                        &orch__v1__list_leases_reply__descriptor, st, (ProtobufCMessage **)&rep);
    if (err)
        return err;
    Orch__V1__Liveness *lv = calloc(rep->n_leases + 1, sizeof *lv);
    if (!lv) {
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        if (st) {
            st->code = ORCH_CODE_RESOURCE_EXHAUSTED;
            snprintf(st->message, sizeof st->message, "out of memory");
        }
        return ORCH_ENOMEM;
    }
    for (size_t i = 0; i < rep->n_leases; i++)
        lv[i] = i < rep->n_liveness ? rep->liveness[i] : ORCH__V1__LIVENESS__LIVENESS_UNKNOWN;
    *out = (orch_lease_list_res){ rep->n_leases, rep->leases, lv, rep };
    return ORCH_OK;
}

void orch_lease_list_res_free(orch_lease_list_res *r)
{
    if (!r)
        return;
    if (r->reply)
        protobuf_c_message_free_unpacked(&r->reply->base, NULL);
    free(r->liveness);
    memset(r, 0, sizeof *r);
}

orch_err orch_lease_force_release(orch_rpc_client *c, const orch_rpc_call_opts *o,
                                  const orch_lease_force_release_req *req, orch_rpc_status *st,
                                  orch_lease_release_res *out)
{
    Orch__V1__ForceReleaseRequest rq = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    rq.work_item = (char *)req->work_item;
    rq.reason = (char *)req->reason;
    rq.operator_ = (char *)(req->operator_ ? req->operator_ : "");
    rq.epoch = req->epoch;
    Orch__V1__ForceReleaseReply *rep = NULL;
    orch_err err = call(c, o, orch_lease_method_force_release, &rq.base,
                        &orch__v1__force_release_reply__descriptor, st, (ProtobufCMessage **)&rep);
    if (err)
        return err;
    if (out)
        *out = (orch_lease_release_res){ rep->released_epoch, rep->already_released };
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return ORCH_OK;
}

orch_err orch_lease_probe_owner(orch_rpc_client *c, const orch_rpc_call_opts *o,
                                const Orch__V1__Owner *owner, orch_rpc_status *st,
                                orch_lease_probe_res *out)
{
    Orch__V1__ProbeOwnerRequest rq = ORCH__V1__PROBE_OWNER_REQUEST__INIT;
    rq.pid = owner->pid;
    rq.start_ticks = owner->start_ticks;
    rq.boot_id = owner->boot_id;
    Orch__V1__ProbeOwnerReply *rep = NULL;
    orch_err err = call(c, o, orch_lease_method_probe_owner, &rq.base,
                        &orch__v1__probe_owner_reply__descriptor, st, (ProtobufCMessage **)&rep);
    if (err)
        return err;
    memset(out, 0, sizeof *out);
    out->answer = rep->liveness;
    /* An answer from another host or boot than the owner's (a lease-service
     * reached through the wrong address) says nothing about it. */
    out->from_owner_host = owner->host_id && strcmp(rep->host_id, owner->host_id) == 0 &&
                           owner->boot_id && strcmp(rep->boot_id, owner->boot_id) == 0;
    out->liveness = out->from_owner_host ? rep->liveness : ORCH__V1__LIVENESS__LIVENESS_UNKNOWN;
    snprintf(out->reason, sizeof out->reason, "%s", rep->reason);
    snprintf(out->host_id, sizeof out->host_id, "%s", rep->host_id);
    snprintf(out->boot_id, sizeof out->boot_id, "%s", rep->boot_id);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return ORCH_OK;
}

/* ---- the release-later queue ------------------------------------------------ */

typedef struct pending_release {
    char work_item[256];
    uint64_t epoch;    /* 0: an Acquire whose answer was lost, released by owner */
    char instance[64]; /* epoch 0: the owner instance that Acquire named */
    /* epoch 0: "that owner holds nothing" settles the entry only after this
     * (monotonic ms): until then the lost Acquire may still be in flight. */
    uint64_t settle_after_ms;
} pending_release;

struct orch_lease_releaser {
    orch_rpc_client *client;
    const orch_ident *me;
    uint32_t timeout_ms;
    pthread_mutex_t mu;
    pending_release *q;     /* queued, `n` of `cap` (mu) */
    pending_release *batch; /* the pass's copy (retry thread, or stop) */
    size_t n, cap;
    size_t inflight; /* entries of `batch` not yet settled or queued again (mu) */
    orch_ticker *ticker;
};

/* Appends `e` to the queue; the caller holds r->mu. */
static void enqueue_locked(orch_lease_releaser *r, const pending_release *e)
{
    if (r->n < r->cap) {
        r->q[r->n++] = *e;
    } else {
        orch_error("release retry list full: lease %s (epoch %" PRIu64
                   ", 0 = by owner) stays held until lease-service's ceiling",
                   e->work_item, e->epoch);
    }
}

static void enqueue(orch_lease_releaser *r, const pending_release *e)
{
    pthread_mutex_lock(&r->mu);
    enqueue_locked(r, e);
    pthread_mutex_unlock(&r->mu);
}

void orch_lease_release_later(orch_lease_releaser *r, const char *work_item, uint64_t epoch)
{
    pending_release e;
    memset(&e, 0, sizeof e);
    snprintf(e.work_item, sizeof e.work_item, "%s", work_item);
    e.epoch = epoch;
    enqueue(r, &e);
}

void orch_lease_release_owned_later(orch_lease_releaser *r, const char *work_item,
                                    const char *instance)
{
    pending_release e;
    memset(&e, 0, sizeof e);
    snprintf(e.work_item, sizeof e.work_item, "%s", work_item);
    snprintf(e.instance, sizeof e.instance, "%s", instance);
    /* The lost Acquire carried an absolute deadline that has passed; past
     * it lease-service refuses it, or releases a grant made too late. A
     * margin of one more timeout covers a request still being answered. */
    e.settle_after_ms = orch_mono_ms() + r->timeout_ms + 1000;
    enqueue(r, &e);
}

size_t orch_lease_releaser_pending(orch_lease_releaser *r)
{
    if (!r)
        return 0;
    pthread_mutex_lock(&r->mu);
    size_t n = r->n + r->inflight;
    pthread_mutex_unlock(&r->mu);
    return n;
}

orch_err orch_lease_releaser_acquire(orch_lease_releaser *r, const orch_lease_acquire_req *req,
                                     orch_rpc_status *st, orch_lease_acquire_res *out)
{
    orch_rpc_status mine;
    orch_rpc_status *s = st ? st : &mine;
    orch_rpc_call_opts o = { .timeout_ms = r->timeout_ms };
    orch_err err = orch_lease_acquire(r->client, &o, req, s, out);
    /* The grant may have committed with its answer lost: find it again as
     * this owner and release it, in the background. */
    if (err && !orch_lease_not_granted(s->code))
        orch_lease_release_owned_later(r, req->work_item, req->owner->instance_id);
    return err;
}

void orch_lease_release_or_later(orch_lease_releaser *r, const char *work_item, uint64_t epoch)
{
    if (epoch == 0)
        return;
    orch_rpc_call_opts o = { .timeout_ms = r->timeout_ms };
    orch_rpc_status st;
    if (orch_lease_release(r->client, &o, work_item, epoch, NULL, &st, NULL) == ORCH_OK ||
        orch_lease_code_released(st.code))
        return;
    orch_warn("release of lease %s epoch %" PRIu64 " failed (%s: %s); retrying in the background",
              work_item, epoch, orch_code_name(st.code), st.message);
    orch_lease_release_later(r, work_item, epoch);
}

/* Releases what owner `e->instance` holds of `e->work_item`, by owner (an
 * Acquire whose answer was lost). True when settled. */
static bool release_owned(orch_lease_releaser *r, const pending_release *e)
{
    orch_rpc_call_opts o = { .timeout_ms = r->timeout_ms };
    orch_rpc_status st;
    Orch__V1__Owner ow;
    orch_lease_owner_msg(r->me, e->instance, &ow);
    orch_lease_release_res rel;
    if (orch_lease_release(r->client, &o, e->work_item, 0, &ow, &st, &rel) == ORCH_OK) {
        orch_info("lease %s epoch %" PRIu64 " of a lost Acquire answer found and released",
                  e->work_item, rel.released_epoch);
        return true;
    }
    if (st.code == ORCH_CODE_INVALID_ARGUMENT)
        return true; /* malformed: cannot succeed later either */
    /* NOT_FOUND: that owner holds nothing now; the lost Acquire can still
     * grant until its deadline has certainly passed. */
    return st.code == ORCH_CODE_NOT_FOUND && orch_mono_ms() >= e->settle_after_ms;
}

/* One queued release. True when it is settled (released, or nothing of
 * ours to release), false to try again later. */
static bool retry_one(orch_lease_releaser *r, const pending_release *e)
{
    if (e->epoch == 0)
        return release_owned(r, e);
    orch_rpc_call_opts o = { .timeout_ms = r->timeout_ms };
    orch_rpc_status st;
    if (orch_lease_release(r->client, &o, e->work_item, e->epoch, NULL, &st, NULL) == ORCH_OK ||
        orch_lease_code_released(st.code)) {
        orch_info("released lease %s epoch %" PRIu64 " on retry", e->work_item, e->epoch);
        return true;
    }
    return false;
}

/* One pass over the queue; entries not settled are queued again. Runs on
 * the retry thread, or at stop once that thread is joined. */
static void retry_pass(orch_lease_releaser *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    memcpy(r->batch, r->q, n * sizeof r->batch[0]);
    r->n = 0;
    r->inflight = n;
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < n; i++) {
        bool settled = retry_one(r, &r->batch[i]);
        pthread_mutex_lock(&r->mu);
        r->inflight--;
        if (!settled)
            enqueue_locked(r, &r->batch[i]);
        pthread_mutex_unlock(&r->mu);
    }
}

static bool retry_tick(void *arg)
{
    retry_pass(arg);
    return true;
}

orch_err orch_lease_releaser_start(const orch_lease_releaser_opts *opts, orch_lease_releaser **out)
{
    if (!opts || !opts->client || !opts->me)
        return ORCH_EINVAL;
    orch_lease_releaser *r = calloc(1, sizeof *r);
    if (!r)
        return ORCH_ENOMEM;
    r->client = opts->client;
    r->me = opts->me;
    r->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 5000;
    r->cap = opts->capacity ? opts->capacity : 256;
    pthread_mutex_init(&r->mu, NULL);
    r->q = calloc(r->cap, sizeof *r->q);
    r->batch = calloc(r->cap, sizeof *r->batch);
    orch_err err = r->q && r->batch ? ORCH_OK : ORCH_ENOMEM;
    if (!err)
        err = orch_ticker_start("release-retry", opts->interval_ms ? opts->interval_ms : 1000, 0,
                                retry_tick, r, &r->ticker);
    if (err)
        goto fail;
    *out = r;
    return ORCH_OK;
fail:
    free(r->batch);
    free(r->q);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return err;
}

void orch_lease_releaser_cancel(orch_lease_releaser *r)
{
    if (r)
        orch_ticker_cancel(r->ticker);
}

void orch_lease_releaser_stop(orch_lease_releaser *r)
{
    if (!r)
        return;
    orch_ticker_stop(r->ticker);
    /* Releases still owed are tried once more before exit. */
    retry_pass(r);
    free(r->batch);
    free(r->q);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
