/*
 * lease_batch.c - see lease_batch.h.
 *
 * Each kind (Acquire, Release) has a queue and at most INFLIGHT batches in
 * PostgreSQL. A caller queues its job on its own stack and waits on the
 * job's own condition variable; when a place is free and its item is in no
 * running batch, it takes the queue's head (distinct work items not in a
 * running batch, in arrival order) and runs it, outside the mutex, then
 * wakes exactly the callers of that batch and the first queued caller that
 * may lead the next one. A request the batch did not decide goes back to
 * its caller, which runs it alone (lease_batch.h).
 * Errors: every job carries its own orch_err.
 */
#include "lease_batch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/clock.h"

enum { KIND_ACQUIRE, KIND_RELEASE, NKINDS };

/* Batches of one kind in PostgreSQL at once: while one waits for its WAL
 * flush, the next one runs. */
#define INFLIGHT 2
typedef enum { JOB_QUEUED, JOB_TAKEN, JOB_DONE } job_state;

typedef struct job {
    int kind;
    uint64_t dl;
    const lease_claim *cl; /* KIND_ACQUIRE */
    lease_acquired acq;    /* ...its answer */
    const char *item;      /* the work item, of either kind */
    uint64_t epoch;        /* KIND_RELEASE */
    bool released;         /* ...its answer */
    bool alone;            /* not decided by the batch: its caller runs it alone */
    orch_err err;
    job_state state;
    pthread_cond_t cv; /* signalled when state changes or it may lead */
    struct job *next;
} job;

struct lease_batch {
    orch_db_pool *db;
    int max;
    pthread_mutex_t mu;
    pthread_condattr_t monotonic; /* for the jobs' cv: deadlines are monotonic */
    job *head[NKINDS];
    job *taken[NKINDS];  /* the jobs of the batches in PostgreSQL */
    int running[NKINDS]; /* how many batches of that kind are in PostgreSQL */
};

orch_err lease_batch_new(orch_db_pool *db, int max, lease_batch **out)
{
    if (!db || max < 2 || max > LEASE_BATCH_CAP)
        return ORCH_EINVAL;
    lease_batch *b = calloc(1, sizeof *b);
    if (!b)
        return ORCH_ENOMEM;
    pthread_condattr_init(&b->monotonic);
    pthread_condattr_setclock(&b->monotonic, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->mu, NULL);
    b->db = db;
    b->max = max;
    *out = b;
    return ORCH_OK;
}

void lease_batch_free(lease_batch *b)
{
    if (!b)
        return;
    pthread_condattr_destroy(&b->monotonic);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* ---- running a batch (no lock held) ------------------------------------- */

static orch_err run_statement(orch_db_conn *c, uint64_t dl, job **jobs, size_t n)
{
    orch_err err;
    if (jobs[0]->kind == KIND_ACQUIRE) {
        const lease_claim *cl[LEASE_BATCH_CAP];
        lease_acquired *out[LEASE_BATCH_CAP];
        for (size_t i = 0; i < n; i++) {
            cl[i] = jobs[i]->cl;
            out[i] = &jobs[i]->acq;
        }
        err = lease_store_acquire_batch(c, dl, cl, n, out);
        for (size_t i = 0; !err && i < n; i++)
            jobs[i]->alone = jobs[i]->acq.alone;
        return err;
    }
    const char *items[LEASE_BATCH_CAP];
    uint64_t epochs[LEASE_BATCH_CAP];
    bool released[LEASE_BATCH_CAP], alone[LEASE_BATCH_CAP];
    for (size_t i = 0; i < n; i++) {
        items[i] = jobs[i]->item;
        epochs[i] = jobs[i]->epoch;
    }
    err = lease_store_release_batch(c, dl, items, epochs, n, released, alone);
    for (size_t i = 0; !err && i < n; i++) {
        jobs[i]->released = released[i];
        jobs[i]->alone = alone[i];
    }
    return err;
}

/* Whether a failed batch says nothing about its requests one by one: a
 * deadline, or a connection lost (every single statement would have met
 * the same; with ORCH_EDB_UNKNOWN every request's outcome is in doubt).
 * Any other failure is a statement's, maybe one request's. */
static bool fails_all(orch_err err)
{
    return err == ORCH_ETIMEDOUT || err == ORCH_EDB_UNAVAIL || err == ORCH_EDB_UNKNOWN;
}

/* Runs jobs[0..n) as one statement on one connection and sets every job's
 * answer. A job the statement did not decide (its row locked elsewhere), or
 * every job of a statement that failed for one of them, is sent back to
 * run alone on its caller's thread: the leader never runs members one by
 * one, so no member waits behind another's row lock or error. */
static void run_batch(lease_batch *b, job **jobs, size_t n)
{
    uint64_t dl = 0;
    for (size_t i = 0; i < n; i++)
        dl = jobs[i]->dl > dl ? jobs[i]->dl : dl;
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(b->db, dl, &c);
    if (!err)
        err = run_statement(c, dl, jobs, n);
    orch_db_release(c);
    for (size_t i = 0; i < n; i++) {
        bool own = err && !fails_all(err);
        jobs[i]->err = own ? ORCH_OK : err;
        if (own)
            jobs[i]->alone = true;
    }
}

/* ---- the queues (lock held) --------------------------------------------- */

static void enqueue(lease_batch *b, job *j)
{
    job **p = &b->head[j->kind];
    while (*p)
        p = &(*p)->next;
    j->next = NULL;
    *p = j;
}

static void unlink_job(lease_batch *b, job *j)
{
    for (job **p = &b->head[j->kind]; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            return;
        }
}

/* Whether `item` is in jobs[0..n) or in a batch of `kind` in PostgreSQL. */
static bool item_taken(const lease_batch *b, int kind, job *const *jobs, size_t n, const char *item)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(jobs[i]->item, item) == 0)
            return true;
    for (const job *j = b->taken[kind]; j; j = j->next)
        if (strcmp(j->item, item) == 0)
            return true;
    return false;
}

/* Whether j may lead a batch now: a place in PostgreSQL is free and its
 * work item is in none of the batches there. */
static bool may_lead(const lease_batch *b, const job *j)
{
    return j->state == JOB_QUEUED && b->running[j->kind] < INFLIGHT &&
           !item_taken(b, j->kind, NULL, 0, j->item);
}

/* Wakes the first queued job of `kind` that may lead a batch now. */
static void wake_next(lease_batch *b, int kind)
{
    for (job *j = b->head[kind]; j; j = j->next)
        if (may_lead(b, j)) {
            pthread_cond_signal(&j->cv);
            return;
        }
}

/* Takes up to max queued jobs of `kind`, one per work item and none whose
 * item is in PostgreSQL, in queue order; a job whose deadline passed in the
 * queue is answered ORCH_ETIMEDOUT. */
static size_t take(lease_batch *b, int kind, job **jobs)
{
    size_t n = 0;
    job **p = &b->head[kind];
    while (*p && n < (size_t)b->max) {
        job *j = *p;
        bool expired = orch_deadline_left_ms(j->dl) == 0;
        if (!expired && item_taken(b, kind, jobs, n, j->item)) {
            p = &j->next; /* waits for a later batch */
            continue;
        }
        *p = j->next;
        if (expired) {
            j->err = ORCH_ETIMEDOUT;
            j->state = JOB_DONE;
            pthread_cond_signal(&j->cv);
        } else {
            j->state = JOB_TAKEN;
            jobs[n++] = j;
        }
    }
    for (size_t i = 0; i < n; i++) {
        jobs[i]->next = b->taken[kind];
        b->taken[kind] = jobs[i];
    }
    return n;
}

static void untake(lease_batch *b, int kind, job *j)
{
    for (job **p = &b->taken[kind]; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            return;
        }
}

/* Runs the next batch of `kind` (the mutex held on entry and on return). */
static void lead(lease_batch *b, int kind)
{
    job *jobs[LEASE_BATCH_CAP];
    size_t n = take(b, kind, jobs);
    b->running[kind]++;
    wake_next(b, kind); /* more than max queued: another batch may start */
    pthread_mutex_unlock(&b->mu);
    if (n)
        run_batch(b, jobs, n);
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < n; i++) {
        untake(b, kind, jobs[i]);
        jobs[i]->state = JOB_DONE;
        pthread_cond_signal(&jobs[i]->cv);
    }
    b->running[kind]--;
    wake_next(b, kind);
}

static void wait_until(lease_batch *b, job *j, uint64_t dl)
{
    if (dl == ORCH_DEADLINE_NONE) {
        pthread_cond_wait(&j->cv, &b->mu);
        return;
    }
    struct timespec ts = { .tv_sec = (time_t)(dl / 1000), .tv_nsec = (long)(dl % 1000) * 1000000 };
    (void)pthread_cond_timedwait(&j->cv, &b->mu, &ts); /* the caller reads the clock */
}

/* Queues j and returns once it is answered. */
static orch_err submit(lease_batch *b, job *j)
{
    pthread_cond_init(&j->cv, &b->monotonic);
    pthread_mutex_lock(&b->mu);
    j->state = JOB_QUEUED;
    enqueue(b, j);
    while (j->state != JOB_DONE) {
        if (may_lead(b, j)) {
            lead(b, j->kind);
            continue;
        }
        if (j->state == JOB_QUEUED && orch_deadline_left_ms(j->dl) == 0) {
            unlink_job(b, j);
            j->err = ORCH_ETIMEDOUT;
            wake_next(b, j->kind); /* it may have been the one woken to lead */
            break;
        }
        /* A job in PostgreSQL waits for its commit, whatever its deadline. */
        wait_until(b, j, j->state == JOB_QUEUED ? j->dl : ORCH_DEADLINE_NONE);
    }
    pthread_mutex_unlock(&b->mu);
    pthread_cond_destroy(&j->cv);
    return j->err;
}

orch_err lease_batch_acquire(lease_batch *b, uint64_t dl, const lease_claim *cl,
                             lease_acquired *out, bool *alone)
{
    job j = { .kind = KIND_ACQUIRE, .dl = dl, .cl = cl, .item = cl->work_item };
    orch_err err = submit(b, &j);
    if (!err) {
        *alone = j.alone;
        if (!j.alone)
            *out = j.acq;
    }
    return err;
}

orch_err lease_batch_release(lease_batch *b, uint64_t dl, const char *work_item, uint64_t epoch,
                             bool *released, bool *alone)
{
    job j = { .kind = KIND_RELEASE, .dl = dl, .item = work_item, .epoch = epoch };
    orch_err err = submit(b, &j);
    if (!err) {
        *alone = j.alone;
        if (!j.alone)
            *released = j.released;
    }
    return err;
}
