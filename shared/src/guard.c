/*
 * guard.c - see guard.h. Pure: no I/O, no allocation, no global state.
 */
#include "orch/guard.h"

#include <string.h>

static const char *const runtime_names[ORCH_RUNTIME_COUNT] = { "live", "staging", "test" };
static const char *const op_names[ORCH_GUARD_OP_COUNT] = { "UpdateIssueState", "AddComment",
                                                           "SetIssueStateDirect", "Notify" };

orch_err orch_runtime_parse(const char *text, orch_runtime *out)
{
    for (int i = 0; text && i < ORCH_RUNTIME_COUNT; i++) {
        if (strcmp(text, runtime_names[i]) == 0) {
            *out = (orch_runtime)i;
            return ORCH_OK;
        }
    }
    return ORCH_EINVAL;
}

const char *orch_runtime_name(orch_runtime rt)
{
    return (unsigned)rt < ORCH_RUNTIME_COUNT ? runtime_names[rt] : "unknown";
}

const char *orch_guard_op_name(orch_guard_op op)
{
    return (unsigned)op < ORCH_GUARD_OP_COUNT ? op_names[op] : "unknown";
}

const char *orch_guard_reason_text(orch_guard_reason reason)
{
    switch (reason) {
    case ORCH_GUARD_ALLOW_LIVE: return "live runtime: writes allowed";
    case ORCH_GUARD_ALLOW_STAGING: return "staging runtime: writes allowed";
    case ORCH_GUARD_ALLOW_SANDBOX: return "test runtime: opted in and the target is a sandbox";
    case ORCH_GUARD_BLOCK_NO_TARGET: return "no target, or the target is not a valid id";
    case ORCH_GUARD_BLOCK_PRODUCTION:
        return "test runtime: the production target is never written from a test";
    case ORCH_GUARD_BLOCK_NOT_OPTED_IN: return "test runtime: test writes are not opted in";
    case ORCH_GUARD_BLOCK_NOT_IN_SANDBOX:
        return "test runtime: the target is not in the sandbox allowlist";
    case ORCH_GUARD_BLOCK_BAD_RUNTIME: return "unknown runtime";
    case ORCH_GUARD_BLOCK_BAD_OP: return "unknown operation";
    }
    return "unknown reason";
}

bool orch_guard_target_valid(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool orch_guard_list_has(const char *list, const char *target)
{
    size_t tl = target ? strlen(target) : 0;
    if (!list || tl == 0)
        return false;
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        const char *b = p, *e = p + len;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - b) == tl && memcmp(b, target, tl) == 0)
            return true;
        if (p[len] == '\0')
            return false;
        p += len + 1;
    }
}

static orch_guard_verdict verdict(bool allow, orch_guard_reason r)
{
    orch_guard_verdict v = { allow, r };
    return v;
}

orch_guard_verdict orch_guard_decide(const orch_guard_input *in)
{
    const char *target = in->target ? in->target : "";
    const char *prod = in->production ? in->production : "";
    if ((unsigned)in->op >= ORCH_GUARD_OP_COUNT)
        return verdict(false, ORCH_GUARD_BLOCK_BAD_OP);
    if ((unsigned)in->runtime >= ORCH_RUNTIME_COUNT)
        return verdict(false, ORCH_GUARD_BLOCK_BAD_RUNTIME);
    if (!orch_guard_target_valid(target))
        return verdict(false, ORCH_GUARD_BLOCK_NO_TARGET);
    if (in->runtime == ORCH_RUNTIME_LIVE)
        return verdict(true, ORCH_GUARD_ALLOW_LIVE);
    if (in->runtime == ORCH_RUNTIME_STAGING)
        return verdict(true, ORCH_GUARD_ALLOW_STAGING);
    /* test: the production block comes first and nothing lifts it. */
    if (prod[0] && strcmp(target, prod) == 0)
        return verdict(false, ORCH_GUARD_BLOCK_PRODUCTION);
    if (!in->opt_in)
        return verdict(false, ORCH_GUARD_BLOCK_NOT_OPTED_IN);
    if (!orch_guard_list_has(in->allowlist, target))
        return verdict(false, ORCH_GUARD_BLOCK_NOT_IN_SANDBOX);
    return verdict(true, ORCH_GUARD_ALLOW_SANDBOX);
}
