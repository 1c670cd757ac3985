/*
 * lease_report.c - text and JSON output of lease_bench (see lease_report.h).
 * Writes to stdout only; single-threaded.
 */
#include "lease_report.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

const char *const lb_stack_names[LB_NSTACKS] = { "direct", "service" };

/* The figures as numbers: key, place, and whether a negative means unknown. */
typedef struct field_def {
    const char *key;
    size_t off;
    bool may_be_unknown;
} field_def;

static const field_def fields[] = {
    { "p50_us", offsetof(lb_figures, lat.p50_us), false },
    { "p90_us", offsetof(lb_figures, lat.p90_us), false },
    { "p99_us", offsetof(lb_figures, lat.p99_us), false },
    { "mean_us", offsetof(lb_figures, lat.mean_us), false },
    { "ops_per_s", offsetof(lb_figures, lat.per_s), false },
    { "grants_per_s", offsetof(lb_figures, grants_per_s), false },
    { "defers_per_s", offsetof(lb_figures, defers_per_s), false },
    { "aborts_per_s", offsetof(lb_figures, aborts_per_s), false },
    { "server_cpu_us_per_op", offsetof(lb_figures, srv_cpu_us), true },
    { "server_switches_per_op", offsetof(lb_figures, srv_cs), true },
    { "pg_cpu_us_per_op", offsetof(lb_figures, pg_cpu_us), true },
    { "pg_switches_per_op", offsetof(lb_figures, pg_cs), true },
    { "client_cpu_us_per_op", offsetof(lb_figures, cli_cpu_us), true },
    { "client_switches_per_op", offsetof(lb_figures, cli_cs), true },
    { "busy_pct", offsetof(lb_figures, busy_pct), true },
    { "other_pct", offsetof(lb_figures, other_pct), true },
    { "acquire_in_server_us", offsetof(lb_figures, acq_server_us), true },
    { "acquire_handler_us", offsetof(lb_figures, acq_handler_us), true },
    { "release_in_server_us", offsetof(lb_figures, rel_server_us), true },
    { "inflight_max", offsetof(lb_figures, inflight_max), false },
    { "inflight_mean", offsetof(lb_figures, inflight_mean), false },
};
#define NFIELDS (sizeof fields / sizeof *fields)

static double *field_at(lb_figures *f, size_t k)
{
    return (double *)((char *)f + fields[k].off);
}

static double field(const lb_figures *f, size_t k)
{
    return *(const double *)((const char *)f + fields[k].off);
}

/* Median over the rounds of field k; unknown (-1) if unknown in any round. */
static double median_of(const lb_results *r, unsigned rounds, unsigned m, int s, size_t k)
{
    double v[LB_MAX_ROUNDS];
    for (unsigned i = 0; i < rounds; i++) {
        v[i] = field(&r->f[i][m][s], k);
        if (fields[k].may_be_unknown && v[i] < 0)
            return -1.0;
    }
    return bench_median(v, rounds);
}

static lb_figures median_figures(const lb_results *r, unsigned rounds, unsigned m, int s)
{
    lb_figures f = { .lat = { .n = 0 } };
    for (size_t k = 0; k < NFIELDS; k++)
        *field_at(&f, k) = median_of(r, rounds, m, s, k);
    unsigned long n[LB_MAX_ROUNDS];
    for (unsigned i = 0; i < rounds; i++)
        n[i] = r->f[i][m][s].lat.n;
    f.lat.n = n[rounds / 2];
    return f;
}

/* Service over direct, the median of the per-round ratios. */
typedef struct ratios {
    double tput, p50, p99, grants;
} ratios;

static double safe_div(double a, double b)
{
    return b > 0 ? a / b : 0.0;
}

static ratios mode_ratios(const lb_results *r, unsigned rounds, unsigned m)
{
    double t[LB_MAX_ROUNDS], a[LB_MAX_ROUNDS], b[LB_MAX_ROUNDS], g[LB_MAX_ROUNDS];
    for (unsigned i = 0; i < rounds; i++) {
        const lb_figures *d = &r->f[i][m][LB_DIRECT], *s = &r->f[i][m][LB_SERVICE];
        t[i] = safe_div(s->lat.per_s, d->lat.per_s);
        a[i] = safe_div(s->lat.p50_us, d->lat.p50_us);
        b[i] = safe_div(s->lat.p99_us, d->lat.p99_us);
        g[i] = safe_div(s->grants_per_s, d->grants_per_s);
    }
    return (ratios){ bench_median(t, rounds), bench_median(a, rounds), bench_median(b, rounds),
                     bench_median(g, rounds) };
}

static const lb_target targets[] = LB_TARGETS;
#define NTARGETS (sizeof targets / sizeof targets[0])

/* Index of the distinct-item mode of `callers` callers, or -1. */
static int target_mode(const lb_options *o, unsigned callers)
{
    for (unsigned m = 0; m < o->nmodes; m++)
        if (!o->modes[m].contended && o->modes[m].callers == callers)
            return (int)m;
    return -1;
}

void lb_mode_label(const lb_mode *m, char *buf, size_t n)
{
    if (m->contended)
        snprintf(buf, n, "%u on one row", m->callers);
    else
        snprintf(buf, n, "%u caller%s", m->callers, m->callers == 1 ? "" : "s");
}

/* ---- text ------------------------------------------------------------------ */

/* v with `decimals` decimals, or "-" when unknown. */
static void fmt(char *buf, size_t n, double v, int decimals)
{
    if (v < 0)
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%.*f", decimals, v);
}

static void print_table_header(void)
{
    printf("  %-14s %-7s %7s %7s %8s %7s %7s %7s %6s %6s %6s %5s %5s\n", "mode", "stack", "ops/s",
           "p50 us", "p99 us", "srv cpu", "pg cpu", "cli cpu", "srv cs", "pg cs", "cli cs", "busy",
           "other");
}

static void print_figures(const char *mode, int stack, const lb_figures *f)
{
    char c[6][16], busy[16] = "-", other[16] = "-";
    fmt(c[0], sizeof c[0], f->srv_cpu_us, 1);
    fmt(c[1], sizeof c[1], f->pg_cpu_us, 1);
    fmt(c[2], sizeof c[2], f->cli_cpu_us, 1);
    fmt(c[3], sizeof c[3], f->srv_cs, 2);
    fmt(c[4], sizeof c[4], f->pg_cs, 2);
    fmt(c[5], sizeof c[5], f->cli_cs, 2);
    if (f->busy_pct >= 0)
        snprintf(busy, sizeof busy, "%.0f%%", f->busy_pct);
    if (f->other_pct >= 0)
        snprintf(other, sizeof other, "%.0f%%", f->other_pct);
    printf("  %-14s %-7s %7.0f %7.1f %8.1f %7s %7s %7s %6s %6s %6s %5s %5s\n", mode,
           lb_stack_names[stack], f->lat.per_s, f->lat.p50_us, f->lat.p99_us, c[0], c[1], c[2],
           c[3], c[4], c[5], busy, other);
}

static void print_contended(const char *mode, int stack, const lb_figures *f)
{
    double share = f->lat.per_s > 0 ? 100.0 * f->grants_per_s / f->lat.per_s : 0.0;
    printf("  %-14s %-7s attempts/s %.0f: grants/s %.0f (%.1f%%), defers/s %.0f, "
           "aborted/s %.0f\n",
           mode, lb_stack_names[stack], f->lat.per_s, f->grants_per_s, share, f->defers_per_s,
           f->aborts_per_s);
}

/* The table of one round or of the medians; fig[m * LB_NSTACKS + s]. */
static void print_table(const lb_options *o, const lb_figures *fig)
{
    char label[32];
    print_table_header();
    for (unsigned m = 0; m < o->nmodes; m++) {
        lb_mode_label(&o->modes[m], label, sizeof label);
        for (int s = 0; s < LB_NSTACKS; s++)
            print_figures(label, s, &fig[m * LB_NSTACKS + s]);
    }
    for (unsigned m = 0; m < o->nmodes; m++) {
        if (!o->modes[m].contended)
            continue;
        lb_mode_label(&o->modes[m], label, sizeof label);
        for (int s = 0; s < LB_NSTACKS; s++)
            print_contended(label, s, &fig[m * LB_NSTACKS + s]);
    }
    printf("  in flight (requests outstanding at once at the client, max / mean):");
    for (unsigned m = 0; m < o->nmodes; m++) {
        lb_mode_label(&o->modes[m], label, sizeof label);
        const lb_figures *d = &fig[m * LB_NSTACKS + LB_DIRECT];
        const lb_figures *v = &fig[m * LB_NSTACKS + LB_SERVICE];
        printf("%s %s: direct %.0f / %.1f, service %.0f / %.1f", m ? ";" : "", label,
               d->inflight_max, d->inflight_mean, v->inflight_max, v->inflight_mean);
    }
    printf("\n");
}

void lb_print_round(const lb_options *o, const lb_results *r, unsigned i)
{
    printf("round %u of %u (%s first)\n", i + 1, o->rounds, lb_stack_names[r->first[i]]);
    print_table(o, r->f[i][0]);
    printf("\n");
    fflush(stdout);
}

void lb_print_header(const lb_options *o, const lb_results *r)
{
    char modes[256] = "";
    size_t len = 0;
    for (unsigned m = 0; m < o->nmodes && len < sizeof modes; m++) {
        char label[32];
        lb_mode_label(&o->modes[m], label, sizeof label);
        len += (size_t)snprintf(modes + len, sizeof modes - len, "%s%s", m ? ", " : "", label);
    }
    printf("lease benchmark: Acquire + Release through lease-service against the same SQL over "
           "libpq\n");
    printf("  service: %s and %s at %s", LB_ACQUIRE, LB_RELEASE, o->service_url);
    if (o->service_pid)
        printf(", pid %d", (int)o->service_pid);
    if (o->label[0])
        printf(" (%s)", o->label);
    printf("; one RPC client shared by the callers\n");
    printf("  direct:  the statements of lease_store.c with libpq%s, one connection per caller, "
           "the round trips of the service\n",
           o->prepared ? " (prepared once per connection, as lease-service's db.c does)"
                       : " (unprepared, unlike the service: parsed and planned every time)");
    printf("  owners:  live processes of host '%s' (pid %d, this process), an instance id per "
           "caller; repo '%s'\n",
           o->host_id, r->owner_pid, o->repo);
    printf("  modes:   %s; distinct: %u items per caller, ops = acquire + release pairs; one row: "
           "ops = attempts (Acquire, Release at once when granted)\n",
           modes, o->items);
    printf("  %u rounds; in each, per mode, %u slices of direct and service taking turns; lease "
           "tables truncated and %u warm-up ops per caller before each slice; timed per stack, "
           "mode and round: %u pairs, or %u attempts on one row\n",
           o->rounds, o->slices, o->warmup, o->pairs, o->attempts);
    printf("  machine: %ld CPUs; load average (1, 5, 15 min) at start: %s\n", r->ncpu,
           r->load_start);
    printf("  per op: srv, pg, cli cpu = CPU us of lease-service, of the PostgreSQL cluster%s, of "
           "this process; cs = their context switches; busy = share of all CPUs busy; other = "
           "the part of it used by other processes (a few %% or more distorts the figures)\n\n",
           o->pg_pid ? "" : " (no --pg-pid: unknown)");
    fflush(stdout);
}

static void print_service_side(const lb_options *o, const lb_figures *med)
{
    char label[32];
    printf("\ninside lease-service (service stack, from its /metrics), mean us per call:\n");
    printf("  %-14s %9s %10s %9s %8s %10s %9s\n", "mode", "op client", "Acq server", "handler",
           "queued", "Rel server", "outside");
    for (unsigned m = 0; m < o->nmodes; m++) {
        const lb_figures *f = &med[m * LB_NSTACKS + LB_SERVICE];
        lb_mode_label(&o->modes[m], label, sizeof label);
        if (f->acq_server_us < 0 || f->acq_handler_us < 0 || f->rel_server_us < 0) {
            printf("  %-14s %9.1f %10s\n", label, f->lat.mean_us, "(no /metrics)");
            continue;
        }
        /* Releases per op: 1 per pair; the granted share per attempt. */
        double rel = o->modes[m].contended ? safe_div(f->grants_per_s, f->lat.per_s) : 1.0;
        printf("  %-14s %9.1f %10.1f %9.1f %8.1f %10.1f %9.1f\n", label, f->lat.mean_us,
               f->acq_server_us, f->acq_handler_us, f->acq_server_us - f->acq_handler_us,
               f->rel_server_us, f->lat.mean_us - f->acq_server_us - rel * f->rel_server_us);
    }
    printf("  (op client: mean op latency at the client; queued: Acquire in server - handler, "
           "mostly the wait for a worker; outside: op client - time in server, i.e. transport, "
           "NNG and the client)\n");
}

void lb_print_summary(const lb_options *o, const lb_results *r)
{
    static lb_figures med[LB_MAX_MODES][LB_NSTACKS];
    char label[32];
    for (unsigned m = 0; m < o->nmodes; m++)
        for (int s = 0; s < LB_NSTACKS; s++)
            med[m][s] = median_figures(r, o->rounds, m, s);
    printf("median of %u rounds\n", o->rounds);
    print_table(o, med[0]);
    print_service_side(o, med[0]);

    printf("\nservice / direct, median of the per-round ratios\n");
    printf("  %-14s %10s %8s %8s\n", "mode", "throughput", "p50", "p99");
    for (unsigned m = 0; m < o->nmodes; m++) {
        ratios q = mode_ratios(r, o->rounds, m);
        lb_mode_label(&o->modes[m], label, sizeof label);
        printf("  %-14s %10.2f %8.2f %8.2f", label, q.tput, q.p50, q.p99);
        if (o->modes[m].contended)
            printf("   grants/s %.2f", q.grants);
        printf("\n");
    }
    printf("\n");
    for (size_t k = 0; k < NTARGETS; k++) {
        const lb_target *g = &targets[k];
        int t = target_mode(o, g->callers);
        if (t < 0) {
            printf("target: service >= %.2fx direct-SQL throughput at %u caller%s: not measured "
                   "(no such mode)\n",
                   g->ratio, g->callers, g->callers == 1 ? "" : "s");
            continue;
        }
        ratios q = mode_ratios(r, o->rounds, (unsigned)t);
        printf("target: service >= %.2fx direct-SQL throughput at %u caller%s: %.2fx "
               "(%.0f vs %.0f pairs/s) %s\n",
               g->ratio, g->callers, g->callers == 1 ? "" : "s", q.tput,
               med[t][LB_SERVICE].lat.per_s, med[t][LB_DIRECT].lat.per_s,
               q.tput >= g->ratio ? "(met)" : "(NOT met)");
    }
    printf("load average (1, 5, 15 min) at start: %s; at end: %s\n", r->load_start, r->load_end);
    fflush(stdout);
}

/* ---- JSON ------------------------------------------------------------------ */

static void mode_key(const lb_mode *m, char *buf, size_t n)
{
    snprintf(buf, n, "%s_%u", m->contended ? "contended" : "distinct", m->callers);
}

static json_t *figures_json(const lb_figures *f, bool contended)
{
    json_t *j = json_object();
    for (size_t k = 0; k < NFIELDS; k++) {
        double v = field(f, k);
        bool outcome = fields[k].off == offsetof(lb_figures, grants_per_s) ||
                       fields[k].off == offsetof(lb_figures, defers_per_s) ||
                       fields[k].off == offsetof(lb_figures, aborts_per_s);
        if (outcome && !contended)
            continue;
        json_object_set_new(j, fields[k].key,
                            fields[k].may_be_unknown && v < 0 ? json_null() : json_real(v));
    }
    json_object_set_new(j, "ops", json_integer((json_int_t)f->lat.n));
    return j;
}

static json_t *modes_json(const lb_options *o)
{
    json_t *a = json_array();
    for (unsigned m = 0; m < o->nmodes; m++) {
        char key[32], label[32];
        mode_key(&o->modes[m], key, sizeof key);
        lb_mode_label(&o->modes[m], label, sizeof label);
        json_array_append_new(a, json_pack("{s:s, s:s, s:i, s:b}", "key", key, "label", label,
                                           "callers", (int)o->modes[m].callers, "contended",
                                           o->modes[m].contended));
    }
    return a;
}

static json_t *rounds_json(const lb_options *o, const lb_results *r)
{
    json_t *rounds = json_array();
    for (unsigned i = 0; i < o->rounds; i++) {
        json_t *jr = json_object();
        json_object_set_new(jr, "first", json_string(lb_stack_names[r->first[i]]));
        for (unsigned m = 0; m < o->nmodes; m++) {
            char key[32];
            json_t *jm = json_object();
            mode_key(&o->modes[m], key, sizeof key);
            for (int s = 0; s < LB_NSTACKS; s++)
                json_object_set_new(jm, lb_stack_names[s],
                                    figures_json(&r->f[i][m][s], o->modes[m].contended));
            json_object_set_new(jr, key, jm);
        }
        json_array_append_new(rounds, jr);
    }
    return rounds;
}

static json_t *summary_json(const lb_options *o, const lb_results *r)
{
    json_t *sum = json_object();
    for (unsigned m = 0; m < o->nmodes; m++) {
        char key[32];
        json_t *jm = json_object();
        mode_key(&o->modes[m], key, sizeof key);
        for (int s = 0; s < LB_NSTACKS; s++) {
            lb_figures f = median_figures(r, o->rounds, m, s);
            json_t *js = figures_json(&f, o->modes[m].contended);
            json_object_del(js, "ops");
            json_object_set_new(jm, lb_stack_names[s], js);
        }
        ratios q = mode_ratios(r, o->rounds, m);
        json_object_set_new(jm, "throughput_ratio", json_real(q.tput));
        json_object_set_new(jm, "p50_ratio", json_real(q.p50));
        json_object_set_new(jm, "p99_ratio", json_real(q.p99));
        if (o->modes[m].contended)
            json_object_set_new(jm, "grants_ratio", json_real(q.grants));
        json_object_set_new(sum, key, jm);
    }
    return sum;
}

static json_t *target_json(const lb_options *o, const lb_results *r)
{
    json_t *all = json_array();
    for (size_t k = 0; all && k < NTARGETS; k++) {
        const lb_target *g = &targets[k];
        int t = target_mode(o, g->callers);
        json_t *j = json_pack("{s:i, s:f}", "callers", (int)g->callers, "min_ratio", g->ratio);
        if (!j) {
            json_decref(all);
            return NULL;
        }
        if (t < 0) {
            json_object_set_new(j, "ratio", json_null());
            json_object_set_new(j, "met", json_null());
        } else {
            ratios q = mode_ratios(r, o->rounds, (unsigned)t);
            json_object_set_new(j, "ratio", json_real(q.tput));
            json_object_set_new(j, "met", json_boolean(q.tput >= g->ratio));
        }
        json_array_append_new(all, j);
    }
    return all;
}

void lb_print_json(const lb_options *o, const lb_results *r)
{
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:i, "
        "s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b}, s:o, s:o, s:o, s:o}",
        "service_url", o->service_url, "label", o->label, "host_id", o->host_id, "repo", o->repo,
        "service_pid", (int)o->service_pid, "pg_pid", (int)o->pg_pid, "owner_pid", r->owner_pid,
        "load_start", r->load_start, "load_end", r->load_end, "cpus", (int)r->ncpu, "settings",
        "rounds", (int)o->rounds, "slices", (int)o->slices, "pairs", (int)o->pairs, "attempts",
        (int)o->attempts, "items", (int)o->items, "warmup", (int)o->warmup, "timeout_ms",
        (int)o->timeout_ms, "direct_prepared", o->prepared, "modes", modes_json(o), "rounds",
        rounds_json(o, r), "median", summary_json(o, r), "targets", target_json(o, r));
    if (!doc) {
        fprintf(stderr, "lease_bench: cannot build the JSON document\n");
        return;
    }
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    putchar('\n');
    json_decref(doc);
}
