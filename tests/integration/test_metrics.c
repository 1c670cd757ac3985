/*
 * test_metrics.c - the names Prometheus users expect on a running service's
 * /metrics: orch_build_info, the standard process_* families read from
 * /proc, counters ending in _total, orch_launcher_jobs{status}, the long
 * poll LauncherService/Wait kept out of the RPC duration histogram, and the
 * stage advance histogram reaching the effect timeout.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "orch/rpc.h"
#include "orch/v1/launcher.pb-c.h"

static char *scrape(const th_svc *s)
{
    char *body = NULL;
    cr_assert_eq(th_http_get(s->http_addr, "/metrics", &body), 200);
    cr_assert_not_null(body);
    return body;
}

static bool has_type(const char *text, const char *name, const char *type)
{
    char line[160];
    snprintf(line, sizeof line, "# TYPE %s %s\n", name, type);
    return strstr(text, line) != NULL;
}

Test(metrics, every_service_has_build_info_and_process_families, .timeout = 90)
{
    char db[600];
    th_db_fresh(db, sizeof db);
    th_svc s;
    th_svc_start(&s, "lease", db, NULL, true);
    char *t = scrape(&s);

    cr_expect(has_type(t, "orch_build_info", "gauge"), "%s", t);
    cr_expect_not_null(strstr(t, "orch_build_info{version=\""), "%s", t);
    cr_expect_not_null(strstr(t, "\",service=\"lease-service\"} 1\n"), "%s", t);

    static const char *const gauges[] = { "process_resident_memory_bytes",
                                          "process_virtual_memory_bytes", "process_open_fds",
                                          "process_max_fds", "process_start_time_seconds" };
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
        cr_expect(has_type(t, gauges[i], "gauge"), "%s missing", gauges[i]);
        cr_expect_gt(th_metric(t, gauges[i]), 0, "%s", gauges[i]);
    }
    cr_expect(has_type(t, "process_cpu_seconds_total", "counter"));
    cr_expect_geq(th_metric(t, "process_cpu_seconds_total"), 0);
    /* The service's own process: started a moment ago, several descriptors
     * (sockets, the database connections) open. */
    double start = th_metric(t, "process_start_time_seconds");
    double now = (double)time(NULL);
    cr_expect(start > now - 120 && start <= now + 1, "start %.0f, now %.0f", start, now);
    cr_expect_gt(th_metric(t, "process_open_fds"), 3);

    /* Counters end in _total and say so in their TYPE. */
    cr_expect(has_type(t, "orch_database_probes_total", "counter"), "%s", t);
    cr_expect_null(strstr(t, "orch_database_probes "), "the old gauge name is gone");
    cr_expect_null(strstr(t, "orch_process_start_time_seconds"), "replaced by the standard name");
    /* Label values are spelled with underscores. */
    cr_expect_eq(th_metric(t, "orch_lease_acquire_total{outcome=\"already_held\"}"), 0, "%s", t);
    cr_expect_eq(th_metric(t, "orch_lease_release_total{kind=\"reclaimed_stale\"}"), 0, "%s", t);
    free(t);
    th_svc_stop(&s, SIGTERM, 20000);
}

Test(metrics, launcher_jobs_by_status_and_wait_outside_the_duration_histogram, .timeout = 90)
{
    static const char *const statuses[] = { "queued", "running",   "succeeded",
                                            "failed", "timed_out", "cancelled" };
    char db[600];
    th_db_fresh(db, sizeof db);
    th_svc s;
    th_svc_start(&s, "launcher", db, NULL, true);

    orch_rpc_client *c = NULL;
    cr_assert_eq(orch_rpc_client_open(s.rpc_url, NULL, &c), ORCH_OK);
    Orch__V1__WaitJobRequest w = ORCH__V1__WAIT_JOB_REQUEST__INIT;
    w.job_id = 424242;
    w.wait_ms = 100;
    Orch__V1__GetJobRequest g = ORCH__V1__GET_JOB_REQUEST__INIT;
    g.job_id = 424242;
    orch_rpc_status st;
    (void)orch_rpc_invoke(c, "orch.v1.LauncherService/Wait", &w.base, NULL, NULL, &st, NULL);
    (void)orch_rpc_invoke(c, "orch.v1.LauncherService/Get", &g.base, NULL, NULL, &st, NULL);
    orch_rpc_client_close(c);

    char *t = scrape(&s);
    cr_expect(has_type(t, "orch_launcher_jobs", "gauge"), "%s", t);
    for (size_t i = 0; i < 6; i++) {
        char series[96];
        snprintf(series, sizeof series, "orch_launcher_jobs{status=\"%s\"}", statuses[i]);
        cr_expect_eq(th_metric(t, series), 0, "%s:\n%s", series, t);
    }
    cr_expect_null(strstr(t, "orch_launcher_jobs_queued"), "the six gauges are one family");
    cr_expect_eq(th_metric(t, "orch_launcher_stage_reports_total{outcome=\"not_advanced\"}"), 0);
    cr_expect_eq(th_metric(t, "orch_launcher_reaps_total{tier=\"tier_2\"}"), 0);

    /* Both calls are counted; only Get is timed. */
    cr_expect_not_null(
        strstr(t, "orch_rpc_requests_total{method=\"orch.v1.LauncherService/Wait\",code="), "%s",
        t);
    cr_expect_not_null(
        strstr(t, "orch_rpc_requests_total{method=\"orch.v1.LauncherService/Get\",code="), "%s", t);
    cr_expect_eq(th_metric(t, "orch_rpc_request_duration_seconds_count{method=\"orch.v1."
                              "LauncherService/Get\"}"),
                 1, "%s", t);
    cr_expect_null(strstr(t, "orch_rpc_request_duration_seconds_bucket{method=\"orch.v1."
                             "LauncherService/Wait\""),
                   "the long poll is in the duration histogram:\n%s", t);
    free(t);
    th_svc_stop(&s, SIGTERM, 20000);
}

Test(metrics, stage_advance_buckets_reach_the_effect_timeout, .timeout = 90)
{
    char db[600];
    th_db_fresh(db, sizeof db);
    th_svc s;
    const char *env[] = { "ORCH_EFFECT_TIMEOUT_MS=90000", NULL };
    th_svc_start(&s, "stage", db, env, true);
    char *t = scrape(&s);
    const char *p = "orch_stage_advance_duration_seconds_bucket{method=\"AdvanceStage\",le=\"";
    cr_expect_eq(th_metric(t, "orch_stage_advance_duration_seconds_bucket{method=\"AdvanceStage\","
                              "le=\"60\"}"),
                 0, "%s", t);
    cr_expect_eq(th_metric(t, "orch_stage_advance_duration_seconds_bucket{method=\"AdvanceStage\","
                              "le=\"90\"}"),
                 0, "%s", t);
    /* 90 s is the last finite bound: nothing between it and +Inf. */
    double last = 0;
    for (const char *q = strstr(t, p); q; q = strstr(q + 1, p)) {
        const char *le = q + strlen(p);
        if (strncmp(le, "+Inf", 4) != 0)
            last = strtod(le, NULL);
    }
    cr_expect_eq(last, 90.0, "%s", t);
    free(t);
    th_svc_stop(&s, SIGTERM, 20000);
}
