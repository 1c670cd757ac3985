/*
 * stage_svc.h - stage-service's state shared by its RPC handlers, HTTP
 * routes, the engine and the background loop (internal to the service).
 *
 * Threading: read-only after start except the release-retry list (mutex),
 * the call sequence and metrics (atomics).
 */
#ifndef ORCH_STAGE_SVC_H
#define ORCH_STAGE_SVC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "orch/v1/lease.pb-c.h"
#include "lease_logic.h"
#include "orch/metrics.h"
#include "orch/rpc.h"
#include "orch/svc.h"
#include "orch/ticker.h"
#include "stage_effects.h"
#include "stage_fault.h"
#include "stage_inbox.h"
#include "stage_pipeline.h"
#include "stage_store.h"

#define STAGE_RETRY_MAX 256 /* lease releases waiting for lease-service */

typedef struct stage_release_retry {
    char work_item[STAGE_MAX_FIELD + 1];
    uint64_t epoch;    /* 0: an Acquire whose answer was lost, released by owner */
    char instance[64]; /* epoch 0: the owner instance that Acquire named */
    /* epoch 0: "that owner holds nothing" settles the entry only after this
     * (monotonic ms): until then the lost Acquire may still be in flight. */
    uint64_t settle_after_ms;
} stage_release_retry;

#define STAGE_EDGE_LABELS_MAX 32

typedef struct stage_svc {
    orch_db_pool *db;
    const orch_ident *me;
    orch_rpc_client *lease; /* lease-service */
    lease_scope scope;
    uint32_t lease_timeout_ms;
    stage_effects_cfg effects;
    size_t max_evidence;
    const char *operator_token;
    const char *gitea_secret, *plane_secret;
    const char *plane_project_key; /* work item prefix of Plane issues */
    int64_t reconcile_interval_ms;
    int reconcile_batch;
    int64_t reconcile_cursor; /* last task id of the previous pass (reconciler thread) */
    stage_fault fault;        /* armed fault point (stage_fault.h); test builds only */

    _Atomic uint64_t call_seq;

    pthread_mutex_t retry_mu;
    stage_release_retry retries[STAGE_RETRY_MAX];
    int nretries;

    orch_counter *m_transitions; /* by edge and result */
    orch_counter *m_effects;     /* by effect and outcome */
    /* Label values of the edge label: "review->testing" for each pipeline
     * edge in table order, then "other" (a request naming no edge). */
    const char *edge_labels[STAGE_EDGE_LABELS_MAX];
    char edge_label_buf[STAGE_EDGE_LABELS_MAX][32];
    size_t nedge_labels;
    orch_histogram *m_advance_latency;

    char inbox_claimer[400]; /* host/pid/instance: who claims inbox rows */

    /* stage_bg.c's periodic threads (ticker.h), NULL when not running. */
    orch_ticker *retry_ticker, *reconcile_ticker, *inbox_ticker;
    uint64_t next_reconcile_ms; /* reconciler thread only */
} stage_svc;

/* Transition results and effect outcomes, the metrics' label values. */
enum {
    STAGE_RESULT_ADVANCED,
    STAGE_RESULT_DEFERRED,
    STAGE_RESULT_GATE_FAILED,
    STAGE_RESULT_ROLLED_BACK,
    STAGE_RESULT_ABORTED,
    STAGE_RESULT_EFFECT_FAILED,
    STAGE_RESULT_EFFECT_UNKNOWN,
    STAGE_RESULT_ERROR,
    STAGE_RESULT_COUNT
};
extern const char *const stage_transition_results[STAGE_RESULT_COUNT];

/* Counts one transition attempt of `ar` (expected_from -> to) with
 * `result` (TR_*) in orch_stage_transitions_total. */
void stage_count_transition(stage_svc *ss, const char *from, const char *to, int result);

/* ---- the engine (stage_engine.c) ---------------------------------------- */

#define STAGE_ADV_MAX_FAILS   8
#define STAGE_ADV_MAX_EFFECTS STAGE_EDGE_MAX_EFFECTS

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

typedef struct stage_advance_res {
    int result; /* TR_* */
    stage_task task;
    uint64_t epoch;
    Orch__V1__Lease *holder; /* DEFERRED: owned, free with protobuf_c_message_free_unpacked */
    int holder_liveness;
    char fails[STAGE_ADV_MAX_FAILS][STAGE_GATE_WHY_MAX];
    size_t nfails;
    stage_advance_effect effects[STAGE_ADV_MAX_EFFECTS];
    int neffects;
    /* The call did something durable (recorded verdicts, claimed an intent,
     * ran an effect): a failure after it is answered UNKNOWN, never a code
     * the RPC layer forgets (docs/rpc.md, section 6). */
    bool durable;
} stage_advance_res;

/* Reads what the gates of edge `e` see for task `t`: the verdicts recorded
 * for `e` in t's cycle into *ev (gi->ev points at it), the repo's baseline,
 * and the cycle's own pull request (stage_pipeline_cycle_pr). */
orch_err stage_gate_input_read(orch_db_conn *c, uint64_t dl, const stage_task *t,
                               const stage_edge *e, orch_verdicts *ev,
                               stage_gate_input *gi) ORCH_NODISCARD;

/* "what: <error>" into `msg`; the code for `err` (a lost commit answer:
 * UNAVAILABLE, which stage_advance turns into UNKNOWN once anything
 * durable happened). */
orch_code stage_db_fail(orch_err err, const char *what, char *msg, size_t mn);

/* Step 4 for one effect `eff` of `transition` (stage_intents.c): claims its
 * intent under `epoch` (0: no lease), runs or resolves it if this call owns
 * it, records the outcome in `ae`. STAGE_RESULT_ADVANCED to go on (done now or
 * before), else the result that ends the call (*code and `msg` set for
 * STAGE_RESULT_ABORTED / STAGE_RESULT_ERROR). `ev` and `t` are borrowed. */
int stage_run_effect(stage_svc *ss, uint64_t dl, const stage_task *t, const char *transition,
                     stage_effect_id eff, uint64_t epoch, const orch_verdicts *ev,
                     stage_advance_effect *ae, char *msg, size_t mn, orch_code *code);

/* Before a rollback or cancel of `t` to `to` under res->epoch: each effect
 * of t's cycle whose outcome is unknown (or pending under a claim that may
 * be taken over) is resolved, starting nothing the first attempt did not,
 * and recorded (listed in res->effects while there is room). OK when none
 * is left unsettled; FAILED_PRECONDITION naming the effect that stays
 * unknown or in progress, and why; a database error's code otherwise. */
orch_code stage_settle_unresolved(stage_svc *ss, uint64_t dl, const stage_task *t, stage_id to,
                                  stage_advance_res *res, char *msg, size_t mn);

/* Moves the item along edge expected_from -> to as described in
 * docs/adr/0003: lease, gates, intents and effects, CAS, release. Returns
 * OK with res->result, or an error code with `msg` (e.g. NOT_FOUND,
 * FAILED_PRECONDITION naming the actual stage or the effect a rollback or
 * cancel would abandon whose outcome could not be found out, ABORTED for a lost race, UNAVAILABLE
 * when nothing durable happened, UNKNOWN when something durable did and
 * the call then failed or lost its commit's answer). */
orch_code stage_advance(stage_svc *ss, const stage_advance_req *req, uint64_t deadline,
                        stage_advance_res *res, char *msg, size_t msg_len);
void stage_advance_res_free(stage_advance_res *res);

/* Queues `e` (copied) for the release thread; when the list is full it is
 * logged and left to lease-service's ceiling. */
void stage_release_queue(stage_svc *ss, const stage_release_retry *e);
/* Queues a lease release that could not reach lease-service. */
void stage_release_later(stage_svc *ss, const char *work_item, uint64_t epoch);
/* Queues the release of a lease this process may hold without knowing its
 * epoch: an Acquire as owner `instance` whose answer was lost (it may have
 * been granted). It is released by owner, never re-acquired, and the entry
 * is kept until the lost Acquire can no longer be granted. */
void stage_release_owned_later(stage_svc *ss, const char *work_item, const char *instance);
/* Fills an Owner message for this process with `instance` (borrowed). */
void stage_owner_msg(const stage_svc *ss, const char *instance, Orch__V1__Owner *m);

/* ---- the lease block of the queue (stage_queue.c) ----------------------- */

typedef struct stage_queue {
    Orch__V1__ListLeasesReply *reply; /* owned */
    Orch__V1__Lease **lease;          /* per task: its held lease or NULL (borrowed) */
    Orch__V1__Liveness *liveness;     /* per task */
    char why[300];                    /* on error */
} stage_queue;

/* Asks lease-service for the held leases (judged) and matches them to the
 * `n` tasks. An error code with q->why if lease-service cannot answer. */
orch_code stage_queue_leases(stage_svc *ss, const stage_task *ts, int n, uint64_t deadline,
                             stage_queue *q);
void stage_queue_free(stage_queue *q);

/* ---- the webhook inbox (stage_inbox.c) ----------------------------------- */

typedef struct stage_inbox_result {
    bool done;        /* settled; false: put back, due again in retry_ms */
    char outcome[16]; /* applied | superseded | gate_failed | rejected, or
                       * the attempt's result: deferred, effect_failed... */
    char detail[700];
    int64_t retry_ms;
    int tr;         /* TR_* of the last engine call; -1: none ran */
    orch_code code; /* of the last engine call */
    stage_id stage; /* the item's stage after the attempt */
    uint64_t epoch;
    char holder[STAGE_MAX_FIELD + 1]; /* deferred: the lease holder's actor */
} stage_inbox_result;

/* Applies inbox row `row`, which this process claimed, through the engine
 * and settles it (done, or pending again with a backoff). */
void stage_inbox_apply(stage_svc *ss, const stage_inbox_row *row, stage_inbox_result *res);
/* Claims and applies the events that are due (bounded); returns how many. */
int stage_inbox_pass(stage_svc *ss);
/* The inbox ticker's pass (`arg` is the stage_svc): stage_inbox_pass(),
 * every half second; always true. */
bool stage_inbox_tick(void *arg);
/* How old a claim must be before another claimer takes it over. */
int64_t stage_inbox_stale_ms(const stage_svc *ss);

/* ---- RPC, HTTP, background ---------------------------------------------- */

orch_err stage_rpc_register(orch_service *svc, stage_svc *ss) ORCH_NODISCARD;
orch_err stage_http_register(orch_service *svc, stage_svc *ss) ORCH_NODISCARD;
orch_err stage_bg_start(stage_svc *ss) ORCH_NODISCARD;
/* One reconciler pass (the background thread runs it every interval). */
void stage_reconcile_pass(stage_svc *ss);
void stage_bg_stop(stage_svc *ss);

#endif
