/*
 * ident.h - the identity of a running process: host id, boot id, pid,
 * process start time and a random instance id per start.
 *
 * Liveness judgements are built on it: a process is the same process only if
 * host, boot id, pid and start time all match. The start time is the
 * kernel's clock-tick count since boot (field 22 of /proc/<pid>/stat), which
 * survives pid reuse checks. Thread-safe after orch_ident_init().
 */
#ifndef ORCH_IDENT_H
#define ORCH_IDENT_H

#include <stdint.h>
#include <sys/types.h>

#include "orch/err.h"

typedef struct orch_ident {
    char host_id[256];
    char boot_id[40]; /* /proc/sys/kernel/random/boot_id, 36 chars */
    pid_t pid;
    uint64_t start_ticks; /* process start, clock ticks since boot */
    char instance_id[33]; /* 128 random bits, lowercase hex */
} orch_ident;

#define ORCH_BOOT_ID_PATH_DEFAULT "/proc/sys/kernel/random/boot_id"

/* Fills `out` for the calling process. `host_id` may be NULL or empty: the
 * hostname is used. The boot id is read from ORCH_BOOT_ID_PATH_DEFAULT. */
orch_err orch_ident_init(const char *host_id, orch_ident *out) ORCH_NODISCARD;

/* The same, reading the boot id from `boot_id_path` (tests simulate a reboot
 * with a file of their own; NULL or "" means the kernel's). */
orch_err orch_ident_init_from(const char *host_id, const char *boot_id_path,
                              orch_ident *out) ORCH_NODISCARD;

/* Start time (clock ticks since boot) of process `pid` from /proc.
 * ORCH_ENOTFOUND only if /proc has no such pid (ENOENT): the process does not
 * exist. ORCH_EIO if /proc could not be read for another reason (out of
 * descriptors, permission, memory): nothing is known about the process.
 * ORCH_EPROTO if its stat line cannot be parsed. Only ORCH_ENOTFOUND (or
 * another start time) may ever be taken to mean "gone". */
orch_err orch_proc_start_ticks(pid_t pid, uint64_t *out) ORCH_NODISCARD;

/* Parses the start time out of the text of a /proc/<pid>/stat line (the comm
 * field may contain spaces and parentheses). Pure; exposed for tests. */
orch_err orch_proc_parse_stat(const char *line, uint64_t *out) ORCH_NODISCARD;

/* Fills `out` with `n` random bytes rendered as 2n hex chars + NUL. */
orch_err orch_random_hex(char *out, size_t n) ORCH_NODISCARD;

#endif
