/*
 * log.h - structured logging: one JSON object per line on stderr.
 *
 * Each line carries ts, level, service, msg and, when the calling thread is
 * serving a request, request_id and method (set by the RPC server through
 * orch_log_set_request()). The thread's log context adds work_item, epoch,
 * target and caller as keys of their own (orch_log_ctx_set()), so that no
 * caller needs to repeat them inside msg. The level is tested before any
 * argument of a log macro is evaluated. Lines are written with one write(2)
 * each, so lines from different threads never interleave. Under systemd
 * (stderr is the stream named by $JOURNAL_STREAM) each line starts with the
 * sd-daemon(3) priority prefix: <3> error, <4> warn, <6> info, <7> debug.
 * Thread-safe.
 */
#ifndef ORCH_LOG_H
#define ORCH_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "orch/err.h"

typedef enum orch_log_level {
    ORCH_LOG_DEBUG = 0,
    ORCH_LOG_INFO = 1,
    ORCH_LOG_WARN = 2,
    ORCH_LOG_ERROR = 3,
    ORCH_LOG_OFF = 4,
} orch_log_level;

/* Sets the process-wide threshold and the "service" field, and looks once
 * whether stderr is the journal stream ($JOURNAL_STREAM "dev:ino" equal to
 * stderr's st_dev:st_ino). `service` is borrowed and must outlive all
 * logging (a string literal in practice). */
void orch_log_init(const char *service, orch_log_level level);
orch_err orch_log_level_parse(const char *s, orch_log_level *out) ORCH_NODISCARD;
bool orch_log_enabled(orch_log_level level);

/* Thread-local request context; both strings are borrowed until the next
 * call on this thread. Pass NULLs to clear. */
void orch_log_set_request(const char *request_id, const char *method);

/* The string fields of the thread's log context. */
typedef enum orch_log_field {
    ORCH_LOG_WORK_ITEM, /* "work_item": the work item acted on */
    ORCH_LOG_TARGET,    /* "target": the project or chat a guard decision is about */
    ORCH_LOG_CALLER,    /* "caller": who sent the request being served */
    ORCH_LOG_NFIELDS
} orch_log_field;

/* Sets one field of the calling thread's log context; `value` is copied
 * (truncated to 200 bytes). NULL or "" removes the field. */
void orch_log_ctx_set(orch_log_field field, const char *value);
/* Sets the "epoch" key (a lease epoch); 0 removes it. */
void orch_log_ctx_set_epoch(uint64_t epoch);
/* Removes every field of the calling thread's log context (the request
 * fields of orch_log_set_request() stay). */
void orch_log_ctx_clear(void);

/* Not for direct use: called by the macros below after the level test. */
void orch__log(orch_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ORCH_LOG(level, ...)               \
    do {                                   \
        if (orch_log_enabled(level))       \
            orch__log(level, __VA_ARGS__); \
    } while (0)
#define orch_debug(...) ORCH_LOG(ORCH_LOG_DEBUG, __VA_ARGS__)
#define orch_info(...)  ORCH_LOG(ORCH_LOG_INFO, __VA_ARGS__)
#define orch_warn(...)  ORCH_LOG(ORCH_LOG_WARN, __VA_ARGS__)
#define orch_error(...) ORCH_LOG(ORCH_LOG_ERROR, __VA_ARGS__)

#endif
