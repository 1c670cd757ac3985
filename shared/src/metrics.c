/*
 * metrics.c - a fixed registry of Prometheus families in atomics.
 *
 * Registration happens before any thread updates or renders. Updates are
 * relaxed atomic adds; rendering reads a consistent-enough snapshot (each
 * value is read atomically; a scrape may straddle an update). Ownership:
 * the registry owns every family and its bucket bounds; names, help texts
 * and label value arrays are borrowed. The process families read /proc/self
 * on the rendering thread.
 */
#include "orch/metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_FAMILIES 64
#define NBUCKETS     ORCH_METRICS_MAX_BUCKETS

static const double default_bounds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0,
};

typedef enum kind {
    K_COUNTER,
    K_HISTOGRAM,
    K_GAUGE_FN,
    K_GAUGE_FN_LABELLED,
    K_COUNTER_FN,
    K_INFO,
    K_PROCESS,
} kind;

typedef struct hist_cell {
    _Atomic uint64_t bucket[NBUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} hist_cell;

typedef struct family {
    kind kind;
    const char *name, *help;
    const char *label1, *label2;
    const char *const *values1; /* K_INFO: the label keys */
    const char *const *values2; /* K_INFO: the label values */
    size_t n1, n2;
    _Atomic uint64_t *counts; /* n1 * n2 */
    hist_cell *cells;         /* n1 */
    double bounds[NBUCKETS];
    size_t nbounds;
    double (*fn)(void *);
    double (*fn_labelled)(void *, size_t);
    void *arg;
} family;

struct orch_counter {
    family f;
};
struct orch_histogram {
    family f;
};

struct orch_metrics {
    size_t n;
    family *fams[MAX_FAMILIES];
};

orch_err orch_metrics_new(orch_metrics **out)
{
    orch_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return ORCH_ENOMEM;
    *out = m;
    return ORCH_OK;
}

void orch_metrics_free(orch_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->fams[i]->counts);
        free(m->fams[i]->cells);
        free(m->fams[i]);
    }
    free(m);
}

static family *add_family(orch_metrics *m, kind k, const char *name, const char *help)
{
    if (m->n == MAX_FAMILIES)
        return NULL;
    /* orch_counter and orch_histogram wrap a family as first member. */
    family *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->kind = k;
    f->name = name;
    f->help = help;
    m->fams[m->n++] = f;
    return f;
}

/* Whether index i of a one-label family is a hole (NULL label value). */
static bool is_hole(const family *f, size_t i)
{
    return f->label1 && !f->label2 && f->values1 && !f->values1[i];
}

orch_counter *orch_metrics_counter2(orch_metrics *m, const char *name, const char *help,
                                    const char *label1, const char *const *values1, size_t n1,
                                    const char *label2, const char *const *values2, size_t n2)
{
    family *f = add_family(m, K_COUNTER, name, help);
    if (!f)
        return NULL;
    f->label1 = label1;
    f->values1 = values1;
    f->n1 = n1 ? n1 : 1;
    f->label2 = label2;
    f->values2 = values2;
    f->n2 = n2 ? n2 : 1;
    f->counts = calloc(f->n1 * f->n2, sizeof *f->counts);
    return f->counts ? (orch_counter *)f : NULL;
}

orch_counter *orch_metrics_counter(orch_metrics *m, const char *name, const char *help,
                                   const char *label, const char *const *values, size_t n)
{
    return orch_metrics_counter2(m, name, help, label, values, n, NULL, NULL, 1);
}

orch_histogram *orch_metrics_histogram_buckets(orch_metrics *m, const char *name, const char *help,
                                               const char *label, const char *const *values,
                                               size_t n, const double *bounds, size_t nbounds)
{
    if (nbounds == 0 || nbounds > NBUCKETS)
        return NULL;
    for (size_t b = 0; b < nbounds; b++)
        if (!isfinite(bounds[b]) || (b > 0 && bounds[b] <= bounds[b - 1]))
            return NULL;
    family *f = add_family(m, K_HISTOGRAM, name, help);
    if (!f)
        return NULL;
    f->label1 = label;
    f->values1 = values;
    f->n1 = n ? n : 1;
    memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
    f->nbounds = nbounds;
    f->cells = calloc(f->n1, sizeof *f->cells);
    return f->cells ? (orch_histogram *)f : NULL;
}

orch_histogram *orch_metrics_histogram(orch_metrics *m, const char *name, const char *help,
                                       const char *label, const char *const *values, size_t n)
{
    return orch_metrics_histogram_buckets(m, name, help, label, values, n, default_bounds,
                                          sizeof default_bounds / sizeof default_bounds[0]);
}

void orch_metrics_gauge_fn(orch_metrics *m, const char *name, const char *help,
                           double (*fn)(void *), void *arg)
{
    family *f = add_family(m, K_GAUGE_FN, name, help);
    if (f) {
        f->fn = fn;
        f->arg = arg;
    }
}

void orch_metrics_counter_fn(orch_metrics *m, const char *name, const char *help,
                             double (*fn)(void *), void *arg)
{
    family *f = add_family(m, K_COUNTER_FN, name, help);
    if (f) {
        f->fn = fn;
        f->arg = arg;
    }
}

void orch_metrics_gauge_fn_labelled(orch_metrics *m, const char *name, const char *help,
                                    const char *label, const char *const *values, size_t n,
                                    double (*fn)(void *, size_t), void *arg)
{
    family *f = add_family(m, K_GAUGE_FN_LABELLED, name, help);
    if (f) {
        f->label1 = label;
        f->values1 = values;
        f->n1 = n;
        f->fn_labelled = fn;
        f->arg = arg;
    }
}

void orch_metrics_info(orch_metrics *m, const char *name, const char *help, const char *const *keys,
                       const char *const *values, size_t n)
{
    family *f = add_family(m, K_INFO, name, help);
    if (f) {
        f->values1 = keys;
        f->values2 = values;
        f->n1 = n;
    }
}

void orch_metrics_process(orch_metrics *m)
{
    (void)add_family(m, K_PROCESS, "process_", "process families");
}

void orch_counter_add2(orch_counter *c, size_t i, size_t j, uint64_t v)
{
    family *f = &c->f;
    if (i < f->n1 && j < f->n2 && !is_hole(f, i))
        atomic_fetch_add_explicit(&f->counts[i * f->n2 + j], v, memory_order_relaxed);
}

void orch_counter_add(orch_counter *c, size_t idx, uint64_t v)
{
    orch_counter_add2(c, idx, 0, v);
}

uint64_t orch_counter_get2(const orch_counter *c, size_t i, size_t j)
{
    const family *f = &c->f;
    if (i >= f->n1 || j >= f->n2)
        return 0;
    return atomic_load_explicit(&f->counts[i * f->n2 + j], memory_order_relaxed);
}

void orch_histogram_observe_ns(orch_histogram *h, size_t idx, uint64_t ns)
{
    family *f = &h->f;
    if (idx >= f->n1 || is_hole(f, idx))
        return;
    hist_cell *c = &f->cells[idx];
    double s = (double)ns / 1e9;
    for (size_t b = 0; b < f->nbounds; b++)
        if (s <= f->bounds[b])
            atomic_fetch_add_explicit(&c->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->sum_ns, ns, memory_order_relaxed);
}

/* ---- rendering ---------------------------------------------------------- */

/* A label value with \, " and newline escaped as the format requires. */
static void put_value(FILE *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(o, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", o);
        else
            fputc(*v, o);
    }
}

static void put_label(FILE *o, const char *key, const char *value)
{
    fprintf(o, "%s=\"", key);
    put_value(o, value);
    fputc('"', o);
}

static void render_counter(FILE *o, const family *f)
{
    for (size_t i = 0; i < f->n1; i++) {
        if (is_hole(f, i))
            continue;
        for (size_t j = 0; j < f->n2; j++) {
            uint64_t v = atomic_load(&f->counts[i * f->n2 + j]);
            if (f->label2 && v == 0)
                continue; /* keep method x code sparse */
            fputs(f->name, o);
            if (f->label1) {
                fputc('{', o);
                put_label(o, f->label1, f->values1[i]);
                if (f->label2) {
                    fputc(',', o);
                    put_label(o, f->label2, f->values2[j]);
                }
                fputc('}', o);
            }
            fprintf(o, " %llu\n", (unsigned long long)v);
        }
    }
}

/* `name_suffix{label,extra}`: the series name with the cell's label (if
 * any) and one more preformatted label pair (may be NULL). */
static void put_series(FILE *o, const family *f, const char *suffix, size_t i, const char *extra)
{
    fprintf(o, "%s%s", f->name, suffix);
    bool lbl = f->label1 != NULL;
    if (!lbl && !extra)
        return;
    fputc('{', o);
    if (lbl)
        put_label(o, f->label1, f->values1[i]);
    if (extra)
        fprintf(o, "%s%s", lbl ? "," : "", extra);
    fputc('}', o);
}

static void render_histogram(FILE *o, const family *f)
{
    for (size_t i = 0; i < f->n1; i++) {
        if (is_hole(f, i))
            continue;
        const hist_cell *c = &f->cells[i];
        char le[48];
        for (size_t b = 0; b < f->nbounds; b++) {
            snprintf(le, sizeof le, "le=\"%g\"", f->bounds[b]);
            put_series(o, f, "_bucket", i, le);
            fprintf(o, " %llu\n", (unsigned long long)atomic_load(&c->bucket[b]));
        }
        uint64_t count = atomic_load(&c->count);
        put_series(o, f, "_bucket", i, "le=\"+Inf\"");
        fprintf(o, " %llu\n", (unsigned long long)count);
        put_series(o, f, "_sum", i, NULL);
        fprintf(o, " %.9f\n", (double)atomic_load(&c->sum_ns) / 1e9);
        put_series(o, f, "_count", i, NULL);
        fprintf(o, " %llu\n", (unsigned long long)count);
    }
}

static void render_labelled_gauge(FILE *o, const family *f)
{
    for (size_t i = 0; i < f->n1; i++) {
        if (is_hole(f, i))
            continue;
        put_series(o, f, "", i, NULL);
        fprintf(o, " %.17g\n", f->fn_labelled(f->arg, i));
    }
}

static void render_info(FILE *o, const family *f)
{
    fputs(f->name, o);
    for (size_t i = 0; i < f->n1; i++) {
        fputc(i ? ',' : '{', o);
        put_label(o, f->values1[i], f->values2[i]);
    }
    fputs(f->n1 ? "} 1\n" : " 1\n", o);
}

/* ---- process families --------------------------------------------------- */

/* Fields 14.. of /proc/self/stat that the families need. */
typedef struct proc_stat {
    unsigned long long utime, stime, starttime, vsize;
    long long rss_pages;
} proc_stat;

static bool read_proc_stat(proc_stat *ps)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses. */
    const char *p = strrchr(buf, ')');
    if (!p)
        return false;
    /* Fields 3..13 skipped, then 14 utime, 15 stime, 16..21 skipped,
     * 22 starttime, 23 vsize, 24 rss. */
    return sscanf(p + 1,
                  " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu %*s %*s %*s %*s %*s"
                  " %*s %llu %llu %lld",
                  &ps->utime, &ps->stime, &ps->starttime, &ps->vsize, &ps->rss_pages) == 5;
}

static bool read_boot_time(double *out)
{
    char line[256];
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return false;
    bool ok = false;
    unsigned long long bt;
    while (!ok && fgets(line, sizeof line, f))
        if (sscanf(line, "btime %llu", &bt) == 1) {
            *out = (double)bt;
            ok = true;
        }
    fclose(f);
    return ok;
}

static long count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

static void put_process(FILE *o, const char *name, const char *type, const char *help, double v)
{
    fprintf(o, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void render_process(FILE *o)
{
    double tick = (double)sysconf(_SC_CLK_TCK);
    double page = (double)sysconf(_SC_PAGESIZE);
    proc_stat ps;
    double boot;
    struct rlimit rl;
    long fds = count_open_fds();
    if (read_proc_stat(&ps) && tick > 0) {
        put_process(o, "process_cpu_seconds_total", "counter",
                    "Total user and system CPU time spent in seconds",
                    (double)(ps.utime + ps.stime) / tick);
        put_process(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes",
                    (double)ps.rss_pages * page);
        put_process(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes",
                    (double)ps.vsize);
        if (read_boot_time(&boot))
            put_process(o, "process_start_time_seconds", "gauge",
                        "Start time of the process since unix epoch in seconds",
                        boot + (double)ps.starttime / tick);
    }
    if (fds >= 0)
        put_process(o, "process_open_fds", "gauge", "Number of open file descriptors", (double)fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        put_process(o, "process_max_fds", "gauge", "Maximum number of open file descriptors",
                    (double)rl.rlim_cur);
}

orch_err orch_metrics_render(const orch_metrics *m, char **out, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *o = open_memstream(&buf, &n);
    if (!o)
        return ORCH_ENOMEM;
    static const char *const type_names[] = { "counter", "histogram", "gauge", "gauge",
                                              "counter", "gauge",     "" };
    for (size_t i = 0; i < m->n; i++) {
        const family *f = m->fams[i];
        if (f->kind == K_PROCESS) {
            render_process(o);
            continue;
        }
        fprintf(o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, type_names[f->kind]);
        switch (f->kind) {
        case K_COUNTER: render_counter(o, f); break;
        case K_HISTOGRAM: render_histogram(o, f); break;
        case K_GAUGE_FN_LABELLED: render_labelled_gauge(o, f); break;
        case K_INFO: render_info(o, f); break;
        default: fprintf(o, "%s %.17g\n", f->name, f->fn(f->arg)); break;
        }
    }
    if (fclose(o) != 0) {
        free(buf);
        return ORCH_ENOMEM;
    }
    *out = buf;
    *len = n;
    return ORCH_OK;
}
