/*
 * bench_report.c - text and JSON output of rpc_bench (see bench_report.h).
 * Writes to stdout only; single-threaded.
 */
#include "bench_report.h"

#include <jansson.h>
#include <nng/nng.h>
#include <stdio.h>

#include "bench_common.h"

const char *const bench_stack_names[NSTACKS] = { "raw", "orch", "orch-worker" };
const char *const bench_svc_names[BENCH_NSERVICES] = { "lease", "stage", "guard", "launcher" };

static const char *const mode_keys[NMODES] = { "sequential", "inflight" };

enum { F_P50, F_P90, F_P99, F_RATE, F_SRV_CS, F_SRV_CPU, F_CLI_CS, F_CLI_CPU, NFIELDS };
static const char *const field_keys[NFIELDS] = {
    "p50_us",
    "p90_us",
    "p99_us",
    "calls_per_s",
    "server_switches_per_call",
    "server_cpu_us_per_call",
    "client_switches_per_call",
    "client_cpu_us_per_call",
};

static double field(const bench_figures *f, int k)
{
    switch (k) {
    case F_P50: return f->p50_us;
    case F_P90: return f->p90_us;
    case F_P99: return f->p99_us;
    case F_RATE: return f->calls_per_s;
    case F_SRV_CS: return f->srv_switches;
    case F_SRV_CPU: return f->srv_cpu_us;
    case F_CLI_CS: return f->cli_switches;
    default: return f->cli_cpu_us;
    }
}

/* Median over the rounds of field `k` of (mode, stack). */
static double median_of(const bench_results *r, unsigned rounds, int mode, int stack, int k)
{
    double v[BENCH_MAX_ROUNDS];
    for (unsigned i = 0; i < rounds; i++)
        v[i] = field(&r->f[i][mode][stack], k);
    return bench_median(v, rounds);
}

static bench_figures median_figures(const bench_results *r, unsigned rounds, int mode, int stack)
{
    bench_figures f = { 0 };
    f.p50_us = median_of(r, rounds, mode, stack, F_P50);
    f.p90_us = median_of(r, rounds, mode, stack, F_P90);
    f.p99_us = median_of(r, rounds, mode, stack, F_P99);
    f.calls_per_s = median_of(r, rounds, mode, stack, F_RATE);
    f.srv_switches = median_of(r, rounds, mode, stack, F_SRV_CS);
    f.srv_cpu_us = median_of(r, rounds, mode, stack, F_SRV_CPU);
    f.cli_switches = median_of(r, rounds, mode, stack, F_CLI_CS);
    f.cli_cpu_us = median_of(r, rounds, mode, stack, F_CLI_CPU);
    return f;
}

/* Medians over the rounds of the per-round ratios orch/raw of the median
 * latency and of the throughput. */
static void ratios(const bench_results *r, unsigned rounds, int mode, double *lat, double *tput)
{
    double l[BENCH_MAX_ROUNDS], t[BENCH_MAX_ROUNDS];
    for (unsigned i = 0; i < rounds; i++) {
        const bench_figures *raw = &r->f[i][mode][STACK_RAW], *orch = &r->f[i][mode][STACK_ORCH];
        l[i] = orch->p50_us / raw->p50_us;
        t[i] = orch->calls_per_s / raw->calls_per_s;
    }
    *lat = bench_median(l, rounds);
    *tput = bench_median(t, rounds);
}

/* ---- text ------------------------------------------------------------------ */

static void mode_label(const bench_options *o, int mode, char *buf, size_t n)
{
    if (mode == MODE_SEQ)
        snprintf(buf, n, "sequential");
    else
        snprintf(buf, n, "%u in flight", o->inflight);
}

static void print_table_header(void)
{
    printf("  %-13s %-11s %7s %7s %7s %8s %7s %7s %7s %7s\n", "mode", "stack", "p50 us", "p90 us",
           "p99 us", "calls/s", "srv cs", "srv cpu", "cli cs", "cli cpu");
}

static void print_figures(const char *mode, const char *stack, const bench_figures *f)
{
    char cs[16] = "-", cpu[16] = "-";
    if (f->srv_switches >= 0) {
        snprintf(cs, sizeof cs, "%.2f", f->srv_switches);
        snprintf(cpu, sizeof cpu, "%.1f", f->srv_cpu_us);
    }
    printf("  %-13s %-11s %7.1f %7.1f %7.1f %8.0f %7s %7s %7.2f %7.1f\n", mode, stack, f->p50_us,
           f->p90_us, f->p99_us, f->calls_per_s, cs, cpu, f->cli_switches, f->cli_cpu_us);
}

void bench_print_round(const bench_options *o, const bench_results *r, unsigned i)
{
    char label[32];
    printf("round %u of %u (%s first)\n", i + 1, o->rounds, bench_stack_names[r->first[i]]);
    print_table_header();
    for (int m = 0; m < NMODES; m++) {
        mode_label(o, m, label, sizeof label);
        for (int s = 0; s < NSTACKS; s++)
            print_figures(label, bench_stack_names[s], &r->f[i][m][s]);
    }
    fflush(stdout);
}

static void print_rss(const bench_options *o, const bench_results *r)
{
    bool any = false;
    for (int i = 0; i < BENCH_NSERVICES; i++)
        any = any || o->pids[i];
    if (!any) {
        printf("idle RSS: no --pids given\n\n");
        return;
    }
    printf("idle RSS (VmRSS) after %d ms idle; target: under %.0f MiB each\n", BENCH_IDLE_WAIT_MS,
           BENCH_RSS_TARGET_MIB);
    for (int i = 0; i < BENCH_NSERVICES; i++) {
        char name[32];
        double mib = r->rss_idle[i];
        if (!o->pids[i])
            continue;
        snprintf(name, sizeof name, "%s-service", bench_svc_names[i]);
        if (mib < 0)
            printf("  %-17s pid %-7d unreadable\n", name, (int)o->pids[i]);
        else
            printf("  %-17s pid %-7d %5.1f MiB  %s\n", name, (int)o->pids[i], mib,
                   mib < BENCH_RSS_TARGET_MIB ? "(under target)" : "(OVER target)");
    }
    printf("\n");
}

void bench_print_header(const bench_options *o, const bench_results *r)
{
    printf("orch RPC benchmark: %s on %s\n", BENCH_METHOD, o->lease_url);
    printf("  raw: NNG %s REQ/REP echo on tcp://127.0.0.1:%d (child process, %d contexts "
           "replying from their callback)\n",
           nng_version(), r->echo_port, o->echo_contexts);
    printf("  orch-worker: the same Check on tcp://127.0.0.1:%d, an orch RPC server in a child "
           "process whose HealthService is not nonblocking: each call handed to one of %d "
           "workers, the handler sleeping %u us\n",
           r->worker_port, o->workers, o->block_us);
    printf("  request %zu bytes, the packed RequestEnvelope of a Check call, on the raw and orch "
           "stacks; "
           "reply %zu bytes (orch), %zu (raw echo)\n",
           r->frame_len, r->reply_len, r->frame_len);
    printf("  %u rounds; in each, per mode, %u slices of raw, orch and orch-worker taking turns; "
           "sequential: "
           "%u warm-up + %u timed calls; %u in flight: %u warm-up + %u timed calls per thread\n",
           o->rounds, o->slices, o->warmup, o->calls, o->inflight, o->warmup / o->inflight,
           o->per_thread);
    printf("  client CPU of one orch call, no network: request id %.0f ns, pack %.0f ns, "
           "decode %.0f ns\n",
           r->local.request_id_ns, r->local.pack_ns, r->local.decode_ns);
    printf("  per call: srv cs, srv cpu = context switches and CPU us of the server process; "
           "cli cs, cli cpu = of this one\n\n");
    print_rss(o, r);
    fflush(stdout);
}

/* What the hand-off to a worker adds to a call answered on NNG's thread:
 * orch-worker against orch, from the medians of the rounds. */
static void print_worker_path(const bench_options *o, const bench_results *r)
{
    char label[32];
    printf("\nworker path (orch-worker) against NNG's thread (orch), medians of the rounds:\n");
    for (int m = 0; m < NMODES; m++) {
        bench_figures a = median_figures(r, o->rounds, m, STACK_ORCH);
        bench_figures w = median_figures(r, o->rounds, m, STACK_WORKER);
        mode_label(o, m, label, sizeof label);
        printf("  %-13s p50 %+.1f us, calls/s x%.2f", label, w.p50_us - a.p50_us,
               a.calls_per_s > 0 ? w.calls_per_s / a.calls_per_s : 0.0);
        if (a.srv_switches >= 0 && w.srv_switches >= 0)
            printf(", server CPU %+.1f us and %+.2f context switches per call",
                   w.srv_cpu_us - a.srv_cpu_us, w.srv_switches - a.srv_switches);
        printf("\n");
    }
}

void bench_print_summary(const bench_options *o, const bench_results *r)
{
    char label[32];
    printf("median of %u rounds\n", o->rounds);
    print_table_header();
    for (int m = 0; m < NMODES; m++) {
        mode_label(o, m, label, sizeof label);
        for (int s = 0; s < NSTACKS; s++) {
            bench_figures f = median_figures(r, o->rounds, m, s);
            print_figures(label, bench_stack_names[s], &f);
        }
    }
    printf("\nRPC layer overhead target: <= %.0f%% over raw round trip\n", BENCH_OVERHEAD_TARGET);
    for (int m = 0; m < NMODES; m++) {
        double lat, tput;
        ratios(r, o->rounds, m, &lat, &tput);
        double lat_pct = (lat - 1.0) * 100.0, time_pct = (1.0 / tput - 1.0) * 100.0;
        mode_label(o, m, label, sizeof label);
        printf("  %-13s median latency orch/raw %.2f: overhead %+.1f%% %s\n", label, lat, lat_pct,
               lat_pct <= BENCH_OVERHEAD_TARGET ? "(within target)" : "(OVER target)");
        printf("  %-13s throughput orch/raw %.2f: time per call %+.1f%% %s\n", "", tput, time_pct,
               time_pct <= BENCH_OVERHEAD_TARGET ? "(within target)" : "(OVER target)");
    }
    print_worker_path(o, r);
    if (o->pids[0])
        printf("\nlease-service after the load: RSS %.1f MiB (peak %.1f MiB)\n", r->lease_rss_after,
               r->lease_hwm_after);
    fflush(stdout);
}

/* ---- JSON ------------------------------------------------------------------ */

static json_t *figures_json(const bench_figures *f)
{
    json_t *j = json_object();
    for (int k = 0; k < NFIELDS; k++) {
        double v = field(f, k);
        bool unknown = (k == F_SRV_CS || k == F_SRV_CPU) && v < 0;
        json_object_set_new(j, field_keys[k], unknown ? json_null() : json_real(v));
    }
    json_object_set_new(j, "calls", json_integer((json_int_t)f->calls));
    return j;
}

static json_t *summary_json(const bench_options *o, const bench_results *r)
{
    json_t *sum = json_object();
    for (int m = 0; m < NMODES; m++) {
        json_t *jm = json_object();
        for (int s = 0; s < NSTACKS; s++) {
            bench_figures f = median_figures(r, o->rounds, m, s);
            json_t *js = figures_json(&f);
            json_object_del(js, "calls");
            json_object_set_new(jm, bench_stack_names[s], js);
        }
        double lat, tput;
        ratios(r, o->rounds, m, &lat, &tput);
        json_object_set_new(jm, "latency_ratio", json_real(lat));
        json_object_set_new(jm, "throughput_ratio", json_real(tput));
        json_object_set_new(jm, "latency_overhead_pct", json_real((lat - 1.0) * 100.0));
        json_object_set_new(jm, "time_per_call_overhead_pct",
                            json_real((1.0 / tput - 1.0) * 100.0));
        json_object_set_new(sum, mode_keys[m], jm);
    }
    return sum;
}

static json_t *rounds_json(const bench_options *o, const bench_results *r)
{
    json_t *rounds = json_array();
    for (unsigned i = 0; i < o->rounds; i++) {
        json_t *jr = json_object();
        json_object_set_new(jr, "first", json_string(bench_stack_names[r->first[i]]));
        for (int m = 0; m < NMODES; m++) {
            json_t *jm = json_object();
            for (int s = 0; s < NSTACKS; s++)
                json_object_set_new(jm, bench_stack_names[s], figures_json(&r->f[i][m][s]));
            json_object_set_new(jr, mode_keys[m], jm);
        }
        json_array_append_new(rounds, jr);
    }
    return rounds;
}

static json_t *memory_json(const bench_options *o, const bench_results *r)
{
    json_t *idle = json_object();
    for (int i = 0; i < BENCH_NSERVICES; i++)
        if (o->pids[i])
            json_object_set_new(idle, bench_svc_names[i],
                                r->rss_idle[i] < 0 ? json_null() : json_real(r->rss_idle[i]));
    json_t *mem = json_pack("{s:f, s:i, s:o}", "target_mib", BENCH_RSS_TARGET_MIB, "idle_wait_ms",
                            BENCH_IDLE_WAIT_MS, "idle_rss_mib", idle);
    if (mem && o->pids[0]) {
        json_object_set_new(mem, "lease_rss_after_load_mib", json_real(r->lease_rss_after));
        json_object_set_new(mem, "lease_rss_peak_mib", json_real(r->lease_hwm_after));
    }
    return mem;
}

void bench_print_json(const bench_options *o, const bench_results *r)
{
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:i, s:i, s:i, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i}, s:{s:f, s:f, s:f}, "
        "s:f, s:o, s:o, s:o}",
        "method", BENCH_METHOD, "lease_url", o->lease_url, "nng_version", nng_version(),
        "echo_port", r->echo_port, "request_bytes", (int)r->frame_len, "reply_bytes_orch",
        (int)r->reply_len, "settings", "rounds", (int)o->rounds, "slices", (int)o->slices, "warmup",
        (int)o->warmup, "calls", (int)o->calls, "inflight", (int)o->inflight, "calls_per_thread",
        (int)o->per_thread, "timeout_ms", (int)o->timeout_ms, "client_cpu_ns", "request_id",
        r->local.request_id_ns, "pack", r->local.pack_ns, "decode", r->local.decode_ns,
        "overhead_target_pct", BENCH_OVERHEAD_TARGET, "memory", memory_json(o, r), "rounds",
        rounds_json(o, r), "median", summary_json(o, r));
    if (!doc) {
        fprintf(stderr, "rpc_bench: cannot build the JSON document\n");
        return;
    }
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    putchar('\n');
    json_decref(doc);
}
