/*
 * test_ops.c - what operators rely on: --migrate-only (the compose file's
 * one-shot migration), READY=1 to $NOTIFY_SOCKET (the systemd units'
 * Type=notify), and docs/operations/metrics.md against what the four
 * services really export.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

static const char *const services[] = { "lease", "stage", "guard", "launcher" };

static void service_bin(const char *svc, char *out, size_t n)
{
    snprintf(out, n, "%s/services/%s/%s-service", ORCH_BINARY_DIR, svc, svc);
}

Test(ops, migrate_only_applies_migrations_and_exits_zero, .timeout = 120)
{
    char db[600], env_db[640], bin[512], out[8192];
    th_db_fresh(db, sizeof db);
    snprintf(env_db, sizeof env_db, "ORCH_DATABASE_URL=%s", db);
    service_bin("stage", bin, sizeof bin);
    const char *argv[] = { bin, "--migrate-only", NULL };
    const char *env[] = { env_db, "ORCH_RUNTIME=test", NULL };

    int rc = th_run(argv, env, out, sizeof out, 60000);
    cr_assert_eq(rc, 0, "--migrate-only exited %d:\n%s", rc, out);
    char *n = th_sql(db, "SELECT count(*) FROM schema_migrations");
    cr_assert(n && strtol(n, NULL, 10) > 0, "no migration recorded (%s)", n ? n : "no row");
    free(n);
    cr_assert(strstr(out, "schema up to date"), "no schema line in:\n%s", out);
    cr_assert_null(strstr(out, "\"ready"), "--migrate-only must not serve:\n%s", out);

    /* A second run finds nothing to do and still succeeds. */
    rc = th_run(argv, env, out, sizeof out, 60000);
    cr_assert_eq(rc, 0, "second --migrate-only exited %d:\n%s", rc, out);
    cr_assert(strstr(out, "0 migration(s) applied now"), "second run applied something:\n%s", out);
}

Test(ops, migrate_only_fails_when_the_database_is_unreachable, .timeout = 60)
{
    char bin[512], out[8192], url[128];
    snprintf(url, sizeof url, "ORCH_DATABASE_URL=postgresql://orch@127.0.0.1:%d/orch",
             th_free_port());
    service_bin("lease", bin, sizeof bin);
    const char *argv[] = { bin, "--migrate-only", NULL };
    const char *env[] = { url, "ORCH_RUNTIME=test", "ORCH_DB_STARTUP_WAIT_S=0",
                          "ORCH_DB_CONNECT_TIMEOUT_S=1", NULL };
    int rc = th_run(argv, env, out, sizeof out, 30000);
    cr_assert_eq(rc, 1, "expected exit 1 for an unreachable database, got %d:\n%s", rc, out);
}

/* Waits up to timeout_ms for a datagram on fd; returns its text ("" if none). */
static void recv_text(int fd, char *buf, size_t n, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    buf[0] = '\0';
    if (poll(&p, 1, timeout_ms) != 1)
        return;
    ssize_t got = recv(fd, buf, n - 1, 0);
    buf[got > 0 ? (size_t)got : 0] = '\0';
}

Test(ops, service_sends_ready_to_notify_socket_once_serving, .timeout = 120)
{
    char db[600], dir[] = "/tmp/orch-notify-XXXXXX", env_sock[160], msg[512];
    th_db_fresh(db, sizeof db);
    cr_assert_not_null(mkdtemp(dir));
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s/notify", dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    snprintf(env_sock, sizeof env_sock, "NOTIFY_SOCKET=%s", a.sun_path);
    const char *env[] = { env_sock, NULL };

    th_svc s;
    th_svc_start(&s, "guard", db, env, false);
    recv_text(fd, msg, sizeof msg, 60000);
    cr_assert(strstr(msg, "READY=1"), "no READY=1 within 60 s (got '%s')", msg);
    /* READY means serving: the health check answers at once. */
    char detail[256];
    cr_assert_eq(th_health_of(s.rpc_url, 2000, detail, sizeof detail), TH_SERVING,
                 "READY=1 before serving: %s", detail);
    cr_assert_eq(th_http_get(s.http_addr, "/readyz", NULL), 200);

    cr_assert_eq(th_svc_stop(&s, SIGTERM, 40000), 0);
    recv_text(fd, msg, sizeof msg, 5000);
    cr_assert(strstr(msg, "STOPPING=1"), "no STOPPING=1 after SIGTERM (got '%s')", msg);
    close(fd);
    unlink(a.sun_path);
    rmdir(dir);
}

/* The metric names of docs/operations/metrics.md by section: rows of the
 * form "| `orch_name` | ..." (or "| `process_name` | ...") under "## Every service" or "##
 * <svc>-service". */
typedef struct doc_metric {
    char name[96];
    char section[32]; /* "all", "lease", ... */
} doc_metric;

static size_t read_doc(doc_metric *out, size_t max)
{
    FILE *f = fopen(ORCH_SOURCE_DIR "/docs/operations/metrics.md", "r");
    cr_assert_not_null(f, "docs/operations/metrics.md is missing");
    char line[1024], section[32] = "";
    size_t n = 0;
    for (int lines = 0; lines < 10000 && fgets(line, sizeof line, f); lines++) {
        if (strncmp(line, "## ", 3) == 0) {
            section[0] = '\0';
            if (strncmp(line, "## Every service", 16) == 0)
                snprintf(section, sizeof section, "all");
            for (size_t i = 0; i < 4; i++) {
                char h[48];
                snprintf(h, sizeof h, "## %s-service", services[i]);
                if (strncmp(line, h, strlen(h)) == 0)
                    snprintf(section, sizeof section, "%s", services[i]);
            }
            continue;
        }
        if (!section[0] ||
            (strncmp(line, "| `orch_", 8) != 0 && strncmp(line, "| `process_", 11) != 0))
            continue;
        const char *name = line + 3;
        size_t len = strcspn(name, "`");
        cr_assert_lt(n, max, "too many metrics in the doc");
        cr_assert_lt(len, sizeof out[n].name);
        memcpy(out[n].name, name, len);
        out[n].name[len] = '\0';
        snprintf(out[n].section, sizeof out[n].section, "%s", section);
        n++;
    }
    fclose(f);
    return n;
}

Test(ops, metrics_doc_matches_every_service, .timeout = 180)
{
    static doc_metric doc[200];
    size_t ndoc = read_doc(doc, 200);
    cr_assert_gt(ndoc, 20, "only %zu metrics found in docs/operations/metrics.md", ndoc);

    char db[600];
    th_db_fresh(db, sizeof db);
    th_svc svc[4];
    char *text[4];
    for (size_t i = 0; i < 4; i++)
        th_svc_start(&svc[i], services[i], db, NULL, true);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(th_http_get(svc[i].http_addr, "/metrics", &text[i]), 200);
        cr_assert_not_null(text[i]);
    }
    int missing = 0;
    for (size_t k = 0; k < ndoc; k++) {
        for (size_t i = 0; i < 4; i++) {
            if (strcmp(doc[k].section, "all") != 0 && strcmp(doc[k].section, services[i]) != 0)
                continue;
            char type_line[160];
            snprintf(type_line, sizeof type_line, "# TYPE %s ", doc[k].name);
            if (!strstr(text[i], type_line)) {
                fprintf(stderr, "%s-service does not export %s (documented)\n", services[i],
                        doc[k].name);
                missing++;
            }
        }
    }
    /* The labels the alerts rely on. */
    cr_expect_eq(th_metric(text[0], "orch_lease_acquire_total{outcome=\"held\"}"), 0);
    cr_expect_eq(th_metric(text[0], "orch_lease_release_total{kind=\"ceiling_released\"}"), 0);
    cr_expect_eq(th_metric(text[3], "orch_launcher_agent_runs_total{role=\"reviewer\"}"), 0);
    cr_expect(strstr(text[1], "Transition attempts by edge and result"));
    cr_expect(strstr(text[1], "Side effects run, by effect and outcome"));
    for (size_t i = 0; i < 4; i++) {
        free(text[i]);
        th_svc_stop(&svc[i], SIGTERM, 40000);
    }
    cr_assert_eq(missing, 0, "%d documented metric(s) missing (see above)", missing);
}
