/*
 * err.h - error values of the common library and their mapping to RPC status.
 *
 * Every fallible function of the library returns an orch_err; ORCH_OK is 0.
 * Out-parameters are written only when ORCH_OK is returned. orch_strerror()
 * returns a static string and never fails. Thread-safe.
 */
#ifndef ORCH_ERR_H
#define ORCH_ERR_H

#define ORCH_NODISCARD __attribute__((warn_unused_result))

typedef enum orch_err {
    ORCH_OK = 0,
    ORCH_ENOMEM,      /* out of memory */
    ORCH_EINVAL,      /* bad argument or malformed input */
    ORCH_ERANGE,      /* value outside its bounds */
    ORCH_ENOTFOUND,   /* no such thing */
    ORCH_EEXISTS,     /* unique violation (SQLSTATE 23505) */
    ORCH_ETIMEDOUT,   /* deadline passed */
    ORCH_ECLOSED,     /* the object is shutting down */
    ORCH_EIO,         /* system call or socket failure */
    ORCH_EPROTO,      /* the peer spoke something we do not understand */
    ORCH_EDB_UNAVAIL, /* database unreachable (08xxx, 57P01, connect failed) */
    ORCH_EDB_RETRY,   /* serialization failure or deadlock (40001, 40P01) */
    ORCH_EDB_LOCKED,  /* lost a NOWAIT race (55P03) */
    ORCH_EDB_UNKNOWN, /* connection lost during COMMIT: outcome unknown */
    ORCH_EDB,         /* any other database error */
} orch_err;

/* gRPC canonical status codes, numbered as on the wire (proto Code). */
typedef enum orch_code {
    ORCH_CODE_OK = 0,
    ORCH_CODE_CANCELLED = 1,
    ORCH_CODE_UNKNOWN = 2,
    ORCH_CODE_INVALID_ARGUMENT = 3,
    ORCH_CODE_DEADLINE_EXCEEDED = 4,
    ORCH_CODE_NOT_FOUND = 5,
    ORCH_CODE_ALREADY_EXISTS = 6,
    ORCH_CODE_PERMISSION_DENIED = 7,
    ORCH_CODE_RESOURCE_EXHAUSTED = 8,
    ORCH_CODE_FAILED_PRECONDITION = 9,
    ORCH_CODE_ABORTED = 10,
    ORCH_CODE_OUT_OF_RANGE = 11,
    ORCH_CODE_UNIMPLEMENTED = 12,
    ORCH_CODE_INTERNAL = 13,
    ORCH_CODE_UNAVAILABLE = 14,
    ORCH_CODE_DATA_LOSS = 15,
    ORCH_CODE_UNAUTHENTICATED = 16,
} orch_code;

#define ORCH_CODE_COUNT 17

const char *orch_strerror(orch_err err);

/* The canonical name of a code ("DEADLINE_EXCEEDED"); "CODE_<n>" is never
 * returned: codes outside the table map to "UNKNOWN". */
const char *orch_code_name(orch_code code);

/* Parses a canonical name (case-insensitive); ORCH_EINVAL if unknown. */
orch_err orch_code_parse(const char *name, orch_code *out) ORCH_NODISCARD;

/* The status a handler should answer for a library error. */
orch_code orch_err_to_code(orch_err err);

#endif
