/*
 * bench_proc.c - /proc readers of rpc_bench (see bench_proc.h).
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
