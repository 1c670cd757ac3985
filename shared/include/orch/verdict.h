/*
 * verdict.h - the machine-verdict line parser shared by the services.
 *
 * Agents report results as `key: VALUE` lines (DESIGN.md section 4). The
 * parser reads a text and keeps, per key, the last value seen:
 *   - keys are matched case-insensitively and stored in lower case; a key is
 *     1 to ORCH_VERDICT_KEY_MAX-1 bytes of [A-Za-z0-9_.-], starting with a
 *     letter;
 *   - whitespace around the key and the value is trimmed; the value is the
 *     rest of the line after the first ':' and must not be empty;
 *   - a later line with the same key replaces the earlier value;
 *   - every other line (prose, JSON, a key with spaces, an over-long value)
 *     is ignored, never an error.
 * Pure and thread-safe; no allocation: results live in the caller's struct.
 */
#ifndef ORCH_VERDICT_H
#define ORCH_VERDICT_H

#include <stdbool.h>
#include <stddef.h>

#define ORCH_VERDICT_KEY_MAX   64
#define ORCH_VERDICT_VALUE_MAX 256
#define ORCH_VERDICT_MAX       32 /* distinct keys kept; later new keys are dropped */

typedef struct orch_verdict {
    char key[ORCH_VERDICT_KEY_MAX];
    char value[ORCH_VERDICT_VALUE_MAX];
} orch_verdict;

typedef struct orch_verdicts {
    orch_verdict v[ORCH_VERDICT_MAX];
    size_t n;
    size_t dropped; /* distinct keys beyond ORCH_VERDICT_MAX */
} orch_verdicts;

/* Empties `vs`. */
void orch_verdicts_init(orch_verdicts *vs);

/* Parses one line (without or with its '\n'; `len` bytes, need not be
 * NUL-terminated) into key and value. Returns false for a line that is not
 * a verdict line; `key` and `value` are written only on true. */
bool orch_verdict_parse_line(const char *line, size_t len, orch_verdict *out);

/* Parses every line of `text` (`len` bytes) into `vs`, merging with what it
 * holds (last duplicate wins). Returns the number of verdict lines seen. */
size_t orch_verdicts_parse(orch_verdicts *vs, const char *text, size_t len);

/* Sets `key` (already lower case) to `value`, replacing an earlier value. */
void orch_verdicts_set(orch_verdicts *vs, const orch_verdict *v);

/* The value of `key` (case-insensitive), borrowed from `vs`, or NULL. */
const char *orch_verdicts_get(const orch_verdicts *vs, const char *key);

#endif
