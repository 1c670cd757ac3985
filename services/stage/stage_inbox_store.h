/*
 * stage_inbox_store.h - the SQL of the webhook inbox (stage_inbox_store.c,
 * table webhook_inbox, migration 0009): its row, and the statements that
 * put, claim and settle events. stage_inbox.h says what the inbox is for.
 *
 * Threading: every function takes a checked-out connection and a deadline
 * and returns orch_err from db.h. Ownership: rows are copied out.
 */
#ifndef ORCH_STAGE_INBOX_STORE_H
#define ORCH_STAGE_INBOX_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "orch/db.h"
#include "stage_logic.h"

#define STAGE_INBOX_DELIVERY_MAX 200

typedef struct stage_inbox_row {
    int64_t id;
    char source[8]; /* gitea | plane */
    char delivery[STAGE_INBOX_DELIVERY_MAX + 1];
    char work_item[STAGE_MAX_FIELD + 1];
    stage_inbox_kind kind;
    stage_id seen_stage; /* where the item was when the event arrived */
    int seen_cycle;
    char state[12];   /* pending | applying | done */
    char outcome[16]; /* done: applied | superseded | gate_failed | rejected;
                       * pending: the last attempt's result ("deferred") */
    char detail[512];
    int attempts;
} stage_inbox_row;

const char *stage_inbox_kind_name(stage_inbox_kind k);

/* Inserts the event (id, state, outcome, attempts of *in are ignored)
 * unless (source, delivery) is already there. *out is the row, new or
 * found; *created says which. */
orch_err stage_inbox_put(orch_db_conn *c, uint64_t dl, const stage_inbox_row *in,
                         stage_inbox_row *out, bool *created) ORCH_NODISCARD;

/* Who claims inbox rows, and how old another's claim must be before it is
 * taken over (its claimer died). */
typedef struct stage_inbox_claimer {
    const char *claimer; /* host/pid/instance */
    int64_t stale_ms;
} stage_inbox_claimer;

/* Claims row `id` (any time, even before its next attempt is due) for
 * `who` if it is pending, or applying with a claim older than
 * who->stale_ms, and no older row of the same work item is still open.
 * *claimed says whether; *out is then the claimed row. */
orch_err stage_inbox_claim(orch_db_conn *c, uint64_t dl, int64_t id, const stage_inbox_claimer *who,
                           stage_inbox_row *out, bool *claimed) ORCH_NODISCARD;

/* Claims the oldest row that is due (pending past its next attempt, or a
 * stale claim) and has no older open row of its work item, skipping rows
 * another claimer is locking. *claimed false: nothing is due. */
orch_err stage_inbox_claim_next(orch_db_conn *c, uint64_t dl, const stage_inbox_claimer *who,
                                stage_inbox_row *out, bool *claimed) ORCH_NODISCARD;

/* How an attempt at row `id`, claimed by `claimer`, ends. */
typedef struct stage_inbox_settlement {
    int64_t id;
    const char *claimer;
    bool done; /* settled; false: pending again */
    const char *outcome, *detail;
    int64_t retry_ms; /* !done: due again after it */
} stage_inbox_settlement;

/* Ends s->claimer's claim of row s->id: done with s->outcome, or back to
 * pending (outcome = the attempt's result) due again in s->retry_ms.
 * *settled is false when the claim was taken over meanwhile (nothing
 * written). */
orch_err stage_inbox_settle(orch_db_conn *c, uint64_t dl, const stage_inbox_settlement *s,
                            bool *settled) ORCH_NODISCARD;

#endif
