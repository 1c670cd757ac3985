/*
 * bench_proc.h - what a process uses, read from /proc: resident memory,
 * context switches and CPU time (summed over its live threads).
 *
 * Every function reads the system afresh and is thread-safe. Figures of a
 * process that is gone or unreadable come back negative.
 */
#ifndef BENCH_PROC_H
#define BENCH_PROC_H

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

#endif
