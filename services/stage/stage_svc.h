/*
 * stage_svc.h - stage-service's state shared by its RPC handlers, HTTP
 * routes, the engine and the background threads (internal to the service).
 * The modules that use it declare their functions in their own headers
 * (stage_engine.h, stage_intents.h, stage_queue.h, stage_inbox.h,
 * stage_rpc.h, stage_http.h, stage_bg.h).
 *
 * Threading: read-only after start except the call sequence and metrics
 * (atomics); the release-later queue (orch/lease_client.h) is thread-safe.
 */
#ifndef ORCH_STAGE_SVC_H
#define ORCH_STAGE_SVC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "orch/lease_client.h"
#include "orch/metrics.h"
#include "orch/rpc.h"
#include "orch/svc.h"
#include "orch/ticker.h"
#include "stage_effects.h"
#include "stage_fault.h"
#include "stage_store.h"

#define STAGE_EDGE_LABELS_MAX 32

typedef struct stage_svc {
    orch_db_pool *db;
    const orch_ident *me;
    orch_rpc_client *lease;        /* lease-service */
    orch_lease_releaser *releaser; /* releases retried in the background; stage_bg.c */
    orch_lease_scope scope;
    uint32_t lease_timeout_ms;
    stage_effects_cfg effects;
    size_t max_evidence;
    const char *operator_token;
    const char *gitea_secret, *plane_secret;
    const char *plane_project_key; /* work item prefix of Plane issues */
    int64_t reconcile_interval_ms;
    int reconcile_batch;
    int64_t reconcile_cursor; /* last task id of the previous pass (reconciler thread) */
    stage_fault fault;        /* armed fault point (stage_fault.h); test builds only */

    _Atomic uint64_t call_seq;

    orch_counter *m_transitions; /* by edge and result */
    orch_counter *m_effects;     /* by effect and outcome */
    /* Label values of the edge label: "review->testing" for each pipeline
     * edge in table order, then "other" (a request naming no edge). */
    const char *edge_labels[STAGE_EDGE_LABELS_MAX];
    char edge_label_buf[STAGE_EDGE_LABELS_MAX][32];
    size_t nedge_labels;
    orch_histogram *m_advance_latency;

    char inbox_claimer[400]; /* host/pid/instance: who claims inbox rows */

    /* stage_bg.c's periodic threads (ticker.h), NULL when not running. */
    orch_ticker *reconcile_ticker, *inbox_ticker;
    uint64_t next_reconcile_ms; /* reconciler thread only */
} stage_svc;

#endif
