/*
 * verdict.h - machine-verdict lines: the one way an agent's judgment reaches
 * control flow.
 *
 * An agent reports results as lines "key: VALUE", one a line, anywhere in its
 * output. A key is a letter followed by letters, digits or '_', at most 63
 * characters, matched case-insensitively (stored in lower case); whitespace
 * around key and value is ignored, as is a leading "- " or "* " list marker.
 * The value is the rest of the line, 1..255 bytes of printable UTF-8/ASCII.
 * When a key repeats, the last line wins. Every other line (prose, garbage,
 * an over-long value) is ignored and counted. Pure; thread-safe.
 */
#ifndef ORCH_VERDICT_H
#define ORCH_VERDICT_H

#include <stdbool.h>
#include <stddef.h>

#define ORCH_VERDICT_KEY_MAX   64  /* bytes of a key, NUL included */
#define ORCH_VERDICT_VALUE_MAX 256 /* bytes of a value, NUL included */
#define ORCH_VERDICTS_MAX      64  /* distinct keys kept from one text */

typedef struct orch_verdict {
    char key[ORCH_VERDICT_KEY_MAX];
    char value[ORCH_VERDICT_VALUE_MAX];
} orch_verdict;

typedef struct orch_verdicts {
    orch_verdict v[ORCH_VERDICTS_MAX];
    size_t n;       /* distinct keys, in order of first appearance */
    size_t ignored; /* lines that were not verdicts (blank lines excluded) */
    size_t dropped; /* verdict lines lost because ORCH_VERDICTS_MAX was reached */
} orch_verdicts;

void orch_verdicts_init(orch_verdicts *vs);

/* Parses one line (`len` bytes, with or without its '\n', need not be
 * NUL-terminated) into `out` (key in lower case); false, `out` unchanged,
 * if it is not a verdict line. */
bool orch_verdict_parse_line(const char *line, size_t len, orch_verdict *out);

/* Adds the verdict lines of `text` (`len` bytes, need not be NUL-terminated)
 * to `vs`; later values replace earlier ones. */
void orch_verdicts_parse(orch_verdicts *vs, const char *text, size_t len);

/* Sets one verdict after the same checks as a parsed line (the key is
 * lower-cased, both are trimmed). False, with `vs` unchanged, if either is
 * not valid or the set is full. */
bool orch_verdicts_set(orch_verdicts *vs, const char *key, const char *value);

/* The value of `key` (lower case) or NULL. */
const char *orch_verdicts_get(const orch_verdicts *vs, const char *key);

/* Whether `key` is a valid, already lower-case key. */
bool orch_verdict_key_valid(const char *key);

#endif
