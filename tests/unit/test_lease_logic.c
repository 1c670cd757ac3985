/*
 * test_lease_logic.c - the pure rules of lease-service: input checks, owner
 * identity, liveness verdicts, the ceiling rule (the scope rule is the
 * common library's: test_lease_client.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
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
    cr_assert_eq(lease_judge_local(&o, "boot-a", LEASE_PROC_FOUND, 1000, &why), LEASE_ALIVE);
    cr_assert_eq(lease_judge_local(&o, "boot-b", LEASE_PROC_FOUND, 1000, &why), LEASE_DEAD,
                 "another boot id: the host rebooted, even if the pid and ticks repeat");
    cr_assert(strstr(why, "rebooted"), "%s", why);
    cr_assert_eq(lease_judge_local(&o, "boot-a", LEASE_PROC_ABSENT, 0, &why), LEASE_DEAD);
    cr_assert_eq(lease_judge_local(&o, "boot-a", LEASE_PROC_FOUND, 999, &why), LEASE_DEAD,
                 "pid reused by a process started at another time");
    cr_assert(strstr(why, "another process"), "%s", why);
}

Test(lease_logic, container_restart_with_pid_one_again_is_not_alive)
{
    const char *why;
    /* PID 1 and the boot id repeat after a container restart; the start
     * time of the new PID 1 does not. */
    lease_owner o = owner("h1", "boot-a", 1, 500);
    cr_assert_eq(lease_judge_local(&o, "boot-a", LEASE_PROC_FOUND, 73000, &why), LEASE_DEAD);
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

/* ---- /proc failures, probes from the wrong host, host registration -------- */

Test(lease_logic, unreadable_proc_is_unknown_never_dead)
{
    const char *why;
    lease_owner o = owner("h1", "boot-a", 42, 1000);
    /* EMFILE, EACCES, ENOMEM...: nothing is known about the process. */
    cr_assert_eq(lease_judge_local(&o, "boot-a", LEASE_PROC_UNREADABLE, 0, &why), LEASE_UNKNOWN);
    cr_assert(strstr(why, "could not be read"), "%s", why);
    cr_assert_eq(lease_judge_probe("boot-a", "boot-a", LEASE_PROC_UNREADABLE, 0, 1000, &why),
                 LEASE_UNKNOWN);
    /* Only ENOENT or another start time mean dead. */
    cr_assert_eq(lease_judge_probe("boot-a", "boot-a", LEASE_PROC_ABSENT, 0, 1000, &why),
                 LEASE_DEAD);
    cr_assert_eq(lease_judge_probe("boot-a", "boot-a", LEASE_PROC_FOUND, 999, 1000, &why),
                 LEASE_DEAD);
    cr_assert_eq(lease_judge_probe("boot-a", "boot-a", LEASE_PROC_FOUND, 1000, 1000, &why),
                 LEASE_ALIVE);
}

Test(lease_logic, probe_of_a_foreign_boot_id_is_unknown_not_dead)
{
    const char *why;
    /* ProbeOwner never says a host rebooted: only the hosts table does. */
    cr_assert_eq(lease_judge_probe("boot-x", "boot-a", LEASE_PROC_ABSENT, 0, 1000, &why),
                 LEASE_UNKNOWN);
    cr_assert_eq(lease_judge_probe("boot-x", "boot-a", LEASE_PROC_FOUND, 1000, 1000, &why),
                 LEASE_UNKNOWN);
}

Test(lease_logic, probe_reply_from_another_host_or_boot_is_unknown)
{
    const char *why;
    lease_owner o = owner("h2", "boot-x", 42, 1000);
    cr_assert_eq(lease_judge_probe_reply(&o, "h2", "boot-x", LEASE_DEAD, &why), LEASE_DEAD);
    cr_assert_eq(lease_judge_probe_reply(&o, "h2", "boot-x", LEASE_ALIVE, &why), LEASE_ALIVE);
    cr_assert_eq(lease_judge_probe_reply(&o, "h2", "boot-x", LEASE_UNKNOWN, &why), LEASE_UNKNOWN);
    cr_assert_eq(lease_judge_probe_reply(&o, "h1", "boot-x", LEASE_DEAD, &why), LEASE_UNKNOWN,
                 "a probe that reached another host");
    cr_assert(strstr(why, "another host"), "%s", why);
    cr_assert_eq(lease_judge_probe_reply(&o, "h2", "boot-y", LEASE_DEAD, &why), LEASE_UNKNOWN,
                 "the owner's host id, but another boot");
    cr_assert_eq(lease_judge_probe_reply(&o, "h2", "", LEASE_DEAD, &why), LEASE_UNKNOWN,
                 "a lease-service that does not send its boot id");
    cr_assert_eq(lease_judge_probe_reply(&o, NULL, NULL, LEASE_DEAD, &why), LEASE_UNKNOWN);
}

static lease_host_reg reg_of(const char *boot, bool stopped, int64_t age_ms, int64_t seen_us)
{
    lease_host_reg r;
    memset(&r, 0, sizeof r);
    r.exists = true;
    snprintf(r.boot_id, sizeof r.boot_id, "%s", boot);
    r.stopped = stopped;
    r.age_ms = age_ms;
    r.seen_us = seen_us;
    return r;
}

/* Rows written before migration 0010 carry no machine id: the rule of boot
 * ids and staleness. */
Test(lease_logic, host_registration_tells_a_reboot_from_a_duplicate)
{
    const char *why;
    const lease_host_self me_b = { "b", "m1", "pid:[1]" };
    const lease_host_self *b = &me_b;
    lease_host_reg none;
    memset(&none, 0, sizeof none);
    cr_assert_eq(lease_host_decide(&none, b, 15000, -1, &why), LEASE_HOST_TAKE);
    lease_host_reg same = reg_of("b", false, 10, 77);
    cr_assert_eq(lease_host_decide(&same, b, 15000, -1, &why), LEASE_HOST_TAKE,
                 "same boot id: a restart on this kernel");
    lease_host_reg stopped = reg_of("a", true, 10, 77);
    cr_assert_eq(lease_host_decide(&stopped, b, 15000, -1, &why), LEASE_HOST_TAKE,
                 "the previous lease-service stopped cleanly");
    lease_host_reg stale = reg_of("a", false, 15001, 77);
    cr_assert_eq(lease_host_decide(&stale, b, 15000, -1, &why), LEASE_HOST_TAKE,
                 "another boot, not refreshed for the window: a reboot");
    cr_assert(strstr(why, "rebooted"), "%s", why);
    lease_host_reg fresh = reg_of("a", false, 200, 77);
    cr_assert_eq(lease_host_decide(&fresh, b, 15000, -1, &why), LEASE_HOST_WAIT,
                 "another boot, fresh: wait and see");
    cr_assert_eq(lease_host_decide(&fresh, b, 15000, 77, &why), LEASE_HOST_WAIT,
                 "not refreshed since the first read: keep waiting");
    lease_host_reg beat = reg_of("a", false, 5, 99);
    cr_assert_eq(lease_host_decide(&beat, b, 15000, 77, &why), LEASE_HOST_REFUSE,
                 "refreshed while we waited: a live duplicate");
    cr_assert(strstr(why, "live"), "%s", why);
}

static lease_host_reg reg_on(const char *machine, const char *ns, const char *boot, bool stopped,
                             int64_t age_ms)
{
    lease_host_reg r = reg_of(boot, stopped, age_ms, 77);
    snprintf(r.machine_id, sizeof r.machine_id, "%s", machine);
    snprintf(r.pid_ns, sizeof r.pid_ns, "%s", ns);
    return r;
}

Test(lease_logic, registration_of_another_machine_id_is_refused_even_stopped_or_stale)
{
    const char *why;
    const lease_host_self me = { "b", "m1", "pid:[1]" };
    const lease_host_reg rows[] = {
        reg_on("m2", "pid:[1]", "a", false, 5),     /* live */
        reg_on("m2", "pid:[1]", "a", true, 5),      /* stopped cleanly */
        reg_on("m2", "pid:[1]", "a", false, 99999), /* stale */
        reg_on("m2", "pid:[1]", "b", false, 5),     /* even the same boot id */
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        cr_assert_eq(lease_host_decide(&rows[i], &me, 15000, -1, &why), LEASE_HOST_FOREIGN,
                     "row %zu", i);
        cr_assert(strstr(why, "another machine"), "%s", why);
    }
}

/* Same kernel, another PID namespace: a re-created container namespace is
 * taken over once its registration stopped or went stale; one refreshed
 * while the new instance waits is a second live stack with this host id. */
Test(lease_logic, another_pid_namespace_is_taken_over_only_once_it_ended)
{
    const char *why;
    const lease_host_self me = { "b", "m1", "pid:[1]" };
    lease_host_reg fresh = reg_on("m1", "pid:[2]", "b", false, 5);
    cr_assert_eq(lease_host_decide(&fresh, &me, 15000, -1, &why), LEASE_HOST_WAIT, "%s", why);
    lease_host_reg beating = fresh;
    beating.seen_us = 42;
    cr_assert_eq(lease_host_decide(&beating, &me, 15000, 41, &why), LEASE_HOST_REFUSE, "%s", why);
    cr_assert(strstr(why, "PID namespace"), "%s", why);
    lease_host_reg stopped = reg_on("m1", "pid:[2]", "b", true, 5);
    cr_assert_eq(lease_host_decide(&stopped, &me, 15000, -1, &why), LEASE_HOST_TAKE, "%s", why);
    lease_host_reg stale = reg_on("m1", "pid:[2]", "b", false, 99999);
    cr_assert_eq(lease_host_decide(&stale, &me, 15000, -1, &why), LEASE_HOST_TAKE, "%s", why);
    cr_assert(strstr(why, "PID namespace"), "%s", why);
}

Test(lease_logic, reboot_of_the_same_machine_takes_over_at_once)
{
    const char *why;
    const lease_host_self me = { "b", "m1", "pid:[1]" };
    /* another boot id: a reboot, live-looking or not, in any namespace */
    lease_host_reg fresh = reg_on("m1", "pid:[1]", "a", false, 5);
    cr_assert_eq(lease_host_decide(&fresh, &me, 15000, 77, &why), LEASE_HOST_TAKE);
    cr_assert(strstr(why, "rebooted"), "%s", why);
    lease_host_reg other_ns = reg_on("m1", "pid:[9]", "a", false, 5);
    cr_assert_eq(lease_host_decide(&other_ns, &me, 15000, 77, &why), LEASE_HOST_TAKE,
                 "a reboot ends every namespace of the old boot");
    lease_host_reg restart = reg_on("m1", "pid:[1]", "b", false, 5);
    cr_assert_eq(lease_host_decide(&restart, &me, 15000, 77, &why), LEASE_HOST_TAKE);
    cr_assert(strstr(why, "restart"), "%s", why);
}

Test(lease_logic, wildcard_and_loopback_urls_are_local)
{
    static const char *const local[] = { "tcp://0.0.0.0:7701",
                                         "tcp://*:7701",
                                         "tcp://:7701",
                                         "tcp://[::]:7701",
                                         "tcp://127.0.0.1:7701",
                                         "tcp://127.1.2.3:7701",
                                         "tcp://localhost:7701",
                                         "tcp://[::1]:7701",
                                         "tcp4://127.0.0.1:1",
                                         "ipc:///tmp/x",
                                         "garbage",
                                         "" };
    for (size_t i = 0; i < sizeof local / sizeof *local; i++)
        cr_assert(lease_url_is_local(local[i]), "%s", local[i]);
    static const char *const remote[] = { "tcp://10.0.0.5:7701", "tcp://lease-a.example:7701",
                                          "tcp6://[fd00::5]:7701", "tcp://128.0.0.1:7701" };
    for (size_t i = 0; i < sizeof remote / sizeof *remote; i++)
        cr_assert_not(lease_url_is_local(remote[i]), "%s", remote[i]);
    cr_assert(lease_url_is_wildcard("tcp://0.0.0.0:7701"));
    cr_assert_not(lease_url_is_wildcard("tcp://127.0.0.1:7701"));
}

Test(lease_logic, local_listen_address_needs_an_advertised_one_once_other_hosts_exist)
{
    char why[400];
    const char *u = lease_advertise_url("tcp://0.0.0.0:7701", "", 0, why, sizeof why);
    cr_assert_str_eq(u, "tcp://0.0.0.0:7701", "alone, any address will do");
    cr_assert_null(lease_advertise_url("tcp://0.0.0.0:7701", "", 2, why, sizeof why));
    cr_assert(strstr(why, "ORCH_LEASE_ADVERTISE_URL"), "%s", why);
    cr_assert_null(lease_advertise_url("tcp://127.0.0.1:7701", "", 1, why, sizeof why));
    u = lease_advertise_url("tcp://0.0.0.0:7701", "tcp://10.0.0.5:7701", 2, why, sizeof why);
    cr_assert_str_eq(u, "tcp://10.0.0.5:7701");
    u = lease_advertise_url("tcp://10.0.0.5:7701", "", 2, why, sizeof why);
    cr_assert_str_eq(u, "tcp://10.0.0.5:7701", "a concrete listen address is its own advert");
    cr_assert_null(
        lease_advertise_url("tcp://10.0.0.5:7701", "tcp://0.0.0.0:7701", 0, why, sizeof why),
        "a wildcard is never an address to advertise");
}
