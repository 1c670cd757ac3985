/*
 * launcher_config.h - the configuration table of launcher-service.
 */
#ifndef ORCH_LAUNCHER_CONFIG_H
#define ORCH_LAUNCHER_CONFIG_H

#include "orch/config.h"

/* NULL-name-terminated; read together with orch_config_common. */
extern const orch_config_var launcher_config[];

#endif
