/*
 * bench_echo.c - the echo child of rpc_bench (see bench_echo.h).
 *
 * Threading: in the child, the main thread blocks SIGTERM/SIGINT before NNG
 * starts its threads and waits for them with sigwait(); everything else runs
 * in the aio callbacks on NNG's threads. Each context is in one state at a
 * time (receiving or sending), changed only by its own callback.
 * Ownership: a received message becomes the reply; NNG owns it once sent.
 */
#include "bench_echo.h"

#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct echo_slot {
    nng_ctx ctx;
    nng_aio *aio;
    bool sending;
    atomic_bool *stopping;
} echo_slot;

typedef struct echo_server {
    nng_socket sock;
    echo_slot *slots;
    int nslots;
    int port;
    atomic_bool stopping;
} echo_server;

static void echo_cb(void *arg)
{
    echo_slot *s = arg;
    int rv = nng_aio_result(s->aio);
    if (s->sending) {
        if (rv != 0)
            nng_msg_free(nng_aio_get_msg(s->aio));
        s->sending = false;
    } else if (rv == 0) {
        /* The request message itself is the reply. */
        s->sending = true;
        nng_aio_set_msg(s->aio, nng_aio_get_msg(s->aio));
        nng_ctx_send(s->ctx, s->aio);
        return;
    }
    if (rv == NNG_ECLOSED || atomic_load(s->stopping))
        return;
    nng_ctx_recv(s->ctx, s->aio);
}

/* Stops and frees what echo_start() set up; safe after a partial start. */
static void echo_stop(echo_server *e)
{
    atomic_store(&e->stopping, true);
    nng_close(e->sock);
    for (int i = 0; i < e->nslots; i++)
        nng_aio_free(e->slots[i].aio);
    free(e->slots);
    e->slots = NULL;
    e->nslots = 0;
}

/* Listens on a free port of 127.0.0.1 and arms `contexts` receives. */
static int echo_start(echo_server *e, size_t max_msg_bytes, int contexts)
{
    nng_listener l;
    atomic_init(&e->stopping, false);
    e->nslots = 0;
    e->slots = calloc((size_t)contexts, sizeof *e->slots);
    int rv = e->slots ? nng_rep0_open(&e->sock) : NNG_ENOMEM;
    if (rv != 0) {
        free(e->slots);
        return rv;
    }
    if ((rv = nng_socket_set_size(e->sock, NNG_OPT_RECVMAXSZ, max_msg_bytes)) != 0 ||
        (rv = nng_listener_create(&l, e->sock, "tcp://127.0.0.1:0")) != 0 ||
        (rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, max_msg_bytes)) != 0 ||
        (rv = nng_listener_start(l, 0)) != 0 ||
        (rv = nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &e->port)) != 0)
        goto fail;
    for (int i = 0; i < contexts; i++) {
        echo_slot *s = &e->slots[i];
        s->sending = false;
        s->stopping = &e->stopping;
        if ((rv = nng_ctx_open(&s->ctx, e->sock)) != 0 ||
            (rv = nng_aio_alloc(&s->aio, echo_cb, s)) != 0)
            goto fail;
        e->nslots++;
    }
    for (int i = 0; i < e->nslots; i++)
        nng_ctx_recv(e->slots[i].ctx, e->slots[i].aio);
    return 0;
fail:
    echo_stop(e);
    return rv;
}

/* The child's life: serve until SIGTERM. Reports its port, or minus the NNG
 * error, on `wfd`. Never returns. */
static void child_main(int wfd, pid_t parent, const bench_child *ch)
{
    sigset_t set;
    int sig, rv = NNG_ECLOSED, port = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before NNG starts its threads */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == parent) /* else the parent is gone already */
        rv = ch->start(ch->arg, &port);
    int msg = rv == 0 ? port : -rv;
    bool told = write(wfd, &msg, sizeof msg) == (ssize_t)sizeof msg;
    close(wfd);
    if (rv == 0) {
        if (told)
            sigwait(&set, &sig);
        ch->stop(ch->arg);
    }
    _exit(0);
}

void bench_echo_reap(pid_t pid)
{
    struct timespec tick = { 0, 10 * 1000000L };
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) != 0)
            return;
        nanosleep(&tick, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

pid_t bench_child_spawn(const bench_child *ch, int *port)
{
    int fds[2], msg = 0;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("rpc_bench: pipe2");
        return -1;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        child_main(fds[1], parent, ch);
    }
    close(fds[1]);
    struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
    bool ok = pid > 0 && poll(&pfd, 1, 5000) == 1 &&
              read(fds[0], &msg, sizeof msg) == (ssize_t)sizeof msg && msg > 0;
    close(fds[0]);
    if (ok) {
        *port = msg;
        return pid;
    }
    fprintf(stderr, "rpc_bench: the %s did not start: %s\n", ch->what,
            pid < 0   ? "fork failed"
            : msg < 0 ? nng_strerror(-msg)
                      : "no port reported within 5 s");
    if (pid > 0)
        bench_echo_reap(pid);
    return -1;
}

/* What the echo child serves with. */
typedef struct echo_args {
    echo_server e;
    size_t max_msg_bytes;
    int contexts;
} echo_args;

static int echo_child_start(void *arg, int *port)
{
    echo_args *a = arg;
    int rv = echo_start(&a->e, a->max_msg_bytes, a->contexts);
    *port = a->e.port;
    return rv;
}

static void echo_child_stop(void *arg)
{
    echo_stop(&((echo_args *)arg)->e);
}

pid_t bench_echo_spawn(size_t max_msg_bytes, int contexts, int *port)
{
    echo_args a = { .max_msg_bytes = max_msg_bytes, .contexts = contexts };
    bench_child ch = { "echo server", echo_child_start, echo_child_stop, &a };
    return bench_child_spawn(&ch, port);
}
