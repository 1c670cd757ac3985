/*
 * orchctl - command-line client of the orch services.
 *
 * Usage: orchctl [--json] [--timeout MS] <command> [args]. Addresses come
 * from the same variables the services read (ORCH_<SVC>_RPC_URL), with the
 * same defaults. Exit status: 0 success, 1 usage or local error, 3 lease
 * held by another owner, 4 a stage transition deferred (lease held), 5 a
 * stage transition refused (gate failed, rolled back, effect failed or
 * unknown), 64 + the RPC status code for an RPC error (78 = UNAVAILABLE,
 * 68 = DEADLINE_EXCEEDED).
 */
#include "orchctl.h"

#include <errno.h>
#include <getopt.h>
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

int orchctl_call(const globals *g, const target *t, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
                 orch_rpc_status *st)
{
    const char *mx = getenv("ORCH_RPC_MAX_MSG_BYTES");
    orch_rpc_client_opts o = {
        .max_msg_bytes = mx && mx[0] ? (size_t)strtoull(mx, NULL, 10) : 0,
        .default_timeout_ms = g->timeout_ms,
        .auth_token = getenv("ORCH_RPC_AUTH_TOKEN"),
    };
    orch_rpc_client *c;
    if (orch_rpc_client_open(orchctl_address(t), &o, &c) != ORCH_OK) {
        fprintf(stderr, "orchctl: bad address '%s' in %s\n", orchctl_address(t), t->var);
        return EXIT_USAGE;
    }
    orch_code code = orch_rpc_invoke(c, method, req, reply_desc, NULL, st, reply);
    orch_rpc_client_close(c);
    if (code == ORCH_CODE_OK)
        return EXIT_OK;
    if (g->json) {
        json_t *e = json_pack("{s:s, s:s, s:s}", "method", method, "code", orch_code_name(code),
                              "message", st->message);
        json_dumpf(e, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(e);
    } else {
        fprintf(stderr, "orchctl: %s: %s: %s\n", method, orch_code_name(code), st->message);
    }
    return EXIT_RPC_BASE + (int)code;
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

static void usage(FILE *out)
{
    fprintf(out, "usage: orchctl [--json] [--timeout MS] <command> [args]\n"
                 "\n"
                 "commands:\n"
                 "  health [SERVICE...]   is each service (lease, stage, guard, launcher) SERVING\n"
                 "  lease <subcommand>    transition leases: acquire, release, validate,\n"
                 "                        force-release, show, list, probe\n"
                 "  guard <subcommand>    the write guard: decide, audit, comment, state, notify\n"
                 "  job <subcommand>      agent jobs: spawn, show, wait, cancel\n"
                 "  runs <subcommand>     agent runs: list, savings (per role, from agent_runs)\n"
                 "  stage <subcommand>    work items: create, show, advance, rollback,\n"
                 "                        cancel, queue, pipeline\n"
                 "\n"
                 "options:\n"
                 "  --json                machine-readable output\n"
                 "  --timeout MS          deadline of each call (default 3000)\n"
                 "  -h, --help            this help; 'orchctl <command> --help' for a command\n"
                 "\n"
                 "exit status: 0 ok, 1 usage or local error, 3 lease held by another owner,\n"
                 "  4 stage transition deferred (lease held by another owner), 5 stage\n"
                 "  transition refused (gate failed, rolled back, effect failed or unknown),\n"
                 "  64+code on an RPC error (67 INVALID_ARGUMENT, 68 DEADLINE_EXCEEDED,\n"
                 "  69 NOT_FOUND, 73 FAILED_PRECONDITION, 74 ABORTED, 76 UNIMPLEMENTED,\n"
                 "  78 UNAVAILABLE)\n"
                 "addresses: ORCH_LEASE_RPC_URL, ORCH_STAGE_RPC_URL, ORCH_GUARD_RPC_URL,\n"
                 "  ORCH_LAUNCHER_RPC_URL (defaults tcp://127.0.0.1:7701..7704);\n"
                 "  ORCH_RPC_AUTH_TOKEN is sent when set\n");
}

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv, const globals *g);
} command;

static const command commands[] = {
    { "health", cmd_health }, { "lease", cmd_lease }, { "guard", cmd_guard },
    { "job", cmd_job },       { "runs", cmd_runs },   { "stage", cmd_stage },
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    globals g = { .json = false, .timeout_ms = 3000 };
    int ch;
    uint64_t v;
    /* '+': stop at the command name; its own options follow it. */
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': g.json = true; break;
        case 't':
            if (!orchctl_parse_u64("--timeout", optarg, &v) || v > 3600000)
                return EXIT_USAGE;
            g.timeout_ms = (uint32_t)v;
            break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[optind], commands[i].name) == 0)
            return commands[i].fn(argc - optind, argv + optind, &g);
    fprintf(stderr, "orchctl: unknown command '%s'\n", argv[optind]);
    usage(stderr);
    return EXIT_USAGE;
}
