/*
 * http.c - routes and blocking handlers on NNG's HTTP server.
 *
 * Route functions run on NNG's threads and must not block. Handlers run on
 * worker threads: NNG's callback only queues the request's aio (bounded
 * queue; full -> 503) and a worker completes it. Ownership: the server
 * copies the tables; bodies returned by routes and handlers are freed here.
 */
#include "orch/http.h"

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/log.h"

#define QUEUE_MAX   128
#define MAX_WORKERS 16

typedef struct handler_slot {
    orch_http_handler h;
    struct orch_http_server *srv;
} handler_slot;

struct orch_http_server {
    nng_http_server *srv;
    orch_http_route *routes;
    size_t n;
    handler_slot *handlers;
    size_t nh;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    nng_aio *queue[QUEUE_MAX];
    size_t head, count;
    bool quit;
    pthread_t workers[MAX_WORKERS];
    int nworkers;
};

static void finish(nng_aio *aio, int status, const char *ctype, const char *body, size_t len)
{
    nng_http_res *res = NULL;
    int rv = nng_http_res_alloc(&res);
    if (rv == 0)
        rv = nng_http_res_set_status(res, (uint16_t)status);
    if (rv == 0)
        rv = nng_http_res_set_header(res, "Content-Type",
                                     ctype ? ctype : "text/plain; charset=utf-8");
    if (rv == 0 && body && len)
        rv = nng_http_res_copy_data(res, body, len);
    if (rv != 0) {
        if (res)
            nng_http_res_free(res);
        nng_aio_finish(aio, rv);
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

const char *orch_http_header(const orch_http_request *req, const char *name)
{
    return nng_http_req_get_header(req->impl, name);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool orch_http_query_param(const orch_http_request *req, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    for (const char *p = req->query; *p;) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t o = 0;
            for (size_t i = kl + 1; i < seg; i++) {
                char c = p[i];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && i + 2 < seg + 1 && hexval(p[i + 1]) >= 0 &&
                           hexval(p[i + 2]) >= 0) {
                    c = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
                    i += 2;
                }
                if (o + 1 >= n)
                    return false;
                out[o++] = c;
            }
            out[o] = '\0';
            return true;
        }
        p += seg;
        if (*p == '&')
            p++;
    }
    return false;
}

static void run_handler(nng_aio *aio)
{
    nng_http_handler *nh = nng_aio_get_input(aio, 1);
    handler_slot *slot = nng_http_handler_get_data(nh);
    nng_http_req *hreq = nng_aio_get_input(aio, 0);
    const char *uri = nng_http_req_get_uri(hreq);
    char path[512];
    const char *q = strchr(uri, '?');
    size_t pl = q ? (size_t)(q - uri) : strlen(uri);
    if (pl >= sizeof path)
        pl = sizeof path - 1;
    memcpy(path, uri, pl);
    path[pl] = '\0';
    orch_http_request req = { nng_http_req_get_method(hreq), path, q ? q + 1 : "", NULL, 0, hreq };
    void *body = NULL;
    size_t blen = 0;
    nng_http_req_get_data(hreq, &body, &blen);
    req.body = body;
    req.body_len = blen;
    orch_http_reply rep = { 500, NULL, 0, NULL };
    slot->h.fn(slot->h.arg, &req, &rep);
    orch_log_ctx_clear(); /* what the handler set names nothing the next request is about */
    finish(aio, rep.status, rep.content_type, rep.body, rep.len);
    free(rep.body);
}

static void *worker_main(void *arg)
{
    struct orch_http_server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->quit && s->count == 0)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->count == 0)
            break;
        nng_aio *aio = s->queue[s->head];
        s->head = (s->head + 1) % QUEUE_MAX;
        s->count--;
        bool quit = s->quit;
        pthread_mutex_unlock(&s->mu);
        if (quit) {
            static const char msg[] = "shutting down\n";
            finish(aio, 503, NULL, msg, sizeof msg - 1);
        } else {
            run_handler(aio);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void handler_cb(nng_aio *aio)
{
    nng_http_handler *nh = nng_aio_get_input(aio, 1);
    handler_slot *slot = nng_http_handler_get_data(nh);
    struct orch_http_server *s = slot->srv;
    pthread_mutex_lock(&s->mu);
    bool queued = false;
    if (!s->quit && s->count < QUEUE_MAX) {
        s->queue[(s->head + s->count) % QUEUE_MAX] = aio;
        s->count++;
        queued = true;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (!queued) {
        static const char msg[] = "busy: every HTTP worker is occupied, retry later\n";
        finish(aio, 503, NULL, msg, sizeof msg - 1);
    }
}

static void route_cb(nng_aio *aio)
{
    nng_http_handler *h = nng_aio_get_input(aio, 1);
    const orch_http_route *r = nng_http_handler_get_data(h);
    char *body = NULL;
    size_t len = 0;
    const char *ctype = "text/plain; charset=utf-8";
    nng_http_res *res;

    int status = r->fn(r->arg, &body, &len, &ctype);
    int rv = nng_http_res_alloc(&res);
    if (rv == 0)
        rv = nng_http_res_set_status(res, (uint16_t)status);
    if (rv == 0)
        rv = nng_http_res_set_header(res, "Content-Type", ctype);
    if (rv == 0 && body)
        rv = nng_http_res_copy_data(res, body, len);
    free(body);
    if (rv != 0) {
        if (res)
            nng_http_res_free(res);
        nng_aio_finish(aio, rv);
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static void stop_workers(orch_http_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    s->nworkers = 0;
}

/* Allocates a server holding copies of the route and handler tables (no
 * threads, no NNG state yet); NULL when out of memory. */
static orch_http_server *server_alloc(const orch_http_route *routes, size_t n,
                                      const orch_http_handler *handlers, size_t nh)
{
    orch_http_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->routes = calloc(n ? n : 1, sizeof *s->routes);
    if (!s->routes) {
        free(s);
        return NULL;
    }
    memcpy(s->routes, routes, n * sizeof *routes);
    s->n = n;
    s->handlers = calloc(nh ? nh : 1, sizeof *s->handlers);
    if (!s->handlers) {
        free(s->routes);
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < nh; i++) {
        s->handlers[i].h = handlers[i];
        s->handlers[i].srv = s;
    }
    s->nh = nh;
    return s;
}

/* Registers every GET route and every handler on s->srv; an NNG error code. */
static int add_handlers(orch_http_server *s)
{
    int rv = 0;
    for (size_t i = 0; rv == 0 && i < s->n; i++) {
        nng_http_handler *h;
        rv = nng_http_handler_alloc(&h, s->routes[i].path, route_cb);
        if (rv == 0)
            rv = nng_http_handler_set_method(h, "GET");
        if (rv == 0)
            rv = nng_http_handler_set_data(h, &s->routes[i], NULL);
        if (rv == 0)
            rv = nng_http_server_add_handler(s->srv, h);
    }
    for (size_t i = 0; rv == 0 && i < s->nh; i++) {
        nng_http_handler *h;
        rv = nng_http_handler_alloc(&h, s->handlers[i].h.path, handler_cb);
        if (rv == 0)
            rv = nng_http_handler_set_method(h, s->handlers[i].h.method);
        if (rv == 0)
            rv = nng_http_handler_collect_body(h, true, 1u << 20);
        if (rv == 0)
            rv = nng_http_handler_set_data(h, &s->handlers[i], NULL);
        if (rv == 0)
            rv = nng_http_server_add_handler(s->srv, h);
    }
    return rv;
}

orch_err orch_http_start(const char *addr, const orch_http_route *routes, size_t n,
                         const orch_http_handler *handlers, size_t nh, int workers,
                         orch_http_server **out)
{
    char urlbuf[300];
    nng_url *url = NULL;
    orch_http_server *s = server_alloc(routes, n, handlers, nh);
    if (!s)
        return ORCH_ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (nh && workers < 1)
        workers = 1;
    if (workers > MAX_WORKERS)
        workers = MAX_WORKERS;
    for (int i = 0; i < workers; i++)
        if (pthread_create(&s->workers[s->nworkers], NULL, worker_main, s) == 0)
            s->nworkers++;
    snprintf(urlbuf, sizeof urlbuf, "http://%s", addr);
    int rv = nng_url_parse(&url, urlbuf);
    if (rv == 0)
        rv = nng_http_server_hold(&s->srv, url);
    if (rv == 0)
        rv = add_handlers(s);
    if (rv == 0 && nh && s->nworkers == 0)
        rv = NNG_ENOMEM;
    if (rv == 0)
        rv = nng_http_server_start(s->srv);
    nng_url_free(url);
    if (rv != 0) {
        orch_error("cannot serve HTTP on %s: %s", addr, nng_strerror(rv));
        if (s->srv)
            nng_http_server_release(s->srv);
        stop_workers(s);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s->handlers);
        free(s->routes);
        free(s);
        return ORCH_EIO;
    }
    *out = s;
    return ORCH_OK;
}

void orch_http_stop(orch_http_server *s)
{
    if (!s)
        return;
    /* Workers first: queued requests are answered 503, running ones finish,
     * so no aio is left half-handled when NNG closes the connections. */
    stop_workers(s);
    nng_http_server_stop(s->srv);
    nng_http_server_release(s->srv);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->handlers);
    free(s->routes);
    free(s);
}
