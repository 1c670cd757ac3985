/*
 * fuzz_verdict.c - libFuzzer target: the machine-verdict line parser
 * (orch/verdict.h). Input: any text; parsed whole, line by line, and as a
 * key/value pair split at the first NUL or ':'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orch/verdict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every kept verdict satisfies the header's promises. */
static void check_set(const orch_verdicts *vs)
{
    if (vs->n > ORCH_VERDICTS_MAX)
        abort();
    for (size_t i = 0; i < vs->n; i++) {
        const orch_verdict *v = &vs->v[i];
        size_t kl = strnlen(v->key, sizeof v->key), vl = strnlen(v->value, sizeof v->value);
        if (kl == 0 || kl >= sizeof v->key || vl == 0 || vl >= sizeof v->value)
            abort();
        if (!orch_verdict_key_valid(v->key))
            abort();
        if (orch_verdicts_get(vs, v->key) != v->value)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    orch_verdicts vs;
    orch_verdicts_init(&vs);
    orch_verdicts_parse(&vs, text, size);
    check_set(&vs);

    orch_verdict one;
    if (orch_verdict_parse_line(text, size, &one)) {
        if (!orch_verdict_key_valid(one.key))
            abort();
        /* A parsed line can be set again with the same result. */
        orch_verdicts again;
        orch_verdicts_init(&again);
        if (!orch_verdicts_set(&again, one.key, one.value))
            abort();
        if (strcmp(orch_verdicts_get(&again, one.key), one.value) != 0)
            abort();
    }

    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *sep = strchr(copy, ':');
    if (sep) {
        *sep = '\0';
        (void)orch_verdicts_set(&vs, copy, sep + 1);
        check_set(&vs);
    }
    (void)orch_verdict_key_valid(copy);
    free(copy);
    return 0;
}
