/*
 * stage_store.c - every SQL statement of stage-service (see stage_store.h).
 */
#include "stage_store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASK_COLS                                                   \
    "id, work_item, repo, title, stage, version, pr_number, cycle," \
    " (extract(epoch FROM created_at) * 1000)::bigint,"             \
    " (extract(epoch FROM updated_at) * 1000)::bigint"

/* The live-grant check shared by every fenced write: the lease row is read
 * FOR SHARE, so a concurrent reclaim or release waits for this statement's
 * transaction and a committed one makes the row vanish from `l`. */
/* The CAS may also set a new pull request number ($6 > 0). */
#define SET_PR "pr_number = CASE WHEN $6::bigint > 0 THEN $6::bigint ELSE pr_number END"

#define LIVE_LEASE(item, epoch)                                                              \
    "l AS (SELECT epoch FROM transition_lease WHERE work_item = " item " AND epoch = " epoch \
    "::bigint AND released_at IS NULL FOR SHARE)"

/* The upsert of a verdict: the latest value per (item, edge, key). */
#define EVIDENCE_UPSERT                                                               \
    " ON CONFLICT (work_item, transition, key) DO UPDATE SET value = EXCLUDED.value," \
    " actor = EXCLUDED.actor, cycle = EXCLUDED.cycle, at = now()"

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static uint64_t u64(const char *s)
{
    return s ? strtoull(s, NULL, 10) : 0;
}

static void read_task(const orch_db_result *r, int row, stage_task *t)
{
    memset(t, 0, sizeof *t);
    t->id = strtoll(orch_db_result_get(r, row, 0), NULL, 10);
    copy(t->work_item, sizeof t->work_item, orch_db_result_get(r, row, 1));
    copy(t->repo, sizeof t->repo, orch_db_result_get(r, row, 2));
    copy(t->title, sizeof t->title, orch_db_result_get(r, row, 3));
    t->stage = stage_parse(orch_db_result_get(r, row, 4));
    t->version = u64(orch_db_result_get(r, row, 5));
    t->pr_number = u64(orch_db_result_get(r, row, 6));
    t->cycle = (int)strtol(orch_db_result_get(r, row, 7), NULL, 10);
    t->created_ms = u64(orch_db_result_get(r, row, 8));
    t->updated_ms = u64(orch_db_result_get(r, row, 9));
}

orch_err stage_store_create(orch_db_conn *c, uint64_t dl, const stage_task *in, stage_task *out,
                            bool *created)
{
    static const char sql[] = "INSERT INTO tasks (work_item, repo, title, pr_number)"
                              " VALUES ($1, $2, $3, $4::bigint)"
                              " ON CONFLICT (work_item) DO NOTHING RETURNING " TASK_COLS;
    char pr[24];
    snprintf(pr, sizeof pr, "%llu", (unsigned long long)in->pr_number);
    const char *p[] = { in->work_item, in->repo, in->title, pr };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 4, p, &r);
    if (err)
        return err;
    *created = orch_db_result_rows(r) == 1;
    if (*created)
        read_task(r, 0, out);
    orch_db_result_free(r);
    return *created ? ORCH_OK : stage_store_get(c, dl, in->work_item, out);
}

orch_err stage_store_get(orch_db_conn *c, uint64_t dl, const char *work_item, stage_task *out)
{
    static const char sql[] = "SELECT " TASK_COLS " FROM tasks WHERE work_item = $1";
    const char *p[] = { work_item };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 1, p, &r);
    if (err)
        return err;
    if (orch_db_result_rows(r) == 0)
        err = ORCH_ENOTFOUND;
    else
        read_task(r, 0, out);
    orch_db_result_free(r);
    return err;
}

orch_err stage_store_find_by_pr(orch_db_conn *c, uint64_t dl, const char *repo, uint64_t pr,
                                stage_task *out)
{
    static const char sql[] = "SELECT " TASK_COLS " FROM tasks"
                              " WHERE repo = $1 AND pr_number = $2::bigint AND pr_number > 0"
                              " ORDER BY id DESC LIMIT 1";
    char prs[24];
    snprintf(prs, sizeof prs, "%llu", (unsigned long long)pr);
    const char *p[] = { repo, prs };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 2, p, &r);
    if (err)
        return err;
    if (orch_db_result_rows(r) == 0)
        err = ORCH_ENOTFOUND;
    else
        read_task(r, 0, out);
    orch_db_result_free(r);
    return err;
}

static orch_err read_tasks(orch_db_result *r, stage_task **out, int *n)
{
    int rows = orch_db_result_rows(r);
    stage_task *t = calloc(rows ? (size_t)rows : 1, sizeof *t);
    if (!t) {
        orch_db_result_free(r);
        return ORCH_ENOMEM;
    }
    for (int i = 0; i < rows; i++)
        read_task(r, i, &t[i]);
    orch_db_result_free(r);
    *out = t;
    *n = rows;
    return ORCH_OK;
}

orch_err stage_store_list_active(orch_db_conn *c, uint64_t dl, int64_t after, int limit,
                                 stage_task **out, int *n)
{
    static const char sql[] = "SELECT " TASK_COLS " FROM tasks"
                              " WHERE stage NOT IN ('backlog', 'done', 'cancelled')"
                              "   AND id > $1::bigint ORDER BY id LIMIT $2::integer";
    char a[24], lim[16];
    snprintf(a, sizeof a, "%lld", (long long)after);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[] = { a, lim };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 2, p, &r);
    return err ? err : read_tasks(r, out, n);
}

orch_err stage_store_list(orch_db_conn *c, uint64_t dl, const stage_list_filter *f,
                          stage_task **out, int *n)
{
    static const char sql[] = "SELECT " TASK_COLS " FROM tasks"
                              " WHERE ($1 = '' OR stage = $1) AND ($2 = '' OR repo = $2)"
                              " ORDER BY updated_at, id LIMIT $3::integer";
    char lim[16];
    snprintf(lim, sizeof lim, "%d", f->limit);
    const char *p[] = { f->stage == STAGE_NONE ? "" : stage_name(f->stage), f->repo, lim };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 3, p, &r);
    return err ? err : read_tasks(r, out, n);
}

/* `vs` as a JSON object of strings (NULL `vs`: {}); malloc'ed, NULL when
 * out of memory. */
static char *verdicts_json(const orch_verdicts *vs)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    for (size_t i = 0; vs && i < vs->n; i++)
        json_object_set_new(o, vs->v[i].key, json_string(vs->v[i].value));
    char *js = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return js;
}

orch_err stage_store_record_evidence(orch_db_conn *c, uint64_t dl, const stage_evidence_write *w,
                                     bool *recorded)
{
    const stage_task *t = w->t;
    const orch_verdicts *vs = w->vs;
    /* Recorded only while the task is still in the stage and cycle the
     * caller saw and (epoch > 0) while the caller's lease is the live grant:
     * a call that deferred, lost the race or was robbed records nothing. */
    static const char sql[] = "WITH " LIVE_LEASE(
        "$1",
        "$6") " INSERT INTO task_evidence"
              " (work_item, transition, key, value, actor, cycle)"
              " SELECT $1, $7, e.key, e.value, $3, t.cycle FROM jsonb_each_text($2::jsonb) AS e,"
              "   tasks t WHERE t.work_item = $1 AND t.stage = $4 AND t.cycle = $5::integer"
              "   AND ($6::bigint = 0 OR EXISTS (SELECT 1 FROM l))" EVIDENCE_UPSERT;
    *recorded = true;
    if (vs->n == 0)
        return ORCH_OK;
    char *js = verdicts_json(vs);
    if (!js)
        return ORCH_ENOMEM;
    char cyc[16], ep[24];
    snprintf(cyc, sizeof cyc, "%d", t->cycle);
    snprintf(ep, sizeof ep, "%llu", (unsigned long long)w->epoch);
    const char *p[] = { t->work_item, js, w->actor, stage_name(t->stage), cyc, ep, w->transition };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 7, p, &r);
    free(js);
    if (err)
        return err;
    *recorded = orch_db_result_affected(r) > 0;
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err stage_store_load_evidence(orch_db_conn *c, uint64_t dl, const char *work_item,
                                   const char *transition, orch_verdicts *out)
{
    /* $2 = '': every edge. Engine-only keys ('built_image_digest') are
     * written by the engine alone (stage_store_intent_finish) and count for
     * every edge of their cycle. Ordered so that, for one key, the latest
     * recorded comes last (orch_verdicts keeps the last value set). */
    static const char sql[] =
        "SELECT e.key, e.value FROM task_evidence e JOIN tasks t ON t.work_item = e.work_item"
        " WHERE e.work_item = $1 AND e.cycle = t.cycle"
        "   AND ($2 = '' OR e.transition = $2 OR e.key = 'built_image_digest')"
        " ORDER BY e.key, e.at, e.transition";
    const char *p[] = { work_item, transition ? transition : "" };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 2, p, &r);
    if (err)
        return err;
    orch_verdicts_init(out);
    for (int i = 0; i < orch_db_result_rows(r); i++)
        (void)orch_verdicts_set(out, orch_db_result_get(r, i, 0), orch_db_result_get(r, i, 1));
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err stage_store_cycle_verdict(orch_db_conn *c, uint64_t dl, const stage_verdict_ref *ref,
                                   char *out, size_t n, bool *found)
{
    static const char sql[] =
        "SELECT e.value FROM task_evidence e JOIN tasks t ON t.work_item = e.work_item"
        " WHERE e.work_item = $1 AND e.transition = $2 AND e.key = $3 AND e.cycle = t.cycle";
    const char *p[] = { ref->work_item, ref->transition, ref->key };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 3, p, &r);
    if (err)
        return err;
    *found = orch_db_result_rows(r) == 1;
    if (*found)
        copy(out, n, orch_db_result_get(r, 0, 0));
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err stage_store_unresolved_effect(orch_db_conn *c, uint64_t dl, const char *work_item,
                                       int cycle, bool *found, stage_open_intent *out)
{
    static const char sql[] =
        "SELECT id, outcome, coalesce(lease_epoch, 0), detail,"
        " (extract(epoch FROM now() - created_at) * 1000)::bigint, transition, effect"
        " FROM side_effects WHERE work_item = $1 AND cycle = $2::integer"
        "   AND outcome IN ('unknown', 'pending') ORDER BY id LIMIT 1";
    char cyc[16];
    snprintf(cyc, sizeof cyc, "%d", cycle);
    const char *p[] = { work_item, cyc };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 2, p, &r);
    if (err)
        return err;
    *found = orch_db_result_rows(r) == 1;
    if (*found) {
        stage_intent *row = &out->row;
        memset(out, 0, sizeof *out);
        row->id = strtoll(orch_db_result_get(r, 0, 0), NULL, 10);
        copy(row->outcome, sizeof row->outcome, orch_db_result_get(r, 0, 1));
        row->epoch = u64(orch_db_result_get(r, 0, 2));
        copy(row->detail, sizeof row->detail, orch_db_result_get(r, 0, 3));
        row->age_ms = strtoll(orch_db_result_get(r, 0, 4), NULL, 10);
        copy(out->transition, sizeof out->transition, orch_db_result_get(r, 0, 5));
        copy(out->effect, sizeof out->effect, orch_db_result_get(r, 0, 6));
    }
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err stage_store_baseline(orch_db_conn *c, uint64_t dl, const char *repo, bool *has,
                              double *pct)
{
    static const char sql[] = "SELECT pct FROM coverage_baseline WHERE repo = $1";
    const char *p[] = { repo };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 1, p, &r);
    if (err)
        return err;
    *has = orch_db_result_rows(r) == 1;
    *pct = *has ? strtod(orch_db_result_get(r, 0, 0), NULL) : 0;
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err stage_store_ratchet(orch_db_conn *c, uint64_t dl, const stage_ratchet *rt, bool *raised,
                             bool *stale)
{
    uint64_t epoch = rt->epoch;
    /* Conditional: a lower or equal value changes nothing; under a lease,
     * only the live grant may raise it. */
    static const char fenced[] = "WITH " LIVE_LEASE(
        "$3", "$4") " INSERT INTO coverage_baseline (repo, pct, work_item)"
                    "   SELECT $1, $2::numeric, $3 FROM l"
                    " ON CONFLICT (repo) DO UPDATE SET pct = EXCLUDED.pct, work_item = "
                    "EXCLUDED.work_item,"
                    " updated_at = now() WHERE coverage_baseline.pct < EXCLUDED.pct"
                    " RETURNING (SELECT count(*) FROM l)";
    static const char open_sql[] =
        "INSERT INTO coverage_baseline (repo, pct, work_item)"
        "   SELECT $1, $2::numeric, $3 WHERE $4::bigint = 0"
        " ON CONFLICT (repo) DO UPDATE SET pct = EXCLUDED.pct, work_item = EXCLUDED.work_item,"
        " updated_at = now() WHERE coverage_baseline.pct < EXCLUDED.pct"
        " RETURNING 1";
    static const char live[] = "SELECT count(*) FROM transition_lease WHERE work_item = $1"
                               " AND epoch = $2::bigint AND released_at IS NULL";
    char ep[24];
    snprintf(ep, sizeof ep, "%llu", (unsigned long long)epoch);
    const char *p[] = { rt->repo, rt->pct, rt->work_item, ep };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, epoch ? fenced : open_sql, 4, p, &r);
    if (err)
        return err;
    *raised = orch_db_result_rows(r) == 1;
    orch_db_result_free(r);
    *stale = false;
    if (*raised || !epoch)
        return ORCH_OK;
    /* Nothing written: a baseline already as high, or a superseded epoch. */
    const char *lp[] = { rt->work_item, ep };
    err = orch_db_exec(c, dl, live, 2, lp, &r);
    if (err)
        return err;
    *stale = strcmp(orch_db_result_get(r, 0, 0), "0") == 0;
    orch_db_result_free(r);
    return ORCH_OK;
}

static orch_err read_intent(orch_db_conn *c, uint64_t dl, const stage_intent_key *k,
                            stage_intent *row, bool *found)
{
    static const char sql[] =
        "SELECT id, outcome, coalesce(lease_epoch, 0), detail,"
        " (extract(epoch FROM now() - created_at) * 1000)::bigint FROM side_effects"
        " WHERE work_item = $1 AND transition = $2 AND effect = $3 AND cycle = $4::integer";
    char cycle[16];
    snprintf(cycle, sizeof cycle, "%d", k->cycle);
    const char *p[] = { k->work_item, k->transition, k->effect, cycle };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 4, p, &r);
    if (err)
        return err;
    *found = orch_db_result_rows(r) == 1;
    if (*found) {
        row->id = strtoll(orch_db_result_get(r, 0, 0), NULL, 10);
        copy(row->outcome, sizeof row->outcome, orch_db_result_get(r, 0, 1));
        row->epoch = u64(orch_db_result_get(r, 0, 2));
        copy(row->detail, sizeof row->detail, orch_db_result_get(r, 0, 3));
        row->age_ms = strtoll(orch_db_result_get(r, 0, 4), NULL, 10);
    }
    orch_db_result_free(r);
    return ORCH_OK;
}

/* The statements of stage_store_intent_claim(): fenced by the lease, with
 * the call's verdicts too, and without a lease. */
#define CLAIM_INS                                                                           \
    " ins AS (INSERT INTO side_effects (work_item, transition, effect, cycle, lease_epoch)" \
    "   SELECT $1, $2, $3, $4::integer, $5::bigint FROM l"
#define CLAIM_TAIL                                                                  \
    "   ON CONFLICT ON CONSTRAINT side_effects_intent_key DO NOTHING RETURNING id)" \
    " SELECT (SELECT count(*) FROM l), (SELECT id FROM ins)"
static const char claim_fenced[] = "WITH " LIVE_LEASE("$1", "$5") "," CLAIM_INS CLAIM_TAIL ", true";
/* With the call's verdicts ($6, by actor $8), recorded as
 * stage_store_record_evidence would, in the claim's statement: only
 * while the task is in stage $7 and cycle $4 and the epoch is live; the
 * intent is claimed only then too. */
static const char claim_fenced_rec[] = "WITH " LIVE_LEASE(
    "$1", "$5") ","
                " here AS (SELECT cycle FROM tasks WHERE work_item = $1 AND stage = $7"
                "   AND cycle = $4::integer),"
                " v AS (INSERT INTO task_evidence (work_item, transition, key, value, actor, cycle)"
                "   SELECT $1, $2, e.key, e.value, $8, here.cycle FROM here, "
                "jsonb_each_text($6::jsonb) e"
                "   WHERE EXISTS (SELECT 1 FROM l)" EVIDENCE_UPSERT ")," CLAIM_INS
                " WHERE EXISTS (SELECT 1 FROM here)" CLAIM_TAIL ", EXISTS (SELECT 1 FROM here)";
static const char claim_open[] =
    "WITH ins AS (INSERT INTO side_effects (work_item, transition, effect, cycle)"
    "   VALUES ($1, $2, $3, $4::integer)"
    "   ON CONFLICT ON CONSTRAINT side_effects_intent_key DO NOTHING RETURNING id)"
    " SELECT 1, (SELECT id FROM ins), true";
#undef CLAIM_INS
#undef CLAIM_TAIL

/* The state a claim statement answered (its row of `r`), the row of a
 * claim made under `epoch` into *row. */
static stage_intent_state claim_state(const orch_db_result *r, uint64_t epoch, stage_intent *row)
{
    bool live = strcmp(orch_db_result_get(r, 0, 0), "0") != 0;
    const char *id = orch_db_result_get(r, 0, 1);
    bool here = orch_db_result_get(r, 0, 2)[0] == 't';
    memset(row, 0, sizeof *row);
    if (!live)
        return STAGE_INTENT_STALE;
    if (!here)
        return STAGE_INTENT_MOVED;
    if (!id)
        return STAGE_INTENT_EXISTS;
    row->id = strtoll(id, NULL, 10);
    copy(row->outcome, sizeof row->outcome, "pending");
    row->epoch = epoch;
    return STAGE_INTENT_CLAIMED;
}

orch_err stage_store_intent_claim(orch_db_conn *c, uint64_t dl, const stage_intent_key *k,
                                  uint64_t epoch, const stage_evidence_write *w,
                                  stage_intent_state *st, stage_intent *row)
{
    if (w && !epoch)
        return ORCH_EINVAL;
    char cyc[16], ep[24];
    snprintf(cyc, sizeof cyc, "%d", k->cycle);
    snprintf(ep, sizeof ep, "%llu", (unsigned long long)epoch);
    char *js = w ? verdicts_json(w->vs) : NULL;
    if (w && !js)
        return ORCH_ENOMEM;
    const char *p[] = { k->work_item,
                        k->transition,
                        k->effect,
                        cyc,
                        ep,
                        js,
                        w ? stage_name(w->t->stage) : NULL,
                        w ? w->actor : NULL };
    const char *sql = w ? claim_fenced_rec : epoch ? claim_fenced : claim_open;
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, w ? 8 : epoch ? 5 : 4, p, &r);
    free(js);
    if (err)
        return err;
    *st = claim_state(r, epoch, row);
    orch_db_result_free(r);
    if (*st != STAGE_INTENT_EXISTS)
        return ORCH_OK;
    bool found = false;
    err = read_intent(c, dl, k, row, &found);
    if (!err && !found)
        err = ORCH_EDB_RETRY; /* vanished between the two statements: never deleted, so odd */
    return err;
}

orch_err stage_store_intent_takeover(orch_db_conn *c, uint64_t dl, const char *work_item,
                                     const stage_intent *seen, uint64_t epoch, bool *took)
{
    static const char fenced[] = "WITH " LIVE_LEASE(
        "$1",
        "$3") " UPDATE side_effects SET outcome = 'pending', lease_epoch = $3::bigint,"
              "   detail = $5, finished_at = NULL"
              " WHERE id = $2::bigint AND outcome = $4 AND coalesce(lease_epoch, 0) = $6::bigint"
              "   AND EXISTS (SELECT 1 FROM l)";
    static const char open_sql[] =
        "UPDATE side_effects SET outcome = 'pending', lease_epoch = NULL,"
        "   detail = $5, finished_at = NULL, created_at = now()"
        " WHERE id = $2::bigint AND outcome = $4 AND coalesce(lease_epoch, 0) = $6::bigint"
        "   AND $1 <> '' AND $3::bigint = 0";
    char id[24], ep[24], old[24], detail[600];
    snprintf(id, sizeof id, "%lld", (long long)seen->id);
    snprintf(ep, sizeof ep, "%llu", (unsigned long long)epoch);
    snprintf(old, sizeof old, "%llu", (unsigned long long)seen->epoch);
    snprintf(detail, sizeof detail, "taken over (was %s at epoch %llu): %.400s", seen->outcome,
             (unsigned long long)seen->epoch, seen->detail);
    const char *p[] = { work_item, id, ep, seen->outcome, detail, old };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, epoch ? fenced : open_sql, 6, p, &r);
    if (err)
        return err;
    *took = orch_db_result_affected(r) == 1;
    orch_db_result_free(r);
    return ORCH_OK;
}

/* The outcome of a pending intent, recorded only for the owner whose
 * outcome counts (the pending intent at its epoch), and the verdict the
 * effect produced (key NULL: none) written with it: CTEs `f` (the intent,
 * no row when it was taken over) and `fv`. Shared by
 * stage_store_intent_finish() and the stage write that records it. */
#define INTENT_FINISH(id, epoch, outcome, detail, item, key, value, cycle)                     \
    "f AS (UPDATE side_effects SET outcome = " outcome ", detail = " detail                    \
    ", finished_at = now() WHERE id = " id "::bigint AND outcome = 'pending'"                  \
    "   AND coalesce(lease_epoch, 0) = " epoch "::bigint RETURNING id),"                       \
    " fv AS (INSERT INTO task_evidence (work_item, key, value, actor, cycle)"                  \
    "   SELECT " item ", " key "::text, " value ", 'stage-service', " cycle "::integer FROM f" \
    "   WHERE " key "::text IS NOT NULL" EVIDENCE_UPSERT ")"

orch_err stage_store_intent_finish(orch_db_conn *c, uint64_t dl, const stage_intent_outcome *o,
                                   bool *recorded)
{
    /* One statement, hence one commit and no lock held between round trips:
     * the verdict an effect produced ($6 = $7, none when $6 is NULL) is
     * written with its outcome, and only for the owner whose outcome counts
     * (the pending intent at its epoch). */
    static const char sql[] = "WITH " INTENT_FINISH("$1", "$2", "$3", "$4", "$5", "$6", "$7",
                                                    "$8") " SELECT count(*) FROM f";
    char ids[24], ep[24], cyc[16];
    snprintf(ids, sizeof ids, "%lld", (long long)o->id);
    snprintf(ep, sizeof ep, "%llu", (unsigned long long)o->epoch);
    snprintf(cyc, sizeof cyc, "%d", o->t->cycle);
    const char *p[] = {
        ids, ep, o->outcome, o->detail, o->t->work_item, o->key, o->key ? o->value : NULL, cyc
    };
    orch_db_result *r;
    *recorded = false;
    orch_err err = orch_db_exec_write(c, dl, sql, 8, p, &r);
    if (err)
        return err;
    *recorded = strcmp(orch_db_result_get(r, 0, 0), "1") == 0;
    orch_db_result_free(r);
    return ORCH_OK;
}

/* The release of the grant folded into a won fenced CAS: the same row
 * changes and the same event row as lease-service's Release by the holder
 * (lease_sql_release with kind 'released', actor 'holder', no detail),
 * only when `u` (the CAS) updated the task. `l` holds the row FOR SHARE in
 * this transaction, so `r` never waits for another one. $1 work item, $5
 * epoch. */
#define CAS_RELEASE                                                                        \
    ", r AS (UPDATE transition_lease SET released_at = now(), release_reason = 'released'" \
    "   WHERE work_item = $1 AND epoch = $5::bigint AND released_at IS NULL"               \
    "     AND EXISTS (SELECT 1 FROM u) RETURNING work_item, epoch),"                       \
    " re AS (INSERT INTO lease_events (work_item, epoch, kind, actor, detail)"             \
    "   SELECT work_item, epoch, 'released', 'holder', '' FROM r)"
/* One row whatever happened: the task's columns (NULL: the race was lost),
 * whether the lease was released, whether the effect's outcome was. */
#define CAS_SELECT(released, recorded) \
    " SELECT " TASK_COLS ", " released ", " recorded " FROM (SELECT 1) AS one LEFT JOIN u ON true"

/* The CAS's tail, shared by its forms: `u` is the updated task (no row:
 * the race was lost), `h` its history row, `d` the rollback's clearing
 * of the recorded verdicts, `v` the call's own verdicts recorded with
 * the write. $1 work item, $2 expected, $3 to, $4 cycle increment (1: a
 * rollback), $5 epoch, $6 new pull request number (0: keep), $7 actor,
 * $8 reason, $9 the verdicts (a JSON object), $10 their edge; with an
 * effect's outcome (INTENT_FINISH, `f` before `u`): $11 outcome, $12
 * detail, $13 intent id, $14 and $15 the verdict it produced, $16 cycle. */
#define CAS_CTES                                                                           \
    " RETURNING *),"                                                                       \
    " h AS (INSERT INTO stage_history (task_id, from_stage, to_stage, actor, lease_epoch," \
    "   reason) SELECT id, $2, $3, $7, nullif($5::bigint, 0), $8 FROM u),"                 \
    " d AS (DELETE FROM task_evidence WHERE work_item = $1 AND $4::integer = 1"            \
    "   AND EXISTS (SELECT 1 FROM u)),"                                                    \
    " v AS (INSERT INTO task_evidence (work_item, transition, key, value, actor, cycle)"   \
    "   SELECT $1, $10, e.key, e.value, $7, u.cycle FROM u, jsonb_each_text($9::jsonb) "   \
    "e" EVIDENCE_UPSERT ")"
#define CAS_WHERE_FENCED " WHERE work_item = $1 AND stage = $2 AND EXISTS (SELECT 1 FROM l)"

/* Runs the CAS statement `sql` (its first `n` parameters); see
 * stage_store_cas(). */
static orch_err cas_exec(orch_db_conn *c, uint64_t dl, const char *sql, int n, const stage_cas *cas,
                         bool *won, stage_task *out)
{
    const stage_intent_outcome *o = cas->outcome;
    char ep[24], pr[24], id[24] = "0", cyc[16] = "0";
    snprintf(ep, sizeof ep, "%llu", (unsigned long long)cas->epoch);
    snprintf(pr, sizeof pr, "%llu", (unsigned long long)cas->pr_number);
    if (o) {
        snprintf(id, sizeof id, "%lld", (long long)o->id);
        snprintf(cyc, sizeof cyc, "%d", o->t->cycle);
    }
    char *js = verdicts_json(cas->rollback ? NULL : cas->evidence);
    if (!js)
        return ORCH_ENOMEM;
    const char *p[] = { cas->work_item,
                        stage_name(cas->expected),
                        stage_name(cas->to),
                        cas->rollback ? "1" : "0",
                        ep,
                        pr,
                        cas->actor,
                        cas->reason ? cas->reason : "",
                        js,
                        cas->transition ? cas->transition : "",
                        o ? o->outcome : NULL,
                        o ? o->detail : NULL,
                        id,
                        o ? o->key : NULL,
                        o && o->key ? o->value : NULL,
                        cyc };
    orch_db_result *r;
    orch_err err = orch_db_exec_write(c, dl, sql, n, p, &r);
    free(js);
    if (err)
        return err;
    *won = orch_db_result_rows(r) == 1 && orch_db_result_get(r, 0, 0) != NULL;
    if (*won)
        read_task(r, 0, out);
    const char *rel = orch_db_result_rows(r) == 1 ? orch_db_result_get(r, 0, 10) : NULL;
    const char *rec = orch_db_result_rows(r) == 1 ? orch_db_result_get(r, 0, 11) : NULL;
    if (cas->released)
        *cas->released = *won && rel && rel[0] == 't';
    if (cas->outcome_recorded)
        *cas->outcome_recorded = rec && rec[0] == 't';
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err stage_store_cas(orch_db_conn *c, uint64_t dl, const stage_cas *cas, bool *won,
                         stage_task *out)
{
    /* `u`: the stage write (CAS_CTES). */
#define CAS_SET                                                               \
    "UPDATE tasks SET stage = $3, version = version + 1, updated_at = now()," \
    "   cycle = cycle + $4::integer, " SET_PR
#define CAS_FENCED "WITH " LIVE_LEASE("$1", "$5") ", u AS (" CAS_SET CAS_WHERE_FENCED CAS_CTES
    /* Each form is one statement (data-modifying CTEs), so the row locks it
     * takes last for that statement only, never across a round trip. */
    static const char fenced[] = CAS_FENCED CAS_SELECT("false", "false");
    static const char fenced_release[] =
        CAS_FENCED CAS_RELEASE CAS_SELECT("(SELECT count(*) = 1 FROM r)", "false");
    /* The effect's outcome is recorded whether or not the CAS then wins (as
     * its own statement would be); the CAS only once it is. */
    static const char fenced_outcome[] = "WITH " LIVE_LEASE("$1", "$5") ", " INTENT_FINISH(
        "$13", "$5", "$11", "$12", "$1", "$14", "$15",
        "$16") ", u AS (" CAS_SET CAS_WHERE_FENCED
               " AND EXISTS (SELECT 1 FROM f)" CAS_CTES CAS_RELEASE CAS_SELECT(
                   "(SELECT count(*) = 1 FROM r)", "EXISTS (SELECT 1 FROM f)");
    static const char expected_only[] =
        "WITH u AS (" CAS_SET
        " WHERE work_item = $1 AND stage = $2 AND $5::bigint = 0" CAS_CTES CAS_SELECT("false",
                                                                                      "false");
    /* Lease switched off or out of scope: the write of a build without the
     * lease, unconditional ($2 is only recorded in the history). */
    static const char unconditional[] =
        "WITH u AS (" CAS_SET
        " WHERE work_item = $1 AND $2 <> '' AND $5::bigint = 0" CAS_CTES CAS_SELECT("false",
                                                                                    "false");
    *won = false;
    if (cas->released)
        *cas->released = false;
    if (cas->outcome_recorded)
        *cas->outcome_recorded = false;
    bool fenced_w = cas->conditional && cas->epoch;
    if (cas->outcome && (!fenced_w || !cas->released || !cas->outcome_recorded))
        return ORCH_EINVAL;
    stage_cas one = *cas;
    if (!fenced_w)
        one.released = NULL; /* no lease to release */
    const char *sql = !cas->conditional ? unconditional
                      : !cas->epoch     ? expected_only
                      : cas->outcome    ? fenced_outcome
                      : one.released    ? fenced_release
                                        : fenced;
    return cas_exec(c, dl, sql, cas->outcome ? 16 : 10, &one, won, out);
#undef CAS_SET
#undef CAS_FENCED
}
#undef CAS_CTES
#undef CAS_WHERE_FENCED
#undef CAS_RELEASE
#undef CAS_SELECT

/* Each row of `r` into *out (calloc'ed, `size` bytes a row) through `read`;
 * frees `r`. */
static orch_err read_rows(orch_db_result *r, size_t size,
                          void (*read)(const orch_db_result *, int, void *), void **out, int *n)
{
    int rows = orch_db_result_rows(r);
    char *v = calloc(rows ? (size_t)rows : 1, size);
    if (!v) {
        orch_db_result_free(r);
        return ORCH_ENOMEM;
    }
    for (int i = 0; i < rows; i++)
        read(r, i, v + (size_t)i * size);
    orch_db_result_free(r);
    *out = v;
    *n = rows;
    return ORCH_OK;
}

static void read_history(const orch_db_result *r, int i, void *out)
{
    stage_history_row *h = out;
    copy(h->from_stage, sizeof h->from_stage, orch_db_result_get(r, i, 0));
    copy(h->to_stage, sizeof h->to_stage, orch_db_result_get(r, i, 1));
    copy(h->actor, sizeof h->actor, orch_db_result_get(r, i, 2));
    h->lease_epoch = u64(orch_db_result_get(r, i, 3));
    copy(h->reason, sizeof h->reason, orch_db_result_get(r, i, 4));
    h->at_ms = u64(orch_db_result_get(r, i, 5));
}

orch_err stage_store_history(orch_db_conn *c, uint64_t dl, const char *work_item, int limit,
                             stage_history_row **out, int *n)
{
    static const char sql[] =
        "SELECT h.from_stage, h.to_stage, h.actor, coalesce(h.lease_epoch, 0), h.reason,"
        " (extract(epoch FROM h.at) * 1000)::bigint"
        " FROM (SELECT * FROM stage_history WHERE task_id ="
        "   (SELECT id FROM tasks WHERE work_item = $1) ORDER BY id DESC LIMIT $2::integer) h"
        " ORDER BY h.id";
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[] = { work_item, lim };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 2, p, &r);
    return err ? err : read_rows(r, sizeof **out, read_history, (void **)out, n);
}

static void read_effect(const orch_db_result *r, int i, void *out)
{
    stage_effect_row *e = out;
    copy(e->transition, sizeof e->transition, orch_db_result_get(r, i, 0));
    copy(e->effect, sizeof e->effect, orch_db_result_get(r, i, 1));
    e->lease_epoch = u64(orch_db_result_get(r, i, 2));
    copy(e->outcome, sizeof e->outcome, orch_db_result_get(r, i, 3));
    copy(e->detail, sizeof e->detail, orch_db_result_get(r, i, 4));
    e->created_ms = u64(orch_db_result_get(r, i, 5));
    e->finished_ms = u64(orch_db_result_get(r, i, 6));
}

orch_err stage_store_effects(orch_db_conn *c, uint64_t dl, const char *work_item,
                             stage_effect_row **out, int *n)
{
    static const char sql[] =
        "SELECT transition, effect, coalesce(lease_epoch, 0), outcome, detail,"
        " (extract(epoch FROM created_at) * 1000)::bigint,"
        " coalesce((extract(epoch FROM finished_at) * 1000)::bigint, 0)"
        " FROM side_effects WHERE work_item = $1 ORDER BY id";
    const char *p[] = { work_item };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 1, p, &r);
    return err ? err : read_rows(r, sizeof **out, read_effect, (void **)out, n);
}

/* Runs `sql`, whose only parameter is a row limit, and reads its rows. */
static orch_err latest_rows(orch_db_conn *c, uint64_t dl, const char *sql, int limit, size_t size,
                            void (*read)(const orch_db_result *, int, void *), void **out, int *n)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[] = { lim };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 1, p, &r);
    return err ? err : read_rows(r, size, read, out, n);
}

static void read_lease_event(const orch_db_result *r, int i, void *out)
{
    stage_lease_event_row *e = out;
    e->id = u64(orch_db_result_get(r, i, 0));
    copy(e->work_item, sizeof e->work_item, orch_db_result_get(r, i, 1));
    e->epoch = u64(orch_db_result_get(r, i, 2));
    copy(e->kind, sizeof e->kind, orch_db_result_get(r, i, 3));
    copy(e->actor, sizeof e->actor, orch_db_result_get(r, i, 4));
    copy(e->detail, sizeof e->detail, orch_db_result_get(r, i, 5));
    e->at_ms = u64(orch_db_result_get(r, i, 6));
}

orch_err stage_store_lease_events(orch_db_conn *c, uint64_t dl, int limit,
                                  stage_lease_event_row **out, int *n)
{
    static const char sql[] = "SELECT id, work_item, coalesce(epoch, 0), kind, actor, detail,"
                              " (extract(epoch FROM at) * 1000)::bigint"
                              " FROM lease_events ORDER BY id DESC LIMIT $1::integer";
    return latest_rows(c, dl, sql, limit, sizeof **out, read_lease_event, (void **)out, n);
}

static void read_guard_audit(const orch_db_result *r, int i, void *out)
{
    stage_guard_audit_row *a = out;
    a->id = u64(orch_db_result_get(r, i, 0));
    a->at_ms = u64(orch_db_result_get(r, i, 1));
    copy(a->runtime, sizeof a->runtime, orch_db_result_get(r, i, 2));
    copy(a->operation, sizeof a->operation, orch_db_result_get(r, i, 3));
    copy(a->project, sizeof a->project, orch_db_result_get(r, i, 4));
    copy(a->decision, sizeof a->decision, orch_db_result_get(r, i, 5));
    copy(a->reason, sizeof a->reason, orch_db_result_get(r, i, 6));
    copy(a->caller, sizeof a->caller, orch_db_result_get(r, i, 7));
}

orch_err stage_store_guard_audit(orch_db_conn *c, uint64_t dl, int limit,
                                 stage_guard_audit_row **out, int *n)
{
    static const char sql[] = "SELECT id, (extract(epoch FROM at) * 1000)::bigint, runtime,"
                              " operation, project, decision, reason, caller"
                              " FROM guard_audit ORDER BY id DESC LIMIT $1::integer";
    return latest_rows(c, dl, sql, limit, sizeof **out, read_guard_audit, (void **)out, n);
}
