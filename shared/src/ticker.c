/*
 * ticker.c - see ticker.h.
 *
 * Threading: `mu` guards `quit` and `woken`; the thread holds it except
 * while it calls fn. Waits are absolute deadlines on CLOCK_MONOTONIC, so a
 * spurious wake-up or a wall-clock step neither shortens nor lengthens an
 * interval.
 */
#include "orch/ticker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "orch/clock.h"

struct orch_ticker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t interval_ns;
    unsigned flags;
    orch_ticker_fn fn;
    void *arg;
    bool quit, woken;
    _Atomic uint64_t runs;
    char name[16];
};

/* Waits one interval, or less when woken or cancelled. Called and returns
 * with t->mu held. */
static void wait_interval(orch_ticker *t)
{
    uint64_t until = orch_mono_ns() + t->interval_ns;
    struct timespec ts = { (time_t)(until / 1000000000u), (long)(until % 1000000000u) };
    /* Bounded by `until`: each round either returns or waits for it. */
    while (!t->quit && !t->woken && orch_mono_ns() < until)
        (void)pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}

static void *ticker_main(void *arg)
{
    orch_ticker *t = arg;
    bool first = (t->flags & ORCH_TICKER_RUN_AT_START) != 0;
    if (t->name[0])
        (void)pthread_setname_np(pthread_self(), t->name);
    pthread_mutex_lock(&t->mu);
    for (;;) {
        if (!first)
            wait_interval(t);
        first = false;
        if (t->quit)
            break;
        t->woken = false;
        pthread_mutex_unlock(&t->mu);
        bool more = t->fn(t->arg);
        atomic_fetch_add(&t->runs, 1);
        pthread_mutex_lock(&t->mu);
        if (!more)
            break;
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

orch_err orch_ticker_start(const char *name, uint32_t interval_ms, unsigned flags,
                           orch_ticker_fn fn, void *arg, orch_ticker **out)
{
    if (!fn || !out || interval_ms == 0 || (flags & ~ORCH_TICKER_RUN_AT_START))
        return ORCH_EINVAL;
    if (interval_ms > ORCH_TICKER_MAX_MS)
        return ORCH_ERANGE;
    orch_ticker *t = calloc(1, sizeof *t);
    if (!t)
        return ORCH_ENOMEM;
    t->interval_ns = (uint64_t)interval_ms * 1000000u;
    t->flags = flags;
    t->fn = fn;
    t->arg = arg;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->mu, NULL);
    if (pthread_create(&t->thread, NULL, ticker_main, t) != 0)
        goto fail;
    *out = t;
    return ORCH_OK;

fail:
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
    return ORCH_ENOMEM;
}

void orch_ticker_wake(orch_ticker *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->woken = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void orch_ticker_cancel(orch_ticker *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void orch_ticker_stop(orch_ticker *t)
{
    if (!t)
        return;
    orch_ticker_cancel(t);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}

uint64_t orch_ticker_runs(const orch_ticker *t)
{
    return t ? atomic_load(&t->runs) : 0;
}
