/*
 * test_db_restart.c - a service survives its database going away and
 * coming back: NOT_SERVING while down (Check, /readyz; /livez stays 200),
 * serving again after, without a restart of the service. Uses a private cluster of its own so that
 * stopping it disturbs no other test.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* While the database is down: Check is an OK reply saying NOT_SERVING with
 * the reason (gRPC's health convention), /readyz and /healthz answer 503,
 * /livez 200 (the process is fine: a liveness probe must not restart it),
 * and orchctl health exits 78 (UNAVAILABLE). */
static void assert_not_serving(const th_svc *s)
{
    orch_rpc_status st;
    char detail[256];
    cr_assert_eq(th_check(s->rpc_url, 2000, &st), ORCH_CODE_OK, "Check: %s", st.message);
    cr_assert_eq(th_health_of(s->rpc_url, 2000, detail, sizeof detail), TH_NOT_SERVING);
    cr_assert(strstr(detail, "database unreachable"), "detail: %s", detail);
    char *body = NULL;
    cr_assert_eq(th_http_get(s->http_addr, "/readyz", &body), 503);
    cr_assert(strstr(body, "database unreachable"), "/readyz: %s", body);
    free(body);
    cr_assert_eq(th_http_get(s->http_addr, "/healthz", NULL), 503);
    cr_assert_eq(th_http_get(s->http_addr, "/livez", NULL), 200);
    char env_url[600], out[4096];
    snprintf(env_url, sizeof env_url, "ORCH_LAUNCHER_RPC_URL=%s", s->rpc_url);
    const char *argv[] = { ORCH_BINARY_DIR "/tools/orchctl/orchctl", "health", "launcher", NULL };
    const char *env[] = { env_url, NULL };
    cr_assert_eq(th_run(argv, env, out, sizeof out, 10000), 64 + ORCH_CODE_UNAVAILABLE, "%s", out);
    cr_assert(strstr(out, "NOT_SERVING") && strstr(out, "database unreachable"), "%s", out);
}

static void assert_serving(const th_svc *s)
{
    cr_assert_eq(th_health_of(s->rpc_url, 2000, NULL, 0), TH_SERVING);
    cr_assert_eq(th_http_get(s->http_addr, "/readyz", NULL), 200);
    cr_assert_eq(th_http_get(s->http_addr, "/healthz", NULL), 200);
    cr_assert_eq(th_http_get(s->http_addr, "/livez", NULL), 200);
}

Test(db_restart, unavailable_while_down_then_serving_again, .timeout = 120)
{
    char dir[] = "/tmp/orch-dbr-XXXXXX";
    char url[600];
    th_svc s;

    cr_assert(mkdtemp(dir));
    cr_assert_eq(th_pgctl("init", dir, NULL), 0);
    cr_assert_eq(th_pgctl("start", dir, NULL), 0);
    th_pg_url(dir, "orch", url, sizeof url);
    const char *env[] = { "ORCH_DB_PROBE_INTERVAL_MS=200", "ORCH_DB_CONNECT_TIMEOUT_S=2", NULL };
    th_svc_start(&s, "launcher", url, env, true);
    pid_t pid = s.pid;
    assert_serving(&s);

    cr_assert_eq(th_pgctl("stop", dir, "fast"), 0);
    bool down = th_svc_wait_health(&s, TH_NOT_SERVING, 15000);
    if (!down)
        th_svc_dump_log(&s);
    cr_assert(down, "Check did not report NOT_SERVING while the database was down");
    assert_not_serving(&s);

    cr_assert_eq(th_pgctl("start", dir, NULL), 0);
    bool up = th_svc_wait_health(&s, TH_SERVING, 20000);
    if (!up)
        th_svc_dump_log(&s);
    cr_assert(up, "Check did not recover after the database came back");
    cr_assert_eq(s.pid, pid, "the service must not have been restarted");
    assert_serving(&s);

    /* An immediate (crash-like) stop, and back again. */
    cr_assert_eq(th_pgctl("stop", dir, "immediate"), 0);
    cr_assert(th_svc_wait_health(&s, TH_NOT_SERVING, 15000));
    cr_assert_eq(th_pgctl("start", dir, NULL), 0);
    cr_assert(th_svc_wait_health(&s, TH_SERVING, 20000));

    cr_assert_eq(th_svc_stop(&s, SIGTERM, 10000), 0);
    th_pgctl("destroy", dir, NULL);
}

Test(db_restart, service_waits_for_a_database_that_starts_late, .timeout = 120)
{
    char dir[] = "/tmp/orch-dbl-XXXXXX";
    char url[600];
    th_svc s;
    cr_assert(mkdtemp(dir));
    cr_assert_eq(th_pgctl("init", dir, NULL), 0);
    th_pg_url(dir, "orch", url, sizeof url);
    th_svc_start(&s, "guard", url, NULL, false);
    usleep(1500 * 1000);
    cr_assert(th_svc_alive(&s), "the service gave up too early");
    cr_assert(th_svc_log_has(&s, "waiting for the database"));
    cr_assert_eq(th_pgctl("start", dir, NULL), 0);
    bool up = th_svc_wait_health(&s, TH_SERVING, 30000);
    if (!up)
        th_svc_dump_log(&s);
    cr_assert(up);
    cr_assert_eq(th_svc_stop(&s, SIGTERM, 10000), 0);
    th_pgctl("destroy", dir, NULL);
}
