/*
 * lease-service: transition leases, single ownership of a work item's
 * side-effectful region. main() wires the configuration, the RPC handlers
 * (lease_rpc.c) and the reaper (lease_reaper.c) into the common runtime.
 */
#include <stdlib.h>

#include "lease_batch.h"
#include "lease_config.h"
#include "lease_host.h"
#include "lease_svc.h"
#include "orch/log.h"

/* Metric label values use underscores; the lease_events kinds written to
 * the database keep their spelling (force-released, ...). */
static const char *const acquire_outcomes[ACQ_NKINDS] = { "granted", "reclaimed", "already_held",
                                                          "held", "inert" };
static const char *const release_labels[REL_NKINDS] = { "released", "force_released",
                                                        "reclaimed_stale", "ceiling_released" };
static const char *const one_label[] = { "Acquire" };

static double gauge_held(void *arg)
{
    return (double)atomic_load(&((lease_svc *)arg)->held);
}

static double gauge_oldest(void *arg)
{
    return (double)atomic_load(&((lease_svc *)arg)->oldest_age_s);
}

static orch_err register_metrics(lease_svc *ls, orch_metrics *m)
{
    ls->m_acquire =
        orch_metrics_counter(m, "orch_lease_acquire_total", "Acquire answers by outcome", "outcome",
                             acquire_outcomes, ACQ_NKINDS);
    ls->m_release = orch_metrics_counter(m, "orch_lease_release_total", "Leases released, by kind",
                                         "kind", release_labels, REL_NKINDS);
    ls->m_acquire_latency = orch_metrics_histogram(
        m, "orch_lease_acquire_duration_seconds",
        "Time to answer Acquire, liveness probes included", "method", one_label, 1);
    orch_metrics_gauge_fn(m, "orch_lease_held", "Leases held at the last reaper pass", gauge_held,
                          ls);
    orch_metrics_gauge_fn(m, "orch_lease_oldest_held_seconds",
                          "Age of the oldest held lease at the last reaper pass", gauge_oldest, ls);
    return ls->m_acquire && ls->m_release && ls->m_acquire_latency ? ORCH_OK : ORCH_ENOMEM;
}

static orch_err lease_start(orch_service *svc)
{
    const orch_config *cfg = orch_service_config(svc);
    lease_svc *ls = calloc(1, sizeof *ls);
    if (!ls)
        return ORCH_ENOMEM;
    orch_service_set_state(svc, ls);
    ls->db = orch_service_db(svc);
    ls->me = orch_service_ident(svc);
    ls->scope.enabled = orch_config_bool(cfg, "ORCH_TRANSITION_LEASE_ENABLED");
    ls->scope.repos = orch_config_str(cfg, "ORCH_TRANSITION_LEASE_REPOS");
    ls->scope.own_repo = orch_config_str(cfg, "ORCH_ORCHESTRATOR_REPO");
    ls->ceiling_s = orch_config_int(cfg, "ORCH_REAPER_MAX_RUNNING_S");
    ls->reaper_interval_ms = orch_config_int(cfg, "ORCH_LEASE_REAPER_INTERVAL_MS");
    ls->probe_timeout_ms = (uint32_t)orch_config_int(cfg, "ORCH_LEASE_PROBE_TIMEOUT_MS");
    ls->auth_token = orch_config_str(cfg, "ORCH_RPC_AUTH_TOKEN");
    ls->recovery_wait_ms = orch_config_int(cfg, "ORCH_LEASE_RECOVERY_WAIT_MS");
    ls->host_stale_ms = orch_config_int(cfg, "ORCH_LEASE_HOST_STALE_MS");
    ls->machine_id_path = orch_config_str(cfg, "ORCH_MACHINE_ID_PATH");
    pthread_mutex_init(&ls->peers_mu, NULL);

    int64_t step = orch_config_int(cfg, "ORCH_STEP_TIMEOUT_S");
    if (!lease_ceiling_ok(ls->ceiling_s, step)) {
        orch_error("configuration: ORCH_REAPER_MAX_RUNNING_S (%lld s) must be larger than "
                   "ORCH_STEP_TIMEOUT_S (%lld s): a slow but live holder would be robbed",
                   (long long)ls->ceiling_s, (long long)step);
        return ORCH_EINVAL;
    }
    if (!ls->scope.enabled)
        orch_warn("ORCH_TRANSITION_LEASE_ENABLED=false: the lease is inert");
    int64_t batch_max = orch_config_int(cfg, "ORCH_LEASE_BATCH_MAX");
    orch_err err = batch_max > 1 ? lease_batch_new(ls->db, (int)batch_max, &ls->batch) : ORCH_OK;
    if (!err)
        err = register_metrics(ls, orch_service_metrics(svc));
    if (!err)
        err = lease_rpc_register(svc, ls);
    /* Registered (and beating) before recovery, which may wait for the
     * launcher longer than a registration stays fresh. */
    if (!err)
        err = lease_host_register(ls, orch_config_str(cfg, "ORCH_LEASE_RPC_URL"),
                                  orch_config_str(cfg, "ORCH_LEASE_ADVERTISE_URL"));
    if (!err)
        err = lease_host_beat_start(ls);
    if (!err)
        err = lease_reaper_start(ls);
    return err;
}

static void lease_stop(orch_service *svc)
{
    lease_svc *ls = orch_service_state(svc);
    if (!ls)
        return;
    lease_reaper_stop(ls);
    lease_host_stop(ls);
    lease_peers_close(ls);
    lease_batch_free(ls->batch);
    pthread_mutex_destroy(&ls->peers_mu);
    free(ls);
}

static const orch_config_var *const lease_extra_config[] = { lease_client_config, NULL };

static const orch_service_def lease_service = {
    .name = "lease-service",
    .rpc_url_var = "ORCH_LEASE_RPC_URL",
    .http_addr_var = "ORCH_LEASE_HTTP_ADDR",
    .config = lease_config,
    .extra_config = lease_extra_config,
    .start = lease_start,
    .stop = lease_stop,
};

int main(int argc, char **argv)
{
    return orch_service_main(&lease_service, argc, argv);
}
