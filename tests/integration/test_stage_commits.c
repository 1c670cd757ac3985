/*
 * test_stage_commits.c - durable commits per transition, counted from the
 * WAL (tests/support/wal_commits.h), against the real stage-service and
 * lease-service; and the lease release folded into the stage write, which
 * must leave the lease row and its events exactly as lease-service's
 * Release does.
 */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_world.h"
#include "wal_commits.h"

#define OUT(x) ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_##x

static sw_world W;
static char lsn[64];

static void down(void)
{
    sw_down(&W);
}

static void up(void)
{
    sw_up(&W, NULL);
    free(th_sql(W.db, "CREATE EXTENSION IF NOT EXISTS pg_walinspect"));
}

/* Marks the WAL position from which commits() counts. */
static void mark(void)
{
    char *v = th_sql(W.db, ORCH_WAL_LSN_SQL);
    cr_assert_not_null(v, "cannot read the WAL position");
    snprintf(lsn, sizeof lsn, "%s", v);
    free(v);
}

/* The one value of `sql` over (mark(), the stage and lease tables). */
static char *wal_query(const char *sql)
{
    PGconn *c = PQconnectdb(W.db);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    const char *p[] = { lsn, ORCH_WAL_STAGE_TABLES };
    PGresult *r = PQexecParams(c, sql, 2, NULL, p, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return v;
}

/* Commits that wrote the stage or lease tables since mark(); each one's
 * tables are logged, so that a failed count says which were extra. */
static long commits(void)
{
    char *n = wal_query(ORCH_WAL_COMMITS_SQL), *detail = wal_query(ORCH_WAL_COMMITS_DETAIL_SQL);
    long v = strtol(n, NULL, 10);
    cr_log_info("%ld commits since %s: %s", v, lsn, detail);
    free(n);
    free(detail);
    return v;
}

static void advance_ok(const char *item, const char *from, const char *to, const char *ev)
{
    sw_adv a = sw_advance(W.client, item, from, to, "monitor", ev);
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s %s->%s: %s", item, from, to, a.message);
    cr_assert_eq(a.outcome, OUT(ADVANCED), "%s %s->%s: outcome %d (%s)", item, from, to, a.outcome,
                 a.first_failure);
}

static long long num(const char *sql)
{
    return sw_sql_num(&W, sql);
}

Test(stage_commits, an_edge_without_effect_commits_twice, .init = up, .fini = down, .timeout = 120)
{
    cr_assert_eq(sw_create(W.client, "CM-1", "org/app", 0), ORCH_CODE_OK);
    mark();
    advance_ok("CM-1", "backlog", "analysis", "");
    long n0 = commits();
    cr_assert_leq(n0, 2, "backlog->analysis: %ld commits (Acquire; CAS + release)", n0);
    /* With verdicts: they are recorded by the stage write itself. */
    mark();
    advance_ok("CM-1", "analysis", "architecture", "analysis_status: DONE");
    long n = commits();
    cr_assert_leq(n, 2, "analysis->architecture with a verdict: %ld commits", n);
    cr_assert_eq(num("SELECT count(*) FROM task_evidence WHERE work_item = 'CM-1'"
                     " AND transition = 'analysis->architecture' AND key = 'analysis_status'"
                     " AND value = 'DONE' AND actor = 'monitor'"),
                 1, "the verdict was recorded with the stage write");
    cr_assert_eq(num("SELECT count(*) FROM transition_lease WHERE work_item = 'CM-1'"
                     " AND released_at IS NULL"),
                 0, "the lease was released");
}

Test(stage_commits, verdicts_of_a_refused_edge_are_still_recorded, .init = up, .fini = down,
     .timeout = 120)
{
    cr_assert_eq(sw_create(W.client, "CM-2", "org/app", 0), ORCH_CODE_OK);
    sw_walk_to(&W, "CM-2", "analysis");
    sw_adv a = sw_advance(W.client, "CM-2", "analysis", "architecture", "monitor",
                          "analysis_status: BLOCKED");
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
    cr_assert_eq(a.outcome, OUT(GATE_FAILED), "outcome %d", a.outcome);
    cr_assert_eq(num("SELECT count(*) FROM task_evidence WHERE work_item = 'CM-2'"
                     " AND key = 'analysis_status' AND value = 'BLOCKED'"),
                 1, "a refused call's verdicts are recorded");
    advance_ok("CM-2", "analysis", "architecture", "analysis_status: DONE");
    cr_assert_eq(num("SELECT count(*) FROM task_evidence WHERE work_item = 'CM-2'"
                     " AND transition = 'analysis->architecture' AND value = 'DONE'"),
                 1, "the next call's verdict replaced it");
}

Test(stage_commits, an_edge_with_an_effect_commits_three_times, .init = up, .fini = down,
     .timeout = 120)
{
    cr_assert_eq(sw_create(W.client, "CM-3", "org/app", 8301), ORCH_CODE_OK);
    sw_walk_to(&W, "CM-3", "review");
    /* The approval recorded beforehand (as a webhook or an earlier call
     * would), so that this call only runs the transition. */
    free(th_sql(W.db, "INSERT INTO task_evidence (work_item, transition, key, value, actor, cycle)"
                      " SELECT work_item, 'review->testing', 'review_verdict', 'APPROVE', 'test',"
                      " cycle FROM tasks WHERE work_item = 'CM-3'"));
    mark();
    advance_ok("CM-3", "review", "testing", "");
    long n = commits();
    cr_assert_leq(n, 3,
                  "review->testing (merge): %ld commits (Acquire; intent claim; outcome + CAS "
                  "+ release)",
                  n);
    cr_assert_eq(sw_counts_for_pr(8301).merges, 1);
    cr_assert_eq(num("SELECT count(*) FROM side_effects WHERE work_item = 'CM-3'"
                     " AND outcome = 'ok' AND finished_at IS NOT NULL"),
                 1, "the merge's outcome was recorded with the stage write");
    cr_assert_eq(num("SELECT count(*) FROM transition_lease WHERE work_item = 'CM-3'"
                     " AND released_at IS NULL"),
                 0, "the lease was released");
}

Test(stage_commits, an_edge_with_an_effect_and_a_verdict_commits_three_times, .init = up,
     .fini = down, .timeout = 120)
{
    cr_assert_eq(sw_create(W.client, "CM-4", "org/app", 8302), ORCH_CODE_OK);
    sw_walk_to(&W, "CM-4", "review");
    mark();
    advance_ok("CM-4", "review", "testing", "review_verdict: APPROVE");
    long n = commits();
    cr_assert_leq(n, 3,
                  "review->testing (merge) with a verdict: %ld commits (Acquire; verdicts + "
                  "intent claim; outcome + CAS + release)",
                  n);
    cr_assert_eq(sw_counts_for_pr(8302).merges, 1);
    /* now() is the transaction's start: the verdict shares the claim's. */
    cr_assert_eq(num("SELECT count(*) FROM task_evidence e, side_effects s"
                     " WHERE e.work_item = 'CM-4' AND e.key = 'review_verdict'"
                     " AND e.value = 'APPROVE' AND e.transition = 'review->testing'"
                     " AND s.work_item = e.work_item AND s.effect = 'merge_pr'"
                     " AND e.at = s.created_at AND s.outcome = 'ok'"),
                 1, "the verdict was recorded by the intent claim, before the merge");
}

/* The lease row and the events of a release, without what differs from
 * item to item (its name, owner, clock): one text to compare. */
static char *release_trace(const char *item)
{
    char sql[900];
    snprintf(sql, sizeof sql,
             "SELECT (to_jsonb(l) - 'work_item' - 'owner_host' - 'owner_boot_id' - 'owner_pid'"
             " - 'owner_start_ticks' - 'owner_instance' - 'actor' - 'transition' - 'repo'"
             " - 'acquired_at' - 'released_at')::text"
             " || (l.released_at >= l.acquired_at)::text || ' ' || (SELECT string_agg("
             "   (to_jsonb(e) - 'id' - 'work_item' - 'at')::text, ' ' ORDER BY e.id)"
             "   FROM lease_events e WHERE e.work_item = l.work_item AND e.kind <> 'granted')"
             " FROM transition_lease l WHERE l.work_item = '%s'",
             item);
    char *v = th_sql(W.db, sql);
    cr_assert_not_null(v, "no lease row for %s", item);
    return v;
}

Test(stage_commits, the_folded_release_is_the_release_rpc, .init = up, .fini = down, .timeout = 120)
{
    /* Released by the stage write. */
    cr_assert_eq(sw_create(W.client, "CM-F", "org/app", 0), ORCH_CODE_OK);
    advance_ok("CM-F", "backlog", "analysis", "");
    /* Released by lease-service's Release, by the holder. */
    uint64_t ep = sw_hold_lease(&W, "CM-R", "monitor");
    cr_assert_eq(ep, 1);
    sw_free_lease(&W, "CM-R", ep);
    cr_assert_eq(num("SELECT count(*) FROM lease_events e, stage_history h, tasks t"
                     " WHERE e.work_item = 'CM-F' AND e.kind = 'released'"
                     " AND t.work_item = e.work_item AND h.task_id = t.id"
                     " AND e.xmin::text = h.xmin::text"),
                 1, "the release was written by the stage write's own transaction");
    char *folded = release_trace("CM-F"), *rpc = release_trace("CM-R");
    cr_log_info("folded: %s; rpc: %s", folded, rpc);
    cr_assert_str_eq(folded, rpc, "the folded release differs from Release");
    free(folded);
    free(rpc);
    /* lease-service sees it as its own: a Release resent by the holder is
     * answered as a retry (already released), nothing changes. */
    sw_free_lease(&W, "CM-F", 1);
    cr_assert_eq(num("SELECT count(*) FROM lease_events WHERE work_item = 'CM-F'"), 2,
                 "granted and released, once each");
    cr_assert_eq(num("SELECT count(*) FROM stage_history WHERE task_id ="
                     " (SELECT id FROM tasks WHERE work_item = 'CM-F') AND lease_epoch = 1"),
                 1, "the history names the epoch");
}
