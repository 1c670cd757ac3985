/*
 * verdict.c - machine-verdict lines (`key: VALUE`), see verdict.h.
 */
#include "orch/verdict.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

void orch_verdicts_init(orch_verdicts *vs)
{
    memset(vs, 0, sizeof *vs);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static bool key_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

bool orch_verdict_parse_line(const char *line, size_t len, orch_verdict *out)
{
    size_t b = 0, e = len;
    while (b < e && is_space(line[b]))
        b++;
    while (e > b && is_space(line[e - 1]))
        e--;
    const char *colon = b < e ? memchr(line + b, ':', e - b) : NULL;
    if (!colon)
        return false;
    size_t kb = b, ke = (size_t)(colon - line);
    while (ke > kb && is_space(line[ke - 1]))
        ke--;
    if (ke == kb || ke - kb >= ORCH_VERDICT_KEY_MAX || !isalpha((unsigned char)line[kb]))
        return false;
    for (size_t i = kb; i < ke; i++)
        if (!key_char(line[i]))
            return false;
    size_t vb = (size_t)(colon - line) + 1;
    while (vb < e && is_space(line[vb]))
        vb++;
    if (vb == e || e - vb >= ORCH_VERDICT_VALUE_MAX)
        return false;
    for (size_t i = vb; i < e; i++)
        if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
            return false;
    for (size_t i = kb; i < ke; i++)
        out->key[i - kb] = (char)tolower((unsigned char)line[i]);
    out->key[ke - kb] = '\0';
    memcpy(out->value, line + vb, e - vb);
    out->value[e - vb] = '\0';
    return true;
}

void orch_verdicts_set(orch_verdicts *vs, const orch_verdict *v)
{
    for (size_t i = 0; i < vs->n; i++) {
        if (strcmp(vs->v[i].key, v->key) == 0) {
            vs->v[i] = *v;
            return;
        }
    }
    if (vs->n == ORCH_VERDICT_MAX) {
        vs->dropped++;
        return;
    }
    vs->v[vs->n++] = *v;
}

size_t orch_verdicts_parse(orch_verdicts *vs, const char *text, size_t len)
{
    size_t seen = 0, pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        orch_verdict v;
        if (orch_verdict_parse_line(text + pos, end - pos, &v)) {
            orch_verdicts_set(vs, &v);
            seen++;
        }
        pos = end + 1;
    }
    return seen;
}

const char *orch_verdicts_get(const orch_verdicts *vs, const char *key)
{
    for (size_t i = 0; i < vs->n; i++)
        if (strcasecmp(vs->v[i].key, key) == 0)
            return vs->v[i].value;
    return NULL;
}
