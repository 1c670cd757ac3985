/*
 * stage_effects.h - the irreversible effects of a transition, as real
 * clients of the outside systems: Gitea's merge API, the coverage ratchet
 * (a conditional UPDATE), and the image-build and production-deploy hooks
 * (POSTs carrying an idempotency key and the lease epoch).
 *
 * Each effect has a run (first attempt) and a resolve (the intent exists
 * with an unknown outcome: find out or repeat only what is safe to repeat).
 * Credentials come from the configuration and never reach a log or reply.
 */
#ifndef ORCH_STAGE_EFFECTS_H
#define ORCH_STAGE_EFFECTS_H

#include <stdbool.h>
#include <stdint.h>

#include "orch/db.h"
#include "stage_pipeline.h"
#include "stage_store.h"

typedef struct effects_cfg {
    const char *gitea_url;   /* "http://127.0.0.1:3000"; "" = not configured */
    const char *gitea_token; /* secret */
    const char *merge_style; /* merge | rebase | squash */
    const char *image_hook_url;
    const char *deploy_hook_url;
    const char *hook_token; /* secret; "" = none */
    uint32_t timeout_ms;
} effects_cfg;

typedef enum effect_outcome {
    EFFECT_OK,
    EFFECT_FAILED,  /* the outside system refused for good: it did not happen */
    EFFECT_UNKNOWN, /* timeout, 5xx, lost connection: it may have happened */
    EFFECT_ERROR,   /* did not happen, for a reason that is not a verdict on the
                     * change: not configured, credentials refused, rate limited,
                     * superseded epoch; recorded failed, never rolls back */
} effect_outcome;

const char *effect_outcome_name(effect_outcome o); /* ok | failed | unknown */

typedef struct effect_call {
    effect_id effect;
    const stage_task *task;
    const char *transition; /* "review->testing" */
    uint64_t epoch;         /* 0: no lease */
    const orch_verdicts *ev;
    bool resolve;      /* the previous attempt's outcome is unknown */
    orch_db_pool *db;  /* the ratchet's statement */
    uint64_t deadline; /* monotonic ms */
} effect_call;

/* Runs (or resolves) one effect. `detail` gets a one-line account. When the
 * image build answers a digest, *digest (64+8 bytes) receives it. */
effect_outcome effect_run(const effects_cfg *cfg, const effect_call *call, char *detail,
                          size_t detail_len, char *digest, size_t digest_len);

/* The idempotency key of an effect: "<work item>/<transition>/<effect>/<cycle>". */
void effect_idempotency_key(const effect_call *call, char *out, size_t n);

#endif
