/*
 * test_ticker.c - the periodic-thread helper (shared/src/ticker.c): calls
 * at the interval and never sooner, the first call after one interval or at
 * once, wake, stop and cancel while a long interval is pending, a pass that
 * ends its ticker, bad arguments. Assertions count calls; the only time
 * bound checked is "stop returns long before a 60 s interval would end".
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <time.h>

#include "orch/clock.h"
#include "orch/ticker.h"

#define LONG_MS 60000u /* an interval no test waits out */

typedef struct probe {
    atomic_int calls;
    atomic_bool hold;     /* the pass waits while true */
    atomic_bool in_pass;  /* a pass has started and holds */
    atomic_bool finished; /* the last pass returned */
    bool more;            /* what the pass returns */
} probe;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static bool pass(void *arg)
{
    probe *p = arg;
    atomic_store(&p->finished, false);
    atomic_fetch_add(&p->calls, 1);
    atomic_store(&p->in_pass, true);
    for (int i = 0; i < 5000 && atomic_load(&p->hold); i++) /* at most 5 s */
        sleep_ms(1);
    atomic_store(&p->finished, true);
    return p->more;
}

/* Waits (at most 5 s) until `p` has been called `n` times; true if it was. */
static bool wait_calls(probe *p, int n)
{
    for (int i = 0; i < 500 && atomic_load(&p->calls) < n; i++)
        sleep_ms(10);
    return atomic_load(&p->calls) >= n;
}

static orch_ticker *start(probe *p, uint32_t interval_ms, unsigned flags)
{
    orch_ticker *t = NULL;
    p->more = true;
    cr_assert_eq(orch_ticker_start("test", interval_ms, flags, pass, p, &t), ORCH_OK);
    cr_assert_not_null(t);
    return t;
}

Test(ticker, runs_at_the_interval_and_never_sooner)
{
    probe p = { 0 };
    uint64_t t0 = orch_mono_ms();
    orch_ticker *t = start(&p, 20, 0);
    cr_assert(wait_calls(&p, 5), "5 calls within 5 s at a 20 ms interval");
    uint64_t elapsed = orch_mono_ms() - t0;
    int calls = atomic_load(&p.calls);
    /* Every call is preceded by a full interval on the monotonic clock. */
    cr_assert_geq(elapsed, (uint64_t)calls * 20u, "%d calls in %llu ms", calls,
                  (unsigned long long)elapsed);
    orch_ticker_stop(t);
    cr_assert_eq(orch_ticker_runs(NULL), 0);
}

Test(ticker, first_call_waits_one_interval_by_default)
{
    probe p = { 0 };
    orch_ticker *t = start(&p, LONG_MS, 0);
    sleep_ms(100);
    cr_assert_eq(atomic_load(&p.calls), 0);
    orch_ticker_stop(t);
    cr_assert_eq(atomic_load(&p.calls), 0, "stop does not run a last pass");
}

Test(ticker, run_at_start_calls_at_once)
{
    probe p = { 0 };
    orch_ticker *t = start(&p, LONG_MS, ORCH_TICKER_RUN_AT_START);
    cr_assert(wait_calls(&p, 1));
    sleep_ms(50);
    cr_assert_eq(atomic_load(&p.calls), 1, "then waits the interval");
    cr_assert_eq(orch_ticker_runs(t), 1);
    orch_ticker_stop(t);
}

/* 500 ms, not less: the suite shares two cores and runs under sanitizers;
 * a stop that waited out the interval would take 60 s. */
Test(ticker, stop_returns_at_once_while_a_long_interval_is_pending)
{
    probe p = { 0 };
    orch_ticker *t = start(&p, LONG_MS, 0);
    sleep_ms(20);
    uint64_t t0 = orch_mono_ms();
    orch_ticker_stop(t);
    uint64_t took = orch_mono_ms() - t0;
    cr_assert_lt(took, 500u, "stop took %llu ms", (unsigned long long)took);
}

Test(ticker, wake_cuts_the_wait_short)
{
    probe p = { 0 };
    orch_ticker *t = start(&p, LONG_MS, 0);
    orch_ticker_wake(t);
    cr_assert(wait_calls(&p, 1));
    orch_ticker_wake(t);
    cr_assert(wait_calls(&p, 2));
    orch_ticker_stop(t);
    cr_assert_eq(atomic_load(&p.calls), 2);
}

Test(ticker, wake_during_a_pass_is_not_lost)
{
    probe p = { 0 };
    atomic_store(&p.hold, true);
    orch_ticker *t = start(&p, LONG_MS, ORCH_TICKER_RUN_AT_START);
    cr_assert(wait_calls(&p, 1));
    orch_ticker_wake(t);
    atomic_store(&p.hold, false);
    cr_assert(wait_calls(&p, 2), "the wake given during the first pass starts a second");
    orch_ticker_stop(t);
}

Test(ticker, stop_waits_for_the_pass_in_progress)
{
    probe p = { 0 };
    atomic_store(&p.hold, true);
    orch_ticker *t = start(&p, LONG_MS, ORCH_TICKER_RUN_AT_START);
    cr_assert(wait_calls(&p, 1));
    orch_ticker_cancel(t);
    sleep_ms(20);
    atomic_store(&p.hold, false);
    orch_ticker_stop(t);
    cr_assert(atomic_load(&p.finished), "stop returned before the pass did");
    cr_assert_eq(atomic_load(&p.calls), 1, "no pass starts after cancel");
}

Test(ticker, cancel_then_wake_starts_no_pass)
{
    probe p = { 0 };
    orch_ticker *t = start(&p, 10, 0);
    orch_ticker_cancel(t);
    orch_ticker_cancel(t); /* idempotent */
    orch_ticker_wake(t);
    sleep_ms(50);
    cr_assert_eq(atomic_load(&p.calls), 0);
    orch_ticker_stop(t);
}

Test(ticker, a_pass_returning_false_ends_the_thread)
{
    probe p = { 0 };
    orch_ticker *t = NULL;
    cr_assert_eq(orch_ticker_start("test", 10, 0, pass, &p, &t), ORCH_OK); /* p.more false */
    cr_assert(wait_calls(&p, 1));
    sleep_ms(100);
    cr_assert_eq(atomic_load(&p.calls), 1);
    orch_ticker_wake(t);
    sleep_ms(20);
    cr_assert_eq(atomic_load(&p.calls), 1);
    orch_ticker_stop(t);
}

Test(ticker, null_is_accepted)
{
    orch_ticker_stop(NULL);
    orch_ticker_cancel(NULL);
    orch_ticker_wake(NULL);
    cr_assert_eq(orch_ticker_runs(NULL), 0);
}

Test(ticker, bad_arguments_start_nothing)
{
    probe p = { 0 };
    orch_ticker *t = (orch_ticker *)&p; /* must stay untouched */
    cr_assert_eq(orch_ticker_start("x", 0, 0, pass, &p, &t), ORCH_EINVAL);
    cr_assert_eq(orch_ticker_start("x", 10, 0, NULL, &p, &t), ORCH_EINVAL);
    cr_assert_eq(orch_ticker_start("x", 10, 0x80, pass, &p, &t), ORCH_EINVAL);
    cr_assert_eq(orch_ticker_start("x", 10, 0, pass, &p, NULL), ORCH_EINVAL);
    cr_assert_eq(orch_ticker_start("x", ORCH_TICKER_MAX_MS + 1, 0, pass, &p, &t), ORCH_ERANGE);
    cr_assert_eq(t, (orch_ticker *)&p);
    cr_assert_eq(orch_ticker_start(NULL, 10, 0, pass, &p, &t), ORCH_OK, "no name is fine");
    orch_ticker_stop(t);
}
