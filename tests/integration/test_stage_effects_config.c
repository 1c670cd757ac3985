/*
 * test_stage_effects_config.c - a configuration or availability problem of
 * the forge is never a verdict on the change: a malformed ORCH_GITEA_URL
 * (or hook URL) refuses start-up with a message naming it; a forge the
 * request never reached (refused by the test runtime's loopback-only
 * layer, or a refused connection) leaves the item where it is, its merge
 * recorded as not done, to be tried again; nothing is rolled back.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_world.h"

static sw_world W;

static void down(void)
{
    sw_down(&W);
}

static char *sql(const char *q)
{
    return th_sql(W.db, q);
}

Test(stage_effects_config, a_malformed_effect_url_refuses_start_up_naming_it, .fini = down,
     .timeout = 200)
{
    sw_up(&W, NULL);
    static const char *const bad[] = {
        "ORCH_GITEA_URL=gitea.local:3000",         /* no scheme */
        "ORCH_GITEA_URL=http://",                  /* no host */
        "ORCH_GITEA_URL=http://gitea:3000/?a=1",   /* a query */
        "ORCH_GITEA_URL=http://git ea:3000",       /* a blank */
        "ORCH_GITEA_URL=http://gitea:99999",       /* a port out of range */
        "ORCH_DEPLOY_HOOK_URL=ftp://deploy/start", /* not http(s) */
    };
    char lease_url[96];
    snprintf(lease_url, sizeof lease_url, "ORCH_LEASE_RPC_URL=%s", W.lease.rpc_url);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *env[] = { lease_url, "ORCH_TRANSITION_LEASE_REPOS=org/app", bad[i], NULL };
        th_svc s;
        th_svc_start(&s, "stage", W.db, env, false);
        int rc = th_svc_stop(&s, 0, 20000); /* signal 0: wait for the exit */
        if (rc != 1)
            th_svc_dump_log(&s);
        cr_assert_eq(rc, 1, "%s: stage-service must refuse to start (exit %d)", bad[i], rc);
        char var[64];
        snprintf(var, sizeof var, "%.*s", (int)(strchr(bad[i], '=') - bad[i]), bad[i]);
        cr_assert(th_svc_log_has(&s, var) && th_svc_log_has(&s, "is not a usable URL"),
                  "%s: the log must name the variable and say why", bad[i]);
    }
    /* A trailing slash is a usable base. */
    const char *ok[] = { lease_url, "ORCH_GITEA_URL=http://127.0.0.1:3000/", NULL };
    th_svc s;
    th_svc_start(&s, "stage", W.db, ok, true);
    cr_assert_eq(th_svc_stop(&s, SIGTERM, 10000), 0);
}

/* The merge of ORCH-401 at review->testing, with the forge at `url`. */
static void merge_against(const char *url)
{
    char gitea[200];
    snprintf(gitea, sizeof gitea, "ORCH_GITEA_URL=%s", url);
    const char *env[] = { gitea, NULL };
    sw_up(&W, env);
    cr_assert_eq(sw_create(W.client, "ORCH-401", "org/app", 9401), ORCH_CODE_OK);
    sw_walk_to(&W, "ORCH-401", "review");
    for (int attempt = 0; attempt < 2; attempt++) {
        sw_adv a = sw_advance(W.client, "ORCH-401", "review", "testing", "monitor",
                              "review_verdict: APPROVE");
        cr_assert_eq(a.code, ORCH_CODE_OK, "%s", a.message);
        cr_assert_neq(a.outcome, ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ROLLED_BACK,
                      "an unreachable forge rolled the item back: %s", a.first_failure);
        cr_assert_eq(a.outcome, ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_EFFECT_FAILED,
                     "attempt %d: outcome %d", attempt, a.outcome);
        cr_assert_str_eq(a.stage, "review");
    }
    char *cycle = sql("SELECT cycle FROM tasks WHERE work_item = 'ORCH-401'");
    cr_assert_str_eq(cycle, "0", "no rollback: the cycle did not move");
    free(cycle);
    char *row = sql("SELECT outcome || ' ' || detail FROM side_effects"
                    " WHERE work_item = 'ORCH-401' AND effect = 'merge_pr'");
    cr_assert(row && strncmp(row, "failed ", 7) == 0 && strstr(row, "not sent"),
              "the merge is recorded as not done, to try again: %s", row ? row : "(none)");
    free(row);
    char *hist = sql("SELECT count(*) FROM stage_history h JOIN tasks t ON t.id = h.task_id"
                     " WHERE t.work_item = 'ORCH-401' AND h.to_stage = 'development'"
                     " AND h.from_stage = 'review'");
    cr_assert_str_eq(hist, "0");
    free(hist);
}

Test(stage_effects_config, a_forge_refused_by_loopback_only_mode_does_not_roll_back, .fini = down,
     .timeout = 120)
{
    /* 192.0.2.0/24 is TEST-NET-1: the test runtime refuses it before a
     * socket exists. */
    merge_against("http://192.0.2.10:3000");
}

Test(stage_effects_config, a_refused_connection_to_the_forge_does_not_roll_back, .fini = down,
     .timeout = 120)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", th_free_port()); /* nothing listens */
    merge_against(url);
}
