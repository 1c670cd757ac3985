/*
 * test_stage_webhook_inbox.c - nothing a webhook sender told us is lost:
 * an event that arrives while another actor holds the item's lease is
 * recorded in webhook_inbox, answered 202, and applied exactly once after
 * the lease is freed (also by a restarted stage-service); a resent delivery
 * is recognised; an event the item has moved past is answered 200
 * "superseded", never an error. Real stage-service and lease-service; the
 * lease is held by this test process as a live owner.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/httpc.h"
#include "orch/ident.h"
#include "orch/v1/lease.pb-c.h"
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
    orch_httpc_req rq = { "POST", url, headers, body, strlen(body), 30000 };
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

/* A Plane "issue moved to a cancelled state" delivery for ORCH-<seq>. */
static http_res plane_cancel(int seq, const char *delivery)
{
    char body[300], sig[200] = "X-Plane-Signature: ", dv[300];
    snprintf(body, sizeof body,
             "{\"event\":\"issue\",\"action\":\"updated\",\"data\":{\"sequence_id\":%d,"
             "\"state\":{\"name\":\"Cancelled\",\"group\":\"cancelled\"}}}",
             seq);
    sign("plane-hook-secret", body, sig + strlen(sig));
    snprintf(dv, sizeof dv, "X-Plane-Delivery: %s", delivery);
    const char *h[] = { sig, dv, "Content-Type: application/json", NULL };
    return post("/webhooks/plane", h, body);
}

static http_res gitea_approve(int pr, const char *delivery)
{
    char body[300], sig[200] = "X-Gitea-Signature: ", dv[300];
    snprintf(body, sizeof body,
             "{\"action\":\"reviewed\",\"pull_request\":{\"number\":%d},"
             "\"repository\":{\"full_name\":\"org/app\"}}",
             pr);
    sign("gitea-hook-secret", body, sig + strlen(sig));
    snprintf(dv, sizeof dv, "X-Gitea-Delivery: %s", delivery);
    const char *h[] = { sig, dv, "X-Gitea-Event: pull_request_approved",
                        "X-Gitea-Event-Type: pull_request_review_approved", NULL };
    return post("/webhooks/gitea", h, body);
}

static long long num(const char *sql)
{
    return sw_sql_num(&W, sql);
}

/* Polls until the item is in `stage`; bounded. */
static bool wait_stage(const char *item, const char *stage, int ms)
{
    char now[32] = "";
    for (int waited = 0; waited <= ms; waited += 100) {
        sw_stage_of(&W, item, now, sizeof now);
        if (strcmp(now, stage) == 0)
            return true;
        usleep(100000);
    }
    return false;
}

/* Waits until the inbox row of `delivery` is settled (state done): the
 * engine's stage write commits first, the row is marked done after it. */
static bool wait_settled(const char *delivery, int ms)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM webhook_inbox WHERE delivery = '%s' AND state = 'done'",
             delivery);
    for (int waited = 0; waited < ms; waited += 100) {
        if (num(sql) == 1)
            return true;
        usleep(100000);
    }
    return num(sql) == 1;
}

static void expect_item_keys(void);

Test(stage_webhook_inbox, plane_cancel_during_a_held_lease_is_applied_after_release, .fini = down,
     .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "ORCH-301", "org/app", 0), ORCH_CODE_OK);
    sw_walk_to(&W, "ORCH-301", "development");
    uint64_t epoch = sw_hold_lease(&W, "ORCH-301", "monitor");

    http_res r = plane_cancel(301, "plane-d-1");
    cr_assert_eq(r.status, 202, "a deferred event is accepted, not dropped: %ld %s", r.status,
                 r.body);
    cr_assert(strstr(r.body, "\"result\":\"queued\""), "%s", r.body);
    cr_assert(strstr(r.body, "\"outcome\":\"deferred\""), "%s", r.body);
    cr_assert_eq(num("SELECT count(*) FROM webhook_inbox WHERE work_item = 'ORCH-301'"
                     " AND state = 'pending'"),
                 1, "the event is recorded before it is answered");

    /* While the lease is held, the inbox thread tries again and defers. */
    usleep(2500000);
    char stage[32];
    sw_stage_of(&W, "ORCH-301", stage, sizeof stage);
    cr_assert_str_eq(stage, "development", "nothing moves under a held lease");
    cr_assert_geq(num("SELECT attempts FROM webhook_inbox WHERE delivery = 'plane-d-1'"), 2,
                  "the inbox thread retried while the lease was held");

    sw_free_lease(&W, "ORCH-301", epoch);
    cr_assert(wait_stage("ORCH-301", "cancelled", 20000),
              "the cancel was lost: not applied after the lease was freed");
    cr_assert(wait_settled("plane-d-1", 10000), "the applied event was never settled");
    cr_assert_eq(num("SELECT count(*) FROM webhook_inbox WHERE delivery = 'plane-d-1'"
                     " AND state = 'done' AND outcome = 'applied'"),
                 1);

    /* The same delivery again (a resend): recognised, not applied again. */
    r = plane_cancel(301, "plane-d-1");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"duplicate\":true"), "%s", r.body);
    /* Plane's own retry carries a new delivery id: the item is already
     * cancelled, which is an answer, not an error the sender retries. */
    r = plane_cancel(301, "plane-d-2");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"result\":\"superseded\""), "%s", r.body);
    usleep(1500000); /* a pass of the inbox thread */
    cr_assert_eq(num("SELECT count(*) FROM stage_history h JOIN tasks t ON t.id = h.task_id"
                     " WHERE t.work_item = 'ORCH-301' AND h.to_stage = 'cancelled'"),
                 1, "the cancel was applied exactly once");
    expect_item_keys();
}

/* The inbox thread's line about the applied event carries the item and the
 * epoch of its grant, the route's line about the superseded one the item. */
static void expect_item_keys(void)
{
    char keys[300];
    snprintf(keys, sizeof keys,
             "\"work_item\":\"ORCH-301\",\"epoch\":%lld,\"msg\":\"webhook event %lld (plane "
             "cancel plane-d-1 of ORCH-301) applied",
             num("SELECT epoch FROM transition_lease WHERE work_item = 'ORCH-301'"),
             num("SELECT id FROM webhook_inbox WHERE delivery = 'plane-d-1'"));
    cr_assert(th_svc_log_has(&W.stage, keys), "no inbox line with %s", keys);
    snprintf(keys, sizeof keys,
             "\"work_item\":\"ORCH-301\",\"msg\":\"webhook event %lld (plane cancel "
             "plane-d-2 of ORCH-301) superseded",
             num("SELECT id FROM webhook_inbox WHERE delivery = 'plane-d-2'"));
    cr_assert(th_svc_log_has(&W.stage, keys), "no webhook route line with %s", keys);
}

Test(stage_webhook_inbox, gitea_approval_during_a_held_lease_merges_once_after_release,
     .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "ORCH-302", "org/app", 9302), ORCH_CODE_OK);
    sw_walk_to(&W, "ORCH-302", "review");
    uint64_t epoch = sw_hold_lease(&W, "ORCH-302", "monitor");

    http_res r = gitea_approve(9302, "gitea-d-1");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"holder\":\"monitor\""), "the answer names the holder: %s", r.body);
    usleep(1500000);
    cr_assert_eq(sw_counts_for_pr(9302).merge_calls, 0, "no effect under a held lease");

    sw_free_lease(&W, "ORCH-302", epoch);
    cr_assert(wait_stage("ORCH-302", "testing", 20000), "the approval was not applied");
    cr_assert(wait_settled("gitea-d-1", 10000), "the applied event was never settled");
    cr_assert_eq(sw_counts_for_pr(9302).merges, 1);
    /* Gitea's "redeliver" is a new delivery id with the same body: the
     * item moved past review, so it is superseded, with a 200. */
    r = gitea_approve(9302, "gitea-d-2");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"result\":\"superseded\""), "%s", r.body);
    cr_assert(strstr(r.body, "\"stage\":\"testing\""), "%s", r.body);
    usleep(1500000);
    cr_assert_eq(sw_counts_for_pr(9302).merge_calls, 1, "merged exactly once");
    cr_assert_eq(num("SELECT count(*) FROM stage_history h JOIN tasks t ON t.id = h.task_id"
                     " WHERE t.work_item = 'ORCH-302' AND h.to_stage = 'testing'"),
                 1);
}

Test(stage_webhook_inbox, a_queued_event_survives_a_stage_service_crash, .fini = down,
     .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "ORCH-303", "org/app", 0), ORCH_CODE_OK);
    sw_walk_to(&W, "ORCH-303", "analysis");
    uint64_t epoch = sw_hold_lease(&W, "ORCH-303", "monitor");
    http_res r = plane_cancel(303, "plane-crash-1");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);

    /* The process that answered dies; the lease is freed; a new process
     * applies the recorded event. */
    cr_assert_eq(th_svc_stop(&W.stage, SIGKILL, 10000), 128 + SIGKILL);
    sw_free_lease(&W, "ORCH-303", epoch);
    sw_stage_start(&W, &W.stage, NULL);
    cr_assert(wait_stage("ORCH-303", "cancelled", 20000), "the recorded cancel was lost");
    cr_assert(wait_settled("plane-crash-1", 10000), "the applied event was never settled");
    cr_assert_eq(num("SELECT count(*) FROM webhook_inbox WHERE delivery = 'plane-crash-1'"
                     " AND state = 'done' AND outcome = 'applied'"),
                 1);
}

Test(stage_webhook_inbox, events_of_one_item_apply_in_arrival_order, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "ORCH-304", "org/app", 9304), ORCH_CODE_OK);
    sw_walk_to(&W, "ORCH-304", "review");
    uint64_t epoch = sw_hold_lease(&W, "ORCH-304", "monitor");
    /* An approval, then a cancel: both wait; the approval goes first. */
    cr_assert_eq(gitea_approve(9304, "order-1").status, 202);
    http_res r = plane_cancel(304, "order-2");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "earlier event"), "%s", r.body);
    sw_free_lease(&W, "ORCH-304", epoch);
    cr_assert(wait_stage("ORCH-304", "cancelled", 20000));
    char *path = th_sql(W.db, "SELECT string_agg(h.to_stage, ',' ORDER BY h.id) FROM stage_history"
                              " h JOIN tasks t ON t.id = h.task_id WHERE t.work_item = 'ORCH-304'"
                              " AND h.to_stage IN ('testing', 'cancelled')");
    cr_assert_str_eq(path, "testing,cancelled", "the cancel came from testing, after the merge");
    free(path);
    cr_assert_eq(sw_counts_for_pr(9304).merges, 1);
}

Test(stage_webhook_inbox, an_unusable_delivery_header_is_refused_with_400, .fini = down,
     .timeout = 60)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "ORCH-305", "org/app", 0), ORCH_CODE_OK);
    char longid[260];
    memset(longid, 'x', 250);
    longid[250] = '\0';
    http_res r = plane_cancel(305, longid);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "X-Plane-Delivery"), "%s", r.body);
    cr_assert_eq(num("SELECT count(*) FROM webhook_inbox"), 0, "nothing half-written");
    char stage[32];
    sw_stage_of(&W, "ORCH-305", stage, sizeof stage);
    cr_assert_str_eq(stage, "backlog");
}

/* A Plane cancel over a merge whose outcome was unknown waited in the inbox
 * for good: every attempt was refused, and only an advance could have
 * resolved the merge. Now it waits only while Gitea cannot answer, and is
 * applied (the merge found out, not repeated) once it can. */
Test(stage_webhook_inbox, a_plane_cancel_over_an_unknown_merge_is_applied, .fini = down,
     .timeout = 120)
{
    const char *env[] = { "ORCH_EFFECT_TIMEOUT_MS=1000", NULL };
    sw_up(&W, env);
    cr_assert_eq(sw_create(W.client, "ORCH-306", "org/app", 8306), ORCH_CODE_OK);
    sw_walk_to(&W, "ORCH-306", "review");
    sw_set_merge_delay_ms(2000);
    sw_adv a =
        sw_advance(W.client, "ORCH-306", "review", "testing", "monitor", "review_verdict: APPROVE");
    sw_set_merge_delay_ms(0);
    cr_assert_eq(a.outcome, ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_EFFECT_UNKNOWN,
                 "outcome %d: %s", a.outcome, a.message);
    sw_set_gitea_down(true);
    http_res r = plane_cancel(306, "plane-unk-1");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    usleep(1500000); /* inbox passes: each asks Gitea, which cannot say */
    char stage[32];
    sw_stage_of(&W, "ORCH-306", stage, sizeof stage);
    cr_assert_str_eq(stage, "review", "cancelled over a merge nobody could find out");
    sw_set_gitea_down(false);
    cr_assert(wait_stage("ORCH-306", "cancelled", 30000),
              "the cancel stays in the inbox although Gitea can now say the merge happened");
    cr_assert(wait_settled("plane-unk-1", 10000), "the applied event was never settled");
    cr_assert_eq(num("SELECT count(*) FROM webhook_inbox WHERE delivery = 'plane-unk-1'"
                     " AND state = 'done' AND outcome = 'applied'"),
                 1);
    cr_assert_eq(sw_counts_for_pr(8306).merge_calls, 1, "merged again");
}
