/*
 * httpc.h - the outbound HTTP client (libcurl), the one way a service talks
 * to an outside system (Gitea, deploy hooks, Plane, Telegram).
 *
 * One blocking call per request, for worker threads. In test runtime every
 * destination but loopback is refused, whatever the caller decided.
 */
#ifndef ORCH_HTTPC_H
#define ORCH_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"

typedef struct orch_httpc_req {
    const char *method; /* "GET", "POST", "PATCH" */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value", may be NULL */
    const char *body;           /* may be NULL */
    size_t body_len;
    uint32_t timeout_ms; /* whole request */
} orch_httpc_req;

typedef struct orch_httpc_resp {
    long status;
    char *body; /* NUL-terminated, malloc'ed */
    size_t body_len;
    int64_t retry_after_s; /* -1 if absent */
} orch_httpc_resp;

/* ORCH_OK whenever an HTTP status was received (any status); ORCH_ETIMEDOUT
 * on timeout; ORCH_EIO on a connection or transport failure; ORCH_EINVAL for
 * a bad URL or a refused destination. errbuf says why, without the URL. */
orch_err orch_httpc_do(const orch_httpc_req *req, orch_httpc_resp *resp, char *errbuf,
                       size_t errlen) ORCH_NODISCARD;
void orch_httpc_resp_free(orch_httpc_resp *resp);
void orch_httpc_set_loopback_only(bool on);

#endif
