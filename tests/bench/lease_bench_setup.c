/*
 * lease_bench_setup.c - what lease_bench opens before the rounds and closes
 * after them: the libpq connections (with lease-service's statement_timeout),
 * the RPC client, lease-service's /metrics; and the truncation of the lease
 * tables before each slice. Main thread only.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/lease.pb-c.h"
#include "lease_bench.h"

static const char sql_truncate[] = "TRUNCATE transition_lease, lease_events";

bool lb_truncate_tables(lb_ctx *cx)
{
    PGresult *r = PQexec(cx->admin, sql_truncate);
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "lease_bench: %s: %s", sql_truncate,
                r ? PQresultErrorMessage(r) : PQerrorMessage(cx->admin));
    PQclear(r);
    return ok;
}

/* ---- /metrics ---- */

/* The value after `key` and a space at the start of a line of `body`. */
static bool metric_value(const char *body, const char *key, double *out)
{
    size_t klen = strlen(key);
    const char *p = body;
    while (p && *p) {
        if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
            char *end;
            *out = strtod(p + klen + 1, &end);
            return end != p + klen + 1;
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return false;
}

static bool parse_metrics(const char *body, lb_metrics *m)
{
    static const char rpc[] = "orch_rpc_request_duration_seconds";
    static const char hnd[] = "orch_lease_acquire_duration_seconds";
    static const char acq[] = "{method=\"" LB_ACQUIRE "\"}";
    static const char rel[] = "{method=\"" LB_RELEASE "\"}";
    char k[6][128];
    snprintf(k[0], sizeof k[0], "%s_sum%s", rpc, acq);
    snprintf(k[1], sizeof k[1], "%s_count%s", rpc, acq);
    snprintf(k[2], sizeof k[2], "%s_sum{method=\"Acquire\"}", hnd);
    snprintf(k[3], sizeof k[3], "%s_count{method=\"Acquire\"}", hnd);
    snprintf(k[4], sizeof k[4], "%s_sum%s", rpc, rel);
    snprintf(k[5], sizeof k[5], "%s_count%s", rpc, rel);
    double *v[6] = { &m->acq_s, &m->acq_n, &m->hnd_s, &m->hnd_n, &m->rel_s, &m->rel_n };
    m->ok = true;
    for (int i = 0; i < 6; i++)
        m->ok = metric_value(body, k[i], v[i]) && m->ok;
    return m->ok;
}

void lb_read_metrics(const lb_ctx *cx, lb_metrics *m)
{
    nng_http_req *req = NULL;
    nng_http_res *res = NULL;
    nng_aio *aio = NULL;
    memset(m, 0, sizeof *m);
    if (!cx->http)
        return;
    if (nng_http_req_alloc(&req, cx->metrics_url) == 0 && nng_http_res_alloc(&res) == 0 &&
        nng_aio_alloc(&aio, NULL, NULL) == 0) {
        nng_aio_set_timeout(aio, METRICS_MS);
        nng_http_client_transact(cx->http, req, res, aio);
        nng_aio_wait(aio);
        void *body;
        size_t len;
        nng_http_res_get_data(res, &body, &len);
        if (nng_aio_result(aio) == 0 && nng_http_res_get_status(res) == 200 && len > 0) {
            char *text = malloc(len + 1);
            if (text) {
                memcpy(text, body, len);
                text[len] = '\0';
                parse_metrics(text, m);
                free(text);
            }
        }
    }
    nng_aio_free(aio);
    nng_http_res_free(res);
    nng_http_req_free(req);
}

/* ---- set-up ---- */

/* statement_timeout as lease-service sets it for a call of `timeout_ms`
 * (db.c: the time left less a sixteenth, rounded down to two significant
 * digits). */
static long service_statement_timeout(unsigned timeout_ms)
{
    unsigned long ms = timeout_ms > 1 ? timeout_ms - 1 : 1, p = 1;
    ms -= ms / 16;
    while (ms / p >= 100)
        p *= 10;
    return (long)(ms / p * p);
}

static PGconn *pg_open(const char *url, unsigned timeout_ms)
{
    const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
    const char *vals[] = { url, "10", "lease_bench", NULL };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "lease_bench: cannot connect to %s: %s", url,
                pg ? PQerrorMessage(pg) : "out of memory\n");
        PQfinish(pg);
        return NULL;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "SET statement_timeout = %ld", service_statement_timeout(timeout_ms));
    PGresult *r = PQexec(pg, sql);
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        fprintf(stderr, "lease_bench: %s: %s", sql, PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

/* Checks that the schema is there: lease-service migrates it at start. */
static bool check_schema(PGconn *pg)
{
    PGresult *r = PQexec(pg, "SELECT count(*) FROM transition_lease");
    bool ok = r && PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr,
                "lease_bench: the lease tables are not readable (is lease-service "
                "running on this database?): %s",
                r ? PQresultErrorMessage(r) : "no result\n");
    PQclear(r);
    return ok;
}

/* A Check of lease-service, to see that it answers before anything starts. */
static bool service_answers(const lb_ctx *cx)
{
    Orch__V1__GetLeaseRequest req = ORCH__V1__GET_LEASE_REQUEST__INIT;
    orch_rpc_call_opts co = { .timeout_ms = cx->o->timeout_ms };
    orch_rpc_status st;
    ProtobufCMessage *m = NULL;
    req.work_item = (char *)"bench-probe";
    orch_code code = orch_rpc_invoke(cx->rpc, "orch.v1.LeaseService/Get", &req.base,
                                     &orch__v1__lease__descriptor, &co, &st, &m);
    protobuf_c_message_free_unpacked(m, NULL);
    if (code == ORCH_CODE_OK || code == ORCH_CODE_NOT_FOUND)
        return true;
    fprintf(stderr, "lease_bench: lease-service at %s does not answer: %s: %s\n",
            cx->o->service_url, orch_code_name(code), st.message);
    return false;
}

static bool open_metrics(lb_ctx *cx)
{
    char url[300];
    if (!cx->o->metrics_addr[0])
        return true;
    snprintf(url, sizeof url, "http://%s/metrics", cx->o->metrics_addr);
    int rv = nng_url_parse(&cx->metrics_url, url);
    if (rv == 0)
        rv = nng_http_client_alloc(&cx->http, cx->metrics_url);
    if (rv != 0) {
        fprintf(stderr, "lease_bench: --metrics-addr %s: %s\n", cx->o->metrics_addr,
                nng_strerror(rv));
        return false;
    }
    lb_metrics m;
    lb_read_metrics(cx, &m);
    if (!m.ok)
        fprintf(stderr,
                "lease_bench: warning: no Acquire/Release histograms at %s; the "
                "service-side columns stay empty\n",
                url);
    return true;
}

bool lb_setup(lb_ctx *cx, unsigned max_callers)
{
    const lb_options *o = cx->o;
    if (orch_ident_init(o->host_id, &cx->me) != ORCH_OK) {
        fprintf(stderr, "lease_bench: cannot read this process's identity from /proc\n");
        return false;
    }
    snprintf(cx->pid_s, sizeof cx->pid_s, "%d", (int)cx->me.pid);
    snprintf(cx->ticks_s, sizeof cx->ticks_s, "%" PRIu64, cx->me.start_ticks);
    if (!(cx->admin = pg_open(o->database_url, o->timeout_ms)) || !check_schema(cx->admin))
        return false;
    for (unsigned i = 0; i < max_callers; i++)
        if (!(cx->conns[i] = pg_open(o->database_url, o->timeout_ms)) ||
            (o->prepared && !lb_prepare(cx->conns[i])))
            return false;
    orch_rpc_client_opts co = { .default_timeout_ms = o->timeout_ms,
                                .auth_token = getenv("ORCH_RPC_AUTH_TOKEN") };
    if (orch_rpc_client_open(o->service_url, &co, &cx->rpc) != ORCH_OK) {
        fprintf(stderr, "lease_bench: bad lease-service address '%s'\n", o->service_url);
        return false;
    }
    return service_answers(cx) && open_metrics(cx);
}

void lb_teardown(lb_ctx *cx)
{
    orch_rpc_client_close(cx->rpc);
    for (unsigned i = 0; i < LB_MAX_CALLERS; i++)
        PQfinish(cx->conns[i]);
    PQfinish(cx->admin);
    if (cx->http)
        nng_http_client_free(cx->http);
    if (cx->metrics_url)
        nng_url_free(cx->metrics_url);
}
