/*
 * httpc.c - outbound HTTP over libcurl (see httpc.h).
 */
#include "orch/httpc.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_BODY (4u << 20)

static atomic_bool loopback_only;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void orch_httpc_set_loopback_only(bool on)
{
    atomic_store(&loopback_only, on);
}

typedef struct sink {
    char *buf;
    size_t len;
    bool overflow;
} sink;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    sink *s = arg;
    size_t add = size * n;
    if (s->len + add > MAX_BODY) {
        s->overflow = true;
        return 0;
    }
    char *nb = realloc(s->buf, s->len + add + 1);
    if (!nb)
        return 0;
    memcpy(nb + s->len, p, add);
    s->buf = nb;
    s->len += add;
    s->buf[s->len] = '\0';
    return add;
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

/* Sees every address libcurl is about to connect to. */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    bool *refused = arg;
    if (purpose != CURLSOCKTYPE_IPCXN || (atomic_load(&loopback_only) && !is_loopback(&a->addr))) {
        *refused = true;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

orch_err orch_httpc_do(const orch_httpc_req *req, orch_httpc_resp *resp, char *errbuf,
                       size_t errlen)
{
    pthread_once(&once, global_init);
    memset(resp, 0, sizeof *resp);
    resp->retry_after_s = -1;
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(errbuf, errlen, "cannot create an HTTP handle");
        return ORCH_ENOMEM;
    }
    sink s = { 0 };
    bool refused = false;
    struct curl_slist *hdrs = NULL;
    for (size_t i = 0; req->headers && req->headers[i]; i++)
        hdrs = curl_slist_append(hdrs, req->headers[i]);
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &refused);
    if (req->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
    } else if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    CURLcode rc = curl_easy_perform(h);
    orch_err err = ORCH_OK;
    if (refused) {
        snprintf(errbuf, errlen, "destination refused: only loopback is allowed in test runtime");
        err = ORCH_EINVAL;
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(errbuf, errlen, "timed out after %u ms", req->timeout_ms);
        err = ORCH_ETIMEDOUT;
    } else if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
        snprintf(errbuf, errlen, "bad URL: %s", curl_easy_strerror(rc));
        err = ORCH_EINVAL;
    } else if (rc != CURLE_OK) {
        snprintf(errbuf, errlen, "%s%s", curl_easy_strerror(rc),
                 s.overflow ? " (response too large)" : "");
        err = ORCH_EIO;
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
        curl_off_t ra = -1;
        if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
            resp->retry_after_s = (int64_t)ra;
        resp->body = s.buf ? s.buf : calloc(1, 1);
        resp->body_len = s.len;
        s.buf = NULL;
        if (!resp->body)
            err = ORCH_ENOMEM;
    }
    free(s.buf);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return err;
}

void orch_httpc_resp_free(orch_httpc_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
}
