/*
 * test_rpc_ids.c - the client's request ids (rpc_client_int.h) and how the
 * server treats them, and what the server answers without a worker
 * (shared/src/rpc_server.c): a worker must not wait for a reply to a peer
 * that stops reading, and stored replies and refusals do not wait for a
 * busy worker.
 * The test service and helpers are in rpc_fixture.c.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orch/clock.h"
#include "orch/rpc.h"
#include "rpc_client_int.h"
#include "rpc_fixture.h"

#define ID_THREADS     8
#define IDS_PER_THREAD 20000

static bool is_id(const char *s)
{
    size_t n = strlen(s);
    if (n != ORCH__RPC_ID_HEX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

typedef struct id_batch {
    char (*ids)[ORCH__RPC_ID_HEX + 1];
    bool ok;
} id_batch;

static void *make_ids(void *arg)
{
    id_batch *b = arg;
    b->ok = true;
    for (int i = 0; i < IDS_PER_THREAD; i++)
        b->ok = b->ok && orch__rpc_request_id(b->ids[i]) == ORCH_OK && is_id(b->ids[i]);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

Test(rpc_ids, are_32_hex_digits_and_unique_across_threads)
{
    size_t n = (size_t)ID_THREADS * IDS_PER_THREAD;
    char(*ids)[ORCH__RPC_ID_HEX + 1] = calloc(n, sizeof *ids);
    cr_assert_not_null(ids);
    pthread_t t[ID_THREADS];
    id_batch b[ID_THREADS];
    for (int i = 0; i < ID_THREADS; i++) {
        b[i].ids = ids + (size_t)i * IDS_PER_THREAD;
        cr_assert_eq(pthread_create(&t[i], NULL, make_ids, &b[i]), 0);
    }
    for (int i = 0; i < ID_THREADS; i++) {
        pthread_join(t[i], NULL);
        cr_assert(b[i].ok, "thread %d made an id that is not 32 lowercase hex digits", i);
    }
    qsort(ids, n, sizeof *ids, cmp_id);
    for (size_t i = 1; i < n; i++)
        cr_assert_str_neq(ids[i - 1], ids[i], "id %s made twice", ids[i]);
    free(ids);
}

/* A forked child must not repeat its parent's ids: its first id differs
 * from the parent's next one (the pool is copied with the forking thread). */
Test(rpc_ids, forked_child_does_not_repeat_the_parents_ids)
{
    char first[ORCH__RPC_ID_HEX + 1], parent[ORCH__RPC_ID_HEX + 1];
    char child[ORCH__RPC_ID_HEX + 1] = "";
    cr_assert_eq(orch__rpc_request_id(first), ORCH_OK); /* the pool is filled */
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char id[ORCH__RPC_ID_HEX + 1];
        bool ok = orch__rpc_request_id(id) == ORCH_OK;
        _exit(ok && write(fds[1], id, sizeof id) == (ssize_t)sizeof id ? 0 : 1);
    }
    close(fds[1]);
    cr_assert_eq(orch__rpc_request_id(parent), ORCH_OK);
    cr_assert_eq(read(fds[0], child, sizeof child), (ssize_t)sizeof child);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert(is_id(child), "%s", child);
    cr_assert_str_neq(parent, child, "the child repeated the parent's next id %s", child);
    cr_assert_str_neq(first, child);
}

/* Consecutive ids share no prefix or suffix a caller could predict: over
 * many ids of one thread, each hex position takes many values. */
Test(rpc_ids, do_not_read_as_a_sequence)
{
    enum { N = 2000 };
    unsigned seen[ORCH__RPC_ID_HEX] = { 0 };
    for (int k = 0; k < N; k++) {
        char id[ORCH__RPC_ID_HEX + 1];
        cr_assert_eq(orch__rpc_request_id(id), ORCH_OK);
        for (int i = 0; i < ORCH__RPC_ID_HEX; i++)
            seen[i] |= 1u << (id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
    }
    for (int i = 0; i < ORCH__RPC_ID_HEX; i++)
        cr_assert_eq(seen[i], 0xffffu, "hex position %d took only some values", i);
}

/* ---- a fork racing a process's first id ---------------------------------- */

static atomic_int race_go;

static void *first_id(void *arg)
{
    (void)arg;
    while (!atomic_load(&race_go))
        ;
    char id[ORCH__RPC_ID_HEX + 1];
    (void)!orch__rpc_request_id(id);
    return NULL;
}

/* A fresh process (no id drawn yet) whose thread draws its first id while
 * its main thread forks after `spin` steps; the grandchild then draws one.
 * Exits 3 when the grandchild hung (SIGALRM), 0 when it returned. */
static int fork_race_trial(unsigned spin)
{
    pid_t p = fork();
    if (p == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, first_id, NULL) != 0)
            _exit(9);
        atomic_store(&race_go, 1);
        for (volatile unsigned i = 0; i < spin; i++)
            ;
        pid_t c = fork();
        if (c == 0) {
            alarm(3);
            char id[ORCH__RPC_ID_HEX + 1];
            _exit(orch__rpc_request_id(id) == ORCH_OK ? 0 : 1);
        }
        int st = 0;
        waitpid(c, &st, 0);
        pthread_join(t, NULL);
        _exit(WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? 3 : 0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A fork while another thread draws the process's first id must leave the
 * child able to draw (an earlier design installed its fork handlers under
 * a lock on the first draw, and such a child hung within a few trials).
 * Bounded in trials and in time. */
Test(rpc_ids, a_fork_racing_the_first_draw_leaves_the_child_able_to_draw, .timeout = 60)
{
    uint64_t until = orch_mono_ms() + 8000;
    int trials = 0, hung = 0;
    for (unsigned k = 0; k < 3000 && !hung && orch_mono_ms() < until; k++, trials++)
        hung = fork_race_trial(k % 4000) == 3;
    cr_log_info("%d trials", trials);
    cr_assert(!hung, "a forked child hung drawing its first id (trial %d)", trials);
}

typedef struct caller_job {
    orch_rpc_client *c;
    int calls;
    int failures;
} caller_job;

static void *call_many(void *arg)
{
    caller_job *j = arg;
    for (int i = 0; i < j->calls; i++) {
        orch_rpc_status st;
        if (echo_call(j->c, "x", NULL, &st, NULL, 0) != ORCH_CODE_OK)
            j->failures++;
    }
    return NULL;
}

/* The server deduplicates by request id: fresh ids from many threads must
 * all run, the id the handler sees is the client's, and an id sent again
 * runs once. */
Test(rpc_ids, fresh_ids_all_run_and_a_resent_one_runs_once)
{
    orch_rpc_server_opts o = default_opts();
    o.dedup_entries = 4096;
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client(s);
    char text[256] = "";
    cr_assert_eq(echo_call(c, "whoami", NULL, NULL, text, sizeof text), ORCH_CODE_OK);
    char *space = strchr(text, ' ');
    cr_assert_not_null(space, "%s", text);
    *space = '\0';
    cr_assert(is_id(text), "the handler saw request id '%s'", text);

    caller_job jobs[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (caller_job){ .c = c, .calls = 500 };
        cr_assert_eq(pthread_create(&t[i], NULL, call_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(jobs[i].failures, 0);
    }
    cr_assert_eq(atomic_load(&echo_runs), 1 + 4 * 500, "a fresh id was taken for a resend");

    char rid[ORCH__RPC_ID_HEX + 1];
    cr_assert_eq(orch__rpc_request_id(rid), ORCH_OK);
    orch_rpc_call_opts again = { .request_id = rid };
    for (int i = 0; i < 2; i++)
        cr_assert_eq(echo_call(c, "again", &again, NULL, NULL, 0), ORCH_CODE_OK);
    cr_assert_eq(atomic_load(&echo_runs), 2 + 4 * 500, "the resent id ran twice");
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}

/* ---- a peer that stops reading --------------------------------------------- */

#define STALLED      8
#define STALLED_TEXT (900 * 1024)

/* Writes all of buf or fails the test. */
static void write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        cr_assert_gt(w, 0, "write to the server failed");
        p += w;
        n -= (size_t)w;
    }
}

/* Connects to the server's port as an SP REQ peer with a tiny receive
 * buffer and sends `STALLED` Echo requests with large texts, then never
 * reads. Returns the socket. */
static int stalled_peer(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    static const uint8_t hello[8] = { 0, 'S', 'P', 0, 0x00, 0x30, 0, 0 }; /* REQ v0 */
    write_all(fd, hello, sizeof hello);

    char *text = malloc(STALLED_TEXT + 1);
    uint8_t *payload = malloc(STALLED_TEXT + 16);
    cr_assert(text && payload);
    memset(text, 'x', STALLED_TEXT);
    text[STALLED_TEXT] = '\0';
    Orch__Test__EchoRequest req = ORCH__TEST__ECHO_REQUEST__INIT;
    req.text = text;
    size_t plen = orch__test__echo_request__pack(&req, payload);
    for (uint32_t i = 0; i < STALLED; i++) {
        char rid[32];
        size_t len = 0;
        snprintf(rid, sizeof rid, "stalled-%u", (unsigned)i);
        uint8_t *env = pack_envelope(ECHO, rid, 10000, payload, plen, &len);
        uint64_t size = 4 + len; /* SP frame: 64-bit length, REQ's request id, body */
        uint8_t head[12];
        for (int k = 0; k < 8; k++)
            head[k] = (uint8_t)(size >> (56 - 8 * k));
        uint32_t id = 0x80000001u + i;
        for (int k = 0; k < 4; k++)
            head[8 + k] = (uint8_t)(id >> (24 - 8 * k));
        write_all(fd, head, sizeof head);
        write_all(fd, env, len);
        free(env);
    }
    free(payload);
    free(text);
    return fd;
}

/* Replies queued behind others to a peer that does not read wait in NNG
 * (at most SEND_WAIT_MS), not on the worker: the only worker answers
 * another caller at once. */
Test(rpc_ids, worker_does_not_wait_for_a_peer_that_stops_reading)
{
    orch_rpc_server_opts o = default_opts();
    o.workers = 1;
    o.concurrency = STALLED + 4;
    o.max_msg_bytes = 1u << 20;
    orch_rpc_server *s = start(&o);
    int fd = stalled_peer(orch_rpc_server_port(s));
    /* The one worker runs them all only if it does not wait for their sends. */
    wait_for(&echo_runs, STALLED, "the stalled peer's requests to run");
    sleep_ms(100); /* the worker has sent (or is waiting to send) them all */

    orch_rpc_client *c = client_with(s, NULL, 5000);
    orch_rpc_status st;
    uint64_t t0 = orch_mono_ms();
    cr_assert_eq(echo_call(c, "next", NULL, &st, NULL, 0), ORCH_CODE_OK, "%s", st.message);
    uint64_t took = orch_mono_ms() - t0;
    cr_expect_lt(took, 1000,
                 "a call took %llu ms: the only worker waited for a reply to a peer that does "
                 "not read",
                 (unsigned long long)took);
    orch_rpc_client_close(c);
    close(fd);
    orch_rpc_server_free(s);
}

/* ---- answers that need no worker ---------------------------------------- */

/* Stored replies and refusals are answered on NNG's thread, even for a
 * service whose handlers run on workers: they do not wait behind a worker
 * busy with a slow handler. */
Test(rpc_ids, stored_replies_and_refusals_do_not_wait_for_a_busy_worker)
{
    orch_rpc_server_opts o = default_opts();
    o.workers = 1;
    orch_rpc_server *s = start(&o);
    orch_rpc_client *c = client_with(s, NULL, 3000);
    orch_rpc_call_opts first = { .request_id = "stored-reply-0001" };
    cr_assert_eq(echo_call(c, "stored", &first, NULL, NULL, 0), ORCH_CODE_OK);

    slow_job j = { .c = c, .ms = 800, .timeout_ms = 3000 };
    pthread_t t = start_slow(&j);
    char out[64] = "";
    orch_rpc_status st;
    uint64_t t0 = orch_mono_ms();
    cr_assert_eq(echo_call(c, "other text", &first, &st, out, sizeof out), ORCH_CODE_OK, "%s",
                 st.message);
    uint64_t stored_ms = orch_mono_ms() - t0;
    cr_assert_str_eq(out, "stored", "not the first run's reply");

    static const uint8_t junk[] = { 0xff, 0xff, 0xff };
    size_t len = 0;
    uint8_t *frame = pack_envelope(ECHO, "bad-payload-0002", 3000, junk, sizeof junk, &len);
    t0 = orch_mono_ms();
    Orch__V1__ReplyEnvelope *rep = raw_call(c, frame, len, 3000);
    uint64_t refused_ms = orch_mono_ms() - t0;
    cr_assert_eq(rep->status->code, ORCH__V1__CODE__CODE_INVALID_ARGUMENT, "%s",
                 rep->status->message);
    pthread_join(t, NULL);
    cr_assert_eq(j.code, ORCH_CODE_OK);
    cr_expect_lt(stored_ms, 400, "the stored reply waited %llu ms for the busy worker",
                 (unsigned long long)stored_ms);
    cr_expect_lt(refused_ms, 400, "the refusal waited %llu ms for the busy worker",
                 (unsigned long long)refused_ms);
    cr_expect_eq(atomic_load(&echo_runs), 1, "a stored reply or a refusal ran the handler");
    orch__v1__reply_envelope__free_unpacked(rep, NULL);
    free(frame);
    orch_rpc_client_close(c);
    orch_rpc_server_free(s);
}
