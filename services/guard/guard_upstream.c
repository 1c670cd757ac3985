/*
 * guard_upstream.c - the Plane and Telegram clients, over the shared HTTP
 * client (orch/httpc.h). Called only after the guard allowed the write.
 *
 * Plane (REST API v1): X-API-Key header;
 *   PATCH {base}/api/v1/workspaces/{ws}/projects/{p}/issues/{id}/  {"state": uuid}
 *   POST  .../issues/{id}/comments/  {"comment_html", "external_id", "external_source"}
 *   GET   {base}/api/v1/workspaces/{ws}/projects/{p}/states/
 * Telegram: POST {base}/bot{token}/sendMessage {"chat_id", "text"}; a 429
 * carries parameters.retry_after, honoured by waiting when it is short.
 * Neither credential ever reaches a log line, a reply or `detail`: URLs are
 * logged redacted and every detail is scrubbed of both secrets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guard_svc.h"
#include "orch/clock.h"
#include "orch/httpc.h"
#include "orch/log.h"

static uint32_t budget(uint32_t conf, uint64_t dl)
{
    uint64_t left = orch_deadline_left_ms(dl);
    if (left < 50)
        left = 50;
    return left < conf ? (uint32_t)left : conf;
}

static void finish(guard_svc *g, int upstream, guard_result *r)
{
    guard_scrub(r->detail, g->plane_key);
    guard_scrub(r->detail, g->tg_token);
    orch_counter_add2(g->m_upstream, (size_t)upstream, r->outcome, 1);
}

/* One exchange; fills r's outcome, status and detail. *resp is filled only
 * when a status came back (then the caller frees it). */
static bool exchange(guard_svc *g, const orch_httpc_req *req, guard_result *r,
                     orch_httpc_resp *resp)
{
    char err[256] = "";
    orch_err e = orch_httpc_do(req, resp, err, sizeof err);
    r->attempts++;
    r->status = e ? 0 : resp->status;
    r->outcome = guard_classify(e, r->status);
    if (e)
        snprintf(r->detail, sizeof r->detail, "%s", err);
    else if (r->outcome != GUARD_UP_OK)
        snprintf(r->detail, sizeof r->detail, "upstream answered HTTP %ld: %.160s", resp->status,
                 resp->body);
    (void)g;
    return e == ORCH_OK;
}

static const char *const plane_headers_tpl[] = { "Content-Type: application/json",
                                                 "Accept: application/json" };

static void plane_call(guard_svc *g, const char *method, const char *url, const char *body,
                       uint64_t dl, guard_result *r, orch_httpc_resp *resp, bool *have)
{
    char key[600];
    snprintf(key, sizeof key, "X-API-Key: %s", g->plane_key);
    const char *headers[] = { key, plane_headers_tpl[0], plane_headers_tpl[1], NULL };
    orch_httpc_req req = { .method = method,
                           .url = url,
                           .headers = headers,
                           .body = body,
                           .body_len = body ? strlen(body) : 0,
                           .timeout_ms = budget(g->plane_timeout_ms, dl) };
    char shown[300];
    orch_httpc_redact_url(url, shown, sizeof shown);
    *have = exchange(g, &req, r, resp);
    orch_debug("plane %s %s: %s", method, shown, guard_outcome_names[r->outcome]);
    memset(key, 0, sizeof key);
}

static void issue_url(guard_svc *g, const char *project, const char *issue, const char *tail,
                      char *out, size_t n)
{
    snprintf(out, n, "%s/api/v1/workspaces/%s/projects/%s/issues/%s/%s", g->plane_base, g->plane_ws,
             project, issue, tail);
}

void guard_plane_set_state(guard_svc *g, const char *project, const char *issue,
                           const char *state_id, uint64_t dl, guard_result *r)
{
    char url[1024];
    orch_httpc_resp resp = { 0 };
    bool have = false;
    char *body = guard_plane_state_body(state_id);
    issue_url(g, project, issue, "", url, sizeof url);
    if (!body) {
        r->outcome = GUARD_UP_TRANSPORT;
        snprintf(r->detail, sizeof r->detail, "out of memory");
    } else {
        plane_call(g, "PATCH", url, body, dl, r, &resp, &have);
    }
    free(body);
    orch_httpc_resp_free(have ? &resp : NULL);
    finish(g, GUARD_PLANE, r);
}

void guard_plane_resolve_state(guard_svc *g, const char *project, const char *name, uint64_t dl,
                               guard_result *r)
{
    char url[1024];
    orch_httpc_resp resp = { 0 };
    bool have = false;
    snprintf(url, sizeof url, "%s/api/v1/workspaces/%s/projects/%s/states/", g->plane_base,
             g->plane_ws, project);
    plane_call(g, "GET", url, NULL, dl, r, &resp, &have);
    if (have && r->outcome == GUARD_UP_OK &&
        !guard_plane_state_by_name(resp.body, name, r->id, sizeof r->id)) {
        r->outcome = GUARD_UP_CLIENT_ERROR;
        snprintf(r->detail, sizeof r->detail, "the project has no state named '%.64s'", name);
    }
    orch_httpc_resp_free(have ? &resp : NULL);
    finish(g, GUARD_PLANE, r);
}

void guard_plane_comment(guard_svc *g, const char *project, const char *issue, const char *text,
                         const char *external_id, uint64_t dl, guard_result *r)
{
    char url[1024];
    orch_httpc_resp resp = { 0 };
    bool have = false;
    char *html = guard_comment_html(text);
    char *body = html ? guard_plane_comment_body(html, external_id) : NULL;
    issue_url(g, project, issue, "comments/", url, sizeof url);
    if (!body) {
        r->outcome = GUARD_UP_TRANSPORT;
        snprintf(r->detail, sizeof r->detail, "out of memory");
    } else {
        plane_call(g, "POST", url, body, dl, r, &resp, &have);
        if (have && r->outcome == GUARD_UP_OK)
            guard_plane_id(resp.body, r->id, sizeof r->id);
    }
    free(html);
    free(body);
    orch_httpc_resp_free(have ? &resp : NULL);
    finish(g, GUARD_PLANE, r);
}

static void sleep_s(int64_t s)
{
    struct timespec ts = { (time_t)s, 0 };
    nanosleep(&ts, NULL);
}

void guard_telegram_send(guard_svc *g, const char *chat, const char *text, uint64_t dl,
                         guard_result *r)
{
    char url[1024];
    snprintf(url, sizeof url, "%s/bot%s/sendMessage", g->tg_base, g->tg_token);
    char *body = guard_telegram_body(chat, text);
    const char *headers[] = { "Content-Type: application/json", NULL };
    r->retry_after_s = -1;
    for (int i = 0; body && i < g->tg_attempts; i++) {
        orch_httpc_resp resp = { 0 };
        orch_httpc_req req = { .method = "POST",
                               .url = url,
                               .headers = headers,
                               .body = body,
                               .body_len = strlen(body),
                               .timeout_ms = budget(g->tg_timeout_ms, dl) };
        if (!exchange(g, &req, r, &resp))
            break;
        guard_tg_answer a;
        guard_telegram_parse(resp.body, &a);
        orch_httpc_resp_free(&resp);
        if (r->outcome == GUARD_UP_OK && !a.ok) {
            r->outcome = GUARD_UP_SERVER_ERROR;
            snprintf(r->detail, sizeof r->detail, "Telegram answered ok=false: %s", a.description);
        }
        r->message_id = a.message_id;
        if (r->outcome != GUARD_UP_RATE_LIMITED)
            break;
        int64_t wait = a.retry_after_s >= 0 ? a.retry_after_s : resp.retry_after_s;
        r->retry_after_s = wait < 0 ? 1 : wait;
        snprintf(r->detail, sizeof r->detail, "Telegram rate limit: retry after %lld s",
                 (long long)r->retry_after_s);
        if (i + 1 == g->tg_attempts || r->retry_after_s > g->tg_max_retry_after_s ||
            (uint64_t)r->retry_after_s * 1000 + 500 > orch_deadline_left_ms(dl))
            break;
        orch_info("Telegram asked to wait %lld s; waiting", (long long)r->retry_after_s);
        sleep_s(r->retry_after_s);
    }
    if (!body) {
        r->outcome = GUARD_UP_TRANSPORT;
        snprintf(r->detail, sizeof r->detail, "out of memory");
    }
    free(body);
    memset(url, 0, sizeof url);
    finish(g, GUARD_TELEGRAM, r);
}
