/*
 * lease_batch.h - group commit of Acquire's grant statement and of plain
 * Releases.
 *
 * Requests that arrive while batches of their kind are in PostgreSQL (at
 * most two at once) are queued and go together into the next one: one
 * statement (lease_store.c's *_batch), hence one commit, for up to `max`
 * requests, at most one per work item, and none for an item of a batch
 * still in PostgreSQL (a second request for the same item waits for a later
 * batch).
 * Each request gets the very answer its own statement would have given, or
 * is handed back to its caller to run alone (`*alone`): a request whose row
 * another transaction has locked leaves the batch (its rows are locked
 * SKIP LOCKED), and when the statement fails with a statement error (a
 * constraint, a serialization failure, a lock wait past the Acquire batch's
 * own lock_timeout, lease_store.c) every request leaves it, so that each
 * gets its own error, or its own wait, on its own thread. One slow row
 * therefore holds up the others for that lock_timeout at most. A lost
 * connection or a passed deadline is every request's answer (for a write
 * in doubt, ORCH_EDB_UNKNOWN). No answer is returned before its commit.
 *
 * Threading: called from the RPC worker threads; the caller that finds no
 * batch of its kind running leads the next one on its own thread. The
 * caller holds no database connection while it waits.
 */
#ifndef ORCH_LEASE_BATCH_H
#define ORCH_LEASE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "lease_store.h"
#include "orch/db.h"

#define LEASE_BATCH_CAP 256 /* largest ORCH_LEASE_BATCH_MAX */

typedef struct lease_batch lease_batch;

/* A batcher of up to `max` (2..LEASE_BATCH_CAP) requests taking connections
 * of `db` (borrowed; it outlives the batcher). *out is freed with
 * lease_batch_free(), after the last call has returned. */
orch_err lease_batch_new(orch_db_pool *db, int max, lease_batch **out) ORCH_NODISCARD;
void lease_batch_free(lease_batch *b);

/* lease_store_acquire() of `cl` in the next batch; `dl` bounds the wait for
 * a place in a batch (ORCH_ETIMEDOUT) and that batch's statement. On
 * success *alone says the batch did not decide it (run lease_store_acquire()
 * yourself); otherwise *out is its answer. Borrows cl for the call. */
orch_err lease_batch_acquire(lease_batch *b, uint64_t dl, const lease_claim *cl,
                             lease_acquired *out, bool *alone) ORCH_NODISCARD;

/* lease_store_release() of (`work_item`, `epoch`) with kind "released" by
 * actor "holder", in the next batch. On success *alone as above, else
 * *released is its answer. */
orch_err lease_batch_release(lease_batch *b, uint64_t dl, const char *work_item, uint64_t epoch,
                             bool *released, bool *alone) ORCH_NODISCARD;

#endif
