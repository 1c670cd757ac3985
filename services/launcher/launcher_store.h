/*
 * launcher_store.h - every SQL statement of launcher-service (tables jobs,
 * agent_runs, launcher_recovery).
 *
 * Each function runs on a borrowed connection (one thread at a time) under
 * the given deadline and returns an orch_err; outputs are written only on
 * ORCH_OK. Rows are copied into caller-owned structs; text that may be long
 * (the prompt, the verdict JSON) is malloc'ed and freed by the caller.
 */
#ifndef ORCH_LAUNCHER_STORE_H
#define ORCH_LAUNCHER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "launcher_logic.h"
#include "orch/db.h"

typedef struct launcher_job {
    uint64_t id;
    char role[16];
    char work_item[LAUNCHER_MAX_FIELD + 1];
    char stage[LAUNCHER_MAX_FIELD + 1];
    char status[16];
    char host_id[256];
    char boot_id[40];
    char instance_id[40];
    int32_t pid;
    uint64_t start_ticks;
    uint32_t timeout_s;
    uint64_t created_ms, started_ms, finished_ms;
    int64_t running_s; /* seconds since started_at (database clock) */
    char finish_reason[256];
    char workdir[LAUNCHER_MAX_WORKDIR + 1];
    char stdout_path[1200];
    char stderr_path[1200];
    uint32_t attempts;
    char monitor_state[16];
    char monitor_detail[256];
    bool cancel_requested;
} launcher_job;

typedef struct launcher_run {
    uint64_t id, job_id;
    char role[16];
    char work_item[LAUNCHER_MAX_FIELD + 1];
    launcher_usage usage;
    uint64_t duration_ms;
    int32_t exit_status;
    orch_verdicts verdicts;
    uint64_t at_ms;
} launcher_run;

typedef struct launcher_role_sum {
    char role[16];
    uint64_t runs, runs_with_usage, input_tokens, output_tokens, runs_with_cost, duration_ms;
    double cost_usd;
} launcher_role_sum;

/* Inserts a queued job on `host_id`; *id is its id. */
orch_err launcher_store_insert(orch_db_conn *c, uint64_t dl, const launcher_spawn_in *in,
                               const char *stage, const char *host_id, uint64_t *id) ORCH_NODISCARD;

/* Takes the oldest queued job of `host_id` for this instance (status
 * running, attempts + 1, no pid yet). *found false: nothing queued. The
 * prompt is malloc'ed into *prompt. */
orch_err launcher_store_claim(orch_db_conn *c, uint64_t dl, const char *host_id,
                              const char *boot_id, const char *instance_id, bool *found,
                              launcher_job *job, char **prompt) ORCH_NODISCARD;

/* Records the started process and its output files. */
orch_err launcher_store_started(orch_db_conn *c, uint64_t dl, uint64_t id, pid_t pid,
                                uint64_t start_ticks, const char *out_path,
                                const char *err_path) ORCH_NODISCARD;

/* Finishes a running job and records its agent run in one statement (one
 * commit; no row lock outlives it). `run` may be NULL (no process ran).
 * *done false: the job was not running (finished by someone else); nothing
 * was written. ORCH_EDB_UNKNOWN: sent, outcome never came back. */
orch_err launcher_store_finish(orch_db_conn *c, uint64_t dl, uint64_t id, const char *status,
                               int exit_status, const char *reason, const char *monitor_state,
                               const launcher_run *run, bool *done) ORCH_NODISCARD;
/* The reaper's finish: the job fails with `reason` and no run, unless
 * another transaction holds its row locked (FOR UPDATE SKIP LOCKED): then
 * *done is false and the next pass tries again, nothing waits. */
orch_err launcher_store_finish_reaped(orch_db_conn *c, uint64_t dl, uint64_t id, const char *reason,
                                      bool *done) ORCH_NODISCARD;

orch_err launcher_store_get(orch_db_conn *c, uint64_t dl, uint64_t id, bool *found,
                            launcher_job *job) ORCH_NODISCARD;
/* The agent run of job `id`, if any. */
orch_err launcher_store_get_run(orch_db_conn *c, uint64_t dl, uint64_t job_id, bool *found,
                                launcher_run *run) ORCH_NODISCARD;

/* Cancels a queued job (*done) or marks a running one for cancellation
 * (*requested) so that its launcher kills it. */
orch_err launcher_store_cancel(orch_db_conn *c, uint64_t dl, uint64_t id, const char *reason,
                               bool *done, bool *requested) ORCH_NODISCARD;

/* Running jobs of `instance_id` whose cancellation was asked (through
 * another instance, or this one); at most `max` ids. */
orch_err launcher_store_cancel_asked(orch_db_conn *c, uint64_t dl, const char *instance_id,
                                     uint64_t *ids, size_t max, size_t *n) ORCH_NODISCARD;

/* Jobs of `host_id` in status running, for the reaper and the start-up
 * requeue; `cb` is called for each. */
orch_err launcher_store_running(orch_db_conn *c, uint64_t dl, const char *host_id,
                                void (*cb)(const launcher_job *job, void *arg),
                                void *arg) ORCH_NODISCARD;

/* Start-up requeue: every job of `host_id` left running by another
 * instance goes back to queued (`fail`: is failed, "launcher restarted");
 * then the recovery marker of this host is written. Counts returned. */
orch_err launcher_store_requeue(orch_db_conn *c, uint64_t dl, const char *host_id,
                                const char *boot_id, const char *instance_id, pid_t pid,
                                uint64_t start_ticks, bool fail, int *requeued,
                                int *failed) ORCH_NODISCARD;

/* Jobs whose stage report is due (pending, or deferred/error older than
 * retry_ms); at most `max` ids. */
orch_err launcher_store_monitor_due(orch_db_conn *c, uint64_t dl, const char *host_id,
                                    int64_t retry_ms, uint64_t *ids, size_t max,
                                    size_t *n) ORCH_NODISCARD;
orch_err launcher_store_set_monitor(orch_db_conn *c, uint64_t dl, uint64_t id, const char *state,
                                    const char *detail) ORCH_NODISCARD;

orch_err launcher_store_list_runs(orch_db_conn *c, uint64_t dl, const char *role,
                                  const char *work_item, unsigned limit,
                                  void (*cb)(const launcher_run *run, void *arg),
                                  void *arg) ORCH_NODISCARD;

/* Sums of agent_runs per role over the last `since_days` (0: all). */
orch_err launcher_store_savings(orch_db_conn *c, uint64_t dl, unsigned since_days,
                                launcher_role_sum *sums, size_t max, size_t *n) ORCH_NODISCARD;

/* Jobs per status (indexes of launcher_job_statuses). */
extern const char *const launcher_job_statuses[6];
orch_err launcher_store_count_status(orch_db_conn *c, uint64_t dl, int64_t *counts) ORCH_NODISCARD;

#endif
