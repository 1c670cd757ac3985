/*
 * lease_logic.c - see lease_logic.h. Pure functions.
 */
#include "lease_logic.h"

#include <stdio.h>
#include <string.h>

bool lease_valid_text(const char *name, const char *value, char *why, size_t n)
{
    size_t len = value ? strlen(value) : 0;
    if (len == 0) {
        snprintf(why, n, "%s is empty", name);
        return false;
    }
    if (len > LEASE_MAX_FIELD) {
        snprintf(why, n, "%s is %zu bytes, more than %d", name, len, LEASE_MAX_FIELD);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f) {
            snprintf(why, n, "%s contains a control character", name);
            return false;
        }
    }
    return true;
}

bool lease_valid_owner(const lease_owner *o, char *why, size_t n)
{
    if (!lease_valid_text("owner.host_id", o->host_id, why, n) ||
        !lease_valid_text("owner.boot_id", o->boot_id, why, n) ||
        !lease_valid_text("owner.instance_id", o->instance_id, why, n))
        return false;
    if (o->pid <= 0) {
        snprintf(why, n, "owner.pid must be positive, got %d", (int)o->pid);
        return false;
    }
    if (o->start_ticks == 0 || o->start_ticks > INT64_MAX) {
        snprintf(why, n, "owner.start_ticks must be in [1, %lld]", (long long)INT64_MAX);
        return false;
    }
    return true;
}

bool lease_same_owner(const lease_owner *a, const lease_owner *b)
{
    return a->pid == b->pid && a->start_ticks == b->start_ticks &&
           strcmp(a->host_id, b->host_id) == 0 && strcmp(a->boot_id, b->boot_id) == 0 &&
           strcmp(a->instance_id, b->instance_id) == 0;
}

lease_liveness lease_judge_remote(const lease_owner *owner, const lease_host_facts *host,
                                  const char **reason)
{
    if (!host->registered) {
        *reason = "owner's host never registered a lease-service";
        return LEASE_UNKNOWN;
    }
    if (strcmp(host->boot_id, owner->boot_id) != 0) {
        *reason = "owner's host rebooted since the grant";
        return LEASE_DEAD;
    }
    *reason = "ask the owner's host";
    return LEASE_ALIVE;
}

/* The /proc part of a judgement, shared by the local judge and ProbeOwner. */
static lease_liveness judge_proc(lease_proc_read proc, uint64_t proc_start_ticks,
                                 uint64_t owner_start_ticks, const char **reason)
{
    switch (proc) {
    case LEASE_PROC_FOUND: break;
    case LEASE_PROC_ABSENT: *reason = "no process with the owner's pid"; return LEASE_DEAD;
    case LEASE_PROC_UNREADABLE:
    default: *reason = "the owner's /proc entry could not be read"; return LEASE_UNKNOWN;
    }
    if (proc_start_ticks != owner_start_ticks) {
        *reason = "the owner's pid now belongs to another process";
        return LEASE_DEAD;
    }
    *reason = "owner process is running";
    return LEASE_ALIVE;
}

lease_liveness lease_judge_local(const lease_owner *owner, const char *my_boot_id,
                                 lease_proc_read proc, uint64_t proc_start_ticks,
                                 const char **reason)
{
    if (strcmp(owner->boot_id, my_boot_id) != 0) {
        *reason = "owner's boot id is not this host's: the host rebooted";
        return LEASE_DEAD;
    }
    return judge_proc(proc, proc_start_ticks, owner->start_ticks, reason);
}

lease_liveness lease_judge_probe(const char *asked_boot_id, const char *my_boot_id,
                                 lease_proc_read proc, uint64_t proc_start_ticks,
                                 uint64_t asked_start_ticks, const char **reason)
{
    if (strcmp(asked_boot_id, my_boot_id) != 0) {
        *reason = "the boot id asked is not this host's: no verdict";
        return LEASE_UNKNOWN;
    }
    return judge_proc(proc, proc_start_ticks, asked_start_ticks, reason);
}

lease_liveness lease_judge_probe_reply(const lease_owner *owner, const char *reply_host_id,
                                       const char *reply_boot_id, lease_liveness answer,
                                       const char **reason)
{
    if (!reply_host_id || strcmp(reply_host_id, owner->host_id) != 0) {
        *reason = "the probe reached another host than the owner's";
        return LEASE_UNKNOWN;
    }
    if (!reply_boot_id || strcmp(reply_boot_id, owner->boot_id) != 0) {
        *reason = "the owner's host answered from another boot";
        return LEASE_UNKNOWN;
    }
    switch (answer) {
    case LEASE_ALIVE: *reason = "owner's host says it is running"; return LEASE_ALIVE;
    case LEASE_DEAD: *reason = "owner's host says it is gone"; return LEASE_DEAD;
    case LEASE_UNKNOWN:
    default: *reason = "owner's host gave no verdict"; return LEASE_UNKNOWN;
    }
}

/* A registration of this machine that may still be live: taken over once
 * it stopped cleanly or went stale, refused when it is seen refreshed
 * while the new instance waits. */
static lease_host_verdict decide_by_age(const lease_host_reg *reg, int64_t stale_ms,
                                        int64_t first_seen_us, const char *what,
                                        const char **reason)
{
    if (reg->stopped) {
        *reason = "the previous lease-service of this host id stopped cleanly";
        return LEASE_HOST_TAKE;
    }
    if (reg->age_ms > stale_ms) {
        *reason = what[0] == 'b' ? "the registration of another boot is stale: the host rebooted"
                                 : "the registration of another PID namespace is stale: it ended";
        return LEASE_HOST_TAKE;
    }
    if (first_seen_us >= 0 && reg->seen_us != first_seen_us) {
        *reason = what[0] == 'b' ? "a live lease-service of another boot holds this host id"
                                 : "a live lease-service of another PID namespace of this kernel"
                                   " holds this host id";
        return LEASE_HOST_REFUSE;
    }
    *reason = "the registration is fresh: waiting for it to go stale";
    return LEASE_HOST_WAIT;
}

/* The rule for a row that carries a machine id (lease_host_decide). */
static lease_host_verdict decide_by_machine(const lease_host_reg *reg, const lease_host_self *me,
                                            int64_t stale_ms, int64_t first_seen_us,
                                            const char **reason)
{
    if (strcmp(reg->machine_id, me->machine_id) != 0) {
        *reason = "registered by another machine (another machine id)";
        return LEASE_HOST_FOREIGN;
    }
    if (strcmp(reg->boot_id, me->boot_id) != 0) {
        *reason = "same machine id, another boot id: the machine rebooted";
        return LEASE_HOST_TAKE;
    }
    /* Same kernel, another PID namespace: a re-created container (its old
     * namespace ended) or a second live stack with this host id. */
    if (strcmp(reg->pid_ns, me->pid_ns) != 0)
        return decide_by_age(reg, stale_ms, first_seen_us, "namespace", reason);
    *reason = "same machine id, boot id and PID namespace: a restart";
    return LEASE_HOST_TAKE;
}

lease_host_verdict lease_host_decide(const lease_host_reg *reg, const lease_host_self *me,
                                     int64_t stale_ms, int64_t first_seen_us, const char **reason)
{
    if (!reg->exists) {
        *reason = "first registration of this host id";
        return LEASE_HOST_TAKE;
    }
    if (reg->machine_id[0])
        return decide_by_machine(reg, me, stale_ms, first_seen_us, reason);
    if (strcmp(reg->boot_id, me->boot_id) == 0) {
        *reason = "same boot id: a restart on this host";
        return LEASE_HOST_TAKE;
    }
    return decide_by_age(reg, stale_ms, first_seen_us, "boot", reason);
}

/* Copies the host part of an NNG tcp URL into out (brackets removed);
 * false if the URL is not tcp:// or has no port separator. */
static bool url_host(const char *url, char *out, size_t n)
{
    static const char *const schemes[] = { "tcp://", "tcp4://", "tcp6://" };
    const char *p = NULL;
    for (size_t i = 0; i < 3 && !p; i++)
        if (strncmp(url, schemes[i], strlen(schemes[i])) == 0)
            p = url + strlen(schemes[i]);
    if (!p)
        return false;
    const char *end;
    if (*p == '[') {
        p++;
        end = strchr(p, ']');
    } else {
        end = strrchr(p, ':');
    }
    if (!end || (size_t)(end - p) >= n)
        return false;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
    return true;
}

bool lease_url_is_wildcard(const char *url)
{
    char h[256];
    if (!url_host(url ? url : "", h, sizeof h))
        return true;
    return h[0] == '\0' || strcmp(h, "*") == 0 || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0;
}

bool lease_url_is_local(const char *url)
{
    char h[256];
    if (lease_url_is_wildcard(url) || !url_host(url, h, sizeof h))
        return true;
    return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0;
}

const char *lease_advertise_url(const char *listen, const char *advertise, long other_hosts,
                                char *why, size_t n)
{
    if (advertise && advertise[0]) {
        if (lease_url_is_wildcard(advertise)) {
            snprintf(why, n,
                     "ORCH_LEASE_ADVERTISE_URL %s is not an address another host can dial "
                     "(want tcp://HOST:PORT with a concrete host)",
                     advertise);
            return NULL;
        }
        return advertise;
    }
    if (other_hosts > 0 && lease_url_is_local(listen)) {
        snprintf(why, n,
                 "ORCH_LEASE_RPC_URL %s is a wildcard or loopback address and %ld other "
                 "host(s) are registered: their probes would reach themselves; set "
                 "ORCH_LEASE_ADVERTISE_URL to the address they can dial",
                 listen, other_hosts);
        return NULL;
    }
    return listen;
}

bool lease_ceiling_ok(int64_t ceiling_s, int64_t step_timeout_s)
{
    return ceiling_s > step_timeout_s;
}
