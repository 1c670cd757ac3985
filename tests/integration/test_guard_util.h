/*
 * test_guard_util.h - helpers of the guard-service integration tests: a
 * guard-service on a fresh database wired to Plane and Telegram imitations,
 * typed GuardService calls, audit counts.
 */
#ifndef ORCH_TEST_GUARD_UTIL_H
#define ORCH_TEST_GUARD_UTIL_H

#include "harness.h"
#include "orch/v1/guard.pb-c.h"

#define GT_PROD         "11aa0000-0000-4000-8000-00000000prod"
#define GT_SANDBOX      "22bb0000-0000-4000-8000-0000sandbox1"
#define GT_KEY          "plane_api_LIVEa1b2c3d4e5f6g7h8i9j0"
#define GT_TOKEN        "7012345678:AAHliveTOKENk3yDoNotLeak_abcdefghij"
#define GT_PROD_CHAT    "-1001111111111"
#define GT_SANDBOX_CHAT "-1002222222222"

typedef struct gt_env {
    char db[512];
    th_svc guard;
    th_imitation plane, tg;
    orch_rpc_client *client;
} gt_env;

/* Starts both imitations and a guard-service configured with the
 * live-looking credentials, GT_PROD as production project and chat
 * GT_PROD_CHAT, GT_SANDBOX/GT_SANDBOX_CHAT as sandboxes, then `extra`
 * (NULL-terminated "K=V", may override any of these; ORCH_RUNTIME=...
 * selects another runtime). */
void gt_start(gt_env *e, const char *const *extra);
void gt_stop(gt_env *e);

typedef struct gt_reply {
    orch_code code;
    char message[512];
    bool duplicate;
    int32_t attempts;
} gt_reply;

gt_reply gt_set_direct(gt_env *e, const char *project, const char *issue, const char *state);
gt_reply gt_update_state(gt_env *e, const char *project, const char *issue, const char *name);
gt_reply gt_comment(gt_env *e, const char *project, const char *issue, const char *text,
                    const char *external_id);
gt_reply gt_notify(gt_env *e, const char *chat, const char *text);

/* Rows of guard_audit with the given decision ("allow"/"block"). */
int gt_audit_count(gt_env *e, const char *decision);

/* Fails the test if the guard's log, or `text`, contains a credential. */
void gt_assert_no_secret(gt_env *e, const char *text);

#endif
