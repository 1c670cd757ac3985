/*
 * stage-service: the stage engine (transitions as data, gates, the
 * expected-stage CAS, fenced side effects at most once), its HTTP routes and
 * the reconciler. main() wires configuration, RPC, HTTP and the background
 * thread into the common runtime.
 */
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "lease_config.h"
#include "orch/guard.h"
#include "orch/httpc.h"
#include "orch/log.h"
#include "stage_config.h"
#include "stage_bg.h"
#include "stage_http.h"
#include "stage_ui.h"
#include "stage_rpc.h"
#include "stage_svc.h"

static const char *const effect_outcomes[] = { "ok", "failed", "unknown" };
static const char *const one_label[] = { "AdvanceStage" };

/* Bounds of orch_stage_advance_duration_seconds: the common ones below the
 * effect timeout (ORCH_EFFECT_TIMEOUT_MS), then the timeout itself, so that
 * an AdvanceStage that ran an effect to its budget lands in a bucket. */
static size_t advance_bounds(uint32_t effect_timeout_ms, double *out)
{
    static const double common[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                     5,     10,   20,    30,   60,  120,  300, 600, 1200 };
    double timeout_s = (double)effect_timeout_ms / 1000.0;
    size_t n = 0;
    for (size_t i = 0; i < sizeof common / sizeof common[0] && common[i] < timeout_s; i++)
        out[n++] = common[i];
    out[n++] = timeout_s;
    return n;
}

static orch_err register_metrics(stage_svc *ss, orch_metrics *m)
{
    double bounds[ORCH_METRICS_MAX_BUCKETS];
    size_t nbounds = advance_bounds(ss->effects.timeout_ms, bounds);
    static const char *effect_labels[STAGE_EFF_COUNT];
    size_t n;
    const stage_edge *edges = stage_pipeline_edges(&n);
    for (size_t i = 0; i < n && i + 1 < STAGE_EDGE_LABELS_MAX; i++) {
        stage_edge_transition(&edges[i], ss->edge_label_buf[i], sizeof ss->edge_label_buf[i]);
        ss->edge_labels[ss->nedge_labels++] = ss->edge_label_buf[i];
    }
    ss->edge_labels[ss->nedge_labels++] = "other";
    for (int e = 0; e < STAGE_EFF_COUNT; e++)
        effect_labels[e] = stage_effect_name((stage_effect_id)e);
    ss->m_transitions = orch_metrics_counter2(
        m, "orch_stage_transitions_total", "Transition attempts by edge and result", "edge",
        ss->edge_labels, ss->nedge_labels, "result", stage_result_names, STAGE_RESULT_COUNT);
    ss->m_effects = orch_metrics_counter2(
        m, "orch_stage_side_effects_total", "Side effects run, by effect and outcome", "effect",
        effect_labels, STAGE_EFF_COUNT, "outcome", effect_outcomes, 3);
    ss->m_advance_latency = orch_metrics_histogram_buckets(
        m, "orch_stage_advance_duration_seconds", "Time to answer AdvanceStage, effects included",
        "method", one_label, 1, bounds, nbounds);
    return ss->m_transitions && ss->m_effects && ss->m_advance_latency ? ORCH_OK : ORCH_ENOMEM;
}

/* A malformed effect URL is a configuration error: refused here, so that
 * it never becomes a failed effect (and never a rollback) later. Empty
 * stays allowed: the effect then fails as "not configured". */
static orch_err check_effect_urls(const orch_config *cfg)
{
    static const char *const vars[] = { "ORCH_GITEA_URL", "ORCH_IMAGE_HOOK_URL",
                                        "ORCH_DEPLOY_HOOK_URL" };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = orch_config_str(cfg, vars[i]);
        char why[300], shown[300];
        if (!v[0] || orch_httpc_check_base_url(v, why, sizeof why) == ORCH_OK)
            continue;
        orch_httpc_redact_url(v, shown, sizeof shown);
        orch_error("configuration: %s=%s is not a usable URL: %s (example: http://gitea:3000)",
                   vars[i], shown, why);
        return ORCH_EINVAL;
    }
    return ORCH_OK;
}

static orch_err stage_start(orch_service *svc)
{
    const orch_config *cfg = orch_service_config(svc);
    stage_svc *ss = calloc(1, sizeof *ss);
    if (!ss)
        return ORCH_ENOMEM;
    orch_service_set_state(svc, ss);
    ss->db = orch_service_db(svc);
    ss->me = orch_service_ident(svc);
    ss->scope.enabled = orch_config_bool(cfg, "ORCH_TRANSITION_LEASE_ENABLED");
    ss->scope.repos = orch_config_str(cfg, "ORCH_TRANSITION_LEASE_REPOS");
    ss->scope.own_repo = orch_config_str(cfg, "ORCH_ORCHESTRATOR_REPO");
    ss->lease_timeout_ms = (uint32_t)orch_config_int(cfg, "ORCH_STAGE_LEASE_TIMEOUT_MS");
    ss->max_evidence = (size_t)orch_config_int(cfg, "ORCH_STAGE_MAX_EVIDENCE_BYTES");
    ss->effects = (stage_effects_cfg){
        .gitea_url = orch_config_str(cfg, "ORCH_GITEA_URL"),
        .gitea_token = orch_config_str(cfg, "ORCH_GITEA_TOKEN"),
        .merge_style = orch_config_str(cfg, "ORCH_GITEA_MERGE_STYLE"),
        .image_hook_url = orch_config_str(cfg, "ORCH_IMAGE_HOOK_URL"),
        .deploy_hook_url = orch_config_str(cfg, "ORCH_DEPLOY_HOOK_URL"),
        .hook_token = orch_config_str(cfg, "ORCH_HOOK_TOKEN"),
        .timeout_ms = (uint32_t)orch_config_int(cfg, "ORCH_EFFECT_TIMEOUT_MS"),
    };
    ss->operator_token = orch_config_str(cfg, "ORCH_STAGE_OPERATOR_TOKEN");
    ss->gitea_secret = orch_config_str(cfg, "ORCH_GITEA_WEBHOOK_SECRET");
    ss->plane_secret = orch_config_str(cfg, "ORCH_PLANE_WEBHOOK_SECRET");
    ss->plane_project_key = orch_config_str(cfg, "ORCH_PLANE_PROJECT_KEY");
    ss->reconcile_interval_ms = orch_config_int(cfg, "ORCH_RECONCILER_INTERVAL_MS");
    ss->reconcile_batch = (int)orch_config_int(cfg, "ORCH_RECONCILER_BATCH");
    snprintf(ss->inbox_claimer, sizeof ss->inbox_claimer, "%s/%d/%s", ss->me->host_id,
             (int)ss->me->pid, ss->me->instance_id);
    if (check_effect_urls(cfg))
        return ORCH_EINVAL;
    char why[300];
    if (stage_fault_config_check(
            orch_config_str(cfg, "ORCH_STAGE_TEST_FAULT"), STAGE_FAULT_COMPILED_IN,
            orch_service_runtime(svc) == ORCH_RUNTIME_TEST, &ss->fault, why, sizeof why)) {
        orch_error("configuration: %s", why);
        return ORCH_EINVAL;
    }
    if (ss->fault != STAGE_FAULT_NONE)
        orch_warn("ORCH_STAGE_TEST_FAULT=%s: this process exits at a fault point",
                  orch_config_str(cfg, "ORCH_STAGE_TEST_FAULT"));
    if (!ss->scope.enabled)
        orch_warn("ORCH_TRANSITION_LEASE_ENABLED=false: stage writes are unconditional");

    orch_rpc_client_opts co = { .auth_token = orch_config_str(cfg, "ORCH_RPC_AUTH_TOKEN") };
    orch_err err =
        orch_rpc_client_open(orch_config_str(cfg, "ORCH_LEASE_RPC_URL"), &co, &ss->lease);
    if (!err)
        err = register_metrics(ss, orch_service_metrics(svc));
    if (!err)
        err = stage_rpc_register(svc, ss);
    if (!err)
        err = stage_http_register(svc, ss);
    if (!err)
        err = stage_ui_register(svc, ss);
    if (!err)
        err = stage_bg_start(ss);
    return err;
}

static void stage_stop(orch_service *svc)
{
    stage_svc *ss = orch_service_state(svc);
    if (!ss)
        return;
    stage_bg_stop(ss);
    orch_rpc_client_close(ss->lease);
    free(ss);
}

static const orch_config_var *const stage_extra_config[] = { stage_client_config,
                                                             lease_client_config, NULL };

static const orch_service_def stage_service = {
    .name = "stage-service",
    .rpc_url_var = "ORCH_STAGE_RPC_URL",
    .http_addr_var = "ORCH_STAGE_HTTP_ADDR",
    .config = stage_config,
    .extra_config = stage_extra_config,
    .start = stage_start,
    .stop = stage_stop,
};

int main(int argc, char **argv)
{
    return orch_service_main(&stage_service, argc, argv);
}
