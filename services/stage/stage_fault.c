/*
 * stage_fault.c - the start-up rule of ORCH_STAGE_TEST_FAULT (every build)
 * and the fault points themselves (builds with ORCH_FAULT_INJECTION only).
 * See stage_fault.h for the contracts.
 */
#include <stdio.h>
#include <string.h>

#include "stage_fault.h"

#ifdef ORCH_FAULT_INJECTION
#include <unistd.h>

#include "orch/log.h"
#include "stage_svc.h"
#endif

static const char *const fault_names[] = {
    [STAGE_FAULT_CRASH_AFTER_EFFECT] = "crash-after-effect",
    [STAGE_FAULT_CRASH_BEFORE_RECORD] = "crash-before-record",
};

orch_err stage_fault_config_check(const char *value, bool compiled_in, bool test_runtime,
                                  stage_fault *out, char *why, size_t n)
{
    if (!value || !value[0] || strcmp(value, "none") == 0) {
        *out = STAGE_FAULT_NONE;
        return ORCH_OK;
    }
    stage_fault f = STAGE_FAULT_NONE;
    for (size_t i = 1; i < sizeof fault_names / sizeof fault_names[0]; i++)
        if (strcmp(value, fault_names[i]) == 0)
            f = (stage_fault)i;
    if (f == STAGE_FAULT_NONE) {
        snprintf(why, n,
                 "ORCH_STAGE_TEST_FAULT=%s is not one of none, crash-after-effect, "
                 "crash-before-record",
                 value);
        return ORCH_EINVAL;
    }
    if (!compiled_in) {
        snprintf(why, n,
                 "ORCH_STAGE_TEST_FAULT=%s: this stage-service was built without fault "
                 "injection (a test build configures -DORCH_FAULT_INJECTION=ON); unset it",
                 value);
        return ORCH_EINVAL;
    }
    if (!test_runtime) {
        snprintf(why, n, "ORCH_STAGE_TEST_FAULT=%s is accepted only with ORCH_RUNTIME=test", value);
        return ORCH_EINVAL;
    }
    *out = f;
    return ORCH_OK;
}

#ifdef ORCH_FAULT_INJECTION
void stage_fault_point(const struct stage_svc *ss, stage_fault at, const char *work_item)
{
    if (ss->fault != at)
        return;
    orch_error("ORCH_STAGE_TEST_FAULT=%s: exiting at the fault point (work item %s)",
               fault_names[at], work_item);
    _exit(86);
}
#endif
