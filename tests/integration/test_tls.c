/*
 * test_tls.c - TLS on the RPC transport against real lease-services:
 * certificates made at test time (tests/support/tls_certs.sh); with
 * ORCH_TLS_MODE=mutual a caller with a certificate from the deployment's CA
 * is served, one without a certificate, with one from another CA, or over
 * plain tcp is refused; a client refuses a server whose certificate another
 * CA signed; lease-service peers probe each other over TLS; orchctl speaks
 * TLS from its environment; missing files stop a service with exit 2.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "orch/clock.h"
#include "test_lease_util.h"
#include "orch/v1/health.pb-c.h"

static char db[256];
static char dir[64]; /* the certificates, made per suite */
static th_svc svcs[2];

/* DIR/name into a static buffer of `slot` (several live at once). */
static const char *cert(int slot, const char *name)
{
    static char paths[8][128];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", dir, name);
    return paths[slot];
}

static void setup(void)
{
    char script[600], out[4096];
    th_db_fresh(db, sizeof db);
    snprintf(dir, sizeof dir, "/tmp/orch-tls-XXXXXX");
    cr_assert(mkdtemp(dir), "mkdtemp");
    snprintf(script, sizeof script, "%s/tests/support/tls_certs.sh", ORCH_SOURCE_DIR);
    const char *argv[] = { "/bin/bash", script, dir, NULL };
    cr_assert_eq(th_run(argv, NULL, out, sizeof out, 30000), 0, "tls_certs.sh: %s", out);
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        if (svcs[i].pid > 0)
            th_svc_stop(&svcs[i], SIGTERM, 10000);
    lt_cleanup();
    DIR *d = dir[0] ? opendir(dir) : NULL;
    for (struct dirent *e = d ? readdir(d) : NULL; e; e = readdir(d)) {
        char path[400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(path);
    }
    if (d)
        closedir(d);
    if (dir[0] && rmdir(dir) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 90);

/* The environment of a service with `mode`, its certificate `name`
 * (".pem"/".key") and CA `ca`; strings live in static buffers. */
static const char *const *tls_env(const char *mode, const char *name, const char *ca,
                                  const char *extra)
{
    static char v[4][200];
    static const char *env[6];
    snprintf(v[0], sizeof v[0], "ORCH_TLS_MODE=%s", mode);
    snprintf(v[1], sizeof v[1], "ORCH_TLS_CERT_FILE=%s/%s.pem", dir, name);
    snprintf(v[2], sizeof v[2], "ORCH_TLS_KEY_FILE=%s/%s.key", dir, name);
    snprintf(v[3], sizeof v[3], "ORCH_TLS_CA_FILE=%s/%s", dir, ca);
    env[0] = v[0], env[1] = v[1], env[2] = v[2], env[3] = v[3], env[4] = extra, env[5] = NULL;
    return env;
}

/* Check against `url` with TLS settings `tls`: the code within 1.5 s. */
static orch_code check_with(const char *url, const orch_rpc_tls *tls)
{
    orch_rpc_client *c;
    orch_rpc_client_opts o = { .default_timeout_ms = 1500, .tls = tls };
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    orch_rpc_status st;
    cr_assert_eq(orch_rpc_client_open(url, &o, &c), ORCH_OK);
    orch_code code =
        orch_rpc_invoke(c, "orch.v1.HealthService/Check", &req.base, NULL, NULL, &st, NULL);
    orch_rpc_client_close(c);
    return code;
}

/* Makes this test process's clients (the harness's health checks) use
 * `mode` with certificate `name` and CA `ca`. */
static void client_defaults(orch_tls_mode mode, const char *name, const char *ca)
{
    char pem[32], key[32];
    snprintf(pem, sizeof pem, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    orch_rpc_tls t = { mode, cert(0, pem), cert(1, key), cert(2, ca) };
    cr_assert_eq(orch_rpc_client_defaults(&t, NULL), ORCH_OK);
}

Test(tls, mutual_serves_a_valid_certificate_and_refuses_the_others)
{
    client_defaults(ORCH_TLS_MUTUAL, "operator", "ca.pem");
    th_svc_start(&svcs[0], "lease", db, tls_env("mutual", "server", "ca.pem", NULL), true);
    const char *url = svcs[0].rpc_url; /* tcp://: the client rewrites it */

    orch_rpc_tls good = { ORCH_TLS_MUTUAL, cert(3, "operator.pem"), cert(4, "operator.key"),
                          cert(5, "ca.pem") };
    cr_assert_eq(check_with(url, &good), ORCH_CODE_OK);

    orch_rpc_tls none = { ORCH_TLS_ON, NULL, NULL, cert(5, "ca.pem") };
    cr_assert_neq(check_with(url, &none), ORCH_CODE_OK, "served a caller without a certificate");

    orch_rpc_tls other = { ORCH_TLS_MUTUAL, cert(6, "other-client.pem"),
                           cert(7, "other-client.key"), cert(5, "ca.pem") };
    cr_assert_neq(check_with(url, &other), ORCH_CODE_OK, "served a certificate of another CA");

    orch_rpc_tls plain = { ORCH_TLS_OFF, NULL, NULL, NULL };
    cr_assert_neq(check_with(url, &plain), ORCH_CODE_OK, "served plain tcp");

    /* Still serving the valid caller after the refusals. */
    cr_assert_eq(check_with(url, &good), ORCH_CODE_OK);
    cr_assert(th_svc_log_has(&svcs[0], "tls+tcp://127.0.0.1:"));
}

/* ---- a slow network: a relay that holds every chunk RELAY_DELAY_MS ------ */

/* A handshake with a client certificate is about five chunks, then the SP
 * headers and the call: ~1.2 s on a new connection, 0.3 s on one made. */
#define RELAY_DELAY_MS 150

typedef struct relay {
    int lfd, target_port;
    char url[64]; /* tcp://127.0.0.1:PORT */
    atomic_bool stop;
    pthread_t accepter;
} relay;

static bool pass_one(int from, int to)
{
    char buf[16384];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return false;
    usleep(RELAY_DELAY_MS * 1000);
    for (ssize_t done = 0, w; done < n; done += w)
        if ((w = write(to, buf + done, (size_t)(n - done))) <= 0)
            return false;
    return true;
}

/* One connection, both directions, until either side closes. */
static void *relay_pair(void *arg)
{
    int *fds = arg;
    struct pollfd p[2] = { { fds[0], POLLIN, 0 }, { fds[1], POLLIN, 0 } };
    for (bool open = true; open;) {
        if (poll(p, 2, 1000) < 0)
            break;
        for (int i = 0; i < 2 && open; i++)
            if (p[i].revents)
                open = pass_one(p[i].fd, p[1 - i].fd);
    }
    close(fds[0]);
    close(fds[1]);
    free(fds);
    return NULL;
}

static int dial_local(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *relay_accept(void *arg)
{
    relay *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd p = { r->lfd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept(r->lfd, NULL, NULL), s = c >= 0 ? dial_local(r->target_port) : -1;
        int *fds = s >= 0 ? malloc(2 * sizeof *fds) : NULL;
        pthread_t t;
        if (fds) {
            fds[0] = c, fds[1] = s;
            if (pthread_create(&t, NULL, relay_pair, fds) == 0) {
                pthread_detach(t);
                continue;
            }
            free(fds);
        }
        if (c >= 0)
            close(c);
        if (s >= 0)
            close(s);
    }
    return NULL;
}

/* Starts a relay on a free port in front of tcp://127.0.0.1:PORT. */
static void relay_start(relay *r, const char *target_url)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->target_port = atoi(strrchr(target_url, ':') + 1);
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(r->lfd >= 0 && bind(r->lfd, (struct sockaddr *)&a, sizeof a) == 0 &&
              listen(r->lfd, 16) == 0 && getsockname(r->lfd, (struct sockaddr *)&a, &len) == 0);
    snprintf(r->url, sizeof r->url, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    atomic_store(&r->stop, false);
    cr_assert_eq(pthread_create(&r->accepter, NULL, relay_accept, r), 0);
}

static void relay_stop(relay *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->accepter, NULL);
    close(r->lfd);
}

/* The readiness poll must not depend on a TLS handshake fitting in one of
 * its attempts (500 ms each): each chunk through the relay waits
 * RELAY_DELAY_MS, so a Check on a new connection takes over a second. */
Test(tls, readiness_poll_waits_out_a_handshake_slower_than_an_attempt)
{
    client_defaults(ORCH_TLS_MUTUAL, "operator", "ca.pem");
    th_svc_start(&svcs[0], "lease", db, tls_env("mutual", "server", "ca.pem", NULL), true);
    static relay r;
    relay_start(&r, svcs[0].rpc_url);
    th_svc slow = svcs[0];
    snprintf(slow.rpc_url, sizeof slow.rpc_url, "%s", r.url);
    uint64_t t0 = orch_mono_ms();
    bool ready = th_svc_wait_health(&slow, TH_SERVING, 10000);
    uint64_t took = orch_mono_ms() - t0;
    relay_stop(&r);
    cr_assert(ready, "no SERVING answer through a %d ms relay within 10 s", RELAY_DELAY_MS);
    cr_assert_geq(took, 4 * RELAY_DELAY_MS, "the answer came faster than the relay allows");
}

Test(tls, client_refuses_a_server_certificate_of_another_ca)
{
    /* The server's certificate and CA are the other CA's; the harness
     * trusts that CA, so it sees the service come up. */
    client_defaults(ORCH_TLS_ON, "other-client", "other-ca.pem");
    th_svc_start(&svcs[0], "lease", db, tls_env("on", "other-server", "other-ca.pem", NULL), true);
    orch_rpc_tls trusts_ours = { ORCH_TLS_ON, NULL, NULL, cert(5, "ca.pem") };
    cr_assert_neq(check_with(svcs[0].rpc_url, &trusts_ours), ORCH_CODE_OK,
                  "accepted a server certificate signed by another CA");
    orch_rpc_tls trusts_theirs = { ORCH_TLS_ON, NULL, NULL, cert(5, "other-ca.pem") };
    cr_assert_eq(check_with(svcs[0].rpc_url, &trusts_theirs), ORCH_CODE_OK);
}

Test(tls, lease_peers_probe_each_other_over_mutual_tls)
{
    client_defaults(ORCH_TLS_MUTUAL, "operator", "ca.pem");
    th_svc_start(&svcs[0], "lease", db,
                 tls_env("mutual", "server", "ca.pem", "ORCH_HOST_ID=tls-host-a"), true);
    /* tls_env's buffers are reused: copy B's environment first. */
    static char eb[6][200];
    const char *const *e = tls_env("mutual", "server", "ca.pem", "ORCH_HOST_ID=tls-host-b");
    const char *envb[6] = { NULL };
    for (int i = 0; e[i]; i++) {
        snprintf(eb[i], sizeof eb[i], "%s", e[i]);
        envb[i] = eb[i];
    }
    lt_start_advertised(&svcs[1], db, envb, NULL, true);
    orch_rpc_client *c = lt_client(&svcs[1]);
    lt_owner oa, ob;
    lt_owner_spawn(&oa, "tls-host-a", NULL);
    lt_owner_spawn(&ob, "tls-host-b", NULL);
    lt_acq g = lt_acquire(c, "TLS-1", "orch", &oa, "monitor");
    cr_assert(g.granted, "%s", g.message);
    /* B asks A (over tls+tcp) whether A's owner lives: it does. */
    lt_acq h = lt_acquire(c, "TLS-1", "orch", &ob, "webhook");
    cr_assert(h.held, "%s", h.message);
    cr_assert_eq(h.holder_liveness, ORCH__V1__LIVENESS__LIVENESS_ALIVE,
                 "the probe over TLS failed");
    lt_client_close(c);
}

Test(tls, orchctl_speaks_tls_from_its_environment)
{
    client_defaults(ORCH_TLS_MUTUAL, "operator", "ca.pem");
    th_svc_start(&svcs[0], "lease", db, tls_env("mutual", "server", "ca.pem", NULL), true);
    char bin[600], out[8192], url[128];
    snprintf(bin, sizeof bin, "%s/tools/orchctl/orchctl", ORCH_BINARY_DIR);
    snprintf(url, sizeof url, "ORCH_LEASE_RPC_URL=%s", svcs[0].rpc_url);
    const char *argv[] = { bin, "health", "lease", NULL };
    const char *const *t = tls_env("mutual", "operator", "ca.pem", url);
    cr_assert_eq(th_run(argv, t, out, sizeof out, 20000), 0, "%s", out);
    const char *argv_plain[] = { bin, "--timeout", "1000", "health", "lease", NULL };
    const char *plain[] = { url, NULL };
    cr_assert_neq(th_run(argv_plain, plain, out, sizeof out, 20000), 0, "plain tcp was served: %s",
                  out);
}

Test(tls, missing_files_or_a_tls_address_without_tls_exit_2)
{
    char bin[600], out[8192], url[300];
    snprintf(bin, sizeof bin, "%s/services/lease/lease-service", ORCH_BINARY_DIR);
    snprintf(url, sizeof url, "ORCH_DATABASE_URL=%s", db);
    const char *argv[] = { bin, NULL };
    const char *nofiles[] = { url, "ORCH_RUNTIME=test", "ORCH_TLS_MODE=mutual", NULL };
    cr_assert_eq(th_run(argv, nofiles, out, sizeof out, 20000), 2, "%s", out);
    cr_assert(strstr(out, "ORCH_TLS_MODE=mutual needs ORCH_TLS_CA_FILE"), "%s", out);
    const char *tlsurl[] = { url, "ORCH_RUNTIME=test", "ORCH_LEASE_RPC_URL=tls+tcp://127.0.0.1:1",
                             NULL };
    cr_assert_eq(th_run(argv, tlsurl, out, sizeof out, 20000), 2, "%s", out);
    cr_assert(strstr(out, "ORCH_TLS_MODE is off"), "%s", out);
}
