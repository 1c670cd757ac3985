/*
 * rpc_server_tables.c - the tables an RPC server builds at start: metrics
 * label values for every method (long polls without a latency series),
 * status code and role, the RPC metrics themselves, and each service's
 * handlers and roles matched to its descriptor by name (rpc_match.c).
 * Runs once in orch_rpc_server_start, before any thread serves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/log.h"
#include "rpc_server_int.h"

/* Whether metrics index k (k < n - 1, set in build_method_table) names a
 * method whose table entry is a long poll. */
static bool is_long_poll(const orch_rpc_server *s, size_t k)
{
    for (size_t i = 0; i < s->nsvcs; i++) {
        const ProtobufCServiceDescriptor *d = s->svcs[i].desc;
        if (k < s->method_base[i] || k >= s->method_base[i] + d->n_methods)
            continue;
        const char *name = d->methods[k - s->method_base[i]].name;
        for (size_t j = 0; j < s->svcs[i].nmethods; j++)
            if (strcmp(s->svcs[i].methods[j].name, name) == 0)
                return s->svcs[i].methods[j].long_poll;
    }
    return false;
}

orch_err orch__rpc_build_method_table(orch_rpc_server *s)
{
    size_t n = 1; /* "unknown" */
    for (size_t i = 0; i < s->nsvcs; i++)
        n += s->svcs[i].desc->n_methods;
    s->method_names = calloc(n, sizeof *s->method_names);
    s->method_base = calloc(s->nsvcs ? s->nsvcs : 1, sizeof *s->method_base);
    if (!s->method_names || !s->method_base)
        return ORCH_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < s->nsvcs; i++) {
        const ProtobufCServiceDescriptor *d = s->svcs[i].desc;
        s->method_base[i] = k;
        for (unsigned j = 0; j < d->n_methods; j++) {
            char *name;
            if (asprintf(&name, "%s/%s", d->name, d->methods[j].name) < 0)
                return ORCH_ENOMEM;
            s->method_names[k++] = name;
        }
    }
    if (!(s->latency_names = calloc(n, sizeof *s->latency_names)))
        return ORCH_ENOMEM;
    for (size_t i = 0; i < n; i++)
        s->latency_names[i] = is_long_poll(s, i) ? NULL : s->method_names[i];
    s->method_names[k] = "unknown";
    for (int c = 0; c < ORCH_CODE_COUNT; c++)
        s->code_labels[c] = orch_code_name((orch_code)c);
    for (size_t r = 0; r <= ORCH_ROLE_COUNT; r++)
        s->role_labels[r] = orch_rpc_role_name(r ? 1u << (r - 1) : 0);
    s->nmethods = n;
    if (s->o.metrics) {
        s->m_requests =
            orch_metrics_counter2(s->o.metrics, "orch_rpc_requests_total",
                                  "RPC requests answered, by method and status code", "method",
                                  s->method_names, n, "code", s->code_labels, ORCH_CODE_COUNT);
        s->m_latency = orch_metrics_histogram(s->o.metrics, "orch_rpc_request_duration_seconds",
                                              "Time from receipt of a request to its reply",
                                              "method", s->latency_names, n);
        s->m_denied = orch_metrics_counter2(
            s->o.metrics, "orch_rpc_denied_total",
            "RPC requests refused PERMISSION_DENIED, by method and caller role", "method",
            s->method_names, n, "role", s->role_labels, ORCH_ROLE_COUNT + 1);
        if (!s->m_requests || !s->m_latency || !s->m_denied)
            return ORCH_ENOMEM;
    } else {
        /* A private registry keeps the hot path free of NULL checks. */
        orch_metrics *m;
        if (orch_metrics_new(&m))
            return ORCH_ENOMEM;
        s->o.metrics = m;
        s->m_requests = orch_metrics_counter2(m, "r", "r", "method", s->method_names, n, "code",
                                              s->code_labels, ORCH_CODE_COUNT);
        s->m_latency = orch_metrics_histogram(m, "l", "l", "method", s->method_names, n);
        s->m_denied = orch_metrics_counter2(m, "d", "d", "method", s->method_names, n, "role",
                                            s->role_labels, ORCH_ROLE_COUNT + 1);
        s->owns_metrics = true;
        if (!s->m_requests || !s->m_latency || !s->m_denied)
            return ORCH_ENOMEM;
    }
    return ORCH_OK;
}

orch_err orch__rpc_match_handlers(orch_rpc_server *s)
{
    s->handlers = calloc(s->nsvcs ? s->nsvcs : 1, sizeof *s->handlers);
    s->roles = calloc(s->nsvcs ? s->nsvcs : 1, sizeof *s->roles);
    if (!s->handlers || !s->roles)
        return ORCH_ENOMEM;
    for (size_t i = 0; i < s->nsvcs; i++) {
        size_t n = s->svcs[i].desc ? s->svcs[i].desc->n_methods : 0;
        char why[256];
        if (!(s->handlers[i] = calloc(n ? n : 1, sizeof **s->handlers)) ||
            !(s->roles[i] = calloc(n ? n : 1, sizeof **s->roles)))
            return ORCH_ENOMEM;
        if (orch_rpc_match(&s->svcs[i], s->handlers[i], n, why, sizeof why) != ORCH_OK) {
            orch_error("RPC server refused: %s", why);
            return ORCH_EINVAL;
        }
        orch__method_roles(&s->svcs[i], s->roles[i]);
    }
    return ORCH_OK;
}
