/*
 * guard_config.h - the configuration table of guard-service.
 */
#ifndef ORCH_GUARD_CONFIG_H
#define ORCH_GUARD_CONFIG_H

#include "orch/config.h"

/* NULL-name-terminated; read together with orch_config_common. */
extern const orch_config_var guard_config[];

#endif
