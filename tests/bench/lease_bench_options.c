/*
 * lease_bench_options.c - lease_bench's command line: its help, and the
 * options read through one table (name, kind, where the value goes, its
 * bounds) into an lb_options. Main thread, before anything starts.
 */
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease_bench.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: lease_bench [options]\n"
                 "  Compares Acquire + Release through a running lease-service with the same SQL\n"
                 "  sent directly over libpq, with distinct and with one contended work item.\n"
                 "  Prints figures; exit 0 when every operation succeeded.\n"
                 "\n"
                 "  --service-url URL    lease-service RPC address (default $ORCH_LEASE_RPC_URL,\n"
                 "                       else tcp://127.0.0.1:7701)\n"
                 "  --metrics-addr H:P   its /metrics address (default $ORCH_LEASE_HTTP_ADDR; ''\n"
                 "                       skips the service-side times)\n"
                 "  --database-url URL   the service's database (default $ORCH_DATABASE_URL)\n"
                 "  --service-pid PID    lease-service's pid: its CPU and context switches\n"
                 "  --pg-pid PID         the postmaster's pid: CPU of the cluster's processes\n"
                 "  --host-id ID         the owners' host, equal to the service's ORCH_HOST_ID\n"
                 "                       (default $ORCH_HOST_ID, else bench-host)\n"
                 "  --repo NAME          repo of the requests, in the lease's scope (orch)\n"
                 "  --label TEXT         shown in the header, e.g. the service's settings\n"
                 "  --callers LIST       caller counts on distinct items (1,4,16)\n"
                 "  --contended K        callers on one work item (16; 0 skips the mode)\n"
                 "  --pairs N            timed pairs per stack, mode and round, all callers\n"
                 "                       together (8000)\n"
                 "  --attempts N         the same, in attempts, for the contended mode (8000)\n"
                 "  --items N            work items per caller (4)\n"
                 "  --warmup N           untimed operations of each caller before each slice (20)\n"
                 "  --rounds R           rounds, the first stack alternating (3)\n"
                 "  --slices S           slices per mode and round; the stacks take turns\n"
                 "                       slice by slice (10)\n"
                 "  --timeout MS         deadline of each call (5000)\n"
                 "  --unprepared         direct stack: unprepared statements (PQexecParams,\n"
                 "                       parsed and planned every time), unlike lease-service,\n"
                 "                       which prepares them once per connection\n"
                 "  --scale N            instead of the modes above: N timed Acquires (and\n"
                 "                       untimed Releases) of released rows, one caller, with\n"
                 "                       10^3 and then 10^6 rows in transition_lease; prints\n"
                 "                       p50/p99 of each, p99(10^6)/p99(10^3) and the plans\n"
                 "                       of the statements that read the table (0: off)\n"
                 "  --json               one JSON document instead of text\n"
                 "  -h, --help           this help\n");
}

static bool parse_pid(const char *s, pid_t *out)
{
    unsigned v;
    if (!bench_parse_uint(s, 1, 0x7fffffffu, &v))
        return false;
    *out = (pid_t)v;
    return true;
}

/* "1,4,16" into distinct-item modes, placed before the contended one. */
static bool parse_callers(const char *arg, lb_options *o)
{
    char *copy_ = strdup(arg), *save = NULL;
    bool ok = copy_ != NULL;
    o->nmodes = 0;
    for (char *tok = ok ? strtok_r(copy_, ",", &save) : NULL; ok && tok;
         tok = strtok_r(NULL, ",", &save)) {
        unsigned k;
        ok = o->nmodes < LB_MAX_MODES - 1 && bench_parse_uint(tok, 1, LB_MAX_CALLERS, &k);
        if (ok)
            o->modes[o->nmodes++] = (lb_mode){ .callers = k };
    }
    free(copy_);
    return ok && o->nmodes > 0;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && v[0] ? v : fallback;
}

/* What parse_args fills: the options, and the contended mode's callers
 * (a mode of its own, added after the others). */
typedef struct lb_args {
    lb_options o;
    unsigned contended;
} lb_args;

typedef enum {
    OPT_STR,     /* const char *, the argument itself */
    OPT_UINT,    /* unsigned in [lo, hi] */
    OPT_PID,     /* pid_t > 0 */
    OPT_CALLERS, /* the distinct-item modes, "1,4,16" */
    OPT_FALSE,   /* bool set false, no argument */
    OPT_TRUE,    /* bool set true, no argument */
    OPT_HELP,
} opt_kind;

typedef struct lb_opt {
    const char *name;
    opt_kind kind;
    size_t off; /* in lb_args */
    unsigned lo, hi;
} lb_opt;

#define AT(field) offsetof(lb_args, field)

static const lb_opt opts[] = {
    { "service-url", OPT_STR, AT(o.service_url), 0, 0 },
    { "metrics-addr", OPT_STR, AT(o.metrics_addr), 0, 0 },
    { "database-url", OPT_STR, AT(o.database_url), 0, 0 },
    { "service-pid", OPT_PID, AT(o.service_pid), 0, 0 },
    { "pg-pid", OPT_PID, AT(o.pg_pid), 0, 0 },
    { "host-id", OPT_STR, AT(o.host_id), 0, 0 },
    { "repo", OPT_STR, AT(o.repo), 0, 0 },
    { "label", OPT_STR, AT(o.label), 0, 0 },
    { "callers", OPT_CALLERS, 0, 0, 0 },
    { "contended", OPT_UINT, AT(contended), 0, LB_MAX_CALLERS },
    { "pairs", OPT_UINT, AT(o.pairs), 1, MAX_OPS },
    { "attempts", OPT_UINT, AT(o.attempts), 1, MAX_OPS },
    { "items", OPT_UINT, AT(o.items), 1, MAX_ITEMS },
    { "warmup", OPT_UINT, AT(o.warmup), 0, MAX_OPS },
    { "rounds", OPT_UINT, AT(o.rounds), 1, LB_MAX_ROUNDS },
    { "slices", OPT_UINT, AT(o.slices), 1, 1000 },
    { "timeout", OPT_UINT, AT(o.timeout_ms), 100, 600000 },
    { "unprepared", OPT_FALSE, AT(o.prepared), 0, 0 },
    { "json", OPT_TRUE, AT(o.json), 0, 0 },
    { "scale", OPT_UINT, AT(o.scale), 0, 100000 },
    { "help", OPT_HELP, 0, 0, 0 },
};
#define NOPTS    (sizeof opts / sizeof opts[0])
#define OPT_VAL0 1000 /* getopt_long's value of opts[i] is OPT_VAL0 + i */

/* Stores the argument of option d in a; false when it is out of bounds. */
static bool apply(const lb_opt *d, const char *arg, lb_args *a)
{
    char *at = (char *)a + d->off;
    switch (d->kind) {
    case OPT_STR: *(const char **)(void *)at = arg; return true;
    case OPT_UINT: return bench_parse_uint(arg, d->lo, d->hi, (unsigned *)(void *)at);
    case OPT_PID: return parse_pid(arg, (pid_t *)(void *)at);
    case OPT_CALLERS: return parse_callers(arg, &a->o);
    case OPT_FALSE: *(bool *)at = false; return true;
    case OPT_TRUE: *(bool *)at = true; return true;
    case OPT_HELP: return true;
    }
    return false;
}

/* The defaults: the environment's addresses, else the built-in ones. */
static void defaults(lb_args *a)
{
    a->o = (lb_options){ .service_url = env_or("ORCH_LEASE_RPC_URL", "tcp://127.0.0.1:7701"),
                         .metrics_addr = env_or("ORCH_LEASE_HTTP_ADDR", ""),
                         .database_url = env_or("ORCH_DATABASE_URL", ""),
                         .host_id = env_or("ORCH_HOST_ID", "bench-host"),
                         .repo = "orch",
                         .label = "",
                         .pairs = 8000,
                         .attempts = 8000,
                         .items = 4,
                         .warmup = 20,
                         .rounds = 3,
                         .slices = 10,
                         .timeout_ms = 5000,
                         .prepared = true };
    a->contended = 16;
    parse_callers("1,4,16", &a->o);
}

/* The checks across options, after they are all read; false after a
 * message. Adds the contended mode. */
static bool check(lb_args *a)
{
    lb_options *o = &a->o;
    if (a->contended > 0)
        o->modes[o->nmodes++] = (lb_mode){ .callers = a->contended, .contended = true };
    if (!o->database_url[0]) {
        fprintf(stderr, "lease_bench: no --database-url and no ORCH_DATABASE_URL\n");
        return false;
    }
    for (unsigned m = 0; m < o->nmodes; m++) {
        unsigned total = o->modes[m].contended ? o->attempts : o->pairs;
        if (total / o->modes[m].callers < o->slices) {
            fprintf(stderr,
                    "lease_bench: %u %s over %u callers leave less than one per slice (%u)\n",
                    total, o->modes[m].contended ? "attempts" : "pairs", o->modes[m].callers,
                    o->slices);
            return false;
        }
    }
    return true;
}

int lb_parse_args(int argc, char **argv, lb_options *o)
{
    struct option longopts[NOPTS + 1];
    for (size_t i = 0; i < NOPTS; i++) {
        bool flag =
            opts[i].kind == OPT_FALSE || opts[i].kind == OPT_TRUE || opts[i].kind == OPT_HELP;
        longopts[i] = (struct option){ opts[i].name, flag ? no_argument : required_argument, NULL,
                                       OPT_VAL0 + (int)i };
    }
    longopts[NOPTS] = (struct option){ NULL, 0, NULL, 0 };
    lb_args a;
    defaults(&a);
    int ch;
    bool ok = true;
    while (ok && (ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        const lb_opt *d = ch >= OPT_VAL0 ? &opts[ch - OPT_VAL0] : NULL;
        if (ch == 'h' || (d && d->kind == OPT_HELP)) {
            usage(stdout);
            return 0;
        }
        ok = d && apply(d, optarg, &a);
        if (!ok && d)
            fprintf(stderr, "lease_bench: bad value '%s' for --%s\n", optarg, d->name);
    }
    if (ok && optind < argc) {
        fprintf(stderr, "lease_bench: unexpected argument '%s'\n", argv[optind]);
        ok = false;
    }
    ok = ok && check(&a);
    if (!ok) {
        usage(stderr);
        return 2;
    }
    *o = a.o;
    return -1;
}
