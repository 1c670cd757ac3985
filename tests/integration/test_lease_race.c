/*
 * test_lease_race.c - owner exclusion and fencing under contention
 * (DESIGN.md invariants 1 and 3): many actors race Acquire on one work item,
 * as concurrent clients of one test process and as separate orchctl
 * processes. Each round exactly one is GRANTED, every other is told HELD
 * with the winner's identity and epoch, and epochs strictly increase.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_lease_util.h"

#define NACTORS      10
#define NROUNDS      10
#define NPROCS       8
#define NPROC_ROUNDS 4

static th_svc svc;
static char db[600];

static void setup(void)
{
    static const char *const env[] = { "ORCH_HOST_ID=" LT_HOST,
                                       "ORCH_LEASE_REAPER_INTERVAL_MS=60000", NULL };
    th_db_fresh(db, sizeof db);
    th_svc_start(&svc, "lease", db, env, true);
}

static char race_dir[64];

static void remove_race_dir(void)
{
    if (!race_dir[0])
        return;
    for (int i = 0; i < NPROCS; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/orchctl-%d.out", race_dir, i);
        unlink(path);
    }
    rmdir(race_dir);
    race_dir[0] = '\0';
}

static void teardown(void)
{
    lt_cleanup();
    remove_race_dir();
    if (svc.pid > 0 && th_svc_stop(&svc, SIGTERM, 10000) != 0)
        th_svc_dump_log(&svc);
}

TestSuite(lease_race, .init = setup, .fini = teardown, .timeout = 60);

typedef struct actor {
    orch_rpc_client *c;
    lt_owner owner;
    pthread_barrier_t *start;
    const char *item;
    lt_acq got;
} actor;

static void *race_once(void *p)
{
    actor *a = p;
    pthread_barrier_wait(a->start);
    a->got = lt_acquire(a->c, a->item, "orch", &a->owner, "racer");
    return NULL;
}

/* NACTORS actors, each with a client and a live owner, racing on `item`. */
static void actors_init(actor *actors, pthread_barrier_t *start, const char *item)
{
    for (int i = 0; i < NACTORS; i++) {
        memset(&actors[i], 0, sizeof actors[i]);
        actors[i].c = lt_client(&svc);
        lt_owner_spawn(&actors[i].owner, NULL, NULL);
        actors[i].start = start;
        actors[i].item = item;
    }
}

/* One round: every active actor (all when active is NULL) calls Acquire at
 * once, released together by the barrier. */
static void race_round(actor *actors, const bool *active, pthread_barrier_t *start)
{
    pthread_t t[NACTORS];
    int racing = 0;
    for (int i = 0; i < NACTORS; i++)
        racing += !active || active[i];
    pthread_barrier_init(start, NULL, (unsigned)racing);
    for (int i = 0; i < NACTORS; i++)
        if (!active || active[i])
            cr_assert_eq(pthread_create(&t[i], NULL, race_once, &actors[i]), 0);
    for (int i = 0; i < NACTORS; i++)
        if (!active || active[i])
            pthread_join(t[i], NULL);
    pthread_barrier_destroy(start);
}

/* Exactly one actor was granted, the others were told HELD; returns the
 * winner. */
static int one_granted(const actor *actors, int round)
{
    int winner = -1, held = 0;
    for (int i = 0; i < NACTORS; i++) {
        const lt_acq *g = &actors[i].got;
        cr_assert_eq(g->code, ORCH_CODE_OK, "round %d actor %d: %s", round, i, g->message);
        if (g->granted) {
            cr_assert_eq(winner, -1, "round %d: actors %d and %d were both granted", round, winner,
                         i);
            winner = i;
        } else {
            cr_assert(g->held, "round %d actor %d: neither GRANTED nor HELD", round, i);
            held++;
        }
    }
    cr_assert_neq(winner, -1, "round %d: nobody was granted", round);
    cr_assert_eq(held, NACTORS - 1);
    return winner;
}

/* Every loser's HELD names the winner: its epoch, pid, host, liveness. */
static void losers_name_the_winner(const actor *actors, int winner, int round)
{
    const lt_acq *w = &actors[winner].got;
    for (int i = 0; i < NACTORS; i++) {
        const lt_acq *g = &actors[i].got;
        if (i == winner)
            continue;
        cr_assert_eq(g->epoch, w->epoch, "HELD must carry the holder's epoch");
        cr_assert_eq(g->holder_epoch, w->epoch);
        cr_assert_eq(g->holder_pid, actors[winner].owner.pid,
                     "round %d: HELD names pid %d, the winner is %d", round, g->holder_pid,
                     (int)actors[winner].owner.pid);
        cr_assert_str_eq(g->holder_host, LT_HOST);
        cr_assert_eq(g->holder_liveness, ORCH__V1__LIVENESS__LIVENESS_ALIVE);
    }
}

/* The events of NROUNDS rounds of NACTORS: one grant per strictly
 * increasing epoch, the last being last_epoch. */
static void check_race_events(uint64_t last_epoch)
{
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind = 'granted'"),
                 NROUNDS);
    cr_assert_eq(lt_sql_num(db, "SELECT count(DISTINCT epoch) FROM lease_events"
                                " WHERE kind = 'granted'"),
                 NROUNDS, "one 'granted' event per epoch");
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind = 'released'"),
                 NROUNDS);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind = 'deferred'"),
                 NROUNDS * (NACTORS - 1));
    /* Epochs of the grants strictly increase in the order they were made. */
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM (SELECT epoch, lag(epoch) OVER (ORDER BY id)"
                                " AS prev FROM lease_events WHERE kind = 'granted') g"
                                " WHERE prev IS NOT NULL AND epoch <= prev"),
                 0);
    cr_assert_eq(lt_sql_num(db, "SELECT max(epoch) FROM lease_events WHERE kind = 'granted'"),
                 (long long)last_epoch);
}

Test(lease_race, concurrent_clients_exactly_one_granted_per_round)
{
    static const char item[] = "ORCH-RACE-1";
    actor actors[NACTORS];
    pthread_barrier_t start;
    uint64_t last_epoch = 0;

    actors_init(actors, &start, item);
    for (int round = 0; round < NROUNDS; round++) {
        race_round(actors, NULL, &start);
        int winner = one_granted(actors, round);
        const lt_acq *w = &actors[winner].got;
        cr_assert_not(w->reclaimed || w->already_held || w->inert);
        cr_assert_gt(w->epoch, last_epoch, "round %d: epoch %llu after %llu", round,
                     (unsigned long long)w->epoch, (unsigned long long)last_epoch);
        last_epoch = w->epoch;
        losers_name_the_winner(actors, winner, round);
        /* The database agrees with the answers. */
        cr_assert_eq(lt_sql_num(db,
                                "SELECT owner_pid FROM transition_lease WHERE work_item = '%s'"
                                " AND released_at IS NULL AND epoch = %llu",
                                item, (unsigned long long)w->epoch),
                     actors[winner].owner.pid);
        orch_rpc_status st;
        cr_assert_eq(lt_release(actors[winner].c, item, w->epoch, NULL, &st), ORCH_CODE_OK, "%s",
                     st.message);
    }
    check_race_events(last_epoch);
    for (int i = 0; i < NACTORS; i++)
        lt_client_close(actors[i].c);
}

/* ---- separate processes --------------------------------------------------- */

static int read_file(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(out, 1, n - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    return (int)got;
}

/* The orchctl processes of one round: pids/actors/logs of each. */
typedef struct proc_race {
    const char *item;
    const char *const *env;
    char pids[NPROCS][16], actors[NPROCS][32], logs[NPROCS][600];
    lt_owner owners[NPROCS];
} proc_race;

/* Waits for the round's orchctl processes: exactly one exited 0 (GRANTED),
 * the others 3; returns the winner. */
static int proc_one_granted(const proc_race *r, const pid_t *ctl, int round)
{
    int winner = -1, held = 0;
    for (int i = 0; i < NPROCS; i++) {
        char out[4096];
        int rc = th_kill(ctl[i], 0, 20000);
        read_file(r->logs[i], out, sizeof out);
        cr_assert(rc == 0 || rc == 3, "round %d orchctl %d exited %d:\n%s", round, i, rc, out);
        if (rc == 0) {
            cr_assert_eq(winner, -1, "round %d: orchctl %d and %d both got the lease", round,
                         winner, i);
            winner = i;
            cr_assert(strstr(out, "GRANTED"), "%s", out);
        } else {
            held++;
        }
    }
    cr_assert_neq(winner, -1, "round %d: nobody was granted", round);
    cr_assert_eq(held, NPROCS - 1);
    return winner;
}

/* One round of NPROCS orchctl acquires: every loser names the winner, whose
 * epoch is above last_epoch; releases it and returns its epoch. */
static long long proc_round(const proc_race *r, int round, uint64_t last_epoch)
{
    pid_t ctl[NPROCS];
    for (int i = 0; i < NPROCS; i++) {
        const char *argv[] = { lt_orchctl(), "lease",   "acquire",    r->item, "--owner-pid",
                               r->pids[i],   "--actor", r->actors[i], NULL };
        ctl[i] = th_spawn_env(argv, r->env, r->logs[i]);
    }
    int winner = proc_one_granted(r, ctl, round);
    /* Every loser was told who holds it. */
    char needle[32];
    snprintf(needle, sizeof needle, "pid %d", (int)r->owners[winner].pid);
    for (int i = 0; i < NPROCS; i++) {
        char out[4096];
        if (i == winner)
            continue;
        read_file(r->logs[i], out, sizeof out);
        cr_assert(strstr(out, "HELD") && strstr(out, needle),
                  "round %d: loser %d does not name the winner (%s):\n%s", round, i, needle, out);
    }
    long long epoch = lt_sql_num(db,
                                 "SELECT epoch FROM transition_lease WHERE work_item = '%s'"
                                 " AND released_at IS NULL AND owner_pid = %d",
                                 r->item, (int)r->owners[winner].pid);
    cr_assert_gt(epoch, (long long)last_epoch, "round %d: epoch did not increase", round);
    char ep[24], out[4096];
    snprintf(ep, sizeof ep, "%lld", epoch);
    const char *rel[] = { lt_orchctl(), "lease", "release", r->item, ep, NULL };
    cr_assert_eq(th_run(rel, r->env, out, sizeof out, 10000), 0, "%s", out);
    return epoch;
}

Test(lease_race, orchctl_processes_exactly_one_exits_zero_per_round)
{
    char url_env[128];
    uint64_t last_epoch = 0;

    snprintf(race_dir, sizeof race_dir, "/tmp/orch-lease-race-XXXXXX");
    cr_assert(mkdtemp(race_dir));
    snprintf(url_env, sizeof url_env, "ORCH_LEASE_RPC_URL=%s", svc.rpc_url);
    const char *env[] = { url_env, "ORCH_HOST_ID=" LT_HOST, NULL };
    proc_race r = { .item = "ORCH-RACE-PROC", .env = env };
    for (int i = 0; i < NPROCS; i++) {
        lt_owner_spawn(&r.owners[i], NULL, NULL);
        snprintf(r.pids[i], sizeof r.pids[i], "%d", (int)r.owners[i].pid);
        snprintf(r.actors[i], sizeof r.actors[i], "racer-%d", i);
        snprintf(r.logs[i], sizeof r.logs[i], "%s/orchctl-%d.out", race_dir, i);
    }
    for (int round = 0; round < NPROC_ROUNDS; round++) {
        last_epoch = (uint64_t)proc_round(&r, round, last_epoch);
    }
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind = 'granted'"),
                 NPROC_ROUNDS);
    cr_assert_eq(lt_sql_num(db, "SELECT count(DISTINCT epoch) FROM lease_events"
                                " WHERE kind = 'granted'"),
                 NPROC_ROUNDS);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind = 'deferred'"),
                 NPROC_ROUNDS * (NPROCS - 1));
    remove_race_dir();
}

/* ---- racing to take over a dead owner's lease ------------------------------ */

/* Of the active actors exactly one took the dead owner's lease (epoch
 * dead_epoch + 1, told it reclaimed) and the others deferred on it; one
 * reclaim event of dead_epoch. Returns the winner. */
static int one_took_over(const actor *actors, const bool *active, int round, uint64_t dead_epoch)
{
    int winner = -1;
    for (int i = 0; i < NACTORS; i++) {
        const lt_acq *a = &actors[i].got;
        if (!active[i])
            continue;
        cr_assert_eq(a->code, ORCH_CODE_OK, "round %d actor %d: %s", round, i, a->message);
        if (a->granted) {
            cr_assert_eq(winner, -1, "round %d: actors %d and %d both took over", round, winner, i);
            winner = i;
        }
    }
    cr_assert_neq(winner, -1, "round %d: nobody took the dead owner's lease", round);
    const lt_acq *w = &actors[winner].got;
    cr_assert(w->reclaimed, "round %d: the winner must be told it took over", round);
    cr_assert_eq(w->epoch, dead_epoch + 1, "round %d", round);
    for (int i = 0; i < NACTORS; i++) {
        const lt_acq *a = &actors[i].got;
        if (!active[i] || i == winner)
            continue;
        cr_assert(a->held, "round %d actor %d: neither GRANTED nor HELD", round, i);
        cr_assert_eq(a->holder_pid, actors[winner].owner.pid,
                     "round %d: actor %d deferred on pid %d, not on the new holder %d", round, i,
                     a->holder_pid, (int)actors[winner].owner.pid);
        cr_assert_eq(a->epoch, w->epoch);
    }
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                            " AND kind = 'reclaimed-stale' AND epoch = %llu",
                            actors[winner].item, (unsigned long long)dead_epoch),
                 1, "round %d: one reclaim of epoch %llu", round, (unsigned long long)dead_epoch);
    return winner;
}

Test(lease_race, concurrent_takeover_of_a_dead_owners_lease_has_one_winner)
{
    static const char item[] = "ORCH-RACE-TAKEOVER";
    actor actors[NACTORS];
    bool active[NACTORS];
    pthread_barrier_t start;
    orch_rpc_client *c = lt_client(&svc);
    lt_owner first;

    lt_owner_spawn(&first, NULL, NULL);
    lt_acq g = lt_acquire(c, item, "orch", &first, "monitor");
    cr_assert(g.granted, "%s", g.message);
    uint64_t dead_epoch = g.epoch;
    lt_owner_kill(&first);
    actors_init(actors, &start, item);
    for (int i = 0; i < NACTORS; i++)
        active[i] = true;
    /* Each round the previous holder is dead: all race to take over, then
     * the winner is killed in turn. */
    for (int round = 0; round < 4; round++) {
        race_round(actors, active, &start);
        int winner = one_took_over(actors, active, round, dead_epoch);
        dead_epoch = actors[winner].got.epoch;
        lt_owner_kill(&actors[winner].owner);
        active[winner] = false;
    }
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                            " AND kind = 'granted'",
                            item),
                 5);
    cr_assert_eq(lt_sql_num(db,
                            "SELECT count(*) FROM lease_events WHERE work_item = '%s'"
                            " AND kind = 'reclaimed-stale'",
                            item),
                 4);
    for (int i = 0; i < NACTORS; i++)
        lt_client_close(actors[i].c);
    lt_client_close(c);
}
