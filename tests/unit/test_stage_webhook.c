/*
 * test_stage_webhook.c - the webhooks' signature check and event reading
 * (services/stage/stage_webhook.c), without HTTP or a database.
 */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "stage_webhook.h"

static const char secret[] = "s3cret";

static void sign(const char *body, char *out, size_t n)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body,
                            strlen(body), mac, &ml));
    cr_assert_geq(n, 2 * ml + 1);
    for (unsigned i = 0; i < ml; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

Test(stage_webhook, signature_accepts_prefix_and_upper_case_and_refuses_the_rest)
{
    const char *body = "{\"a\":1}";
    char sig[80], pre[90];
    sign(body, sig, sizeof sig);
    cr_assert(stage_webhook_signature_ok(sig, body, strlen(body), secret));
    snprintf(pre, sizeof pre, "sha256=%s", sig);
    cr_assert(stage_webhook_signature_ok(pre, body, strlen(body), secret));
    for (char *p = sig; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    cr_assert(stage_webhook_signature_ok(sig, body, strlen(body), secret));
    cr_assert_not(stage_webhook_signature_ok(sig, body, strlen(body) - 1, secret));
    cr_assert_not(stage_webhook_signature_ok(sig, body, strlen(body), ""));
    cr_assert_not(stage_webhook_signature_ok(NULL, body, strlen(body), secret));
    sig[10] = '\0';
    cr_assert_not(stage_webhook_signature_ok(sig, body, strlen(body), secret));
}

Test(stage_webhook, gitea_approval_names_repo_and_pull_request)
{
    const char *body = "{\"repository\":{\"full_name\":\"orch/orch\"},"
                       "\"pull_request\":{\"number\":42}}";
    char sig[80];
    sign(body, sig, sizeof sig);
    stage_hook h;
    cr_assert_eq(stage_webhook_parse_gitea(sig, "pull_request_review_approved", body, strlen(body),
                                           secret, &h),
                 STAGE_HOOK_APPROVE);
    cr_assert_str_eq(h.repo, "orch/orch");
    cr_assert_eq(h.pr, 42);
    stage_webhook_free(&h);
    cr_assert_eq(
        stage_webhook_parse_gitea(sig, "pull_request_rejected", body, strlen(body), secret, &h),
        STAGE_HOOK_REJECT);
    stage_webhook_free(&h);
    cr_assert_eq(stage_webhook_parse_gitea(sig, "push", body, strlen(body), secret, &h),
                 STAGE_HOOK_IGNORED);
    cr_assert_str_eq(h.ignored, "push");
    cr_assert_eq(
        stage_webhook_parse_gitea("00", "pull_request_approved", body, strlen(body), secret, &h),
        STAGE_HOOK_UNSIGNED);
}

Test(stage_webhook, gitea_event_without_pull_request_or_json_is_bad)
{
    const char *bodies[] = { "{\"repository\":{\"full_name\":\"orch/orch\"}}", "[1,2]", "{" };
    for (size_t i = 0; i < 3; i++) {
        char sig[80];
        sign(bodies[i], sig, sizeof sig);
        stage_hook h;
        cr_assert_eq(stage_webhook_parse_gitea(sig, "pull_request_approved", bodies[i],
                                               strlen(bodies[i]), secret, &h),
                     STAGE_HOOK_BAD, "case %zu", i);
        cr_assert_neq(h.error[0], '\0');
        stage_webhook_free(&h);
    }
}

Test(stage_webhook, plane_cancellation_gives_the_sequence_id)
{
    const char *body = "{\"event\":\"issue\",\"data\":{\"sequence_id\":114,"
                       "\"state\":{\"group\":\"cancelled\"}}}";
    char sig[80];
    sign(body, sig, sizeof sig);
    stage_hook h;
    cr_assert_eq(stage_webhook_parse_plane(sig, body, strlen(body), secret, &h), STAGE_HOOK_CANCEL);
    cr_assert_eq(h.seq, 114);
    const char *other = "{\"event\":\"issue\",\"data\":{\"state\":{\"group\":\"started\"}}}";
    sign(other, sig, sizeof sig);
    cr_assert_eq(stage_webhook_parse_plane(sig, other, strlen(other), secret, &h),
                 STAGE_HOOK_IGNORED);
    const char *noseq = "{\"event\":\"issue\",\"data\":{\"state\":{\"group\":\"cancelled\"}}}";
    sign(noseq, sig, sizeof sig);
    cr_assert_eq(stage_webhook_parse_plane(sig, noseq, strlen(noseq), secret, &h), STAGE_HOOK_BAD);
    cr_assert_str_eq(h.error, "data.sequence_id is required");
}
