/*
 * test_db_map.c - the SQLSTATE to orch_err mapping of the database layer
 * (shared/src/db.c, orch_db_map_sqlstate). Pure: no database is contacted.
 */
#include <criterion/criterion.h>

#include "orch/clock.h"
#include "orch/db.h"

typedef struct row {
    const char *sqlstate;
    orch_err want;
} row;

static void expect_rows(const row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        orch_err got = orch_db_map_sqlstate(rows[i].sqlstate);
        cr_expect_eq(got, rows[i].want, "%s -> '%s', want '%s'",
                     rows[i].sqlstate ? rows[i].sqlstate : "(null)", orch_strerror(got),
                     orch_strerror(rows[i].want));
    }
}

Test(db_map, unique_violation_is_already_exists)
{
    cr_assert_eq(orch_db_map_sqlstate("23505"), ORCH_EEXISTS);
}

Test(db_map, serialization_failure_and_deadlock_are_retryable)
{
    static const row rows[] = { { "40001", ORCH_EDB_RETRY }, { "40P01", ORCH_EDB_RETRY } };
    expect_rows(rows, 2);
}

Test(db_map, lock_not_available_is_locked)
{
    cr_assert_eq(orch_db_map_sqlstate("55P03"), ORCH_EDB_LOCKED);
}

Test(db_map, statement_timeout_is_timed_out)
{
    cr_assert_eq(orch_db_map_sqlstate("57014"), ORCH_ETIMEDOUT);
}

Test(db_map, connection_failures_and_shutdowns_are_unavailable)
{
    static const row rows[] = {
        { "08006", ORCH_EDB_UNAVAIL }, /* connection_failure */
        { "08001", ORCH_EDB_UNAVAIL }, /* sqlclient_unable_to_establish_sqlconnection */
        { "08000", ORCH_EDB_UNAVAIL }, /* connection_exception */
        { "08003", ORCH_EDB_UNAVAIL }, /* connection_does_not_exist */
        { "57P01", ORCH_EDB_UNAVAIL }, /* admin_shutdown */
        { "57P02", ORCH_EDB_UNAVAIL }, /* crash_shutdown */
        { "57P03", ORCH_EDB_UNAVAIL }, /* cannot_connect_now */
    };
    expect_rows(rows, sizeof rows / sizeof rows[0]);
}

Test(db_map, other_errors_are_generic_database_errors)
{
    static const row rows[] = {
        { "42601", ORCH_EDB }, /* syntax_error */
        { "42P01", ORCH_EDB }, /* undefined_table */
        { "XX000", ORCH_EDB }, /* internal_error */
        { "53300", ORCH_EDB }, /* too_many_connections */
    };
    expect_rows(rows, sizeof rows / sizeof rows[0]);
}

Test(db_map, missing_or_malformed_sqlstate_is_a_generic_database_error)
{
    static const row rows[] = {
        { NULL, ORCH_EDB },     { "", ORCH_EDB },     { "2350", ORCH_EDB }, { "08", ORCH_EDB },
        { "235050", ORCH_EDB }, { "4000", ORCH_EDB }, { "40P0", ORCH_EDB },
    };
    expect_rows(rows, sizeof rows / sizeof rows[0]);
}

Test(db_map, near_misses_are_not_mistaken_for_mapped_states)
{
    /* Same class, different condition: none of these is a duplicate key, a
     * retryable failure or a lost lock race. */
    cr_expect_neq(orch_db_map_sqlstate("23503"), ORCH_EEXISTS); /* foreign_key_violation */
    cr_expect_neq(orch_db_map_sqlstate("40002"), ORCH_EDB_RETRY);
    cr_expect_neq(orch_db_map_sqlstate("55000"), ORCH_EDB_LOCKED);
    cr_expect_neq(orch_db_map_sqlstate("57000"), ORCH_EDB_UNAVAIL);
    cr_expect_neq(orch_db_map_sqlstate("57000"), ORCH_ETIMEDOUT);
}

/* A failed checkout sets *out to NULL, so that a caller releasing what it
 * got releases nothing (a stale pointer there corrupted the pool). */
Test(db_pool, failed_acquire_leaves_null)
{
    orch_db_pool *pool = NULL;
    cr_assert_eq(orch_db_pool_open("host=127.0.0.1 port=1 dbname=x connect_timeout=2", 1, &pool),
                 ORCH_OK);
    orch_db_conn *c = (orch_db_conn *)&pool; /* garbage, as an uninitialised slot */
    orch_err err = orch_db_acquire(pool, orch_mono_ms() + 3000, &c);
    cr_assert_neq(err, ORCH_OK);
    cr_assert_null(c, "a failed acquire must write NULL");
    orch_db_release(c);
    /* The pool is intact: the one connection can be checked out again. */
    err = orch_db_acquire(pool, orch_mono_ms() + 3000, &c);
    cr_assert_neq(err, ORCH_OK);
    cr_assert_null(c);
    orch_db_pool_close(pool);
}
