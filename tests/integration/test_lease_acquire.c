/*
 * test_lease_acquire.c - the one-statement Acquire (lease_store_acquire):
 * a caller that finds the lease held takes no row lock, so it answers HELD
 * even while another transaction has the row locked (no waiting behind
 * anyone); a caller that saw the lease free but lost the upsert to a
 * concurrent grant answers HELD with the winner's identity, writes no
 * 'granted' event, and the epochs still strictly increase.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "orch/clock.h"
#include "orch/db.h"
#include "test_lease_util.h"

static th_svc svc;
static char db[600];
static orch_db_pool *pool;

static void setup(void)
{
    static const char *const env[] = { "ORCH_HOST_ID=" LT_HOST,
                                       "ORCH_LEASE_REAPER_INTERVAL_MS=60000", NULL };
    th_db_fresh(db, sizeof db);
    th_svc_start(&svc, "lease", db, env, true);
    cr_assert(orch_db_pool_open(db, 1, &pool) == ORCH_OK);
}

static void teardown(void)
{
    orch_db_pool_close(pool);
    lt_cleanup();
    if (svc.pid > 0 && th_svc_stop(&svc, SIGTERM, 10000) != 0)
        th_svc_dump_log(&svc);
}

TestSuite(lease_acquire, .init = setup, .fini = teardown, .timeout = 60);

static uint64_t in_ms(uint64_t ms)
{
    return orch_mono_ms() + ms;
}

/* Opens a transaction on the test's own connection and runs `sql` in it. */
static orch_db_conn *begin_with(const char *sql)
{
    orch_db_conn *c;
    cr_assert(orch_db_acquire(pool, in_ms(5000), &c) == ORCH_OK);
    cr_assert(orch_db_begin(c, in_ms(5000)) == ORCH_OK);
    orch_err err = orch_db_exec(c, in_ms(5000), sql, 0, NULL, NULL);
    cr_assert(err == ORCH_OK, "%s: %s", sql, orch_db_last_error(c));
    return c;
}

Test(lease_acquire, held_lease_answers_without_waiting_for_a_row_lock)
{
    static const char item[] = "ORCH-ACQ-LOCKED";
    lt_owner a, b;
    lt_owner_spawn(&a, NULL, NULL);
    lt_owner_spawn(&b, NULL, NULL);
    orch_rpc_client *c = lt_client(&svc);
    lt_acq ga = lt_acquire(c, item, "orch", &a, "holder");
    cr_assert(ga.granted, "%s", ga.message);

    /* Someone holds the row lock (an operator's open transaction). */
    orch_db_conn *locker =
        begin_with("SELECT 1 FROM transition_lease WHERE work_item = 'ORCH-ACQ-LOCKED' FOR UPDATE");
    uint64_t t0 = orch_mono_ms();
    lt_acq gb = lt_acquire(c, item, "orch", &b, "late");
    uint64_t took = orch_mono_ms() - t0;
    orch_db_rollback(locker);
    orch_db_release(locker);

    cr_assert_eq(gb.code, ORCH_CODE_OK, "%s", gb.message);
    cr_assert(gb.held, "a held lease must answer HELD");
    cr_assert_eq(gb.holder_pid, a.claimed_pid);
    cr_assert_eq(gb.holder_epoch, ga.epoch);
    cr_assert_lt(took, 1000, "Acquire of a held lease waited %" PRIu64 " ms for a row lock", took);
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                            " AND kind = 'granted'",
                            item),
                 1);
    lt_client_close(c);
}

typedef struct bg_acquire {
    orch_rpc_client *c;
    const lt_owner *o;
    lt_acq got;
} bg_acquire;

static void *acquire_in_background(void *p)
{
    bg_acquire *g = p;
    g->got = lt_acquire(g->c, "ORCH-ACQ-RACE", "orch", g->o, "loser");
    return NULL;
}

Test(lease_acquire, losing_the_upsert_to_a_concurrent_grant_answers_held)
{
    static const char item[] = "ORCH-ACQ-RACE";
    lt_owner first, winner, loser;
    lt_owner_spawn(&first, NULL, NULL);
    lt_owner_spawn(&winner, NULL, NULL);
    lt_owner_spawn(&loser, NULL, NULL);
    orch_rpc_client *c = lt_client(&svc);
    lt_acq g1 = lt_acquire(c, item, "orch", &first, "first");
    cr_assert(g1.granted, "%s", g1.message);
    orch_rpc_status st;
    cr_assert_eq(lt_release(c, item, g1.epoch, NULL, &st), ORCH_CODE_OK, "%s", st.message);

    /* A concurrent grant to `winner`, not yet committed: the loser's
     * statement sees the lease released, tries the upsert and meets the
     * winner's row once it commits. */
    char sql[1024];
    snprintf(sql, sizeof sql,
             "UPDATE transition_lease SET epoch = epoch + 1, owner_host = '%s',"
             " owner_boot_id = '%s', owner_pid = %d, owner_start_ticks = %" PRIu64 ","
             " owner_instance = '%s', actor = 'winner', acquired_at = now(),"
             " released_at = NULL, release_reason = NULL WHERE work_item = '%s'",
             winner.host_id, winner.boot_id, (int)winner.claimed_pid, winner.start_ticks,
             winner.instance_id, item);
    orch_db_conn *w = begin_with(sql);
    bg_acquire bg = { .c = lt_client(&svc), .o = &loser };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, acquire_in_background, &bg), 0);
    bool waiting = lt_sql_wait(db, 1, 5000,
                               "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type ="
                               " 'Lock' AND query LIKE 'WITH cur AS%%'");
    cr_assert(orch_db_commit(w, in_ms(5000)) == ORCH_OK);
    orch_db_release(w);
    pthread_join(t, NULL);
    cr_assert(waiting, "the loser's upsert never met the concurrent grant");

    cr_assert_eq(bg.got.code, ORCH_CODE_OK, "%s", bg.got.message);
    cr_assert(bg.got.held, "lost the race: must answer HELD");
    cr_assert_eq(bg.got.holder_pid, winner.claimed_pid, "HELD must name the winner");
    cr_assert_eq(bg.got.holder_epoch, g1.epoch + 1);
    cr_assert_eq(lt_sql_num(db, "SELECT epoch FROM transition_lease WHERE work_item = '%s'", item),
                 (long long)(g1.epoch + 1), "the loser must not have changed the lease");
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                            " AND kind = 'granted'",
                            item),
                 1, "the loser must not have written a 'granted' event");
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                            " AND kind = 'deferred' AND actor = 'loser'",
                            item),
                 1);
    lt_client_close(bg.c);
    lt_client_close(c);
}

/* Release with epoch 0 names an owner: only that owner's live grant is
 * given back, whatever its epoch (a caller whose Acquire answer was lost). */
static orch_code release_by(orch_rpc_client *c, const char *item, const lt_owner *o,
                            uint64_t *released, orch_rpc_status *st)
{
    Orch__V1__ReleaseRequest req = ORCH__V1__RELEASE_REQUEST__INIT;
    Orch__V1__Owner om;
    ProtobufCMessage *m = NULL;
    req.work_item = (char *)item;
    if (o) {
        lt_owner_msg(o, &om);
        req.owner = &om;
    }
    orch_code code = orch_rpc_invoke(c, orch_lease_method_release, &req.base,
                                     &orch__v1__release_reply__descriptor, NULL, st, &m);
    *released = code == ORCH_CODE_OK ? ((Orch__V1__ReleaseReply *)m)->released_epoch : 0;
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

Test(lease_acquire, release_by_owner_gives_back_only_that_owners_grant)
{
    static const char item[] = "ORCH-BY-OWNER";
    lt_owner holder, other;
    lt_owner_spawn(&holder, NULL, NULL);
    lt_owner_spawn(&other, NULL, NULL);
    orch_rpc_client *c = lt_client(&svc);
    lt_acq g = lt_acquire(c, item, "orch", &holder, "monitor");
    cr_assert(g.granted, "%s", g.message);
    orch_rpc_status st;
    uint64_t rel = 0;
    cr_assert_eq(release_by(c, item, NULL, &rel, &st), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_eq(release_by(c, item, &other, &rel, &st), ORCH_CODE_NOT_FOUND, "%s", st.message);
    cr_assert(lt_validate(c, item, g.epoch).valid, "another owner's release took the grant");
    cr_assert_eq(release_by(c, item, &holder, &rel, &st), ORCH_CODE_OK, "%s", st.message);
    cr_assert_eq(rel, g.epoch);
    cr_assert_not(lt_validate(c, item, g.epoch).held);
    cr_assert_eq(release_by(c, item, &holder, &rel, &st), ORCH_CODE_NOT_FOUND, "%s", st.message);
    lt_client_close(c);
}

typedef struct stalled_acquire {
    orch_rpc_client *c;
    const lt_owner *o;
    lt_acq got;
} stalled_acquire;

static void *acquire_300ms(void *arg)
{
    stalled_acquire *s = arg;
    Orch__V1__Owner om;
    lt_owner_msg(s->o, &om);
    Orch__V1__AcquireRequest req = ORCH__V1__ACQUIRE_REQUEST__INIT;
    req.work_item = "ORCH-STALLED";
    req.repo = "orch";
    req.transition = "review->testing";
    req.actor = "stalled";
    req.owner = &om;
    orch_rpc_call_opts o = { .timeout_ms = 300 };
    orch_rpc_status st;
    s->got.code = orch_rpc_invoke(s->c, orch_lease_method_acquire, &req.base,
                                  &orch__v1__acquire_reply__descriptor, &o, &st, NULL);
    return NULL;
}

/* Regression: a request that waited in lease-service's socket buffer past
 * its caller's deadline (lease-service stopped) was run when it was read,
 * because the budget was counted from the server's receipt: the grant went
 * to a caller that had given up. The client now always sends an absolute
 * deadline, and the server refuses such a request without running it. */
Test(lease_acquire, an_acquire_read_after_its_deadline_is_never_run)
{
    lt_owner o;
    lt_owner_spawn(&o, NULL, NULL);
    orch_rpc_client *c = lt_client(&svc);
    /* One answered call first: the connection is up, so the request is
     * written to lease-service's socket while it is stopped. */
    cr_assert(lt_validate(c, "ORCH-STALLED", 1).code == ORCH_CODE_OK);
    th_stop_process(svc.pid, 5000);
    stalled_acquire s = { .c = c, .o = &o };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, acquire_300ms, &s), 0);
    pthread_join(t, NULL);
    usleep(200000); /* the request is past its deadline in the socket buffer */
    cr_assert_eq(kill(svc.pid, SIGCONT), 0);
    cr_assert_neq(s.got.code, ORCH_CODE_OK, "no answer can come while stopped");
    const char *series = "orch_rpc_requests_total{method=\"orch.v1.LeaseService/Acquire\","
                         "code=\"DEADLINE_EXCEEDED\"}";
    double refused = 0;
    for (int i = 0; i < 100 && refused < 1; i++) {
        refused = lt_metric(&svc, series);
        if (refused < 1)
            usleep(50000);
    }
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE work_item ="
                                " 'ORCH-STALLED' AND kind = 'granted'"),
                 0, "the stale Acquire was run and granted to a caller that had given up");
    cr_assert_geq(refused, 1, "the stale Acquire was never answered DEADLINE_EXCEEDED");
    lt_client_close(c);
}
