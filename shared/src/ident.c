/*
 * ident.c - process identity from /proc and the kernel's boot id.
 * Thread-safe; every function reads the system afresh.
 */
#include "orch/ident.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* ORCH_ENOTFOUND only when the file does not exist (ENOENT); a failure to
 * open or read it for any other reason (EMFILE, ENFILE, EACCES, ENOMEM, EIO,
 * ESRCH...) is ORCH_EIO and says nothing about whether it exists; an empty
 * file is ORCH_EPROTO. */
static orch_err read_line(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? ORCH_ENOTFOUND : ORCH_EIO;
    char *ok = fgets(buf, (int)n, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (!ok)
        return failed ? ORCH_EIO : ORCH_EPROTO;
    buf[strcspn(buf, "\n")] = '\0';
    return ORCH_OK;
}

orch_err orch_proc_parse_stat(const char *line, uint64_t *out)
{
    /* "pid (comm) state f4 ... f22": comm may hold spaces and ')', so the
     * fields start after the LAST ')'. starttime is field 22, i.e. the 20th
     * field after comm. */
    const char *p = strrchr(line, ')');
    if (!p)
        return ORCH_EPROTO;
    p++;
    for (int field = 3; field < 22; field++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return ORCH_EPROTO;
        while (*p && *p != ' ')
            p++;
    }
    while (*p == ' ')
        p++;
    if (*p < '0' || *p > '9')
        return ORCH_EPROTO;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno || (*end != ' ' && *end != '\0'))
        return ORCH_EPROTO;
    *out = (uint64_t)v;
    return ORCH_OK;
}

orch_err orch_proc_start_ticks(pid_t pid, uint64_t *out)
{
    char path[64];
    char line[1024];
    if (pid <= 0)
        return ORCH_EINVAL;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    orch_err err = read_line(path, line, sizeof line);
    if (err)
        return err;
    return orch_proc_parse_stat(line, out);
}

orch_err orch_random_hex(char *out, size_t n)
{
    unsigned char buf[64];
    if (n > sizeof buf)
        return ORCH_EINVAL;
    if (getrandom(buf, n, 0) != (ssize_t)n)
        return ORCH_EIO;
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", buf[i]);
    out[2 * n] = '\0';
    return ORCH_OK;
}

orch_err orch_ident_init(const char *host_id, orch_ident *out)
{
    return orch_ident_init_from(host_id, NULL, out);
}

orch_err orch_ident_init_from(const char *host_id, const char *boot_id_path, orch_ident *out)
{
    orch_ident id;
    memset(&id, 0, sizeof id);
    if (host_id && host_id[0]) {
        if (strlen(host_id) >= sizeof id.host_id)
            return ORCH_ERANGE;
        memcpy(id.host_id, host_id, strlen(host_id) + 1);
    } else if (gethostname(id.host_id, sizeof id.host_id - 1) != 0) {
        return ORCH_EIO;
    }
    if (!boot_id_path || !boot_id_path[0])
        boot_id_path = ORCH_BOOT_ID_PATH_DEFAULT;
    orch_err err = read_line(boot_id_path, id.boot_id, sizeof id.boot_id);
    if (err)
        return err;
    id.pid = getpid();
    err = orch_proc_start_ticks(id.pid, &id.start_ticks);
    if (err)
        return err;
    err = orch_random_hex(id.instance_id, 16);
    if (err)
        return err;
    *out = id;
    return ORCH_OK;
}
