/*
 * err.c - error strings and the error-to-status mapping. Pure, thread-safe.
 */
#include "orch/err.h"

#include <strings.h>

static const char *const code_names[ORCH_CODE_COUNT] = {
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

const char *orch_strerror(orch_err err)
{
    switch (err) {
    case ORCH_OK: return "success";
    case ORCH_ENOMEM: return "out of memory";
    case ORCH_EINVAL: return "invalid argument";
    case ORCH_ERANGE: return "value out of range";
    case ORCH_ENOTFOUND: return "not found";
    case ORCH_EEXISTS: return "already exists";
    case ORCH_ETIMEDOUT: return "deadline exceeded";
    case ORCH_ECLOSED: return "closed";
    case ORCH_EIO: return "input/output error";
    case ORCH_EPROTO: return "protocol error";
    case ORCH_EDB_UNAVAIL: return "database unavailable";
    case ORCH_EDB_RETRY: return "database transaction must be retried";
    case ORCH_EDB_LOCKED: return "row locked by another transaction";
    case ORCH_EDB_UNKNOWN: return "database commit outcome unknown";
    case ORCH_EDB: return "database error";
    }
    return "unknown error";
}

const char *orch_code_name(orch_code code)
{
    if ((unsigned)code >= ORCH_CODE_COUNT)
        return "UNKNOWN";
    return code_names[code];
}

orch_err orch_code_parse(const char *name, orch_code *out)
{
    for (int i = 0; name && i < ORCH_CODE_COUNT; i++) {
        if (strcasecmp(name, code_names[i]) == 0) {
            *out = (orch_code)i;
            return ORCH_OK;
        }
    }
    return ORCH_EINVAL;
}

orch_code orch_err_to_code(orch_err err)
{
    switch (err) {
    case ORCH_OK: return ORCH_CODE_OK;
    case ORCH_EINVAL: return ORCH_CODE_INVALID_ARGUMENT;
    case ORCH_ERANGE: return ORCH_CODE_OUT_OF_RANGE;
    case ORCH_ENOTFOUND: return ORCH_CODE_NOT_FOUND;
    case ORCH_EEXISTS: return ORCH_CODE_ALREADY_EXISTS;
    case ORCH_ETIMEDOUT: return ORCH_CODE_DEADLINE_EXCEEDED;
    case ORCH_ECLOSED:
    case ORCH_EDB_UNAVAIL: return ORCH_CODE_UNAVAILABLE;
    case ORCH_EDB_RETRY:
    case ORCH_EDB_LOCKED: return ORCH_CODE_ABORTED;
    case ORCH_EDB_UNKNOWN: return ORCH_CODE_UNKNOWN;
    case ORCH_ENOMEM: return ORCH_CODE_RESOURCE_EXHAUSTED;
    case ORCH_EIO:
    case ORCH_EPROTO:
    case ORCH_EDB: return ORCH_CODE_INTERNAL;
    }
    return ORCH_CODE_INTERNAL;
}
