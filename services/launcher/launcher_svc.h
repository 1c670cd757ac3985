/*
 * launcher_svc.h - launcher-service's state shared by its RPC handlers
 * (launcher_rpc.c), the process supervisor (launcher_proc.c) and the
 * background passes (launcher_monitor.c: stage reports, the job reaper,
 * start-up requeue). Internal to the service.
 *
 * Threading: configuration fields are read-only after start. The slot table
 * (the processes this instance runs) and the two ticker pointers are
 * guarded by `mu`; waking `supervisor` (ticker.h) hurries the supervisor
 * (new job queued), waking `background` the background passes (a job
 * finished). The supervisor is the only thread that starts, signals or
 * reaps agent processes.
 */
#ifndef ORCH_LAUNCHER_SVC_H
#define ORCH_LAUNCHER_SVC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "launcher_logic.h"
#include "launcher_store.h"
#include "orch/config.h"
#include "orch/rpc.h"
#include "orch/svc.h"
#include "orch/ticker.h"

/* Why the supervisor is ending a job early. */
typedef enum launcher_kill {
    KILL_NONE,
    KILL_TIMEOUT,
    KILL_CANCEL,
    KILL_OUTPUT,
    KILL_CEILING,
} launcher_kill;

typedef struct launcher_slot {
    bool used;
    launcher_job job; /* as claimed */
    pid_t pid;        /* also the process group id */
    uint64_t started_ms, deadline_ms, term_sent_ms;
    launcher_kill kill;
} launcher_slot;

enum { REAP_TIER2, REAP_TIER3, REAP_NTIERS };
enum {
    MON_ADVANCED,
    MON_DEFERRED,
    MON_GATE_FAILED,
    MON_ROLLED_BACK,
    MON_NOT_ADVANCED,
    MON_ERROR,
    MON_NKINDS
};
extern const char *const launcher_reap_tiers[REAP_NTIERS];
extern const char *const launcher_monitor_kinds[MON_NKINDS];

typedef struct launcher_svc {
    orch_db_pool *db;
    const orch_ident *me;
    const char *templates[LAUNCHER_NROLES]; /* argv template per role ("" = none) */
    const char *out_dir;
    int64_t output_max, parse_max, max_timeout_s, ceiling_s;
    int64_t kill_grace_ms, poll_ms, reaper_interval_ms, monitor_retry_ms;
    uint32_t rpc_timeout_ms;
    bool fail_on_restart;
    const char *lease_url, *stage_url;
    orch_rpc_client *lease, *stage; /* NULL when the URL is empty */

    pthread_mutex_t mu;
    launcher_slot *slots;
    int nslots;
    orch_ticker *supervisor, *background; /* NULL when not running */
    uint64_t next_reap_ms;                /* background thread only: when the reaper is due */

    orch_counter *m_runs;    /* by role */
    orch_counter *m_cost;    /* micro-USD by role */
    orch_counter *m_tokens;  /* by role x direction */
    orch_counter *m_reaps;   /* by tier */
    orch_counter *m_monitor; /* by outcome */
    _Atomic int64_t status_counts[6];
} launcher_svc;

/* Registers the RPC service; called from the start hook. */
orch_err launcher_rpc_register(orch_service *svc, launcher_svc *ls) ORCH_NODISCARD;

/* Wakes the supervisor (a job was queued or a cancel asked). */
void launcher_wake(launcher_svc *ls);

/* Marks job `id` for cancellation if this instance runs it; true if so. */
bool launcher_proc_cancel(launcher_svc *ls, uint64_t id);
/* Marks job `id` as over the ceiling if this instance runs it. */
bool launcher_proc_ceiling(launcher_svc *ls, uint64_t id);
/* Whether this instance runs job `id`. */
bool launcher_proc_tracks(launcher_svc *ls, uint64_t id);

/* Starts and stops the supervisor thread (a ticker every ORCH_LAUNCHER_POLL_MS). */
orch_err launcher_proc_start(launcher_svc *ls) ORCH_NODISCARD;
void launcher_proc_stop(launcher_svc *ls);

/* Start-up requeue (before anything runs), then the background thread
 * (stage reports and the job reaper). Stopping it also cancels the
 * supervisor's further passes: launcher_proc_stop() comes next. */
orch_err launcher_requeue(launcher_svc *ls) ORCH_NODISCARD;
orch_err launcher_background_start(launcher_svc *ls) ORCH_NODISCARD;
void launcher_background_stop(launcher_svc *ls);
/* One reaper pass and one monitor pass (exposed for the background thread). */
void launcher_reaper_pass(launcher_svc *ls);
void launcher_monitor_pass(launcher_svc *ls);

#endif
