/*
 * test_lease_liveness.c - liveness without owner heartbeats, fencing, the
 * one ceiling and restart recovery (DESIGN.md invariants 3, 5, 6, 7):
 * crashed owners (SIGKILL) are reclaimed by the next Acquire or by the
 * reaper, a live but stopped owner (SIGSTOP) is never robbed before the
 * ceiling and is released after it, a simulated reboot and a container-like
 * restart make the next lease-service reclaim the old leases before it
 * answers, owners on another host are judged by asking that host, and the
 * ceiling must exceed the step timeout. Also the lease metrics.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "orch/clock.h"
#include "orch/ident.h"
#include "test_lease_util.h"

#define MAX_SVCS 3

static th_svc svcs[MAX_SVCS];
static char db[600];
static char tmpdir[64];

static void setup(void)
{
    memset(svcs, 0, sizeof svcs);
    tmpdir[0] = '\0';
    th_db_fresh(db, sizeof db);
}

static void teardown(void)
{
    lt_cleanup();
    for (int i = 0; i < MAX_SVCS; i++)
        if (svcs[i].pid > 0 && th_svc_stop(&svcs[i], SIGTERM, 10000) != 0)
            th_svc_dump_log(&svcs[i]);
    if (tmpdir[0]) {
        char path[128];
        snprintf(path, sizeof path, "%s/boot-a", tmpdir);
        unlink(path);
        snprintf(path, sizeof path, "%s/boot-b", tmpdir);
        unlink(path);
        rmdir(tmpdir);
    }
}

TestSuite(lease_liveness, .init = setup, .fini = teardown, .timeout = 60);

/* Starts lease-service number i with ORCH_HOST_ID=LT_HOST and extra env. */
static th_svc *start(int i, const char *const *extra)
{
    const char *env[16];
    int n = 0;
    env[n++] = "ORCH_HOST_ID=" LT_HOST;
    for (const char *const *e = extra; e && *e && n < 15; e++)
        env[n++] = *e;
    env[n] = NULL;
    th_svc_start(&svcs[i], "lease", db, env, true);
    return &svcs[i];
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* Line number (0-based) of the first log line holding `needle`, or -1. */
static int log_line_of(const th_svc *s, const char *needle)
{
    FILE *f = fopen(s->log_path, "r");
    char line[8192];
    int n = 0, at = -1;
    cr_assert(f, "no log %s", s->log_path);
    while (at < 0 && fgets(line, sizeof line, f)) {
        if (strstr(line, needle))
            at = n;
        n++;
    }
    fclose(f);
    return at;
}

static int log_count(const th_svc *s, const char *needle)
{
    FILE *f = fopen(s->log_path, "r");
    char line[8192];
    int n = 0;
    cr_assert(f, "no log %s", s->log_path);
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* epoch/owner pid/held-or-reason/acquired_at of one lease row. */
static char *row_snapshot(const char *item)
{
    return lt_sql_text(db,
                       "SELECT epoch || '/' || owner_pid || '/' ||"
                       " coalesce(release_reason, 'held') || '/' || acquired_at::text ||"
                       " '/' || coalesce(released_at::text, '-')"
                       " FROM transition_lease WHERE work_item = '%s'",
                       item);
}

static long long events(const char *item, const char *kind)
{
    return lt_sql_num(
        db, "SELECT count(*) FROM lease_events WHERE work_item = '%s' AND kind = '%s'", item, kind);
}

/* Release of `item` at the stale epoch fails and changes neither the row nor
 * the events. */
static void stale_release_changes_nothing(orch_rpc_client *c, const char *item, uint64_t stale)
{
    char *before = row_snapshot(item);
    long long nev = lt_sql_num(db, "SELECT count(*) FROM lease_events");
    orch_rpc_status st;
    cr_assert_eq(lt_release(c, item, stale, NULL, &st), ORCH_CODE_FAILED_PRECONDITION, "%s",
                 st.message);
    char *after = row_snapshot(item);
    cr_assert_str_eq(after, before, "a stale Release changed the row");
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events"), nev);
    free(before);
    free(after);
}

/* One reclaim of epoch `dead` naming the dead owner's pid, one grant of `next`. */
static void reclaim_was_recorded(const char *item, uint64_t dead, pid_t dead_pid, uint64_t next)
{
    cr_assert_eq(
        lt_sql_num(db,
                   "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                   " AND kind = 'reclaimed-stale' AND epoch = %llu AND detail LIKE '%%pid %d%%'",
                   item, (unsigned long long)dead, (int)dead_pid),
        1);
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                            " AND kind = 'granted' AND epoch = %llu",
                            item, (unsigned long long)next),
                 1);
}

/* ---- SIGKILL of the owner -------------------------------------------------- */

Test(lease_liveness, killed_owner_is_reclaimed_by_next_acquire_and_fenced_off)
{
    static const char item[] = "ORCH-KILL-1";
    static const char *const env[] = { "ORCH_LEASE_REAPER_INTERVAL_MS=60000", NULL };
    th_svc *s = start(0, env);
    orch_rpc_client *c = lt_client(s);
    lt_owner a, b, x;
    lt_owner_spawn(&a, NULL, NULL);
    lt_owner_spawn(&b, NULL, NULL);
    lt_owner_spawn(&x, NULL, NULL);

    lt_acq g = lt_acquire(c, item, "orch", &a, "monitor");
    cr_assert_eq(g.code, ORCH_CODE_OK, "%s", g.message);
    cr_assert(g.granted && !g.reclaimed);
    uint64_t e1 = g.epoch;

    /* While A lives, B defers. */
    lt_acq h = lt_acquire(c, item, "orch", &b, "webhook");
    cr_assert(h.held && h.holder_pid == a.pid && h.epoch == e1);

    lt_owner_kill(&a);
    lt_acq r = lt_acquire(c, item, "orch", &b, "webhook");
    cr_assert_eq(r.code, ORCH_CODE_OK, "%s", r.message);
    cr_assert(r.granted, "B must get the dead owner's lease");
    cr_assert(r.reclaimed, "the reply must say the lease was taken over");
    cr_assert_gt(r.epoch, e1);
    uint64_t e2 = r.epoch;

    /* The dead owner's Release with its old epoch fails and changes nothing. */
    stale_release_changes_nothing(c, item, e1);

    lt_valid v = lt_validate(c, item, e1);
    cr_assert_eq(v.code, ORCH_CODE_OK, "%s", v.message);
    cr_assert_not(v.valid, "the old epoch must not validate");
    cr_assert(v.held);
    cr_assert_eq(v.current_epoch, e2);
    v = lt_validate(c, item, e2);
    cr_assert(v.valid);

    /* B is alive: a third actor defers on B, not on the dead A. */
    lt_acq h2 = lt_acquire(c, item, "orch", &x, "reconciler");
    cr_assert(h2.held && h2.holder_pid == b.pid && h2.epoch == e2);

    cr_assert(th_svc_wait_log(s, "ALERT lease.reclaimed-stale", 3000), "no alert");
    reclaim_was_recorded(item, e1, a.claimed_pid, e2);

    /* Once B released, the stale epoch still cannot release anything. */
    orch_rpc_status st;
    cr_assert_eq(lt_release(c, item, e2, NULL, &st), ORCH_CODE_OK, "%s", st.message);
    cr_assert_eq(lt_release(c, item, e1, NULL, &st), ORCH_CODE_FAILED_PRECONDITION, "%s",
                 st.message);
    lt_client_close(c);
}

Test(lease_liveness, reaper_alone_releases_a_dead_owners_lease)
{
    static const char item[] = "ORCH-KILL-REAPER";
    static const char live_item[] = "ORCH-LIVE-REAPER";
    static const char *const env[] = { "ORCH_LEASE_REAPER_INTERVAL_MS=200", NULL };
    th_svc *s = start(0, env);
    orch_rpc_client *c = lt_client(s);
    lt_owner a, live, b;
    lt_owner_spawn(&a, NULL, NULL);
    lt_owner_spawn(&live, NULL, NULL);
    lt_owner_spawn(&b, NULL, NULL);

    lt_acq g = lt_acquire(c, item, "orch", &a, "monitor");
    cr_assert(g.granted, "%s", g.message);
    lt_acq gl = lt_acquire(c, live_item, "orch", &live, "monitor");
    cr_assert(gl.granted, "%s", gl.message);

    uint64_t t0 = orch_mono_ms();
    lt_owner_kill(&a);
    bool reaped = lt_sql_wait(db, 1, 3000,
                              "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                              " AND kind = 'reclaimed-stale' AND epoch = %llu",
                              item, (unsigned long long)g.epoch);
    cr_assert(reaped, "the reaper did not release the dead owner's lease within 3 s");
    cr_log_info("reaped %llu ms after the kill", (unsigned long long)(orch_mono_ms() - t0));

    char *reason = lt_sql_text(db,
                               "SELECT release_reason FROM transition_lease WHERE work_item = '%s'"
                               " AND released_at IS NOT NULL AND epoch = %llu",
                               item, (unsigned long long)g.epoch);
    cr_assert(reason, "the lease row was not released at its epoch");
    cr_assert_str_eq(reason, "reclaimed-stale");
    free(reason);
    cr_assert(th_svc_wait_log(s, "ALERT lease.reclaimed-stale", 2000));
    cr_assert_eq(events(item, "granted"), 1, "the reaper releases, it does not grant");

    lt_valid v = lt_validate(c, item, g.epoch);
    cr_assert(!v.valid && !v.held, "%s", v.message);
    orch_rpc_status st;
    cr_assert_eq(lt_release(c, item, g.epoch, NULL, &st), ORCH_CODE_FAILED_PRECONDITION, "%s",
                 st.message);

    /* A few more passes leave the live owner alone. */
    lt_sleep_ms(600);
    cr_assert(lt_validate(c, live_item, gl.epoch).valid, "a live owner's lease was reaped");
    cr_assert_eq(events(live_item, "reclaimed-stale"), 0);

    /* The next Acquire is a plain grant at a higher epoch. */
    lt_acq n = lt_acquire(c, item, "orch", &b, "webhook");
    cr_assert(n.granted && !n.reclaimed, "%s", n.message);
    cr_assert_gt(n.epoch, g.epoch);
    lt_client_close(c);
}

/* ---- a live slow owner and the ceiling ------------------------------------- */

/* Until 2 s after t0, `other` is told HELD by the stopped owner `slow`
 * (alive) and its epoch validates; returns how many times it asked. */
static int stopped_owner_keeps_it(orch_rpc_client *c, const char *item, const lt_owner *other,
                                  const lt_owner *slow, uint64_t epoch, uint64_t t0)
{
    int checks = 0;
    while (orch_mono_ms() - t0 < 2000) {
        lt_acq h = lt_acquire(c, item, "orch", other, "reconciler");
        cr_assert_eq(h.code, ORCH_CODE_OK, "%s", h.message);
        cr_assert(h.held, "a stopped but live owner was robbed after %llu ms",
                  (unsigned long long)(orch_mono_ms() - t0));
        cr_assert_eq(h.holder_liveness, ORCH__V1__LIVENESS__LIVENESS_ALIVE);
        cr_assert_eq(h.holder_pid, slow->pid);
        cr_assert(lt_validate(c, item, epoch).valid);
        checks++;
        lt_sleep_ms(250);
    }
    return checks;
}

/* The ceiling released `item`: alert, reason, metric, and no reclaim. */
static void ceiling_release_was_recorded(th_svc *s, const char *item)
{
    cr_assert(th_svc_wait_log(s, "ALERT lease.ceiling-released", 2000));
    cr_assert_eq(events(item, "reclaimed-stale"), 0, "a live owner is not 'dead'");
    char *reason = lt_sql_text(db,
                               "SELECT release_reason FROM transition_lease"
                               " WHERE work_item = '%s' AND released_at IS NOT NULL",
                               item);
    cr_assert(reason);
    cr_assert_str_eq(reason, "ceiling-released");
    free(reason);
    cr_assert_eq(lt_metric(s, "orch_lease_release_total{kind=\"ceiling_released\"}"), 1);
}

Test(lease_liveness, stopped_owner_is_never_robbed_before_ceiling_and_released_after)
{
    static const char item[] = "ORCH-SLOW-1";
    static const char *const env[] = { "ORCH_REAPER_MAX_RUNNING_S=3", "ORCH_STEP_TIMEOUT_S=1",
                                       "ORCH_LEASE_REAPER_INTERVAL_MS=200", NULL };
    th_svc *s = start(0, env);
    orch_rpc_client *c = lt_client(s);
    lt_owner slow, other;
    lt_owner_spawn(&slow, NULL, NULL);
    lt_owner_spawn(&other, NULL, NULL);

    /* t0 is taken before the grant, so the lease is never older than the
     * test thinks: checks stop 1 s short of the 3 s ceiling. */
    uint64_t t0 = orch_mono_ms();
    lt_acq g = lt_acquire(c, item, "orch", &slow, "deployer");
    cr_assert(g.granted, "%s", g.message);
    cr_assert_eq(kill(slow.pid, SIGSTOP), 0);

    cr_assert_geq(stopped_owner_keeps_it(c, item, &other, &slow, g.epoch, t0), 4);
    cr_assert_eq(events(item, "reclaimed-stale"), 0);
    cr_assert_eq(events(item, "ceiling-released"), 0);

    cr_assert(lt_sql_wait(db, 1, 6000,
                          "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                          " AND kind = 'ceiling-released' AND epoch = %llu",
                          item, (unsigned long long)g.epoch),
              "the lease outlived the ceiling");
    cr_log_info("ceiling release %llu ms after the grant",
                (unsigned long long)(orch_mono_ms() - t0));
    ceiling_release_was_recorded(s, item);

    /* Fenced: the slow owner's epoch is dead, its Release fails. */
    cr_assert_not(lt_validate(c, item, g.epoch).valid);
    orch_rpc_status st;
    cr_assert_eq(lt_release(c, item, g.epoch, NULL, &st), ORCH_CODE_FAILED_PRECONDITION, "%s",
                 st.message);
    lt_acq n = lt_acquire(c, item, "orch", &other, "reconciler");
    cr_assert(n.granted && !n.reclaimed, "%s", n.message);
    cr_assert_gt(n.epoch, g.epoch);

    cr_assert_eq(kill(slow.pid, SIGCONT), 0);
    lt_owner_kill(&slow);
    lt_client_close(c);
}

/* ---- restart recovery --------------------------------------------------------- */

/* After the reboot to boot_b, s2 released both of this host's leases
 * (ORCH-BOOT-1, -2) before opening its RPC socket, left the other host's
 * alone, and recorded the new boot id. */
static void reboot_recovery_was_done(th_svc *s2, const char *boot_b)
{
    for (int i = 1; i <= 2; i++) {
        char item[32];
        snprintf(item, sizeof item, "ORCH-BOOT-%d", i);
        char *reason = lt_sql_text(db,
                                   "SELECT coalesce(release_reason, 'held') FROM transition_lease"
                                   " WHERE work_item = '%s'",
                                   item);
        cr_assert(reason);
        cr_assert_str_eq(reason, "reclaimed-stale", "%s after the reboot", item);
        free(reason);
        cr_assert_eq(events(item, "reclaimed-stale"), 1);
    }
    cr_assert_eq(log_count(s2, "ALERT lease.reclaimed-stale"), 2);
    int alert = log_line_of(s2, "ALERT lease.reclaimed-stale");
    int listening = log_line_of(s2, "RPC listening on");
    cr_assert(alert >= 0 && listening > alert,
              "recovery must finish before the RPC socket opens (alert line %d, listen line %d)",
              alert, listening);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind ="
                                " 'reclaimed-stale' AND detail LIKE '%%rebooted%%'"),
                 2, "the recorded reason names the reboot");
    /* Another host's lease is not this host's to reclaim. */
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM transition_lease WHERE work_item ="
                                " 'ORCH-BOOT-FAR' AND released_at IS NULL"),
                 1);
    char *hb = lt_sql_text(db, "SELECT boot_id FROM hosts WHERE host_id = '" LT_HOST "'");
    cr_assert(hb);
    cr_assert_str_eq(hb, boot_b);
    free(hb);
}

Test(lease_liveness, simulated_reboot_reclaims_old_leases_before_serving)
{
    static const char boot_a[] = "0a0a0a0a-aaaa-4aaa-8aaa-0000000000a1";
    static const char boot_b[] = "0b0b0b0b-bbbb-4bbb-8bbb-0000000000b2";
    char path_a[128], path_b[128], env_a[160], env_b[160];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/orch-lease-boot-XXXXXX");
    cr_assert(mkdtemp(tmpdir));
    snprintf(path_a, sizeof path_a, "%s/boot-a", tmpdir);
    snprintf(path_b, sizeof path_b, "%s/boot-b", tmpdir);
    write_file(path_a, boot_a);
    snprintf(env_a, sizeof env_a, "ORCH_BOOT_ID_PATH=%s", path_a);
    snprintf(env_b, sizeof env_b, "ORCH_BOOT_ID_PATH=%s", path_b);

    const char *e1[] = { env_a, "ORCH_LEASE_REAPER_INTERVAL_MS=60000", NULL };
    th_svc *s1 = start(0, e1);
    orch_rpc_client *c = lt_client(s1);
    lt_owner o1, o2, o3, far;
    lt_owner_spawn(&o1, NULL, boot_a);
    lt_owner_spawn(&o2, NULL, boot_a);
    lt_owner_spawn(&o3, NULL, boot_a);
    lt_owner_spawn(&far, "lease-test-other-host", boot_a);
    cr_assert(lt_acquire(c, "ORCH-BOOT-1", "orch", &o1, "monitor").granted);
    cr_assert(lt_acquire(c, "ORCH-BOOT-2", "orch", &o2, "monitor").granted);
    cr_assert(lt_acquire(c, "ORCH-BOOT-FAR", "orch", &far, "monitor").granted);
    /* Under boot A the owners are alive. */
    lt_acq h = lt_acquire(c, "ORCH-BOOT-1", "orch", &o3, "webhook");
    cr_assert(h.held && h.holder_liveness == ORCH__V1__LIVENESS__LIVENESS_ALIVE, "%s", h.message);
    lt_client_close(c);
    cr_assert_eq(th_svc_stop(s1, SIGTERM, 10000), 0);

    /* The host "reboots": same host id, new boot id. */
    write_file(path_b, boot_b);
    const char *e2[] = { env_b, "ORCH_LEASE_REAPER_INTERVAL_MS=60000", NULL };
    th_svc *s2 = start(1, e2);

    /* By the time it answers Check, both of this host's leases are released. */
    reboot_recovery_was_done(s2, boot_b);

    /* Owners of the new boot take the items afresh. */
    c = lt_client(s2);
    lt_owner n1;
    lt_owner_spawn(&n1, NULL, boot_b);
    lt_acq g = lt_acquire(c, "ORCH-BOOT-1", "orch", &n1, "monitor");
    cr_assert(g.granted && !g.reclaimed && g.epoch == 2, "%s", g.message);
    /* The other host never registered: unknown, defer, never steal. */
    lt_acq u = lt_acquire(c, "ORCH-BOOT-FAR", "orch", &n1, "monitor");
    cr_assert(u.held, "%s", u.message);
    cr_assert_eq(u.holder_liveness, ORCH__V1__LIVENESS__LIVENESS_UNKNOWN);
    lt_client_close(c);
}

Test(lease_liveness, container_restart_reclaims_gone_and_reused_pids_at_start)
{
    static const char *const env[] = { "ORCH_LEASE_REAPER_INTERVAL_MS=60000", NULL };
    th_svc *s1 = start(0, env);
    orch_rpc_client *c = lt_client(s1);
    lt_owner live, reused, gone, init;
    lt_owner_spawn(&live, NULL, NULL);
    lt_owner_spawn(&reused, NULL, NULL);
    lt_owner_spawn(&gone, NULL, NULL);
    /* A pid that now belongs to another process: same pid, other start. */
    reused.start_ticks += 7;
    /* PID 1 repeats in every container: its start time tells them apart. */
    memset(&init, 0, sizeof init);
    cr_assert(orch_proc_start_ticks(1, &init.start_ticks) == ORCH_OK);
    init.start_ticks += 1;
    init.claimed_pid = 1;
    snprintf(init.host_id, sizeof init.host_id, "%s", LT_HOST);
    snprintf(init.boot_id, sizeof init.boot_id, "%s", lt_kernel_boot_id());
    snprintf(init.instance_id, sizeof init.instance_id, "previous-container-init");

    cr_assert(lt_acquire(c, "ORCH-CT-LIVE", "orch", &live, "monitor").granted);
    cr_assert(lt_acquire(c, "ORCH-CT-REUSED", "orch", &reused, "monitor").granted);
    cr_assert(lt_acquire(c, "ORCH-CT-GONE", "orch", &gone, "monitor").granted);
    cr_assert(lt_acquire(c, "ORCH-CT-INIT", "orch", &init, "monitor").granted);
    lt_client_close(c);
    cr_assert_eq(th_svc_stop(s1, SIGTERM, 10000), 0);
    lt_owner_kill(&gone);

    th_svc *s2 = start(1, env); /* same host id, same boot id */
    static const char *const dead[] = { "ORCH-CT-REUSED", "ORCH-CT-GONE", "ORCH-CT-INIT" };
    for (size_t i = 0; i < 3; i++) {
        char *reason = lt_sql_text(db,
                                   "SELECT coalesce(release_reason, 'held') FROM transition_lease"
                                   " WHERE work_item = '%s'",
                                   dead[i]);
        cr_assert(reason);
        cr_assert_str_eq(reason, "reclaimed-stale", "%s at start", dead[i]);
        free(reason);
    }
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM transition_lease WHERE work_item ="
                                " 'ORCH-CT-LIVE' AND released_at IS NULL"),
                 1, "the live owner's lease must survive the restart");
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind ="
                                " 'reclaimed-stale' AND work_item = 'ORCH-CT-REUSED'"
                                " AND detail LIKE '%%another process%%'"),
                 1);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind ="
                                " 'reclaimed-stale' AND work_item = 'ORCH-CT-GONE'"
                                " AND detail LIKE '%%no process%%'"),
                 1);
    cr_assert_eq(log_count(s2, "ALERT lease.reclaimed-stale"), 3);
    cr_assert_lt(log_line_of(s2, "ALERT lease.reclaimed-stale"), log_line_of(s2, "RPC listening"));
}

/* ---- owners on another host ----------------------------------------------- */

/* Until 2 s after t0, `asker` is told HELD by an owner of unknown liveness;
 * returns how many times it asked. */
static int unknown_owner_keeps_it(orch_rpc_client *c, const char *item, const lt_owner *asker,
                                  uint64_t t0)
{
    int checks = 0;
    while (orch_mono_ms() - t0 < 2000) {
        lt_acq u = lt_acquire(c, item, "orch", asker, "webhook");
        cr_assert_eq(u.code, ORCH_CODE_OK, "%s", u.message);
        cr_assert(u.held, "an unreachable host's owner was robbed");
        cr_assert_eq(u.holder_liveness, ORCH__V1__LIVENESS__LIVENESS_UNKNOWN);
        checks++;
        lt_sleep_ms(200);
    }
    return checks;
}

Test(lease_liveness, remote_owner_judged_by_its_host_and_unknown_is_never_stolen)
{
    static const char *const ea[] = { "ORCH_HOST_ID=lease-test-host-a",
                                      "ORCH_LEASE_REAPER_INTERVAL_MS=60000", NULL };
    static const char *const eb[] = {
        "ORCH_HOST_ID=lease-test-host-b",  "ORCH_LEASE_REAPER_INTERVAL_MS=200",
        "ORCH_LEASE_PROBE_TIMEOUT_MS=300", "ORCH_REAPER_MAX_RUNNING_S=3",
        "ORCH_STEP_TIMEOUT_S=1",           NULL
    };
    th_svc_start(&svcs[0], "lease", db, ea, true);
    /* The second host on this machine listens on loopback: it must advertise
     * (its own address here), or it refuses to start. */
    lt_start_advertised(&svcs[1], db, eb, NULL, true);
    th_svc *b = &svcs[1];
    orch_rpc_client *c = lt_client(b);
    lt_owner oa, ob, oa2;
    lt_owner_spawn(&oa, "lease-test-host-a", NULL);
    lt_owner_spawn(&oa2, "lease-test-host-a", NULL);
    lt_owner_spawn(&ob, "lease-test-host-b", NULL);

    /* Alive, as host A says. */
    lt_acq g = lt_acquire(c, "ORCH-X-1", "orch", &oa, "monitor");
    cr_assert(g.granted, "%s", g.message);
    lt_acq h = lt_acquire(c, "ORCH-X-1", "orch", &ob, "webhook");
    cr_assert(h.held, "%s", h.message);
    cr_assert_eq(h.holder_liveness, ORCH__V1__LIVENESS__LIVENESS_ALIVE);

    /* Dead, as host A says: reclaimed through the probe (by this Acquire or
     * by B's reaper, whichever comes first). */
    lt_owner_kill(&oa);
    lt_acq r = lt_acquire(c, "ORCH-X-1", "orch", &ob, "webhook");
    cr_assert(r.granted && r.epoch > g.epoch, "%s", r.message);
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM lease_events WHERE work_item = 'ORCH-X-1'"
                            " AND kind = 'reclaimed-stale' AND epoch = %llu"
                            " AND detail LIKE '%%says it is gone%%'",
                            (unsigned long long)g.epoch),
                 1);

    /* Host A goes away: its owners are unknown, never stolen. */
    uint64_t t0 = orch_mono_ms();
    lt_acq g2 = lt_acquire(c, "ORCH-X-2", "orch", &oa2, "monitor");
    cr_assert(g2.granted, "%s", g2.message);
    cr_assert_eq(th_svc_stop(&svcs[0], SIGTERM, 10000), 0);
    cr_assert_geq(unknown_owner_keeps_it(c, "ORCH-X-2", &ob, t0), 2);
    cr_assert_eq(events("ORCH-X-2", "reclaimed-stale"), 0);
    /* ...until the ceiling. */
    cr_assert(lt_sql_wait(db, 1, 6000,
                          "SELECT count(*) FROM lease_events WHERE work_item = 'ORCH-X-2'"
                          " AND kind = 'ceiling-released'"),
              "the ceiling did not release the unknown owner's lease");
    cr_assert_eq(events("ORCH-X-2", "reclaimed-stale"), 0);
    lt_client_close(c);
}

/* ---- /proc unreadable ------------------------------------------------------------ */

/* The lowest descriptor number process `pid` does not use: with its soft
 * RLIMIT_NOFILE set to it, every open() it makes fails with EMFILE. */
static int lowest_free_fd(pid_t pid)
{
    char path[64];
    bool used[4096] = { false };
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    cr_assert(d, "cannot list %s", path);
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end == '\0' && e->d_name[0] && fd >= 0 && fd < 4096)
            used[fd] = true;
    }
    closedir(d);
    int fd = 0;
    while (fd < 4096 && used[fd])
        fd++;
    return fd;
}

Test(lease_liveness, proc_unreadable_for_lack_of_descriptors_defers_instead_of_reclaiming)
{
    /* One database connection and one worker: every statement reuses the
     * connection opened before the limit, so only /proc reads fail. */
    static const char *const env[] = { "ORCH_DB_POOL_SIZE=1", "ORCH_RPC_WORKERS=1",
                                       "ORCH_LEASE_REAPER_INTERVAL_MS=200",
                                       "ORCH_DB_PROBE_INTERVAL_MS=60000", NULL };
    th_svc *s = start(0, env);
    orch_rpc_client *c = lt_client(s);
    lt_owner live, other;
    lt_owner_spawn(&live, NULL, NULL);
    lt_owner_spawn(&other, NULL, NULL);
    lt_acq g = lt_acquire(c, "ORCH-EMFILE-1", "orch", &live, "monitor");
    cr_assert(g.granted, "%s", g.message);
    lt_acq h = lt_acquire(c, "ORCH-EMFILE-1", "orch", &other, "webhook");
    cr_assert(h.held && h.holder_liveness == ORCH__V1__LIVENESS__LIVENESS_ALIVE, "%s", h.message);

    struct rlimit old, low;
    cr_assert_eq(prlimit(s->pid, RLIMIT_NOFILE, NULL, &old), 0);
    /* The least of a few samples: a /proc file the reaper has open for an
     * instant must not count as used. */
    int lowest = lowest_free_fd(s->pid);
    for (int i = 0; i < 10; i++) {
        lt_sleep_ms(10);
        int fd = lowest_free_fd(s->pid);
        lowest = fd < lowest ? fd : lowest;
    }
    low.rlim_cur = (rlim_t)lowest;
    low.rlim_max = old.rlim_max;
    cr_assert_eq(prlimit(s->pid, RLIMIT_NOFILE, &low, NULL), 0);
    /* Acquires and reaper passes (every 200 ms) while /proc cannot be opened. */
    for (int i = 0; i < 6; i++) {
        lt_acq u = lt_acquire(c, "ORCH-EMFILE-1", "orch", &other, "webhook");
        cr_assert_eq(u.code, ORCH_CODE_OK, "%s", u.message);
        cr_assert(u.held && !u.granted, "a live owner was robbed when /proc could not be read");
        cr_assert_eq(u.holder_liveness, ORCH__V1__LIVENESS__LIVENESS_UNKNOWN);
        lt_sleep_ms(150);
    }
    cr_assert_eq(prlimit(s->pid, RLIMIT_NOFILE, &old, NULL), 0);
    cr_assert_eq(events("ORCH-EMFILE-1", "reclaimed-stale"), 0);
    cr_assert(th_svc_log_has(s, "cannot read /proc for pid"),
              "the unreadable /proc must be logged");
    /* Descriptors back: the owner is judged alive again. */
    lt_acq a = lt_acquire(c, "ORCH-EMFILE-1", "orch", &other, "webhook");
    cr_assert(a.held && a.holder_epoch == g.epoch, "%s", a.message);
    cr_assert_eq(a.holder_liveness, ORCH__V1__LIVENESS__LIVENESS_ALIVE);
    lt_client_close(c);
}

/* ---- configuration ----------------------------------------------------------- */

Test(lease_liveness, ceiling_not_above_step_timeout_refuses_to_start)
{
    static const char *const bad[][3] = {
        { "ORCH_REAPER_MAX_RUNNING_S=5", "ORCH_STEP_TIMEOUT_S=5", NULL },
        { "ORCH_REAPER_MAX_RUNNING_S=5", "ORCH_STEP_TIMEOUT_S=10", NULL },
    };
    for (size_t i = 0; i < 2; i++) {
        const char *env[] = { "ORCH_HOST_ID=" LT_HOST, bad[i][0], bad[i][1], NULL };
        th_svc_start(&svcs[0], "lease", db, env, false);
        int rc = th_svc_stop(&svcs[0], 0, 20000); /* signal 0: wait for the exit */
        if (rc != 1)
            th_svc_dump_log(&svcs[0]);
        cr_assert_eq(rc, 1, "%s %s: exit %d", bad[i][0], bad[i][1], rc);
        cr_assert(th_svc_log_has(&svcs[0], "ORCH_REAPER_MAX_RUNNING_S") &&
                      th_svc_log_has(&svcs[0], "ORCH_STEP_TIMEOUT_S"),
                  "the log must name both variables");
    }
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM hosts"), 0,
                 "a refused service must not register its host");
    /* One second above is enough. */
    const char *ok[] = { "ORCH_REAPER_MAX_RUNNING_S=6", "ORCH_STEP_TIMEOUT_S=5", NULL };
    th_svc *s = start(0, ok);
    cr_assert(th_svc_alive(s));
}

/* ---- metrics ------------------------------------------------------------------ */

Test(lease_liveness, metrics_count_grants_defers_reclaims_and_releases)
{
    static const char *const env[] = { "ORCH_LEASE_REAPER_INTERVAL_MS=60000", NULL };
    th_svc *s = start(0, env);
    orch_rpc_client *c = lt_client(s);
    lt_owner a, b, d;
    lt_owner_spawn(&a, NULL, NULL);
    lt_owner_spawn(&b, NULL, NULL);
    lt_owner_spawn(&d, NULL, NULL);

    cr_assert(lt_acquire(c, "ORCH-MET-1", "orch", &a, "monitor").granted);      /* granted */
    cr_assert(lt_acquire(c, "ORCH-MET-1", "orch", &b, "webhook").held);         /* held */
    cr_assert(lt_acquire(c, "ORCH-MET-1", "orch", &a, "monitor").already_held); /* retry */
    lt_owner_kill(&a);
    lt_acq r = lt_acquire(c, "ORCH-MET-1", "orch", &b, "webhook"); /* reclaimed */
    cr_assert(r.granted && r.reclaimed, "%s", r.message);
    cr_assert(lt_acquire(c, "ORCH-MET-1", "not-in-scope", &d, "webhook").inert);
    orch_rpc_status st;
    cr_assert_eq(lt_release(c, "ORCH-MET-1", r.epoch, NULL, &st), ORCH_CODE_OK, "%s", st.message);
    lt_acq g2 = lt_acquire(c, "ORCH-MET-2", "orch", &d, "monitor"); /* granted */
    cr_assert(g2.granted, "%s", g2.message);
    Orch__V1__ForceReleaseRequest fr = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    fr.work_item = "ORCH-MET-2";
    fr.reason = "metrics test";
    fr.epoch = g2.epoch;
    cr_assert_eq(lt_call(c, orch_lease_method_force_release, &fr.base,
                         &orch__v1__force_release_reply__descriptor, &st),
                 ORCH_CODE_OK, "%s", st.message);

    static const struct {
        const char *series;
        double want;
    } want[] = {
        { "orch_lease_acquire_total{outcome=\"granted\"}", 2 },
        { "orch_lease_acquire_total{outcome=\"held\"}", 1 },
        { "orch_lease_acquire_total{outcome=\"already_held\"}", 1 },
        { "orch_lease_acquire_total{outcome=\"reclaimed\"}", 1 },
        { "orch_lease_acquire_total{outcome=\"inert\"}", 1 },
        { "orch_lease_release_total{kind=\"released\"}", 1 },
        { "orch_lease_release_total{kind=\"force_released\"}", 1 },
        { "orch_lease_release_total{kind=\"reclaimed_stale\"}", 1 },
        { "orch_lease_release_total{kind=\"ceiling_released\"}", 0 },
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        double got = lt_metric(s, want[i].series);
        cr_assert_eq(got, want[i].want, "%s = %g, want %g", want[i].series, got, want[i].want);
    }
    cr_assert_geq(lt_metric(s, "orch_lease_acquire_duration_seconds_count{method=\"Acquire\"}"), 5);
    cr_assert(th_svc_log_has(s, "ALERT lease.force-released"));
    lt_client_close(c);
}
