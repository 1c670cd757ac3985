/*
 * bench_proc.h - what a process uses, read from /proc: resident memory,
 * context switches and CPU time (summed over its live threads); the same for
 * a process tree, and the machine's CPU time and load.
 *
 * Every function reads the system afresh and is thread-safe. Figures of a
 * process that is gone or unreadable come back negative.
 */
#ifndef BENCH_PROC_H
#define BENCH_PROC_H

#include <stddef.h>
#include <sys/types.h>

typedef struct bench_use {
    long long switches; /* voluntary + involuntary; < 0: unreadable */
    long long cpu_ns;   /* time on a CPU (schedstat) */
} bench_use;

/* A field of /proc/<pid>/status in kB ("VmRSS", "VmHWM") as MiB; -1 when
 * unreadable. */
double bench_proc_mib(pid_t pid, const char *key);

/* Switches and CPU time so far of every live thread of `pid`. */
bench_use bench_proc_use(pid_t pid);

/* The same for the calling process, all threads (getrusage). */
bench_use bench_self_use(void);

/* Adds after - before to *acc; *acc becomes unknown ({-1, -1}) for good when
 * either sample is unknown or the counts went backwards. */
void bench_use_add(bench_use *acc, const bench_use *before, const bench_use *after);

/* A process and its children at one instant, each with what it used so far:
 * a PostgreSQL postmaster and its backends and helpers. */
#define BENCH_TREE_MAX 512
typedef struct bench_tree {
    int n; /* < 0: the root is gone */
    pid_t pid[BENCH_TREE_MAX];
    bench_use use[BENCH_TREE_MAX];
} bench_tree;

/* Reads `root` and its direct children (found by scanning /proc). */
void bench_tree_read(pid_t root, bench_tree *out);

/* What the tree used between two readings: for each process of `after`, its
 * use minus that in `before` (a process started in between counts from 0;
 * one that exited in between is lost). Unknown when either reading is. */
bench_use bench_tree_delta(const bench_tree *before, const bench_tree *after);

/* Machine-wide CPU time from /proc/stat, in clock ticks summed over the
 * CPUs: busy (neither idle nor iowait) and total. Zero when unreadable. */
typedef struct bench_cpu {
    unsigned long long busy, total;
} bench_cpu;
bench_cpu bench_cpu_read(void);

/* The first three fields of /proc/loadavg ("0.32 1.06 2.38"), or "?". */
void bench_loadavg(char *buf, size_t n);

#endif
