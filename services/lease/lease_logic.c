/*
 * lease_logic.c - see lease_logic.h. Pure functions.
 */
#include "lease_logic.h"

#include <stdio.h>
#include <string.h>

bool lease_in_scope(const lease_scope *scope, const char *repo)
{
    if (!scope->enabled)
        return false;
    const char *list = scope->repos && scope->repos[0] ? scope->repos : scope->own_repo;
    size_t len = strlen(repo);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > p && last[-1] == ' ')
            last--;
        if ((size_t)(last - p) == len && len > 0 && strncmp(p, repo, len) == 0)
            return true;
        p = end;
    }
    return false;
}

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

lease_liveness lease_judge_local(const lease_owner *owner, const char *my_boot_id, bool proc_found,
                                 uint64_t proc_start_ticks, const char **reason)
{
    if (strcmp(owner->boot_id, my_boot_id) != 0) {
        *reason = "owner's boot id is not this host's: the host rebooted";
        return LEASE_DEAD;
    }
    if (!proc_found) {
        *reason = "no process with the owner's pid";
        return LEASE_DEAD;
    }
    if (proc_start_ticks != owner->start_ticks) {
        *reason = "the owner's pid now belongs to another process";
        return LEASE_DEAD;
    }
    *reason = "owner process is running";
    return LEASE_ALIVE;
}

bool lease_ceiling_ok(int64_t ceiling_s, int64_t step_timeout_s)
{
    return ceiling_s > step_timeout_s;
}
