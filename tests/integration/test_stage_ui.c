/*
 * test_stage_ui.c - stage-service's dashboard (GET /ui, /ui/activity,
 * /ui/item): the page has no external assets, the JSON reads show the
 * lease events, guard decisions, pipeline and an item's side effects, and a
 * real browser (Debian's headless Chromium) renders the page against the
 * running services into a DOM that shows a held lease and an advanced item.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stage_world.h"

#define CHROMIUM "/usr/bin/chromium"

static sw_world W;

static void down(void)
{
    sw_down(&W);
}

static json_t *get_json(const char *path)
{
    char *body = NULL;
    long status = th_http_get(W.stage.http_addr, path, &body);
    cr_assert_eq(status, 200, "GET %s: %ld %s", path, status, body ? body : "");
    json_error_t je;
    json_t *o = json_loads(body, 0, &je);
    cr_assert(o, "GET %s: not JSON (%s): %s", path, je.text, body);
    free(body);
    return o;
}

/* An item walked to testing (its merge done), one whose lease this test
 * process holds, and one guard decision in the audit table. */
static uint64_t set_up(void)
{
    sw_up(&W, NULL);
    cr_assert_eq(sw_create(W.client, "UI-1", "org/app", 9100), ORCH_CODE_OK);
    cr_assert_eq(sw_create(W.client, "UI-2", "org/app", 9101), ORCH_CODE_OK);
    sw_walk_to(&W, "UI-1", "testing");
    uint64_t epoch = sw_hold_lease(&W, "UI-2", "ui-test-actor");
    free(th_sql(W.db, "INSERT INTO guard_audit (runtime, operation, project, decision, reason,"
                      " caller) VALUES ('test', 'add_comment', 'ui-project', 'block',"
                      " 'ui-test: production target', 'ui-test-caller')"));
    return epoch;
}

Test(stage_ui, page_is_self_contained_html, .fini = down, .timeout = 120)
{
    sw_up(&W, NULL);
    char *body = NULL;
    cr_assert_eq(th_http_get(W.stage.http_addr, "/ui", &body), 200);
    cr_assert(strstr(body, "<!doctype html>"), "not the page: %.200s", body);
    /* No external assets: no script or style from elsewhere, no URL but
     * the SVG namespace. */
    cr_assert_null(strstr(body, "<script src"));
    cr_assert_null(strstr(body, "<link"));
    cr_assert_null(strstr(body, "https://"));
    const char *p = body;
    while ((p = strstr(p, "http://")) != NULL) {
        cr_assert(strncmp(p, "http://www.w3.org/2000/svg", 26) == 0, "external URL: %.60s", p);
        p += 7;
    }
    free(body);
    cr_assert_eq(th_http_get(W.stage.http_addr, "/ui/item", NULL), 400);
    cr_assert_eq(th_http_get(W.stage.http_addr, "/ui/item?work_item=NO-SUCH", NULL), 404);
}

Test(stage_ui, activity_and_item_reads, .fini = down, .timeout = 120)
{
    uint64_t epoch = set_up();
    json_t *a = get_json("/ui/activity");
    json_t *ev = json_object_get(a, "lease_events");
    bool granted = false;
    for (size_t i = 0; i < json_array_size(ev); i++) {
        json_t *e = json_array_get(ev, i);
        if (strcmp(json_string_value(json_object_get(e, "work_item")), "UI-2") == 0 &&
            strcmp(json_string_value(json_object_get(e, "kind")), "granted") == 0 &&
            (uint64_t)json_integer_value(json_object_get(e, "epoch")) == epoch)
            granted = true;
    }
    cr_assert(granted, "no granted event of UI-2 epoch %llu", (unsigned long long)epoch);
    json_t *g = json_array_get(json_object_get(a, "guard_audit"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(g, "caller")), "ui-test-caller");
    cr_assert_str_eq(json_string_value(json_object_get(g, "decision")), "block");
    json_t *pl = json_object_get(a, "pipeline");
    cr_assert_eq(json_array_size(json_object_get(pl, "stages")), 10);
    cr_assert_gt(json_array_size(json_object_get(pl, "edges")), 8);
    json_decref(a);

    json_t *it = get_json("/ui/item?work_item=UI-1");
    cr_assert_str_eq(json_string_value(json_object_get(it, "stage")), "testing");
    cr_assert_gt(json_array_size(json_object_get(it, "history")), 3);
    json_t *fx = json_object_get(it, "side_effects");
    bool merged = false;
    for (size_t i = 0; i < json_array_size(fx); i++) {
        json_t *e = json_array_get(fx, i);
        if (strcmp(json_string_value(json_object_get(e, "effect")), "merge_pr") == 0 &&
            strcmp(json_string_value(json_object_get(e, "outcome")), "ok") == 0)
            merged = true;
    }
    cr_assert(merged, "no merge_pr ok among UI-1's side effects");
    json_decref(it);
}

/* Renders /ui?item=UI-1 in headless Chromium and returns the DOM after the
 * page's fetches ran (virtual time lets them finish before the dump). */
static char *rendered_dom(void)
{
    cr_assert(access(CHROMIUM, X_OK) == 0,
              CHROMIUM " is missing: the test command installs Debian's chromium");
    char url[160], profile[] = "/tmp/orch-ui-chromium-XXXXXX";
    cr_assert(mkdtemp(profile));
    char profile_arg[64];
    snprintf(profile_arg, sizeof profile_arg, "--user-data-dir=%s", profile);
    snprintf(url, sizeof url, "http://%s/ui?item=UI-1", W.stage.http_addr);
    const char *argv[] = { CHROMIUM,
                           "--headless",
                           "--no-sandbox",
                           "--disable-gpu",
                           "--disable-dev-shm-usage",
                           "--no-first-run",
                           "--disable-extensions",
                           profile_arg,
                           "--virtual-time-budget=10000",
                           "--dump-dom",
                           url,
                           NULL };
    size_t n = 1 << 20;
    char *out = malloc(n);
    cr_assert(out);
    int rc = th_run(argv, NULL, out, n, 90000);
    const char *rm[] = { "/bin/rm", "-rf", profile, NULL };
    cr_assert_eq(th_run(rm, NULL, NULL, 0, 30000), 0);
    cr_assert_eq(rc, 0, "chromium exited %d: %.2000s", rc, out);
    return out;
}

/* The text of the first element after `anchor` in `dom` that starts with
 * `tag_start` (e.g. "<div class=\"lease"), up to its closing "</div>". */
static void element_after(const char *dom, const char *anchor, const char *tag_start, char *out,
                          size_t n)
{
    const char *a = strstr(dom, anchor);
    cr_assert(a, "the DOM has no %s", anchor);
    const char *b = strstr(a, tag_start);
    cr_assert(b, "no %s after %s", tag_start, anchor);
    const char *e = strstr(b, "</div>");
    cr_assert(e);
    snprintf(out, n, "%.*s", (int)(e - b), b);
}

Test(stage_ui, chromium_renders_a_held_lease_and_an_advanced_item, .fini = down, .timeout = 180)
{
    uint64_t epoch = set_up();
    char *dom = rendered_dom();
    /* The advanced item sits in the testing column. */
    const char *testing = strstr(dom, "id=\"stage-testing\"");
    cr_assert(testing, "no testing column in the rendered page:\n%.3000s", dom);
    const char *ui1 = strstr(dom, "data-work-item=\"UI-1\" data-stage=\"testing\"");
    cr_assert(ui1 && ui1 > testing, "UI-1 is not shown in testing:\n%.3000s", dom);
    /* The held lease of UI-2: its epoch, the holder's host and liveness. */
    char lease[1024], want[64];
    element_after(dom, "data-work-item=\"UI-2\"", "<div class=\"lease", lease, sizeof lease);
    snprintf(want, sizeof want, "lease epoch %llu", (unsigned long long)epoch);
    cr_assert(strstr(lease, "lease held") && strstr(lease, want), "lease of UI-2: %s", lease);
    cr_assert(strstr(lease, "ui-test-actor") && strstr(lease, "alive"), "lease of UI-2: %s", lease);
    /* The pipeline diagram, the side effects of the selected item, the
     * lease events and the guard decision. */
    cr_assert(strstr(dom, "data-edge=\"review-&gt;testing\"") ||
                  strstr(dom, "data-edge=\"review->testing\""),
              "no review->testing edge in the diagram");
    cr_assert(strstr(dom, "data-effect=\"merge_pr\" data-outcome=\"ok\""),
              "UI-1's merge is not shown");
    cr_assert(strstr(dom, "data-work-item=\"UI-2\" data-kind=\"granted\""),
              "no granted event of UI-2 in the lease events");
    cr_assert(strstr(dom, "ui-test: production target"), "the guard decision is not shown");
    const char *status = strstr(dom, "id=\"status\"");
    cr_assert(status, "no status line");
    /* (the page's own script holds the words "refresh failed": look at the
     * status line itself) */
    cr_assert(strncmp(status, "id=\"status\" class=\"\">", 21) == 0 &&
                  strstr(status, " items; updated "),
              "the page reported an error: %.300s", status);
    free(dom);
}
