/*
 * test_stage_engine.c - stage-service against real PostgreSQL, a real
 * lease-service and an imitation of Gitea and the hooks that counts every
 * call: the double-merge incident, rollback versus done, a crashed owner, a
 * stale owner, the gates and rollbacks, the kill switch, bad input.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/clock.h"
#include "orch/lease_client.h"
#include "orch/v1/lease.pb-c.h"
#include "stage_world.h"

#define OUT(x) ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_##x

static sw_world W;

static void down(void)
{
    sw_down(&W);
}

static int count_sql(const char *sql)
{
    return (int)sw_sql_num(&W, sql);
}

/* Every history row is an edge of the pipeline. */
static void assert_history_legal(void)
{
    static const char sql[] =
        "SELECT count(*) FROM stage_history WHERE (from_stage, to_stage) NOT IN ("
        " ('backlog','analysis'),('analysis','architecture'),('architecture','development'),"
        " ('development','review'),('review','testing'),('testing','staging'),"
        " ('staging','deploy'),('deploy','done'),('review','development'),"
        " ('testing','development'),('staging','development'),('deploy','development'))"
        " AND to_stage <> 'cancelled'";
    cr_assert_eq(count_sql(sql), 0, "history holds an edge that is not in the pipeline");
}

/* ---- the double-merge incident ------------------------------------------ */

#define ACTORS 5
static const char *const actors[ACTORS] = { "monitor", "webhook", "reconciler", "reaper",
                                            "finalizer" };

typedef struct racer {
    int idx;
    const char *item, *from, *to, *evidence;
    pthread_barrier_t *go;
    orch_rpc_client *client;
    sw_adv result;
} racer;

static void *race_main(void *arg)
{
    racer *r = arg;
    pthread_barrier_wait(r->go);
    r->result = sw_advance(r->client, r->item, r->from, r->to, actors[r->idx], r->evidence);
    return NULL;
}

/* Five actors enter the same transition at once; returns how many advanced. */
static int race(orch_rpc_client **clients, const char *item, const char *from, const char *to,
                const char *evidence)
{
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, ACTORS);
    racer rs[ACTORS];
    pthread_t th[ACTORS];
    for (int i = 0; i < ACTORS; i++) {
        rs[i] = (racer){ i, item, from, to, evidence, &go, clients[i], { 0 } };
        pthread_create(&th[i], NULL, race_main, &rs[i]);
    }
    int advanced = 0;
    for (int i = 0; i < ACTORS; i++) {
        pthread_join(th[i], NULL);
        const sw_adv *a = &rs[i].result;
        if (a->code == ORCH_CODE_OK && a->outcome == OUT(ADVANCED))
            advanced++;
        else
            /* The losers defer, lose the CAS, or find the stage moved on. */
            cr_assert(a->code == ORCH_CODE_OK ? a->outcome == OUT(DEFERRED)
                                              : (a->code == ORCH_CODE_ABORTED ||
                                                 a->code == ORCH_CODE_FAILED_PRECONDITION),
                      "%s %s->%s by %s: code %d outcome %d: %s", item, from, to, actors[i], a->code,
                      a->outcome, a->message);
    }
    pthread_barrier_destroy(&go);
    return advanced;
}

Test(stage_engine, double_merge_incident_five_actors_200_rounds, .fini = down, .timeout = 600)
{
    sw_up(&W, NULL);
    orch_rpc_client *clients[ACTORS];
    for (int i = 0; i < ACTORS; i++)
        cr_assert_eq(orch_rpc_client_open(W.stage.rpc_url, NULL, &clients[i]), ORCH_OK);
    const int rounds = 200;
    int total_advanced = 0;
    for (int r = 0; r < rounds; r++) {
        char item[32];
        snprintf(item, sizeof item, "RACE-%d", r);
        uint64_t pr = 1000 + (uint64_t)r;
        cr_assert_eq(sw_create(W.client, item, "org/app", pr), ORCH_CODE_OK);
        sw_walk_to(&W, item, "review");
        int a1 = race(clients, item, "review", "testing", "review_verdict: APPROVE");
        sw_walk_to(&W, item, "staging");
        int a2 = race(clients, item, "staging", "deploy",
                      "staging_status: SUCCESS\nimage_digest: sha256:"
                      "1111111111111111111111111111111111111111111111111111111111111111");
        cr_assert_eq(a1, 1, "round %d: %d actors advanced review->testing", r, a1);
        cr_assert_eq(a2, 1, "round %d: %d actors advanced staging->deploy", r, a2);
        sw_counts pc = sw_counts_for_pr(pr), ic = sw_counts_for_item(item);
        cr_assert_eq(pc.merges, 1, "round %d: %d merges", r, pc.merges);
        cr_assert_eq(pc.merge_calls, 1, "round %d: merge API called %d times", r, pc.merge_calls);
        cr_assert_eq(ic.deploy_starts, 1, "round %d: %d deploy starts", r, ic.deploy_starts);
        cr_assert_eq(ic.deploy_calls, 1, "round %d: deploy hook called %d times", r,
                     ic.deploy_calls);
        total_advanced += a1 + a2;
    }
    cr_expect_eq(total_advanced, 2 * rounds);
    assert_history_legal();
    cr_expect_eq(count_sql("SELECT count(*) FROM side_effects WHERE outcome <> 'ok'"), 0);
    /* Every lease was released. */
    cr_expect_eq(count_sql("SELECT count(*) FROM transition_lease WHERE released_at IS NULL"), 0);
    for (int i = 0; i < ACTORS; i++)
        orch_rpc_client_close(clients[i]);
}

/* ---- rollback versus done ----------------------------------------------- */

typedef struct rb_racer {
    pthread_barrier_t *go;
    orch_rpc_client *client;
    const char *item;
    bool rollback;
    sw_adv result;
} rb_racer;

static void *rb_main(void *arg)
{
    rb_racer *r = arg;
    pthread_barrier_wait(r->go);
    r->result = r->rollback ? sw_rollback(r->client, r->item, "deploy", "deploy looked broken")
                            : sw_advance(r->client, r->item, "deploy", "done", "finalizer",
                                         "deploy_status: SUCCESS");
    return NULL;
}

Test(stage_engine, rollback_racing_done_never_lands_after_done, .fini = down, .timeout = 600)
{
    sw_up(&W, NULL);
    orch_rpc_client *c2;
    cr_assert_eq(orch_rpc_client_open(W.stage.rpc_url, NULL, &c2), ORCH_OK);
    int done = 0, rolled = 0;
    for (int r = 0; r < 30; r++) {
        char item[32];
        snprintf(item, sizeof item, "RB-%d", r);
        cr_assert_eq(sw_create(W.client, item, "org/app", 5000 + (uint64_t)r), ORCH_CODE_OK);
        sw_walk_to(&W, item, "deploy");
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        rb_racer a = { &go, W.client, item, false, { 0 } };
        rb_racer b = { &go, c2, item, true, { 0 } };
        pthread_t ta, tb;
        pthread_create(&ta, NULL, rb_main, &a);
        pthread_create(&tb, NULL, rb_main, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        char stage[32];
        sw_stage_of(&W, item, stage, sizeof stage);
        char sql[600];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM stage_history h JOIN tasks t ON t.id = h.task_id"
                 " WHERE t.work_item = '%s' AND h.id > (SELECT coalesce(max(h2.id), 0)"
                 " FROM stage_history h2 WHERE h2.task_id = t.id AND h2.to_stage = 'done')"
                 " AND EXISTS (SELECT 1 FROM stage_history h3 WHERE h3.task_id = t.id"
                 " AND h3.to_stage = 'done')",
                 item);
        cr_assert_eq(count_sql(sql), 0, "%s: a write landed after done", item);
        if (strcmp(stage, "done") == 0) {
            done++;
            cr_assert(b.result.code != ORCH_CODE_OK || b.result.outcome == OUT(DEFERRED),
                      "%s: the rollback says it happened but the item is done", item);
        } else {
            cr_assert_str_eq(stage, "development", "%s ended in %s", item, stage);
            rolled++;
        }
        /* Whatever lost was told so. */
        cr_assert(!(a.result.code == ORCH_CODE_OK && a.result.outcome == OUT(ADVANCED) &&
                    b.result.code == ORCH_CODE_OK && b.result.outcome == OUT(ROLLED_BACK)),
                  "%s: both the finish and the rollback claim success", item);
    }
    cr_log_info("rollback vs done: %d done, %d rolled back", done, rolled);
    assert_history_legal();
    orch_rpc_client_close(c2);
}

/* ---- crashed and stale owners ------------------------------------------- */

static void crash_case(const char *fault, const char *item, uint64_t pr)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, item, "org/app", pr), ORCH_CODE_OK);
    sw_walk_to(&W, item, "review");
    char fenv[80];
    snprintf(fenv, sizeof fenv, "ORCH_STAGE_TEST_FAULT=%s", fault);
    const char *env[] = { fenv, NULL };
    th_svc crasher;
    sw_stage_start(&W, &crasher, env);
    orch_rpc_client *cc;
    cr_assert_eq(orch_rpc_client_open(crasher.rpc_url, NULL, &cc), ORCH_OK);
    sw_call_timeout_ms = 3000; /* the owner dies: no answer will come */
    sw_adv a = sw_advance(cc, item, "review", "testing", "monitor", "review_verdict: APPROVE");
    sw_call_timeout_ms = 30000;
    cr_assert_neq(a.code, ORCH_CODE_OK, "the crashing owner answered");
    int st = th_svc_stop(&crasher, 0, 10000);
    cr_assert_eq(st, 86, "the owner should have exited at the fault point (status %d)", st);
    orch_rpc_client_close(cc);
    cr_assert_eq(sw_counts_for_pr(pr).merges, 1, "the crashed owner merged once");
    char stage[32];
    sw_stage_of(&W, item, stage, sizeof stage);
    cr_assert_str_eq(stage, "review", "the crash came before the stage write");

    /* The next actor: reclaims the dead owner's lease, does not merge again,
     * finishes the transition. */
    sw_adv b = sw_advance(W.client, item, "review", "testing", "reconciler", "");
    cr_assert_eq(b.code, ORCH_CODE_OK, "%s", b.message);
    cr_assert_eq(b.outcome, OUT(ADVANCED), "outcome %d: %s", b.outcome, b.first_failure);
    sw_counts c = sw_counts_for_pr(pr);
    cr_assert_eq(c.merges, 1, "merged %d times", c.merges);
    cr_assert_eq(c.merge_calls, 1, "merge API called %d times", c.merge_calls);
    cr_assert_eq(count_sql("SELECT count(*) FROM lease_events WHERE kind = 'reclaimed-stale'"), 1,
                 "the dead owner's lease was reclaimed");
}

Test(stage_engine, owner_killed_after_effect_recorded_is_not_repeated, .fini = down, .timeout = 120)
{
    crash_case("crash-after-effect", "CRASH-1", 7001);
    cr_assert_eq(sw_counts_for_pr(7001).merge_checks, 0, "an ok outcome needs no check");
}

Test(stage_engine, owner_killed_before_recording_is_checked_not_repeated, .fini = down,
     .timeout = 120)
{
    crash_case("crash-before-record", "CRASH-2", 7002);
    cr_assert_geq(sw_counts_for_pr(7002).merge_checks, 1,
                  "a pending intent of a dead owner is resolved by asking Gitea");
}

typedef struct slow_call {
    orch_rpc_client *client;
    sw_adv result;
} slow_call;

static void *slow_main(void *arg)
{
    slow_call *s = arg;
    s->result =
        sw_advance(s->client, "STALE-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    return NULL;
}

Test(stage_engine, stale_owner_can_neither_write_the_stage_nor_finish_its_effect, .fini = down,
     .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "STALE-1", "org/app", 7100), ORCH_CODE_OK);
    sw_walk_to(&W, "STALE-1", "review");
    sw_set_merge_delay_ms(2500);
    orch_rpc_client *c2;
    cr_assert_eq(orch_rpc_client_open(W.stage.rpc_url, NULL, &c2), ORCH_OK);
    slow_call s = { c2, { 0 } };
    pthread_t th;
    pthread_create(&th, NULL, slow_main, &s);
    /* Wait until the slow owner is inside its merge, then take its lease. */
    for (int i = 0; i < 100 && sw_counts_for_pr(7100).merge_calls == 0; i++)
        usleep(20000);
    cr_assert_eq(sw_counts_for_pr(7100).merge_calls, 1);
    Orch__V1__ForceReleaseRequest fr = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    fr.work_item = "STALE-1";
    fr.reason = "test: operator takes the lease of a slow owner";
    fr.operator_ = "test";
    fr.epoch = (uint64_t)count_sql("SELECT epoch FROM transition_lease WHERE work_item = 'STALE-1'"
                                   " AND released_at IS NULL");
    cr_assert_gt(fr.epoch, 0);
    orch_rpc_call_opts o = { .timeout_ms = 5000 };
    orch_rpc_status st;
    cr_assert_eq(orch_rpc_invoke(W.lease_client, orch_lease_method_force_release, &fr.base, NULL,
                                 &o, &st, NULL),
                 ORCH_CODE_OK, "%s", st.message);
    sw_set_merge_delay_ms(0);
    /* Another actor takes over: the merge already happened, it must not
     * happen again, and the transition completes under the new epoch. */
    sw_adv b = sw_advance(W.client, "STALE-1", "review", "testing", "reconciler", "");
    cr_assert_eq(b.code, ORCH_CODE_OK, "%s", b.message);
    cr_assert_eq(b.outcome, OUT(ADVANCED), "outcome %d", b.outcome);
    pthread_join(th, NULL);
    cr_assert_neq(s.result.code, ORCH_CODE_OK, "the stale owner reported success");
    cr_assert_eq(s.result.code, ORCH_CODE_ABORTED, "stale owner: code %d: %s", s.result.code,
                 s.result.message);
    cr_assert_eq(sw_counts_for_pr(7100).merges, 1);
    cr_assert_eq(count_sql("SELECT count(*) FROM stage_history h JOIN tasks t ON t.id = h.task_id"
                           " WHERE t.work_item = 'STALE-1' AND h.to_stage = 'testing'"),
                 1, "exactly one write of testing");
    cr_assert_eq(count_sql("SELECT count(*) FROM side_effects WHERE work_item = 'STALE-1'"
                           " AND outcome = 'ok'"),
                 1);
    orch_rpc_client_close(c2);
}

/* ---- gates and rollbacks ------------------------------------------------- */

Test(stage_engine, gates_refuse_on_missing_or_failing_verdicts, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "GATE-1", "org/app", 7200), ORCH_CODE_OK);
    sw_walk_to(&W, "GATE-1", "testing");
    sw_adv a = sw_advance(W.client, "GATE-1", "testing", "staging", "monitor",
                          "test_status: PASS\ncoverage_pct: 90");
    cr_assert_eq(a.outcome, OUT(GATE_FAILED), "outcome %d", a.outcome);
    cr_assert(strstr(a.first_failure, "security_status is missing"), "%s", a.first_failure);
    a = sw_advance(W.client, "GATE-1", "testing", "staging", "monitor",
                   "test_status: FAIL\nsecurity_status: PASS");
    cr_assert_eq(a.outcome, OUT(GATE_FAILED));
    cr_assert(strstr(a.first_failure, "test_status is FAIL"), "%s", a.first_failure);
    a = sw_advance(W.client, "GATE-1", "testing", "staging", "monitor",
                   "test_status: PASS\ncoverage_pct: lots");
    cr_assert_eq(a.outcome, OUT(GATE_FAILED));
    cr_assert(strstr(a.first_failure, "coverage_pct is malformed"), "%s", a.first_failure);
    char stage[32];
    sw_stage_of(&W, "GATE-1", stage, sizeof stage);
    cr_assert_str_eq(stage, "testing");
    cr_assert_eq(sw_counts_for_item("GATE-1").image_calls, 0, "no effect before the gates pass");
    a = sw_advance(W.client, "GATE-1", "testing", "staging", "monitor", "coverage_pct: 85.5");
    cr_assert_eq(a.outcome, OUT(ADVANCED), "%s", a.first_failure);
    cr_assert_eq(count_sql("SELECT count(*) FROM coverage_baseline WHERE repo = 'org/app'"
                           " AND pct = 85.5"),
                 1, "the ratchet raised the baseline");
}

static void expect_rolled_back(const char *item, sw_adv a, const char *why)
{
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s: %s", item, a.message);
    cr_assert_eq(a.outcome, OUT(ROLLED_BACK), "%s: outcome %d (%s)", item, a.outcome,
                 a.first_failure);
    cr_assert(strstr(a.first_failure, why), "%s: %s", item, a.first_failure);
    char stage[32];
    sw_stage_of(&W, item, stage, sizeof stage);
    cr_assert_str_eq(stage, "development", "%s", item);
}

Test(stage_engine, each_rollback_gate_sends_the_item_back, .fini = down, .timeout = 180)
{
    sw_up(&W, NULL);
    /* security */
    cr_assert_eq(sw_create(W.client, "RBG-SEC", "org/app", 7301), ORCH_CODE_OK);
    sw_walk_to(&W, "RBG-SEC", "testing");
    expect_rolled_back("RBG-SEC",
                       sw_advance(W.client, "RBG-SEC", "testing", "staging", "monitor",
                                  "test_status: PASS\nsecurity_status: FAIL\ncoverage_pct: 90"),
                       "security_status is FAIL");
    cr_assert_eq(count_sql("SELECT count(*) FROM task_evidence WHERE work_item = 'RBG-SEC'"), 0,
                 "a rollback clears the verdicts of the undone cycle");
    /* coverage: a baseline of 80 first */
    cr_assert_eq(sw_create(W.client, "RBG-BASE", "org/app", 7302), ORCH_CODE_OK);
    sw_walk_to(&W, "RBG-BASE", "staging");
    cr_assert_eq(sw_create(W.client, "RBG-COV", "org/app", 7303), ORCH_CODE_OK);
    sw_walk_to(&W, "RBG-COV", "testing");
    expect_rolled_back("RBG-COV",
                       sw_advance(W.client, "RBG-COV", "testing", "staging", "monitor",
                                  "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 70"),
                       "below the baseline");
    /* image freshness */
    cr_assert_eq(sw_create(W.client, "RBG-IMG", "org/app", 7304), ORCH_CODE_OK);
    sw_walk_to(&W, "RBG-IMG", "staging");
    expect_rolled_back(
        "RBG-IMG",
        sw_advance(W.client, "RBG-IMG", "staging", "deploy", "monitor",
                   "staging_status: SUCCESS\nimage_digest: sha256:"
                   "2222222222222222222222222222222222222222222222222222222222222222"),
        "not the image built");
    cr_assert_eq(sw_counts_for_item("RBG-IMG").deploy_calls, 0);
    /* merge: Gitea refuses the pull request */
    cr_assert_eq(sw_create(W.client, "RBG-MERGE", "org/app", 7305), ORCH_CODE_OK);
    sw_walk_to(&W, "RBG-MERGE", "review");
    sw_set_unmergeable(7305);
    expect_rolled_back("RBG-MERGE",
                       sw_advance(W.client, "RBG-MERGE", "review", "testing", "monitor",
                                  "review_verdict: APPROVE"),
                       "merge_pr failed");
    /* After the rollback, a new cycle may merge again (a fixed pull request). */
    cr_assert_eq(count_sql("SELECT cycle FROM tasks WHERE work_item = 'RBG-MERGE'"), 1);
    assert_history_legal();
}

/* ---- kill switch and scope ------------------------------------------------ */

Test(stage_engine, lease_switched_off_writes_no_lease_and_needs_no_lease_service, .fini = down,
     .timeout = 120)
{
    const char *env[] = { "ORCH_TRANSITION_LEASE_ENABLED=false", NULL };
    sw_up(&W, env);
    th_svc_stop(&W.lease, SIGTERM, 10000);
    cr_assert_eq(sw_create(W.client, "OFF-1", "org/app", 7401), ORCH_CODE_OK);
    sw_walk_to(&W, "OFF-1", "done");
    cr_assert_eq(count_sql("SELECT count(*) FROM transition_lease"), 0);
    cr_assert_eq(count_sql("SELECT count(*) FROM stage_history WHERE lease_epoch IS NOT NULL"), 0);
    cr_assert_eq(sw_counts_for_pr(7401).merges, 1);
    cr_assert_eq(sw_counts_for_item("OFF-1").deploy_starts, 1);
}

Test(stage_engine, repo_out_of_scope_behaves_as_switched_off, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "SCOPE-1", "other/repo", 7501), ORCH_CODE_OK);
    sw_walk_to(&W, "SCOPE-1", "deploy");
    cr_assert_eq(count_sql("SELECT count(*) FROM transition_lease"), 0);
    cr_assert_eq(count_sql("SELECT count(*) FROM stage_history WHERE lease_epoch IS NOT NULL"), 0);
    /* The same walk in scope takes a lease per transition. */
    cr_assert_eq(sw_create(W.client, "SCOPE-2", "org/app", 7502), ORCH_CODE_OK);
    sw_walk_to(&W, "SCOPE-2", "deploy");
    cr_assert_eq(count_sql("SELECT count(*) FROM stage_history WHERE lease_epoch IS NULL"
                           " AND task_id = (SELECT id FROM tasks WHERE work_item = 'SCOPE-2')"),
                 0);
}

/* ---- bad input ------------------------------------------------------------- */

Test(stage_engine, bad_input_gets_a_clear_status, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "BAD-1", "org/app", 7601), ORCH_CODE_OK);
    cr_assert_eq(sw_create(W.client, "", "org/app", 1), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_eq(sw_create(W.client, "BAD 2", "org/app", 1), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_eq(sw_create(W.client, "BAD-3", "/etc/passwd", 1), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_eq(sw_create(W.client, "BAD-1", "org/other", 7601), ORCH_CODE_ALREADY_EXISTS);
    cr_assert_eq(sw_create(W.client, "BAD-1", "org/app", 7601), ORCH_CODE_OK, "same: idempotent");

    sw_adv a = sw_advance(W.client, "BAD-1", "backlog", "limbo", "monitor", "");
    cr_assert_eq(a.code, ORCH_CODE_INVALID_ARGUMENT);
    cr_assert(strstr(a.message, "unknown stage \"limbo\""), "%s", a.message);
    a = sw_advance(W.client, "BAD-1", "backlog", "done", "monitor", "");
    cr_assert_eq(a.code, ORCH_CODE_INVALID_ARGUMENT);
    cr_assert(strstr(a.message, "no edge backlog->done"), "%s", a.message);
    a = sw_advance(W.client, "BAD-1", "review", "testing", "monitor", "");
    cr_assert_eq(a.code, ORCH_CODE_FAILED_PRECONDITION);
    cr_assert(strstr(a.message, "is in stage backlog"), "%s", a.message);
    a = sw_advance(W.client, "NOPE-1", "backlog", "analysis", "monitor", "");
    cr_assert_eq(a.code, ORCH_CODE_NOT_FOUND, "%s", a.message);
    a = sw_advance(W.client, "BAD-1", "backlog", "analysis", "", "");
    cr_assert_eq(a.code, ORCH_CODE_INVALID_ARGUMENT, "actor is required");
    size_t big = 70000;
    char *ev = malloc(big + 1);
    memset(ev, 'x', big);
    ev[big] = '\0';
    a = sw_advance(W.client, "BAD-1", "backlog", "analysis", "monitor", ev);
    free(ev);
    cr_assert_eq(a.code, ORCH_CODE_INVALID_ARGUMENT);
    cr_assert(strstr(a.message, "ORCH_STAGE_MAX_EVIDENCE_BYTES"), "%s", a.message);
    a = sw_rollback(W.client, "BAD-1", "backlog", "no");
    cr_assert_eq(a.code, ORCH_CODE_INVALID_ARGUMENT, "%s", a.message);
    a = sw_rollback(W.client, "BAD-1", "review", "");
    cr_assert_eq(a.code, ORCH_CODE_INVALID_ARGUMENT, "a reason is required");
    char stage[32];
    sw_stage_of(&W, "BAD-1", stage, sizeof stage);
    cr_assert_str_eq(stage, "backlog", "nothing was written by bad requests");
    cr_assert_eq(count_sql("SELECT count(*) FROM stage_history"), 0);
}

/* ---- the reconciler ---------------------------------------------------------- */

Test(stage_engine, reconciler_finishes_a_transition_left_with_an_unknown_effect, .fini = down,
     .timeout = 120)
{
    const char *env[] = { "ORCH_RECONCILER_INTERVAL_MS=300", "ORCH_EFFECT_TIMEOUT_MS=1000", NULL };
    sw_up(&W, env);
    cr_assert_eq(sw_create(W.client, "REC-1", "org/app", 7700), ORCH_CODE_OK);
    sw_walk_to(&W, "REC-1", "review");
    /* The forge merges but answers too late: the outcome is unknown. */
    sw_set_merge_delay_ms(2000);
    sw_adv a =
        sw_advance(W.client, "REC-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
    cr_assert_eq(a.outcome, OUT(EFFECT_UNKNOWN), "outcome %d", a.outcome);
    sw_set_merge_delay_ms(0);
    char stage[32] = "";
    for (int i = 0; i < 100; i++) {
        sw_stage_of(&W, "REC-1", stage, sizeof stage);
        if (strcmp(stage, "testing") == 0)
            break;
        usleep(100000);
    }
    cr_assert_str_eq(stage, "testing", "the reconciler did not finish the transition");
    sw_counts c = sw_counts_for_pr(7700);
    cr_assert_eq(c.merges, 1);
    cr_assert_eq(c.merge_calls, 1, "the unknown merge was checked, not repeated");
    cr_assert_geq(c.merge_checks, 1);
    char *who = th_sql(W.db, "SELECT actor FROM stage_history ORDER BY id DESC LIMIT 1");
    cr_assert_str_eq(who, "reconciler");
    free(who);
    /* Its line carries the item's keys and the epoch of the reconciler's
     * grant (the reconciler thread's log context); the pass's summary after
     * it carries none: the context was cleared after the item. */
    char keys[200];
    snprintf(keys, sizeof keys,
             "\"work_item\":\"REC-1\",\"epoch\":%lld,\"msg\":\"reconciler: REC-1 review->testing: "
             "advanced\"",
             sw_sql_num(&W, "SELECT epoch FROM transition_lease WHERE work_item = 'REC-1'"));
    cr_assert(th_svc_wait_log(&W.stage, keys, 2000), "no reconciler line with %s", keys);
    snprintf(keys, sizeof keys, "\"pid\":%d,\"msg\":\"reconciler pass: ", (int)W.stage.pid);
    cr_assert(th_svc_wait_log(&W.stage, keys, 2000), "no pass summary without item keys (%s)",
              keys);
    /* An item whose verdicts do not pass is left alone. */
    cr_assert_eq(sw_create(W.client, "REC-2", "org/app", 7701), ORCH_CODE_OK);
    sw_walk_to(&W, "REC-2", "analysis");
    usleep(1000000);
    sw_stage_of(&W, "REC-2", stage, sizeof stage);
    cr_assert_str_eq(stage, "analysis");
}

/* The image hook's outcome was recorded ok in one statement and its digest
 * in the next: when the database went away between the two, the intent said
 * ok (never run again) and built_image_digest was missing, so the
 * image-freshness gate refused staging -> deploy for good. The fault campaign
 * found an item stuck in staging this way. A trigger here makes the digest's
 * write fail once; the item must still reach deploy, with one image build. */
Test(stage_engine, lost_digest_write_does_not_strand_the_item_in_staging, .fini = down,
     .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "DIG-1", "org/app", 7800), ORCH_CODE_OK);
    sw_walk_to(&W, "DIG-1", "testing");
    free(th_sql(W.db, "CREATE FUNCTION test_fail_digest() RETURNS trigger LANGUAGE plpgsql AS"
                      " $$BEGIN RAISE EXCEPTION 'digest write lost'; END$$"));
    free(th_sql(W.db, "CREATE TRIGGER test_fail_digest BEFORE INSERT OR UPDATE ON task_evidence"
                      " FOR EACH ROW WHEN (NEW.key = 'built_image_digest')"
                      " EXECUTE FUNCTION test_fail_digest()"));
    const char *ev = "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 90";
    sw_adv a = sw_advance(W.client, "DIG-1", "testing", "staging", "monitor", ev);
    cr_assert_neq(a.code, ORCH_CODE_OK, "the digest's write failed: the call must fail");
    char *outcome = th_sql(W.db, "SELECT outcome FROM side_effects WHERE work_item = 'DIG-1'"
                                 " AND effect = 'image_rebuild'");
    cr_assert_str_neq(outcome ? outcome : "", "ok",
                      "image_rebuild marked ok although its digest was not recorded");
    free(outcome);
    free(th_sql(W.db, "DROP TRIGGER test_fail_digest ON task_evidence"));
    a = sw_advance(W.client, "DIG-1", "testing", "staging", "webhook", ev);
    cr_assert_eq(a.outcome, OUT(ADVANCED), "outcome %d: %s", a.outcome, a.message);
    a = sw_advance(W.client, "DIG-1", "staging", "deploy", "finalizer",
                   "staging_status: SUCCESS\nimage_digest: sha256:"
                   "1111111111111111111111111111111111111111111111111111111111111111");
    cr_assert_eq(a.outcome, OUT(ADVANCED), "outcome %d: %s (%s)", a.outcome, a.message,
                 a.first_failure);
    cr_assert_eq(sw_counts_for_item("DIG-1").image_starts, 1, "one image build");
}

Test(stage_engine, fault_points_are_refused_outside_the_test_runtime, .fini = down, .timeout = 60)
{
    sw_up(&W, NULL);
    const char *env[] = { "ORCH_RUNTIME=staging", "ORCH_STAGE_TEST_FAULT=crash-after-effect",
                          NULL };
    th_svc s;
    th_svc_start(&s, "stage", W.db, env, false);
    int st = th_svc_stop(&s, 0, 20000);
    cr_assert_neq(st, 0, "stage-service must refuse to start");
    cr_assert_neq(st, -1, "stage-service must exit by itself");
    cr_assert(th_svc_log_has(&s, "ORCH_STAGE_TEST_FAULT=crash-after-effect is accepted only"),
              "the refusal names the variable");
}

/* ---- regressions ------------------------------------------------------------ */

/* A verdict that arrives after a rollback (the report of the undone cycle)
 * is neither recorded nor read in the next cycle. */
Test(stage_engine, late_verdict_after_a_rollback_does_not_count, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "LATE-1", "org/app", 7800), ORCH_CODE_OK);
    sw_walk_to(&W, "LATE-1", "review");
    sw_adv a = sw_rollback(W.client, "LATE-1", "review", "changes requested");
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
    /* The approval of the old cycle arrives late. */
    a = sw_advance(W.client, "LATE-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    cr_assert_eq(a.code, ORCH_CODE_FAILED_PRECONDITION, "%s", a.message);
    cr_assert_eq(count_sql("SELECT count(*) FROM task_evidence WHERE work_item = 'LATE-1'"), 0,
                 "a rejected call recorded verdicts");
    a = sw_advance(W.client, "LATE-1", "development", "review", "monitor", "dev_status: DONE");
    cr_assert_eq(a.outcome, OUT(ADVANCED));
    a = sw_advance(W.client, "LATE-1", "review", "testing", "reconciler", "");
    cr_assert_eq(a.outcome, OUT(GATE_FAILED), "the old cycle's approval counted");
    cr_assert(strstr(a.first_failure, "review_verdict is missing"), "%s", a.first_failure);
    cr_assert_eq(sw_counts_for_pr(7800).merge_calls, 0);
}

/* Verdicts of an earlier cycle left in the table are not read. */
Test(stage_engine, verdicts_of_an_earlier_cycle_are_ignored, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "CYC-1", "org/app", 7805), ORCH_CODE_OK);
    sw_walk_to(&W, "CYC-1", "review");
    /* As if a slow writer slipped an approval in after the rollback. */
    free(th_sql(W.db, "UPDATE tasks SET cycle = 1 WHERE work_item = 'CYC-1' RETURNING 1"));
    free(th_sql(W.db, "INSERT INTO task_evidence (work_item, key, value, cycle)"
                      " VALUES ('CYC-1', 'review_verdict', 'APPROVE', 0) RETURNING 1"));
    sw_adv a = sw_advance(W.client, "CYC-1", "review", "testing", "reconciler", "");
    cr_assert_eq(a.outcome, OUT(GATE_FAILED), "an old cycle's verdict counted");
}

/* After a rollback, the developer names the new pull request; the next
 * cycle merges that one. */
Test(stage_engine, a_new_cycle_merges_the_pull_request_it_names, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "PR-1", "org/app", 7810), ORCH_CODE_OK);
    sw_walk_to(&W, "PR-1", "review");
    sw_set_unmergeable(7810);
    sw_adv a =
        sw_advance(W.client, "PR-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    cr_assert_eq(a.outcome, OUT(ROLLED_BACK), "outcome %d", a.outcome);
    a = sw_advance(W.client, "PR-1", "development", "review", "monitor",
                   "dev_status: DONE\npr_number: x7");
    cr_assert_eq(a.outcome, OUT(GATE_FAILED), "a malformed pr_number must be refused");
    cr_assert(strstr(a.first_failure, "pr_number is malformed"), "%s", a.first_failure);
    a = sw_advance(W.client, "PR-1", "development", "review", "monitor",
                   "dev_status: DONE\npr_number: 7811");
    cr_assert_eq(a.outcome, OUT(ADVANCED), "%s", a.first_failure);
    cr_assert_eq(count_sql("SELECT pr_number FROM tasks WHERE work_item = 'PR-1'"), 7811);
    a = sw_advance(W.client, "PR-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    cr_assert_eq(a.outcome, OUT(ADVANCED), "outcome %d: %s", a.outcome, a.first_failure);
    cr_assert_eq(sw_counts_for_pr(7811).merges, 1);
    cr_assert_eq(sw_counts_for_pr(7810).merges, 0);
}

/* A merge the forge refuses for a reason that is not the change (bad
 * credentials) fails without rolling back; fixed, the next attempt merges. */
Test(stage_engine, merge_refused_for_credentials_does_not_roll_back, .fini = down, .timeout = 120)
{
    const char *env[] = { "ORCH_GITEA_TOKEN=expired", NULL };
    sw_up(&W, env);
    cr_assert_eq(sw_create(W.client, "CRED-1", "org/app", 7820), ORCH_CODE_OK);
    sw_walk_to(&W, "CRED-1", "review");
    sw_adv a =
        sw_advance(W.client, "CRED-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
    cr_assert_eq(a.outcome, OUT(EFFECT_FAILED), "outcome %d", a.outcome);
    char stage[32];
    sw_stage_of(&W, "CRED-1", stage, sizeof stage);
    cr_assert_str_eq(stage, "review");
    cr_assert_eq(count_sql("SELECT cycle FROM tasks WHERE work_item = 'CRED-1'"), 0);
    /* The token is fixed: another stage-service with the right one merges. */
    th_svc good;
    const char *genv[] = { "ORCH_GITEA_TOKEN=gitea-test-token", NULL };
    sw_stage_start(&W, &good, genv);
    orch_rpc_client *gc;
    cr_assert_eq(orch_rpc_client_open(good.rpc_url, NULL, &gc), ORCH_OK);
    a = sw_advance(gc, "CRED-1", "review", "testing", "monitor", "");
    cr_assert_eq(a.outcome, OUT(ADVANCED), "outcome %d: %s", a.outcome, a.message);
    cr_assert_eq(sw_counts_for_pr(7820).merges, 1);
    orch_rpc_client_close(gc);
    th_svc_stop(&good, SIGTERM, 10000);
}

/* A caller that gives up early does not cut the effect short: the merge
 * finishes and is recorded ok; the next attempt does not merge again. */
Test(stage_engine, an_impatient_caller_does_not_leave_the_effect_unknown, .fini = down,
     .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "SLOW-1", "org/app", 7830), ORCH_CODE_OK);
    sw_walk_to(&W, "SLOW-1", "review");
    sw_set_merge_delay_ms(2500);
    sw_call_timeout_ms = 800;
    sw_adv a =
        sw_advance(W.client, "SLOW-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    sw_call_timeout_ms = 30000;
    cr_assert_eq(a.code, ORCH_CODE_DEADLINE_EXCEEDED, "code %d: %s", a.code, a.message);
    /* Meanwhile another actor defers: the effect is still running. */
    a = sw_advance(W.client, "SLOW-1", "review", "testing", "webhook", "");
    cr_assert_eq(a.outcome, OUT(DEFERRED), "outcome %d (code %d: %s)", a.outcome, a.code,
                 a.message);
    char stage[32] = "";
    for (int i = 0; i < 60; i++) {
        sw_stage_of(&W, "SLOW-1", stage, sizeof stage);
        if (strcmp(stage, "testing") == 0)
            break;
        usleep(100000);
    }
    cr_assert_str_eq(stage, "testing", "the first call finished the transition");
    cr_assert_eq(count_sql("SELECT count(*) FROM side_effects WHERE work_item = 'SLOW-1'"
                           " AND outcome = 'ok'"),
                 1);
    cr_assert_eq(sw_counts_for_pr(7830).merge_calls, 1);
    sw_set_merge_delay_ms(0);
}

/* The reconciler reaches a stuck item however many finished tasks come
 * before it (it pages through active tasks, not the oldest of all). */
Test(stage_engine, reconciler_reaches_items_behind_many_finished_ones, .fini = down, .timeout = 180)
{
    const char *env[] = { "ORCH_RECONCILER_INTERVAL_MS=200", "ORCH_RECONCILER_BATCH=1",
                          "ORCH_EFFECT_TIMEOUT_MS=1000", NULL };
    sw_up(&W, env);
    for (int i = 0; i < 6; i++) {
        char item[32];
        snprintf(item, sizeof item, "OLD-%d", i);
        cr_assert_eq(sw_create(W.client, item, "org/app", 7900 + (uint64_t)i), ORCH_CODE_OK);
        sw_walk_to(&W, item, "done");
    }
    cr_assert_eq(sw_create(W.client, "STUCK-1", "org/app", 7950), ORCH_CODE_OK);
    sw_walk_to(&W, "STUCK-1", "review");
    sw_set_merge_delay_ms(2000);
    sw_adv a =
        sw_advance(W.client, "STUCK-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    cr_assert_eq(a.outcome, OUT(EFFECT_UNKNOWN), "outcome %d", a.outcome);
    sw_set_merge_delay_ms(0);
    char stage[32] = "";
    for (int i = 0; i < 100; i++) {
        sw_stage_of(&W, "STUCK-1", stage, sizeof stage);
        if (strcmp(stage, "testing") == 0)
            break;
        usleep(100000);
    }
    cr_assert_str_eq(stage, "testing", "the reconciler never reached the stuck item");
    cr_assert_eq(sw_counts_for_pr(7950).merges, 1);
}

/* The coverage baseline keeps the exact value: an item that reports the
 * same coverage as the baseline passes, however many decimals. */
Test(stage_engine, coverage_baseline_is_exact, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    const char *ev = "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 80.0005";
    cr_assert_eq(sw_create(W.client, "COV-1", "org/app", 7960), ORCH_CODE_OK);
    cr_assert_eq(sw_create(W.client, "COV-2", "org/app", 7961), ORCH_CODE_OK);
    sw_walk_to(&W, "COV-1", "testing");
    sw_walk_to(&W, "COV-2", "testing");
    sw_adv a = sw_advance(W.client, "COV-1", "testing", "staging", "monitor", ev);
    cr_assert_eq(a.outcome, OUT(ADVANCED), "%s", a.first_failure);
    a = sw_advance(W.client, "COV-2", "testing", "staging", "monitor", ev);
    cr_assert_eq(a.outcome, OUT(ADVANCED), "equal coverage was rolled back: %s", a.first_failure);
}
