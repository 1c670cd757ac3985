/*
 * guard-service: the only egress to the tracker and the notifier, behind the
 * write guard. main() wires the configuration, the metrics and the RPC
 * handlers (guard_rpc.c) into the common runtime.
 */
#include <stdlib.h>
#include <string.h>

#include "guard_config.h"
#include "guard_svc.h"
#include "orch/log.h"

static const char *const op_labels[ORCH_GUARD_OP_COUNT] = { "UpdateIssueState", "AddComment",
                                                            "SetIssueStateDirect", "Notify" };
static const char *const decision_labels[] = { "allow", "block" };
static const char *const upstream_labels[GUARD_NUPSTREAMS] = { "plane", "telegram" };

static orch_err register_metrics(guard_svc *g, orch_metrics *m)
{
    g->m_decisions = orch_metrics_counter2(
        m, "orch_guard_decisions_total", "Write guard decisions by operation and decision",
        "operation", op_labels, ORCH_GUARD_OP_COUNT, "decision", decision_labels, 2);
    g->m_upstream = orch_metrics_counter2(
        m, "orch_guard_upstream_calls_total", "Calls to Plane and Telegram by outcome", "upstream",
        upstream_labels, GUARD_NUPSTREAMS, "outcome", guard_outcome_names, GUARD_UP_NKINDS);
    g->m_comment_dups = orch_metrics_counter(m, "orch_guard_comment_duplicates_total",
                                             "AddComment requests answered from the record of "
                                             "an earlier post",
                                             NULL, NULL, 1);
    return g->m_decisions && g->m_upstream && g->m_comment_dups ? ORCH_OK : ORCH_ENOMEM;
}

static bool base_ok(const char *name, const char *url)
{
    if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
        return true;
    orch_error("configuration: %s must be an http:// or https:// URL", name);
    return false;
}

static orch_err guard_start(orch_service *svc)
{
    const orch_config *cfg = orch_service_config(svc);
    guard_svc *g = calloc(1, sizeof *g);
    if (!g)
        return ORCH_ENOMEM;
    orch_service_set_state(svc, g);
    g->db = orch_service_db(svc);
    g->runtime = (orch_runtime)orch_service_runtime(svc);
    g->plane_base = orch_config_str(cfg, "ORCH_PLANE_BASE_URL");
    g->plane_key = orch_config_str(cfg, "ORCH_PLANE_API_KEY");
    g->plane_ws = orch_config_str(cfg, "ORCH_PLANE_WORKSPACE_SLUG");
    g->plane_prod = orch_config_str(cfg, "ORCH_PLANE_PROJECT_ID");
    g->plane_sandbox = orch_config_str(cfg, "ORCH_PLANE_TEST_SANDBOX_PROJECTS");
    g->plane_opt_in = orch_config_bool(cfg, "ORCH_PLANE_TEST_WRITE_ENABLED");
    g->plane_timeout_ms = (uint32_t)orch_config_int(cfg, "ORCH_PLANE_TIMEOUT_MS");
    g->comment_max = (size_t)orch_config_int(cfg, "ORCH_GUARD_COMMENT_MAX_BYTES");
    g->tg_base = orch_config_str(cfg, "ORCH_TELEGRAM_BASE_URL");
    g->tg_token = orch_config_str(cfg, "ORCH_TELEGRAM_BOT_TOKEN");
    g->tg_chat = orch_config_str(cfg, "ORCH_TELEGRAM_CHAT_ID");
    g->tg_test_chat = orch_config_str(cfg, "ORCH_TELEGRAM_TEST_CHAT_ID");
    g->tg_sandbox = orch_config_str(cfg, "ORCH_TELEGRAM_TEST_SANDBOX_CHATS");
    g->tg_opt_in = orch_config_bool(cfg, "ORCH_TELEGRAM_TEST_SEND_ENABLED");
    g->tg_timeout_ms = (uint32_t)orch_config_int(cfg, "ORCH_TELEGRAM_TIMEOUT_MS");
    g->tg_attempts = (int)orch_config_int(cfg, "ORCH_TELEGRAM_MAX_ATTEMPTS");
    g->tg_max_retry_after_s = orch_config_int(cfg, "ORCH_TELEGRAM_MAX_RETRY_AFTER_S");

    if (!base_ok("ORCH_PLANE_BASE_URL", g->plane_base) ||
        !base_ok("ORCH_TELEGRAM_BASE_URL", g->tg_base))
        return ORCH_EINVAL;
    if (g->plane_ws[0] && !orch_guard_target_valid(g->plane_ws)) {
        orch_error("configuration: ORCH_PLANE_WORKSPACE_SLUG is not a valid slug");
        return ORCH_EINVAL;
    }
    if (g->runtime == ORCH_RUNTIME_TEST)
        orch_info("test runtime: tracker writes %s (sandbox: %s), notifications %s; "
                  "HTTP to loopback only",
                  g->plane_opt_in ? "opted in" : "denied", g->plane_sandbox,
                  g->tg_opt_in ? "opted in" : "denied");
    orch_err err = register_metrics(g, orch_service_metrics(svc));
    if (!err)
        err = guard_rpc_register(svc, g);
    return err;
}

static void guard_stop(orch_service *svc)
{
    free(orch_service_state(svc));
}

static const orch_service_def guard_service = {
    .name = "guard-service",
    .rpc_url_var = "ORCH_GUARD_RPC_URL",
    .http_addr_var = "ORCH_GUARD_HTTP_ADDR",
    .config = guard_config,
    .start = guard_start,
    .stop = guard_stop,
};

int main(int argc, char **argv)
{
    return orch_service_main(&guard_service, argc, argv);
}
