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

typedef struct stage_effects_cfg {
    const char *gitea_url;   /* "http://127.0.0.1:3000"; "" = not configured */
    const char *gitea_token; /* secret */
    const char *merge_style; /* merge | rebase | squash */
    const char *image_hook_url;
    const char *deploy_hook_url;
    const char *hook_token; /* secret; "" = none */
    uint32_t timeout_ms;
} stage_effects_cfg;

const char *stage_effect_outcome_name(stage_effect_outcome o); /* ok | failed | unknown */

typedef struct stage_effect_call {
    stage_effect_id effect;
    const stage_task *task;
    const char *transition; /* "review->testing" */
    uint64_t epoch;         /* 0: no lease */
    const orch_verdicts *ev;
    bool resolve;      /* the previous attempt's outcome is unknown */
    orch_db_pool *db;  /* the ratchet's statement */
    uint64_t deadline; /* monotonic ms */
    /* With `resolve`: only find out, never start anything the previous
     * attempt did not (before a rollback or cancel). The merge asks Gitea
     * and answers failed when the pull request is not merged; the hooks are
     * resent under the same idempotency key (the hook answers the first
     * attempt's outcome); the ratchet, idempotent, runs again. */
    bool check_only;
    /* The call's verdicts, recorded by the intent's claim (stage_intents.c;
     * NULL: none); *verdicts_recorded says whether they were. */
    const stage_evidence_write *verdicts;
    bool *verdicts_recorded;
} stage_effect_call;

/* Runs (or resolves) one effect. `detail` gets a one-line account. When the
 * image build answers a digest, *digest (64+8 bytes) receives it. */
stage_effect_outcome stage_effect_run(const stage_effects_cfg *cfg, const stage_effect_call *call,
                                      char *detail, size_t detail_len, char *digest,
                                      size_t digest_len);

/* The time bounds of one claim of an intent (docs/architecture/pipeline.md,
 * "Effects"). A claimer starts the effect at most STAGE_EFFECT_START_WINDOW_MS
 * after it sent its claim, or not at all; the effect then ends within
 * stage_effect_max_ms(); its outcome is recorded within STAGE_EFFECT_RECORD_BUDGET_MS
 * (the database client's slack included) or not at all. */
#define STAGE_EFFECT_START_WINDOW_MS    1000
#define STAGE_EFFECT_RECORD_BUDGET_MS   10000
#define STAGE_EFFECT_RECORD_SLACK_MS    1000 /* db.c's CLIENT_SLACK_MS */
#define STAGE_EFFECT_TAKEOVER_MARGIN_MS 2000

/* The longest one run or resolve of `e` takes with `cfg`: every request it
 * may send (the merge: is-merged check, merge, check after 405/409) at the
 * full effect timeout each; the ratchet, its statement's own budget. */
uint64_t stage_effect_max_ms(const stage_effects_cfg *cfg, stage_effect_id e);

/* The age of a lease-less claim of `e` (database clock, since the claim)
 * past which its claimer certainly no longer works on it: start window +
 * stage_effect_max_ms() + the record budget and slack + a margin. Only then may
 * another caller take the claim over. */
uint64_t stage_effect_claim_expiry_ms(const stage_effects_cfg *cfg, stage_effect_id e);

/* The idempotency key of an effect: "<work item>/<transition>/<effect>/<cycle>". */
void stage_effect_idempotency_key(const stage_effect_call *call, char *out, size_t n);

#endif
