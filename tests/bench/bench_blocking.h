/*
 * bench_blocking.h - the worker path of rpc_bench: an orch RPC server in a
 * child process whose HealthService is not declared nonblocking, so that
 * every Check goes the way of a handler that may block (lease-service's
 * Acquire, say): decoded and checked on NNG's thread, handed to a worker,
 * answered by the worker. The handler replies SERVING after sleeping
 * `block_us` microseconds (0: at once), the stand-in for a short blocking
 * call. Like the echo child (bench_echo.h) it runs in a process of its own
 * and stops on SIGTERM and when its parent dies.
 */
#ifndef BENCH_BLOCKING_H
#define BENCH_BLOCKING_H

#include <stddef.h>
#include <sys/types.h>

/* Forks the child (`contexts` contexts, `workers` workers) and waits (at
 * most 5 s) until it listens. Call it before this process opens any NNG
 * socket. Returns the child's pid and its port in *port, or -1 after a
 * message on stderr. Stop it with bench_echo_reap(). */
pid_t bench_blocking_spawn(size_t max_msg_bytes, int contexts, int workers, unsigned block_us,
                           int *port);

#endif
