/*
 * lease_config.h - the configuration table of lease-service.
 */
#ifndef ORCH_LEASE_CONFIG_H
#define ORCH_LEASE_CONFIG_H

#include "orch/config.h"

/* NULL-name-terminated; read together with orch_config_common. */
extern const orch_config_var lease_config[];

#endif
