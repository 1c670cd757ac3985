/*
 * test_httpc.c - the shared HTTP client (orch/httpc.h) on its own, against
 * an orch-imitation on loopback: statuses, Retry-After, timeouts, and the
 * loopback-only layer (non-loopback destinations refused before a socket
 * exists; proxies and redirects never lead elsewhere; secrets of the URL
 * never in the error text); the start-up URL check next to requests.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "orch/clock.h"
#include "orch/httpc.h"

static th_imitation im;

static void setup(void)
{
    th_imitation_start(&im, "telegram");
}

static void teardown(void)
{
    th_imitation_stop(&im);
}

static orch_err post(const char *url, orch_httpc_resp *r, char *err, size_t n, uint32_t t)
{
    static const char body[] = "{\"chat_id\":\"1\",\"text\":\"x\"}";
    const char *h[] = { "Content-Type: application/json", NULL };
    orch_httpc_req req = { "POST", url, h, body, sizeof body - 1, t };
    return orch_httpc_do(&req, r, err, n);
}

TestSuite(httpc, .init = setup, .fini = teardown);

Test(httpc, any_status_is_ok_and_retry_after_is_read)
{
    char url[256], err[256] = "";
    orch_httpc_resp r;
    snprintf(url, sizeof url, "%s/bot1:TOKEN/sendMessage", im.base_url);
    cr_assert_eq(post(url, &r, err, sizeof err, 3000), ORCH_OK, "%s", err);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.retry_after_s, -1);
    cr_assert_not_null(strstr(r.body, "\"ok\":true"));
    orch_httpc_resp_free(&r);
    th_imitation_script(&im, "{\"status\":429,\"retry_after\":9,\"times\":1}");
    cr_assert_eq(post(url, &r, err, sizeof err, 3000), ORCH_OK, "%s", err);
    cr_assert_eq(r.status, 429);
    cr_assert_eq(r.retry_after_s, 9);
    orch_httpc_resp_free(&r);
    cr_assert_eq(th_imitation_count(&im, "POST", "/bot1:TOKEN/sendMessage"), 2);
}

Test(httpc, timeout_is_reported_as_such)
{
    char url[256], err[256] = "";
    orch_httpc_resp r;
    snprintf(url, sizeof url, "%s/bot1:TOKEN/sendMessage", im.base_url);
    th_imitation_script(&im, "{\"delay_ms\":1500,\"times\":1}");
    uint64_t t0 = orch_mono_ms();
    cr_assert_eq(post(url, &r, err, sizeof err, 300), ORCH_ETIMEDOUT, "%s", err);
    cr_assert_lt(orch_mono_ms() - t0, 1400);
    cr_assert_null(strstr(err, "TOKEN"), "error text leaks the path: %s", err);
}

Test(httpc, closed_port_is_a_transport_error)
{
    char url[128], err[256] = "";
    orch_httpc_resp r;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/bot1:TOKEN/x", th_free_port());
    cr_assert_eq(post(url, &r, err, sizeof err, 2000), ORCH_EIO);
    cr_assert_null(strstr(err, "TOKEN"), "error text leaks the path: %s", err);
}

Test(httpc, loopback_only_refuses_every_other_destination)
{
    static const char *const urls[] = {
        "http://192.0.2.10/bot1:TOKEN/sendMessage",
        "http://10.255.255.1:8080/x",
        "http://0.0.0.0:1/x",
        "http://[2001:db8::1]/x",
        "https://8.8.8.8/x",
        "http://[::ffff:192.0.2.1]/x",
    };
    orch_httpc_set_loopback_only(true);
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        char err[256] = "";
        orch_httpc_resp r;
        uint64_t t0 = orch_mono_ms();
        cr_assert_eq(post(urls[i], &r, err, sizeof err, 3000), ORCH_EINVAL, "%s: %s", urls[i], err);
        cr_assert_lt(orch_mono_ms() - t0, 1000, "%s was attempted", urls[i]);
        cr_assert_not_null(strstr(err, "not a loopback address"), "%s", err);
        cr_assert_null(strstr(err, "TOKEN"), "error text leaks the path: %s", err);
    }
}

Test(httpc, loopback_only_allows_loopback_and_ignores_proxies)
{
    char url[256], err[256] = "";
    orch_httpc_resp r;
    setenv("http_proxy", "http://192.0.2.55:3128", 1);
    setenv("HTTP_PROXY", "http://192.0.2.55:3128", 1);
    setenv("ALL_PROXY", "http://192.0.2.55:3128", 1);
    orch_httpc_set_loopback_only(true);
    snprintf(url, sizeof url, "%s/bot1:TOKEN/sendMessage", im.base_url);
    cr_assert_eq(post(url, &r, err, sizeof err, 3000), ORCH_OK, "%s", err);
    cr_assert_eq(r.status, 200);
    orch_httpc_resp_free(&r);
    snprintf(url, sizeof url, "http://localhost:%d/bot1:TOKEN/sendMessage", im.port);
    cr_assert_eq(post(url, &r, err, sizeof err, 3000), ORCH_OK, "%s", err);
    orch_httpc_resp_free(&r);
    cr_assert_eq(th_imitation_count(&im, "POST", "/bot1"), 2);
}

Test(httpc, redirects_are_not_followed)
{
    char url[256], err[256] = "";
    orch_httpc_resp r;
    orch_httpc_set_loopback_only(true);
    th_imitation_script(&im, "{\"status\":302,\"location\":\"http://192.0.2.77/elsewhere\"}");
    snprintf(url, sizeof url, "%s/bot1:TOKEN/sendMessage", im.base_url);
    cr_assert_eq(post(url, &r, err, sizeof err, 3000), ORCH_OK, "%s", err);
    cr_assert_eq(r.status, 302);
    orch_httpc_resp_free(&r);
    cr_assert_eq(th_imitation_count(&im, NULL, NULL), 1);
}

Test(httpc, bad_requests_are_refused)
{
    char err[256] = "";
    orch_httpc_resp r;
    orch_httpc_req req = { "POST", "ftp://127.0.0.1/x", NULL, NULL, 0, 1000 };
    cr_assert_eq(orch_httpc_do(&req, &r, err, sizeof err), ORCH_EINVAL);
    req.url = "file:///etc/passwd";
    cr_assert_eq(orch_httpc_do(&req, &r, err, sizeof err), ORCH_EINVAL);
    req.url = NULL;
    cr_assert_eq(orch_httpc_do(&req, &r, err, sizeof err), ORCH_EINVAL);
    req.url = "http://127.0.0.1/";
    req.method = "po st";
    cr_assert_eq(orch_httpc_do(&req, &r, err, sizeof err), ORCH_EINVAL);
}

/* The URL check loads and unloads libcurl for each check (whether a service
 * keeps it mapped is test_memory.c's; this binary links libcurl itself):
 * checks before and after requests leave the requests working. */
Test(httpc, url_checks_before_and_after_requests)
{
    char why[256] = "", url[256], err[256] = "";
    orch_httpc_resp r;
    cr_assert_eq(orch_httpc_check_base_url("http://127.0.0.1:3000/", why, sizeof why), ORCH_OK,
                 "%s", why);
    cr_assert_eq(orch_httpc_check_base_url("http://gitea:3000/?a=1", why, sizeof why), ORCH_EINVAL);
    cr_assert_not_null(strstr(why, "query"), "%s", why);
    snprintf(url, sizeof url, "%s/bot1:TOKEN/sendMessage", im.base_url);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(post(url, &r, err, sizeof err, 3000), ORCH_OK, "%s", err);
        cr_assert_eq(r.status, 200);
        orch_httpc_resp_free(&r);
        cr_assert_eq(orch_httpc_check_base_url("https://[::1]:8443/api", why, sizeof why), ORCH_OK,
                     "%s", why);
    }
    cr_assert_eq(th_imitation_count(&im, "POST", "/bot1:TOKEN/sendMessage"), 2);
}

Test(httpc, loopback_text_check)
{
    cr_assert(orch_httpc_is_loopback_text("127.0.0.1"));
    cr_assert(orch_httpc_is_loopback_text("127.200.0.9"));
    cr_assert(orch_httpc_is_loopback_text("::1"));
    cr_assert(orch_httpc_is_loopback_text("::ffff:127.0.0.1"));
    cr_assert_not(orch_httpc_is_loopback_text("0.0.0.0"));
    cr_assert_not(orch_httpc_is_loopback_text("128.0.0.1"));
    cr_assert_not(orch_httpc_is_loopback_text("::"));
    cr_assert_not(orch_httpc_is_loopback_text("localhost"));
}
