/*
 * test_db.c - the PostgreSQL layer against a real server: SQLSTATE mapping,
 * statement_timeout derived from the deadline, reconnect after the backend
 * dies, pool exhaustion, rollback on release, migrations applied once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "orch/clock.h"
#include "orch/db.h"
#include "orch/migrate.h"

static char url[600];
static orch_db_pool *pool;

static void setup(void)
{
    th_db_fresh(url, sizeof url);
    cr_assert(orch_db_pool_open(url, 2, &pool) == ORCH_OK);
}

static void teardown(void)
{
    orch_db_pool_close(pool);
}

TestSuite(db, .init = setup, .fini = teardown, .timeout = 60);

static uint64_t in_ms(uint64_t ms)
{
    return orch_mono_ms() + ms;
}

Test(db, parameterized_statement_returns_rows)
{
    orch_db_conn *c;
    orch_db_result *r;
    const char *params[] = { "it's a \"quoted\" value", NULL };
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    cr_assert(orch_db_exec(c, in_ms(5000), "SELECT $1::text, $2::text IS NULL", 2, params, &r) ==
              ORCH_OK);
    cr_assert_eq(orch_db_result_rows(r), 1);
    cr_assert_str_eq(orch_db_result_get(r, 0, 0), params[0]);
    cr_assert_str_eq(orch_db_result_get(r, 0, 1), "t");
    cr_assert_null(orch_db_result_get(r, 0, 5));
    orch_db_result_free(r);
    orch_db_release(c);
}

Test(db, unique_violation_maps_to_exists)
{
    orch_db_conn *c;
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    cr_assert(orch_db_exec(c, in_ms(5000), "CREATE TABLE u (k text PRIMARY KEY)", 0, NULL, NULL) ==
              ORCH_OK);
    const char *k[] = { "a" };
    cr_assert(orch_db_exec(c, in_ms(5000), "INSERT INTO u VALUES ($1)", 1, k, NULL) == ORCH_OK);
    cr_assert_eq(orch_db_exec(c, in_ms(5000), "INSERT INTO u VALUES ($1)", 1, k, NULL),
                 ORCH_EEXISTS);
    cr_assert_str_eq(orch_db_last_sqlstate(c), "23505");
    orch_db_release(c);
}

Test(db, statement_timeout_follows_the_deadline)
{
    orch_db_conn *c;
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    uint64_t t0 = orch_mono_ms();
    cr_assert_eq(orch_db_exec(c, in_ms(300), "SELECT pg_sleep(5)", 0, NULL, NULL), ORCH_ETIMEDOUT);
    uint64_t took = orch_mono_ms() - t0;
    cr_assert_lt(took, 2000, "the statement ran %llu ms past a 300 ms deadline",
                 (unsigned long long)took);
    cr_assert_str_eq(orch_db_last_sqlstate(c), "57014");
    /* The same connection serves a later call with a longer budget. */
    cr_assert(orch_db_exec(c, in_ms(5000), "SELECT pg_sleep(0.5)", 0, NULL, NULL) == ORCH_OK);
    /* A passed deadline sends nothing. */
    cr_assert_eq(orch_db_exec(c, orch_mono_ms(), "SELECT 1", 0, NULL, NULL), ORCH_ETIMEDOUT);
    orch_db_release(c);
}

Test(db, nowait_lock_loss_maps_to_locked)
{
    orch_db_conn *a, *b;
    cr_assert(orch_db_acquire(pool, in_ms(5000), &a) == ORCH_OK);
    cr_assert(orch_db_acquire(pool, in_ms(5000), &b) == ORCH_OK);
    cr_assert(orch_db_exec(a, in_ms(5000), "CREATE TABLE l (k int PRIMARY KEY)", 0, NULL, NULL) ==
              ORCH_OK);
    cr_assert(orch_db_exec(a, in_ms(5000), "INSERT INTO l VALUES (1)", 0, NULL, NULL) == ORCH_OK);
    cr_assert(orch_db_begin(a, in_ms(5000)) == ORCH_OK);
    cr_assert(orch_db_exec(a, in_ms(5000), "SELECT * FROM l WHERE k = 1 FOR UPDATE", 0, NULL,
                           NULL) == ORCH_OK);
    cr_assert(orch_db_begin(b, in_ms(5000)) == ORCH_OK);
    cr_assert_eq(orch_db_exec(b, in_ms(5000), "SELECT * FROM l WHERE k = 1 FOR UPDATE NOWAIT", 0,
                              NULL, NULL),
                 ORCH_EDB_LOCKED);
    cr_assert_str_eq(orch_db_last_sqlstate(b), "55P03");
    /* COMMIT of an aborted transaction is reported, not taken for success. */
    cr_assert_eq(orch_db_commit(b, in_ms(5000)), ORCH_EDB);
    cr_assert(orch_db_commit(a, in_ms(5000)) == ORCH_OK);
    orch_db_release(a);
    orch_db_release(b);
}

Test(db, release_rolls_back_an_open_transaction)
{
    orch_db_conn *c;
    orch_db_result *r;
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    cr_assert(orch_db_exec(c, in_ms(5000), "CREATE TABLE t (k int)", 0, NULL, NULL) == ORCH_OK);
    cr_assert(orch_db_begin(c, in_ms(5000)) == ORCH_OK);
    cr_assert(orch_db_exec(c, in_ms(5000), "INSERT INTO t VALUES (1)", 0, NULL, NULL) == ORCH_OK);
    orch_db_release(c);
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    cr_assert(orch_db_exec(c, in_ms(5000), "SELECT count(*) FROM t", 0, NULL, &r) == ORCH_OK);
    cr_assert_str_eq(orch_db_result_get(r, 0, 0), "0");
    orch_db_result_free(r);
    orch_db_release(c);
}

Test(db, killed_backend_is_unavailable_then_reconnected)
{
    orch_db_conn *c;
    orch_db_result *r;
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    cr_assert(orch_db_exec(c, in_ms(5000), "SELECT pg_backend_pid()", 0, NULL, &r) == ORCH_OK);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", orch_db_result_get(r, 0, 0));
    orch_db_result_free(r);
    free(th_sql(url, sql));
    orch_err err = orch_db_exec(c, in_ms(5000), "SELECT 1", 0, NULL, NULL);
    cr_assert_eq(err, ORCH_EDB_UNAVAIL, "got %s", orch_strerror(err));
    orch_db_release(c);
    /* Both pool slots are tried: the broken one reconnects at checkout. */
    for (int i = 0; i < 2; i++) {
        cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
        cr_assert(orch_db_exec(c, in_ms(5000), "SELECT 1", 0, NULL, NULL) == ORCH_OK);
        orch_db_release(c);
    }
}

Test(db, exhausted_pool_times_out_at_the_deadline)
{
    orch_db_conn *a, *b, *c;
    cr_assert(orch_db_acquire(pool, in_ms(5000), &a) == ORCH_OK);
    cr_assert(orch_db_acquire(pool, in_ms(5000), &b) == ORCH_OK);
    uint64_t t0 = orch_mono_ms();
    cr_assert_eq(orch_db_acquire(pool, in_ms(200), &c), ORCH_ETIMEDOUT);
    uint64_t took = orch_mono_ms() - t0;
    cr_assert(took >= 150 && took < 1500, "waited %llu ms", (unsigned long long)took);
    orch_db_release(a);
    cr_assert(orch_db_acquire(pool, in_ms(200), &c) == ORCH_OK);
    orch_db_release(b);
    orch_db_release(c);
}

Test(db, unreachable_server_is_unavailable)
{
    orch_db_pool *p;
    orch_db_conn *c;
    char bad[128];
    snprintf(bad, sizeof bad, "postgresql://orch@127.0.0.1:%d/orch", th_free_port());
    cr_assert(orch_db_pool_open(bad, 1, &p) == ORCH_OK);
    cr_assert_eq(orch_db_acquire(p, in_ms(3000), &c), ORCH_EDB_UNAVAIL);
    cr_assert_eq(orch_db_ping(p, in_ms(3000)), ORCH_EDB_UNAVAIL);
    orch_db_pool_close(p);
}

/* GetTask released its connection even when orch_db_acquire had failed
 * (and had put the connection back itself): the pool's free list then held
 * one connection twice, two threads connected it at once and the
 * stage-service crashed in PQfinish when the database came back after a
 * network cut. A failed acquire now leaves NULL, and a release of that
 * leaves the pool whole. */
Test(db, failed_acquire_then_release_does_not_release_twice)
{
    orch_db_pool *p;
    char bad[128];
    snprintf(bad, sizeof bad, "postgresql://orch@127.0.0.1:%d/orch", th_free_port());
    cr_assert(orch_db_pool_open(bad, 2, &p) == ORCH_OK);
    orch_db_conn *a = (orch_db_conn *)&p; /* stands for a stale value */
    cr_assert_eq(orch_db_acquire(p, in_ms(3000), &a), ORCH_EDB_UNAVAIL);
    cr_assert_null(a, "a failed acquire must leave NULL");
    orch_db_release(a);
    orch_db_pool_close(p);
    orch_db_conn *c, *d;
    cr_assert(orch_db_pool_open(url, 2, &p) == ORCH_OK);
    cr_assert_eq(orch_db_acquire(p, in_ms(5000), &c), ORCH_OK);
    cr_assert_eq(orch_db_acquire(p, in_ms(5000), &d), ORCH_OK);
    cr_assert_neq(c, d);
    orch_db_conn *e = c;
    cr_assert_eq(orch_db_acquire(p, in_ms(200), &e), ORCH_ETIMEDOUT);
    cr_assert_null(e, "a timed-out acquire must leave NULL");
    orch_db_release(e);
    orch_db_release(c);
    orch_db_release(d);
    orch_db_pool_close(p);
}

typedef struct mig_arg {
    const char *url;
    orch_err err;
    int applied;
} mig_arg;

static void *migrate_thread(void *p)
{
    mig_arg *a = p;
    orch_db_pool *pl;
    orch_db_conn *c;
    a->err = orch_db_pool_open(a->url, 1, &pl);
    if (a->err)
        return NULL;
    a->err = orch_db_acquire(pl, orch_mono_ms() + 20000, &c);
    if (!a->err) {
        a->err = orch_migrate(c, orch_mono_ms() + 60000, &a->applied);
        orch_db_release(c);
    }
    orch_db_pool_close(pl);
    return NULL;
}

Test(db, concurrent_migrations_apply_each_version_once)
{
    pthread_t t[4];
    mig_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (mig_arg){ url, ORCH_OK, 0 };
        pthread_create(&t[i], NULL, migrate_thread, &a[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(a[i].err, ORCH_OK, "%s", orch_strerror(a[i].err));
        total += a[i].applied;
    }
    cr_assert_eq(total, (int)orch__migrations_count);
    char *n = th_sql(url, "SELECT count(*) FROM schema_migrations");
    cr_assert_eq(strtol(n, NULL, 10), (long)orch__migrations_count);
    free(n);
}

/* Regression: a statement to a server that does not answer (here its backend
 * is frozen; in production, a network cut) blocked past its deadline, since
 * only the server-side statement_timeout bounded it. The client now gives up
 * at the deadline (plus a small slack), closes the connection, and the next
 * checkout opens a fresh one. */
Test(db, unanswered_statement_returns_at_the_deadline)
{
    orch_db_conn *c;
    orch_db_result *r;
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    cr_assert(orch_db_exec(c, in_ms(5000), "SELECT pg_backend_pid()", 0, NULL, &r) == ORCH_OK);
    pid_t backend = (pid_t)strtol(orch_db_result_get(r, 0, 0), NULL, 10);
    orch_db_result_free(r);
    cr_assert(backend > 0);
    cr_assert_eq(kill(backend, SIGSTOP), 0, "cannot freeze backend %d", (int)backend);
    uint64_t t0 = orch_mono_ms();
    orch_err err = orch_db_exec(c, in_ms(300), "SELECT 1", 0, NULL, NULL);
    uint64_t took = orch_mono_ms() - t0;
    kill(backend, SIGCONT);
    kill(backend, SIGTERM);
    cr_assert_eq(err, ORCH_ETIMEDOUT, "got %s", orch_strerror(err));
    cr_assert_lt(took, 2500, "blocked %llu ms past a 300 ms deadline", (unsigned long long)took);
    orch_db_release(c);
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    cr_assert(orch_db_exec(c, in_ms(5000), "SELECT 1", 0, NULL, NULL) == ORCH_OK);
    orch_db_release(c);
}
