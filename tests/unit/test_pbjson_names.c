/*
 * test_pbjson_names.c - the enum value names orchctl prints
 * (tools/orchctl/pbjson.c): every value of every enum of proto/orch/v1,
 * byte for byte the names printed before the values got their type's prefix
 * (GuardOperation, which no reply carries, prints its values unprefixed).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/envelope.pb-c.h"
#include "orch/v1/guard.pb-c.h"
#include "orch/v1/health.pb-c.h"
#include "orch/v1/launcher.pb-c.h"
#include "orch/v1/lease.pb-c.h"
#include "orch/v1/stage.pb-c.h"
#include "pbjson.h"

typedef struct {
    const ProtobufCEnumDescriptor *d;
    int value;
    const char *printed;
} name_case;

static const name_case cases[] = {
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_OK, "OK" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_CANCELLED, "CANCELLED" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_UNKNOWN, "UNKNOWN" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_INVALID_ARGUMENT, "INVALID_ARGUMENT" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_NOT_FOUND, "NOT_FOUND" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_ALREADY_EXISTS, "ALREADY_EXISTS" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_PERMISSION_DENIED, "PERMISSION_DENIED" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_FAILED_PRECONDITION,
      "FAILED_PRECONDITION" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_ABORTED, "ABORTED" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_OUT_OF_RANGE, "OUT_OF_RANGE" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_UNIMPLEMENTED, "UNIMPLEMENTED" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_INTERNAL, "INTERNAL" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_UNAVAILABLE, "UNAVAILABLE" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_DATA_LOSS, "DATA_LOSS" },
    { &orch__v1__code__descriptor, ORCH__V1__CODE__CODE_UNAUTHENTICATED, "UNAUTHENTICATED" },
    { &orch__v1__guard_operation__descriptor,
      ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_UNSPECIFIED, "GUARD_OPERATION_UNSPECIFIED" },
    { &orch__v1__guard_operation__descriptor,
      ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_UPDATE_ISSUE_STATE, "UPDATE_ISSUE_STATE" },
    { &orch__v1__guard_operation__descriptor,
      ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_ADD_COMMENT, "ADD_COMMENT" },
    { &orch__v1__guard_operation__descriptor,
      ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_SET_ISSUE_STATE_DIRECT, "SET_ISSUE_STATE_DIRECT" },
    { &orch__v1__guard_operation__descriptor, ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_NOTIFY,
      "NOTIFY" },
    { &orch__v1__health_check_response__serving_status__descriptor,
      ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_UNSPECIFIED, "UNKNOWN" },
    { &orch__v1__health_check_response__serving_status__descriptor,
      ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_SERVING, "SERVING" },
    { &orch__v1__health_check_response__serving_status__descriptor,
      ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_NOT_SERVING, "NOT_SERVING" },
    { &orch__v1__job_status__descriptor, ORCH__V1__JOB_STATUS__JOB_STATUS_UNSPECIFIED,
      "JOB_STATUS_UNSPECIFIED" },
    { &orch__v1__job_status__descriptor, ORCH__V1__JOB_STATUS__JOB_STATUS_QUEUED, "QUEUED" },
    { &orch__v1__job_status__descriptor, ORCH__V1__JOB_STATUS__JOB_STATUS_RUNNING, "RUNNING" },
    { &orch__v1__job_status__descriptor, ORCH__V1__JOB_STATUS__JOB_STATUS_SUCCEEDED, "SUCCEEDED" },
    { &orch__v1__job_status__descriptor, ORCH__V1__JOB_STATUS__JOB_STATUS_FAILED, "FAILED" },
    { &orch__v1__job_status__descriptor, ORCH__V1__JOB_STATUS__JOB_STATUS_TIMED_OUT, "TIMED_OUT" },
    { &orch__v1__job_status__descriptor, ORCH__V1__JOB_STATUS__JOB_STATUS_CANCELLED, "CANCELLED" },
    { &orch__v1__acquire_reply__outcome__descriptor,
      ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_UNSPECIFIED, "OUTCOME_UNSPECIFIED" },
    { &orch__v1__acquire_reply__outcome__descriptor,
      ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_GRANTED, "GRANTED" },
    { &orch__v1__acquire_reply__outcome__descriptor, ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_HELD,
      "HELD" },
    { &orch__v1__liveness__descriptor, ORCH__V1__LIVENESS__LIVENESS_UNSPECIFIED,
      "LIVENESS_UNSPECIFIED" },
    { &orch__v1__liveness__descriptor, ORCH__V1__LIVENESS__LIVENESS_ALIVE, "ALIVE" },
    { &orch__v1__liveness__descriptor, ORCH__V1__LIVENESS__LIVENESS_DEAD, "DEAD" },
    { &orch__v1__liveness__descriptor, ORCH__V1__LIVENESS__LIVENESS_UNKNOWN, "UNKNOWN" },
    { &orch__v1__advance_stage_reply__outcome__descriptor,
      ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_UNSPECIFIED, "OUTCOME_UNSPECIFIED" },
    { &orch__v1__advance_stage_reply__outcome__descriptor,
      ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ADVANCED, "ADVANCED" },
    { &orch__v1__advance_stage_reply__outcome__descriptor,
      ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_DEFERRED, "DEFERRED" },
    { &orch__v1__advance_stage_reply__outcome__descriptor,
      ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_GATE_FAILED, "GATE_FAILED" },
    { &orch__v1__advance_stage_reply__outcome__descriptor,
      ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ROLLED_BACK, "ROLLED_BACK" },
    { &orch__v1__advance_stage_reply__outcome__descriptor,
      ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_EFFECT_FAILED, "EFFECT_FAILED" },
    { &orch__v1__advance_stage_reply__outcome__descriptor,
      ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_EFFECT_UNKNOWN, "EFFECT_UNKNOWN" },
};

Test(pbjson_names, every_value_prints_its_former_name)
{
    size_t per_enum = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = pbjson_enum_name(cases[i].d, cases[i].value);
        cr_assert(got, "%s %d: no name", cases[i].d->name, cases[i].value);
        cr_expect_str_eq(got, cases[i].printed, "%s %d", cases[i].d->name, cases[i].value);
    }
    /* The table covers every value of every enum it names. */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (i == 0 || cases[i].d != cases[i - 1].d)
            per_enum += cases[i].d->n_values;
    cr_assert_eq(per_enum, sizeof cases / sizeof cases[0]);
}

Test(pbjson_names, unknown_value_has_no_name)
{
    cr_assert_null(pbjson_enum_name(&orch__v1__code__descriptor, 99));
}

Test(pbjson_names, json_carries_the_printed_names)
{
    Orch__V1__AcquireReply r = ORCH__V1__ACQUIRE_REPLY__INIT;
    r.outcome = ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_HELD;
    r.epoch = 7;
    r.holder_liveness = ORCH__V1__LIVENESS__LIVENESS_ALIVE;
    json_t *o = pbjson_from_message(&r.base);
    cr_assert(o);
    cr_expect_str_eq(json_string_value(json_object_get(o, "outcome")), "HELD");
    cr_expect_str_eq(json_string_value(json_object_get(o, "holder_liveness")), "ALIVE");
    json_decref(o);

    Orch__V1__Status st = ORCH__V1__STATUS__INIT;
    st.code = ORCH__V1__CODE__CODE_NOT_FOUND;
    st.message = (char *)"no such lease";
    o = pbjson_from_message(&st.base);
    char *text = json_dumps(o, JSON_COMPACT);
    cr_expect_str_eq(text, "{\"code\":\"NOT_FOUND\",\"message\":\"no such lease\"}");
    free(text);
    json_decref(o);
}
