/*
 * alert.h - the one way a service raises an operator alert.
 *
 * Alerts are events an operator must see (a lease force-released or taken
 * from a dead owner, a ceiling release). By default an alert is a log line
 * at ERROR carrying "ALERT"; a process may install one sink that delivers
 * alerts elsewhere (guard-service's Notify). Thread-safe; never fails its
 * caller.
 */
#ifndef ORCH_ALERT_H
#define ORCH_ALERT_H

typedef void (*orch_alert_sink)(const char *kind, const char *work_item, const char *text,
                                void *arg);

/* Installs the delivery sink (NULL restores logging only). Call before any
 * thread raises alerts. The alert is always logged as well. */
void orch_alert_set_sink(orch_alert_sink fn, void *arg);

/* Raises an alert of `kind` (e.g. "lease.reclaimed-stale") about
 * `work_item` (may be ""), with a printf-style text. */
void orch_alert(const char *kind, const char *work_item, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
