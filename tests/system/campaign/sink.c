/*
 * orch-campaign-sink: the outside world of the fault campaign. One HTTP
 * server plays Gitea's merge API and the image and deploy hooks, and writes
 * one line per side-effect call to a log that the history checker reads.
 *
 * Usage: orch-campaign-sink --listen IP:PORT --log FILE [--unfenced]
 *                           [--ctl-dir DIR] [--hook-delay-ms N]
 *
 * Fenced (default): a hook call whose X-Orch-Lease-Epoch is lower than the
 * highest epoch seen for its work item is refused (409), and a call whose
 * Idempotency-Key was seen before is answered 200 without running again. A
 * merge runs once per pull request (405 afterwards, as Gitea answers).
 * Unfenced: every call is accepted and counted as executed.
 *
 * --ctl-dir DIR: before handling a request from address A, the sink reads
 * DIR/delay.A (a number of milliseconds) and, if present, waits that long:
 * the path delay of the campaign (the request is handled late, as if it had
 * spent that time in the network).
 * --hook-delay-ms N: every POST is answered N ms after it was handled (an
 * owner can be killed while its call is in flight).
 *
 * Log line (tab-separated): arrived_ms handled_ms peer kind work_item
 * transition effect cycle epoch idempotency_key result status executed
 * kind: merge, merge_check, image, deploy; result: accepted, duplicate,
 * stale, already_merged, merged, not_merged, bad.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http_request.h"

#define MAX_BODY    (1024 * 1024)
#define MAX_ITEMS   4096
#define MAX_KEYS    65536
#define MAX_PRS     4096
#define MAX_THREADS 256

typedef hreq request;

static struct {
    pthread_mutex_t mu;
    FILE *log;
    bool unfenced;
    const char *ctl_dir;
    int hook_delay_ms;
    struct {
        char item[128];
        uint64_t max_epoch;
    } items[MAX_ITEMS];
    int nitems;
    char (*keys)[256];
    int nkeys;
    struct {
        char repo[128];
        unsigned long long pr;
    } merged[MAX_PRS];
    int nmerged;
    int active;
} S = { .mu = PTHREAD_MUTEX_INITIALIZER };

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void send_response(int fd, int status, const char *body)
{
    char head[512];
    size_t bl = body ? strlen(body) : 0;
    const char *why = status == 200   ? "OK"
                      : status == 204 ? "No Content"
                      : status == 404 ? "Not Found"
                      : status == 405 ? "Method Not Allowed"
                      : status == 409 ? "Conflict"
                                      : "Bad Request";
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, why, status == 204 ? (size_t)0 : bl);
    if (n > 0 && (size_t)n < sizeof head && hreq_write_all(fd, head, (size_t)n) && bl &&
        status != 204)
        hreq_write_all(fd, body, bl);
}

/* The path delay configured for PEER, in ms (0: none). */
static long path_delay(const char *peer)
{
    if (!S.ctl_dir)
        return 0;
    char path[512];
    snprintf(path, sizeof path, "%s/delay.%s", S.ctl_dir, peer);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long ms = 0;
    if (fscanf(f, "%ld", &ms) != 1 || ms < 0 || ms > 600000)
        ms = 0;
    fclose(f);
    return ms;
}

/* Splits "item/transition/effect/cycle" (the item may not hold '/'). */
static void split_key(const char *key, char *item, char *tr, char *eff, char *cyc, size_t n)
{
    item[0] = tr[0] = eff[0] = cyc[0] = '\0';
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", key ? key : "");
    char *save = NULL, *p = strtok_r(tmp, "/", &save);
    char *out[4] = { item, tr, eff, cyc };
    for (int i = 0; i < 4 && p; i++, p = strtok_r(NULL, "/", &save))
        snprintf(out[i], n, "%s", p);
}

static uint64_t *item_max(const char *item)
{
    for (int i = 0; i < S.nitems; i++)
        if (strcmp(S.items[i].item, item) == 0)
            return &S.items[i].max_epoch;
    if (S.nitems == MAX_ITEMS)
        return NULL;
    snprintf(S.items[S.nitems].item, sizeof S.items[0].item, "%s", item);
    S.items[S.nitems].max_epoch = 0;
    return &S.items[S.nitems++].max_epoch;
}

/* True when KEY was seen before; records it otherwise. */
static bool key_seen(const char *key)
{
    for (int i = 0; i < S.nkeys; i++)
        if (strcmp(S.keys[i], key) == 0)
            return true;
    if (S.nkeys < MAX_KEYS)
        snprintf(S.keys[S.nkeys++], sizeof S.keys[0], "%s", key);
    return false;
}

static int merged_index(const char *repo, unsigned long long pr)
{
    for (int i = 0; i < S.nmerged; i++)
        if (S.merged[i].pr == pr && strcmp(S.merged[i].repo, repo) == 0)
            return i;
    return -1;
}

typedef struct conn {
    int fd;
    char peer[64];
} conn;

/* What the sink did with one call: the log's kind/result/status/executed
 * columns and the body answered. */
typedef struct outcome {
    const char *kind, *result;
    int status, executed;
    const char *body;
} outcome;

/* A merge (POST) or merge check (GET) of pull request `pr` of `repo`;
 * called with S.mu held. */
static void answer_merge(const char *repo, unsigned long long pr, bool is_post, outcome *o)
{
    int mi = merged_index(repo, pr);
    if (!is_post) {
        o->kind = "merge_check";
        o->result = mi >= 0 ? "merged" : "not_merged";
        o->status = mi >= 0 ? 204 : 404;
        o->body = mi >= 0 ? "" : "{\"message\":\"not merged\"}";
        return;
    }
    o->kind = "merge";
    if (mi >= 0 && !S.unfenced) {
        o->result = "already_merged";
        o->status = 405;
        o->body = "{\"message\":\"Please try again later\"}";
        return;
    }
    if (mi < 0 && S.nmerged < MAX_PRS) {
        snprintf(S.merged[S.nmerged].repo, sizeof S.merged[0].repo, "%s", repo);
        S.merged[S.nmerged++].pr = pr;
    }
    o->result = "accepted";
    o->executed = 1;
    o->status = 200;
    o->body = "{\"merged\":true}";
}

/* A POST to /hooks/image or /hooks/deploy, fenced by the epoch of `item`
 * unless unfenced; called with S.mu held. */
static void answer_hook(const char *path, const char *item, const char *key, const char *ep,
                        unsigned long long epoch, outcome *o)
{
    o->kind = path[7] == 'i' ? "image" : "deploy";
    uint64_t *mx = item[0] ? item_max(item) : NULL;
    if (!key || !ep || !mx) {
        o->body = "{\"error\":\"Idempotency-Key and X-Orch-Lease-Epoch are required\"}";
    } else if (S.unfenced) {
        o->result = "accepted";
        o->executed = 1;
        o->status = 200;
    } else if (epoch < *mx) {
        o->result = "stale";
        o->status = 409;
        o->body = "{\"error\":\"stale epoch\"}";
    } else {
        *mx = epoch;
        o->executed = key_seen(key) ? 0 : 1;
        o->result = o->executed ? "accepted" : "duplicate";
        o->status = 200;
    }
    if (o->status == 200)
        o->body = o->kind[0] == 'i'
                      ? "{\"digest\":\"sha256:"
                        "1111111111111111111111111111111111111111111111111111111111111111"
                        "\"}"
                      : "{\"started\":true}";
}

static void handle(conn *c)
{
    request rq;
    struct timeval tv = { 30, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (!hreq_read(c->fd, MAX_BODY, &rq)) {
        send_response(c->fd, 400, "{\"error\":\"malformed request\"}");
        goto out;
    }
    uint64_t arrived = now_ms();
    long delay = path_delay(c->peer);
    if (delay > 0)
        sleep_ms(delay);

    const char *key = hreq_header(&rq, "Idempotency-Key");
    const char *ep = hreq_header(&rq, "X-Orch-Lease-Epoch");
    char item[128], tr[128], eff[128], cyc[32], repo[128] = "";
    split_key(key, item, tr, eff, cyc, sizeof item);
    unsigned long long epoch = ep ? strtoull(ep, NULL, 10) : 0, pr = 0;
    outcome o = { "bad", "bad", 400, 0, "{\"error\":\"unknown path\"}" };
    bool is_post = strcmp(rq.method, "POST") == 0;

    pthread_mutex_lock(&S.mu);
    char *pulls = strstr(rq.path, "/pulls/");
    if (strncmp(rq.path, "/api/v1/repos/", 14) == 0 && pulls &&
        sscanf(pulls, "/pulls/%llu/merge", &pr) == 1) {
        size_t rl = (size_t)(pulls - (rq.path + 14));
        snprintf(repo, sizeof repo, "%.*s", (int)(rl < sizeof repo ? rl : sizeof repo - 1),
                 rq.path + 14);
        answer_merge(repo, pr, is_post, &o);
    } else if (is_post &&
               (strcmp(rq.path, "/hooks/image") == 0 || strcmp(rq.path, "/hooks/deploy") == 0)) {
        answer_hook(rq.path, item, key, ep, epoch, &o);
    }
    fprintf(S.log, "%" PRIu64 "\t%" PRIu64 "\t%s\t%s\t%s\t%s\t%s\t%s\t%llu\t%s\t%s\t%d\t%d\n",
            arrived, now_ms(), c->peer, o.kind, item[0] ? item : "-", tr[0] ? tr : "-",
            eff[0] ? eff : "-", cyc[0] ? cyc : "-", epoch, key ? key : "-", o.result, o.status,
            o.executed);
    fflush(S.log);
    pthread_mutex_unlock(&S.mu);
    if (is_post && S.hook_delay_ms > 0)
        sleep_ms(S.hook_delay_ms);
    send_response(c->fd, o.status, o.body);
out:
    hreq_free(&rq);
}

static void *conn_thread(void *arg)
{
    conn *c = arg;
    handle(c);
    close(c->fd);
    free(c);
    pthread_mutex_lock(&S.mu);
    S.active--;
    pthread_mutex_unlock(&S.mu);
    return NULL;
}

/* Reads the options into S and *listen_at; false on a usage error. */
static bool parse_args(int argc, char **argv, const char **listen_at, const char **log_path)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "log", required_argument, NULL, 'o' },
        { "unfenced", no_argument, NULL, 'u' },
        { "ctl-dir", required_argument, NULL, 'c' },
        { "hook-delay-ms", required_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'l': *listen_at = optarg; break;
        case 'o': *log_path = optarg; break;
        case 'u': S.unfenced = true; break;
        case 'c': S.ctl_dir = optarg; break;
        case 'd': S.hook_delay_ms = (int)strtol(optarg, NULL, 10); break;
        default: return false;
        }
    }
    return true;
}

/* A listening socket on ip:port; -1 (reported) on failure. */
static int listen_on(const char *ip, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (fd < 0 || inet_pton(AF_INET, ip, &a.sin_addr) != 1 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) != 0) {
        perror("orch-campaign-sink: listen");
        return -1;
    }
    return fd;
}

/* Hands connection cfd from pa to a detached thread, or closes it when
 * MAX_THREADS are busy or no thread can be made. */
static void serve(int cfd, const struct sockaddr_in *pa)
{
    conn *c = calloc(1, sizeof *c);
    pthread_mutex_lock(&S.mu);
    bool room = S.active < MAX_THREADS;
    if (room)
        S.active++;
    pthread_mutex_unlock(&S.mu);
    if (!c || !room) {
        free(c);
        close(cfd);
        return;
    }
    c->fd = cfd;
    inet_ntop(AF_INET, &pa->sin_addr, c->peer, sizeof c->peer);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, conn_thread, c) != 0) {
        close(cfd);
        free(c);
        pthread_mutex_lock(&S.mu);
        S.active--;
        pthread_mutex_unlock(&S.mu);
    }
    pthread_attr_destroy(&at);
}

int main(int argc, char **argv)
{
    const char *listen_at = NULL, *log_path = NULL;
    if (!parse_args(argc, argv, &listen_at, &log_path))
        return 2;
    char ip[64];
    int port = 0;
    const char *colon = listen_at ? strrchr(listen_at, ':') : NULL;
    if (!colon || !log_path || (size_t)(colon - listen_at) >= sizeof ip) {
        fprintf(stderr, "usage: orch-campaign-sink --listen IP:PORT --log FILE [--unfenced] "
                        "[--ctl-dir DIR] [--hook-delay-ms N]\n");
        return 2;
    }
    snprintf(ip, sizeof ip, "%.*s", (int)(colon - listen_at), listen_at);
    port = (int)strtol(colon + 1, NULL, 10);
    S.keys = calloc(MAX_KEYS, sizeof *S.keys);
    S.log = fopen(log_path, "a");
    if (!S.keys || !S.log) {
        perror("orch-campaign-sink");
        return 1;
    }
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int fd = listen_on(ip, port);
    if (fd < 0)
        return 1;
    fprintf(stderr, "orch-campaign-sink: listening on %s:%d (%s)\n", ip, port,
            S.unfenced ? "unfenced" : "fenced");
    while (!stopping) {
        struct sockaddr_in pa;
        socklen_t pl = sizeof pa;
        int cfd = accept(fd, (struct sockaddr *)&pa, &pl);
        if (cfd < 0)
            continue; /* EINTR on SIGTERM: the loop condition ends it */
        serve(cfd, &pa);
    }
    close(fd);
    pthread_mutex_lock(&S.mu);
    fflush(S.log);
    pthread_mutex_unlock(&S.mu);
    return 0;
}
