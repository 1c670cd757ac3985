/*
 * test_guard.c - guard-service end to end: a real guard-service on a fresh
 * database, Plane and Telegram imitations on loopback that record every
 * request (DESIGN.md invariant 9).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_guard_util.h"

#define ISSUE "33cc0000-0000-4000-8000-0000000issue"
#define STATE "11111111-0000-4000-8000-000000000003"

static gt_env E;

static void fini(void)
{
    gt_stop(&E);
}

TestSuite(guard, .fini = fini, .timeout = 90);

/* The incident: a test process with the live token and the production
 * project writes a state and a comment. */
Test(guard, incident_regression_production_writes_from_a_test_are_blocked)
{
    const char *env[] = { "ORCH_PLANE_TEST_WRITE_ENABLED=true", NULL };
    gt_start(&E, env);
    gt_reply a = gt_set_direct(&E, GT_PROD, ISSUE, STATE);
    gt_reply b = gt_comment(&E, GT_PROD, ISSUE, "deployed", "ext-incident-1");
    cr_assert_eq(a.code, ORCH_CODE_PERMISSION_DENIED, "%s", a.message);
    cr_assert_eq(b.code, ORCH_CODE_PERMISSION_DENIED, "%s", b.message);
    cr_assert(strstr(a.message, "production"), "%s", a.message);
    cr_assert_eq(th_imitation_count(&E.plane, NULL, NULL), 0, "the Plane imitation was called");
    cr_assert_eq(gt_audit_count(&E, "block"), 2);
    cr_assert_eq(gt_audit_count(&E, "allow"), 0);
    cr_assert(th_svc_wait_log(&E.guard, "\"level\":\"error\"", 2000));
    cr_assert(th_svc_log_has(&E.guard, "guard block SetIssueStateDirect"));
    cr_assert(th_svc_log_has(&E.guard, "guard block AddComment"));
    gt_assert_no_secret(&E, "");
}

/* The decision line names target and caller as keys of their own (and
 * the RPC method and request id), not as words of msg. */
Test(guard, decision_line_carries_target_and_caller_keys)
{
    gt_start(&E, NULL);
    cr_assert_eq(gt_set_direct(&E, GT_PROD, ISSUE, STATE).code, ORCH_CODE_PERMISSION_DENIED);
    cr_assert(th_svc_wait_log(&E.guard, "guard block SetIssueStateDirect", 2000));
    cr_expect(th_svc_log_has(&E.guard, "\"method\":\"orch.v1.GuardService/SetIssueStateDirect\","
                                       "\"target\":\"" GT_PROD "\",\"caller\":\"test\","
                                       "\"msg\":\"guard block SetIssueStateDirect runtime=test: "));
    cr_expect_not(th_svc_log_has(&E.guard, "target="));
}

Test(guard, opt_in_and_sandbox_reach_plane_with_the_right_request)
{
    const char *env[] = { "ORCH_PLANE_TEST_WRITE_ENABLED=true", NULL };
    gt_start(&E, env);
    gt_reply a = gt_set_direct(&E, GT_SANDBOX, ISSUE, STATE);
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
    char *rq = th_imitation_request(&E.plane, 0);
    cr_assert_not_null(rq);
    cr_assert(strstr(rq, "\"method\":\"PATCH\""), "%s", rq);
    cr_assert(strstr(rq, "\"path\":\"/api/v1/workspaces/acme/projects/" GT_SANDBOX "/issues/" ISSUE
                         "/\""),
              "%s", rq);
    cr_assert(strstr(rq, "\"x-api-key\":\"" GT_KEY "\""), "%s", rq);
    cr_assert(strstr(rq, "\"content-type\":\"application/json\""), "%s", rq);
    cr_assert(strstr(rq, "\\\"state\\\":\\\"" STATE "\\\""), "%s", rq);
    free(rq);

    gt_reply b = gt_comment(&E, GT_SANDBOX, ISSUE, "tests <passed> & deployed", "ext-ok-1");
    cr_assert_eq(b.code, ORCH_CODE_OK, "%s", b.message);
    cr_assert_not(b.duplicate);
    rq = th_imitation_request(&E.plane, 1);
    cr_assert(strstr(rq, "\"method\":\"POST\""), "%s", rq);
    cr_assert(strstr(rq, "/projects/" GT_SANDBOX "/issues/" ISSUE "/comments/\""), "%s", rq);
    cr_assert(strstr(rq, "comment_html\\\":\\\"<p>tests &lt;passed&gt; &amp; deployed</p>"), "%s",
              rq);
    cr_assert(strstr(rq, "external_id\\\":\\\"ext-ok-1"), "%s", rq);
    free(rq);

    gt_reply c = gt_update_state(&E, GT_SANDBOX, ISSUE, "done");
    cr_assert_eq(c.code, ORCH_CODE_OK, "%s", c.message);
    cr_assert_eq(th_imitation_count(&E.plane, "GET",
                                    "/api/v1/workspaces/acme/projects/" GT_SANDBOX "/states/"),
                 1);
    cr_assert_eq(th_imitation_count(&E.plane, "PATCH", NULL), 2);
    cr_assert_eq(gt_audit_count(&E, "allow"), 3);
    cr_assert(th_svc_log_has(&E.guard, "guard allow AddComment"));
    gt_assert_no_secret(&E, "");
}

Test(guard, opt_in_does_not_open_production)
{
    const char *env[] = { "ORCH_PLANE_TEST_WRITE_ENABLED=true",
                          "ORCH_PLANE_TEST_SANDBOX_PROJECTS=" GT_SANDBOX "," GT_PROD, NULL };
    gt_start(&E, env);
    cr_assert_eq(gt_update_state(&E, GT_PROD, ISSUE, "Done").code, ORCH_CODE_PERMISSION_DENIED);
    cr_assert_eq(th_imitation_count(&E.plane, NULL, NULL), 0);
    cr_assert_eq(gt_audit_count(&E, "block"), 1);
}

Test(guard, sandbox_without_opt_in_is_blocked)
{
    gt_start(&E, NULL);
    gt_reply a = gt_set_direct(&E, GT_SANDBOX, ISSUE, STATE);
    cr_assert_eq(a.code, ORCH_CODE_PERMISSION_DENIED, "%s", a.message);
    cr_assert(strstr(a.message, "not opted in"), "%s", a.message);
    cr_assert_eq(th_imitation_count(&E.plane, NULL, NULL), 0);
}

Test(guard, unknown_project_is_blocked)
{
    const char *env[] = { "ORCH_PLANE_TEST_WRITE_ENABLED=true", NULL };
    gt_start(&E, env);
    gt_reply a = gt_comment(&E, "99990000-unknown-project", ISSUE, "x", "ext-unknown");
    cr_assert_eq(a.code, ORCH_CODE_PERMISSION_DENIED, "%s", a.message);
    cr_assert(strstr(a.message, "sandbox allowlist"), "%s", a.message);
    cr_assert_eq(th_imitation_count(&E.plane, NULL, NULL), 0);
    cr_assert_eq(gt_audit_count(&E, "block"), 1);
}

static void live_like(const char *runtime)
{
    const char *env[] = { runtime, NULL };
    gt_start(&E, env);
    cr_assert_eq(gt_set_direct(&E, GT_PROD, ISSUE, STATE).code, ORCH_CODE_OK);
    cr_assert_eq(gt_comment(&E, GT_PROD, ISSUE, "ok", "ext-live-1").code, ORCH_CODE_OK);
    cr_assert_eq(gt_notify(&E, "", "hello").code, ORCH_CODE_OK);
    cr_assert_eq(th_imitation_count(&E.plane, NULL, NULL), 2);
    cr_assert_eq(th_imitation_count(&E.tg, "POST", "/bot" GT_TOKEN "/sendMessage"), 1);
    char *rq = th_imitation_request(&E.tg, 0);
    cr_assert(strstr(rq, "chat_id\\\":\\\"" GT_PROD_CHAT), "%s", rq);
    free(rq);
    cr_assert_eq(gt_audit_count(&E, "allow"), 3);
    gt_assert_no_secret(&E, "");
}

Test(guard, live_runtime_writes_go_through)
{
    live_like("ORCH_RUNTIME=live");
}

Test(guard, staging_runtime_writes_go_through)
{
    live_like("ORCH_RUNTIME=staging");
}

Test(guard, plane_failures_give_clear_statuses_and_nothing_counts_as_written)
{
    const char *env[] = { "ORCH_PLANE_TEST_WRITE_ENABLED=true", NULL };
    gt_start(&E, env);
    th_imitation_script(&E.plane, "{\"status\":404}");
    gt_reply a = gt_set_direct(&E, GT_SANDBOX, ISSUE, STATE);
    cr_assert_eq(a.code, ORCH_CODE_FAILED_PRECONDITION, "%s", a.message);
    cr_assert(strstr(a.message, "404") && strstr(a.message, "not written"), "%s", a.message);

    th_imitation_script(&E.plane, "{\"status\":503}");
    gt_reply b = gt_comment(&E, GT_SANDBOX, ISSUE, "first try", "ext-fail-1");
    cr_assert_eq(b.code, ORCH_CODE_UNAVAILABLE, "%s", b.message);
    /* not recorded as posted: the same id goes through afterwards */
    gt_reply c = gt_comment(&E, GT_SANDBOX, ISSUE, "first try", "ext-fail-1");
    cr_assert_eq(c.code, ORCH_CODE_OK, "%s", c.message);
    cr_assert_not(c.duplicate);

    th_imitation_script(&E.plane, "{\"delay_ms\":2500}");
    gt_reply d = gt_set_direct(&E, GT_SANDBOX, ISSUE, STATE);
    cr_assert_eq(d.code, ORCH_CODE_DEADLINE_EXCEEDED, "%s", d.message);
    cr_assert(strstr(d.message, "not written"), "%s", d.message);
    cr_assert_eq(th_imitation_count(&E.plane, NULL, NULL), 4);
    gt_assert_no_secret(&E, "");
}

Test(guard, a_repeated_comment_is_posted_once_even_after_a_restart)
{
    const char *env[] = { "ORCH_PLANE_TEST_WRITE_ENABLED=true", NULL };
    gt_start(&E, env);
    cr_assert_eq(gt_comment(&E, GT_SANDBOX, ISSUE, "once", "ext-dup-1").code, ORCH_CODE_OK);
    gt_reply b = gt_comment(&E, GT_SANDBOX, ISSUE, "once", "ext-dup-1");
    cr_assert_eq(b.code, ORCH_CODE_OK, "%s", b.message);
    cr_assert(b.duplicate);
    cr_assert_eq(th_imitation_count(&E.plane, "POST", NULL), 1);
    /* durable: a new guard-service process on the same database */
    orch_rpc_client_close(E.client);
    cr_assert_eq(th_svc_stop(&E.guard, SIGTERM, 10000), 0);
    static char plane_url[128];
    snprintf(plane_url, sizeof plane_url, "ORCH_PLANE_BASE_URL=%s", E.plane.base_url);
    const char *env2[] = { plane_url,
                           "ORCH_PLANE_TEST_WRITE_ENABLED=true",
                           "ORCH_PLANE_API_KEY=" GT_KEY,
                           "ORCH_PLANE_WORKSPACE_SLUG=acme",
                           "ORCH_PLANE_TEST_SANDBOX_PROJECTS=" GT_SANDBOX,
                           NULL };
    th_svc_start(&E.guard, "guard", E.db, env2, true);
    orch_rpc_client_opts o = { .default_timeout_ms = 10000 };
    cr_assert(orch_rpc_client_open(E.guard.rpc_url, &o, &E.client) == ORCH_OK);
    gt_reply c = gt_comment(&E, GT_SANDBOX, ISSUE, "once", "ext-dup-1");
    cr_assert_eq(c.code, ORCH_CODE_OK, "%s", c.message);
    cr_assert(c.duplicate);
    cr_assert_eq(th_imitation_count(&E.plane, "POST", NULL), 1);
}

Test(guard, bad_input_gets_invalid_argument_and_no_request)
{
    const char *env[] = { "ORCH_PLANE_TEST_WRITE_ENABLED=true", "ORCH_GUARD_COMMENT_MAX_BYTES=64",
                          NULL };
    gt_start(&E, env);
    cr_assert_eq(gt_comment(&E, "", ISSUE, "x", "ext-b1").code, ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_eq(gt_set_direct(&E, "", ISSUE, STATE).code, ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_eq(gt_comment(&E, GT_SANDBOX, ISSUE, "", "ext-b2").code, ORCH_CODE_INVALID_ARGUMENT);
    char big[100];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    gt_reply r = gt_comment(&E, GT_SANDBOX, ISSUE, big, "ext-b3");
    cr_assert_eq(r.code, ORCH_CODE_INVALID_ARGUMENT);
    cr_assert(strstr(r.message, "over the limit"), "%s", r.message);
    r = gt_comment(&E, GT_SANDBOX, ISSUE, "bad \xff\xfe bytes", "ext-b4");
    cr_assert_eq(r.code, ORCH_CODE_INVALID_ARGUMENT);
    cr_assert(strstr(r.message, "UTF-8"), "%s", r.message);
    cr_assert_eq(gt_comment(&E, GT_SANDBOX, ISSUE, "x", "").code, ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_eq(gt_comment(&E, GT_SANDBOX, "../../x", "x", "e").code, ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_eq(gt_notify(&E, "", "\xc0\xaf").code, ORCH_CODE_INVALID_ARGUMENT);
    char *huge = malloc(5000);
    memset(huge, 'b', 4999);
    huge[4999] = '\0';
    cr_assert_eq(gt_notify(&E, "", huge).code, ORCH_CODE_INVALID_ARGUMENT);
    free(huge);
    cr_assert_eq(th_imitation_count(&E.plane, NULL, NULL), 0);
    cr_assert_eq(th_imitation_count(&E.tg, NULL, NULL), 0);
    cr_assert(th_svc_alive(&E.guard));
}

Test(guard, notify_in_test_needs_opt_in_and_a_sandbox_chat)
{
    gt_start(&E, NULL);
    cr_assert_eq(gt_notify(&E, "", "no opt-in").code, ORCH_CODE_PERMISSION_DENIED);
    gt_stop(&E);
    const char *env[] = { "ORCH_TELEGRAM_TEST_SEND_ENABLED=true", NULL };
    gt_start(&E, env);
    cr_assert_eq(gt_notify(&E, GT_PROD_CHAT, "to production").code, ORCH_CODE_PERMISSION_DENIED);
    cr_assert_eq(gt_notify(&E, "-100999", "to a stranger").code, ORCH_CODE_PERMISSION_DENIED);
    gt_reply r = gt_notify(&E, "", "to the sandbox");
    cr_assert_eq(r.code, ORCH_CODE_OK, "%s", r.message);
    cr_assert_eq(th_imitation_count(&E.tg, NULL, NULL), 1);
    char *rq = th_imitation_request(&E.tg, 0);
    cr_assert(strstr(rq, "chat_id\\\":\\\"" GT_SANDBOX_CHAT), "%s", rq);
    free(rq);
    gt_assert_no_secret(&E, "");
}

Test(guard, telegram_429_retry_after_is_honoured_or_reported)
{
    const char *env[] = { "ORCH_TELEGRAM_TEST_SEND_ENABLED=true",
                          "ORCH_TELEGRAM_MAX_RETRY_AFTER_S=5", NULL };
    gt_start(&E, env);
    th_imitation_script(&E.tg, "{\"status\":429,\"retry_after\":1,\"times\":1}");
    gt_reply a = gt_notify(&E, "", "after a short wait");
    cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
    cr_assert_eq(a.attempts, 2);
    th_imitation_script(&E.tg, "{\"status\":429,\"retry_after\":120,\"times\":5}");
    gt_reply b = gt_notify(&E, "", "too long a wait");
    cr_assert_eq(b.code, ORCH_CODE_RESOURCE_EXHAUSTED, "%s", b.message);
    cr_assert(strstr(b.message, "retry after 120"), "%s", b.message);
    cr_assert_eq(th_imitation_count(&E.tg, NULL, NULL), 3);
    gt_assert_no_secret(&E, "");
}

Test(guard, decide_and_list_audit)
{
    gt_start(&E, NULL);
    Orch__V1__DecideRequest q = ORCH__V1__DECIDE_REQUEST__INIT;
    q.operation = ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_ADD_COMMENT;
    q.target = GT_PROD;
    q.caller = "test";
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    cr_assert_eq(orch_rpc_invoke(E.client, "orch.v1.GuardService/Decide", &q.base,
                                 &orch__v1__decide_reply__descriptor, NULL, &st, &m),
                 ORCH_CODE_OK, "%s", st.message);
    Orch__V1__DecideReply *d = (Orch__V1__DecideReply *)m;
    cr_assert_not(d->verdict->allowed);
    cr_assert_str_eq(d->verdict->decision, "block");
    cr_assert_str_eq(d->verdict->runtime, "test");
    protobuf_c_message_free_unpacked(m, NULL);
    Orch__V1__ListAuditRequest l = ORCH__V1__LIST_AUDIT_REQUEST__INIT;
    cr_assert_eq(orch_rpc_invoke(E.client, "orch.v1.GuardService/ListAudit", &l.base,
                                 &orch__v1__list_audit_reply__descriptor, NULL, &st, &m),
                 ORCH_CODE_OK, "%s", st.message);
    Orch__V1__ListAuditReply *a = (Orch__V1__ListAuditReply *)m;
    cr_assert_eq(a->n_entries, 1);
    cr_assert_str_eq(a->entries[0]->operation, "Decide/AddComment");
    cr_assert_str_eq(a->entries[0]->project, GT_PROD);
    protobuf_c_message_free_unpacked(m, NULL);
    l.limit = 5000;
    cr_assert_eq(orch_rpc_invoke(E.client, "orch.v1.GuardService/ListAudit", &l.base,
                                 &orch__v1__list_audit_reply__descriptor, NULL, &st, &m),
                 ORCH_CODE_INVALID_ARGUMENT);
}

Test(guard, metrics_count_decisions)
{
    gt_start(&E, NULL);
    cr_assert_eq(gt_set_direct(&E, GT_PROD, ISSUE, STATE).code, ORCH_CODE_PERMISSION_DENIED);
    char *body = NULL;
    cr_assert_eq(th_http_get(E.guard.http_addr, "/metrics", &body), 200);
    double v = th_metric(body, "orch_guard_decisions_total{operation=\"SetIssueStateDirect\","
                               "decision=\"block\"}");
    cr_assert_eq(v, 1.0, "%s", body);
    free(body);
}

Test(guard, orchctl_guard_decide_audit_and_blocked_comment)
{
    gt_start(&E, NULL);
    char bin[600], out[16384], url[128];
    snprintf(bin, sizeof bin, "%s/tools/orchctl/orchctl", ORCH_BINARY_DIR);
    snprintf(url, sizeof url, "ORCH_GUARD_RPC_URL=%s", E.guard.rpc_url);
    const char *env[] = { url, NULL };
    const char *decide[] = { bin, "guard", "decide", "comment", GT_PROD, NULL };
    cr_assert_eq(th_run(decide, env, out, sizeof out, 10000), 0, "%s", out);
    cr_assert(strstr(out, "block"), "%s", out);
    const char *comment[] = { bin, "guard", "comment", GT_PROD, ISSUE, "ext-cli", "hi", NULL };
    int rc = th_run(comment, env, out, sizeof out, 10000);
    cr_assert_eq(rc, 64 + ORCH_CODE_PERMISSION_DENIED, "exit %d: %s", rc, out);
    const char *audit[] = { bin, "guard", "audit", "--decision", "block", NULL };
    cr_assert_eq(th_run(audit, env, out, sizeof out, 10000), 0, "%s", out);
    cr_assert(strstr(out, "Decide/AddComment") && strstr(out, "AddComment"), "%s", out);
    cr_assert_eq(th_imitation_count(&E.plane, NULL, NULL), 0);
}

Test(guard, orchctl_guard_state_and_notify)
{
    const char *extra[] = { "ORCH_PLANE_TEST_WRITE_ENABLED=true",
                            "ORCH_TELEGRAM_TEST_SEND_ENABLED=true", NULL };
    gt_start(&E, extra);
    char bin[600], out[16384], url[128];
    snprintf(bin, sizeof bin, "%s/tools/orchctl/orchctl", ORCH_BINARY_DIR);
    snprintf(url, sizeof url, "ORCH_GUARD_RPC_URL=%s", E.guard.rpc_url);
    const char *env[] = { url, NULL };

    /* STATE as an id: SetIssueStateDirect, to the sandbox: written. */
    const char *direct[] = { bin, "--json", "guard", "state", GT_SANDBOX, ISSUE, STATE, NULL };
    int rc = th_run(direct, env, out, sizeof out, 10000);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, out);
    cr_assert(strstr(out, "\"state_id\""), "%s", out);
    cr_assert_eq(th_imitation_count(&E.plane, "PATCH", NULL), 1);

    /* STATE as a name to production from the test runtime: blocked, 64 + 7. */
    const char *by_name[] = { bin, "guard", "state", GT_PROD, ISSUE, "Done", "--name", NULL };
    rc = th_run(by_name, env, out, sizeof out, 10000);
    cr_assert_eq(rc, 64 + ORCH_CODE_PERMISSION_DENIED, "exit %d: %s", rc, out);
    cr_assert_eq(th_imitation_count(&E.plane, "PATCH", NULL), 1);

    /* notify: the sandbox chat by default; production refused. */
    const char *notify[] = { bin, "guard", "notify", "hello from orchctl", NULL };
    rc = th_run(notify, env, out, sizeof out, 10000);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, out);
    cr_assert_eq(th_imitation_count(&E.tg, NULL, NULL), 1);
    const char *prod[] = { bin, "guard", "notify", "x", "--chat", GT_PROD_CHAT, NULL };
    rc = th_run(prod, env, out, sizeof out, 10000);
    cr_assert_eq(rc, 64 + ORCH_CODE_PERMISSION_DENIED, "exit %d: %s", rc, out);
    cr_assert_eq(th_imitation_count(&E.tg, NULL, NULL), 1);
}
