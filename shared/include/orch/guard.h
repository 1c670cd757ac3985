/*
 * guard.h - the write guard's decision (DESIGN.md invariant 9), pure.
 *
 * orch_guard_decide() says whether one outbound write (a tracker change or
 * a notification) may happen. It does no I/O, never fails, keeps no state
 * and is fully determined by its input, so a table-driven unit test covers
 * every combination. live and staging allow; test denies unless the caller
 * opted in AND the target is in the sandbox allowlist; the production target
 * is denied in test whatever the opt-in and the allowlist say; an empty or
 * malformed target is denied in every runtime. No input lifts the
 * production block. Thread-safe; borrows its input for the call only.
 */
#ifndef ORCH_GUARD_H
#define ORCH_GUARD_H

#include <stdbool.h>

#include "orch/err.h"

typedef enum orch_runtime {
    ORCH_RUNTIME_LIVE,
    ORCH_RUNTIME_STAGING,
    ORCH_RUNTIME_TEST,
} orch_runtime;

#define ORCH_RUNTIME_COUNT 3

/* "live" | "staging" | "test"; ORCH_EINVAL for anything else. */
orch_err orch_runtime_parse(const char *text, orch_runtime *out) ORCH_NODISCARD;
/* The name of a runtime; "unknown" outside the enum. */
const char *orch_runtime_name(orch_runtime rt);

typedef enum orch_guard_op {
    ORCH_GUARD_UPDATE_ISSUE_STATE,
    ORCH_GUARD_ADD_COMMENT,
    ORCH_GUARD_SET_ISSUE_STATE_DIRECT,
    ORCH_GUARD_NOTIFY,
} orch_guard_op;

#define ORCH_GUARD_OP_COUNT 4

/* "UpdateIssueState", ...; "unknown" outside the enum. */
const char *orch_guard_op_name(orch_guard_op op);

typedef enum orch_guard_reason {
    ORCH_GUARD_ALLOW_LIVE,
    ORCH_GUARD_ALLOW_STAGING,
    ORCH_GUARD_ALLOW_SANDBOX,
    ORCH_GUARD_BLOCK_NO_TARGET,
    ORCH_GUARD_BLOCK_PRODUCTION,
    ORCH_GUARD_BLOCK_NOT_OPTED_IN,
    ORCH_GUARD_BLOCK_NOT_IN_SANDBOX,
    ORCH_GUARD_BLOCK_BAD_RUNTIME,
    ORCH_GUARD_BLOCK_BAD_OP,
} orch_guard_reason;

typedef struct orch_guard_input {
    orch_runtime runtime;
    orch_guard_op op;
    const char *target;     /* project id (tracker) or chat id (notifier); NULL = "" */
    bool opt_in;            /* ORCH_PLANE_TEST_WRITE_ENABLED / ORCH_TELEGRAM_TEST_SEND_ENABLED */
    const char *allowlist;  /* comma-separated sandbox targets; NULL = "" */
    const char *production; /* the production project or chat; NULL = "" */
} orch_guard_input;

typedef struct orch_guard_verdict {
    bool allow;
    orch_guard_reason reason;
} orch_guard_verdict;

orch_guard_verdict orch_guard_decide(const orch_guard_input *in);

/* A sentence for the reply, the log and guard_audit (static). */
const char *orch_guard_reason_text(orch_guard_reason reason);

/* Whether `target` is a well-formed project or chat id: 1..128 characters
 * of [A-Za-z0-9._:@-]. */
bool orch_guard_target_valid(const char *target);

/* Whether `target` is one of the comma-separated entries of `list`
 * (surrounding blanks ignored; an empty entry matches nothing). */
bool orch_guard_list_has(const char *list, const char *target);

#endif
