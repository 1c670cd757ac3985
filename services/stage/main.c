/*
 * stage-service: the stage engine: transitions, gates, expected-stage CAS.
 * main() only wires the service definition into the common runtime.
 */
#include "orch/svc.h"

#include "stage_config.h"

static const orch_service_def stage_service = {
    .name = "stage-service",
    .rpc_url_var = "ORCH_STAGE_RPC_URL",
    .http_addr_var = "ORCH_STAGE_HTTP_ADDR",
    .config = stage_config,
};

int main(int argc, char **argv)
{
    return orch_service_main(&stage_service, argc, argv);
}
