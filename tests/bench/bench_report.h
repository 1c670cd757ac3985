/*
 * bench_report.h - what rpc_bench measures, and how it is printed: as text
 * for people or as one JSON document (--json).
 *
 * Summaries are medians over the rounds; a ratio orch/raw is the median of
 * the per-round ratios, so that only measurements taken side by side are
 * compared. Printing only reads the results; single-threaded.
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define BENCH_METHOD          "orch.v1.HealthService/Check"
#define BENCH_OVERHEAD_TARGET 15.0 /* percent over the raw round trip */
#define BENCH_RSS_TARGET_MIB  10.0 /* idle resident memory of a service */
#define BENCH_IDLE_WAIT_MS    1000
#define BENCH_NSERVICES       4
#define BENCH_MAX_ROUNDS      99u

enum { STACK_RAW, STACK_ORCH, STACK_WORKER, NSTACKS };
enum { MODE_SEQ, MODE_INFLIGHT, NMODES };

extern const char *const bench_stack_names[NSTACKS];       /* "raw", "orch", "orch-worker" */
extern const char *const bench_svc_names[BENCH_NSERVICES]; /* "lease", ... */

typedef struct bench_options {
    const char *lease_url;
    pid_t pids[BENCH_NSERVICES]; /* 0 = not given */
    unsigned calls;              /* sequential, timed */
    unsigned warmup;             /* sequential; split among the callers in flight */
    unsigned inflight;
    unsigned per_thread; /* timed calls of each caller in flight */
    unsigned rounds;
    unsigned slices; /* per mode and round, the stacks taking turns */
    unsigned timeout_ms;
    int echo_contexts;
    int workers;       /* of the worker-path server */
    unsigned block_us; /* its handler's sleep */
    bool json;
    const char *tls_url; /* a lease-service with mutual TLS; NULL = no TLS figure */
    const char *tls_dir; /* tls_certs.sh's folder for tls_url */
} bench_options;

/* What one run of one stack in one mode measured. */
typedef struct bench_figures {
    double p50_us, p90_us, p99_us;
    double calls_per_s;
    double srv_switches; /* server process, per call; < 0: unknown */
    double srv_cpu_us;
    double cli_switches; /* this process, per call */
    double cli_cpu_us;
    unsigned long calls;
} bench_figures;

/* Client-side CPU of one orch call, measured without the network. */
typedef struct bench_local_costs {
    double request_id_ns; /* a fresh request id (rpc_client_int.h) */
    double pack_ns;       /* HealthCheckRequest + RequestEnvelope, with their mallocs */
    double decode_ns;     /* ReplyEnvelope + HealthCheckResponse, unpack and free */
} bench_local_costs;

typedef struct bench_results {
    bench_figures f[BENCH_MAX_ROUNDS][NMODES][NSTACKS];
    int first[BENCH_MAX_ROUNDS];      /* stack run first in each round */
    double rss_idle[BENCH_NSERVICES]; /* MiB; < 0 unreadable */
    double lease_rss_after, lease_hwm_after;
    size_t frame_len, reply_len;
    int echo_port;
    int worker_port;
    bench_local_costs local;
} bench_results;

/* Text: the set-up and the idle memory; one round; the summary. */
void bench_print_header(const bench_options *o, const bench_results *r);
void bench_print_round(const bench_options *o, const bench_results *r, unsigned round);
void bench_print_summary(const bench_options *o, const bench_results *r);

/* The whole run as one JSON document on stdout. */
void bench_print_json(const bench_options *o, const bench_results *r);

#endif
