/*
 * bench_tls.h - the cost of TLS on one RPC round trip: the same Check,
 * through the orch client, against a lease-service over tcp:// and one over
 * tls+tcp:// (mutual TLS), in one run.
 *
 * One caller; the two stacks take turns in slices, the first alternating,
 * over connections set up before timing (the handshake is not in the
 * figure). Single-threaded; prints nothing itself.
 */
#ifndef BENCH_TLS_H
#define BENCH_TLS_H

#include <stdbool.h>

typedef struct bench_tls_figures {
    double tcp_p50_us, tls_p50_us; /* medians of every timed call */
    double tcp_p99_us, tls_p99_us;
    unsigned long calls; /* per stack */
} bench_tls_figures;

/* Runs `calls` timed calls per stack in `slices` slices after `warmup`
 * untimed ones. `tls_url` serves mutual TLS with the files of tls_certs.sh
 * in `cert_dir` (ca.pem, operator.pem, operator.key). False (with a line on
 * stderr) when a call fails. */
bool bench_tls_compare(const char *tcp_url, const char *tls_url, const char *cert_dir,
                       unsigned calls, unsigned warmup, unsigned slices, unsigned timeout_ms,
                       bench_tls_figures *out);

#endif
