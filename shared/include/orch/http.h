/*
 * http.h - the small HTTP server each service exposes (/healthz, /metrics,
 * and a service's own routes such as stage-service's /queue and webhooks).
 *
 * Built on NNG's HTTP server. Routes (orch_http_route) run on NNG's threads:
 * they must not block; they read state kept by other threads. Handlers
 * (orch_http_handler) may block (libpq, RPC calls): they run on the server's
 * worker threads; when every worker is busy and the queue is full, the
 * request is answered 503 at once. A handler may put the item it serves
 * into the thread's log context (orch_log_ctx_set); the server clears it
 * after every handler.
 */
#ifndef ORCH_HTTP_H
#define ORCH_HTTP_H

#include <stdbool.h>
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

/* A request as a blocking handler sees it (borrowed for the call). */
typedef struct orch_http_request {
    const char *method;
    const char *path;  /* without the query */
    const char *query; /* after '?', "" if none; not decoded */
    const void *body;
    size_t body_len;
    void *impl;
} orch_http_request;

/* A request header's value, or NULL. */
const char *orch_http_header(const orch_http_request *req, const char *name);
/* The decoded value of query parameter `key` into out (false if absent or
 * too long). */
bool orch_http_query_param(const orch_http_request *req, const char *key, char *out, size_t n);

typedef struct orch_http_reply {
    int status;
    char *body; /* malloc'ed by the handler, freed by the server; may be NULL */
    size_t len;
    const char *content_type; /* static; NULL: text/plain */
} orch_http_reply;

typedef void (*orch_http_handler_fn)(void *arg, const orch_http_request *req, orch_http_reply *rep);

typedef struct orch_http_handler {
    const char *method; /* "GET", "POST" */
    const char *path;   /* exact path */
    orch_http_handler_fn fn;
    void *arg;
} orch_http_handler;

/* Listens on `addr` ("127.0.0.1:7711"). Routes and handlers are copied;
 * their args are borrowed until orch_http_stop(). `workers` threads run the
 * handlers (0 if there are none). */
orch_err orch_http_start(const char *addr, const orch_http_route *routes, size_t n,
                         const orch_http_handler *handlers, size_t nh, int workers,
                         orch_http_server **out) ORCH_NODISCARD;
void orch_http_stop(orch_http_server *srv); /* NULL ok */

#endif
