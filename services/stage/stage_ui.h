/*
 * stage_ui.h - stage-service's read-only dashboard (stage_ui.c):
 *   GET /ui                        the page (services/stage/ui/dashboard.html,
 *                                  embedded at build time; no external assets)
 *   GET /ui/activity               recent lease events and guard decisions, and
 *                                  the pipeline table, as JSON
 *   GET /ui/item?work_item=ID      one item's history and side effects, as JSON
 * The page also reads GET /queue (stage_http.c). Nothing here writes.
 * docs/operations/dashboard.md says what it exposes and how to protect it.
 */
#ifndef ORCH_STAGE_UI_H
#define ORCH_STAGE_UI_H

#include "orch/svc.h"
#include "stage_svc.h"

/* Adds the routes to `svc`; `ss` is borrowed for the service's life. */
orch_err stage_ui_register(orch_service *svc, stage_svc *ss) ORCH_NODISCARD;

#endif
