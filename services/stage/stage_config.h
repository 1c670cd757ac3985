/*
 * stage_config.h - the configuration table of stage-service.
 */
#ifndef ORCH_STAGE_CONFIG_H
#define ORCH_STAGE_CONFIG_H

#include "orch/config.h"

/* NULL-name-terminated; read together with orch_config_common. */
extern const orch_config_var stage_config[];
/* stage-service's address, read by it and by every service that calls it. */
extern const orch_config_var stage_client_config[];

#endif
