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
    Orch__V1__ListLeasesRequest rq = ORCH__V1__LIST_LEASES_REQUEST__INIT;
    rq.held_only = true;
    rq.limit = 1000;
    rq.judge = true;
    uint64_t now = orch_mono_ms();
    uint64_t left = deadline > now ? deadline - now : 1;
    orch_rpc_call_opts o = { .timeout_ms = (uint32_t)(left < 10000 ? left : 10000) };
    orch_rpc_status st;
    orch_code code = orch_rpc_invoke(ss->lease, "orch.v1.LeaseService/List", &rq.base,
                                     &orch__v1__list_leases_reply__descriptor, &o, &st,
                                     (ProtobufCMessage **)&q->reply);
    if (code) {
        snprintf(q->why, sizeof q->why, "List: %s: %.200s", orch_code_name(code), st.message);
        return code == ORCH_CODE_DEADLINE_EXCEEDED ? code : ORCH_CODE_UNAVAILABLE;
    }
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < q->reply->n_leases; j++) {
            if (strcmp(q->reply->leases[j]->work_item, ts[i].work_item) == 0) {
                q->lease[i] = q->reply->leases[j];
                q->liveness[i] =
                    j < q->reply->n_liveness ? q->reply->liveness[j] : ORCH__V1__LIVENESS__UNKNOWN;
            }
        }
    }
    return ORCH_CODE_OK;
}

void stage_queue_free(stage_queue *q)
{
    if (q->reply)
        protobuf_c_message_free_unpacked(&q->reply->base, NULL);
    free(q->lease);
    free(q->liveness);
    memset(q, 0, sizeof *q);
}
