/*
 * lease_bench_calls.c - Acquire and Release on lease_bench's two stacks:
 * the service (orch_rpc_invoke on lease-service) and the direct one (the
 * SQL of services/lease/lease_store.c sent with libpq, in the same round
 * trips). Each function runs on its caller's thread and touches only that
 * caller's state and connection; failures go to bench_failf.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/lease.pb-c.h"
#include "orch/clock.h"
#include "lease_bench.h"

/* ---- the SQL of services/lease/lease_store.c (the same texts) ---------------- */

/* The statements of the direct stack, by the name they are prepared under
 * (unless --unprepared). */
typedef struct lb_stmt {
    const char *name, *what, *sql;
    int nparams;
} lb_stmt;

enum { ST_GET, ST_ACQUIRE, ST_RELEASE, ST_EVENT, NSTMTS };

static const lb_stmt stmts[NSTMTS] = {
    { "lb_get", "lease_store_get", lease_sql_get, 1 },
    { "lb_acquire", "lease_store_acquire", lease_sql_acquire, 9 },
    { "lb_release", "lease_store_release", lease_sql_release, 5 },
    { "lb_event", "lease_store_event_async", lease_sql_event_async, 5 },
};

typedef enum { OUT_GRANTED, OUT_HELD, OUT_ABORTED } outcome;

/* A lease row as lease_store.c reads it (read_row). */
typedef struct lb_row {
    bool found, held;
    char work_item[MAX_FIELD + 1];
    uint64_t epoch;
    char host[256], boot[64], instance[64];
    int32_t pid;
    uint64_t ticks;
    char actor[MAX_FIELD + 1], transition[MAX_FIELD + 1], repo[MAX_FIELD + 1];
    uint64_t acquired_ms, released_ms, age_s;
    char reason[MAX_FIELD + 1];
} lb_row;

/* ---- direct stack: libpq ------------------------------------------------------------ */

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static uint64_t to_u64(const char *s)
{
    return s ? strtoull(s, NULL, 10) : 0;
}

static const char *cell(const PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? NULL : PQgetvalue(r, 0, col);
}

/* Runs statement `st` as orch_db_exec() does: prepared (or, with
 * --unprepared, parsed every time); *out (may be NULL) is the result. */
static bool pq_exec(bench_worker *w, const lb_caller *c, int st, const char *const *p,
                    PGresult **out)
{
    const lb_stmt *s = &stmts[st];
    PGresult *r = c->cx->o->prepared
                      ? PQexecPrepared(c->pg, s->name, s->nparams, p, NULL, NULL, 0)
                      : PQexecParams(c->pg, s->sql, s->nparams, NULL, p, NULL, NULL, 0);
    ExecStatusType rs = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK) {
        const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c->pg);
        bench_failf(w, "direct: %s: %.*s", s->what, (int)strcspn(msg, "\n"), msg);
        PQclear(r);
        return false;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return true;
}

/* Reads the lease columns of lease_store.c (read_row) from column `at`. */
static void read_lease(const PGresult *r, int at, lb_row *row)
{
    memset(row, 0, sizeof *row);
    row->found = PQntuples(r) == 1 && !PQgetisnull(r, 0, at);
    if (!row->found)
        return;
    copy(row->work_item, sizeof row->work_item, cell(r, at));
    row->epoch = to_u64(cell(r, at + 1));
    copy(row->host, sizeof row->host, cell(r, at + 2));
    copy(row->boot, sizeof row->boot, cell(r, at + 3));
    row->pid = (int32_t)strtol(PQgetvalue(r, 0, at + 4), NULL, 10);
    row->ticks = to_u64(cell(r, at + 5));
    copy(row->instance, sizeof row->instance, cell(r, at + 6));
    copy(row->actor, sizeof row->actor, cell(r, at + 7));
    copy(row->transition, sizeof row->transition, cell(r, at + 8));
    copy(row->repo, sizeof row->repo, cell(r, at + 9));
    row->acquired_ms = to_u64(cell(r, at + 10));
    row->released_ms = to_u64(cell(r, at + 11));
    copy(row->reason, sizeof row->reason, cell(r, at + 12));
    const char *held = cell(r, at + 13);
    row->held = held && held[0] == 't';
    row->age_s = to_u64(cell(r, at + 14));
}

static bool db_get(bench_worker *w, lb_caller *c, lb_row *row)
{
    const char *p[] = { c->item };
    PGresult *r;
    if (!pq_exec(w, c, ST_GET, p, &r))
        return false;
    read_lease(r, 0, row);
    PQclear(r);
    return true;
}

/* lease_store_acquire(): the grant, or the lease as it was. */
static bool db_acquire(bench_worker *w, lb_caller *c, bool *granted, uint64_t *epoch, lb_row *row)
{
    const lb_ctx *cx = c->cx;
    const char *p[] = { c->item,     cx->me.host_id, cx->me.boot_id, cx->pid_s,  cx->ticks_s,
                        c->instance, c->actor,       TRANSITION,     cx->o->repo };
    PGresult *r;
    if (!pq_exec(w, c, ST_ACQUIRE, p, &r))
        return false;
    *granted = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0);
    if (*granted)
        *epoch = to_u64(cell(r, 0));
    read_lease(r, 1, row);
    PQclear(r);
    return true;
}

static bool db_release(bench_worker *w, lb_caller *c, uint64_t epoch)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    const char *p[] = { c->item, ep, "released", "holder", "" };
    PGresult *r;
    if (!pq_exec(w, c, ST_RELEASE, p, &r))
        return false;
    bool released = PQntuples(r) == 1;
    PQclear(r);
    return released ? true
                    : bench_failf(w, "direct: release of %s epoch %" PRIu64 " found no live grant",
                                  c->item, epoch);
}

/* record_deferral() of lease_rpc.c. */
static bool db_defer(bench_worker *w, lb_caller *c, const lb_row *row)
{
    char detail[512], ep[24];
    snprintf(detail, sizeof detail, "held by %s pid %d (%s), owner %s", row->host, (int)row->pid,
             row->actor, "alive");
    snprintf(ep, sizeof ep, "%" PRIu64, row->epoch);
    const char *p[] = { c->item, ep, "deferred", c->actor, detail };
    return pq_exec(w, c, ST_EVENT, p, NULL);
}

/* acquire_claim() and read_or_grant() of lease_rpc.c, for owners of this host. */
static bool direct_acquire(bench_worker *w, lb_caller *c, outcome *out, uint64_t *epoch)
{
    const lb_ctx *cx = c->cx;
    for (int round = 0; round < 4; round++) {
        lb_row row;
        bool granted = false;
        if (!db_acquire(w, c, &granted, epoch, &row))
            return false;
        if (granted) {
            *out = OUT_GRANTED;
            return true;
        }
        if ((!row.found || !row.held) && !db_get(w, c, &row)) /* lost the race: see who won */
            return false;
        if (!row.found || !row.held)
            continue; /* released in between: try again */
        if (strcmp(row.instance, c->instance) == 0)
            return bench_failf(w, "direct: %s is already held by this caller", c->item);
        uint64_t ticks = 0;
        bool alive = strcmp(row.boot, cx->me.boot_id) == 0 &&
                     orch_proc_start_ticks(row.pid, &ticks) == ORCH_OK && ticks == row.ticks;
        if (!alive)
            return bench_failf(w, "direct: the holder of %s (pid %d) is not running", c->item,
                               (int)row.pid);
        if (!db_defer(w, c, &row))
            return false;
        *out = OUT_HELD;
        return true;
    }
    *out = OUT_ABORTED;
    return true;
}

/* ---- service stack: orch_rpc_invoke ---------------------------------------------------- */

static bool svc_acquire(bench_worker *w, lb_caller *c, outcome *out, uint64_t *epoch)
{
    const lb_ctx *cx = c->cx;
    Orch__V1__Owner owner = ORCH__V1__OWNER__INIT;
    Orch__V1__AcquireRequest req = ORCH__V1__ACQUIRE_REQUEST__INIT;
    owner.host_id = (char *)cx->me.host_id;
    owner.boot_id = (char *)cx->me.boot_id;
    owner.pid = (int32_t)cx->me.pid;
    owner.start_ticks = cx->me.start_ticks;
    owner.instance_id = c->instance;
    req.work_item = c->item;
    req.repo = (char *)cx->o->repo;
    req.transition = (char *)TRANSITION;
    req.actor = c->actor;
    req.owner = &owner;
    orch_rpc_call_opts co = { .timeout_ms = cx->o->timeout_ms };
    orch_rpc_status st;
    ProtobufCMessage *m = NULL;
    orch_code code = orch_rpc_invoke(cx->rpc, LB_ACQUIRE, &req.base,
                                     &orch__v1__acquire_reply__descriptor, &co, &st, &m);
    if (code == ORCH_CODE_ABORTED) {
        *out = OUT_ABORTED; /* "kept changing; try again" */
        return true;
    }
    if (code != ORCH_CODE_OK)
        return bench_failf(w, "service: Acquire %s: %s: %s", c->item, orch_code_name(code),
                           st.message);
    const Orch__V1__AcquireReply *r = (const Orch__V1__AcquireReply *)m;
    bool ok = true;
    if (r->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_GRANTED && !r->inert &&
        !r->already_held && !r->reclaimed && r->epoch > 0) {
        *out = OUT_GRANTED;
        *epoch = r->epoch;
    } else if (r->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_HELD) {
        *out = OUT_HELD;
    } else {
        ok = bench_failf(w,
                         "service: Acquire %s: outcome %d, inert %d, already held %d, "
                         "reclaimed %d (inert: is repo '%s' in the lease's scope?)",
                         c->item, (int)r->outcome, (int)r->inert, (int)r->already_held,
                         (int)r->reclaimed, cx->o->repo);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return ok;
}

static bool svc_release(bench_worker *w, lb_caller *c, uint64_t epoch)
{
    Orch__V1__ReleaseRequest req = ORCH__V1__RELEASE_REQUEST__INIT;
    req.work_item = c->item;
    req.epoch = epoch;
    orch_rpc_call_opts co = { .timeout_ms = c->cx->o->timeout_ms };
    orch_rpc_status st;
    ProtobufCMessage *m = NULL;
    orch_code code = orch_rpc_invoke(c->cx->rpc, LB_RELEASE, &req.base,
                                     &orch__v1__release_reply__descriptor, &co, &st, &m);
    if (code != ORCH_CODE_OK)
        return bench_failf(w, "service: Release %s epoch %" PRIu64 ": %s: %s", c->item, epoch,
                           orch_code_name(code), st.message);
    bool again = ((const Orch__V1__ReleaseReply *)m)->already_released;
    protobuf_c_message_free_unpacked(m, NULL);
    return again ? bench_failf(w, "service: Release %s epoch %" PRIu64 ": already released",
                               c->item, epoch)
                 : true;
}

/* ---- the units of work ---------------------------------------------------------------- */

/* Counts a timed request as outstanding (lb_inflight); returns its start,
 * 0 for an untimed one. */
static uint64_t inflight_enter(const bench_worker *w, const lb_caller *c)
{
    lb_inflight *in = c->cx->inflight;
    if (!w->timed || !in)
        return 0;
    int now = atomic_fetch_add(&in->now, 1) + 1;
    int max = atomic_load(&in->max);
    while (now > max && !atomic_compare_exchange_weak(&in->max, &max, now)) {
    }
    return orch_mono_ns();
}

static void inflight_leave(const lb_caller *c, uint64_t t0)
{
    lb_inflight *in = c->cx->inflight;
    if (!t0 || !in)
        return;
    atomic_fetch_add(&in->busy_ns, orch_mono_ns() - t0);
    atomic_fetch_sub(&in->now, 1);
}

static bool acquire(bench_worker *w, lb_caller *c, outcome *out, uint64_t *epoch)
{
    uint64_t t0 = inflight_enter(w, c);
    bool ok =
        c->stack == LB_SERVICE ? svc_acquire(w, c, out, epoch) : direct_acquire(w, c, out, epoch);
    inflight_leave(c, t0);
    return ok;
}

static bool release(bench_worker *w, lb_caller *c, uint64_t epoch)
{
    uint64_t t0 = inflight_enter(w, c);
    bool ok = c->stack == LB_SERVICE ? svc_release(w, c, epoch) : db_release(w, c, epoch);
    inflight_leave(c, t0);
    return ok;
}

bool lb_pair_call(bench_worker *w)
{
    lb_caller *c = w->arg;
    outcome out = OUT_ABORTED;
    uint64_t epoch = 0;
    snprintf(c->item, sizeof c->item, "bench-%u-%u", c->id, c->next);
    c->next = (c->next + 1) % c->cx->o->items;
    if (!acquire(w, c, &out, &epoch))
        return false;
    if (out != OUT_GRANTED)
        return bench_failf(w, "%s: %s was not granted, yet only this caller uses it",
                           lb_stack_names[c->stack], c->item);
    return release(w, c, epoch);
}

bool lb_attempt_call(bench_worker *w)
{
    lb_caller *c = w->arg;
    outcome out = OUT_ABORTED;
    uint64_t epoch = 0;
    if (!acquire(w, c, &out, &epoch))
        return false;
    if (out == OUT_GRANTED && !release(w, c, epoch))
        return false;
    if (w->timed) {
        c->grants += out == OUT_GRANTED;
        c->defers += out == OUT_HELD;
        c->aborts += out == OUT_ABORTED;
    }
    return true;
}

bool lb_scale_call(bench_worker *w)
{
    lb_caller *c = w->arg;
    outcome out = OUT_ABORTED;
    uint64_t epoch = 0;
    /* A stride prime to 10^3 and 10^6 visits the rows in a scattered order. */
    unsigned g = (unsigned)(((uint64_t)c->next * 7919u) % c->rows) + 1;
    c->next++;
    snprintf(c->item, sizeof c->item, "bench-scale-%u", g);
    uint64_t t0 = orch_mono_ns();
    if (!svc_acquire(w, c, &out, &epoch))
        return false;
    uint64_t dt = orch_mono_ns() - t0;
    if (out != OUT_GRANTED)
        return bench_failf(w, "service: %s (a released row) was not granted", c->item);
    if (w->timed && c->nacq < c->cap)
        c->acq_ns[c->nacq++] = dt;
    return svc_release(w, c, epoch);
}

/* Prepares the direct stack's statements on `pg`. */
bool lb_prepare(PGconn *pg)
{
    for (int i = 0; i < NSTMTS; i++) {
        PGresult *r = PQprepare(pg, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL);
        bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "lease_bench: cannot prepare %s: %s", stmts[i].what,
                    r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
        PQclear(r);
        if (!ok)
            return false;
    }
    return true;
}
