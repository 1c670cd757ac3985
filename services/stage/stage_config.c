/*
 * stage_config.c - environment variables read by stage-service only.
 * Keep .env.example in step: a unit test compares the two.
 */
#include "stage_config.h"

const orch_config_var stage_client_config[] = {
    { "ORCH_STAGE_RPC_URL", ORCH_CFG_STRING, "tcp://127.0.0.1:7702", 0, 0, NULL, false, false,
      "NNG address stage-service listens on and clients dial" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};

const orch_config_var stage_config[] = {
    { "ORCH_STAGE_HTTP_ADDR", ORCH_CFG_STRING, "127.0.0.1:7712", 0, 0, NULL, false, false,
      "host:port of stage-service's HTTP: /healthz /metrics /queue, webhooks, lease release" },
    { "ORCH_STAGE_LEASE_TIMEOUT_MS", ORCH_CFG_INT, "5000", 100, 60000, NULL, false, false,
      "budget of each Acquire/Release call to lease-service" },
    { "ORCH_STAGE_MAX_EVIDENCE_BYTES", ORCH_CFG_INT, "65536", 1024, 1048576, NULL, false, false,
      "largest evidence text AdvanceStage accepts" },
    { "ORCH_GITEA_URL", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "Gitea base URL (http://host:3000) for merging pull requests; empty: merges fail;"
      " malformed: start-up is refused" },
    { "ORCH_GITEA_TOKEN", ORCH_CFG_STRING, "", 0, 0, NULL, false, true,
      "Gitea access token with write access to the repos (never logged)" },
    { "ORCH_GITEA_MERGE_STYLE", ORCH_CFG_ENUM, "merge", 0, 0, "merge|rebase|squash", false, false,
      "how pull requests are merged" },
    { "ORCH_IMAGE_HOOK_URL", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "URL POSTed to rebuild the image at testing->staging; empty: the effect fails" },
    { "ORCH_DEPLOY_HOOK_URL", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "URL POSTed to start the production deploy at staging->deploy; empty: the effect fails" },
    { "ORCH_HOOK_TOKEN", ORCH_CFG_STRING, "", 0, 0, NULL, false, true,
      "bearer token sent to the image and deploy hooks (never logged); empty: none" },
    { "ORCH_EFFECT_TIMEOUT_MS", ORCH_CFG_INT, "60000", 100, 1800000, NULL, false, false,
      "budget of one side-effect request (merge, hook); past it the outcome is unknown" },
    { "ORCH_STAGE_OPERATOR_TOKEN", ORCH_CFG_STRING, "", 0, 0, NULL, false, true,
      "token for POST /transition-lease/release (X-Orch-Token); empty: the route refuses all" },
    { "ORCH_GITEA_WEBHOOK_SECRET", ORCH_CFG_STRING, "", 0, 0, NULL, false, true,
      "secret of Gitea's webhook signature (X-Gitea-Signature); empty: the route refuses all" },
    { "ORCH_PLANE_WEBHOOK_SECRET", ORCH_CFG_STRING, "", 0, 0, NULL, false, true,
      "secret of Plane's webhook signature (X-Plane-Signature); empty: the route refuses all" },
    { "ORCH_PLANE_PROJECT_KEY", ORCH_CFG_STRING, "ORCH", 0, 0, NULL, false, false,
      "identifier of the Plane project whose issues are work items (ORCH-114)" },
    { "ORCH_RECONCILER_INTERVAL_MS", ORCH_CFG_INT, "60000", 0, 86400000, NULL, false, false,
      "milliseconds between reconciler passes; 0 turns the reconciler off" },
    { "ORCH_RECONCILER_BATCH", ORCH_CFG_INT, "50", 1, 1000, NULL, false, false,
      "most items one reconciler pass tries to advance" },
    { "ORCH_STAGE_TEST_FAULT", ORCH_CFG_ENUM, "none", 0, 0,
      "none|crash-after-effect|crash-before-record", false, false,
      "test builds (ORCH_FAULT_INJECTION) with ORCH_RUNTIME=test only, refused otherwise: "
      "exit at a fault point inside AdvanceStage" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};
