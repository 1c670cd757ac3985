/*
 * cmd_guard.c - `orchctl guard ...`: asks guard-service for a decision,
 * lists the audit, and sends the writes it guards (a blocked write exits
 * 64 + PERMISSION_DENIED with the reason).
 *
 *   orchctl guard decide OPERATION TARGET      update-state|comment|set-state|notify
 *   orchctl guard audit [--limit N] [--decision allow|block] [--operation OP]
 *   orchctl guard comment PROJECT ISSUE EXTERNAL_ID TEXT
 *   orchctl guard state PROJECT ISSUE STATE [--name]   (STATE is an id, or a name with --name)
 *   orchctl guard notify TEXT [--chat ID]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/v1/guard.pb-c.h"
#include "orchctl.h"

#define M(name) "orch.v1.GuardService/" name

static const target *guard_target(void)
{
    return orchctl_target("guard");
}

static int finish(const globals *g, int rc, ProtobufCMessage *rep)
{
    if (rc == EXIT_OK && rep)
        orchctl_print_json(rep);
    if (rep)
        protobuf_c_message_free_unpacked(rep, NULL);
    (void)g;
    return rc;
}

static int guard_decide(const orchctl_args *a, const globals *g)
{
    static const struct {
        const char *name;
        Orch__V1__GuardOperation op;
    } ops[] = {
        { "update-state", ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_UPDATE_ISSUE_STATE },
        { "comment", ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_ADD_COMMENT },
        { "set-state", ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_SET_ISSUE_STATE_DIRECT },
        { "notify", ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_NOTIFY },
    };
    if (a->npos != 2)
        return orchctl_usage_error(a);
    Orch__V1__DecideRequest req = ORCH__V1__DECIDE_REQUEST__INIT;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(a->pos[0], ops[i].name) == 0)
            req.operation = ops[i].op;
    if (req.operation == ORCH__V1__GUARD_OPERATION__GUARD_OPERATION_UNSPECIFIED) {
        fprintf(stderr, "orchctl guard decide: unknown operation '%s'\n", a->pos[0]);
        return EXIT_USAGE;
    }
    req.target = a->pos[1];
    req.caller = "orchctl";
    ProtobufCMessage *rep = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, guard_target(), M("Decide"), &req.base,
                          &orch__v1__decide_reply__descriptor, &rep, &st);
    return finish(g, rc, rep);
}

static void print_audit(const Orch__V1__ListAuditReply *r)
{
    for (size_t i = 0; i < r->n_entries; i++) {
        const Orch__V1__AuditEntry *e = r->entries[i];
        time_t t = (time_t)(e->at_unix_ms / 1000);
        struct tm tm;
        char when[32] = "";
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("%-8" PRId64 " %s %-7s %-5s %-28s %-36s %-16s %s\n", e->id, when, e->runtime,
               e->decision, e->operation, e->project[0] ? e->project : "-",
               e->caller[0] ? e->caller : "-", e->reason);
    }
}

static int guard_audit(const orchctl_args *a, const globals *g)
{
    Orch__V1__ListAuditRequest req = ORCH__V1__LIST_AUDIT_REQUEST__INIT;
    if (!orchctl_list_args(a, &req.limit))
        return EXIT_USAGE;
    req.decision = (char *)orchctl_opt(a, "decision", req.decision);
    req.operation = (char *)orchctl_opt(a, "operation", req.operation);
    ProtobufCMessage *rep = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, guard_target(), M("ListAudit"), &req.base,
                          &orch__v1__list_audit_reply__descriptor, &rep, &st);
    if (rc == EXIT_OK && !g->json) {
        print_audit((const Orch__V1__ListAuditReply *)rep);
        protobuf_c_message_free_unpacked(rep, NULL);
        return EXIT_OK;
    }
    return finish(g, rc, rep);
}

static int guard_comment(const orchctl_args *a, const globals *g)
{
    if (a->npos != 4)
        return orchctl_usage_error(a);
    Orch__V1__AddCommentRequest req = ORCH__V1__ADD_COMMENT_REQUEST__INIT;
    req.project_id = a->pos[0];
    req.issue_id = a->pos[1];
    req.external_id = a->pos[2];
    req.text = a->pos[3];
    req.caller = "orchctl";
    ProtobufCMessage *rep = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, guard_target(), M("AddComment"), &req.base,
                          &orch__v1__add_comment_reply__descriptor, &rep, &st);
    return finish(g, rc, rep);
}

static int guard_state(const orchctl_args *a, const globals *g)
{
    if (a->npos != 3)
        return orchctl_usage_error(a);
    char **pos = a->pos;
    ProtobufCMessage *rep = NULL;
    orch_rpc_status st;
    int rc;
    if (orchctl_flag(a, "name")) {
        Orch__V1__UpdateIssueStateRequest req = ORCH__V1__UPDATE_ISSUE_STATE_REQUEST__INIT;
        req.project_id = pos[0];
        req.issue_id = pos[1];
        req.state_name = pos[2];
        req.caller = "orchctl";
        rc = orchctl_call(g, guard_target(), M("UpdateIssueState"), &req.base,
                          &orch__v1__issue_state_reply__descriptor, &rep, &st);
    } else {
        Orch__V1__SetIssueStateDirectRequest req = ORCH__V1__SET_ISSUE_STATE_DIRECT_REQUEST__INIT;
        req.project_id = pos[0];
        req.issue_id = pos[1];
        req.state_id = pos[2];
        req.caller = "orchctl";
        rc = orchctl_call(g, guard_target(), M("SetIssueStateDirect"), &req.base,
                          &orch__v1__issue_state_reply__descriptor, &rep, &st);
    }
    return finish(g, rc, rep);
}

static int guard_notify(const orchctl_args *a, const globals *g)
{
    Orch__V1__NotifyRequest req = ORCH__V1__NOTIFY_REQUEST__INIT;
    if (a->npos != 1)
        return orchctl_usage_error(a);
    req.chat_id = (char *)orchctl_opt(a, "chat", req.chat_id);
    req.text = a->pos[0];
    req.caller = "orchctl";
    ProtobufCMessage *rep = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, guard_target(), M("Notify"), &req.base,
                          &orch__v1__notify_reply__descriptor, &rep, &st);
    return finish(g, rc, rep);
}

const orchctl_cmd orchctl_guard_cmds[] = {
    { "decide", "OPERATION TARGET", "update-state comment set-state notify", NULL, guard_decide,
      "OPERATION: update-state | comment | set-state | notify", NULL, NULL },
    { "audit", "[--limit N] [--decision allow|block] [--operation OP]", "",
      ORCHCTL_OPTS({ "limit", true, 0 }, { "decision", true, 0 }, { "operation", true, 0 }),
      guard_audit, "the guard's audit log", NULL, NULL },
    { "comment", "PROJECT ISSUE EXTERNAL_ID TEXT", "", NULL, guard_comment,
      "AddComment through the guard", NULL, NULL },
    { "state", "PROJECT ISSUE STATE [--name]", "", ORCHCTL_OPTS({ "name", false, 0 }), guard_state,
      "STATE is an id (SetIssueStateDirect), or a name with --name (UpdateIssueState)", NULL,
      NULL },
    { "notify", "TEXT [--chat ID]", "", ORCHCTL_OPTS({ "chat", true, 0 }), guard_notify,
      "Notify through the guard", NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL },
};
