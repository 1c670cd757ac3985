/*
 * lease_config.h - the configuration table of lease-service.
 */
#ifndef ORCH_LEASE_CONFIG_H
#define ORCH_LEASE_CONFIG_H

#include "orch/config.h"

/* NULL-name-terminated; read together with orch_config_common. */
extern const orch_config_var lease_config[];
/* lease-service's address, the lease's scope and its ceiling: read by
 * lease-service and by every service that calls it or reaps for it, so the
 * defaults cannot drift apart. */
extern const orch_config_var lease_client_config[];

#endif
