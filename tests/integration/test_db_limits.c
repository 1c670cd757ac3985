/*
 * test_db_limits.c - the session limits every pooled connection runs with,
 * against a real server: idle_in_transaction_session_timeout ends the
 * transaction of a client frozen inside it (and frees its row locks),
 * lock_timeout bounds a wait for a row lock even without a deadline, and a
 * write that commits by itself whose answer is lost is "unknown", never
 * "failed". Frozen clients and lock holders are separate libpq connections.
 */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "orch/clock.h"
#include "orch/db.h"

static char url[600];
static orch_db_pool *pool;
static PGconn *side;

static void setup(void)
{
    th_db_fresh(url, sizeof url);
    cr_assert(orch_db_pool_open(url, 2, &pool) == ORCH_OK);
    free(th_sql(url, "CREATE TABLE t (k integer PRIMARY KEY, v integer NOT NULL)"));
    free(th_sql(url, "INSERT INTO t VALUES (1, 0), (2, 0)"));
    side = NULL;
}

static void teardown(void)
{
    if (side)
        PQfinish(side);
    orch_db_pool_close(pool);
}

TestSuite(db_limits, .init = setup, .fini = teardown, .timeout = 60);

static uint64_t in_ms(uint64_t ms)
{
    return orch_mono_ms() + ms;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* A second client, outside the pool. */
static PGconn *side_conn(void)
{
    side = PQconnectdb(url);
    cr_assert_eq(PQstatus(side), CONNECTION_OK, "%s", PQerrorMessage(side));
    return side;
}

/* Runs `sql` on the side connection; true when it succeeded. */
static bool side_ok(const char *sql)
{
    PGresult *r = PQexec(side, sql);
    ExecStatusType st = PQresultStatus(r);
    PQclear(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static char *show(orch_db_conn *c, const char *setting)
{
    char sql[96];
    orch_db_result *r;
    snprintf(sql, sizeof sql, "SHOW %s", setting);
    cr_assert_eq(orch_db_exec(c, in_ms(5000), sql, 0, NULL, &r), ORCH_OK);
    char *v = strdup(orch_db_result_get(r, 0, 0));
    orch_db_result_free(r);
    return v;
}

Test(db_limits, every_connection_runs_with_lock_and_idle_transaction_limits)
{
    orch_db_conn *c;
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    char *lock = show(c, "lock_timeout"), *idle = show(c, "idle_in_transaction_session_timeout");
    cr_assert_str_eq(lock, "5s", "default lock_timeout");
    cr_assert_str_eq(idle, "30s", "default idle_in_transaction_session_timeout");
    free(lock);
    free(idle);
    orch_db_release(c);

    orch_db_pool *p2;
    cr_assert_eq(orch_db_pool_open(url, 1, &p2), ORCH_OK);
    cr_assert_eq(orch_db_pool_set_limits(p2, 0, 1000), ORCH_EINVAL);
    cr_assert_eq(orch_db_pool_set_limits(p2, 250, 1500), ORCH_OK);
    cr_assert_eq(orch_db_acquire(p2, in_ms(5000), &c), ORCH_OK);
    lock = show(c, "lock_timeout");
    idle = show(c, "idle_in_transaction_session_timeout");
    cr_assert_str_eq(lock, "250ms");
    cr_assert_str_eq(idle, "1500ms");
    free(lock);
    free(idle);
    /* The migrations' advisory lock waits without the limit, then it is back. */
    cr_assert_eq(orch_db_unbounded_lock_wait(c, in_ms(5000), true), ORCH_OK);
    lock = show(c, "lock_timeout");
    cr_assert_str_eq(lock, "0");
    free(lock);
    cr_assert_eq(orch_db_unbounded_lock_wait(c, in_ms(5000), false), ORCH_OK);
    lock = show(c, "lock_timeout");
    cr_assert_str_eq(lock, "250ms");
    free(lock);
    orch_db_release(c);
    orch_db_pool_close(p2);
}

Test(db_limits, frozen_session_inside_a_transaction_loses_it_and_its_row_locks)
{
    cr_assert_eq(orch_db_pool_set_limits(pool, 1000, 1000), ORCH_OK);
    orch_db_conn *c;
    const char *p[] = { "1" };
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    cr_assert_eq(orch_db_begin(c, in_ms(5000)), ORCH_OK);
    cr_assert_eq(
        orch_db_exec(c, in_ms(5000), "UPDATE t SET v = 1 WHERE k = $1::integer", 1, p, NULL),
        ORCH_OK);
    /* The client now freezes (as a SIGSTOPped process would) holding the
     * row. Another client is refused the row until the server ends the
     * frozen session's transaction. */
    uint64_t t0 = orch_mono_ms();
    side_conn();
    bool got = false;
    for (int i = 0; i < 200 && !got; i++) { /* at most ~10 s */
        got = side_ok("SELECT k FROM t WHERE k = 1 FOR UPDATE NOWAIT");
        if (!got)
            sleep_ms(50);
    }
    uint64_t waited = orch_mono_ms() - t0;
    cr_assert(got, "the frozen session still held its row lock after %llu ms",
              (unsigned long long)waited);
    cr_log_info("row free %llu ms after the client froze", (unsigned long long)waited);
    cr_assert_geq(waited, 500, "the row was never locked?");

    /* Its transaction was rolled back, and the client learns so. */
    char *v = th_sql(url, "SELECT v FROM t WHERE k = 1");
    cr_assert_str_eq(v, "0", "the frozen transaction's write survived");
    free(v);
    orch_err err = orch_db_commit(c, in_ms(5000));
    cr_assert(err == ORCH_EDB_UNKNOWN || err == ORCH_EDB, "commit after the session ended: %s",
              orch_strerror(err));
    orch_db_release(c);
    /* The pool reconnects. */
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    cr_assert_eq(orch_db_exec(c, in_ms(5000), "SELECT 1", 0, NULL, NULL), ORCH_OK);
    orch_db_release(c);
}

Test(db_limits, statement_waiting_for_a_row_lock_gives_up_after_lock_timeout)
{
    cr_assert_eq(orch_db_pool_set_limits(pool, 300, 30000), ORCH_OK);
    side_conn();
    cr_assert(side_ok("BEGIN"));
    cr_assert(side_ok("SELECT k FROM t WHERE k = 2 FOR SHARE"));
    orch_db_conn *c;
    const char *p[] = { "2" };
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    uint64_t t0 = orch_mono_ms();
    /* A deadline far away: only lock_timeout can end the wait early. */
    orch_err err =
        orch_db_exec(c, in_ms(20000), "UPDATE t SET v = 2 WHERE k = $1::integer", 1, p, NULL);
    uint64_t took = orch_mono_ms() - t0;
    cr_assert_eq(err, ORCH_EDB_LOCKED, "got %s after %llu ms", orch_strerror(err),
                 (unsigned long long)took);
    cr_assert_str_eq(orch_db_last_sqlstate(c), "55P03");
    cr_assert_lt(took, 5000, "waited %llu ms for the lock", (unsigned long long)took);
    orch_db_release(c);
    cr_assert(side_ok("ROLLBACK"));
}

typedef struct writer {
    orch_db_conn *c;
    bool use_write;
    orch_err err;
} writer;

static void *write_slowly(void *arg)
{
    writer *w = arg;
    const char *p[] = { "3" };
    static const char sql[] = "INSERT INTO t SELECT $1::integer, 0 FROM pg_sleep(5)";
    w->err = w->use_write ? orch_db_exec_write(w->c, in_ms(20000), sql, 1, p, NULL)
                          : orch_db_exec(w->c, in_ms(20000), sql, 1, p, NULL);
    return NULL;
}

/* Ends the backend running pg_sleep; bounded. */
static void terminate_sleeper(void)
{
    for (int i = 0; i < 100; i++) { /* at most ~5 s */
        char *n = th_sql(url, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                              " WHERE query LIKE 'INSERT INTO t SELECT%' AND state = 'active'");
        bool done = n && strcmp(n, "0") != 0;
        free(n);
        if (done)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("the slow write never started");
}

static orch_err lose_answer(bool use_write)
{
    orch_db_conn *c;
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    writer w = { c, use_write, ORCH_OK };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, write_slowly, &w), 0);
    terminate_sleeper();
    pthread_join(th, NULL);
    orch_db_release(c);
    return w.err;
}

Test(db_limits, write_whose_answer_is_lost_is_unknown_never_retryable)
{
    cr_assert_eq(lose_answer(true), ORCH_EDB_UNKNOWN);
    /* A plain statement keeps its old meaning (the connection was lost). */
    cr_assert_eq(lose_answer(false), ORCH_EDB_UNAVAIL);
    /* An error the server answered is not in doubt. */
    orch_db_conn *c;
    const char *p[] = { "1" };
    cr_assert_eq(orch_db_acquire(pool, in_ms(5000), &c), ORCH_OK);
    cr_assert_eq(
        orch_db_exec_write(c, in_ms(5000), "INSERT INTO t VALUES ($1::integer, 0)", 1, p, NULL),
        ORCH_EEXISTS);
    orch_db_release(c);
}
