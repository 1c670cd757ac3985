/*
 * sp_proxy.c - a loopback TCP proxy for NNG's SP-over-TCP transport that
 * can lose replies (tests only).
 *
 * Usage: orch-sp-proxy --target PORT --port-file PATH --drop-file PATH
 *
 * Listens on 127.0.0.1 (a free port, written to --port-file), and for each
 * accepted connection dials 127.0.0.1:--target. Bytes from the client are
 * forwarded as they come. Bytes from the server are cut into SP messages
 * (the 8-byte connection header, then 8-byte big-endian length + body); while
 * the file --drop-file exists, each whole message is discarded instead of
 * forwarded and one line is written to stderr. The stream stays well formed,
 * so the client simply never hears the answers given meanwhile: what a reply
 * lost on the network looks like to it.
 *
 * One thread, poll(2); at most MAX_PAIRS connections at once. Exits on
 * SIGTERM or SIGINT.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PAIRS 16
#define MAX_FRAME (1u << 20)

typedef struct pair {
    int cfd, sfd;         /* client side, server side; -1 when unused */
    unsigned char hdr[8]; /* server->client: length prefix being read */
    size_t hdr_have;
    size_t greeting_left; /* SP connection header bytes still to pass */
    unsigned char *body;  /* the message being read */
    size_t body_len, body_have;
} pair;

static volatile sig_atomic_t stop;
static const char *drop_file;
static unsigned long dropped;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void pair_close(pair *p)
{
    if (p->cfd >= 0)
        close(p->cfd);
    if (p->sfd >= 0)
        close(p->sfd);
    free(p->body);
    memset(p, 0, sizeof *p);
    p->cfd = p->sfd = -1;
}

/* Forwards or drops the message just completed. */
static int finish_frame(pair *p)
{
    int rc = 0;
    if (access(drop_file, F_OK) == 0) {
        dropped++;
        fprintf(stderr, "sp_proxy: dropped a reply of %zu bytes (%lu so far)\n", p->body_len,
                dropped);
    } else if (write_all(p->cfd, p->hdr, 8) || write_all(p->cfd, p->body, p->body_len)) {
        rc = -1;
    }
    free(p->body);
    p->body = NULL;
    p->hdr_have = p->body_len = p->body_have = 0;
    return rc;
}

/* Consumes `n` bytes from the server. */
static int from_server(pair *p, const unsigned char *b, size_t n)
{
    while (n > 0) {
        if (p->greeting_left > 0) {
            size_t k = n < p->greeting_left ? n : p->greeting_left;
            if (write_all(p->cfd, b, k))
                return -1;
            p->greeting_left -= k;
            b += k;
            n -= k;
        } else if (p->hdr_have < 8) {
            p->hdr[p->hdr_have++] = *b++;
            n--;
            if (p->hdr_have == 8) {
                uint64_t len = 0;
                for (int i = 0; i < 8; i++)
                    len = (len << 8) | p->hdr[i];
                if (len > MAX_FRAME)
                    return -1;
                p->body_len = (size_t)len;
                p->body = malloc(p->body_len ? p->body_len : 1);
                if (!p->body)
                    return -1;
                if (p->body_len == 0 && finish_frame(p))
                    return -1;
            }
        } else {
            size_t k = p->body_len - p->body_have;
            k = n < k ? n : k;
            memcpy(p->body + p->body_have, b, k);
            p->body_have += k;
            b += k;
            n -= k;
            if (p->body_have == p->body_len && finish_frame(p))
                return -1;
        }
    }
    return 0;
}

static int dial(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int listen_any(int *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t al = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        perror("sp_proxy: listen");
        exit(1);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void accept_one(int lfd, pair *pairs, int target)
{
    int cfd = accept(lfd, NULL, NULL);
    if (cfd < 0)
        return;
    for (int i = 0; i < MAX_PAIRS; i++) {
        if (pairs[i].cfd < 0) {
            pairs[i].sfd = dial(target);
            if (pairs[i].sfd < 0)
                break;
            pairs[i].cfd = cfd;
            pairs[i].greeting_left = 8;
            return;
        }
    }
    close(cfd);
}

/* One read on side `fd` of pair `p`; closes the pair at EOF or error. */
static void pump(pair *p, int fd)
{
    unsigned char buf[65536];
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR)
        return;
    int rc = r <= 0         ? -1
             : fd == p->cfd ? write_all(p->sfd, buf, (size_t)r)
                            : from_server(p, buf, (size_t)r);
    if (rc)
        pair_close(p);
}

static void serve(int lfd, int target)
{
    pair pairs[MAX_PAIRS];
    for (int i = 0; i < MAX_PAIRS; i++) {
        memset(&pairs[i], 0, sizeof pairs[i]);
        pairs[i].cfd = pairs[i].sfd = -1;
    }
    while (!stop) {
        struct pollfd fds[1 + 2 * MAX_PAIRS];
        int owner[1 + 2 * MAX_PAIRS], n = 0;
        fds[n] = (struct pollfd){ .fd = lfd, .events = POLLIN };
        owner[n++] = -1;
        for (int i = 0; i < MAX_PAIRS; i++) {
            if (pairs[i].cfd < 0)
                continue;
            fds[n] = (struct pollfd){ .fd = pairs[i].cfd, .events = POLLIN };
            owner[n++] = i;
            fds[n] = (struct pollfd){ .fd = pairs[i].sfd, .events = POLLIN };
            owner[n++] = i;
        }
        if (poll(fds, (nfds_t)n, 200) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (owner[k] < 0)
                accept_one(lfd, pairs, target);
            else if (pairs[owner[k]].cfd >= 0)
                pump(&pairs[owner[k]], fds[k].fd);
        }
    }
    for (int i = 0; i < MAX_PAIRS; i++)
        pair_close(&pairs[i]);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "target", required_argument, NULL, 't' },
        { "port-file", required_argument, NULL, 'p' },
        { "drop-file", required_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 },
    };
    const char *port_file = NULL;
    long target = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 't')
            target = strtol(optarg, NULL, 10);
        else if (ch == 'p')
            port_file = optarg;
        else if (ch == 'd')
            drop_file = optarg;
        else
            return 2;
    }
    if (target <= 0 || target > 65535 || !port_file || !drop_file) {
        fprintf(stderr, "usage: orch-sp-proxy --target PORT --port-file PATH --drop-file PATH\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    int port;
    int lfd = listen_any(&port);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
        perror("sp_proxy: port file");
        return 1;
    }
    serve(lfd, (int)target);
    close(lfd);
    return 0;
}
