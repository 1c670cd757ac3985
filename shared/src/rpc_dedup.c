/*
 * rpc_dedup.c - a chained hash table of request ids with a FIFO of finished
 * entries for eviction. One mutex guards everything; operations are O(1)
 * amortized. Ownership: the table owns ids and stored replies.
 */
#include "rpc_dedup.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct dentry {
    char *id;
    uint64_t hash;
    bool done;
    void *reply;
    size_t len;
    uint64_t done_ms;
    void **waiters;
    size_t nwaiters, capwaiters;
    struct dentry *chain;     /* hash bucket chain */
    struct dentry *fifo_next; /* finished entries, oldest first */
} dentry;

struct orch__dedup {
    pthread_mutex_t mu;
    size_t cap;
    uint32_t ttl_ms;
    size_t nbuckets;
    dentry **buckets;
    dentry *fifo_head, *fifo_tail;
    size_t ndone;
};

static uint64_t hash_id(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

orch_err orch__dedup_new(size_t cap, uint32_t ttl_ms, orch__dedup **out)
{
    orch__dedup *d = calloc(1, sizeof *d);
    if (!d)
        return ORCH_ENOMEM;
    d->nbuckets = 64;
    while (d->nbuckets < cap * 2)
        d->nbuckets *= 2;
    d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
    if (!d->buckets) {
        free(d);
        return ORCH_ENOMEM;
    }
    d->cap = cap;
    d->ttl_ms = ttl_ms;
    pthread_mutex_init(&d->mu, NULL);
    *out = d;
    return ORCH_OK;
}

static void entry_free(dentry *e)
{
    free(e->id);
    free(e->reply);
    free(e->waiters);
    free(e);
}

void orch__dedup_free(orch__dedup *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nbuckets; i++) {
        dentry *e = d->buckets[i];
        while (e) {
            dentry *n = e->chain;
            entry_free(e);
            e = n;
        }
    }
    pthread_mutex_destroy(&d->mu);
    free(d->buckets);
    free(d);
}

static dentry **slot_of(orch__dedup *d, const char *id, uint64_t h)
{
    dentry **p = &d->buckets[h & (d->nbuckets - 1)];
    while (*p && ((*p)->hash != h || strcmp((*p)->id, id) != 0))
        p = &(*p)->chain;
    return p;
}

static void unlink_entry(orch__dedup *d, dentry *e)
{
    dentry **p = slot_of(d, e->id, e->hash);
    if (*p == e)
        *p = e->chain;
}

/* Callers read the clock before taking the lock, so `now_ms` may be a little
 * older than a finish time recorded meanwhile: that is age 0, not a wrap. */
static uint64_t age_ms(const dentry *e, uint64_t now_ms)
{
    return now_ms > e->done_ms ? now_ms - e->done_ms : 0;
}

/* Drops finished entries that are too old or beyond the capacity. Finished
 * entries leave the FIFO in order, so only its head needs looking at. */
static void evict(orch__dedup *d, uint64_t now_ms)
{
    while (d->fifo_head && (d->ndone > d->cap || age_ms(d->fifo_head, now_ms) > d->ttl_ms)) {
        dentry *e = d->fifo_head;
        d->fifo_head = e->fifo_next;
        if (!d->fifo_head)
            d->fifo_tail = NULL;
        d->ndone--;
        unlink_entry(d, e);
        entry_free(e);
    }
}

orch_err orch__dedup_begin(orch__dedup *d, const char *id, uint64_t now_ms, void *waiter,
                           orch__dedup_verdict *verdict, void **reply, size_t *len)
{
    uint64_t h = hash_id(id);
    orch_err err = ORCH_OK;
    pthread_mutex_lock(&d->mu);
    evict(d, now_ms);
    dentry **p = slot_of(d, id, h);
    dentry *e = *p;
    if (e && e->done) {
        void *copy = malloc(e->len ? e->len : 1);
        if (!copy) {
            err = ORCH_ENOMEM;
        } else {
            memcpy(copy, e->reply, e->len);
            *reply = copy;
            *len = e->len;
            *verdict = ORCH__DEDUP_DONE;
        }
    } else if (e) {
        if (e->nwaiters == e->capwaiters) {
            size_t nc = e->capwaiters ? e->capwaiters * 2 : 4;
            void **w = realloc(e->waiters, nc * sizeof *w);
            if (!w) {
                pthread_mutex_unlock(&d->mu);
                return ORCH_ENOMEM;
            }
            e->waiters = w;
            e->capwaiters = nc;
        }
        e->waiters[e->nwaiters++] = waiter;
        *verdict = ORCH__DEDUP_JOINED;
    } else {
        e = calloc(1, sizeof *e);
        if (e)
            e->id = strdup(id);
        if (!e || !e->id) {
            free(e);
            err = ORCH_ENOMEM;
        } else {
            e->hash = h;
            *p = e;
            *verdict = ORCH__DEDUP_NEW;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return err;
}

void orch__dedup_finish(orch__dedup *d, const char *id, uint64_t now_ms, const void *reply,
                        size_t len, int keep, void ***waiters, size_t *nwaiters)
{
    pthread_mutex_lock(&d->mu);
    dentry **p = slot_of(d, id, hash_id(id));
    dentry *e = *p;
    *waiters = NULL;
    *nwaiters = 0;
    if (!e || e->done) {
        pthread_mutex_unlock(&d->mu);
        return;
    }
    *waiters = e->waiters;
    *nwaiters = e->nwaiters;
    e->waiters = NULL;
    e->nwaiters = e->capwaiters = 0;
    void *copy = keep ? malloc(len ? len : 1) : NULL;
    if (!copy) {
        *p = e->chain; /* not kept (or no memory to keep it): forget */
        entry_free(e);
    } else {
        memcpy(copy, reply, len);
        e->reply = copy;
        e->len = len;
        e->done = true;
        e->done_ms = now_ms;
        if (d->fifo_tail)
            d->fifo_tail->fifo_next = e;
        else
            d->fifo_head = e;
        d->fifo_tail = e;
        d->ndone++;
        evict(d, now_ms);
    }
    pthread_mutex_unlock(&d->mu);
}
