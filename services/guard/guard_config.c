/*
 * guard_config.c - environment variables read by guard-service only.
 * Keep .env.example in step: a unit test compares the two.
 */
#include "guard_config.h"

const orch_config_var guard_config[] = {
    { "ORCH_GUARD_HTTP_ADDR", ORCH_CFG_STRING, "127.0.0.1:7713", 0, 0, NULL, false, false,
      "host:port of guard-service's /healthz and /metrics" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};
