/*
 * alert_notify.h - delivers alerts to guard-service's Notify without
 * blocking the thread that raised them.
 *
 * orch_alert_notify_start() installs an alert sink (alert.h) that copies the
 * alert into a bounded queue and returns at once; one sender thread calls
 * orch.v1.GuardService/Notify for each, with a bounded number of attempts
 * (one request id per alert, so guard-service answers a re-sent one once).
 * A full queue drops the alert with a log line (the alert itself was
 * already logged by orch_alert()). svc.c starts it for every service but
 * guard-service when ORCH_ALERT_NOTIFY is true. Thread-safe.
 */
#ifndef ORCH_ALERT_NOTIFY_H
#define ORCH_ALERT_NOTIFY_H

#include <stdint.h>

#include "orch/err.h"

#define ORCH_ALERT_NOTIFY_QUEUE    64
#define ORCH_ALERT_NOTIFY_ATTEMPTS 3

/* `guard_url` and `auth_token` (may be NULL) are copied; `source` names the
 * raising service in the notification. */
orch_err orch_alert_notify_start(const char *guard_url, const char *auth_token,
                                 const char *source) ORCH_NODISCARD;
/* Uninstalls the sink, gives the queue up to `grace_ms` to drain, joins the
 * sender. Idempotent. */
void orch_alert_notify_stop(uint32_t grace_ms);

/* Counters for tests and metrics. */
uint64_t orch_alert_notify_sent(void);
uint64_t orch_alert_notify_dropped(void);

#endif
