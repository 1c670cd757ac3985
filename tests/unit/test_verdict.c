/*
 * test_verdict.c - the machine-verdict line parser (shared/src/verdict.c).
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

Test(verdict, reads_key_value_lines)
{
    orch_verdicts vs = parse("review_verdict: APPROVE\ncoverage_pct: 83.4\n");
    cr_assert_eq(vs.n, 2);
    cr_expect_str_eq(orch_verdicts_get(&vs, "review_verdict"), "APPROVE");
    cr_expect_str_eq(orch_verdicts_get(&vs, "coverage_pct"), "83.4");
}

Test(verdict, keys_are_case_insensitive_and_stored_lower_case)
{
    orch_verdicts vs = parse("Test_Status: PASS\n");
    cr_assert_eq(vs.n, 1);
    cr_expect_str_eq(vs.v[0].key, "test_status");
    cr_expect_str_eq(orch_verdicts_get(&vs, "TEST_STATUS"), "PASS");
}

Test(verdict, whitespace_is_trimmed)
{
    orch_verdicts vs = parse("  \t staging_status  :   SUCCESS \r\n");
    cr_expect_str_eq(orch_verdicts_get(&vs, "staging_status"), "SUCCESS");
}

Test(verdict, last_duplicate_wins)
{
    orch_verdicts vs = parse("test_status: FAIL\nother: 1\nTEST_STATUS: PASS\n");
    cr_assert_eq(vs.n, 2);
    cr_expect_str_eq(orch_verdicts_get(&vs, "test_status"), "PASS");
}

Test(verdict, garbage_lines_are_ignored)
{
    orch_verdicts vs = parse("Here is my analysis of the change.\n"
                             "{\"type\": \"result\"}\n"
                             "a key with spaces: no\n"
                             ": no key\n"
                             "empty_value:   \n"
                             "9starts_with_digit: no\n"
                             "\n"
                             "review_verdict: REQUEST_CHANGES");
    cr_assert_eq(vs.n, 1, "got %zu verdicts", vs.n);
    cr_expect_str_eq(orch_verdicts_get(&vs, "review_verdict"), "REQUEST_CHANGES");
}

Test(verdict, value_keeps_inner_colons)
{
    orch_verdicts vs = parse("image: registry.local:5000/orch:1.2\n");
    cr_expect_str_eq(orch_verdicts_get(&vs, "image"), "registry.local:5000/orch:1.2");
}

Test(verdict, over_long_key_or_value_is_ignored)
{
    char line[600];
    memset(line, 'k', 100);
    memcpy(line + 100, ": v\n", 5);
    orch_verdicts vs = parse(line);
    cr_expect_eq(vs.n, 0);
    memcpy(line, "key: ", 5);
    memset(line + 5, 'v', 400);
    line[405] = '\0';
    vs = parse(line);
    cr_expect_eq(vs.n, 0);
}

Test(verdict, distinct_keys_are_bounded)
{
    char text[8192] = "";
    size_t off = 0;
    for (int i = 0; i < ORCH_VERDICT_MAX + 5; i++)
        off += (size_t)snprintf(text + off, sizeof text - off, "k%d: %d\n", i, i);
    orch_verdicts vs = parse(text);
    cr_expect_eq(vs.n, ORCH_VERDICT_MAX);
    cr_expect_eq(vs.dropped, 5);
}

Test(verdict, absent_key_is_null)
{
    orch_verdicts vs = parse("test_status: PASS\n");
    cr_expect_null(orch_verdicts_get(&vs, "review_verdict"));
}
