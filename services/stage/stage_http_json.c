/*
 * stage_http_json.c - see stage_http_json.h.
 */
#include "stage_http_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void stage_reply_json(orch_http_reply *rep, int status, json_t *o)
{
    rep->status = status;
    rep->content_type = "application/json";
    rep->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    rep->len = rep->body ? strlen(rep->body) : 0;
    json_decref(o);
}

void stage_reply_error(orch_http_reply *rep, int status, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    stage_reply_json(rep, status, json_pack("{s:s}", "error", msg));
}
