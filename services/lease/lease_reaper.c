/*
 * lease_reaper.c - start-up recovery and the reaper (the host's
 * registration is lease_host.c).
 *
 * The reaper runs on its own thread every ORCH_LEASE_REAPER_INTERVAL_MS: it
 * force-releases leases older than the ceiling whatever their liveness, and
 * releases leases whose owner is dead. Every release is conditional on the
 * epoch it judged, so a lease released or re-granted meanwhile is left alone,
 * and several reapers on several hosts can run at once. An owner whose host
 * cannot be asked (UNKNOWN) is left to the ceiling. Candidates are read
 * without locks and released one statement each, skipping a row another
 * transaction holds locked (SKIP LOCKED): a frozen client holding one row,
 * or one row whose release fails, costs that row this pass, never the pass.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lease_svc.h"
#include "orch/alert.h"
#include "orch/clock.h"
#include "orch/ident.h"
#include "orch/log.h"

typedef struct sweep {
    lease_svc *ls;
    lease_row *rows;
    size_t n, cap;
    int64_t oldest_s;
} sweep;

static void collect(const lease_row *row, void *arg)
{
    sweep *s = arg;
    if ((int64_t)row->age_s > s->oldest_s)
        s->oldest_s = (int64_t)row->age_s;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 32;
        lease_row *r = realloc(s->rows, nc * sizeof *r);
        if (!r)
            return; /* the rest waits for the next pass */
        s->rows = r;
        s->cap = nc;
    }
    s->rows[s->n++] = *row;
}

/* Puts the lease judged next into this thread's log context, so that every
 * line about it (skipped, failed, released, the alert) carries its
 * work_item and epoch keys; lease_reaper_pass() clears it. */
static void row_ctx(const lease_row *row)
{
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, row->work_item);
    orch_log_ctx_set_epoch(row->epoch);
}

/* Releases one lease by its own statement (lease_store_reap): a row another
 * transaction holds locked is skipped, a failure costs this row only. True
 * when released. */
static bool reap_row(lease_svc *ls, const lease_row *row, int64_t ceiling_s, const char *kind,
                     const char *detail, uint64_t dl)
{
    orch_db_conn *c = NULL;
    bool released = false, locked = false;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (!err)
        err = lease_store_reap(c, dl, row->work_item, row->epoch, ceiling_s, kind, detail,
                               &released, &locked);
    if (err)
        orch_warn("reaper: %s of %s epoch %" PRIu64 " failed: %s: %s; the pass goes on", kind,
                  row->work_item, row->epoch, orch_strerror(err), c ? orch_db_last_error(c) : "");
    else if (locked)
        orch_warn("reaper: %s of %s epoch %" PRIu64 " skipped: its row is locked by another "
                  "transaction; the next pass tries again",
                  kind, row->work_item, row->epoch);
    orch_db_release(c);
    return !err && released;
}

/* Tier 3, the ceiling: every lease older than ORCH_REAPER_MAX_RUNNING_S is
 * released whatever its liveness, one row at a time. */
static void ceiling_pass(lease_svc *ls)
{
    uint64_t dl = orch_mono_ms() + 10000;
    sweep s = { .ls = ls };
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (!err)
        err = lease_store_list_over_ceiling(c, dl, ls->ceiling_s, 1000, collect, &s);
    if (err)
        orch_warn("reaper: ceiling scan failed: %s: %s", orch_strerror(err),
                  c ? orch_db_last_error(c) : "");
    orch_db_release(c);
    for (size_t i = 0; i < s.n; i++) {
        const lease_row *row = &s.rows[i];
        char detail[LEASE_MAX_FIELD + 64];
        row_ctx(row);
        snprintf(detail, sizeof detail, "held longer than %" PRId64 " s by %s", ls->ceiling_s,
                 row->actor);
        if (!reap_row(ls, row, ls->ceiling_s, "ceiling-released", detail, orch_mono_ms() + 10000))
            continue;
        orch_counter_add(ls->m_release, REL_CEILING, 1);
        orch_alert("lease.ceiling-released", row->work_item,
                   "epoch %" PRIu64 " held %" PRIu64 " s by %s pid %d (%s, %s), over the ceiling "
                   "of %" PRId64 " s: released whatever its liveness",
                   row->epoch, row->age_s, row->owner.host_id, (int)row->owner.pid, row->actor,
                   row->transition, ls->ceiling_s);
    }
    free(s.rows);
}

/* Releases `row` if its owner is dead (true); leaves ALIVE and UNKNOWN alone. */
static bool reap_if_dead(lease_svc *ls, const lease_row *row, lease_liveness *verdict)
{
    const char *why;
    uint64_t dl = orch_mono_ms() + ls->probe_timeout_ms + 2000;
    *verdict = lease_svc_judge(ls, &row->owner, dl, &why);
    if (*verdict != LEASE_DEAD)
        return false;
    char detail[512];
    snprintf(detail, sizeof detail, "owner %s pid %d (%s): %s", row->owner.host_id,
             (int)row->owner.pid, row->actor, why);
    if (!reap_row(ls, row, -1, "reclaimed-stale", detail, dl))
        return false;
    orch_counter_add(ls->m_release, REL_STALE, 1);
    orch_alert("lease.reclaimed-stale", row->work_item, "epoch %" PRIu64 " released: %s",
               row->epoch, detail);
    return true;
}

#define SCAN_PAGE      1000
#define SCAN_MAX_PAGES 10000 /* 10^7 held leases: a bound, not a limit in practice */

/* Hosts found unreachable in this pass: not asked again, so that many
 * leases on a cut-off host cost one probe timeout, not one each. */
typedef struct unreachable_hosts {
    char id[16][sizeof(((lease_owner *)0)->host_id)];
    size_t n;
} unreachable_hosts;

/* Judges the owners of one page of held leases; returns how many it reaped. */
static size_t judge_page(lease_svc *ls, const sweep *s, unreachable_hosts *u)
{
    size_t reaped = 0;
    for (size_t i = 0; i < s->n; i++) {
        const char *host = s->rows[i].owner.host_id;
        bool skip = false;
        for (size_t k = 0; k < u->n && !skip; k++)
            skip = strcmp(u->id[k], host) == 0;
        if (skip)
            continue;
        lease_liveness v;
        row_ctx(&s->rows[i]);
        reaped += reap_if_dead(ls, &s->rows[i], &v) ? 1 : 0;
        if (v == LEASE_UNKNOWN && u->n < 16 && strcmp(host, ls->me->host_id) != 0)
            snprintf(u->id[u->n++], sizeof u->id[0], "%s", host);
    }
    return reaped;
}

/* Reads the page of held leases after `after` into `s`; false (logged) on
 * a database error. */
static bool read_page(lease_svc *ls, const char *only_host, const char *after, sweep *s)
{
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (!err)
        err = lease_store_list_held_after(c, dl, only_host, after, SCAN_PAGE, collect, s);
    if (err)
        orch_warn("reaper: dead-owner scan failed: %s: %s", orch_strerror(err),
                  c ? orch_db_last_error(c) : "");
    orch_db_release(c);
    return err == ORCH_OK;
}

/* Tier 2, dead owners: every held lease (of `only_host`, if set) whose owner
 * is judged dead is released, one row at a time, page by page in work-item
 * order, so that no lease is out of reach however many are held. */
static void dead_owner_pass(lease_svc *ls, const char *only_host)
{
    char after[sizeof(((lease_row *)0)->work_item)] = "";
    unreachable_hosts u = { .n = 0 };
    size_t held = 0;
    int64_t oldest = 0;
    for (int page = 0; page < SCAN_MAX_PAGES; page++) {
        sweep s = { .ls = ls };
        if (!read_page(ls, only_host, after, &s)) {
            free(s.rows);
            return;
        }
        held += s.n - judge_page(ls, &s, &u);
        oldest = s.oldest_s > oldest ? s.oldest_s : oldest;
        bool last = s.n < SCAN_PAGE;
        if (s.n)
            snprintf(after, sizeof after, "%s", s.rows[s.n - 1].work_item);
        free(s.rows);
        if (last)
            break;
    }
    if (!only_host) {
        atomic_store(&ls->held, (int64_t)held);
        atomic_store(&ls->oldest_age_s, oldest);
    }
}

/* The two tiers are independent: a failed ceiling scan or row never keeps
 * the dead-owner scan from running. */
void lease_reaper_pass(lease_svc *ls, const char *only_host)
{
    if (!only_host)
        ceiling_pass(ls);
    orch_log_ctx_clear();
    dead_owner_pass(ls, only_host);
    orch_log_ctx_clear();
}

/* Whether this host's launcher has requeued the jobs of its previous
 * instances: no job of this host runs, or all run under the instance that
 * wrote the launcher_recovery marker and that process lives. */
static bool launcher_ready(lease_svc *ls, char *why, size_t n)
{
    uint64_t dl = orch_mono_ms() + 5000, ticks = 0;
    orch_db_conn *c = NULL;
    lease_launcher_state st;
    if (orch_db_acquire(ls->db, dl, &c) != ORCH_OK) {
        snprintf(why, n, "database unavailable");
        return false;
    }
    orch_err err = lease_store_launcher_state(c, dl, ls->me->host_id, &st);
    orch_db_release(c);
    if (err) {
        snprintf(why, n, "launcher state unreadable: %s", orch_strerror(err));
        return false;
    }
    if (st.running == 0)
        return true;
    bool marker_alive = st.pid > 0 && strcmp(st.boot_id, ls->me->boot_id) == 0 &&
                        orch_proc_start_ticks(st.pid, &ticks) == ORCH_OK && ticks == st.start_ticks;
    snprintf(why, n, "%ld job(s) running, %ld not yet requeued, launcher %s", st.running,
             st.running_elsewhere, marker_alive ? "up" : "not up");
    return marker_alive && st.running_elsewhere == 0;
}

/* Start-up ordering (DESIGN.md invariant 7): the launcher of this host
 * requeues its jobs before their leases are reclaimed. Waits at most
 * ORCH_LEASE_RECOVERY_WAIT_MS, then recovers anyway (a launcher that does
 * not come back must not keep leases forever). */
static void wait_for_launcher(lease_svc *ls)
{
    char why[160] = "";
    uint64_t until = orch_mono_ms() + (uint64_t)ls->recovery_wait_ms;
    bool logged = false;
    for (int round = 0; round < 100000; round++) { /* bounded by `until` */
        if (launcher_ready(ls, why, sizeof why)) {
            if (logged)
                orch_info("launcher of host %s has requeued its jobs: recovery proceeds",
                          ls->me->host_id);
            return;
        }
        if (orch_mono_ms() >= until)
            break;
        if (!logged)
            orch_info("start-up recovery waits for the launcher's requeue: %s", why);
        logged = true;
        struct timespec ts = { 0, 100 * 1000000L };
        nanosleep(&ts, NULL);
    }
    orch_warn("start-up recovery proceeds without the launcher's requeue after %lld ms: %s",
              (long long)ls->recovery_wait_ms, why);
}

static bool reaper_tick(void *arg)
{
    lease_reaper_pass(arg, NULL);
    return true;
}

orch_err lease_reaper_start(lease_svc *ls)
{
    /* Start-up recovery: leases of this host's previous boots and of its
     * processes that are gone are reclaimed before the first request. */
    wait_for_launcher(ls);
    lease_reaper_pass(ls, ls->me->host_id);

    return orch_ticker_start("lease-reaper", (uint32_t)ls->reaper_interval_ms, 0, reaper_tick, ls,
                             &ls->reaper);
}

void lease_reaper_stop(lease_svc *ls)
{
    orch_ticker_stop(ls->reaper);
    ls->reaper = NULL;
}
