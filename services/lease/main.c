/*
 * lease-service: transition leases: single ownership of a work item's side-effectful region.
 * main() only wires the service definition into the common runtime.
 */
#include "orch/svc.h"

#include "lease_config.h"

static const orch_service_def lease_service = {
    .name = "lease-service",
    .rpc_url_var = "ORCH_LEASE_RPC_URL",
    .http_addr_var = "ORCH_LEASE_HTTP_ADDR",
    .config = lease_config,
};

int main(int argc, char **argv)
{
    return orch_service_main(&lease_service, argc, argv);
}
