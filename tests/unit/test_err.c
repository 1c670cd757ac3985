/*
 * test_err.c - status code names, their parsing, the error-to-status mapping
 * and error strings (shared/src/err.c). Pure functions: no setup needed.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "orch/err.h"
#include "orch/v1/envelope.pb-c.h"

/* The names, in wire order (proto/orch/v1/envelope.proto, enum Code, whose
 * values are these with the prefix CODE_). */
static const char *const wire_names[ORCH_CODE_COUNT] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

/* Every orch_err, first to last. */
static const orch_err all_errs[] = {
    ORCH_OK,          ORCH_ENOMEM,    ORCH_EINVAL,     ORCH_ERANGE,      ORCH_ENOTFOUND,
    ORCH_EEXISTS,     ORCH_ETIMEDOUT, ORCH_ECLOSED,    ORCH_EIO,         ORCH_EPROTO,
    ORCH_EDB_UNAVAIL, ORCH_EDB_RETRY, ORCH_EDB_LOCKED, ORCH_EDB_UNKNOWN, ORCH_EDB,
};
#define NERRS (sizeof all_errs / sizeof all_errs[0])

Test(err, code_count_matches_the_wire_enum)
{
    cr_assert_eq(ORCH_CODE_COUNT, 17);
    cr_assert_eq(ORCH_CODE_UNAUTHENTICATED, 16);
    cr_assert_eq(ORCH_CODE_OK, 0);
}

Test(err, every_code_has_its_wire_name)
{
    for (int i = 0; i < ORCH_CODE_COUNT; i++)
        cr_expect_str_eq(orch_code_name((orch_code)i), wire_names[i], "code %d", i);
}

/* orch_code mirrors the proto enum by number: CODE_<name> has number i. */
Test(err, every_code_is_the_proto_value_of_its_number)
{
    cr_assert_eq(orch__v1__code__descriptor.n_values, (unsigned)ORCH_CODE_COUNT);
    for (int i = 0; i < ORCH_CODE_COUNT; i++) {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&orch__v1__code__descriptor, i);
        cr_assert(v, "code %d is not in the proto enum", i);
        char want[64];
        snprintf(want, sizeof want, "CODE_%s", orch_code_name((orch_code)i));
        cr_expect_str_eq(v->name, want, "code %d", i);
    }
}

Test(err, every_name_parses_back_to_its_code)
{
    int parsed = 0;
    for (int i = 0; i < ORCH_CODE_COUNT; i++) {
        orch_code c = (orch_code)-1;
        cr_assert_eq(orch_code_parse(orch_code_name((orch_code)i), &c), ORCH_OK, "code %d", i);
        cr_expect_eq(c, (orch_code)i, "name %s parsed as %d", wire_names[i], (int)c);
        parsed++;
    }
    cr_assert_eq(parsed, 17);
}

Test(err, parse_is_case_insensitive)
{
    for (int i = 0; i < ORCH_CODE_COUNT; i++) {
        char lower[64];
        size_t n = strlen(wire_names[i]);
        cr_assert_lt(n, sizeof lower);
        for (size_t k = 0; k <= n; k++)
            lower[k] = (char)tolower((unsigned char)wire_names[i][k]);
        orch_code c = (orch_code)-1;
        cr_assert_eq(orch_code_parse(lower, &c), ORCH_OK, "%s", lower);
        cr_expect_eq(c, (orch_code)i);
    }
    orch_code c = ORCH_CODE_OK;
    cr_assert_eq(orch_code_parse("Deadline_Exceeded", &c), ORCH_OK);
    cr_assert_eq(c, ORCH_CODE_DEADLINE_EXCEEDED);
}

Test(err, unknown_names_are_rejected_and_leave_the_output_alone)
{
    static const char *const bad[] = {
        "", "BOGUS", "OK ", " OK", "CODE_3", "3", "DEADLINE", "UNAUTHENTICATED_",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        orch_code c = ORCH_CODE_DATA_LOSS;
        cr_expect_eq(orch_code_parse(bad[i], &c), ORCH_EINVAL, "'%s'", bad[i]);
        cr_expect_eq(c, ORCH_CODE_DATA_LOSS, "output written for '%s'", bad[i]);
    }
    orch_code c = ORCH_CODE_DATA_LOSS;
    cr_expect_eq(orch_code_parse(NULL, &c), ORCH_EINVAL);
    cr_expect_eq(c, ORCH_CODE_DATA_LOSS);
}

Test(err, codes_outside_the_table_are_named_unknown)
{
    cr_expect_str_eq(orch_code_name((orch_code)17), "UNKNOWN");
    cr_expect_str_eq(orch_code_name((orch_code)100), "UNKNOWN");
    cr_expect_str_eq(orch_code_name((orch_code)-1), "UNKNOWN");
    cr_expect_str_eq(orch_code_name((orch_code)0x7fffffff), "UNKNOWN");
}

Test(err, each_error_maps_to_its_status)
{
    static const struct {
        orch_err err;
        orch_code code;
    } map[] = {
        { ORCH_OK, ORCH_CODE_OK },
        { ORCH_ENOMEM, ORCH_CODE_RESOURCE_EXHAUSTED },
        { ORCH_EINVAL, ORCH_CODE_INVALID_ARGUMENT },
        { ORCH_ERANGE, ORCH_CODE_OUT_OF_RANGE },
        { ORCH_ENOTFOUND, ORCH_CODE_NOT_FOUND },
        { ORCH_EEXISTS, ORCH_CODE_ALREADY_EXISTS },
        { ORCH_ETIMEDOUT, ORCH_CODE_DEADLINE_EXCEEDED },
        { ORCH_ECLOSED, ORCH_CODE_UNAVAILABLE },
        { ORCH_EIO, ORCH_CODE_INTERNAL },
        { ORCH_EPROTO, ORCH_CODE_INTERNAL },
        { ORCH_EDB_UNAVAIL, ORCH_CODE_UNAVAILABLE },
        { ORCH_EDB_RETRY, ORCH_CODE_ABORTED },
        { ORCH_EDB_LOCKED, ORCH_CODE_ABORTED },
        { ORCH_EDB_UNKNOWN, ORCH_CODE_UNKNOWN },
        { ORCH_EDB, ORCH_CODE_INTERNAL },
    };
    cr_assert_eq(sizeof map / sizeof map[0], NERRS, "every orch_err needs a row");
    for (size_t i = 0; i < NERRS; i++)
        cr_expect_eq(orch_err_to_code(map[i].err), map[i].code, "%s -> %s, want %s",
                     orch_strerror(map[i].err), orch_code_name(orch_err_to_code(map[i].err)),
                     orch_code_name(map[i].code));
}

Test(err, unknown_error_values_map_to_internal)
{
    cr_expect_eq(orch_err_to_code((orch_err)999), ORCH_CODE_INTERNAL);
    cr_expect_eq(orch_err_to_code((orch_err)-1), ORCH_CODE_INTERNAL);
}

Test(err, strerror_is_never_null_nor_empty)
{
    for (size_t i = 0; i < NERRS; i++) {
        const char *s = orch_strerror(all_errs[i]);
        cr_assert_not_null(s, "err %d", (int)all_errs[i]);
        cr_expect_gt(strlen(s), 0, "err %d", (int)all_errs[i]);
    }
    static const int outside[] = { -1, 15, 16, 1000, 0x7fffffff };
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        const char *s = orch_strerror((orch_err)outside[i]);
        cr_assert_not_null(s, "err %d", outside[i]);
        cr_expect_gt(strlen(s), 0, "err %d", outside[i]);
    }
}

Test(err, strerror_tells_errors_apart)
{
    for (size_t i = 0; i < NERRS; i++)
        for (size_t j = i + 1; j < NERRS; j++)
            cr_expect_str_neq(orch_strerror(all_errs[i]), orch_strerror(all_errs[j]),
                              "errs %d and %d share a message", (int)all_errs[i], (int)all_errs[j]);
}
