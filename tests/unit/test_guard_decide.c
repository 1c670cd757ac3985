/*
 * test_guard_decide.c - the write guard's decision (orch/guard.h), every
 * combination of runtime, operation, target, opt-in, allowlist and
 * production target, against the rules of DESIGN.md invariant 9 written
 * out independently below; plus the guard-service's pure input checks.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "guard_logic.h"
#include "orch/guard.h"

#define PROD    "prod-0001"
#define SANDBOX "sandbox-0001"

static const int runtimes[] = { ORCH_RUNTIME_LIVE, ORCH_RUNTIME_STAGING, ORCH_RUNTIME_TEST, 7 };
static const int ops[] = { ORCH_GUARD_UPDATE_ISSUE_STATE, ORCH_GUARD_ADD_COMMENT,
                           ORCH_GUARD_SET_ISSUE_STATE_DIRECT, ORCH_GUARD_NOTIFY, 9 };
static const char *const targets[] = { NULL, "", "two words", "a/b", PROD, SANDBOX, "other-7" };
static const char *const allowlists[] = {
    NULL, "", SANDBOX, " " SANDBOX " ,x", PROD, SANDBOX "," PROD, ","
};
static const char *const productions[] = { NULL, "", PROD };

static bool well_formed(const char *t)
{
    return t && t[0] && !strchr(t, ' ') && !strchr(t, '/');
}

static bool listed(const char *list, const char *t)
{
    if (!list || !t)
        return false;
    return (strcmp(t, SANDBOX) == 0 && strstr(list, SANDBOX)) ||
           (strcmp(t, PROD) == 0 && strstr(list, PROD));
}

/* The rules, in words: unknown runtime/op, or no valid target: block.
 * live, staging: allow. test: production blocks whatever else holds; then
 * opt-in required; then the allowlist. */
static orch_guard_reason expected(int rt, int op, const char *t, bool opt_in, const char *list,
                                  const char *prod, bool *allow)
{
    *allow = false;
    if (op > ORCH_GUARD_NOTIFY)
        return ORCH_GUARD_BLOCK_BAD_OP;
    if (rt > ORCH_RUNTIME_TEST)
        return ORCH_GUARD_BLOCK_BAD_RUNTIME;
    if (!well_formed(t))
        return ORCH_GUARD_BLOCK_NO_TARGET;
    if (rt != ORCH_RUNTIME_TEST) {
        *allow = true;
        return rt == ORCH_RUNTIME_LIVE ? ORCH_GUARD_ALLOW_LIVE : ORCH_GUARD_ALLOW_STAGING;
    }
    if (prod && prod[0] && strcmp(t, prod) == 0)
        return ORCH_GUARD_BLOCK_PRODUCTION;
    if (!opt_in)
        return ORCH_GUARD_BLOCK_NOT_OPTED_IN;
    if (!listed(list, t))
        return ORCH_GUARD_BLOCK_NOT_IN_SANDBOX;
    *allow = true;
    return ORCH_GUARD_ALLOW_SANDBOX;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

Test(guard_decide, every_combination_follows_the_rules)
{
    size_t cases = 0;
    for (size_t a = 0; a < N(runtimes); a++)
        for (size_t b = 0; b < N(ops); b++)
            for (size_t c = 0; c < N(targets); c++)
                for (int d = 0; d < 2; d++)
                    for (size_t e = 0; e < N(allowlists); e++)
                        for (size_t f = 0; f < N(productions); f++) {
                            orch_guard_input in = {
                                .runtime = (orch_runtime)runtimes[a],
                                .op = (orch_guard_op)ops[b],
                                .target = targets[c],
                                .opt_in = d,
                                .allowlist = allowlists[e],
                                .production = productions[f],
                            };
                            bool allow;
                            orch_guard_reason want =
                                expected(runtimes[a], ops[b], targets[c], d, allowlists[e],
                                         productions[f], &allow);
                            orch_guard_verdict v = orch_guard_decide(&in);
                            cr_assert_eq(v.allow, allow,
                                         "rt=%d op=%d target=%s opt_in=%d list=%s prod=%s",
                                         runtimes[a], ops[b], targets[c] ? targets[c] : "(null)", d,
                                         allowlists[e] ? allowlists[e] : "(null)",
                                         productions[f] ? productions[f] : "(null)");
                            cr_assert_eq(v.reason, want, "reason %d, want %d (%s)", v.reason, want,
                                         orch_guard_reason_text(v.reason));
                            cases++;
                        }
    cr_assert_eq(cases, N(runtimes) * N(ops) * N(targets) * 2 * N(allowlists) * N(productions));
}

Test(guard_decide, production_is_blocked_in_test_even_with_opt_in_and_listed)
{
    orch_guard_input in = {
        ORCH_RUNTIME_TEST, ORCH_GUARD_ADD_COMMENT, PROD, true, SANDBOX "," PROD, PROD
    };
    orch_guard_verdict v = orch_guard_decide(&in);
    cr_assert_not(v.allow);
    cr_assert_eq(v.reason, ORCH_GUARD_BLOCK_PRODUCTION);
}

Test(guard_decide, test_runtime_denies_by_default)
{
    orch_guard_input in = { .runtime = ORCH_RUNTIME_TEST,
                            .op = ORCH_GUARD_NOTIFY,
                            .target = SANDBOX };
    cr_assert_not(orch_guard_decide(&in).allow);
}

Test(guard_decide, runtime_names_round_trip)
{
    orch_runtime rt;
    for (int i = 0; i < ORCH_RUNTIME_COUNT; i++) {
        cr_assert_eq(orch_runtime_parse(orch_runtime_name((orch_runtime)i), &rt), ORCH_OK);
        cr_assert_eq((int)rt, i);
    }
    cr_assert_eq(orch_runtime_parse("prod", &rt), ORCH_EINVAL);
    cr_assert_eq(orch_runtime_parse("", &rt), ORCH_EINVAL);
    cr_assert_eq(orch_runtime_parse(NULL, &rt), ORCH_EINVAL);
    cr_assert_eq(orch_runtime_parse("Test", &rt), ORCH_EINVAL);
}

Test(guard_logic, utf8_checks)
{
    cr_assert(guard_utf8_valid("h\xc3\xa9llo", 6));
    cr_assert_not(guard_utf8_valid("\xff", 1));
    cr_assert_not(guard_utf8_valid("\xc0\xaf", 2));     /* overlong */
    cr_assert_not(guard_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    cr_assert_not(guard_utf8_valid("\xe2\x82", 2));     /* truncated */
    cr_assert_eq(guard_utf8_chars("h\xc3\xa9", 3), 2);
}

Test(guard_logic, text_limits)
{
    char why[200];
    cr_assert_not(guard_valid_text("text", "", 10, 0, why, sizeof why));
    cr_assert_not(guard_valid_text("text", "   ", 10, 0, why, sizeof why));
    cr_assert_not(guard_valid_text("text", "0123456789a", 10, 0, why, sizeof why));
    cr_assert(strstr(why, "over the limit"));
    cr_assert(guard_valid_text("text", "\xc3\xa9\xc3\xa9", 10, 2, why, sizeof why));
    cr_assert_not(guard_valid_text("text", "\xc3\xa9\xc3\xa9\xc3\xa9", 10, 2, why, sizeof why));
}

Test(guard_logic, comment_html_escapes)
{
    char *h = guard_comment_html("a<b>&\"c\"\nd");
    cr_assert_str_eq(h, "<p>a&lt;b&gt;&amp;&quot;c&quot;<br>d</p>");
    free(h);
}

Test(guard_logic, telegram_answers)
{
    guard_tg_answer a;
    guard_telegram_parse("{\"ok\":false,\"error_code\":429,\"parameters\":{\"retry_after\":7}}",
                         &a);
    cr_assert_not(a.ok);
    cr_assert_eq(a.retry_after_s, 7);
    guard_telegram_parse("{\"ok\":true,\"result\":{\"message_id\":42}}", &a);
    cr_assert(a.ok);
    cr_assert_eq(a.message_id, 42);
    guard_telegram_parse("not json", &a);
    cr_assert_not(a.ok);
}

Test(guard_logic, outcomes_map_to_clear_statuses)
{
    cr_assert_eq(guard_classify(ORCH_OK, 201), GUARD_UP_OK);
    cr_assert_eq(guard_classify(ORCH_OK, 404), GUARD_UP_CLIENT_ERROR);
    cr_assert_eq(guard_classify(ORCH_OK, 503), GUARD_UP_SERVER_ERROR);
    cr_assert_eq(guard_classify(ORCH_OK, 302), GUARD_UP_SERVER_ERROR);
    cr_assert_eq(guard_classify(ORCH_OK, 429), GUARD_UP_RATE_LIMITED);
    cr_assert_eq(guard_classify(ORCH_ETIMEDOUT, 0), GUARD_UP_TIMEOUT);
    cr_assert_eq(guard_classify(ORCH_EIO, 0), GUARD_UP_TRANSPORT);
    cr_assert_eq(guard_outcome_code(GUARD_UP_OK), ORCH_CODE_OK);
    for (int o = 1; o < GUARD_UP_NKINDS; o++)
        cr_assert_neq(guard_outcome_code((guard_outcome)o), ORCH_CODE_OK);
}

Test(guard_logic, scrub_removes_secrets)
{
    char s[128] = "url /bot123:SECRETTOKEN/sendMessage and 123:SECRETTOKEN again";
    guard_scrub(s, "123:SECRETTOKEN");
    cr_assert_null(strstr(s, "SECRET"));
    cr_assert_str_eq(s, "url /bot***/sendMessage and *** again");
}

Test(guard_logic, lists_and_targets)
{
    cr_assert(orch_guard_list_has("a, b ,c", "b"));
    cr_assert_not(orch_guard_list_has("ab,c", "a"));
    cr_assert_not(orch_guard_list_has(",,", ""));
    cr_assert(orch_guard_target_valid("-1001234567890"));
    cr_assert_not(orch_guard_target_valid("a b"));
}
