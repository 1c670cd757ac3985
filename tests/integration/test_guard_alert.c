/*
 * test_guard_alert.c - an alert raised by lease-service (ForceRelease)
 * reaches the Telegram imitation through guard-service's Notify when the
 * test runtime is opted in to a sandbox chat, and is blocked otherwise.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_guard_util.h"
#include "test_lease_util.h"

static gt_env E;
static th_svc lease;

static void fini(void)
{
    lt_cleanup();
    if (lease.pid > 0)
        th_svc_stop(&lease, SIGTERM, 10000);
    gt_stop(&E);
}

TestSuite(guard_alert, .fini = fini, .timeout = 90);

static void force_release_one(const char *item)
{
    static char guard_url[128];
    snprintf(guard_url, sizeof guard_url, "ORCH_GUARD_RPC_URL=%s", E.guard.rpc_url);
    const char *env[] = { "ORCH_ALERT_NOTIFY=true", guard_url, "ORCH_HOST_ID=" LT_HOST, NULL };
    th_svc_start(&lease, "lease", E.db, env, true);
    orch_rpc_client *c = lt_client(&lease);
    lt_owner o;
    lt_owner_spawn(&o, NULL, NULL);
    lt_acq a = lt_acquire(c, item, "orch", &o, "tester");
    cr_assert(a.granted, "%s", a.message);
    Orch__V1__ForceReleaseRequest q = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    q.work_item = (char *)item;
    q.reason = "stuck holder";
    q.operator_ = "alice";
    q.epoch = a.epoch;
    orch_rpc_status st;
    cr_assert_eq(
        orch_rpc_invoke(c, orch_lease_method_force_release, &q.base, NULL, NULL, &st, NULL),
        ORCH_CODE_OK, "%s", st.message);
}

static bool wait_count(const th_imitation *im, int want, int ms)
{
    for (int i = 0; i < ms / 20; i++) {
        if (th_imitation_count(im, NULL, NULL) >= want)
            return true;
        struct timespec ts = { 0, 20000000L };
        nanosleep(&ts, NULL);
    }
    return th_imitation_count(im, NULL, NULL) >= want;
}

Test(guard_alert, lease_alert_reaches_the_sandbox_chat_through_guard)
{
    const char *env[] = { "ORCH_TELEGRAM_TEST_SEND_ENABLED=true", NULL };
    gt_start(&E, env);
    force_release_one("ISSUE-ALERT-1");
    cr_assert(wait_count(&E.tg, 1, 10000), "no sendMessage reached the imitation");
    char *rq = th_imitation_request(&E.tg, 0);
    cr_assert(strstr(rq, "lease.force-released"), "%s", rq);
    cr_assert(strstr(rq, "ISSUE-ALERT-1"), "%s", rq);
    cr_assert(strstr(rq, "chat_id\\\":\\\"" GT_SANDBOX_CHAT), "%s", rq);
    free(rq);
    cr_assert(th_svc_log_has(&E.guard, "guard allow Notify"));
    gt_assert_no_secret(&E, "");
}

Test(guard_alert, lease_alert_is_blocked_without_opt_in)
{
    gt_start(&E, NULL);
    force_release_one("ISSUE-ALERT-2");
    cr_assert(th_svc_wait_log(&E.guard, "guard block Notify", 10000),
              "the alert never reached guard-service");
    /* The log line comes just before the audit row: wait for the row. */
    int blocks = 0;
    for (int i = 0; i < 250 && blocks < 1; i++) {
        blocks = gt_audit_count(&E, "block");
        struct timespec ts = { 0, 20000000L };
        if (blocks < 1)
            nanosleep(&ts, NULL);
    }
    cr_assert_eq(blocks, 1);
    cr_assert_eq(th_imitation_count(&E.tg, NULL, NULL), 0);
}
