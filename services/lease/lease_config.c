/*
 * lease_config.c - environment variables of lease-service, and those its
 * callers read too (its address and the lease's scope), declared once.
 * Keep .env.example in step: a unit test compares the two.
 */
#include "lease_config.h"

const orch_config_var lease_client_config[] = {
    { "ORCH_LEASE_RPC_URL", ORCH_CFG_STRING, "tcp://127.0.0.1:7701", 0, 0, NULL, false, false,
      "NNG address lease-service listens on and clients dial" },
    { "ORCH_TRANSITION_LEASE_ENABLED", ORCH_CFG_BOOL, "true", 0, 0, NULL, false, false,
      "false makes the lease inert: Acquire grants without writing anything" },
    { "ORCH_TRANSITION_LEASE_REPOS", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "comma-separated repos the lease applies to; empty: only ORCH_ORCHESTRATOR_REPO" },
    { "ORCH_ORCHESTRATOR_REPO", ORCH_CFG_STRING, "orch", 0, 0, NULL, false, false,
      "name of the orchestrator's own repo, the lease's scope by default" },
    { "ORCH_REAPER_MAX_RUNNING_S", ORCH_CFG_INT, "3600", 1, 604800, NULL, false, false,
      "ceiling: a lease held longer is released whatever its owner's liveness" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};

const orch_config_var lease_config[] = {
    { "ORCH_LEASE_HTTP_ADDR", ORCH_CFG_STRING, "127.0.0.1:7711", 0, 0, NULL, false, false,
      "host:port of lease-service's /healthz and /metrics" },
    { "ORCH_STEP_TIMEOUT_S", ORCH_CFG_INT, "1800", 1, 604800, NULL, false, false,
      "longest step a lease holder may take; the ceiling must be larger" },
    { "ORCH_LEASE_REAPER_INTERVAL_MS", ORCH_CFG_INT, "30000", 100, 3600000, NULL, false, false,
      "milliseconds between reaper passes (ceiling and dead owners)" },
    { "ORCH_LEASE_PROBE_TIMEOUT_MS", ORCH_CFG_INT, "1000", 50, 60000, NULL, false, false,
      "budget of asking another host's lease-service whether an owner lives" },
    { "ORCH_LEASE_RECOVERY_WAIT_MS", ORCH_CFG_INT, "30000", 0, 3600000, NULL, false, false,
      "how long start-up recovery waits for this host's launcher to requeue its jobs" },
    { "ORCH_LEASE_ADVERTISE_URL", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "address other hosts' lease-services dial for probes; empty: ORCH_LEASE_RPC_URL" },
    { "ORCH_LEASE_HOST_STALE_MS", ORCH_CFG_INT, "15000", 500, 3600000, NULL, false, false,
      "a registration of another boot unrefreshed this long is a reboot, else a duplicate" },
    { "ORCH_LEASE_BATCH_MAX", ORCH_CFG_INT, "1", 1, 256, NULL, false, false,
      "most Acquires (and Releases) committed together in one statement; 1 (default): one each" },
    { "ORCH_MACHINE_ID_PATH", ORCH_CFG_STRING, "/etc/machine-id", 0, 0, NULL, false, false,
      "file naming this machine (stable across reboots); unreadable: refuse to start" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};
