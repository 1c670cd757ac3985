/*
 * fuzz_launcher_output.c - libFuzzer target: launcher-service's scan of an
 * agent's stdout (launcher_output_scan: usage JSON lines and verdict lines).
 * Input: the agent's output.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "launcher_logic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    orch_verdicts vs;
    launcher_usage u;
    orch_verdicts_init(&vs);
    memset(&u, 0, sizeof u);
    launcher_output_scan((const char *)data, size, &vs, &u);
    if (vs.n > ORCH_VERDICTS_MAX)
        abort();
    if (strnlen(u.model, sizeof u.model) >= sizeof u.model)
        abort();
    if (!u.usage_known && (u.input_tokens || u.output_tokens))
        abort();
    for (size_t i = 0; i < vs.n; i++)
        if (!orch_verdict_key_valid(vs.v[i].key))
            abort();
    return 0;
}
