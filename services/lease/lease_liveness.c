/*
 * lease_liveness.c - judging a lease owner's liveness: on this host from
 * /proc, on another host by asking its lease-service (ProbeOwner through
 * orch/lease_client.h), over a cache of clients of the other hosts.
 *
 * Threading: any thread; the peer cache is guarded by ls->peers_mu, never
 * held during a call. A database connection is held only to read the
 * owner's host registration, never while probing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease_svc.h"
#include "orch/clock.h"
#include "orch/ident.h"
#include "orch/lease_client.h"
#include "orch/log.h"

static lease_peer_conn *peer_acquire(lease_svc *ls, const char *url)
{
    lease_peer_conn *pc = NULL;
    pthread_mutex_lock(&ls->peers_mu);
    lease_peer *slot = NULL;
    for (int i = 0; i < ls->npeers && !slot; i++)
        if (strcmp(ls->peers[i].url, url) == 0)
            slot = &ls->peers[i];
    if (!slot && ls->npeers < LEASE_MAX_PEERS) {
        slot = &ls->peers[ls->npeers++];
        snprintf(slot->url, sizeof slot->url, "%s", url);
        slot->conn = NULL;
    }
    if (slot && !slot->conn) {
        lease_peer_conn *n = calloc(1, sizeof *n);
        orch_rpc_client_opts o = { .auth_token = ls->auth_token };
        if (n && orch_rpc_client_open(url, &o, &n->client) == ORCH_OK) {
            n->opened_ms = orch_mono_ms();
            slot->conn = n;
        } else {
            free(n);
        }
    }
    if (slot && slot->conn) {
        pc = slot->conn;
        pc->refs++;
    }
    pthread_mutex_unlock(&ls->peers_mu);
    return pc;
}

/* Lets go of `pc`; after a failed call a client older than a second is
 * retired, so that the next probe dials a fresh connection. */
static void peer_release(lease_svc *ls, lease_peer_conn *pc, bool failed)
{
    bool close_it = false;
    pthread_mutex_lock(&ls->peers_mu);
    if (failed && !pc->retired && orch_mono_ms() - pc->opened_ms >= 1000) {
        for (int i = 0; i < ls->npeers; i++)
            if (ls->peers[i].conn == pc)
                ls->peers[i].conn = NULL;
        pc->retired = true;
    }
    pc->refs--;
    close_it = pc->retired && pc->refs == 0;
    pthread_mutex_unlock(&ls->peers_mu);
    if (close_it) {
        orch_rpc_client_close(pc->client);
        free(pc);
    }
}

void lease_peers_close(lease_svc *ls)
{
    for (int i = 0; i < ls->npeers; i++) {
        if (ls->peers[i].conn) {
            orch_rpc_client_close(ls->peers[i].conn->client);
            free(ls->peers[i].conn);
            ls->peers[i].conn = NULL;
        }
    }
}

static lease_liveness probe_remote(lease_svc *ls, const lease_owner *owner, const char *url,
                                   uint64_t deadline, const char **reason)
{
    uint64_t left = orch_deadline_left_ms(deadline);
    lease_peer_conn *pc = left ? peer_acquire(ls, url) : NULL;
    if (!pc) {
        *reason = "owner's host could not be asked";
        return LEASE_UNKNOWN;
    }
    Orch__V1__Owner om = ORCH__V1__OWNER__INIT;
    om.host_id = (char *)owner->host_id;
    om.boot_id = (char *)owner->boot_id;
    om.pid = owner->pid;
    om.start_ticks = owner->start_ticks;
    orch_rpc_call_opts o = {
        .timeout_ms = (uint32_t)(left < ls->probe_timeout_ms ? left : ls->probe_timeout_ms)
    };
    orch_rpc_status st;
    orch_lease_probe_res r;
    orch_err err = orch_lease_probe_owner(pc->client, &o, &om, &st, &r);
    peer_release(ls, pc, err != ORCH_OK);
    if (err) {
        orch_warn("owner probe at %s failed: %s", url, st.message);
        *reason = "owner's host did not answer the probe";
        return LEASE_UNKNOWN;
    }
    /* The answer counts only if it comes from the owner's host and boot: an
     * address that reaches another host (a wildcard or loopback
     * registration, a duplicate host id) yields UNKNOWN, never DEAD. */
    lease_liveness said = r.answer == ORCH__V1__LIVENESS__LIVENESS_ALIVE  ? LEASE_ALIVE
                          : r.answer == ORCH__V1__LIVENESS__LIVENESS_DEAD ? LEASE_DEAD
                                                                          : LEASE_UNKNOWN;
    if (!r.from_owner_host)
        orch_warn("owner probe at %s was answered by host %s boot %s, not by the owner's host "
                  "%s boot %s: no verdict",
                  url, r.host_id, r.boot_id, owner->host_id, owner->boot_id);
    return lease_judge_probe_reply(owner, r.host_id, r.boot_id, said, reason);
}

lease_proc_read lease_svc_read_proc(int32_t pid, uint64_t *ticks)
{
    orch_err err = orch_proc_start_ticks(pid, ticks);
    if (err == ORCH_OK)
        return LEASE_PROC_FOUND;
    if (err == ORCH_ENOTFOUND)
        return LEASE_PROC_ABSENT;
    orch_warn("cannot read /proc for pid %d: %s: its owner's liveness is unknown", (int)pid,
              orch_strerror(err));
    return LEASE_PROC_UNREADABLE;
}

static lease_liveness judge_here(const lease_owner *owner, const char *boot_id, const char **reason)
{
    uint64_t ticks = 0;
    lease_proc_read proc = lease_svc_read_proc(owner->pid, &ticks);
    return lease_judge_local(owner, boot_id, proc, ticks, reason);
}

lease_liveness lease_svc_judge(lease_svc *ls, const lease_owner *owner, uint64_t deadline,
                               const char **reason)
{
    if (strcmp(owner->host_id, ls->me->host_id) == 0)
        return judge_here(owner, ls->me->boot_id, reason);
    lease_host_facts facts;
    char url[256];
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ls->db, deadline, &c);
    if (!err) {
        err = lease_store_get_host(c, deadline, owner->host_id, &facts, url, sizeof url);
        orch_db_release(c);
    }
    if (err) {
        *reason = "owner's host registration could not be read";
        return LEASE_UNKNOWN;
    }
    lease_liveness l = lease_judge_remote(owner, &facts, reason);
    return l == LEASE_ALIVE ? probe_remote(ls, owner, url, deadline, reason) : l;
}
