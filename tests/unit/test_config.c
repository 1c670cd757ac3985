/*
 * test_config.c - configuration tables loaded from the environment
 * (shared/src/config.c), and the agreement between every service's table and
 * the checked-in .env.example.
 *
 * Each Criterion test runs in its own process, so setenv() in one test does
 * not reach another; each test still clears the variables it reads first.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/config.h"

#include "guard_config.h"
#include "launcher_config.h"
#include "lease_config.h"
#include "stage_config.h"

/* ---- a local table ------------------------------------------------------ */

#define SECRET_VALUE "hunter2-do-not-print"

static const orch_config_var tbl[] = {
    { "T_INT", ORCH_CFG_INT, "10", 1, 100, NULL, false, false, "an integer" },
    { "T_BOOL", ORCH_CFG_BOOL, "false", 0, 0, NULL, false, false, "a flag" },
    { "T_ENUM", ORCH_CFG_ENUM, "beta", 0, 0, "alpha|beta|gamma", false, false, "a choice" },
    { "T_STR", ORCH_CFG_STRING, "plain default", 0, 0, NULL, false, false, "a string" },
    { "T_REQ", ORCH_CFG_STRING, NULL, 0, 0, NULL, true, false, "a required string" },
    { "T_SECRET", ORCH_CFG_STRING, "", 0, 0, NULL, false, true, "a secret string" },
    { "T_SECRET_INT", ORCH_CFG_INT, "7", 0, 1000, NULL, false, true, "a secret number" },
    { "T_SECRET_ENUM", ORCH_CFG_ENUM, "x", 0, 0, "x|y", false, true, "a secret choice" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};

static const orch_config_var *const tables[] = { tbl, NULL };

static void clear_env(void)
{
    for (const orch_config_var *v = tbl; v->name; v++)
        unsetenv(v->name);
    setenv("T_REQ", "present", 1); /* most tests are about something else */
}

/* The result of one orch_config_load(): status, config and error text. */
typedef struct load_result {
    orch_err err;
    orch_config *cfg;
    char *errs; /* malloc'ed, NUL-terminated */
    size_t errs_len;
} load_result;

static load_result load(void)
{
    load_result r = { ORCH_OK, NULL, NULL, 0 };
    FILE *f = open_memstream(&r.errs, &r.errs_len);
    cr_assert_not_null(f);
    r.err = orch_config_load(tables, f, &r.cfg);
    cr_assert_eq(fclose(f), 0);
    if (r.err != ORCH_OK)
        r.cfg = NULL;
    return r;
}

static void load_result_free(load_result *r)
{
    orch_config_free(r->cfg);
    free(r->errs);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Loads with `name` set to `value`; returns the status. */
static orch_err load_with(const char *name, const char *value, load_result *out)
{
    clear_env();
    setenv(name, value, 1);
    *out = load();
    return out->err;
}

static char *dump(const orch_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    orch_config_dump(cfg, f);
    cr_assert_eq(fclose(f), 0);
    return buf;
}

/* ---- integers ----------------------------------------------------------- */

Test(config, int_within_bounds_is_accepted)
{
    static const struct {
        const char *text;
        int64_t value;
    } ok[] = { { "1", 1 }, { "42", 42 }, { "100", 100 }, { "+5", 5 }, { "007", 7 } };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        load_result r;
        cr_assert_eq(load_with("T_INT", ok[i].text, &r), ORCH_OK, "'%s': %s", ok[i].text, r.errs);
        cr_expect_eq(orch_config_int(r.cfg, "T_INT"), ok[i].value, "'%s'", ok[i].text);
        cr_expect_str_eq(r.errs, "");
        load_result_free(&r);
    }
}

Test(config, int_outside_bounds_is_rejected_naming_the_variable)
{
    static const char *const bad[] = { "0", "101", "-1", "9223372036854775807" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        load_result r;
        cr_expect_eq(load_with("T_INT", bad[i], &r), ORCH_EINVAL, "'%s' accepted", bad[i]);
        cr_expect_null(r.cfg);
        cr_expect_eq(count_lines(r.errs), 1, "'%s': %s", bad[i], r.errs);
        cr_expect_not_null(strstr(r.errs, "T_INT"), "'%s': %s", bad[i], r.errs);
        load_result_free(&r);
    }
}

Test(config, non_integer_is_rejected_naming_the_variable)
{
    static const char *const bad[] = {
        "abc", "12abc", "1.5", "0x10", "ten", "99999999999999999999", "-", "5 ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        load_result r;
        cr_expect_eq(load_with("T_INT", bad[i], &r), ORCH_EINVAL, "'%s' accepted", bad[i]);
        cr_expect_eq(count_lines(r.errs), 1, "'%s': %s", bad[i], r.errs);
        cr_expect_not_null(strstr(r.errs, "T_INT"), "'%s': %s", bad[i], r.errs);
        load_result_free(&r);
    }
}

/* ---- booleans, enums, strings ------------------------------------------- */

Test(config, bool_accepts_every_documented_form)
{
    static const struct {
        const char *text;
        bool value;
    } forms[] = {
        { "true", true },   { "1", true },    { "yes", true }, { "on", true },
        { "false", false }, { "0", false },   { "no", false }, { "off", false },
        { "TRUE", true },   { "Off", false }, { "Yes", true },
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        load_result r;
        cr_assert_eq(load_with("T_BOOL", forms[i].text, &r), ORCH_OK, "'%s': %s", forms[i].text,
                     r.errs);
        cr_expect_eq(orch_config_bool(r.cfg, "T_BOOL"), forms[i].value, "'%s'", forms[i].text);
        load_result_free(&r);
    }
}

Test(config, bool_rejects_other_words)
{
    static const char *const bad[] = { "maybe", "2", "y", "enabled", "truee", "-1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        load_result r;
        cr_expect_eq(load_with("T_BOOL", bad[i], &r), ORCH_EINVAL, "'%s' accepted", bad[i]);
        cr_expect_not_null(strstr(r.errs, "T_BOOL"), "'%s': %s", bad[i], r.errs);
        cr_expect_eq(count_lines(r.errs), 1, "%s", r.errs);
        load_result_free(&r);
    }
}

Test(config, bool_default_is_used)
{
    load_result r;
    cr_assert_eq(load_with("T_BOOL", "on", &r), ORCH_OK);
    cr_assert(orch_config_bool(r.cfg, "T_BOOL"));
    load_result_free(&r);
    clear_env();
    r = load();
    cr_assert_eq(r.err, ORCH_OK, "%s", r.errs);
    cr_assert_not(orch_config_bool(r.cfg, "T_BOOL"), "default is false");
    load_result_free(&r);
}

Test(config, enum_accepts_each_choice_and_nothing_else)
{
    static const char *const good[] = { "alpha", "beta", "gamma" };
    for (size_t i = 0; i < 3; i++) {
        load_result r;
        cr_assert_eq(load_with("T_ENUM", good[i], &r), ORCH_OK, "'%s': %s", good[i], r.errs);
        cr_expect_str_eq(orch_config_str(r.cfg, "T_ENUM"), good[i]);
        load_result_free(&r);
    }
    static const char *const bad[] = { "delta", "alph", "alphabeta", "alpha|beta", "|", "beta " };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        load_result r;
        cr_expect_eq(load_with("T_ENUM", bad[i], &r), ORCH_EINVAL, "'%s' accepted", bad[i]);
        cr_expect_not_null(strstr(r.errs, "T_ENUM"), "'%s': %s", bad[i], r.errs);
        load_result_free(&r);
    }
}

Test(config, string_value_is_copied)
{
    char value[] = "from the environment";
    load_result r;
    cr_assert_eq(load_with("T_STR", value, &r), ORCH_OK, "%s", r.errs);
    unsetenv("T_STR"); /* the config must not point into the environment */
    cr_expect_str_eq(orch_config_str(r.cfg, "T_STR"), "from the environment");
    load_result_free(&r);
}

/* ---- required, defaults ------------------------------------------------- */

Test(config, required_missing_is_reported)
{
    clear_env();
    unsetenv("T_REQ");
    load_result r = load();
    cr_expect_eq(r.err, ORCH_EINVAL);
    cr_expect_null(r.cfg);
    cr_expect_eq(count_lines(r.errs), 1, "%s", r.errs);
    cr_expect_not_null(strstr(r.errs, "T_REQ"), "%s", r.errs);
    load_result_free(&r);
}

Test(config, required_empty_is_reported_as_missing)
{
    load_result r;
    cr_expect_eq(load_with("T_REQ", "", &r), ORCH_EINVAL);
    cr_expect_not_null(strstr(r.errs, "T_REQ"), "%s", r.errs);
    load_result_free(&r);
}

Test(config, defaults_are_used_when_unset_or_empty)
{
    for (int pass = 0; pass < 2; pass++) {
        clear_env();
        if (pass == 1) {
            setenv("T_INT", "", 1);
            setenv("T_BOOL", "", 1);
            setenv("T_ENUM", "", 1);
            setenv("T_STR", "", 1);
            setenv("T_SECRET_INT", "", 1);
        }
        load_result r = load();
        cr_assert_eq(r.err, ORCH_OK, "pass %d: %s", pass, r.errs);
        cr_expect_str_eq(r.errs, "");
        cr_expect_eq(orch_config_int(r.cfg, "T_INT"), 10, "pass %d", pass);
        cr_expect_str_eq(orch_config_str(r.cfg, "T_INT"), "10");
        cr_expect_eq(orch_config_bool(r.cfg, "T_BOOL"), false, "pass %d", pass);
        cr_expect_str_eq(orch_config_str(r.cfg, "T_ENUM"), "beta", "pass %d", pass);
        cr_expect_str_eq(orch_config_str(r.cfg, "T_STR"), "plain default", "pass %d", pass);
        cr_expect_eq(orch_config_int(r.cfg, "T_SECRET_INT"), 7, "pass %d", pass);
        cr_expect_str_eq(orch_config_str(r.cfg, "T_REQ"), "present");
        load_result_free(&r);
    }
}

/* ---- every error in one load -------------------------------------------- */

Test(config, all_errors_are_reported_in_one_load)
{
    clear_env();
    setenv("T_INT", "500", 1);
    setenv("T_BOOL", "perhaps", 1);
    setenv("T_ENUM", "omega", 1);
    load_result r = load();
    cr_assert_eq(r.err, ORCH_EINVAL);
    cr_assert_eq(count_lines(r.errs), 3, "want 3 lines, got:\n%s", r.errs);

    /* One line per variable, each naming its own. */
    static const char *const names[] = { "T_INT", "T_BOOL", "T_ENUM" };
    bool seen[3] = { false, false, false };
    char *save = NULL;
    for (char *line = strtok_r(r.errs, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int hits = 0;
        for (int i = 0; i < 3; i++) {
            if (strstr(line, names[i])) {
                seen[i] = true;
                hits++;
            }
        }
        cr_expect_eq(hits, 1, "line names %d variables: %s", hits, line);
    }
    for (int i = 0; i < 3; i++)
        cr_expect(seen[i], "no line names %s", names[i]);
    load_result_free(&r);
}

Test(config, errors_and_missing_required_are_reported_together)
{
    clear_env();
    unsetenv("T_REQ");
    setenv("T_INT", "x", 1);
    load_result r = load();
    cr_assert_eq(r.err, ORCH_EINVAL);
    cr_expect_eq(count_lines(r.errs), 2, "%s", r.errs);
    cr_expect_not_null(strstr(r.errs, "T_REQ"), "%s", r.errs);
    cr_expect_not_null(strstr(r.errs, "T_INT"), "%s", r.errs);
    load_result_free(&r);
}

/* ---- secrets ------------------------------------------------------------ */

Test(config, secret_value_never_appears_in_errors)
{
    static const char *const names[] = { "T_SECRET_INT", "T_SECRET_ENUM" };
    for (size_t i = 0; i < 2; i++) {
        load_result r;
        cr_assert_eq(load_with(names[i], SECRET_VALUE, &r), ORCH_EINVAL);
        cr_expect_not_null(strstr(r.errs, names[i]), "%s", r.errs);
        cr_expect_null(strstr(r.errs, SECRET_VALUE), "secret leaked: %s", r.errs);
        cr_expect_null(strstr(r.errs, "hunter2"), "secret leaked: %s", r.errs);
        load_result_free(&r);
    }
    /* Out of range rather than malformed. */
    load_result r;
    cr_assert_eq(load_with("T_SECRET_INT", "987654", &r), ORCH_EINVAL);
    cr_expect_not_null(strstr(r.errs, "T_SECRET_INT"), "%s", r.errs);
    cr_expect_null(strstr(r.errs, "987654"), "secret leaked: %s", r.errs);
    load_result_free(&r);
}

Test(config, secret_value_never_appears_in_dump)
{
    clear_env();
    setenv("T_SECRET", SECRET_VALUE, 1);
    setenv("T_SECRET_INT", "123", 1);
    setenv("T_STR", "visible", 1);
    load_result r = load();
    cr_assert_eq(r.err, ORCH_OK, "%s", r.errs);
    cr_expect_str_eq(orch_config_str(r.cfg, "T_SECRET"), SECRET_VALUE, "accessor gives the value");
    char *d = dump(r.cfg);
    cr_expect_null(strstr(d, "hunter2"), "secret leaked:\n%s", d);
    cr_expect_null(strstr(d, "123"), "secret number leaked:\n%s", d);
    cr_expect_not_null(strstr(d, "T_SECRET=<set>\n"), "%s", d);
    cr_expect_not_null(strstr(d, "T_SECRET_INT=<set>\n"), "%s", d);
    cr_expect_not_null(strstr(d, "T_STR=visible\n"), "%s", d);
    cr_expect_not_null(strstr(d, "T_INT=10\n"), "%s", d);
    /* One line per variable of the table. */
    cr_expect_eq(count_lines(d), sizeof tbl / sizeof tbl[0] - 1, "%s", d);
    free(d);
    load_result_free(&r);
}

Test(config, unset_secret_is_dumped_as_unset)
{
    clear_env();
    load_result r = load();
    cr_assert_eq(r.err, ORCH_OK, "%s", r.errs);
    char *d = dump(r.cfg);
    cr_expect_not_null(strstr(d, "T_SECRET=<unset>\n"), "%s", d);
    free(d);
    load_result_free(&r);
}

/* ---- the real tables ---------------------------------------------------- */

static const orch_config_var *const all_tables[] = {
    orch_config_common, lease_client_config, lease_config,    stage_client_config,
    stage_config,       guard_config,        launcher_config, NULL,
};
static const char *const all_table_names[] = {
    "orch_config_common", "lease_client_config", "lease_config",    "stage_client_config",
    "stage_config",       "guard_config",        "launcher_config",
};

Test(config, service_tables_load_with_only_the_required_keys_set)
{
    for (size_t t = 0; all_tables[t]; t++)
        for (const orch_config_var *v = all_tables[t]; v->name; v++)
            unsetenv(v->name);
    size_t nrequired = 0;
    for (size_t t = 0; all_tables[t]; t++) {
        for (const orch_config_var *v = all_tables[t]; v->name; v++) {
            if (v->required) {
                char first[64] = "x";
                if (v->type == ORCH_CFG_ENUM)
                    snprintf(first, sizeof first, "%.*s", (int)strcspn(v->choices, "|"),
                             v->choices);
                setenv(v->name, first, 1);
                nrequired++;
            }
        }
    }
    cr_assert_gt(nrequired, 0, "ORCH_DATABASE_URL at least is required");
    char *errs = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&errs, &len);
    cr_assert_not_null(f);
    orch_config *cfg = NULL;
    orch_err err = orch_config_load(all_tables, f, &cfg);
    fclose(f);
    cr_expect_eq(err, ORCH_OK, "every default must pass its own checks:\n%s", errs);
    orch_config_free(cfg);
    free(errs);
}

/* ---- .env.example stays in step with the tables ------------------------- */

typedef struct decl {
    char key[128];
    char value[512];
    int line;
} decl;

typedef struct env_example {
    decl d[256];
    size_t n;
} env_example;

static void rtrim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

/* Reads ORCH_SOURCE_DIR/.env.example. Declarations are `KEY=value`,
 * `#KEY=value` or `# KEY=value` for keys starting with ORCH_; every other
 * line is prose. Fails the test if the file is missing. */
static void read_env_example(env_example *ex)
{
    const char *path = ORCH_SOURCE_DIR "/.env.example";
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f,
                       "%s does not exist: it must list every configuration key with its "
                       "default",
                       path);
    char buf[1024];
    int lineno = 0;
    ex->n = 0;
    while (fgets(buf, sizeof buf, f)) {
        lineno++;
        rtrim(buf);
        char *p = buf;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '#') {
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
        }
        if (strncmp(p, "ORCH_", 5) != 0)
            continue;
        size_t klen = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        if (p[klen] != '=')
            continue;
        cr_assert_lt(ex->n, sizeof ex->d / sizeof ex->d[0], "too many declarations");
        cr_assert_lt(klen, sizeof ex->d[0].key, "%s:%d: key too long", path, lineno);
        decl *d = &ex->d[ex->n++];
        memcpy(d->key, p, klen);
        d->key[klen] = '\0';
        const char *v = p + klen + 1;
        size_t vlen = strlen(v);
        /* A quoted value shows the text between the quotes. */
        if (vlen >= 2 && (v[0] == '"' || v[0] == '\'') && v[vlen - 1] == v[0]) {
            v++;
            vlen -= 2;
        }
        cr_assert_lt(vlen, sizeof d->value, "%s:%d: value too long", path, lineno);
        memcpy(d->value, v, vlen);
        d->value[vlen] = '\0';
        d->line = lineno;
    }
    fclose(f);
}

static const decl *find_decl(const env_example *ex, const char *key)
{
    for (size_t i = 0; i < ex->n; i++)
        if (strcmp(ex->d[i].key, key) == 0)
            return &ex->d[i];
    return NULL;
}

static const orch_config_var *find_var(const char *key, const char **table)
{
    for (size_t t = 0; all_tables[t]; t++) {
        for (const orch_config_var *v = all_tables[t]; v->name; v++) {
            if (strcmp(v->name, key) == 0) {
                if (table)
                    *table = all_table_names[t];
                return v;
            }
        }
    }
    return NULL;
}

Test(config_env_example, declares_every_key_of_every_table)
{
    env_example ex;
    read_env_example(&ex);
    size_t nkeys = 0, missing = 0;
    for (size_t t = 0; all_tables[t]; t++) {
        for (const orch_config_var *v = all_tables[t]; v->name; v++) {
            nkeys++;
            if (!find_decl(&ex, v->name)) {
                missing++;
                cr_log_error(".env.example lacks %s (from %s)", v->name, all_table_names[t]);
            }
        }
    }
    cr_assert_gt(nkeys, 15, "the tables declare only %zu keys", nkeys);
    cr_assert_eq(missing, 0, "%zu of %zu keys missing from .env.example (see the log above)",
                 missing, nkeys);
}

/* Keys of the run scripts (deploy/local/run.sh, packages.sh), which
 * .env.example declares in its "script environment" part. */
static bool script_key(const char *key)
{
    static const char *const keys[] = { "ORCH_BUILD_DIR", "ORCH_RUN_DIR", "ORCH_SKIP_PACKAGES",
                                        NULL };
    for (size_t i = 0; keys[i]; i++)
        if (strcmp(key, keys[i]) == 0)
            return true;
    return false;
}

Test(config_env_example, declares_no_key_that_no_table_has)
{
    env_example ex;
    read_env_example(&ex);
    cr_assert_gt(ex.n, 0, ".env.example declares no ORCH_ key at all");
    size_t unknown = 0;
    for (size_t i = 0; i < ex.n; i++) {
        if (!find_var(ex.d[i].key, NULL) && !script_key(ex.d[i].key)) {
            unknown++;
            cr_log_error(".env.example:%d declares %s, which no configuration table has",
                         ex.d[i].line, ex.d[i].key);
        }
    }
    cr_assert_eq(unknown, 0, "%zu unknown key(s) in .env.example (see the log above)", unknown);
}

Test(config_env_example, shows_each_default)
{
    env_example ex;
    read_env_example(&ex);
    size_t compared = 0, wrong = 0;
    for (size_t i = 0; i < ex.n; i++) {
        const char *table = NULL;
        const orch_config_var *v = find_var(ex.d[i].key, &table);
        if (!v)
            continue; /* reported by declares_no_key_that_no_table_has */
        if (v->secret || (v->required && !v->def))
            continue; /* any example value is fine */
        compared++;
        const char *want = v->def ? v->def : "";
        if (strcmp(ex.d[i].value, want) != 0) {
            wrong++;
            cr_log_error(".env.example:%d shows %s=%s but the default in %s is '%s'", ex.d[i].line,
                         ex.d[i].key, ex.d[i].value, table, want);
        }
    }
    cr_assert_gt(compared, 10, "only %zu keys compared", compared);
    cr_assert_eq(wrong, 0, "%zu value(s) in .env.example differ from the defaults (see the log)",
                 wrong);
}

Test(config_env_example, declares_each_key_once)
{
    env_example ex;
    read_env_example(&ex);
    size_t dups = 0;
    for (size_t i = 0; i < ex.n; i++) {
        for (size_t j = i + 1; j < ex.n; j++) {
            if (strcmp(ex.d[i].key, ex.d[j].key) == 0) {
                dups++;
                cr_log_error(".env.example declares %s on lines %d and %d", ex.d[i].key,
                             ex.d[i].line, ex.d[j].line);
            }
        }
    }
    cr_assert_eq(dups, 0, "%zu duplicate declaration(s)", dups);
}

/* ---- ORCH_RUNTIME: required, one of three words ------------------------- */

static orch_err load_common(char **errs)
{
    static const orch_config_var *const common[] = { orch_config_common, NULL };
    size_t len = 0;
    FILE *f = open_memstream(errs, &len);
    cr_assert_not_null(f);
    orch_config *cfg = NULL;
    orch_err err = orch_config_load(common, f, &cfg);
    fclose(f);
    orch_config_free(cfg);
    return err;
}

Test(config_runtime, missing_runtime_is_an_error_naming_it)
{
    setenv("ORCH_DATABASE_URL", "postgresql://x@127.0.0.1/x", 1);
    unsetenv("ORCH_RUNTIME");
    char *errs = NULL;
    cr_assert_eq(load_common(&errs), ORCH_EINVAL);
    cr_assert_not_null(strstr(errs, "ORCH_RUNTIME"), "errors: %s", errs);
    free(errs);
}

Test(config_runtime, unknown_runtime_is_an_error_naming_it)
{
    setenv("ORCH_DATABASE_URL", "postgresql://x@127.0.0.1/x", 1);
    setenv("ORCH_RUNTIME", "production", 1);
    char *errs = NULL;
    cr_assert_eq(load_common(&errs), ORCH_EINVAL);
    cr_assert_not_null(strstr(errs, "ORCH_RUNTIME"), "errors: %s", errs);
    free(errs);
}

Test(config_runtime, each_runtime_loads)
{
    static const char *const rts[] = { "live", "staging", "test" };
    setenv("ORCH_DATABASE_URL", "postgresql://x@127.0.0.1/x", 1);
    for (size_t i = 0; i < 3; i++) {
        setenv("ORCH_RUNTIME", rts[i], 1);
        char *errs = NULL;
        cr_assert_eq(load_common(&errs), ORCH_OK, "%s: %s", rts[i], errs);
        free(errs);
    }
}
