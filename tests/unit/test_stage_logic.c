/*
 * test_stage_logic.c - the pure rules of the stage engine
 * (services/stage/stage_logic.c): the intent takeover rule, effect outcomes
 * to results, the edges a request, an intent row or a webhook event names,
 * the unknown answer after something durable, and the inbox's settlement.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "stage_effects.h"
#include "stage_logic.h"

static stage_intent intent(const char *outcome, uint64_t epoch, int64_t age_ms)
{
    stage_intent r;
    memset(&r, 0, sizeof r);
    snprintf(r.outcome, sizeof r.outcome, "%s", outcome);
    r.epoch = epoch;
    r.age_ms = age_ms;
    return r;
}

/* ---- the takeover rule --------------------------------------------------- */

Test(stage_logic, an_ok_intent_is_never_taken_over)
{
    stage_intent r = intent("ok", 3, 1000000);
    cr_assert_not(stage_logic_may_take_over(&r, 9, 10));
    cr_assert_not(stage_logic_may_take_over(&r, 0, 10));
    cr_assert_eq(stage_logic_intent_action(&r, 9, 10), STAGE_INTENT_DONE);
}

Test(stage_logic, failed_and_unknown_are_taken_over_by_anyone)
{
    for (uint64_t mine = 0; mine < 3; mine++) {
        stage_intent f = intent("failed", 5, 0), u = intent("unknown", 5, 0);
        cr_assert(stage_logic_may_take_over(&f, mine, 60000));
        cr_assert(stage_logic_may_take_over(&u, mine, 60000));
        cr_assert_eq(stage_logic_intent_action(&f, mine, 60000), STAGE_INTENT_RUN,
                     "failed did not happen: run it");
        cr_assert_eq(stage_logic_intent_action(&u, mine, 60000), STAGE_INTENT_RESOLVE,
                     "unknown may have happened: resolve it");
    }
}

Test(stage_logic, a_pending_claim_under_an_older_epoch_is_superseded)
{
    stage_intent r = intent("pending", 4, 0);
    cr_assert(stage_logic_may_take_over(&r, 5, 60000));
    cr_assert_eq(stage_logic_intent_action(&r, 5, 60000), STAGE_INTENT_RESOLVE);
    cr_assert_not(stage_logic_may_take_over(&r, 4, 60000), "the same epoch is its owner's");
    cr_assert_not(stage_logic_may_take_over(&r, 3, 60000), "an older epoch never takes over");
    cr_assert_eq(stage_logic_intent_action(&r, 4, 60000), STAGE_INTENT_BUSY);
}

Test(stage_logic, a_pending_claim_under_a_lease_is_not_taken_over_without_one)
{
    /* However old: its owner is judged by the lease, not by age. */
    stage_intent r = intent("pending", 4, 100000000);
    cr_assert_not(stage_logic_may_take_over(&r, 0, 60000));
    cr_assert_eq(stage_logic_intent_action(&r, 0, 60000), STAGE_INTENT_BUSY);
}

Test(stage_logic, a_lease_less_claim_is_abandoned_only_past_its_expiry)
{
    stage_intent young = intent("pending", 0, 60000), old = intent("pending", 0, 60001);
    cr_assert_not(stage_logic_may_take_over(&young, 0, 60000), "exactly the expiry: still live");
    cr_assert(stage_logic_may_take_over(&old, 0, 60000));
    /* Whoever asks, with or without a lease. */
    cr_assert(stage_logic_may_take_over(&old, 7, 60000));
    cr_assert_not(stage_logic_may_take_over(&young, 7, 60000));
    cr_assert_eq(stage_logic_intent_action(&old, 0, 60000), STAGE_INTENT_RESOLVE);
}

Test(stage_logic, the_expiry_of_a_merge_outlasts_its_longest_run)
{
    stage_effects_cfg cfg = { .timeout_ms = 5000 };
    uint64_t exp = stage_effect_claim_expiry_ms(&cfg, STAGE_EFF_MERGE_PR);
    stage_intent r = intent("pending", 0, (int64_t)stage_effect_max_ms(&cfg, STAGE_EFF_MERGE_PR));
    cr_assert_not(stage_logic_may_take_over(&r, 0, exp));
}

Test(stage_logic, an_unknown_outcome_name_is_never_taken_over)
{
    stage_intent r = intent("done", 0, 100000000);
    cr_assert_not(stage_logic_may_take_over(&r, 9, 10));
    cr_assert_eq(stage_logic_intent_action(&r, 9, 10), STAGE_INTENT_BUSY);
}

Test(stage_logic, a_lease_less_claim_starts_within_its_window_or_not_at_all)
{
    cr_assert_not(stage_logic_started_late(0, 1000, 1000 + STAGE_EFFECT_START_WINDOW_MS));
    cr_assert(stage_logic_started_late(0, 1000, 1001 + STAGE_EFFECT_START_WINDOW_MS));
    cr_assert_not(stage_logic_started_late(3, 1000, 1000000), "a lease fences it instead");
}

/* ---- effect outcomes ------------------------------------------------------ */

Test(stage_logic, a_resolve_that_could_not_ask_is_unknown)
{
    cr_assert_eq(stage_logic_observed(true, STAGE_EFFECT_ERROR), STAGE_EFFECT_UNKNOWN);
    cr_assert_eq(stage_logic_observed(false, STAGE_EFFECT_ERROR), STAGE_EFFECT_ERROR);
    cr_assert_eq(stage_logic_observed(true, STAGE_EFFECT_FAILED), STAGE_EFFECT_FAILED);
    cr_assert_eq(stage_logic_observed(true, STAGE_EFFECT_OK), STAGE_EFFECT_OK);
}

Test(stage_logic, an_error_counts_as_failed)
{
    cr_assert_eq(stage_logic_outcome_label(STAGE_EFFECT_OK), 0);
    cr_assert_eq(stage_logic_outcome_label(STAGE_EFFECT_FAILED), 1);
    cr_assert_eq(stage_logic_outcome_label(STAGE_EFFECT_UNKNOWN), 2);
    cr_assert_eq(stage_logic_outcome_label(STAGE_EFFECT_ERROR), 1);
}

Test(stage_logic, outcomes_map_to_results)
{
    cr_assert_eq(stage_logic_effect_result(STAGE_EFF_IMAGE_REBUILD, STAGE_EFFECT_OK),
                 STAGE_RESULT_ADVANCED);
    cr_assert_eq(stage_logic_effect_result(STAGE_EFF_IMAGE_REBUILD, STAGE_EFFECT_UNKNOWN),
                 STAGE_RESULT_EFFECT_UNKNOWN);
    cr_assert_eq(stage_logic_effect_result(STAGE_EFF_IMAGE_REBUILD, STAGE_EFFECT_FAILED),
                 STAGE_RESULT_EFFECT_FAILED);
    cr_assert_eq(stage_logic_effect_result(STAGE_EFF_MERGE_PR, STAGE_EFFECT_FAILED),
                 STAGE_RESULT_ROLLED_BACK, "a refused merge is the merge gate");
    cr_assert_eq(stage_logic_effect_result(STAGE_EFF_MERGE_PR, STAGE_EFFECT_ERROR),
                 STAGE_RESULT_EFFECT_FAILED, "an error is never a verdict on the change");
    cr_assert_eq(stage_logic_effect_result(STAGE_EFF_DEPLOY_START, STAGE_EFFECT_FAILED),
                 STAGE_RESULT_EFFECT_FAILED);
}

Test(stage_logic, what_follows_an_effect)
{
    cr_assert_eq(stage_logic_after_effect(STAGE_RESULT_ADVANCED), STAGE_NEXT_CONTINUE);
    cr_assert_eq(stage_logic_after_effect(STAGE_RESULT_ROLLED_BACK), STAGE_NEXT_ROLLBACK);
    cr_assert_eq(stage_logic_after_effect(STAGE_RESULT_EFFECT_FAILED), STAGE_NEXT_ANSWER);
    cr_assert_eq(stage_logic_after_effect(STAGE_RESULT_EFFECT_UNKNOWN), STAGE_NEXT_ANSWER);
    cr_assert_eq(stage_logic_after_effect(STAGE_RESULT_ABORTED), STAGE_NEXT_FAIL);
    cr_assert_eq(stage_logic_after_effect(STAGE_RESULT_ERROR), STAGE_NEXT_FAIL);
}

Test(stage_logic, http_answers_read_as_outcomes)
{
    cr_assert_eq(stage_logic_transport_outcome(true), STAGE_EFFECT_ERROR);
    cr_assert_eq(stage_logic_transport_outcome(false), STAGE_EFFECT_UNKNOWN);
    cr_assert_eq(stage_logic_merge_answer(200), STAGE_MERGE_DONE);
    cr_assert_eq(stage_logic_merge_answer(204), STAGE_MERGE_DONE);
    cr_assert_eq(stage_logic_merge_answer(405), STAGE_MERGE_CHECK);
    cr_assert_eq(stage_logic_merge_answer(409), STAGE_MERGE_CHECK);
    cr_assert_eq(stage_logic_merge_answer(401), STAGE_MERGE_REFUSED);
    cr_assert_eq(stage_logic_merge_answer(429), STAGE_MERGE_REFUSED);
    cr_assert_eq(stage_logic_merge_answer(500), STAGE_MERGE_UNKNOWN);
    cr_assert_eq(stage_logic_merge_answer(302), STAGE_MERGE_UNKNOWN);
    cr_assert_eq(stage_logic_hook_outcome(202), STAGE_EFFECT_OK);
    cr_assert_eq(stage_logic_hook_outcome(404), STAGE_EFFECT_FAILED);
    cr_assert_eq(stage_logic_hook_outcome(503), STAGE_EFFECT_UNKNOWN);
    cr_assert_eq(stage_logic_hook_outcome(0), STAGE_EFFECT_UNKNOWN);
}

/* ---- edges and names ------------------------------------------------------ */

Test(stage_logic, a_request_names_an_edge_of_the_table)
{
    char why[300];
    const stage_edge *e = stage_logic_request_edge("review", "testing", why, sizeof why);
    cr_assert(e && e->from == STAGE_REVIEW && e->to == STAGE_TESTING);
    cr_assert_null(stage_logic_request_edge("review", "Testing", why, sizeof why));
    cr_assert(strstr(why, "unknown stage \"Testing\""), "%s", why);
    cr_assert_null(stage_logic_request_edge("nowhere", "testing", why, sizeof why));
    cr_assert(strstr(why, "unknown stage \"nowhere\""), "%s", why);
    cr_assert_null(stage_logic_request_edge("backlog", "done", why, sizeof why));
    cr_assert(strstr(why, "no edge backlog->done"), "%s", why);
}

Test(stage_logic, an_intent_row_names_its_edge_and_effect)
{
    const stage_edge *e = NULL;
    stage_effect_id id = STAGE_EFF_COUNT;
    cr_assert(stage_logic_intent_edge("review->testing", "merge_pr", &e, &id));
    cr_assert(e && e->from == STAGE_REVIEW && id == STAGE_EFF_MERGE_PR);
    cr_assert(stage_logic_intent_edge("staging->deploy", "deploy_start", &e, &id));
    cr_assert_eq(id, STAGE_EFF_DEPLOY_START);
    cr_assert_not(stage_logic_intent_edge("review testing", "merge_pr", &e, &id));
    cr_assert_not(stage_logic_intent_edge("review->done", "merge_pr", &e, &id));
    cr_assert_not(stage_logic_intent_edge("review->testing", "launch", &e, &id));
}

Test(stage_logic, only_development_to_review_writes_a_pull_request)
{
    orch_verdicts ev;
    orch_verdicts_init(&ev);
    cr_assert(orch_verdicts_set(&ev, "pr_number", "42"));
    const stage_edge *dr = stage_pipeline_edge(STAGE_DEVELOPMENT, STAGE_REVIEW);
    const stage_edge *rt = stage_pipeline_edge(STAGE_REVIEW, STAGE_TESTING);
    cr_assert_eq(stage_logic_written_pr(dr, &ev), 42);
    cr_assert_eq(stage_logic_written_pr(rt, &ev), 0);
    orch_verdicts none;
    orch_verdicts_init(&none);
    cr_assert_eq(stage_logic_written_pr(dr, &none), 0, "none reported: keep");
}

Test(stage_logic, the_reconciler_drives_only_gated_forward_edges)
{
    cr_assert_null(stage_logic_reconcile_edge(STAGE_BACKLOG), "backlog->analysis has no gate");
    const stage_edge *e = stage_logic_reconcile_edge(STAGE_ANALYSIS);
    cr_assert(e && e->to == STAGE_ARCHITECTURE);
    cr_assert_null(stage_logic_reconcile_edge(STAGE_DONE));
    cr_assert_null(stage_logic_reconcile_edge(STAGE_CANCELLED));
}

Test(stage_logic, edge_labels_fall_back_to_other)
{
    size_t n;
    (void)stage_pipeline_edges(&n);
    cr_assert_eq(stage_logic_edge_label("backlog", "analysis", n + 1), 0);
    cr_assert_eq(stage_logic_edge_label("analysis", "architecture", n + 1), 1);
    cr_assert_eq(stage_logic_edge_label("backlog", "done", n + 1), n, "no edge: other");
    cr_assert_eq(stage_logic_edge_label(NULL, NULL, n + 1), n);
    cr_assert_eq(stage_logic_edge_label("analysis", "architecture", 2), 1, "past the labels");
}

Test(stage_logic, results_have_names)
{
    cr_assert_str_eq(stage_result_name(STAGE_RESULT_ADVANCED), "advanced");
    cr_assert_str_eq(stage_result_name(STAGE_RESULT_EFFECT_UNKNOWN), "effect_unknown");
    cr_assert_str_eq(stage_result_name(STAGE_RESULT_COUNT), "error");
    cr_assert_str_eq(stage_logic_backward_word(STAGE_CANCELLED), "cancel");
    cr_assert_str_eq(stage_logic_backward_word(STAGE_DEVELOPMENT), "rollback");
}

/* ---- answers ------------------------------------------------------------- */

Test(stage_logic, a_forgotten_code_after_something_durable_is_unknown)
{
    cr_assert(stage_logic_answer_unknown(true, ORCH_CODE_UNAVAILABLE));
    cr_assert(stage_logic_answer_unknown(true, ORCH_CODE_DEADLINE_EXCEEDED));
    cr_assert(stage_logic_answer_unknown(true, ORCH_CODE_RESOURCE_EXHAUSTED));
    cr_assert_not(stage_logic_answer_unknown(false, ORCH_CODE_UNAVAILABLE));
    cr_assert_not(stage_logic_answer_unknown(true, ORCH_CODE_ABORTED), "remembered anyway");
    cr_assert_not(stage_logic_answer_unknown(true, ORCH_CODE_OK));
}

/* ---- the inbox ------------------------------------------------------------ */

static stage_task task_in(stage_id s, int cycle)
{
    stage_task t;
    memset(&t, 0, sizeof t);
    snprintf(t.work_item, sizeof t.work_item, "ORCH-7");
    t.stage = s;
    t.cycle = cycle;
    return t;
}

Test(stage_logic, a_cancel_applies_from_wherever_the_item_is)
{
    char why[200];
    stage_id to;
    stage_task t = task_in(STAGE_STAGING, 2);
    cr_assert(stage_logic_event_edge(STAGE_INBOX_CANCEL, 0, &t, &to, why, sizeof why));
    cr_assert_eq(to, STAGE_CANCELLED);
    t = task_in(STAGE_CANCELLED, 0);
    cr_assert_not(stage_logic_event_edge(STAGE_INBOX_CANCEL, 0, &t, &to, why, sizeof why));
    cr_assert(strstr(why, "already cancelled"), "%s", why);
    t = task_in(STAGE_DONE, 0);
    cr_assert_not(stage_logic_event_edge(STAGE_INBOX_CANCEL, 0, &t, &to, why, sizeof why));
    cr_assert(strstr(why, "nothing to cancel"), "%s", why);
}

Test(stage_logic, a_review_event_applies_only_in_its_review)
{
    char why[200];
    stage_id to;
    stage_task t = task_in(STAGE_REVIEW, 1);
    cr_assert(stage_logic_event_edge(STAGE_INBOX_APPROVE, 1, &t, &to, why, sizeof why));
    cr_assert_eq(to, STAGE_TESTING);
    cr_assert(stage_logic_event_edge(STAGE_INBOX_REJECT, 1, &t, &to, why, sizeof why));
    cr_assert_eq(to, STAGE_DEVELOPMENT);
    cr_assert_not(stage_logic_event_edge(STAGE_INBOX_APPROVE, 0, &t, &to, why, sizeof why),
                  "a review of an earlier cycle");
    t = task_in(STAGE_TESTING, 1);
    cr_assert_not(stage_logic_event_edge(STAGE_INBOX_REJECT, 1, &t, &to, why, sizeof why));
    cr_assert(strstr(why, "in stage testing (cycle 1)"), "%s", why);
}

Test(stage_logic, the_inbox_backs_off_up_to_fifteen_seconds)
{
    cr_assert_eq(stage_logic_inbox_backoff_ms(0), 1000);
    cr_assert_eq(stage_logic_inbox_backoff_ms(1), 1000);
    cr_assert_eq(stage_logic_inbox_backoff_ms(2), 2000);
    cr_assert_eq(stage_logic_inbox_backoff_ms(4), 8000);
    cr_assert_eq(stage_logic_inbox_backoff_ms(5), 15000);
    cr_assert_eq(stage_logic_inbox_backoff_ms(100), 15000);
    cr_assert_eq(stage_logic_inbox_stale_ms(5000), 130000);
}

Test(stage_logic, engine_answers_settle_inbox_events)
{
    stage_inbox_verdict v = stage_logic_inbox_verdict(ORCH_CODE_OK, STAGE_RESULT_ADVANCED);
    cr_assert(v.done && !v.look_again);
    cr_assert_str_eq(v.outcome, "applied");
    v = stage_logic_inbox_verdict(ORCH_CODE_OK, STAGE_RESULT_ROLLED_BACK);
    cr_assert(v.done);
    cr_assert_str_eq(v.outcome, "applied");
    v = stage_logic_inbox_verdict(ORCH_CODE_OK, STAGE_RESULT_GATE_FAILED);
    cr_assert(v.done);
    cr_assert_str_eq(v.outcome, "gate_failed");
    v = stage_logic_inbox_verdict(ORCH_CODE_OK, STAGE_RESULT_DEFERRED);
    cr_assert(!v.done && !v.look_again);
    cr_assert_str_eq(v.outcome, "deferred");
    v = stage_logic_inbox_verdict(ORCH_CODE_OK, STAGE_RESULT_EFFECT_FAILED);
    cr_assert(!v.done);
    cr_assert_str_eq(v.outcome, "effect_failed");
    v = stage_logic_inbox_verdict(ORCH_CODE_ABORTED, STAGE_RESULT_ABORTED);
    cr_assert(!v.done && v.look_again);
    cr_assert_str_eq(v.outcome, "aborted");
    v = stage_logic_inbox_verdict(ORCH_CODE_FAILED_PRECONDITION, STAGE_RESULT_ERROR);
    cr_assert(!v.done && v.look_again);
    cr_assert_str_eq(v.outcome, "moved");
    v = stage_logic_inbox_verdict(ORCH_CODE_NOT_FOUND, STAGE_RESULT_ERROR);
    cr_assert(v.done);
    cr_assert_str_eq(v.outcome, "rejected");
    v = stage_logic_inbox_verdict(ORCH_CODE_INVALID_ARGUMENT, STAGE_RESULT_ERROR);
    cr_assert_str_eq(v.outcome, "rejected");
    v = stage_logic_inbox_verdict(ORCH_CODE_UNAVAILABLE, STAGE_RESULT_ERROR);
    cr_assert(!v.done && !v.look_again);
    cr_assert_str_eq(v.outcome, "error");
    v = stage_logic_inbox_verdict(ORCH_CODE_UNKNOWN, STAGE_RESULT_ERROR);
    cr_assert_str_eq(v.outcome, "error");
}
