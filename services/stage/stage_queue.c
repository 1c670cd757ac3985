/*
 * stage_queue.c - the transition_lease block of the queue: held leases from
 * lease-service (its List, with each owner judged), matched to tasks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "stage_queue.h"

orch_code stage_queue_leases(stage_svc *ss, const stage_task *ts, int n, uint64_t deadline,
                             stage_queue *q)
{
    memset(q, 0, sizeof *q);
    q->lease = calloc((size_t)n + 1, sizeof *q->lease);
    q->liveness = calloc((size_t)n + 1, sizeof *q->liveness);
    if (!q->lease || !q->liveness) {
        snprintf(q->why, sizeof q->why, "out of memory");
        return ORCH_CODE_RESOURCE_EXHAUSTED;
    }
    if (n == 0 || !ss->scope.enabled)
        return ORCH_CODE_OK; /* switched off: there are no leases to show */
    orch_lease_list_req rq = { .held_only = true, .limit = 1000, .judge = true };
    uint64_t now = orch_mono_ms();
    uint64_t left = deadline > now ? deadline - now : 1;
    orch_rpc_call_opts o = { .timeout_ms = (uint32_t)(left < 10000 ? left : 10000) };
    orch_rpc_status st;
    if (orch_lease_list(ss->lease, &o, &rq, &st, &q->list) != ORCH_OK) {
        snprintf(q->why, sizeof q->why, "List: %s: %.200s", orch_code_name(st.code), st.message);
        return st.code == ORCH_CODE_DEADLINE_EXCEEDED ? st.code : ORCH_CODE_UNAVAILABLE;
    }
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < q->list.n; j++) {
            if (strcmp(q->list.leases[j]->work_item, ts[i].work_item) == 0) {
                q->lease[i] = q->list.leases[j];
                q->liveness[i] = q->list.liveness[j];
            }
        }
    }
    return ORCH_CODE_OK;
}

void stage_queue_free(stage_queue *q)
{
    orch_lease_list_res_free(&q->list);
    free(q->lease);
    free(q->liveness);
    memset(q, 0, sizeof *q);
}
