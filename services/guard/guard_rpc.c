/*
 * guard_rpc.c - decodes, validates and answers GuardService's RPCs.
 *
 * Every write runs the same gate first: orch_guard_decide(), a guard_audit
 * row, a log line (block at ERROR, allow at INFO), the decision metric. Only
 * an allow whose audit row was stored reaches an upstream client; a blocked
 * write answers PERMISSION_DENIED with the reason. OK means written.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/guard.pb-c.h"
#include "guard_rpc.h"
#include "guard_svc.h"
#include "orch/clock.h"
#include "orch/log.h"
#include "orch/rpc.h"

#define CALLER_MAX       64
#define STATE_NAME_MAX   100
#define NOTIFY_MAX_BYTES 16384
#define AUDIT_MAX        1000

typedef struct gate {
    orch_guard_verdict v;
    Orch__V1__GuardVerdict msg;
    char target[GUARD_ID_MAX + 1];
} gate;

static bool valid_caller(const char *caller, char *why, size_t n)
{
    size_t len = strlen(caller);
    if (len > CALLER_MAX || !guard_utf8_valid(caller, len)) {
        snprintf(why, n, "caller must be valid UTF-8 of at most %d bytes", CALLER_MAX);
        return false;
    }
    return true;
}

/* ---- input checks (guard_rpc.h) --------------------------------------------- */

static bool op_from_msg(Orch__V1__GuardOperation m, orch_guard_op *op);

/* Copies `msg` into `why` and returns INVALID_ARGUMENT. */
static orch_code invalid(char *why, size_t n, const char *msg)
{
    snprintf(why, n, "%s", msg);
    return ORCH_CODE_INVALID_ARGUMENT;
}

static orch_code check_decide(const Orch__V1__DecideRequest *req, char *why, size_t n)
{
    orch_guard_op op;
    if (!op_from_msg(req->operation, &op))
        return invalid(why, n, "operation is missing or unknown");
    if (!valid_caller(req->caller, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    if (strlen(req->target) > 4 * GUARD_ID_MAX)
        return invalid(why, n, "target is too long");
    return ORCH_CODE_OK;
}

static orch_code check_state(const char *project, const char *issue, const char *state_name,
                             const char *state_id, const char *caller, char *why, size_t n)
{
    if (!guard_valid_id("project_id", project, why, n) ||
        !guard_valid_id("issue_id", issue, why, n) || !valid_caller(caller, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    if (state_id[0] && state_name[0])
        return invalid(why, n, "give state_name or state_id, not both");
    if (state_name[0]) {
        if (!guard_valid_text("state_name", state_name, STATE_NAME_MAX, 0, why, n))
            return ORCH_CODE_INVALID_ARGUMENT;
    } else if (!guard_valid_id("state_id", state_id, why, n)) {
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    return ORCH_CODE_OK;
}

static orch_code check_comment(const Orch__V1__AddCommentRequest *req, size_t comment_max,
                               char *why, size_t n)
{
    if (!guard_valid_id("project_id", req->project_id, why, n) ||
        !guard_valid_id("issue_id", req->issue_id, why, n) ||
        !guard_valid_id("external_id", req->external_id, why, n) ||
        !guard_valid_text("text", req->text, comment_max, 0, why, n) ||
        !valid_caller(req->caller, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    return ORCH_CODE_OK;
}

static orch_code check_notify(const Orch__V1__NotifyRequest *req, char *why, size_t n)
{
    if (!guard_valid_text("text", req->text, NOTIFY_MAX_BYTES, GUARD_TELEGRAM_MAX_CHARS, why, n) ||
        !valid_caller(req->caller, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    if (req->chat_id[0] && !guard_valid_id("chat_id", req->chat_id, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    if (strlen(req->kind) > 64 || strlen(req->work_item) > 128 ||
        !guard_utf8_valid(req->kind, strlen(req->kind)) ||
        !guard_utf8_valid(req->work_item, strlen(req->work_item)))
        return invalid(why, n, "kind or work_item too long or not valid UTF-8");
    return ORCH_CODE_OK;
}

static orch_code check_list_audit(const Orch__V1__ListAuditRequest *req, char *why, size_t n)
{
    uint32_t limit = req->limit ? req->limit : 50;
    if (limit > AUDIT_MAX) {
        snprintf(why, n, "limit is at most %d", AUDIT_MAX);
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    if (strcmp(req->decision, "") != 0 && strcmp(req->decision, "allow") != 0 &&
        strcmp(req->decision, "block") != 0)
        return invalid(why, n, "decision must be allow, block or empty");
    if (strlen(req->operation) > 48 || !guard_utf8_valid(req->operation, strlen(req->operation)))
        return invalid(why, n, "operation is too long or not valid UTF-8");
    return ORCH_CODE_OK;
}

orch_code guard_rpc_check(const ProtobufCMessage *msg, size_t comment_max, char *why, size_t n)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    if (d == &orch__v1__decide_request__descriptor)
        return check_decide((const Orch__V1__DecideRequest *)msg, why, n);
    if (d == &orch__v1__update_issue_state_request__descriptor) {
        const Orch__V1__UpdateIssueStateRequest *r = (const Orch__V1__UpdateIssueStateRequest *)msg;
        return check_state(r->project_id, r->issue_id, r->state_name, r->state_id, r->caller, why,
                           n);
    }
    if (d == &orch__v1__set_issue_state_direct_request__descriptor) {
        const Orch__V1__SetIssueStateDirectRequest *r =
            (const Orch__V1__SetIssueStateDirectRequest *)msg;
        return check_state(r->project_id, r->issue_id, "", r->state_id, r->caller, why, n);
    }
    if (d == &orch__v1__add_comment_request__descriptor)
        return check_comment((const Orch__V1__AddCommentRequest *)msg, comment_max, why, n);
    if (d == &orch__v1__notify_request__descriptor)
        return check_notify((const Orch__V1__NotifyRequest *)msg, why, n);
    if (d == &orch__v1__list_audit_request__descriptor)
        return check_list_audit((const Orch__V1__ListAuditRequest *)msg, why, n);
    snprintf(why, n, "%s is not a GuardService request", d->name);
    return ORCH_CODE_INVALID_ARGUMENT;
}

/* Runs guard_rpc_check() on a handler's request. Returns ORCH_CODE_OK, or
 * the check's code with the reason set on the call (the handler returns it). */
static orch_code check_request(orch_rpc_call *call, const ProtobufCMessage *msg, size_t comment_max)
{
    char why[200];
    orch_code code = guard_rpc_check(msg, comment_max, why, sizeof why);
    if (code != ORCH_CODE_OK)
        return orch_rpc_fail(call, code, "%s", why);
    return ORCH_CODE_OK;
}

static orch_guard_input input_for(const guard_svc *g, orch_guard_op op, const char *target)
{
    orch_guard_input in = { .runtime = g->runtime, .op = op, .target = target };
    if (op == ORCH_GUARD_NOTIFY) {
        in.opt_in = g->tg_opt_in;
        in.allowlist = g->tg_sandbox;
        in.production = g->tg_chat;
    } else {
        in.opt_in = g->plane_opt_in;
        in.allowlist = g->plane_sandbox;
        in.production = g->plane_prod;
    }
    return in;
}

/* Decides, audits, logs and counts. Returns false when the caller must
 * answer at once with *code (blocked, or the audit could not be stored). */
static bool run_gate(guard_svc *g, orch_rpc_call *call, orch_guard_op op, const char *opname,
                     const char *target, const char *caller, gate *gt, orch_code *code)
{
    orch_guard_input in = input_for(g, op, target);
    gt->v = orch_guard_decide(&in);
    snprintf(gt->target, sizeof gt->target, "%s", orch_guard_target_valid(target) ? target : "");
    const char *reason = orch_guard_reason_text(gt->v.reason);
    orch__v1__guard_verdict__init(&gt->msg);
    gt->msg.allowed = gt->v.allow;
    gt->msg.decision = (char *)(gt->v.allow ? "allow" : "block");
    gt->msg.reason = (char *)reason;
    gt->msg.runtime = (char *)orch_runtime_name(g->runtime);
    gt->msg.target = gt->target;
    orch_counter_add2(g->m_decisions, (size_t)op, gt->v.allow ? 0 : 1, 1);
    /* target and caller are keys of the line (and of every later line of
     * this request), not words of its message. */
    orch_log_ctx_set(ORCH_LOG_TARGET, gt->target);
    if (caller && caller[0])
        orch_log_ctx_set(ORCH_LOG_CALLER, caller);
    if (gt->v.allow)
        orch_info("guard allow %s runtime=%s: %s", opname, orch_runtime_name(g->runtime), reason);
    else
        orch_error("guard block %s runtime=%s: %s", opname, orch_runtime_name(g->runtime), reason);
    orch_err err =
        guard_store_audit(g->db, orch_rpc_call_deadline(call), orch_runtime_name(g->runtime),
                          opname, gt->target, gt->v.allow, reason, caller);
    if (err)
        orch_error("guard_audit row not stored (%s): %s", opname, orch_strerror(err));
    if (!gt->v.allow) {
        *code = orch_rpc_fail(call, ORCH_CODE_PERMISSION_DENIED, "blocked: %s", reason);
        return false;
    }
    if (err) {
        /* Fail closed: no write without its audit row. */
        *code = orch_rpc_fail(call, ORCH_CODE_UNAVAILABLE,
                              "allowed, but the audit row could not be stored: %s; not written",
                              orch_strerror(err));
        return false;
    }
    return true;
}

static orch_code upstream_fail(orch_rpc_call *call, const char *who, const guard_result *r)
{
    orch_warn("%s call failed (%s): %s", who, guard_outcome_names[r->outcome], r->detail);
    return orch_rpc_fail(call, (orch_code)guard_outcome_code(r->outcome), "%s: %s; not written",
                         who, r->detail);
}

/* ---- Decide ---------------------------------------------------------------- */

static bool op_from_msg(Orch__V1__GuardOperation m, orch_guard_op *op)
{
    switch (m) {
    case ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_UPDATE_ISSUE_STATE:
        *op = ORCH_GUARD_UPDATE_ISSUE_STATE;
        return true;
    case ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_ADD_COMMENT:
        *op = ORCH_GUARD_ADD_COMMENT;
        return true;
    case ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_SET_ISSUE_STATE_DIRECT:
        *op = ORCH_GUARD_SET_ISSUE_STATE_DIRECT;
        return true;
    case ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_NOTIFY: *op = ORCH_GUARD_NOTIFY; return true;
    default: return false;
    }
}

static const char *notify_chat(const guard_svc *g, const char *asked)
{
    if (asked && asked[0])
        return asked;
    return g->runtime == ORCH_RUNTIME_TEST ? g->tg_test_chat : g->tg_chat;
}

static orch_code h_decide(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    guard_svc *g = arg;
    const Orch__V1__DecideRequest *req = (const Orch__V1__DecideRequest *)msg;
    char opname[48];
    orch_guard_op op = ORCH_GUARD_UPDATE_ISSUE_STATE;
    orch_code bad = check_request(call, msg, g->comment_max);
    if (bad != ORCH_CODE_OK)
        return bad;
    (void)op_from_msg(req->operation, &op);
    const char *target = op == ORCH_GUARD_NOTIFY ? notify_chat(g, req->target) : req->target;
    snprintf(opname, sizeof opname, "Decide/%s", orch_guard_op_name(op));
    gate gt;
    orch_code code;
    if (!run_gate(g, call, op, opname, target, req->caller, &gt, &code) &&
        code != ORCH_CODE_PERMISSION_DENIED)
        return code;
    Orch__V1__DecideReply rep = ORCH__V1__DECIDE_REPLY__INIT;
    rep.verdict = &gt.msg;
    return orch_rpc_reply(call, &rep.base); /* a block is an answer here */
}

/* ---- issue state ------------------------------------------------------------- */

static orch_code set_state(guard_svc *g, orch_rpc_call *call, const ProtobufCMessage *msg,
                           orch_guard_op op, const char *project, const char *issue,
                           const char *state_name, const char *state_id, const char *caller)
{
    orch_code bad = check_request(call, msg, g->comment_max);
    if (bad != ORCH_CODE_OK)
        return bad;
    gate gt;
    orch_code code;
    if (!run_gate(g, call, op, orch_guard_op_name(op), project, caller, &gt, &code))
        return code;
    uint64_t dl = orch_rpc_call_deadline(call);
    guard_result r = { 0 };
    char sid[GUARD_ID_MAX + 1];
    snprintf(sid, sizeof sid, "%s", state_id);
    if (state_name[0]) {
        guard_plane_resolve_state(g, project, state_name, dl, &r);
        if (r.outcome != GUARD_UP_OK)
            return upstream_fail(call, "plane", &r);
        snprintf(sid, sizeof sid, "%s", r.id);
        memset(&r, 0, sizeof r);
    }
    guard_plane_set_state(g, project, issue, sid, dl, &r);
    if (r.outcome != GUARD_UP_OK)
        return upstream_fail(call, "plane", &r);
    orch_info("plane: issue %s of project %s set to state %s", issue, project, sid);
    Orch__V1__IssueStateReply rep = ORCH__V1__ISSUE_STATE_REPLY__INIT;
    rep.verdict = &gt.msg;
    rep.state_id = sid;
    rep.upstream_status = (int32_t)r.status;
    return orch_rpc_reply(call, &rep.base);
}

static orch_code h_update_state(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    const Orch__V1__UpdateIssueStateRequest *req = (const Orch__V1__UpdateIssueStateRequest *)msg;
    return set_state(arg, call, msg, ORCH_GUARD_UPDATE_ISSUE_STATE, req->project_id, req->issue_id,
                     req->state_name, req->state_id, req->caller);
}

static orch_code h_set_direct(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    const Orch__V1__SetIssueStateDirectRequest *req =
        (const Orch__V1__SetIssueStateDirectRequest *)msg;
    return set_state(arg, call, msg, ORCH_GUARD_SET_ISSUE_STATE_DIRECT, req->project_id,
                     req->issue_id, "", req->state_id, req->caller);
}

/* ---- AddComment -------------------------------------------------------------- */

static orch_code h_add_comment(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    guard_svc *g = arg;
    const Orch__V1__AddCommentRequest *req = (const Orch__V1__AddCommentRequest *)msg;
    orch_code bad = check_request(call, msg, g->comment_max);
    if (bad != ORCH_CODE_OK)
        return bad;
    gate gt;
    orch_code code;
    if (!run_gate(g, call, ORCH_GUARD_ADD_COMMENT, "AddComment", req->project_id, req->caller, &gt,
                  &code))
        return code;
    uint64_t dl = orch_rpc_call_deadline(call);
    Orch__V1__AddCommentReply rep = ORCH__V1__ADD_COMMENT_REPLY__INIT;
    rep.verdict = &gt.msg;
    guard_claim claim;
    char cid[GUARD_ID_MAX + 1] = "";
    orch_err err = guard_store_claim_comment(g->db, dl, req->external_id, req->project_id,
                                             req->issue_id, &claim, cid, sizeof cid);
    if (err)
        return orch_rpc_fail(call, ORCH_CODE_UNAVAILABLE, "database: %s; not written",
                             orch_strerror(err));
    if (claim == GUARD_ALREADY_POSTED) {
        orch_counter_add(g->m_comment_dups, 0, 1);
        orch_info("comment %s already posted (tracker id %s): not posted again", req->external_id,
                  cid);
        rep.duplicate = true;
        rep.comment_id = cid;
        return orch_rpc_reply(call, &rep.base);
    }
    if (claim == GUARD_IN_FLIGHT)
        return orch_rpc_fail(call, ORCH_CODE_ABORTED,
                             "a comment with external_id %s is being posted; ask again later",
                             req->external_id);
    guard_result r = { 0 };
    guard_plane_comment(g, req->project_id, req->issue_id, req->text, req->external_id, dl, &r);
    if (r.outcome != GUARD_UP_OK) {
        /* A timeout may have posted: keep the claim so that a quick retry
         * cannot post a second copy; it expires after the claim window. */
        if (r.outcome != GUARD_UP_TIMEOUT &&
            guard_store_comment_failed(g->db, orch_mono_ms() + 2000, req->external_id))
            orch_warn("claim of comment %s not released", req->external_id);
        return upstream_fail(call, "plane", &r);
    }
    if (guard_store_comment_posted(g->db, orch_mono_ms() + 2000, req->external_id, r.id))
        orch_error("comment %s posted but not recorded as posted", req->external_id);
    orch_info("plane: comment %s posted on issue %s of project %s", req->external_id, req->issue_id,
              req->project_id);
    rep.comment_id = r.id;
    rep.upstream_status = (int32_t)r.status;
    return orch_rpc_reply(call, &rep.base);
}

/* ---- Notify ------------------------------------------------------------------ */

static orch_code h_notify(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    guard_svc *g = arg;
    const Orch__V1__NotifyRequest *req = (const Orch__V1__NotifyRequest *)msg;
    orch_code bad = check_request(call, msg, g->comment_max);
    if (bad != ORCH_CODE_OK)
        return bad;
    const char *chat = notify_chat(g, req->chat_id);
    gate gt;
    orch_code code;
    if (!run_gate(g, call, ORCH_GUARD_NOTIFY, "Notify", chat, req->caller, &gt, &code))
        return code;
    guard_result r = { 0 };
    guard_telegram_send(g, chat, req->text, orch_rpc_call_deadline(call), &r);
    if (r.outcome != GUARD_UP_OK)
        return upstream_fail(call, "telegram", &r);
    orch_info("telegram: message %lld sent to chat %s after %d call(s)", (long long)r.message_id,
              chat, r.attempts);
    Orch__V1__NotifyReply rep = ORCH__V1__NOTIFY_REPLY__INIT;
    rep.verdict = &gt.msg;
    rep.message_id = r.message_id;
    rep.attempts = r.attempts;
    return orch_rpc_reply(call, &rep.base);
}

/* ---- ListAudit --------------------------------------------------------------- */

static orch_code h_list_audit(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    guard_svc *g = arg;
    const Orch__V1__ListAuditRequest *req = (const Orch__V1__ListAuditRequest *)msg;
    orch_code bad = check_request(call, msg, g->comment_max);
    if (bad != ORCH_CODE_OK)
        return bad;
    uint32_t limit = req->limit ? req->limit : 50;
    guard_audit_row *rows = calloc(limit, sizeof *rows);
    Orch__V1__AuditEntry *ents = calloc(limit, sizeof *ents);
    Orch__V1__AuditEntry **ptrs = calloc(limit, sizeof *ptrs);
    int n = 0;
    orch_code code;
    orch_err err = rows && ents && ptrs
                       ? guard_store_list_audit(g->db, orch_rpc_call_deadline(call), req->operation,
                                                req->decision, rows, (int)limit, &n)
                       : ORCH_ENOMEM;
    if (err) {
        code = orch_rpc_fail(call, orch_err_to_code(err), "audit: %s", orch_strerror(err));
    } else {
        for (int i = 0; i < n; i++) {
            Orch__V1__AuditEntry *e = &ents[i];
            orch__v1__audit_entry__init(e);
            e->id = rows[i].id;
            e->at_unix_ms = rows[i].at_ms;
            e->runtime = rows[i].runtime;
            e->operation = rows[i].operation;
            e->project = rows[i].project;
            e->decision = rows[i].decision;
            e->reason = rows[i].reason;
            e->caller = rows[i].caller;
            ptrs[i] = e;
        }
        Orch__V1__ListAuditReply rep = ORCH__V1__LIST_AUDIT_REPLY__INIT;
        rep.n_entries = (size_t)n;
        rep.entries = ptrs;
        code = orch_rpc_reply(call, &rep.base);
    }
    free(ptrs);
    free(ents);
    free(rows);
    return code;
}

/* Matched to the service block of guard.proto by name at registration. */
#define OP       ORCH_ROLE_OPERATOR
#define WRITERS  (ORCH_ROLE_STAGE | ORCH_ROLE_LAUNCHER)
#define SERVICES (ORCH_ROLE_STAGE | ORCH_ROLE_LAUNCHER | ORCH_ROLE_LEASE)

/* Handlers and the roles that may call them (docs/rpc.md, "Authorization"):
 * tracker writes come from the services that act on tasks, and from an
 * operator through orchctl; every service may raise an alert. */
static const orch_rpc_method methods[] = {
    { .name = "Decide", .handler = h_decide, .roles = OP | WRITERS },
    { .name = "UpdateIssueState", .handler = h_update_state, .roles = OP | WRITERS },
    { .name = "AddComment", .handler = h_add_comment, .roles = OP | WRITERS },
    { .name = "SetIssueStateDirect", .handler = h_set_direct, .roles = OP | WRITERS },
    { .name = "Notify", .handler = h_notify, .roles = OP | SERVICES },
    { .name = "ListAudit", .handler = h_list_audit, .roles = OP },
};

orch_err guard_rpc_register(orch_service *svc, guard_svc *g)
{
    orch_rpc_service s = { .desc = &orch__v1__guard_service__descriptor,
                           .methods = methods,
                           .nmethods = sizeof methods / sizeof *methods,
                           .arg = g };
    return orch_service_add_rpc(svc, &s);
}
