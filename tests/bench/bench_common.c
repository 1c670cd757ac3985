/*
 * bench_common.c - worker threads, start gate, latency accumulation and small
 * helpers of the benchmarks (see bench_common.h).
 */
#include "bench_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/clock.h"

const char *bench_prog = "bench";

/* Holds the workers after their warm-up until the main thread opens it. */
struct bench_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready; /* workers waiting */
    bool open;
};

bool bench_failf(bench_worker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    return false;
}

bool bench_worker_init(bench_worker *w, bench_call_fn call, void *arg, unsigned warmup, unsigned n)
{
    memset(w, 0, sizeof *w);
    w->call = call;
    w->arg = arg;
    w->warmup = warmup;
    w->n = n;
    w->lat_ns = calloc(n ? n : 1, sizeof *w->lat_ns);
    return w->lat_ns ? true : bench_failf(w, "out of memory");
}

void bench_worker_free(bench_worker *w)
{
    free(w->lat_ns);
    w->lat_ns = NULL;
}

static void *worker_main(void *arg)
{
    bench_worker *w = arg;
    struct bench_gate *g = w->gate;
    bool ok = true;
    for (unsigned i = 0; ok && i < w->warmup && !atomic_load(w->stop); i++)
        ok = w->call(w);
    if (!ok)
        atomic_store(w->stop, true);
    pthread_mutex_lock(&g->mu);
    g->ready++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    w->timed = true;
    for (unsigned i = 0; ok && i < w->n && !atomic_load(w->stop); i++) {
        uint64_t t0 = orch_mono_ns();
        ok = w->call(w);
        w->lat_ns[i] = orch_mono_ns() - t0;
        if (ok)
            w->done = i + 1;
    }
    w->end_ns = orch_mono_ns();
    if (!ok)
        atomic_store(w->stop, true);
    return NULL;
}

uint64_t bench_run_workers(bench_worker *ws, unsigned k, bench_sample_fn sample, void *arg)
{
    struct bench_gate g = { .ready = 0, .open = false };
    atomic_bool stop;
    unsigned started = 0;
    uint64_t t0 = 0;

    atomic_init(&stop, false);
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    for (unsigned i = 0; i < k; i++) {
        ws[i].gate = &g;
        ws[i].stop = &stop;
    }
    while (started < k && pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]) == 0)
        started++;
    pthread_mutex_lock(&g.mu);
    if (started < k)
        atomic_store(&stop, true);
    while (started == k && g.ready < k)
        pthread_cond_wait(&g.cv, &g.mu);
    if (sample)
        sample(arg, false);
    g.open = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    if (started == k)
        t0 = orch_mono_ns();
    else
        fprintf(stderr, "%s: cannot start %u threads\n", bench_prog, k);
    for (unsigned i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    if (sample)
        sample(arg, true);
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cv);
    return t0;
}

bool bench_accum_init(bench_accum *a, size_t cap)
{
    *a = (bench_accum){ .lat_ns = malloc((cap ? cap : 1) * sizeof *a->lat_ns), .cap = cap };
    return a->lat_ns != NULL;
}

void bench_accum_free(bench_accum *a)
{
    free(a->lat_ns);
    a->lat_ns = NULL;
}

void bench_accum_add(bench_accum *a, const bench_worker *ws, unsigned k, uint64_t t0)
{
    uint64_t end = t0;
    for (unsigned i = 0; i < k; i++) {
        size_t n = ws[i].done <= a->cap - a->n ? ws[i].done : a->cap - a->n;
        memcpy(a->lat_ns + a->n, ws[i].lat_ns, n * sizeof *a->lat_ns);
        a->n += n;
        end = ws[i].end_ns > end ? ws[i].end_ns : end;
    }
    a->busy_ns += end - t0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n-1], n >= 1, in microseconds. */
static double pct_us(const uint64_t *v, size_t n, double p)
{
    size_t k = (size_t)(p * (double)n + 0.999999);
    k = k == 0 ? 0 : k - 1;
    return (double)v[k < n ? k : n - 1] / 1000.0;
}

bench_lat bench_accum_lat(bench_accum *a)
{
    bench_lat l = { .n = a->n };
    if (!a->n)
        return l;
    qsort(a->lat_ns, a->n, sizeof *a->lat_ns, cmp_u64);
    long double sum = 0;
    for (size_t i = 0; i < a->n; i++)
        sum += a->lat_ns[i];
    l.p50_us = pct_us(a->lat_ns, a->n, 0.50);
    l.p90_us = pct_us(a->lat_ns, a->n, 0.90);
    l.p99_us = pct_us(a->lat_ns, a->n, 0.99);
    l.mean_us = (double)(sum / (long double)a->n / 1000.0L);
    l.per_s = a->busy_ns ? (double)a->n * 1e9 / (double)a->busy_ns : 0.0;
    return l;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

bool bench_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

void bench_sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
