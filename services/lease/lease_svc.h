/*
 * lease_svc.h - lease-service's state shared by its RPC handlers and its
 * reaper (internal to the service).
 *
 * Threading: read-only after lease_svc_start() except the peer-client cache
 * (mutex) and the gauges (atomics). Liveness judging may call another host's
 * lease-service; it never holds a database connection while doing so.
 */
#ifndef ORCH_LEASE_SVC_H
#define ORCH_LEASE_SVC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "lease_logic.h"
#include "lease_store.h"
#include "orch/lease_client.h"
#include "orch/rpc.h"
#include "orch/svc.h"
#include "orch/ticker.h"

#define LEASE_MAX_PEERS 32

/* A client of another host's lease-service, shared by the threads probing
 * it. After a failed probe it is retired (closed when its last user lets go)
 * and the next probe dials afresh: a client dialled during a partition can
 * sit in TCP's connect backoff long after the network is back. */
typedef struct lease_peer_conn {
    orch_rpc_client *client;
    int refs;
    bool retired;
    uint64_t opened_ms;
} lease_peer_conn;

typedef struct lease_peer {
    char url[256];
    lease_peer_conn *conn; /* NULL: dial on next use */
} lease_peer;

typedef struct lease_svc {
    orch_db_pool *db;
    const orch_ident *me;
    orch_lease_scope scope;
    int64_t ceiling_s;
    int64_t reaper_interval_ms;
    uint32_t probe_timeout_ms;
    int64_t recovery_wait_ms;    /* bound on waiting for the launcher's requeue */
    int64_t host_stale_ms;       /* ORCH_LEASE_HOST_STALE_MS (lease_host.h) */
    const char *machine_id_path; /* ORCH_MACHINE_ID_PATH (lease_host.h) */
    char machine_id[64];         /* read by lease_host_register() */
    char pid_ns[64];             /* readlink of /proc/self/ns/pid */
    struct lease_host_beat *host_beat;
    struct lease_batch *batch; /* group commit; NULL: ORCH_LEASE_BATCH_MAX=1 */
    const char *auth_token;

    pthread_mutex_t peers_mu;
    lease_peer peers[LEASE_MAX_PEERS];
    int npeers;

    orch_counter *m_acquire; /* by outcome */
    orch_counter *m_release; /* by kind */
    orch_histogram *m_acquire_latency;
    _Atomic int64_t held;
    _Atomic int64_t oldest_age_s;

    orch_ticker *reaper; /* lease_reaper.c: periodic passes */
} lease_svc;

/* Acquire outcomes and release kinds, the indexes of the metrics' label
 * values (main.c). */
enum { ACQ_GRANTED, ACQ_RECLAIMED, ACQ_ALREADY_HELD, ACQ_HELD, ACQ_INERT, ACQ_NKINDS };
enum { REL_RELEASED, REL_FORCE, REL_STALE, REL_CEILING, REL_NKINDS };

/* Judges `owner`: on this host from /proc, on another by asking it
 * (lease_liveness.c). */
lease_liveness lease_svc_judge(lease_svc *ls, const lease_owner *owner, uint64_t deadline,
                               const char **reason);

/* Reads /proc for `pid`: only ENOENT means absent; any other failure
 * (EMFILE, EACCES, ENOMEM, a stat line that cannot be parsed) is no fact
 * (logged). */
lease_proc_read lease_svc_read_proc(int32_t pid, uint64_t *ticks);

/* Closes the clients of other hosts' lease-services (at stop, when nothing
 * probes any more). */
void lease_peers_close(lease_svc *ls);

/* Registers the RPC service; called from the start hook. */
orch_err lease_rpc_register(orch_service *svc, lease_svc *ls) ORCH_NODISCARD;

/* Reclaims the leases of this host's previous boots and dead processes
 * (after lease_host_register()), starts the reaper. */
orch_err lease_reaper_start(lease_svc *ls) ORCH_NODISCARD;
void lease_reaper_stop(lease_svc *ls);

/* One reaper pass (ceiling, then dead owners); exposed for the start-up
 * recovery, which is a pass restricted to this host. */
void lease_reaper_pass(lease_svc *ls, const char *only_host);

#endif
