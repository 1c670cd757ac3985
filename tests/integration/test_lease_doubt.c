/*
 * test_lease_doubt.c - answers of lease-service's writes when the database
 * side goes wrong, and row locks around them:
 *
 * - a grant whose statement was sent and whose outcome never came back (its
 *   database connection ended while the statement waited for a lock) is
 *   answered UNKNOWN, never UNAVAILABLE, alone and for every member of a
 *   batch;
 * - with group commit on, requests whose rows another transaction has
 *   locked leave the batch, so the others are answered at once;
 * - a same-owner retry of Acquire is answered with a grant of its own
 *   epoch, which a release fenced on the earlier epoch (the release of a
 *   grant made after its caller's deadline) cannot end; answered after its
 *   deadline, it leaves the lease with its owner;
 * - a batch's grant of a new item another transaction is inserting waits
 *   only briefly, then runs alone: free items behind it are answered.
 *
 * The lock holder is a separate libpq connection; the test waits for the
 * lease statements to be seen waiting on it (pg_stat_activity), then ends
 * their sessions with pg_terminate_backend.
 */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "test_lease_util.h"

static th_svc svc;
static char db[600];
static PGconn *holder;

static void setup(void)
{
    memset(&svc, 0, sizeof svc);
    holder = NULL;
    th_db_fresh(db, sizeof db);
}

static void teardown(void)
{
    if (holder)
        PQfinish(holder);
    lt_cleanup();
    if (svc.pid > 0) {
        kill(svc.pid, SIGCONT); /* a test that failed while it was stopped */
        if (th_svc_stop(&svc, SIGTERM, 10000) != 0)
            th_svc_dump_log(&svc);
    }
}

TestSuite(lease_doubt, .init = setup, .fini = teardown, .timeout = 120);

/* lease-service with group commit of at most `batch_max` (1: off); a lock
 * wait is bounded only by each statement's deadline. */
static void start(const char *batch_max)
{
    char batch[64];
    snprintf(batch, sizeof batch, "ORCH_LEASE_BATCH_MAX=%s", batch_max);
    const char *const env[] = { "ORCH_HOST_ID=" LT_HOST, "ORCH_LEASE_REAPER_INTERVAL_MS=60000",
                                "ORCH_DB_LOCK_TIMEOUT_MS=600000", batch, NULL };
    th_svc_start(&svc, "lease", db, env, true);
}

static void holder_exec(const char *sql)
{
    if (!holder) {
        holder = PQconnectdb(db);
        cr_assert_eq(PQstatus(holder), CONNECTION_OK, "%s", PQerrorMessage(holder));
    }
    PGresult *r = PQexec(holder, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    PQclear(r);
}

/* A released lease row for `item`, as a finished transition leaves it. */
static void released_row(const char *item)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO transition_lease (work_item, epoch, owner_host, owner_boot_id,"
             " owner_pid, owner_start_ticks, owner_instance, actor, transition, repo,"
             " released_at, release_reason) VALUES ('%s', 3, '" LT_HOST "', 'b', 1, 1, 'i',"
             " 'monitor', 'review->testing', 'orch', now(), 'released')",
             item);
    free(th_sql(db, sql));
}

#define WAITING                                                                \
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()" \
    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"

/* Waits (bounded) until `n` sessions wait for a lock. */
static void wait_lock_waiters(long long n)
{
    cr_assert(lt_sql_wait(db, n, 10000, WAITING), "not %lld statement(s) waiting for a lock", n);
}

/* Ends every session waiting for a lock; how many it ended. */
static long long terminate_waiters(void)
{
    return lt_sql_num(db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                          " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                          " AND pid <> pg_backend_pid()");
}

typedef struct call {
    orch_rpc_client *c;
    char item[64];
    lt_owner owner;
    uint32_t timeout_ms; /* 0: the client's 10 s */
    lt_acq got;
    bool done;
} call;

static void *acquire_once(void *p)
{
    call *a = p;
    Orch__V1__AcquireRequest req = ORCH__V1__ACQUIRE_REQUEST__INIT;
    Orch__V1__Owner om;
    lt_owner_msg(&a->owner, &om);
    req.work_item = a->item;
    req.repo = "orch";
    req.transition = "review->testing";
    req.actor = "doubt";
    req.owner = &om;
    orch_rpc_call_opts o = { .timeout_ms = a->timeout_ms ? a->timeout_ms : 20000 };
    orch_rpc_status st;
    ProtobufCMessage *m = NULL;
    a->got.code = orch_rpc_invoke(a->c, orch_lease_method_acquire, &req.base,
                                  &orch__v1__acquire_reply__descriptor, &o, &st, &m);
    snprintf(a->got.message, sizeof a->got.message, "%s", st.message);
    if (a->got.code == ORCH_CODE_OK)
        lt_acq_from_reply(&a->got, (const Orch__V1__AcquireReply *)m);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    __atomic_store_n(&a->done, true, __ATOMIC_SEQ_CST);
    return NULL;
}

static void call_start(call *a, pthread_t *th, const char *item, uint32_t timeout_ms)
{
    memset(a, 0, sizeof *a);
    a->c = lt_client(&svc);
    snprintf(a->item, sizeof a->item, "%s", item);
    a->timeout_ms = timeout_ms;
    lt_owner_spawn(&a->owner, NULL, NULL);
    cr_assert_eq(pthread_create(th, NULL, acquire_once, a), 0);
}

/* Regression: the grant was sent with orch_db_exec, so a grant whose
 * connection ended after it was sent was answered UNAVAILABLE ("nothing
 * happened") although it may have committed. */
Test(lease_doubt, a_grant_whose_outcome_was_lost_is_answered_unknown)
{
    start("1");
    released_row("ORCH-DOUBT-1");
    holder_exec("BEGIN");
    holder_exec("SELECT 1 FROM transition_lease WHERE work_item = 'ORCH-DOUBT-1' FOR UPDATE");
    call a;
    pthread_t th;
    call_start(&a, &th, "ORCH-DOUBT-1", 0);
    wait_lock_waiters(1); /* the grant was sent and waits for the row */
    cr_assert_eq(terminate_waiters(), 1);
    pthread_join(th, NULL);
    cr_assert_eq(a.got.code, ORCH_CODE_UNKNOWN, "answered %s: %s", orch_code_name(a.got.code),
                 a.got.message);
    holder_exec("ROLLBACK");
    /* The service goes on with a fresh connection. */
    lt_acq again = lt_acquire(lt_client(&svc), "ORCH-DOUBT-1", "orch", &a.owner, "doubt");
    cr_assert(again.granted, "%s", again.message);
}

#define NBATCH 5

/* With group commit, every member of a batch whose statement was lost is
 * in doubt: each is answered UNKNOWN. The holder has inserted the batch's
 * rows and not committed, so the batches' grants wait for its transaction
 * (a lock a batch cannot skip) and lose their sessions there. */
Test(lease_doubt, every_member_of_a_lost_batch_is_answered_unknown)
{
    start("8");
    holder_exec("BEGIN");
    holder_exec("INSERT INTO transition_lease (work_item, epoch, owner_host, owner_boot_id,"
                " owner_pid, owner_start_ticks, owner_instance, actor, transition, repo)"
                " SELECT 'ORCH-DOUBT-B' || g, 1, 'h', 'b', 1, 1, 'i', 'a', 't', 'orch'"
                " FROM generate_series(0, 4) g");
    call cs[NBATCH];
    pthread_t th[NBATCH];
    for (int i = 0; i < NBATCH; i++) {
        char item[32];
        snprintf(item, sizeof item, "ORCH-DOUBT-B%d", i);
        call_start(&cs[i], &th[i], item, 0);
    }
    /* Batches of queued requests follow the ones ended: end them too. */
    int done = 0;
    for (int round = 0; round < 400 && done < NBATCH; round++) { /* bounded: ~20 s */
        (void)terminate_waiters();
        done = 0;
        for (int i = 0; i < NBATCH; i++)
            done += __atomic_load_n(&cs[i].done, __ATOMIC_SEQ_CST) ? 1 : 0;
        lt_sleep_ms(50);
    }
    for (int i = 0; i < NBATCH; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(cs[i].got.code, ORCH_CODE_UNKNOWN, "%s answered %s: %s", cs[i].item,
                     orch_code_name(cs[i].got.code), cs[i].got.message);
    }
    holder_exec("ROLLBACK");
}

/* Regression: with group commit, a request whose row was locked made its
 * batch wait for the lock (two such requests held both places for batches
 * in PostgreSQL), so requests for free items waited in the queue until
 * their deadline. Now the locked requests leave the batch (SKIP LOCKED)
 * and wait on their own; the others are granted at once. */
Test(lease_doubt, a_locked_row_does_not_stall_the_batch)
{
    start("8");
    released_row("ORCH-LOCKED-1");
    released_row("ORCH-LOCKED-2");
    holder_exec("BEGIN");
    holder_exec("SELECT 1 FROM transition_lease WHERE work_item LIKE 'ORCH-LOCKED-%' FOR UPDATE");
    call l1, l2, free_item;
    pthread_t t1, t2, t3;
    call_start(&l1, &t1, "ORCH-LOCKED-1", 20000);
    call_start(&l2, &t2, "ORCH-LOCKED-2", 20000);
    wait_lock_waiters(2);
    /* Its deadline is far shorter than the locked requests' wait. */
    call_start(&free_item, &t3, "ORCH-FREE-1", 3000);
    pthread_join(t3, NULL);
    cr_assert(free_item.got.granted, "a free item behind locked rows: %s %s",
              orch_code_name(free_item.got.code), free_item.got.message);
    cr_assert_not(__atomic_load_n(&l1.done, __ATOMIC_SEQ_CST) ||
                      __atomic_load_n(&l2.done, __ATOMIC_SEQ_CST),
                  "the locked requests did not wait for their rows");
    /* Once the rows are free, the locked requests are granted too. */
    holder_exec("ROLLBACK");
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert(l1.got.granted && l1.got.epoch == 4, "%s epoch %llu", l1.got.message,
              (unsigned long long)l1.got.epoch);
    cr_assert(l2.got.granted && l2.got.epoch == 4, "%s", l2.got.message);
}

static void *release_once(void *p)
{
    call *a = p;
    Orch__V1__ReleaseRequest req = ORCH__V1__RELEASE_REQUEST__INIT;
    req.work_item = a->item;
    req.epoch = a->got.epoch;
    orch_rpc_call_opts o = { .timeout_ms = a->timeout_ms };
    orch_rpc_status st;
    ProtobufCMessage *m = NULL;
    a->got.code = orch_rpc_invoke(a->c, orch_lease_method_release, &req.base,
                                  &orch__v1__release_reply__descriptor, &o, &st, &m);
    snprintf(a->got.message, sizeof a->got.message, "%s", st.message);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    __atomic_store_n(&a->done, true, __ATOMIC_SEQ_CST);
    return NULL;
}

/* Releases `g`'s grant of `item` on a thread of its own. */
static void release_start(call *a, pthread_t *th, const char *item, const lt_acq *g,
                          uint32_t timeout_ms)
{
    memset(a, 0, sizeof *a);
    a->c = lt_client(&svc);
    snprintf(a->item, sizeof a->item, "%s", item);
    a->got.epoch = g->epoch;
    a->timeout_ms = timeout_ms;
    cr_assert_eq(pthread_create(th, NULL, release_once, a), 0);
}

/* A batched Release whose row is locked leaves the batch the same way. */
Test(lease_doubt, a_locked_row_does_not_stall_batched_releases)
{
    static const char *const items[] = { "ORCH-REL-LOCKED-1", "ORCH-REL-LOCKED-2",
                                         "ORCH-REL-FREE" };
    start("8");
    orch_rpc_client *c = lt_client(&svc);
    lt_owner o;
    lt_owner_spawn(&o, NULL, NULL);
    lt_acq g[3];
    for (int i = 0; i < 3; i++) {
        g[i] = lt_acquire(c, items[i], "orch", &o, "doubt");
        cr_assert(g[i].granted, "%s", g[i].message);
    }
    holder_exec("BEGIN");
    holder_exec("SELECT 1 FROM transition_lease WHERE work_item LIKE 'ORCH-REL-LOCKED-%'"
                " FOR SHARE");
    call r1, r2, rf;
    pthread_t t1, t2, t3;
    release_start(&r1, &t1, items[0], &g[0], 20000);
    release_start(&r2, &t2, items[1], &g[1], 20000);
    wait_lock_waiters(2);
    release_start(&rf, &t3, items[2], &g[2], 3000);
    pthread_join(t3, NULL);
    cr_assert_eq(rf.got.code, ORCH_CODE_OK, "a free release behind locked rows: %s %s",
                 orch_code_name(rf.got.code), rf.got.message);
    cr_assert_not(__atomic_load_n(&r1.done, __ATOMIC_SEQ_CST) ||
                      __atomic_load_n(&r2.done, __ATOMIC_SEQ_CST),
                  "the locked releases did not wait for their rows");
    holder_exec("ROLLBACK");
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_eq(r1.got.code, ORCH_CODE_OK, "%s", r1.got.message);
    cr_assert_eq(r2.got.code, ORCH_CODE_OK, "%s", r2.got.message);
    cr_assert_not(lt_validate(c, items[0], g[0].epoch).held);
}

/* Regression: a same-owner retry of Acquire was answered already_held
 * with the epoch of the grant it found, so the release lease-service sends
 * for a grant committed after its caller's deadline (fenced on that epoch,
 * the very statement of a Release of that epoch) ended the grant the retry
 * had just been told it holds. The retry now gets the next epoch: a
 * release of the earlier one ends nothing, however it is ordered with the
 * retry's answer. */
static void retry_gets_own_epoch(const char *batch_max)
{
    start(batch_max);
    orch_rpc_client *c = lt_client(&svc);
    lt_owner o;
    lt_owner_spawn(&o, NULL, NULL);
    lt_acq first = lt_acquire(c, "ORCH-RETRY-1", "orch", &o, "doubt"); /* the late grant */
    cr_assert(first.granted && !first.already_held, "%s", first.message);
    lt_acq retry = lt_acquire(c, "ORCH-RETRY-1", "orch", &o, "doubt");
    cr_assert(retry.granted && retry.already_held, "%s", retry.message);
    cr_assert_gt(retry.epoch, first.epoch, "the retry was answered with the first grant's epoch");
    orch_rpc_status st;
    cr_assert_eq(lt_release(c, "ORCH-RETRY-1", first.epoch, NULL, &st),
                 ORCH_CODE_FAILED_PRECONDITION, "%s", st.message);
    cr_assert(lt_validate(c, "ORCH-RETRY-1", retry.epoch).valid,
              "the release of the first grant ended the retry's");
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM lease_events WHERE work_item ="
                            " 'ORCH-RETRY-1' AND kind = 'granted' AND epoch = %llu",
                            (unsigned long long)retry.epoch),
                 1, "the retry's grant has no event");
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM lease_events WHERE work_item ="
                            " 'ORCH-RETRY-1' AND kind = 'released' AND epoch = %llu",
                            (unsigned long long)first.epoch),
                 1, "the superseded epoch has no end event");
    cr_assert_eq(lt_release(c, "ORCH-RETRY-1", retry.epoch, NULL, &st), ORCH_CODE_OK, "%s",
                 st.message);
}

Test(lease_doubt, a_same_owner_retry_gets_an_epoch_no_older_release_can_end)
{
    retry_gets_own_epoch("1");
}

Test(lease_doubt, a_same_owner_retry_gets_an_epoch_no_older_release_can_end_batched)
{
    retry_gets_own_epoch("8");
}

/* Regression: a same-owner Acquire whose move to the next epoch committed
 * after its caller's deadline was answered as a new late grant: released,
 * so the item was free (and granted to another owner) while its owner
 * still believed it held it. Here lease-service is stopped (SIGSTOP) while
 * the move waits for a row lock and commits; it resumes past the deadline,
 * inside the database layer's slack. */
static void late_move_keeps_the_lease(const char *batch_max)
{
    start(batch_max);
    orch_rpc_client *c = lt_client(&svc);
    lt_owner o, p;
    lt_owner_spawn(&o, NULL, NULL);
    lt_owner_spawn(&p, NULL, NULL);
    lt_acq first = lt_acquire(c, "ORCH-LATE-1", "orch", &o, "doubt");
    cr_assert(first.granted && !first.already_held, "%s", first.message);
    /* A short row lock on the held lease, as stage's CAS takes (FOR SHARE). */
    holder_exec("BEGIN");
    holder_exec("SELECT 1 FROM transition_lease WHERE work_item = 'ORCH-LATE-1' FOR SHARE");
    call a;
    memset(&a, 0, sizeof a);
    a.c = lt_client(&svc);
    snprintf(a.item, sizeof a.item, "ORCH-LATE-1");
    a.owner = o;
    a.timeout_ms = 2500;
    pthread_t th;
    uint64_t t0 = orch_mono_ms();
    cr_assert_eq(pthread_create(&th, NULL, acquire_once, &a), 0);
    wait_lock_waiters(1);
    th_stop_process(svc.pid, 5000);
    holder_exec("COMMIT");
    cr_assert(lt_sql_wait(db, (long long)first.epoch + 1, 5000,
                          "SELECT max(epoch) FROM transition_lease WHERE work_item ="
                          " 'ORCH-LATE-1' AND released_at IS NULL"),
              "the move to the next epoch did not commit");
    uint64_t now = orch_mono_ms();
    if (now < t0 + 2800)
        lt_sleep_ms((unsigned)(t0 + 2800 - now)); /* past the deadline, inside the slack */
    kill(svc.pid, SIGCONT);
    pthread_join(th, NULL);
    cr_assert_eq(a.got.code, ORCH_CODE_DEADLINE_EXCEEDED, "%s", a.got.message);
    lt_valid v = lt_validate(c, "ORCH-LATE-1", first.epoch + 1);
    cr_assert(v.held && v.valid, "the lease of the late same-owner Acquire was ended");
    lt_acq other = lt_acquire(c, "ORCH-LATE-1", "orch", &p, "doubt-other");
    cr_assert_not(other.granted, "another owner was granted epoch %llu while O holds it",
                  (unsigned long long)other.epoch);
    /* The owner settles it as the client library does: release by owner. */
    Orch__V1__ReleaseRequest rel = ORCH__V1__RELEASE_REQUEST__INIT;
    Orch__V1__Owner om;
    lt_owner_msg(&o, &om);
    rel.work_item = "ORCH-LATE-1";
    rel.owner = &om;
    orch_rpc_status st;
    cr_assert_eq(
        lt_call(c, orch_lease_method_release, &rel.base, &orch__v1__release_reply__descriptor, &st),
        ORCH_CODE_OK, "%s", st.message);
    cr_assert_not(lt_validate(c, "ORCH-LATE-1", first.epoch + 1).held);
}

Test(lease_doubt, a_late_same_owner_acquire_leaves_the_lease_with_its_owner)
{
    late_move_keeps_the_lease("1");
}

Test(lease_doubt, a_late_same_owner_acquire_leaves_the_lease_with_its_owner_batched)
{
    late_move_keeps_the_lease("8");
}

/* A new row, uncommitted on the holder connection. */
static void insert_uncommitted(const char *item)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO transition_lease (work_item, epoch, owner_host, owner_boot_id,"
             " owner_pid, owner_start_ticks, owner_instance, actor, transition, repo)"
             " VALUES ('%s', 1, 'h', 'b', 1, 1, 'i', 'a', 't', 'orch')",
             item);
    holder_exec(sql);
}

/* Regression: SKIP LOCKED does not cover the batch's upsert, so a batch
 * granting an item absent from its snapshot (another transaction inserting
 * it) waited for that transaction; two such batches (the two in
 * PostgreSQL at once) stalled every request behind them until its
 * deadline. The batch now gives up the wait after a short lock_timeout and
 * its requests run alone, where they wait as without group commit. */
Test(lease_doubt, a_new_items_uncommitted_insert_does_not_stall_the_batch_queue)
{
    start("8");
    holder_exec("BEGIN");
    insert_uncommitted("ORCH-NEW-1");
    call n1, n2, f;
    pthread_t t1, t2, tf;
    call_start(&n1, &t1, "ORCH-NEW-1", 20000);
    wait_lock_waiters(1);
    insert_uncommitted("ORCH-NEW-2");
    call_start(&n2, &t2, "ORCH-NEW-2", 20000);
    wait_lock_waiters(2);
    call_start(&f, &tf, "ORCH-NEW-FREE", 3000);
    pthread_join(tf, NULL);
    cr_assert(f.got.granted, "a free item waited behind an uncommitted insert: %s %s",
              orch_code_name(f.got.code), f.got.message);
    cr_assert_not(__atomic_load_n(&n1.done, __ATOMIC_SEQ_CST) ||
                      __atomic_load_n(&n2.done, __ATOMIC_SEQ_CST),
                  "the new items' grants did not wait for the inserting transaction");
    holder_exec("ROLLBACK");
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert(n1.got.granted && n2.got.granted, "%s: %s / %s: %s", orch_code_name(n1.got.code),
              n1.got.message, orch_code_name(n2.got.code), n2.got.message);
}
