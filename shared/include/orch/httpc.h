/*
 * httpc.h - the one outbound HTTP client of the services (libcurl).
 *
 * A blocking request/response call for worker threads (never for NNG
 * callbacks). Redirects are not followed and proxies are never used: the
 * destination is exactly the URL given. When loopback-only mode is on (svc.c
 * turns it on for ORCH_RUNTIME=test), every address libcurl is about to
 * connect to is checked and anything outside 127.0.0.0/8 and ::1 is refused
 * before a socket exists: this layer does not depend on guard-service's
 * decision. Responses are capped at ORCH_HTTPC_MAX_BODY bytes.
 * Thread-safe: libcurl is loaded (dlopen, libcurl.so.4) and initialised
 * once, by the first request, and each request uses its own handle; a
 * process that makes no request does not keep it mapped (a URL check loads
 * it only for the time of the check). When it cannot be loaded, the calls
 * fail with ORCH_EIO and say so. Error texts never contain the
 * URL's path or query, where tokens live (Telegram puts the bot token in
 * the path).
 */
#ifndef ORCH_HTTPC_H
#define ORCH_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"

#define ORCH_HTTPC_MAX_BODY (4u * 1024u * 1024u)

typedef struct orch_httpc_req {
    const char *method;         /* "GET", "POST", "PATCH", ... */
    const char *url;            /* http:// or https:// only */
    const char *const *headers; /* NULL-terminated "Name: value"; may be NULL */
    const char *body;           /* may be NULL */
    size_t body_len;
    uint32_t timeout_ms; /* whole exchange; 0 = 10000 */
} orch_httpc_req;

typedef struct orch_httpc_resp {
    long status; /* HTTP status */
    char *body;  /* NUL-terminated, malloc'ed; owned by the response */
    size_t body_len;
    int64_t retry_after_s; /* Retry-After in seconds, -1 if absent */
} orch_httpc_resp;

/* Performs one exchange. ORCH_OK whenever an HTTP status was received (of
 * any value): *resp is then filled and freed with orch_httpc_resp_free().
 * ORCH_ETIMEDOUT when the time ran out; ORCH_EIO on a connection or
 * transport failure (or a response over the size cap); ORCH_EINVAL for a
 * bad request, a URL that is not http(s), or a destination refused by
 * loopback-only mode; ORCH_ENOMEM. On error, errbuf (may be NULL) says why,
 * naming at most the URL's scheme, host and port. */
orch_err orch_httpc_do(const orch_httpc_req *req, orch_httpc_resp *resp, char *errbuf,
                       size_t errlen) ORCH_NODISCARD;

/* orch_httpc_do() that also says, on an error, whether the request
 * certainly never reached the peer (*unsent, may be NULL): refused before a
 * socket existed (bad URL, loopback-only mode) or no connection could be
 * made (refused, unresolvable, unreachable). A timeout or a failure after
 * connecting sets it false: the peer may have acted. */
orch_err orch_httpc_do_ex(const orch_httpc_req *req, orch_httpc_resp *resp, bool *unsent,
                          char *errbuf, size_t errlen) ORCH_NODISCARD;

void orch_httpc_resp_free(orch_httpc_resp *resp); /* NULL ok; leaves it empty */

/* Checks a configured base URL: http:// or https://, a host, an optional
 * port and path, no user or password, query or fragment, no blank or
 * control character. ORCH_EINVAL with why (naming the fault, never the
 * path) otherwise. Services call it at start-up on every URL they are
 * given, so that a typo is refused there and not met later as a failed call.
 * The parse is libcurl's (its URL API, without curl_global_init); libcurl is
 * unloaded again afterwards unless a request has loaded it already, so the
 * check leaves no resident cost. ORCH_EIO when libcurl cannot be loaded. */
orch_err orch_httpc_check_base_url(const char *url, char *why, size_t n) ORCH_NODISCARD;

/* Turns loopback-only mode on or off for the whole process. These and the
 * address checks below live in httpc_loopback.c: calling them alone does
 * not link libcurl. */
void orch_httpc_set_loopback_only(bool on);
bool orch_httpc_loopback_only(void);

/* Writes "scheme://host[:port]/…" for `url` into out: safe to log. */
void orch_httpc_redact_url(const char *url, char *out, size_t n);

/* Whether the numeric address text (IPv4 or IPv6) is a loopback address. */
bool orch_httpc_is_loopback_text(const char *addr);

/* Whether the socket address (AF_INET or AF_INET6) is a loopback address. */
struct sockaddr;
bool orch_httpc_sockaddr_is_loopback(const struct sockaddr *sa);

#endif
