/*
 * lease_store.c - see lease_store.h. The only file of lease-service that
 * holds SQL. All statements are parameterized; the database clock stamps
 * every time. Every statement that writes is sent with orch_db_exec_write():
 * one whose outcome never came back (the connection lost after it was sent,
 * or its deadline passed after it was sent) is ORCH_EDB_UNKNOWN, answered
 * UNKNOWN, never UNAVAILABLE (the caller reads back; it may have committed).
 */
#include "lease_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_COLUMNS                                                            \
    "work_item, epoch, owner_host, owner_boot_id, owner_pid, owner_start_ticks," \
    " owner_instance, actor, transition, repo,"                                  \
    " (extract(epoch FROM acquired_at) * 1000)::bigint,"                         \
    " coalesce((extract(epoch FROM released_at) * 1000)::bigint, 0),"            \
    " coalesce(release_reason, ''), released_at IS NULL,"                        \
    " greatest(0, extract(epoch FROM now() - acquired_at))::bigint"

/* The grant's upsert, of lease_sql_acquire and of its batch: a new row at
 * epoch 1, or a released row taken again at the next epoch. */
#define LEASE_GRANT_INTO                                                               \
    " INSERT INTO transition_lease AS l (work_item, epoch, owner_host, owner_boot_id," \
    "   owner_pid, owner_start_ticks, owner_instance, actor, transition, repo, acquired_at)"
#define LEASE_GRANT_CONFLICT                                                             \
    " ON CONFLICT (work_item) DO UPDATE SET epoch = l.epoch + 1,"                        \
    "   owner_host = EXCLUDED.owner_host, owner_boot_id = EXCLUDED.owner_boot_id,"       \
    "   owner_pid = EXCLUDED.owner_pid, owner_start_ticks = EXCLUDED.owner_start_ticks," \
    "   owner_instance = EXCLUDED.owner_instance, actor = EXCLUDED.actor,"               \
    "   transition = EXCLUDED.transition, repo = EXCLUDED.repo, acquired_at = now(),"    \
    "   released_at = NULL, release_reason = NULL"                                       \
    " WHERE l.released_at IS NOT NULL"

/* Statement texts shared with the lease benchmark (lease_store.h). */

/* One round trip for Acquire: `cur` is the lease as this statement's
 * snapshot sees it; only when it is absent or released does `g` try the
 * conditional upsert (so callers that find it held take no row lock and
 * never wait), and `e` appends the 'granted' event in the same statement,
 * hence the same commit. The single row returned is the new epoch (NULL
 * unless granted) followed by the lease columns of `cur` (NULLs if none). */
#define LEASE_ACQUIRE_AFTER_CUR                                                            \
    " g AS (" LEASE_GRANT_INTO                                                             \
    " SELECT $1, 1, $2, $3, $4::integer, $5::bigint, $6, $7, $8, $9, now()"                \
    " WHERE NOT EXISTS (SELECT 1 FROM cur WHERE released_at IS NULL)" LEASE_GRANT_CONFLICT \
    " RETURNING work_item AS g_item, epoch AS g_epoch),"                                   \
    " e AS (INSERT INTO lease_events (work_item, epoch, kind, actor, detail)"              \
    "   SELECT g_item, g_epoch, 'granted', $7, $8 FROM g)"                                 \
    " SELECT g.g_epoch, " LEASE_COLUMNS                                                    \
    " FROM (SELECT 1) AS one LEFT JOIN g ON true LEFT JOIN cur ON true"
const char lease_sql_acquire[] =
    "WITH cur AS (SELECT * FROM transition_lease WHERE work_item = $1)," LEASE_ACQUIRE_AFTER_CUR;

#define LEASE_RELEASE_UPDATE                                                \
    " UPDATE transition_lease SET released_at = now(), release_reason = $3" \
    " WHERE work_item = $1 AND epoch = $2::bigint AND released_at IS NULL"
#define LEASE_RELEASE_AFTER_UPDATE                                            \
    " RETURNING work_item, epoch),"                                           \
    " e AS (INSERT INTO lease_events (work_item, epoch, kind, actor, detail)" \
    "   SELECT work_item, epoch, $3, $4, $5 FROM r)"                          \
    " SELECT epoch FROM r"
const char lease_sql_release[] = "WITH r AS (" LEASE_RELEASE_UPDATE LEASE_RELEASE_AFTER_UPDATE;

/* A batch of one runs the single statement, with the batch's bound on lock
 * waits: `s` sets lock_timeout to LEASE_BATCH_LOCK_WAIT for the statement's
 * transaction, and is read (a one-time filter) before the statement can
 * take or wait for any row lock; past it the statement fails with 55P03 and
 * the request runs alone (lease_batch.c), as after a batch statement's. */
#define LEASE_BATCH_LOCK_WAIT "100ms"
#define LEASE_BOUND_LOCK_WAIT \
    "WITH s AS (SELECT set_config('lock_timeout', '" LEASE_BATCH_LOCK_WAIT "', true)),"
static const char sql_acquire_bounded[] =
    LEASE_BOUND_LOCK_WAIT " cur AS (SELECT * FROM transition_lease WHERE work_item = $1"
                          "   AND (SELECT true FROM s))," LEASE_ACQUIRE_AFTER_CUR;
static const char sql_release_bounded[] = LEASE_BOUND_LOCK_WAIT
    " r AS (" LEASE_RELEASE_UPDATE " AND (SELECT true FROM s)" LEASE_RELEASE_AFTER_UPDATE;

/* set_config(..., true) lasts for this statement's transaction, whose commit
 * then does not wait for the WAL flush. */
const char lease_sql_event_async[] =
    "WITH s AS (SELECT set_config('synchronous_commit', 'off', true))"
    " INSERT INTO lease_events (work_item, epoch, kind, actor, detail)"
    " SELECT $1, $2::bigint, $3, $4, $5 FROM s";

const char lease_sql_get[] = "SELECT " LEASE_COLUMNS " FROM transition_lease WHERE work_item = $1";

/* The reaper's reads: the held leases after a work item (of a host), and
 * those over the ceiling. Plain reads: they take no lock, wait for none. */
const char lease_sql_list_held_after[] =
    "SELECT " LEASE_COLUMNS " FROM transition_lease"
    " WHERE released_at IS NULL AND ($1 = '' OR owner_host = $1)"
    "   AND work_item > $2 ORDER BY work_item LIMIT $3::integer";
const char lease_sql_list_over_ceiling[] =
    "SELECT " LEASE_COLUMNS " FROM transition_lease WHERE released_at IS NULL"
    "   AND acquired_at < now() - make_interval(secs => $1::double precision)"
    " ORDER BY acquired_at, work_item LIMIT $2::integer";

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static uint64_t to_u64(const char *s)
{
    return s ? strtoull(s, NULL, 10) : 0;
}

/* Reads the LEASE_COLUMNS of row i starting at column `at`. */
static void read_row_at(const orch_db_result *r, int i, int at, lease_row *out)
{
    memset(out, 0, sizeof *out);
    copy(out->work_item, sizeof out->work_item, orch_db_result_get(r, i, at));
    out->epoch = to_u64(orch_db_result_get(r, i, at + 1));
    copy(out->owner.host_id, sizeof out->owner.host_id, orch_db_result_get(r, i, at + 2));
    copy(out->owner.boot_id, sizeof out->owner.boot_id, orch_db_result_get(r, i, at + 3));
    out->owner.pid = (int32_t)strtol(orch_db_result_get(r, i, at + 4), NULL, 10);
    out->owner.start_ticks = to_u64(orch_db_result_get(r, i, at + 5));
    copy(out->owner.instance_id, sizeof out->owner.instance_id, orch_db_result_get(r, i, at + 6));
    copy(out->actor, sizeof out->actor, orch_db_result_get(r, i, at + 7));
    copy(out->transition, sizeof out->transition, orch_db_result_get(r, i, at + 8));
    copy(out->repo, sizeof out->repo, orch_db_result_get(r, i, at + 9));
    out->acquired_ms = to_u64(orch_db_result_get(r, i, at + 10));
    out->released_ms = to_u64(orch_db_result_get(r, i, at + 11));
    copy(out->release_reason, sizeof out->release_reason, orch_db_result_get(r, i, at + 12));
    const char *held = orch_db_result_get(r, i, at + 13);
    out->held = held && held[0] == 't';
    out->age_s = to_u64(orch_db_result_get(r, i, at + 14));
}

static void read_row(const orch_db_result *r, int i, lease_row *out)
{
    read_row_at(r, i, 0, out);
}

/* Runs a writing statement whose first column of an optional single row is
 * an epoch. */
static orch_err exec_epoch(orch_db_conn *c, uint64_t dl, const char *sql, int n,
                           const char *const *p, bool *hit, uint64_t *epoch)
{
    orch_db_result *r;
    orch_err err = orch_db_exec_write(c, dl, sql, n, p, &r);
    if (err)
        return err;
    *hit = orch_db_result_rows(r) == 1;
    if (*hit)
        *epoch = to_u64(orch_db_result_get(r, 0, 0));
    orch_db_result_free(r);
    return ORCH_OK;
}

typedef struct claim_params {
    char pid[16], ticks[24];
    const char *v[9];
} claim_params;

static void claim_params_fill(claim_params *cp, const lease_claim *cl)
{
    snprintf(cp->pid, sizeof cp->pid, "%" PRId32, cl->owner->pid);
    snprintf(cp->ticks, sizeof cp->ticks, "%" PRIu64, cl->owner->start_ticks);
    const char *v[9] = { cl->work_item, cl->owner->host_id, cl->owner->boot_id,
                         cp->pid,       cp->ticks,          cl->owner->instance_id,
                         cl->actor,     cl->transition,     cl->repo };
    memcpy(cp->v, v, sizeof v);
}

/* lease_store_acquire() with `sql`: lease_sql_acquire or its bounded twin. */
static orch_err acquire_with(orch_db_conn *c, uint64_t dl, const char *sql, const lease_claim *cl,
                             bool *granted, uint64_t *epoch, lease_row *row, bool *found)
{
    claim_params cp;
    orch_db_result *r;
    claim_params_fill(&cp, cl);
    orch_err err = orch_db_exec_write(c, dl, sql, 9, cp.v, &r);
    if (err)
        return err;
    const char *ep = orch_db_result_rows(r) == 1 ? orch_db_result_get(r, 0, 0) : NULL;
    *granted = ep != NULL;
    if (*granted)
        *epoch = to_u64(ep);
    *found = orch_db_result_rows(r) == 1 && orch_db_result_get(r, 0, 1) != NULL;
    if (*found)
        read_row_at(r, 0, 1, row);
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err lease_store_acquire(orch_db_conn *c, uint64_t dl, const lease_claim *cl, bool *granted,
                             uint64_t *epoch, lease_row *row, bool *found)
{
    return acquire_with(c, dl, lease_sql_acquire, cl, granted, epoch, row, found);
}

/* A PostgreSQL array literal of quoted elements, built by arr_add(). */
typedef struct arr {
    char *s;
    size_t len, cap;
    bool oom;
} arr;

static void arr_put(arr *a, char ch)
{
    if (a->oom)
        return;
    if (a->len + 2 > a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 256;
        char *s = realloc(a->s, nc);
        if (!s) {
            a->oom = true;
            return;
        }
        a->s = s;
        a->cap = nc;
    }
    a->s[a->len++] = ch;
    a->s[a->len] = '\0';
}

/* Appends `v` as one element: quoted, with backslash and quote escaped. */
static void arr_add(arr *a, const char *v)
{
    arr_put(a, a->len ? ',' : '{');
    arr_put(a, '"');
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            arr_put(a, '\\');
        arr_put(a, *p);
    }
    arr_put(a, '"');
}

static void arr_end(arr *a)
{
    if (!a->len)
        arr_put(a, '{');
    arr_put(a, '}');
}

/* The batch statements read their array parameters through scalar
 * subqueries ("(SELECT $1::text[])"): the planner's estimate of a batch's
 * rows then does not depend on the arrays, so a plan made for the values
 * costs no less than the prepared statement's generic plan, and from the
 * sixth execution on the connection keeps that plan (plan_cache_mode auto)
 * instead of planning every batch again, which took PostgreSQL more CPU
 * than running it. The generic plan fits any batch size: every row is
 * found by its primary key. */
/* One row per claim, numbered from 1 in `i_ord`; `cur` is the leases as
 * the statement's snapshot sees them. `k` locks the released rows of the
 * claims, in work-item order, skipping any row another transaction has
 * locked (SKIP LOCKED). `g` grants only to claims whose lease is absent, or
 * released and locked by `k`, as lease_sql_acquire does; a claim whose
 * released row was skipped is not decided here (`alone`). Each returned row
 * is a claim's number, its new epoch (NULL unless granted), `alone`, and
 * the lease columns of `cur` (NULLs if none).
 * SKIP LOCKED cannot cover `g`'s upsert: a lease absent from the snapshot
 * (a new item another transaction is inserting, or a row committed since
 * and locked again) makes it wait. `s`, read by `i` before any row is
 * written, bounds every lock wait of this statement's transaction to
 * LEASE_BATCH_LOCK_WAIT; past it the statement fails with 55P03
 * (ORCH_EDB_LOCKED), nothing is written, and every claim runs alone
 * (lease_batch.c), waiting there as it would with group commit off. */
static const char sql_acquire_batch[] = LEASE_BOUND_LOCK_WAIT
    " i AS (SELECT i.* FROM s, unnest((SELECT $1::text[]), (SELECT $2::text[]),"
    "   (SELECT $3::text[]), (SELECT $4::integer[]), (SELECT $5::bigint[]),"
    "   (SELECT $6::text[]), (SELECT $7::text[]), (SELECT $8::text[]),"
    "   (SELECT $9::text[])) WITH ORDINALITY"
    "   AS i(i_item, i_host, i_boot, i_pid, i_ticks, i_inst, i_actor, i_trans, i_repo, i_ord)),"
    " cur AS (SELECT t.* FROM transition_lease t JOIN i ON t.work_item = i.i_item),"
    " k AS MATERIALIZED (SELECT t.work_item AS k_item FROM transition_lease t"
    "   JOIN i ON t.work_item = i.i_item WHERE t.released_at IS NOT NULL"
    "   ORDER BY t.work_item FOR UPDATE OF t SKIP LOCKED),"
    " g AS (" LEASE_GRANT_INTO
    " SELECT i_item, 1, i_host, i_boot, i_pid, i_ticks, i_inst, i_actor, i_trans, i_repo, now()"
    " FROM i WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.work_item = i.i_item"
    "   AND (cur.released_at IS NULL OR NOT EXISTS (SELECT 1 FROM k WHERE k_item = i.i_item)))"
    " ORDER BY i_item" LEASE_GRANT_CONFLICT
    " RETURNING work_item AS g_item, epoch AS g_epoch, actor AS g_actor, transition AS g_trans),"
    " e AS (INSERT INTO lease_events (work_item, epoch, kind, actor, detail)"
    "   SELECT g_item, g_epoch, 'granted', g_actor, g_trans FROM g ORDER BY g_item)"
    " SELECT i.i_ord, g.g_epoch,"
    "   cur.released_at IS NOT NULL AND k.k_item IS NULL AND g.g_item IS NULL, " LEASE_COLUMNS
    " FROM i LEFT JOIN g ON g.g_item = i.i_item LEFT JOIN cur ON cur.work_item = i.i_item"
    " LEFT JOIN k ON k.k_item = i.i_item ORDER BY i.i_ord";

/* Reads the answers of sql_acquire_batch into out[]. */
static orch_err read_acquired(const orch_db_result *r, size_t n, lease_acquired *const *out)
{
    if ((size_t)orch_db_result_rows(r) != n)
        return ORCH_EDB;
    for (int i = 0; i < (int)n; i++) {
        uint64_t ord = to_u64(orch_db_result_get(r, i, 0));
        if (ord < 1 || ord > n)
            return ORCH_EDB;
        lease_acquired *a = out[ord - 1];
        const char *ep = orch_db_result_get(r, i, 1);
        const char *alone = orch_db_result_get(r, i, 2);
        a->granted = ep != NULL;
        a->epoch = to_u64(ep);
        a->alone = alone && alone[0] == 't';
        a->found = orch_db_result_get(r, i, 3) != NULL;
        if (a->found)
            read_row_at(r, i, 3, &a->row);
    }
    return ORCH_OK;
}

orch_err lease_store_acquire_batch(orch_db_conn *c, uint64_t dl, const lease_claim *const *cl,
                                   size_t n, lease_acquired *const *out)
{
    if (n == 1) {
        lease_acquired *a = out[0];
        a->alone = false;
        return acquire_with(c, dl, sql_acquire_bounded, cl[0], &a->granted, &a->epoch, &a->row,
                            &a->found);
    }
    arr a[9] = { 0 };
    orch_err err = ORCH_OK;
    for (size_t k = 0; k < n; k++) {
        claim_params cp;
        claim_params_fill(&cp, cl[k]);
        for (int j = 0; j < 9; j++)
            arr_add(&a[j], cp.v[j]);
    }
    const char *p[9];
    for (int j = 0; j < 9; j++) {
        arr_end(&a[j]);
        if (a[j].oom)
            err = ORCH_ENOMEM;
        p[j] = a[j].s;
    }
    orch_db_result *r = NULL;
    if (!err)
        err = orch_db_exec_write(c, dl, sql_acquire_batch, 9, p, &r);
    if (!err)
        err = read_acquired(r, n, out);
    orch_db_result_free(r);
    for (int j = 0; j < 9; j++)
        free(a[j].s);
    return err;
}

orch_err lease_store_reclaim(orch_db_conn *c, uint64_t dl, const lease_claim *cl,
                             uint64_t seen_epoch, const char *why, bool *granted, uint64_t *epoch)
{
    static const char sql[] =
        "WITH r AS ("
        " UPDATE transition_lease SET epoch = epoch + 1, owner_host = $2, owner_boot_id = $3,"
        "   owner_pid = $4::integer, owner_start_ticks = $5::bigint, owner_instance = $6,"
        "   actor = $7, transition = $8, repo = $9, acquired_at = now(),"
        "   released_at = NULL, release_reason = NULL"
        " WHERE work_item = $1 AND epoch = $10::bigint AND released_at IS NULL"
        " RETURNING work_item, epoch),"
        " e AS (INSERT INTO lease_events (work_item, epoch, kind, actor, detail)"
        "   SELECT work_item, epoch - 1, 'reclaimed-stale', $7, $11 FROM r"
        "   UNION ALL SELECT work_item, epoch, 'granted', $7, $8 FROM r)"
        " SELECT epoch FROM r";
    claim_params cp;
    char seen[24];
    claim_params_fill(&cp, cl);
    snprintf(seen, sizeof seen, "%" PRIu64, seen_epoch);
    const char *p[11];
    memcpy(p, cp.v, sizeof cp.v);
    p[9] = seen;
    p[10] = why;
    return exec_epoch(c, dl, sql, 11, p, granted, epoch);
}

orch_err lease_store_regrant(orch_db_conn *c, uint64_t dl, const lease_claim *cl,
                             uint64_t seen_epoch, bool *granted, uint64_t *epoch)
{
    /* Only the epoch moves (owner, actor, transition and acquired_at stay):
     * the earlier epoch is no longer the live grant, so a release fenced on
     * it (a late grant's) cannot end this one. The earlier epoch gets its
     * end event ('released' by lease-service), the new one its 'granted'. */
    static const char sql[] =
        "WITH r AS ("
        " UPDATE transition_lease SET epoch = epoch + 1"
        " WHERE work_item = $1 AND epoch = $7::bigint AND released_at IS NULL"
        "   AND owner_host = $2 AND owner_boot_id = $3 AND owner_pid = $4::integer"
        "   AND owner_start_ticks = $5::bigint AND owner_instance = $6"
        " RETURNING work_item, epoch, transition),"
        " e AS (INSERT INTO lease_events (work_item, epoch, kind, actor, detail)"
        "   SELECT work_item, epoch - 1, 'released', 'lease-service',"
        "     'superseded by epoch ' || epoch || ': the same owner asked again' FROM r"
        "   UNION ALL SELECT work_item, epoch, 'granted', $8,"
        "     transition || ' (the owner asked again; epoch ' || $7 || ' ended)' FROM r)"
        " SELECT epoch FROM r";
    claim_params cp;
    char seen[24];
    claim_params_fill(&cp, cl);
    snprintf(seen, sizeof seen, "%" PRIu64, seen_epoch);
    const char *p[] = { cp.v[0], cp.v[1], cp.v[2], cp.v[3], cp.v[4], cp.v[5], seen, cl->actor };
    return exec_epoch(c, dl, sql, 8, p, granted, epoch);
}

/* lease_store_release() with `sql`: lease_sql_release or its bounded twin. */
static orch_err release_with(orch_db_conn *c, uint64_t dl, const char *sql, const char *work_item,
                             uint64_t epoch, const char *kind, const char *actor,
                             const char *detail, bool *released)
{
    char ep[24];
    uint64_t got;
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    const char *p[] = { work_item, ep, kind, actor, detail };
    return exec_epoch(c, dl, sql, 5, p, released, &got);
}

orch_err lease_store_release(orch_db_conn *c, uint64_t dl, const char *work_item, uint64_t epoch,
                             const char *kind, const char *actor, const char *detail,
                             bool *released)
{
    return release_with(c, dl, lease_sql_release, work_item, epoch, kind, actor, detail, released);
}

orch_err lease_store_release_batch(orch_db_conn *c, uint64_t dl, const char *const *work_items,
                                   const uint64_t *epochs, size_t n, bool *released, bool *alone)
{
    /* `k` locks the named grants in work-item order, skipping rows another
     * transaction has locked (SKIP LOCKED: no wait); a row changed meanwhile
     * is judged again on its new version. A grant live in the snapshot but
     * not locked by `k` is not decided here (`alone`). */
    static const char sql[] =
        "WITH i AS (SELECT * FROM unnest((SELECT $1::text[]), (SELECT $2::bigint[]))"
        "   WITH ORDINALITY"
        "   AS i(i_item, i_epoch, i_ord)),"
        " k AS MATERIALIZED (SELECT t.work_item, t.epoch FROM transition_lease t"
        "   JOIN i ON t.work_item = i.i_item AND t.epoch = i.i_epoch"
        "   WHERE t.released_at IS NULL ORDER BY t.work_item FOR UPDATE OF t SKIP LOCKED),"
        " r AS (UPDATE transition_lease t SET released_at = now(), release_reason = 'released'"
        "   FROM k WHERE t.work_item = k.work_item AND t.epoch = k.epoch"
        "     AND t.released_at IS NULL RETURNING t.work_item, t.epoch),"
        " e AS (INSERT INTO lease_events (work_item, epoch, kind, actor, detail)"
        "   SELECT work_item, epoch, 'released', 'holder', '' FROM r ORDER BY work_item)"
        " SELECT i.i_ord, r.epoch IS NOT NULL, k.work_item IS NULL AND EXISTS (SELECT 1"
        "   FROM transition_lease t WHERE t.work_item = i.i_item AND t.epoch = i.i_epoch"
        "     AND t.released_at IS NULL)"
        " FROM i LEFT JOIN r ON r.work_item = i.i_item LEFT JOIN k ON k.work_item = i.i_item"
        " ORDER BY i.i_ord";
    if (n == 1) {
        alone[0] = false;
        return release_with(c, dl, sql_release_bounded, work_items[0], epochs[0], "released",
                            "holder", "", released);
    }
    arr items = { 0 }, eps = { 0 };
    for (size_t k = 0; k < n; k++) {
        char ep[24];
        snprintf(ep, sizeof ep, "%" PRIu64, epochs[k]);
        arr_add(&items, work_items[k]);
        arr_add(&eps, ep);
    }
    arr_end(&items);
    arr_end(&eps);
    orch_err err = items.oom || eps.oom ? ORCH_ENOMEM : ORCH_OK;
    orch_db_result *r = NULL;
    const char *p[] = { items.s, eps.s };
    if (!err)
        err = orch_db_exec_write(c, dl, sql, 2, p, &r);
    if (!err && (size_t)orch_db_result_rows(r) != n)
        err = ORCH_EDB;
    for (int i = 0; !err && i < (int)n; i++) {
        const char *hit = orch_db_result_get(r, i, 1);
        const char *skip = orch_db_result_get(r, i, 2);
        released[i] = hit && hit[0] == 't';
        alone[i] = skip && skip[0] == 't';
    }
    orch_db_result_free(r);
    free(items.s);
    free(eps.s);
    return err;
}

orch_err lease_store_release_by_owner(orch_db_conn *c, uint64_t dl, const char *work_item,
                                      const lease_owner *owner, const char *detail, uint64_t *epoch)
{
    static const char sql[] =
        "WITH r AS ("
        " UPDATE transition_lease SET released_at = now(), release_reason = 'released'"
        " WHERE work_item = $1 AND released_at IS NULL AND owner_host = $2"
        "   AND owner_boot_id = $3 AND owner_pid = $4::integer"
        "   AND owner_start_ticks = $5::bigint AND owner_instance = $6"
        " RETURNING work_item, epoch, actor),"
        " e AS (INSERT INTO lease_events (work_item, epoch, kind, actor, detail)"
        "   SELECT work_item, epoch, 'released', actor, $7 FROM r)"
        " SELECT epoch FROM r";
    char pid[16], ticks[24];
    bool hit = false;
    snprintf(pid, sizeof pid, "%" PRId32, owner->pid);
    snprintf(ticks, sizeof ticks, "%" PRIu64, owner->start_ticks);
    const char *p[] = { work_item, owner->host_id,     owner->boot_id, pid,
                        ticks,     owner->instance_id, detail };
    uint64_t got = 0;
    orch_err err = exec_epoch(c, dl, sql, 7, p, &hit, &got);
    if (!err)
        *epoch = hit ? got : 0;
    return err;
}

orch_err lease_store_event_async(orch_db_conn *c, uint64_t dl, const char *work_item,
                                 uint64_t epoch, const char *kind, const char *actor,
                                 const char *detail)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    const char *p[] = { work_item, ep, kind, actor, detail };
    return orch_db_exec_write(c, dl, lease_sql_event_async, 5, p, NULL);
}

orch_err lease_store_get(orch_db_conn *c, uint64_t dl, const char *work_item, lease_row *out,
                         bool *found)
{
    orch_db_result *r;
    const char *p[] = { work_item };
    orch_err err = orch_db_exec(c, dl, lease_sql_get, 1, p, &r);
    if (err)
        return err;
    *found = orch_db_result_rows(r) == 1;
    if (*found)
        read_row(r, 0, out);
    orch_db_result_free(r);
    return ORCH_OK;
}

static void for_each_row(const orch_db_result *r, void (*fn)(const lease_row *, void *), void *arg)
{
    lease_row row;
    for (int i = 0; i < orch_db_result_rows(r); i++) {
        read_row(r, i, &row);
        fn(&row, arg);
    }
}

orch_err lease_store_list_held_after(orch_db_conn *c, uint64_t dl, const char *owner_host,
                                     const char *after_item, unsigned limit,
                                     void (*fn)(const lease_row *row, void *arg), void *arg)
{
    char lim[16];
    orch_db_result *r;
    snprintf(lim, sizeof lim, "%u", limit);
    const char *p[] = { owner_host ? owner_host : "", after_item ? after_item : "", lim };
    orch_err err = orch_db_exec(c, dl, lease_sql_list_held_after, 3, p, &r);
    if (err)
        return err;
    for_each_row(r, fn, arg);
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err lease_store_list(orch_db_conn *c, uint64_t dl, bool held_only, const char *repo,
                          const char *owner_host, unsigned limit,
                          void (*fn)(const lease_row *row, void *arg), void *arg)
{
    static const char sql[] = "SELECT " LEASE_COLUMNS " FROM transition_lease"
                              " WHERE (NOT $1::boolean OR released_at IS NULL)"
                              "   AND ($2 = '' OR repo = $2)"
                              "   AND ($3 = '' OR owner_host = $3)"
                              " ORDER BY acquired_at, work_item LIMIT $4::integer";
    char lim[16];
    orch_db_result *r;
    snprintf(lim, sizeof lim, "%u", limit);
    const char *p[] = { held_only ? "true" : "false", repo ? repo : "",
                        owner_host ? owner_host : "", lim };
    orch_err err = orch_db_exec(c, dl, sql, 4, p, &r);
    if (err)
        return err;
    for_each_row(r, fn, arg);
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err lease_store_list_over_ceiling(orch_db_conn *c, uint64_t dl, int64_t ceiling_s,
                                       unsigned limit, void (*fn)(const lease_row *row, void *arg),
                                       void *arg)
{
    char ceil[24], lim[16];
    orch_db_result *r;
    snprintf(ceil, sizeof ceil, "%" PRId64, ceiling_s);
    snprintf(lim, sizeof lim, "%u", limit);
    const char *p[] = { ceil, lim };
    orch_err err = orch_db_exec(c, dl, lease_sql_list_over_ceiling, 2, p, &r);
    if (err)
        return err;
    for_each_row(r, fn, arg);
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err lease_store_reap(orch_db_conn *c, uint64_t dl, const char *work_item, uint64_t epoch,
                          int64_t ceiling_s, const char *kind, const char *detail, bool *released,
                          bool *locked)
{
    /* `k` locks the row only if no one else holds a lock on it (SKIP
     * LOCKED): a row a frozen transaction keeps is left for a later pass. */
    static const char sql[] =
        "WITH k AS (SELECT work_item, epoch FROM transition_lease"
        "   WHERE work_item = $1 AND epoch = $2::bigint AND released_at IS NULL"
        "     AND ($3::bigint < 0"
        "       OR acquired_at < now() - make_interval(secs => $3::double precision))"
        "   FOR UPDATE SKIP LOCKED),"
        " r AS (UPDATE transition_lease t SET released_at = now(), release_reason = $4"
        "   FROM k WHERE t.work_item = k.work_item AND t.epoch = k.epoch"
        "   RETURNING t.work_item, t.epoch),"
        " e AS (INSERT INTO lease_events (work_item, epoch, kind, actor, detail)"
        "   SELECT work_item, epoch, $4, 'reaper', $5 FROM r)"
        " SELECT (SELECT count(*) FROM r),"
        "   NOT EXISTS (SELECT 1 FROM k) AND EXISTS (SELECT 1 FROM transition_lease"
        "     WHERE work_item = $1 AND epoch = $2::bigint AND released_at IS NULL)";
    char ep[24], ceil[24];
    orch_db_result *r;
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    snprintf(ceil, sizeof ceil, "%" PRId64, ceiling_s);
    const char *p[] = { work_item, ep, ceil, kind, detail };
    orch_err err = orch_db_exec_write(c, dl, sql, 5, p, &r);
    if (err)
        return err;
    *released = strcmp(orch_db_result_get(r, 0, 0), "1") == 0;
    const char *lk = orch_db_result_get(r, 0, 1);
    *locked = lk && lk[0] == 't';
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err lease_store_read_host(orch_db_conn *c, uint64_t dl, const char *host_id,
                               lease_host_reg *out)
{
    static const char sql[] = "SELECT boot_id, instance_id, rpc_url, stopped_at IS NOT NULL,"
                              " (extract(epoch FROM now() - seen_at) * 1000)::bigint,"
                              " (extract(epoch FROM seen_at) * 1000000)::bigint,"
                              " coalesce(machine_id, ''), coalesce(pid_ns, '')"
                              " FROM hosts WHERE host_id = $1";
    orch_db_result *r;
    const char *p[] = { host_id };
    orch_err err = orch_db_exec(c, dl, sql, 1, p, &r);
    if (err)
        return err;
    memset(out, 0, sizeof *out);
    out->exists = orch_db_result_rows(r) == 1;
    if (out->exists) {
        copy(out->boot_id, sizeof out->boot_id, orch_db_result_get(r, 0, 0));
        copy(out->instance_id, sizeof out->instance_id, orch_db_result_get(r, 0, 1));
        copy(out->rpc_url, sizeof out->rpc_url, orch_db_result_get(r, 0, 2));
        out->stopped = strcmp(orch_db_result_get(r, 0, 3), "t") == 0;
        out->age_ms = strtoll(orch_db_result_get(r, 0, 4), NULL, 10);
        out->seen_us = strtoll(orch_db_result_get(r, 0, 5), NULL, 10);
        copy(out->machine_id, sizeof out->machine_id, orch_db_result_get(r, 0, 6));
        copy(out->pid_ns, sizeof out->pid_ns, orch_db_result_get(r, 0, 7));
    }
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err lease_store_count_other_hosts(orch_db_conn *c, uint64_t dl, const char *host_id, long *out)
{
    orch_db_result *r;
    const char *p[] = { host_id };
    orch_err err = orch_db_exec(c, dl, "SELECT count(*) FROM hosts WHERE host_id <> $1", 1, p, &r);
    if (err)
        return err;
    *out = strtol(orch_db_result_get(r, 0, 0), NULL, 10);
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err lease_store_register_host(orch_db_conn *c, uint64_t dl, const char *host_id,
                                   const lease_host_self *me, const char *instance_id,
                                   const char *rpc_url, const lease_host_reg *seen,
                                   bool *registered)
{
    /* The takeover is conditional on the row being what the caller judged:
     * same instance, not refreshed since (seen_at to the microsecond). */
    static const char sql[] =
        "INSERT INTO hosts AS h (host_id, boot_id, instance_id, rpc_url, started_at, seen_at,"
        "   machine_id, pid_ns)"
        " VALUES ($1, $2, $3, $4, now(), now(), $8, $9)"
        " ON CONFLICT (host_id) DO UPDATE SET boot_id = EXCLUDED.boot_id,"
        "   instance_id = EXCLUDED.instance_id, rpc_url = EXCLUDED.rpc_url,"
        "   started_at = now(), seen_at = now(), stopped_at = NULL,"
        "   machine_id = EXCLUDED.machine_id, pid_ns = EXCLUDED.pid_ns"
        " WHERE $5 AND h.instance_id = $6"
        "   AND (extract(epoch FROM h.seen_at) * 1000000)::bigint = $7::bigint";
    char us[24];
    snprintf(us, sizeof us, "%lld", (long long)seen->seen_us);
    const char *p[] = {
        host_id,           me->boot_id, instance_id,    rpc_url,   seen->exists ? "t" : "f",
        seen->instance_id, us,          me->machine_id, me->pid_ns
    };
    orch_db_result *r;
    orch_err err = orch_db_exec_write(c, dl, sql, 9, p, &r);
    if (err)
        return err;
    *registered = orch_db_result_affected(r) == 1;
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err lease_store_host_beat(orch_db_conn *c, uint64_t dl, const char *host_id,
                               const char *boot_id, bool *mine)
{
    const char *p[] = { host_id, boot_id };
    orch_db_result *r;
    orch_err err = orch_db_exec_write(c, dl,
                                      "UPDATE hosts SET seen_at = now(), stopped_at = NULL"
                                      " WHERE host_id = $1 AND boot_id = $2",
                                      2, p, &r);
    if (err)
        return err;
    *mine = orch_db_result_affected(r) == 1;
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err lease_store_host_stopped(orch_db_conn *c, uint64_t dl, const char *host_id,
                                  const char *instance_id)
{
    const char *p[] = { host_id, instance_id };
    return orch_db_exec_write(c, dl,
                              "UPDATE hosts SET stopped_at = now()"
                              " WHERE host_id = $1 AND instance_id = $2",
                              2, p, NULL);
}

orch_err lease_store_get_host(orch_db_conn *c, uint64_t dl, const char *host_id,
                              lease_host_facts *facts, char *rpc_url, size_t n)
{
    static const char sql[] = "SELECT boot_id, rpc_url FROM hosts WHERE host_id = $1";
    orch_db_result *r;
    const char *p[] = { host_id };
    orch_err err = orch_db_exec(c, dl, sql, 1, p, &r);
    if (err)
        return err;
    memset(facts, 0, sizeof *facts);
    facts->registered = orch_db_result_rows(r) == 1;
    rpc_url[0] = '\0';
    if (facts->registered) {
        copy(facts->boot_id, sizeof facts->boot_id, orch_db_result_get(r, 0, 0));
        copy(rpc_url, n, orch_db_result_get(r, 0, 1));
    }
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err lease_store_launcher_state(orch_db_conn *c, uint64_t dl, const char *host_id,
                                    lease_launcher_state *out)
{
    const char *p[] = { host_id };
    orch_db_result *r;
    orch_err err = orch_db_exec(
        c, dl,
        "SELECT (SELECT count(*) FROM jobs j WHERE j.host_id = $1 AND j.status = 'running'),"
        " (SELECT count(*) FROM jobs j WHERE j.host_id = $1 AND j.status = 'running'"
        "   AND j.instance_id IS DISTINCT FROM r.instance_id),"
        " coalesce(r.boot_id, ''), coalesce(r.pid, 0), coalesce(r.start_ticks, 0)"
        " FROM (SELECT 1) x LEFT JOIN launcher_recovery r ON r.host_id = $1",
        1, p, &r);
    if (err)
        return err;
    memset(out, 0, sizeof *out);
    out->running = strtol(orch_db_result_get(r, 0, 0), NULL, 10);
    out->running_elsewhere = strtol(orch_db_result_get(r, 0, 1), NULL, 10);
    copy(out->boot_id, sizeof out->boot_id, orch_db_result_get(r, 0, 2));
    out->pid = (int32_t)strtol(orch_db_result_get(r, 0, 3), NULL, 10);
    out->start_ticks = to_u64(orch_db_result_get(r, 0, 4));
    orch_db_result_free(r);
    return ORCH_OK;
}
