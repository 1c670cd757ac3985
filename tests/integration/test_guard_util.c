/*
 * test_guard_util.c - see test_guard_util.h.
 */
#include "test_guard_util.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M(name) "orch.v1.GuardService/" name

void gt_start(gt_env *e, const char *const *extra)
{
    static char plane_url[128], tg_url[128];
    memset(e, 0, sizeof *e);
    th_db_fresh(e->db, sizeof e->db);
    th_imitation_start(&e->plane, "plane");
    th_imitation_start(&e->tg, "telegram");
    snprintf(plane_url, sizeof plane_url, "ORCH_PLANE_BASE_URL=%s", e->plane.base_url);
    snprintf(tg_url, sizeof tg_url, "ORCH_TELEGRAM_BASE_URL=%s", e->tg.base_url);
    const char *env[64];
    size_t n = 0;
    env[n++] = plane_url;
    env[n++] = tg_url;
    for (const char *const *x = extra; x && *x && n < 40; x++)
        env[n++] = *x;
    /* Defaults after the extras: getenv() returns the first entry. */
    env[n++] = "ORCH_PLANE_API_KEY=" GT_KEY;
    env[n++] = "ORCH_PLANE_WORKSPACE_SLUG=acme";
    env[n++] = "ORCH_PLANE_PROJECT_ID=" GT_PROD;
    env[n++] = "ORCH_PLANE_TEST_SANDBOX_PROJECTS=" GT_SANDBOX;
    env[n++] = "ORCH_PLANE_TIMEOUT_MS=1500";
    env[n++] = "ORCH_TELEGRAM_BOT_TOKEN=" GT_TOKEN;
    env[n++] = "ORCH_TELEGRAM_CHAT_ID=" GT_PROD_CHAT;
    env[n++] = "ORCH_TELEGRAM_TEST_SANDBOX_CHATS=" GT_SANDBOX_CHAT;
    env[n++] = "ORCH_TELEGRAM_TEST_CHAT_ID=" GT_SANDBOX_CHAT;
    env[n++] = "ORCH_TELEGRAM_TIMEOUT_MS=1500";
    env[n] = NULL;
    th_svc_start(&e->guard, "guard", e->db, env, true);
    orch_rpc_client_opts o = { .default_timeout_ms = 10000 };
    cr_assert(orch_rpc_client_open(e->guard.rpc_url, &o, &e->client) == ORCH_OK);
}

void gt_stop(gt_env *e)
{
    orch_rpc_client_close(e->client);
    e->client = NULL;
    if (e->guard.pid > 0)
        th_svc_stop(&e->guard, SIGTERM, 10000);
    th_imitation_stop(&e->plane);
    th_imitation_stop(&e->tg);
}

static gt_reply call(gt_env *e, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *rd, ProtobufCMessage **out)
{
    gt_reply r = { 0 };
    orch_rpc_status st = { 0 };
    ProtobufCMessage *rep = NULL;
    r.code = orch_rpc_invoke(e->client, method, req, rd, NULL, &st, &rep);
    snprintf(r.message, sizeof r.message, "%s", st.message);
    cr_assert(r.code != ORCH_CODE_DEADLINE_EXCEEDED || strstr(r.message, "not written") ||
                  strstr(r.message, "timed out") || strstr(r.message, "Timeout"),
              "%s: no answer: %s", method, r.message);
    if (out)
        *out = rep;
    else if (rep)
        protobuf_c_message_free_unpacked(rep, NULL);
    gt_assert_no_secret(e, r.message);
    return r;
}

gt_reply gt_set_direct(gt_env *e, const char *project, const char *issue, const char *state)
{
    Orch__V1__SetIssueStateDirectRequest q = ORCH__V1__SET_ISSUE_STATE_DIRECT_REQUEST__INIT;
    q.project_id = (char *)project;
    q.issue_id = (char *)issue;
    q.state_id = (char *)state;
    q.caller = "test";
    return call(e, M("SetIssueStateDirect"), &q.base, &orch__v1__issue_state_reply__descriptor,
                NULL);
}

gt_reply gt_update_state(gt_env *e, const char *project, const char *issue, const char *name)
{
    Orch__V1__UpdateIssueStateRequest q = ORCH__V1__UPDATE_ISSUE_STATE_REQUEST__INIT;
    q.project_id = (char *)project;
    q.issue_id = (char *)issue;
    q.state_name = (char *)name;
    q.caller = "test";
    return call(e, M("UpdateIssueState"), &q.base, &orch__v1__issue_state_reply__descriptor, NULL);
}

gt_reply gt_comment(gt_env *e, const char *project, const char *issue, const char *text,
                    const char *external_id)
{
    Orch__V1__AddCommentRequest q = ORCH__V1__ADD_COMMENT_REQUEST__INIT;
    q.project_id = (char *)project;
    q.issue_id = (char *)issue;
    q.text = (char *)text;
    q.external_id = (char *)external_id;
    q.caller = "test";
    ProtobufCMessage *m = NULL;
    gt_reply r = call(e, M("AddComment"), &q.base, &orch__v1__add_comment_reply__descriptor, &m);
    if (m) {
        r.duplicate = ((Orch__V1__AddCommentReply *)m)->duplicate;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return r;
}

gt_reply gt_notify(gt_env *e, const char *chat, const char *text)
{
    Orch__V1__NotifyRequest q = ORCH__V1__NOTIFY_REQUEST__INIT;
    q.chat_id = (char *)chat;
    q.text = (char *)text;
    q.caller = "test";
    ProtobufCMessage *m = NULL;
    gt_reply r = call(e, M("Notify"), &q.base, &orch__v1__notify_reply__descriptor, &m);
    if (m) {
        r.attempts = ((Orch__V1__NotifyReply *)m)->attempts;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return r;
}

int gt_audit_count(gt_env *e, const char *decision)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM guard_audit WHERE decision = '%s'", decision);
    char *v = th_sql(e->db, sql);
    int n = v ? (int)strtol(v, NULL, 10) : -1;
    free(v);
    return n;
}

void gt_assert_no_secret(gt_env *e, const char *text)
{
    static const char *const secrets[] = { GT_KEY, "AAHliveTOKENk3yDoNotLeak" };
    for (size_t i = 0; i < 2; i++) {
        cr_assert_null(strstr(text, secrets[i]), "a credential in a reply: %s", text);
        cr_assert_not(th_svc_log_has(&e->guard, secrets[i]),
                      "a credential in guard-service's log (%s)", e->guard.log_path);
    }
}
