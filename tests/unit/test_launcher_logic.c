/*
 * test_launcher_logic.c - launcher-service's pure rules.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "launcher_logic.h"

Test(launcher_logic, argv_template_is_split_and_filled)
{
    char buf[512], *argv[LAUNCHER_MAX_ARGS + 1];
    launcher_vars v = { "tester", "ORCH-1", "42", "/w", "testing" };
    int n = launcher_argv_build("agent  -p --role={role} {work_item} job{job_id} {unknown}", &v,
                                buf, sizeof buf, argv);
    cr_assert_eq(n, 6);
    cr_expect_str_eq(argv[0], "agent");
    cr_expect_str_eq(argv[2], "--role=tester");
    cr_expect_str_eq(argv[3], "ORCH-1");
    cr_expect_str_eq(argv[4], "job42");
    cr_expect_str_eq(argv[5], "{unknown}");
    cr_expect_null(argv[6]);
    cr_expect_eq(launcher_argv_build("", &v, buf, sizeof buf, argv), 0);
    cr_expect_eq(launcher_argv_build("a {workdir}", &v, buf, 4, argv), -1);
}

Test(launcher_logic, routes_decide_on_the_verdict)
{
    orch_verdicts vs;
    orch_verdicts_init(&vs);
    char why[128];
    const launcher_route *t = launcher_route_find("tester", "");
    cr_assert_not_null(t);
    cr_expect_str_eq(t->to, "staging");
    cr_expect_eq(launcher_decide(t, true, &vs, why, sizeof why), LAUNCHER_NOT_ADVANCE);
    orch_verdicts_parse(&vs, "test_status: pass\n", 18);
    cr_expect_eq(launcher_decide(t, true, &vs, why, sizeof why), LAUNCHER_ADVANCE);
    cr_expect_eq(launcher_decide(t, false, &vs, why, sizeof why), LAUNCHER_NOT_ADVANCE);
    orch_verdicts_parse(&vs, "test_status: FAIL\n", 18);
    cr_expect_eq(launcher_decide(t, true, &vs, why, sizeof why), LAUNCHER_NOT_ADVANCE);
    const launcher_route *d = launcher_route_find("deployer", "deploy");
    cr_assert_not_null(d);
    cr_expect_str_eq(d->actor, "deploy-finalizer");
    cr_expect_str_eq(launcher_route_find("deployer", "")->actor, "monitor");
    const launcher_route *dev = launcher_route_find("developer", NULL);
    cr_expect_eq(launcher_decide(dev, true, &vs, why, sizeof why), LAUNCHER_ADVANCE);
    cr_expect_null(launcher_route_find("tester", "deploy"));
    cr_expect_null(launcher_route_find("wizard", ""));
}

Test(launcher_logic, output_scan_reads_usage_and_verdicts)
{
    const char *out =
        "thinking...\n"
        "review_verdict: APPROVE\n"
        "{\"model\":\"m1\",\"usage\":{\"input_tokens\":5,\"output_tokens\":7},"
        "\"total_cost_usd\":0.5,\"result\":\"coverage_pct: 80\\ntest_status: PASS\"}\n"
        "{not json\n";
    orch_verdicts vs;
    launcher_usage u;
    orch_verdicts_init(&vs);
    memset(&u, 0, sizeof u);
    launcher_output_scan(out, strlen(out), &vs, &u);
    cr_expect(u.usage_known);
    cr_expect_eq(u.input_tokens, 5);
    cr_expect_eq(u.output_tokens, 7);
    cr_expect(u.cost_known);
    cr_expect_str_eq(u.model, "m1");
    cr_expect_str_eq(orch_verdicts_get(&vs, "review_verdict"), "APPROVE");
    cr_expect_str_eq(orch_verdicts_get(&vs, "test_status"), "PASS");
    cr_expect_str_eq(orch_verdicts_get(&vs, "coverage_pct"), "80");
}

Test(launcher_logic, usage_without_both_counts_is_unknown)
{
    const char *out = "{\"usage\":{\"input_tokens\":5}}\n{\"usage\":{\"input_tokens\":-1,"
                      "\"output_tokens\":2}}\n";
    orch_verdicts vs;
    launcher_usage u;
    orch_verdicts_init(&vs);
    memset(&u, 0, sizeof u);
    launcher_output_scan(out, strlen(out), &vs, &u);
    cr_expect(!u.usage_known);
    cr_expect(!u.cost_known);
}

Test(launcher_logic, reaper_tiers)
{
    cr_expect_eq(launcher_reap_decide(10, 5, true, LAUNCHER_LEASE_ALIVE), LAUNCHER_REAP_TIER3);
    cr_expect_eq(launcher_reap_decide(1, 5, true, LAUNCHER_LEASE_NONE), LAUNCHER_REAP_NONE);
    cr_expect_eq(launcher_reap_decide(1, 5, false, LAUNCHER_LEASE_NONE), LAUNCHER_REAP_TIER2);
    cr_expect_eq(launcher_reap_decide(1, 5, false, LAUNCHER_LEASE_DEAD), LAUNCHER_REAP_TIER2);
    cr_expect_eq(launcher_reap_decide(1, 5, false, LAUNCHER_LEASE_ALIVE), LAUNCHER_REAP_DEFER);
    cr_expect_eq(launcher_reap_decide(1, 5, false, LAUNCHER_LEASE_UNKNOWN), LAUNCHER_REAP_DEFER);
}

Test(launcher_logic, spawn_input_rules)
{
    char why[256];
    launcher_spawn_in in = { "tester", "ORCH-1", "", "p", "/tmp", 1, 10, true };
    cr_expect(launcher_valid_spawn(&in, 100, why, sizeof why), "%s", why);
    in.timeout_s = 101;
    cr_expect(!launcher_valid_spawn(&in, 100, why, sizeof why));
    cr_expect(strstr(why, "timeout_s") != NULL, "%s", why);
    in.timeout_s = 10;
    in.work_item = "bad\nitem";
    cr_expect(!launcher_valid_spawn(&in, 100, why, sizeof why));
    in.work_item = "ORCH-1";
    in.workdir_is_dir = false;
    cr_expect(!launcher_valid_spawn(&in, 100, why, sizeof why));
    cr_expect(strstr(why, "workdir") != NULL, "%s", why);
}
