/*
 * test_stage_failure.c - the failure kinds of the stage engine
 * (services/stage/stage_logic.c): each is answered with the RPC code the
 * engine answered it with before it named kinds, a failure after something
 * durable is answered UNKNOWN by that code, and the inbox settles an event
 * by the kind exactly as it did by the code.
 */
#include <criterion/criterion.h>

#include "stage_logic.h"

/* Every library error, for the database failures. */
static const orch_err all_errs[] = {
    ORCH_OK,          ORCH_ENOMEM,    ORCH_EINVAL,     ORCH_ERANGE,      ORCH_ENOTFOUND,
    ORCH_EEXISTS,     ORCH_ETIMEDOUT, ORCH_ECLOSED,    ORCH_EIO,         ORCH_EPROTO,
    ORCH_EDB_UNAVAIL, ORCH_EDB_RETRY, ORCH_EDB_LOCKED, ORCH_EDB_UNKNOWN, ORCH_EDB,
};
#define NERRS (sizeof all_errs / sizeof *all_errs)

/* The code each kind was answered with, whatever its cause. */
static const orch_code code_was[STAGE_FAIL_COUNT] = {
    [STAGE_FAIL_NONE] = ORCH_CODE_OK,
    [STAGE_FAIL_BAD_REQUEST] = ORCH_CODE_INVALID_ARGUMENT,
    [STAGE_FAIL_NO_TASK] = ORCH_CODE_NOT_FOUND,
    [STAGE_FAIL_WRONG_STAGE] = ORCH_CODE_FAILED_PRECONDITION,
    [STAGE_FAIL_LOST_RACE] = ORCH_CODE_ABORTED,
    [STAGE_FAIL_EFFECT_BUSY] = ORCH_CODE_ABORTED,
    [STAGE_FAIL_EFFECT_LATE] = ORCH_CODE_ABORTED,
    [STAGE_FAIL_UNRESOLVED_EFFECT] = ORCH_CODE_FAILED_PRECONDITION,
    [STAGE_FAIL_LEASE_UNAVAILABLE] = ORCH_CODE_UNAVAILABLE,
    [STAGE_FAIL_DATABASE] = ORCH_CODE_OK, /* by its cause: below */
    [STAGE_FAIL_WRITE_UNKNOWN] = ORCH_CODE_UNKNOWN,
    [STAGE_FAIL_UNKNOWN_AFTER_DURABLE] = ORCH_CODE_UNKNOWN,
    [STAGE_FAIL_INTERNAL] = ORCH_CODE_INTERNAL,
};

Test(stage_failure, every_kind_keeps_its_code)
{
    for (int k = 0; k < STAGE_FAIL_COUNT; k++) {
        if (k == STAGE_FAIL_DATABASE)
            continue;
        for (size_t i = 0; i < NERRS; i++)
            cr_expect_eq(stage_failure_code((stage_failure_kind)k, all_errs[i]), code_was[k],
                         "kind %d (cause %s): %s, want %s", k, orch_strerror(all_errs[i]),
                         orch_code_name(stage_failure_code((stage_failure_kind)k, all_errs[i])),
                         orch_code_name(code_was[k]));
    }
    cr_expect_eq(stage_failure_code(STAGE_FAIL_COUNT, ORCH_OK), ORCH_CODE_INTERNAL);
    cr_expect_eq(stage_failure_code((stage_failure_kind)-1, ORCH_OK), ORCH_CODE_INTERNAL);
}

Test(stage_failure, a_database_failure_has_the_code_of_its_error)
{
    /* The engine's rule before kinds: the error's code, but a lost commit
     * answer of a read or an intent UNAVAILABLE (forgotten, unless
     * something durable happened: then UNKNOWN_AFTER_DURABLE). */
    for (size_t i = 0; i < NERRS; i++) {
        orch_err cause = all_errs[i];
        orch_code want = cause == ORCH_OK            ? ORCH_CODE_INTERNAL /* never OK */
                         : cause == ORCH_EDB_UNKNOWN ? ORCH_CODE_UNAVAILABLE
                                                     : orch_err_to_code(cause);
        orch_code got = stage_failure_code(STAGE_FAIL_DATABASE, cause);
        cr_expect_eq(got, want, "%s: %s, want %s", orch_strerror(cause), orch_code_name(got),
                     orch_code_name(want));
    }
    cr_expect_eq(stage_failure_code(STAGE_FAIL_DATABASE, ORCH_EDB_LOCKED), ORCH_CODE_ABORTED);
    cr_expect_eq(stage_failure_code(STAGE_FAIL_DATABASE, ORCH_EDB_UNAVAIL), ORCH_CODE_UNAVAILABLE);
    cr_expect_eq(stage_failure_code(STAGE_FAIL_DATABASE, ORCH_ENOTFOUND), ORCH_CODE_NOT_FOUND);
}

Test(stage_failure, only_a_forgotten_code_after_something_durable_is_unknown)
{
    cr_assert(stage_logic_failure_unknown(true, STAGE_FAIL_LEASE_UNAVAILABLE, ORCH_EIO));
    cr_assert(stage_logic_failure_unknown(true, STAGE_FAIL_DATABASE, ORCH_EDB_UNAVAIL));
    cr_assert(stage_logic_failure_unknown(true, STAGE_FAIL_DATABASE, ORCH_EDB_UNKNOWN));
    cr_assert(stage_logic_failure_unknown(true, STAGE_FAIL_DATABASE, ORCH_ETIMEDOUT));
    cr_assert(stage_logic_failure_unknown(true, STAGE_FAIL_DATABASE, ORCH_ENOMEM));
    cr_assert_not(stage_logic_failure_unknown(false, STAGE_FAIL_DATABASE, ORCH_EDB_UNAVAIL));
    cr_assert_not(stage_logic_failure_unknown(true, STAGE_FAIL_DATABASE, ORCH_EDB_RETRY),
                  "ABORTED is remembered anyway");
    cr_assert_not(stage_logic_failure_unknown(true, STAGE_FAIL_LOST_RACE, ORCH_EINVAL));
    cr_assert_not(stage_logic_failure_unknown(true, STAGE_FAIL_UNRESOLVED_EFFECT, ORCH_EINVAL));
    cr_assert_not(stage_logic_failure_unknown(true, STAGE_FAIL_WRITE_UNKNOWN, ORCH_EDB_UNKNOWN),
                  "already UNKNOWN");
    cr_assert_not(stage_logic_failure_unknown(true, STAGE_FAIL_NONE, ORCH_OK));
}

Test(stage_failure, the_inbox_settles_by_kind_as_it_did_by_code)
{
    for (int k = 0; k < STAGE_FAIL_COUNT; k++)
        for (size_t i = 0; i < NERRS; i++)
            for (int r = 0; r < STAGE_RESULT_COUNT; r++) {
                stage_failure_kind kind = (stage_failure_kind)k;
                stage_inbox_verdict got =
                    stage_logic_inbox_settle(kind, all_errs[i], (stage_result)r);
                stage_inbox_verdict want = stage_logic_inbox_verdict(
                    stage_failure_code(kind, all_errs[i]), (stage_result)r);
                cr_expect(got.done == want.done && got.look_again == want.look_again,
                          "kind %d cause %s result %d: done %d/%d, look again %d/%d", k,
                          orch_strerror(all_errs[i]), r, got.done, want.done, got.look_again,
                          want.look_again);
                cr_expect_str_eq(got.outcome, want.outcome, "kind %d cause %s result %d", k,
                                 orch_strerror(all_errs[i]), r);
            }
}

Test(stage_failure, inbox_outcomes_of_the_kinds)
{
    stage_inbox_verdict v =
        stage_logic_inbox_settle(STAGE_FAIL_UNRESOLVED_EFFECT, ORCH_EINVAL, STAGE_RESULT_ERROR);
    cr_assert(!v.done && v.look_again);
    cr_assert_str_eq(v.outcome, "moved");
    v = stage_logic_inbox_settle(STAGE_FAIL_EFFECT_BUSY, ORCH_EINVAL, STAGE_RESULT_ABORTED);
    cr_assert(!v.done && v.look_again);
    cr_assert_str_eq(v.outcome, "aborted");
    v = stage_logic_inbox_settle(STAGE_FAIL_DATABASE, ORCH_EDB_LOCKED, STAGE_RESULT_ERROR);
    cr_assert(!v.done && v.look_again, "a lost lock race looks again");
    cr_assert_str_eq(v.outcome, "aborted");
    v = stage_logic_inbox_settle(STAGE_FAIL_NO_TASK, ORCH_ENOTFOUND, STAGE_RESULT_ERROR);
    cr_assert(v.done);
    cr_assert_str_eq(v.outcome, "rejected");
    v = stage_logic_inbox_settle(STAGE_FAIL_UNKNOWN_AFTER_DURABLE, ORCH_EDB_UNAVAIL,
                                 STAGE_RESULT_ERROR);
    cr_assert(!v.done && !v.look_again);
    cr_assert_str_eq(v.outcome, "error");
    v = stage_logic_inbox_settle(STAGE_FAIL_NONE, ORCH_OK, STAGE_RESULT_EFFECT_UNKNOWN);
    cr_assert(!v.done && !v.look_again);
    cr_assert_str_eq(v.outcome, "effect_unknown");
}
