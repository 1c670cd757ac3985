/*
 * launcher-service: the single transport that starts agent processes.
 * main() only wires the service definition into the common runtime.
 */
#include "orch/svc.h"

#include "launcher_config.h"

static const orch_service_def launcher_service = {
    .name = "launcher-service",
    .rpc_url_var = "ORCH_LAUNCHER_RPC_URL",
    .http_addr_var = "ORCH_LAUNCHER_HTTP_ADDR",
    .config = launcher_config,
};

int main(int argc, char **argv)
{
    return orch_service_main(&launcher_service, argc, argv);
}
