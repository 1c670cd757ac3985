/*
 * test_db_rules.c - db.c's pure rules (db_int.h): when a connection's
 * statement_timeout still serves a call's deadline, the value a new SET
 * uses, and counting the hosts of a multi-host URL.
 */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "db_int.h"

Test(db_rules, quantize_keeps_two_significant_digits)
{
    cr_assert_eq(orch__db_quantize_ms(4987), 4900);
    cr_assert_eq(orch__db_quantize_ms(123), 120);
    cr_assert_eq(orch__db_quantize_ms(99), 99);
    cr_assert_eq(orch__db_quantize_ms(5), 5);
    cr_assert_eq(orch__db_quantize_ms(0), 0);
    cr_assert_eq(orch__db_quantize_ms(UINT64_C(1) << 40), 0x7fffffff);
}

Test(db_rules, a_timeout_fits_only_inside_the_deadline_and_near_it)
{
    /* No deadline: only "no timeout" (0) serves. */
    cr_assert(orch__db_timeout_fits(0, UINT64_MAX));
    cr_assert_not(orch__db_timeout_fits(5000, UINT64_MAX));
    /* Unknown or none while a deadline exists: a SET is needed. */
    cr_assert_not(orch__db_timeout_fits(-1, 5000));
    cr_assert_not(orch__db_timeout_fits(0, 5000));
    /* Never past the deadline. */
    cr_assert_not(orch__db_timeout_fits(5001, 5000));
    cr_assert(orch__db_timeout_fits(5000, 5000));
    /* Within the last eighth of the budget: kept; shorter: a new SET. */
    cr_assert(orch__db_timeout_fits(4375, 5000));
    cr_assert_not(orch__db_timeout_fits(4374, 5000));
}

Test(db_rules, hosts_of_a_url)
{
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse("postgresql://orch@db1:5432,db2:5433,db3/orch", &err);
    cr_assert(o, "%s", err ? err : "");
    cr_assert_eq(orch__db_count_hosts(o), 3);
    PQconninfoFree(o);
    o = PQconninfoParse("host=127.0.0.1 dbname=orch", &err);
    cr_assert_eq(orch__db_count_hosts(o), 1);
    PQconninfoFree(o);
    o = PQconninfoParse("dbname=orch", &err);
    cr_assert_eq(orch__db_count_hosts(o), 1);
    PQconninfoFree(o);
}
