/*
 * lease_config.c - environment variables read by lease-service only.
 * Keep .env.example in step: a unit test compares the two.
 */
#include "lease_config.h"

const orch_config_var lease_config[] = {
    { "ORCH_LEASE_RPC_URL", ORCH_CFG_STRING, "tcp://127.0.0.1:7701", 0, 0, NULL, false, false,
      "NNG address lease-service listens on and clients dial" },
    { "ORCH_LEASE_HTTP_ADDR", ORCH_CFG_STRING, "127.0.0.1:7711", 0, 0, NULL, false, false,
      "host:port of lease-service's /healthz and /metrics" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};
