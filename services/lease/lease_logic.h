/*
 * lease_logic.h - the pure rules of the transition lease: input validation
 * and the liveness verdict on an owner (its scope, which callers share, is
 * orch_lease_in_scope in orch/lease_client.h).
 *
 * No I/O: facts gathered elsewhere (this host's identity, /proc, the hosts
 * table, a remote probe) come in as arguments, so every rule is unit-tested
 * on its own. Thread-safe.
 */
#ifndef ORCH_LEASE_LOGIC_H
#define ORCH_LEASE_LOGIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEASE_MAX_FIELD 200 /* bytes of work item, repo, actor, transition */

typedef struct lease_owner {
    char host_id[256];
    char boot_id[64];
    int32_t pid;
    uint64_t start_ticks;
    char instance_id[64];
} lease_owner;

typedef enum lease_liveness {
    LEASE_ALIVE = 1,
    LEASE_DEAD = 2,
    LEASE_UNKNOWN = 3,
} lease_liveness;

/* Checks a text field: non-empty, at most LEASE_MAX_FIELD bytes, no control
 * characters. On failure writes a reason naming `name` into why. */
bool lease_valid_text(const char *name, const char *value, char *why, size_t n);

/* Checks an owner identity: host, boot id, instance present, pid > 0,
 * start ticks > 0. */
bool lease_valid_owner(const lease_owner *o, char *why, size_t n);

/* Same process: every identity field equal. */
bool lease_same_owner(const lease_owner *a, const lease_owner *b);

/* What a remote host's registration says about an owner on it. */
typedef struct lease_host_facts {
    bool registered;  /* the host has a row in `hosts` */
    char boot_id[64]; /* its registered boot id */
} lease_host_facts;

/* First step of judging an owner on another host, without asking it:
 * DEAD if the host's registered boot id differs from the owner's (the host
 * rebooted), UNKNOWN if the host never registered, else ALIVE meaning
 * "ask the host" (the caller then probes it). */
lease_liveness lease_judge_remote(const lease_owner *owner, const lease_host_facts *host,
                                  const char **reason);

/* What reading /proc/<pid>/stat told about a pid. */
typedef enum lease_proc_read {
    LEASE_PROC_FOUND = 1,      /* read; its start ticks are known */
    LEASE_PROC_ABSENT = 2,     /* ENOENT: no such process */
    LEASE_PROC_UNREADABLE = 3, /* any other failure (EMFILE, EACCES, ENOMEM...): no fact */
} lease_proc_read;

/* Judges an owner whose host id is this host's from facts read from /proc.
 * Different boot id -> DEAD (this host rebooted: host ids are unique, see
 * lease_host_decide); unreadable /proc -> UNKNOWN; no such pid -> DEAD;
 * other start time -> DEAD (pid reused); else ALIVE. */
lease_liveness lease_judge_local(const lease_owner *owner, const char *my_boot_id,
                                 lease_proc_read proc, uint64_t proc_start_ticks,
                                 const char **reason);

/* ProbeOwner's answer for (boot_id, pid, start ticks) asked by another
 * host: as lease_judge_local, except that a boot id other than this host's
 * is UNKNOWN (the caller reached the wrong host or an old registration; only
 * the hosts table may say that a host rebooted). */
lease_liveness lease_judge_probe(const char *asked_boot_id, const char *my_boot_id,
                                 lease_proc_read proc, uint64_t proc_start_ticks,
                                 uint64_t asked_start_ticks, const char **reason);

/* The caller's check of a ProbeOwner reply about `owner`: the answer counts
 * only if it came from the owner's host (reply host id) in the owner's boot
 * (reply boot id); any mismatch is UNKNOWN, never DEAD. */
lease_liveness lease_judge_probe_reply(const lease_owner *owner, const char *reply_host_id,
                                       const char *reply_boot_id, lease_liveness answer,
                                       const char **reason);

/* ---- host registration ----------------------------------------------------- */

/* The row of `hosts` for this host id, as read before registering. */
typedef struct lease_host_reg {
    bool exists;
    char boot_id[64];
    char instance_id[64];
    char rpc_url[256];
    char machine_id[64]; /* "" in rows written before migration 0010 */
    char pid_ns[64];     /* readlink of /proc/self/ns/pid, "" as machine_id */
    bool stopped;        /* its lease-service stopped cleanly (stopped_at set) */
    int64_t age_ms;      /* now() - seen_at, database clock */
    int64_t seen_us;     /* seen_at, microseconds since the epoch (database clock) */
} lease_host_reg;

typedef enum lease_host_verdict {
    LEASE_HOST_TAKE = 1,    /* register (insert or take the row over) */
    LEASE_HOST_WAIT = 2,    /* read again later: not yet stale */
    LEASE_HOST_REFUSE = 3,  /* another live instance holds this host id */
    LEASE_HOST_FOREIGN = 4, /* registered by another machine or PID namespace */
} lease_host_verdict;

/* What this lease-service is: its kernel (boot id), its machine (the
 * contents of ORCH_MACHINE_ID_PATH, /etc/machine-id) and its PID namespace
 * (readlink of /proc/self/ns/pid, e.g. "pid:[4026531836]"). Borrowed. */
typedef struct lease_host_self {
    const char *boot_id;
    const char *machine_id;
    const char *pid_ns;
} lease_host_self;

/* Decides whether this lease-service (`me`) may register over `reg`. The
 * rule that tells a reboot from another machine, for rows that carry a
 * machine id:
 * - no row: TAKE;
 * - another machine id: FOREIGN, whether the row is live, stopped or stale
 *   (another machine with the same ORCH_HOST_ID; only an operator may say
 *   the machine was replaced, see the runbook);
 * - the same machine id and another boot id: TAKE at once, the machine
 *   rebooted (every process of the old boot is gone, in every namespace);
 * - the same machine id and boot id, another PID namespace: FOREIGN (two
 *   containers or compose projects on one kernel with one host id);
 * - the same all three: TAKE, a restart.
 * Rows without a machine id (written before migration 0010) keep the rule
 * of boot ids and staleness:
 * - the same boot id (a restart on this kernel), or a row whose
 *   lease-service stopped cleanly: TAKE;
 * - another boot id whose seen_at is older than `stale_ms` (its lease-service
 *   refreshes seen_at every stale_ms / LEASE_HOST_BEATS_PER_STALE): TAKE, the
 *   host rebooted;
 * - another boot id, fresh: WAIT while `first_seen_us` (seen_us at the first
 *   read, -1 at the first read itself) is unchanged; REFUSE once it moved,
 *   since something refreshes it: a live lease-service elsewhere. */
lease_host_verdict lease_host_decide(const lease_host_reg *reg, const lease_host_self *me,
                                     int64_t stale_ms, int64_t first_seen_us, const char **reason);

#define LEASE_HOST_BEATS_PER_STALE 5

/* Whether the host part of an NNG tcp URL (tcp://HOST:PORT, tcp4, tcp6) is
 * a wildcard ("", "*", 0.0.0.0, [::]) or loopback (127/8, localhost, [::1]):
 * an address another host cannot dial. Unparsable URLs count as local. */
bool lease_url_is_wildcard(const char *url);
bool lease_url_is_local(const char *url);

/* Chooses the address this host registers for other hosts' probes:
 * `advertise` if set (it must not be a wildcard), else `listen`, which must
 * not be a wildcard or loopback address when `other_hosts` > 0. On failure
 * writes why into `why` and returns NULL. */
const char *lease_advertise_url(const char *listen, const char *advertise, long other_hosts,
                                char *why, size_t n);

/* The ceiling must exceed the longest step a holder may legitimately take. */
bool lease_ceiling_ok(int64_t ceiling_s, int64_t step_timeout_s);

#endif
