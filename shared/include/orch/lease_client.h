/*
 * lease_client.h - the typed client of lease-service (orch.v1.LeaseService),
 * the rules its callers share, and the release-later queue.
 *
 * Calls: one function per method over a borrowed orch_rpc_client. Each
 * returns ORCH_OK with its typed result, or an error: ORCH_ETIMEDOUT (no
 * answer in time), ORCH_EIO (lease-service unreachable), ORCH_EINVAL,
 * ORCH_ENOTFOUND, ORCH_ENOMEM, or ORCH_EPROTO for any other answer; `st`
 * (may be NULL) always receives the RPC status, for callers that map codes.
 * Results are written only on ORCH_OK.
 *
 * Rules: the Owner message of this process (orch_lease_owner_msg), which
 * Release answers mean "released" (orch_lease_code_released), which Acquire
 * errors prove nothing was granted (orch_lease_not_granted), and the scope
 * of the lease (orch_lease_in_scope, pure).
 *
 * Release-later queue (orch_lease_releaser): releases that could not reach
 * lease-service are retried on the queue's own thread (ticker.h) every
 * interval and once more when it stops; a grant whose Acquire answer was
 * lost is released by owner, and kept queued until that Acquire can no
 * longer be granted.
 *
 * Threading: every call and the queue are thread-safe (the RPC client is).
 * Ownership: results that hold memory are freed with their _free function,
 * which accepts NULL and zeroed results; strings of requests are borrowed
 * for the call.
 */
#ifndef ORCH_LEASE_CLIENT_H
#define ORCH_LEASE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"
#include "orch/ident.h"
#include "orch/rpc.h"
#include "orch/v1/lease.pb-c.h"

/* Full method names ("orch.v1.LeaseService/Acquire"), e.g. for metric
 * series. */
extern const char orch_lease_method_acquire[];
extern const char orch_lease_method_release[];
extern const char orch_lease_method_validate[];
extern const char orch_lease_method_force_release[];
extern const char orch_lease_method_get[];
extern const char orch_lease_method_list[];
extern const char orch_lease_method_probe_owner[];

/* ---- rules ----------------------------------------------------------------- */

typedef struct orch_lease_scope {
    bool enabled;         /* ORCH_TRANSITION_LEASE_ENABLED */
    const char *repos;    /* ORCH_TRANSITION_LEASE_REPOS, comma-separated */
    const char *own_repo; /* ORCH_ORCHESTRATOR_REPO, the scope when repos is empty */
} orch_lease_scope;

/* Whether the lease applies to `repo`: switched on, and `repo` named in
 * the list (spaces around names ignored, whole names only), or, with an
 * empty list, equal to own_repo. */
bool orch_lease_in_scope(const orch_lease_scope *scope, const char *repo);

/* Fills `m` with the identity of process `me` and owner `instance`; the
 * strings are borrowed from `me` and `instance`. */
void orch_lease_owner_msg(const orch_ident *me, const char *instance, Orch__V1__Owner *m);

/* Whether an answer `code` to Release of an epoch means that the grant is
 * gone: OK, FAILED_PRECONDITION (a newer grant: someone else ended it) or
 * NOT_FOUND. */
bool orch_lease_code_released(orch_code code);

/* Whether an error answer `code` to Acquire proves that nothing was
 * granted. A deadline, UNAVAILABLE, ABORTED, INTERNAL... prove nothing: the
 * grant may have committed with its answer lost. */
bool orch_lease_not_granted(orch_code code);

/* ---- calls ----------------------------------------------------------------- */

/* In every call `c` is borrowed for the call and `o` (may be NULL: the
 * client's defaults) sets its timeout. */

typedef struct orch_lease_acquire_req {
    const char *work_item, *repo, *transition, *actor;
    const Orch__V1__Owner *owner;
} orch_lease_acquire_req;

typedef struct orch_lease_acquire_res {
    bool granted;            /* false: HELD by another owner, start nothing */
    uint64_t epoch;          /* granted: the caller's (0 when inert); held: the holder's */
    bool inert;              /* switched off or out of scope: nothing was written */
    bool reclaimed;          /* taken over from a dead owner */
    bool already_held;       /* the caller held it already (a retried Acquire) */
    Orch__V1__Lease *holder; /* held: the current lease, or NULL; in `reply` */
    Orch__V1__Liveness holder_liveness;
    Orch__V1__AcquireReply *reply; /* the whole answer, owned */
} orch_lease_acquire_res;

orch_err orch_lease_acquire(orch_rpc_client *c, const orch_rpc_call_opts *o,
                            const orch_lease_acquire_req *req, orch_rpc_status *st,
                            orch_lease_acquire_res *out) ORCH_NODISCARD;
/* Detaches the holder from `r`: the caller frees it (orch_lease_free). */
Orch__V1__Lease *orch_lease_acquire_take_holder(orch_lease_acquire_res *r);
void orch_lease_acquire_res_free(orch_lease_acquire_res *r);

typedef struct orch_lease_release_res {
    uint64_t released_epoch; /* the grant this call released (0: already_released) */
    bool already_released;   /* the same epoch was released before */
} orch_lease_release_res;

/* Releases grant `epoch` of `work_item`; epoch 0 releases the live grant
 * held by exactly `owner` (required then; NOT_FOUND when it holds nothing).
 * `owner` may be NULL with an epoch. `out` may be NULL. */
orch_err orch_lease_release(orch_rpc_client *c, const orch_rpc_call_opts *o, const char *work_item,
                            uint64_t epoch, const Orch__V1__Owner *owner, orch_rpc_status *st,
                            orch_lease_release_res *out) ORCH_NODISCARD;

typedef struct orch_lease_validate_res {
    bool valid; /* the epoch asked is the current, unreleased grant */
    uint64_t current_epoch;
    bool held;
} orch_lease_validate_res;

orch_err orch_lease_validate(orch_rpc_client *c, const orch_rpc_call_opts *o, const char *work_item,
                             uint64_t epoch, orch_rpc_status *st,
                             orch_lease_validate_res *out) ORCH_NODISCARD;

/* The lease row of `work_item` (held or last released) into *out, owned:
 * free with orch_lease_free(). ORCH_ENOTFOUND if it was never leased. */
orch_err orch_lease_get(orch_rpc_client *c, const orch_rpc_call_opts *o, const char *work_item,
                        orch_rpc_status *st, Orch__V1__Lease **out) ORCH_NODISCARD;
void orch_lease_free(Orch__V1__Lease *l);

typedef struct orch_lease_list_req {
    bool held_only;
    const char *repo; /* NULL or "": every repo */
    uint32_t limit;   /* 0: 100; at most 1000 */
    bool judge;       /* also judge each held lease's owner */
} orch_lease_list_req;

typedef struct orch_lease_list_res {
    size_t n;
    Orch__V1__Lease **leases;         /* n, borrowed from reply */
    Orch__V1__Liveness *liveness;     /* n, owned; UNKNOWN where not judged */
    Orch__V1__ListLeasesReply *reply; /* owned */
} orch_lease_list_res;

orch_err orch_lease_list(orch_rpc_client *c, const orch_rpc_call_opts *o,
                         const orch_lease_list_req *req, orch_rpc_status *st,
                         orch_lease_list_res *out) ORCH_NODISCARD;
void orch_lease_list_res_free(orch_lease_list_res *r);

typedef struct orch_lease_force_release_req {
    const char *work_item;
    const char *reason;    /* required: recorded and sent with the alert */
    const char *operator_; /* who asks */
    uint64_t epoch;        /* required: the grant to release */
} orch_lease_force_release_req;

/* FAILED_PRECONDITION (ORCH_EPROTO) when a newer grant is live: it is left
 * alone. `out` may be NULL. */
orch_err orch_lease_force_release(orch_rpc_client *c, const orch_rpc_call_opts *o,
                                  const orch_lease_force_release_req *req, orch_rpc_status *st,
                                  orch_lease_release_res *out) ORCH_NODISCARD;

typedef struct orch_lease_probe_res {
    Orch__V1__Liveness answer;   /* as answered */
    bool from_owner_host;        /* the answering host and boot are the owner's */
    Orch__V1__Liveness liveness; /* answer if from_owner_host, else UNKNOWN */
    char reason[256];
    char host_id[256]; /* the answering host */
    char boot_id[64];  /* its boot */
} orch_lease_probe_res;

/* Asks the lease-service at `c` whether the process of `owner` (its pid,
 * start ticks and boot id) lives; the answer is checked against the
 * owner's host and boot id (a mismatch is UNKNOWN, never DEAD). */
orch_err orch_lease_probe_owner(orch_rpc_client *c, const orch_rpc_call_opts *o,
                                const Orch__V1__Owner *owner, orch_rpc_status *st,
                                orch_lease_probe_res *out) ORCH_NODISCARD;

/* ---- the release-later queue ------------------------------------------------ */

typedef struct orch_lease_releaser orch_lease_releaser;

typedef struct orch_lease_releaser_opts {
    orch_rpc_client *client; /* lease-service; borrowed until stop */
    const orch_ident *me;    /* the owner's process of by-owner releases; borrowed */
    uint32_t timeout_ms;     /* budget of one call; 0 = 5000 */
    uint32_t interval_ms;    /* between retry passes; 0 = 1000 */
    size_t capacity;         /* queued releases at most; 0 = 256 */
} orch_lease_releaser_opts;

/* Starts the queue and its retry thread ("release-retry"). */
orch_err orch_lease_releaser_start(const orch_lease_releaser_opts *opts,
                                   orch_lease_releaser **out) ORCH_NODISCARD;
/* Tells the retry thread to end without waiting for it (a pass in progress
 * finishes); releases can still be queued, for the final pass at stop.
 * Idempotent, NULL ok. */
void orch_lease_releaser_cancel(orch_lease_releaser *r);
/* Stops the thread, tries every queued release once more, frees. NULL ok.
 * No call on `r` may run or follow. */
void orch_lease_releaser_stop(orch_lease_releaser *r);

/* Acquire as req->owner. When the answer is an error that does not prove
 * that nothing was granted (orch_lease_not_granted), the grant this owner
 * may hold is queued for release by owner (orch_lease_release_owned_later
 * with req->owner->instance_id). As orch_lease_acquire otherwise. */
orch_err orch_lease_releaser_acquire(orch_lease_releaser *r, const orch_lease_acquire_req *req,
                                     orch_rpc_status *st,
                                     orch_lease_acquire_res *out) ORCH_NODISCARD;

/* Releases grant `epoch` now (0: nothing to do); if lease-service does not
 * answer that it is gone (orch_lease_code_released), queues it. */
void orch_lease_release_or_later(orch_lease_releaser *r, const char *work_item, uint64_t epoch);
/* Queues the release of grant `epoch` of `work_item` (copied). When the
 * queue is full the release is logged and left to lease-service's
 * ceiling. */
void orch_lease_release_later(orch_lease_releaser *r, const char *work_item, uint64_t epoch);
/* Queues the release of what owner `instance` of this process may hold of
 * `work_item` without knowing its epoch (an Acquire whose answer was lost).
 * It is released by owner; "that owner holds nothing" settles the entry
 * only once the lost Acquire can no longer be granted: after one more
 * timeout and a second (its deadline has passed). */
void orch_lease_release_owned_later(orch_lease_releaser *r, const char *work_item,
                                    const char *instance);
/* Releases not settled yet: queued, or being tried by a pass now (for
 * tests and metrics). NULL: 0. */
size_t orch_lease_releaser_pending(orch_lease_releaser *r);

#endif
