/*
 * test_stage_http.c - stage-service's HTTP routes: /queue with the lease
 * block, the operator's lease release (token), and the Gitea and Plane
 * webhooks (signatures, bad JSON, event mapping, deferral on a held lease;
 * the inbox itself: test_stage_webhook_inbox.c).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/httpc.h"
#include "stage_world.h"

static sw_world W;

static void down(void)
{
    sw_down(&W);
}

typedef struct http_res {
    long status;
    char body[4096];
} http_res;

static http_res post(const char *path, const char *const *headers, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "http://%s%s", W.stage.http_addr, path);
    orch_httpc_req rq = { "POST", url, headers, body, body ? strlen(body) : 0, 15000 };
    orch_httpc_resp rs;
    char why[256];
    http_res r = { 0, "" };
    cr_assert_eq(orch_httpc_do(&rq, &rs, why, sizeof why), ORCH_OK, "POST %s: %s", path, why);
    r.status = rs.status;
    snprintf(r.body, sizeof r.body, "%s", rs.body);
    orch_httpc_resp_free(&rs);
    return r;
}

static void sign(const char *secret, const char *body, char *hex)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, strlen(body), mac,
         &ml);
    for (unsigned i = 0; i < ml; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
}

static http_res gitea(const char *event, const char *body, const char *secret)
{
    char sig[200] = "X-Gitea-Signature: ", ev[200];
    sign(secret, body, sig + strlen(sig));
    snprintf(ev, sizeof ev, "X-Gitea-Event-Type: %s", event);
    const char *h[] = { sig, ev, "Content-Type: application/json", NULL };
    return post("/webhooks/gitea", h, body);
}

static const char approved[] = "{\"action\":\"reviewed\",\"pull_request\":{\"number\":8100},"
                               "\"repository\":{\"full_name\":\"org/app\"}}";

Test(stage_http, gitea_webhook_checks_signature_and_json_then_advances, .fini = down,
     .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "HOOK-1", "org/app", 8100), ORCH_CODE_OK);
    sw_walk_to(&W, "HOOK-1", "review");

    http_res r = gitea("pull_request_review_approved", approved, "not-the-secret");
    cr_assert_eq(r.status, 401, "%ld %s", r.status, r.body);
    const char *nosig[] = { "X-Gitea-Event: pull_request_review_approved", NULL };
    r = post("/webhooks/gitea", nosig, approved);
    cr_assert_eq(r.status, 401);
    r = gitea("pull_request_review_approved", "{not json", "gitea-hook-secret");
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    char stage[32];
    sw_stage_of(&W, "HOOK-1", stage, sizeof stage);
    cr_assert_str_eq(stage, "review", "refused webhooks changed nothing");
    cr_assert_eq(sw_counts_for_pr(8100).merge_calls, 0);

    r = gitea("push", "{}", "gitea-hook-secret");
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "ignored"), "%s", r.body);
    r = gitea("pull_request_review_approved", approved, "gitea-hook-secret");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"result\":\"advanced\""), "%s", r.body);
    sw_stage_of(&W, "HOOK-1", stage, sizeof stage);
    cr_assert_str_eq(stage, "testing");
    cr_assert_eq(sw_counts_for_pr(8100).merges, 1);
    /* The same delivery again (no X-Gitea-Delivery: the body's digest is
     * its id) is recognised: 200 with what it did, nothing merged twice. */
    r = gitea("pull_request_review_approved", approved, "gitea-hook-secret");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"duplicate\":true"), "%s", r.body);
    cr_assert_eq(sw_counts_for_pr(8100).merge_calls, 1);
    char *who = th_sql(W.db, "SELECT actor FROM stage_history ORDER BY id DESC LIMIT 1");
    cr_assert_str_eq(who, "webhook");
    free(who);
}

Test(stage_http, plane_webhook_cancels_the_item, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "ORCH-114", "org/app", 0), ORCH_CODE_OK);
    sw_walk_to(&W, "ORCH-114", "development");
    const char *body = "{\"event\":\"issue\",\"action\":\"updated\",\"data\":{\"sequence_id\":114,"
                       "\"state\":{\"name\":\"Cancelled\",\"group\":\"cancelled\"}}}";
    char sig[200] = "X-Plane-Signature: ";
    sign("wrong", body, sig + strlen(sig));
    const char *bad[] = { sig, NULL };
    cr_assert_eq(post("/webhooks/plane", bad, body).status, 401);
    char good[200] = "X-Plane-Signature: ";
    sign("plane-hook-secret", body, good + strlen(good));
    const char *h[] = { good, NULL };
    http_res r = post("/webhooks/plane", h, body);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    char stage[32];
    sw_stage_of(&W, "ORCH-114", stage, sizeof stage);
    cr_assert_str_eq(stage, "cancelled");
}

typedef struct slow {
    orch_rpc_client *c;
    sw_adv r;
} slow;

static void *slow_main(void *arg)
{
    slow *s = arg;
    s->r = sw_advance(s->c, "Q-1", "review", "testing", "monitor", "review_verdict: APPROVE");
    return NULL;
}

/* GET /queue while Q-1's lease is held by the slow advance: the held lease
 * in review, none for the backlog item. */
static void queue_shows_the_held_lease(void)
{
    char *body = NULL;
    long st = th_http_get(W.stage.http_addr, "/queue", &body);
    cr_assert_eq(st, 200, "%s", body ? body : "");
    json_t *j = json_loads(body, 0, NULL);
    cr_assert_not_null(j, "%s", body);
    json_t *review = json_object_get(json_object_get(j, "stages"), "review");
    cr_assert_eq(json_array_size(review), 1, "%s", body);
    json_t *l = json_object_get(json_array_get(review, 0), "transition_lease");
    cr_assert(json_is_object(l), "the held lease is shown: %s", body);
    cr_assert_str_eq(json_string_value(json_object_get(l, "liveness")), "alive", "%s", body);
    cr_assert_str_eq(json_string_value(json_object_get(l, "actor")), "monitor");
    cr_assert_gt(json_integer_value(json_object_get(l, "epoch")), 0);
    json_t *backlog = json_object_get(json_object_get(j, "stages"), "backlog");
    cr_assert_eq(json_array_size(backlog), 1);
    cr_assert(json_is_null(json_object_get(json_array_get(backlog, 0), "transition_lease")));
    json_decref(j);
    free(body);
}

/* While held, a webhook defers like every other actor; the event is kept
 * (202) and applied once the lease is free. */
static void webhook_defers_on_the_held_lease(void)
{
    char sig[200] = "X-Gitea-Signature: ";
    const char *ab = "{\"pull_request\":{\"number\":8200},\"repository\":{\"full_name\":"
                     "\"org/app\"}}";
    sign("gitea-hook-secret", ab, sig + strlen(sig));
    /* As Gitea sends it: the event without the finer type header. */
    const char *gh[] = { sig, "X-Gitea-Event: pull_request_approved", NULL };
    http_res r = post("/webhooks/gitea", gh, ab);
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"outcome\":\"deferred\""), "%s", r.body);
}

/* The operator release of Q-1: refused without the right token, then
 * done with it (the reason is recorded). */
static void release_needs_the_token(const char *const *tok)
{
    const char *none[] = { NULL };
    http_res r = post("/transition-lease/release?work_item=Q-1", none, "");
    cr_assert_eq(r.status, 401);
    const char *wrong[] = { "X-Orch-Token: op-secreT", NULL };
    r = post("/transition-lease/release?work_item=Q-1", wrong, "");
    cr_assert_eq(r.status, 401);
    char *held = th_sql(W.db, "SELECT count(*) FROM transition_lease WHERE released_at IS NULL");
    cr_assert_str_eq(held, "1", "a refused release released nothing");
    free(held);
    r = post("/transition-lease/release?work_item=Q-1&reason=stuck%20merge", tok, "");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "released_epoch"), "%s", r.body);
    held = th_sql(W.db, "SELECT detail FROM lease_events WHERE work_item = 'Q-1'"
                        " AND kind = 'force-released'");
    cr_assert(held && strstr(held, "stuck merge"), "%s", held ? held : "(no event)");
    free(held);
}

/* The route named the epoch it read; a resend of it (even after a
 * lease-service restart) is answered "already released" and can never
 * release a newer grant. */
static void release_names_its_epoch(const char *const *tok)
{
    char *ep = th_sql(W.db, "SELECT epoch FROM transition_lease WHERE work_item = 'Q-1'");
    char path[160];
    snprintf(path, sizeof path, "/transition-lease/release?work_item=Q-1&epoch=%s", ep);
    http_res r = post(path, tok, "");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"already_released\":true"), "%s", r.body);
    snprintf(path, sizeof path, "/transition-lease/release?work_item=Q-1&epoch=%lld",
             strtoll(ep, NULL, 10) + 1);
    free(ep);
    r = post(path, tok, "");
    cr_assert_eq(r.status, 409, "another epoch is left alone: %ld %s", r.status, r.body);
    r = post("/transition-lease/release?work_item=Q-1&epoch=x1", tok, "");
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    r = post("/transition-lease/release?work_item=Q-1", tok, "");
    cr_assert_eq(r.status, 409, "nothing held: %ld %s", r.status, r.body);
}

Test(stage_http, queue_shows_the_lease_and_release_needs_the_token, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "Q-1", "org/app", 8200), ORCH_CODE_OK);
    cr_assert_eq(sw_create(W.client, "Q-2", "org/app", 8201), ORCH_CODE_OK);
    sw_walk_to(&W, "Q-1", "review");
    sw_set_merge_delay_ms(3000);
    orch_rpc_client *c2;
    cr_assert_eq(orch_rpc_client_open(W.stage.rpc_url, NULL, &c2), ORCH_OK);
    slow s = { c2, { 0 } };
    pthread_t th;
    pthread_create(&th, NULL, slow_main, &s);
    for (int i = 0; i < 100 && sw_counts_for_pr(8200).merge_calls == 0; i++)
        usleep(20000);
    queue_shows_the_held_lease();
    webhook_defers_on_the_held_lease();
    const char *tok[] = { "X-Orch-Token: op-secret", NULL };
    release_needs_the_token(tok);
    release_names_its_epoch(tok);
    sw_set_merge_delay_ms(0);
    pthread_join(th, NULL);
    cr_assert_eq(s.r.code, ORCH_CODE_ABORTED, "the robbed owner must not write: %s", s.r.message);
    orch_rpc_client_close(c2);
}
