/*
 * stage_webhook.h - the pure part of stage-service's webhooks: the HMAC
 * signature check and the reading of Gitea's and Plane's JSON events into
 * what the engine is asked to do.
 *
 * No I/O; thread-safe. stage_http.c looks tasks up and drives the engine.
 */
#ifndef ORCH_STAGE_WEBHOOK_H
#define ORCH_STAGE_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum stage_hook_action {
    STAGE_HOOK_UNSIGNED, /* bad or missing signature: 401 */
    STAGE_HOOK_BAD,      /* malformed event: 400 with `error` */
    STAGE_HOOK_IGNORED,  /* not an event we act on: 200 with `ignored` */
    STAGE_HOOK_APPROVE,  /* Gitea review approved: review -> testing */
    STAGE_HOOK_REJECT,   /* Gitea review rejected: review -> development */
    STAGE_HOOK_CANCEL,   /* Plane issue cancelled: item -> cancelled */
} stage_hook_action;

typedef struct stage_hook {
    stage_hook_action action;
    char error[256];     /* STAGE_HOOK_BAD */
    const char *ignored; /* STAGE_HOOK_IGNORED: the event header (borrowed) or a static text */
    char *repo;          /* APPROVE, REJECT: repository.full_name; malloc'ed */
    uint64_t pr;         /* APPROVE, REJECT: pull_request.number, > 0 */
    int64_t seq;         /* CANCEL: data.sequence_id, > 0 */
} stage_hook;

/* Whether `sig` (a header value, may be NULL; "sha256=" prefix and upper
 * case hex accepted) is the hex HMAC-SHA256 of the body with `secret`. An
 * empty secret accepts nothing. Constant time in the compared bytes. */
bool stage_webhook_signature_ok(const char *sig, const void *body, size_t len, const char *secret);

/* Reads a Gitea webhook: `sig` is X-Gitea-Signature, `event` the
 * X-Gitea-Event-Type header or else X-Gitea-Event (either may be NULL).
 * Fills *out (release with stage_webhook_free) and returns its action. */
stage_hook_action stage_webhook_parse_gitea(const char *sig, const char *event, const void *body,
                                            size_t len, const char *secret, stage_hook *out);

/* Reads a Plane webhook: `sig` is X-Plane-Signature (may be NULL). Fills
 * *out (release with stage_webhook_free) and returns its action. */
stage_hook_action stage_webhook_parse_plane(const char *sig, const void *body, size_t len,
                                            const char *secret, stage_hook *out);

/* Frees what *h owns; a zeroed or already freed hook is fine. */
void stage_webhook_free(stage_hook *h);

#endif
