/*
 * test_llm_inventory.c - anti-drift tests of the LLM call-site map
 * (docs/architecture/llm-call-sites.md) and the one-transport scan
 * (DESIGN.md invariant 10).
 *
 * - every inventory entry names a file that exists and contains its function;
 * - the role entries are exactly the rows of launcher_routes (role, verdict
 *   key, axis, mechanical);
 * - the two-bit predicate computed from the inventory gives avoidable =
 *   {tester, deployer}, keep = {reviewer}, not-control-path = {analyst,
 *   architect, developer}, and each line's classification agrees;
 * - every file that calls LauncherService/Spawn or posix_spawn is in the
 *   inventory;
 * - no C file outside services/launcher starts a process or names an LLM
 *   API, except the reviewed allowlist below.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "launcher_logic.h"

#define MAX_ENTRIES 64

typedef struct entry {
    char id[16], file[256], function[64], role[32], keys[128], axis[8], mech[8], cls[32];
} entry;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (buf)
        buf[got] = '\0';
    return buf;
}

static void trim_copy(char *dst, size_t n, const char *b, const char *e)
{
    while (b < e && (*b == ' ' || *b == '\t'))
        b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t len = (size_t)(e - b) < n - 1 ? (size_t)(e - b) : n - 1;
    memcpy(dst, b, len);
    dst[len] = '\0';
}

static size_t read_inventory(entry *out)
{
    char *doc = slurp(ORCH_SOURCE_DIR "/docs/architecture/llm-call-sites.md");
    cr_assert_not_null(doc, "docs/architecture/llm-call-sites.md is missing");
    char *start = strstr(doc, "```inventory\n");
    cr_assert_not_null(start, "no ```inventory block");
    start += strlen("```inventory\n");
    char *end = strstr(start, "```");
    cr_assert_not_null(end, "the inventory block is not closed");
    size_t n = 0;
    for (char *line = start; line < end && n < MAX_ENTRIES;) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        char *le = nl ? nl : end;
        char *f[9];
        int nf = 0;
        f[nf++] = line;
        for (char *p = line; p < le && nf < 9; p++)
            if (*p == '|')
                f[nf++] = p + 1;
        if (le > line) {
            cr_assert_eq(nf, 9, "inventory line with %d fields: %.*s", nf, (int)(le - line), line);
            entry *e = &out[n++];
            char *fields[] = { e->id,   e->file, e->function, e->role,
                               e->keys, e->axis, e->mech,     e->cls };
            size_t sizes[] = { sizeof e->id,   sizeof e->file, sizeof e->function, sizeof e->role,
                               sizeof e->keys, sizeof e->axis, sizeof e->mech,     sizeof e->cls };
            for (int i = 0; i < 8; i++)
                trim_copy(fields[i], sizes[i], f[i], f[i + 1] - 1);
        }
        line = le + 1;
    }
    free(doc);
    return n;
}

Test(llm_inventory, every_entry_exists_in_the_code)
{
    entry e[MAX_ENTRIES];
    size_t n = read_inventory(e);
    cr_assert_geq(n, 8, "only %zu inventory entries", n);
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", ORCH_SOURCE_DIR, e[i].file);
        char *text = slurp(path);
        cr_assert_not_null(text, "%s: %s does not exist", e[i].id, e[i].file);
        cr_expect_not_null(strstr(text, e[i].function), "%s: %s has no %s", e[i].id, e[i].file,
                           e[i].function);
        free(text);
    }
}

static const entry *find_role_entry(const entry *e, size_t n, const launcher_route *r)
{
    const char *key = r->key ? r->key : "-";
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].role, r->role) == 0 && strcmp(e[i].keys, key) == 0)
            return &e[i];
    return NULL;
}

Test(llm_inventory, role_entries_are_the_route_table)
{
    entry e[MAX_ENTRIES];
    size_t n = read_inventory(e), roles = 0;
    for (size_t k = 0; k < launcher_nroutes; k++) {
        const launcher_route *r = &launcher_routes[k];
        const entry *x = find_role_entry(e, n, r);
        cr_assert_not_null(x, "route %s %s -> %s (key %s) is not in the inventory", r->role,
                           r->from, r->to, r->key ? r->key : "-");
        cr_expect_eq(x->axis[0], r->axis, "%s: axis %s in the doc, %c in the code", x->id, x->axis,
                     r->axis);
        cr_expect_str_eq(x->mech, r->mechanical ? "yes" : "no", "%s: mechanical", x->id);
        cr_expect_str_eq(x->cls, launcher_route_class(r), "%s: classification", x->id);
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].role, "-") != 0)
            roles++;
    cr_expect_eq(roles, launcher_nroutes, "%zu role entries for %zu routes", roles,
                 launcher_nroutes);
}

/* The predicate from the inventory's two bits, per role: a role is avoidable
 * if any of its entries is, else keep if any is on the control path. */
static const char *role_class(const entry *e, size_t n, const char *role)
{
    bool c = false, avoid = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].role, role) != 0)
            continue;
        bool on_c = strcmp(e[i].axis, "C") == 0;
        c = c || on_c;
        avoid = avoid || (on_c && strcmp(e[i].mech, "yes") == 0);
    }
    return avoid ? "avoidable" : c ? "keep" : "not-control-path";
}

Test(llm_inventory, predicate_gives_the_expected_classification)
{
    entry e[MAX_ENTRIES];
    size_t n = read_inventory(e);
    static const char *const want[][2] = {
        { "analyst", "not-control-path" },   { "architect", "not-control-path" },
        { "developer", "not-control-path" }, { "reviewer", "keep" },
        { "tester", "avoidable" },           { "deployer", "avoidable" },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect_str_eq(role_class(e, n, want[i][0]), want[i][1], "role %s", want[i][0]);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].role, "-") == 0)
            continue;
        const char *bits = strcmp(e[i].axis, "C") != 0     ? "not-control-path"
                           : strcmp(e[i].mech, "yes") == 0 ? "avoidable"
                                                           : "keep";
        cr_expect_str_eq(e[i].cls, bits, "%s: classification disagrees with its bits", e[i].id);
    }
}

/* ---- source scan ------------------------------------------------------------ */

static const char *const process_calls[] = { "fork",   "vfork",       "execv",        "execve",
                                             "execvp", "execvpe",     "execl",        "execle",
                                             "execlp", "posix_spawn", "posix_spawnp", "popen",
                                             "system", NULL };
static const char *const llm_hosts[] = {
    "api.anthropic.com",    "api.openai.com", "generativelanguage.googleapis.com",
    "/v1/chat/completions", "/v1/messages",   NULL
};

/* Reviewed allowlist: test code that must start processes. */
static const char *const allowlist[] = {
    "tests/support/harness.c",         /* starts service binaries, pgctl.sh, orchctl */
    "tests/unit/test_ident.c",         /* a child process to check start-time reading */
    "tests/bench/bench_echo.c",        /* the benchmark's echo server process */
    "tests/unit/test_rpc_ids.c",       /* a forked child draws its own id prefix */
    "tests/unit/test_llm_inventory.c", /* this scan names the calls it looks for */
    NULL,
};

static bool ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* The first forbidden use in `text`, or NULL: a process call is the name as
 * a whole identifier followed by '('. */
static const char *find_forbidden(const char *text)
{
    for (size_t k = 0; process_calls[k]; k++) {
        size_t len = strlen(process_calls[k]);
        for (const char *p = strstr(text, process_calls[k]); p;
             p = strstr(p + 1, process_calls[k])) {
            const char *q = p + len;
            while (*q == ' ')
                q++;
            if ((p == text || !ident_char(p[-1])) && !ident_char(p[len]) && *q == '(')
                return process_calls[k];
        }
    }
    for (size_t k = 0; llm_hosts[k]; k++)
        if (strstr(text, llm_hosts[k]))
            return llm_hosts[k];
    return NULL;
}

typedef struct scan {
    char bad[4096];
    size_t nbad, nfiles;
    char spawners[2048];
} scan;

static bool allowed(const char *rel)
{
    if (strncmp(rel, "services/launcher/", 18) == 0)
        return true;
    for (size_t i = 0; allowlist[i]; i++)
        if (strcmp(rel, allowlist[i]) == 0)
            return true;
    return false;
}

static void scan_dir(scan *s, const char *rel, int depth)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", ORCH_SOURCE_DIR, rel);
    DIR *d = opendir(path);
    if (!d || depth > 8) {
        if (d)
            closedir(d);
        return;
    }
    for (struct dirent *de; (de = readdir(d));) {
        const char *nm = de->d_name;
        if (nm[0] == '.' || strcmp(nm, "build") == 0 || strncmp(nm, "build-", 6) == 0)
            continue;
        char sub[1024], full[2048];
        snprintf(sub, sizeof sub, "%s/%s", rel, nm);
        snprintf(full, sizeof full, "%s/%s", ORCH_SOURCE_DIR, sub);
        struct stat st;
        if (stat(full, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            scan_dir(s, sub, depth + 1);
            continue;
        }
        size_t l = strlen(nm);
        if (l < 3 || (strcmp(nm + l - 2, ".c") != 0 && strcmp(nm + l - 2, ".h") != 0))
            continue;
        char *text = slurp(full);
        if (!text)
            continue;
        s->nfiles++;
        const char *hit = find_forbidden(text);
        if (hit && !allowed(sub)) {
            s->nbad++;
            size_t off = strlen(s->bad);
            snprintf(s->bad + off, sizeof s->bad - off, " %s (%s)", sub, hit);
        }
        bool calls_spawn =
            strstr(text, "LauncherService/Spawn") != NULL ||
            (strstr(text, "posix_spawn") != NULL && hit && strncmp(hit, "posix_spawn", 11) == 0);
        if (calls_spawn && strncmp(sub, "tests/", 6) != 0) {
            size_t off = strlen(s->spawners);
            snprintf(s->spawners + off, sizeof s->spawners - off, "%s\n", sub);
        }
        free(text);
    }
    closedir(d);
}

static scan scan_tree(void)
{
    scan s;
    memset(&s, 0, sizeof s);
    const char *roots[] = { "services", "shared", "tools", "tests" };
    for (size_t i = 0; i < 4; i++)
        scan_dir(&s, roots[i], 0);
    return s;
}

Test(one_transport, the_scanner_finds_what_it_looks_for)
{
    cr_expect_str_eq(find_forbidden("int x = popen(\"ls\", \"r\");"), "popen");
    cr_expect_str_eq(find_forbidden("pid_t p = fork ();"), "fork");
    cr_expect_str_eq(find_forbidden("execvp(argv[0], argv);"), "execvp");
    cr_expect_str_eq(find_forbidden("system(cmd);"), "system");
    cr_expect_str_eq(find_forbidden("\"https://api.openai.com/v1/x\""), "api.openai.com");
    cr_expect_null(find_forbidden("filesystem(x); orch_fork_free(); a system is"));
}

Test(one_transport, no_other_code_starts_a_process_or_calls_an_llm)
{
    scan s = scan_tree();
    cr_assert_gt(s.nfiles, 50, "only %zu source files found", s.nfiles);
    cr_expect_eq(s.nbad, 0, "process or LLM calls outside launcher-service:%s", s.bad);
}

Test(llm_inventory, every_spawn_call_site_is_in_the_inventory)
{
    entry e[MAX_ENTRIES];
    size_t n = read_inventory(e);
    scan s = scan_tree();
    cr_assert_neq(s.spawners[0], '\0', "no Spawn call site found at all");
    for (char *line = s.spawners; *line;) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        bool listed = false;
        for (size_t i = 0; i < n && !listed; i++)
            listed = strcmp(e[i].file, line) == 0 && strcmp(e[i].role, "-") == 0;
        cr_expect(listed, "%s calls Spawn but is not in the inventory", line);
        line = nl + 1;
    }
}
