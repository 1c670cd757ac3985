/*
 * stage_http_json.h - the JSON replies of stage-service's HTTP routes
 * (stage_http.c, stage_ui.c).
 */
#ifndef ORCH_STAGE_HTTP_JSON_H
#define ORCH_STAGE_HTTP_JSON_H

#include <jansson.h>

#include "orch/http.h"

/* Sets `status` and `o` as a compact JSON body, taking the reference to
 * `o`; a NULL `o` (a failed json_pack) leaves an empty body. */
void stage_reply_json(orch_http_reply *rep, int status, json_t *o);

/* {"error": "<formatted message>"} with `status`; the message is cut at
 * 599 bytes. */
void stage_reply_error(orch_http_reply *rep, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
