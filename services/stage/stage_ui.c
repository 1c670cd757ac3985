/*
 * stage_ui.c - the dashboard's routes (stage_ui.h): the embedded page and
 * the two JSON reads it makes besides /queue. Rows come typed from
 * stage_store.c; each request uses one pooled connection for at most 5 s.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "stage_http_json.h"
#include "stage_pipeline.h"
#include "stage_store.h"
#include "stage_ui.h"

#define UI_ROWS      50  /* lease events and guard decisions shown */
#define UI_HISTORY   100 /* history rows of one item */
#define UI_BUDGET_MS 5000

extern const char stage_ui_page[];
extern const size_t stage_ui_page_len;

static void get_page(void *arg, const orch_http_request *req, orch_http_reply *rep)
{
    (void)arg;
    (void)req;
    rep->status = 200;
    rep->content_type = "text/html; charset=utf-8";
    rep->body = malloc(stage_ui_page_len + 1);
    if (!rep->body) {
        rep->status = 500;
        return;
    }
    memcpy(rep->body, stage_ui_page, stage_ui_page_len + 1);
    rep->len = stage_ui_page_len;
}

/* The pipeline table: stage names in order, and each edge with its gates
 * and effects. */
static json_t *pipeline_json(void)
{
    json_t *stages = json_array(), *edges = json_array();
    for (int s = 0; s < STAGE_COUNT; s++)
        json_array_append_new(stages, json_string(stage_name((stage_id)s)));
    size_t n;
    const stage_edge *es = stage_pipeline_edges(&n);
    for (size_t i = 0; i < n; i++) {
        json_t *gates = json_array(), *effects = json_array();
        for (int g = 0; g < STAGE_EDGE_MAX_GATES && es[i].gates[g]; g++)
            json_array_append_new(gates, json_string(es[i].gates[g]->name));
        for (int k = 0; k < es[i].neffects; k++)
            json_array_append_new(effects, json_string(stage_effect_name(es[i].effects[k])));
        json_array_append_new(edges, json_pack("{s:s, s:s, s:s, s:o, s:o}", "from",
                                               stage_name(es[i].from), "to", stage_name(es[i].to),
                                               "kind", stage_edge_kind_name(es[i].kind), "gates",
                                               gates, "effects", effects));
    }
    return json_pack("{s:o, s:o}", "stages", stages, "edges", edges);
}

static json_t *lease_events_json(const stage_lease_event_row *rows, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        const stage_lease_event_row *e = &rows[i];
        json_array_append_new(a,
                              json_pack("{s:I, s:s, s:I, s:s, s:s, s:s, s:I}", "id",
                                        (json_int_t)e->id, "work_item", e->work_item, "epoch",
                                        (json_int_t)e->epoch, "kind", e->kind, "actor", e->actor,
                                        "detail", e->detail, "at_unix_ms", (json_int_t)e->at_ms));
    }
    return a;
}

static json_t *guard_audit_json(const stage_guard_audit_row *rows, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        const stage_guard_audit_row *g = &rows[i];
        json_array_append_new(a, json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "id",
                                           (json_int_t)g->id, "at_unix_ms", (json_int_t)g->at_ms,
                                           "runtime", g->runtime, "operation", g->operation,
                                           "project", g->project, "decision", g->decision, "reason",
                                           g->reason, "caller", g->caller));
    }
    return a;
}

static void get_activity(void *arg, const orch_http_request *req, orch_http_reply *rep)
{
    stage_svc *ss = arg;
    (void)req;
    uint64_t dl = orch_mono_ms() + UI_BUDGET_MS;
    orch_db_conn *c = NULL;
    stage_lease_event_row *ev = NULL;
    stage_guard_audit_row *ga = NULL;
    int nev = 0, nga = 0;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_lease_events(c, dl, UI_ROWS, &ev, &nev);
    if (!err)
        err = stage_store_guard_audit(c, dl, UI_ROWS, &ga, &nga);
    orch_db_release(c);
    if (err) {
        free(ev);
        stage_reply_error(rep, 503, "reading the activity: %s", orch_strerror(err));
        return;
    }
    stage_reply_json(rep, 200,
                     json_pack("{s:I, s:o, s:o, s:o}", "generated_unix_ms",
                               (json_int_t)orch_wall_ms(), "lease_events",
                               lease_events_json(ev, nev), "guard_audit", guard_audit_json(ga, nga),
                               "pipeline", pipeline_json()));
    free(ev);
    free(ga);
}

static json_t *history_json(const stage_history_row *rows, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        const stage_history_row *h = &rows[i];
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:I, s:s, s:I}", "from", h->from_stage,
                                           "to", h->to_stage, "actor", h->actor, "lease_epoch",
                                           (json_int_t)h->lease_epoch, "reason", h->reason,
                                           "at_unix_ms", (json_int_t)h->at_ms));
    }
    return a;
}

static json_t *effects_json(const stage_effect_row *rows, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        const stage_effect_row *e = &rows[i];
        json_array_append_new(a,
                              json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:I}", "transition",
                                        e->transition, "effect", e->effect, "outcome", e->outcome,
                                        "lease_epoch", (json_int_t)e->lease_epoch, "detail",
                                        e->detail, "created_unix_ms", (json_int_t)e->created_ms,
                                        "finished_unix_ms", (json_int_t)e->finished_ms));
    }
    return a;
}

static void get_item(void *arg, const orch_http_request *req, orch_http_reply *rep)
{
    stage_svc *ss = arg;
    char item[STAGE_MAX_FIELD + 1] = "";
    if (!orch_http_query_param(req, "work_item", item, sizeof item) || !item[0]) {
        stage_reply_error(rep, 400, "work_item is required");
        return;
    }
    uint64_t dl = orch_mono_ms() + UI_BUDGET_MS;
    orch_db_conn *c = NULL;
    stage_task t;
    stage_history_row *h = NULL;
    stage_effect_row *e = NULL;
    int nh = 0, ne = 0;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_get(c, dl, item, &t);
    if (!err)
        err = stage_store_history(c, dl, item, UI_HISTORY, &h, &nh);
    if (!err)
        err = stage_store_effects(c, dl, item, &e, &ne);
    orch_db_release(c);
    if (err) {
        free(h);
        stage_reply_error(rep, err == ORCH_ENOTFOUND ? 404 : 503, "%s: %s", item,
                          orch_strerror(err));
        return;
    }
    stage_reply_json(rep, 200,
                     json_pack("{s:s, s:s, s:s, s:s, s:I, s:i, s:o, s:o}", "work_item", t.work_item,
                               "stage", stage_name(t.stage), "repo", t.repo, "title", t.title,
                               "pr_number", (json_int_t)t.pr_number, "cycle", t.cycle, "history",
                               history_json(h, nh), "side_effects", effects_json(e, ne)));
    free(h);
    free(e);
}

orch_err stage_ui_register(orch_service *svc, stage_svc *ss)
{
    const orch_http_handler hs[] = {
        { "GET", "/ui", get_page, ss },
        { "GET", "/ui/activity", get_activity, ss },
        { "GET", "/ui/item", get_item, ss },
    };
    return orch_service_add_https(svc, hs, sizeof hs / sizeof hs[0]);
}
