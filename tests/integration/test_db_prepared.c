/*
 * test_db_prepared.c - statements with parameters are prepared once per
 * connection, transparently: they are seen prepared on the server, they give
 * the same results as before, and they keep working after the server lost
 * them (DEALLOCATE ALL, a schema change, a database restart).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "orch/clock.h"
#include "orch/db.h"

static uint64_t in_ms(uint64_t ms)
{
    return orch_mono_ms() + ms;
}

/* Statements prepared by orch_db on the server side of this session. */
static int server_prepared(orch_db_conn *c)
{
    orch_db_result *r;
    cr_assert(orch_db_exec(c, in_ms(5000),
                           "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'orch\\_%'",
                           0, NULL, &r) == ORCH_OK,
              "%s", orch_db_last_error(c));
    int n = (int)strtol(orch_db_result_get(r, 0, 0), NULL, 10);
    orch_db_result_free(r);
    return n;
}

static const char *select_text(orch_db_conn *c, const char *sql, const char *arg)
{
    static char out[256];
    orch_db_result *r;
    const char *p[] = { arg };
    orch_err err = orch_db_exec(c, in_ms(5000), sql, 1, p, &r);
    cr_assert(err == ORCH_OK, "%s: %s", orch_strerror(err), orch_db_last_error(c));
    snprintf(out, sizeof out, "%s", orch_db_result_get(r, 0, 0) ? orch_db_result_get(r, 0, 0) : "");
    orch_db_result_free(r);
    return out;
}

Test(db_prepared, parameterized_statements_are_prepared_once_per_connection, .timeout = 60)
{
    char url[600];
    orch_db_pool *pool;
    orch_db_conn *c;
    th_db_fresh(url, sizeof url);
    cr_assert(orch_db_pool_open(url, 1, &pool) == ORCH_OK);
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    cr_assert_eq(server_prepared(c), 0);

    static const char upper[] = "SELECT upper($1::text)";
    cr_assert_str_eq(select_text(c, upper, "abc"), "ABC");
    cr_assert_str_eq(select_text(c, upper, "def"), "DEF");
    cr_assert_eq(orch_db_prepared_count(c), 1);
    cr_assert_eq(server_prepared(c), 1);

    /* The same text from another buffer is the same statement. */
    char copy[64];
    snprintf(copy, sizeof copy, "%s", upper);
    cr_assert_str_eq(select_text(c, copy, "x"), "X");
    cr_assert_eq(orch_db_prepared_count(c), 1);
    /* A different text is another one; a buffer reused for it is not
     * mistaken for the first. */
    snprintf(copy, sizeof copy, "SELECT lower($1::text)");
    cr_assert_str_eq(select_text(c, copy, "XY"), "xy");
    cr_assert_eq(orch_db_prepared_count(c), 2);
    cr_assert_eq(server_prepared(c), 2);

    /* A statement that does not parse is reported and not remembered. */
    const char *p[] = { "1" };
    cr_assert_eq(orch_db_exec(c, in_ms(5000), "SELEC $1", 1, p, NULL), ORCH_EDB);
    cr_assert_str_eq(orch_db_last_sqlstate(c), "42601");
    cr_assert_eq(orch_db_prepared_count(c), 2);

    /* Someone discards the session's statements: prepared again, unnoticed. */
    cr_assert(orch_db_exec(c, in_ms(5000), "DEALLOCATE ALL", 0, NULL, NULL) == ORCH_OK);
    cr_assert_eq(server_prepared(c), 0);
    cr_assert_str_eq(select_text(c, upper, "again"), "AGAIN");
    cr_assert_eq(server_prepared(c), 1);
    orch_db_release(c);
    orch_db_pool_close(pool);
}

Test(db_prepared, a_schema_change_under_a_prepared_statement_is_absorbed, .timeout = 60)
{
    char url[600];
    orch_db_pool *pool;
    orch_db_conn *c;
    th_db_fresh(url, sizeof url);
    cr_assert(orch_db_pool_open(url, 1, &pool) == ORCH_OK);
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    cr_assert(orch_db_exec(c, in_ms(5000), "CREATE TABLE t (k text PRIMARY KEY, v text)", 0, NULL,
                           NULL) == ORCH_OK);
    cr_assert(orch_db_exec(c, in_ms(5000), "INSERT INTO t VALUES ('a', 'one')", 0, NULL, NULL) ==
              ORCH_OK);
    static const char sql[] = "SELECT * FROM t WHERE k = $1";
    cr_assert_str_eq(select_text(c, sql, "a"), "a");
    /* SELECT * now has another result type: the server refuses the cached
     * plan ("cached plan must not change result type"). */
    cr_assert(orch_db_exec(c, in_ms(5000), "ALTER TABLE t ADD COLUMN w int", 0, NULL, NULL) ==
              ORCH_OK);
    orch_db_result *r;
    const char *p[] = { "a" };
    orch_err err = orch_db_exec(c, in_ms(5000), sql, 1, p, &r);
    cr_assert(err == ORCH_OK, "%s: %s", orch_strerror(err), orch_db_last_error(c));
    cr_assert_eq(orch_db_result_cols(r), 3);
    orch_db_result_free(r);
    orch_db_release(c);
    orch_db_pool_close(pool);
}

/* Runs `sql` until it succeeds on some checkout, at most `ms`. */
static bool exec_until_ok(orch_db_pool *pool, const char *sql, const char *arg, uint64_t ms,
                          int *prepared_on_server)
{
    uint64_t end = in_ms(ms);
    while (orch_mono_ms() < end) {
        orch_db_conn *c;
        if (orch_db_acquire(pool, in_ms(3000), &c) == ORCH_OK) {
            const char *p[] = { arg };
            orch_err err = orch_db_exec(c, in_ms(3000), sql, 1, p, NULL);
            if (err == ORCH_OK) {
                *prepared_on_server = server_prepared(c);
                orch_db_release(c);
                return true;
            }
            cr_assert(err == ORCH_EDB_UNAVAIL || err == ORCH_ETIMEDOUT,
                      "unexpected failure after a restart: %s: %s", orch_strerror(err),
                      orch_db_last_error(c));
            orch_db_release(c);
        }
        usleep(100 * 1000);
    }
    return false;
}

Test(db_prepared, statements_are_prepared_again_after_a_database_restart, .timeout = 120)
{
    char dir[] = "/tmp/orch-dbp-XXXXXX";
    char url[600];
    orch_db_pool *pool;
    int on_server = 0;
    static const char sql[] = "SELECT $1::int + 1";

    cr_assert(mkdtemp(dir));
    cr_assert_eq(th_pgctl("init", dir, NULL), 0);
    cr_assert_eq(th_pgctl("start", dir, NULL), 0);
    th_pg_url(dir, "orch", url, sizeof url);
    cr_assert(orch_db_pool_open(url, 1, &pool) == ORCH_OK);
    cr_assert(exec_until_ok(pool, sql, "1", 10000, &on_server));
    cr_assert_eq(on_server, 1);

    const char *how[] = { "fast", "immediate" };
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(th_pgctl("stop", dir, how[i]), 0);
        cr_assert_eq(th_pgctl("start", dir, NULL), 0);
        /* The first call may meet the dead session; a later one reconnects
         * and must prepare the statement again on the new session. */
        on_server = 0;
        cr_assert(exec_until_ok(pool, sql, "41", 20000, &on_server),
                  "no successful call after a %s restart", how[i]);
        cr_assert_eq(on_server, 1, "the statement is not prepared on the new session");
        orch_db_conn *c;
        cr_assert(orch_db_acquire(pool, in_ms(3000), &c) == ORCH_OK);
        cr_assert_eq(orch_db_prepared_count(c), 1);
        orch_db_result *r;
        const char *p[] = { "41" };
        cr_assert(orch_db_exec(c, in_ms(3000), sql, 1, p, &r) == ORCH_OK);
        cr_assert_str_eq(orch_db_result_get(r, 0, 0), "42");
        orch_db_result_free(r);
        orch_db_release(c);
    }
    orch_db_pool_close(pool);
    th_pgctl("destroy", dir, NULL);
}
