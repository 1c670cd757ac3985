/*
 * harness.h - integration-test support: the private PostgreSQL cluster,
 * fresh databases, real service processes on free loopback ports, RPC and
 * HTTP calls against them.
 *
 * The test harness is the one place outside launcher-service allowed to start
 * processes (service binaries, pgctl.sh, orchctl): see
 * docs/architecture/overview.md. Every function either succeeds or fails the
 * calling Criterion test with a message; nothing here is used by services.
 */
#ifndef ORCH_TEST_HARNESS_H
#define ORCH_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "orch/rpc.h"

typedef struct th_svc {
    pid_t pid;
    char name[32];      /* "lease" */
    char rpc_url[64];   /* tcp://127.0.0.1:PORT */
    char http_addr[64]; /* 127.0.0.1:PORT */
    char log_path[512];
} th_svc;

/* The folder of the shared test cluster (from the CTest fixture). */
const char *th_pg_dir(void);
/* URL of database `db` in the cluster at `pgdir`. */
void th_pg_url(const char *pgdir, const char *db, char *out, size_t n);
/* Creates a fresh, empty database in the shared cluster; writes its URL. */
void th_db_fresh(char *url, size_t n);
/* Runs one SQL statement against `url` and returns the first value of the
 * first row as a malloc'ed string (NULL if no row). Fails the test on error. */
char *th_sql(const char *url, const char *sql);

/* A loopback TCP port for a service the test starts: outside the kernel's
 * ephemeral range and reserved against the other test processes until
 * this one exits (harness.c). */
int th_free_port(void);

/* Starts build/services/<svc>/<svc>-service with a clean ORCH_* environment:
 * ORCH_DATABASE_URL=db_url, fresh ports, ORCH_LOG_LEVEL=debug, then the
 * "KEY=VALUE" strings of `env` (NULL-terminated, may be NULL). Output goes to
 * a log file. With `wait_ready`, waits until Check answers SERVING. */
void th_svc_start(th_svc *s, const char *svc, const char *db_url, const char *const *env,
                  bool wait_ready);
/* What Check says of a service: an OK reply's SERVING or NOT_SERVING, or
 * no such answer (an error code, no reply, a reply without a status). */
typedef enum th_health { TH_NO_ANSWER, TH_SERVING, TH_NOT_SERVING } th_health;
/* Polls Check until it says `want` or timeout_ms passes; true on success.
 * The attempts share one connection (and TLS handshake), each at most
 * 500 ms and never past timeout_ms. */
bool th_svc_wait_health(const th_svc *s, th_health want, uint32_t timeout_ms);
/* Sends `sig` and waits up to timeout_ms; returns the exit status, 128+signal
 * if killed by a signal, or -1 on timeout (then the process is SIGKILLed). */
int th_svc_stop(th_svc *s, int sig, uint32_t timeout_ms);
bool th_svc_alive(const th_svc *s);
/* Prints the service's log to stderr (on failure paths). */
void th_svc_dump_log(const th_svc *s);
/* Whether the service's log contains `needle`. */
bool th_svc_log_has(const th_svc *s, const char *needle);

/* Runs argv (argv[0] is a path) with extra "K=V" env, waits up to timeout_ms;
 * captures stdout+stderr into out (may be NULL). Returns the exit status. */
int th_run(const char *const *argv, const char *const *env, char *out, size_t n,
           uint32_t timeout_ms);

/* Starts argv (argv[0] is a path) with extra "K=V" env and stdin from
 * /dev/null, stdout+stderr into log_path (NULL: /dev/null); does not wait.
 * Tests use it for helper processes (lease owners, concurrent orchctl). */
pid_t th_spawn_env(const char *const *argv, const char *const *env, const char *log_path);
/* th_spawn_env(argv, NULL, NULL). */
pid_t th_spawn(const char *const *argv);
/* Sends `sig` (0: none) to `pid`, then waits up to timeout_ms and reaps it:
 * the exit status, 128+signal if killed by a signal, -1 on timeout (then it
 * is SIGKILLed and reaped). */
int th_kill(pid_t pid, int sig, uint32_t timeout_ms);
/* SIGSTOPs `pid` and waits (at most `timeout_ms`, else the test fails) until
 * every thread of it is stopped: from then on it runs no code of its own. */
void th_stop_process(pid_t pid, uint32_t timeout_ms);
/* Polls the service's log until it contains `needle`; true if it did. */
bool th_svc_wait_log(const th_svc *s, const char *needle, uint32_t timeout_ms);

/* Calls Check on url; fills st and returns the reply's status code (OK for
 * a NOT_SERVING answer too: th_health_of tells them apart). */
orch_code th_check(const char *url, uint32_t timeout_ms, orch_rpc_status *st);
/* Calls Check on url: what it says, and its detail (why NOT_SERVING) into
 * `detail` when not NULL. */
th_health th_health_of(const char *url, uint32_t timeout_ms, char *detail, size_t n);
/* GET http://addr/path; returns the HTTP status (0 on connection failure)
 * and, if body is not NULL, a malloc'ed body. */
long th_http_get(const char *addr, const char *path, char **body);
/* Value of a Prometheus sample line starting with `series` (exact up to
 * the value), or -1 if absent. */
double th_metric(const char *metrics_text, const char *series);

/* ---- a proxy that loses replies (orch-sp-proxy, tests/support/sp_proxy.c) */

typedef struct th_proxy {
    pid_t pid;
    int port;
    char url[64];        /* tcp://127.0.0.1:PORT: point a client here */
    char drop_path[600]; /* exists while replies are being lost */
} th_proxy;

/* Starts a proxy in front of the NNG listener at `target_url`
 * (tcp://127.0.0.1:PORT), passing everything. */
void th_proxy_start(th_proxy *p, const char *target_url);
/* While on, every reply the server sends through the proxy is lost. */
void th_proxy_drop(th_proxy *p, bool on);
void th_proxy_stop(th_proxy *p);

/* ---- HTTP imitations (orch-imitation, tests/support/imitation.c) -------- */

typedef struct th_imitation {
    pid_t pid;
    int port;
    char base_url[64]; /* http://127.0.0.1:PORT */
    char log_path[512];
    char personality[32];
} th_imitation;

/* Starts orch-imitation with `personality` ("plane", "telegram") on a free
 * loopback port, recording to a fresh log; fails the test if it does not
 * come up within 5 s. */
void th_imitation_start(th_imitation *im, const char *personality);
void th_imitation_stop(th_imitation *im);
/* POSTs `json` to /__imitation/script (steers the next answers). */
void th_imitation_script(const th_imitation *im, const char *json);
/* Requests recorded so far whose method is `method` (NULL: any) and whose
 * path starts with `path_prefix` (NULL: any). */
int th_imitation_count(const th_imitation *im, const char *method, const char *path_prefix);
/* The whole recorded log (one JSON object per line), malloc'ed. */
char *th_imitation_log(const th_imitation *im);
/* The n-th (0-based) recorded request as a malloc'ed JSON line, or NULL. */
char *th_imitation_request(const th_imitation *im, int n);

/* Path of tests/support/pgctl.sh and a pgctl invocation (0 on success). */
int th_pgctl(const char *cmd, const char *dir, const char *arg);

#endif
