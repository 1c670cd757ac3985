/*
 * metrics.h - Prometheus counters, gauges and histograms kept in atomics.
 *
 * Metric families are registered at start-up (not thread-safe), then updated
 * lock-free from any thread and rendered in the text exposition format.
 * Label sets are fixed at registration: a family has `nlabels` label values
 * chosen by index, so no allocation happens on the hot path. In a one-label
 * family a NULL label value is a hole: no series is rendered for it and
 * updates at its index are ignored.
 */
#ifndef ORCH_METRICS_H
#define ORCH_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"

/* Most bucket bounds one histogram may have (+Inf not counted). */
#define ORCH_METRICS_MAX_BUCKETS 24

typedef struct orch_metrics orch_metrics;
typedef struct orch_counter orch_counter;
typedef struct orch_histogram orch_histogram;

orch_err orch_metrics_new(orch_metrics **out) ORCH_NODISCARD;
void orch_metrics_free(orch_metrics *m);

/* A counter family with one label; `values` (borrowed for the life of the
 * registry) are its `n` possible label values. label may be NULL with n = 1
 * for an unlabelled counter. Returned handles are owned by the registry. */
orch_counter *orch_metrics_counter(orch_metrics *m, const char *name, const char *help,
                                   const char *label, const char *const *values, size_t n);
/* A counter family with two labels (rows x cols), e.g. method x code. */
orch_counter *orch_metrics_counter2(orch_metrics *m, const char *name, const char *help,
                                    const char *label1, const char *const *values1, size_t n1,
                                    const char *label2, const char *const *values2, size_t n2);
/* A histogram family of durations in seconds, one label, with the default
 * buckets (100 us .. 10 s). */
orch_histogram *orch_metrics_histogram(orch_metrics *m, const char *name, const char *help,
                                       const char *label, const char *const *values, size_t n);
/* The same with its own bucket bounds in seconds: `bounds` (copied) strictly
 * increasing, finite, 1..ORCH_METRICS_MAX_BUCKETS of them; otherwise NULL. */
orch_histogram *orch_metrics_histogram_buckets(orch_metrics *m, const char *name, const char *help,
                                               const char *label, const char *const *values,
                                               size_t n, const double *bounds, size_t nbounds);
/* A gauge whose value is read at render time. */
void orch_metrics_gauge_fn(orch_metrics *m, const char *name, const char *help,
                           double (*fn)(void *), void *arg);
/* A gauge family with one label; fn(arg, i) is the value of values[i], read
 * at render time. `values` borrowed as for counters. */
void orch_metrics_gauge_fn_labelled(orch_metrics *m, const char *name, const char *help,
                                    const char *label, const char *const *values, size_t n,
                                    double (*fn)(void *, size_t), void *arg);
/* A counter whose value is read at render time (it must never decrease). */
void orch_metrics_counter_fn(orch_metrics *m, const char *name, const char *help,
                             double (*fn)(void *), void *arg);
/* A gauge of constant value 1 with `n` labels keys[i]=values[i] (both
 * borrowed), e.g. orch_build_info{version="...",service="..."} 1. */
void orch_metrics_info(orch_metrics *m, const char *name, const char *help, const char *const *keys,
                       const char *const *values, size_t n);
/* The standard process families, read from /proc/self at render time:
 * process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds. A value that cannot be read is omitted. */
void orch_metrics_process(orch_metrics *m);

void orch_counter_add(orch_counter *c, size_t idx, uint64_t v);
void orch_counter_add2(orch_counter *c, size_t i, size_t j, uint64_t v);
uint64_t orch_counter_get2(const orch_counter *c, size_t i, size_t j);
void orch_histogram_observe_ns(orch_histogram *h, size_t idx, uint64_t ns);

/* Renders every family; *out is malloc'ed, NUL-terminated, caller frees. */
orch_err orch_metrics_render(const orch_metrics *m, char **out, size_t *len) ORCH_NODISCARD;

#endif
