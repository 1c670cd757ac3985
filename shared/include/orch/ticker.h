/*
 * ticker.h - a thread that calls one function periodically.
 *
 * orch_ticker_start() creates a thread that calls `fn(arg)` and then waits
 * `interval_ms` on the monotonic clock, again and again: the interval runs
 * from the end of one call to the start of the next (a slow pass delays the
 * next one, passes never overlap). The first call comes after one interval,
 * or at once with ORCH_TICKER_RUN_AT_START. orch_ticker_wake() cuts the
 * current wait short (a wake during a call makes the next call start as soon
 * as that one returns). orch_ticker_stop() wakes the thread at once, waits
 * for a call in progress to return, and joins: it never waits out the
 * interval.
 *
 * Threading: every function but orch_ticker_start() may be called from any
 * thread, concurrently; none may be called from inside `fn` for its own
 * ticker except orch_ticker_wake() and orch_ticker_cancel() (stop would
 * join itself). `fn` runs without any lock of the ticker held.
 * Errors: orch_err (ORCH_EINVAL, ORCH_ERANGE, ORCH_ENOMEM).
 * Ownership: the ticker is owned by the caller of orch_ticker_start() and
 * freed by orch_ticker_stop(); `arg` is borrowed until orch_ticker_stop()
 * returns; `name` is copied.
 */
#ifndef ORCH_TICKER_H
#define ORCH_TICKER_H

#include <stdbool.h>
#include <stdint.h>

#include "orch/err.h"

typedef struct orch_ticker orch_ticker;

/* One pass. Returning false ends the thread after this call (no further
 * call happens; orch_ticker_stop() is still needed to free the ticker). */
typedef bool (*orch_ticker_fn)(void *arg);

/* Flags of orch_ticker_start(). */
#define ORCH_TICKER_RUN_AT_START 0x1u /* first call at once, not after one interval */

/* The longest interval accepted (a day); longer is ORCH_ERANGE. */
#define ORCH_TICKER_MAX_MS 86400000u

/* Starts a ticker calling `fn(arg)` every `interval_ms` (1 to
 * ORCH_TICKER_MAX_MS). `name` (may be NULL) names the thread for ps and
 * gdb, cut to 15 bytes. On ORCH_OK *out is the new ticker; on error nothing
 * was started and *out is untouched. */
orch_err orch_ticker_start(const char *name, uint32_t interval_ms, unsigned flags,
                           orch_ticker_fn fn, void *arg, orch_ticker **out) ORCH_NODISCARD;

/* Makes the next call start now, or as soon as the call in progress
 * returns. Accepts NULL. */
void orch_ticker_wake(orch_ticker *t);

/* Asks the thread to end without waiting for it: no call starts after this
 * returns (a call in progress finishes). Idempotent, accepts NULL. Lets a
 * caller stop several tickers at once and join them in its own order. */
void orch_ticker_cancel(orch_ticker *t);

/* Cancels, waits for a call in progress to return, joins the thread and
 * frees the ticker. Accepts NULL. */
void orch_ticker_stop(orch_ticker *t);

/* Calls made so far (for tests and metrics). Accepts NULL (0). */
uint64_t orch_ticker_runs(const orch_ticker *t);

#endif
