/*
 * fuzz_webhook.c - libFuzzer target: stage-service's webhook signature check
 * and Gitea/Plane event reading (stage_webhook.h).
 *
 * Input: a flags byte, then the X-*-Signature value and the X-Gitea-Event
 * value, each ended by '\n', then the body. Flag bit 0 picks Plane over
 * Gitea; bit 1 replaces the given signature with the body's true one (so
 * that the JSON reader is reached); bit 2 sends no signature header; bit 3
 * sends no event header.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char secret[] = "fuzz-webhook-secret";

/* Cuts the next '\n'-ended field out of [*p, end) into a malloc'ed string. */
static char *field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += nl ? n + 1 : n;
    return s;
}

static void true_signature(const uint8_t *body, size_t len, char *out, size_t n)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, mac, &ml))
        abort();
    for (unsigned i = 0; i < ml && 2 * i + 2 < n; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    char *sig = field(&p, end);
    char *event = field(&p, end);
    const uint8_t *body = p;
    size_t len = (size_t)(end - p);
    char good[2 * EVP_MAX_MD_SIZE + 1] = "";
    if (flags & 2) {
        true_signature(body, len, good, sizeof good);
        if (!stage_webhook_signature_ok(good, body, len, secret))
            abort();
    }
    const char *s = (flags & 4) ? NULL : (flags & 2) ? good : sig;
    const char *ev = (flags & 8) ? NULL : event;
    stage_hook h;
    stage_hook_action a = (flags & 1) ? stage_webhook_parse_plane(s, body, len, secret, &h)
                                      : stage_webhook_parse_gitea(s, ev, body, len, secret, &h);
    if (a != h.action)
        abort();
    if ((flags & 2) && !(flags & 4) && a == STAGE_HOOK_UNSIGNED)
        abort();
    switch (a) {
    case STAGE_HOOK_BAD:
        if (!h.error[0])
            abort();
        break;
    case STAGE_HOOK_IGNORED:
        if (!h.ignored)
            abort();
        break;
    case STAGE_HOOK_APPROVE:
    case STAGE_HOOK_REJECT:
        if (!h.repo || h.pr == 0 || (flags & 1))
            abort();
        break;
    case STAGE_HOOK_CANCEL:
        if (h.seq <= 0 || !(flags & 1))
            abort();
        break;
    case STAGE_HOOK_UNSIGNED: break;
    }
    /* The given signature is never accepted for a secret it was not made with. */
    if (stage_webhook_signature_ok(sig, body, len, ""))
        abort();
    stage_webhook_free(&h);
    stage_webhook_free(&h);
    free(sig);
    free(event);
    return 0;
}
