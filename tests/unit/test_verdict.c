/*
 * test_verdict.c - the machine-verdict line parser (shared/src/verdict.c):
 * case, whitespace, duplicates, list markers, garbage, limits.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "orch/verdict.h"

static orch_verdicts parse(const char *text)
{
    orch_verdicts vs;
    orch_verdicts_init(&vs);
    orch_verdicts_parse(&vs, text, strlen(text));
    return vs;
}

Test(verdict, reads_key_value_lines_anywhere_in_the_output)
{
    orch_verdicts vs = parse("Running tests...\n"
                             "test_status: PASS\n"
                             "all good, see you\n"
                             "coverage_pct: 83.4\n");
    cr_assert_eq(vs.n, 2);
    cr_assert_str_eq(orch_verdicts_get(&vs, "test_status"), "PASS");
    cr_assert_str_eq(orch_verdicts_get(&vs, "coverage_pct"), "83.4");
    cr_assert_eq(vs.ignored, 2, "prose lines are counted as ignored");
}

Test(verdict, keys_are_case_insensitive_and_stored_lower)
{
    orch_verdicts vs = parse("Review_Verdict: APPROVE\nTEST_STATUS: fail\n");
    cr_assert_str_eq(orch_verdicts_get(&vs, "review_verdict"), "APPROVE");
    cr_assert_str_eq(orch_verdicts_get(&vs, "test_status"), "fail", "values keep their case");
    cr_assert_null(orch_verdicts_get(&vs, "Review_Verdict"));
}

Test(verdict, whitespace_and_crlf_and_list_markers_are_ignored)
{
    orch_verdicts vs = parse("   test_status   :   PASS  \r\n\t- security_status: PASS\n"
                             "* deploy_status:SUCCESS\n\n\n");
    cr_assert_str_eq(orch_verdicts_get(&vs, "test_status"), "PASS");
    cr_assert_str_eq(orch_verdicts_get(&vs, "security_status"), "PASS");
    cr_assert_str_eq(orch_verdicts_get(&vs, "deploy_status"), "SUCCESS");
    cr_assert_eq(vs.ignored, 0, "blank lines are not counted");
}

Test(verdict, the_last_duplicate_wins)
{
    orch_verdicts vs = parse("test_status: FAIL\ntest_status: PASS\nTest_Status: PASS2\n");
    cr_assert_eq(vs.n, 1);
    cr_assert_str_eq(orch_verdicts_get(&vs, "test_status"), "PASS2");
}

Test(verdict, garbage_is_ignored)
{
    const char text[] = ": PASS\n"
                        "1abc: x\n"
                        "has space: x\n"
                        "key_without_value:\n"
                        "key_only\n"
                        "\x01\x02: x\n"
                        "ctl: a\x01"
                        "b\n"
                        "-: x\n";
    orch_verdicts vs = parse(text);
    cr_assert_eq(vs.n, 0, "nothing here is a verdict (got %zu, first %s)", vs.n,
                 vs.n ? vs.v[0].key : "");
    cr_assert_eq(vs.ignored, 8);
}

Test(verdict, bytes_without_a_final_newline_and_not_nul_terminated)
{
    const char buf[] = "test_status: PASSxxxx";
    orch_verdicts vs;
    orch_verdicts_init(&vs);
    orch_verdicts_parse(&vs, buf, strlen("test_status: PASS"));
    cr_assert_str_eq(orch_verdicts_get(&vs, "test_status"), "PASS");
}

Test(verdict, limits_on_key_value_and_count)
{
    char line[600];
    memset(line, 'k', 64);
    memcpy(line + 64, ": v\n", 5);
    orch_verdicts vs = parse(line);
    cr_assert_eq(vs.n, 0, "a 64-character key is too long");
    memset(line, 'k', 63);
    memcpy(line + 63, ": v\n", 5);
    vs = parse(line);
    cr_assert_eq(vs.n, 1, "63 characters fit");
    char big[400] = "test_status: ";
    memset(big + 13, 'x', 300);
    big[313] = '\0';
    vs = parse(big);
    cr_assert_eq(vs.n, 0, "a value over 255 bytes is not a verdict");

    orch_verdicts_init(&vs);
    char text[80];
    for (int i = 0; i < ORCH_VERDICTS_MAX + 5; i++) {
        snprintf(text, sizeof text, "key_%d: %d\n", i, i);
        orch_verdicts_parse(&vs, text, strlen(text));
    }
    cr_assert_eq(vs.n, ORCH_VERDICTS_MAX);
    cr_assert_eq(vs.dropped, 5);
}

Test(verdict, set_checks_like_the_parser)
{
    orch_verdicts vs;
    orch_verdicts_init(&vs);
    cr_assert(orch_verdicts_set(&vs, " Test_Status ", " PASS "));
    cr_assert_str_eq(orch_verdicts_get(&vs, "test_status"), "PASS");
    cr_assert_not(orch_verdicts_set(&vs, "   ", "x"));
    cr_assert_not(orch_verdicts_set(&vs, "k", "   "));
    cr_assert_not(orch_verdicts_set(&vs, "9k", "x"));
    cr_assert_not(orch_verdicts_set(&vs, "k-k", "x"));
    cr_assert_not(orch_verdicts_set(&vs, "k", "a\nb"));
    cr_assert_eq(vs.n, 1);
    cr_assert(orch_verdict_key_valid("coverage_pct"));
    cr_assert_not(orch_verdict_key_valid("Coverage_pct"));
    cr_assert_not(orch_verdict_key_valid(""));
}
