/*
 * guard_logic.h - guard-service's pure rules: input checks, the bodies sent
 * to Plane and Telegram, reading their answers, mapping upstream outcomes
 * to RPC statuses. No I/O; unit tested without sockets or a database.
 * Strings returned through out-pointers are malloc'ed: the caller frees.
 */
#ifndef ORCH_GUARD_LOGIC_H
#define ORCH_GUARD_LOGIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"

#define GUARD_TELEGRAM_MAX_CHARS 4096 /* sendMessage text limit, characters */
#define GUARD_ID_MAX             128

/* Whether s is valid UTF-8 (no overlong forms, no surrogates, no NUL). */
bool guard_utf8_valid(const char *s, size_t n);
/* Code points in valid UTF-8 text. */
size_t guard_utf8_chars(const char *s, size_t n);

/* Checks an id field (project, issue, state, external id): non-empty,
 * well-formed (orch_guard_target_valid). Writes why on failure. */
bool guard_valid_id(const char *field, const char *value, char *why, size_t n);
/* Checks a text: non-empty, valid UTF-8, at most max_bytes bytes and (when
 * max_chars > 0) at most max_chars characters. */
bool guard_valid_text(const char *field, const char *value, size_t max_bytes, size_t max_chars,
                      char *why, size_t n);

/* Escapes plain text as the HTML of a Plane comment: "<p>...</p>". */
char *guard_comment_html(const char *text);

/* JSON bodies. */
char *guard_plane_state_body(const char *state_id);
char *guard_plane_comment_body(const char *html, const char *external_id);
char *guard_telegram_body(const char *chat_id, const char *text);

/* Reads "id" from a Plane object, or the id of the state named `name`
 * (case-insensitive) from a Plane state list ({"results":[...]} or [...]).
 * false if absent or the body is not JSON. */
bool guard_plane_id(const char *body, char *out, size_t n);
bool guard_plane_state_by_name(const char *body, const char *name, char *out, size_t n);

/* Telegram's answer: ok and message_id, or retry_after of a 429. */
typedef struct guard_tg_answer {
    bool ok;
    int64_t message_id;
    int64_t retry_after_s; /* -1 if absent */
    char description[160];
} guard_tg_answer;
void guard_telegram_parse(const char *body, guard_tg_answer *out);

/* Upstream outcome classes (the metric's label values, in this order). */
typedef enum guard_outcome {
    GUARD_UP_OK,
    GUARD_UP_CLIENT_ERROR,
    GUARD_UP_SERVER_ERROR,
    GUARD_UP_RATE_LIMITED,
    GUARD_UP_TIMEOUT,
    GUARD_UP_TRANSPORT,
    GUARD_UP_REFUSED,
    GUARD_UP_NKINDS
} guard_outcome;
extern const char *const guard_outcome_names[GUARD_UP_NKINDS];

/* Classifies an exchange: transport error `err`, else HTTP `status`. */
guard_outcome guard_classify(orch_err err, long status);
/* The RPC status answered for an outcome (OK only for GUARD_UP_OK). */
int guard_outcome_code(guard_outcome o);

/* Replaces every occurrence of `secret` (if non-empty) in s by "***". */
void guard_scrub(char *s, const char *secret);

#endif
