/*
 * launcher_config.c - environment variables read by launcher-service only.
 * Keep .env.example in step: a unit test compares the two. Keys shared with
 * another service (ORCH_LEASE_RPC_URL, ORCH_STAGE_RPC_URL,
 * ORCH_REAPER_MAX_RUNNING_S) carry the same default here as there.
 */
#include "launcher_config.h"

const orch_config_var launcher_config[] = {
    { "ORCH_LAUNCHER_RPC_URL", ORCH_CFG_STRING, "tcp://127.0.0.1:7704", 0, 0, NULL, false, false,
      "NNG address launcher-service listens on and clients dial" },
    { "ORCH_LAUNCHER_HTTP_ADDR", ORCH_CFG_STRING, "127.0.0.1:7714", 0, 0, NULL, false, false,
      "host:port of launcher-service's /healthz and /metrics" },
    { "ORCH_AGENT_COMMAND", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "argv template of the agent, words split on spaces; {role} {work_item} {job_id} {workdir} "
      "{stage} are replaced; empty: Spawn fails for roles without their own command" },
    { "ORCH_AGENT_COMMAND_ANALYST", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "agent argv template for the analyst role; empty: ORCH_AGENT_COMMAND" },
    { "ORCH_AGENT_COMMAND_ARCHITECT", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "agent argv template for the architect role; empty: ORCH_AGENT_COMMAND" },
    { "ORCH_AGENT_COMMAND_DEVELOPER", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "agent argv template for the developer role; empty: ORCH_AGENT_COMMAND" },
    { "ORCH_AGENT_COMMAND_REVIEWER", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "agent argv template for the reviewer role; empty: ORCH_AGENT_COMMAND" },
    { "ORCH_AGENT_COMMAND_TESTER", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "agent argv template for the tester role; empty: ORCH_AGENT_COMMAND" },
    { "ORCH_AGENT_COMMAND_DEPLOYER", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "agent argv template for the deployer role; empty: ORCH_AGENT_COMMAND" },
    { "ORCH_LAUNCHER_OUTPUT_DIR", ORCH_CFG_STRING, "/var/lib/orch/jobs", 0, 0, NULL, false, false,
      "folder of the per-job prompt, stdout and stderr files (created if missing)" },
    { "ORCH_LAUNCHER_OUTPUT_MAX_BYTES", ORCH_CFG_INT, "67108864", 4096, 17179869184LL, NULL, false,
      false, "largest stdout or stderr file of a job; a job writing more is killed and failed" },
    { "ORCH_LAUNCHER_PARSE_MAX_BYTES", ORCH_CFG_INT, "1048576", 1024, 67108864, NULL, false, false,
      "tail of stdout read for verdict lines and usage JSON, bytes" },
    { "ORCH_LAUNCHER_MAX_TIMEOUT_S", ORCH_CFG_INT, "86400", 1, 604800, NULL, false, false,
      "largest timeout a Spawn may ask for, seconds" },
    { "ORCH_LAUNCHER_MAX_JOBS", ORCH_CFG_INT, "8", 1, 1024, NULL, false, false,
      "agent processes run at once by one launcher; more jobs wait as queued" },
    { "ORCH_LAUNCHER_KILL_GRACE_MS", ORCH_CFG_INT, "5000", 0, 600000, NULL, false, false,
      "between SIGTERM and SIGKILL to a job's process group on timeout or cancel" },
    { "ORCH_LAUNCHER_POLL_MS", ORCH_CFG_INT, "100", 10, 10000, NULL, false, false,
      "how often the supervisor looks at its processes and the queue" },
    { "ORCH_LAUNCHER_RESTART_POLICY", ORCH_CFG_ENUM, "requeue", 0, 0, "requeue|fail", false, false,
      "at start, jobs left running by a previous instance of this host are requeued or failed" },
    { "ORCH_LAUNCHER_REAPER_INTERVAL_MS", ORCH_CFG_INT, "30000", 100, 3600000, NULL, false, false,
      "milliseconds between job reaper passes (Tier-2 dead process, Tier-3 ceiling)" },
    { "ORCH_LAUNCHER_MONITOR_RETRY_MS", ORCH_CFG_INT, "5000", 50, 3600000, NULL, false, false,
      "milliseconds before a deferred or failed AdvanceStage is asked again" },
    { "ORCH_LAUNCHER_RPC_TIMEOUT_MS", ORCH_CFG_INT, "5000", 50, 600000, NULL, false, false,
      "budget of one call from launcher-service to lease-service or stage-service" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};
