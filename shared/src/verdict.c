/*
 * verdict.c - parser of machine-verdict lines (see verdict.h).
 */
#include "orch/verdict.h"

#include <string.h>

void orch_verdicts_init(orch_verdicts *vs)
{
    memset(vs, 0, sizeof *vs);
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_key_char(char c)
{
    return is_alpha(c) || (c >= '0' && c <= '9') || c == '_';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool orch_verdict_key_valid(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n >= ORCH_VERDICT_KEY_MAX || !is_alpha(key[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_key_char(key[i]) || (key[i] >= 'A' && key[i] <= 'Z'))
            return false;
    return true;
}

/* Printable: no ASCII control characters (bytes >= 0x80 are accepted; the
 * RPC layer has already rejected invalid UTF-8). */
static bool value_ok(const char *v, size_t n)
{
    if (n == 0 || n >= ORCH_VERDICT_VALUE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Stores key (k, kn: already checked) = value (v, vn: already checked). */
static bool put(orch_verdicts *vs, const char *k, size_t kn, const char *v, size_t vn)
{
    char key[ORCH_VERDICT_KEY_MAX];
    for (size_t i = 0; i < kn; i++)
        key[i] = lower(k[i]);
    key[kn] = '\0';
    orch_verdict *slot = NULL;
    for (size_t i = 0; i < vs->n; i++)
        if (strcmp(vs->v[i].key, key) == 0)
            slot = &vs->v[i];
    if (!slot) {
        if (vs->n == ORCH_VERDICTS_MAX)
            return false;
        slot = &vs->v[vs->n++];
        memcpy(slot->key, key, kn + 1);
    }
    memcpy(slot->value, v, vn);
    slot->value[vn] = '\0';
    return true;
}

/* Splits a line [p, end) (without its newline) into key and value spans;
 * false if it is not a verdict line. */
static bool split_line(const char *p, const char *end, const char **k, size_t *kn, const char **v,
                       size_t *vn)
{
    while (p < end && is_space(*p))
        p++;
    while (end > p && (is_space(end[-1]) || end[-1] == '\n'))
        end--;
    if (end - p >= 2 && (p[0] == '-' || p[0] == '*') && p[1] == ' ') {
        p += 2;
        while (p < end && is_space(*p))
            p++;
    }
    *k = p;
    if (p == end || !is_alpha(*p))
        return false;
    while (p < end && is_key_char(*p))
        p++;
    *kn = (size_t)(p - *k);
    if (*kn >= ORCH_VERDICT_KEY_MAX)
        return false;
    while (p < end && is_space(*p))
        p++;
    if (p == end || *p != ':')
        return false;
    p++;
    while (p < end && is_space(*p))
        p++;
    *v = p;
    *vn = (size_t)(end - p);
    return value_ok(p, *vn);
}

/* Parses one line [p, end). 1: verdict stored, 0: not a verdict, -1: a
 * verdict that did not fit. */
static int parse_line(orch_verdicts *vs, const char *p, const char *end)
{
    const char *k, *v;
    size_t kn, vn;
    if (!split_line(p, end, &k, &kn, &v, &vn))
        return 0;
    return put(vs, k, kn, v, vn) ? 1 : -1;
}

bool orch_verdict_parse_line(const char *line, size_t len, orch_verdict *out)
{
    const char *k, *v;
    size_t kn, vn;
    const char *nl = memchr(line, '\n', len);
    if (!split_line(line, nl ? nl : line + len, &k, &kn, &v, &vn))
        return false;
    for (size_t i = 0; i < kn; i++)
        out->key[i] = lower(k[i]);
    out->key[kn] = '\0';
    memcpy(out->value, v, vn);
    out->value[vn] = '\0';
    return true;
}

void orch_verdicts_parse(orch_verdicts *vs, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *q = p;
        while (q < eol && is_space(*q))
            q++;
        if (q < eol) {
            int r = parse_line(vs, p, eol);
            if (r == 0)
                vs->ignored++;
            else if (r < 0)
                vs->dropped++;
        }
        p = nl ? nl + 1 : end;
    }
}

bool orch_verdicts_set(orch_verdicts *vs, const char *key, const char *value)
{
    while (is_space(*key))
        key++;
    while (is_space(*value))
        value++;
    size_t kn = strlen(key), vn = strlen(value);
    while (kn > 0 && is_space(key[kn - 1]))
        kn--;
    while (vn > 0 && is_space(value[vn - 1]))
        vn--;
    if (kn == 0 || kn >= ORCH_VERDICT_KEY_MAX || !is_alpha(key[0]) || !value_ok(value, vn))
        return false;
    for (size_t i = 0; i < kn; i++)
        if (!is_key_char(key[i]))
            return false;
    return put(vs, key, kn, value, vn);
}

const char *orch_verdicts_get(const orch_verdicts *vs, const char *key)
{
    for (size_t i = 0; i < vs->n; i++)
        if (strcmp(vs->v[i].key, key) == 0)
            return vs->v[i].value;
    return NULL;
}
