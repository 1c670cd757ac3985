/*
 * stage_bench_direct.h - stage_bench's "direct transition" stack and its
 * commit counter.
 *
 * A direct transition is what stage-service does for one AdvanceStage,
 * statement for statement and in order, sent by the caller itself over a
 * database connection of its own (the project's libpq layer, prepared
 * statements as in the services): read the task; lease-service's Acquire
 * statement; read the task again and the verdicts the gates read; run the
 * gates; for an edge with an effect, claim its intent, POST the hook and
 * write the outcome with the stage; the stage write (CAS, history, release
 * of the lease). No RPC, no lease-service, no stage-service: what is left
 * of the service's time over this is overhead, not necessary work.
 *
 * Threading: sbd_transition() on any thread, each with its own connection.
 * Errors: false with a message in `err`. Ownership: arguments borrowed.
 */
#ifndef ORCH_STAGE_BENCH_DIRECT_H
#define ORCH_STAGE_BENCH_DIRECT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "orch/db.h"

typedef struct sbd_call {
    const char *work_item, *repo, *from, *to, *actor;
    unsigned hook_port; /* the hook imitation, for an edge with an effect */
} sbd_call;

typedef enum {
    SBD_ADVANCED, /* the CAS won */
    SBD_HELD,     /* the lease was held: nothing else ran (the service's DEFERRED) */
    SBD_LOST,     /* the task moved under the lease, or the CAS lost (ABORTED) */
    SBD_STALE,    /* the task was not in `from` at the first read (FAILED_PRECONDITION) */
    SBD_ERROR     /* with a message in `err` */
} sbd_result;

/* One direct transition. A grant that the stage write did not release is
 * released with lease-service's Release statement, as the service does. */
sbd_result sbd_transition(orch_db_conn *c, const sbd_call *call, char *err, size_t n);

/* The WAL position now, into `lsn` (for sbd_commits_since). */
bool sbd_wal_mark(PGconn *admin, char *lsn, size_t n);
/* Durable commits that wrote the stage or lease tables since `lsn`
 * (tests/support/wal_commits.h); -1 on error (pg_walinspect missing). */
long sbd_commits_since(PGconn *admin, const char *lsn);

#endif
