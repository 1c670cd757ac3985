/*
 * stage_intents.h - step 4 of AdvanceStage (stage_intents.c): the
 * side-effect intents of an edge, claimed in a statement that checks the
 * lease epoch, run or resolved by their claimer alone, their outcome
 * recorded; and, before a rollback or cancel, the resolution of the cycle's
 * intents whose outcome is unknown. Whether an existing intent may be taken
 * over is stage_logic_may_take_over() (stage_logic.h).
 *
 * Threading: any caller of the engine; each call checks out its own
 * connections. Ownership: every pointer argument is borrowed for the call.
 */
#ifndef ORCH_STAGE_INTENTS_H
#define ORCH_STAGE_INTENTS_H

#include "stage_effects.h"
#include "stage_engine.h"

/* An effect's ok outcome left to the stage write, which records it in its
 * own statement (stage_cas.outcome): the intent `id` claimed under `epoch`
 * and the image digest the effect answered ("" none). */
typedef struct stage_outcome_later {
    bool pending;
    int64_t id;
    uint64_t epoch;
    char digest[128];
} stage_outcome_later;

/* Step 4 for one effect `call->effect` of `call->transition` (call->resolve
 * is ignored: the intent row decides it): claims its intent under
 * call->epoch (0: no lease), runs or resolves it if this call owns it,
 * records the outcome in `ae`. With `later` (the edge's last effect under a
 * lease), an ok outcome is not recorded here but left in *later for the
 * stage write, unless the crash-after-effect fault point is armed, which
 * needs the two writes apart. STAGE_RESULT_ADVANCED to go on (done now or
 * before), else the result that ends the call (`f` set for
 * STAGE_RESULT_ABORTED / STAGE_RESULT_ERROR). */
stage_result stage_run_effect(stage_svc *ss, const stage_effect_call *call,
                              stage_advance_effect *ae, stage_outcome_later *later,
                              stage_failure *f);

/* Fails `f` for an effect whose outcome was not recorded because its
 * intent was taken over while it ran (LOST_RACE); returns f->err. */
orch_err stage_fail_taken_over(stage_failure *f, stage_effect_id effect, const char *work_item);

/* Before a rollback or cancel of `t` to `to` under out->epoch: each effect
 * of t's cycle whose outcome is unknown (or pending under a claim that may
 * be taken over) is resolved, starting nothing the first attempt did not,
 * and recorded (listed in out->effects while there is room). ORCH_OK when
 * none is left unsettled; else out->fail.err with, in out->fail,
 * STAGE_FAIL_UNRESOLVED_EFFECT naming the effect that stays unknown or in
 * progress, and why (STAGE_FAIL_DATABASE, same message, when a database
 * error stopped finding it out). */
orch_err stage_settle_unresolved(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                                 stage_outcome *out) ORCH_NODISCARD;

#endif
