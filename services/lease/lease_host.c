/*
 * lease_host.c - see lease_host.h.
 *
 * A host id names one machine (one kernel, one /proc): owners whose host id
 * is this lease-service's are judged from this /proc. Two machines with one
 * host id would judge each other's owners as their own, so a registration
 * records the machine id and PID namespace it was made from, and another
 * machine or namespace never takes it over, live, stopped or stale (see
 * lease_host_decide). Rows without them (before migration 0010) keep the
 * older rule: the live one refreshes seen_at, the newcomer waits for it to
 * go stale (a reboot) or sees it refreshed (a duplicate) and refuses.
 */
#include "lease_host.h"

#include <signal.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orch/alert.h"
#include "orch/clock.h"
#include "orch/log.h"
#include "orch/ticker.h"

/* The heartbeat: a ticker and what only its thread touches. */
struct lease_host_beat {
    orch_ticker *ticker;
    lease_svc *ls;
    bool failing; /* the last beat failed (logged once per run of failures) */
};

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int64_t beat_period_ms(const lease_svc *ls)
{
    int64_t p = ls->host_stale_ms / LEASE_HOST_BEATS_PER_STALE;
    return p > 0 ? p : 1;
}

/* The address to register, or NULL (logged) when the configuration would
 * make other hosts' probes reach the wrong host. */
static const char *choose_url(lease_svc *ls, const char *listen, const char *advertise)
{
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    long others = 0;
    char why[512];
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (!err)
        err = lease_store_count_other_hosts(c, dl, ls->me->host_id, &others);
    if (err)
        orch_error("cannot read the hosts table: %s: %s", orch_strerror(err),
                   c ? orch_db_last_error(c) : "");
    orch_db_release(c);
    if (err)
        return NULL;
    const char *url = lease_advertise_url(listen, advertise, others, why, sizeof why);
    if (!url)
        orch_error("configuration: %s; refusing to start", why);
    else if (lease_url_is_local(url))
        orch_warn("registering %s, which other hosts cannot dial: set ORCH_LEASE_ADVERTISE_URL "
                  "before adding a host",
                  url);
    return url;
}

static void refuse_duplicate(const lease_svc *ls, const lease_host_reg *reg, const char *why)
{
    orch_error("host id %s is registered by a live lease-service of another boot: boot %s, "
               "instance %s, at %s, seen %lld ms ago (%s); this one has boot %s. Two machines "
               "share ORCH_HOST_ID: give each its own. Refusing to start; the registration is "
               "left as it is",
               ls->me->host_id, reg->boot_id, reg->instance_id, reg->rpc_url,
               (long long)reg->age_ms, why, ls->me->boot_id);
}

/* Reads this machine's id (first line of ls->machine_id_path) and PID
 * namespace into ls; false (logged) if ORCH_MACHINE_ID_PATH names another
 * file than /etc/machine-id that is unreadable or empty, or the namespace
 * is unreadable. Without /etc/machine-id it registers with no machine id
 * (a warning). */
static bool read_self(lease_svc *ls)
{
    const char *path =
        ls->machine_id_path && ls->machine_id_path[0] ? ls->machine_id_path : "/etc/machine-id";
    FILE *f = fopen(path, "re");
    bool ok = f && fgets(ls->machine_id, sizeof ls->machine_id, f);
    int e = f ? 0 : errno;
    if (f)
        fclose(f);
    ls->machine_id[ok ? strcspn(ls->machine_id, " \t\r\n") : 0] = '\0';
    bool explicit_path = strcmp(path, "/etc/machine-id") != 0;
    if (!ls->machine_id[0] && !explicit_path) {
        /* No machine id where systemd keeps it (a bare container image):
         * the registration carries none and the boot-id and staleness
         * rules alone apply, as for a row written before migration 0010. */
        orch_warn("no machine id in %s (%s): registering without one, so another machine "
                  "with this ORCH_HOST_ID is told apart only by its boot id and heartbeat; "
                  "create one (systemd-machine-id-setup) or set ORCH_MACHINE_ID_PATH",
                  path, e ? strerror(e) : "empty");
    } else if (!ls->machine_id[0]) {
        orch_error("configuration: cannot read a machine id from %s (%s): lease-service needs a "
                   "stable id unique to this machine to tell a reboot from another machine with "
                   "the same ORCH_HOST_ID. Create it (systemd-machine-id-setup), mount the "
                   "host's /etc/machine-id into the container, or set ORCH_MACHINE_ID_PATH. "
                   "Refusing to start",
                   path, e ? strerror(e) : "empty");
        return false;
    }
    ssize_t n = readlink("/proc/self/ns/pid", ls->pid_ns, sizeof ls->pid_ns - 1);
    if (n <= 0) {
        orch_error("cannot read /proc/self/ns/pid (%s): the PID namespace is part of this "
                   "host's identity. Refusing to start",
                   strerror(errno));
        return false;
    }
    ls->pid_ns[n] = '\0';
    return true;
}

static void refuse_foreign(const lease_svc *ls, const lease_host_reg *reg, const char *why)
{
    orch_error("host id %s is %s: machine %s, %s, boot %s, instance %s, at %s, seen %lld ms "
               "ago, %s; this one is machine %s, %s, boot %s. Refusing to start, whether that "
               "registration is live, stopped or stale: its stage-service and agents may still "
               "run. Give this machine its own ORCH_HOST_ID; only if that machine was really "
               "replaced, run: UPDATE hosts SET machine_id = NULL WHERE host_id = '%s' AND "
               "machine_id = '%s'; (see the runbook, \"Several hosts\")",
               ls->me->host_id, why, reg->machine_id, reg->pid_ns, reg->boot_id, reg->instance_id,
               reg->rpc_url, (long long)reg->age_ms, reg->stopped ? "stopped" : "not stopped",
               ls->machine_id, ls->pid_ns, ls->me->boot_id, ls->me->host_id, reg->machine_id);
}

/* One round: reads the row, decides, registers on TAKE. */
static orch_err register_round(lease_svc *ls, const char *url, int64_t *first_seen_us,
                               lease_host_verdict *v, lease_host_reg *reg, const char **why)
{
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    bool done = false;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (!err)
        err = lease_store_read_host(c, dl, ls->me->host_id, reg);
    if (!err) {
        lease_host_self me = { ls->me->boot_id, ls->machine_id, ls->pid_ns };
        *v = lease_host_decide(reg, &me, ls->host_stale_ms, *first_seen_us, why);
        if (*v == LEASE_HOST_TAKE)
            err = lease_store_register_host(c, dl, ls->me->host_id, &me, ls->me->instance_id, url,
                                            reg, &done);
        if (!err && *v == LEASE_HOST_TAKE && !done)
            *v = LEASE_HOST_WAIT; /* the row changed in between: decide again */
        else if (*v == LEASE_HOST_WAIT && *first_seen_us < 0)
            *first_seen_us = reg->seen_us;
    }
    if (err)
        orch_error("cannot register host %s: %s: %s", ls->me->host_id, orch_strerror(err),
                   c ? orch_db_last_error(c) : "");
    orch_db_release(c);
    return err;
}

orch_err lease_host_register(lease_svc *ls, const char *listen, const char *advertise)
{
    if (!read_self(ls))
        return ORCH_EINVAL;
    const char *url = choose_url(ls, listen, advertise);
    if (!url)
        return ORCH_EINVAL;
    int64_t first_seen_us = -1;
    uint64_t until = orch_mono_ms() + (uint64_t)(ls->host_stale_ms + 2 * beat_period_ms(ls)) + 1000;
    uint64_t step = (uint64_t)beat_period_ms(ls) / 4 + 1;
    lease_host_reg reg;
    const char *why = "";
    for (int round = 0; round < 100000; round++) { /* bounded by `until` */
        lease_host_verdict v = LEASE_HOST_WAIT;
        orch_err err = register_round(ls, url, &first_seen_us, &v, &reg, &why);
        if (err)
            return err;
        if (v == LEASE_HOST_TAKE) {
            orch_info("registered host %s (machine %s, %s, boot %s) at %s: %s", ls->me->host_id,
                      ls->machine_id, ls->pid_ns, ls->me->boot_id, url, why);
            return ORCH_OK;
        }
        if (v == LEASE_HOST_FOREIGN) {
            refuse_foreign(ls, &reg, why);
            return ORCH_EEXISTS;
        }
        if (v == LEASE_HOST_REFUSE)
            break;
        if (round == 0)
            orch_warn("host id %s is registered by boot %s (instance %s at %s, seen %lld ms "
                      "ago): waiting up to %lld ms for it to go stale (a reboot) or be refreshed "
                      "(a live duplicate)",
                      ls->me->host_id, reg.boot_id, reg.instance_id, reg.rpc_url,
                      (long long)reg.age_ms, (long long)ls->host_stale_ms);
        if (orch_mono_ms() >= until) {
            why = "it neither went stale nor was refreshed in time";
            break;
        }
        sleep_ms(step);
    }
    refuse_duplicate(ls, &reg, why);
    return ORCH_EEXISTS;
}

/* One heartbeat; false once the registration belongs to another boot. */
static bool beat_once(lease_svc *ls, bool *failing)
{
    uint64_t dl = orch_mono_ms() + (uint64_t)beat_period_ms(ls);
    orch_db_conn *c = NULL;
    bool mine = true;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (!err)
        err = lease_store_host_beat(c, dl, ls->me->host_id, ls->me->boot_id, &mine);
    if (err && !*failing)
        orch_warn("host heartbeat failed: %s: %s", orch_strerror(err),
                  c ? orch_db_last_error(c) : "");
    else if (!err && *failing)
        orch_info("host heartbeat succeeds again");
    *failing = err != ORCH_OK;
    orch_db_release(c);
    return err || mine;
}

/* One heartbeat; once the registration belongs to another boot, alerts,
 * asks this process to stop and ends the ticker. */
static bool beat_tick(void *arg)
{
    struct lease_host_beat *b = arg;
    lease_svc *ls = b->ls;
    if (beat_once(ls, &b->failing))
        return true;
    orch_alert("lease.host-taken-over", "-",
               "host id %s is now registered by another boot; this lease-service (boot "
               "%s, instance %s) stops: two machines share ORCH_HOST_ID, or this one was "
               "frozen past ORCH_LEASE_HOST_STALE_MS",
               ls->me->host_id, ls->me->boot_id, ls->me->instance_id);
    kill(getpid(), SIGTERM);
    return false;
}

orch_err lease_host_beat_start(lease_svc *ls)
{
    struct lease_host_beat *b = calloc(1, sizeof *b);
    if (!b)
        return ORCH_ENOMEM;
    b->ls = ls;
    orch_err err =
        orch_ticker_start("lease-beat", (uint32_t)beat_period_ms(ls), 0, beat_tick, b, &b->ticker);
    if (err) {
        free(b);
        return err;
    }
    ls->host_beat = b;
    return ORCH_OK;
}

void lease_host_stop(lease_svc *ls)
{
    struct lease_host_beat *b = ls->host_beat;
    if (!b)
        return;
    orch_ticker_stop(b->ticker);
    free(b);
    ls->host_beat = NULL;

    uint64_t dl = orch_mono_ms() + 3000;
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (!err)
        err = lease_store_host_stopped(c, dl, ls->me->host_id, ls->me->instance_id);
    if (err)
        orch_warn("could not mark host %s as stopped: %s (the next boot waits for it to go "
                  "stale)",
                  ls->me->host_id, orch_strerror(err));
    orch_db_release(c);
}
