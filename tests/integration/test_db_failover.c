/*
 * test_db_failover.c - the pool over a multi-host URL: it writes to the
 * primary whatever the order of the hosts, follows a promoted standby after
 * the primary died, replaces a session that turned out read-only (25006)
 * instead of failing for good, gives each host its share of the connect
 * deadline, and names every host it tried when none answered. The
 * primary/standby pair is private to each test (tests/support/pgctl.sh
 * standby), so stopping the primary disturbs no other test.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "orch/clock.h"
#include "orch/db.h"

TestSuite(db_failover, .timeout = 120);

static uint64_t in_ms(uint64_t ms)
{
    return orch_mono_ms() + ms;
}

static int port_of(const char *dir)
{
    char path[600];
    int port = 0;
    snprintf(path, sizeof path, "%s/port", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot read %s", path);
    cr_assert_eq(fscanf(f, "%d", &port), 1);
    fclose(f);
    return port;
}

/* A primary in `pdir` and its streaming standby in `sdir`, replicating
 * synchronously (a commit the primary acknowledged is on the standby). */
static void make_pair(char *pdir, char *sdir)
{
    char url[600];
    cr_assert(mkdtemp(pdir) && mkdtemp(sdir));
    cr_assert_eq(th_pgctl("init", pdir, NULL), 0);
    cr_assert_eq(th_pgctl("start", pdir, NULL), 0);
    cr_assert_eq(th_pgctl("standby", sdir, pdir), 0);
    th_pg_url(pdir, "orch", url, sizeof url);
    free(th_sql(url, "ALTER SYSTEM SET synchronous_standby_names = 'orch_standby'"));
    free(th_sql(url, "SELECT pg_reload_conf()"));
    for (int i = 0; i < 100; i++) {
        char *s = th_sql(url, "SELECT sync_state FROM pg_stat_replication");
        bool sync = s && strcmp(s, "sync") == 0;
        free(s);
        if (sync)
            return;
        usleep(100 * 1000);
    }
    cr_assert_fail("the standby never became synchronous");
}

/* The port of the server c is connected to. */
static int server_port(orch_db_conn *c)
{
    orch_db_result *r;
    cr_assert_eq(orch_db_exec(c, in_ms(5000), "SELECT inet_server_port()", 0, NULL, &r), ORCH_OK);
    int port = atoi(orch_db_result_get(r, 0, 0));
    orch_db_result_free(r);
    return port;
}

static orch_err insert(orch_db_conn *c, const char *v)
{
    const char *p[] = { v };
    return orch_db_exec_write(c, in_ms(5000), "INSERT INTO f VALUES ($1)", 1, p, NULL);
}

Test(db_failover, pool_writes_to_the_primary_and_follows_a_promoted_standby)
{
    char pdir[] = "/tmp/orch-dbf-p-XXXXXX", sdir[] = "/tmp/orch-dbf-s-XXXXXX";
    char url[600];
    make_pair(pdir, sdir);
    int pport = port_of(pdir), sport = port_of(sdir);
    /* The standby first: libpq skips it for a read-write session, which the
     * pool asks for although the URL does not say so. */
    snprintf(url, sizeof url, "postgresql://orch@127.0.0.1:%d,127.0.0.1:%d/orch", sport, pport);
    orch_db_pool *pool;
    orch_db_conn *c;
    cr_assert_eq(orch_db_pool_open(url, 1, &pool), ORCH_OK);
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    cr_assert_eq(server_port(c), pport);
    cr_assert_eq(orch_db_exec(c, in_ms(5000), "CREATE TABLE f (v text PRIMARY KEY)", 0, NULL, NULL),
                 ORCH_OK);
    cr_assert_eq(insert(c, "before"), ORCH_OK);
    orch_db_release(c);

    /* The primary dies: the pooled session is lost, and with only a
     * standby left no read-write session can be had. */
    cr_assert_eq(th_pgctl("stop", pdir, "immediate"), 0);
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK, "the session is reused");
    /* Sent with no answer: unknown; refused by the socket before it went
     * out: unavailable. Never a success, never "retry". */
    orch_err err = insert(c, "lost");
    cr_assert(err == ORCH_EDB_UNKNOWN || err == ORCH_EDB_UNAVAIL, "%s: %s", orch_strerror(err),
              orch_db_last_error(c));
    orch_db_release(c);
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_EDB_UNAVAIL);
    cr_assert_null(c);

    /* Promoted, the standby is the primary: the pool lands there, with
     * everything the old primary acknowledged. */
    cr_assert_eq(th_pgctl("promote", sdir, NULL), 0);
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    cr_assert_eq(server_port(c), sport);
    cr_assert_eq(insert(c, "after"), ORCH_OK);
    orch_db_result *r;
    cr_assert_eq(
        orch_db_exec(c, in_ms(5000), "SELECT string_agg(v, ',' ORDER BY v) FROM f", 0, NULL, &r),
        ORCH_OK);
    cr_assert_str_eq(orch_db_result_get(r, 0, 0), "after,before");
    orch_db_result_free(r);
    orch_db_release(c);
    orch_db_pool_close(pool);
    th_pgctl("destroy", sdir, NULL);
    th_pgctl("destroy", pdir, NULL);
}

/* A session that can only read (a standby reached without
 * target_session_attrs, a primary demoted under a pooler) answers writes
 * with 25006. That is "unavailable, reconnect", not a permanent error, and
 * the answer is an outcome: the write did not happen, so it is not
 * "unknown" either. */
Test(db_failover, read_only_session_is_unavailable_and_replaced)
{
    char url[600];
    orch_db_pool *pool;
    orch_db_conn *c;
    orch_db_result *r;
    th_db_fresh(url, sizeof url);
    free(th_sql(url, "CREATE TABLE f (v text PRIMARY KEY)"));
    cr_assert_eq(orch_db_pool_open(url, 1, &pool), ORCH_OK);

    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    cr_assert_eq(orch_db_exec(c, in_ms(5000), "SELECT pg_backend_pid()", 0, NULL, &r), ORCH_OK);
    char *pid = strdup(orch_db_result_get(r, 0, 0));
    orch_db_result_free(r);
    cr_assert_eq(
        orch_db_exec(c, in_ms(5000), "SET default_transaction_read_only = on", 0, NULL, NULL),
        ORCH_OK);
    cr_assert_eq(insert(c, "a"), ORCH_EDB_UNAVAIL, "a write on a read-only session");
    cr_assert_str_eq(orch_db_last_sqlstate(c), "25006");
    orch_db_release(c);

    /* The same slot, inside a transaction this time: a new session. */
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    cr_assert_eq(orch_db_exec(c, in_ms(5000), "SELECT pg_backend_pid()", 0, NULL, &r), ORCH_OK);
    cr_assert_str_neq(orch_db_result_get(r, 0, 0), pid, "the read-only session was kept");
    orch_db_result_free(r);
    cr_assert_eq(
        orch_db_exec(c, in_ms(5000), "SET default_transaction_read_only = on", 0, NULL, NULL),
        ORCH_OK);
    cr_assert_eq(orch_db_begin(c, in_ms(5000)), ORCH_OK);
    cr_assert_eq(insert(c, "b"), ORCH_EDB_UNAVAIL);
    cr_assert_eq(orch_db_commit(c, in_ms(5000)), ORCH_EDB_UNAVAIL,
                 "nothing to commit: not unknown");
    orch_db_release(c);

    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    cr_assert_eq(insert(c, "c"), ORCH_OK);
    orch_db_release(c);
    char *rows = th_sql(url, "SELECT string_agg(v, ',') FROM f");
    cr_assert_str_eq(rows, "c");
    free(rows);
    free(pid);
    orch_db_pool_close(pool);
}

/* A host that accepts TCP connections and never answers (a listener that
 * never accepts: the kernel completes the handshake). */
static int hung_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 16), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* libpq applies connect_timeout to each host in turn: a first host that
 * hangs must leave the next one time to answer within the caller's
 * deadline. */
Test(db_failover, hung_first_host_leaves_the_next_one_its_share_of_the_deadline)
{
    char one[600], url[1300];
    int hport;
    int fd = hung_listener(&hport);
    th_pg_url(th_pg_dir(), "orch", one, sizeof one);
    const char *hostport = strstr(one, "@") + 1; /* 127.0.0.1:PORT/orch */
    snprintf(url, sizeof url, "postgresql://orch@127.0.0.1:%d,%s", hport, hostport);
    orch_db_pool *pool;
    orch_db_conn *c;
    cr_assert_eq(orch_db_pool_open(url, 1, &pool), ORCH_OK);
    uint64_t t0 = orch_mono_ms();
    orch_err err = orch_db_acquire(pool, in_ms(5000), &c);
    uint64_t took = orch_mono_ms() - t0;
    cr_assert_eq(err, ORCH_OK, "%s", orch_strerror(err));
    cr_assert_lt(took, 4500, "connected after %llu ms of a 5000 ms deadline",
                 (unsigned long long)took);
    cr_assert_geq(took, 1500, "the hung host was not tried first (%llu ms)",
                  (unsigned long long)took);
    orch_db_release(c);
    orch_db_pool_close(pool);
    close(fd);
}

Test(db_failover, unparsable_url_is_refused_at_open)
{
    orch_db_pool *pool = NULL;
    cr_assert_eq(
        orch_db_pool_open("postgresql://orch@127.0.0.1:5432/orch?no_such_option=1", 1, &pool),
        ORCH_EINVAL);
    cr_assert_eq(orch_db_pool_open("host=127.0.0.1 port", 1, &pool), ORCH_EINVAL);
    cr_assert_null(pool);
}

/* A service given a multi-host URL none of whose hosts answers logs each
 * host's failure, not only the first. */
Test(db_failover, connection_failure_names_every_host)
{
    char url[300], p1[32], p2[32];
    int a = th_free_port(), b = th_free_port();
    snprintf(url, sizeof url,
             "postgresql://orch@127.0.0.1:%d,127.0.0.1:%d/orch?target_session_attrs=read-write", a,
             b);
    snprintf(p1, sizeof p1, "port %d failed", a);
    snprintf(p2, sizeof p2, "port %d failed", b);
    th_svc s;
    th_svc_start(&s, "guard", url, NULL, false);
    bool logged = th_svc_wait_log(&s, p2, 10000);
    if (!logged)
        th_svc_dump_log(&s);
    cr_assert(logged, "the second host's failure is not in the log");
    cr_assert(th_svc_log_has(&s, p1));
    cr_assert_eq(th_svc_stop(&s, SIGTERM, 10000), 0);
}

/* Cancels, for up to 5 s, every session waiting for the synchronous
 * standby (an operator's pg_cancel_backend on a stuck session). */
static void *cancel_sync_waits(void *arg)
{
    const char *url = arg;
    for (int i = 0; i < 100; i++) {
        usleep(50 * 1000);
        char *n = th_sql(url, "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity"
                              " WHERE wait_event = 'SyncRep'");
        bool done = n && strcmp(n, "0") != 0;
        free(n);
        if (done)
            break;
    }
    return NULL;
}

static orch_err cancelled_while_waiting(const char *url, orch_err (*call)(orch_db_conn *),
                                        orch_db_conn *c)
{
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, cancel_sync_waits, (void *)url), 0);
    orch_err err = call(c);
    pthread_join(th, NULL);
    return err;
}

static orch_err single_write(orch_db_conn *c)
{
    const char *p[] = { "single" };
    return orch_db_exec_write(c, in_ms(8000), "INSERT INTO f VALUES ($1)", 1, p, NULL);
}

static orch_err commit(orch_db_conn *c)
{
    return orch_db_commit(c, in_ms(8000));
}

/* A synchronous standby that does not confirm (here: none is connected)
 * holds every commit. statement_timeout does not end that wait (the server
 * lifts it before committing), but a cancel does, and then the server
 * reports the commit done, with a WARNING, although only the primary has
 * it. A failover at that moment loses it: the pool answers "unknown",
 * never success. */
Test(db_failover, commit_the_synchronous_standby_did_not_confirm_is_unknown)
{
    char dir[] = "/tmp/orch-dbf-u-XXXXXX";
    char url[600];
    cr_assert(mkdtemp(dir));
    cr_assert_eq(th_pgctl("init", dir, NULL), 0);
    cr_assert_eq(th_pgctl("start", dir, NULL), 0);
    th_pg_url(dir, "orch", url, sizeof url);
    free(th_sql(url, "CREATE TABLE f (v text PRIMARY KEY)"));
    free(th_sql(url, "ALTER SYSTEM SET synchronous_standby_names = 'orch_standby'"));
    free(th_sql(url, "SELECT pg_reload_conf()"));
    orch_db_pool *pool;
    orch_db_conn *c;
    cr_assert_eq(orch_db_pool_open(url, 1, &pool), ORCH_OK);
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);

    orch_err err = cancelled_while_waiting(url, single_write, c);
    cr_assert_eq(err, ORCH_EDB_UNKNOWN, "a single-statement write: %s", orch_strerror(err));
    cr_assert(strstr(orch_db_last_error(c), "synchronous standby"), "%s", orch_db_last_error(c));

    cr_assert_eq(orch_db_begin(c, in_ms(1500)), ORCH_OK);
    const char *q[] = { "transaction" };
    cr_assert_eq(orch_db_exec(c, in_ms(1500), "INSERT INTO f VALUES ($1)", 1, q, NULL), ORCH_OK);
    err = cancelled_while_waiting(url, commit, c);
    cr_assert_eq(err, ORCH_EDB_UNKNOWN, "COMMIT: %s", orch_strerror(err));
    orch_db_release(c);

    /* Both did commit on this server: "unknown" was the truth. */
    free(th_sql(url, "ALTER SYSTEM RESET synchronous_standby_names"));
    free(th_sql(url, "SELECT pg_reload_conf()"));
    char *rows = th_sql(url, "SELECT string_agg(v, ',' ORDER BY v) FROM f");
    cr_assert_str_eq(rows, "single,transaction");
    free(rows);
    /* Without a synchronous standby the same calls succeed. */
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    const char *r[] = { "after" };
    cr_assert_eq(orch_db_exec_write(c, in_ms(1500), "INSERT INTO f VALUES ($1)", 1, r, NULL),
                 ORCH_OK);
    orch_db_release(c);
    orch_db_pool_close(pool);
    th_pgctl("destroy", dir, NULL);
}
