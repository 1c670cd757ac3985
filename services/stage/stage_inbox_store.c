/*
 * stage_inbox_store.c - every SQL statement on webhook_inbox (see
 * stage_inbox.h). Each function is one statement: no transaction is held
 * across a round trip, so a frozen caller never blocks another one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_inbox_store.h"

#define INBOX_COLS                                                                 \
    "w.id, w.source, w.delivery, w.work_item, w.kind, w.seen_stage, w.seen_cycle," \
    " w.state, w.outcome, w.detail, w.attempts"

/* A row no older open row of the same work item precedes: events of one
 * item are applied in the order they arrived. */
#define FIRST_OPEN(t)                                                                \
    " NOT EXISTS (SELECT 1 FROM webhook_inbox o WHERE o.work_item = " t ".work_item" \
    " AND o.id < " t ".id AND o.state <> 'done')"

/* Pending, or a claim older than $STALE ms (its claimer died). */
#define CLAIMABLE(t, stale)                                                               \
    " (" t ".state = 'pending' OR (" t ".state = 'applying' AND " t ".claimed_at < now()" \
    " - " stale "::bigint * interval '1 millisecond'))"

#define SET_CLAIM(claimer)                                                   \
    " SET state = 'applying', claimed_by = " claimer ", claimed_at = now()," \
    " attempts = w.attempts + 1"

static const char *const kind_names[] = { "cancel", "approve", "reject" };

const char *stage_inbox_kind_name(stage_inbox_kind k)
{
    return (unsigned)k < 3 ? kind_names[k] : "cancel";
}

static stage_inbox_kind kind_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, kind_names[i]) == 0)
            return (stage_inbox_kind)i;
    return STAGE_INBOX_CANCEL;
}

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static void read_row(const orch_db_result *r, int row, stage_inbox_row *o)
{
    memset(o, 0, sizeof *o);
    o->id = strtoll(orch_db_result_get(r, row, 0), NULL, 10);
    copy(o->source, sizeof o->source, orch_db_result_get(r, row, 1));
    copy(o->delivery, sizeof o->delivery, orch_db_result_get(r, row, 2));
    copy(o->work_item, sizeof o->work_item, orch_db_result_get(r, row, 3));
    o->kind = kind_parse(orch_db_result_get(r, row, 4));
    o->seen_stage = stage_parse(orch_db_result_get(r, row, 5));
    o->seen_cycle = (int)strtol(orch_db_result_get(r, row, 6), NULL, 10);
    copy(o->state, sizeof o->state, orch_db_result_get(r, row, 7));
    copy(o->outcome, sizeof o->outcome, orch_db_result_get(r, row, 8));
    copy(o->detail, sizeof o->detail, orch_db_result_get(r, row, 9));
    o->attempts = (int)strtol(orch_db_result_get(r, row, 10), NULL, 10);
}

/* A statement and its parameters. */
typedef struct stmt {
    const char *sql;
    int np;
    const char *const *p;
} stmt;

/* Runs `q` and reads its one row, if any, into *out (*found). */
static orch_err one_row(orch_db_conn *c, uint64_t dl, const stmt *q, stage_inbox_row *out,
                        bool *found)
{
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, q->sql, q->np, q->p, &r);
    if (err)
        return err;
    *found = orch_db_result_rows(r) == 1;
    if (*found)
        read_row(r, 0, out);
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err stage_inbox_put(orch_db_conn *c, uint64_t dl, const stage_inbox_row *in,
                         stage_inbox_row *out, bool *created)
{
    /* The insert and the read of an existing row are one statement: a
     * concurrent duplicate is either the inserter or finds its row. */
    static const char sql[] =
        "WITH ins AS (INSERT INTO webhook_inbox AS w (source, delivery, work_item, kind,"
        "   seen_stage, seen_cycle) VALUES ($1, $2, $3, $4, $5, $6::integer)"
        "   ON CONFLICT (source, delivery) DO NOTHING RETURNING " INBOX_COLS ", true)"
        " SELECT * FROM ins UNION ALL"
        " SELECT " INBOX_COLS ", false FROM webhook_inbox w"
        "   WHERE w.source = $1 AND w.delivery = $2 AND NOT EXISTS (SELECT 1 FROM ins)";
    char cyc[16];
    snprintf(cyc, sizeof cyc, "%d", in->seen_cycle);
    const char *p[] = { in->source,
                        in->delivery,
                        in->work_item,
                        stage_inbox_kind_name(in->kind),
                        stage_name(in->seen_stage),
                        cyc };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 6, p, &r);
    if (err)
        return err;
    if (orch_db_result_rows(r) != 1) {
        /* The conflicting insert was not committed yet when we looked:
         * its sender's other request is in flight; ask again. */
        orch_db_result_free(r);
        return ORCH_EDB_RETRY;
    }
    read_row(r, 0, out);
    const char *cr = orch_db_result_get(r, 0, 11);
    *created = cr && cr[0] == 't';
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err stage_inbox_claim(orch_db_conn *c, uint64_t dl, int64_t id, const stage_inbox_claimer *who,
                           stage_inbox_row *out, bool *claimed)
{
    static const char sql[] =
        "UPDATE webhook_inbox w" SET_CLAIM("$2") " WHERE w.id = $1::bigint AND" CLAIMABLE(
            "w", "$3") " AND" FIRST_OPEN("w") " RETURNING " INBOX_COLS;
    char ids[24], st[24];
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    snprintf(st, sizeof st, "%lld", (long long)who->stale_ms);
    const char *p[] = { ids, who->claimer, st };
    return one_row(c, dl, &(stmt){ sql, 3, p }, out, claimed);
}

orch_err stage_inbox_claim_next(orch_db_conn *c, uint64_t dl, const stage_inbox_claimer *who,
                                stage_inbox_row *out, bool *claimed)
{
    static const char sql[] = "UPDATE webhook_inbox w" SET_CLAIM(
        "$1") " FROM (SELECT i.id FROM webhook_inbox i"
              "   WHERE ((i.state = 'pending' AND i.next_attempt_at <= now()) OR" CLAIMABLE(
                  "i",
                  "$2") ") AND" FIRST_OPEN("i") "   ORDER BY i.id LIMIT 1 FOR UPDATE SKIP LOCKED) s"
                                                " WHERE w.id = s.id RETURNING " INBOX_COLS;
    char st[24];
    snprintf(st, sizeof st, "%lld", (long long)who->stale_ms);
    const char *p[] = { who->claimer, st };
    return one_row(c, dl, &(stmt){ sql, 2, p }, out, claimed);
}

orch_err stage_inbox_settle(orch_db_conn *c, uint64_t dl, const stage_inbox_settlement *s,
                            bool *settled)
{
    static const char sql[] =
        "UPDATE webhook_inbox SET state = CASE WHEN $3::boolean THEN 'done' ELSE 'pending' END,"
        "   outcome = $4, detail = left($5, 500), claimed_by = '', claimed_at = NULL,"
        "   settled_at = CASE WHEN $3::boolean THEN now() END,"
        "   next_attempt_at = now() + $6::bigint * interval '1 millisecond'"
        " WHERE id = $1::bigint AND state = 'applying' AND claimed_by = $2";
    char ids[24], rm[24];
    snprintf(ids, sizeof ids, "%lld", (long long)s->id);
    snprintf(rm, sizeof rm, "%lld", (long long)s->retry_ms);
    const char *p[] = { ids, s->claimer, s->done ? "true" : "false", s->outcome, s->detail, rm };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl, sql, 6, p, &r);
    if (err)
        return err;
    *settled = orch_db_result_affected(r) == 1;
    orch_db_result_free(r);
    return ORCH_OK;
}
