/*
 * svc.c - start-up, serving and shutdown common to every service.
 *
 * Threads: the main thread blocks SIGTERM/SIGINT before any other thread
 * exists and later waits for them with sigtimedwait(); NNG threads run RPC
 * receive callbacks and HTTP routes; the RPC workers run handlers; one probe
 * thread checks the database and publishes the result in atomics that the
 * health RPC and /healthz read without blocking.
 * Exit status: 0 after a clean stop (or, with --migrate-only, once the
 * schema is up to date), 1 on a start-up failure, 2 on a configuration error.
 * Under systemd (Type=notify) READY=1 goes to $NOTIFY_SOCKET once both
 * listeners are up and the database answered; STOPPING=1 on SIGTERM.
 */
#include "orch/svc.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "orch/v1/health.pb-c.h"
#include "orch/alert_notify.h"
#include "orch/clock.h"
#include "orch/guard.h"
#include "orch/http.h"
#include "orch/httpc.h"
#include "orch/log.h"
#include "orch/migrate.h"
#include "orch/ticker.h"

#ifndef ORCH_VERSION
#define ORCH_VERSION "0.0.0"
#endif

#define MAX_RPC_SERVICES 8

#define MAX_HTTP_HANDLERS 16
#define HTTP_WORKERS      4 /* threads of the blocking HTTP handlers */

struct orch_service {
    const orch_service_def *def;
    orch_config *cfg;
    orch_ident ident;
    orch_db_pool *db;
    orch_metrics *metrics;
    orch_rpc_service rpcs[MAX_RPC_SERVICES];
    size_t nrpcs;
    orch_http_handler https[MAX_HTTP_HANDLERS];
    size_t nhttps;
    orch_rpc_server *rpc;
    orch_http_server *http;
    void *state;

    orch_ticker *probe;         /* the database probe, NULL when not running */
    uint64_t probe_interval_ms; /* ORCH_DB_PROBE_INTERVAL_MS */
    pthread_mutex_t mu;
    char db_error[256]; /* guarded by mu */
    atomic_bool serving;
    atomic_bool db_ok;
    _Atomic uint64_t db_checked_ms;
    _Atomic uint64_t db_probes;
    const char *info_values[2]; /* orch_build_info: version, service */
    orch_runtime runtime;
    orch_rpc_tls tls; /* from the configuration; strings owned by cfg */
    bool alert_notify;
};

const orch_config *orch_service_config(const orch_service *s)
{
    return s->cfg;
}
orch_db_pool *orch_service_db(const orch_service *s)
{
    return s->db;
}
const orch_ident *orch_service_ident(const orch_service *s)
{
    return &s->ident;
}
orch_metrics *orch_service_metrics(const orch_service *s)
{
    return s->metrics;
}
int orch_service_runtime(const orch_service *s)
{
    return (int)s->runtime;
}
void orch_service_set_state(orch_service *s, void *state)
{
    s->state = state;
}
void *orch_service_state(const orch_service *s)
{
    return s->state;
}

orch_err orch_service_add_http(orch_service *s, const orch_http_handler *h)
{
    if (s->http || s->nhttps == MAX_HTTP_HANDLERS)
        return ORCH_ERANGE;
    s->https[s->nhttps++] = *h;
    return ORCH_OK;
}

orch_err orch_service_add_https(orch_service *s, const orch_http_handler *hs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        orch_err err = orch_service_add_http(s, &hs[i]);
        if (err)
            return err;
    }
    return ORCH_OK;
}

orch_err orch_service_add_rpc(orch_service *s, const orch_rpc_service *rpc)
{
    char why[256];
    if (s->rpc || s->nrpcs == MAX_RPC_SERVICES)
        return ORCH_EINVAL;
    if (orch_rpc_match(rpc, NULL, 0, why, sizeof why) != ORCH_OK) {
        orch_error("%s: cannot register RPC: %s", s->def->name, why);
        return ORCH_EINVAL;
    }
    for (size_t i = 0; i < rpc->nmethods; i++) {
        if (rpc->methods[i].handler && !(rpc->methods[i].roles & ORCH_ROLE_ANY)) {
            orch_error("%s: cannot register RPC: %s/%s names no role that may call it",
                       s->def->name, rpc->desc->name, rpc->methods[i].name);
            return ORCH_EINVAL;
        }
    }
    s->rpcs[s->nrpcs++] = *rpc;
    return ORCH_OK;
}

/* ---- database probe ----------------------------------------------------- */

static void probe_once(orch_service *s, uint64_t budget_ms)
{
    orch_db_conn *c;
    uint64_t deadline = orch_mono_ms() + budget_ms;
    orch_err err = orch_db_acquire(s->db, deadline, &c);
    if (err == ORCH_ETIMEDOUT)
        return; /* every connection busy: says nothing about the database */
    char why[256] = "";
    if (!err) {
        err = orch_db_exec(c, deadline, "SELECT 1", 0, NULL, NULL);
        if (err)
            snprintf(why, sizeof why, "%s", orch_db_last_error(c));
        orch_db_release(c);
    } else {
        snprintf(why, sizeof why, "%s", orch_strerror(err));
    }
    atomic_fetch_add(&s->db_probes, 1);
    bool was = atomic_exchange(&s->db_ok, err == ORCH_OK);
    atomic_store(&s->db_checked_ms, orch_mono_ms());
    pthread_mutex_lock(&s->mu);
    snprintf(s->db_error, sizeof s->db_error, "%s", err ? why : "");
    pthread_mutex_unlock(&s->mu);
    if (was && err)
        orch_error("database unreachable: %s", why);
    else if (!was && !err)
        orch_info("database reachable again");
}

static bool probe_tick(void *arg)
{
    orch_service *s = arg;
    probe_once(s, s->probe_interval_ms);
    return true;
}

/* ---- health: RPC and HTTP ----------------------------------------------- */

static bool healthy(orch_service *s)
{
    return atomic_load(&s->serving) && atomic_load(&s->db_ok);
}

static bool known_service(const orch_service *s, const char *name)
{
    if (!name[0] || strcmp(name, s->def->name) == 0)
        return true;
    for (size_t i = 0; i < s->nrpcs; i++)
        if (strcmp(name, s->rpcs[i].desc->name) == 0)
            return true;
    return false;
}

/* Why the service is not serving, into `why` (empty when it is). */
static void not_serving_why(orch_service *s, char *why, size_t n)
{
    why[0] = '\0';
    if (healthy(s))
        return;
    if (!atomic_load(&s->serving)) {
        snprintf(why, n, "%s is shutting down", s->def->name);
        return;
    }
    pthread_mutex_lock(&s->mu);
    snprintf(why, n, "database unreachable: %.200s", s->db_error);
    pthread_mutex_unlock(&s->mu);
}

/* gRPC's health convention: a process that answers replies OK, and its
 * state is the reply's status (NOT_SERVING with `detail` saying why). An
 * error code means the question could not be answered (unknown service). */
static orch_code health_check(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    orch_service *s = arg;
    const Orch__V1__HealthCheckRequest *req = (const Orch__V1__HealthCheckRequest *)msg;
    Orch__V1__HealthCheckResponse rep = ORCH__V1__HEALTH_CHECK_RESPONSE__INIT;
    char why[256];

    if (!known_service(s, req->service))
        return orch_rpc_fail(call, ORCH_CODE_NOT_FOUND, "no service '%.200s' here", req->service);
    not_serving_why(s, why, sizeof why);
    rep.status = why[0] == '\0'
                     ? ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_SERVING
                     : ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_NOT_SERVING;
    rep.detail = why;
    rep.server = (char *)s->def->name;
    rep.instance_id = s->ident.instance_id;
    rep.host_id = s->ident.host_id;
    rep.database_ok = atomic_load(&s->db_ok);
    rep.database_checked_ms_ago = orch_mono_ms() - atomic_load(&s->db_checked_ms);
    rep.version = (char *)ORCH_VERSION;
    return orch_rpc_reply(call, &rep.base);
}

static const orch_rpc_method health_methods[] = {
    { .name = "Check", .handler = health_check, .roles = ORCH_ROLE_ANY },
};

/* /readyz (and /healthz, its older name): 200 when the service serves and
 * its database answers; 503 with the reason otherwise. */
static int http_readyz(void *arg, char **body, size_t *len, const char **ctype)
{
    orch_service *s = arg;
    char why[256], text[300];
    (void)ctype;
    not_serving_why(s, why, sizeof why);
    bool ready = why[0] == '\0';
    snprintf(text, sizeof text, "%s%s\n", ready ? "ok" : "unavailable: ", why);
    *body = strdup(text);
    *len = *body ? strlen(*body) : 0;
    return ready ? 200 : 503;
}

/* /livez: 200 as long as the process answers HTTP, whatever the database
 * does, so that a liveness probe does not restart every service on a
 * database blip. */
static int http_livez(void *arg, char **body, size_t *len, const char **ctype)
{
    (void)arg;
    (void)ctype;
    *body = strdup("ok\n");
    *len = *body ? strlen(*body) : 0;
    return 200;
}

static int http_metrics(void *arg, char **body, size_t *len, const char **ctype)
{
    orch_service *s = arg;
    if (orch_metrics_render(s->metrics, body, len) != ORCH_OK)
        return 500;
    *ctype = "text/plain; version=0.0.4; charset=utf-8";
    return 200;
}

static double gauge_db_up(void *arg)
{
    return atomic_load(&((orch_service *)arg)->db_ok) ? 1.0 : 0.0;
}

static double counter_db_probes(void *arg)
{
    return (double)atomic_load(&((orch_service *)arg)->db_probes);
}

static double gauge_runtime_live(void *arg)
{
    return ((orch_service *)arg)->runtime == ORCH_RUNTIME_LIVE ? 1.0 : 0.0;
}

/* The families every service exports, before the service adds its own. */
static void register_common_metrics(orch_service *s)
{
    static const char *const info_keys[] = { "version", "service" };
    s->info_values[0] = ORCH_VERSION;
    s->info_values[1] = s->def->name;
    orch_metrics_info(s->metrics, "orch_build_info", "Version of the running binary, always 1",
                      info_keys, s->info_values, 2);
    orch_metrics_gauge_fn(s->metrics, "orch_database_up",
                          "1 when the last database probe succeeded", gauge_db_up, s);
    orch_metrics_counter_fn(s->metrics, "orch_database_probes_total",
                            "Database health probes run since start", counter_db_probes, s);
    orch_metrics_gauge_fn(s->metrics, "orch_runtime_live",
                          "1 when ORCH_RUNTIME is live (alerts on guard blocks use it)",
                          gauge_runtime_live, s);
    orch_metrics_process(s->metrics);
}

/* ---- start-up ----------------------------------------------------------- */

static void usage(const orch_service_def *def, FILE *out)
{
    fprintf(out,
            "usage: %s [--help] [--version] [--print-config] [--migrate-only]\n"
            "  Configured from the environment only; --print-config lists the\n"
            "  variables read, with defaults (secrets are not shown).\n"
            "  --migrate-only waits for the database, applies the pending\n"
            "  migrations and exits 0 (1 on failure) without serving.\n",
            def->name);
}

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (a path,
 * or an abstract name when it starts with '@'). Does nothing when the
 * variable is unset; a failure is logged and otherwise ignored. */
static void notify_supervisor(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    size_t n = path ? strlen(path) : 0;
    if (n == 0)
        return;
    if (n >= sizeof a.sun_path || (path[0] != '/' && path[0] != '@')) {
        orch_warn("NOTIFY_SOCKET '%.100s' is not a usable socket address", path);
        return;
    }
    memcpy(a.sun_path, path, n);
    if (path[0] == '@')
        a.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&a,
                         (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
        orch_warn("cannot notify the supervisor at %.100s", path);
    if (fd >= 0)
        close(fd);
}

/* Parses arguments; returns -1 to go on, or an exit status. */
static int parse_args(const orch_service_def *def, int argc, char **argv, bool *print_config,
                      bool *migrate_only)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "print-config", no_argument, NULL, 'p' },
        { "migrate-only", no_argument, NULL, 'm' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'h': usage(def, stdout); return 0;
        case 'V': printf("%s %s\n", def->name, ORCH_VERSION); return 0;
        case 'p': *print_config = true; break;
        case 'm': *migrate_only = true; break;
        default: usage(def, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", def->name, argv[optind]);
        usage(def, stderr);
        return 2;
    }
    return -1;
}

/* Reads and checks the RPC security settings into s->tls and makes them
 * the defaults of this process's clients; false with `why` on a problem. */
static bool load_security(orch_service *s, char *why, size_t n)
{
    const orch_config *cfg = s->cfg;
    const char *auth = orch_config_str(cfg, "ORCH_RPC_AUTH_TOKEN");
    const char *tokens = orch_config_str(cfg, "ORCH_RPC_TOKENS");
    const char *mine = orch_config_str(cfg, "ORCH_RPC_ROLE_TOKEN");
    s->tls = (orch_rpc_tls){ ORCH_TLS_OFF, orch_config_str(cfg, "ORCH_TLS_CERT_FILE"),
                             orch_config_str(cfg, "ORCH_TLS_KEY_FILE"),
                             orch_config_str(cfg, "ORCH_TLS_CA_FILE") };
    if (orch_rpc_tls_mode_parse(orch_config_str(cfg, "ORCH_TLS_MODE"), &s->tls.mode) != ORCH_OK) {
        snprintf(why, n, "ORCH_TLS_MODE must be off, on or mutual");
        return false;
    }
    if (orch_rpc_tls_check(&s->tls, true, orch_config_str(cfg, s->def->rpc_url_var), why, n) !=
        ORCH_OK)
        return false;
    if (auth[0] && (tokens[0] || mine[0])) {
        snprintf(why, n,
                 "ORCH_RPC_AUTH_TOKEN is replaced by ORCH_RPC_TOKENS and ORCH_RPC_ROLE_TOKEN: set "
                 "one scheme, not both");
        return false;
    }
    if (orch_rpc_role_tokens_check(tokens, why, n) != ORCH_OK)
        return false;
    if (orch_rpc_client_defaults(&s->tls, mine[0] ? mine : auth) != ORCH_OK) {
        snprintf(why, n, "out of memory");
        return false;
    }
    return true;
}

/* load_security, and the start-up warnings of the development defaults.
 * 0, or 2 on a configuration error. */
static int setup_security(orch_service *s)
{
    char why[300];
    if (!load_security(s, why, sizeof why)) {
        orch_error("configuration: %s", why);
        orch_error("configuration invalid; not starting");
        return 2;
    }
    if (!orch_config_str(s->cfg, "ORCH_RPC_TOKENS")[0])
        orch_warn("RPC authorization is off (ORCH_RPC_TOKENS unset): every caller may call every "
                  "method; this is the development default, not for a shared network");
    if (s->tls.mode == ORCH_TLS_OFF)
        orch_warn("RPC runs over plain tcp (ORCH_TLS_MODE=off): tokens and payloads travel in "
                  "clear");
    return 0;
}

/* Loads configuration, reporting every problem as one log line each. */
static int load_config(orch_service *s)
{
    const orch_config_var *tables[8] = { orch_config_common, s->def->config };
    size_t nt = 2;
    for (size_t i = 0; s->def->extra_config && s->def->extra_config[i] && nt < 7; i++)
        tables[nt++] = s->def->extra_config[i];
    tables[nt] = NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *errs = open_memstream(&buf, &len);
    if (!errs)
        return 1;
    orch_err err = orch_config_load(tables, errs, &s->cfg);
    fclose(errs);
    if (err) {
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
            orch_error("configuration: %s", line);
        orch_error("configuration invalid; not starting");
    }
    free(buf);
    return err ? 2 : 0;
}

static bool stop_requested(const sigset_t *set, uint64_t wait_ms)
{
    struct timespec ts = { (time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L };
    return sigtimedwait(set, NULL, &ts) > 0;
}

/* Waits for the database, then migrates. 0, 1 (failure) or 3 (stopped). */
static int prepare_database(orch_service *s, const sigset_t *sigs)
{
    uint64_t wait_ms = (uint64_t)orch_config_int(s->cfg, "ORCH_DB_STARTUP_WAIT_S") * 1000;
    uint64_t until = orch_mono_ms() + wait_ms;
    uint64_t attempt_ms = (uint64_t)orch_config_int(s->cfg, "ORCH_DB_CONNECT_TIMEOUT_S") * 1000;
    orch_db_conn *c = NULL;
    orch_err err;
    for (;;) {
        err = orch_db_acquire(s->db, orch_mono_ms() + attempt_ms, &c);
        if (!err || orch_mono_ms() >= until)
            break;
        orch_warn("waiting for the database: %s", orch_strerror(err));
        if (stop_requested(sigs, 500))
            return 3;
    }
    if (err) {
        orch_error("database unreachable after %llu s; giving up",
                   (unsigned long long)(wait_ms / 1000));
        return 1;
    }
    int applied = 0;
    err = orch_migrate(c, orch_mono_ms() + 600000, &applied);
    orch_db_release(c);
    if (err) {
        orch_error("migrations failed: %s", orch_strerror(err));
        return 1;
    }
    orch_info("schema up to date (%d migration(s) applied now)", applied);
    atomic_store(&s->db_ok, true);
    atomic_store(&s->db_checked_ms, orch_mono_ms());
    return 0;
}

static orch_err start_serving(orch_service *s)
{
    const orch_config *cfg = s->cfg;
    /* Check reads atomics only: it is answered on NNG's thread. */
    orch_rpc_service health = { .desc = &orch__v1__health_service__descriptor,
                                .methods = health_methods,
                                .nmethods = 1,
                                .arg = s,
                                .nonblocking = true };
    orch_err err = orch_service_add_rpc(s, &health);
    if (!err && orch_config_bool(cfg, "ORCH_ALERT_NOTIFY") &&
        strcmp(s->def->rpc_url_var, "ORCH_GUARD_RPC_URL") != 0) {
        err = orch_alert_notify_start(orch_config_str(cfg, "ORCH_GUARD_RPC_URL"),
                                      orch_config_str(cfg, "ORCH_RPC_AUTH_TOKEN"), s->def->name);
        s->alert_notify = err == ORCH_OK;
        if (!err)
            orch_info("alerts are also sent to guard-service at %s",
                      orch_config_str(cfg, "ORCH_GUARD_RPC_URL"));
    }
    if (!err && s->def->start)
        err = s->def->start(s);
    if (err)
        return err;
    orch_rpc_server_opts o = {
        .url = orch_config_str(cfg, s->def->rpc_url_var),
        .max_msg_bytes = (size_t)orch_config_int(cfg, "ORCH_RPC_MAX_MSG_BYTES"),
        .concurrency = (int)orch_config_int(cfg, "ORCH_RPC_CONCURRENCY"),
        .workers = (int)orch_config_int(cfg, "ORCH_RPC_WORKERS"),
        .default_timeout_ms = (uint32_t)orch_config_int(cfg, "ORCH_RPC_DEFAULT_TIMEOUT_MS"),
        .dedup_entries = (size_t)orch_config_int(cfg, "ORCH_RPC_DEDUP_ENTRIES"),
        .dedup_ttl_ms = (uint32_t)orch_config_int(cfg, "ORCH_RPC_DEDUP_TTL_S") * 1000u,
        .auth_token = orch_config_str(cfg, "ORCH_RPC_AUTH_TOKEN"),
        .role_tokens = orch_config_str(cfg, "ORCH_RPC_TOKENS"),
        .tls = &s->tls,
        .metrics = s->metrics,
    };
    err = orch_rpc_server_start(&o, s->rpcs, s->nrpcs, &s->rpc);
    if (err)
        return err;
    orch_http_route routes[] = {
        { "/livez", http_livez, s },
        { "/readyz", http_readyz, s },
        { "/healthz", http_readyz, s },
        { "/metrics", http_metrics, s },
    };
    err = orch_http_start(orch_config_str(cfg, s->def->http_addr_var), routes,
                          sizeof routes / sizeof routes[0], s->https, s->nhttps,
                          s->nhttps ? HTTP_WORKERS : 0, &s->http);
    if (err)
        return err;
    s->probe_interval_ms = (uint64_t)orch_config_int(cfg, "ORCH_DB_PROBE_INTERVAL_MS");
    return orch_ticker_start("db-probe", (uint32_t)s->probe_interval_ms, 0, probe_tick, s,
                             &s->probe);
}

static void shutdown_all(orch_service *s)
{
    atomic_store(&s->serving, false);
    if (s->rpc)
        orch_rpc_server_stop(s->rpc,
                             (uint32_t)orch_config_int(s->cfg, "ORCH_SHUTDOWN_GRACE_S") * 1000u);
    orch_http_stop(s->http);
    if (s->def->stop)
        s->def->stop(s);
    if (s->alert_notify)
        orch_alert_notify_stop(2000);
    orch_ticker_stop(s->probe);
    s->probe = NULL;
    orch_rpc_server_free(s->rpc);
    orch_db_pool_close(s->db);
    orch_metrics_free(s->metrics);
    orch_config_free(s->cfg);
}

static int run(orch_service *s, const sigset_t *sigs, bool migrate_only)
{
    const orch_config *cfg = s->cfg;
    orch_err err = orch_ident_init_from(orch_config_str(cfg, "ORCH_HOST_ID"),
                                        orch_config_str(cfg, "ORCH_BOOT_ID_PATH"), &s->ident);
    if (err) {
        orch_error("cannot establish process identity: %s", orch_strerror(err));
        return 1;
    }
    if (orch_metrics_new(&s->metrics) ||
        orch_db_pool_open(orch_config_str(cfg, "ORCH_DATABASE_URL"),
                          (int)orch_config_int(cfg, "ORCH_DB_POOL_SIZE"), &s->db) ||
        orch_db_pool_set_limits(s->db, (long)orch_config_int(cfg, "ORCH_DB_LOCK_TIMEOUT_MS"),
                                (long)orch_config_int(cfg, "ORCH_DB_IDLE_IN_TX_TIMEOUT_MS")))
        return 1;
    register_common_metrics(s);
    int rc = prepare_database(s, sigs);
    if (rc)
        return rc == 3 ? 0 : rc;
    if (migrate_only) {
        orch_info("--migrate-only: schema up to date; exiting");
        return 0;
    }
    if ((err = start_serving(s)) != ORCH_OK) {
        orch_error("cannot start serving: %s", orch_strerror(err));
        return 1;
    }
    atomic_store(&s->serving, true);
    orch_info("ready: runtime %s, rpc %s, http %s, host %s, boot %s, pid %d, instance %s",
              orch_runtime_name(s->runtime), orch_config_str(cfg, s->def->rpc_url_var),
              orch_config_str(cfg, s->def->http_addr_var), s->ident.host_id, s->ident.boot_id,
              (int)s->ident.pid, s->ident.instance_id);
    /* Listening on both ports and connected to the database: ready. */
    notify_supervisor("READY=1\nSTATUS=serving");
    while (!stop_requested(sigs, 60000))
        ;
    orch_info("stop requested; finishing in-flight requests");
    notify_supervisor("STOPPING=1");
    return 0;
}

int orch_service_main(const orch_service_def *def, int argc, char **argv)
{
    orch_service s = { .def = def };
    bool print_config = false, migrate_only = false;
    sigset_t sigs;

    int rc = parse_args(def, argc, argv, &print_config, &migrate_only);
    if (rc >= 0)
        return rc;
    /* Before any thread starts: they all inherit this mask. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    orch_log_init(def->name, ORCH_LOG_INFO);
    if ((rc = load_config(&s)) != 0)
        return rc;
    if (print_config) {
        orch_config_dump(s.cfg, stdout);
        orch_config_free(s.cfg);
        return 0;
    }
    orch_log_level level = ORCH_LOG_INFO;
    if (orch_log_level_parse(orch_config_str(s.cfg, "ORCH_LOG_LEVEL"), &level) != ORCH_OK)
        level = ORCH_LOG_INFO; /* unreachable: the table restricts the values */
    orch_log_init(def->name, level);
    if ((rc = setup_security(&s)) != 0) {
        orch_config_free(s.cfg);
        return rc;
    }
    if (orch_runtime_parse(orch_config_str(s.cfg, "ORCH_RUNTIME"), &s.runtime) != ORCH_OK) {
        orch_error("configuration: ORCH_RUNTIME must be live, staging or test");
        orch_config_free(s.cfg);
        return 2; /* unreachable: the table restricts the values */
    }
    /* The second layer of invariant 9: a test process reaches loopback only,
     * whatever guard-service decides. */
    orch_httpc_set_loopback_only(s.runtime == ORCH_RUNTIME_TEST);
    pthread_mutex_init(&s.mu, NULL);

    rc = run(&s, &sigs, migrate_only);
    shutdown_all(&s);
    pthread_mutex_destroy(&s.mu);
    if (rc == 0)
        orch_info("stopped");
    return rc;
}
