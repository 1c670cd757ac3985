/*
 * stage_bg.h - stage-service's background threads (stage_bg.c): the
 * release retries, the reconciler and the webhook inbox.
 */
#ifndef ORCH_STAGE_BG_H
#define ORCH_STAGE_BG_H

#include "stage_svc.h"

/* Starts the three tickers; `ss` is borrowed until stage_bg_stop. */
orch_err stage_bg_start(stage_svc *ss) ORCH_NODISCARD;
/* One reconciler pass (the background thread runs it every interval). */
void stage_reconcile_pass(stage_svc *ss);
/* Stops and joins the tickers, then tries the owed releases once more;
 * a no-op when not started. */
void stage_bg_stop(stage_svc *ss);

#endif
