/*
 * orchctl.h - shared pieces of the command-line client: options common to
 * every command, the service targets, and one RPC call helper that prints
 * errors and maps them to exit codes.
 */
#ifndef ORCHCTL_H
#define ORCHCTL_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "orch/config.h"
#include "orch/rpc.h"

#define EXIT_OK       0
#define EXIT_USAGE    1
#define EXIT_HELD     3 /* lease acquire: held by another owner */
#define EXIT_DEFERRED 4 /* stage advance/rollback: another owner holds the lease */
#define EXIT_REFUSED  5 /* stage advance: gate failed, rolled back, effect failed/unknown */
#define EXIT_RPC_BASE 64

#define ORCHCTL_NTARGETS 4 /* lease, stage, guard, launcher: orchctl_targets[] */

/* The global options. `config` and `url` are borrowed from argv; they are
 * applied to the environment by orchctl_endpoints_apply before a command
 * runs (endpoint.c). */
typedef struct globals {
    bool json;
    uint32_t timeout_ms;
    const char *config;                     /* --config FILE, NULL: none */
    const char *url[ORCHCTL_NTARGETS];      /* --<svc>-url / --endpoints, NULL: not given */
    const char *url_flag[ORCHCTL_NTARGETS]; /* the flag that gave url[k] */
} globals;

typedef struct target {
    const char *name;   /* "lease" */
    const char *server; /* "lease-service" */
    const char *var;    /* "ORCH_LEASE_RPC_URL" */
    const orch_config_var *table;
} target;

extern const target orchctl_targets[];
extern const size_t orchctl_ntargets;

const target *orchctl_target(const char *name);
/* The address of `t`: its environment variable, else the table's default. */
const char *orchctl_address(const target *t);

/* Applies the endpoint layer, lowest precedence first: the environment as
 * it is, then the KEY=value lines of g->config (each ORCH_ key set in the
 * environment, overriding it), then the --<svc>-url / --endpoints flags
 * (ORCH_<SVC>_RPC_URL). Every later reader (orchctl_address, the client
 * options) reads the environment. False after a message on stderr (an
 * unreadable file, a line that is not KEY=value, an ORCH_ key no orch
 * component reads, an address that is not a URL): exit EXIT_USAGE. */
bool orchctl_endpoints_apply(const globals *g);

/* Parses the value of --endpoints ("lease=URL,stage=URL,...") into g->url;
 * false after a message on stderr. `spec` is borrowed and must outlive g. */
bool orchctl_endpoints_parse(globals *g, char *spec);

/* Calls `method` on `t`. On OK, *reply (if asked) is the decoded reply, to be
 * freed with protobuf_c_message_free_unpacked. On error prints
 * "orchctl: <method>: <CODE>: <message>" (or a JSON object with --json) on
 * stderr and
 * returns the exit status 64 + code; returns 0 on OK. */
int orchctl_call(const globals *g, const target *t, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
                 orch_rpc_status *st);

/* A client of `t` with the global options (its deadline, the auth token
 * and reply cap from the environment), closed by the caller with
 * orch_rpc_client_close; NULL after a message on stderr (a bad address:
 * exit EXIT_USAGE). */
orch_rpc_client *orchctl_open(const globals *g, const target *t);

/* Prints the error `st` of `method` as orchctl_call does; returns
 * 64 + st->code. */
int orchctl_rpc_error(const globals *g, const char *method, const orch_rpc_status *st);

/* Prints `m` as indented JSON on stdout. */
void orchctl_print_json(const ProtobufCMessage *m);

/* Parses a positive decimal integer argument; false with a message if bad. */
bool orchctl_parse_u64(const char *what, const char *s, uint64_t *out);

/* One option of a command: `--name VALUE` (or `--name=VALUE`) when `arg`,
 * else a flag. Spelled in full: abbreviations are refused. */
typedef struct orchctl_option {
    const char *name; /* without the dashes: "repo" for --repo */
    bool arg;
    char letter; /* a short form: 'w' for -w; 0: none */
} orchctl_option;

/* The options of a table row, a NULL-name-ended array with static storage. */
#define ORCHCTL_OPTS(...) ((const orchctl_option[]){ __VA_ARGS__, { NULL, false, 0 } })

#define ORCHCTL_MAX_OPTS  8   /* options in one table row */
#define ORCHCTL_MAX_GIVEN 128 /* options on one command line */

struct orchctl_cmd;

/* A command line parsed against one table row: its positional arguments and
 * the options given, in order. Every string is borrowed from argv. */
typedef struct orchctl_args {
    const char *parent; /* "lease"; NULL for a top-level command */
    const struct orchctl_cmd *cmd;
    int npos;
    char **pos;
    size_t ngiven;
    struct {
        int opt;           /* index in cmd->opts */
        const char *value; /* "" for a flag */
    } given[ORCHCTL_MAX_GIVEN];
} orchctl_args;

/* One entry of the command table (tools/orchctl/command.c walks it): a
 * command with subcommands (`subs`, ended by an entry with a NULL name) or a
 * leaf with a handler. Dispatch, --help at every level, `orchctl __complete`
 * and `orchctl help --synopsis` all read it; completion_check.sh compares the
 * last two with completion.bash and docs/operations/orchctl.md, and runs
 * every leaf with each option of its row and with options of other rows. A
 * leaf accepts exactly the options `opts` names (getopt_long's list is built
 * from them); its handler gets them parsed, the global options taken out. */
typedef struct orchctl_cmd {
    const char *name;
    const char *synopsis;       /* the arguments after the name: "WORK_ITEM [--repo R]" */
    const char *values;         /* what completion offers besides the options: "lease stage" */
    const orchctl_option *opts; /* NULL: none */
    int (*fn)(const orchctl_args *a, const globals *g);
    const char *help;  /* one line */
    const char *notes; /* printed after a command's subcommands, or NULL */
    const struct orchctl_cmd *subs;
} orchctl_cmd;

/* The value of the last --name given, else `def`; "" for a flag given.
 * `name` must be an option of a->cmd (else abort: a table bug). */
const char *orchctl_opt(const orchctl_args *a, const char *name, const char *def);
/* Whether flag --name was given. */
bool orchctl_flag(const orchctl_args *a, const char *name);
/* The value of the i-th --name given (0 first), NULL past the last. */
const char *orchctl_opt_nth(const orchctl_args *a, const char *name, size_t i);
/* --name as a positive integer at most `max` into *out, left alone when
 * --name is absent; false after a message on stderr. */
bool orchctl_opt_u64(const orchctl_args *a, const char *name, uint64_t max, uint64_t *out);
/* The arguments of a listing: none positional, --limit N (at most 1000;
 * 0 when absent) into *limit; false after a message on stderr. */
bool orchctl_list_args(const orchctl_args *a, uint32_t *limit);

/* The options of a watch (`stage queue -w`, `lease list -w`), for a table
 * row: -w/--watch, --interval MS, --count N. */
#define ORCHCTL_WATCH_OPTS                            \
    { "watch", false, 'w' }, { "interval", true, 0 }, \
    {                                                 \
        "count", true, 0                              \
    }

/* Runs `once(a, g)` once, or with --watch again every --interval MS
 * (default 2000) until SIGINT/SIGTERM (exit 0), --count N refreshes (the
 * last one's status), or a refresh that fails (its status). The screen is
 * cleared before each refresh only when stdout is a terminal (watch.c). */
int orchctl_watch(const orchctl_args *a, const globals *g,
                  int (*once)(const orchctl_args *a, const globals *g));

extern const orchctl_cmd orchctl_lease_cmds[];
extern const orchctl_cmd orchctl_stage_cmds[];
extern const orchctl_cmd orchctl_guard_cmds[];
extern const orchctl_cmd orchctl_job_cmds[];
extern const orchctl_cmd orchctl_runs_cmds[];

int cmd_health(const orchctl_args *a, const globals *g);
int cmd_version(const orchctl_args *a, const globals *g);

/* orchctl's own version ("0.1.0"). */
extern const char orchctl_version[];

/* The top level of the table (orchctl.c), ended by a NULL name. */
extern const orchctl_cmd orchctl_commands[];

/* Runs argv[1..argc) against orchctl_commands; returns the exit status. */
int orchctl_run(int argc, char **argv);

/* Prints "usage: orchctl [CMD] SUB SYNOPSIS" of a->cmd on stderr; returns
 * EXIT_USAGE. */
int orchctl_usage_error(const orchctl_args *a);

#endif
