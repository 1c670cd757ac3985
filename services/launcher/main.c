/*
 * launcher-service: the single transport that starts agent processes.
 * main() wires the configuration, the metrics, the RPC handlers
 * (launcher_rpc.c), the start-up requeue and the background passes
 * (launcher_monitor.c) and the process supervisor (launcher_proc.c) into the
 * common runtime. Order at start: requeue (writes the recovery marker that
 * lease-service waits for), then the supervisor, then the background thread.
 */
#include <stdlib.h>
#include <string.h>

#include "launcher_config.h"
#include "lease_config.h"
#include "stage_config.h"
#include "launcher_svc.h"
#include "orch/log.h"

static const char *const role_vars[LAUNCHER_NROLES] = {
    "ORCH_AGENT_COMMAND_ANALYST",  "ORCH_AGENT_COMMAND_ARCHITECT", "ORCH_AGENT_COMMAND_DEVELOPER",
    "ORCH_AGENT_COMMAND_REVIEWER", "ORCH_AGENT_COMMAND_TESTER",    "ORCH_AGENT_COMMAND_DEPLOYER",
};
static const char *const directions[] = { "input", "output" };

/* Metric label values (underscores); the jobs.monitor_state and
 * finish_reason values written to the database keep their spelling
 * (launcher_monitor_kinds, launcher_reap_tiers). */
static const char *const monitor_labels[MON_NKINDS] = {
    "advanced", "deferred", "gate_failed", "rolled_back", "not_advanced", "error",
};
static const char *const reap_labels[REAP_NTIERS] = { "tier_2", "tier_3" };

/* orch_launcher_jobs{status}: status_counts is in the order of
 * launcher_job_statuses. */
static double gauge_jobs(void *arg, size_t status)
{
    return (double)atomic_load(&((launcher_svc *)arg)->status_counts[status]);
}

static orch_err register_metrics(launcher_svc *ls, orch_metrics *m)
{
    ls->m_runs =
        orch_metrics_counter(m, "orch_launcher_agent_runs_total", "Agent runs finished, by role",
                             "role", launcher_roles, LAUNCHER_NROLES);
    ls->m_cost = orch_metrics_counter(m, "orch_launcher_agent_cost_microusd_total",
                                      "Agent cost reported by the agents, micro-USD, by role",
                                      "role", launcher_roles, LAUNCHER_NROLES);
    ls->m_tokens = orch_metrics_counter2(
        m, "orch_launcher_agent_tokens_total", "Agent tokens reported by the agents", "role",
        launcher_roles, LAUNCHER_NROLES, "direction", directions, 2);
    ls->m_reaps = orch_metrics_counter(m, "orch_launcher_reaps_total", "Jobs reaped, by tier",
                                       "tier", reap_labels, REAP_NTIERS);
    ls->m_monitor = orch_metrics_counter(m, "orch_launcher_stage_reports_total",
                                         "Stage reports of finished jobs, by outcome", "outcome",
                                         monitor_labels, MON_NKINDS);
    orch_metrics_gauge_fn_labelled(m, "orch_launcher_jobs",
                                   "Jobs by status at the last reaper pass", "status",
                                   launcher_job_statuses, 6, gauge_jobs, ls);
    return ls->m_runs && ls->m_cost && ls->m_tokens && ls->m_reaps && ls->m_monitor ? ORCH_OK
                                                                                    : ORCH_ENOMEM;
}

static orch_err open_client(const char *url, const char *token, orch_rpc_client **out)
{
    *out = NULL;
    if (!url || !url[0])
        return ORCH_OK;
    orch_rpc_client_opts o = { .auth_token = token };
    orch_err err = orch_rpc_client_open(url, &o, out);
    if (err)
        orch_error("cannot use RPC address %s: %s", url, orch_strerror(err));
    return err;
}

static void read_config(launcher_svc *ls, const orch_config *cfg)
{
    const char *global = orch_config_str(cfg, "ORCH_AGENT_COMMAND");
    for (int i = 0; i < LAUNCHER_NROLES; i++) {
        const char *t = orch_config_str(cfg, role_vars[i]);
        ls->templates[i] = t[0] ? t : global;
    }
    ls->out_dir = orch_config_str(cfg, "ORCH_LAUNCHER_OUTPUT_DIR");
    ls->output_max = orch_config_int(cfg, "ORCH_LAUNCHER_OUTPUT_MAX_BYTES");
    ls->parse_max = orch_config_int(cfg, "ORCH_LAUNCHER_PARSE_MAX_BYTES");
    ls->max_timeout_s = orch_config_int(cfg, "ORCH_LAUNCHER_MAX_TIMEOUT_S");
    ls->ceiling_s = orch_config_int(cfg, "ORCH_REAPER_MAX_RUNNING_S");
    ls->kill_grace_ms = orch_config_int(cfg, "ORCH_LAUNCHER_KILL_GRACE_MS");
    ls->poll_ms = orch_config_int(cfg, "ORCH_LAUNCHER_POLL_MS");
    ls->reaper_interval_ms = orch_config_int(cfg, "ORCH_LAUNCHER_REAPER_INTERVAL_MS");
    ls->monitor_retry_ms = orch_config_int(cfg, "ORCH_LAUNCHER_MONITOR_RETRY_MS");
    ls->rpc_timeout_ms = (uint32_t)orch_config_int(cfg, "ORCH_LAUNCHER_RPC_TIMEOUT_MS");
    ls->fail_on_restart = strcmp(orch_config_str(cfg, "ORCH_LAUNCHER_RESTART_POLICY"), "fail") == 0;
    ls->lease_url = orch_config_str(cfg, "ORCH_LEASE_RPC_URL");
    ls->stage_url = orch_config_str(cfg, "ORCH_STAGE_RPC_URL");
    ls->nslots = (int)orch_config_int(cfg, "ORCH_LAUNCHER_MAX_JOBS");
}

static orch_err launcher_start(orch_service *svc)
{
    const orch_config *cfg = orch_service_config(svc);
    launcher_svc *ls = calloc(1, sizeof *ls);
    if (!ls)
        return ORCH_ENOMEM;
    orch_service_set_state(svc, ls);
    ls->db = orch_service_db(svc);
    ls->me = orch_service_ident(svc);
    read_config(ls, cfg);
    pthread_mutex_init(&ls->mu, NULL);
    ls->slots = calloc((size_t)ls->nslots, sizeof *ls->slots);
    if (!ls->slots)
        return ORCH_ENOMEM;
    const char *token = orch_config_str(cfg, "ORCH_RPC_AUTH_TOKEN");
    orch_err err = register_metrics(ls, orch_service_metrics(svc));
    if (!err)
        err = open_client(ls->lease_url, token, &ls->lease);
    if (!err)
        err = open_client(ls->stage_url, token, &ls->stage);
    if (!err)
        err = launcher_rpc_register(svc, ls);
    if (!err)
        err = launcher_requeue(ls);
    if (!err)
        err = launcher_proc_start(ls);
    if (!err)
        err = launcher_background_start(ls);
    return err;
}

static void launcher_stop(orch_service *svc)
{
    launcher_svc *ls = orch_service_state(svc);
    if (!ls)
        return;
    launcher_background_stop(ls);
    launcher_proc_stop(ls);
    orch_rpc_client_close(ls->lease);
    orch_rpc_client_close(ls->stage);
    pthread_mutex_destroy(&ls->mu);
    free(ls->slots);
    free(ls);
}

static const orch_config_var *const launcher_extra_config[] = { lease_client_config,
                                                                stage_client_config, NULL };

static const orch_service_def launcher_service = {
    .name = "launcher-service",
    .rpc_url_var = "ORCH_LAUNCHER_RPC_URL",
    .http_addr_var = "ORCH_LAUNCHER_HTTP_ADDR",
    .config = launcher_config,
    .extra_config = launcher_extra_config,
    .start = launcher_start,
    .stop = launcher_stop,
};

int main(int argc, char **argv)
{
    return orch_service_main(&launcher_service, argc, argv);
}
