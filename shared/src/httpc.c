/*
 * httpc.c - see httpc.h.
 *
 * The loopback check sits in CURLOPT_OPENSOCKETFUNCTION, which libcurl calls
 * with the resolved address of every connection it makes (happy eyeballs
 * included), so neither DNS nor an alternative address can slip past it.
 * Proxies are disabled (CURLOPT_PROXY "") so that the socket opened is the
 * destination's, and redirects are never followed.
 */
#include "orch/httpc.h"

#include <ctype.h>
#include <dlfcn.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* libcurl's entry points, from dlopen() on the first request (the soname of
 * the ABI in use since libcurl 7.16). A process that makes no request never
 * maps libcurl nor its dependencies; __typeof__ keeps each pointer's type
 * that of the declaration in curl.h. */
#define CURL_SONAME "libcurl.so.4"

#ifndef CURL_VERSION_THREADSAFE /* curl.h before 7.84 */
#define CURL_VERSION_THREADSAFE (1 << 30)
#endif

static struct curl_api {
    __typeof__(curl_global_init) *global_init;
    __typeof__(curl_easy_init) *easy_init;
    __typeof__(curl_easy_setopt) *easy_setopt;
    __typeof__(curl_easy_perform) *easy_perform;
    __typeof__(curl_easy_getinfo) *easy_getinfo;
    __typeof__(curl_easy_cleanup) *easy_cleanup;
    __typeof__(curl_easy_strerror) *easy_strerror;
    __typeof__(curl_slist_append) *slist_append;
    __typeof__(curl_slist_free_all) *slist_free_all;
} cu;

/* The URL API, which orch_httpc_check_base_url() loads for the time of one
 * check and unloads again (see there). */
typedef struct url_api {
    __typeof__(curl_version_info) *version_info;
    __typeof__(curl_free) *free;
    __typeof__(curl_url) *url;
    __typeof__(curl_url_cleanup) *url_cleanup;
    __typeof__(curl_url_get) *url_get;
    __typeof__(curl_url_set) *url_set;
    __typeof__(curl_url_strerror) *url_strerror;
} url_api;

typedef struct curl_sym {
    const char *name;
    size_t offset;
} curl_sym;

static const curl_sym easy_syms[] = {
    { "curl_global_init", offsetof(struct curl_api, global_init) },
    { "curl_easy_init", offsetof(struct curl_api, easy_init) },
    { "curl_easy_setopt", offsetof(struct curl_api, easy_setopt) },
    { "curl_easy_perform", offsetof(struct curl_api, easy_perform) },
    { "curl_easy_getinfo", offsetof(struct curl_api, easy_getinfo) },
    { "curl_easy_cleanup", offsetof(struct curl_api, easy_cleanup) },
    { "curl_easy_strerror", offsetof(struct curl_api, easy_strerror) },
    { "curl_slist_append", offsetof(struct curl_api, slist_append) },
    { "curl_slist_free_all", offsetof(struct curl_api, slist_free_all) },
};

static const curl_sym url_syms[] = {
    { "curl_version_info", offsetof(url_api, version_info) },
    { "curl_free", offsetof(url_api, free) },
    { "curl_url", offsetof(url_api, url) },
    { "curl_url_cleanup", offsetof(url_api, url_cleanup) },
    { "curl_url_get", offsetof(url_api, url_get) },
    { "curl_url_set", offsetof(url_api, url_set) },
    { "curl_url_strerror", offsetof(url_api, url_strerror) },
};

/* dlopen()s libcurl and fills the table `api` with the n symbols of `syms`;
 * NULL with the reason in err. The caller owns the handle returned. */
static void *load_curl(const curl_sym *syms, size_t nsyms, void *api, char *err, size_t n)
{
    void *lib = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(err, n, "cannot load %s: %.150s", CURL_SONAME, dlerror());
        return NULL;
    }
    for (size_t i = 0; i < nsyms; i++) {
        void *f = dlsym(lib, syms[i].name);
        if (!f) {
            snprintf(err, n, "%s lacks %s", CURL_SONAME, syms[i].name);
            dlclose(lib);
            return NULL;
        }
        memcpy((char *)api + syms[i].offset, &f, sizeof f);
    }
    return lib;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static bool init_ok;
static char init_error[200] = "libcurl not loaded";

/* Run once (pthread_once), so that curl_global_init is never called twice
 * or by two threads at once; the library then stays loaded for the life of
 * the process. */
static void global_init(void)
{
    if (!load_curl(easy_syms, sizeof easy_syms / sizeof easy_syms[0], &cu, init_error,
                   sizeof init_error))
        return;
    if (cu.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(init_error, sizeof init_error, "libcurl could not be initialised");
        return;
    }
    init_ok = true;
}

/* Loads and initialises libcurl once; false with the reason in buf. */
static bool curl_ready(char *buf, size_t n)
{
    pthread_once(&init_once, global_init);
    if (!init_ok && buf && n)
        snprintf(buf, n, "%s", init_error);
    return init_ok;
}

void orch_httpc_redact_url(const char *url, char *out, size_t n)
{
    if (!n)
        return;
    if (!url) {
        snprintf(out, n, "(none)");
        return;
    }
    const char *p = strstr(url, "://");
    const char *host = p ? p + 3 : url;
    size_t hl = strcspn(host, "/?#");
    /* user:password@ never reaches the output */
    const char *at = memchr(host, '@', hl);
    if (at) {
        hl -= (size_t)(at + 1 - host);
        host = at + 1;
    }
    int scheme = p ? (int)(p - url) : 0;
    if (scheme > 8)
        scheme = 8;
    snprintf(out, n, "%.*s%s%.*s/…", scheme, url, p ? "://" : "", (int)(hl > 200 ? 200 : hl), host);
}

typedef struct xfer {
    orch_httpc_resp *resp;
    size_t cap;
    bool too_big;
    bool refused;
    bool loopback;
} xfer;

static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    xfer *x = arg;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    if (x->loopback && !orch_httpc_sockaddr_is_loopback(&a->addr)) {
        x->refused = true;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    xfer *x = arg;
    size_t n = size * nmemb;
    orch_httpc_resp *r = x->resp;
    if (r->body_len + n > ORCH_HTTPC_MAX_BODY) {
        x->too_big = true;
        return 0;
    }
    if (r->body_len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b)
            return 0;
        r->body = b;
        x->cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    xfer *x = arg;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && n < 128 && strncasecmp(data, name, sizeof name - 1) == 0) {
        char v[128];
        memcpy(v, data + sizeof name - 1, n - (sizeof name - 1));
        v[n - (sizeof name - 1)] = '\0';
        char *p = v, *end;
        while (*p == ' ' || *p == '\t')
            p++;
        long long s = strtoll(p, &end, 10);
        if (end != p && s >= 0 && s < 86400 * 365)
            x->resp->retry_after_s = s;
    }
    return n;
}

__attribute__((format(printf, 3, 4))) static void say(char *buf, size_t n, const char *fmt, ...)
{
    if (!buf || !n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

/* Sets every option; false on a refused option (unsupported method etc.). */
static bool configure(CURL *h, const orch_httpc_req *req, struct curl_slist *hl, xfer *x,
                      char *cerr)
{
    uint32_t t = req->timeout_ms ? req->timeout_ms : 10000;
    bool ok =
        cu.easy_setopt(h, CURLOPT_URL, req->url) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_PROXY, "") == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_NOPROXY, "*") == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)t) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)t) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_OPENSOCKETDATA, x) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_WRITEDATA, x) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_HEADERDATA, x) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_ERRORBUFFER, cerr) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_HTTPHEADER, hl) == CURLE_OK &&
        cu.easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ORCH_HTTPC_MAX_BODY) == CURLE_OK;
    if (!ok)
        return false;
    if (req->body) {
        ok =
            cu.easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) == CURLE_OK &&
            cu.easy_setopt(h, CURLOPT_POSTFIELDS, req->body) == CURLE_OK;
    }
    if (ok && strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0)
        ok = cu.easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method) == CURLE_OK;
    else if (ok && strcmp(req->method, "GET") == 0 && !req->body)
        ok = cu.easy_setopt(h, CURLOPT_HTTPGET, 1L) == CURLE_OK;
    return ok;
}

static bool valid_method(const char *m)
{
    size_t n = m ? strlen(m) : 0;
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)m[i]))
            return false;
    return true;
}

static orch_err map_curl(CURLcode rc, const xfer *x, const char *where, char *errbuf, size_t n)
{
    if (x->refused) {
        say(errbuf, n, "%s: refused: not a loopback address (test runtime)", where);
        return ORCH_EINVAL;
    }
    if (x->too_big) {
        say(errbuf, n, "%s: response larger than %u bytes", where, ORCH_HTTPC_MAX_BODY);
        return ORCH_EIO;
    }
    say(errbuf, n, "%s: %s", where, cu.easy_strerror(rc));
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return ORCH_ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY: return ORCH_ENOMEM;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return ORCH_EINVAL;
    default: return ORCH_EIO;
    }
}

/* Whether a failed transfer certainly sent nothing: curl stopped before a
 * connection existed. */
static bool never_sent(CURLcode rc, const xfer *x)
{
    if (x->refused)
        return true;
    switch (rc) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: return true;
    default: return false;
    }
}

/* The request's headers after "Expect:" (no 100-continue round trip); the
 * caller frees the list with curl_slist_free_all. NULL when out of memory. */
static struct curl_slist *header_list(const orch_httpc_req *req)
{
    struct curl_slist *hl = cu.slist_append(NULL, "Expect:");
    for (const char *const *hp = req->headers; hl && hp && *hp; hp++) {
        struct curl_slist *t = cu.slist_append(hl, *hp);
        if (!t) {
            cu.slist_free_all(hl);
            hl = NULL;
        }
        hl = t;
    }
    return hl;
}

orch_err orch_httpc_do(const orch_httpc_req *req, orch_httpc_resp *resp, char *errbuf,
                       size_t errlen)
{
    return orch_httpc_do_ex(req, resp, NULL, errbuf, errlen);
}

orch_err orch_httpc_do_ex(const orch_httpc_req *req, orch_httpc_resp *resp, bool *unsent,
                          char *errbuf, size_t errlen)
{
    char where[256], cerr[CURL_ERROR_SIZE] = "";
    if (unsent)
        *unsent = true; /* until a connection may have been made */
    if (!req || !resp || !req->url || !valid_method(req->method)) {
        say(errbuf, errlen, "bad request: method or URL missing or malformed");
        return ORCH_EINVAL;
    }
    orch_httpc_redact_url(req->url, where, sizeof where);
    if (strncmp(req->url, "http://", 7) != 0 && strncmp(req->url, "https://", 8) != 0) {
        say(errbuf, errlen, "%s: only http and https URLs are allowed", where);
        return ORCH_EINVAL;
    }
    if (!curl_ready(errbuf, errlen))
        return ORCH_EIO;
    orch_httpc_resp r = { .retry_after_s = -1 };
    xfer x = { .resp = &r, .loopback = orch_httpc_loopback_only() };
    struct curl_slist *hl = header_list(req);
    CURL *h = hl ? cu.easy_init() : NULL;
    if (!h) {
        cu.slist_free_all(hl);
        say(errbuf, errlen, "%s: out of memory", where);
        return ORCH_ENOMEM;
    }
    orch_err err = ORCH_OK;
    if (!configure(h, req, hl, &x, cerr)) {
        say(errbuf, errlen, "%s: request not supported by libcurl", where);
        err = ORCH_EINVAL;
    } else {
        CURLcode rc = cu.easy_perform(h);
        if (unsent)
            *unsent = rc != CURLE_OK && never_sent(rc, &x);
        if (rc != CURLE_OK)
            err = map_curl(rc, &x, where, errbuf, errlen);
        else
            cu.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    }
    cu.easy_cleanup(h);
    cu.slist_free_all(hl);
    if (!err && !r.body) {
        r.body = calloc(1, 1);
        if (!r.body)
            err = ORCH_ENOMEM;
    }
    if (err) {
        free(r.body);
        return err;
    }
    *resp = r;
    return ORCH_OK;
}

void orch_httpc_resp_free(orch_httpc_resp *resp)
{
    if (!resp)
        return;
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

/* The parts of a parsed URL that a base URL must not have. */
static const char *forbidden_part(const url_api *ua, CURLU *u)
{
    static const struct {
        CURLUPart part;
        const char *name;
    } parts[] = { { CURLUPART_USER, "a user name (put credentials in the token variable)" },
                  { CURLUPART_PASSWORD, "a password (put credentials in the token variable)" },
                  { CURLUPART_QUERY, "a query (?...)" },
                  { CURLUPART_FRAGMENT, "a fragment (#...)" } };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        char *v = NULL;
        CURLUcode rc = ua->url_get(u, parts[i].part, &v, 0);
        ua->free(v);
        if (rc == CURLUE_OK)
            return parts[i].name;
    }
    return NULL;
}

/* libcurl's parse of `url` and what a base URL must not carry. */
static orch_err parse_base_url(const url_api *ua, const char *url, char *why, size_t n)
{
    CURLU *u = ua->url();
    if (!u) {
        say(why, n, "out of memory");
        return ORCH_ENOMEM;
    }
    orch_err err = ORCH_OK;
    char *host = NULL;
    CURLUcode rc = ua->url_set(u, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK) {
        say(why, n, "it does not parse as a URL: %s", ua->url_strerror(rc));
        err = ORCH_EINVAL;
    } else if (ua->url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !host[0]) {
        say(why, n, "it names no host");
        err = ORCH_EINVAL;
    } else {
        const char *bad = forbidden_part(ua, u);
        if (bad) {
            say(why, n, "a base URL must not carry %s", bad);
            err = ORCH_EINVAL;
        }
    }
    ua->free(host);
    ua->url_cleanup(u);
    return err;
}

/*
 * The check loads libcurl for its own use (the loader counts the handles:
 * one held by the request path is not affected) and unloads it again, so
 * that a service which checks its URLs at start-up does not keep libcurl,
 * the libraries only it needs, and OpenSSL's initialised state resident
 * until its first request. The URL API (curl_url, curl_url_set/get,
 * curl_free) is used without curl_global_init: it parses in memory with
 * libcurl's default allocator and needs none of what curl_global_init sets
 * up (TLS backend, resolver, tracing). curl_global_init is left to the
 * first request, on a worker thread: a libcurl that does not announce
 * CURL_VERSION_THREADSAFE (before 7.84) is initialised here instead, on the
 * starting thread, as it always was, and then stays loaded.
 */
orch_err orch_httpc_check_base_url(const char *url, char *why, size_t n)
{
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        say(why, n, "it must start with http:// or https://");
        return ORCH_EINVAL;
    }
    for (const char *p = url; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            say(why, n, "it contains a blank or control character at offset %zu",
                (size_t)(p - url));
            return ORCH_EINVAL;
        }
    }
    char err[200];
    url_api ua;
    void *lib = load_curl(url_syms, sizeof url_syms / sizeof url_syms[0], &ua, err, sizeof err);
    if (!lib) {
        say(why, n, "%s", err);
        return ORCH_EIO;
    }
    orch_err rc;
    if (!(ua.version_info(CURLVERSION_NOW)->features & CURL_VERSION_THREADSAFE) &&
        !curl_ready(why, n))
        rc = ORCH_EIO;
    else
        rc = parse_base_url(&ua, url, why, n);
    dlclose(lib);
    return rc;
}
