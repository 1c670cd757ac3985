/*
 * test_service.c - a real service binary against a real PostgreSQL, over
 * real NNG sockets: health, bad input, deadlines, deduplication, database
 * loss and return, shutdown, configuration errors, concurrent migrations.
 */
#include <criterion/criterion.h>
#include <glob.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "orch/migrate.h"
#include "orch/v1/envelope.pb-c.h"
#include "orch/v1/health.pb-c.h"
#include "orch/clock.h"

#define CHECK "orch.v1.HealthService/Check"

typedef struct reply {
    orch_code code;
    char message[512];
    bool answered;
} reply;

/* Sends one raw frame and decodes the reply envelope, if any arrives. */
static reply send_frame(const char *url, const void *frame, size_t len, uint32_t timeout_ms)
{
    reply r = { ORCH_CODE_UNKNOWN, "", false };
    orch_rpc_client *c;
    void *buf = NULL;
    size_t n = 0;
    cr_assert(orch_rpc_client_open(url, NULL, &c) == ORCH_OK);
    if (orch_rpc_raw(c, frame, len, timeout_ms, &buf, &n) == ORCH_OK) {
        Orch__V1__ReplyEnvelope *rep = orch__v1__reply_envelope__unpack(NULL, n, buf);
        cr_assert(rep, "the reply is not a ReplyEnvelope");
        r.answered = true;
        r.code = rep->status ? (orch_code)rep->status->code : ORCH_CODE_UNKNOWN;
        snprintf(r.message, sizeof r.message, "%s", rep->status ? rep->status->message : "");
        orch__v1__reply_envelope__free_unpacked(rep, NULL);
    }
    free(buf);
    orch_rpc_client_close(c);
    return r;
}

/* Packs an envelope around `payload` and sends it. */
static reply send_env(const char *url, const char *method, const void *payload, size_t plen,
                      uint64_t deadline_unix_ms, const char *rid)
{
    Orch__V1__RequestEnvelope env = ORCH__V1__REQUEST_ENVELOPE__INIT;
    env.method = (char *)method;
    env.request_id = (char *)(rid ? rid : "");
    env.timeout_ms = 2000;
    env.deadline_unix_ms = deadline_unix_ms;
    env.payload.data = (uint8_t *)payload;
    env.payload.len = plen;
    size_t len = orch__v1__request_envelope__get_packed_size(&env);
    uint8_t *frame = malloc(len);
    orch__v1__request_envelope__pack(&env, frame);
    reply r = send_frame(url, frame, len, 3000);
    free(frame);
    return r;
}

static void assert_serving(const th_svc *s)
{
    char detail[256];
    cr_assert(th_svc_alive(s), "%s-service died", s->name);
    cr_assert_eq(th_health_of(s->rpc_url, 2000, detail, sizeof detail), TH_SERVING, "Check: %s",
                 detail);
}

static double metric_of(const th_svc *s, const char *series)
{
    char *body = NULL;
    cr_assert_eq(th_http_get(s->http_addr, "/metrics", &body), 200);
    double v = th_metric(body, series);
    free(body);
    return v;
}

static th_svc svc;
static char db[600];

static void start_lease(void)
{
    th_db_fresh(db, sizeof db);
    th_svc_start(&svc, "lease", db, NULL, true);
}

static void stop_svc(void)
{
    if (svc.pid > 0) {
        int rc = th_svc_stop(&svc, SIGTERM, 10000);
        if (rc != 0)
            th_svc_dump_log(&svc);
    }
}

TestSuite(service, .init = start_lease, .fini = stop_svc, .timeout = 60);

Test(service, check_reports_serving_with_identity)
{
    orch_rpc_client *c;
    orch_rpc_status st;
    ProtobufCMessage *m = NULL;
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    cr_assert(orch_rpc_client_open(svc.rpc_url, NULL, &c) == ORCH_OK);
    cr_assert_eq(orch_rpc_invoke(c, CHECK, &req.base, &orch__v1__health_check_response__descriptor,
                                 NULL, &st, &m),
                 ORCH_CODE_OK, "%s", st.message);
    Orch__V1__HealthCheckResponse *r = (Orch__V1__HealthCheckResponse *)m;
    cr_assert_eq(r->status,
                 ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_SERVING);
    cr_assert_str_eq(r->server, "lease-service");
    cr_assert_eq(strlen(r->instance_id), 32);
    cr_assert(r->database_ok);
    protobuf_c_message_free_unpacked(m, NULL);

    req.service = "orch.v1.NoSuchService";
    cr_assert_eq(orch_rpc_invoke(c, CHECK, &req.base, &orch__v1__health_check_response__descriptor,
                                 NULL, &st, &m),
                 ORCH_CODE_NOT_FOUND);
    orch_rpc_client_close(c);
}

Test(service, migrations_created_every_table)
{
    static const char *const tables[] = {
        "tasks",        "stage_history", "side_effects", "transition_lease", "hosts",
        "lease_events", "jobs",          "agent_runs",   "guard_audit"
    };
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT to_regclass('public.%s') IS NOT NULL", tables[i]);
        char *v = th_sql(db, sql);
        cr_assert_str_eq(v, "t", "table %s missing", tables[i]);
        free(v);
    }
    /* One row per numbered file in shared/migrations. */
    glob_t g;
    cr_assert_eq(glob(ORCH_SOURCE_DIR "/shared/migrations/[0-9][0-9][0-9][0-9]_*.sql", 0, NULL, &g),
                 0);
    char want[16];
    snprintf(want, sizeof want, "%zu", g.gl_pathc);
    globfree(&g);
    char *n = th_sql(db, "SELECT count(*) FROM schema_migrations");
    cr_assert_str_eq(n, want, "one schema_migrations row per migration file");
    cr_assert_eq(strtol(n, NULL, 10), (long)orch__migrations_count, "%s", n);
    free(n);
}

Test(service, healthz_and_metrics_over_http)
{
    char *body = NULL;
    cr_assert_eq(th_http_get(svc.http_addr, "/healthz", &body), 200);
    cr_assert_str_eq(body, "ok\n");
    free(body);
    assert_serving(&svc);
    cr_assert_geq(metric_of(&svc, "orch_rpc_requests_total{method=\"" CHECK "\",code=\"OK\"}"), 1);
    cr_assert_eq(metric_of(&svc, "orch_database_up"), 1);
    cr_assert_eq(th_http_get(svc.http_addr, "/nope", NULL), 404);
}

/* Regression: the probe's condition variable waited on the realtime clock for
 * a monotonic deadline, so an idle service probed the database in a loop. */
Test(service, idle_service_probes_the_database_at_its_interval)
{
    double before = metric_of(&svc, "orch_database_probes_total");
    usleep(2500 * 1000); /* default interval 1000 ms: two or three probes */
    double probes = metric_of(&svc, "orch_database_probes_total") - before;
    cr_assert(probes >= 1 && probes <= 4, "%.0f probes in 2.5 s", probes);
}

Test(service, frame_that_is_not_protobuf_gets_invalid_argument)
{
    static const char junk[] = "\xff\xff\xff\xff this is not protobuf";
    reply r = send_frame(svc.rpc_url, junk, sizeof junk - 1, 3000);
    cr_assert(r.answered);
    cr_assert_eq(r.code, ORCH_CODE_INVALID_ARGUMENT, "%s", r.message);
    assert_serving(&svc);
}

Test(service, unknown_method_gets_unimplemented)
{
    reply r = send_env(svc.rpc_url, "orch.v1.NoService/Nope", NULL, 0, 0, NULL);
    cr_assert_eq(r.code, ORCH_CODE_UNIMPLEMENTED, "%s", r.message);
    r = send_env(svc.rpc_url, "orch.v1.HealthService/Nope", NULL, 0, 0, NULL);
    cr_assert_eq(r.code, ORCH_CODE_UNIMPLEMENTED, "%s", r.message);
    r = send_env(svc.rpc_url, "no-slash-at-all", NULL, 0, 0, NULL);
    cr_assert_eq(r.code, ORCH_CODE_UNIMPLEMENTED, "%s", r.message);
    assert_serving(&svc);
}

Test(service, payload_that_does_not_decode_gets_invalid_argument)
{
    static const uint8_t bad[] = { 0xff, 0xff, 0xff };
    reply r = send_env(svc.rpc_url, CHECK, bad, sizeof bad, 0, NULL);
    cr_assert_eq(r.code, ORCH_CODE_INVALID_ARGUMENT, "%s", r.message);
    cr_assert(strstr(r.message, "HealthCheckRequest"), "message names the type: %s", r.message);
    assert_serving(&svc);
}

Test(service, oversized_message_is_dropped_and_service_keeps_serving)
{
    stop_svc();
    const char *env[] = { "ORCH_RPC_MAX_MSG_BYTES=4096", NULL };
    th_svc_start(&svc, "lease", db, env, true);
    size_t big = 64 * 1024;
    char *frame = calloc(1, big);
    reply r = send_frame(svc.rpc_url, frame, big, 1000);
    free(frame);
    cr_assert_not(r.answered, "an oversized message must not be processed");
    assert_serving(&svc);
    /* Just under the limit is processed (and rejected as not protobuf). */
    char small[4000];
    memset(small, 0xff, sizeof small);
    r = send_frame(svc.rpc_url, small, sizeof small, 3000);
    cr_assert(r.answered);
    cr_assert_eq(r.code, ORCH_CODE_INVALID_ARGUMENT);
}

Test(service, passed_deadline_gets_deadline_exceeded_and_no_work)
{
    const char *series = "orch_rpc_requests_total{method=\"" CHECK "\",code=\"OK\"}";
    double ok_before = metric_of(&svc, series);
    reply r = send_env(svc.rpc_url, CHECK, NULL, 0, orch_wall_ms() - 1000, "deadline-rid-1");
    cr_assert_eq(r.code, ORCH_CODE_DEADLINE_EXCEEDED, "%s", r.message);
    cr_assert_eq(metric_of(&svc, series), ok_before, "the handler must not have run");
    /* Not remembered: the same id with a live deadline now runs. */
    r = send_env(svc.rpc_url, CHECK, NULL, 0, 0, "deadline-rid-1");
    cr_assert_eq(r.code, ORCH_CODE_OK, "%s", r.message);
    cr_assert_eq(metric_of(&svc, series), ok_before + 1);
}

Test(service, resent_request_id_is_answered_once)
{
    const char *series = "orch_rpc_requests_total{method=\"" CHECK "\",code=\"OK\"}";
    double before = metric_of(&svc, series);
    for (int i = 0; i < 3; i++) {
        reply r = send_env(svc.rpc_url, CHECK, NULL, 0, 0, "same-request-id");
        cr_assert_eq(r.code, ORCH_CODE_OK);
    }
    cr_assert_eq(metric_of(&svc, series), before + 1, "the handler ran more than once");
}

typedef struct par_arg {
    const char *url;
    orch_rpc_client *c;
    int ok;
} par_arg;

static void *par_calls(void *p)
{
    par_arg *a = p;
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    for (int i = 0; i < 200; i++) {
        orch_rpc_status st;
        if (orch_rpc_invoke(a->c, CHECK, &req.base, NULL, NULL, &st, NULL) == ORCH_CODE_OK)
            a->ok++;
    }
    return NULL;
}

Test(service, sixteen_callers_share_one_client)
{
    orch_rpc_client *c;
    pthread_t t[16];
    par_arg a[16];
    cr_assert(orch_rpc_client_open(svc.rpc_url, NULL, &c) == ORCH_OK);
    for (int i = 0; i < 16; i++) {
        a[i] = (par_arg){ svc.rpc_url, c, 0 };
        pthread_create(&t[i], NULL, par_calls, &a[i]);
    }
    int ok = 0;
    for (int i = 0; i < 16; i++) {
        pthread_join(t[i], NULL);
        ok += a[i].ok;
    }
    orch_rpc_client_close(c);
    cr_assert_eq(ok, 16 * 200);
}

Test(service, auth_token_is_enforced_when_configured)
{
    stop_svc();
    const char *env[] = { "ORCH_RPC_AUTH_TOKEN=s3cret-token", NULL };
    th_svc_start(&svc, "lease", db, env, false);
    orch_rpc_client *c;
    orch_rpc_status st;
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    orch_rpc_client_opts good = { .auth_token = "s3cret-token" };
    cr_assert(orch_rpc_client_open(svc.rpc_url, &good, &c) == ORCH_OK);
    uint64_t until = orch_mono_ms() + 15000;
    while (orch_rpc_invoke(c, CHECK, &req.base, NULL, NULL, &st, NULL) != ORCH_CODE_OK &&
           orch_mono_ms() < until)
        ;
    cr_assert_eq(st.code, ORCH_CODE_OK, "%s", st.message);
    orch_rpc_client_close(c);
    cr_assert_eq(th_check(svc.rpc_url, 2000, &st), ORCH_CODE_UNAUTHENTICATED);
    cr_assert_not(th_svc_log_has(&svc, "s3cret-token"), "the token leaked into the log");
}

Test(service, sigterm_stops_cleanly_with_status_zero)
{
    assert_serving(&svc);
    int rc = th_svc_stop(&svc, SIGTERM, 10000);
    cr_assert_eq(rc, 0, "exit status %d", rc);
    cr_assert(th_svc_log_has(&svc, "\"msg\":\"stopped\""));
}

Test(service, orchctl_health_exit_codes)
{
    char out[8192], url_env[128], bin[600];
    snprintf(bin, sizeof bin, "%s/tools/orchctl/orchctl", ORCH_BINARY_DIR);
    snprintf(url_env, sizeof url_env, "ORCH_LEASE_RPC_URL=%s", svc.rpc_url);
    const char *env[] = { url_env, NULL };
    const char *ok_argv[] = { bin, "health", "lease", NULL };
    cr_assert_eq(th_run(ok_argv, env, out, sizeof out, 10000), 0, "%s", out);
    cr_assert(strstr(out, "SERVING"), "%s", out);

    const char *json_argv[] = { bin, "--json", "health", "lease", NULL };
    cr_assert_eq(th_run(json_argv, env, out, sizeof out, 10000), 0, "%s", out);
    cr_assert(strstr(out, "\"status\": \"SERVING\""), "%s", out);

    char dead_env[128];
    snprintf(dead_env, sizeof dead_env, "ORCH_STAGE_RPC_URL=tcp://127.0.0.1:%d", th_free_port());
    const char *env2[] = { dead_env, NULL };
    const char *dead_argv[] = { bin, "--timeout", "300", "health", "stage", NULL };
    cr_assert_eq(th_run(dead_argv, env2, out, sizeof out, 10000), 64 + ORCH_CODE_DEADLINE_EXCEEDED,
                 "%s", out);

    const char *bad_argv[] = { bin, "health", "nosuch", NULL };
    cr_assert_eq(th_run(bad_argv, env, out, sizeof out, 10000), 1, "%s", out);
    const char *help_argv[] = { bin, "health", "--help", NULL };
    cr_assert_eq(th_run(help_argv, env, out, sizeof out, 10000), 0, "%s", out);
}

/* ---- configuration ------------------------------------------------------ */

Test(config, every_error_is_reported_and_exit_status_is_two)
{
    char out[16384], bin[600];
    snprintf(bin, sizeof bin, "%s/services/guard/guard-service", ORCH_BINARY_DIR);
    const char *env[] = { "ORCH_RPC_WORKERS=many", "ORCH_DB_POOL_SIZE=1000", "ORCH_LOG_LEVEL=loud",
                          "ORCH_RPC_AUTH_TOKEN=do-not-print-me", NULL };
    const char *argv[] = { bin, NULL };
    int rc = th_run(argv, env, out, sizeof out, 10000);
    cr_assert_eq(rc, 2, "exit %d: %s", rc, out);
    static const char *const names[] = { "ORCH_DATABASE_URL", "ORCH_RPC_WORKERS",
                                         "ORCH_DB_POOL_SIZE", "ORCH_LOG_LEVEL" };
    for (size_t i = 0; i < 4; i++)
        cr_assert(strstr(out, names[i]), "%s not reported:\n%s", names[i], out);
    cr_assert_not(strstr(out, "do-not-print-me"), "a secret was printed:\n%s", out);

    const char *print_argv[] = { bin, "--print-config", NULL };
    const char *env2[] = { "ORCH_DATABASE_URL=postgresql://u:hunter2@127.0.0.1/x",
                           "ORCH_RUNTIME=test", NULL };
    cr_assert_eq(th_run(print_argv, env2, out, sizeof out, 10000), 0, "%s", out);
    cr_assert(strstr(out, "ORCH_DATABASE_URL=<set>"), "%s", out);
    cr_assert_not(strstr(out, "hunter2"), "%s", out);
}

Test(config, missing_or_unknown_runtime_refuses_to_start_naming_it)
{
    char out[16384], bin[600];
    snprintf(bin, sizeof bin, "%s/services/lease/lease-service", ORCH_BINARY_DIR);
    const char *argv[] = { bin, NULL };
    const char *env[] = { "ORCH_DATABASE_URL=postgresql://u@127.0.0.1:1/x", NULL };
    int rc = th_run(argv, env, out, sizeof out, 10000);
    cr_assert_eq(rc, 2, "exit %d: %s", rc, out);
    cr_assert(strstr(out, "ORCH_RUNTIME"), "ORCH_RUNTIME not named:\n%s", out);
    const char *env2[] = { "ORCH_DATABASE_URL=postgresql://u@127.0.0.1:1/x",
                           "ORCH_RUNTIME=production", NULL };
    rc = th_run(argv, env2, out, sizeof out, 10000);
    cr_assert_eq(rc, 2, "exit %d: %s", rc, out);
    cr_assert(strstr(out, "ORCH_RUNTIME"), "ORCH_RUNTIME not named:\n%s", out);
}

/* ---- several services, one database -------------------------------------- */

Test(startup, four_services_migrate_one_database_at_once, .timeout = 90)
{
    static const char *const names[] = { "lease", "stage", "guard", "launcher" };
    th_svc s[4];
    char url[600];
    th_db_fresh(url, sizeof url);
    for (int i = 0; i < 4; i++)
        th_svc_start(&s[i], names[i], url, NULL, false);
    for (int i = 0; i < 4; i++) {
        bool up = th_svc_wait_health(&s[i], TH_SERVING, 30000);
        if (!up)
            th_svc_dump_log(&s[i]);
        cr_assert(up, "%s-service did not come up", names[i]);
    }
    glob_t g;
    cr_assert_eq(glob(ORCH_SOURCE_DIR "/shared/migrations/[0-9][0-9][0-9][0-9]_*.sql", 0, NULL, &g),
                 0);
    char want[16];
    snprintf(want, sizeof want, "%zu", g.gl_pathc);
    globfree(&g);
    char *n = th_sql(url, "SELECT count(*) FROM schema_migrations");
    cr_assert_str_eq(n, want, "one schema_migrations row per migration file");
    cr_assert_eq(strtol(n, NULL, 10), (long)orch__migrations_count, "%s", n);
    free(n);
    int applied = 0;
    for (int i = 0; i < 4; i++) {
        applied += th_svc_log_has(&s[i], "applied migration 0001_initial") ? 1 : 0;
        cr_assert_eq(th_svc_stop(&s[i], SIGTERM, 10000), 0);
    }
    cr_assert_eq(applied, 1, "exactly one service applies the migration");
}

Test(startup, changed_migration_text_is_refused)
{
    char url[600];
    th_svc s;
    th_db_fresh(url, sizeof url);
    th_svc_start(&s, "stage", url, NULL, true);
    cr_assert_eq(th_svc_stop(&s, SIGTERM, 10000), 0);
    free(th_sql(url, "UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1"));
    th_svc_start(&s, "stage", url, NULL, false);
    int rc = th_svc_stop(&s, 0, 15000); /* signal 0: just wait for the exit */
    cr_assert_eq(rc, 1, "exit %d", rc);
    cr_assert(th_svc_log_has(&s, "was changed after it was applied"));
}
