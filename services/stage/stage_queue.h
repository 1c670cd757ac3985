/*
 * stage_queue.h - the transition_lease block of the queue (stage_queue.c):
 * held leases from lease-service (its List, with each owner judged),
 * matched to tasks. Used by ListQueue and GET /queue.
 *
 * Threading: any worker. Ownership: a stage_queue owns its reply and
 * arrays; free with stage_queue_free.
 */
#ifndef ORCH_STAGE_QUEUE_H
#define ORCH_STAGE_QUEUE_H

#include "orch/lease_client.h"
#include "orch/v1/lease.pb-c.h"
#include "stage_svc.h"

typedef struct stage_queue {
    orch_lease_list_res list;     /* owned */
    Orch__V1__Lease **lease;      /* per task: its held lease or NULL (borrowed) */
    Orch__V1__Liveness *liveness; /* per task */
    char why[300];                /* on error */
} stage_queue;

/* Asks lease-service for the held leases (judged) and matches them to the
 * `n` tasks. An error code with q->why if lease-service cannot answer. */
orch_code stage_queue_leases(stage_svc *ss, const stage_task *ts, int n, uint64_t deadline,
                             stage_queue *q);
void stage_queue_free(stage_queue *q);

#endif
