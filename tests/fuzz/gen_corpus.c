/*
 * gen_corpus.c - writes the seed corpus of the fuzz targets:
 *   gen_corpus OUT_DIR
 * fills OUT_DIR/<target>/ with small meaningful inputs: one valid request
 * per RPC method (and a few refused ones), as the per-service targets read
 * them (a method byte, then the request) and as whole RequestEnvelopes;
 * verdict texts, agent outputs and webhook events. The folders must exist.
 * tests/fuzz/gen_corpus.sh runs it; its output is checked in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/envelope.pb-c.h"
#include "orch/v1/guard.pb-c.h"
#include "orch/v1/health.pb-c.h"
#include "orch/v1/launcher.pb-c.h"
#include "orch/v1/lease.pb-c.h"
#include "orch/v1/stage.pb-c.h"

static const char *out_dir;
static int failures;

static void write_file(const char *target, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        fprintf(stderr, "gen_corpus: cannot write %s\n", path);
        failures++;
    }
    if (f && fclose(f) != 0)
        failures++;
}

static void write_text(const char *target, const char *name, const char *text)
{
    write_file(target, name, text, strlen(text));
}

/* Writes `msg` as a request of `method` of `svc`: into <short>_rpc/ with the
 * method byte, and into envelope/ as a RequestEnvelope. */
static void emit(const ProtobufCServiceDescriptor *svc, const char *target, const char *method,
                 const char *name, const ProtobufCMessage *msg)
{
    int idx = -1;
    for (unsigned i = 0; i < svc->n_methods; i++)
        if (strcmp(svc->methods[i].name, method) == 0)
            idx = (int)i;
    if (idx < 0 || svc->methods[idx].input != msg->descriptor) {
        fprintf(stderr, "gen_corpus: %s/%s does not take %s\n", svc->name, method,
                msg->descriptor->name);
        failures++;
        return;
    }
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n + 1);
    if (!buf)
        abort();
    buf[0] = (uint8_t)idx;
    protobuf_c_message_pack(msg, buf + 1);
    if (target)
        write_file(target, name, buf, n + 1);

    char full[160], rid[64];
    snprintf(full, sizeof full, "%s/%s", svc->name, method);
    snprintf(rid, sizeof rid, "seed-%s", name);
    Orch__V1__RequestEnvelope env = ORCH__V1__REQUEST_ENVELOPE__INIT;
    Orch__V1__Metadata md = ORCH__V1__METADATA__INIT, *mdp[1] = { &md };
    env.method = full;
    env.request_id = rid;
    env.timeout_ms = 5000;
    env.payload.data = buf + 1;
    env.payload.len = n;
    md.key = "traceparent";
    md.value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    env.metadata = mdp;
    env.n_metadata = 1;
    size_t en = orch__v1__request_envelope__get_packed_size(&env);
    uint8_t *eb = malloc(en);
    if (!eb)
        abort();
    orch__v1__request_envelope__pack(&env, eb);
    write_file("envelope", name, eb, en);
    free(eb);
    free(buf);
}

static void lease_seeds(void)
{
    const ProtobufCServiceDescriptor *s = &orch__v1__lease_service__descriptor;
    Orch__V1__Owner o = ORCH__V1__OWNER__INIT;
    o.host_id = "h1";
    o.boot_id = "5f3c2b1e-9d4a-4c3b-8e7f-1a2b3c4d5e6f";
    o.pid = 4242;
    o.start_ticks = 1234567;
    o.instance_id = "i-0c1d2e3f";
    Orch__V1__AcquireRequest a = ORCH__V1__ACQUIRE_REQUEST__INIT;
    a.work_item = "ORCH-114";
    a.repo = "orch/orch";
    a.transition = "review->testing";
    a.actor = "monitor";
    a.owner = &o;
    emit(s, "lease_rpc", "Acquire", "lease_acquire", &a.base);
    a.owner = NULL;
    emit(s, "lease_rpc", "Acquire", "lease_acquire_no_owner", &a.base);
    Orch__V1__ReleaseRequest r = ORCH__V1__RELEASE_REQUEST__INIT;
    r.work_item = "ORCH-114";
    r.epoch = 7;
    emit(s, "lease_rpc", "Release", "lease_release", &r.base);
    r.epoch = UINT64_MAX;
    emit(s, "lease_rpc", "Release", "lease_release_max_epoch", &r.base);
    Orch__V1__ValidateRequest v = ORCH__V1__VALIDATE_REQUEST__INIT;
    v.work_item = "ORCH-114";
    v.epoch = 7;
    emit(s, "lease_rpc", "Validate", "lease_validate", &v.base);
    Orch__V1__ForceReleaseRequest f = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    f.work_item = "ORCH-114";
    f.reason = "holder stuck for an hour";
    f.operator_ = "alice";
    emit(s, "lease_rpc", "ForceRelease", "lease_force_release", &f.base);
    Orch__V1__GetLeaseRequest g = ORCH__V1__GET_LEASE_REQUEST__INIT;
    g.work_item = "ORCH-114";
    emit(s, "lease_rpc", "Get", "lease_get", &g.base);
    g.work_item = "ORCH\x01-114";
    emit(s, "lease_rpc", "Get", "lease_get_control_char", &g.base);
    Orch__V1__ListLeasesRequest l = ORCH__V1__LIST_LEASES_REQUEST__INIT;
    l.held_only = 1;
    l.repo = "orch/orch";
    l.limit = 10;
    l.judge = 1;
    emit(s, "lease_rpc", "List", "lease_list", &l.base);
    l.limit = 1001;
    emit(s, "lease_rpc", "List", "lease_list_over_limit", &l.base);
    Orch__V1__ProbeOwnerRequest p = ORCH__V1__PROBE_OWNER_REQUEST__INIT;
    p.pid = 4242;
    p.start_ticks = 1234567;
    p.boot_id = o.boot_id;
    emit(s, "lease_rpc", "ProbeOwner", "lease_probe_owner", &p.base);
    p.pid = -1;
    emit(s, "lease_rpc", "ProbeOwner", "lease_probe_owner_negative_pid", &p.base);
}

static void stage_seeds(void)
{
    const ProtobufCServiceDescriptor *s = &orch__v1__stage_service__descriptor;
    Orch__V1__CreateTaskRequest c = ORCH__V1__CREATE_TASK_REQUEST__INIT;
    c.work_item = "ORCH-114";
    c.repo = "orch/orch";
    c.title = "Fence the merge effect by lease epoch";
    c.pr_number = 42;
    emit(s, "stage_rpc", "CreateTask", "stage_create_task", &c.base);
    c.repo = "/orch//orch/";
    emit(s, "stage_rpc", "CreateTask", "stage_create_task_bad_repo", &c.base);
    Orch__V1__GetTaskRequest g = ORCH__V1__GET_TASK_REQUEST__INIT;
    g.work_item = "ORCH-114";
    g.history_limit = 20;
    emit(s, "stage_rpc", "GetTask", "stage_get_task", &g.base);
    Orch__V1__Evidence e1 = ORCH__V1__EVIDENCE__INIT, e2 = ORCH__V1__EVIDENCE__INIT;
    Orch__V1__Evidence *ev[2] = { &e1, &e2 };
    e1.key = "test_status";
    e1.value = "PASS";
    e2.key = "coverage_pct";
    e2.value = "87.5";
    Orch__V1__AdvanceStageRequest a = ORCH__V1__ADVANCE_STAGE_REQUEST__INIT;
    a.work_item = "ORCH-114";
    a.expected_from = "testing";
    a.to = "staging";
    a.actor = "monitor";
    a.evidence =
        "All tests ran.\ntest_status: PASS\nsecurity_verdict: CLEAN\n- coverage_pct: 87.5\n";
    a.verdicts = ev;
    a.n_verdicts = 2;
    emit(s, "stage_rpc", "AdvanceStage", "stage_advance", &a.base);
    e1.key = "merge_status";
    emit(s, "stage_rpc", "AdvanceStage", "stage_advance_engine_key", &a.base);
    Orch__V1__RollbackRequest r = ORCH__V1__ROLLBACK_REQUEST__INIT;
    r.work_item = "ORCH-114";
    r.expected_from = "review";
    r.reason = "the reviewer asked for changes";
    r.actor = "operator";
    emit(s, "stage_rpc", "Rollback", "stage_rollback", &r.base);
    r.expected_from = "done";
    emit(s, "stage_rpc", "Rollback", "stage_rollback_from_done", &r.base);
    Orch__V1__ListQueueRequest q = ORCH__V1__LIST_QUEUE_REQUEST__INIT;
    q.stage = "review";
    q.repo = "orch/orch";
    q.limit = 50;
    emit(s, "stage_rpc", "ListQueue", "stage_list_queue", &q.base);
    Orch__V1__PipelineRequest p = ORCH__V1__PIPELINE_REQUEST__INIT;
    emit(s, "stage_rpc", "Pipeline", "stage_pipeline", &p.base);
}

static void guard_seeds(void)
{
    const ProtobufCServiceDescriptor *s = &orch__v1__guard_service__descriptor;
    Orch__V1__DecideRequest d = ORCH__V1__DECIDE_REQUEST__INIT;
    d.operation = ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_ADD_COMMENT;
    d.target = "3f2a9c1e-7b6d-4e5f-8a9b-0c1d2e3f4a5b";
    d.caller = "stage-service";
    emit(s, "guard_rpc", "Decide", "guard_decide", &d.base);
    d.operation = ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_NOTIFY;
    d.target = "";
    emit(s, "guard_rpc", "Decide", "guard_decide_notify", &d.base);
    Orch__V1__UpdateIssueStateRequest u = ORCH__V1__UPDATE_ISSUE_STATE_REQUEST__INIT;
    u.project_id = "3f2a9c1e-7b6d-4e5f-8a9b-0c1d2e3f4a5b";
    u.issue_id = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d";
    u.state_name = "In Review";
    u.caller = "launcher-service";
    emit(s, "guard_rpc", "UpdateIssueState", "guard_update_state", &u.base);
    u.state_id = "1b2c3d4e";
    emit(s, "guard_rpc", "UpdateIssueState", "guard_update_state_both", &u.base);
    Orch__V1__AddCommentRequest c = ORCH__V1__ADD_COMMENT_REQUEST__INIT;
    c.project_id = u.project_id;
    c.issue_id = u.issue_id;
    c.text = "Tests passed: 214 of 214. Coverage 87.5 %.";
    c.external_id = "orch-114-testing-1";
    c.caller = "stage-service";
    emit(s, "guard_rpc", "AddComment", "guard_add_comment", &c.base);
    Orch__V1__SetIssueStateDirectRequest sd = ORCH__V1__SET_ISSUE_STATE_DIRECT_REQUEST__INIT;
    sd.project_id = u.project_id;
    sd.issue_id = u.issue_id;
    sd.state_id = "1b2c3d4e";
    sd.caller = "operator";
    emit(s, "guard_rpc", "SetIssueStateDirect", "guard_set_direct", &sd.base);
    Orch__V1__NotifyRequest n = ORCH__V1__NOTIFY_REQUEST__INIT;
    n.text = "lease.force-released ORCH-114: alice released epoch 7 \xe2\x9a\xa0";
    n.chat_id = "-1001234567890";
    n.caller = "lease-service";
    n.kind = "lease.force-released";
    n.work_item = "ORCH-114";
    emit(s, "guard_rpc", "Notify", "guard_notify", &n.base);
    Orch__V1__ListAuditRequest l = ORCH__V1__LIST_AUDIT_REQUEST__INIT;
    l.limit = 20;
    l.operation = "AddComment";
    l.decision = "block";
    emit(s, "guard_rpc", "ListAudit", "guard_list_audit", &l.base);
}

static void launcher_seeds(void)
{
    const ProtobufCServiceDescriptor *s = &orch__v1__launcher_service__descriptor;
    Orch__V1__SpawnRequest sp = ORCH__V1__SPAWN_REQUEST__INIT;
    sp.role = "developer";
    sp.work_item = "ORCH-114";
    sp.prompt = "Implement the change described in ORCH-114.";
    sp.workdir = "/work/orch";
    sp.timeout_s = 1800;
    sp.stage = "development";
    emit(s, "launcher_rpc", "Spawn", "launcher_spawn", &sp.base);
    sp.workdir = "relative/path";
    emit(s, "launcher_rpc", "Spawn", "launcher_spawn_relative_workdir", &sp.base);
    Orch__V1__GetJobRequest g = ORCH__V1__GET_JOB_REQUEST__INIT;
    g.job_id = 12;
    emit(s, "launcher_rpc", "Get", "launcher_get", &g.base);
    g.job_id = (uint64_t)INT64_MAX + 1;
    emit(s, "launcher_rpc", "Get", "launcher_get_huge_id", &g.base);
    Orch__V1__WaitJobRequest w = ORCH__V1__WAIT_JOB_REQUEST__INIT;
    w.job_id = 12;
    w.wait_ms = 2000;
    emit(s, "launcher_rpc", "Wait", "launcher_wait", &w.base);
    Orch__V1__CancelJobRequest c = ORCH__V1__CANCEL_JOB_REQUEST__INIT;
    c.job_id = 12;
    c.reason = "superseded";
    emit(s, "launcher_rpc", "Cancel", "launcher_cancel", &c.base);
    Orch__V1__ListRunsRequest l = ORCH__V1__LIST_RUNS_REQUEST__INIT;
    l.role = "reviewer";
    l.work_item = "ORCH-114";
    l.limit = 10;
    emit(s, "launcher_rpc", "ListRuns", "launcher_list_runs", &l.base);
    Orch__V1__SavingsRequest sv = ORCH__V1__SAVINGS_REQUEST__INIT;
    sv.since_days = 30;
    emit(s, "launcher_rpc", "Savings", "launcher_savings", &sv.base);
    Orch__V1__HealthCheckRequest h = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    h.service = "launcher";
    emit(&orch__v1__health_service__descriptor, NULL, "Check", "health_check", &h.base);
}

static void text_seeds(void)
{
    write_text("verdict", "simple", "test_status: PASS\n");
    write_text("verdict", "mixed",
               "I ran the suite.\n\n- review_verdict: APPROVE\n* coverage_pct : 91.2\n"
               "Security_Verdict: CLEAN\nnot a verdict line\nkey_only:\n");
    write_text("verdict", "repeated", "test_status: FAIL\r\ntest_status: PASS\r\n");
    write_text("verdict", "utf8", "summary: \xc3\xa9t\xc3\xa9 ok\n9bad: x\n");
    write_text("launcher_output", "usage_json",
               "{\"type\":\"result\",\"result\":\"Done.\\nreview_verdict: APPROVE\\n\","
               "\"usage\":{\"input_tokens\":1200,\"output_tokens\":340},"
               "\"total_cost_usd\":0.0123,\"model\":\"sonnet\"}\n");
    write_text("launcher_output", "plain_lines",
               "working...\ntest_status: PASS\n  {\"not\": \"closed\"\ncoverage_pct: 80\n");
    write_text(
        "launcher_output", "nested_json",
        "{\"result\":{\"x\":1},\"usage\":\"none\",\"modelUsage\":{\"a\":{\"inputTokens\":5}}}"
        "\n{}\n[]\n");
    /* Webhooks: flags, signature, event, body (fuzz_webhook.c). */
    write_text("webhook", "gitea_approved",
               "\x02\nsha256=00\npull_request_review_approved\n"
               "{\"action\":\"reviewed\",\"repository\":{\"full_name\":\"orch/orch\"},"
               "\"pull_request\":{\"number\":42}}");
    write_text("webhook", "gitea_rejected",
               "\x02\n\npull_request_rejected\n"
               "{\"repository\":{\"full_name\":\"orch/orch\"},\"pull_request\":{\"number\":7}}");
    write_text("webhook", "gitea_other_event", "\x02\n\npush\n{\"ref\":\"refs/heads/main\"}");
    write_text("webhook", "gitea_bad_signature",
               "\x10\nsha256=DEADBEEF\npull_request_approved\n{\"pull_request\":{\"number\":1}}");
    write_text(
        "webhook", "plane_cancelled",
        "\x03\n\n\n{\"event\":\"issue\",\"action\":\"updated\",\"data\":{\"sequence_id\":114,"
        "\"state\":{\"name\":\"Cancelled\",\"group\":\"cancelled\"}}}");
    write_text("webhook", "plane_not_json", "\x03\n\n\n{\"event\": \"issue\", ");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUT_DIR\n");
        return 2;
    }
    out_dir = argv[1];
    lease_seeds();
    stage_seeds();
    guard_seeds();
    launcher_seeds();
    text_seeds();
    return failures ? 1 : 0;
}
