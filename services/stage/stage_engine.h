/*
 * stage_engine.h - AdvanceStage (stage_engine.c): one transition attempt in
 * the order docs/adr/0003 fixes, and the lease-service calls around it.
 *
 * Threading: any RPC worker, the HTTP workers and the background threads
 * call stage_advance() at once; each call checks out its own connections.
 * Errors: orch_err, and a stage_outcome: its result, or the kind
 * (stage_failure_kind, stage_logic.h) and the message of the failure that
 * ended the call. The engine decides no RPC code or HTTP status:
 * stage_rpc.c answers stage_failure_code() of the failure, and the inbox
 * settles an event by its kind (stage_logic_inbox_settle). Ownership: the request is borrowed for
 * the call; the outcome owns the lease holder it may carry (free it with stage_outcome_free).
 */
#ifndef ORCH_STAGE_ENGINE_H
#define ORCH_STAGE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "orch/v1/lease.pb-c.h"
#include "stage_svc.h"

#define STAGE_ADV_MAX_FAILS   8
#define STAGE_ADV_MAX_EFFECTS STAGE_EDGE_MAX_EFFECTS
#define STAGE_MSG_MAX         700

/* Counts one transition attempt (from -> to, stage names, either may be
 * NULL) with `result` in orch_stage_transitions_total. */
void stage_count_transition(stage_svc *ss, const char *from, const char *to, stage_result result);

typedef struct stage_advance_req {
    const char *work_item;
    const char *expected_from, *to;
    const char *actor;
    const char *reason;            /* rollback / cancel reason (history) */
    const orch_verdicts *evidence; /* may be NULL */
} stage_advance_req;

typedef struct stage_advance_effect {
    stage_effect_id effect;
    char outcome[16];
    uint64_t epoch;
    char detail[512];
    bool ran;     /* this call ran (or resolved) it */
    bool claimed; /* this call claimed (or took over) its intent */
} stage_advance_effect;

/* Why a call ended without a result: STAGE_FAIL_NONE while it has not. */
typedef struct stage_failure {
    stage_failure_kind kind;
    orch_err err; /* the library error behind it (the database's, the lease
                   * client's), else ORCH_EINVAL (ORCH_ENOTFOUND: no task) */
    char msg[STAGE_MSG_MAX];
} stage_failure;

/* What one call of stage_advance() came to. */
typedef struct stage_outcome {
    stage_result result; /* the metric's label; the answer when fail.kind is NONE */
    stage_failure fail;
    stage_task task;
    uint64_t epoch;
    Orch__V1__Lease *holder; /* DEFERRED: owned, free with stage_outcome_free */
    int holder_liveness;
    char fails[STAGE_ADV_MAX_FAILS][STAGE_GATE_WHY_MAX];
    size_t nfails;
    stage_advance_effect effects[STAGE_ADV_MAX_EFFECTS];
    int neffects;
    /* The call did something durable (recorded verdicts, claimed an intent,
     * ran an effect): a failure after it is answered UNKNOWN, never a code
     * the RPC layer forgets (docs/rpc.md, section 6). */
    bool durable;
    /* The stage write released the lease in its own statement (no Release
     * RPC is sent). */
    bool lease_released;
} stage_outcome;

/* Fails `f` with `kind` (one the engine decides itself, not caused by a
 * library error) and the message; returns f->err (ORCH_EINVAL, or
 * ORCH_ENOTFOUND for STAGE_FAIL_NO_TASK). */
orch_err stage_fail(stage_failure *f, stage_failure_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fails `f` with `kind` caused by library error `err` (not ORCH_OK) and the
 * message; returns `err`. */
orch_err stage_fail_by(stage_failure *f, stage_failure_kind kind, orch_err err, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

/* Fails `f` with STAGE_FAIL_DATABASE, cause `err` and "what: <error>" (a
 * lost commit answer is turned into UNKNOWN_AFTER_DURABLE by stage_advance
 * once anything durable happened); returns `err`. */
orch_err stage_db_fail(stage_failure *f, orch_err err, const char *what);

/* Reads what the gates of edge `e` see for task `t`: the verdicts recorded
 * for `e` in t's cycle into *ev (gi->ev points at it), the repo's baseline,
 * and the cycle's own pull request (stage_pipeline_cycle_pr). */
orch_err stage_gate_input_read(orch_db_conn *c, uint64_t dl, const stage_task *t,
                               const stage_edge *e, orch_verdicts *ev,
                               stage_gate_input *gi) ORCH_NODISCARD;

/* Moves the item along edge expected_from -> to as described in
 * docs/adr/0003: lease, gates, intents and effects, CAS, release. Fills
 * *out and returns ORCH_OK with out->result, or out->fail.err with the
 * failure that ended the call in out->fail (e.g. NO_TASK, WRONG_STAGE
 * naming the actual stage, UNRESOLVED_EFFECT naming the effect a rollback
 * or cancel would abandon, LOST_RACE, LEASE_UNAVAILABLE or DATABASE when
 * nothing durable happened, WRITE_UNKNOWN or UNKNOWN_AFTER_DURABLE when
 * something durable did and the call then failed or lost its commit's
 * answer). */
orch_err stage_advance(stage_svc *ss, const stage_advance_req *req, uint64_t deadline,
                       stage_outcome *out) ORCH_NODISCARD;
/* Frees what `out` owns; a zeroed or freed outcome is fine. */
void stage_outcome_free(stage_outcome *out);

#endif
