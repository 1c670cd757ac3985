/*
 * launcher_logic.h - launcher-service's pure rules: roles and the route table
 * (which stage a finished job advances its item to, on which verdict), spawn
 * input checks, the agent argv template, the agent's output (verdict lines
 * and usage JSON), and the reaper's tier decision.
 *
 * No I/O, no allocation except where stated; thread-safe.
 */
#ifndef ORCH_LAUNCHER_LOGIC_H
#define ORCH_LAUNCHER_LOGIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/verdict.h"

#define LAUNCHER_MAX_FIELD   200     /* work item, stage, reason */
#define LAUNCHER_MAX_PROMPT  1048576 /* bytes */
#define LAUNCHER_MAX_WORKDIR 1024
#define LAUNCHER_MAX_ARGS    64
#define LAUNCHER_NROLES      6

extern const char *const launcher_roles[LAUNCHER_NROLES];

/* The role's index in launcher_roles, or -1. */
int launcher_role_index(const char *role);

/* One row of the route table: a job of `role` spawned while its item was in
 * `from` moves the item to `to` through stage-service, asked by `actor`,
 * when the job exited 0 and (if `key` is set) printed `key` with one of the
 * `pass` values (case-insensitive). `axis` is 'C' when the verdict decides
 * the item's path, 'P' when the job produces an artifact that later gates
 * judge; `mechanical` when a deterministic program could decide the verdict.
 * docs/architecture/llm-call-sites.md is the inventory of these rows. */
typedef struct launcher_route {
    const char *role;
    const char *from;
    const char *to;
    const char *actor;
    const char *key;     /* NULL: no verdict consumed */
    const char *pass[3]; /* NULL-terminated */
    char axis;           /* 'C' or 'P' */
    bool mechanical;
} launcher_route;

extern const launcher_route launcher_routes[];
extern const size_t launcher_nroutes;

/* The route of a job of `role` spawned in `stage` (empty: the role's default
 * stage), or NULL when the pair has none. */
const launcher_route *launcher_route_find(const char *role, const char *stage);
/* The stage a job of `role` is spawned in when Spawn names none. */
const char *launcher_default_stage(const char *role);

/* The classification of a route by the two-bit predicate:
 * "avoidable" (C and mechanical), "keep" (C, not mechanical),
 * "not-control-path" (P). */
const char *launcher_route_class(const launcher_route *r);

typedef enum launcher_advance {
    LAUNCHER_ADVANCE,     /* ask stage-service */
    LAUNCHER_NOT_ADVANCE, /* the job failed or its verdict says no */
} launcher_advance;

/* Whether a finished job asks to advance; `why` gets a short reason. */
launcher_advance launcher_decide(const launcher_route *r, bool succeeded, const orch_verdicts *vs,
                                 char *why, size_t n);

/* Spawn input: returns true, or false with a message naming the field.
 * `workdir_is_dir` is what the caller found on disk. */
typedef struct launcher_spawn_in {
    const char *role, *work_item, *stage, *prompt, *workdir;
    size_t prompt_len;
    uint32_t timeout_s;
    bool workdir_is_dir;
} launcher_spawn_in;
bool launcher_valid_spawn(const launcher_spawn_in *in, int64_t max_timeout_s, char *why, size_t n);

/* Free text (a cancel reason): at most LAUNCHER_MAX_FIELD bytes, no
 * control characters, valid UTF-8 not required but NUL-free. */
bool launcher_valid_text(const char *s, bool may_be_empty);

/* Expands an argv template: words split on spaces and tabs, each of
 * {role} {work_item} {job_id} {workdir} {stage} replaced. `buf` (n bytes)
 * holds the words; argv[] (LAUNCHER_MAX_ARGS + 1 entries) points into it
 * and ends with NULL. Returns the word count, 0 for an empty template, -1
 * when the result does not fit. */
typedef struct launcher_vars {
    const char *role, *work_item, *job_id, *workdir, *stage;
} launcher_vars;
int launcher_argv_build(const char *tmpl, const launcher_vars *v, char *buf, size_t n, char **argv);

/* What the agent's stdout said: verdicts and usage. */
typedef struct launcher_usage {
    bool usage_known;
    uint64_t input_tokens, output_tokens;
    bool cost_known;
    double cost_usd;
    char model[128];
} launcher_usage;

/* Scans an agent's stdout (`len` bytes): every line that is a JSON object
 * is read as usage (see launcher.md, "usage JSON"), its "result" string
 * scanned for verdict lines; every other line may be a verdict line. */
void launcher_output_scan(const char *text, size_t len, orch_verdicts *vs, launcher_usage *u);

/* The reaper's decision on one running job. */
typedef enum launcher_reap {
    LAUNCHER_REAP_NONE,  /* healthy */
    LAUNCHER_REAP_TIER2, /* its process is gone: finish as failed */
    LAUNCHER_REAP_TIER3, /* over the ceiling: kill whatever else is true */
    LAUNCHER_REAP_DEFER, /* gone, but the lease it holds has a live owner */
} launcher_reap;

typedef enum launcher_lease_owner {
    LAUNCHER_LEASE_NONE,    /* the job holds no lease */
    LAUNCHER_LEASE_ALIVE,   /* held; its owner lives */
    LAUNCHER_LEASE_DEAD,    /* held; its owner is gone */
    LAUNCHER_LEASE_UNKNOWN, /* held, or could not be read; owner not judged */
} launcher_lease_owner;

launcher_reap launcher_reap_decide(int64_t age_s, int64_t ceiling_s, bool process_alive,
                                   launcher_lease_owner lease);

#endif
