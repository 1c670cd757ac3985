/*
 * test_metrics.c - the Prometheus registry (shared/src/metrics.c): the text
 * exposition format of counters, histograms and gauges, and exact counts
 * under concurrent updates.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/metrics.h"

static char *render(const orch_metrics *m)
{
    char *out = NULL;
    size_t len = 0;
    cr_assert_eq(orch_metrics_render(m, &out, &len), ORCH_OK);
    cr_assert_not_null(out);
    cr_assert_eq(strlen(out), len);
    return out;
}

/* The value of the sample line that starts with `series ` exactly, or NAN. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return NAN;
}

static int count_occurrences(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Checks every line against the text exposition format: comments are
 * "# HELP name text" or "# TYPE name type"; samples are
 * name{label="value",...} number. Returns the number of sample lines. */
static int check_syntax(const char *text)
{
    regex_t sample_re, help_re, type_re;
    cr_assert_eq(regcomp(&sample_re,
                         "^[a-zA-Z_:][a-zA-Z0-9_:]*"
                         "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"\\\\]*\""
                         "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"\\\\]*\")*\\})?"
                         " (-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|-Inf|NaN)$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    cr_assert_eq(
        regcomp(&help_re, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$", REG_EXTENDED | REG_NOSUB), 0);
    cr_assert_eq(regcomp(&type_re,
                         "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|"
                         "untyped)$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    char *copy = strdup(text);
    cr_assert_not_null(copy);
    cr_assert(strlen(text) == 0 || text[strlen(text) - 1] == '\n', "no final newline");
    int samples = 0;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# HELP ", 7) == 0) {
            cr_expect_eq(regexec(&help_re, line, 0, NULL, 0), 0, "bad HELP: %s", line);
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            cr_expect_eq(regexec(&type_re, line, 0, NULL, 0), 0, "bad TYPE: %s", line);
        } else {
            cr_expect_eq(regexec(&sample_re, line, 0, NULL, 0), 0, "bad sample: '%s'", line);
            samples++;
        }
    }
    free(copy);
    regfree(&sample_re);
    regfree(&help_re);
    regfree(&type_re);
    return samples;
}

static const char *const methods[] = { "svc/A", "svc/B" };
static const char *const codes[] = { "OK", "INTERNAL", "UNAVAILABLE" };

Test(metrics, counter2_renders_help_type_and_both_labels)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    orch_counter *c = orch_metrics_counter2(m, "orch_test_requests_total", "Requests answered",
                                            "method", methods, 2, "code", codes, 3);
    cr_assert_not_null(c);
    orch_counter_add2(c, 0, 0, 3);
    orch_counter_add2(c, 1, 2, 2);
    orch_counter_add2(c, 1, 2, 5);
    orch_counter_add2(c, 2, 0, 100); /* out of range: ignored */
    orch_counter_add2(c, 0, 3, 100);
    cr_expect_eq(orch_counter_get2(c, 0, 0), 3);
    cr_expect_eq(orch_counter_get2(c, 1, 2), 7);
    cr_expect_eq(orch_counter_get2(c, 0, 1), 0);
    cr_expect_eq(orch_counter_get2(c, 5, 5), 0);

    char *text = render(m);
    cr_expect_not_null(strstr(text, "# HELP orch_test_requests_total Requests answered\n"
                                    "# TYPE orch_test_requests_total counter\n"),
                       "%s", text);
    cr_expect_eq(count_occurrences(text, "# HELP "), 1, "%s", text);
    cr_expect_eq(count_occurrences(text, "# TYPE "), 1, "%s", text);
    cr_expect_eq(sample(text, "orch_test_requests_total{method=\"svc/A\",code=\"OK\"}"), 3.0, "%s",
                 text);
    cr_expect_eq(sample(text, "orch_test_requests_total{method=\"svc/B\",code=\"UNAVAILABLE\"}"),
                 7.0, "%s", text);
    cr_expect_geq(check_syntax(text), 2);
    free(text);
    orch_metrics_free(m);
}

Test(metrics, one_label_and_unlabelled_counters_render)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    orch_counter *one =
        orch_metrics_counter(m, "orch_test_one_total", "One label", "method", methods, 2);
    orch_counter *none = orch_metrics_counter(m, "orch_test_none_total", "No label", NULL, NULL, 1);
    cr_assert_not_null(one);
    cr_assert_not_null(none);
    orch_counter_add(one, 1, 4);
    orch_counter_add(none, 0, 9);
    char *text = render(m);
    cr_expect_eq(sample(text, "orch_test_one_total{method=\"svc/A\"}"), 0.0, "%s", text);
    cr_expect_eq(sample(text, "orch_test_one_total{method=\"svc/B\"}"), 4.0, "%s", text);
    cr_expect_eq(sample(text, "orch_test_none_total"), 9.0, "%s", text);
    cr_expect_not_null(strstr(text, "# TYPE orch_test_none_total counter\n"), "%s", text);
    cr_expect_eq(check_syntax(text), 3, "%s", text);
    free(text);
    orch_metrics_free(m);
}

/* The observations of histogram_buckets_are_cumulative_and_inf_equals_count. */
static const uint64_t hist_ns[] = {
    50000,       /* 50 us */
    300000,      /* 300 us */
    1000000,     /* exactly 1 ms: le is inclusive */
    2000000,     /* 2 ms */
    2000000000,  /* 2 s */
    20000000000, /* 20 s: beyond the last finite bucket */
};
#define NHIST (sizeof hist_ns / sizeof hist_ns[0])

/* Walks the buckets of method B in order: cumulative, bounds increasing,
 * +Inf last, each counting the observations <= its bound. Returns the +Inf
 * count (-1 when absent). */
static double check_buckets_of_b(const char *text)
{
    const char *prefix = "orch_test_seconds_bucket{method=\"svc/B\",le=\"";
    double prev_le = -1, prev_count = -1, inf_count = -1;
    int nbuckets = 0;
    for (const char *p = strstr(text, prefix); p; p = strstr(p + 1, prefix)) {
        const char *le = p + strlen(prefix);
        const char *close = strstr(le, "\"} ");
        cr_assert_not_null(close);
        double count = strtod(close + 3, NULL);
        cr_expect_geq(count, prev_count, "buckets not cumulative at le=%.*s", (int)(close - le),
                      le);
        prev_count = count;
        nbuckets++;
        if (strncmp(le, "+Inf\"", 5) == 0) {
            inf_count = count;
            continue;
        }
        cr_expect_lt(inf_count, 0, "+Inf bucket must be last");
        double bound = strtod(le, NULL);
        cr_expect_gt(bound, prev_le, "le not increasing");
        prev_le = bound;
        /* Each bucket counts the observations <= its bound. */
        int want = 0;
        for (size_t i = 0; i < NHIST; i++)
            want += (double)hist_ns[i] / 1e9 <= bound;
        cr_expect_eq(count, (double)want, "le=%g has %g, want %d", bound, count, want);
    }
    cr_expect_gt(nbuckets, 5);
    return inf_count;
}

Test(metrics, histogram_buckets_are_cumulative_and_inf_equals_count)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    orch_histogram *h =
        orch_metrics_histogram(m, "orch_test_seconds", "Durations", "method", methods, 2);
    cr_assert_not_null(h);
    double sum_s = 0;
    for (size_t i = 0; i < NHIST; i++) {
        orch_histogram_observe_ns(h, 1, hist_ns[i]);
        sum_s += (double)hist_ns[i] / 1e9;
    }
    orch_histogram_observe_ns(h, 7, 1000); /* out of range: ignored */

    char *text = render(m);
    cr_expect_not_null(strstr(text, "# HELP orch_test_seconds Durations\n"
                                    "# TYPE orch_test_seconds histogram\n"),
                       "%s", text);
    cr_expect_geq(check_syntax(text), 2 * 19);

    double inf_count = check_buckets_of_b(text);
    cr_expect_eq(inf_count, 6.0, "%s", text);
    cr_expect_eq(sample(text, "orch_test_seconds_count{method=\"svc/B\"}"), inf_count);
    double sum = sample(text, "orch_test_seconds_sum{method=\"svc/B\"}");
    cr_expect(fabs(sum - sum_s) < 1e-6, "_sum %.9f, want %.9f seconds", sum, sum_s);
    cr_expect_eq(sample(text, "orch_test_seconds_count{method=\"svc/A\"}"), 0.0);
    cr_expect_eq(sample(text, "orch_test_seconds_bucket{method=\"svc/A\",le=\"+Inf\"}"), 0.0);
    free(text);
    orch_metrics_free(m);
}

static double gauge_value(void *arg)
{
    return *(double *)arg;
}

Test(metrics, gauge_is_read_at_render_time)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    double v = 1.0;
    orch_metrics_gauge_fn(m, "orch_test_gauge", "A gauge", gauge_value, &v);
    v = 42.5;
    char *text = render(m);
    cr_expect_not_null(strstr(text, "# HELP orch_test_gauge A gauge\n"
                                    "# TYPE orch_test_gauge gauge\n"
                                    "orch_test_gauge 42.5\n"),
                       "%s", text);
    cr_expect_eq(check_syntax(text), 1);
    free(text);
    orch_metrics_free(m);
}

Test(metrics, families_render_in_registration_order_each_once)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    double v = 3;
    cr_assert_not_null(orch_metrics_counter(m, "orch_a_total", "a", NULL, NULL, 1));
    cr_assert_not_null(orch_metrics_histogram(m, "orch_b_seconds", "b", NULL, NULL, 1));
    orch_metrics_gauge_fn(m, "orch_c", "c", gauge_value, &v);
    char *text = render(m);
    const char *a = strstr(text, "# HELP orch_a_total ");
    const char *b = strstr(text, "# HELP orch_b_seconds ");
    const char *c = strstr(text, "# HELP orch_c ");
    cr_assert(a && b && c, "%s", text);
    cr_expect(a < b && b < c, "%s", text);
    cr_expect_eq(count_occurrences(text, "# HELP "), 3);
    cr_expect_eq(count_occurrences(text, "# TYPE "), 3);
    /* Unlabelled histogram: le is the only label; _sum/_count bare. */
    cr_expect_eq(sample(text, "orch_b_seconds_bucket{le=\"+Inf\"}"), 0.0, "%s", text);
    cr_expect_eq(sample(text, "orch_b_seconds_count"), 0.0, "%s", text);
    cr_expect_eq(sample(text, "orch_b_seconds_sum"), 0.0, "%s", text);
    check_syntax(text);
    free(text);
    orch_metrics_free(m);
}

#define THREADS    4
#define PER_THREAD 100000

typedef struct hammer_arg {
    orch_counter *c;
    orch_counter *c2;
    orch_histogram *h;
} hammer_arg;

static void *hammer(void *p)
{
    hammer_arg *a = p;
    for (int i = 0; i < PER_THREAD; i++) {
        orch_counter_add(a->c, 0, 1);
        orch_counter_add2(a->c2, (size_t)(i & 1), 2, 1);
        orch_histogram_observe_ns(a->h, 0, 1000);
    }
    return NULL;
}

Test(metrics, concurrent_increments_sum_exactly)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    hammer_arg a = {
        orch_metrics_counter(m, "orch_hammer_total", "h", NULL, NULL, 1),
        orch_metrics_counter2(m, "orch_hammer2_total", "h2", "method", methods, 2, "code", codes,
                              3),
        orch_metrics_histogram(m, "orch_hammer_seconds", "hs", NULL, NULL, 1),
    };
    cr_assert(a.c && a.c2 && a.h);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, &a), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);

    const uint64_t total = (uint64_t)THREADS * PER_THREAD;
    cr_expect_eq(orch_counter_get2(a.c, 0, 0), total);
    cr_expect_eq(orch_counter_get2(a.c2, 0, 2) + orch_counter_get2(a.c2, 1, 2), total);
    cr_expect_eq(orch_counter_get2(a.c2, 0, 2), total / 2);
    char *text = render(m);
    cr_expect_eq(sample(text, "orch_hammer_total"), (double)total, "%s", text);
    cr_expect_eq(sample(text, "orch_hammer_seconds_count"), (double)total);
    cr_expect_eq(sample(text, "orch_hammer_seconds_bucket{le=\"+Inf\"}"), (double)total);
    cr_expect_eq(sample(text, "orch_hammer_seconds_bucket{le=\"0.0001\"}"), (double)total);
    double sum = sample(text, "orch_hammer_seconds_sum");
    cr_expect(fabs(sum - (double)total * 1e-6) < 1e-6, "_sum %.9f", sum);
    free(text);
    orch_metrics_free(m);
}

static double status_value(void *arg, size_t i)
{
    return ((const double *)arg)[i];
}

Test(metrics, labelled_gauge_has_one_series_per_value)
{
    static const char *const statuses[] = { "queued", "running", "timed_out" };
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    double v[3] = { 0, 0, 0 };
    orch_metrics_gauge_fn_labelled(m, "orch_test_jobs", "Jobs by status", "status", statuses, 3,
                                   status_value, v);
    v[0] = 4;
    v[2] = 1.5;
    char *text = render(m);
    cr_expect_not_null(strstr(text, "# HELP orch_test_jobs Jobs by status\n"
                                    "# TYPE orch_test_jobs gauge\n"),
                       "%s", text);
    cr_expect_eq(sample(text, "orch_test_jobs{status=\"queued\"}"), 4.0, "%s", text);
    cr_expect_eq(sample(text, "orch_test_jobs{status=\"running\"}"), 0.0, "%s", text);
    cr_expect_eq(sample(text, "orch_test_jobs{status=\"timed_out\"}"), 1.5, "%s", text);
    cr_expect_eq(check_syntax(text), 3);
    free(text);
    orch_metrics_free(m);
}

Test(metrics, counter_fn_is_typed_counter)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    double v = 7;
    orch_metrics_counter_fn(m, "orch_test_probes_total", "Probes", gauge_value, &v);
    char *text = render(m);
    cr_expect_not_null(strstr(text, "# TYPE orch_test_probes_total counter\n"
                                    "orch_test_probes_total 7\n"),
                       "%s", text);
    free(text);
    orch_metrics_free(m);
}

Test(metrics, info_renders_its_labels_escaped_with_value_one)
{
    static const char *const keys[] = { "version", "service" };
    static const char *const values[] = { "1.2.3", "a\"b\\c" };
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    orch_metrics_info(m, "orch_test_build_info", "Build", keys, values, 2);
    char *text = render(m);
    cr_expect_not_null(
        strstr(text, "# TYPE orch_test_build_info gauge\n"
                     "orch_test_build_info{version=\"1.2.3\",service=\"a\\\"b\\\\c\"} 1\n"),
        "%s", text);
    free(text);
    orch_metrics_free(m);
}

Test(metrics, histogram_with_its_own_buckets)
{
    static const double bounds[] = { 0.5, 30, 60 };
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    orch_histogram *h = orch_metrics_histogram_buckets(m, "orch_test_long_seconds", "Long", NULL,
                                                       NULL, 1, bounds, 3);
    cr_assert_not_null(h);
    orch_histogram_observe_ns(h, 0, 100000000ULL);   /* 0.1 s */
    orch_histogram_observe_ns(h, 0, 45000000000ULL); /* 45 s */
    orch_histogram_observe_ns(h, 0, 90000000000ULL); /* 90 s: +Inf only */
    char *text = render(m);
    cr_expect_eq(sample(text, "orch_test_long_seconds_bucket{le=\"0.5\"}"), 1.0, "%s", text);
    cr_expect_eq(sample(text, "orch_test_long_seconds_bucket{le=\"30\"}"), 1.0, "%s", text);
    cr_expect_eq(sample(text, "orch_test_long_seconds_bucket{le=\"60\"}"), 2.0, "%s", text);
    cr_expect_eq(sample(text, "orch_test_long_seconds_bucket{le=\"+Inf\"}"), 3.0, "%s", text);
    cr_expect_eq(count_occurrences(text, "_bucket{"), 4, "%s", text);
    cr_expect_eq(check_syntax(text), 6);
    free(text);
    orch_metrics_free(m);
}

Test(metrics, bucket_lists_that_are_not_increasing_are_refused)
{
    static const double down[] = { 1, 0.5 };
    static const double same[] = { 1, 1 };
    double many[ORCH_METRICS_MAX_BUCKETS + 1];
    for (size_t i = 0; i < sizeof many / sizeof many[0]; i++)
        many[i] = (double)(i + 1);
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    cr_expect_null(orch_metrics_histogram_buckets(m, "a", "a", NULL, NULL, 1, down, 2));
    cr_expect_null(orch_metrics_histogram_buckets(m, "b", "b", NULL, NULL, 1, same, 2));
    cr_expect_null(orch_metrics_histogram_buckets(m, "c", "c", NULL, NULL, 1, many, 0));
    cr_expect_null(orch_metrics_histogram_buckets(m, "d", "d", NULL, NULL, 1, many,
                                                  sizeof many / sizeof *many));
    cr_expect_not_null(
        orch_metrics_histogram_buckets(m, "e", "e", NULL, NULL, 1, many, ORCH_METRICS_MAX_BUCKETS));
    orch_metrics_free(m);
}

Test(metrics, null_label_value_is_a_hole_without_series)
{
    static const char *const names[] = { "svc/Get", NULL, "unknown" };
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    orch_histogram *h =
        orch_metrics_histogram(m, "orch_test_rpc_seconds", "RPC", "method", names, 3);
    cr_assert_not_null(h);
    orch_histogram_observe_ns(h, 1, 1000); /* the hole: ignored */
    orch_histogram_observe_ns(h, 0, 1000);
    char *text = render(m);
    cr_expect_eq(sample(text, "orch_test_rpc_seconds_count{method=\"svc/Get\"}"), 1.0, "%s", text);
    cr_expect_eq(sample(text, "orch_test_rpc_seconds_count{method=\"unknown\"}"), 0.0, "%s", text);
    cr_expect_eq(count_occurrences(text, "_count{"), 2, "%s", text);
    check_syntax(text);
    free(text);
    orch_metrics_free(m);
}

Test(metrics, process_families_read_this_process)
{
    orch_metrics *m = NULL;
    cr_assert_eq(orch_metrics_new(&m), ORCH_OK);
    orch_metrics_process(m);
    char *text = render(m);
    static const char *const gauges[] = { "process_resident_memory_bytes",
                                          "process_virtual_memory_bytes", "process_open_fds",
                                          "process_max_fds", "process_start_time_seconds" };
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
        char type[128];
        snprintf(type, sizeof type, "# TYPE %s gauge\n", gauges[i]);
        cr_expect_not_null(strstr(text, type), "%s missing:\n%s", gauges[i], text);
        cr_expect_gt(sample(text, gauges[i]), 0, "%s:\n%s", gauges[i], text);
    }
    cr_expect_not_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"), "%s", text);
    cr_expect_geq(sample(text, "process_cpu_seconds_total"), 0, "%s", text);
    /* Started within the last day, not in the future. */
    double start = sample(text, "process_start_time_seconds");
    double now = (double)time(NULL);
    cr_expect(start <= now + 1 && start > now - 86400, "start %.0f, now %.0f", start, now);
    cr_expect_gt(sample(text, "process_resident_memory_bytes"), 4096);
    cr_expect_geq(sample(text, "process_max_fds"), sample(text, "process_open_fds"));
    cr_expect_eq(check_syntax(text), 6);
    free(text);
    orch_metrics_free(m);
}
