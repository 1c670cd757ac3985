/*
 * http_request.c - one HTTP/1.1 request read from a socket (see
 * http_request.h).
 */
#include "http_request.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Reads until the blank line that ends the head; returns its length
 * (including "\r\n\r\n") and the bytes read so far in *len, or 0. */
static size_t read_head(int fd, hreq *rq, size_t *len)
{
    size_t cap = 8192;
    char *buf = malloc(cap + 1), *end = NULL;
    rq->head = buf;
    *len = 0;
    while (buf && !end) {
        if (*len == cap) {
            if (cap >= HREQ_MAX_HEAD)
                return 0;
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb)
                return 0;
            rq->head = buf = nb;
        }
        ssize_t r = read(fd, buf + *len, cap - *len);
        if (r <= 0)
            return 0;
        *len += (size_t)r;
        buf[*len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!buf)
        return 0;
    *end = '\0';
    return (size_t)(end - buf) + 4;
}

/* Splits the request line and the header lines of the head in place. */
static bool parse_head(hreq *rq)
{
    char *save = NULL, *line = strtok_r(rq->head, "\r\n", &save);
    char target[4096];
    if (!line || sscanf(line, "%15s %4095s", rq->method, target) != 2)
        return false;
    char *q = strchr(target, '?');
    if (q)
        *q++ = '\0';
    snprintf(rq->path, sizeof rq->path, "%s", target);
    snprintf(rq->query, sizeof rq->query, "%s", q ? q : "");
    while ((line = strtok_r(NULL, "\r\n", &save)) && rq->nh < HREQ_MAX_HEADERS) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        rq->hname[rq->nh] = line;
        rq->hvalue[rq->nh++] = v;
    }
    return true;
}

bool hreq_read(int fd, long max_body, hreq *rq)
{
    memset(rq, 0, sizeof *rq);
    size_t len = 0, head_len = read_head(fd, rq, &len);
    if (!head_len || !parse_head(rq))
        return false;
    const char *cl = hreq_header(rq, "Content-Length");
    long want = cl ? strtol(cl, NULL, 10) : 0;
    if (want < 0 || want > max_body)
        return false;
    rq->body = malloc((size_t)want + 1);
    if (!rq->body)
        return false;
    size_t have = len - head_len < (size_t)want ? len - head_len : (size_t)want;
    memcpy(rq->body, rq->head + head_len, have);
    while (have < (size_t)want) {
        ssize_t r = read(fd, rq->body + have, (size_t)want - have);
        if (r <= 0)
            return false;
        have += (size_t)r;
    }
    rq->body[want] = '\0';
    rq->body_len = (size_t)want;
    return true;
}

void hreq_free(hreq *rq)
{
    if (!rq)
        return;
    free(rq->body);
    free(rq->head);
    rq->body = rq->head = NULL;
}

const char *hreq_header(const hreq *rq, const char *name)
{
    for (int i = 0; i < rq->nh; i++)
        if (strcasecmp(rq->hname[i], name) == 0)
            return rq->hvalue[i];
    return NULL;
}

bool hreq_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}
