/*
 * bench_echo.h - the raw side of rpc_bench: an NNG REQ/REP echo server in a
 * child process.
 *
 * The child listens on tcp://127.0.0.1:<free port> with `contexts` REP
 * contexts whose aio callbacks send each request message straight back (the
 * style of NNG's async demo): the round trip of NNG itself, with no thread
 * hand-off and no decoding. It runs in a process of its own, as the
 * lease-service does: NNG runs one poller thread per process, and a server
 * sharing the caller's would change what is measured. The child stops on
 * SIGTERM and when its parent dies. bench_child_spawn() runs any other
 * server the same way (bench_blocking.h).
 */
#ifndef BENCH_ECHO_H
#define BENCH_ECHO_H

#include <stddef.h>
#include <sys/types.h>

/* Forks the echo child and waits (at most 5 s) until it listens. Call it
 * before this process opens any NNG socket. Returns the child's pid and its
 * port in *port, or -1 after a message on stderr. */
pid_t bench_echo_spawn(size_t max_msg_bytes, int contexts, int *port);

/* Stops the child: SIGTERM, at most 5 s to exit, then SIGKILL; reaps it.
 * For any child of bench_child_spawn(). */
void bench_echo_reap(pid_t pid);

/* A server to run in a child process of its own: start() listens on a
 * free port of 127.0.0.1, writes it to *port and returns 0 or an NNG
 * error; stop() undoes it. Both run in the child. */
typedef struct bench_child {
    const char *what; /* for messages: "echo server" */
    int (*start)(void *arg, int *port);
    void (*stop)(void *arg);
    void *arg;
} bench_child;

/* Forks a child that runs `ch` until SIGTERM (or its parent's death) and
 * waits (at most 5 s) until it listens. Call it before this process opens
 * any NNG socket. Returns the child's pid and its port in *port, or -1
 * after a message on stderr. */
pid_t bench_child_spawn(const bench_child *ch, int *port);

#endif
