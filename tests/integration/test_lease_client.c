/*
 * test_lease_client.c - the common lease client (orch/lease_client.h)
 * against a real lease-service: each typed call's answer and a mapped
 * error, and the release-later queue: a release queued while lease-service
 * is stopped is done once it is back, a by-owner release (a lost Acquire
 * answer) is not settled before its settle time, and stop flushes.
 *
 * lease-service listens on a port chosen here, so that a test can stop it
 * and start it again at the same address its client dials.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "orch/clock.h"
#include "orch/lease_client.h"
#include "test_lease_util.h"

static th_svc svc;
static char db[600];
static char url[64];
/* Each test's client of lease-service, its owner process, and that
 * process's identity as this process's own (the release-later queue
 * releases by owner as `me`). */
static orch_rpc_client *c;
static lt_owner own;
static orch_ident me;

static void start_lease(void)
{
    char url_env[96];
    snprintf(url_env, sizeof url_env, "ORCH_LEASE_RPC_URL=%s", url);
    const char *const env[] = { url_env, "ORCH_HOST_ID=" LT_HOST,
                                "ORCH_LEASE_REAPER_INTERVAL_MS=60000", NULL };
    th_svc_start(&svc, "lease", db, env, false);
    snprintf(svc.rpc_url, sizeof svc.rpc_url, "%s", url);
    if (!th_svc_wait_health(&svc, TH_SERVING, 20000)) {
        th_svc_dump_log(&svc);
        cr_assert_fail("lease-service at %s did not become ready", url);
    }
}

static void stop_lease(void)
{
    cr_assert_eq(th_svc_stop(&svc, SIGTERM, 10000), 0, "lease-service did not stop cleanly");
    svc.pid = 0;
}

/* The identity of owner process `o`. */
static void ident_of(const lt_owner *o, orch_ident *id)
{
    memset(id, 0, sizeof *id);
    snprintf(id->host_id, sizeof id->host_id, "%s", o->host_id);
    snprintf(id->boot_id, sizeof id->boot_id, "%.36s", o->boot_id);
    id->pid = o->claimed_pid;
    id->start_ticks = o->start_ticks;
}

static void setup(void)
{
    th_db_fresh(db, sizeof db);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", th_free_port());
    start_lease();
    c = lt_client(&svc);
    lt_owner_spawn(&own, NULL, NULL);
    ident_of(&own, &me);
}

static void teardown(void)
{
    lt_cleanup();
    if (svc.pid > 0 && th_svc_stop(&svc, SIGTERM, 10000) != 0)
        th_svc_dump_log(&svc);
}

TestSuite(lease_client, .init = setup, .fini = teardown, .timeout = 90);

static const orch_rpc_call_opts quick = { .timeout_ms = 3000 };

static orch_lease_acquire_req acq_req(const char *item, const Orch__V1__Owner *om)
{
    return (orch_lease_acquire_req){ item, "orch", "review->testing", "test", om };
}

/* Acquires `item` as `om`, which must be granted; its epoch. */
static uint64_t grant(const char *item, const Orch__V1__Owner *om)
{
    orch_lease_acquire_req rq = acq_req(item, om);
    orch_lease_acquire_res got;
    orch_rpc_status st;
    cr_assert_eq(orch_lease_acquire(c, &quick, &rq, &st, &got), ORCH_OK, "%s", st.message);
    cr_assert(got.granted, "%s is held", item);
    uint64_t epoch = got.epoch;
    orch_lease_acquire_res_free(&got);
    return epoch;
}

static bool lease_held(const char *item, uint64_t *epoch)
{
    Orch__V1__Lease *l = NULL;
    orch_rpc_status st;
    cr_assert_eq(orch_lease_get(c, &quick, item, &st, &l), ORCH_OK, "Get %s: %s", item, st.message);
    bool held = l->held;
    if (epoch)
        *epoch = l->epoch;
    orch_lease_free(l);
    return held;
}

static bool wait_pending(orch_lease_releaser *r, size_t want, uint32_t timeout_ms)
{
    uint64_t until = orch_mono_ms() + timeout_ms;
    while (orch_lease_releaser_pending(r) != want) {
        if (orch_mono_ms() >= until)
            return false;
        lt_sleep_ms(20);
    }
    return true;
}

/* ---- typed calls ------------------------------------------------------------- */

/* The grant `epoch` of LC-1 seen by Validate, Get and List, then released
 * (twice: the resend is told so). */
static void validate_list_release(uint64_t epoch)
{
    orch_rpc_status st;
    orch_lease_validate_res v;
    cr_assert_eq(orch_lease_validate(c, &quick, "LC-1", epoch, &st, &v), ORCH_OK);
    cr_assert(v.valid && v.held);
    cr_assert_eq(v.current_epoch, epoch);

    uint64_t seen = 0;
    cr_assert(lease_held("LC-1", &seen));
    cr_assert_eq(seen, epoch);

    orch_lease_list_req lq = { .held_only = true, .judge = true };
    orch_lease_list_res ls;
    cr_assert_eq(orch_lease_list(c, &quick, &lq, &st, &ls), ORCH_OK, "%s", st.message);
    cr_assert_eq(ls.n, 1);
    cr_assert_str_eq(ls.leases[0]->work_item, "LC-1");
    cr_assert_eq(ls.liveness[0], ORCH__V1__LIVENESS__ALIVE);
    orch_lease_list_res_free(&ls);
    orch_lease_list_res_free(&ls); /* a zeroed result frees to nothing */

    orch_lease_release_res rel;
    cr_assert_eq(orch_lease_release(c, &quick, "LC-1", epoch, NULL, &st, &rel), ORCH_OK);
    cr_assert_eq(rel.released_epoch, epoch);
    cr_assert_not(rel.already_released);
    cr_assert_eq(orch_lease_release(c, &quick, "LC-1", epoch, NULL, &st, &rel), ORCH_OK);
    cr_assert(rel.already_released, "a resend is told it was released before");
    cr_assert_eq(orch_lease_validate(c, &quick, "LC-1", epoch, &st, &v), ORCH_OK);
    cr_assert_not(v.valid);
    cr_assert_not(lease_held("LC-1", NULL));
}

Test(lease_client, acquire_validate_get_list_release)
{
    lt_owner b;
    lt_owner_spawn(&b, NULL, NULL);
    Orch__V1__Owner am, bm;
    lt_owner_msg(&own, &am);
    lt_owner_msg(&b, &bm);
    orch_rpc_status st;

    orch_lease_acquire_req rq = acq_req("LC-1", &am);
    orch_lease_acquire_res got;
    cr_assert_eq(orch_lease_acquire(c, &quick, &rq, &st, &got), ORCH_OK, "%s", st.message);
    cr_assert(got.granted);
    cr_assert_gt(got.epoch, 0);
    cr_assert_not(got.inert);
    cr_assert_null(got.holder);
    uint64_t epoch = got.epoch;
    orch_lease_acquire_res_free(&got);

    rq.owner = &bm;
    orch_lease_acquire_res held;
    cr_assert_eq(orch_lease_acquire(c, &quick, &rq, &st, &held), ORCH_OK, "%s", st.message);
    cr_assert_not(held.granted, "a second owner is told HELD");
    cr_assert_eq(held.epoch, epoch);
    cr_assert_not_null(held.holder);
    cr_assert_eq(held.holder->owner->pid, own.claimed_pid);
    cr_assert_eq(held.holder_liveness, ORCH__V1__LIVENESS__ALIVE);
    Orch__V1__Lease *h = orch_lease_acquire_take_holder(&held);
    cr_assert_null(held.holder);
    orch_lease_acquire_res_free(&held);
    cr_assert_eq(h->epoch, epoch, "the holder outlives its result");
    orch_lease_free(h);

    validate_list_release(epoch);
}

Test(lease_client, force_release_and_probe_owner)
{
    Orch__V1__Owner am;
    lt_owner_msg(&own, &am);
    orch_rpc_status st;
    uint64_t epoch = grant("LC-2", &am);

    orch_lease_probe_res pr;
    cr_assert_eq(orch_lease_probe_owner(c, &quick, &am, &st, &pr), ORCH_OK, "%s", st.message);
    cr_assert(pr.from_owner_host);
    cr_assert_eq(pr.liveness, ORCH__V1__LIVENESS__ALIVE);
    cr_assert_str_eq(pr.host_id, LT_HOST);

    /* An answer from a host other than the owner's says nothing of it. */
    Orch__V1__Owner elsewhere = am;
    elsewhere.host_id = "another-host";
    cr_assert_eq(orch_lease_probe_owner(c, &quick, &elsewhere, &st, &pr), ORCH_OK);
    cr_assert_not(pr.from_owner_host);
    cr_assert_eq(pr.answer, ORCH__V1__LIVENESS__ALIVE);
    cr_assert_eq(pr.liveness, ORCH__V1__LIVENESS__UNKNOWN, "never judged from another host");

    orch_lease_force_release_req fr = { "LC-2", "test", "lease-client-test", epoch };
    orch_lease_release_res rel;
    cr_assert_eq(orch_lease_force_release(c, &quick, &fr, &st, &rel), ORCH_OK, "%s", st.message);
    cr_assert_eq(rel.released_epoch, epoch);
    cr_assert_eq(orch_lease_force_release(c, &quick, &fr, &st, &rel), ORCH_OK);
    cr_assert(rel.already_released);
    cr_assert_not(lease_held("LC-2", NULL));

    lt_owner_kill(&own);
    cr_assert_eq(orch_lease_probe_owner(c, &quick, &am, &st, &pr), ORCH_OK);
    cr_assert_eq(pr.liveness, ORCH__V1__LIVENESS__DEAD);
}

Test(lease_client, error_answers_are_mapped_and_keep_their_code)
{
    Orch__V1__Owner am;
    lt_owner_msg(&own, &am);
    orch_rpc_status st;
    Orch__V1__Lease *l = NULL;

    cr_assert_eq(orch_lease_get(c, &quick, "LC-NEVER", &st, &l), ORCH_ENOTFOUND);
    cr_assert_eq(st.code, ORCH_CODE_NOT_FOUND);
    cr_assert_null(l, "no output on error");

    orch_lease_acquire_req bad = acq_req("", &am);
    orch_lease_acquire_res got;
    cr_assert_eq(orch_lease_acquire(c, &quick, &bad, &st, &got), ORCH_EINVAL);
    cr_assert_eq(st.code, ORCH_CODE_INVALID_ARGUMENT);
    cr_assert(orch_lease_not_granted(st.code));

    uint64_t epoch = grant("LC-3", &am);
    cr_assert_eq(orch_lease_release(c, &quick, "LC-3", epoch + 5, NULL, &st, NULL), ORCH_EPROTO);
    cr_assert_eq(st.code, ORCH_CODE_FAILED_PRECONDITION, "%s", orch_code_name(st.code));
    cr_assert(orch_lease_code_released(st.code), "another grant: this one is gone");

    orch_lease_force_release_req fr = { "LC-3", "test", "t", 0 };
    cr_assert_eq(orch_lease_force_release(c, &quick, &fr, &st, NULL), ORCH_EINVAL);
    orch_lease_validate_res v;
    cr_assert_eq(orch_lease_validate(c, &quick, "", 1, &st, &v), ORCH_EINVAL);
    orch_lease_list_req lq = { .limit = 5000 };
    orch_lease_list_res ls;
    cr_assert_eq(orch_lease_list(c, &quick, &lq, &st, &ls), ORCH_EINVAL);
    Orch__V1__Owner neg = am;
    neg.pid = -1;
    orch_lease_probe_res pr;
    cr_assert_eq(orch_lease_probe_owner(c, &quick, &neg, &st, &pr), ORCH_EINVAL);

    stop_lease();
    orch_err err = orch_lease_get(c, &(orch_rpc_call_opts){ .timeout_ms = 500 }, "LC-3", &st, &l);
    cr_assert(err == ORCH_ETIMEDOUT || err == ORCH_EIO, "unreachable: %s", orch_strerror(err));
    cr_assert(st.code == ORCH_CODE_DEADLINE_EXCEEDED || st.code == ORCH_CODE_UNAVAILABLE);
    cr_assert_not(orch_lease_not_granted(st.code), "no answer proves nothing");
}

/* ---- the release-later queue ------------------------------------------------- */

static orch_lease_releaser *releaser(uint32_t timeout_ms, uint32_t interval_ms)
{
    orch_lease_releaser_opts o = {
        .client = c, .me = &me, .timeout_ms = timeout_ms, .interval_ms = interval_ms
    };
    orch_lease_releaser *r = NULL;
    cr_assert_eq(orch_lease_releaser_start(&o, &r), ORCH_OK);
    return r;
}

Test(lease_client, release_queued_while_lease_service_is_down_is_done_once_it_is_back)
{
    Orch__V1__Owner am;
    orch_lease_owner_msg(&me, "queue-1", &am);
    orch_lease_releaser *r = releaser(500, 100);
    orch_rpc_status st;
    orch_lease_acquire_req rq = acq_req("LC-Q1", &am);
    orch_lease_acquire_res got;
    cr_assert_eq(orch_lease_releaser_acquire(r, &rq, &st, &got), ORCH_OK, "%s", st.message);
    cr_assert(got.granted);
    uint64_t epoch = got.epoch;
    orch_lease_acquire_res_free(&got);
    cr_assert_eq(orch_lease_releaser_pending(r), 0, "an answered Acquire queues nothing");

    stop_lease();
    orch_lease_release_or_later(r, "LC-Q1", epoch);
    cr_assert_eq(orch_lease_releaser_pending(r), 1, "an unanswered release is queued");
    lt_sleep_ms(600); /* passes against the stopped service keep it */
    cr_assert_eq(orch_lease_releaser_pending(r), 1);

    start_lease();
    cr_assert(wait_pending(r, 0, 10000), "the queued release was not done once lease-service "
                                         "was back");
    uint64_t seen = 0;
    cr_assert_not(lease_held("LC-Q1", &seen));
    cr_assert_eq(seen, epoch);
    orch_lease_releaser_stop(r);
}

Test(lease_client, lost_acquire_answer_is_released_by_owner_not_settled_before_settle_after)
{
    /* settle_after is one timeout and a second after queueing: 2.5 s. */
    orch_lease_releaser *r = releaser(1500, 100);
    orch_lease_release_owned_later(r, "LC-LOST", "lost-1");
    lt_sleep_ms(800);
    cr_assert_eq(orch_lease_releaser_pending(r), 1,
                 "\"that owner holds nothing\" must not settle before settle_after");

    /* The lost Acquire lands late: the queue finds the grant and releases
     * it by owner. */
    Orch__V1__Owner om;
    orch_lease_owner_msg(&me, "lost-1", &om);
    (void)grant("LC-LOST", &om);
    cr_assert(wait_pending(r, 0, 5000));
    cr_assert_not(lease_held("LC-LOST", NULL), "the late grant was released by owner");

    /* Nothing ever granted: settled once settle_after has passed, not
     * before. */
    uint64_t queued = orch_mono_ms();
    orch_lease_release_owned_later(r, "LC-NEVER-GRANTED", "lost-2");
    cr_assert(wait_pending(r, 0, 10000));
    cr_assert_geq(orch_mono_ms() - queued, 2500, "settled after %llu ms",
                  (unsigned long long)(orch_mono_ms() - queued));
    orch_lease_releaser_stop(r);
}

Test(lease_client, acquire_without_an_answer_queues_a_release_by_owner)
{
    orch_lease_releaser *r = releaser(500, 60000);
    Orch__V1__Owner om;
    orch_lease_owner_msg(&me, "call-1", &om);
    orch_rpc_status st;
    orch_lease_acquire_res got;

    orch_lease_acquire_req bad = acq_req("", &om);
    cr_assert_eq(orch_lease_releaser_acquire(r, &bad, &st, &got), ORCH_EINVAL);
    cr_assert_eq(orch_lease_releaser_pending(r), 0, "a refusal proves nothing was granted");

    stop_lease();
    orch_lease_acquire_req rq = acq_req("LC-Q2", &om);
    cr_assert_neq(orch_lease_releaser_acquire(r, &rq, &st, &got), ORCH_OK);
    cr_assert_eq(orch_lease_releaser_pending(r), 1, "no answer: the grant may exist");
    orch_lease_releaser_stop(r);
}

Test(lease_client, stop_tries_the_queued_releases_once_more)
{
    Orch__V1__Owner om;
    orch_lease_owner_msg(&me, "flush-1", &om);
    uint64_t epoch = grant("LC-FLUSH", &om);

    orch_lease_releaser *r = releaser(2000, 60000); /* no pass before stop */
    orch_lease_release_later(r, "LC-FLUSH", epoch);
    cr_assert(lease_held("LC-FLUSH", NULL));
    orch_lease_releaser_stop(r);
    cr_assert_not(lease_held("LC-FLUSH", NULL), "stop's final pass releases it");
}
