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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_proc.h"
#include "lease_bench.h"

/* ---- samples ----------------------------------------------------------------------------- */

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
        lb_read_metrics(ss->cx, &s->m);
    }
    s->srv = o->service_pid ? bench_proc_use(o->service_pid) : unknown;
    if (o->pg_pid)
        bench_tree_read(o->pg_pid, &s->pg);
    else
        s->pg.n = -1;
    if (after) {
        lb_read_metrics(ss->cx, &s->m);
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
    int inflight_max;
    uint64_t inflight_ns;
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
    const lb_inflight *in = cs[0].cx->inflight;
    int max = atomic_load(&in->max);
    a->inflight_max = max > a->inflight_max ? max : a->inflight_max;
    a->inflight_ns += atomic_load(&in->busy_ns);
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
    f->inflight_max = a->inflight_max;
    f->inflight_mean = a->ops.busy_ns ? (double)a->inflight_ns / (double)a->ops.busy_ns : 0.0;
}

static bool caller_open(lb_caller *c, bench_worker *w, const lb_ctx *cx, const lb_mode *m,
                        int stack, unsigned id, unsigned n)
{
    *c = (lb_caller){ .cx = cx, .stack = stack, .id = id, .pg = cx->conns[id] };
    snprintf(c->actor, sizeof c->actor, "bench-%u", id);
    if (!bench_worker_init(w, m->contended ? lb_attempt_call : lb_pair_call, c, cx->o->warmup, n))
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
    ok = ok && lb_truncate_tables(cx);
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
    atomic_store(&cx->inflight->now, 0);
    atomic_store(&cx->inflight->max, 0);
    atomic_store(&cx->inflight->busy_ns, 0);
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

/* The throughput modes: rounds, then the summary; the exit status. */
static int run_throughput(lb_ctx *cx, lb_results *r)
{
    const lb_options *o = cx->o;
    r->ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    r->owner_pid = (int)cx->me.pid;
    snprintf(r->boot_id, sizeof r->boot_id, "%s", cx->me.boot_id);
    bench_loadavg(r->load_start, sizeof r->load_start);
    if (!o->json)
        lb_print_header(o, r);
    if (!run_rounds(cx, r))
        return 1;
    bench_loadavg(r->load_end, sizeof r->load_end);
    if (o->json)
        lb_print_json(o, r);
    else
        lb_print_summary(o, r);
    return 0;
}

/* ---- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    lb_options o;
    static lb_results r;
    static lb_ctx cx;
    static lb_inflight inflight;
    int rc = lb_parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    bench_prog = "lease_bench";
    signal(SIGPIPE, SIG_IGN);
    cx.o = &o;
    cx.inflight = &inflight;
    unsigned max_callers = 0;
    for (unsigned m = 0; m < o.nmodes; m++)
        max_callers = o.modes[m].callers > max_callers ? o.modes[m].callers : max_callers;
    rc = 1;
    if (lb_setup(&cx, max_callers)) {
        rc = o.scale ? (lb_run_scale(&cx) ? 0 : 1) : run_throughput(&cx, &r);
        lb_truncate_tables(&cx);
    }
    lb_teardown(&cx);
    return rc;
}
