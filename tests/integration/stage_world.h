/*
 * stage_world.h - the outside world of stage-service's integration tests:
 * an HTTP server on loopback, in the test process, that imitates Gitea's
 * merge API and the image-build and deploy hooks, and counts every call;
 * plus a lease-service and stage-service pair on a fresh database.
 *
 * Gitea: POST /api/v1/repos/{owner}/{repo}/pulls/{n}/merge merges once
 * (200), then answers 405 like Gitea for a merged pull request; a pull
 * request marked unmergeable answers 405 and stays unmerged; GET on the same
 * path answers 204 (merged) or 404. Hooks: POST /hooks/image and
 * /hooks/deploy record each Idempotency-Key once ("starts"), count every
 * call, and in fenced mode refuse (409) an epoch lower than the highest
 * seen for the item; a check_only request for a key never seen answers 404
 * and starts nothing. A delay can be set for the next merges and hook
 * answers, and Gitea can be made to answer 503.
 */
#ifndef ORCH_TEST_STAGE_WORLD_H
#define ORCH_TEST_STAGE_WORLD_H

#include <stdbool.h>
#include <stdint.h>

#include "harness.h"
#include "orch/v1/stage.pb-c.h"

typedef struct sw_counts {
    int merge_calls, merges, merge_checks;
    int image_calls, image_starts;
    int deploy_calls, deploy_starts;
    int hook_refused_stale;
} sw_counts;

/* Starts the imitation; writes its base URL ("http://127.0.0.1:PORT"). */
void sw_fake_start(char *base, size_t n);
void sw_fake_stop(void);
/* Calls for pull request `pr` (any repo). */
sw_counts sw_counts_for_pr(uint64_t pr);
/* Calls for work item `item` (hooks). */
sw_counts sw_counts_for_item(const char *item);
void sw_set_unmergeable(uint64_t pr);
void sw_set_merge_delay_ms(int ms);
/* Hooks answer 2xx only after `ms` (the call is counted, its key recorded,
 * at once): a caller with a shorter timeout sees it unknown. */
void sw_set_hook_delay_ms(int ms);
/* Gitea answers 503 to every call (merge and is-merged) while `down`. */
void sw_set_gitea_down(bool down);
void sw_set_fenced(bool on);

typedef struct sw_world {
    char db[512];
    char fake[128];
    th_svc lease, stage;
    orch_rpc_client *client; /* to stage */
    orch_rpc_client *lease_client;
} sw_world;

/* Fresh database, the imitation, lease-service and stage-service (with
 * the extra "K=V" env for stage, NULL-terminated, may be NULL). The lease
 * applies to repo "org/app" (ORCH_TRANSITION_LEASE_REPOS). */
void sw_up(sw_world *w, const char *const *stage_env);
/* Starts another stage-service on the same database and lease-service. */
void sw_stage_start(sw_world *w, th_svc *s, const char *const *env);
void sw_down(sw_world *w);

/* Typed calls; `code` is the RPC status. AdvanceStage's budget: */
extern uint32_t sw_call_timeout_ms;
orch_code sw_create(orch_rpc_client *c, const char *item, const char *repo, uint64_t pr);
typedef struct sw_adv {
    orch_code code;
    char message[512];
    int outcome; /* Orch__V1__AdvanceStageReply__Outcome */
    char stage[32];
    uint64_t epoch;
    char first_failure[256];
} sw_adv;
sw_adv sw_advance(orch_rpc_client *c, const char *item, const char *from, const char *to,
                  const char *actor, const char *evidence);
sw_adv sw_rollback(orch_rpc_client *c, const char *item, const char *from, const char *reason);
/* Takes the item's lease (repo org/app, review->testing) as this test
 * process, a live owner, under `actor`, as an actor in the middle of a
 * transition holds it; fails the test unless granted. Returns the epoch. */
uint64_t sw_hold_lease(sw_world *w, const char *item, const char *actor);
/* Releases that grant; fails the test unless released. */
void sw_free_lease(sw_world *w, const char *item, uint64_t epoch);
/* The first column of the first row of `sql` as a number, -1 if none. */
long long sw_sql_num(const sw_world *w, const char *sql);
/* The item's stage ("" if none) from the database. */
void sw_stage_of(const sw_world *w, const char *item, char *out, size_t n);
/* Moves an item straight to `stage` through the pipeline with passing
 * verdicts (used to set up a test), failing the test if it cannot. */
void sw_walk_to(sw_world *w, const char *item, const char *stage);

#endif
