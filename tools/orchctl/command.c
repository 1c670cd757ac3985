/*
 * command.c - the walk of orchctl's command table: global options (before
 * or after the subcommand), dispatch, --help at every level, and the two
 * hidden listings the tests compare with completion.bash and the docs:
 *
 *   orchctl __complete         "PATH<TAB>WORDS" per level: what completion
 *                              offers after "orchctl PATH"
 *   orchctl help --synopsis    one "orchctl CMD SUB SYNOPSIS" line per leaf
 *
 * Single-threaded; argv is borrowed and compacted in place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchctl.h"

#define GLOBAL_WORDS "--json -o --timeout --help"

static void top_usage(FILE *out)
{
    fprintf(out, "usage: orchctl [--json|-o json] [--timeout MS] <command> [args]\n\ncommands:\n");
    for (const orchctl_cmd *c = orchctl_commands; c->name; c++) {
        char head[64];
        snprintf(head, sizeof head, "%s %s", c->name, c->synopsis);
        fprintf(out, "  %-21s %s\n", head, c->help);
    }
    fprintf(out, "\n"
                 "options (before or after the command):\n"
                 "  --json, -o json       machine-readable output\n"
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

static void cmd_usage(FILE *out, const orchctl_cmd *c)
{
    if (!c->subs) {
        fprintf(out, "usage: orchctl [--json] [--timeout MS] %s %s\n  %s\n", c->name, c->synopsis,
                c->help);
    } else {
        fprintf(out, "usage: orchctl [--json] %s <subcommand>\n", c->name);
        for (const orchctl_cmd *s = c->subs; s->name; s++)
            fprintf(out, "  %s%s%s\n          %s\n", s->name, s->synopsis[0] ? " " : "",
                    s->synopsis, s->help);
    }
    if (c->notes)
        fputs(c->notes, out);
}

static const orchctl_cmd *find(const orchctl_cmd *t, const char *name)
{
    for (; t && t->name; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

int orchctl_usage_error(const char *cmd, const char *sub)
{
    const orchctl_cmd *c = find(orchctl_commands, cmd);
    const orchctl_cmd *s = c ? find(c->subs, sub) : NULL;
    if (s)
        fprintf(stderr, "usage: orchctl %s %s%s%s\n", cmd, sub, s->synopsis[0] ? " " : "",
                s->synopsis);
    return EXIT_USAGE;
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* Takes one global option at argv[*i] into g (advancing *i past a value):
 * 1 taken, 0 not a global option, -1 a bad value (message printed). */
static int take_global(int argc, char **argv, int *i, globals *g, bool timeout_ok)
{
    const char *a = argv[*i];
    uint64_t v;
    if (strcmp(a, "--json") == 0 || strcmp(a, "-ojson") == 0) {
        g->json = true;
        return 1;
    }
    if (strcmp(a, "-o") == 0) {
        if (*i + 1 >= argc || strcmp(argv[*i + 1], "json") != 0) {
            fprintf(stderr, "orchctl: -o takes 'json'\n");
            return -1;
        }
        g->json = true;
        (*i)++;
        return 1;
    }
    bool eq = strncmp(a, "--timeout=", 10) == 0;
    if (!timeout_ok || (!eq && strcmp(a, "--timeout") != 0))
        return 0;
    const char *val = eq ? a + 10 : (*i + 1 < argc ? argv[++*i] : NULL);
    if (!orchctl_parse_u64("--timeout", val, &v) || v > 3600000)
        return -1;
    g->timeout_ms = (uint32_t)v;
    return 1;
}

/* Removes the global options from argv[from..*argc) in place ("--" ends
 * them); `timeout_ok` false leaves --timeout to a subcommand that has its
 * own (job spawn). False on a bad value. */
static bool strip_globals(int *argc, char **argv, int from, globals *g, bool timeout_ok)
{
    int out = from, i = from;
    for (; i < *argc && strcmp(argv[i], "--") != 0; i++) {
        int r = take_global(*argc, argv, &i, g, timeout_ok);
        if (r < 0)
            return false;
        if (r == 0)
            argv[out++] = argv[i];
    }
    while (i < *argc)
        argv[out++] = argv[i++];
    *argc = out;
    return true;
}

static void words_line(const char *path, const orchctl_cmd *t, const char *extra)
{
    printf("%s\t", path);
    for (const orchctl_cmd *s = t; s->name; s++)
        printf("%s ", s->name);
    printf("%s\n", extra);
}

static int print_complete(void)
{
    words_line("", orchctl_commands, GLOBAL_WORDS);
    for (const orchctl_cmd *c = orchctl_commands; c->name; c++) {
        if (!c->subs) {
            printf("%s\t%s\n", c->name, c->words);
            continue;
        }
        words_line(c->name, c->subs, "--help");
        for (const orchctl_cmd *s = c->subs; s->name; s++)
            printf("%s %s\t%s\n", c->name, s->name, s->words);
    }
    return EXIT_OK;
}

static int print_synopsis(void)
{
    for (const orchctl_cmd *c = orchctl_commands; c->name; c++) {
        if (!c->subs)
            printf("orchctl %s %s\n", c->name, c->synopsis);
        for (const orchctl_cmd *s = c->subs; s && s->name; s++)
            printf("orchctl %s %s%s%s\n", c->name, s->name, s->synopsis[0] ? " " : "", s->synopsis);
    }
    return EXIT_OK;
}

/* The command `c` with argv[0] = its name. */
static int run_cmd(const orchctl_cmd *c, int argc, char **argv, globals *g)
{
    if (!c->subs) {
        for (int k = 1; k < argc; k++)
            if (is_help(argv[k])) {
                cmd_usage(stdout, c);
                return EXIT_OK;
            }
        return strip_globals(&argc, argv, 1, g, true) ? c->fn(argc, argv, g) : EXIT_USAGE;
    }
    if (argc < 2 || is_help(argv[1])) {
        cmd_usage(argc < 2 ? stderr : stdout, c);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    const orchctl_cmd *s = find(c->subs, argv[1]);
    if (!s) {
        fprintf(stderr, "orchctl %s: unknown subcommand '%s'\n", c->name, argv[1]);
        cmd_usage(stderr, c);
        return EXIT_USAGE;
    }
    for (int k = 2; k < argc; k++)
        if (is_help(argv[k])) {
            cmd_usage(stdout, c);
            return EXIT_OK;
        }
    bool own_timeout = strstr(s->words, "--timeout") != NULL;
    if (!strip_globals(&argc, argv, 2, g, !own_timeout))
        return EXIT_USAGE;
    return s->fn(argc - 1, argv + 1, g);
}

int orchctl_run(int argc, char **argv)
{
    globals g = { .json = false, .timeout_ms = 3000 };
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (is_help(argv[i])) {
            top_usage(stdout);
            return EXIT_OK;
        }
        int r = take_global(argc, argv, &i, &g, true);
        if (r <= 0) {
            if (r == 0)
                fprintf(stderr, "orchctl: unknown option '%s'\n", argv[i]);
            top_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        top_usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[i], "__complete") == 0)
        return print_complete();
    if (strcmp(argv[i], "help") == 0 && i + 1 < argc && strcmp(argv[i + 1], "--synopsis") == 0)
        return print_synopsis();
    const orchctl_cmd *c = find(orchctl_commands, argv[i]);
    if (!c) {
        fprintf(stderr, "orchctl: unknown command '%s'\n", argv[i]);
        top_usage(stderr);
        return EXIT_USAGE;
    }
    return run_cmd(c, argc - i, argv + i, &g);
}
