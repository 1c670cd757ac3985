/*
 * bench_common.h - what the benchmarks of tests/bench share: caller threads
 * held at a start gate, timed calls into a latency array, the accumulation
 * of slices into percentiles and rates, medians, option parsing.
 *
 * A benchmark fills an array of bench_worker, each with its call function
 * and its own state in `arg`, and runs it with bench_run_workers(): every
 * worker makes its untimed warm-up calls and waits at the gate; the main
 * thread then takes its "before" sample and opens the gate, and after
 * joining the workers takes the "after" sample. Every loop is bounded by a
 * count. Threading: one bench_run_workers() at a time; a worker's call
 * function runs on that worker's thread only.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Program name for messages on stderr ("rpc_bench"); set by main(). */
extern const char *bench_prog;

typedef struct bench_worker bench_worker;

/* One call (or one unit of work) of a worker; false after bench_failf(). */
typedef bool (*bench_call_fn)(bench_worker *w);

/* Called on the main thread with after=false while the workers wait at
 * the gate, and with after=true once they are joined. */
typedef void (*bench_sample_fn)(void *arg, bool after);

struct bench_worker {
    bench_call_fn call;
    void *arg; /* the benchmark's own state of this worker */
    unsigned warmup, n;
    bool timed;       /* set once the gate opened: the calls now count */
    uint64_t *lat_ns; /* n entries, filled by the timed calls */
    unsigned done;    /* timed calls that succeeded */
    uint64_t end_ns;
    /* Set by bench_run_workers(). */
    struct bench_gate *gate;
    atomic_bool *stop;
    pthread_t tid;
    char err[320];
};

/* Prepares `w` for `n` timed calls after `warmup` untimed ones; false when
 * out of memory (w->err says so). */
bool bench_worker_init(bench_worker *w, bench_call_fn call, void *arg, unsigned warmup, unsigned n);
void bench_worker_free(bench_worker *w);

/* Writes the message into w->err and returns false. */
bool bench_failf(bench_worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Runs the `k` workers as described above, `sample` (may be NULL) around
 * the timed calls. Returns the instant the gate opened, or 0 when a thread
 * could not start (the started ones are told to stop). Joins them either
 * way; a worker that failed has its message in err. */
uint64_t bench_run_workers(bench_worker *ws, unsigned k, bench_sample_fn sample, void *arg);

/* The timed calls of the slices of one stack in one mode. */
typedef struct bench_accum {
    uint64_t *lat_ns;
    size_t n, cap;
    uint64_t busy_ns; /* summed durations of the slices */
} bench_accum;

bool bench_accum_init(bench_accum *a, size_t cap);
void bench_accum_free(bench_accum *a);
/* Adds the workers' timed calls and the duration of their slice, which
 * began at t0 and ended with the last worker. */
void bench_accum_add(bench_accum *a, const bench_worker *ws, unsigned k, uint64_t t0);

/* Latency percentiles (nearest rank), mean and rate of accumulated calls. */
typedef struct bench_lat {
    double p50_us, p90_us, p99_us, mean_us;
    double per_s;    /* calls per second of slice time */
    unsigned long n; /* calls */
} bench_lat;

/* Sorts a->lat_ns. All zero when nothing was accumulated. */
bench_lat bench_accum_lat(bench_accum *a);

/* Median of v[0..n-1], n >= 1; sorts v. */
double bench_median(double *v, unsigned n);

/* Parses a decimal in [lo, hi]. */
bool bench_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out);

void bench_sleep_ms(unsigned ms);

#endif
