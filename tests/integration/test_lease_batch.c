/*
 * test_lease_batch.c - group commit (ORCH_LEASE_BATCH_MAX): concurrent
 * Acquires and Releases share statements and commits, and each keeps the
 * answer it would have had alone: exactly one grant per work item, HELD
 * naming the winner for the others, a request that fails in the database
 * fails alone.
 *
 * Batching is seen in the database: the events of one batch were written by
 * one transaction (the same xmin).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "test_lease_util.h"

#define NCALLERS 16
#define NROUNDS  5

static th_svc svc;
static char db[600];

static void setup(void)
{
    static const char *const env[] = { "ORCH_HOST_ID=" LT_HOST,
                                       "ORCH_LEASE_REAPER_INTERVAL_MS=60000",
                                       "ORCH_LEASE_BATCH_MAX=32", NULL };
    th_db_fresh(db, sizeof db);
    th_svc_start(&svc, "lease", db, env, true);
}

static void teardown(void)
{
    lt_cleanup();
    if (svc.pid > 0 && th_svc_stop(&svc, SIGTERM, 10000) != 0)
        th_svc_dump_log(&svc);
}

TestSuite(lease_batch, .init = setup, .fini = teardown, .timeout = 120);

typedef struct caller {
    orch_rpc_client *c;
    lt_owner owner;
    pthread_barrier_t *start;
    char item[64];
    bool release; /* this round: Release `epoch` instead of Acquire */
    uint64_t epoch;
    lt_acq got;
    orch_code rel_code;
    bool rel_already;
} caller;

static void *call_once(void *p)
{
    caller *a = p;
    pthread_barrier_wait(a->start);
    if (a->release) {
        orch_rpc_status st;
        a->rel_code = lt_release(a->c, a->item, a->epoch, &a->rel_already, &st);
    } else {
        a->got = lt_acquire(a->c, a->item, "orch", &a->owner, "batcher");
    }
    return NULL;
}

/* The test's callers, each with a client and a live owner of its own. */
static caller *callers_init(void)
{
    static pthread_barrier_t start;
    static caller cs[NCALLERS];
    for (int i = 0; i < NCALLERS; i++) {
        memset(&cs[i], 0, sizeof cs[i]);
        cs[i].c = lt_client(&svc);
        lt_owner_spawn(&cs[i].owner, NULL, NULL);
        cs[i].start = &start;
    }
    return cs;
}

/* Every caller calls at once, released together by a barrier. */
static void round_go(caller *cs)
{
    pthread_t t[NCALLERS];
    pthread_barrier_init(cs[0].start, NULL, NCALLERS);
    for (int i = 0; i < NCALLERS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, call_once, &cs[i]), 0);
    for (int i = 0; i < NCALLERS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(cs[0].start);
}

/* Every caller Acquires at once the item `name` gives it in round r. */
static void acquire_round(caller *cs, int r, void (*name)(char *item, size_t n, int r, int i))
{
    for (int i = 0; i < NCALLERS; i++) {
        name(cs[i].item, sizeof cs[i].item, r, i);
        cs[i].release = false;
    }
    round_go(cs);
}

static void name_distinct(char *item, size_t n, int r, int i)
{
    snprintf(item, n, "batch-%d-%d", r, i);
}

static void name_shared(char *item, size_t n, int r, int i)
{
    (void)r;
    snprintf(item, n, "shared-%d", i % 4);
}

static void name_poisoned(char *item, size_t n, int r, int i)
{
    snprintf(item, n, "%s-%d-%d", i == 5 ? "poison" : "fine", r, i);
}

/* Whether some transaction wrote more than one `kind` event. */
static bool some_commit_shared(const char *kind)
{
    long long events = lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind = '%s'", kind);
    long long xacts = lt_sql_num(
        db, "SELECT count(DISTINCT xmin::text) FROM lease_events WHERE kind = '%s'", kind);
    cr_assert_gt(events, 0);
    return xacts < events;
}

Test(lease_batch, distinct_items_are_each_granted_and_released)
{
    caller *cs = callers_init();
    for (int r = 0; r < NROUNDS; r++) {
        acquire_round(cs, r, name_distinct);
        for (int i = 0; i < NCALLERS; i++) {
            cr_assert_eq(cs[i].got.code, ORCH_CODE_OK, "%s: %s", cs[i].item, cs[i].got.message);
            cr_assert(cs[i].got.granted && !cs[i].got.already_held, "%s not granted", cs[i].item);
            cr_assert_eq(cs[i].got.epoch, 1);
            cs[i].release = true;
            cs[i].epoch = cs[i].got.epoch;
        }
        round_go(cs);
        for (int i = 0; i < NCALLERS; i++) {
            cr_assert_eq(cs[i].rel_code, ORCH_CODE_OK, "release of %s", cs[i].item);
            cr_assert(!cs[i].rel_already);
        }
    }
    long long n = NCALLERS * NROUNDS;
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind = 'granted'"), n);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind = 'released'"
                                " AND actor = 'holder'"),
                 n);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM transition_lease WHERE released_at IS NULL"),
                 0);
    cr_assert(some_commit_shared("granted"), "no two grants shared a commit");
    cr_assert(some_commit_shared("released"), "no two releases shared a commit");
}

/* Four callers on each of four items: per item one grant, three HELD naming
 * the winner; released, the next round grants the next epoch. */
Test(lease_batch, same_item_has_one_winner_per_round)
{
    caller *cs = callers_init();
    for (int r = 0; r < NROUNDS; r++) {
        acquire_round(cs, r, name_shared);
        for (int item = 0; item < 4; item++) {
            int winner = -1;
            for (int i = item; i < NCALLERS; i += 4) {
                cr_assert_eq(cs[i].got.code, ORCH_CODE_OK, "%s", cs[i].got.message);
                if (cs[i].got.granted) {
                    cr_assert_eq(winner, -1, "round %d: two grants of shared-%d", r, item);
                    winner = i;
                }
            }
            cr_assert_neq(winner, -1, "round %d: nobody was granted shared-%d", r, item);
            cr_assert_eq(cs[winner].got.epoch, (uint64_t)r + 1);
            for (int i = item; i < NCALLERS; i += 4) {
                if (i == winner)
                    continue;
                cr_assert(cs[i].got.held, "round %d caller %d: neither GRANTED nor HELD", r, i);
                cr_assert_eq(cs[i].got.holder_epoch, cs[winner].got.epoch);
                cr_assert_eq(cs[i].got.holder_pid, cs[winner].owner.pid);
            }
            orch_rpc_status st;
            bool already;
            cr_assert_eq(
                lt_release(cs[winner].c, cs[winner].item, cs[winner].got.epoch, &already, &st),
                ORCH_CODE_OK);
        }
    }
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind = 'granted'"),
                 4 * NROUNDS);
}

/* A request the database refuses (here a constraint the test adds) gets its
 * own error, as alone; the others of its batch are granted. */
Test(lease_batch, a_refused_request_fails_alone)
{
    cr_assert_eq(lt_sql_num(db, "ALTER TABLE transition_lease ADD CONSTRAINT test_no_poison"
                                " CHECK (work_item NOT LIKE 'poison-%%')"),
                 -1);
    caller *cs = callers_init();
    for (int r = 0; r < NROUNDS; r++) {
        acquire_round(cs, r, name_poisoned);
        for (int i = 0; i < NCALLERS; i++) {
            if (i == 5) {
                cr_assert_eq(cs[i].got.code, ORCH_CODE_INTERNAL, "%s: %s", cs[i].item,
                             cs[i].got.message);
                continue;
            }
            cr_assert_eq(cs[i].got.code, ORCH_CODE_OK, "%s: %s", cs[i].item, cs[i].got.message);
            cr_assert(cs[i].got.granted, "%s not granted", cs[i].item);
        }
    }
    /* Alone, the refused request fails the same way. */
    lt_acq alone = lt_acquire(cs[5].c, "poison-alone", "orch", &cs[5].owner, "batcher");
    cr_assert_eq(alone.code, ORCH_CODE_INTERNAL);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM transition_lease"), (NCALLERS - 1) * NROUNDS);
    cr_assert_eq(
        lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE work_item LIKE 'poison%%'"), 0);
}
