/*
 * clock.h - monotonic and wall-clock milliseconds, deadline arithmetic.
 * Pure functions over clock_gettime(); thread-safe.
 */
#ifndef ORCH_CLOCK_H
#define ORCH_CLOCK_H

#include <stdint.h>

/* Monotonic time in nanoseconds / milliseconds. */
uint64_t orch_mono_ns(void);
static inline uint64_t orch_mono_ms(void)
{
    return orch_mono_ns() / 1000000u;
}

/* Wall clock, Unix epoch milliseconds. */
uint64_t orch_wall_ms(void);

/* A deadline is a monotonic millisecond instant; ORCH_DEADLINE_NONE never
 * expires. */
#define ORCH_DEADLINE_NONE UINT64_MAX

/* Milliseconds left before `deadline` (0 when passed). */
static inline uint64_t orch_deadline_left_ms(uint64_t deadline)
{
    uint64_t now;
    if (deadline == ORCH_DEADLINE_NONE)
        return UINT64_MAX;
    now = orch_mono_ms();
    return deadline > now ? deadline - now : 0;
}

#endif
