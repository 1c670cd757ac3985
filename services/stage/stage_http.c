/*
 * stage_http.c - stage-service's HTTP routes (blocking handlers):
 *   GET  /queue                            tasks by stage with their lease block
 *   POST /transition-lease/release?work_item=ID   operator force release
 *                                          (X-Orch-Token: ORCH_STAGE_OPERATOR_TOKEN)
 *   POST /webhooks/gitea                   X-Gitea-Signature: hex HMAC-SHA256
 *   POST /webhooks/plane                   X-Plane-Signature: hex HMAC-SHA256
 * The webhooks' signature check and JSON reading are in stage_webhook.c;
 * every event acted on is recorded in the inbox first (stage_inbox.h).
 * docs/architecture/stage.md documents the JSON and the event mapping.
 */
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "orch/log.h"
#include "stage_http.h"
#include "stage_http_json.h"
#include "stage_inbox.h"
#include "stage_queue.h"
#include "stage_webhook.h"

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
    stage_id st = STAGE_NONE;
    if (orch_http_query_param(req, "stage", stage, sizeof stage) &&
        (st = stage_parse(stage)) == STAGE_NONE) {
        stage_reply_error(rep, 400, "unknown stage \"%s\"", stage);
        return;
    }
    (void)orch_http_query_param(req, "repo", repo, sizeof repo);
    uint64_t dl = orch_mono_ms() + 15000;
    orch_db_conn *c = NULL;
    stage_task *ts = NULL;
    int n = 0;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_list(c, dl, &(stage_list_filter){ st, repo, 1000 }, &ts, &n);
    orch_db_release(c);
    if (err) {
        stage_reply_error(rep, 503, "listing tasks: %s", orch_strerror(err));
        return;
    }
    stage_queue q;
    orch_code code = stage_queue_leases(ss, ts, n, dl, &q);
    json_t *stages = json_object();
    for (int s = 0; s < STAGE_COUNT; s++)
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
    stage_reply_json(rep, 200, o);
}

/* ---- POST /transition-lease/release ------------------------------------------ */

/* The epoch of the live grant of `item`, read from lease-service; 0 with
 * the error answered on `rep`. */
static uint64_t live_epoch(stage_svc *ss, const char *item, orch_http_reply *rep)
{
    orch_rpc_call_opts o = { .timeout_ms = ss->lease_timeout_ms };
    orch_rpc_status st;
    Orch__V1__Lease *l = NULL;
    if (orch_lease_get(ss->lease, &o, item, &st, &l) != ORCH_OK) {
        stage_reply_error(rep, http_status_of(st.code), "%s: %s", orch_code_name(st.code),
                          st.message);
        return 0;
    }
    uint64_t epoch = l->held ? l->epoch : 0;
    if (!l->held)
        stage_reply_error(rep, 409, "%s is not held (epoch %" PRIu64 ", %s)", item, l->epoch,
                          l->release_reason);
    orch_lease_free(l);
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
        stage_reply_error(rep, 401, "a valid X-Orch-Token is required");
        return;
    }
    char item[STAGE_MAX_FIELD + 1], reason[300] = "operator release over HTTP", ep[24] = "";
    if (!orch_http_query_param(req, "work_item", item, sizeof item) || !item[0]) {
        stage_reply_error(rep, 400, "work_item is required (?work_item=ID)");
        return;
    }
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, item); /* the HTTP server clears it */
    (void)orch_http_query_param(req, "reason", reason, sizeof reason);
    uint64_t epoch = 0;
    if (orch_http_query_param(req, "epoch", ep, sizeof ep) && ep[0]) {
        char *end = NULL;
        epoch = strtoull(ep, &end, 10);
        if (*end || epoch == 0 || ep[0] == '-') {
            stage_reply_error(rep, 400, "epoch must be a positive integer, got \"%s\"", ep);
            return;
        }
    } else if ((epoch = live_epoch(ss, item, rep)) == 0) {
        return;
    }
    orch_log_ctx_set_epoch(epoch);
    orch_lease_force_release_req rq = { item, reason, "stage-service /transition-lease/release",
                                        epoch };
    orch_rpc_call_opts o = { .timeout_ms = ss->lease_timeout_ms };
    orch_rpc_status st;
    orch_lease_release_res r;
    if (orch_lease_force_release(ss->lease, &o, &rq, &st, &r) != ORCH_OK) {
        stage_reply_error(rep, http_status_of(st.code), "%s: %s", orch_code_name(st.code),
                          st.message);
        return;
    }
    stage_reply_json(rep, 200,
                     json_pack("{s:s, s:I, s:b}", "work_item", item, "released_epoch",
                               (json_int_t)r.released_epoch, "already_released",
                               r.already_released));
}

/* ---- webhooks ------------------------------------------------------------- */

/* The sender's delivery id (`header`), or else "sha256:<body digest>": a
 * resent identical body is the same event. False if the header is unusable
 * (over STAGE_INBOX_DELIVERY_MAX bytes or not printable ASCII). */
static bool delivery_id(const orch_http_request *req, const char *header, char *out, size_t n)
{
    const char *d = orch_http_header(req, header);
    if (d && d[0]) {
        size_t len = strlen(d);
        if (len > STAGE_INBOX_DELIVERY_MAX || len >= n)
            return false;
        for (size_t i = 0; i < len; i++)
            if (d[i] < 0x21 || d[i] > 0x7e)
                return false;
        memcpy(out, d, len + 1);
        return true;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    if (!EVP_Digest(req->body, req->body_len, md, &ml, EVP_sha256(), NULL))
        return false;
    int w = snprintf(out, n, "sha256:");
    for (unsigned i = 0; i < ml && (size_t)w + 2 < n; i++, w += 2)
        snprintf(out + w, n - (size_t)w, "%02x", md[i]);
    return true;
}

/* The answer for a settled or put-back event. A superseded event is 200:
 * it was received and no longer applies (nothing for the sender to redo). */
static void answer_result(orch_http_reply *rep, const stage_inbox_row *row,
                          const stage_inbox_result *r)
{
    const char *result = !r->done                             ? "queued"
                         : strcmp(r->outcome, "applied") == 0 ? stage_result_name(r->result)
                                                              : r->outcome;
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s}", "work_item", row->work_item, "result",
                  result, "stage", stage_name(r->stage), "delivery", row->delivery, "inbox_id",
                  (json_int_t)row->id, "outcome", r->outcome, "detail", r->detail);
    if (r->epoch)
        json_object_set_new(o, "lease_epoch", json_integer((json_int_t)r->epoch));
    if (r->holder[0])
        json_object_set_new(o, "holder", json_string(r->holder));
    if (!r->done)
        json_object_set_new(o, "retry_in_ms", json_integer((json_int_t)r->retry_ms));
    int status = !r->done ? 202 : strcmp(r->outcome, "rejected") == 0 ? 422 : 200;
    stage_reply_json(rep, status, o);
}

/* A delivery seen before: its recorded state, nothing applied again. */
static void answer_known(orch_http_reply *rep, const stage_inbox_row *row)
{
    bool done = strcmp(row->state, "done") == 0;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:b, s:s, s:s}", "work_item", row->work_item,
                          "result", done ? row->outcome : "queued", "delivery", row->delivery,
                          "inbox_id", (json_int_t)row->id, "duplicate", 1, "outcome", row->outcome,
                          "detail", row->detail);
    stage_reply_json(rep, done ? 200 : 202, o);
}

/* Records the event in the inbox, then applies it at once unless an older
 * event of the item is still open; answers only after the record is
 * committed, so a delivery answered 2xx is never lost. The item is in this
 * thread's log context from here on (the HTTP server clears it). */
static void accept_event(stage_svc *ss, orch_http_reply *rep, const char *source,
                         const char *delivery, const stage_task *t, stage_inbox_kind kind)
{
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, t->work_item);
    stage_inbox_row in, row;
    memset(&in, 0, sizeof in);
    snprintf(in.source, sizeof in.source, "%s", source);
    snprintf(in.delivery, sizeof in.delivery, "%s", delivery);
    snprintf(in.work_item, sizeof in.work_item, "%s", t->work_item);
    in.kind = kind;
    in.seen_stage = t->stage;
    in.seen_cycle = t->cycle;
    bool created = false, claimed = false;
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    for (int i = 0; i < 3 && (!err || err == ORCH_EDB_RETRY); i++)
        if (!(err = stage_inbox_put(c, dl, &in, &row, &created)))
            break;
    if (!err && created)
        err = stage_inbox_claim(
            c, dl, row.id, &(stage_inbox_claimer){ ss->inbox_claimer, stage_inbox_stale_ms(ss) },
            &row, &claimed);
    orch_db_release(c);
    if (err && !created) {
        stage_reply_error(rep, 503, "recording the %s event for %s: %s (nothing was recorded)",
                          source, t->work_item, orch_strerror(err));
        return;
    }
    if (!created) {
        answer_known(rep, &row);
        return;
    }
    if (!claimed) {
        /* An older event of the item is open (or claiming failed): it is
         * recorded and the inbox thread applies it in order. */
        stage_inbox_result r = { .stage = t->stage, .retry_ms = 500 };
        snprintf(r.outcome, sizeof r.outcome, "pending");
        snprintf(r.detail, sizeof r.detail, "%s",
                 err ? orch_strerror(err) : "behind an earlier event of the same item");
        answer_result(rep, &row, &r);
        return;
    }
    stage_inbox_result r;
    stage_inbox_apply(ss, &row, &r);
    answer_result(rep, &row, &r);
}

/* Answers the webhook outcomes that need no task: 401, 400, 200 ignored.
 * Returns false when the event is to be acted on. */
static bool answer_early(const stage_hook *h, const char *path, const char *header,
                         orch_http_reply *rep)
{
    switch (h->action) {
    case STAGE_HOOK_UNSIGNED:
        orch_error("POST %s refused: bad or missing signature", path);
        stage_reply_error(rep, 401, "bad or missing %s", header);
        return true;
    case STAGE_HOOK_BAD: stage_reply_error(rep, 400, "%s", h->error); return true;
    case STAGE_HOOK_IGNORED:
        stage_reply_json(rep, 200, json_pack("{s:s}", "ignored", h->ignored));
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
    char delivery[STAGE_INBOX_DELIVERY_MAX + 1];
    if (!delivery_id(req, "X-Gitea-Delivery", delivery, sizeof delivery)) {
        stage_webhook_free(&h);
        stage_reply_error(rep, 400, "X-Gitea-Delivery must be 1 to %d printable bytes",
                          STAGE_INBOX_DELIVERY_MAX);
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
        stage_reply_error(rep, err == ORCH_ENOTFOUND ? 404 : 503, "pull request %s#%lld: %s",
                          h.repo, (long long)h.pr,
                          err == ORCH_ENOTFOUND ? "no task" : orch_strerror(err));
        stage_webhook_free(&h);
        return;
    }
    bool approved = h.action == STAGE_HOOK_APPROVE;
    stage_webhook_free(&h);
    accept_event(ss, rep, "gitea", delivery, &t,
                 approved ? STAGE_INBOX_APPROVE : STAGE_INBOX_REJECT);
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
    char delivery[STAGE_INBOX_DELIVERY_MAX + 1];
    if (!delivery_id(req, "X-Plane-Delivery", delivery, sizeof delivery)) {
        stage_webhook_free(&h);
        stage_reply_error(rep, 400, "X-Plane-Delivery must be 1 to %d printable bytes",
                          STAGE_INBOX_DELIVERY_MAX);
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
        stage_reply_error(rep, err == ORCH_ENOTFOUND ? 404 : 503, "%s: %s", item,
                          err == ORCH_ENOTFOUND ? "no task" : orch_strerror(err));
        return;
    }
    accept_event(ss, rep, "plane", delivery, &t, STAGE_INBOX_CANCEL);
}

orch_err stage_http_register(orch_service *svc, stage_svc *ss)
{
    const orch_http_handler hs[] = {
        { "GET", "/queue", get_queue, ss },
        { "POST", "/transition-lease/release", post_release, ss },
        { "POST", "/webhooks/gitea", post_gitea, ss },
        { "POST", "/webhooks/plane", post_plane, ss },
    };
    return orch_service_add_https(svc, hs, sizeof hs / sizeof hs[0]);
}
