/*
 * stage_http.h - stage-service's HTTP routes (stage_http.c): the queue,
 * the operator's lease release and the Gitea and Plane webhooks.
 */
#ifndef ORCH_STAGE_HTTP_H
#define ORCH_STAGE_HTTP_H

#include "orch/svc.h"
#include "stage_svc.h"

/* Adds the routes to `svc`; `ss` is borrowed for the service's life. */
orch_err stage_http_register(orch_service *svc, stage_svc *ss) ORCH_NODISCARD;

#endif
