/*
 * lease_bench.c - the throughput of lease-service's Acquire + Release against
 * the same SQL sent straight to PostgreSQL.
 *
 * Two stacks, in one run, on one database:
 *   service  orch.v1.LeaseService/Acquire and /Release through
 *            orch_rpc_invoke() on a running lease-service, one client shared
 *            by the callers as a process would share it. The owners are live
 *            processes of this host (this process's pid and start ticks, an
 *            instance id per caller), so that judging a holder reads /proc;
 *   direct   the statements lease-service sends for those calls (the SQL of
 *            lease_store.c, copied below), sent with libpq by the callers
 *            themselves, one connection per caller, in the same round trips:
 *            Acquire = lease_store_acquire (grant if free, else the lease as
 *            it is; lease_store_get again when it lost a race); when held, the
 *            holder judged from /proc and a 'deferred' event written with
 *            synchronous_commit off (lease_store_event_async). Release =
 *            lease_store_release.
 * Modes: K callers (--callers, 1,4,16) each on work items of its own,
 * "bench-<caller>-<i>" rotating over --items, timing acquire + release
 * pairs; and K callers (--contended, 16) on one work item, each repeatedly
 * Acquire and, when granted, Release at once, timing attempts.
 * Each round runs every mode; within a mode the stacks take turns in slices
 * (direct, service, service, direct, ...) so that the drift of this machine
 * touches both alike, the first stack alternating from round to round.
 * Before each slice the lease tables are truncated, and each caller makes
 * --warmup untimed pairs (creating its rows), so every slice starts from the
 * same state. Costs per operation come from /proc: CPU time and context
 * switches of lease-service (--service-pid), of the PostgreSQL cluster
 * (--pg-pid: the postmaster and its children) and of this process, and the
 * machine's busy share and what of it went to other processes (other
 * programs running meanwhile distort the figures); for the service stack
 * also the time lease-service accounts for in its /metrics (--metrics-addr).
 * Both stacks use prepared statements: lease-service's db.c prepares each
 * parameterized statement once per connection, so the direct stack prepares
 * the same texts once per connection too (like with like). --unprepared
 * makes the direct stack parse and plan every statement, unlike the service,
 * to show what preparing saves.
 *
 * It prints figures and never passes or fails on them. Exit status: 0 when
 * every call succeeded, 1 when a call or a set-up step failed, 2 on bad usage.
 * Threading: the main thread drives; the callers of a slice are joined before
 * the next slice starts; each direct caller owns its connection for the slice.
 * Every loop is bounded by a count.
 */
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/v1/lease.pb-c.h"
#include "orch/clock.h"
#include "orch/ident.h"
#include "orch/rpc.h"
#include "bench_common.h"
#include "bench_proc.h"
#include "lease_report.h"
#include "lease_store.h"

#define MAX_OPS        10000000u
#define MAX_FIELD      LEASE_MAX_FIELD
#define MAX_ITEMS      1000u
#define CONTENDED_ITEM "bench-contended"
#define TRANSITION     "bench->bench"
#define METRICS_MS     2000 /* budget of one /metrics read */

/* ---- the SQL of services/lease/lease_store.c (the same texts) ---------------- */

static const char sql_truncate[] = "TRUNCATE transition_lease, lease_events";

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

/* ---- state ------------------------------------------------------------------------ */

/* What the callers share; read-only while they run. */
typedef struct lb_ctx {
    const lb_options *o;
    orch_rpc_client *rpc;
    PGconn *conns[LB_MAX_CALLERS]; /* direct stack, one per caller */
    PGconn *admin;                 /* truncation, on the main thread */
    orch_ident me;                 /* the owners' identity */
    char pid_s[16], ticks_s[24];
    nng_url *metrics_url; /* NULL: /metrics not read */
    nng_http_client *http;
} lb_ctx;

typedef enum { OUT_GRANTED, OUT_HELD, OUT_ABORTED } outcome;

/* One calling thread's own state; its bench_worker points here. */
typedef struct lb_caller {
    const lb_ctx *cx;
    int stack;
    unsigned id, next;
    PGconn *pg; /* direct: borrowed from cx->conns[id] */
    char actor[32];
    char instance[33];
    char item[64];
    unsigned long grants, defers, aborts; /* timed attempts only */
} lb_caller;

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
    if (r->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__GRANTED && !r->inert && !r->already_held &&
        !r->reclaimed && r->epoch > 0) {
        *out = OUT_GRANTED;
        *epoch = r->epoch;
    } else if (r->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__HELD) {
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

static bool acquire(bench_worker *w, lb_caller *c, outcome *out, uint64_t *epoch)
{
    return c->stack == LB_SERVICE ? svc_acquire(w, c, out, epoch)
                                  : direct_acquire(w, c, out, epoch);
}

static bool release(bench_worker *w, lb_caller *c, uint64_t epoch)
{
    return c->stack == LB_SERVICE ? svc_release(w, c, epoch) : db_release(w, c, epoch);
}

/* Acquire + Release of the caller's next work item, which must be free. */
static bool pair_call(bench_worker *w)
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

/* One Acquire of the shared work item, and its Release when granted. */
static bool attempt_call(bench_worker *w)
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

/* ---- samples ----------------------------------------------------------------------------- */

/* Sums and counts of lease-service's histograms for Acquire and Release. */
typedef struct lb_metrics {
    bool ok;
    double acq_s, hnd_s, rel_s; /* seconds */
    double acq_n, hnd_n, rel_n;
} lb_metrics;

/* The value after `key` and a space at the start of a line of `body`. */
static bool metric_value(const char *body, const char *key, double *out)
{
    size_t klen = strlen(key);
    const char *p = body;
    while (p && *p) {
        if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
            char *end;
            *out = strtod(p + klen + 1, &end);
            return end != p + klen + 1;
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return false;
}

static bool parse_metrics(const char *body, lb_metrics *m)
{
    static const char rpc[] = "orch_rpc_request_duration_seconds";
    static const char hnd[] = "orch_lease_acquire_duration_seconds";
    static const char acq[] = "{method=\"" LB_ACQUIRE "\"}";
    static const char rel[] = "{method=\"" LB_RELEASE "\"}";
    char k[6][128];
    snprintf(k[0], sizeof k[0], "%s_sum%s", rpc, acq);
    snprintf(k[1], sizeof k[1], "%s_count%s", rpc, acq);
    snprintf(k[2], sizeof k[2], "%s_sum{method=\"Acquire\"}", hnd);
    snprintf(k[3], sizeof k[3], "%s_count{method=\"Acquire\"}", hnd);
    snprintf(k[4], sizeof k[4], "%s_sum%s", rpc, rel);
    snprintf(k[5], sizeof k[5], "%s_count%s", rpc, rel);
    double *v[6] = { &m->acq_s, &m->acq_n, &m->hnd_s, &m->hnd_n, &m->rel_s, &m->rel_n };
    m->ok = true;
    for (int i = 0; i < 6; i++)
        m->ok = metric_value(body, k[i], v[i]) && m->ok;
    return m->ok;
}

/* GET /metrics of lease-service; m->ok false when it could not be read. */
static void read_metrics(const lb_ctx *cx, lb_metrics *m)
{
    nng_http_req *req = NULL;
    nng_http_res *res = NULL;
    nng_aio *aio = NULL;
    memset(m, 0, sizeof *m);
    if (!cx->http)
        return;
    if (nng_http_req_alloc(&req, cx->metrics_url) == 0 && nng_http_res_alloc(&res) == 0 &&
        nng_aio_alloc(&aio, NULL, NULL) == 0) {
        nng_aio_set_timeout(aio, METRICS_MS);
        nng_http_client_transact(cx->http, req, res, aio);
        nng_aio_wait(aio);
        void *body;
        size_t len;
        nng_http_res_get_data(res, &body, &len);
        if (nng_aio_result(aio) == 0 && nng_http_res_get_status(res) == 200 && len > 0) {
            char *text = malloc(len + 1);
            if (text) {
                memcpy(text, body, len);
                text[len] = '\0';
                parse_metrics(text, m);
                free(text);
            }
        }
    }
    nng_aio_free(aio);
    nng_http_res_free(res);
    nng_http_req_free(req);
}

/* What the processes and the machine used so far, read together. */
typedef struct lb_sample {
    bench_use srv, cli;
    bench_tree pg;
    bench_cpu cpu;
    lb_metrics m;
} lb_sample;

typedef struct slice_samples {
    const lb_ctx *cx;
    lb_sample before, after;
} slice_samples;

/* The cheap readings nearest to the timed calls, the slow ones outside. */
static void sample_slice(void *arg, bool after)
{
    slice_samples *ss = arg;
    const lb_options *o = ss->cx->o;
    lb_sample *s = after ? &ss->after : &ss->before;
    bench_use unknown = { -1, -1 };
    if (after) {
        s->cli = bench_self_use();
        s->cpu = bench_cpu_read();
    } else {
        read_metrics(ss->cx, &s->m);
    }
    s->srv = o->service_pid ? bench_proc_use(o->service_pid) : unknown;
    if (o->pg_pid)
        bench_tree_read(o->pg_pid, &s->pg);
    else
        s->pg.n = -1;
    if (after) {
        read_metrics(ss->cx, &s->m);
    } else {
        s->cpu = bench_cpu_read();
        s->cli = bench_self_use();
    }
}

/* ---- slices, modes, rounds ------------------------------------------------------------- */

/* What the slices of one stack in one mode add up to. */
typedef struct lb_accum {
    bench_accum ops;
    unsigned long grants, defers, aborts;
    bench_use srv, pg, cli; /* switches < 0: unknown */
    unsigned long long busy, total;
    bool metrics_ok;
    double acq_s, hnd_s, rel_s, acq_n, hnd_n, rel_n;
} lb_accum;

static bool accum_init(lb_accum *a, size_t cap)
{
    *a = (lb_accum){ .metrics_ok = true };
    return bench_accum_init(&a->ops, cap);
}

static void accum_add(lb_accum *a, const bench_worker *ws, const lb_caller *cs, unsigned k,
                      uint64_t t0, const lb_sample *b, const lb_sample *e)
{
    bench_accum_add(&a->ops, ws, k, t0);
    for (unsigned i = 0; i < k; i++) {
        a->grants += cs[i].grants;
        a->defers += cs[i].defers;
        a->aborts += cs[i].aborts;
    }
    bench_use_add(&a->srv, &b->srv, &e->srv);
    bench_use pg = bench_tree_delta(&b->pg, &e->pg), zero = { 0, 0 };
    bench_use_add(&a->pg, &zero, &pg);
    bench_use_add(&a->cli, &b->cli, &e->cli);
    a->busy += e->cpu.busy - b->cpu.busy;
    a->total += e->cpu.total - b->cpu.total;
    a->metrics_ok = a->metrics_ok && b->m.ok && e->m.ok;
    if (a->metrics_ok) {
        a->acq_s += e->m.acq_s - b->m.acq_s;
        a->acq_n += e->m.acq_n - b->m.acq_n;
        a->hnd_s += e->m.hnd_s - b->m.hnd_s;
        a->hnd_n += e->m.hnd_n - b->m.hnd_n;
        a->rel_s += e->m.rel_s - b->m.rel_s;
        a->rel_n += e->m.rel_n - b->m.rel_n;
    }
}

static double per_op(long long v, double n, double scale)
{
    return v < 0 ? -1.0 : (double)v / scale / n;
}

static double mean_us(double sum_s, double n)
{
    return n > 0 ? sum_s * 1e6 / n : -1.0;
}

static void accum_figures(lb_accum *a, int stack, lb_figures *f)
{
    f->lat = bench_accum_lat(&a->ops);
    double n = (double)(f->lat.n ? f->lat.n : 1);
    double secs = (double)a->ops.busy_ns / 1e9;
    f->grants_per_s = secs > 0 ? (double)a->grants / secs : 0.0;
    f->defers_per_s = secs > 0 ? (double)a->defers / secs : 0.0;
    f->aborts_per_s = secs > 0 ? (double)a->aborts / secs : 0.0;
    f->srv_cpu_us = per_op(a->srv.switches < 0 ? -1 : a->srv.cpu_ns, n, 1000.0);
    f->srv_cs = per_op(a->srv.switches, n, 1.0);
    f->pg_cpu_us = per_op(a->pg.switches < 0 ? -1 : a->pg.cpu_ns, n, 1000.0);
    f->pg_cs = per_op(a->pg.switches, n, 1.0);
    f->cli_cpu_us = per_op(a->cli.switches < 0 ? -1 : a->cli.cpu_ns, n, 1000.0);
    f->cli_cs = per_op(a->cli.switches, n, 1.0);
    f->busy_pct = a->total ? 100.0 * (double)a->busy / (double)a->total : -1.0;
    /* The rest of the busy time went to processes other than these three. */
    long hz = sysconf(_SC_CLK_TCK);
    double tick_ns = 1e9 / (double)(hz > 0 ? hz : 100);
    double own_ns = (double)(a->srv.cpu_ns + a->pg.cpu_ns + a->cli.cpu_ns);
    double other = a->total
                       ? 100.0 * ((double)a->busy * tick_ns - own_ns) / ((double)a->total * tick_ns)
                       : -1.0;
    bool known = a->total && a->srv.switches >= 0 && a->pg.switches >= 0 && a->cli.switches >= 0;
    f->other_pct = !known ? -1.0 : other < 0 ? 0.0 : other;
    bool m = stack == LB_SERVICE && a->metrics_ok;
    f->acq_server_us = m ? mean_us(a->acq_s, a->acq_n) : -1.0;
    f->acq_handler_us = m ? mean_us(a->hnd_s, a->hnd_n) : -1.0;
    f->rel_server_us = m ? mean_us(a->rel_s, a->rel_n) : -1.0;
}

/* Empties the lease tables; false after a message. */
static bool truncate_tables(lb_ctx *cx)
{
    PGresult *r = PQexec(cx->admin, sql_truncate);
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "lease_bench: %s: %s", sql_truncate,
                r ? PQresultErrorMessage(r) : PQerrorMessage(cx->admin));
    PQclear(r);
    return ok;
}

static bool caller_open(lb_caller *c, bench_worker *w, const lb_ctx *cx, const lb_mode *m,
                        int stack, unsigned id, unsigned n)
{
    *c = (lb_caller){ .cx = cx, .stack = stack, .id = id, .pg = cx->conns[id] };
    snprintf(c->actor, sizeof c->actor, "bench-%u", id);
    if (!bench_worker_init(w, m->contended ? attempt_call : pair_call, c, cx->o->warmup, n))
        return false;
    if (orch_random_hex(c->instance, 16) != ORCH_OK)
        return bench_failf(w, "no random instance id");
    if (m->contended)
        snprintf(c->item, sizeof c->item, "%s", CONTENDED_ITEM);
    return true;
}

/* One slice: the callers of mode `m` on `stack`, each `warmup` untimed then
 * `n` timed operations, added to `a`. Returns false, after a message on
 * stderr, when an operation failed. */
static bool run_slice(lb_ctx *cx, const lb_mode *m, int stack, unsigned n, lb_accum *a)
{
    unsigned k = m->callers, opened = 0;
    lb_caller *cs = calloc(k, sizeof *cs);
    bench_worker *ws = calloc(k, sizeof *ws);
    slice_samples *ss = calloc(1, sizeof *ss);
    bool ok = cs && ws && ss;
    if (!ok)
        fprintf(stderr, "lease_bench: out of memory\n");
    ok = ok && truncate_tables(cx);
    for (; ok && opened < k; opened++) {
        if (!caller_open(&cs[opened], &ws[opened], cx, m, stack, opened, n)) {
            fprintf(stderr, "lease_bench: %s\n", ws[opened].err);
            bench_worker_free(&ws[opened]);
            ok = false;
            break;
        }
    }
    if (ss)
        ss->cx = cx;
    uint64_t t0 = ok ? bench_run_workers(ws, k, sample_slice, ss) : 0;
    ok = ok && t0 != 0;
    for (unsigned i = 0; ok && i < k; i++) {
        if (ws[i].err[0]) {
            fprintf(stderr, "lease_bench: %s caller %u: %s\n", lb_stack_names[stack], i, ws[i].err);
            ok = false;
        }
    }
    if (ok)
        accum_add(a, ws, cs, k, t0, &ss->before, &ss->after);
    for (unsigned i = 0; i < opened; i++)
        bench_worker_free(&ws[i]);
    free(cs);
    free(ws);
    free(ss);
    return ok;
}

/* One mode of one round: both stacks in slices whose order alternates.
 * `total` is the timed operations of all callers, per stack. */
static bool run_mode(lb_ctx *cx, const lb_mode *m, int first, lb_figures out[LB_NSTACKS])
{
    const lb_options *o = cx->o;
    unsigned total = m->contended ? o->attempts : o->pairs;
    unsigned per_caller = total / m->callers;
    lb_accum a[LB_NSTACKS];
    bool ok = accum_init(&a[0], (size_t)per_caller * m->callers);
    ok = accum_init(&a[1], (size_t)per_caller * m->callers) && ok;
    if (!ok)
        fprintf(stderr, "lease_bench: out of memory for %u latencies\n", total);
    for (unsigned j = 0; ok && j < o->slices; j++) {
        unsigned nj = per_caller / o->slices + (j < per_caller % o->slices ? 1 : 0);
        for (int i = 0; ok && i < LB_NSTACKS; i++) {
            int s = (first + (int)j + i) % LB_NSTACKS;
            ok = run_slice(cx, m, s, nj, &a[s]);
        }
    }
    for (int s = 0; s < LB_NSTACKS; s++) {
        if (ok)
            accum_figures(&a[s], s, &out[s]);
        bench_accum_free(&a[s].ops);
    }
    return ok;
}

static bool run_rounds(lb_ctx *cx, lb_results *r)
{
    const lb_options *o = cx->o;
    for (unsigned i = 0; i < o->rounds; i++) {
        r->first[i] = i % 2 ? LB_SERVICE : LB_DIRECT;
        for (unsigned m = 0; m < o->nmodes; m++)
            if (!run_mode(cx, &o->modes[m], r->first[i], r->f[i][m]))
                return false;
        if (!o->json)
            lb_print_round(o, r, i);
    }
    return true;
}

/* ---- set-up ----------------------------------------------------------------------------- */

/* statement_timeout as lease-service sets it for a call of `timeout_ms`
 * (db.c: the time left, rounded down to two significant digits). */
static long service_statement_timeout(unsigned timeout_ms)
{
    unsigned long ms = timeout_ms > 1 ? timeout_ms - 1 : 1, p = 1;
    while (ms / p >= 100)
        p *= 10;
    return (long)(ms / p * p);
}

/* Prepares the direct stack's statements on `pg`. */
static bool pg_prepare(PGconn *pg)
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

static PGconn *pg_open(const char *url, unsigned timeout_ms)
{
    const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
    const char *vals[] = { url, "10", "lease_bench", NULL };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "lease_bench: cannot connect to %s: %s", url,
                pg ? PQerrorMessage(pg) : "out of memory\n");
        PQfinish(pg);
        return NULL;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "SET statement_timeout = %ld", service_statement_timeout(timeout_ms));
    PGresult *r = PQexec(pg, sql);
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        fprintf(stderr, "lease_bench: %s: %s", sql, PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

/* Checks that the schema is there: lease-service migrates it at start. */
static bool check_schema(PGconn *pg)
{
    PGresult *r = PQexec(pg, "SELECT count(*) FROM transition_lease");
    bool ok = r && PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr,
                "lease_bench: the lease tables are not readable (is lease-service "
                "running on this database?): %s",
                r ? PQresultErrorMessage(r) : "no result\n");
    PQclear(r);
    return ok;
}

/* A Check of lease-service, to see that it answers before anything starts. */
static bool service_answers(const lb_ctx *cx)
{
    Orch__V1__GetLeaseRequest req = ORCH__V1__GET_LEASE_REQUEST__INIT;
    orch_rpc_call_opts co = { .timeout_ms = cx->o->timeout_ms };
    orch_rpc_status st;
    ProtobufCMessage *m = NULL;
    req.work_item = (char *)"bench-probe";
    orch_code code = orch_rpc_invoke(cx->rpc, "orch.v1.LeaseService/Get", &req.base,
                                     &orch__v1__lease__descriptor, &co, &st, &m);
    protobuf_c_message_free_unpacked(m, NULL);
    if (code == ORCH_CODE_OK || code == ORCH_CODE_NOT_FOUND)
        return true;
    fprintf(stderr, "lease_bench: lease-service at %s does not answer: %s: %s\n",
            cx->o->service_url, orch_code_name(code), st.message);
    return false;
}

static bool open_metrics(lb_ctx *cx)
{
    char url[300];
    if (!cx->o->metrics_addr[0])
        return true;
    snprintf(url, sizeof url, "http://%s/metrics", cx->o->metrics_addr);
    int rv = nng_url_parse(&cx->metrics_url, url);
    if (rv == 0)
        rv = nng_http_client_alloc(&cx->http, cx->metrics_url);
    if (rv != 0) {
        fprintf(stderr, "lease_bench: --metrics-addr %s: %s\n", cx->o->metrics_addr,
                nng_strerror(rv));
        return false;
    }
    lb_metrics m;
    read_metrics(cx, &m);
    if (!m.ok)
        fprintf(stderr,
                "lease_bench: warning: no Acquire/Release histograms at %s; the "
                "service-side columns stay empty\n",
                url);
    return true;
}

static bool setup(lb_ctx *cx, unsigned max_callers)
{
    const lb_options *o = cx->o;
    if (orch_ident_init(o->host_id, &cx->me) != ORCH_OK) {
        fprintf(stderr, "lease_bench: cannot read this process's identity from /proc\n");
        return false;
    }
    snprintf(cx->pid_s, sizeof cx->pid_s, "%d", (int)cx->me.pid);
    snprintf(cx->ticks_s, sizeof cx->ticks_s, "%" PRIu64, cx->me.start_ticks);
    if (!(cx->admin = pg_open(o->database_url, o->timeout_ms)) || !check_schema(cx->admin))
        return false;
    for (unsigned i = 0; i < max_callers; i++)
        if (!(cx->conns[i] = pg_open(o->database_url, o->timeout_ms)) ||
            (o->prepared && !pg_prepare(cx->conns[i])))
            return false;
    orch_rpc_client_opts co = { .default_timeout_ms = o->timeout_ms,
                                .auth_token = getenv("ORCH_RPC_AUTH_TOKEN") };
    if (orch_rpc_client_open(o->service_url, &co, &cx->rpc) != ORCH_OK) {
        fprintf(stderr, "lease_bench: bad lease-service address '%s'\n", o->service_url);
        return false;
    }
    return service_answers(cx) && open_metrics(cx);
}

static void teardown(lb_ctx *cx)
{
    orch_rpc_client_close(cx->rpc);
    for (unsigned i = 0; i < LB_MAX_CALLERS; i++)
        PQfinish(cx->conns[i]);
    PQfinish(cx->admin);
    if (cx->http)
        nng_http_client_free(cx->http);
    if (cx->metrics_url)
        nng_url_free(cx->metrics_url);
}

/* ---- options ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out, "usage: lease_bench [options]\n"
                 "  Compares Acquire + Release through a running lease-service with the same SQL\n"
                 "  sent directly over libpq, with distinct and with one contended work item.\n"
                 "  Prints figures; exit 0 when every operation succeeded.\n"
                 "\n"
                 "  --service-url URL    lease-service RPC address (default $ORCH_LEASE_RPC_URL,\n"
                 "                       else tcp://127.0.0.1:7701)\n"
                 "  --metrics-addr H:P   its /metrics address (default $ORCH_LEASE_HTTP_ADDR; ''\n"
                 "                       skips the service-side times)\n"
                 "  --database-url URL   the service's database (default $ORCH_DATABASE_URL)\n"
                 "  --service-pid PID    lease-service's pid: its CPU and context switches\n"
                 "  --pg-pid PID         the postmaster's pid: CPU of the cluster's processes\n"
                 "  --host-id ID         the owners' host, equal to the service's ORCH_HOST_ID\n"
                 "                       (default $ORCH_HOST_ID, else bench-host)\n"
                 "  --repo NAME          repo of the requests, in the lease's scope (orch)\n"
                 "  --label TEXT         shown in the header, e.g. the service's settings\n"
                 "  --callers LIST       caller counts on distinct items (1,4,16)\n"
                 "  --contended K        callers on one work item (16; 0 skips the mode)\n"
                 "  --pairs N            timed pairs per stack, mode and round, all callers\n"
                 "                       together (8000)\n"
                 "  --attempts N         the same, in attempts, for the contended mode (8000)\n"
                 "  --items N            work items per caller (4)\n"
                 "  --warmup N           untimed operations of each caller before each slice (20)\n"
                 "  --rounds R           rounds, the first stack alternating (3)\n"
                 "  --slices S           slices per mode and round; the stacks take turns\n"
                 "                       slice by slice (10)\n"
                 "  --timeout MS         deadline of each call (5000)\n"
                 "  --unprepared         direct stack: unprepared statements (PQexecParams,\n"
                 "                       parsed and planned every time), unlike lease-service,\n"
                 "                       which prepares them once per connection\n"
                 "  --json               one JSON document instead of text\n"
                 "  -h, --help           this help\n");
}

static bool parse_pid(const char *s, pid_t *out)
{
    unsigned v;
    if (!bench_parse_uint(s, 1, 0x7fffffffu, &v))
        return false;
    *out = (pid_t)v;
    return true;
}

/* "1,4,16" into distinct-item modes, placed before the contended one. */
static bool parse_callers(const char *arg, lb_options *o)
{
    char *copy_ = strdup(arg), *save = NULL;
    bool ok = copy_ != NULL;
    o->nmodes = 0;
    for (char *tok = ok ? strtok_r(copy_, ",", &save) : NULL; ok && tok;
         tok = strtok_r(NULL, ",", &save)) {
        unsigned k;
        ok = o->nmodes < LB_MAX_MODES - 1 && bench_parse_uint(tok, 1, LB_MAX_CALLERS, &k);
        if (ok)
            o->modes[o->nmodes++] = (lb_mode){ .callers = k };
    }
    free(copy_);
    return ok && o->nmodes > 0;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && v[0] ? v : fallback;
}

/* Returns -1 to go on, else an exit status. */
static int parse_args(int argc, char **argv, lb_options *o)
{
    static const struct option longopts[] = {
        { "service-url", required_argument, NULL, 'u' },
        { "metrics-addr", required_argument, NULL, 'm' },
        { "database-url", required_argument, NULL, 'd' },
        { "service-pid", required_argument, NULL, 'P' },
        { "pg-pid", required_argument, NULL, 'g' },
        { "host-id", required_argument, NULL, 'H' },
        { "repo", required_argument, NULL, 'R' },
        { "label", required_argument, NULL, 'l' },
        { "callers", required_argument, NULL, 'c' },
        { "contended", required_argument, NULL, 'C' },
        { "pairs", required_argument, NULL, 'n' },
        { "attempts", required_argument, NULL, 'a' },
        { "items", required_argument, NULL, 'i' },
        { "warmup", required_argument, NULL, 'w' },
        { "rounds", required_argument, NULL, 'r' },
        { "slices", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 'T' },
        { "unprepared", no_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    *o = (lb_options){ .service_url = env_or("ORCH_LEASE_RPC_URL", "tcp://127.0.0.1:7701"),
                       .metrics_addr = env_or("ORCH_LEASE_HTTP_ADDR", ""),
                       .database_url = env_or("ORCH_DATABASE_URL", ""),
                       .host_id = env_or("ORCH_HOST_ID", "bench-host"),
                       .repo = "orch",
                       .label = "",
                       .pairs = 8000,
                       .attempts = 8000,
                       .items = 4,
                       .warmup = 20,
                       .rounds = 3,
                       .slices = 10,
                       .timeout_ms = 5000,
                       .prepared = true };
    unsigned contended = 16;
    parse_callers("1,4,16", o);
    int ch, li = -1;
    bool ok = true;
    while (ok && (ch = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        switch (ch) {
        case 'u': o->service_url = optarg; break;
        case 'm': o->metrics_addr = optarg; break;
        case 'd': o->database_url = optarg; break;
        case 'P': ok = parse_pid(optarg, &o->service_pid); break;
        case 'g': ok = parse_pid(optarg, &o->pg_pid); break;
        case 'H': o->host_id = optarg; break;
        case 'R': o->repo = optarg; break;
        case 'l': o->label = optarg; break;
        case 'c': ok = parse_callers(optarg, o); break;
        case 'C': ok = bench_parse_uint(optarg, 0, LB_MAX_CALLERS, &contended); break;
        case 'n': ok = bench_parse_uint(optarg, 1, MAX_OPS, &o->pairs); break;
        case 'a': ok = bench_parse_uint(optarg, 1, MAX_OPS, &o->attempts); break;
        case 'i': ok = bench_parse_uint(optarg, 1, MAX_ITEMS, &o->items); break;
        case 'w': ok = bench_parse_uint(optarg, 0, MAX_OPS, &o->warmup); break;
        case 'r': ok = bench_parse_uint(optarg, 1, LB_MAX_ROUNDS, &o->rounds); break;
        case 's': ok = bench_parse_uint(optarg, 1, 1000, &o->slices); break;
        case 'T': ok = bench_parse_uint(optarg, 100, 600000, &o->timeout_ms); break;
        case 'p': o->prepared = false; break;
        case 'j': o->json = true; break;
        case 'h': usage(stdout); return 0;
        default: ok = false; break;
        }
        if (!ok && ch != '?' && li >= 0)
            fprintf(stderr, "lease_bench: bad value '%s' for --%s\n", optarg, longopts[li].name);
        li = -1;
    }
    if (ok && optind < argc) {
        fprintf(stderr, "lease_bench: unexpected argument '%s'\n", argv[optind]);
        ok = false;
    }
    if (ok && contended > 0)
        o->modes[o->nmodes++] = (lb_mode){ .callers = contended, .contended = true };
    if (ok && !o->database_url[0]) {
        fprintf(stderr, "lease_bench: no --database-url and no ORCH_DATABASE_URL\n");
        ok = false;
    }
    for (unsigned m = 0; ok && m < o->nmodes; m++) {
        unsigned total = o->modes[m].contended ? o->attempts : o->pairs;
        if (total / o->modes[m].callers < o->slices) {
            fprintf(stderr,
                    "lease_bench: %u %s over %u callers leave less than one per slice (%u)\n",
                    total, o->modes[m].contended ? "attempts" : "pairs", o->modes[m].callers,
                    o->slices);
            ok = false;
        }
    }
    if (!ok) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* ---- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    lb_options o;
    static lb_results r;
    static lb_ctx cx;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    bench_prog = "lease_bench";
    signal(SIGPIPE, SIG_IGN);
    cx.o = &o;
    unsigned max_callers = 0;
    for (unsigned m = 0; m < o.nmodes; m++)
        max_callers = o.modes[m].callers > max_callers ? o.modes[m].callers : max_callers;
    rc = 1;
    if (setup(&cx, max_callers)) {
        r.ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        r.owner_pid = (int)cx.me.pid;
        snprintf(r.boot_id, sizeof r.boot_id, "%s", cx.me.boot_id);
        bench_loadavg(r.load_start, sizeof r.load_start);
        if (!o.json)
            lb_print_header(&o, &r);
        if (run_rounds(&cx, &r)) {
            rc = 0;
            bench_loadavg(r.load_end, sizeof r.load_end);
            if (o.json)
                lb_print_json(&o, &r);
            else
                lb_print_summary(&o, &r);
        }
        truncate_tables(&cx);
    }
    teardown(&cx);
    return rc;
}
