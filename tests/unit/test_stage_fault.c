/*
 * test_stage_fault.c - the start-up rule of ORCH_STAGE_TEST_FAULT
 * (services/stage/stage_fault.c): which builds and runtimes accept a fault
 * point, without a database or a process. The crash tests themselves are
 * in tests/integration (test_stage_engine.c, test_stage_verdicts.c).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "stage_fault.h"

Test(stage_fault, build_without_fault_injection_refuses_an_armed_fault)
{
    const char *const armed[] = { "crash-after-effect", "crash-before-record" };
    for (size_t i = 0; i < 2; i++) {
        for (int test_runtime = 0; test_runtime < 2; test_runtime++) {
            stage_fault f = (stage_fault)42;
            char why[300] = "";
            orch_err err =
                stage_fault_config_check(armed[i], false, test_runtime, &f, why, sizeof why);
            cr_assert_eq(err, ORCH_EINVAL, "%s accepted by a build without the fault points",
                         armed[i]);
            cr_assert_eq((int)f, 42, "the output is written only on success");
            cr_assert(strstr(why, "built without fault injection"), "reason: %s", why);
            cr_assert(strstr(why, armed[i]), "the reason names the value: %s", why);
            cr_assert(strstr(why, "-DORCH_FAULT_INJECTION=ON"), "reason: %s", why);
        }
    }
}

Test(stage_fault, none_is_accepted_by_every_build_and_runtime)
{
    const char *const off[] = { NULL, "", "none" };
    for (size_t i = 0; i < 3; i++) {
        for (int built = 0; built < 2; built++) {
            for (int test_runtime = 0; test_runtime < 2; test_runtime++) {
                stage_fault f = STAGE_FAULT_CRASH_AFTER_EFFECT;
                char why[100] = "";
                cr_assert_eq(
                    stage_fault_config_check(off[i], built, test_runtime, &f, why, sizeof why),
                    ORCH_OK);
                cr_assert_eq(f, STAGE_FAULT_NONE);
            }
        }
    }
}

Test(stage_fault, armed_fault_is_refused_outside_the_test_runtime)
{
    stage_fault f = STAGE_FAULT_NONE;
    char why[300] = "";
    cr_assert_eq(stage_fault_config_check("crash-after-effect", true, false, &f, why, sizeof why),
                 ORCH_EINVAL);
    cr_assert_eq(f, STAGE_FAULT_NONE);
    cr_assert_str_eq(why, "ORCH_STAGE_TEST_FAULT=crash-after-effect is accepted only with "
                          "ORCH_RUNTIME=test");
}

Test(stage_fault, test_build_in_the_test_runtime_arms_each_fault_point)
{
    stage_fault f = STAGE_FAULT_NONE;
    char why[100] = "";
    cr_assert_eq(stage_fault_config_check("crash-after-effect", true, true, &f, why, sizeof why),
                 ORCH_OK);
    cr_assert_eq(f, STAGE_FAULT_CRASH_AFTER_EFFECT);
    cr_assert_eq(stage_fault_config_check("crash-before-record", true, true, &f, why, sizeof why),
                 ORCH_OK);
    cr_assert_eq(f, STAGE_FAULT_CRASH_BEFORE_RECORD);
}

Test(stage_fault, unknown_value_is_refused_with_the_accepted_ones)
{
    stage_fault f = STAGE_FAULT_NONE;
    char why[300] = "";
    cr_assert_eq(stage_fault_config_check("crash-now", true, true, &f, why, sizeof why),
                 ORCH_EINVAL);
    cr_assert(strstr(why, "crash-now") && strstr(why, "crash-before-record"), "reason: %s", why);
    char tiny[8];
    cr_assert_eq(stage_fault_config_check("crash-now", false, false, &f, tiny, sizeof tiny),
                 ORCH_EINVAL);
    cr_assert_eq(strlen(tiny), sizeof tiny - 1, "a short buffer is truncated, terminated");
}

/* The crash tests depend on it: a test build without the fault points
 * would make them fail on the refusal above, never pass vacuously. */
Test(stage_fault, test_build_compiles_the_fault_points)
{
    cr_assert(STAGE_FAULT_COMPILED_IN, "tests are built without -DORCH_FAULT_INJECTION=ON");
}
