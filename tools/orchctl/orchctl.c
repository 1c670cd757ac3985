/*
 * orchctl - command-line client of the orch services.
 *
 * Usage: orchctl [--json] [--timeout MS] <command> [args] (command.c walks
 * the command table below). Addresses come
 * from the same variables the services read (ORCH_<SVC>_RPC_URL), with the
 * same defaults, overridden by --config FILE and the --<svc>-url flags
 * (endpoint.c). Exit status: 0 success, 1 usage or local error, 3 lease
 * held by another owner, 4 a stage transition deferred (lease held), 5 a
 * stage transition refused (gate failed, rolled back, effect failed or
 * unknown), 64 + the RPC status code for an RPC error (78 = UNAVAILABLE,
 * 68 = DEADLINE_EXCEEDED).
 */
#include "orchctl.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard_config.h"
#include "launcher_config.h"
#include "lease_config.h"
#include "pbjson.h"
#include "stage_config.h"

const target orchctl_targets[] = {
    { "lease", "lease-service", "ORCH_LEASE_RPC_URL", lease_client_config },
    { "stage", "stage-service", "ORCH_STAGE_RPC_URL", stage_client_config },
    { "guard", "guard-service", "ORCH_GUARD_RPC_URL", guard_config },
    { "launcher", "launcher-service", "ORCH_LAUNCHER_RPC_URL", launcher_config },
};
const size_t orchctl_ntargets = sizeof orchctl_targets / sizeof orchctl_targets[0];
_Static_assert(sizeof orchctl_targets / sizeof orchctl_targets[0] == ORCHCTL_NTARGETS,
               "ORCHCTL_NTARGETS counts orchctl_targets");

const target *orchctl_target(const char *name)
{
    for (size_t i = 0; i < orchctl_ntargets; i++)
        if (strcmp(orchctl_targets[i].name, name) == 0)
            return &orchctl_targets[i];
    return NULL;
}

const char *orchctl_address(const target *t)
{
    const char *v = getenv(t->var);
    if (v && v[0])
        return v;
    for (const orch_config_var *c = t->table; c->name; c++)
        if (strcmp(c->name, t->var) == 0)
            return c->def;
    for (const orch_config_var *c = orch_config_common; c->name; c++)
        if (strcmp(c->name, t->var) == 0)
            return c->def; /* ORCH_GUARD_RPC_URL: every service dials it */
    return "";
}

orch_rpc_client *orchctl_open(const globals *g, const target *t)
{
    const char *mx = getenv("ORCH_RPC_MAX_MSG_BYTES");
    orch_rpc_client_opts o = {
        .max_msg_bytes = mx && mx[0] ? (size_t)strtoull(mx, NULL, 10) : 0,
        .default_timeout_ms = g->timeout_ms,
    };
    orch_rpc_client *c;
    char why[300];
    /* TLS and the role token from the environment (ORCH_TLS_*,
     * ORCH_RPC_ROLE_TOKEN or ORCH_RPC_AUTH_TOKEN). */
    if (orch_rpc_client_env(why, sizeof why) != ORCH_OK) {
        fprintf(stderr, "orchctl: %s\n", why);
        return NULL;
    }
    if (orch_rpc_client_open(orchctl_address(t), &o, &c) != ORCH_OK) {
        fprintf(stderr, "orchctl: bad address '%s' in %s\n", orchctl_address(t), t->var);
        return NULL;
    }
    return c;
}

int orchctl_rpc_error(const globals *g, const char *method, const orch_rpc_status *st)
{
    if (g->json) {
        json_t *e = json_pack("{s:s, s:s, s:s}", "method", method, "code", orch_code_name(st->code),
                              "message", st->message);
        json_dumpf(e, stderr, JSON_INDENT(2) | JSON_PRESERVE_ORDER); /* errors: stderr */
        fputc('\n', stderr);
        json_decref(e);
    } else {
        fprintf(stderr, "orchctl: %s: %s: %s\n", method, orch_code_name(st->code), st->message);
    }
    return EXIT_RPC_BASE + (int)st->code;
}

int orchctl_call(const globals *g, const target *t, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
                 orch_rpc_status *st)
{
    orch_rpc_client *c = orchctl_open(g, t);
    if (!c)
        return EXIT_USAGE;
    orch_code code = orch_rpc_invoke(c, method, req, reply_desc, NULL, st, reply);
    orch_rpc_client_close(c);
    return code == ORCH_CODE_OK ? EXIT_OK : orchctl_rpc_error(g, method, st);
}

void orchctl_print_json(const ProtobufCMessage *m)
{
    json_t *o = pbjson_from_message(m);
    json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(o);
}

bool orchctl_parse_u64(const char *what, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = s && s[0] != '-' ? strtoull(s, &end, 10) : 0;
    if (!s || !s[0] || s[0] == '-' || errno || *end || v == 0) {
        fprintf(stderr, "orchctl: %s must be a positive integer, got '%s'\n", what, s ? s : "");
        return false;
    }
    *out = v;
    return true;
}

/* The command tree: dispatch, help, completion and the synopsis lines of
 * docs/operations/orchctl.md all come from here and the per-command tables. */
const orchctl_cmd orchctl_commands[] = {
    { "health", "[lease|stage|guard|launcher|all]...", "lease stage guard launcher all", NULL,
      cmd_health, "is each service (lease, stage, guard, launcher) SERVING",
      "  Calls orch.v1.HealthService/Check on each service named (default all).\n"
      "  Exit 0 when every one is SERVING, else 64 + the first failing code.\n",
      NULL },
    { "version", "[--services]", "", ORCHCTL_OPTS({ "services", false, 0 }), cmd_version,
      "orchctl's version; --services: each service's too (from Check)", NULL, NULL },
    { "lease", "<subcommand>", "", NULL, NULL, "transition leases", NULL, orchctl_lease_cmds },
    { "guard", "<subcommand>", "", NULL, NULL, "the write guard",
      "  output: the reply as JSON (with or without --json); a blocked write\n"
      "  exits 71 (64 + PERMISSION_DENIED) with the reason\n",
      orchctl_guard_cmds },
    { "job", "<subcommand>", "", NULL, NULL, "agent jobs",
      "  ROLE: analyst | architect | developer | reviewer | tester | deployer\n",
      orchctl_job_cmds },
    { "runs", "<subcommand>", "", NULL, NULL, "agent runs (per role, from agent_runs)", NULL,
      orchctl_runs_cmds },
    { "stage", "<subcommand>", "", NULL, NULL, "work items",
      "exit status: 0 ok; 1 usage; 4 deferred (another owner holds the lease,\n"
      "  nothing ran); 5 refused (gate failed, rolled back, effect failed or\n"
      "  unknown); 64+code on an RPC error (67 INVALID_ARGUMENT, 69 NOT_FOUND,\n"
      "  73 FAILED_PRECONDITION: not in the expected stage, 74 ABORTED: lost the\n"
      "  race, 78 UNAVAILABLE)\n",
      orchctl_stage_cmds },
    { NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
    return orchctl_run(argc, argv);
}
