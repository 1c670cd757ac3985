/*
 * guard_logic.c - see guard_logic.h.
 */
#include "guard_logic.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orch/guard.h"

const char *const guard_outcome_names[GUARD_UP_NKINDS] = {
    "ok", "client_error", "server_error", "rate_limited", "timeout", "transport", "refused",
};

bool guard_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        unsigned cp;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

size_t guard_utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            k++;
    return k;
}

bool guard_valid_id(const char *field, const char *value, char *why, size_t n)
{
    if (!value || !value[0]) {
        snprintf(why, n, "%s is missing", field);
        return false;
    }
    if (!orch_guard_target_valid(value)) {
        snprintf(why, n, "%s is not a valid id (1..%d of A-Z a-z 0-9 . _ : @ -)", field,
                 GUARD_ID_MAX);
        return false;
    }
    return true;
}

bool guard_valid_text(const char *field, const char *value, size_t max_bytes, size_t max_chars,
                      char *why, size_t n)
{
    size_t len = value ? strlen(value) : 0;
    if (len == 0) {
        snprintf(why, n, "%s is empty", field);
        return false;
    }
    if (len > max_bytes) {
        snprintf(why, n, "%s is %zu bytes, over the limit of %zu", field, len, max_bytes);
        return false;
    }
    if (!guard_utf8_valid(value, len)) {
        snprintf(why, n, "%s is not valid UTF-8", field);
        return false;
    }
    size_t chars = guard_utf8_chars(value, len);
    if (max_chars && chars > max_chars) {
        snprintf(why, n, "%s is %zu characters, over the limit of %zu", field, chars, max_chars);
        return false;
    }
    bool blank = true;
    for (size_t i = 0; i < len && blank; i++)
        blank = value[i] == ' ' || value[i] == '\t' || value[i] == '\n' || value[i] == '\r';
    if (blank) {
        snprintf(why, n, "%s is blank", field);
        return false;
    }
    return true;
}

char *guard_comment_html(const char *text)
{
    size_t len = strlen(text), cap = len * 6 + 8;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t k = 0;
    memcpy(out, "<p>", 3);
    k = 3;
    for (size_t i = 0; i < len; i++) {
        const char *rep = NULL;
        switch (text[i]) {
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '&': rep = "&amp;"; break;
        case '"': rep = "&quot;"; break;
        case '\n': rep = "<br>"; break;
        default: break;
        }
        if (rep) {
            size_t rl = strlen(rep);
            memcpy(out + k, rep, rl);
            k += rl;
        } else {
            out[k++] = text[i];
        }
    }
    memcpy(out + k, "</p>", 5);
    return out;
}

static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

char *guard_plane_state_body(const char *state_id)
{
    return dump(json_pack("{s:s}", "state", state_id));
}

char *guard_plane_comment_body(const char *html, const char *external_id)
{
    return dump(json_pack("{s:s, s:s, s:s}", "comment_html", html, "external_id", external_id,
                          "external_source", "orch"));
}

char *guard_telegram_body(const char *chat_id, const char *text)
{
    return dump(json_pack("{s:s, s:s, s:b}", "chat_id", chat_id, "text", text,
                          "disable_web_page_preview", 1));
}

static bool copy_str(json_t *v, char *out, size_t n)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) >= n)
        return false;
    snprintf(out, n, "%s", s);
    return true;
}

bool guard_plane_id(const char *body, char *out, size_t n)
{
    json_t *o = json_loads(body ? body : "", 0, NULL);
    bool ok = o && copy_str(json_object_get(o, "id"), out, n);
    json_decref(o);
    return ok;
}

bool guard_plane_state_by_name(const char *body, const char *name, char *out, size_t n)
{
    json_t *o = json_loads(body ? body : "", 0, NULL);
    json_t *list = json_is_array(o) ? o : json_object_get(o, "results");
    bool ok = false;
    size_t i;
    json_t *st;
    json_array_foreach(list, i, st)
    {
        const char *nm = json_string_value(json_object_get(st, "name"));
        if (nm && strcasecmp(nm, name) == 0) {
            ok = copy_str(json_object_get(st, "id"), out, n);
            break;
        }
    }
    json_decref(o);
    return ok;
}

void guard_telegram_parse(const char *body, guard_tg_answer *a)
{
    memset(a, 0, sizeof *a);
    a->retry_after_s = -1;
    json_t *o = json_loads(body ? body : "", 0, NULL);
    if (!o)
        return;
    a->ok = json_is_true(json_object_get(o, "ok"));
    json_t *mid = json_object_get(json_object_get(o, "result"), "message_id");
    if (json_is_integer(mid))
        a->message_id = json_integer_value(mid);
    json_t *ra = json_object_get(json_object_get(o, "parameters"), "retry_after");
    if (json_is_integer(ra) && json_integer_value(ra) >= 0)
        a->retry_after_s = json_integer_value(ra);
    const char *d = json_string_value(json_object_get(o, "description"));
    if (d)
        snprintf(a->description, sizeof a->description, "%s", d);
    json_decref(o);
}

guard_outcome guard_classify(orch_err err, long status)
{
    if (err == ORCH_ETIMEDOUT)
        return GUARD_UP_TIMEOUT;
    if (err == ORCH_EINVAL)
        return GUARD_UP_REFUSED;
    if (err)
        return GUARD_UP_TRANSPORT;
    if (status >= 200 && status < 300)
        return GUARD_UP_OK;
    if (status == 429)
        return GUARD_UP_RATE_LIMITED;
    if (status >= 400 && status < 500)
        return GUARD_UP_CLIENT_ERROR;
    return GUARD_UP_SERVER_ERROR; /* 5xx, and 1xx/3xx: redirects are not followed */
}

int guard_outcome_code(guard_outcome o)
{
    switch (o) {
    case GUARD_UP_OK: return ORCH_CODE_OK;
    case GUARD_UP_CLIENT_ERROR: return ORCH_CODE_FAILED_PRECONDITION;
    case GUARD_UP_RATE_LIMITED: return ORCH_CODE_RESOURCE_EXHAUSTED;
    case GUARD_UP_TIMEOUT: return ORCH_CODE_DEADLINE_EXCEEDED;
    case GUARD_UP_REFUSED: return ORCH_CODE_PERMISSION_DENIED;
    case GUARD_UP_SERVER_ERROR:
    case GUARD_UP_TRANSPORT:
    case GUARD_UP_NKINDS: break;
    }
    return ORCH_CODE_UNAVAILABLE;
}

void guard_scrub(char *s, const char *secret)
{
    size_t sl = secret ? strlen(secret) : 0;
    if (!s || sl < 3)
        return; /* the text never grows: "***" replaces at least 3 bytes */
    for (char *p = strstr(s, secret); p; p = strstr(p, secret)) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + sl, strlen(p + sl) + 1);
        p += 3;
    }
}
