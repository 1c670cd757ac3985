/*
 * test_launcher_util.c - see test_launcher_util.h.
 */
#include "test_launcher_util.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/stage.pb-c.h"

void ln_tmpdir(char *out, size_t n)
{
    char tmpl[] = "/tmp/orch-launcher-test.XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    snprintf(out, n, "%s", tmpl);
}

void ln_start(th_svc *s, const char *db, const char *outdir, const char *const *extra)
{
    char cmd[1024], out[600];
    snprintf(cmd, sizeof cmd, "ORCH_AGENT_COMMAND=/bin/sh %s/tests/support/fake_agent.sh",
             ORCH_SOURCE_DIR);
    snprintf(out, sizeof out, "ORCH_LAUNCHER_OUTPUT_DIR=%s", outdir);
    const char *env[32] = { cmd, out, "ORCH_LAUNCHER_KILL_GRACE_MS=500",
                            "ORCH_LAUNCHER_POLL_MS=50" };
    size_t k = 4;
    for (size_t i = 0; extra && extra[i] && k < 31; i++)
        env[k++] = extra[i];
    env[k] = NULL;
    th_svc_start(s, "launcher", db, env, true);
}

static void job_from(ln_job *j, const Orch__V1__Job *m, const Orch__V1__AgentRun *r)
{
    if (m) {
        j->id = m->id;
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&orch__v1__job_status__descriptor, m->status);
        /* The name without its JOB_STATUS_ prefix, as orchctl prints it. */
        snprintf(j->status, sizeof j->status, "%s", v ? v->name + strlen("JOB_STATUS_") : "?");
        j->pid = m->pid;
        snprintf(j->finish_reason, sizeof j->finish_reason, "%s", m->finish_reason);
        snprintf(j->monitor_state, sizeof j->monitor_state, "%s", m->monitor_state);
        snprintf(j->stdout_path, sizeof j->stdout_path, "%s", m->stdout_path);
    }
    if (r) {
        j->have_run = true;
        j->usage_known = r->usage_known;
        j->cost_known = r->cost_known;
        j->input_tokens = r->input_tokens;
        j->output_tokens = r->output_tokens;
        j->cost_usd = r->cost_usd;
        j->exit_status = r->exit_status;
        size_t off = 0;
        for (size_t i = 0; i < r->n_verdicts && off < sizeof j->verdicts; i++)
            off += (size_t)snprintf(j->verdicts + off, sizeof j->verdicts - off, "%s=%s;",
                                    r->verdicts[i]->key, r->verdicts[i]->value);
    }
}

static ln_job call(const th_svc *s, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *rd, uint32_t timeout_ms)
{
    ln_job j;
    memset(&j, 0, sizeof j);
    orch_rpc_client *c;
    cr_assert_eq(orch_rpc_client_open(s->rpc_url, NULL, &c), ORCH_OK);
    orch_rpc_status st;
    ProtobufCMessage *m = NULL;
    orch_rpc_call_opts o = { .timeout_ms = timeout_ms };
    j.code = orch_rpc_invoke(c, method, req, rd, &o, &st, &m);
    snprintf(j.message, sizeof j.message, "%s", st.message);
    orch_rpc_client_close(c);
    if (j.code != ORCH_CODE_OK)
        return j;
    if (rd == &orch__v1__spawn_reply__descriptor) {
        job_from(&j, ((Orch__V1__SpawnReply *)m)->job, NULL);
    } else if (rd == &orch__v1__wait_job_reply__descriptor) {
        Orch__V1__WaitJobReply *w = (Orch__V1__WaitJobReply *)m;
        job_from(&j, w->job, w->run);
        j.finished = w->finished;
    } else if (rd == &orch__v1__cancel_job_reply__descriptor) {
        job_from(&j, ((Orch__V1__CancelJobReply *)m)->job, NULL);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return j;
}

ln_job ln_spawn(const th_svc *s, const char *role, const char *item, const char *prompt,
                const char *workdir, uint32_t timeout_s, const char *stage)
{
    Orch__V1__SpawnRequest req = ORCH__V1__SPAWN_REQUEST__INIT;
    req.role = (char *)role;
    req.work_item = (char *)item;
    req.prompt = (char *)prompt;
    req.workdir = (char *)workdir;
    req.timeout_s = timeout_s;
    req.stage = (char *)(stage ? stage : "");
    return call(s, LN_M("Spawn"), &req.base, &orch__v1__spawn_reply__descriptor, 5000);
}

ln_job ln_wait(const th_svc *s, uint64_t id, uint32_t wait_ms)
{
    Orch__V1__WaitJobRequest req = ORCH__V1__WAIT_JOB_REQUEST__INIT;
    req.job_id = id;
    req.wait_ms = wait_ms;
    return call(s, LN_M("Wait"), &req.base, &orch__v1__wait_job_reply__descriptor, wait_ms + 2000);
}

ln_job ln_cancel(const th_svc *s, uint64_t id)
{
    Orch__V1__CancelJobRequest req = ORCH__V1__CANCEL_JOB_REQUEST__INIT;
    req.job_id = id;
    req.reason = "test";
    return call(s, LN_M("Cancel"), &req.base, &orch__v1__cancel_job_reply__descriptor, 5000);
}

bool ln_proc_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

pid_t ln_read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld", &v) != 1)
        v = 0;
    fclose(f);
    return (pid_t)v;
}

/* ---- recording StageService ---------------------------------------------- */

static pthread_mutex_t stage_mu = PTHREAD_MUTEX_INITIALIZER;
static ln_stage_call stage_log[64];
static int stage_n, stage_defer;
static orch_rpc_server *stage_srv;

static orch_code advance(orch_rpc_call *c, const ProtobufCMessage *msg, void *arg)
{
    (void)arg;
    const Orch__V1__AdvanceStageRequest *r = (const Orch__V1__AdvanceStageRequest *)msg;
    pthread_mutex_lock(&stage_mu);
    int k = stage_n;
    if (stage_n < 64) {
        ln_stage_call *e = &stage_log[stage_n++];
        snprintf(e->work_item, sizeof e->work_item, "%s", r->work_item);
        snprintf(e->expected_from, sizeof e->expected_from, "%s", r->expected_from);
        snprintf(e->to, sizeof e->to, "%s", r->to);
        snprintf(e->actor, sizeof e->actor, "%s", r->actor);
        snprintf(e->evidence, sizeof e->evidence, "%s", r->evidence);
        e->nverdicts = (int)r->n_verdicts;
    }
    pthread_mutex_unlock(&stage_mu);
    Orch__V1__AdvanceStageReply rep = ORCH__V1__ADVANCE_STAGE_REPLY__INIT;
    rep.outcome = k < stage_defer ? ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_DEFERRED
                                  : ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ADVANCED;
    return orch_rpc_reply(c, &rep.base);
}

/* An imitation of stage-service: AdvanceStage only, the rest UNIMPLEMENTED. */
static const orch_rpc_method stage_methods[] = {
    { .name = "CreateTask", .handler = NULL, .roles = ORCH_ROLE_ANY },
    { .name = "GetTask", .handler = NULL, .roles = ORCH_ROLE_ANY },
    { .name = "AdvanceStage", .handler = advance, .roles = ORCH_ROLE_ANY },
    { .name = "Rollback", .handler = NULL, .roles = ORCH_ROLE_ANY },
    { .name = "ListQueue", .handler = NULL, .roles = ORCH_ROLE_ANY },
    { .name = "Pipeline", .handler = NULL, .roles = ORCH_ROLE_ANY },
};

void ln_stage_start(int defer_first, char *url, size_t n)
{
    stage_defer = defer_first;
    stage_n = 0;
    int port = th_free_port();
    char u[64];
    snprintf(u, sizeof u, "tcp://127.0.0.1:%d", port);
    orch_rpc_service svc = { .desc = &orch__v1__stage_service__descriptor,
                             .methods = stage_methods,
                             .nmethods = sizeof stage_methods / sizeof *stage_methods };
    orch_rpc_server_opts o = { .url = u,
                               .max_msg_bytes = 1 << 20,
                               .concurrency = 4,
                               .workers = 2,
                               .default_timeout_ms = 5000,
                               .dedup_entries = 64,
                               .dedup_ttl_ms = 60000 };
    cr_assert_eq(orch_rpc_server_start(&o, &svc, 1, &stage_srv), ORCH_OK);
    snprintf(url, n, "%s", u);
}

int ln_stage_calls(ln_stage_call *out, int max)
{
    pthread_mutex_lock(&stage_mu);
    int n = stage_n < max ? stage_n : max;
    memcpy(out, stage_log, (size_t)n * sizeof *out);
    pthread_mutex_unlock(&stage_mu);
    return n;
}

void ln_stage_stop(void)
{
    orch_rpc_server_free(stage_srv);
    stage_srv = NULL;
}
