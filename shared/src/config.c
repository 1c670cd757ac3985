/*
 * config.c - declarative configuration loaded from the environment.
 *
 * Loading walks every table, checks every variable, and reports all problems
 * before failing, so an operator fixes a deployment in one round. Secret
 * values never reach a message or a dump. Ownership: orch_config_load()
 * allocates the config and copies every value; orch_config_free() frees it.
 */
#include "orch/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct entry {
    const orch_config_var *var;
    char *str;
    int64_t i;
    bool b;
} entry;

struct orch_config {
    size_t n;
    entry *e;
};

static const char *const truthy[] = { "true", "1", "yes", "on" };
static const char *const falsy[] = { "false", "0", "no", "off" };

static bool parse_bool(const char *s, bool *out)
{
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, truthy[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, falsy[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool enum_has(const char *choices, const char *s)
{
    size_t len = strlen(s);
    const char *p = choices;
    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, s, n) == 0)
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

/* Checks and stores one value; on a problem writes one line to errs. */
static bool load_one(entry *e, FILE *errs)
{
    const orch_config_var *v = e->var;
    const char *raw = getenv(v->name);
    bool from_env = raw && raw[0];
    const char *s = from_env ? raw : (v->def ? v->def : "");
    const char *shown = v->secret ? "<secret>" : s;

    if (v->required && !from_env) {
        fprintf(errs, "%s: required but not set (%s)\n", v->name, v->help);
        return false;
    }
    switch (v->type) {
    case ORCH_CFG_STRING: break;
    case ORCH_CFG_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (!s[0] || errno || *end) {
            fprintf(errs, "%s: '%s' is not an integer\n", v->name, shown);
            return false;
        }
        if (x < v->min || x > v->max) {
            fprintf(errs, "%s: %s is outside [%" PRId64 ", %" PRId64 "]\n", v->name, shown, v->min,
                    v->max);
            return false;
        }
        e->i = x;
        break;
    }
    case ORCH_CFG_BOOL:
        if (!parse_bool(s, &e->b)) {
            fprintf(errs, "%s: '%s' is not a boolean (true/false)\n", v->name, shown);
            return false;
        }
        break;
    case ORCH_CFG_ENUM:
        if (!enum_has(v->choices, s)) {
            fprintf(errs, "%s: '%s' is not one of %s\n", v->name, shown, v->choices);
            return false;
        }
        break;
    }
    e->str = strdup(s);
    if (!e->str) {
        fprintf(errs, "%s: out of memory\n", v->name);
        return false;
    }
    return true;
}

orch_err orch_config_load(const orch_config_var *const *tables, FILE *errs, orch_config **out)
{
    size_t n = 0;
    for (size_t t = 0; tables[t]; t++)
        for (const orch_config_var *v = tables[t]; v->name; v++)
            n++;

    orch_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return ORCH_ENOMEM;
    cfg->e = calloc(n ? n : 1, sizeof *cfg->e);
    if (!cfg->e) {
        free(cfg);
        return ORCH_ENOMEM;
    }
    bool ok = true;
    for (size_t t = 0; tables[t]; t++) {
        for (const orch_config_var *v = tables[t]; v->name; v++) {
            bool dup = false;
            for (size_t k = 0; k < cfg->n; k++)
                dup = dup || strcmp(cfg->e[k].var->name, v->name) == 0;
            if (dup)
                continue; /* shared keys may appear in several tables */
            entry *e = &cfg->e[cfg->n++];
            e->var = v;
            ok = load_one(e, errs) && ok;
        }
    }
    if (!ok) {
        orch_config_free(cfg);
        return ORCH_EINVAL;
    }
    *out = cfg;
    return ORCH_OK;
}

void orch_config_free(orch_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n; i++)
        free(cfg->e[i].str);
    free(cfg->e);
    free(cfg);
}

static const entry *find(const orch_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->e[i].var->name, name) == 0)
            return &cfg->e[i];
    fprintf(stderr, "orch: configuration key %s is not declared\n", name);
    abort(); /* a programming error, not an input error */
}

const char *orch_config_str(const orch_config *cfg, const char *name)
{
    return find(cfg, name)->str;
}

int64_t orch_config_int(const orch_config *cfg, const char *name)
{
    return find(cfg, name)->i;
}

bool orch_config_bool(const orch_config *cfg, const char *name)
{
    return find(cfg, name)->b;
}

void orch_config_dump(const orch_config *cfg, FILE *out)
{
    for (size_t i = 0; i < cfg->n; i++) {
        const entry *e = &cfg->e[i];
        if (e->var->secret)
            fprintf(out, "%s=%s\n", e->var->name, e->str[0] ? "<set>" : "<unset>");
        else
            fprintf(out, "%s=%s\n", e->var->name, e->str);
    }
}

/* Keys every service reads. Keep .env.example in step (a unit test checks). */
const orch_config_var orch_config_common[] = {
    { "ORCH_DATABASE_URL", ORCH_CFG_STRING, NULL, 0, 0, NULL, true, true,
      "libpq connection URI or key=value string of the shared database" },
    { "ORCH_RUNTIME", ORCH_CFG_ENUM, NULL, 0, 0, "live|staging|test", true, false,
      "where this process runs: live, staging or test (test denies tracker writes and "
      "non-loopback HTTP)" },
    { "ORCH_GUARD_RPC_URL", ORCH_CFG_STRING, "tcp://127.0.0.1:7703", 0, 0, NULL, false, false,
      "NNG address of guard-service (it listens there; the others send alerts there)" },
    { "ORCH_ALERT_NOTIFY", ORCH_CFG_BOOL, "false", 0, 0, NULL, false, false,
      "send alerts to guard-service's Notify (besides the log)" },
    { "ORCH_DB_POOL_SIZE", ORCH_CFG_INT, "8", 1, 64, NULL, false, false,
      "database connections per service process; keep it >= ORCH_RPC_WORKERS" },
    { "ORCH_DB_CONNECT_TIMEOUT_S", ORCH_CFG_INT, "5", 1, 300, NULL, false, false,
      "seconds allowed for one connection attempt" },
    { "ORCH_DB_LOCK_TIMEOUT_MS", ORCH_CFG_INT, "5000", 100, 600000, NULL, false, false,
      "milliseconds one statement may wait for a row or table lock (lock_timeout)" },
    { "ORCH_DB_IDLE_IN_TX_TIMEOUT_MS", ORCH_CFG_INT, "30000", 1000, 3600000, NULL, false, false,
      "milliseconds a session may sit idle inside a transaction before the server ends it "
      "and frees its locks (idle_in_transaction_session_timeout)" },
    { "ORCH_DB_PROBE_INTERVAL_MS", ORCH_CFG_INT, "1000", 100, 60000, NULL, false, false,
      "milliseconds between database health probes" },
    { "ORCH_DB_STARTUP_WAIT_S", ORCH_CFG_INT, "30", 0, 3600, NULL, false, false,
      "seconds to wait for the database at start-up before exiting" },
    { "ORCH_LOG_LEVEL", ORCH_CFG_ENUM, "info", 0, 0, "debug|info|warn|error", false, false,
      "lowest level written to the JSON log on stderr" },
    { "ORCH_HOST_ID", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "stable name of this host; empty means the hostname" },
    { "ORCH_BOOT_ID_PATH", ORCH_CFG_STRING, "/proc/sys/kernel/random/boot_id", 0, 0, NULL, false,
      false, "file holding this host's boot id (a test may point it elsewhere)" },
    { "ORCH_RPC_MAX_MSG_BYTES", ORCH_CFG_INT, "1048576", 1024, 67108864, NULL, false, false,
      "largest RPC message accepted (NNG_OPT_RECVMAXSZ)" },
    { "ORCH_RPC_CONCURRENCY", ORCH_CFG_INT, "64", 1, 4096, NULL, false, false,
      "RPC requests a service holds at once (NNG contexts)" },
    { "ORCH_RPC_WORKERS", ORCH_CFG_INT, "8", 1, 256, NULL, false, false,
      "threads that run RPC handlers" },
    { "ORCH_RPC_DEFAULT_TIMEOUT_MS", ORCH_CFG_INT, "5000", 1, 3600000, NULL, false, false,
      "budget of a request that carries no deadline" },
    { "ORCH_RPC_DEDUP_ENTRIES", ORCH_CFG_INT, "4096", 16, 1048576, NULL, false, false,
      "request ids remembered to answer re-sent requests once" },
    { "ORCH_RPC_DEDUP_TTL_S", ORCH_CFG_INT, "120", 1, 86400, NULL, false, false,
      "seconds a finished reply is remembered for a re-sent request" },
    { "ORCH_RPC_AUTH_TOKEN", ORCH_CFG_STRING, "", 0, 0, NULL, false, true,
      "one token every RPC must carry, granting every method; empty disables the check "
      "(superseded by ORCH_RPC_TOKENS, exclusive with it)" },
    { "ORCH_RPC_TOKENS", ORCH_CFG_STRING, "", 0, 0, NULL, false, true,
      "role:token,... the callers this service accepts (roles operator, stage, launcher, lease, "
      "guard); set, each method admits only its roles (docs/rpc.md); empty = every caller "
      "allowed (development default)" },
    { "ORCH_RPC_ROLE_TOKEN", ORCH_CFG_STRING, "", 0, 0, NULL, false, true,
      "token this service sends to the others, naming its role in their ORCH_RPC_TOKENS" },
    { "ORCH_TLS_MODE", ORCH_CFG_ENUM, "off", 0, 0, "off|on|mutual", false, false,
      "RPC transport: off = tcp://, on = tls+tcp:// (clients verify servers), mutual = tls+tcp:// "
      "and servers require client certificates; tcp:// addresses are rewritten to tls+tcp://" },
    { "ORCH_TLS_CERT_FILE", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "PEM certificate of this process (TLS on/mutual)" },
    { "ORCH_TLS_KEY_FILE", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "PEM private key of ORCH_TLS_CERT_FILE, unencrypted (TLS on/mutual)" },
    { "ORCH_TLS_CA_FILE", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "PEM CA certificate that signs every service's and caller's certificate (TLS on/mutual)" },
    { "ORCH_SHUTDOWN_GRACE_S", ORCH_CFG_INT, "30", 0, 3600, NULL, false, false,
      "seconds in-flight requests may take to finish after SIGTERM" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};
