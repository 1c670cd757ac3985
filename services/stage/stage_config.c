/*
 * stage_config.c - environment variables read by stage-service only.
 * Keep .env.example in step: a unit test compares the two.
 */
#include "stage_config.h"

const orch_config_var stage_config[] = {
    { "ORCH_STAGE_RPC_URL", ORCH_CFG_STRING, "tcp://127.0.0.1:7702", 0, 0, NULL, false, false,
      "NNG address stage-service listens on and clients dial" },
    { "ORCH_STAGE_HTTP_ADDR", ORCH_CFG_STRING, "127.0.0.1:7712", 0, 0, NULL, false, false,
      "host:port of stage-service's /healthz and /metrics" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};
