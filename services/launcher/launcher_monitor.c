/*
 * launcher_monitor.c - start-up requeue, the monitor / deploy finalizer
 * (stage reports of finished jobs) and the job reaper.
 *
 * Requeue runs in the start hook before the first request and before the
 * supervisor starts: every job this host's previous instances left running
 * is requeued (or failed, ORCH_LAUNCHER_RESTART_POLICY), a surviving
 * process group of such a job is killed, and the launcher_recovery marker is
 * written. lease-service's start-up recovery waits for that marker
 * (docs/architecture/ownership.md), which orders requeue before reclaim.
 *
 * The background thread runs the monitor pass whenever a job finished and at
 * least every second, and the reaper pass every
 * ORCH_LAUNCHER_REAPER_INTERVAL_MS. A stage report is durable state in the
 * jobs row (monitor_state): DEFERRED and transport errors are asked again
 * later, across restarts, never dropped.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "launcher_svc.h"
#include "orch/alert.h"
#include "orch/clock.h"
#include "orch/ident.h"
#include "orch/lease_client.h"
#include "orch/log.h"
#include "orch/v1/stage.pb-c.h"

const char *const launcher_reap_tiers[REAP_NTIERS] = { "tier-2", "tier-3" };
const char *const launcher_monitor_kinds[MON_NKINDS] = {
    "advanced", "deferred", "gate-failed", "rolled-back", "not-advanced", "error",
};

/* Whether the process of `j` still runs on this host (same boot, pid and
 * start time). */
static bool process_alive(const launcher_svc *ls, const launcher_job *j)
{
    uint64_t ticks;
    if (strcmp(j->boot_id, ls->me->boot_id) != 0 || j->pid <= 0)
        return false;
    return orch_proc_start_ticks(j->pid, &ticks) == ORCH_OK && ticks == j->start_ticks;
}

/* ---- requeue -------------------------------------------------------------- */

static void kill_leftover(const launcher_job *j, void *arg)
{
    const launcher_svc *ls = arg;
    if (strcmp(j->instance_id, ls->me->instance_id) != 0 && process_alive(ls, j)) {
        orch_warn("job %" PRIu64 ": process group %d of a previous instance still runs: killed",
                  j->id, (int)j->pid);
        kill(-j->pid, SIGKILL);
    }
}

orch_err launcher_requeue(launcher_svc *ls)
{
    uint64_t dl = orch_mono_ms() + 30000;
    orch_db_conn *c = NULL;
    int nq = 0, nf = 0;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (err)
        return err;
    err = launcher_store_running(c, dl, ls->me->host_id, kill_leftover, ls);
    if (!err)
        err =
            launcher_store_requeue(c, dl, ls->me->host_id, ls->me->boot_id, ls->me->instance_id,
                                   ls->me->pid, ls->me->start_ticks, ls->fail_on_restart, &nq, &nf);
    if (err)
        orch_error("start-up requeue failed: %s: %s", orch_strerror(err), orch_db_last_error(c));
    orch_db_release(c);
    if (!err)
        orch_info("start-up requeue on host %s: %d job(s) requeued, %d failed; recovery marker "
                  "written",
                  ls->me->host_id, nq, nf);
    return err;
}

/* ---- lease consultation --------------------------------------------------- */

typedef struct job_lease {
    bool holds; /* the job's process (or instance "job-<id>") owns the lease */
    launcher_lease_owner owner;
    uint64_t epoch; /* holds: the grant the job owns */
} job_lease;

/* What the job's lease owner is, asked of lease-service (ProbeOwner). */
static launcher_lease_owner probe(launcher_svc *ls, const Orch__V1__Owner *owner,
                                  const orch_rpc_call_opts *o)
{
    orch_lease_probe_res pr;
    if (orch_lease_probe_owner(ls->lease, o, owner, NULL, &pr) != ORCH_OK)
        return LAUNCHER_LEASE_UNKNOWN;
    /* pr.liveness is UNKNOWN, never DEAD, for an answer from another host
     * or boot than the owner's (a lease-service reached through the wrong
     * address). */
    return pr.liveness == ORCH__V1__LIVENESS__LIVENESS_ALIVE  ? LAUNCHER_LEASE_ALIVE
           : pr.liveness == ORCH__V1__LIVENESS__LIVENESS_DEAD ? LAUNCHER_LEASE_DEAD
                                                              : LAUNCHER_LEASE_UNKNOWN;
}

/* Asks lease-service whether `j` holds its work item's lease and whether
 * that lease's owner lives. */
static job_lease consult(launcher_svc *ls, const launcher_job *j)
{
    job_lease out = { false, LAUNCHER_LEASE_UNKNOWN, 0 };
    if (!ls->lease)
        return out;
    orch_rpc_call_opts o = { .timeout_ms = ls->rpc_timeout_ms };
    orch_rpc_status st;
    Orch__V1__Lease *l = NULL;
    orch_err err = orch_lease_get(ls->lease, &o, j->work_item, &st, &l);
    if (err == ORCH_ENOTFOUND) {
        out.owner = LAUNCHER_LEASE_NONE;
        return out;
    }
    if (err) {
        orch_warn("job %" PRIu64 ": lease of %s unknown: %s", j->id, j->work_item, st.message);
        return out;
    }
    char inst[40];
    snprintf(inst, sizeof inst, "job-%" PRIu64, j->id);
    out.holds =
        l->held && l->owner && strcmp(l->owner->host_id, j->host_id) == 0 &&
        ((j->pid > 0 && l->owner->pid == j->pid) || strcmp(l->owner->instance_id, inst) == 0);
    out.owner = out.holds ? probe(ls, l->owner, &o) : LAUNCHER_LEASE_NONE;
    out.epoch = l->epoch;
    orch_lease_free(l);
    return out;
}

/* Releases the grant `epoch` that the job owns, and nothing newer. */
static void force_release(launcher_svc *ls, const launcher_job *j, uint64_t epoch, const char *tier)
{
    if (!ls->lease)
        return;
    char reason[160];
    snprintf(reason, sizeof reason, "job %" PRIu64 " reaped (%s)", j->id, tier);
    orch_lease_force_release_req req = { j->work_item, reason, "job-reaper", epoch };
    orch_rpc_call_opts o = { .timeout_ms = ls->rpc_timeout_ms };
    orch_rpc_status st;
    if (orch_lease_force_release(ls->lease, &o, &req, &st, NULL) != ORCH_OK &&
        !orch_lease_code_released(st.code))
        orch_warn("job %" PRIu64 ": force-release of %s failed: %s", j->id, j->work_item,
                  st.message);
}

/* ---- reaper --------------------------------------------------------------- */

typedef struct reap_list {
    launcher_job *jobs;
    size_t n, cap;
} reap_list;

static void collect(const launcher_job *j, void *arg)
{
    reap_list *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        launcher_job *p = realloc(l->jobs, nc * sizeof *p);
        if (!p)
            return; /* the rest waits for the next pass */
        l->jobs = p;
        l->cap = nc;
    }
    l->jobs[l->n++] = *j;
}

static void finish_reaped(launcher_svc *ls, const launcher_job *j, int tier, const char *why)
{
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    bool done = false;
    char reason[256];
    snprintf(reason, sizeof reason, "reaped: %s, %s", launcher_reap_tiers[tier], why);
    if (orch_db_acquire(ls->db, dl, &c) != ORCH_OK)
        return;
    orch_err e = launcher_store_finish_reaped(c, dl, j->id, reason, &done);
    if (e)
        orch_warn("job %" PRIu64 ": the reaper's finish failed: %s: %s; the pass goes on", j->id,
                  orch_strerror(e), orch_db_last_error(c));
    orch_db_release(c);
    if (e || !done)
        return;
    orch_counter_add(ls->m_reaps, (size_t)tier, 1);
    orch_alert("launcher.job-reaped", j->work_item, "job %" PRIu64 " (%s) %s", j->id, j->role,
               reason);
}

static void reap_one(launcher_svc *ls, const launcher_job *j)
{
    bool mine = strcmp(j->host_id, ls->me->host_id) == 0;
    bool tracked = mine && launcher_proc_tracks(ls, j->id);
    bool alive = tracked || (mine && process_alive(ls, j)) ||
                 (mine && j->pid <= 0 && j->running_s < 60) || !mine;
    launcher_reap d = launcher_reap_decide(j->running_s, ls->ceiling_s, alive, LAUNCHER_LEASE_NONE);
    job_lease jl = { false, LAUNCHER_LEASE_NONE, 0 };
    if (d == LAUNCHER_REAP_TIER2) {
        jl = consult(ls, j);
        d = launcher_reap_decide(j->running_s, ls->ceiling_s, false, jl.owner);
    } else if (d == LAUNCHER_REAP_TIER3) {
        jl = consult(ls, j);
    }
    if (d == LAUNCHER_REAP_DEFER) {
        orch_info("job %" PRIu64 ": process gone but its lease of %s has a %s owner: deferred",
                  j->id, j->work_item, jl.owner == LAUNCHER_LEASE_ALIVE ? "live" : "unknown");
        return;
    }
    if (d == LAUNCHER_REAP_NONE)
        return;
    int tier = d == LAUNCHER_REAP_TIER3 ? REAP_TIER3 : REAP_TIER2;
    if (tier == REAP_TIER3 && tracked) {
        /* The supervisor kills the group and records the end. */
        launcher_proc_ceiling(ls, j->id);
        orch_counter_add(ls->m_reaps, REAP_TIER3, 1);
        orch_alert("launcher.job-reaped", j->work_item,
                   "job %" PRIu64 " (%s) running %" PRId64 " s, over the ceiling: killed", j->id,
                   j->role, j->running_s);
    } else {
        if (tier == REAP_TIER3 && mine && process_alive(ls, j))
            kill(-j->pid, SIGKILL);
        finish_reaped(ls, j, tier,
                      tier == REAP_TIER3 ? "running over ORCH_REAPER_MAX_RUNNING_S"
                                         : "its process is gone");
    }
    /* A reap releases the lease of the job it reaps: the grant the job
     * owns, never a later holder's (a stage-service mid-merge). */
    if (jl.holds)
        force_release(ls, j, jl.epoch, launcher_reap_tiers[tier]);
}

void launcher_reaper_pass(launcher_svc *ls)
{
    uint64_t dl = orch_mono_ms() + 10000;
    reap_list l = { 0 };
    orch_db_conn *c = NULL;
    int64_t counts[6];
    if (orch_db_acquire(ls->db, dl, &c) != ORCH_OK)
        return;
    orch_err e = launcher_store_running(c, dl, "", collect, &l);
    if (!launcher_store_count_status(c, dl, counts))
        for (int k = 0; k < 6; k++)
            atomic_store(&ls->status_counts[k], counts[k]);
    orch_db_release(c);
    for (size_t i = 0; !e && i < l.n; i++) {
        orch_log_ctx_set(ORCH_LOG_WORK_ITEM, l.jobs[i].work_item);
        reap_one(ls, &l.jobs[i]);
        orch_log_ctx_clear();
    }
    free(l.jobs);
}

/* ---- monitor / deploy finalizer ------------------------------------------- */

static char *evidence_text(const orch_verdicts *vs)
{
    size_t cap = vs->n * (ORCH_VERDICT_KEY_MAX + ORCH_VERDICT_VALUE_MAX + 3) + 1, off = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (size_t i = 0; i < vs->n; i++)
        off += (size_t)snprintf(s + off, cap - off, "%s: %s\n", vs->v[i].key, vs->v[i].value);
    return s;
}

/* Asks stage-service to advance the item of job `j`; the new monitor state
 * and a detail. */
static int report(launcher_svc *ls, const launcher_job *j, const launcher_run *run,
                  const launcher_route *r, char *detail, size_t n)
{
    Orch__V1__AdvanceStageRequest req = ORCH__V1__ADVANCE_STAGE_REQUEST__INIT;
    Orch__V1__Evidence ev[ORCH_VERDICTS_MAX], *evp[ORCH_VERDICTS_MAX];
    for (size_t i = 0; i < run->verdicts.n; i++) {
        orch__v1__evidence__init(&ev[i]);
        ev[i].key = (char *)run->verdicts.v[i].key;
        ev[i].value = (char *)run->verdicts.v[i].value;
        evp[i] = &ev[i];
    }
    char *text = evidence_text(&run->verdicts);
    req.work_item = (char *)j->work_item;
    req.expected_from = (char *)r->from;
    req.to = (char *)r->to;
    req.actor = (char *)r->actor;
    req.evidence = text ? text : "";
    req.n_verdicts = run->verdicts.n;
    req.verdicts = evp;
    orch_rpc_call_opts o = { .timeout_ms = ls->rpc_timeout_ms };
    orch_rpc_status st;
    ProtobufCMessage *m = NULL;
    orch_code code = orch_rpc_invoke(ls->stage, "orch.v1.StageService/AdvanceStage", &req.base,
                                     &orch__v1__advance_stage_reply__descriptor, &o, &st, &m);
    free(text);
    if (code != ORCH_CODE_OK) {
        snprintf(detail, n, "%s: %.200s", orch_code_name(code), st.message);
        return MON_ERROR;
    }
    const Orch__V1__AdvanceStageReply *rep = (const Orch__V1__AdvanceStageReply *)m;
    int kind = MON_ERROR;
    switch (rep->outcome) {
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ADVANCED: kind = MON_ADVANCED; break;
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_DEFERRED: kind = MON_DEFERRED; break;
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_GATE_FAILED: kind = MON_GATE_FAILED; break;
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ROLLED_BACK: kind = MON_ROLLED_BACK; break;
    default: break;
    }
    snprintf(detail, n, "%s -> %s by %s: %s%s%s", r->from, r->to, r->actor,
             launcher_monitor_kinds[kind], rep->n_gate_failures ? "; " : "",
             rep->n_gate_failures ? rep->gate_failures[0] : "");
    protobuf_c_message_free_unpacked(m, NULL);
    return kind;
}

/* ABORTED / FAILED_PRECONDITION / INVALID_ARGUMENT mean the request itself
 * cannot succeed (the item moved on, or it is unknown): final. Everything
 * else that failed is asked again. */
static bool final_error(const char *detail)
{
    return strncmp(detail, "ABORTED", 7) == 0 || strncmp(detail, "FAILED_PRECONDITION", 19) == 0 ||
           strncmp(detail, "INVALID_ARGUMENT", 16) == 0 || strncmp(detail, "NOT_FOUND", 9) == 0;
}

static void monitor_one(launcher_svc *ls, uint64_t id)
{
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    launcher_job j;
    launcher_run run;
    bool found = false, have_run = false;
    if (orch_db_acquire(ls->db, dl, &c) != ORCH_OK)
        return;
    orch_err e = launcher_store_get(c, dl, id, &found, &j);
    if (!e && found)
        e = launcher_store_get_run(c, dl, id, &have_run, &run);
    orch_db_release(c);
    if (e || !found)
        return;
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, j.work_item);
    const launcher_route *r = launcher_route_find(j.role, j.stage);
    char detail[256] = "";
    const char *state;
    int kind = MON_ERROR;
    if (!r || !have_run) {
        state = "skipped";
        snprintf(detail, sizeof detail, "no route or no run");
    } else if (!ls->stage) {
        state = "error";
        snprintf(detail, sizeof detail, "ORCH_STAGE_RPC_URL is empty");
    } else {
        kind = report(ls, &j, &run, r, detail, sizeof detail);
        state = kind == MON_ERROR ? (final_error(detail) ? "failed" : "error")
                                  : launcher_monitor_kinds[kind];
        orch_counter_add(ls->m_monitor, (size_t)kind, 1);
    }
    orch_info("job %" PRIu64 " report to stage-service (%s): %s: %s", id, r ? r->actor : "-", state,
              detail);
    if (orch_db_acquire(ls->db, dl, &c) != ORCH_OK)
        return;
    if (launcher_store_set_monitor(c, dl, id, state, detail))
        orch_warn("job %" PRIu64 ": could not record the report: %s", id, orch_db_last_error(c));
    orch_db_release(c);
}

void launcher_monitor_pass(launcher_svc *ls)
{
    uint64_t ids[64];
    size_t n = 0;
    uint64_t dl = orch_mono_ms() + 5000;
    orch_db_conn *c = NULL;
    if (orch_db_acquire(ls->db, dl, &c) != ORCH_OK)
        return;
    orch_err e =
        launcher_store_monitor_due(c, dl, ls->me->host_id, ls->monitor_retry_ms, ids, 64, &n);
    orch_db_release(c);
    for (size_t i = 0; !e && i < n; i++) {
        monitor_one(ls, ids[i]); /* sets the work item of the log context */
        orch_log_ctx_clear();
    }
}

/* ---- background thread ---------------------------------------------------- */

/* One background pass: stage reports every min(ORCH_LAUNCHER_MONITOR_RETRY_MS,
 * 1 s) or when a job ends, the job reaper every ORCH_LAUNCHER_REAPER_INTERVAL_MS. */
static bool background_tick(void *arg)
{
    launcher_svc *ls = arg;
    launcher_monitor_pass(ls);
    if (orch_mono_ms() >= ls->next_reap_ms) {
        launcher_reaper_pass(ls);
        ls->next_reap_ms = orch_mono_ms() + (uint64_t)ls->reaper_interval_ms;
    }
    return true;
}

orch_err launcher_background_start(launcher_svc *ls)
{
    int64_t tick = ls->monitor_retry_ms < 1000 ? ls->monitor_retry_ms : 1000;
    orch_ticker *t = NULL;
    ls->next_reap_ms = orch_mono_ms() + (uint64_t)ls->reaper_interval_ms;
    orch_err err = orch_ticker_start("background", (uint32_t)tick, 0, background_tick, ls, &t);
    if (err)
        return err;
    pthread_mutex_lock(&ls->mu);
    ls->background = t;
    pthread_mutex_unlock(&ls->mu);
    return ORCH_OK;
}

/* Stops the background passes; the supervisor starts no pass after this
 * either (launcher_proc_stop() joins it next), as before a shutdown. */
void launcher_background_stop(launcher_svc *ls)
{
    pthread_mutex_lock(&ls->mu);
    orch_ticker *t = ls->background;
    ls->background = NULL;
    orch_ticker_cancel(ls->supervisor);
    pthread_mutex_unlock(&ls->mu);
    orch_ticker_stop(t);
}
