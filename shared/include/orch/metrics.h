/*
 * metrics.h - Prometheus counters and histograms kept in atomics.
 *
 * Metric families are registered at start-up (not thread-safe), then updated
 * lock-free from any thread and rendered in the text exposition format.
 * Label sets are fixed at registration: a family has `nlabels` label values
 * chosen by index, so no allocation happens on the hot path.
 */
#ifndef ORCH_METRICS_H
#define ORCH_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"

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
/* A histogram family of durations in seconds, one label. */
orch_histogram *orch_metrics_histogram(orch_metrics *m, const char *name, const char *help,
                                       const char *label, const char *const *values, size_t n);
/* A gauge whose value is read at render time. */
void orch_metrics_gauge_fn(orch_metrics *m, const char *name, const char *help,
                           double (*fn)(void *), void *arg);

void orch_counter_add(orch_counter *c, size_t idx, uint64_t v);
void orch_counter_add2(orch_counter *c, size_t i, size_t j, uint64_t v);
uint64_t orch_counter_get2(const orch_counter *c, size_t i, size_t j);
void orch_histogram_observe_ns(orch_histogram *h, size_t idx, uint64_t ns);

/* Renders every family; *out is malloc'ed, NUL-terminated, caller frees. */
orch_err orch_metrics_render(const orch_metrics *m, char **out, size_t *len) ORCH_NODISCARD;

#endif
