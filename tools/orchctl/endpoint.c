/*
 * endpoint.c - where orchctl's addresses come from: the environment, then
 * a --config FILE of KEY=value lines (.env, .env.example, the file
 * deploy/local/run.sh writes), then the --<svc>-url and --endpoints flags.
 *
 * The file is read as deploy/local/run.sh reads .env: blank lines and
 * `#` comments skipped, an optional `export `, KEY=VALUE with the value
 * single- or double-quoted or bare (a bare value ends at " #"); never
 * evaluated as shell. Keys that do not start with ORCH_ belong to other
 * tools sharing the file and are ignored; an ORCH_ key must be one that an
 * orch component reads (a typo is an error, not a silent default).
 *
 * Every layer is applied to the process environment (setenv), the one
 * place the rest of orchctl reads, so a later layer overrides an earlier
 * one. Single-threaded: runs before any client is opened.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard_config.h"
#include "launcher_config.h"
#include "lease_config.h"
#include "orchctl.h"
#include "stage_config.h"

#define LINE_MAX_BYTES 4096

/* Keys the local scripts (deploy/local/run.sh, demo.sh) read from .env. */
static const char *const script_keys[] = { "ORCH_RUN_DIR", "ORCH_BUILD_DIR", "ORCH_SKIP_PACKAGES",
                                           NULL };

static bool known_key(const char *key)
{
    const orch_config_var *const tables[] = { orch_config_common,  lease_config,
                                              lease_client_config, stage_config,
                                              stage_client_config, guard_config,
                                              launcher_config };
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const orch_config_var *v = tables[t]; v->name; v++)
            if (strcmp(v->name, key) == 0)
                return true;
    for (const char *const *k = script_keys; *k; k++)
        if (strcmp(*k, key) == 0)
            return true;
    return false;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* The value part of a line, unquoted, in place. */
static char *unquote(char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        v[n - 1] = '\0';
        return v + 1;
    }
    for (char *p = v; *p; p++)
        if (*p == '#' && p > v && (p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    return trim(v);
}

/* Splits one line into key and value in place: 1 a setting, 0 nothing (a
 * blank line, a comment), -1 not KEY=value. */
static int split_line(char *line, char **key, char **value)
{
    char *s = trim(line);
    if (!s[0] || s[0] == '#')
        return 0;
    if (strncmp(s, "export ", 7) == 0)
        s = trim(s + 7);
    size_t k = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
    if (k == 0 || (s[0] >= '0' && s[0] <= '9'))
        return -1;
    char *eq = s + k;
    while (*eq == ' ' || *eq == '\t')
        eq++;
    if (*eq != '=')
        return -1;
    s[k] = '\0';
    *key = s;
    *value = unquote(trim(eq + 1));
    return 1;
}

/* Sets every ORCH_ key of `path` in the environment; false after a message. */
static bool apply_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "orchctl: --config %s: %s\n", path, strerror(errno));
        return false;
    }
    char line[LINE_MAX_BYTES];
    bool ok = true;
    for (int n = 1; ok && fgets(line, sizeof line, f); n++) {
        char *key, *value;
        size_t len = strlen(line);
        int r = split_line(line, &key, &value);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            fprintf(stderr, "orchctl: --config %s:%d: line longer than %d bytes\n", path, n,
                    LINE_MAX_BYTES - 2);
            ok = false;
        } else if (r < 0) {
            fprintf(stderr, "orchctl: --config %s:%d: not KEY=value\n", path, n);
            ok = false;
        } else if (r > 0 && strncmp(key, "ORCH_", 5) == 0 && !known_key(key)) {
            fprintf(stderr, "orchctl: --config %s:%d: unknown key %s\n", path, n, key);
            ok = false;
        } else if (r > 0 && strncmp(key, "ORCH_", 5) == 0 && setenv(key, value, 1) != 0) {
            fprintf(stderr, "orchctl: --config %s:%d: %s\n", path, n, strerror(errno));
            ok = false;
        }
    }
    if (ok && ferror(f)) {
        fprintf(stderr, "orchctl: --config %s: read error\n", path);
        ok = false;
    }
    fclose(f);
    return ok;
}

/* Whether `url` looks like an NNG address: SCHEME://REST. */
static bool is_url(const char *url)
{
    const char *sep = strstr(url, "://");
    return sep && sep > url && sep[3] != '\0' &&
           strspn(url, "abcdefghijklmnopqrstuvwxyz0123456789+") == (size_t)(sep - url);
}

bool orchctl_endpoints_parse(globals *g, char *spec)
{
    char *save = NULL;
    bool any = false;
    for (char *item = strtok_r(spec, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        const target *t = NULL;
        if (eq) {
            *eq = '\0';
            t = orchctl_target(item);
        }
        if (!t) {
            fprintf(stderr,
                    "orchctl: --endpoints: '%s' is not SERVICE=URL (lease, stage, guard, "
                    "launcher)\n",
                    item);
            return false;
        }
        g->url[t - orchctl_targets] = eq + 1;
        g->url_flag[t - orchctl_targets] = "--endpoints";
        any = true;
    }
    if (!any) {
        fprintf(stderr, "orchctl: --endpoints takes SERVICE=URL[,SERVICE=URL]...\n");
        return false;
    }
    return true;
}

bool orchctl_endpoints_apply(const globals *g)
{
    if (g->config && !apply_file(g->config))
        return false;
    for (size_t k = 0; k < orchctl_ntargets; k++) {
        const char *u = g->url[k];
        if (!u)
            continue;
        if (!is_url(u)) {
            fprintf(stderr, "orchctl: %s: '%s' is not an address (tcp://HOST:PORT)\n",
                    g->url_flag[k], u);
            return false;
        }
        if (setenv(orchctl_targets[k].var, u, 1) != 0) {
            fprintf(stderr, "orchctl: %s: %s\n", g->url_flag[k], strerror(errno));
            return false;
        }
    }
    return true;
}
