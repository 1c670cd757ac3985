/*
 * lease_store.h - every SQL statement of lease-service.
 *
 * Each write is one statement, hence one commit: the lease row changes and
 * its lease_events row is appended in the same statement (a data-modifying
 * CTE). Writes are conditional on the state the caller saw (released, or a
 * given epoch still held), so concurrent actors on any host resolve races in
 * the database, and no caller ever waits for a lease holder. Functions take a
 * checked-out connection and a deadline; they return orch_err from db.h. A
 * write that was sent and whose outcome never came back (connection lost,
 * deadline passed) is ORCH_EDB_UNKNOWN: it may have committed.
 */
#ifndef ORCH_LEASE_STORE_H
#define ORCH_LEASE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "lease_logic.h"
#include "orch/db.h"

typedef struct lease_row {
    char work_item[LEASE_MAX_FIELD + 1];
    uint64_t epoch;
    lease_owner owner;
    char actor[LEASE_MAX_FIELD + 1];
    char transition[LEASE_MAX_FIELD + 1];
    char repo[LEASE_MAX_FIELD + 1];
    uint64_t acquired_ms; /* database clock, Unix ms */
    uint64_t released_ms; /* 0 while held */
    char release_reason[LEASE_MAX_FIELD + 1];
    bool held;
    uint64_t age_s; /* now() - acquired_at, database clock */
} lease_row;

typedef struct lease_claim {
    const char *work_item, *repo, *transition, *actor;
    const lease_owner *owner;
} lease_claim;

/* Acquire in one statement: grants the lease if it does not exist or is
 * released (with its 'granted' event), else takes no lock. *granted says
 * whether it did, *epoch is then the new epoch; *found and *row are the lease
 * as it was before the statement. Not granted while *row shows it absent or
 * released means another caller took it first (read it again to see who). */
orch_err lease_store_acquire(orch_db_conn *c, uint64_t dl, const lease_claim *cl, bool *granted,
                             uint64_t *epoch, lease_row *row, bool *found) ORCH_NODISCARD;

/* What lease_store_acquire() reports for one claim. */
typedef struct lease_acquired {
    bool granted, found;
    bool alone;     /* batch only: its released row was locked elsewhere, so
                     * the batch did not decide it: run it alone */
    uint64_t epoch; /* the new epoch, when granted */
    lease_row row;  /* the lease before the statement, when found */
} lease_acquired;

/* lease_store_acquire() for `n` claims of distinct work items in one
 * statement, hence one commit: *out[k] answers cl[k] exactly as
 * lease_store_acquire() would have, or has `alone` set: its released row
 * was locked by another transaction, which the batch does not wait for
 * (SKIP LOCKED), and nothing was done for it. Rows are locked in work-item
 * order. A batch of one runs lease_store_acquire()'s statement, its lock
 * waits bounded as the batch's (past the bound: an error, nothing done). On
 * error no claim has an answer (the statement did all or nothing, or, for
 * ORCH_EDB_UNAVAIL/ORCH_EDB_UNKNOWN, the same for all: with
 * ORCH_EDB_UNKNOWN every claim's outcome is in doubt). Borrows
 * cl[] and out[] for the call. */
orch_err lease_store_acquire_batch(orch_db_conn *c, uint64_t dl, const lease_claim *const *cl,
                                   size_t n, lease_acquired *const *out) ORCH_NODISCARD;

/* Takes over a lease still held at `seen_epoch` whose owner is dead. */
orch_err lease_store_reclaim(orch_db_conn *c, uint64_t dl, const lease_claim *cl,
                             uint64_t seen_epoch, const char *why, bool *granted,
                             uint64_t *epoch) ORCH_NODISCARD;

/* The same owner asks again for the lease it holds at `seen_epoch`: the
 * grant moves to the next epoch (*granted, *epoch), so that an answer given
 * once names one request's grant only, and a release fenced on the earlier
 * epoch (a grant made after its caller's deadline) cannot end the grant
 * this request is told it holds. *granted false: the lease is no longer
 * held at that epoch by that owner. */
orch_err lease_store_regrant(orch_db_conn *c, uint64_t dl, const lease_claim *cl,
                             uint64_t seen_epoch, bool *granted, uint64_t *epoch) ORCH_NODISCARD;

/* Releases the live grant of `work_item` held by exactly `owner` (host,
 * boot, pid, start ticks, instance), whatever its epoch; *epoch is the
 * released epoch, 0 when that owner held nothing. */
orch_err lease_store_release_by_owner(orch_db_conn *c, uint64_t dl, const char *work_item,
                                      const lease_owner *owner, const char *detail,
                                      uint64_t *epoch) ORCH_NODISCARD;

/* Releases the lease if `epoch` is still held; records `kind` (released,
 * force-released, reclaimed-stale, ceiling-released) with actor and detail. */
orch_err lease_store_release(orch_db_conn *c, uint64_t dl, const char *work_item, uint64_t epoch,
                             const char *kind, const char *actor, const char *detail,
                             bool *released) ORCH_NODISCARD;

/* lease_store_release(kind "released", actor "holder", no detail) for `n`
 * grants of distinct work items in one statement, hence one commit:
 * released[k] answers (work_items[k], epochs[k]), unless alone[k]: the
 * grant's row was locked by another transaction (not waited for) and
 * nothing was done for it. Rows are locked in work-item order. A batch of
 * one runs lease_store_release()'s statement, its lock wait bounded as for
 * lease_store_acquire_batch(). On error released[] and alone[] are undefined, as for
 * lease_store_acquire_batch(). */
orch_err lease_store_release_batch(orch_db_conn *c, uint64_t dl, const char *const *work_items,
                                   const uint64_t *epochs, size_t n, bool *released,
                                   bool *alone) ORCH_NODISCARD;

/* Appends an event without waiting for the WAL flush (audit of deferrals). */
orch_err lease_store_event_async(orch_db_conn *c, uint64_t dl, const char *work_item,
                                 uint64_t epoch, const char *kind, const char *actor,
                                 const char *detail) ORCH_NODISCARD;

orch_err lease_store_get(orch_db_conn *c, uint64_t dl, const char *work_item, lease_row *out,
                         bool *found) ORCH_NODISCARD;

/* Calls fn for each lease matching the filter (held_only, repo "" = any),
 * oldest first, at most `limit`. `owner_host` non-NULL restricts to leases
 * whose owner is on that host. */
/* Up to `limit` held leases (of `owner_host`, if not NULL or empty) whose
 * work item sorts after `after_item` ("" from the start), in work-item
 * order: a scan pages through every held lease, however many. */
orch_err lease_store_list_held_after(orch_db_conn *c, uint64_t dl, const char *owner_host,
                                     const char *after_item, unsigned limit,
                                     void (*fn)(const lease_row *row, void *arg),
                                     void *arg) ORCH_NODISCARD;
orch_err lease_store_list(orch_db_conn *c, uint64_t dl, bool held_only, const char *repo,
                          const char *owner_host, unsigned limit,
                          void (*fn)(const lease_row *row, void *arg), void *arg) ORCH_NODISCARD;

/* The reaper's statements. Candidates are read without a lock; each is then
 * released by its own statement, so a row that is locked is skipped and a
 * row whose release fails costs that row only. */

/* Calls fn for each held lease older than ceiling_s (database clock), oldest
 * first, at most `limit`. Takes no lock. */
orch_err lease_store_list_over_ceiling(orch_db_conn *c, uint64_t dl, int64_t ceiling_s,
                                       unsigned limit, void (*fn)(const lease_row *row, void *arg),
                                       void *arg) ORCH_NODISCARD;
/* Releases the lease if `epoch` is still held, (ceiling_s >= 0) it is older
 * than ceiling_s, and no other transaction holds a lock on its row (FOR
 * UPDATE SKIP LOCKED: a locked row is not waited for); records `kind`
 * (ceiling-released, reclaimed-stale) by actor "reaper" with `detail`.
 * *released false: not released, *locked then says whether because its
 * row was locked (else it was released or re-granted meanwhile). */
orch_err lease_store_reap(orch_db_conn *c, uint64_t dl, const char *work_item, uint64_t epoch,
                          int64_t ceiling_s, const char *kind, const char *detail, bool *released,
                          bool *locked) ORCH_NODISCARD;

/* What start-up recovery needs to know about this host's launcher
 * (launcher-service's launcher_recovery marker and jobs, read only):
 * running jobs of `host_id`, those of them under an instance other than the
 * marker's, and the marker's process (pid 0: no marker). */
typedef struct lease_launcher_state {
    long running, running_elsewhere;
    char boot_id[40];
    int32_t pid;
    uint64_t start_ticks;
} lease_launcher_state;
orch_err lease_store_launcher_state(orch_db_conn *c, uint64_t dl, const char *host_id,
                                    lease_launcher_state *out) ORCH_NODISCARD;

/* The row of `hosts` for `host_id` (out->exists false if none). */
orch_err lease_store_read_host(orch_db_conn *c, uint64_t dl, const char *host_id,
                               lease_host_reg *out) ORCH_NODISCARD;

/* How many hosts other than `host_id` are registered. */
orch_err lease_store_count_other_hosts(orch_db_conn *c, uint64_t dl, const char *host_id,
                                       long *out) ORCH_NODISCARD;

/* Registers this host (`me`: boot id, machine id, PID namespace): inserts
 * its row if `seen` says there was none, or
 * takes over the row `seen` describes (same instance id, seen_at not
 * refreshed since). *registered is false if the row changed in between
 * (read it again and decide again); nothing is ever overwritten blindly. */
orch_err lease_store_register_host(orch_db_conn *c, uint64_t dl, const char *host_id,
                                   const lease_host_self *me, const char *instance_id,
                                   const char *rpc_url, const lease_host_reg *seen,
                                   bool *registered) ORCH_NODISCARD;

/* Heartbeat: refreshes seen_at (and clears stopped_at) of `host_id` while it
 * is registered under `boot_id`; *mine false if the registration belongs to
 * another boot now. */
orch_err lease_store_host_beat(orch_db_conn *c, uint64_t dl, const char *host_id,
                               const char *boot_id, bool *mine) ORCH_NODISCARD;

/* Marks the registration of (`host_id`, `instance_id`) as cleanly stopped;
 * a registration another instance holds is left alone. */
orch_err lease_store_host_stopped(orch_db_conn *c, uint64_t dl, const char *host_id,
                                  const char *instance_id) ORCH_NODISCARD;

/* The registration of `host_id`: boot id and RPC address. */
orch_err lease_store_get_host(orch_db_conn *c, uint64_t dl, const char *host_id,
                              lease_host_facts *facts, char *rpc_url, size_t n) ORCH_NODISCARD;

/* The texts of the statements above, for the lease benchmark, which sends
 * the very same SQL directly over libpq to compare. */
extern const char lease_sql_get[];
extern const char lease_sql_acquire[];
extern const char lease_sql_release[];
extern const char lease_sql_event_async[];
extern const char lease_sql_list_held_after[];   /* $1 host or '', $2 after, $3 limit */
extern const char lease_sql_list_over_ceiling[]; /* $1 ceiling s, $2 limit */

#endif
