/*
 * lease_logic.h - the pure rules of the transition lease: input validation,
 * scope (kill switch and repo list), and the liveness verdict on an owner.
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

typedef struct lease_scope {
    bool enabled;         /* ORCH_TRANSITION_LEASE_ENABLED */
    const char *repos;    /* ORCH_TRANSITION_LEASE_REPOS, comma-separated */
    const char *own_repo; /* ORCH_ORCHESTRATOR_REPO, the scope when repos is empty */
} lease_scope;

/* Whether Acquire for `repo` writes a lease (false: inert, as switched off). */
bool lease_in_scope(const lease_scope *scope, const char *repo);

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

/* Judges an owner on this host from facts read from /proc: `proc_found`
 * (the pid exists) and its start ticks. Different boot id -> DEAD (rebooted);
 * no such pid -> DEAD; other start time -> DEAD (pid reused); else ALIVE. */
lease_liveness lease_judge_local(const lease_owner *owner, const char *my_boot_id, bool proc_found,
                                 uint64_t proc_start_ticks, const char **reason);

/* The ceiling must exceed the longest step a holder may legitimately take. */
bool lease_ceiling_ok(int64_t ceiling_s, int64_t step_timeout_s);

#endif
