/*
 * lease_config.h - the configuration table of lease-service.
 */
#ifndef ORCH_LEASE_CONFIG_H
#define ORCH_LEASE_CONFIG_H

#include "orch/config.h"

/* NULL-name-terminated; read together with orch_config_common. */
extern const orch_config_var lease_config[];
/* lease-service's address and the lease's scope: read by lease-service and by
 * every service that calls it, so the defaults cannot drift apart. */
extern const orch_config_var lease_client_config[];

#endif
