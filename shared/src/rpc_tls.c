/*
 * rpc_tls.c - roles, role tokens, the method-to-roles table of a server,
 * TLS configurations and the process's client defaults (rpc_tls.h, rpc.h).
 *
 * NNG 1.5.2 (Debian 12) verifies certificates but does not expose the
 * peer's subject (NNG_OPT_TLS_PEER_CN came later), so a caller's role is
 * proved by its token, which TLS keeps off the wire in clear; mutual TLS
 * admits only holders of a certificate signed by the deployment's CA.
 * Errors: ORCH_EINVAL with one line in `why`; token values never appear in
 * a message. Ownership: parsed tables and NNG configurations belong to the
 * caller; the defaults are copies owned here for the process's life.
 */
#include "rpc_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/log.h"

static const char *const role_names[ORCH_ROLE_COUNT] = { "operator", "stage", "launcher", "lease",
                                                         "guard" };

const char *orch_rpc_role_name(unsigned role)
{
    if (role == 0)
        return "none";
    for (unsigned i = 0; i < ORCH_ROLE_COUNT; i++)
        if (role == 1u << i)
            return role_names[i];
    return "unknown";
}

unsigned orch_rpc_role_parse(const char *name)
{
    for (unsigned i = 0; name && i < ORCH_ROLE_COUNT; i++)
        if (strcmp(name, role_names[i]) == 0)
            return 1u << i;
    return 0;
}

orch_err orch_rpc_tls_mode_parse(const char *text, orch_tls_mode *out)
{
    static const char *const names[] = { "off", "on", "mutual" };
    for (int i = 0; text && i < 3; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (orch_tls_mode)i;
            return ORCH_OK;
        }
    }
    return ORCH_EINVAL;
}

/* ---- role tokens ------------------------------------------------------- */

void orch__role_tokens_free(orch__role_tokens *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->token[i]);
    free(t->token);
    free(t->role);
    free(t);
}

/* Adds one "role:token" item (len bytes at p) to t. */
static orch_err add_item(orch__role_tokens *t, const char *p, size_t len, char *why, size_t n)
{
    const char *colon = memchr(p, ':', len);
    char role[32];
    size_t rlen = colon ? (size_t)(colon - p) : 0;
    if (!colon || rlen == 0 || rlen >= sizeof role || colon + 1 == p + len) {
        snprintf(why, n, "ORCH_RPC_TOKENS: item %zu is not role:token", t->n + 1);
        return ORCH_EINVAL;
    }
    memcpy(role, p, rlen);
    role[rlen] = '\0';
    unsigned r = orch_rpc_role_parse(role);
    if (!r) {
        snprintf(why, n,
                 "ORCH_RPC_TOKENS: unknown role '%.31s' (operator, stage, launcher, lease, "
                 "guard)",
                 role);
        return ORCH_EINVAL;
    }
    char *tok = strndup(colon + 1, (size_t)(p + len - colon - 1));
    if (!tok)
        return ORCH_ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->token[i], tok) == 0) {
            snprintf(why, n, "ORCH_RPC_TOKENS: the token of role %s is given twice", role);
            free(tok);
            return ORCH_EINVAL;
        }
    }
    t->token[t->n] = tok;
    t->role[t->n++] = r;
    return ORCH_OK;
}

orch_err orch__role_tokens_parse(const char *spec, orch__role_tokens **out, char *why, size_t n)
{
    size_t items = 1;
    for (const char *p = spec; *p; p++)
        items += *p == ',';
    orch__role_tokens *t = calloc(1, sizeof *t);
    if (!t || !(t->token = calloc(items, sizeof *t->token)) ||
        !(t->role = calloc(items, sizeof *t->role))) {
        orch__role_tokens_free(t);
        return ORCH_ENOMEM;
    }
    orch_err err = ORCH_OK;
    for (const char *p = spec; !err && spec[0];) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        err = add_item(t, p, len, why, n);
        if (!comma)
            break;
        p = comma + 1;
    }
    if (err) {
        orch__role_tokens_free(t);
        return err;
    }
    *out = t;
    return ORCH_OK;
}

orch_err orch_rpc_role_tokens_check(const char *spec, char *why, size_t n)
{
    orch__role_tokens *t = NULL;
    orch_err err = orch__role_tokens_parse(spec ? spec : "", &t, why, n);
    orch__role_tokens_free(t);
    return err;
}

orch_err orch__role_tokens_load(const char *auth_token, const char *role_tokens,
                                orch__role_tokens **out)
{
    char why[256];
    *out = NULL;
    if (!role_tokens || !role_tokens[0])
        return ORCH_OK;
    if (auth_token && auth_token[0]) {
        orch_error("RPC server refused: an auth token and role tokens are exclusive");
        return ORCH_EINVAL;
    }
    orch_err err = orch__role_tokens_parse(role_tokens, out, why, sizeof why);
    if (err == ORCH_EINVAL)
        orch_error("RPC server refused: %s", why);
    return err;
}

size_t orch__role_label(unsigned role)
{
    for (size_t i = 0; i < ORCH_ROLE_COUNT; i++)
        if (role & (1u << i))
            return i + 1;
    return 0;
}

void orch__method_roles(const orch_rpc_service *svc, unsigned *out)
{
    const ProtobufCServiceDescriptor *d = svc->desc;
    for (unsigned i = 0; i < d->n_methods; i++)
        for (size_t k = 0; k < svc->nmethods; k++)
            if (strcmp(svc->methods[k].name, d->methods[i].name) == 0)
                out[i] = svc->methods[k].roles;
}

/* strcmp's equality in time that depends on the lengths only. */
static bool same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

unsigned orch__role_of(const orch__role_tokens *t, const char *token)
{
    unsigned role = 0;
    for (size_t i = 0; token && i < t->n; i++)
        if (same_secret(t->token[i], token))
            role = t->role[i];
    return role;
}

/* ---- addresses and TLS configurations ----------------------------------- */

orch_err orch__tls_url(const char *url, orch_tls_mode mode, char **out)
{
    bool tls_url = strncmp(url, "tls+tcp://", 10) == 0;
    if (tls_url && mode == ORCH_TLS_OFF)
        return ORCH_EINVAL;
    char *s = NULL;
    if (!tls_url && mode != ORCH_TLS_OFF && strncmp(url, "tcp://", 6) == 0) {
        if (asprintf(&s, "tls+%s", url) < 0)
            s = NULL;
    } else {
        s = strdup(url);
    }
    if (!s)
        return ORCH_ENOMEM;
    *out = s;
    return ORCH_OK;
}

orch_err orch_rpc_tls_check(const orch_rpc_tls *tls, bool server, const char *url, char *why,
                            size_t n)
{
    orch_tls_mode mode = tls ? tls->mode : ORCH_TLS_OFF;
    bool tcp = url && strncmp(url, "tcp://", 6) == 0;
    bool tls_url = url && strncmp(url, "tls+tcp://", 10) == 0;
    if (url && !tcp && !tls_url) {
        snprintf(why, n, "address '%.200s' is neither tcp:// nor tls+tcp://", url);
        return ORCH_EINVAL;
    }
    if (tls_url && mode == ORCH_TLS_OFF) {
        snprintf(why, n, "address '%.200s' is tls+tcp:// but ORCH_TLS_MODE is off", url);
        return ORCH_EINVAL;
    }
    if (mode == ORCH_TLS_OFF)
        return ORCH_OK;
    bool own = server || mode == ORCH_TLS_MUTUAL;
    const struct {
        const char *var, *path;
        bool needed;
    } files[] = { { "ORCH_TLS_CA_FILE", tls->ca_file, true },
                  { "ORCH_TLS_CERT_FILE", tls->cert_file, own },
                  { "ORCH_TLS_KEY_FILE", tls->key_file, own } };
    for (size_t i = 0; i < 3; i++) {
        const char *p = files[i].path;
        if (files[i].needed && (!p || !p[0])) {
            snprintf(why, n, "ORCH_TLS_MODE=%s needs %s", mode == ORCH_TLS_ON ? "on" : "mutual",
                     files[i].var);
            return ORCH_EINVAL;
        }
        if (p && p[0] && access(p, R_OK) != 0) {
            snprintf(why, n, "%s: cannot read '%.200s'", files[i].var, p);
            return ORCH_EINVAL;
        }
    }
    if ((!tls->cert_file || !tls->cert_file[0]) != (!tls->key_file || !tls->key_file[0])) {
        snprintf(why, n, "ORCH_TLS_CERT_FILE and ORCH_TLS_KEY_FILE go together");
        return ORCH_EINVAL;
    }
    return ORCH_OK;
}

/* The whole of file `path`, NUL-terminated, malloc'ed; NULL on failure. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    char chunk[4096];
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + got + 1 > cap) {
            cap = (len + got + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        memcpy(buf + len, chunk, got);
        len += got;
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Loads this process's certificate and key into cfg. */
static int own_cert(nng_tls_config *cfg, const orch_rpc_tls *tls)
{
    char *cert = slurp(tls->cert_file), *key = slurp(tls->key_file);
    int rv = cert && key ? nng_tls_config_own_cert(cfg, cert, key, NULL) : NNG_ENOENT;
    if (key)
        explicit_bzero(key, strlen(key));
    free(cert);
    free(key);
    return rv;
}

orch_err orch__tls_config(const orch_rpc_tls *tls, bool server, const char *host,
                          nng_tls_config **out)
{
    nng_tls_config *cfg = NULL;
    const char *step = "allocate";
    int rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT);
    if (rv == 0) {
        step = "load ORCH_TLS_CA_FILE";
        rv = nng_tls_config_ca_file(cfg, tls->ca_file);
    }
    if (rv == 0 && tls->cert_file && tls->cert_file[0]) {
        step = "load ORCH_TLS_CERT_FILE/ORCH_TLS_KEY_FILE";
        rv = own_cert(cfg, tls);
    }
    if (rv == 0) {
        step = "set the authentication mode";
        rv = nng_tls_config_auth_mode(cfg, !server || tls->mode == ORCH_TLS_MUTUAL
                                               ? NNG_TLS_AUTH_MODE_REQUIRED
                                               : NNG_TLS_AUTH_MODE_NONE);
    }
    if (rv == 0 && !server && host && host[0]) {
        step = "set the server name";
        rv = nng_tls_config_server_name(cfg, host);
    }
    if (rv != 0) {
        orch_error("TLS: cannot %s: %s", step, nng_strerror(rv));
        if (cfg)
            nng_tls_config_free(cfg);
        return rv == NNG_ENOMEM ? ORCH_ENOMEM : ORCH_EINVAL;
    }
    *out = cfg;
    return ORCH_OK;
}

int orch__listener_tls(nng_listener l, const orch_rpc_tls *tls)
{
    nng_tls_config *cfg = NULL;
    if (!tls || tls->mode == ORCH_TLS_OFF)
        return 0;
    if (orch__tls_config(tls, true, NULL, &cfg) != ORCH_OK)
        return NNG_EINVAL;
    int rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg);
    nng_tls_config_free(cfg); /* the listener holds its own reference */
    return rv;
}

/* ---- client defaults ---------------------------------------------------- */

static struct {
    bool has_tls;
    orch_rpc_tls tls;
    char *cert, *key, *ca, *token;
} D;

static char *dup_or_null(const char *s)
{
    return s && s[0] ? strdup(s) : NULL;
}

orch_err orch_rpc_client_defaults(const orch_rpc_tls *tls, const char *token)
{
    free(D.cert);
    free(D.key);
    free(D.ca);
    free(D.token);
    memset(&D, 0, sizeof D);
    D.token = dup_or_null(token);
    if (tls) {
        D.cert = dup_or_null(tls->cert_file);
        D.key = dup_or_null(tls->key_file);
        D.ca = dup_or_null(tls->ca_file);
        D.tls = (orch_rpc_tls){ tls->mode, D.cert, D.key, D.ca };
        D.has_tls = true;
    }
    if ((token && token[0] && !D.token) || (tls && tls->cert_file && tls->cert_file[0] && !D.cert))
        return ORCH_ENOMEM;
    return ORCH_OK;
}

const orch_rpc_tls *orch__client_default_tls(void)
{
    return D.has_tls ? &D.tls : NULL;
}

const char *orch__client_default_token(void)
{
    return D.token;
}

static const char *env_or_empty(const char *name)
{
    const char *v = getenv(name);
    return v ? v : "";
}

orch_err orch_rpc_client_env(char *why, size_t n)
{
    orch_rpc_tls tls = { ORCH_TLS_OFF, env_or_empty("ORCH_TLS_CERT_FILE"),
                         env_or_empty("ORCH_TLS_KEY_FILE"), env_or_empty("ORCH_TLS_CA_FILE") };
    const char *mode = env_or_empty("ORCH_TLS_MODE");
    if (mode[0] && orch_rpc_tls_mode_parse(mode, &tls.mode) != ORCH_OK) {
        snprintf(why, n, "ORCH_TLS_MODE: '%.50s' is not one of off|on|mutual", mode);
        return ORCH_EINVAL;
    }
    if (orch_rpc_tls_check(&tls, false, NULL, why, n) != ORCH_OK)
        return ORCH_EINVAL;
    const char *token = env_or_empty("ORCH_RPC_ROLE_TOKEN");
    if (!token[0])
        token = env_or_empty("ORCH_RPC_AUTH_TOKEN");
    orch_err err = orch_rpc_client_defaults(&tls, token);
    if (err)
        snprintf(why, n, "%s", orch_strerror(err));
    return err;
}
