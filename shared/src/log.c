/*
 * log.c - JSON-lines logger on stderr (jansson encodes every line).
 *
 * Threading: the level and service name are set once at start-up; the request
 * context is thread-local. Each line goes out in a single write(2).
 * Errors while logging are swallowed: logging never fails its caller.
 */
#include "orch/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = ORCH_LOG_INFO;
static const char *log_service = "orch";
static _Thread_local const char *tl_request_id;
static _Thread_local const char *tl_method;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void orch_log_init(const char *service, orch_log_level level)
{
    if (service)
        log_service = service;
    atomic_store(&log_level, (int)level);
}

orch_err orch_log_level_parse(const char *s, orch_log_level *out)
{
    static const char *const names[] = { "debug", "info", "warn", "error", "off" };
    for (int i = 0; i < 5; i++) {
        if (s && strcasecmp(s, names[i]) == 0) {
            *out = (orch_log_level)i;
            return ORCH_OK;
        }
    }
    return ORCH_EINVAL;
}

bool orch_log_enabled(orch_log_level level)
{
    return (int)level >= atomic_load_explicit(&log_level, memory_order_relaxed) &&
           level < ORCH_LOG_OFF;
}

void orch_log_set_request(const char *request_id, const char *method)
{
    tl_request_id = request_id;
    tl_method = method;
}

static void format_ts(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

void orch__log(orch_log_level level, const char *fmt, ...)
{
    char msg[2048];
    char ts[40];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    format_ts(ts, sizeof ts);

    json_t *o = json_object();
    if (!o)
        return;
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level_names[level]));
    json_object_set_new(o, "service", json_string(log_service));
    json_object_set_new(o, "pid", json_integer(getpid()));
    if (tl_request_id && tl_request_id[0])
        json_object_set_new(o, "request_id", json_string(tl_request_id));
    if (tl_method && tl_method[0])
        json_object_set_new(o, "method", json_string(tl_method));
    /* Invalid UTF-8 in a message would make jansson drop the field. */
    json_t *m = json_string(msg);
    json_object_set_new(o, "msg", m ? m : json_string("<message is not valid UTF-8>"));

    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!line)
        return;
    size_t len = strlen(line);
    char *out = realloc(line, len + 2);
    if (!out) {
        free(line);
        return;
    }
    out[len] = '\n';
    out[len + 1] = '\0';
    ssize_t w = write(STDERR_FILENO, out, len + 1);
    (void)w;
    free(out);
}
