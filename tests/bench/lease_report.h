/*
 * lease_report.h - what lease_bench measures, and how it is printed: as text
 * for people or as one JSON document (--json).
 *
 * Summaries are medians over the rounds; a ratio service/direct is the
 * median of the per-round ratios, so that only measurements taken side by
 * side are compared. Printing only reads the results; single-threaded.
 */
#ifndef LEASE_REPORT_H
#define LEASE_REPORT_H

#include <stdbool.h>
#include <sys/types.h>

#include "bench_common.h"

#define LB_MAX_MODES   9
#define LB_MAX_ROUNDS  99u
#define LB_MAX_CALLERS 64u
/* The throughput targets: service / direct throughput at least `ratio` in
 * the distinct-item mode of `callers` callers (lease_report.c). */
typedef struct lb_target {
    unsigned callers;
    double ratio;
} lb_target;
#define LB_TARGETS    \
    {                 \
        { 16u, 1.0 }, \
        {             \
            1u, 0.8   \
        }             \
    }
#define LB_ACQUIRE "orch.v1.LeaseService/Acquire"
#define LB_RELEASE "orch.v1.LeaseService/Release"

enum { LB_DIRECT, LB_SERVICE, LB_NSTACKS };
extern const char *const lb_stack_names[LB_NSTACKS]; /* "direct", "service" */

/* K callers, each on work items of its own, timing acquire + release pairs;
 * or (contended) K callers on one work item, timing attempts. */
typedef struct lb_mode {
    unsigned callers;
    bool contended;
} lb_mode;

typedef struct lb_options {
    const char *service_url;  /* lease-service RPC address */
    const char *metrics_addr; /* its host:port of /metrics; "" = not read */
    const char *database_url;
    const char *host_id; /* the owners' host, the service's ORCH_HOST_ID */
    const char *repo;
    const char *label; /* free text shown in the header ("workers=4 pool=4") */
    pid_t service_pid; /* 0 = not given */
    pid_t pg_pid;      /* the postmaster; 0 = not given */
    lb_mode modes[LB_MAX_MODES];
    unsigned nmodes;
    unsigned pairs;    /* timed pairs per stack, mode and round, all callers */
    unsigned attempts; /* the same for the contended mode */
    unsigned items;    /* work items per caller */
    unsigned warmup;   /* untimed pairs of each caller before each slice */
    unsigned rounds;
    unsigned slices; /* per mode and round, the stacks taking turns */
    unsigned timeout_ms;
    bool prepared; /* direct stack: prepared statements */
    bool json;
    unsigned scale; /* scale mode: timed Acquires per table size; 0: off */
} lb_options;

/* What one stack measured in one mode and round; "per op" is per pair, or
 * per attempt in the contended mode. Negative: unknown or not applicable. */
typedef struct lb_figures {
    bench_lat lat;                                   /* of a pair or an attempt; per_s = ops/s */
    double grants_per_s, defers_per_s, aborts_per_s; /* contended mode */
    double srv_cpu_us, srv_cs;                       /* lease-service, per op */
    double pg_cpu_us, pg_cs;                         /* the PostgreSQL cluster, per op */
    double cli_cpu_us, cli_cs;                       /* this process, per op */
    double busy_pct;                                 /* all CPUs, share busy */
    double other_pct;                                /* all CPUs, share busy with other processes */
    /* Service stack, from lease-service's /metrics: mean us per call. */
    double acq_server_us;  /* Acquire, receipt to reply */
    double acq_handler_us; /* Acquire, its handler */
    double rel_server_us;  /* Release, receipt to reply */
    /* Requests (Acquire or Release) outstanding at once, at the client. */
    double inflight_max, inflight_mean;
} lb_figures;

typedef struct lb_results {
    lb_figures f[LB_MAX_ROUNDS][LB_MAX_MODES][LB_NSTACKS];
    int first[LB_MAX_ROUNDS]; /* stack run first in each round */
    char load_start[32], load_end[32];
    long ncpu;
    int owner_pid;
    char boot_id[40];
} lb_results;

void lb_mode_label(const lb_mode *m, char *buf, size_t n);

/* Text: the set-up; one round; the summary with the ratios and the target. */
void lb_print_header(const lb_options *o, const lb_results *r);
void lb_print_round(const lb_options *o, const lb_results *r, unsigned round);
void lb_print_summary(const lb_options *o, const lb_results *r);

/* The whole run as one JSON document on stdout. */
void lb_print_json(const lb_options *o, const lb_results *r);

#endif
