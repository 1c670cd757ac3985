/*
 * command.c - the walk of orchctl's command table: global options (before
 * or after the subcommand), dispatch, --help at every level, and the two
 * hidden listings the tests compare with completion.bash and the docs:
 *
 *   orchctl __complete         "PATH<TAB>WORDS" per level: what completion
 *                              offers after "orchctl PATH"
 *   orchctl help --synopsis    one "orchctl CMD SUB SYNOPSIS" line per leaf
 *
 * A leaf's options are parsed here, with a getopt_long list built from its
 * table row, so a command accepts exactly the options its row names (the
 * ones --help and completion show), after its positional arguments or
 * before them, and `--` ends them.
 *
 * Single-threaded; argv is borrowed and compacted in place.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchctl.h"

#define GLOBAL_WORDS                                                                \
    "--json -o --timeout --config --endpoints --lease-url --stage-url --guard-url " \
    "--launcher-url --version --help"

static void top_usage(FILE *out)
{
    fprintf(out, "usage: orchctl [--json|-o json] [--timeout MS] [--config FILE] [--SVC-url URL]\n"
                 "               <command> [args]\n\ncommands:\n");
    for (const orchctl_cmd *c = orchctl_commands; c->name; c++) {
        char head[64];
        snprintf(head, sizeof head, "%s %s", c->name, c->synopsis);
        if (strlen(head) > 21) /* the help on a line of its own, in the column */
            fprintf(out, "  %s\n  %-21s %s\n", head, "", c->help);
        else
            fprintf(out, "  %-21s %s\n", head, c->help);
    }
    fprintf(out, "\n"
                 "options (before or after the command):\n"
                 "  --json, -o json       machine-readable output\n"
                 "  --timeout MS          deadline of each call (default 3000)\n"
                 "  --config FILE         KEY=value lines as in .env (ORCH_LEASE_RPC_URL=...)\n"
                 "  --lease-url URL, --stage-url URL, --guard-url URL, --launcher-url URL\n"
                 "                        the address of one service\n"
                 "  --endpoints SVC=URL[,SVC=URL]...\n"
                 "                        the same, several at once (lease=tcp://...:7701)\n"
                 "  -h, --help            this help; 'orchctl <command> --help' for a command\n"
                 "  --version             orchctl's version\n"
                 "\n"
                 "exit status: 0 ok, 1 usage or local error, 3 lease held by another owner,\n"
                 "  4 stage transition deferred (lease held by another owner), 5 stage\n"
                 "  transition refused (gate failed, rolled back, effect failed or unknown),\n"
                 "  64+code on an RPC error (67 INVALID_ARGUMENT, 68 DEADLINE_EXCEEDED,\n"
                 "  69 NOT_FOUND, 73 FAILED_PRECONDITION, 74 ABORTED, 76 UNIMPLEMENTED,\n"
                 "  78 UNAVAILABLE)\n"
                 "addresses: ORCH_LEASE_RPC_URL, ORCH_STAGE_RPC_URL, ORCH_GUARD_RPC_URL,\n"
                 "  ORCH_LAUNCHER_RPC_URL (defaults tcp://127.0.0.1:7701..7704);\n"
                 "  ORCH_RPC_AUTH_TOKEN is sent when set; the environment is overridden\n"
                 "  by --config FILE, which is overridden by the --SVC-url flags\n");
}

static void cmd_usage(FILE *out, const orchctl_cmd *c)
{
    if (!c->subs) {
        fprintf(out, "usage: orchctl [--json] [--timeout MS] %s%s%s\n  %s\n", c->name,
                c->synopsis[0] ? " " : "", c->synopsis, c->help);
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

int orchctl_usage_error(const orchctl_args *a)
{
    const orchctl_cmd *c = a->cmd;
    fprintf(stderr, "usage: orchctl %s%s%s%s%s\n", a->parent ? a->parent : "", a->parent ? " " : "",
            c->name, c->synopsis[0] ? " " : "", c->synopsis);
    return EXIT_USAGE;
}

/* ---- the options of a leaf ------------------------------------------------- */

static int opt_index(const orchctl_cmd *c, const char *name)
{
    for (int i = 0; c->opts && c->opts[i].name; i++)
        if (strcmp(c->opts[i].name, name) == 0)
            return i;
    return -1;
}

static int known_opt(const orchctl_args *a, const char *name)
{
    int i = opt_index(a->cmd, name);
    if (i < 0) {
        fprintf(stderr, "orchctl: bug: '%s' asks for --%s, not in its table row\n", a->cmd->name,
                name);
        abort();
    }
    return i;
}

const char *orchctl_opt_nth(const orchctl_args *a, const char *name, size_t nth)
{
    int k = known_opt(a, name);
    for (size_t i = 0; i < a->ngiven; i++)
        if (a->given[i].opt == k && nth-- == 0)
            return a->given[i].value;
    return NULL;
}

const char *orchctl_opt(const orchctl_args *a, const char *name, const char *def)
{
    int k = known_opt(a, name);
    for (size_t i = a->ngiven; i-- > 0;)
        if (a->given[i].opt == k)
            return a->given[i].value;
    return def;
}

bool orchctl_flag(const orchctl_args *a, const char *name)
{
    return orchctl_opt(a, name, NULL) != NULL;
}

bool orchctl_opt_u64(const orchctl_args *a, const char *name, uint64_t max, uint64_t *out)
{
    const char *s = orchctl_opt(a, name, NULL);
    char what[48];
    uint64_t v;
    if (!s)
        return true;
    snprintf(what, sizeof what, "--%s", name);
    if (!orchctl_parse_u64(what, s, &v))
        return false;
    if (v > max) {
        fprintf(stderr, "orchctl: %s must be at most %" PRIu64 ", got '%s'\n", what, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool orchctl_list_args(const orchctl_args *a, uint32_t *limit)
{
    uint64_t v = 0;
    if (!orchctl_opt_u64(a, "limit", 1000, &v))
        return false;
    if (a->npos != 0) {
        orchctl_usage_error(a);
        return false;
    }
    *limit = (uint32_t)v;
    return true;
}

/* Whether the option token `tok` ("--name" or "--name=VALUE") spells
 * `name` in full: getopt_long also takes unique abbreviations. */
static bool spelled_out(const char *tok, const char *name)
{
    size_t n = strlen(name);
    return strncmp(tok, "--", 2) == 0 && strncmp(tok + 2, name, n) == 0 &&
           (tok[2 + n] == '\0' || tok[2 + n] == '=');
}

/* Prints why getopt_long refused a word (`ch` '?' or ':') or `tok` (an
 * abbreviation, ch 0). Our long options have values 1..n; optopt is one of
 * them for a long option's value, a character for a short option, else 0. */
static void bad_option(const orchctl_args *a, int ch, const char *tok)
{
    const char *p = a->parent ? a->parent : "", *sp = a->parent ? " " : "";
    int n = 0;
    while (a->cmd->opts && a->cmd->opts[n].name)
        n++;
    if (ch && optopt >= 1 && optopt <= n)
        fprintf(stderr, "orchctl %s%s%s: --%s %s\n", p, sp, a->cmd->name,
                a->cmd->opts[optopt - 1].name, ch == ':' ? "needs a value" : "takes no value");
    else if (ch && optopt > ' ')
        fprintf(stderr, "orchctl %s%s%s: unknown option '-%c'\n", p, sp, a->cmd->name, optopt);
    else
        fprintf(stderr, "orchctl %s%s%s: unknown option '%s'\n", p, sp, a->cmd->name, tok);
}

/* Parses argv[1..argc) (argv[0]: the leaf's name) against the options of
 * c's row into *a; false after a message and the usage line on stderr. */
static bool parse_args(const char *parent, const orchctl_cmd *c, int argc, char **argv,
                       orchctl_args *a)
{
    struct option lo[ORCHCTL_MAX_OPTS + 1];
    char shorts[2 * ORCHCTL_MAX_OPTS + 2] = ":";
    size_t ns = 1;
    int n = 0;
    for (; c->opts && c->opts[n].name; n++) {
        if (n == ORCHCTL_MAX_OPTS)
            abort(); /* a table bug: raise ORCHCTL_MAX_OPTS */
        lo[n] = (struct option){ c->opts[n].name, c->opts[n].arg ? required_argument : no_argument,
                                 NULL, n + 1 };
        if (c->opts[n].letter) {
            shorts[ns++] = c->opts[n].letter;
            if (c->opts[n].arg)
                shorts[ns++] = ':';
        }
    }
    shorts[ns] = '\0';
    lo[n] = (struct option){ NULL, 0, NULL, 0 };
    a->parent = parent;
    a->cmd = c;
    a->ngiven = 0;
    optind = 0; /* 0: full reset of GNU getopt */
    opterr = 0; /* the messages are ours */
    int ch;
    while ((ch = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        bool refused = ch == '?' || ch == ':';
        int k = ch - 1;
        if (!refused && ch > ORCHCTL_MAX_OPTS) /* a short option: its row */
            for (k = 0; k < n && c->opts[k].letter != ch; k++)
                ;
        const char *tok = argv[optind - (!refused && optarg == argv[optind - 1] ? 2 : 1)];
        if (refused || (ch <= ORCHCTL_MAX_OPTS && !spelled_out(tok, lo[k].name))) {
            bad_option(a, refused ? ch : 0, tok);
            orchctl_usage_error(a);
            return false;
        }
        if (a->ngiven == ORCHCTL_MAX_GIVEN) {
            fprintf(stderr, "orchctl: at most %d options\n", ORCHCTL_MAX_GIVEN);
            return false;
        }
        a->given[a->ngiven].opt = k;
        a->given[a->ngiven++].value = optarg ? optarg : "";
    }
    a->npos = argc - optind;
    a->pos = argv + optind;
    return true;
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* The global options that take a value, "--name VALUE" or "--name=VALUE". */
static const char *const value_globals[] = { "--timeout",      "--config",    "--endpoints",
                                             "--lease-url",    "--stage-url", "--guard-url",
                                             "--launcher-url", NULL };

/* The value of global option `name` at argv[*i] (advancing *i past a
 * separate value); NULL when argv[*i] is not `name`. *missing is set when
 * it is, without a value. */
static char *value_of(int argc, char **argv, int *i, const char *name, bool *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '='))
        return NULL;
    if (a[n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

/* Stores the value `v` of global option `name` into g; false after a message. */
static bool set_global(globals *g, const char *name, char *v)
{
    uint64_t ms;
    if (strcmp(name, "--timeout") == 0) {
        if (!orchctl_parse_u64("--timeout", v, &ms) || ms > 3600000)
            return false;
        g->timeout_ms = (uint32_t)ms;
    } else if (strcmp(name, "--config") == 0) {
        g->config = v;
    } else if (strcmp(name, "--endpoints") == 0) {
        return orchctl_endpoints_parse(g, v);
    } else {
        /* --<svc>-url */
        for (size_t k = 0; k < orchctl_ntargets; k++) {
            size_t n = strlen(orchctl_targets[k].name);
            if (strncmp(name + 2, orchctl_targets[k].name, n) == 0 && name[2 + n] == '-') {
                g->url[k] = v;
                g->url_flag[k] = name;
            }
        }
    }
    return true;
}

/* Takes one global option at argv[*i] into g (advancing *i past a value):
 * 1 taken, 0 not a global option, -1 a bad value (message printed). */
static int take_global(int argc, char **argv, int *i, globals *g, bool timeout_ok)
{
    const char *a = argv[*i];
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
    for (const char *const *name = value_globals; *name; name++) {
        if (!timeout_ok && name == value_globals)
            continue; /* job spawn's own --timeout */
        bool missing = false;
        char *v = value_of(argc, argv, i, *name, &missing);
        if (missing) {
            fprintf(stderr, "orchctl: %s needs a value\n", *name);
            return -1;
        }
        if (v)
            return set_global(g, *name, v) ? 1 : -1;
    }
    return 0;
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

/* What completion offers after leaf `c`: its values, its options, --help. */
static void leaf_line(const char *parent, const orchctl_cmd *c)
{
    printf("%s%s%s\t%s%s", parent ? parent : "", parent ? " " : "", c->name, c->values,
           c->values[0] ? " " : "");
    for (const orchctl_option *o = c->opts; o && o->name; o++) {
        if (o->letter)
            printf("-%c ", o->letter);
        printf("--%s ", o->name);
    }
    printf("--help\n");
}

static int print_complete(void)
{
    words_line("", orchctl_commands, GLOBAL_WORDS);
    for (const orchctl_cmd *c = orchctl_commands; c->name; c++) {
        if (!c->subs) {
            leaf_line(NULL, c);
            continue;
        }
        words_line(c->name, c->subs, "--help");
        for (const orchctl_cmd *s = c->subs; s->name; s++)
            leaf_line(c->name, s);
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

/* Runs leaf `c` of `parent` (NULL at the top) with argv[0] = its name;
 * --help anywhere prints `shown`'s usage. */
static int run_leaf(const char *parent, const orchctl_cmd *c, const orchctl_cmd *shown, int argc,
                    char **argv, globals *g)
{
    for (int k = 1; k < argc; k++)
        if (is_help(argv[k])) {
            cmd_usage(stdout, shown);
            return EXIT_OK;
        }
    /* A leaf with its own --timeout (job spawn) leaves it to getopt. */
    if (!strip_globals(&argc, argv, 1, g, opt_index(c, "timeout") < 0))
        return EXIT_USAGE;
    orchctl_args a;
    if (!parse_args(parent, c, argc, argv, &a) || !orchctl_endpoints_apply(g))
        return EXIT_USAGE;
    return c->fn(&a, g);
}

/* The command `c` with argv[0] = its name. */
static int run_cmd(const orchctl_cmd *c, int argc, char **argv, globals *g)
{
    if (!c->subs)
        return run_leaf(NULL, c, c, argc, argv, g);
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
    return run_leaf(c->name, s, c, argc - 1, argv + 1, g);
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
        if (strcmp(argv[i], "--version") == 0) {
            printf("orchctl %s\n", orchctl_version);
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
