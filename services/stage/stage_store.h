/*
 * stage_store.h - every SQL statement of stage-service.
 *
 * The stage column is written in one place only, stage_store_cas(): an
 * UPDATE conditional on the expected stage and, when a lease is held, on
 * that lease epoch being the live grant (the lease row is read FOR SHARE in
 * the same statement, so a reclaim cannot slip between check and write).
 * Side-effect intents are claimed the same way. Functions take a checked-out
 * connection and a deadline and return orch_err from db.h.
 */
#ifndef ORCH_STAGE_STORE_H
#define ORCH_STAGE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "orch/db.h"
#include "orch/verdict.h"
#include "stage_logic.h"

typedef enum stage_intent_state {
    STAGE_INTENT_CLAIMED, /* this call inserted (or took over) the intent: run the effect */
    STAGE_INTENT_EXISTS,  /* a row exists: see outcome and epoch */
    STAGE_INTENT_STALE,   /* the lease epoch is no longer the live grant: do nothing */
    STAGE_INTENT_MOVED,   /* verdicts given, the task left their stage or cycle: nothing done */
} stage_intent_state;

/* Inserts task `in` (its work item, repo, title and pull request) unless
 * the work item exists; *out is the task, new or found; *created says which. */
orch_err stage_store_create(orch_db_conn *c, uint64_t dl, const stage_task *in, stage_task *out,
                            bool *created) ORCH_NODISCARD;

/* ORCH_ENOTFOUND if there is no such task. */
orch_err stage_store_get(orch_db_conn *c, uint64_t dl, const char *work_item,
                         stage_task *out) ORCH_NODISCARD;

/* The task of pull request `pr` of `repo`; ORCH_ENOTFOUND if none. */
orch_err stage_store_find_by_pr(orch_db_conn *c, uint64_t dl, const char *repo, uint64_t pr,
                                stage_task *out) ORCH_NODISCARD;

/* Tasks that can still move forward (not backlog, done or cancelled) with
 * id > after, by id. *out is malloc'ed. */
orch_err stage_store_list_active(orch_db_conn *c, uint64_t dl, int64_t after, int limit,
                                 stage_task **out, int *n) ORCH_NODISCARD;

/* Which tasks stage_store_list() returns: by stage (STAGE_NONE: any) and
 * repo ("" any), at most `limit`. */
typedef struct stage_list_filter {
    stage_id stage;
    const char *repo;
    int limit;
} stage_list_filter;

/* Tasks that match `f`, oldest update first. *out is malloc'ed. */
orch_err stage_store_list(orch_db_conn *c, uint64_t dl, const stage_list_filter *f,
                          stage_task **out, int *n) ORCH_NODISCARD;

/* The verdicts a call reports: `vs` by `actor` along `transition` for task
 * `t` as read, under lease `epoch` (0: none). */
typedef struct stage_evidence_write {
    const stage_task *t;
    const char *transition;
    uint64_t epoch;
    const orch_verdicts *vs;
    const char *actor;
} stage_evidence_write;

/* Records the verdicts a call along `transition` reports (latest value per
 * key and edge), tagged with that edge and the task's cycle, only while the
 * task is still in t->stage and t->cycle and, with `epoch` > 0, only while
 * that lease epoch is the live grant (one statement). *recorded is false
 * when nothing was written for one of those reasons. */
orch_err stage_store_record_evidence(orch_db_conn *c, uint64_t dl, const stage_evidence_write *w,
                                     bool *recorded) ORCH_NODISCARD;
/* The verdicts of the task's current cycle that the gates of `transition`
 * read: those recorded for that edge, and the engine's own (engine-only keys,
 * e.g. built_image_digest). `transition` NULL: every verdict of the cycle
 * (GetTask; a key reported at two edges then appears once, the later edge's). */
orch_err stage_store_load_evidence(orch_db_conn *c, uint64_t dl, const char *work_item,
                                   const char *transition, orch_verdicts *out) ORCH_NODISCARD;
/* A verdict of the task's current cycle: `key` recorded for `transition`. */
typedef struct stage_verdict_ref {
    const char *work_item, *transition, *key;
} stage_verdict_ref;

/* The value of verdict `ref` into out (n bytes); *found false when none. */
orch_err stage_store_cycle_verdict(orch_db_conn *c, uint64_t dl, const stage_verdict_ref *ref,
                                   char *out, size_t n, bool *found) ORCH_NODISCARD;

/* An intent of a cycle whose outcome is not known, with its transition and
 * effect names. */
typedef struct stage_open_intent {
    stage_intent row;
    char transition[64], effect[64];
} stage_open_intent;

/* The first side effect of the task's cycle `cycle` whose outcome is not
 * known (outcome unknown or pending) into *out; *found false when every
 * effect of the cycle is ok or failed. */
orch_err stage_store_unresolved_effect(orch_db_conn *c, uint64_t dl, const char *work_item,
                                       int cycle, bool *found,
                                       stage_open_intent *out) ORCH_NODISCARD;

/* The repo's coverage baseline, *has false if none. */
orch_err stage_store_baseline(orch_db_conn *c, uint64_t dl, const char *repo, bool *has,
                              double *pct) ORCH_NODISCARD;
/* A ratchet of `repo`'s baseline to `pct` by `work_item` under lease
 * `epoch` (0: none). */
typedef struct stage_ratchet {
    const char *repo, *pct, *work_item;
    uint64_t epoch;
} stage_ratchet;

/* The ratchet: raises the baseline to pct, never lowers it; under a lease
 * (`epoch` > 0) only while that epoch is the live grant. *raised says
 * whether the stored value changed, *stale whether the epoch was not live. */
orch_err stage_store_ratchet(orch_db_conn *c, uint64_t dl, const stage_ratchet *r, bool *raised,
                             bool *stale) ORCH_NODISCARD;

/* The key of an intent: (work item, transition, effect, cycle). */
typedef struct stage_intent_key {
    const char *work_item, *transition, *effect;
    int cycle;
} stage_intent_key;

/* Claims the intent `k` under `epoch`
 * (0: no lease). With a lease, the claim is refused (STAGE_INTENT_STALE) unless
 * `epoch` is the live grant. `w` (NULL: none; only with a lease) are the
 * call's verdicts, recorded by the same statement as
 * stage_store_record_evidence() records them (w->epoch is not read: the
 * claim's `epoch` fences both); while the task is not in w->t's stage and
 * k->cycle nothing is recorded or claimed (STAGE_INTENT_MOVED). In every
 * other state the verdicts were recorded. */
orch_err stage_store_intent_claim(orch_db_conn *c, uint64_t dl, const stage_intent_key *k,
                                  uint64_t epoch, const stage_evidence_write *w,
                                  stage_intent_state *st, stage_intent *row) ORCH_NODISCARD;
/* Takes over an existing intent seen as `seen` (same outcome and epoch),
 * setting it pending under `epoch`; same lease check. *took says whether. */
orch_err stage_store_intent_takeover(orch_db_conn *c, uint64_t dl, const char *work_item,
                                     const stage_intent *seen, uint64_t epoch,
                                     bool *took) ORCH_NODISCARD;
/* The outcome of intent `id` claimed under `epoch` (for task `t`), and the
 * verdict `key` = `value` it produced (key NULL: none). */
typedef struct stage_intent_outcome {
    int64_t id;
    uint64_t epoch;
    const char *outcome, *detail;
    const stage_task *t;
    const char *key, *value;
} stage_intent_outcome;

/* Records the outcome of a pending intent claimed under `epoch` and, in the
 * same statement (one commit, no lock held between round trips), the
 * verdict the effect produced (`key` = `value` for the task's cycle; key
 * NULL: none). *recorded is false when the intent was taken over meanwhile
 * (a stale owner): then nothing is written. ORCH_EDB_UNKNOWN: the statement
 * went out and its outcome never came back (it may have been recorded). */
orch_err stage_store_intent_finish(orch_db_conn *c, uint64_t dl, const stage_intent_outcome *o,
                                   bool *recorded) ORCH_NODISCARD;

/* The one stage write. With a lease (`epoch` > 0) and `conditional`: sets
 * the stage to `to` only if it is `expected` and `epoch` is the live grant.
 * Without (`conditional` false: lease switched off or out of scope) the
 * write is unconditional, as in a build without the lease. In the same
 * statement (one commit; no row lock outlives it, so a client frozen in
 * the middle holds none) appends stage_history and, for a rollback, raises
 * the cycle and clears the recorded verdicts. *won is false when zero rows
 * were updated (the race was lost); *out is the task after a won write.
 * ORCH_EDB_UNKNOWN: the write went out and its outcome never came back.
 * `released` (may be NULL) asks a fenced write to release the grant too:
 * when it wins, the same statement releases lease `epoch` exactly as
 * lease-service's Release by the holder would (the lease row and its
 * 'released' event) and sets *released; false when nothing was released
 * (lost race, no lease, an error), and the caller releases it by RPC. */
typedef struct stage_cas {
    const char *work_item;
    stage_id expected, to;
    bool rollback;
    bool conditional;
    uint64_t epoch;
    const char *actor, *reason;
    uint64_t pr_number; /* > 0: the task's new pull request (development->review) */
    bool *released;     /* non-NULL: fold the lease release into a won fenced write */
    /* The call's verdicts, recorded for `transition` by the same statement
     * when it wins (as stage_store_record_evidence would); NULL: none.
     * Never with a rollback, which clears the verdicts. */
    const orch_verdicts *evidence;
    const char *transition;
    /* An effect's outcome recorded by the same statement (the pending
     * intent at `epoch`), before the stage is written and whether or not the
     * write then wins; the write happens only once it is recorded
     * (*outcome_recorded). Only with a fenced write that releases the lease
     * (`released` set); otherwise ORCH_EINVAL. NULL: none. */
    const stage_intent_outcome *outcome;
    bool *outcome_recorded;
} stage_cas;
orch_err stage_store_cas(orch_db_conn *c, uint64_t dl, const stage_cas *cas, bool *won,
                         stage_task *out) ORCH_NODISCARD;

/* One row of stage_history, as GetTask shows it. */
typedef struct stage_history_row {
    char from_stage[32], to_stage[32];
    char actor[STAGE_MAX_FIELD + 1];
    uint64_t lease_epoch; /* 0: none */
    char reason[STAGE_MAX_REASON + 1];
    uint64_t at_ms;
} stage_history_row;

/* One row of side_effects, as GetTask shows it. */
typedef struct stage_effect_row {
    char transition[64], effect[32];
    uint64_t lease_epoch; /* 0: none */
    char outcome[16];
    char detail[STAGE_MAX_DETAIL + 1];
    uint64_t created_ms, finished_ms; /* finished 0: not yet */
} stage_effect_row;

/* The latest `limit` history rows of the task, oldest first, and every
 * side effect of the task, by id. *out is malloc'ed (the caller frees it),
 * *n its rows; on error nothing is allocated. */
orch_err stage_store_history(orch_db_conn *c, uint64_t dl, const char *work_item, int limit,
                             stage_history_row **out, int *n) ORCH_NODISCARD;
orch_err stage_store_effects(orch_db_conn *c, uint64_t dl, const char *work_item,
                             stage_effect_row **out, int *n) ORCH_NODISCARD;

/* The dashboard's read-only views of the other services' tables (one
 * database): the latest lease_events and guard_audit rows, newest first. */
typedef struct stage_lease_event_row {
    uint64_t id;
    char work_item[STAGE_MAX_FIELD + 1];
    uint64_t epoch; /* 0: none */
    char kind[24], actor[STAGE_MAX_FIELD + 1];
    char detail[STAGE_MAX_DETAIL + 1];
    uint64_t at_ms;
} stage_lease_event_row;

typedef struct stage_guard_audit_row {
    uint64_t id, at_ms;
    char runtime[16], operation[48], project[STAGE_MAX_FIELD + 1], decision[8];
    char reason[STAGE_MAX_DETAIL + 1], caller[STAGE_MAX_FIELD + 1];
} stage_guard_audit_row;

orch_err stage_store_lease_events(orch_db_conn *c, uint64_t dl, int limit,
                                  stage_lease_event_row **out, int *n) ORCH_NODISCARD;
orch_err stage_store_guard_audit(orch_db_conn *c, uint64_t dl, int limit,
                                 stage_guard_audit_row **out, int *n) ORCH_NODISCARD;

#endif
