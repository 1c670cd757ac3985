/*
 * launcher_config.c - environment variables read by launcher-service only.
 * Keep .env.example in step: a unit test compares the two.
 */
#include "launcher_config.h"

const orch_config_var launcher_config[] = {
    { "ORCH_LAUNCHER_RPC_URL", ORCH_CFG_STRING, "tcp://127.0.0.1:7704", 0, 0, NULL, false, false,
      "NNG address launcher-service listens on and clients dial" },
    { "ORCH_LAUNCHER_HTTP_ADDR", ORCH_CFG_STRING, "127.0.0.1:7714", 0, 0, NULL, false, false,
      "host:port of launcher-service's /healthz and /metrics" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};
