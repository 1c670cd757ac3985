/*
 * watch.c - the watch mode of a listing (`stage queue -w`, `lease list -w`):
 * the listing again every --interval MS until SIGINT or SIGTERM, --count N
 * refreshes, or a refresh that fails.
 *
 * Each refresh prints exactly what the listing prints once; on a terminal
 * (stdout) the screen is cleared before it, elsewhere the refreshes follow
 * one another, so a script or a test reads N copies. Single-threaded; the
 * signal handlers only set a flag, which the sleep between refreshes
 * checks.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orchctl.h"

#define DEFAULT_INTERVAL_MS 2000
#define MAX_INTERVAL_MS     3600000

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Sleeps `ms`, ending within 50 ms of a stop request (the signal may be
 * delivered to one of NNG's threads, so the sleep is sliced rather than
 * trusted to be interrupted). */
static void pause_ms(uint64_t ms)
{
    while (!stop_requested && ms > 0) {
        uint64_t slice = ms < 50 ? ms : 50;
        struct timespec ts = { 0, (long)slice * 1000000L };
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

int orchctl_watch(const orchctl_args *a, const globals *g,
                  int (*once)(const orchctl_args *a, const globals *g))
{
    uint64_t interval = DEFAULT_INTERVAL_MS, count = 0;
    if (!orchctl_opt_u64(a, "interval", MAX_INTERVAL_MS, &interval) ||
        !orchctl_opt_u64(a, "count", UINT32_MAX, &count))
        return EXIT_USAGE;
    if (!orchctl_flag(a, "watch"))
        return once(a, g);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop; /* no SA_RESTART: the sleep returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    bool tty = isatty(STDOUT_FILENO);
    int rc = EXIT_OK;
    for (uint64_t n = 0; !stop_requested && (count == 0 || n < count); n++) {
        if (n > 0)
            pause_ms(interval);
        if (stop_requested)
            break;
        if (tty)
            fputs("\033[H\033[2J", stdout);
        rc = once(a, g);
        fflush(stdout);
        if (rc != EXIT_OK)
            return rc;
    }
    return stop_requested ? EXIT_OK : rc;
}
