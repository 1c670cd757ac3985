/*
 * orchctl - command-line client of the orch services.
 *
 * Usage: orchctl [--json] [--timeout MS] <command> [args]. Addresses come
 * from the same variables the services read (ORCH_<SVC>_RPC_URL), with the
 * same defaults. Exit status: 0 success, 1 usage or local error, 64 + the
 * RPC status code for an RPC error (78 = UNAVAILABLE, 68 = DEADLINE_EXCEEDED).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/health.pb-c.h"
#include "orch/clock.h"
#include "orch/rpc.h"
#include "guard_config.h"
#include "launcher_config.h"
#include "lease_config.h"
#include "stage_config.h"

#define EXIT_RPC_BASE 64

typedef struct target {
    const char *name;   /* "lease" */
    const char *server; /* "lease-service" */
    const char *var;    /* "ORCH_LEASE_RPC_URL" */
    const orch_config_var *table;
} target;

static const target targets[] = {
    { "lease", "lease-service", "ORCH_LEASE_RPC_URL", lease_config },
    { "stage", "stage-service", "ORCH_STAGE_RPC_URL", stage_config },
    { "guard", "guard-service", "ORCH_GUARD_RPC_URL", guard_config },
    { "launcher", "launcher-service", "ORCH_LAUNCHER_RPC_URL", launcher_config },
};
#define NTARGETS (sizeof targets / sizeof targets[0])

typedef struct globals {
    bool json;
    uint32_t timeout_ms;
} globals;

static const char *env_or_default(const target *t)
{
    const char *v = getenv(t->var);
    if (v && v[0])
        return v;
    for (const orch_config_var *c = t->table; c->name; c++)
        if (strcmp(c->name, t->var) == 0)
            return c->def;
    return "";
}

static orch_err open_client(const target *t, const globals *g, orch_rpc_client **out)
{
    const char *mx = getenv("ORCH_RPC_MAX_MSG_BYTES");
    orch_rpc_client_opts o = {
        .max_msg_bytes = mx && mx[0] ? (size_t)strtoull(mx, NULL, 10) : 0,
        .default_timeout_ms = g->timeout_ms,
        .auth_token = getenv("ORCH_RPC_AUTH_TOKEN"),
    };
    return orch_rpc_client_open(env_or_default(t), &o, out);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: orchctl [--json] [--timeout MS] <command> [args]\n"
                 "\n"
                 "commands:\n"
                 "  health [SERVICE...]   ask each service (lease, stage, guard, launcher;\n"
                 "                        default all) whether it is SERVING\n"
                 "\n"
                 "options:\n"
                 "  --json                machine-readable output\n"
                 "  --timeout MS          deadline of each call (default 3000)\n"
                 "  -h, --help            this help; 'orchctl <command> --help' for a command\n"
                 "\n"
                 "exit status: 0 ok, 1 usage or local error, 64+code on an RPC error\n"
                 "  (68 DEADLINE_EXCEEDED, 69 NOT_FOUND, 76 UNIMPLEMENTED, 78 UNAVAILABLE)\n"
                 "addresses: ORCH_LEASE_RPC_URL, ORCH_STAGE_RPC_URL, ORCH_GUARD_RPC_URL,\n"
                 "  ORCH_LAUNCHER_RPC_URL (defaults tcp://127.0.0.1:7701..7704)\n");
}

static const char *serving_name(int s)
{
    switch (s) {
    case ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING: return "SERVING";
    case ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING: return "NOT_SERVING";
    default: return "UNKNOWN";
    }
}

/* Checks one service; prints a line or adds a JSON object. Returns the code. */
static orch_code health_one(const target *t, const globals *g, json_t *arr)
{
    orch_rpc_client *c;
    orch_rpc_status st = { 0 };
    ProtobufCMessage *reply = NULL;
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;

    if (open_client(t, g, &c) != ORCH_OK) {
        st.code = ORCH_CODE_INVALID_ARGUMENT;
        snprintf(st.message, sizeof st.message, "bad address '%s' in %s", env_or_default(t),
                 t->var);
    } else {
        uint64_t t0 = orch_mono_ns();
        orch_rpc_invoke(c, "orch.v1.HealthService/Check", &req.base,
                        &orch__v1__health_check_response__descriptor, NULL, &st, &reply);
        double ms = (double)(orch_mono_ns() - t0) / 1e6;
        orch_rpc_client_close(c);
        const Orch__V1__HealthCheckResponse *r = (const Orch__V1__HealthCheckResponse *)reply;
        if (g->json) {
            json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:f}", "service", t->server, "address",
                                  env_or_default(t), "code", orch_code_name(st.code), "message",
                                  st.message, "latency_ms", ms);
            if (o && r) {
                json_object_set_new(o, "status", json_string(serving_name(r->status)));
                json_object_set_new(o, "instance_id", json_string(r->instance_id));
                json_object_set_new(o, "host_id", json_string(r->host_id));
                json_object_set_new(o, "database_ok", json_boolean(r->database_ok));
                json_object_set_new(o, "version", json_string(r->version));
            }
            json_array_append_new(arr, o);
        } else if (r) {
            printf("%-17s %-11s %s  host %s  instance %.8s  db %s  %.2f ms\n", t->server,
                   serving_name(r->status), env_or_default(t), r->host_id, r->instance_id,
                   r->database_ok ? "ok" : "DOWN", ms);
        } else {
            printf("%-17s %-11s %s  %s\n", t->server, orch_code_name(st.code), env_or_default(t),
                   st.message);
        }
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return st.code;
    }
    if (g->json)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "service", t->server, "code",
                                             orch_code_name(st.code), "message", st.message));
    else
        printf("%-17s %-11s %s\n", t->server, orch_code_name(st.code), st.message);
    return st.code;
}

static int cmd_health(int argc, char **argv, const globals *g)
{
    bool want[NTARGETS] = { false };
    bool any = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: orchctl [--json] [--timeout MS] health "
                   "[lease|stage|guard|launcher|all]...\n"
                   "  Calls orch.v1.HealthService/Check on each service named (default all).\n"
                   "  Exit 0 when every one is SERVING, else 64 + the first failing code.\n");
            return 0;
        }
        bool found = false;
        for (size_t k = 0; k < NTARGETS; k++) {
            if (strcmp(argv[i], "all") == 0 || strcmp(argv[i], targets[k].name) == 0 ||
                strcmp(argv[i], targets[k].server) == 0) {
                want[k] = found = any = true;
            }
        }
        if (!found) {
            fprintf(stderr,
                    "orchctl health: unknown service '%s' "
                    "(lease, stage, guard, launcher, all)\n",
                    argv[i]);
            return 1;
        }
    }
    json_t *arr = g->json ? json_array() : NULL;
    int rc = 0;
    for (size_t k = 0; k < NTARGETS; k++) {
        if (any && !want[k])
            continue;
        orch_code code = health_one(&targets[k], g, arr);
        if (code != ORCH_CODE_OK && rc == 0)
            rc = EXIT_RPC_BASE + (int)code;
    }
    if (arr) {
        json_dumpf(arr, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(arr);
    }
    return rc;
}

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv, const globals *g);
} command;

static const command commands[] = {
    { "health", cmd_health },
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
    /* '+': stop at the command name; its own options follow it. */
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': g.json = true; break;
        case 't': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 3600000) {
                fprintf(stderr, "orchctl: --timeout wants milliseconds in [1, 3600000]\n");
                return 1;
            }
            g.timeout_ms = (uint32_t)v;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 1;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[optind], commands[i].name) == 0)
            return commands[i].fn(argc - optind, argv + optind, &g);
    fprintf(stderr, "orchctl: unknown command '%s'\n", argv[optind]);
    usage(stderr);
    return 1;
}
