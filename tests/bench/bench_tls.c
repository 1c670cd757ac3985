/*
 * bench_tls.c - tcp:// against tls+tcp:// for one Check round trip
 * (bench_tls.h).
 *
 * Errors: a failed call ends the comparison (false). Ownership: the clients
 * and the latency arrays live for one call of bench_tls_compare.
 */
#include "bench_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/health.pb-c.h"
#include "orch/clock.h"
#include "orch/rpc.h"
#include "bench_common.h"

enum { TCP, TLS };

static bool one_call(orch_rpc_client *c, const char *url, double *us)
{
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    orch_rpc_status st;
    uint64_t t0 = orch_mono_ns();
    orch_code code =
        orch_rpc_invoke(c, "orch.v1.HealthService/Check", &req.base, NULL, NULL, &st, NULL);
    if (us)
        *us = (double)(orch_mono_ns() - t0) / 1000.0;
    if (code != ORCH_CODE_OK)
        fprintf(stderr, "rpc_bench: Check at %s: %s: %s\n", url, orch_code_name(code), st.message);
    return code == ORCH_CODE_OK;
}

/* The value below which `p` of the sorted `v[0..n)` lie. */
static double pct(double *v, unsigned long n, double p)
{
    unsigned long i = (unsigned long)(p * (double)(n - 1));
    return v[i];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

bool bench_tls_compare(const char *tcp_url, const char *tls_url, const char *cert_dir,
                       unsigned calls, unsigned warmup, unsigned slices, unsigned timeout_ms,
                       bench_tls_figures *out)
{
    char ca[512], pem[512], key[512];
    snprintf(ca, sizeof ca, "%s/ca.pem", cert_dir);
    snprintf(pem, sizeof pem, "%s/operator.pem", cert_dir);
    snprintf(key, sizeof key, "%s/operator.key", cert_dir);
    orch_rpc_tls off = { ORCH_TLS_OFF, NULL, NULL, NULL };
    orch_rpc_tls mutual = { ORCH_TLS_MUTUAL, pem, key, ca };
    const char *urls[2] = { tcp_url, tls_url };
    orch_rpc_client *c[2] = { NULL, NULL };
    double *lat[2] = { calloc(calls, sizeof(double)), calloc(calls, sizeof(double)) };
    unsigned long n[2] = { 0, 0 };
    bool ok = lat[0] && lat[1] && slices > 0;
    for (int s = 0; ok && s < 2; s++) {
        orch_rpc_client_opts o = { .default_timeout_ms = timeout_ms,
                                   .tls = s == TCP ? &off : &mutual };
        ok = orch_rpc_client_open(urls[s], &o, &c[s]) == ORCH_OK;
        for (unsigned i = 0; ok && i < warmup; i++)
            ok = one_call(c[s], urls[s], NULL);
    }
    unsigned per = calls / slices ? calls / slices : 1;
    for (unsigned sl = 0; ok && sl < 2 * slices; sl++) {
        int s = (int)((sl + sl / 2) % 2); /* tcp, tls, tls, tcp, tcp, tls... */
        for (unsigned i = 0; ok && i < per && n[s] < calls; i++)
            ok = one_call(c[s], urls[s], &lat[s][n[s]++]);
    }
    if (ok && n[TCP] && n[TLS]) {
        qsort(lat[TCP], n[TCP], sizeof(double), cmp_double);
        qsort(lat[TLS], n[TLS], sizeof(double), cmp_double);
        out->tcp_p50_us = pct(lat[TCP], n[TCP], 0.5);
        out->tls_p50_us = pct(lat[TLS], n[TLS], 0.5);
        out->tcp_p99_us = pct(lat[TCP], n[TCP], 0.99);
        out->tls_p99_us = pct(lat[TLS], n[TLS], 0.99);
        out->calls = n[TCP] < n[TLS] ? n[TCP] : n[TLS];
    }
    orch_rpc_client_close(c[TCP]);
    orch_rpc_client_close(c[TLS]);
    free(lat[TCP]);
    free(lat[TLS]);
    return ok && n[TCP] && n[TLS];
}
