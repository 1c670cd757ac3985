/*
 * stage_world.c - see stage_world.h.
 */
#include "stage_world.h"

#include "orch/ident.h"
#include "orch/lease_client.h"
#include "orch/v1/lease.pb-c.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_KEYS 8192

uint32_t sw_call_timeout_ms = 30000;

typedef struct pr_state {
    uint64_t pr;
    bool merged, unmergeable;
    int merge_calls, merges, checks;
} pr_state;

typedef struct item_state {
    char item[128];
    uint64_t max_epoch;
    int image_calls, image_starts, deploy_calls, deploy_starts, refused;
} item_state;

static struct {
    pthread_mutex_t mu;
    nng_http_server *srv;
    pr_state prs[MAX_KEYS];
    int nprs;
    item_state items[MAX_KEYS];
    int nitems;
    char keys[MAX_KEYS][200]; /* idempotency keys seen */
    int nkeys;
    int merge_delay_ms, hook_delay_ms;
    bool fenced, gitea_down;
} F = { .mu = PTHREAD_MUTEX_INITIALIZER };

static pr_state *pr_get(uint64_t pr)
{
    for (int i = 0; i < F.nprs; i++)
        if (F.prs[i].pr == pr)
            return &F.prs[i];
    if (F.nprs == MAX_KEYS)
        return NULL;
    pr_state *p = &F.prs[F.nprs++];
    memset(p, 0, sizeof *p);
    p->pr = pr;
    return p;
}

static item_state *item_get(const char *item)
{
    for (int i = 0; i < F.nitems; i++)
        if (strcmp(F.items[i].item, item) == 0)
            return &F.items[i];
    if (F.nitems == MAX_KEYS)
        return NULL;
    item_state *s = &F.items[F.nitems++];
    memset(s, 0, sizeof *s);
    snprintf(s->item, sizeof s->item, "%s", item);
    return s;
}

static void respond(nng_aio *aio, int status, const char *body)
{
    nng_http_res *res;
    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_http_res_set_status(res, (uint16_t)status);
    nng_http_res_set_header(res, "Content-Type", "application/json");
    if (body)
        nng_http_res_copy_data(res, body, strlen(body));
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static void gitea_cb(nng_aio *aio)
{
    nng_http_req *req = nng_aio_get_input(aio, 0);
    const char *uri = nng_http_req_get_uri(req);
    const char *method = nng_http_req_get_method(req);
    unsigned long long pr = 0;
    const char *p = strstr(uri, "/pulls/");
    if (!p || sscanf(p, "/pulls/%llu/merge", &pr) != 1 || !strstr(uri, "/merge")) {
        respond(aio, 404, "{\"message\":\"not found\"}");
        return;
    }
    const char *auth = nng_http_req_get_header(req, "Authorization");
    if (!auth || strcmp(auth, "token gitea-test-token") != 0) {
        respond(aio, 401, "{\"message\":\"token is required\"}");
        return;
    }
    pthread_mutex_lock(&F.mu);
    if (F.gitea_down) {
        pthread_mutex_unlock(&F.mu);
        respond(aio, 503, "{\"message\":\"service unavailable\"}");
        return;
    }
    pr_state *s = pr_get(pr);
    int delay = F.merge_delay_ms;
    if (strcmp(method, "GET") == 0) {
        s->checks++;
        bool merged = s->merged;
        pthread_mutex_unlock(&F.mu);
        respond(aio, merged ? 204 : 404, merged ? NULL : "{\"message\":\"not merged\"}");
        return;
    }
    s->merge_calls++;
    int status;
    if (s->merged || s->unmergeable) {
        status = 405;
    } else {
        s->merged = true;
        s->merges++;
        status = 200;
    }
    pthread_mutex_unlock(&F.mu);
    if (delay > 0 && status == 200)
        usleep((useconds_t)delay * 1000u);
    respond(aio, status,
            status == 200 ? "{\"merged\":true}" : "{\"message\":\"Please try again later\"}");
}

static void hook_cb(nng_aio *aio)
{
    nng_http_req *req = nng_aio_get_input(aio, 0);
    bool image = strcmp(nng_http_req_get_uri(req), "/hooks/image") == 0;
    const char *key = nng_http_req_get_header(req, "Idempotency-Key");
    const char *ep = nng_http_req_get_header(req, "X-Orch-Lease-Epoch");
    void *body;
    size_t len;
    nng_http_req_get_data(req, &body, &len);
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *item = json_string_value(json_object_get(j, "work_item"));
    if (!key || !ep || !item) {
        json_decref(j);
        respond(aio, 400, "{\"error\":\"Idempotency-Key, X-Orch-Lease-Epoch, work_item\"}");
        return;
    }
    uint64_t epoch = strtoull(ep, NULL, 10);
    pthread_mutex_lock(&F.mu);
    item_state *s = item_get(item);
    if (image)
        s->image_calls++;
    else
        s->deploy_calls++;
    int status = 200;
    if (F.fenced && epoch < s->max_epoch) {
        s->refused++;
        status = 409;
    } else {
        if (epoch > s->max_epoch)
            s->max_epoch = epoch;
        bool seen = false;
        for (int i = 0; i < F.nkeys && !seen; i++)
            seen = strcmp(F.keys[i], key) == 0;
        if (!seen && json_is_true(json_object_get(j, "check_only"))) {
            status = 404; /* never started: and not now either */
        } else if (!seen && F.nkeys < MAX_KEYS) {
            snprintf(F.keys[F.nkeys++], sizeof F.keys[0], "%s", key);
            if (image)
                s->image_starts++;
            else
                s->deploy_starts++;
        }
    }
    int delay = F.hook_delay_ms;
    pthread_mutex_unlock(&F.mu);
    json_decref(j);
    if (delay > 0 && status == 200)
        usleep((useconds_t)delay * 1000u);
    respond(aio, status,
            status == 404   ? "{\"error\":\"no such idempotency key\"}"
            : status != 200 ? "{\"error\":\"stale epoch\"}"
            : image         ? "{\"digest\":\"sha256:"
                              "1111111111111111111111111111111111111111111111111111111111111111\"}"
                            : "{\"started\":true}");
}

void sw_fake_start(char *base, size_t n)
{
    pthread_mutex_lock(&F.mu);
    F.nprs = F.nitems = F.nkeys = 0;
    F.merge_delay_ms = F.hook_delay_ms = 0;
    F.fenced = true;
    F.gitea_down = false;
    pthread_mutex_unlock(&F.mu);
    int port = th_free_port();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    nng_url *u;
    cr_assert_eq(nng_url_parse(&u, url), 0);
    cr_assert_eq(nng_http_server_hold(&F.srv, u), 0);
    nng_url_free(u);
    nng_http_handler *h;
    cr_assert_eq(nng_http_handler_alloc(&h, "/api/v1/repos", gitea_cb), 0);
    cr_assert_eq(nng_http_handler_set_tree(h), 0);
    cr_assert_eq(nng_http_handler_set_method(h, NULL), 0);
    cr_assert_eq(nng_http_handler_collect_body(h, true, 65536), 0);
    cr_assert_eq(nng_http_server_add_handler(F.srv, h), 0);
    const char *hooks[] = { "/hooks/image", "/hooks/deploy" };
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(nng_http_handler_alloc(&h, hooks[i], hook_cb), 0);
        cr_assert_eq(nng_http_handler_set_method(h, "POST"), 0);
        cr_assert_eq(nng_http_handler_collect_body(h, true, 65536), 0);
        cr_assert_eq(nng_http_server_add_handler(F.srv, h), 0);
    }
    cr_assert_eq(nng_http_server_start(F.srv), 0);
    snprintf(base, n, "%s", url);
}

void sw_fake_stop(void)
{
    if (F.srv) {
        nng_http_server_stop(F.srv);
        nng_http_server_release(F.srv);
        F.srv = NULL;
    }
}

sw_counts sw_counts_for_pr(uint64_t pr)
{
    sw_counts c = { 0 };
    pthread_mutex_lock(&F.mu);
    for (int i = 0; i < F.nprs; i++) {
        if (F.prs[i].pr == pr) {
            c.merge_calls = F.prs[i].merge_calls;
            c.merges = F.prs[i].merges;
            c.merge_checks = F.prs[i].checks;
        }
    }
    pthread_mutex_unlock(&F.mu);
    return c;
}

sw_counts sw_counts_for_item(const char *item)
{
    sw_counts c = { 0 };
    pthread_mutex_lock(&F.mu);
    for (int i = 0; i < F.nitems; i++) {
        if (strcmp(F.items[i].item, item) == 0) {
            c.image_calls = F.items[i].image_calls;
            c.image_starts = F.items[i].image_starts;
            c.deploy_calls = F.items[i].deploy_calls;
            c.deploy_starts = F.items[i].deploy_starts;
            c.hook_refused_stale = F.items[i].refused;
        }
    }
    pthread_mutex_unlock(&F.mu);
    return c;
}

void sw_set_unmergeable(uint64_t pr)
{
    pthread_mutex_lock(&F.mu);
    pr_get(pr)->unmergeable = true;
    pthread_mutex_unlock(&F.mu);
}

void sw_set_merge_delay_ms(int ms)
{
    pthread_mutex_lock(&F.mu);
    F.merge_delay_ms = ms;
    pthread_mutex_unlock(&F.mu);
}

void sw_set_hook_delay_ms(int ms)
{
    pthread_mutex_lock(&F.mu);
    F.hook_delay_ms = ms;
    pthread_mutex_unlock(&F.mu);
}

void sw_set_gitea_down(bool down)
{
    pthread_mutex_lock(&F.mu);
    F.gitea_down = down;
    pthread_mutex_unlock(&F.mu);
}

void sw_set_fenced(bool on)
{
    pthread_mutex_lock(&F.mu);
    F.fenced = on;
    pthread_mutex_unlock(&F.mu);
}

/* ---- services ---------------------------------------------------------- */

void sw_stage_start(sw_world *w, th_svc *s, const char *const *env)
{
    char lease_url[96], gitea[200], image[200], deploy[200];
    snprintf(lease_url, sizeof lease_url, "ORCH_LEASE_RPC_URL=%s", w->lease.rpc_url);
    snprintf(gitea, sizeof gitea, "ORCH_GITEA_URL=%s", w->fake);
    snprintf(image, sizeof image, "ORCH_IMAGE_HOOK_URL=%s/hooks/image", w->fake);
    snprintf(deploy, sizeof deploy, "ORCH_DEPLOY_HOOK_URL=%s/hooks/deploy", w->fake);
    const char *base[] = { lease_url,
                           gitea,
                           image,
                           deploy,
                           "ORCH_GITEA_TOKEN=gitea-test-token",
                           "ORCH_TRANSITION_LEASE_REPOS=org/app",
                           "ORCH_EFFECT_TIMEOUT_MS=5000",
                           "ORCH_RECONCILER_INTERVAL_MS=0",
                           "ORCH_STAGE_OPERATOR_TOKEN=op-secret",
                           "ORCH_GITEA_WEBHOOK_SECRET=gitea-hook-secret",
                           "ORCH_PLANE_WEBHOOK_SECRET=plane-hook-secret",
                           "ORCH_LOG_LEVEL=info" };
    const char *all[64];
    size_t n = 0;
    /* An extra ORCH_LEASE_RPC_URL (a proxy, say) replaces the lease's own. */
    bool own_lease = true;
    for (size_t i = 0; env && env[i]; i++)
        own_lease = own_lease && strncmp(env[i], "ORCH_LEASE_RPC_URL=", 19) != 0;
    for (size_t i = own_lease ? 0 : 1; i < sizeof base / sizeof base[0]; i++)
        all[n++] = base[i];
    for (size_t i = 0; env && env[i] && n < 63; i++)
        all[n++] = env[i];
    all[n] = NULL;
    th_svc_start(s, "stage", w->db, all, true);
}

void sw_up(sw_world *w, const char *const *stage_env)
{
    memset(w, 0, sizeof *w);
    th_db_fresh(w->db, sizeof w->db);
    sw_fake_start(w->fake, sizeof w->fake);
    const char *lenv[] = { "ORCH_TRANSITION_LEASE_REPOS=org/app", "ORCH_LOG_LEVEL=info", NULL };
    th_svc_start(&w->lease, "lease", w->db, lenv, true);
    sw_stage_start(w, &w->stage, stage_env);
    cr_assert_eq(orch_rpc_client_open(w->stage.rpc_url, NULL, &w->client), ORCH_OK);
    cr_assert_eq(orch_rpc_client_open(w->lease.rpc_url, NULL, &w->lease_client), ORCH_OK);
}

void sw_down(sw_world *w)
{
    orch_rpc_client_close(w->client);
    orch_rpc_client_close(w->lease_client);
    w->client = w->lease_client = NULL;
    if (w->stage.pid > 0)
        th_svc_stop(&w->stage, SIGTERM, 10000);
    if (w->lease.pid > 0)
        th_svc_stop(&w->lease, SIGTERM, 10000);
    sw_fake_stop();
}

/* ---- calls --------------------------------------------------------------- */

orch_code sw_create(orch_rpc_client *c, const char *item, const char *repo, uint64_t pr)
{
    Orch__V1__CreateTaskRequest rq = ORCH__V1__CREATE_TASK_REQUEST__INIT;
    rq.work_item = (char *)item;
    rq.repo = (char *)repo;
    rq.title = "a test item";
    rq.pr_number = pr;
    orch_rpc_call_opts o = { .timeout_ms = 10000 };
    orch_rpc_status st;
    ProtobufCMessage *r = NULL;
    orch_code code = orch_rpc_invoke(c, "orch.v1.StageService/CreateTask", &rq.base,
                                     &orch__v1__create_task_reply__descriptor, &o, &st, &r);
    if (r)
        protobuf_c_message_free_unpacked(r, NULL);
    return code;
}

static void fill(sw_adv *a, const Orch__V1__Task *t)
{
    if (t)
        snprintf(a->stage, sizeof a->stage, "%s", t->stage);
}

sw_adv sw_advance(orch_rpc_client *c, const char *item, const char *from, const char *to,
                  const char *actor, const char *evidence)
{
    sw_adv a;
    memset(&a, 0, sizeof a);
    Orch__V1__AdvanceStageRequest rq = ORCH__V1__ADVANCE_STAGE_REQUEST__INIT;
    rq.work_item = (char *)item;
    rq.expected_from = (char *)from;
    rq.to = (char *)to;
    rq.actor = (char *)actor;
    rq.evidence = (char *)(evidence ? evidence : "");
    orch_rpc_call_opts o = { .timeout_ms = sw_call_timeout_ms };
    orch_rpc_status st;
    Orch__V1__AdvanceStageReply *r = NULL;
    a.code = orch_rpc_invoke(c, "orch.v1.StageService/AdvanceStage", &rq.base,
                             &orch__v1__advance_stage_reply__descriptor, &o, &st,
                             (ProtobufCMessage **)&r);
    snprintf(a.message, sizeof a.message, "%s", st.message);
    if (r) {
        a.outcome = r->outcome;
        a.epoch = r->lease_epoch;
        fill(&a, r->task);
        if (r->n_gate_failures)
            snprintf(a.first_failure, sizeof a.first_failure, "%s", r->gate_failures[0]);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    return a;
}

sw_adv sw_rollback(orch_rpc_client *c, const char *item, const char *from, const char *reason)
{
    sw_adv a;
    memset(&a, 0, sizeof a);
    Orch__V1__RollbackRequest rq = ORCH__V1__ROLLBACK_REQUEST__INIT;
    rq.work_item = (char *)item;
    rq.expected_from = (char *)from;
    rq.reason = (char *)reason;
    rq.actor = "reaper";
    orch_rpc_call_opts o = { .timeout_ms = 30000 };
    orch_rpc_status st;
    Orch__V1__RollbackReply *r = NULL;
    a.code =
        orch_rpc_invoke(c, "orch.v1.StageService/Rollback", &rq.base,
                        &orch__v1__rollback_reply__descriptor, &o, &st, (ProtobufCMessage **)&r);
    snprintf(a.message, sizeof a.message, "%s", st.message);
    if (r) {
        a.outcome = r->deferred ? ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_DEFERRED
                                : ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ROLLED_BACK;
        a.epoch = r->lease_epoch;
        fill(&a, r->task);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    return a;
}

void sw_stage_of(const sw_world *w, const char *item, char *out, size_t n)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT stage FROM tasks WHERE work_item = '%s'", item);
    char *v = th_sql(w->db, sql);
    snprintf(out, n, "%s", v ? v : "");
    free(v);
}

static const struct {
    const char *from, *to, *evidence;
} walk[] = {
    { "backlog", "analysis", "" },
    { "analysis", "architecture", "analysis_status: DONE" },
    { "architecture", "development", "architecture_status: DONE" },
    { "development", "review", "dev_status: DONE" },
    { "review", "testing", "review_verdict: APPROVE" },
    { "testing", "staging", "test_status: PASS\nsecurity_status: PASS\ncoverage_pct: 80" },
    { "staging", "deploy",
      "staging_status: SUCCESS\nimage_digest: "
      "sha256:1111111111111111111111111111111111111111111111111111111111111111" },
    { "deploy", "done", "deploy_status: SUCCESS" },
};

void sw_walk_to(sw_world *w, const char *item, const char *stage)
{
    char now[32];
    sw_stage_of(w, item, now, sizeof now);
    for (size_t i = 0; i < sizeof walk / sizeof walk[0] && strcmp(now, stage) != 0; i++) {
        if (strcmp(walk[i].from, now) != 0)
            continue;
        sw_adv a =
            sw_advance(w->client, item, walk[i].from, walk[i].to, "operator", walk[i].evidence);
        cr_assert_eq(a.code, ORCH_CODE_OK, "walk %s %s->%s: %s", item, walk[i].from, walk[i].to,
                     a.message);
        cr_assert_eq(a.outcome, ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ADVANCED,
                     "walk %s %s->%s: outcome %d (%s)", item, walk[i].from, walk[i].to, a.outcome,
                     a.first_failure);
        snprintf(now, sizeof now, "%s", walk[i].to);
    }
    cr_assert_str_eq(now, stage, "could not walk %s to %s", item, stage);
}

long long sw_sql_num(const sw_world *w, const char *sql)
{
    char *v = th_sql(w->db, sql);
    long long n = v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

uint64_t sw_hold_lease(sw_world *w, const char *item, const char *actor)
{
    static orch_ident me;
    cr_assert_eq(orch_ident_init(NULL, &me), ORCH_OK);
    Orch__V1__Owner ow = ORCH__V1__OWNER__INIT;
    ow.host_id = me.host_id;
    ow.boot_id = me.boot_id;
    ow.pid = (int32_t)me.pid;
    ow.start_ticks = me.start_ticks;
    ow.instance_id = me.instance_id;
    Orch__V1__AcquireRequest rq = ORCH__V1__ACQUIRE_REQUEST__INIT;
    rq.work_item = (char *)item;
    rq.repo = "org/app";
    rq.transition = "review->testing";
    rq.actor = (char *)actor;
    rq.owner = &ow;
    orch_rpc_call_opts o = { .timeout_ms = 10000 };
    orch_rpc_status st;
    Orch__V1__AcquireReply *r = NULL;
    orch_code code =
        orch_rpc_invoke(w->lease_client, orch_lease_method_acquire, &rq.base,
                        &orch__v1__acquire_reply__descriptor, &o, &st, (ProtobufCMessage **)&r);
    cr_assert_eq(code, ORCH_CODE_OK, "Acquire: %s", st.message);
    cr_assert_eq(r->outcome, ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_GRANTED);
    cr_assert(!r->inert, "the lease must apply to org/app");
    uint64_t epoch = r->epoch;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return epoch;
}

void sw_free_lease(sw_world *w, const char *item, uint64_t epoch)
{
    Orch__V1__ReleaseRequest rq = ORCH__V1__RELEASE_REQUEST__INIT;
    rq.work_item = (char *)item;
    rq.epoch = epoch;
    orch_rpc_call_opts o = { .timeout_ms = 5000 };
    orch_rpc_status st;
    cr_assert_eq(
        orch_rpc_invoke(w->lease_client, orch_lease_method_release, &rq.base, NULL, &o, &st, NULL),
        ORCH_CODE_OK, "Release: %s", st.message);
}
