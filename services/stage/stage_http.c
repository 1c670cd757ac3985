/*
 * stage_http.c - stage-service's HTTP routes (blocking handlers):
 *   GET  /queue                            tasks by stage with their lease block
 *   POST /transition-lease/release?work_item=ID   operator force release
 *                                          (X-Orch-Token: ORCH_STAGE_OPERATOR_TOKEN)
 *   POST /webhooks/gitea                   X-Gitea-Signature: hex HMAC-SHA256
 *   POST /webhooks/plane                   X-Plane-Signature: hex HMAC-SHA256
 * The webhooks' signature check and JSON reading are in stage_webhook.c.
 * docs/architecture/stage.md documents the JSON and the event mapping.
 */
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "orch/log.h"
#include "stage_svc.h"
#include "stage_webhook.h"

static void reply_json(orch_http_reply *rep, int status, json_t *o)
{
    rep->status = status;
    rep->content_type = "application/json";
    rep->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    rep->len = rep->body ? strlen(rep->body) : 0;
    json_decref(o);
}

static void reply_error(orch_http_reply *rep, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error(orch_http_reply *rep, int status, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_json(rep, status, json_pack("{s:s}", "error", msg));
}

static int http_status_of(orch_code code)
{
    switch (code) {
    case ORCH_CODE_OK: return 200;
    case ORCH_CODE_INVALID_ARGUMENT: return 400;
    case ORCH_CODE_NOT_FOUND: return 404;
    case ORCH_CODE_FAILED_PRECONDITION:
    case ORCH_CODE_ABORTED:
    case ORCH_CODE_ALREADY_EXISTS: return 409;
    case ORCH_CODE_UNAUTHENTICATED: return 401;
    case ORCH_CODE_DEADLINE_EXCEEDED: return 504;
    case ORCH_CODE_UNAVAILABLE: return 503;
    default: return 500;
    }
}

/* Constant-time comparison of a presented secret with the configured one. */
static bool secret_eq(const char *given, const char *want)
{
    size_t gl = strlen(given), wl = strlen(want);
    if (gl != wl || wl == 0)
        return false;
    return CRYPTO_memcmp(given, want, wl) == 0;
}

/* ---- GET /queue ------------------------------------------------------------- */

static json_t *lease_json(const Orch__V1__Lease *l, Orch__V1__Liveness lv)
{
    static const char *const names[] = { "unspecified", "alive", "dead", "unknown" };
    uint64_t now_ms = (uint64_t)orch_wall_ms();
    uint64_t age = now_ms > l->acquired_unix_ms ? (now_ms - l->acquired_unix_ms) / 1000 : 0;
    const Orch__V1__Owner *o = l->owner;
    return json_pack("{s:b, s:I, s:s, s:s, s:I, s:s, s:{s:s, s:s, s:i, s:I, s:s}}", "held", l->held,
                     "epoch", (json_int_t)l->epoch, "actor", l->actor, "transition", l->transition,
                     "age_s", (json_int_t)age, "liveness", (unsigned)lv < 4 ? names[lv] : "unknown",
                     "holder", "host_id", o ? o->host_id : "", "boot_id", o ? o->boot_id : "",
                     "pid", o ? (int)o->pid : 0, "start_ticks",
                     (json_int_t)(o ? o->start_ticks : 0), "instance_id", o ? o->instance_id : "");
}

static void get_queue(void *arg, const orch_http_request *req, orch_http_reply *rep)
{
    stage_svc *ss = arg;
    char stage[32] = "", repo[STAGE_MAX_FIELD + 1] = "";
    stage_id st = ST_NONE;
    if (orch_http_query_param(req, "stage", stage, sizeof stage) &&
        (st = stage_parse(stage)) == ST_NONE) {
        reply_error(rep, 400, "unknown stage \"%s\"", stage);
        return;
    }
    (void)orch_http_query_param(req, "repo", repo, sizeof repo);
    uint64_t dl = orch_mono_ms() + 15000;
    orch_db_conn *c = NULL;
    stage_task *ts = NULL;
    int n = 0;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_list(c, dl, st, repo, 1000, &ts, &n);
    orch_db_release(c);
    if (err) {
        reply_error(rep, 503, "listing tasks: %s", orch_strerror(err));
        return;
    }
    stage_queue q;
    orch_code code = stage_queue_leases(ss, ts, n, dl, &q);
    json_t *stages = json_object();
    for (int s = 0; s < ST_COUNT; s++)
        json_object_set_new(stages, stage_name((stage_id)s), json_array());
    for (int i = 0; i < n; i++) {
        const stage_task *t = &ts[i];
        json_t *e =
            json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "work_item", t->work_item, "repo", t->repo,
                      "title", t->title, "version", (json_int_t)t->version, "pr_number",
                      (json_int_t)t->pr_number, "updated_unix_ms", (json_int_t)t->updated_ms);
        json_object_set_new(e, "transition_lease",
                            !code && q.lease[i] ? lease_json(q.lease[i], q.liveness[i])
                                                : json_null());
        json_array_append_new(json_object_get(stages, stage_name(t->stage)), e);
    }
    json_t *o = json_pack("{s:I, s:i, s:o, s:b}", "generated_unix_ms", (json_int_t)orch_wall_ms(),
                          "count", n, "stages", stages, "lease_enabled", ss->scope.enabled);
    if (code)
        json_object_set_new(o, "lease_error", json_string(q.why));
    stage_queue_free(&q);
    free(ts);
    reply_json(rep, 200, o);
}

/* ---- POST /transition-lease/release ------------------------------------------ */

/* The epoch of the live grant of `item`, read from lease-service; 0 with
 * the error answered on `rep`. */
static uint64_t live_epoch(stage_svc *ss, const char *item, orch_http_reply *rep)
{
    Orch__V1__GetLeaseRequest rq = ORCH__V1__GET_LEASE_REQUEST__INIT;
    rq.work_item = (char *)item;
    orch_rpc_call_opts o = { .timeout_ms = ss->lease_timeout_ms };
    orch_rpc_status st;
    Orch__V1__Lease *l = NULL;
    orch_code code =
        orch_rpc_invoke(ss->lease, "orch.v1.LeaseService/Get", &rq.base,
                        &orch__v1__lease__descriptor, &o, &st, (ProtobufCMessage **)&l);
    if (code) {
        reply_error(rep, http_status_of(code), "%s: %s", orch_code_name(code), st.message);
        return 0;
    }
    uint64_t epoch = l->held ? l->epoch : 0;
    if (!l->held)
        reply_error(rep, 409, "%s is not held (epoch %" PRIu64 ", %s)", item, l->epoch,
                    l->release_reason);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    return epoch;
}

/* Releases one named grant: ?epoch=N, or else the live grant read first, so
 * that a resend never releases a newer grant. */
static void post_release(void *arg, const orch_http_request *req, orch_http_reply *rep)
{
    stage_svc *ss = arg;
    const char *tok = orch_http_header(req, "X-Orch-Token");
    if (!tok || !secret_eq(tok, ss->operator_token)) {
        orch_error("POST /transition-lease/release refused: %s operator token",
                   tok ? "wrong" : "no");
        reply_error(rep, 401, "a valid X-Orch-Token is required");
        return;
    }
    char item[STAGE_MAX_FIELD + 1], reason[300] = "operator release over HTTP", ep[24] = "";
    if (!orch_http_query_param(req, "work_item", item, sizeof item) || !item[0]) {
        reply_error(rep, 400, "work_item is required (?work_item=ID)");
        return;
    }
    (void)orch_http_query_param(req, "reason", reason, sizeof reason);
    uint64_t epoch = 0;
    if (orch_http_query_param(req, "epoch", ep, sizeof ep) && ep[0]) {
        char *end = NULL;
        epoch = strtoull(ep, &end, 10);
        if (*end || epoch == 0 || ep[0] == '-') {
            reply_error(rep, 400, "epoch must be a positive integer, got \"%s\"", ep);
            return;
        }
    } else if ((epoch = live_epoch(ss, item, rep)) == 0) {
        return;
    }
    Orch__V1__ForceReleaseRequest rq = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    rq.work_item = item;
    rq.reason = reason;
    rq.operator_ = "stage-service /transition-lease/release";
    rq.epoch = epoch;
    orch_rpc_call_opts o = { .timeout_ms = ss->lease_timeout_ms };
    orch_rpc_status st;
    Orch__V1__ForceReleaseReply *r = NULL;
    orch_code code = orch_rpc_invoke(ss->lease, "orch.v1.LeaseService/ForceRelease", &rq.base,
                                     &orch__v1__force_release_reply__descriptor, &o, &st,
                                     (ProtobufCMessage **)&r);
    if (code) {
        reply_error(rep, http_status_of(code), "%s: %s", orch_code_name(code), st.message);
        return;
    }
    reply_json(rep, 200,
               json_pack("{s:s, s:I, s:b}", "work_item", item, "released_epoch",
                         (json_int_t)r->released_epoch, "already_released", r->already_released));
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* ---- webhooks ------------------------------------------------------------- */

/* Runs the engine for a webhook event and answers with its result. */
static void drive(stage_svc *ss, orch_http_reply *rep, const char *work_item, const char *from,
                  const char *to, const char *reason, const orch_verdicts *ev)
{
    advance_req ar = { work_item, from, to, "webhook", reason, ev };
    advance_res res;
    char msg[700];
    uint64_t t0 = orch_mono_ns();
    orch_code code = stage_advance(ss, &ar, orch_mono_ms() + 60000, &res, msg, sizeof msg);
    stage_count_transition(ss, from, to, res.result);
    orch_histogram_observe_ns(ss->m_advance_latency, 0, orch_mono_ns() - t0);
    if (code) {
        reply_error(rep, http_status_of(code), "%s: %s", orch_code_name(code), msg);
    } else {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "work_item", work_item, "result",
                              stage_transition_results[res.result], "stage",
                              stage_name(res.task.stage), "lease_epoch", (json_int_t)res.epoch);
        if (res.holder)
            json_object_set_new(o, "holder", json_string(res.holder->actor));
        reply_json(rep, 200, o);
    }
    advance_res_free(&res);
}

/* Answers the webhook outcomes that need no task: 401, 400, 200 ignored.
 * Returns false when the event is to be acted on. */
static bool answer_early(const stage_hook *h, const char *path, const char *header,
                         orch_http_reply *rep)
{
    switch (h->action) {
    case STAGE_HOOK_UNSIGNED:
        orch_error("POST %s refused: bad or missing signature", path);
        reply_error(rep, 401, "bad or missing %s", header);
        return true;
    case STAGE_HOOK_BAD: reply_error(rep, 400, "%s", h->error); return true;
    case STAGE_HOOK_IGNORED:
        reply_json(rep, 200, json_pack("{s:s}", "ignored", h->ignored));
        return true;
    default: return false;
    }
}

/* Gitea: a review approval of the item's pull request advances it from
 * review to testing (with review_verdict APPROVE); a rejection records
 * REQUEST_CHANGES and rolls it back to development. */
static void post_gitea(void *arg, const orch_http_request *req, orch_http_reply *rep)
{
    stage_svc *ss = arg;
    /* Gitea sends the event as X-Gitea-Event ("pull_request_approved") and
     * its finer type as X-Gitea-Event-Type ("pull_request_review_approved"). */
    const char *event = orch_http_header(req, "X-Gitea-Event-Type");
    if (!event)
        event = orch_http_header(req, "X-Gitea-Event");
    stage_hook h;
    stage_webhook_parse_gitea(orch_http_header(req, "X-Gitea-Signature"), event, req->body,
                              req->body_len, ss->gitea_secret, &h);
    if (answer_early(&h, "/webhooks/gitea", "X-Gitea-Signature", rep)) {
        stage_webhook_free(&h);
        return;
    }
    stage_task t;
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_find_by_pr(c, dl, h.repo, h.pr, &t);
    orch_db_release(c);
    if (err) {
        reply_error(rep, err == ORCH_ENOTFOUND ? 404 : 503, "pull request %s#%lld: %s", h.repo,
                    (long long)h.pr, err == ORCH_ENOTFOUND ? "no task" : orch_strerror(err));
        stage_webhook_free(&h);
        return;
    }
    bool approved = h.action == STAGE_HOOK_APPROVE;
    stage_webhook_free(&h);
    orch_verdicts ev;
    orch_verdicts_init(&ev);
    (void)orch_verdicts_set(&ev, "review_verdict", approved ? "APPROVE" : "REQUEST_CHANGES");
    if (approved)
        drive(ss, rep, t.work_item, "review", "testing", "", &ev);
    else
        drive(ss, rep, t.work_item, "review", "development", "review rejected in Gitea", &ev);
}

/* Plane: an issue of the project moved to a state of the "cancelled" group
 * cancels the work item <PROJECT_KEY>-<sequence_id>. */
static void post_plane(void *arg, const orch_http_request *req, orch_http_reply *rep)
{
    stage_svc *ss = arg;
    stage_hook h;
    stage_webhook_parse_plane(orch_http_header(req, "X-Plane-Signature"), req->body, req->body_len,
                              ss->plane_secret, &h);
    if (answer_early(&h, "/webhooks/plane", "X-Plane-Signature", rep)) {
        stage_webhook_free(&h);
        return;
    }
    char item[STAGE_MAX_FIELD + 1];
    snprintf(item, sizeof item, "%s-%lld", ss->plane_project_key, (long long)h.seq);
    stage_webhook_free(&h);
    stage_task t;
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_get(c, dl, item, &t);
    orch_db_release(c);
    if (err) {
        reply_error(rep, err == ORCH_ENOTFOUND ? 404 : 503, "%s: %s", item,
                    err == ORCH_ENOTFOUND ? "no task" : orch_strerror(err));
        return;
    }
    drive(ss, rep, t.work_item, stage_name(t.stage), "cancelled", "cancelled in Plane", NULL);
}

orch_err stage_http_register(orch_service *svc, stage_svc *ss)
{
    const orch_http_handler hs[] = {
        { "GET", "/queue", get_queue, ss },
        { "POST", "/transition-lease/release", post_release, ss },
        { "POST", "/webhooks/gitea", post_gitea, ss },
        { "POST", "/webhooks/plane", post_plane, ss },
    };
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        orch_err err = orch_service_add_http(svc, &hs[i]);
        if (err)
            return err;
    }
    return ORCH_OK;
}
