/*
 * metrics.c - a fixed registry of Prometheus families in atomics.
 *
 * Registration happens before any thread updates or renders. Updates are
 * relaxed atomic adds; rendering reads a consistent-enough snapshot (each
 * value is read atomically; a scrape may straddle an update). Ownership:
 * the registry owns every family; label value arrays are borrowed.
 */
#include "orch/metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 64
#define NBUCKETS     16

static const double bucket_s[NBUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0,
};

typedef enum kind { K_COUNTER, K_HISTOGRAM, K_GAUGE_FN } kind;

typedef struct hist_cell {
    _Atomic uint64_t bucket[NBUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} hist_cell;

typedef struct family {
    kind kind;
    const char *name, *help;
    const char *label1, *label2;
    const char *const *values1;
    const char *const *values2;
    size_t n1, n2;
    _Atomic uint64_t *counts; /* n1 * n2 */
    hist_cell *cells;         /* n1 */
    double (*fn)(void *);
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

orch_histogram *orch_metrics_histogram(orch_metrics *m, const char *name, const char *help,
                                       const char *label, const char *const *values, size_t n)
{
    family *f = add_family(m, K_HISTOGRAM, name, help);
    if (!f)
        return NULL;
    f->label1 = label;
    f->values1 = values;
    f->n1 = n ? n : 1;
    f->cells = calloc(f->n1, sizeof *f->cells);
    return f->cells ? (orch_histogram *)f : NULL;
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

void orch_counter_add2(orch_counter *c, size_t i, size_t j, uint64_t v)
{
    family *f = &c->f;
    if (i < f->n1 && j < f->n2)
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
    if (idx >= f->n1)
        return;
    hist_cell *c = &f->cells[idx];
    double s = (double)ns / 1e9;
    for (size_t b = 0; b < NBUCKETS; b++)
        if (s <= bucket_s[b])
            atomic_fetch_add_explicit(&c->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->sum_ns, ns, memory_order_relaxed);
}

static void render_counter(FILE *o, const family *f)
{
    for (size_t i = 0; i < f->n1; i++) {
        for (size_t j = 0; j < f->n2; j++) {
            uint64_t v = atomic_load(&f->counts[i * f->n2 + j]);
            if (f->label2 && v == 0)
                continue; /* keep method x code sparse */
            fprintf(o, "%s", f->name);
            if (f->label1 && f->label2)
                fprintf(o, "{%s=\"%s\",%s=\"%s\"}", f->label1, f->values1[i], f->label2,
                        f->values2[j]);
            else if (f->label1)
                fprintf(o, "{%s=\"%s\"}", f->label1, f->values1[i]);
            fprintf(o, " %llu\n", (unsigned long long)v);
        }
    }
}

static void render_histogram(FILE *o, const family *f)
{
    for (size_t i = 0; i < f->n1; i++) {
        const hist_cell *c = &f->cells[i];
        const char *lv = f->label1 ? f->values1[i] : NULL;
        char lbl[256] = "";
        if (lv)
            snprintf(lbl, sizeof lbl, "%s=\"%s\",", f->label1, lv);
        for (size_t b = 0; b < NBUCKETS; b++)
            fprintf(o, "%s_bucket{%sle=\"%g\"} %llu\n", f->name, lbl, bucket_s[b],
                    (unsigned long long)atomic_load(&c->bucket[b]));
        uint64_t count = atomic_load(&c->count);
        fprintf(o, "%s_bucket{%sle=\"+Inf\"} %llu\n", f->name, lbl, (unsigned long long)count);
        if (lv)
            lbl[strlen(lbl) - 1] = '\0';
        fprintf(o, "%s_sum%s%s%s %.9f\n", f->name, lv ? "{" : "", lbl, lv ? "}" : "",
                (double)atomic_load(&c->sum_ns) / 1e9);
        fprintf(o, "%s_count%s%s%s %llu\n", f->name, lv ? "{" : "", lbl, lv ? "}" : "",
                (unsigned long long)count);
    }
}

orch_err orch_metrics_render(const orch_metrics *m, char **out, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *o = open_memstream(&buf, &n);
    if (!o)
        return ORCH_ENOMEM;
    static const char *const type_names[] = { "counter", "histogram", "gauge" };
    for (size_t i = 0; i < m->n; i++) {
        const family *f = m->fams[i];
        fprintf(o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, type_names[f->kind]);
        if (f->kind == K_COUNTER)
            render_counter(o, f);
        else if (f->kind == K_HISTOGRAM)
            render_histogram(o, f);
        else
            fprintf(o, "%s %.17g\n", f->name, f->fn(f->arg));
    }
    if (fclose(o) != 0) {
        free(buf);
        return ORCH_ENOMEM;
    }
    *out = buf;
    *len = n;
    return ORCH_OK;
}
