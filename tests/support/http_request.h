/*
 * http_request.h - reading one HTTP/1.1 request from a socket, for the test
 * servers that imitate outside services (orch-imitation, orch-campaign-sink).
 * One request per connection; the head is at most HREQ_MAX_HEAD bytes and
 * the body at most the caller's limit. Blocking reads: the caller sets the
 * socket's receive timeout. No shared state: any thread may call it.
 */
#ifndef ORCH_TEST_HTTP_REQUEST_H
#define ORCH_TEST_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#define HREQ_MAX_HEAD    65536
#define HREQ_MAX_HEADERS 64

typedef struct hreq {
    char method[16];
    char path[4096];  /* the target up to '?' */
    char query[4096]; /* after '?', "" when none */
    int nh;
    char *hname[HREQ_MAX_HEADERS], *hvalue[HREQ_MAX_HEADERS]; /* point into head */
    char *body;                                               /* NUL-terminated */
    size_t body_len;
    char *head; /* the raw head, split in place */
} hreq;

/* Reads one request from fd into rq (which it zeroes first). False on a
 * malformed request, a head over HREQ_MAX_HEAD, a Content-Length over
 * max_body, or a short read. Either way the caller releases rq with
 * hreq_free. */
bool hreq_read(int fd, long max_body, hreq *rq);

/* Frees what hreq_read allocated; rq may be partly filled. */
void hreq_free(hreq *rq);

/* The value of header `name` (case-insensitive), borrowed from rq; NULL
 * when absent. */
const char *hreq_header(const hreq *rq, const char *name);

/* Writes all n bytes, retrying on EINTR; false on an error. */
bool hreq_write_all(int fd, const char *p, size_t n);

#endif
