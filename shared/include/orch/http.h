/*
 * http.h - the small HTTP server each service exposes (/healthz, /metrics).
 *
 * Built on NNG's HTTP server. Route functions run on NNG's threads: they must
 * not block (no libpq, no libcurl); they read state kept by other threads.
 */
#ifndef ORCH_HTTP_H
#define ORCH_HTTP_H

#include <stddef.h>

#include "orch/err.h"

typedef struct orch_http_server orch_http_server;

/* Fills *body (malloc'ed, caller of the route frees) and *content_type
 * (static string); returns the HTTP status. */
typedef int (*orch_http_route_fn)(void *arg, char **body, size_t *len, const char **content_type);

typedef struct orch_http_route {
    const char *path; /* exact path, GET only */
    orch_http_route_fn fn;
    void *arg;
} orch_http_route;

/* Listens on `addr` ("127.0.0.1:7711"). Routes are copied;
 * their args are borrowed until orch_http_stop(). */
orch_err orch_http_start(const char *addr, const orch_http_route *routes, size_t n,
                         orch_http_server **out) ORCH_NODISCARD;
void orch_http_stop(orch_http_server *srv); /* NULL ok */

#endif
