/*
 * test_stage_verdicts.c - regressions of issue 12 in stage-service, against
 * real PostgreSQL, a real lease-service and the imitation of Gitea and the
 * hooks (stage_world.c): verdicts bound to their edge and recorded only
 * under the lease; the pull request of a cycle; a rollback or cancel that
 * would abandon an effect of unknown outcome; the expiry of a lease-less
 * claim; a reply after a commit whose answer was lost, resent with the same
 * request id.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/clock.h"
#include "orch/ident.h"
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

static void stage_is(const char *item, const char *want)
{
    char stage[32];
    sw_stage_of(&W, item, stage, sizeof stage);
    cr_assert_str_eq(stage, want, "%s is in %s, not %s", item, stage, want);
}

/* ---- item 4: a verdict counts only for the edge it was reported at -------- */

/* The developer's output carried `review_verdict: APPROVE`; reported at
 * development->review it passed review->testing for the reconciler, which
 * merged with no review at all. */
Test(stage_verdicts, a_developer_approval_does_not_pass_the_review, .fini = down, .timeout = 120)
{
    const char *env[] = { "ORCH_RECONCILER_INTERVAL_MS=200", NULL };
    sw_up(&W, env);
    cr_assert_eq(sw_create(W.client, "VRD-1", "org/app", 8001), ORCH_CODE_OK);
    sw_walk_to(&W, "VRD-1", "development");
    sw_adv a = sw_advance(W.client, "VRD-1", "development", "review", "monitor",
                          "dev_status: DONE\nreview_verdict: APPROVE");
    cr_assert_eq(a.outcome, OUT(ADVANCED), "code %d outcome %d: %s %s", a.code, a.outcome,
                 a.message, a.first_failure);
    /* Several reconciler passes go by: none may take the item further. */
    usleep(1500000);
    stage_is("VRD-1", "review");
    cr_assert_eq(sw_counts_for_pr(8001).merge_calls, 0, "merged without a review");
    a = sw_advance(W.client, "VRD-1", "review", "testing", "reconciler", "");
    cr_assert_eq(a.outcome, OUT(GATE_FAILED), "outcome %d: %s", a.outcome, a.message);
    cr_assert(strstr(a.first_failure, "review_verdict is missing"), "%s", a.first_failure);
    /* The reviewer's own verdict, reported at review->testing, counts. */
    a = sw_advance(W.client, "VRD-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    cr_assert_eq(a.outcome, OUT(ADVANCED), "outcome %d: %s %s", a.outcome, a.message,
                 a.first_failure);
    cr_assert_eq(sw_counts_for_pr(8001).merges, 1);
}

static void release_lease(const char *item, uint64_t epoch)
{
    Orch__V1__ReleaseRequest rq = ORCH__V1__RELEASE_REQUEST__INIT;
    rq.work_item = (char *)item;
    rq.epoch = epoch;
    orch_rpc_call_opts o = { .timeout_ms = 10000 };
    orch_rpc_status st;
    cr_assert_eq(
        orch_rpc_invoke(W.lease_client, orch_lease_method_release, &rq.base, NULL, &o, &st, NULL),
        ORCH_CODE_OK, "%s", st.message);
}

/* A caller that deferred (another owner held the lease) still wrote its
 * verdicts before asking for the lease, changing what the gates see. */
Test(stage_verdicts, a_deferred_call_records_no_verdict, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "VRD-2", "org/app", 8002), ORCH_CODE_OK);
    sw_walk_to(&W, "VRD-2", "review");
    uint64_t epoch = sw_hold_lease(&W, "VRD-2", "holder");
    sw_adv a =
        sw_advance(W.client, "VRD-2", "review", "testing", "monitor", "review_verdict: APPROVE");
    cr_assert_eq(a.outcome, OUT(DEFERRED), "code %d outcome %d: %s", a.code, a.outcome, a.message);
    cr_assert_eq(count_sql("SELECT count(*) FROM task_evidence WHERE work_item = 'VRD-2'"
                           " AND key = 'review_verdict'"),
                 0, "the deferred call recorded its verdict");
    release_lease("VRD-2", epoch);
    /* Nothing the deferred call said counts: the gates still lack it. */
    a = sw_advance(W.client, "VRD-2", "review", "testing", "reconciler", "");
    cr_assert_eq(a.outcome, OUT(GATE_FAILED), "outcome %d: %s", a.outcome, a.message);
    cr_assert_eq(sw_counts_for_pr(8002).merge_calls, 0);
}

/* A call that failed before the lease (lease-service did not answer) left
 * its verdicts recorded as well. */
Test(stage_verdicts, a_call_that_failed_before_the_lease_records_no_verdict, .fini = down,
     .timeout = 120)
{
    const char *env[] = { "ORCH_STAGE_LEASE_TIMEOUT_MS=300", NULL };
    sw_up(&W, env);
    cr_assert_eq(sw_create(W.client, "VRD-3", "org/app", 8003), ORCH_CODE_OK);
    sw_walk_to(&W, "VRD-3", "analysis");
    cr_assert_eq(kill(W.lease.pid, SIGSTOP), 0);
    sw_adv a = sw_advance(W.client, "VRD-3", "analysis", "architecture", "monitor",
                          "analysis_status: DONE");
    cr_assert_eq(kill(W.lease.pid, SIGCONT), 0);
    cr_assert_eq(a.code, ORCH_CODE_UNAVAILABLE, "code %d: %s", a.code, a.message);
    cr_assert_eq(count_sql("SELECT count(*) FROM task_evidence WHERE work_item = 'VRD-3'"), 0,
                 "a call that never held the lease recorded verdicts");
}

/* ---- item 6: the pull request belongs to its cycle ----------------------- */

/* After a rollback, a cycle that named no pull request "merged" the old,
 * already merged #8010 again (405, already merged: ok) and went on to
 * testing without its fix merged. */
Test(stage_verdicts, a_new_cycle_without_its_own_pull_request_is_not_merged, .fini = down,
     .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "PRC-1", "org/app", 8010), ORCH_CODE_OK);
    sw_walk_to(&W, "PRC-1", "testing");
    cr_assert_eq(sw_counts_for_pr(8010).merges, 1);
    sw_adv a = sw_rollback(W.client, "PRC-1", "testing", "tests failed after the merge");
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
    a = sw_advance(W.client, "PRC-1", "development", "review", "monitor", "dev_status: DONE");
    cr_assert_eq(a.outcome, OUT(ADVANCED), "%s", a.first_failure);
    a = sw_advance(W.client, "PRC-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    cr_assert_eq(a.outcome, OUT(GATE_FAILED), "outcome %d: %s", a.outcome, a.message);
    cr_assert(strstr(a.first_failure, "cycle 1 has no pull request of its own"), "%s",
              a.first_failure);
    stage_is("PRC-1", "review");
    cr_assert_eq(sw_counts_for_pr(8010).merge_calls, 1, "the old pull request was merged again");
    /* Named, the cycle's own pull request is merged. */
    a = sw_rollback(W.client, "PRC-1", "review", "no pull request named");
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
    a = sw_advance(W.client, "PRC-1", "development", "review", "monitor",
                   "dev_status: DONE\npr_number: 8011");
    cr_assert_eq(a.outcome, OUT(ADVANCED), "%s", a.first_failure);
    a = sw_advance(W.client, "PRC-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    cr_assert_eq(a.outcome, OUT(ADVANCED), "outcome %d: %s %s", a.outcome, a.message,
                 a.first_failure);
    cr_assert_eq(sw_counts_for_pr(8011).merges, 1);
    cr_assert_eq(sw_counts_for_pr(8010).merge_calls, 1);
}

/* ---- item 7: no rollback or cancel over an effect of unknown outcome ------ */

static sw_adv cancel(const char *item)
{
    sw_adv a = sw_advance(W.client, item, "review", "cancelled", "operator", "");
    return a;
}

/* A merge that timed out (it happened, the answer came too late) was
 * abandoned by a rollback: the next cycle's review saw a merged change.
 * While Gitea cannot say whether it merged, the rollback and the cancel
 * are refused; once it can, the rollback finds the merge out and goes on. */
Test(stage_verdicts, a_rollback_over_an_unknown_effect_is_refused, .fini = down, .timeout = 120)
{
    const char *env[] = { "ORCH_EFFECT_TIMEOUT_MS=1000", NULL };
    sw_up(&W, env);
    cr_assert_eq(sw_create(W.client, "UNK-1", "org/app", 8020), ORCH_CODE_OK);
    sw_walk_to(&W, "UNK-1", "review");
    sw_set_merge_delay_ms(2000);
    sw_adv a =
        sw_advance(W.client, "UNK-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    sw_set_merge_delay_ms(0);
    cr_assert_eq(a.outcome, OUT(EFFECT_UNKNOWN), "outcome %d: %s", a.outcome, a.message);
    sw_set_gitea_down(true);
    a = sw_rollback(W.client, "UNK-1", "review", "changes requested");
    cr_assert_eq(a.code, ORCH_CODE_FAILED_PRECONDITION, "code %d: %s", a.code, a.message);
    cr_assert(strstr(a.message, "merge_pr of review->testing") && strstr(a.message, "unknown") &&
                  strstr(a.message, "HTTP 503"),
              "%s", a.message);
    a = cancel("UNK-1");
    cr_assert_eq(a.code, ORCH_CODE_FAILED_PRECONDITION, "code %d: %s", a.code, a.message);
    cr_assert(strstr(a.message, "cancel of UNK-1 refused"), "%s", a.message);
    stage_is("UNK-1", "review");
    cr_assert_eq(count_sql("SELECT cycle FROM tasks WHERE work_item = 'UNK-1'"), 0);
    /* Gitea answers again: the rollback asks it (merged: the normal merge
     * gate flow) and goes through, without merging again. */
    sw_set_gitea_down(false);
    a = sw_rollback(W.client, "UNK-1", "review", "changes requested");
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
    stage_is("UNK-1", "development");
    cr_assert_eq(sw_counts_for_pr(8020).merge_calls, 1, "merged again to find the outcome out");
    cr_assert_eq(count_sql("SELECT count(*) FROM side_effects WHERE work_item = 'UNK-1'"
                           " AND effect = 'merge_pr' AND outcome = 'ok'"),
                 1);
}

/* testing->staging passed its gates, the ratchet ran and image_rebuild
 * timed out (unknown); then the tester reported security_status: FAIL.
 * Every later advance was a rollback the unknown effect refused, and only
 * an advance could resolve it: the item was wedged for good. */
Test(stage_verdicts, a_rollback_gate_over_an_unknown_effect_no_longer_wedges_the_item, .fini = down,
     .timeout = 120)
{
    const char *env[] = { "ORCH_EFFECT_TIMEOUT_MS=1000", NULL };
    sw_up(&W, env);
    cr_assert_eq(sw_create(W.client, "UNK-2", "org/app", 8021), ORCH_CODE_OK);
    sw_walk_to(&W, "UNK-2", "testing");
    sw_set_hook_delay_ms(2000);
    sw_adv a = sw_advance(W.client, "UNK-2", "testing", "staging", "monitor",
                          "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 80");
    sw_set_hook_delay_ms(0);
    cr_assert_eq(a.outcome, OUT(EFFECT_UNKNOWN), "outcome %d: %s", a.outcome, a.message);
    cr_assert_eq(sw_counts_for_item("UNK-2").image_starts, 1);
    /* The gate turns: the next advance resolves the build and rolls back. */
    a = sw_advance(W.client, "UNK-2", "testing", "staging", "monitor", "security_status: FAIL");
    cr_assert_eq(a.code, ORCH_CODE_OK, "code %d: %s", a.code, a.message);
    cr_assert_eq(a.outcome, OUT(ROLLED_BACK), "outcome %d: %s", a.outcome, a.message);
    stage_is("UNK-2", "development");
    cr_assert_eq(count_sql("SELECT cycle FROM tasks WHERE work_item = 'UNK-2'"), 1);
    sw_counts n = sw_counts_for_item("UNK-2");
    cr_assert_eq(n.image_calls, 2, "image hook calls %d", n.image_calls);
    cr_assert_eq(n.image_starts, 1, "the build ran twice (%d)", n.image_starts);
    cr_assert_eq(count_sql("SELECT count(*) FROM side_effects WHERE work_item = 'UNK-2'"
                           " AND effect = 'image_rebuild' AND outcome = 'ok'"),
                 1);
}

/* A cancel (a Plane cancel waits in the inbox for it) over a merge whose
 * outcome was unknown was refused for good; Gitea can say, so it is
 * applied; a merge Gitea says did not happen is never run by it. */
Test(stage_verdicts, a_cancel_over_a_resolvable_unknown_effect_is_applied, .fini = down,
     .timeout = 120)
{
    const char *env[] = { "ORCH_EFFECT_TIMEOUT_MS=1000", NULL };
    sw_up(&W, env);
    cr_assert_eq(sw_create(W.client, "UNK-3", "org/app", 8022), ORCH_CODE_OK);
    sw_walk_to(&W, "UNK-3", "review");
    sw_set_merge_delay_ms(2000);
    sw_adv a =
        sw_advance(W.client, "UNK-3", "review", "testing", "monitor", "review_verdict: APPROVE");
    sw_set_merge_delay_ms(0);
    cr_assert_eq(a.outcome, OUT(EFFECT_UNKNOWN), "outcome %d: %s", a.outcome, a.message);
    a = cancel("UNK-3");
    cr_assert_eq(a.code, ORCH_CODE_OK, "code %d: %s", a.code, a.message);
    stage_is("UNK-3", "cancelled");
    cr_assert_eq(sw_counts_for_pr(8022).merge_calls, 1);
    cr_assert_eq(sw_counts_for_pr(8022).merges, 1);

    /* A merge answered 503 (it did not happen, unknown to us): the cancel
     * asks, records it failed, and never merges. */
    cr_assert_eq(sw_create(W.client, "UNK-4", "org/app", 8023), ORCH_CODE_OK);
    sw_walk_to(&W, "UNK-4", "review");
    sw_set_gitea_down(true);
    a = sw_advance(W.client, "UNK-4", "review", "testing", "monitor", "review_verdict: APPROVE");
    sw_set_gitea_down(false);
    cr_assert_eq(a.outcome, OUT(EFFECT_UNKNOWN), "outcome %d: %s", a.outcome, a.message);
    a = cancel("UNK-4");
    cr_assert_eq(a.code, ORCH_CODE_OK, "code %d: %s", a.code, a.message);
    stage_is("UNK-4", "cancelled");
    cr_assert_eq(sw_counts_for_pr(8023).merge_calls, 0, "the cancel merged");
    cr_assert_eq(count_sql("SELECT count(*) FROM side_effects WHERE work_item = 'UNK-4'"
                           " AND effect = 'merge_pr' AND outcome = 'failed'"),
                 1);
}

/* The owner that started deploy_start died before recording it (pending
 * under a dead epoch); then the image-freshness gate turned. The rollback
 * takes the claim over, resends under the same idempotency key (the hook
 * answers the first start, nothing starts again), and goes on with an
 * alert; the item is not wedged. */
Test(stage_verdicts, a_pending_deploy_of_a_dead_owner_does_not_wedge_a_rollback, .fini = down,
     .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "UNK-5", "org/app", 8024), ORCH_CODE_OK);
    sw_walk_to(&W, "UNK-5", "staging");
    const char *fenv[] = { "ORCH_STAGE_TEST_FAULT=crash-before-record", NULL };
    th_svc crasher;
    sw_stage_start(&W, &crasher, fenv);
    orch_rpc_client *cc;
    cr_assert_eq(orch_rpc_client_open(crasher.rpc_url, NULL, &cc), ORCH_OK);
    sw_call_timeout_ms = 3000; /* the owner dies: no answer will come */
    sw_adv a =
        sw_advance(cc, "UNK-5", "staging", "deploy", "monitor",
                   "staging_status: SUCCESS\nimage_digest: "
                   "sha256:1111111111111111111111111111111111111111111111111111111111111111");
    sw_call_timeout_ms = 30000;
    cr_assert_neq(a.code, ORCH_CODE_OK, "the crashing owner answered");
    cr_assert_eq(th_svc_stop(&crasher, 0, 10000), 86);
    orch_rpc_client_close(cc);
    cr_assert_eq(sw_counts_for_item("UNK-5").deploy_starts, 1);
    cr_assert_eq(count_sql("SELECT count(*) FROM side_effects WHERE work_item = 'UNK-5'"
                           " AND effect = 'deploy_start' AND outcome = 'pending'"),
                 1);
    a = sw_advance(W.client, "UNK-5", "staging", "deploy", "monitor",
                   "image_digest: "
                   "sha256:2222222222222222222222222222222222222222222222222222222222222222");
    cr_assert_eq(a.code, ORCH_CODE_OK, "code %d: %s", a.code, a.message);
    cr_assert_eq(a.outcome, OUT(ROLLED_BACK), "outcome %d: %s", a.outcome, a.message);
    stage_is("UNK-5", "development");
    sw_counts n = sw_counts_for_item("UNK-5");
    cr_assert_eq(n.deploy_starts, 1, "the deploy started again (%d)", n.deploy_starts);
    cr_assert_eq(n.deploy_calls, 2, "deploy hook calls %d", n.deploy_calls);
    cr_assert(th_svc_log_has(&W.stage, "stage.deploy-left-running"));
}

/* ---- item 10: the expiry of a lease-less claim ----------------------------- */

/* Without a lease, a claim was taken over after 2 x the effect timeout +
 * 1 s, although a merge (is-merged check, merge, check) runs up to three
 * requests of that timeout and then records its outcome. A crashed claimer
 * is now taken over only after stage_effect_claim_expiry_ms. */
Test(stage_verdicts, a_lease_less_claim_is_taken_over_only_after_its_expiry, .fini = down,
     .timeout = 120)
{
    const char *env[] = { "ORCH_TRANSITION_LEASE_ENABLED=false", "ORCH_EFFECT_TIMEOUT_MS=500",
                          NULL };
    sw_up(&W, env);
    cr_assert_eq(sw_create(W.client, "ABAND-1", "org/app", 7840), ORCH_CODE_OK);
    sw_walk_to(&W, "ABAND-1", "review");
    const char *fenv[] = { "ORCH_TRANSITION_LEASE_ENABLED=false", "ORCH_EFFECT_TIMEOUT_MS=500",
                           "ORCH_STAGE_TEST_FAULT=crash-before-record", NULL };
    th_svc crasher;
    sw_stage_start(&W, &crasher, fenv);
    orch_rpc_client *cc;
    cr_assert_eq(orch_rpc_client_open(crasher.rpc_url, NULL, &cc), ORCH_OK);
    /* stage_effect_claim_expiry_ms for a merge: start window 1 s + three requests
     * of 500 ms + record budget 10 s and slack 1 s + margin 2 s. */
    const uint64_t expiry = 1000 + 3 * 500 + 10000 + 1000 + 2000;
    uint64_t t0 = orch_mono_ms(); /* before the claim */
    sw_call_timeout_ms = 1000;
    sw_adv a = sw_advance(cc, "ABAND-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    sw_call_timeout_ms = 30000;
    cr_assert_neq(a.code, ORCH_CODE_OK);
    cr_assert_eq(th_svc_stop(&crasher, 0, 10000), 86);
    orch_rpc_client_close(cc);
    /* Asked every 500 ms: refused while the claim may still be worked on. */
    uint64_t took = 0;
    for (int i = 0; i < 80 && !took; i++) {
        a = sw_advance(W.client, "ABAND-1", "review", "testing", "reconciler", "");
        if (a.code == ORCH_CODE_OK) {
            took = orch_mono_ms() - t0;
            break;
        }
        cr_assert_eq(a.code, ORCH_CODE_ABORTED, "code %d: %s", a.code, a.message);
        usleep(500000);
    }
    cr_assert_gt(took, 0, "the abandoned claim was never taken over");
    cr_assert_geq(took, expiry,
                  "taken over %" PRIu64 " ms after the claim, before its expiry %" PRIu64 " ms",
                  took, expiry);
    cr_assert_eq(a.outcome, OUT(ADVANCED), "outcome %d: %s", a.outcome, a.message);
    cr_assert_eq(sw_counts_for_pr(7840).merges, 1);
    cr_assert_geq(sw_counts_for_pr(7840).merge_checks, 1, "resolved by asking Gitea");
}

/* ---- item 10: a reply after a commit whose answer was lost ---------------- */

/* The CAS committed but its COMMIT's answer was lost; AdvanceStage said
 * UNAVAILABLE, which the RPC layer does not remember, so a resend with the
 * same request id ran again and was told FAILED_PRECONDITION ("in stage
 * architecture, not analysis") for a transition that had succeeded.
 *
 * The lost answer is real: a trigger makes the stage write's transaction
 * wait for a synchronous standby that does not exist (the commit is then
 * already durable locally), and the test terminates that backend. Other
 * sessions of the cluster are not held: synchronous_commit is 'local'
 * everywhere else while the test runs. */
static void sync_rep(bool on)
{
    char admin[600];
    th_pg_url(th_pg_dir(), "orch", admin, sizeof admin);
    if (on) {
        free(th_sql(admin, "ALTER SYSTEM SET synchronous_commit = 'local'"));
        free(th_sql(admin, "ALTER SYSTEM SET synchronous_standby_names = 'orch_test_none'"));
    } else {
        free(th_sql(admin, "ALTER SYSTEM RESET synchronous_standby_names"));
        free(th_sql(admin, "ALTER SYSTEM RESET synchronous_commit"));
    }
    free(th_sql(admin, "SELECT pg_reload_conf()"));
    usleep(300000); /* backends apply the reload before their next statement */
}

static void down_sync(void)
{
    sync_rep(false);
    sw_down(&W);
}

typedef struct id_call {
    const char *request_id;
    orch_code code;
    char message[512];
} id_call;

static void advance_with_id(id_call *r)
{
    Orch__V1__AdvanceStageRequest rq = ORCH__V1__ADVANCE_STAGE_REQUEST__INIT;
    rq.work_item = "LOSTC-1";
    rq.expected_from = "analysis";
    rq.to = "architecture";
    rq.actor = "monitor";
    rq.evidence = "analysis_status: DONE";
    orch_rpc_call_opts o = { .timeout_ms = 30000, .request_id = r->request_id };
    orch_rpc_status st;
    ProtobufCMessage *m = NULL;
    r->code = orch_rpc_invoke(W.client, "orch.v1.StageService/AdvanceStage", &rq.base,
                              &orch__v1__advance_stage_reply__descriptor, &o, &st, &m);
    snprintf(r->message, sizeof r->message, "%s", st.message);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
}

static void *id_main(void *arg)
{
    advance_with_id(arg);
    return NULL;
}

Test(stage_verdicts, a_resend_after_a_lost_commit_answer_gets_the_same_reply, .fini = down_sync,
     .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "LOSTC-1", "org/app", 8030), ORCH_CODE_OK);
    sw_walk_to(&W, "LOSTC-1", "analysis");
    free(th_sql(W.db, "CREATE FUNCTION test_wait_standby() RETURNS trigger LANGUAGE plpgsql AS"
                      " $$BEGIN PERFORM set_config('synchronous_commit', 'on', true);"
                      " RETURN NEW; END$$"));
    free(th_sql(W.db, "CREATE TRIGGER test_wait_standby AFTER INSERT ON stage_history"
                      " FOR EACH ROW WHEN (NEW.to_stage = 'architecture')"
                      " EXECUTE FUNCTION test_wait_standby()"));
    sync_rep(true);
    id_call first = { "5e2b1c0d9a8f47e6b3c2d1e0f9a8b7c6", 0, "" };
    pthread_t th;
    pthread_create(&th, NULL, id_main, &first);
    /* The stage write's commit waits for the standby: end that session. */
    char *pid = NULL;
    for (int i = 0; i < 200 && !pid; i++) {
        pid = th_sql(W.db, "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
                           " AND datname = current_database()");
        if (!pid)
            usleep(50000);
    }
    cr_assert_not_null(pid, "the stage write never waited for its commit");
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", pid);
    free(th_sql(W.db, sql));
    free(pid);
    pthread_join(th, NULL);
    sync_rep(false);
    free(th_sql(W.db, "DROP TRIGGER test_wait_standby ON stage_history"));
    /* The commit was durable; the call could not know it. */
    stage_is("LOSTC-1", "architecture");
    /* A resend of the same request is told the same, not "wrong stage". */
    id_call again = { first.request_id, 0, "" };
    advance_with_id(&again);
    cr_assert_eq(again.code, first.code, "resend: code %d: %s", again.code, again.message);
    cr_assert_str_eq(again.message, first.message);
    cr_assert_eq(first.code, ORCH_CODE_UNKNOWN, "code %d: %s", first.code, first.message);
    cr_assert(strstr(first.message, "may have committed"), "%s", first.message);
    cr_assert_eq(count_sql("SELECT count(*) FROM stage_history h JOIN tasks t ON t.id = h.task_id"
                           " WHERE t.work_item = 'LOSTC-1' AND h.to_stage = 'architecture'"),
                 1);
}
