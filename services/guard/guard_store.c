/*
 * guard_store.c - every SQL statement of guard-service (guard_audit,
 * guard_comments). Each function borrows a pooled connection for its
 * statements only.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard_svc.h"

#define CLAIM_WINDOW_S "300"

static const char sql_audit[] =
    "INSERT INTO guard_audit (runtime, operation, project, decision, reason, caller) "
    "VALUES ($1, $2, $3, $4, $5, $6)";

static const char sql_list[] =
    "SELECT id, (extract(epoch FROM at) * 1000)::bigint, runtime, operation, project, decision, "
    "reason, caller FROM guard_audit "
    "WHERE ($1 = '' OR operation = $1) AND ($2 = '' OR decision = $2) "
    "ORDER BY id DESC LIMIT $3::int";

static const char sql_claim[] =
    "INSERT INTO guard_comments (external_id, project, issue, state) "
    "VALUES ($1, $2, $3, 'pending') "
    "ON CONFLICT (external_id) DO UPDATE SET claimed_at = now(), project = $2, issue = $3 "
    "WHERE guard_comments.state = 'pending' "
    "  AND guard_comments.claimed_at < now() - interval '" CLAIM_WINDOW_S " seconds' "
    "RETURNING 1";

static const char sql_comment_get[] =
    "SELECT state, comment_id FROM guard_comments WHERE external_id = $1";

static const char sql_posted[] =
    "UPDATE guard_comments SET state = 'posted', comment_id = $2, posted_at = now() "
    "WHERE external_id = $1";

static const char sql_failed[] =
    "DELETE FROM guard_comments WHERE external_id = $1 AND state = 'pending'";

static orch_err exec1(orch_db_pool *db, uint64_t dl, const char *sql, int n, const char *const *p,
                      orch_db_result **out)
{
    orch_db_conn *c;
    orch_err err = orch_db_acquire(db, dl, &c);
    if (err)
        return err;
    err = orch_db_exec(c, dl, sql, n, p, out);
    orch_db_release(c);
    return err;
}

orch_err guard_store_audit(orch_db_pool *db, uint64_t dl, const char *runtime, const char *op,
                           const char *project, bool allow, const char *reason, const char *caller)
{
    const char *p[] = {
        runtime, op, project ? project : "", allow ? "allow" : "block", reason, caller ? caller : ""
    };
    return exec1(db, dl, sql_audit, 6, p, NULL);
}

static void cp(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

orch_err guard_store_list_audit(orch_db_pool *db, uint64_t dl, const char *op, const char *decision,
                                guard_audit_row *rows, int max, int *n)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", max);
    const char *p[] = { op, decision, lim };
    orch_db_result *r;
    orch_err err = exec1(db, dl, sql_list, 3, p, &r);
    if (err)
        return err;
    int k = orch_db_result_rows(r);
    if (k > max)
        k = max;
    for (int i = 0; i < k; i++) {
        guard_audit_row *a = &rows[i];
        a->id = strtoll(orch_db_result_get(r, i, 0), NULL, 10);
        a->at_ms = strtoll(orch_db_result_get(r, i, 1), NULL, 10);
        cp(a->runtime, sizeof a->runtime, orch_db_result_get(r, i, 2));
        cp(a->operation, sizeof a->operation, orch_db_result_get(r, i, 3));
        cp(a->project, sizeof a->project, orch_db_result_get(r, i, 4));
        cp(a->decision, sizeof a->decision, orch_db_result_get(r, i, 5));
        cp(a->reason, sizeof a->reason, orch_db_result_get(r, i, 6));
        cp(a->caller, sizeof a->caller, orch_db_result_get(r, i, 7));
    }
    orch_db_result_free(r);
    *n = k;
    return ORCH_OK;
}

orch_err guard_store_claim_comment(orch_db_pool *db, uint64_t dl, const char *external_id,
                                   const char *project, const char *issue, guard_claim *out,
                                   char *comment_id, size_t n)
{
    orch_db_conn *c;
    orch_db_result *r = NULL;
    orch_err err = orch_db_acquire(db, dl, &c);
    if (err)
        return err;
    const char *p[] = { external_id, project, issue };
    err = orch_db_exec(c, dl, sql_claim, 3, p, &r);
    if (!err && orch_db_result_rows(r) == 1) {
        *out = GUARD_CLAIMED;
    } else if (!err) {
        orch_db_result_free(r);
        r = NULL;
        err = orch_db_exec(c, dl, sql_comment_get, 1, p, &r);
        if (!err && orch_db_result_rows(r) == 1) {
            bool posted = strcmp(orch_db_result_get(r, 0, 0), "posted") == 0;
            *out = posted ? GUARD_ALREADY_POSTED : GUARD_IN_FLIGHT;
            cp(comment_id, n, orch_db_result_get(r, 0, 1));
        } else if (!err) {
            err = ORCH_EDB_RETRY; /* deleted between the two statements */
        }
    }
    orch_db_result_free(r);
    orch_db_release(c);
    return err;
}

orch_err guard_store_comment_posted(orch_db_pool *db, uint64_t dl, const char *external_id,
                                    const char *comment_id)
{
    const char *p[] = { external_id, comment_id ? comment_id : "" };
    return exec1(db, dl, sql_posted, 2, p, NULL);
}

orch_err guard_store_comment_failed(orch_db_pool *db, uint64_t dl, const char *external_id)
{
    const char *p[] = { external_id };
    return exec1(db, dl, sql_failed, 1, p, NULL);
}
