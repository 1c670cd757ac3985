/*
 * harness.c - see harness.h. Single-threaded use from one test process.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "orch/v1/health.pb-c.h"
#include "orch/clock.h"
#include "orch/ident.h"

extern char **environ;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

const char *th_pg_dir(void)
{
    static char dir[512];
    const char *d = getenv("ORCH_TEST_PG_DIR");
    if (d && d[0])
        return d;
    const char *file = getenv("ORCH_TEST_PG_PATH_FILE");
    cr_assert(file, "no test cluster: ORCH_TEST_PG_DIR or ORCH_TEST_PG_PATH_FILE must be set "
                    "(run the tests through ctest)");
    FILE *f = fopen(file, "r");
    cr_assert(f, "cannot read %s: the pg_setup fixture did not run", file);
    cr_assert(fgets(dir, sizeof dir, f), "empty %s", file);
    fclose(f);
    dir[strcspn(dir, "\n")] = '\0';
    return dir;
}

void th_pg_url(const char *pgdir, const char *db, char *out, size_t n)
{
    char path[600], port[32] = "";
    snprintf(path, sizeof path, "%s/port", pgdir);
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot read %s", path);
    cr_assert(fgets(port, sizeof port, f));
    fclose(f);
    port[strcspn(port, "\n")] = '\0';
    snprintf(out, n, "postgresql://orch@127.0.0.1:%s/%s", port, db);
}

static PGconn *connect_or_fail(const char *url)
{
    PGconn *c = PQconnectdb(url);
    cr_assert(PQstatus(c) == CONNECTION_OK, "cannot connect to %s: %s", url, PQerrorMessage(c));
    return c;
}

char *th_sql(const char *url, const char *sql)
{
    PGconn *c = connect_or_fail(url);
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    char *v = NULL;
    if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return v;
}

void th_db_fresh(char *url, size_t n)
{
    char admin[600], name[64], hex[17], sql[128];
    cr_assert(orch_random_hex(hex, 8) == ORCH_OK);
    snprintf(name, sizeof name, "t_%s", hex);
    th_pg_url(th_pg_dir(), "orch", admin, sizeof admin);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    free(th_sql(admin, sql));
    th_pg_url(th_pg_dir(), name, url, n);
}

/* Ports handed to the services a test starts: below the kernel's ephemeral
 * range (ip_local_port_range, 32768-60999 by default), so that no outgoing
 * connection of any process takes one between this choice and the
 * service's bind. Each is also reserved against the other test processes
 * running at once (ctest -j2): an flock on PORT_DIR/PORT, whose descriptor
 * stays open (close-on-exec, so services do not inherit it) until this
 * process exits. A port some process still binds is skipped. */
#define PORT_DIR  "/tmp/orch-test-ports"
#define PORT_LO   20000
#define PORT_SPAN 12000

static bool port_bindable(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)port) };
    int one = 1;
    cr_assert(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int th_free_port(void)
{
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)orch_mono_ns();
    if (mkdir(PORT_DIR, 01777) == 0)
        chmod(PORT_DIR, 01777); /* whoever runs the next test may write */
    for (int tries = 0; tries < 4 * PORT_SPAN; tries++) {
        int port = PORT_LO + (int)(rand_r(&seed) % PORT_SPAN);
        char path[64];
        snprintf(path, sizeof path, PORT_DIR "/%d", port);
        int lf = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (lf < 0)
            continue;
        if (flock(lf, LOCK_EX | LOCK_NB) == 0 && port_bindable(port))
            return port; /* `lf` stays open: the reservation */
        close(lf);
    }
    cr_assert_fail("no free loopback port in %d-%d", PORT_LO, PORT_LO + PORT_SPAN - 1);
    return -1;
}

/* Adds "K=V" to env[0..*k), replacing an earlier entry of the same key:
 * getenv() returns the first match, so a later setting must take its place. */
static void env_put(char **env, size_t *k, const char *kv)
{
    const char *eq = strchr(kv, '=');
    size_t kl = eq ? (size_t)(eq - kv) + 1 : strlen(kv);
    for (size_t i = 0; i < *k; i++) {
        if (strncmp(env[i], kv, kl) == 0) {
            env[i] = (char *)kv;
            return;
        }
    }
    env[(*k)++] = (char *)kv;
}

/* Builds the child's environment: ours without ORCH_* keys, then extras;
 * a later extra overrides an earlier one with the same key. */
static char **child_env(const char *const *extra1, const char *const *extra2)
{
    size_t n = 0, k = 0;
    for (char **e = environ; *e; e++)
        n++;
    for (const char *const *e = extra1; e && *e; e++)
        n++;
    for (const char *const *e = extra2; e && *e; e++)
        n++;
    char **env = calloc(n + 1, sizeof *env);
    cr_assert(env);
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "ORCH_", 5) != 0 || strncmp(*e, "ORCH_TEST_", 10) == 0)
            env[k++] = *e;
    for (const char *const *e = extra1; e && *e; e++)
        env_put(env, &k, *e);
    for (const char *const *e = extra2; e && *e; e++)
        env_put(env, &k, *e);
    return env;
}

static const char *log_dir(void)
{
    const char *d = getenv("ORCH_TEST_LOG_DIR");
    return d && d[0] ? d : "/tmp";
}

static pid_t spawn_logged(const char *const *argv, char **env, const char *log_path)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log_path, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    int rv = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, env);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert(rv == 0, "cannot start %s: %s", argv[0], strerror(rv));
    return pid;
}

void th_svc_start(th_svc *s, const char *svc, const char *db_url, const char *const *env,
                  bool wait_ready)
{
    static char vars[7][700];
    char bin[600], upper[16], hex[9];
    size_t i;
    for (i = 0; svc[i] && i < sizeof upper - 1; i++)
        upper[i] = (char)(svc[i] - 'a' + 'A');
    upper[i] = '\0';
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", svc);
    snprintf(s->rpc_url, sizeof s->rpc_url, "tcp://127.0.0.1:%d", th_free_port());
    snprintf(s->http_addr, sizeof s->http_addr, "127.0.0.1:%d", th_free_port());
    cr_assert(orch_random_hex(hex, 4) == ORCH_OK);
    snprintf(s->log_path, sizeof s->log_path, "%s/%s-%d-%s.log", log_dir(), svc, (int)getpid(),
             hex);
    snprintf(bin, sizeof bin, "%s/services/%s/%s-service", ORCH_BINARY_DIR, svc, svc);
    snprintf(vars[0], sizeof vars[0], "ORCH_DATABASE_URL=%s", db_url);
    snprintf(vars[1], sizeof vars[1], "ORCH_%s_RPC_URL=%s", upper, s->rpc_url);
    snprintf(vars[2], sizeof vars[2], "ORCH_%s_HTTP_ADDR=%s", upper, s->http_addr);
    snprintf(vars[3], sizeof vars[3], "ORCH_LOG_LEVEL=debug");
    snprintf(vars[4], sizeof vars[4], "ORCH_DB_STARTUP_WAIT_S=20");
    /* Every service started by a test runs in the test runtime; only a test
     * of guard-service's live/staging behaviour names another one in env. */
    snprintf(vars[5], sizeof vars[5], "ORCH_RUNTIME=test");
    for (const char *const *e = env; e && *e; e++)
        if (strncmp(*e, "ORCH_RUNTIME=", 13) == 0)
            vars[5][0] = '\0';
    const char *base[] = { vars[0], vars[1], vars[2], vars[3], vars[4], vars[5][0] ? vars[5] : NULL,
                           NULL };
    char **cenv = child_env(base, env);
    const char *argv[] = { bin, NULL };
    s->pid = spawn_logged(argv, cenv, s->log_path);
    free(cenv);
    if (wait_ready && !th_svc_wait_health(s, TH_SERVING, 20000)) {
        th_svc_dump_log(s);
        cr_assert_fail("%s-service did not become ready", svc);
    }
}

/* One Check on client `c` within timeout_ms; the reply's code into *code
 * and, on OK, the reply itself. */
static Orch__V1__HealthCheckResponse *check_on(orch_rpc_client *c, uint32_t timeout_ms,
                                               orch_rpc_status *st, orch_code *code)
{
    orch_rpc_call_opts o = { .timeout_ms = timeout_ms };
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *rep = NULL;
    *code = orch_rpc_invoke(c, "orch.v1.HealthService/Check", &req.base,
                            &orch__v1__health_check_response__descriptor, &o, st, &rep);
    return (Orch__V1__HealthCheckResponse *)rep;
}

/* One Check on a connection of its own. */
static Orch__V1__HealthCheckResponse *check_once(const char *url, uint32_t timeout_ms,
                                                 orch_rpc_status *st, orch_code *code)
{
    orch_rpc_client *c;
    orch_rpc_client_opts o = { .default_timeout_ms = timeout_ms };
    cr_assert(orch_rpc_client_open(url, &o, &c) == ORCH_OK);
    Orch__V1__HealthCheckResponse *rep = check_on(c, timeout_ms, st, code);
    orch_rpc_client_close(c);
    return rep;
}

orch_code th_check(const char *url, uint32_t timeout_ms, orch_rpc_status *st)
{
    orch_code code;
    Orch__V1__HealthCheckResponse *rep = check_once(url, timeout_ms, st, &code);
    if (rep)
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    return code;
}

/* What a Check reply says, into th_health; the detail into `detail`. */
static th_health health_from(orch_code code, Orch__V1__HealthCheckResponse *rep,
                             const orch_rpc_status *st, char *detail, size_t n)
{
    th_health h = TH_NO_ANSWER;
    if (detail)
        snprintf(detail, n, "%s", st->message);
    if (code == ORCH_CODE_OK && rep) {
        if (rep->status == ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_SERVING)
            h = TH_SERVING;
        else if (rep->status ==
                 ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_NOT_SERVING)
            h = TH_NOT_SERVING;
        if (detail)
            snprintf(detail, n, "%s", rep->detail);
    }
    if (rep)
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    return h;
}

th_health th_health_of(const char *url, uint32_t timeout_ms, char *detail, size_t n)
{
    orch_rpc_status st;
    orch_code code;
    Orch__V1__HealthCheckResponse *rep = check_once(url, timeout_ms, &st, &code);
    return health_from(code, rep, &st, detail, n);
}

/* One client for the whole wait, so that its connection, once dialled and
 * through the TLS handshake, serves every later attempt: with a client per
 * attempt, each attempt started a new handshake and gave it up when the
 * attempt's time ran out, so a handshake slower than an attempt (ASan on a
 * loaded machine) never finished and every attempt failed. An attempt gets
 * what is left of timeout_ms, at most POLL_ATTEMPT_MS; NNG keeps redialling
 * in between. */
#define POLL_ATTEMPT_MS 500

bool th_svc_wait_health(const th_svc *s, th_health want, uint32_t timeout_ms)
{
    uint64_t until = orch_mono_ms() + timeout_ms;
    orch_rpc_client *c;
    bool ok = false;
    cr_assert(orch_rpc_client_open(s->rpc_url, NULL, &c) == ORCH_OK);
    for (uint64_t now = orch_mono_ms(); !ok && th_svc_alive(s); now = orch_mono_ms()) {
        uint64_t left = until > now ? until - now : 1; /* 0 would mean the default */
        orch_rpc_status st;
        orch_code code;
        Orch__V1__HealthCheckResponse *rep =
            check_on(c, left < POLL_ATTEMPT_MS ? (uint32_t)left : POLL_ATTEMPT_MS, &st, &code);
        ok = health_from(code, rep, &st, NULL, 0) == want;
        if (ok || orch_mono_ms() >= until)
            break;
        sleep_ms(50);
    }
    orch_rpc_client_close(c);
    return ok;
}

bool th_svc_alive(const th_svc *s)
{
    int status;
    return s->pid > 0 && waitpid(s->pid, &status, WNOHANG) == 0;
}

static int wait_exit(pid_t pid, uint32_t timeout_ms)
{
    uint64_t until = orch_mono_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (r < 0)
            return -1;
        if (orch_mono_ms() >= until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(10);
    }
}

int th_svc_stop(th_svc *s, int sig, uint32_t timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    int rc = wait_exit(s->pid, timeout_ms);
    s->pid = 0;
    return rc;
}

void th_svc_dump_log(const th_svc *s)
{
    FILE *f = fopen(s->log_path, "r");
    char line[4096];
    if (!f)
        return;
    fprintf(stderr, "---- %s (%s) ----\n", s->name, s->log_path);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

bool th_svc_log_has(const th_svc *s, const char *needle)
{
    FILE *f = fopen(s->log_path, "r");
    char line[4096];
    bool found = false;
    if (!f)
        return false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

int th_run(const char *const *argv, const char *const *env, char *out, size_t n,
           uint32_t timeout_ms)
{
    char path[] = "/tmp/orch-th-run-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    char **cenv = child_env(env, NULL);
    pid_t pid = spawn_logged(argv, cenv, path);
    free(cenv);
    int rc = wait_exit(pid, timeout_ms);
    if (out && n) {
        FILE *f = fopen(path, "r");
        size_t got = f ? fread(out, 1, n - 1, f) : 0;
        out[got] = '\0';
        if (f)
            fclose(f);
    }
    unlink(path);
    return rc;
}

pid_t th_spawn_env(const char *const *argv, const char *const *env, const char *log_path)
{
    char **cenv = child_env(env, NULL);
    pid_t pid = spawn_logged(argv, cenv, log_path ? log_path : "/dev/null");
    free(cenv);
    return pid;
}

pid_t th_spawn(const char *const *argv)
{
    return th_spawn_env(argv, NULL, NULL);
}

int th_kill(pid_t pid, int sig, uint32_t timeout_ms)
{
    if (pid <= 0)
        return -1;
    if (sig)
        kill(pid, sig);
    return wait_exit(pid, timeout_ms);
}

bool th_svc_wait_log(const th_svc *s, const char *needle, uint32_t timeout_ms)
{
    uint64_t until = orch_mono_ms() + timeout_ms;
    for (;;) {
        if (th_svc_log_has(s, needle))
            return true;
        if (orch_mono_ms() >= until)
            return false;
        sleep_ms(20);
    }
}

static size_t collect(char *data, size_t size, size_t nmemb, void *arg)
{
    FILE *f = arg;
    return fwrite(data, size, nmemb, f);
}

long th_http_get(const char *addr, const char *path, char **body)
{
    char url[700];
    char *buf = NULL;
    size_t len = 0;
    long status = 0;
    FILE *f = open_memstream(&buf, &len);
    CURL *c = curl_easy_init();
    cr_assert(f && c);
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    fclose(f);
    if (body)
        *body = buf;
    else
        free(buf);
    return status;
}

double th_metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

/* A private cluster's port while the cluster is down: a socket bound to
 * 127.0.0.1:PORT (not listening) so that no other test, in this process or
 * another, is handed that port by bind(port 0) in the meantime. Without it a
 * service started between "init" (or "stop") and "start" could be given the
 * cluster's port, and pgctl.sh would move the cluster to another port that the
 * service's URL does not name. */
typedef struct {
    char dir[256];
    int fd;
} pg_port_hold;

static pg_port_hold g_holds[8];

static int cluster_port(const char *dir)
{
    char path[600];
    int port = 0;
    snprintf(path, sizeof path, "%s/port", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%d", &port) != 1)
            port = 0;
        fclose(f);
    }
    return port;
}

static void port_hold(const char *dir)
{
    int port = cluster_port(dir);
    if (port <= 0)
        return;
    for (size_t i = 0; i < sizeof g_holds / sizeof g_holds[0]; i++) {
        if (g_holds[i].dir[0] != '\0')
            continue;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        cr_assert(fd >= 0);
        /* A stopped cluster leaves its port in TIME_WAIT at worst; bind()
         * without SO_REUSEADDR may then fail, and the hold is skipped. */
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            return;
        }
        snprintf(g_holds[i].dir, sizeof g_holds[i].dir, "%s", dir);
        g_holds[i].fd = fd;
        return;
    }
    cr_assert_fail("more than 8 private clusters are down at once");
}

static void port_unhold(const char *dir)
{
    for (size_t i = 0; i < sizeof g_holds / sizeof g_holds[0]; i++) {
        if (strcmp(g_holds[i].dir, dir) == 0) {
            close(g_holds[i].fd);
            g_holds[i].dir[0] = '\0';
        }
    }
}

int th_pgctl(const char *cmd, const char *dir, const char *arg)
{
    char script[600], out[8192];
    bool starting = strcmp(cmd, "start") == 0;
    int port = starting ? cluster_port(dir) : 0;
    if (starting || strcmp(cmd, "destroy") == 0)
        port_unhold(dir);
    snprintf(script, sizeof script, "%s/tests/support/pgctl.sh", ORCH_SOURCE_DIR);
    const char *argv[] = { "/bin/bash", script, cmd, dir, arg, NULL };
    int rc = th_run(argv, NULL, out, sizeof out, 120000);
    if (rc != 0)
        fprintf(stderr, "pgctl.sh %s %s failed (%d):\n%s\n", cmd, dir, rc, out);
    if (rc == 0 && (strcmp(cmd, "init") == 0 || strcmp(cmd, "stop") == 0))
        port_hold(dir);
    /* A cluster that moved to another port is no longer at the URL the test
     * gave its services: say so instead of letting them wait for it. */
    if (rc == 0 && starting && port > 0)
        cr_assert_eq(cluster_port(dir), port, "pgctl.sh moved the cluster in %s from port %d: %s",
                     dir, port, out);
    return rc;
}

/* ---- HTTP imitations ------------------------------------------------------ */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    char *buf = NULL;
    size_t cap = 0, len = 0;
    int c;
    while ((c = fgetc(f)) != EOF && len < (64u << 20)) {
        if (len + 2 > cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap);
            cr_assert(buf);
        }
        buf[len++] = (char)c;
    }
    fclose(f);
    if (!buf)
        return strdup("");
    buf[len] = '\0';
    return buf;
}

/* The port a child process wrote to `path`, waiting up to 5 s for it; 0 if
 * it never came. */
static int wait_port_file(const char *path)
{
    int port = 0;
    for (int i = 0; i < 500 && port == 0; i++) {
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (port == 0)
            sleep_ms(10);
    }
    return port;
}

void th_imitation_start(th_imitation *im, const char *personality)
{
    char bin[600], port_file[600], hex[9];
    memset(im, 0, sizeof *im);
    snprintf(im->personality, sizeof im->personality, "%s", personality);
    cr_assert(orch_random_hex(hex, 4) == ORCH_OK);
    snprintf(im->log_path, sizeof im->log_path, "%s/imitation-%s-%d-%s.jsonl", log_dir(),
             personality, (int)getpid(), hex);
    snprintf(port_file, sizeof port_file, "%s.port", im->log_path);
    snprintf(bin, sizeof bin, "%s/tests/support/orch-imitation", ORCH_BINARY_DIR);
    const char *argv[] = { bin,       "--personality", personality,  "--port-file",
                           port_file, "--log",         im->log_path, NULL };
    char errlog[620];
    snprintf(errlog, sizeof errlog, "%s.stderr", im->log_path);
    char **env = child_env(NULL, NULL);
    im->pid = spawn_logged(argv, env, errlog);
    free(env);
    im->port = wait_port_file(port_file);
    cr_assert_gt(im->port, 0, "orch-imitation (%s) did not start", personality);
    snprintf(im->base_url, sizeof im->base_url, "http://127.0.0.1:%d", im->port);
}

void th_imitation_stop(th_imitation *im)
{
    if (im->pid > 0)
        th_kill(im->pid, SIGTERM, 5000);
    im->pid = 0;
}

void th_imitation_script(const th_imitation *im, const char *json)
{
    char url[128];
    snprintf(url, sizeof url, "%s/__imitation/script", im->base_url);
    CURL *c = curl_easy_init();
    cr_assert(c);
    long status = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    FILE *sink = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (sink)
        fclose(sink);
    cr_assert_eq(status, 200, "imitation script %s refused (%ld)", json, status);
}

char *th_imitation_log(const th_imitation *im)
{
    return read_file(im->log_path);
}

/* Whether the JSON line has "key":"value" exactly (the log is compact). */
static bool line_field_prefix(const char *line, const char *key, const char *prefix)
{
    char pat[600];
    snprintf(pat, sizeof pat, "\"%s\":\"%s", key, prefix);
    return strstr(line, pat) != NULL;
}

int th_imitation_count(const th_imitation *im, const char *method, const char *path_prefix)
{
    char *log = th_imitation_log(im);
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char m[48];
        snprintf(m, sizeof m, "%s\"", method ? method : "");
        if (method && !line_field_prefix(line, "method", m))
            continue;
        if (path_prefix && !line_field_prefix(line, "path", path_prefix))
            continue;
        n++;
    }
    free(log);
    return n;
}

char *th_imitation_request(const th_imitation *im, int n)
{
    char *log = th_imitation_log(im), *save = NULL, *out = NULL;
    int i = 0;
    for (char *line = strtok_r(log, "\n", &save); line && !out; line = strtok_r(NULL, "\n", &save))
        if (i++ == n)
            out = strdup(line);
    free(log);
    return out;
}

/* ---- orch-sp-proxy ----------------------------------------------------- */

void th_proxy_start(th_proxy *p, const char *target_url)
{
    char bin[600], port_file[620], errlog[620], target[16], hex[9];
    const char *colon = strrchr(target_url, ':');
    memset(p, 0, sizeof *p);
    cr_assert(colon && strncmp(target_url, "tcp://127.0.0.1:", 16) == 0, "%s", target_url);
    snprintf(target, sizeof target, "%s", colon + 1);
    cr_assert(orch_random_hex(hex, 4) == ORCH_OK);
    snprintf(p->drop_path, sizeof p->drop_path, "%s/sp-proxy-%d-%s.drop", log_dir(), (int)getpid(),
             hex);
    snprintf(port_file, sizeof port_file, "%s.port", p->drop_path);
    snprintf(errlog, sizeof errlog, "%s.stderr", p->drop_path);
    snprintf(bin, sizeof bin, "%s/tests/support/orch-sp-proxy", ORCH_BINARY_DIR);
    const char *argv[] = { bin,       "--target",    target,       "--port-file",
                           port_file, "--drop-file", p->drop_path, NULL };
    char **env = child_env(NULL, NULL);
    p->pid = spawn_logged(argv, env, errlog);
    free(env);
    p->port = wait_port_file(port_file);
    cr_assert_gt(p->port, 0, "orch-sp-proxy did not start");
    snprintf(p->url, sizeof p->url, "tcp://127.0.0.1:%d", p->port);
}

void th_proxy_drop(th_proxy *p, bool on)
{
    if (on) {
        FILE *f = fopen(p->drop_path, "w");
        cr_assert(f, "cannot create %s", p->drop_path);
        fclose(f);
    } else {
        unlink(p->drop_path);
    }
}

void th_proxy_stop(th_proxy *p)
{
    if (p->pid > 0)
        th_kill(p->pid, SIGTERM, 5000);
    p->pid = 0;
    unlink(p->drop_path);
}

/* Whether every thread of `pid` is in state T (stopped); false if any is
 * not, or the process cannot be read. */
static bool all_threads_stopped(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool all = true;
    int n = 0;
    struct dirent *e;
    while (all && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[384], buf[512];
        snprintf(path, sizeof path, "%s/%s/stat", dir, e->d_name);
        FILE *f = fopen(path, "r");
        size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[len] = '\0';
        const char *rp = strrchr(buf, ')');
        all = rp && rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't');
        n++;
    }
    closedir(d);
    return all && n > 0;
}

void th_stop_process(pid_t pid, uint32_t timeout_ms)
{
    cr_assert_eq(kill(pid, SIGSTOP), 0);
    for (uint32_t waited = 0; !all_threads_stopped(pid); waited += 5) {
        cr_assert_lt(waited, timeout_ms, "pid %d did not stop within %u ms", (int)pid, timeout_ms);
        sleep_ms(5);
    }
}
