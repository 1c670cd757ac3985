/*
 * http.c - GET routes on NNG's HTTP server.
 *
 * Route functions run on NNG's threads and must not block. Ownership: the
 * server copies the route table; bodies returned by routes are freed here.
 */
#include "orch/http.h"

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/log.h"

struct orch_http_server {
    nng_http_server *srv;
    orch_http_route *routes;
    size_t n;
};

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

orch_err orch_http_start(const char *addr, const orch_http_route *routes, size_t n,
                         orch_http_server **out)
{
    char urlbuf[300];
    nng_url *url = NULL;
    orch_http_server *s = calloc(1, sizeof *s);
    if (!s)
        return ORCH_ENOMEM;
    s->routes = calloc(n ? n : 1, sizeof *s->routes);
    if (!s->routes) {
        free(s);
        return ORCH_ENOMEM;
    }
    memcpy(s->routes, routes, n * sizeof *routes);
    s->n = n;
    snprintf(urlbuf, sizeof urlbuf, "http://%s", addr);
    int rv = nng_url_parse(&url, urlbuf);
    if (rv == 0)
        rv = nng_http_server_hold(&s->srv, url);
    for (size_t i = 0; rv == 0 && i < n; i++) {
        nng_http_handler *h;
        rv = nng_http_handler_alloc(&h, s->routes[i].path, route_cb);
        if (rv == 0)
            rv = nng_http_handler_set_method(h, "GET");
        if (rv == 0)
            rv = nng_http_handler_set_data(h, &s->routes[i], NULL);
        if (rv == 0)
            rv = nng_http_server_add_handler(s->srv, h);
    }
    if (rv == 0)
        rv = nng_http_server_start(s->srv);
    nng_url_free(url);
    if (rv != 0) {
        orch_error("cannot serve HTTP on %s: %s", addr, nng_strerror(rv));
        if (s->srv)
            nng_http_server_release(s->srv);
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
    nng_http_server_stop(s->srv);
    nng_http_server_release(s->srv);
    free(s->routes);
    free(s);
}
