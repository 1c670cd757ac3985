/*
 * stage_effects.c - merge, ratchet, image rebuild, deploy start (see
 * stage_effects.h).
 */
#include "stage_effects.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "orch/clock.h"
#include "orch/httpc.h"
#include "orch/log.h"

const char *stage_effect_outcome_name(stage_effect_outcome o)
{
    switch (o) {
    case STAGE_EFFECT_OK: return "ok";
    case STAGE_EFFECT_UNKNOWN: return "unknown";
    case STAGE_EFFECT_FAILED:
    case STAGE_EFFECT_ERROR: return "failed";
    }
    return "unknown";
}

void stage_effect_idempotency_key(const stage_effect_call *call, char *out, size_t n)
{
    snprintf(out, n, "%s/%s/%s/%d", call->task->work_item, call->transition,
             stage_effect_name(call->effect), call->task->cycle);
}

/* The request budget: the configured effect timeout. Not the caller's
 * deadline: an effect cut short by an impatient caller would be left
 * unknown while the outside system still works on it; the caller's retry
 * meanwhile finds the lease held and defers. */
static uint32_t budget(const stage_effects_cfg *cfg, const stage_effect_call *call)
{
    (void)call;
    return cfg->timeout_ms;
}

#define RATCHET_BUDGET_MS 10000

uint64_t stage_effect_max_ms(const stage_effects_cfg *cfg, stage_effect_id e)
{
    uint64_t t = cfg->timeout_ms;
    switch (e) {
    case STAGE_EFF_MERGE_PR: return 3 * t;
    case STAGE_EFF_COVERAGE_RATCHET: return RATCHET_BUDGET_MS + STAGE_EFFECT_RECORD_SLACK_MS;
    case STAGE_EFF_IMAGE_REBUILD:
    case STAGE_EFF_DEPLOY_START: return t;
    case STAGE_EFF_COUNT: break;
    }
    return 3 * t;
}

uint64_t stage_effect_claim_expiry_ms(const stage_effects_cfg *cfg, stage_effect_id e)
{
    return STAGE_EFFECT_START_WINDOW_MS + stage_effect_max_ms(cfg, e) +
           STAGE_EFFECT_RECORD_BUDGET_MS + STAGE_EFFECT_RECORD_SLACK_MS +
           STAGE_EFFECT_TAKEOVER_MARGIN_MS;
}

/* A request that got no HTTP answer. Never a verdict on the change: a
 * request that certainly never left (bad URL, refused destination, no
 * connection: a configuration or availability problem) did not happen and
 * is tried again by the next attempt; one that may have reached the peer
 * (timeout, connection lost) is unknown and resolved by the next attempt. */
static stage_effect_outcome transport_outcome(bool unsent, const char *what, const char *why,
                                              char *detail, size_t dn)
{
    if (unsent)
        snprintf(detail, dn, "%s not sent (%s): retried by the next attempt", what, why);
    else
        snprintf(detail, dn, "%s: %s", what, why);
    return stage_logic_transport_outcome(unsent);
}

/* ---- Gitea ------------------------------------------------------------- */

static bool merge_url(const stage_effects_cfg *cfg, const stage_task *t, bool check, char *url,
                      size_t n)
{
    if (!strchr(t->repo, '/'))
        return false;
    /* "http://gitea:3000/" and "http://gitea:3000" are the same base. */
    size_t bl = strlen(cfg->gitea_url);
    while (bl > 0 && cfg->gitea_url[bl - 1] == '/')
        bl--;
    int w = snprintf(url, n, "%.*s/api/v1/repos/%s/pulls/%llu/merge", (int)bl, cfg->gitea_url,
                     t->repo, (unsigned long long)t->pr_number);
    (void)check;
    return w > 0 && (size_t)w < n;
}

/* GET .../merge: 204 merged, 404 not merged. */
static stage_effect_outcome gitea_is_merged(const stage_effects_cfg *cfg,
                                            const stage_effect_call *call, bool *merged,
                                            char *detail, size_t dn)
{
    char url[1024], auth[600];
    if (!merge_url(cfg, call->task, true, url, sizeof url)) {
        snprintf(detail, dn, "repo %s has no owner: cannot address its pull request",
                 call->task->repo);
        return STAGE_EFFECT_ERROR;
    }
    snprintf(auth, sizeof auth, "Authorization: token %s", cfg->gitea_token);
    const char *hdrs[] = { auth, "Accept: application/json", NULL };
    orch_httpc_req req = { "GET", url, hdrs, NULL, 0, budget(cfg, call) };
    orch_httpc_resp resp;
    char why[256];
    orch_err err = orch_httpc_do(&req, &resp, why, sizeof why);
    if (err) {
        snprintf(detail, dn, "gitea is-merged check: %s", why);
        return STAGE_EFFECT_UNKNOWN;
    }
    stage_effect_outcome o = STAGE_EFFECT_OK;
    if (resp.status == 204) {
        *merged = true;
    } else if (resp.status == 404) {
        *merged = false;
    } else {
        snprintf(detail, dn, "gitea is-merged check answered HTTP %ld", resp.status);
        o = STAGE_EFFECT_UNKNOWN;
    }
    orch_httpc_resp_free(&resp);
    return o;
}

/* A merge whose previous attempt may have merged: asks Gitea first.
 * *settled with the outcome when the answer ends the call (merged, Gitea
 * cannot say, or check_only and not merged: it did not happen); false:
 * not merged, merge now. */
static stage_effect_outcome merge_resolve(const stage_effects_cfg *cfg,
                                          const stage_effect_call *call, bool *settled,
                                          char *detail, size_t dn)
{
    const stage_task *t = call->task;
    bool merged = false;
    stage_effect_outcome o = gitea_is_merged(cfg, call, &merged, detail, dn);
    *settled = true;
    if (o != STAGE_EFFECT_OK)
        return o;
    if (merged) {
        snprintf(detail, dn, "pull request #%llu of %s was already merged",
                 (unsigned long long)t->pr_number, t->repo);
        return STAGE_EFFECT_OK;
    }
    if (call->check_only) {
        snprintf(detail, dn,
                 "pull request #%llu of %s is not merged: the merge did not happen "
                 "(asked before a rollback or cancel; not merged now)",
                 (unsigned long long)t->pr_number, t->repo);
        return STAGE_EFFECT_FAILED;
    }
    *settled = false;
    return STAGE_EFFECT_OK;
}

/* What Gitea's answer `st` (body excerpt `excerpt`) to the merge of `call`
 * means; a refusal is checked with Gitea (already merged or not mergeable:
 * only the forge knows which). */
static stage_effect_outcome merge_answered(const stage_effects_cfg *cfg,
                                           const stage_effect_call *call, long st,
                                           const char *excerpt, char *detail, size_t dn)
{
    const stage_task *t = call->task;
    bool merged = false;
    switch (stage_logic_merge_answer(st)) {
    case STAGE_MERGE_DONE:
        snprintf(detail, dn, "merged pull request #%llu of %s", (unsigned long long)t->pr_number,
                 t->repo);
        return STAGE_EFFECT_OK;
    case STAGE_MERGE_CHECK: {
        stage_effect_outcome o = gitea_is_merged(cfg, call, &merged, detail, dn);
        if (o != STAGE_EFFECT_OK)
            return o;
        if (merged) {
            snprintf(detail, dn, "pull request #%llu of %s was already merged (HTTP %ld)",
                     (unsigned long long)t->pr_number, t->repo, st);
            return STAGE_EFFECT_OK;
        }
        snprintf(detail, dn, "gitea refused the merge (HTTP %ld): %s", st, excerpt);
        return STAGE_EFFECT_FAILED;
    }
    case STAGE_MERGE_REFUSED:
        /* The merge did not happen, and says nothing about the change
         * itself: no rollback; the next attempt runs it again. */
        snprintf(detail, dn, "gitea did not merge (HTTP %ld): %s", st, excerpt);
        return STAGE_EFFECT_ERROR;
    case STAGE_MERGE_UNKNOWN: break;
    }
    snprintf(detail, dn, "gitea merge answered HTTP %ld", st);
    return STAGE_EFFECT_UNKNOWN;
}

static stage_effect_outcome gitea_merge(const stage_effects_cfg *cfg, const stage_effect_call *call,
                                        char *detail, size_t dn)
{
    const stage_task *t = call->task;
    if (!cfg->gitea_url[0]) {
        snprintf(detail, dn, "ORCH_GITEA_URL is not set: cannot merge");
        return STAGE_EFFECT_ERROR;
    }
    bool settled = false;
    if (call->resolve) {
        stage_effect_outcome o = merge_resolve(cfg, call, &settled, detail, dn);
        if (settled)
            return o;
    }
    char url[1024], auth[600], key[600], idem[700], body[256];
    if (!merge_url(cfg, t, false, url, sizeof url)) {
        snprintf(detail, dn, "repo %s has no owner: cannot address its pull request", t->repo);
        return STAGE_EFFECT_ERROR;
    }
    snprintf(auth, sizeof auth, "Authorization: token %s", cfg->gitea_token);
    stage_effect_idempotency_key(call, key, sizeof key);
    snprintf(idem, sizeof idem, "Idempotency-Key: %s", key);
    int bl = snprintf(body, sizeof body, "{\"Do\":\"%s\",\"merge_when_checks_succeed\":false}",
                      cfg->merge_style);
    const char *hdrs[] = { auth, idem, "Content-Type: application/json", "Accept: application/json",
                           NULL };
    bool unsent = false;
    orch_httpc_req req = { "POST", url, hdrs, body, (size_t)bl, budget(cfg, call) };
    orch_httpc_resp resp;
    char why[256];
    orch_err err = orch_httpc_do_ex(&req, &resp, &unsent, why, sizeof why);
    if (err)
        return transport_outcome(unsent, "gitea merge", why, detail, dn);
    long st = resp.status;
    char excerpt[160];
    snprintf(excerpt, sizeof excerpt, "%.150s", resp.body ? resp.body : "");
    orch_httpc_resp_free(&resp);
    return merge_answered(cfg, call, st, excerpt, detail, dn);
}

/* ---- hooks ------------------------------------------------------------- */

/* POSTs effect call->effect (image rebuild or deploy start) to its hook;
 * `digest` (may be NULL) receives the digest an image build answers. */
static stage_effect_outcome hook_post(const stage_effects_cfg *cfg, const stage_effect_call *call,
                                      char *detail, size_t dn, char *digest, size_t digest_len)
{
    bool image = call->effect == STAGE_EFF_IMAGE_REBUILD;
    const char *url = image ? cfg->image_hook_url : cfg->deploy_hook_url;
    const char *var = image ? "ORCH_IMAGE_HOOK_URL" : "ORCH_DEPLOY_HOOK_URL";
    if (!url[0]) {
        snprintf(detail, dn, "%s is not set: cannot run %s", var, stage_effect_name(call->effect));
        return STAGE_EFFECT_ERROR;
    }
    char key[600], idem[700], epoch[64], auth[600];
    stage_effect_idempotency_key(call, key, sizeof key);
    snprintf(idem, sizeof idem, "Idempotency-Key: %s", key);
    snprintf(epoch, sizeof epoch, "X-Orch-Lease-Epoch: %llu", (unsigned long long)call->epoch);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", cfg->hook_token);
    /* check_only: a hook that knows the key answers its first outcome; one
     * that honours the flag answers 404 for a key it never saw (it did not
     * happen) instead of starting it now. */
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:b, s:b}", "work_item", call->task->work_item,
                  "repo", call->task->repo, "transition", call->transition, "effect",
                  stage_effect_name(call->effect), "epoch", (json_int_t)call->epoch,
                  "idempotency_key", key, "retry", call->resolve, "check_only", call->check_only);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!body) {
        snprintf(detail, dn, "out of memory");
        return STAGE_EFFECT_FAILED;
    }
    const char *hdrs[] = { idem, epoch, "Content-Type: application/json",
                           cfg->hook_token[0] ? auth : NULL, NULL };
    bool unsent = false;
    orch_httpc_req req = { "POST", url, hdrs, body, strlen(body), budget(cfg, call) };
    orch_httpc_resp resp;
    char why[256];
    orch_err err = orch_httpc_do_ex(&req, &resp, &unsent, why, sizeof why);
    free(body);
    if (err)
        return transport_outcome(unsent, stage_effect_name(call->effect), why, detail, dn);
    long st = resp.status;
    stage_effect_outcome out = stage_logic_hook_outcome(st);
    if (out == STAGE_EFFECT_OK) {
        snprintf(detail, dn, "%s accepted (HTTP %ld)", stage_effect_name(call->effect), st);
        json_t *r = json_loadb(resp.body, resp.body_len, 0, NULL);
        const char *d = r ? json_string_value(json_object_get(r, "digest")) : NULL;
        if (d && digest)
            snprintf(digest, digest_len, "%s", d);
        json_decref(r);
    } else if (out == STAGE_EFFECT_FAILED) {
        snprintf(detail, dn, "%s refused (HTTP %ld): %.150s", stage_effect_name(call->effect), st,
                 resp.body ? resp.body : "");
    } else {
        snprintf(detail, dn, "%s answered HTTP %ld", stage_effect_name(call->effect), st);
    }
    orch_httpc_resp_free(&resp);
    return out;
}

/* ---- ratchet ----------------------------------------------------------- */

static stage_effect_outcome ratchet(const stage_effect_call *call, char *detail, size_t dn)
{
    const char *pct = orch_verdicts_get(call->ev, "coverage_pct");
    if (!pct) {
        snprintf(detail, dn, "coverage_pct is missing");
        return STAGE_EFFECT_ERROR;
    }
    orch_db_conn *c = NULL;
    uint64_t dl = orch_mono_ms() + RATCHET_BUDGET_MS;
    orch_err err = orch_db_acquire(call->db, dl, &c);
    bool raised = false, stale = false;
    if (!err)
        err = stage_store_ratchet(
            c, dl, &(stage_ratchet){ call->task->repo, pct, call->task->work_item, call->epoch },
            &raised, &stale);
    orch_db_release(c);
    if (err) {
        snprintf(detail, dn, "coverage ratchet: %s", orch_strerror(err));
        /* A statement that failed did not commit; a lost commit may have. */
        return err == ORCH_EDB_UNKNOWN || err == ORCH_EDB_UNAVAIL ? STAGE_EFFECT_UNKNOWN
                                                                  : STAGE_EFFECT_ERROR;
    }
    if (stale) {
        snprintf(detail, dn, "coverage ratchet not applied: lease epoch %llu was superseded",
                 (unsigned long long)call->epoch);
        return STAGE_EFFECT_ERROR;
    }
    snprintf(detail, dn,
             raised ? "coverage baseline of %s raised to %s"
                    : "coverage baseline of %s kept (%s is not higher)",
             call->task->repo, pct);
    return STAGE_EFFECT_OK;
}

stage_effect_outcome stage_effect_run(const stage_effects_cfg *cfg, const stage_effect_call *call,
                                      char *detail, size_t detail_len, char *digest,
                                      size_t digest_len)
{
    detail[0] = '\0';
    switch (call->effect) {
    case STAGE_EFF_MERGE_PR: return gitea_merge(cfg, call, detail, detail_len);
    case STAGE_EFF_COVERAGE_RATCHET: return ratchet(call, detail, detail_len);
    case STAGE_EFF_IMAGE_REBUILD:
        return hook_post(cfg, call, detail, detail_len, digest, digest_len);
    case STAGE_EFF_DEPLOY_START: return hook_post(cfg, call, detail, detail_len, NULL, 0);
    case STAGE_EFF_COUNT: break;
    }
    snprintf(detail, detail_len, "unknown effect");
    return STAGE_EFFECT_FAILED;
}
