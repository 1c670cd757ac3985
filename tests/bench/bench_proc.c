/*
 * bench_proc.c - /proc readers of the benchmarks (see bench_proc.h).
 * Files are opened, read and closed within each call.
 */
#include "bench_proc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* The number after "key:" in a /proc status file; -1 when unreadable. */
static long long status_value(const char *path, const char *key)
{
    char line[256];
    long long v = -1;
    size_t klen = strlen(key);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            char *end;
            errno = 0;
            v = strtoll(line + klen + 1, &end, 10);
            if (errno || end == line + klen + 1 || v < 0)
                v = -1;
            break;
        }
    }
    fclose(f);
    return v;
}

/* CPU time in ns of one thread, the first field of its schedstat; -1 when
 * unreadable. */
static long long schedstat_ns(const char *path)
{
    long long ns = -1;
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    if (fscanf(f, "%lld", &ns) != 1)
        ns = -1;
    fclose(f);
    return ns;
}

double bench_proc_mib(pid_t pid, const char *key)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    long long kib = status_value(path, key);
    return kib < 0 ? -1.0 : (double)kib / 1024.0;
}

bench_use bench_proc_use(pid_t pid)
{
    char path[300];
    bench_use u = { 0, 0 };
    struct dirent *de;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return (bench_use){ -1, -1 };
    while (u.switches >= 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%.20s/status", (int)pid, de->d_name);
        long long v = status_value(path, "voluntary_ctxt_switches");
        long long nv = status_value(path, "nonvoluntary_ctxt_switches");
        snprintf(path, sizeof path, "/proc/%d/task/%.20s/schedstat", (int)pid, de->d_name);
        long long ns = schedstat_ns(path);
        if (v < 0 || nv < 0 || ns < 0)
            u = (bench_use){ -1, -1 };
        else
            u = (bench_use){ u.switches + v + nv, u.cpu_ns + ns };
    }
    closedir(d);
    return u;
}

bench_use bench_self_use(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return (bench_use){ -1, -1 };
    return (bench_use){ ru.ru_nvcsw + ru.ru_nivcsw,
                        (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                            (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL };
}

void bench_use_add(bench_use *acc, const bench_use *before, const bench_use *after)
{
    if (acc->switches >= 0 && before->switches >= 0 && after->switches >= before->switches) {
        acc->switches += after->switches - before->switches;
        acc->cpu_ns += after->cpu_ns - before->cpu_ns;
    } else {
        *acc = (bench_use){ -1, -1 };
    }
}

/* The parent pid of `pid` from its stat line; -1 when unreadable. */
static pid_t parent_of(const char *pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%.20s/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* pid (comm) state ppid ...: comm may hold spaces and parentheses. */
    const char *p = strrchr(line, ')');
    int ppid;
    char state;
    if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2)
        return -1;
    return (pid_t)ppid;
}

void bench_tree_read(pid_t root, bench_tree *out)
{
    out->n = 0;
    out->use[0] = bench_proc_use(root);
    if (out->use[0].switches < 0) {
        out->n = -1;
        return;
    }
    out->pid[out->n++] = root;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && out->n < BENCH_TREE_MAX && (de = readdir(d)) != NULL) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9' || parent_of(de->d_name) != root)
            continue;
        pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);
        bench_use u = bench_proc_use(pid);
        if (u.switches < 0)
            continue; /* exited meanwhile */
        out->pid[out->n] = pid;
        out->use[out->n++] = u;
    }
    if (d)
        closedir(d);
}

bench_use bench_tree_delta(const bench_tree *before, const bench_tree *after)
{
    bench_use d = { 0, 0 };
    if (before->n < 0 || after->n < 0)
        return (bench_use){ -1, -1 };
    for (int i = 0; i < after->n; i++) {
        bench_use b = { 0, 0 };
        for (int j = 0; j < before->n; j++) {
            if (before->pid[j] == after->pid[i]) {
                b = before->use[j];
                break;
            }
        }
        /* A pid reused in between would count backwards: count it from 0. */
        if (after->use[i].switches < b.switches || after->use[i].cpu_ns < b.cpu_ns)
            b = (bench_use){ 0, 0 };
        d.switches += after->use[i].switches - b.switches;
        d.cpu_ns += after->use[i].cpu_ns - b.cpu_ns;
    }
    return d;
}

bench_cpu bench_cpu_read(void)
{
    bench_cpu c = { 0, 0 };
    unsigned long long v[10] = { 0 };
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return c;
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                     &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (got < 4)
        return c;
    /* user nice system idle iowait irq softirq steal guest guest_nice; the
     * guest times are already inside user and nice. */
    for (int i = 0; i < 8; i++)
        c.total += v[i];
    c.busy = c.total - v[3] - v[4];
    return c;
}

void bench_loadavg(char *buf, size_t n)
{
    double a = 0, b = 0, c = 0;
    FILE *f = fopen("/proc/loadavg", "re");
    int got = f ? fscanf(f, "%lf %lf %lf", &a, &b, &c) : 0;
    if (f)
        fclose(f);
    if (got == 3)
        snprintf(buf, n, "%.2f %.2f %.2f", a, b, c);
    else
        snprintf(buf, n, "?");
}
