/*
 * test_lease_hosts.c - the registration of hosts and the probe of a remote
 * owner when addresses or host ids are wrong (issue 12, item 1): a probe
 * answered by another host or another boot is UNKNOWN (defer), never a
 * reclaim; a loopback or wildcard listen address needs an advertised one
 * once other hosts exist; a second live lease-service with an existing host
 * id and another boot id refuses to start and leaves the registration alone;
 * a host that crashed and rebooted takes its registration over once stale
 * (rows without a machine id) or at once (same machine id, new boot id);
 * another machine id is refused even when the first stopped or is stale.
 *
 * Every host runs on this machine: they differ by ORCH_HOST_ID and by boot
 * ids and machine ids read from files of the test (ORCH_BOOT_ID_PATH,
 * ORCH_MACHINE_ID_PATH), which is exactly what lease-service knows of a
 * host besides its PID namespace (the same for all of them here).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/clock.h"
#include "test_lease_util.h"

#define MAX_SVCS 4
#define HOST_A   "lease-host-a"
#define HOST_B   "lease-host-b"
#define BOOT_A   "0a0a0a0a-aaaa-4aaa-8aaa-00000000a001"
#define BOOT_B   "0b0b0b0b-bbbb-4bbb-8bbb-00000000b002"
#define BOOT_C   "0c0c0c0c-cccc-4ccc-8ccc-00000000c003"
#define MACH_1   "11111111111111111111111111111111"
#define MACH_2   "22222222222222222222222222222222"

static th_svc svcs[MAX_SVCS];
static char db[600], db2[600];
static char tmpdir[64];
static char boot_env[3][160]; /* ORCH_BOOT_ID_PATH=... for BOOT_A, BOOT_B, BOOT_C */
static char mach_env[2][160]; /* ORCH_MACHINE_ID_PATH=... for MACH_1, MACH_2 */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

static void setup(void)
{
    static const char *const boots[] = { BOOT_A, BOOT_B, BOOT_C };
    memset(svcs, 0, sizeof svcs);
    db2[0] = '\0';
    th_db_fresh(db, sizeof db);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/orch-lease-hosts-XXXXXX");
    cr_assert(mkdtemp(tmpdir));
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/boot-%d", tmpdir, i);
        write_file(path, boots[i]);
        snprintf(boot_env[i], sizeof boot_env[i], "ORCH_BOOT_ID_PATH=%s", path);
    }
    static const char *const machines[] = { MACH_1 "\n", MACH_2 "\n" };
    for (int i = 0; i < 2; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/machine-%d", tmpdir, i);
        write_file(path, machines[i]);
        snprintf(mach_env[i], sizeof mach_env[i], "ORCH_MACHINE_ID_PATH=%s", path);
    }
}

static void teardown(void)
{
    lt_cleanup();
    for (int i = 0; i < MAX_SVCS; i++)
        if (svcs[i].pid > 0 && th_svc_stop(&svcs[i], SIGTERM, 10000) != 0)
            th_svc_dump_log(&svcs[i]);
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/boot-%d", tmpdir, i);
        unlink(path);
        snprintf(path, sizeof path, "%s/machine-%d", tmpdir, i);
        unlink(path);
    }
    rmdir(tmpdir);
}

TestSuite(lease_hosts, .init = setup, .fini = teardown, .timeout = 90);

static long long events(const char *item, const char *kind)
{
    return lt_sql_num(
        db, "SELECT count(*) FROM lease_events WHERE work_item = '%s' AND kind = '%s'", item, kind);
}

/* The hosts row of `host` as one text: boot/instance/url/started_at/stopped. */
static char *host_row(const char *host)
{
    return lt_sql_text(db,
                       "SELECT boot_id || '/' || instance_id || '/' || rpc_url || '/' ||"
                       " started_at::text || '/' || (stopped_at IS NULL)::text"
                       " FROM hosts WHERE host_id = '%s'",
                       host);
}

/* Waits for `s` to exit by itself; returns its exit status. */
static int exit_status(th_svc *s, uint32_t timeout_ms)
{
    int rc = th_svc_stop(s, 0, timeout_ms); /* signal 0: only wait */
    s->pid = 0;
    return rc;
}

/* Acquires `item` at `c` for `o` six times, 150 ms apart, while the reaper
 * of the judging lease-service runs every 200 ms, and checks that it stays
 * HELD with `want` and that nothing is reclaimed. */
static void check_never_robbed(orch_rpc_client *c, const char *item, const lt_owner *o,
                               uint64_t epoch, Orch__V1__Liveness want)
{
    for (int round = 0; round < 6; round++) {
        lt_acq h = lt_acquire(c, item, "orch", o, "webhook");
        cr_assert_eq(h.code, ORCH_CODE_OK, "%s", h.message);
        cr_assert(h.held && !h.granted, "a live owner on the other host was robbed: %s", h.message);
        cr_assert_eq(h.holder_epoch, epoch);
        cr_assert_eq(h.holder_liveness, want, "liveness %d", (int)h.holder_liveness);
        lt_sleep_ms(150);
    }
    cr_assert_eq(events(item, "reclaimed-stale"), 0);
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM transition_lease WHERE work_item = '%s'"
                            " AND released_at IS NULL AND epoch = %llu",
                            item, (unsigned long long)epoch),
                 1);
}

/* ---- probes that reach the wrong host ---------------------------------------- */

Test(lease_hosts, probe_answered_by_another_host_defers_instead_of_reclaiming)
{
    /* Host B advertises an address that reaches host A (what a wildcard or
     * loopback registration does): A's probe of B's owner asks A itself. */
    const char *ea[] = { "ORCH_HOST_ID=" HOST_A, boot_env[0], "ORCH_LEASE_REAPER_INTERVAL_MS=200",
                         "ORCH_LEASE_PROBE_TIMEOUT_MS=500", NULL };
    th_svc_start(&svcs[0], "lease", db, ea, true);
    const char *eb[] = { "ORCH_HOST_ID=" HOST_B, boot_env[1], "ORCH_LEASE_REAPER_INTERVAL_MS=60000",
                         NULL };
    lt_start_advertised(&svcs[1], db, eb, svcs[0].rpc_url, true);

    lt_owner ob, oa;
    lt_owner_spawn(&ob, HOST_B, BOOT_B); /* a live process of host B */
    lt_owner_spawn(&oa, HOST_A, BOOT_A);
    orch_rpc_client *cb = lt_client(&svcs[1]);
    lt_acq g = lt_acquire(cb, "ORCH-WRONG-1", "orch", &ob, "monitor");
    cr_assert(g.granted, "%s", g.message);

    orch_rpc_client *ca = lt_client(&svcs[0]);
    check_never_robbed(ca, "ORCH-WRONG-1", &oa, g.epoch, ORCH__V1__LIVENESS__LIVENESS_UNKNOWN);
    cr_assert(th_svc_log_has(&svcs[0], "was answered by host " HOST_A),
              "host A must say that its probe reached the wrong host");

    /* ProbeOwner itself: a foreign boot id is no verdict, and the reply says
     * which host and boot answered. */
    Orch__V1__ProbeOwnerRequest pr = ORCH__V1__PROBE_OWNER_REQUEST__INIT;
    pr.pid = 999999; /* no such process here */
    pr.start_ticks = 1;
    pr.boot_id = (char *)BOOT_B;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    orch_rpc_call_opts o = { .timeout_ms = 5000 };
    cr_assert_eq(orch_rpc_invoke(ca, orch_lease_method_probe_owner, &pr.base,
                                 &orch__v1__probe_owner_reply__descriptor, &o, &st, &m),
                 ORCH_CODE_OK, "%s", st.message);
    const Orch__V1__ProbeOwnerReply *r = (const Orch__V1__ProbeOwnerReply *)m;
    cr_assert_eq(r->liveness, ORCH__V1__LIVENESS__LIVENESS_UNKNOWN, "%s", r->reason);
    cr_assert_str_eq(r->host_id, HOST_A);
    cr_assert_str_eq(r->boot_id, BOOT_A);
    protobuf_c_message_free_unpacked(m, NULL);
    lt_client_close(ca);
    lt_client_close(cb);
}

Test(lease_hosts, probe_answered_by_another_boot_of_the_host_id_defers)
{
    /* Two machines with one host id (compose's default): host B's
     * registration leads to a lease-service that calls itself HOST_B too,
     * but runs another boot (it uses another database, so nothing refused
     * it). Its answer is not about B's owner. */
    th_db_fresh(db2, sizeof db2);
    const char *e2[] = { "ORCH_HOST_ID=" HOST_B, boot_env[2], NULL };
    th_svc_start(&svcs[2], "lease", db2, e2, true);
    const char *ea[] = { "ORCH_HOST_ID=" HOST_A, boot_env[0], "ORCH_LEASE_REAPER_INTERVAL_MS=200",
                         "ORCH_LEASE_PROBE_TIMEOUT_MS=500", NULL };
    th_svc_start(&svcs[0], "lease", db, ea, true);
    const char *eb[] = { "ORCH_HOST_ID=" HOST_B, boot_env[1], "ORCH_LEASE_REAPER_INTERVAL_MS=60000",
                         NULL };
    lt_start_advertised(&svcs[1], db, eb, svcs[2].rpc_url, true);

    lt_owner ob, oa;
    lt_owner_spawn(&ob, HOST_B, BOOT_B);
    lt_owner_spawn(&oa, HOST_A, BOOT_A);
    orch_rpc_client *cb = lt_client(&svcs[1]);
    lt_acq g = lt_acquire(cb, "ORCH-WRONG-2", "orch", &ob, "monitor");
    cr_assert(g.granted, "%s", g.message);
    orch_rpc_client *ca = lt_client(&svcs[0]);
    check_never_robbed(ca, "ORCH-WRONG-2", &oa, g.epoch, ORCH__V1__LIVENESS__LIVENESS_UNKNOWN);
    cr_assert(th_svc_log_has(&svcs[0], "boot " BOOT_C), "host A must name the boot that answered");
    lt_client_close(ca);
    lt_client_close(cb);
}

/* ---- advertised addresses ------------------------------------------------------ */

Test(lease_hosts, loopback_or_wildcard_listen_needs_an_advertised_address_once_hosts_exist)
{
    const char *ea[] = { "ORCH_HOST_ID=" HOST_A, NULL };
    th_svc_start(&svcs[0], "lease", db, ea, true); /* alone: loopback is fine */

    char wild[96];
    snprintf(wild, sizeof wild, "ORCH_LEASE_RPC_URL=tcp://0.0.0.0:%d", th_free_port());
    const char *loop[] = { "ORCH_HOST_ID=" HOST_B, NULL };
    const char *wildcard[] = { "ORCH_HOST_ID=" HOST_B, wild, NULL };
    const char *adv_wild[] = { "ORCH_HOST_ID=" HOST_B, "ORCH_LEASE_ADVERTISE_URL=tcp://0.0.0.0:1",
                               NULL };
    const char *const *bad[] = { loop, wildcard, adv_wild };
    for (size_t i = 0; i < 3; i++) {
        th_svc_start(&svcs[1], "lease", db, bad[i], false);
        int rc = exit_status(&svcs[1], 20000);
        if (rc != 1)
            th_svc_dump_log(&svcs[1]);
        cr_assert_eq(rc, 1, "case %zu: exit %d", i, rc);
        cr_assert(th_svc_log_has(&svcs[1], "ORCH_LEASE_ADVERTISE_URL"),
                  "case %zu: the refusal must name ORCH_LEASE_ADVERTISE_URL", i);
    }
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM hosts WHERE host_id = '" HOST_B "'"), 0,
                 "a refused lease-service must not register");
    /* With an address to advertise it starts, and registers that address. */
    lt_start_advertised(&svcs[1], db, loop, NULL, true);
    char *url = lt_sql_text(db, "SELECT rpc_url FROM hosts WHERE host_id = '" HOST_B "'");
    cr_assert(url);
    cr_assert_str_eq(url, svcs[1].rpc_url);
    free(url);
}

/* ---- one host id, two boots ------------------------------------------------------ */

Test(lease_hosts, second_live_instance_of_a_host_id_with_another_boot_is_refused)
{
    /* A window wide enough that no stall of the live one under load makes
     * it look stale: it is refreshed every second. */
    const char *e1[] = { "ORCH_HOST_ID=" HOST_A, boot_env[0], "ORCH_LEASE_HOST_STALE_MS=5000",
                         NULL };
    th_svc_start(&svcs[0], "lease", db, e1, true);
    lt_owner live;
    lt_owner_spawn(&live, HOST_A, BOOT_A);
    orch_rpc_client *c = lt_client(&svcs[0]);
    lt_acq g = lt_acquire(c, "ORCH-DUP-1", "orch", &live, "monitor");
    cr_assert(g.granted, "%s", g.message);
    char *before = host_row(HOST_A);
    cr_assert(before);
    char *instance = lt_sql_text(db, "SELECT instance_id FROM hosts WHERE host_id = '" HOST_A "'");
    cr_assert(instance);

    /* Another machine with the same ORCH_HOST_ID (another boot id). */
    const char *e2[] = { "ORCH_HOST_ID=" HOST_A, boot_env[1], mach_env[1],
                         "ORCH_LEASE_HOST_STALE_MS=5000", NULL };
    uint64_t t0 = orch_mono_ms();
    th_svc_start(&svcs[1], "lease", db, e2, false);
    int rc = exit_status(&svcs[1], 20000);
    if (rc != 1)
        th_svc_dump_log(&svcs[1]);
    cr_assert_eq(rc, 1, "the duplicate must exit 1, got %d", rc);
    cr_assert_lt(orch_mono_ms() - t0, 15000);
    cr_assert(th_svc_log_has(&svcs[1], "registered by another machine"));
    cr_assert(th_svc_log_has(&svcs[1], "boot " BOOT_A) && th_svc_log_has(&svcs[1], instance) &&
                  th_svc_log_has(&svcs[1], svcs[0].rpc_url),
              "the refusal must name the other registration (boot, instance, address)");

    char *after = host_row(HOST_A);
    cr_assert(after);
    cr_assert_str_eq(after, before, "the registration must be left untouched");
    cr_assert_eq(events("ORCH-DUP-1", "reclaimed-stale"), 0, "the live owner was robbed");
    lt_owner other;
    lt_owner_spawn(&other, HOST_A, BOOT_A);
    lt_acq h = lt_acquire(c, "ORCH-DUP-1", "orch", &other, "webhook");
    cr_assert(h.held && h.holder_liveness == ORCH__V1__LIVENESS__LIVENESS_ALIVE, "%s", h.message);
    free(before);
    free(after);
    free(instance);
    lt_client_close(c);
}

/* A registration made before migration 0010 (no machine id) keeps the rule
 * of staleness. */
Test(lease_hosts, crashed_host_with_an_old_registration_takes_it_over_once_stale)
{
    const char *e1[] = { "ORCH_HOST_ID=" HOST_A, boot_env[0], "ORCH_LEASE_HOST_STALE_MS=1500",
                         NULL };
    th_svc_start(&svcs[0], "lease", db, e1, true);
    lt_owner old;
    lt_owner_spawn(&old, HOST_A, BOOT_A);
    orch_rpc_client *c = lt_client(&svcs[0]);
    cr_assert(lt_acquire(c, "ORCH-REBOOT-1", "orch", &old, "monitor").granted);
    lt_client_close(c);
    /* A crash: no clean stop, the registration stays fresh for a while. */
    cr_assert_eq(th_svc_stop(&svcs[0], SIGKILL, 5000), 128 + SIGKILL);
    free(lt_sql_text(db, "UPDATE hosts SET machine_id = NULL, pid_ns = NULL"
                         " WHERE host_id = '" HOST_A "' RETURNING host_id"));
    long long seen_us = lt_sql_num(db, "SELECT (extract(epoch FROM seen_at) * 1000000)::bigint"
                                       " FROM hosts WHERE host_id = '" HOST_A "'");

    const char *e2[] = { "ORCH_HOST_ID=" HOST_A, boot_env[1], "ORCH_LEASE_HOST_STALE_MS=1500",
                         NULL };
    th_svc_start(&svcs[1], "lease", db, e2, true);
    /* Taken over only once stale: its registration is at least the window
     * after the crashed one's last heartbeat (both on the database clock). */
    cr_assert_geq(lt_sql_num(db,
                             "SELECT (extract(epoch FROM started_at) * 1000000)::bigint - %lld"
                             " FROM hosts WHERE host_id = '" HOST_A "'",
                             seen_us),
                  1500 * 1000LL, "a fresh registration of another boot was taken over");
    char *boot = lt_sql_text(db, "SELECT boot_id FROM hosts WHERE host_id = '" HOST_A "'");
    cr_assert(boot);
    cr_assert_str_eq(boot, BOOT_B);
    free(boot);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE work_item ="
                                " 'ORCH-REBOOT-1' AND kind = 'reclaimed-stale'"
                                " AND detail LIKE '%%rebooted%%'"),
                 1, "the previous boot's lease is reclaimed by start-up recovery");
}

Test(lease_hosts, heartbeat_keeps_the_registration_fresh_and_a_clean_stop_marks_it)
{
    const char *e1[] = { "ORCH_HOST_ID=" HOST_A, "ORCH_LEASE_HOST_STALE_MS=1000", NULL };
    th_svc_start(&svcs[0], "lease", db, e1, true);
    lt_sleep_ms(1500);
    cr_assert(lt_sql_wait(db, 1, 2000,
                          "SELECT count(*) FROM hosts WHERE host_id = '" HOST_A "'"
                          " AND now() - seen_at < interval '600 ms' AND stopped_at IS NULL"),
              "seen_at must be refreshed every fifth of ORCH_LEASE_HOST_STALE_MS");
    cr_assert_eq(th_svc_stop(&svcs[0], SIGTERM, 10000), 0);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM hosts WHERE host_id = '" HOST_A "'"
                                " AND stopped_at IS NOT NULL"),
                 1, "a clean stop must say so");
}

/* ---- one host id, two machines: the machine id decides ----------------------- */

/* Starts svcs[0] as HOST_A on MACH_1 with a live owner holding `item`. */
static void start_first_with_owner(const char *item, const char *stale, lt_owner *o)
{
    const char *e1[] = { "ORCH_HOST_ID=" HOST_A, boot_env[0], mach_env[0], stale, NULL };
    th_svc_start(&svcs[0], "lease", db, e1, true);
    lt_owner_spawn(o, HOST_A, BOOT_A);
    orch_rpc_client *c = lt_client(&svcs[0]);
    lt_acq g = lt_acquire(c, item, "orch", o, "monitor");
    cr_assert(g.granted, "%s", g.message);
    lt_client_close(c);
}

/* Starts HOST_A on MACH_2 as svcs[slot] and checks it refuses, naming the
 * registration, and leaves the registration and `item`'s lease alone. */
static void check_second_machine_refused(int slot, const char *item, const char *stale)
{
    char *before = host_row(HOST_A);
    cr_assert(before);
    const char *e2[] = { "ORCH_HOST_ID=" HOST_A, boot_env[1], mach_env[1], stale, NULL };
    th_svc_start(&svcs[slot], "lease", db, e2, false);
    int rc = exit_status(&svcs[slot], 20000);
    if (rc != 1)
        th_svc_dump_log(&svcs[slot]);
    cr_assert_eq(rc, 1, "another machine with the same host id must exit 1, got %d", rc);
    cr_assert(th_svc_log_has(&svcs[slot], "registered by another machine"));
    cr_assert(th_svc_log_has(&svcs[slot], "machine " MACH_1) &&
                  th_svc_log_has(&svcs[slot], "Give this machine its own ORCH_HOST_ID") &&
                  th_svc_log_has(&svcs[slot], "UPDATE hosts SET machine_id = NULL"),
              "the refusal must name the registration and how to resolve it");
    char *after = host_row(HOST_A);
    cr_assert(after);
    cr_assert_str_eq(after, before, "the registration must be left untouched");
    cr_assert_eq(events(item, "reclaimed-stale"), 0, "the first machine's live owner was robbed");
    free(before);
    free(after);
}

Test(lease_hosts, another_machine_id_is_refused_even_when_the_first_stopped_cleanly)
{
    lt_owner live;
    start_first_with_owner("ORCH-MACH-1", "ORCH_LEASE_HOST_STALE_MS=5000", &live);
    /* Its lease-service stops cleanly; its stage-service and owner run on. */
    cr_assert_eq(th_svc_stop(&svcs[0], SIGTERM, 10000), 0);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM hosts WHERE stopped_at IS NOT NULL"), 1);
    check_second_machine_refused(1, "ORCH-MACH-1", "ORCH_LEASE_HOST_STALE_MS=5000");

    /* The operator step of the runbook, for a machine really replaced: the
     * registration falls back to the rule of stopped or stale rows. */
    free(lt_sql_text(db, "UPDATE hosts SET machine_id = NULL WHERE host_id = '" HOST_A
                         "' AND machine_id = '" MACH_1 "' RETURNING host_id"));
    const char *e2[] = { "ORCH_HOST_ID=" HOST_A, boot_env[1], mach_env[1],
                         "ORCH_LEASE_HOST_STALE_MS=5000", NULL };
    th_svc_start(&svcs[2], "lease", db, e2, true);
    char *m = lt_sql_text(db, "SELECT machine_id FROM hosts WHERE host_id = '" HOST_A "'");
    cr_assert(m);
    cr_assert_str_eq(m, MACH_2);
    free(m);
}

Test(lease_hosts, another_machine_id_is_refused_even_when_the_first_is_stale)
{
    lt_owner live;
    start_first_with_owner("ORCH-MACH-2", "ORCH_LEASE_HOST_STALE_MS=1000", &live);
    /* Its lease-service dies; its owner runs on; the row goes stale. */
    cr_assert_eq(th_svc_stop(&svcs[0], SIGKILL, 5000), 128 + SIGKILL);
    cr_assert(lt_sql_wait(db, 1, 5000,
                          "SELECT count(*) FROM hosts WHERE host_id = '" HOST_A "'"
                          " AND now() - seen_at > interval '1500 ms'"));
    check_second_machine_refused(1, "ORCH-MACH-2", "ORCH_LEASE_HOST_STALE_MS=1000");
}

Test(lease_hosts, reboot_with_the_same_machine_id_takes_over_at_once)
{
    lt_owner old;
    /* A window far longer than the test allows the takeover to take. */
    start_first_with_owner("ORCH-MACH-3", "ORCH_LEASE_HOST_STALE_MS=60000", &old);
    cr_assert_eq(th_svc_stop(&svcs[0], SIGKILL, 5000), 128 + SIGKILL);

    const char *e2[] = { "ORCH_HOST_ID=" HOST_A, boot_env[1], mach_env[0],
                         "ORCH_LEASE_HOST_STALE_MS=60000", NULL };
    uint64_t t0 = orch_mono_ms();
    th_svc_start(&svcs[1], "lease", db, e2, true);
    cr_assert_lt(orch_mono_ms() - t0, 20000, "a reboot must not wait for the row to go stale");
    char *boot = lt_sql_text(db, "SELECT boot_id FROM hosts WHERE host_id = '" HOST_A "'");
    cr_assert(boot);
    cr_assert_str_eq(boot, BOOT_B);
    free(boot);
    cr_assert(th_svc_log_has(&svcs[1], "the machine rebooted"));
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE work_item ="
                                " 'ORCH-MACH-3' AND kind = 'reclaimed-stale'"
                                " AND detail LIKE '%%rebooted%%'"),
                 1, "the previous boot's lease is reclaimed by start-up recovery");
}
