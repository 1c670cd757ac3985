/*
 * stage_inbox.h - the durable inbox of webhook events (stage_inbox.c; its
 * SQL is stage_inbox_store.h): nothing a sender told us is lost.
 *
 * Neither sender retries an event we answered: Gitea records a non-2xx
 * answer as a failed delivery and never redelivers by itself, and Plane
 * retries only when no answer came at all. So every event to act on is
 * written to the inbox before the sender is answered; the HTTP route then
 * tries it at once, and whatever could not be applied yet (a held lease,
 * lease-service or the forge unreachable) is applied by the inbox thread
 * once it can be, oldest first per work item. An event is settled once:
 * applied, superseded (the item moved on: the event no longer applies),
 * gate_failed or rejected.
 *
 * Exactly once: a row is worked on only by the caller that claimed it (one
 * UPDATE on state); a claim older than the stale bound is taken over (its
 * claimer died), which is safe because applying goes through the engine's
 * expected-stage CAS and intents, and a review event applies only in the
 * stage and cycle it arrived in.
 *
 * Threading: the apply and pass functions are called by the HTTP workers
 * and the inbox thread. The rule of which edge an event asks and how an
 * engine answer settles it is in stage_logic.h.
 */
#ifndef ORCH_STAGE_INBOX_H
#define ORCH_STAGE_INBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "stage_inbox_store.h"
#include "stage_svc.h"

typedef struct stage_inbox_result {
    bool done;        /* settled; false: put back, due again in retry_ms */
    char outcome[16]; /* applied | superseded | gate_failed | rejected, or
                       * the attempt's result: deferred, effect_failed... */
    char detail[700];
    int64_t retry_ms;
    bool ran;                   /* an engine call ran */
    stage_result result;        /* ran: the result of the last engine call */
    stage_failure_kind failure; /* of the last engine call: NONE when it had a result */
    stage_id stage;             /* the item's stage after the attempt */
    uint64_t epoch;
    char holder[STAGE_MAX_FIELD + 1]; /* deferred: the lease holder's actor */
} stage_inbox_result;

/* Applies inbox row `row`, which this process claimed, through the engine
 * and settles it (done, or pending again with a backoff). Puts the row's
 * work_item, and the epoch of the last engine call's grant, into this
 * thread's log context; the caller clears it (orch_log_ctx_clear). */
void stage_inbox_apply(stage_svc *ss, const stage_inbox_row *row, stage_inbox_result *res);
/* Claims and applies the events that are due (bounded); returns how many. */
int stage_inbox_pass(stage_svc *ss);
/* The inbox ticker's pass (`arg` is the stage_svc): stage_inbox_pass(),
 * every half second; always true. */
bool stage_inbox_tick(void *arg);
/* How old a claim must be before another claimer takes it over. */
int64_t stage_inbox_stale_ms(const stage_svc *ss);

#endif
