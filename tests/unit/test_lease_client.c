/*
 * test_lease_client.c - the pure rules of the common lease client: the
 * lease's scope, which Release and Acquire answers settle what, and the
 * Owner message of a process. No database, no lease-service.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "orch/lease_client.h"

Test(lease_client, empty_repo_list_scopes_to_the_orchestrator_repo)
{
    orch_lease_scope s = { true, "", "orch" };
    cr_assert(orch_lease_in_scope(&s, "orch"));
    cr_assert_not(orch_lease_in_scope(&s, "enduro"));
    cr_assert_not(orch_lease_in_scope(&s, ""));
}

Test(lease_client, listed_repos_only_with_spaces_tolerated)
{
    orch_lease_scope s = { true, " alpha, beta ,gamma", "orch" };
    cr_assert(orch_lease_in_scope(&s, "alpha"));
    cr_assert(orch_lease_in_scope(&s, "beta"));
    cr_assert(orch_lease_in_scope(&s, "gamma"));
    cr_assert_not(orch_lease_in_scope(&s, "orch"), "a list replaces the default scope");
    cr_assert_not(orch_lease_in_scope(&s, "alph"), "prefixes do not match");
    cr_assert_not(orch_lease_in_scope(&s, "alpha,beta"));
}

Test(lease_client, switched_off_is_out_of_scope_everywhere)
{
    orch_lease_scope s = { false, "", "orch" };
    cr_assert_not(orch_lease_in_scope(&s, "orch"));
    orch_lease_scope t = { false, "a,b", "orch" };
    cr_assert_not(orch_lease_in_scope(&t, "a"));
}

Test(lease_client, a_null_repo_list_falls_back_to_the_orchestrator_repo)
{
    orch_lease_scope s = { true, NULL, "orch" };
    cr_assert(orch_lease_in_scope(&s, "orch"));
    orch_lease_scope none = { true, NULL, NULL };
    cr_assert_not(orch_lease_in_scope(&none, "orch"), "no list and no own repo: nothing");
}

Test(lease_client, release_answers_that_mean_the_grant_is_gone)
{
    cr_assert(orch_lease_code_released(ORCH_CODE_OK));
    cr_assert(orch_lease_code_released(ORCH_CODE_FAILED_PRECONDITION), "a newer grant");
    cr_assert(orch_lease_code_released(ORCH_CODE_NOT_FOUND));
    cr_assert_not(orch_lease_code_released(ORCH_CODE_UNAVAILABLE));
    cr_assert_not(orch_lease_code_released(ORCH_CODE_DEADLINE_EXCEEDED));
    cr_assert_not(orch_lease_code_released(ORCH_CODE_INTERNAL));
}

Test(lease_client, only_answers_that_prove_no_grant_count_as_not_granted)
{
    static const orch_code no[] = {
        ORCH_CODE_INVALID_ARGUMENT,  ORCH_CODE_NOT_FOUND,           ORCH_CODE_ALREADY_EXISTS,
        ORCH_CODE_PERMISSION_DENIED, ORCH_CODE_FAILED_PRECONDITION, ORCH_CODE_UNAUTHENTICATED,
        ORCH_CODE_UNIMPLEMENTED,     ORCH_CODE_OUT_OF_RANGE,
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        cr_assert(orch_lease_not_granted(no[i]), "%s", orch_code_name(no[i]));
    static const orch_code maybe[] = {
        ORCH_CODE_DEADLINE_EXCEEDED, ORCH_CODE_UNAVAILABLE, ORCH_CODE_ABORTED,
        ORCH_CODE_INTERNAL,          ORCH_CODE_UNKNOWN,     ORCH_CODE_RESOURCE_EXHAUSTED,
        ORCH_CODE_CANCELLED,         ORCH_CODE_DATA_LOSS,
    };
    for (size_t i = 0; i < sizeof maybe / sizeof maybe[0]; i++)
        cr_assert_not(orch_lease_not_granted(maybe[i]), "%s may hide a grant",
                      orch_code_name(maybe[i]));
}

Test(lease_client, owner_message_borrows_the_process_identity)
{
    orch_ident me;
    memset(&me, 0, sizeof me);
    snprintf(me.host_id, sizeof me.host_id, "host-a");
    snprintf(me.boot_id, sizeof me.boot_id, "boot-1");
    me.pid = 4242;
    me.start_ticks = 99;
    Orch__V1__Owner m;
    orch_lease_owner_msg(&me, "inst.7", &m);
    cr_assert_str_eq(m.host_id, "host-a");
    cr_assert_str_eq(m.boot_id, "boot-1");
    cr_assert_eq(m.pid, 4242);
    cr_assert_eq(m.start_ticks, 99);
    cr_assert_str_eq(m.instance_id, "inst.7");
    cr_assert_eq(m.host_id, me.host_id, "borrowed, not copied");
}
