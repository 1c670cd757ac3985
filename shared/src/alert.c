/*
 * alert.c - see alert.h.
 */
#include "orch/alert.h"

#include <stdarg.h>
#include <stdio.h>

#include "orch/log.h"

static orch_alert_sink sink;
static void *sink_arg;

void orch_alert_set_sink(orch_alert_sink fn, void *arg)
{
    sink = fn;
    sink_arg = arg;
}

void orch_alert(const char *kind, const char *work_item, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    orch_error("ALERT %s %s: %s", kind, work_item, text);
    if (sink)
        sink(kind, work_item, text, sink_arg);
}
