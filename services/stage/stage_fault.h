/*
 * stage_fault.h - stage-service's fault injection: the points inside
 * AdvanceStage where a test makes the process exit, to prove that an
 * effect is never repeated after a crash (docs/adr/0005-fault-injection.md).
 *
 * The fault points exist only in a build configured with
 * -DORCH_FAULT_INJECTION=ON (the test builds). Without it,
 * stage_fault_point() is an empty inline function, the binary contains no
 * exit path, and stage_fault_config_check() refuses any fault that
 * ORCH_STAGE_TEST_FAULT names, so that such a binary never starts in a
 * state a test believes is armed.
 *
 * Threading: stage_fault_point() reads a field that is set once at start
 * and never written again. Errors: orch_err with a message. Ownership:
 * every pointer argument is borrowed for the call.
 */
#ifndef ORCH_STAGE_FAULT_H
#define ORCH_STAGE_FAULT_H

#include <stdbool.h>
#include <stddef.h>

#include "orch/err.h"

typedef enum stage_fault {
    STAGE_FAULT_NONE,
    STAGE_FAULT_CRASH_AFTER_EFFECT, /* exit after an effect's outcome is recorded */
    STAGE_FAULT_CRASH_BEFORE_RECORD /* exit after an effect ran, before recording it */
} stage_fault;

/* Whether this build has the fault points (ORCH_FAULT_INJECTION). */
#ifdef ORCH_FAULT_INJECTION
#define STAGE_FAULT_COMPILED_IN true
#else
#define STAGE_FAULT_COMPILED_IN false
#endif

/* Decides what ORCH_STAGE_TEST_FAULT=`value` means for a process whose
 * build has the fault points (`compiled_in`) and runs with
 * ORCH_RUNTIME=test (`test_runtime`). NULL, "" and "none" are always
 * accepted as STAGE_FAULT_NONE. Any other value is accepted only when both
 * hold and the value names a fault point. On ORCH_OK writes *out; on
 * ORCH_EINVAL writes the reason to `why` (a sentence naming the variable,
 * for the start-up log) and leaves *out alone. Pure: no I/O. */
__attribute__((warn_unused_result)) orch_err
stage_fault_config_check(const char *value, bool compiled_in, bool test_runtime, stage_fault *out,
                         char *why, size_t n);

struct stage_svc;

#ifdef ORCH_FAULT_INJECTION
/* Exits the process at once (status 86, no cleanup, nothing flushed but
 * the log line) when `ss` was armed with fault `at`; returns otherwise. */
void stage_fault_point(const struct stage_svc *ss, stage_fault at, const char *work_item);
#else
static inline void stage_fault_point(const struct stage_svc *ss, stage_fault at,
                                     const char *work_item)
{
    (void)ss;
    (void)at;
    (void)work_item;
}
#endif

#endif
