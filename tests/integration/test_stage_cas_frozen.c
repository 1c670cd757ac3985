/*
 * test_stage_cas_frozen.c - a stage-service that freezes in the middle of
 * its stage write holds no row lock. The client here is stage_store_cas()
 * itself on a pooled connection that reaches the real PostgreSQL through a
 * small TCP relay in this test; the relay counts the server's ReadyForQuery
 * messages and, once armed, stops passing the client's bytes after the N-th
 * one: exactly what a SIGSTOP of the client between two round trips looks
 * like to the server, made deterministic. A CAS that needs more than one
 * round trip is caught holding the task and lease rows; the one-statement
 * CAS has finished before the relay ever freezes.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "orch/clock.h"
#include "orch/db.h"
#include "orch/migrate.h"
#include "stage_store.h"

#define ITEM "ORCH-FROZEN-CAS"

/* ---- the relay ------------------------------------------------------------ */

typedef struct relay {
    int lfd, cfd, sfd, port, pg_port;
    atomic_int ready;     /* ReadyForQuery messages the server sent */
    atomic_int freeze_at; /* 0: never; else stop the client's bytes from then on */
    atomic_bool stop;
    unsigned char hdr[5]; /* server message header being read */
    size_t have;
    uint64_t skip; /* body bytes of the current server message left */
    pthread_t th;
} relay;

static relay rl;

/* Counts the server's ReadyForQuery ('Z') messages in `n` bytes. */
static void scan_server(relay *r, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (r->skip) {
            size_t k = n - i < r->skip ? n - i : (size_t)r->skip;
            r->skip -= k;
            i += k;
            continue;
        }
        r->hdr[r->have++] = p[i++];
        if (r->have < 5)
            continue;
        uint32_t len = (uint32_t)r->hdr[1] << 24 | (uint32_t)r->hdr[2] << 16 |
                       (uint32_t)r->hdr[3] << 8 | r->hdr[4];
        if (r->hdr[0] == 'Z')
            atomic_fetch_add(&r->ready, 1);
        r->skip = len >= 4 ? len - 4 : 0;
        r->have = 0;
    }
}

static bool pass(int from, int to, relay *r, bool server)
{
    unsigned char buf[16384];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return false;
    if (server)
        scan_server(r, buf, (size_t)n); /* counted before the client sees it */
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0)
            return false;
        off += w;
    }
    return true;
}

static void *relay_main(void *arg)
{
    relay *r = arg;
    r->cfd = accept(r->lfd, NULL, NULL);
    if (r->cfd < 0)
        return NULL;
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)r->pg_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    r->sfd = socket(AF_INET, SOCK_STREAM, 0);
    if (r->sfd < 0 || connect(r->sfd, (struct sockaddr *)&a, sizeof a) != 0)
        return NULL;
    while (!atomic_load(&r->stop)) {
        int fz = atomic_load(&r->freeze_at);
        bool frozen = fz > 0 && atomic_load(&r->ready) >= fz;
        struct pollfd pf[2] = { { .fd = r->sfd, .events = POLLIN },
                                { .fd = frozen ? -1 : r->cfd, .events = POLLIN } };
        if (poll(pf, 2, 50) < 0)
            break;
        if ((pf[0].revents & (POLLIN | POLLHUP)) && !pass(r->sfd, r->cfd, r, true))
            break;
        if ((pf[1].revents & (POLLIN | POLLHUP)) && !pass(r->cfd, r->sfd, r, false))
            break;
    }
    return NULL;
}

static void relay_start(relay *r, int pg_port)
{
    memset(r, 0, sizeof *r);
    r->cfd = r->sfd = -1;
    r->pg_port = pg_port;
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    cr_assert(r->lfd >= 0 && bind(r->lfd, (struct sockaddr *)&a, sizeof a) == 0);
    cr_assert(listen(r->lfd, 1) == 0 && getsockname(r->lfd, (struct sockaddr *)&a, &len) == 0);
    r->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&r->th, NULL, relay_main, r), 0);
}

/* Ends the relay: the frozen client's connection breaks, so its call returns. */
static void relay_stop(relay *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->th, NULL);
    if (r->cfd >= 0)
        shutdown(r->cfd, SHUT_RDWR), close(r->cfd);
    if (r->sfd >= 0)
        close(r->sfd);
    close(r->lfd);
}

/* ---- the test ------------------------------------------------------------- */

static char url[600];
static orch_db_pool *direct, *relayed;

static void setup(void)
{
    th_db_fresh(url, sizeof url);
    cr_assert_eq(orch_db_pool_open(url, 1, &direct), ORCH_OK);
    orch_db_conn *c;
    cr_assert_eq(orch_db_acquire(direct, orch_mono_ms() + 10000, &c), ORCH_OK);
    cr_assert_eq(orch_migrate(c, orch_mono_ms() + 30000, NULL), ORCH_OK);
    stage_task in = { .work_item = ITEM, .repo = "orch", .title = "t" }, t;
    bool created;
    cr_assert_eq(stage_store_create(c, orch_mono_ms() + 5000, &in, &t, &created), ORCH_OK);
    orch_db_release(c);
    free(th_sql(url, "INSERT INTO transition_lease (work_item, epoch, owner_host, owner_boot_id,"
                     " owner_pid, owner_start_ticks, owner_instance, actor, transition, repo)"
                     " VALUES ('" ITEM "', 1, 'h', 'b', 1, 1, 'i', 'monitor', 't', 'orch')"));
    relayed = NULL;
}

static void teardown(void)
{
    orch_db_pool_close(relayed);
    orch_db_pool_close(direct);
}

TestSuite(stage_cas_frozen, .init = setup, .fini = teardown, .timeout = 60);

typedef struct cas_call {
    orch_db_conn *c;
    bool finish;       /* the intent finish instead of the CAS */
    stage_id from, to; /* the CAS */
    int64_t intent;    /* the intent finish */
    orch_err err;
    bool won;
    atomic_bool done;
} cas_call;

static void *run_cas(void *arg)
{
    cas_call *k = arg;
    stage_cas cas = { .work_item = ITEM,
                      .expected = k->from,
                      .to = k->to,
                      .conditional = true,
                      .epoch = 1,
                      .actor = "test",
                      .reason = "frozen" };
    stage_task out = { .cycle = 0 };
    snprintf(out.work_item, sizeof out.work_item, "%s", ITEM);
    if (k->finish)
        k->err =
            stage_store_intent_finish(k->c, ORCH_DEADLINE_NONE,
                                      &(stage_intent_outcome){ k->intent, 1, "ok", "done", &out,
                                                               "built_image_digest", "sha256:1" },
                                      &k->won);
    else
        k->err = stage_store_cas(k->c, ORCH_DEADLINE_NONE, &cas, &k->won, &out);
    atomic_store(&k->done, true);
    return NULL;
}

/* Whether another client can lock the row now (NOWAIT). */
static bool row_free(const char *sql)
{
    PGconn *pc = PQconnectdb(url);
    cr_assert_eq(PQstatus(pc), CONNECTION_OK, "%s", PQerrorMessage(pc));
    PGresult *r = PQexec(pc, sql);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    PQfinish(pc);
    return ok;
}

static int pg_port(void)
{
    const char *p = strrchr(url, ':');
    cr_assert(p);
    return (int)strtol(p + 1, NULL, 10);
}

/* A connection through the relay (which must be running). */
static orch_db_conn *relayed_conn(void)
{
    char rurl[700];
    const char *dbname = strrchr(url, '/') + 1;
    snprintf(rurl, sizeof rurl,
             "postgresql://orch@127.0.0.1:%d/%s?sslmode=disable&gssencmode=disable", rl.port,
             dbname);
    cr_assert_eq(orch_db_pool_open(rurl, 1, &relayed), ORCH_OK);
    orch_db_conn *c;
    cr_assert_eq(orch_db_acquire(relayed, orch_mono_ms() + 10000, &c), ORCH_OK);
    return c;
}

typedef struct frozen {
    bool done;
    bool free_rows[2];
} frozen;

/* Runs `k` with the client frozen after two round trips (in a transaction:
 * BEGIN, then the first write that locks rows), then asks whether the rows
 * of `probe` can be locked by another client. Ends the relay. */
static frozen run_frozen(cas_call *k, const char *const probe[2])
{
    frozen f;
    atomic_store(&rl.freeze_at, atomic_load(&rl.ready) + 2);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_cas, k), 0);
    for (int i = 0; i < 60 && !atomic_load(&k->done); i++) { /* at most ~3 s */
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 2; i++)
        f.free_rows[i] = row_free(probe[i]);
    f.done = atomic_load(&k->done);
    relay_stop(&rl);
    pthread_join(th, NULL);
    return f;
}

Test(stage_cas_frozen, frozen_stage_service_inside_its_cas_holds_no_row_lock)
{
    relay_start(&rl, pg_port());
    orch_db_conn *c = relayed_conn();
    /* A first CAS through the relay prepares the statements and sets the
     * session's timeout, so the second one sends only its own round trips. */
    cas_call warm = { .c = c, .from = STAGE_BACKLOG, .to = STAGE_ANALYSIS };
    run_cas(&warm);
    cr_assert(warm.err == ORCH_OK && warm.won, "warm-up CAS: %s", orch_strerror(warm.err));

    static const char *const probe[2] = { "SELECT 1 FROM transition_lease WHERE work_item = '" ITEM
                                          "' FOR UPDATE NOWAIT",
                                          "SELECT 1 FROM tasks WHERE work_item = '" ITEM
                                          "' FOR UPDATE NOWAIT" };
    cas_call k = { .c = c, .from = STAGE_ANALYSIS, .to = STAGE_ARCHITECTURE };
    frozen f = run_frozen(&k, probe);
    orch_db_release(c);
    cr_assert(f.free_rows[0],
              "the frozen CAS still holds the lease row: every reaper waits for it");
    cr_assert(f.free_rows[1], "the frozen CAS still holds the task row");
    cr_assert(f.done, "the CAS needed more than one round trip");
    cr_assert(k.err == ORCH_OK && k.won, "CAS: %s", orch_strerror(k.err));
    char *n = th_sql(url, "SELECT count(*) FROM stage_history h JOIN tasks t ON t.id = h.task_id"
                          " WHERE t.work_item = '" ITEM "' AND h.lease_epoch = 1");
    cr_assert_str_eq(n, "2", "one history row per won CAS");
    free(n);
}

static int64_t claim(const char *effect)
{
    orch_db_conn *c;
    stage_intent_state st;
    stage_intent row;
    cr_assert_eq(orch_db_acquire(direct, orch_mono_ms() + 5000, &c), ORCH_OK);
    stage_intent_key key = { ITEM, "staging->deploy", effect, 0 };
    cr_assert_eq(stage_store_intent_claim(c, orch_mono_ms() + 5000, &key, 1, NULL, &st, &row),
                 ORCH_OK);
    orch_db_release(c);
    cr_assert_eq(st, STAGE_INTENT_CLAIMED);
    return row.id;
}

Test(stage_cas_frozen, frozen_stage_service_recording_an_outcome_holds_no_row_lock)
{
    int64_t first = claim("image_rebuild"), second = claim("deploy_start");
    relay_start(&rl, pg_port());
    orch_db_conn *c = relayed_conn();
    cas_call warm = { .c = c, .finish = true, .intent = first };
    run_cas(&warm);
    cr_assert(warm.err == ORCH_OK && warm.won, "warm-up finish: %s", orch_strerror(warm.err));

    char p0[160];
    snprintf(p0, sizeof p0, "SELECT 1 FROM side_effects WHERE id = %lld FOR UPDATE NOWAIT",
             (long long)second);
    const char *const probe[2] = { p0, "SELECT 1 FROM task_evidence WHERE work_item = '" ITEM
                                       "' FOR UPDATE NOWAIT" };
    cas_call k = { .c = c, .finish = true, .intent = second };
    frozen f = run_frozen(&k, probe);
    orch_db_release(c);
    cr_assert(f.free_rows[0], "the frozen outcome write still holds the intent row");
    cr_assert(f.free_rows[1], "the frozen outcome write still holds the verdict row");
    cr_assert(f.done, "recording the outcome needed more than one round trip");
    cr_assert(k.err == ORCH_OK && k.won, "finish: %s", orch_strerror(k.err));
    char *v = th_sql(url, "SELECT outcome || ' ' || (SELECT value FROM task_evidence WHERE"
                          " work_item = '" ITEM "' AND key = 'built_image_digest')"
                          " FROM side_effects WHERE effect = 'deploy_start'");
    cr_assert_str_eq(v, "ok sha256:1", "the outcome and its verdict were not both written");
    free(v);
}
