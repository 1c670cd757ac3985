/*
 * test_db_restart.c - a service survives its database going away and
 * coming back: UNAVAILABLE while down (RPC and /healthz), serving again after,
 * without a restart of the service. Uses a private cluster of its own so that
 * stopping it disturbs no other test.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

Test(db_restart, unavailable_while_down_then_serving_again, .timeout = 120)
{
    char dir[] = "/tmp/orch-dbr-XXXXXX";
    char url[600];
    orch_rpc_status st;
    th_svc s;

    cr_assert(mkdtemp(dir));
    cr_assert_eq(th_pgctl("init", dir, NULL), 0);
    cr_assert_eq(th_pgctl("start", dir, NULL), 0);
    th_pg_url(dir, "orch", url, sizeof url);
    const char *env[] = { "ORCH_DB_PROBE_INTERVAL_MS=200", "ORCH_DB_CONNECT_TIMEOUT_S=2", NULL };
    th_svc_start(&s, "launcher", url, env, true);
    pid_t pid = s.pid;

    cr_assert_eq(th_pgctl("stop", dir, "fast"), 0);
    bool down = th_svc_wait_code(&s, ORCH_CODE_UNAVAILABLE, 15000);
    if (!down)
        th_svc_dump_log(&s);
    cr_assert(down, "Check did not report UNAVAILABLE while the database was down");
    cr_assert_eq(th_check(s.rpc_url, 2000, &st), ORCH_CODE_UNAVAILABLE);
    cr_assert(strstr(st.message, "database"), "%s", st.message);
    cr_assert_eq(th_http_get(s.http_addr, "/healthz", NULL), 503);

    cr_assert_eq(th_pgctl("start", dir, NULL), 0);
    bool up = th_svc_wait_code(&s, ORCH_CODE_OK, 20000);
    if (!up)
        th_svc_dump_log(&s);
    cr_assert(up, "Check did not recover after the database came back");
    cr_assert_eq(s.pid, pid, "the service must not have been restarted");
    cr_assert_eq(th_http_get(s.http_addr, "/healthz", NULL), 200);

    /* An immediate (crash-like) stop, and back again. */
    cr_assert_eq(th_pgctl("stop", dir, "immediate"), 0);
    cr_assert(th_svc_wait_code(&s, ORCH_CODE_UNAVAILABLE, 15000));
    cr_assert_eq(th_pgctl("start", dir, NULL), 0);
    cr_assert(th_svc_wait_code(&s, ORCH_CODE_OK, 20000));

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
    bool up = th_svc_wait_code(&s, ORCH_CODE_OK, 30000);
    if (!up)
        th_svc_dump_log(&s);
    cr_assert(up);
    cr_assert_eq(th_svc_stop(&s, SIGTERM, 10000), 0);
    th_pgctl("destroy", dir, NULL);
}
