/*
 * stage_webhook.c - signature check and event reading of the webhooks
 * (stage_webhook.h). Pure: jansson for the JSON, OpenSSL for the HMAC.
 */
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_webhook.h"

bool stage_webhook_signature_ok(const char *sig, const void *body, size_t len, const char *secret)
{
    if (!sig || !secret[0])
        return false;
    if (strncmp(sig, "sha256=", 7) == 0)
        sig += 7;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, mac, &ml))
        return false;
    char hex[EVP_MAX_MD_SIZE * 2 + 1];
    for (unsigned i = 0; i < ml; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    /* Case-insensitive hex: lower the presented value first. */
    char given[EVP_MAX_MD_SIZE * 2 + 1];
    size_t gl = strlen(sig);
    if (gl != 2 * ml)
        return false;
    for (size_t i = 0; i < gl; i++)
        given[i] = (sig[i] >= 'A' && sig[i] <= 'F') ? (char)(sig[i] - 'A' + 'a') : sig[i];
    given[gl] = '\0';
    return CRYPTO_memcmp(given, hex, gl) == 0;
}

static stage_hook_action set(stage_hook *h, stage_hook_action a)
{
    h->action = a;
    return a;
}

/* Loads `body` as a JSON object; on failure sets STAGE_HOOK_BAD on *h. */
static json_t *load_object(const void *body, size_t len, stage_hook *h)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        snprintf(h->error, sizeof h->error, "body is not a JSON object: %s", je.text);
        set(h, STAGE_HOOK_BAD);
        return NULL;
    }
    return j;
}

static bool is_one_of(const char *event, const char *a, const char *b)
{
    return event && (strcmp(event, a) == 0 || strcmp(event, b) == 0);
}

stage_hook_action stage_webhook_parse_gitea(const char *sig, const char *event, const void *body,
                                            size_t len, const char *secret, stage_hook *out)
{
    memset(out, 0, sizeof *out);
    if (!stage_webhook_signature_ok(sig, body, len, secret))
        return set(out, STAGE_HOOK_UNSIGNED);
    json_t *j = load_object(body, len, out);
    if (!j)
        return out->action;
    const char *repo =
        json_string_value(json_object_get(json_object_get(j, "repository"), "full_name"));
    json_int_t pr =
        json_integer_value(json_object_get(json_object_get(j, "pull_request"), "number"));
    bool approved = is_one_of(event, "pull_request_review_approved", "pull_request_approved");
    bool rejected = is_one_of(event, "pull_request_review_rejected", "pull_request_rejected");
    stage_hook_action a;
    if (!approved && !rejected) {
        out->ignored = event ? event : "(no X-Gitea-Event)";
        a = set(out, STAGE_HOOK_IGNORED);
    } else if (!repo || pr <= 0) {
        snprintf(out->error, sizeof out->error,
                 "repository.full_name and pull_request.number are required");
        a = set(out, STAGE_HOOK_BAD);
    } else if (!(out->repo = strdup(repo))) {
        snprintf(out->error, sizeof out->error, "out of memory");
        a = set(out, STAGE_HOOK_BAD);
    } else {
        out->pr = (uint64_t)pr;
        a = set(out, approved ? STAGE_HOOK_APPROVE : STAGE_HOOK_REJECT);
    }
    json_decref(j);
    return a;
}

stage_hook_action stage_webhook_parse_plane(const char *sig, const void *body, size_t len,
                                            const char *secret, stage_hook *out)
{
    memset(out, 0, sizeof *out);
    if (!stage_webhook_signature_ok(sig, body, len, secret))
        return set(out, STAGE_HOOK_UNSIGNED);
    json_t *j = load_object(body, len, out);
    if (!j)
        return out->action;
    const char *event = json_string_value(json_object_get(j, "event"));
    json_t *data = json_object_get(j, "data");
    json_int_t seq = json_integer_value(json_object_get(data, "sequence_id"));
    json_t *state = json_object_get(data, "state");
    const char *group = json_string_value(json_object_get(state, "group"));
    stage_hook_action a;
    if (!event || strcmp(event, "issue") != 0 || !group || strcmp(group, "cancelled") != 0) {
        out->ignored = "not an issue cancellation";
        a = set(out, STAGE_HOOK_IGNORED);
    } else if (seq <= 0) {
        snprintf(out->error, sizeof out->error, "data.sequence_id is required");
        a = set(out, STAGE_HOOK_BAD);
    } else {
        out->seq = (int64_t)seq;
        a = set(out, STAGE_HOOK_CANCEL);
    }
    json_decref(j);
    return a;
}

void stage_webhook_free(stage_hook *h)
{
    if (!h)
        return;
    free(h->repo);
    h->repo = NULL;
}
