/*
 * svc.h - the life of a service process, shared by the four services.
 *
 * orch_service_main() loads the common and the service's configuration
 * (exit 2 on any configuration error, every error reported), establishes the
 * process identity, opens the database pool, waits for the database and
 * applies migrations, calls the service's start hook, serves RPC (with the
 * HealthService added) and HTTP (/healthz, /metrics), probes the database
 * in the background, and on SIGTERM/SIGINT stops accepting, finishes
 * in-flight requests, calls the stop hook and returns 0. --migrate-only stops
 * after the migrations; READY=1 goes to $NOTIFY_SOCKET when serving starts.
 */
#ifndef ORCH_SVC_H
#define ORCH_SVC_H

#include "orch/config.h"
#include "orch/db.h"
#include "orch/http.h"
#include "orch/ident.h"
#include "orch/metrics.h"
#include "orch/rpc.h"

typedef struct orch_service orch_service;

typedef struct orch_service_def {
    const char *name;              /* "lease-service" */
    const char *rpc_url_var;       /* "ORCH_LEASE_RPC_URL" */
    const char *http_addr_var;     /* "ORCH_LEASE_HTTP_ADDR" */
    const orch_config_var *config; /* the service's own table */
    /* Tables of other services this one also reads (their addresses, shared
     * switches), declared once by their owner; NULL-terminated, may be NULL. */
    const orch_config_var *const *extra_config;
    /* Optional: register RPC services, start threads. May block on the DB. */
    orch_err (*start)(orch_service *svc);
    /* Optional: release what the service holds; called after the RPC server
     * stopped and before the pool closes. */
    void (*stop)(orch_service *svc);
} orch_service_def;

int orch_service_main(const orch_service_def *def, int argc, char **argv);

/* For the start hook and handlers. All returned pointers are owned by the
 * runtime and live until orch_service_main() returns. */
const orch_config *orch_service_config(const orch_service *svc);
orch_db_pool *orch_service_db(const orch_service *svc);
const orch_ident *orch_service_ident(const orch_service *svc);
orch_metrics *orch_service_metrics(const orch_service *svc);
/* ORCH_RUNTIME as parsed at start-up (orch/guard.h). */
int orch_service_runtime(const orch_service *svc);
/* Registers an RPC service (before the server starts: start hook only).
 * A handler table that does not match its descriptor by method name
 * (orch_rpc_match) is logged, naming the method, and refused with
 * ORCH_EINVAL, so the service does not start. */
orch_err orch_service_add_rpc(orch_service *svc, const orch_rpc_service *rpc) ORCH_NODISCARD;
/* Adds a blocking HTTP handler (start hook only): it runs on the HTTP
 * server's worker threads, beside /healthz and /metrics. */
orch_err orch_service_add_http(orch_service *svc, const orch_http_handler *h) ORCH_NODISCARD;
/* orch_service_add_http for each of hs[0..n); stops at the first error. */
orch_err orch_service_add_https(orch_service *svc, const orch_http_handler *hs,
                                size_t n) ORCH_NODISCARD;
void orch_service_set_state(orch_service *svc, void *state);
void *orch_service_state(const orch_service *svc);

#endif
