/*
 * log.c - JSON-lines logger on stderr (jansson encodes every line).
 *
 * Threading: the level, service name and journal detection are set once at
 * start-up; the request and log contexts are thread-local (copies, so that
 * a context outlives the message it came from). Each line goes out in a
 * single write(2), behind the journal priority prefix when stderr is the
 * journal's stream.
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
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = ORCH_LOG_INFO;
static const char *log_service = "orch";
static _Thread_local const char *tl_request_id;
static _Thread_local const char *tl_method;
static _Thread_local char tl_fields[ORCH_LOG_NFIELDS][201];
static _Thread_local uint64_t tl_epoch;
static atomic_bool log_journal;

static const char *const field_keys[ORCH_LOG_NFIELDS] = { "work_item", "target", "caller" };
/* sd-daemon(3) priorities by level: debug, info, warn, error. */
static const char *const journal_prefix[] = { "<7>", "<6>", "<4>", "<3>" };

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* Whether $JOURNAL_STREAM names the file stderr is open on. */
static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void orch_log_init(const char *service, orch_log_level level)
{
    if (service)
        log_service = service;
    atomic_store(&log_level, (int)level);
    atomic_store(&log_journal, stderr_is_journal());
}

void orch_log_ctx_set(orch_log_field field, const char *value)
{
    if ((int)field < 0 || field >= ORCH_LOG_NFIELDS)
        return;
    snprintf(tl_fields[field], sizeof tl_fields[field], "%s", value ? value : "");
}

void orch_log_ctx_set_epoch(uint64_t epoch)
{
    tl_epoch = epoch;
}

void orch_log_ctx_clear(void)
{
    for (int f = 0; f < ORCH_LOG_NFIELDS; f++)
        tl_fields[f][0] = '\0';
    tl_epoch = 0;
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
    for (int f = 0; f < ORCH_LOG_NFIELDS; f++) {
        json_t *v = tl_fields[f][0] ? json_string(tl_fields[f]) : NULL;
        if (v)
            json_object_set_new(o, field_keys[f], v);
    }
    if (tl_epoch)
        json_object_set_new(o, "epoch", json_integer((json_int_t)tl_epoch));
    /* Invalid UTF-8 in a message would make jansson drop the field. */
    json_t *m = json_string(msg);
    json_object_set_new(o, "msg", m ? m : json_string("<message is not valid UTF-8>"));

    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!line)
        return;
    const char *prefix =
        atomic_load_explicit(&log_journal, memory_order_relaxed) ? journal_prefix[level] : "";
    size_t plen = strlen(prefix), len = strlen(line);
    char *out = malloc(plen + len + 2);
    if (!out) {
        free(line);
        return;
    }
    memcpy(out, prefix, plen);
    memcpy(out + plen, line, len);
    out[plen + len] = '\n';
    free(line);
    ssize_t w = write(STDERR_FILENO, out, plen + len + 1);
    (void)w;
    free(out);
}
