/*
 * test_lease_logic.c - the pure rules of the lease: scope, input checks,
 * owner identity, liveness verdicts, the ceiling rule.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "lease_logic.h"

static lease_owner owner(const char *host, const char *boot, int pid, uint64_t ticks)
{
    lease_owner o;
    memset(&o, 0, sizeof o);
    strncpy(o.host_id, host, sizeof o.host_id - 1);
    strncpy(o.boot_id, boot, sizeof o.boot_id - 1);
    strncpy(o.instance_id, "inst-1", sizeof o.instance_id - 1);
    o.pid = pid;
    o.start_ticks = ticks;
    return o;
}

Test(lease_logic, empty_repo_list_scopes_to_the_orchestrator_repo)
{
    lease_scope s = { true, "", "orch" };
    cr_assert(lease_in_scope(&s, "orch"));
    cr_assert_not(lease_in_scope(&s, "enduro"));
    cr_assert_not(lease_in_scope(&s, ""));
}

Test(lease_logic, listed_repos_only_with_spaces_tolerated)
{
    lease_scope s = { true, " alpha, beta ,gamma", "orch" };
    cr_assert(lease_in_scope(&s, "alpha"));
    cr_assert(lease_in_scope(&s, "beta"));
    cr_assert(lease_in_scope(&s, "gamma"));
    cr_assert_not(lease_in_scope(&s, "orch"), "a list replaces the default scope");
    cr_assert_not(lease_in_scope(&s, "alph"), "prefixes do not match");
    cr_assert_not(lease_in_scope(&s, "alpha,beta"));
}

Test(lease_logic, switched_off_is_out_of_scope_everywhere)
{
    lease_scope s = { false, "", "orch" };
    cr_assert_not(lease_in_scope(&s, "orch"));
    lease_scope t = { false, "a,b", "orch" };
    cr_assert_not(lease_in_scope(&t, "a"));
}

Test(lease_logic, text_fields_are_checked_and_named)
{
    char why[160];
    char big[LEASE_MAX_FIELD + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert(lease_valid_text("work_item", "ORCH-114", why, sizeof why));
    cr_assert_not(lease_valid_text("work_item", "", why, sizeof why));
    cr_assert(strstr(why, "work_item is empty"), "%s", why);
    cr_assert_not(lease_valid_text("work_item", NULL, why, sizeof why));
    cr_assert_not(lease_valid_text("repo", big, why, sizeof why));
    cr_assert(strstr(why, "repo is 201 bytes"), "%s", why);
    big[LEASE_MAX_FIELD] = '\0';
    cr_assert(lease_valid_text("repo", big, why, sizeof why), "exactly the limit is fine");
    cr_assert_not(lease_valid_text("actor", "a\nb", why, sizeof why));
    cr_assert(strstr(why, "control character"), "%s", why);
    cr_assert(lease_valid_text("actor", "réviseur", why, sizeof why), "UTF-8 is fine");
}

Test(lease_logic, owner_identity_must_be_complete)
{
    char why[160];
    lease_owner o = owner("h1", "boot-a", 42, 1000);
    cr_assert(lease_valid_owner(&o, why, sizeof why), "%s", why);
    o.pid = 0;
    cr_assert_not(lease_valid_owner(&o, why, sizeof why));
    cr_assert(strstr(why, "owner.pid"), "%s", why);
    o.pid = -5;
    cr_assert_not(lease_valid_owner(&o, why, sizeof why));
    o = owner("h1", "boot-a", 42, 0);
    cr_assert_not(lease_valid_owner(&o, why, sizeof why));
    cr_assert(strstr(why, "start_ticks"), "%s", why);
    o = owner("", "boot-a", 42, 1);
    cr_assert_not(lease_valid_owner(&o, why, sizeof why));
    cr_assert(strstr(why, "owner.host_id"), "%s", why);
    o = owner("h1", "", 42, 1);
    cr_assert_not(lease_valid_owner(&o, why, sizeof why));
}

Test(lease_logic, same_owner_needs_every_field_equal)
{
    lease_owner a = owner("h1", "boot-a", 42, 1000);
    lease_owner b = a;
    cr_assert(lease_same_owner(&a, &b));
    b.start_ticks = 1001;
    cr_assert_not(lease_same_owner(&a, &b), "pid reuse is another process");
    b = a;
    strncpy(b.boot_id, "boot-b", sizeof b.boot_id - 1);
    cr_assert_not(lease_same_owner(&a, &b));
    b = a;
    strncpy(b.instance_id, "inst-2", sizeof b.instance_id - 1);
    cr_assert_not(lease_same_owner(&a, &b));
    b = a;
    strncpy(b.host_id, "h2", sizeof b.host_id - 1);
    cr_assert_not(lease_same_owner(&a, &b));
}

Test(lease_logic, local_owner_alive_only_with_same_boot_pid_and_start)
{
    const char *why;
    lease_owner o = owner("h1", "boot-a", 42, 1000);
    cr_assert_eq(lease_judge_local(&o, "boot-a", true, 1000, &why), LEASE_ALIVE);
    cr_assert_eq(lease_judge_local(&o, "boot-b", true, 1000, &why), LEASE_DEAD,
                 "another boot id: the host rebooted, even if the pid and ticks repeat");
    cr_assert(strstr(why, "rebooted"), "%s", why);
    cr_assert_eq(lease_judge_local(&o, "boot-a", false, 0, &why), LEASE_DEAD);
    cr_assert_eq(lease_judge_local(&o, "boot-a", true, 999, &why), LEASE_DEAD,
                 "pid reused by a process started at another time");
    cr_assert(strstr(why, "another process"), "%s", why);
}

Test(lease_logic, container_restart_with_pid_one_again_is_not_alive)
{
    const char *why;
    /* PID 1 and the boot id repeat after a container restart; the start
     * time of the new PID 1 does not. */
    lease_owner o = owner("h1", "boot-a", 1, 500);
    cr_assert_eq(lease_judge_local(&o, "boot-a", true, 73000, &why), LEASE_DEAD);
}

Test(lease_logic, remote_owner_verdicts_before_asking)
{
    const char *why;
    lease_owner o = owner("h2", "boot-x", 42, 1000);
    lease_host_facts unreg = { false, "" };
    cr_assert_eq(lease_judge_remote(&o, &unreg, &why), LEASE_UNKNOWN,
                 "an unregistered host is unknown: defer, never steal");
    lease_host_facts rebooted = { true, "boot-y" };
    cr_assert_eq(lease_judge_remote(&o, &rebooted, &why), LEASE_DEAD);
    lease_host_facts same = { true, "boot-x" };
    cr_assert_eq(lease_judge_remote(&o, &same, &why), LEASE_ALIVE, "means: ask the host");
}

Test(lease_logic, ceiling_must_exceed_the_longest_step)
{
    cr_assert(lease_ceiling_ok(3600, 1800));
    cr_assert_not(lease_ceiling_ok(1800, 1800));
    cr_assert_not(lease_ceiling_ok(60, 900));
}
