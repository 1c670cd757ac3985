/*
 * stage_bg.c - stage-service's background thread: lease releases that could
 * not reach lease-service are retried every second, and the reconciler
 * drives items whose recorded verdicts already pass the gates of their next
 * forward edge through AdvanceStage as actor "reconciler" (it defers on a
 * held lease like every other actor). Edges without gates are left to the
 * actors who decide them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/clock.h"
#include "orch/log.h"
#include "stage_svc.h"

static void retry_releases(stage_svc *ss)
{
    stage_release_retry batch[STAGE_RETRY_MAX];
    pthread_mutex_lock(&ss->retry_mu);
    int n = ss->nretries;
    memcpy(batch, ss->retries, (size_t)n * sizeof batch[0]);
    ss->nretries = 0;
    pthread_mutex_unlock(&ss->retry_mu);
    for (int i = 0; i < n; i++) {
        Orch__V1__ReleaseRequest rq = ORCH__V1__RELEASE_REQUEST__INIT;
        rq.work_item = batch[i].work_item;
        rq.epoch = batch[i].epoch;
        orch_rpc_call_opts o = { .timeout_ms = ss->lease_timeout_ms };
        orch_rpc_status st;
        orch_code code = orch_rpc_invoke(ss->lease, "orch.v1.LeaseService/Release", &rq.base, NULL,
                                         &o, &st, NULL);
        if (code == ORCH_CODE_OK || code == ORCH_CODE_FAILED_PRECONDITION ||
            code == ORCH_CODE_NOT_FOUND)
            orch_info("released lease %s epoch %" PRIu64 " on retry", batch[i].work_item,
                      batch[i].epoch);
        else
            stage_release_later(ss, batch[i].work_item, batch[i].epoch);
    }
}

/* Whether the item's recorded verdicts pass every gate of `e` (pure check
 * on data read without the lease: the engine runs the gates again under it). */
static bool gates_pass(stage_svc *ss, const stage_task *t, const stage_edge *e, uint64_t dl)
{
    orch_verdicts ev;
    gate_input gi = { &ev, false, 0, t->pr_number };
    orch_db_conn *c;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_load_evidence(c, dl, t->work_item, &ev);
    if (!err)
        err = stage_store_baseline(c, dl, t->repo, &gi.has_baseline, &gi.coverage_baseline);
    orch_db_release(c);
    if (err)
        return false;
    char fails[ADV_MAX_FAILS][GATE_WHY_MAX];
    size_t nf;
    /* A rollback verdict counts too: the engine then rolls the item back. */
    return pipeline_run_gates(e, &gi, fails, ADV_MAX_FAILS, &nf) != GATES_REFUSE;
}

void stage_reconcile_pass(stage_svc *ss)
{
    uint64_t dl = orch_mono_ms() + 30000;
    orch_db_conn *c;
    stage_task *ts = NULL;
    int n = 0;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_list(c, dl, ST_NONE, "", ss->reconcile_batch * 4, &ts, &n);
    orch_db_release(c);
    if (err) {
        orch_warn("reconciler: listing tasks: %s", orch_strerror(err));
        return;
    }
    int tried = 0, moved = 0;
    for (int i = 0; i < n && tried < ss->reconcile_batch; i++) {
        const stage_edge *e = pipeline_forward(ts[i].stage);
        if (!e || !e->gates[0] || !gates_pass(ss, &ts[i], e, dl))
            continue;
        tried++;
        advance_req ar = {
            ts[i].work_item, stage_name(e->from), stage_name(e->to), "reconciler", "", NULL
        };
        advance_res res;
        char msg[700];
        orch_code code = stage_advance(ss, &ar, orch_mono_ms() + 60000, &res, msg, sizeof msg);
        stage_count_transition(ss, ar.expected_from, ar.to, res.result);
        if (code == ORCH_CODE_OK && res.result == TR_ADVANCED)
            moved++;
        if (code)
            orch_info("reconciler: %s %s->%s: %s: %s", ts[i].work_item, stage_name(e->from),
                      stage_name(e->to), orch_code_name(code), msg);
        else
            orch_info("reconciler: %s %s->%s: %s", ts[i].work_item, stage_name(e->from),
                      stage_name(e->to), stage_transition_results[res.result]);
        advance_res_free(&res);
    }
    free(ts);
    if (tried)
        orch_info("reconciler pass: %d item(s) tried, %d advanced", tried, moved);
}

static void *bg_main(void *arg)
{
    stage_svc *ss = arg;
    uint64_t next_reconcile = orch_mono_ms() + (uint64_t)ss->reconcile_interval_ms;
    pthread_mutex_lock(&ss->mu);
    while (!ss->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&ss->cv, &ss->mu, &ts);
        if (ss->quit)
            break;
        pthread_mutex_unlock(&ss->mu);
        retry_releases(ss);
        if (ss->reconcile_interval_ms > 0 && orch_mono_ms() >= next_reconcile) {
            stage_reconcile_pass(ss);
            next_reconcile = orch_mono_ms() + (uint64_t)ss->reconcile_interval_ms;
        }
        pthread_mutex_lock(&ss->mu);
    }
    pthread_mutex_unlock(&ss->mu);
    return NULL;
}

orch_err stage_bg_start(stage_svc *ss)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ss->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&ss->mu, NULL);
    if (pthread_create(&ss->bg, NULL, bg_main, ss) != 0)
        return ORCH_ENOMEM;
    ss->bg_started = true;
    return ORCH_OK;
}

void stage_bg_stop(stage_svc *ss)
{
    if (!ss->bg_started)
        return;
    pthread_mutex_lock(&ss->mu);
    ss->quit = true;
    pthread_cond_signal(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
    pthread_join(ss->bg, NULL);
    ss->bg_started = false;
    /* Releases still owed are tried once more before exit. */
    retry_releases(ss);
}
