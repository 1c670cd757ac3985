/*
 * guard-service: the only egress to the tracker and the notifier, behind the write guard.
 * main() only wires the service definition into the common runtime.
 */
#include "orch/svc.h"

#include "guard_config.h"

static const orch_service_def guard_service = {
    .name = "guard-service",
    .rpc_url_var = "ORCH_GUARD_RPC_URL",
    .http_addr_var = "ORCH_GUARD_HTTP_ADDR",
    .config = guard_config,
};

int main(int argc, char **argv)
{
    return orch_service_main(&guard_service, argc, argv);
}
