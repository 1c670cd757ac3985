/*
 * guard_svc.h - guard-service's state shared by its RPC handlers, its store
 * and its upstream clients (internal to the service).
 *
 * Threading: read-only after the start hook, except the metrics (atomic).
 * The credentials live here and nowhere else in the system; they are never
 * logged, never put in a reply, never stored.
 */
#ifndef ORCH_GUARD_SVC_H
#define ORCH_GUARD_SVC_H

#include <stdbool.h>
#include <stdint.h>

#include "guard_logic.h"
#include "orch/db.h"
#include "orch/guard.h"
#include "orch/metrics.h"
#include "orch/svc.h"

typedef struct guard_svc {
    orch_db_pool *db;
    orch_runtime runtime;

    const char *plane_base, *plane_key, *plane_ws, *plane_prod;
    const char *plane_sandbox;
    bool plane_opt_in;
    uint32_t plane_timeout_ms;
    size_t comment_max;

    const char *tg_base, *tg_token, *tg_chat, *tg_test_chat, *tg_sandbox;
    bool tg_opt_in;
    uint32_t tg_timeout_ms;
    int tg_attempts;
    int64_t tg_max_retry_after_s;

    orch_counter *m_decisions; /* operation x decision */
    orch_counter *m_upstream;  /* upstream x outcome */
    orch_counter *m_comment_dups;
} guard_svc;

enum { GUARD_PLANE, GUARD_TELEGRAM, GUARD_NUPSTREAMS };

/* ---- store (guard_store.c): every SQL statement ------------------------- */

typedef struct guard_audit_row {
    int64_t id, at_ms;
    char runtime[16], operation[32], project[GUARD_ID_MAX + 1], decision[8], reason[160],
        caller[96];
} guard_audit_row;

orch_err guard_store_audit(orch_db_pool *db, uint64_t dl, const char *runtime, const char *op,
                           const char *project, bool allow, const char *reason,
                           const char *caller) ORCH_NODISCARD;
/* Up to `max` newest rows matching the filters ("" = any) into rows. */
orch_err guard_store_list_audit(orch_db_pool *db, uint64_t dl, const char *op, const char *decision,
                                guard_audit_row *rows, int max, int *n) ORCH_NODISCARD;

typedef enum guard_claim { GUARD_CLAIMED, GUARD_ALREADY_POSTED, GUARD_IN_FLIGHT } guard_claim;
/* Claims external_id for a post; on GUARD_ALREADY_POSTED comment_id gets
 * the tracker's id. */
orch_err guard_store_claim_comment(orch_db_pool *db, uint64_t dl, const char *external_id,
                                   const char *project, const char *issue, guard_claim *out,
                                   char *comment_id, size_t n) ORCH_NODISCARD;
orch_err guard_store_comment_posted(orch_db_pool *db, uint64_t dl, const char *external_id,
                                    const char *comment_id) ORCH_NODISCARD;
orch_err guard_store_comment_failed(orch_db_pool *db, uint64_t dl,
                                    const char *external_id) ORCH_NODISCARD;

/* ---- upstreams (guard_upstream.c) --------------------------------------- */

typedef struct guard_result {
    guard_outcome outcome;
    long status; /* HTTP status, 0 if none */
    int attempts;
    int64_t retry_after_s; /* of the last 429, -1 if none */
    char id[GUARD_ID_MAX + 1];
    int64_t message_id;
    char detail[256]; /* free of secrets */
} guard_result;

void guard_plane_set_state(guard_svc *g, const char *project, const char *issue,
                           const char *state_id, uint64_t dl, guard_result *r);
void guard_plane_resolve_state(guard_svc *g, const char *project, const char *name, uint64_t dl,
                               guard_result *r);
void guard_plane_comment(guard_svc *g, const char *project, const char *issue, const char *text,
                         const char *external_id, uint64_t dl, guard_result *r);
void guard_telegram_send(guard_svc *g, const char *chat, const char *text, uint64_t dl,
                         guard_result *r);

/* ---- RPC (guard_rpc.c) -------------------------------------------------- */

orch_err guard_rpc_register(orch_service *svc, guard_svc *g) ORCH_NODISCARD;

#endif
