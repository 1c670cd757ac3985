/*
 * alert.c - see alert.h.
 */
#include "orch/alert.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "orch/log.h"

static pthread_mutex_t sink_mu = PTHREAD_MUTEX_INITIALIZER;
static orch_alert_sink sink;
static void *sink_arg;

void orch_alert_set_sink(orch_alert_sink fn, void *arg)
{
    pthread_mutex_lock(&sink_mu);
    sink = fn;
    sink_arg = arg;
    pthread_mutex_unlock(&sink_mu);
}

void orch_alert(const char *kind, const char *work_item, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    orch_error("ALERT %s %s: %s", kind, work_item, text);
    pthread_mutex_lock(&sink_mu);
    orch_alert_sink fn = sink;
    void *arg = sink_arg;
    pthread_mutex_unlock(&sink_mu);
    if (fn)
        fn(kind, work_item, text, arg);
}
