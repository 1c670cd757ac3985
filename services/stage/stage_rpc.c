/*
 * stage_rpc.c - StageService: decode, validate, call the engine, encode.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/clock.h"
#include "orch/log.h"
#include "orch/v1/stage.pb-c.h"
#include "stage_rpc.h"
#include "stage_engine.h"
#include "stage_queue.h"
#include "stage_svc.h"

/* ---- validation ---------------------------------------------------------- */

static bool ident_char(char c, bool slash)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || (slash && c == '/');
}

/* Work items ("ORCH-114"), repos ("owner/name" or "name") and actors: short
 * identifiers, so they can go into URLs and logs as they are. */
static bool valid_ident(const char *name, const char *v, bool repo, char *why, size_t n)
{
    size_t len = strlen(v);
    if (len == 0) {
        snprintf(why, n, "%s is required", name);
        return false;
    }
    if (len > STAGE_MAX_FIELD) {
        snprintf(why, n, "%s is %zu bytes, at most %d", name, len, STAGE_MAX_FIELD);
        return false;
    }
    int slashes = 0;
    for (size_t i = 0; i < len; i++) {
        if (!ident_char(v[i], repo)) {
            snprintf(why, n, "%s may hold only letters, digits and - _ .%s", name,
                     repo ? " / (owner/name)" : "");
            return false;
        }
        slashes += v[i] == '/';
    }
    if (repo && (slashes > 1 || v[0] == '/' || v[len - 1] == '/')) {
        snprintf(why, n, "repo must be \"owner/name\" or \"name\"");
        return false;
    }
    return true;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* ---- input checks (stage_rpc.h) --------------------------------------------- */

/* Fills `why` and returns INVALID_ARGUMENT. */
static orch_code invalid(char *why, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static orch_code invalid(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return ORCH_CODE_INVALID_ARGUMENT;
}

static orch_code check_create(const Orch__V1__CreateTaskRequest *req, char *why, size_t n)
{
    if (!valid_ident("work_item", req->work_item, false, why, n) ||
        !valid_ident("repo", req->repo, true, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    if (strlen(req->title) > STAGE_MAX_TITLE)
        return invalid(why, n, "title is over %d bytes", STAGE_MAX_TITLE);
    if (!printable(req->title))
        return invalid(why, n, "title holds control characters");
    if (req->pr_number > (uint64_t)INT64_MAX)
        return invalid(why, n, "pr_number is out of range");
    return ORCH_CODE_OK;
}

static orch_code check_get(const Orch__V1__GetTaskRequest *req, char *why, size_t n)
{
    if (!valid_ident("work_item", req->work_item, false, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    unsigned limit = req->history_limit ? req->history_limit : 50;
    if (limit > 1000)
        return invalid(why, n, "history_limit %u is over 1000", req->history_limit);
    return ORCH_CODE_OK;
}

/* Builds the verdict set of a request: the text's verdict lines (unknown
 * keys there are prose and ignored), then the explicit list (unknown or
 * engine-only keys there are errors). */
static orch_code request_verdicts(const Orch__V1__AdvanceStageRequest *req, size_t max_evidence,
                                  orch_verdicts *out, char *why, size_t n)
{
    const char *text = req->evidence;
    Orch__V1__Evidence **list = req->verdicts;
    size_t nlist = req->n_verdicts;
    size_t tl = strlen(text);
    if (tl > max_evidence)
        return invalid(why, n, "evidence is %zu bytes, at most %zu (ORCH_STAGE_MAX_EVIDENCE_BYTES)",
                       tl, max_evidence);
    orch_verdicts parsed;
    orch_verdicts_init(&parsed);
    orch_verdicts_parse(&parsed, text, tl);
    orch_verdicts_init(out);
    for (size_t i = 0; i < parsed.n; i++)
        if (stage_verdict_key_reportable(parsed.v[i].key))
            (void)orch_verdicts_set(out, parsed.v[i].key, parsed.v[i].value);
    if (nlist > ORCH_VERDICTS_MAX)
        return invalid(why, n, "%zu verdicts, at most %d", nlist, ORCH_VERDICTS_MAX);
    for (size_t i = 0; i < nlist; i++) {
        const char *k = list[i]->key, *v = list[i]->value;
        if (!stage_verdict_key_reportable(k))
            return invalid(why, n, "verdict key \"%.64s\" is not one an actor may report", k);
        if (!orch_verdicts_set(out, k, v))
            return invalid(why, n, "verdict %s: value must be 1..255 printable bytes", k);
    }
    return ORCH_CODE_OK;
}

static orch_code check_advance(const Orch__V1__AdvanceStageRequest *req, size_t max_evidence,
                               orch_verdicts *ev, char *why, size_t n)
{
    if (!valid_ident("work_item", req->work_item, false, why, n) ||
        !valid_ident("actor", req->actor, false, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    return request_verdicts(req, max_evidence, ev, why, n);
}

static orch_code check_rollback(const Orch__V1__RollbackRequest *req, char *why, size_t n)
{
    if (!valid_ident("work_item", req->work_item, false, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    const char *actor = req->actor[0] ? req->actor : "operator";
    if (!valid_ident("actor", actor, false, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    if (!req->reason[0] || strlen(req->reason) > 500 || !printable(req->reason))
        return invalid(why, n, "reason is required: 1..500 printable bytes");
    stage_id from = stage_parse(req->expected_from);
    const stage_edge *e = from == STAGE_NONE ? NULL : stage_pipeline_edge(from, STAGE_DEVELOPMENT);
    if (!e || e->kind != STAGE_EDGE_ROLLBACK)
        return invalid(why, n,
                       "no rollback from \"%.60s\": only review, testing, staging and "
                       "deploy roll back to development",
                       req->expected_from);
    return ORCH_CODE_OK;
}

static orch_code check_list_queue(const Orch__V1__ListQueueRequest *req, char *why, size_t n)
{
    if (req->stage[0] && stage_parse(req->stage) == STAGE_NONE)
        return invalid(why, n, "unknown stage \"%.60s\"", req->stage);
    if (req->repo[0] && !valid_ident("repo", req->repo, true, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    unsigned limit = req->limit ? req->limit : 100;
    if (limit > 1000)
        return invalid(why, n, "limit %u is over 1000", req->limit);
    return ORCH_CODE_OK;
}

orch_code stage_rpc_check(const ProtobufCMessage *msg, size_t max_evidence, orch_verdicts *ev,
                          char *why, size_t n)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    if (d == &orch__v1__create_task_request__descriptor)
        return check_create((const Orch__V1__CreateTaskRequest *)msg, why, n);
    if (d == &orch__v1__get_task_request__descriptor)
        return check_get((const Orch__V1__GetTaskRequest *)msg, why, n);
    if (d == &orch__v1__advance_stage_request__descriptor) {
        orch_verdicts scratch;
        return check_advance((const Orch__V1__AdvanceStageRequest *)msg, max_evidence,
                             ev ? ev : &scratch, why, n);
    }
    if (d == &orch__v1__rollback_request__descriptor)
        return check_rollback((const Orch__V1__RollbackRequest *)msg, why, n);
    if (d == &orch__v1__list_queue_request__descriptor)
        return check_list_queue((const Orch__V1__ListQueueRequest *)msg, why, n);
    if (d == &orch__v1__pipeline_request__descriptor)
        return ORCH_CODE_OK;
    return invalid(why, n, "%s is not a StageService request", d->name);
}

/* Runs stage_rpc_check() on a handler's request. Returns ORCH_CODE_OK, or
 * the check's code with the reason set on the call (the handler returns it). */
static orch_code check_request(orch_rpc_call *call, const ProtobufCMessage *msg,
                               size_t max_evidence, orch_verdicts *ev)
{
    char why[320];
    orch_code code = stage_rpc_check(msg, max_evidence, ev, why, sizeof why);
    if (code != ORCH_CODE_OK)
        return orch_rpc_fail(call, code, "%s", why);
    return ORCH_CODE_OK;
}

/* ---- encoding ------------------------------------------------------------ */

typedef struct task_msg {
    Orch__V1__Task t;
} task_msg;

static void task_to_msg(const stage_task *t, Orch__V1__Task *m)
{
    orch__v1__task__init(m);
    m->work_item = (char *)t->work_item;
    m->repo = (char *)t->repo;
    m->title = (char *)t->title;
    m->stage = (char *)stage_name(t->stage);
    m->version = t->version;
    m->created_unix_ms = t->created_ms;
    m->updated_unix_ms = t->updated_ms;
}

static orch_code db_fail(orch_rpc_call *call, orch_err err, const char *what)
{
    return orch_rpc_fail(call, orch_err_to_code(err), "%s: %s", what, orch_strerror(err));
}

/* ---- CreateTask ---------------------------------------------------------- */

static orch_code create_task(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    stage_svc *ss = arg;
    const Orch__V1__CreateTaskRequest *req = (const Orch__V1__CreateTaskRequest *)msg;
    orch_code bad = check_request(call, msg, ss->max_evidence, NULL);
    if (bad != ORCH_CODE_OK)
        return bad;
    uint64_t dl = orch_rpc_call_deadline(call);
    orch_db_conn *c = NULL;
    stage_task in = { .pr_number = req->pr_number }, t;
    snprintf(in.work_item, sizeof in.work_item, "%s", req->work_item);
    snprintf(in.repo, sizeof in.repo, "%s", req->repo);
    snprintf(in.title, sizeof in.title, "%s", req->title);
    bool created = false;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_create(c, dl, &in, &t, &created);
    orch_db_release(c);
    if (err)
        return db_fail(call, err, "creating the task");
    if (!created && (strcmp(t.repo, req->repo) != 0 || strcmp(t.title, req->title) != 0 ||
                     t.pr_number != req->pr_number))
        return orch_rpc_fail(call, ORCH_CODE_ALREADY_EXISTS,
                             "task %s exists with another repo, title or pull request",
                             req->work_item);
    Orch__V1__CreateTaskReply rep = ORCH__V1__CREATE_TASK_REPLY__INIT;
    Orch__V1__Task tm;
    task_to_msg(&t, &tm);
    rep.task = &tm;
    rep.already_exists = !created;
    if (created)
        orch_info("task %s created (repo %s, pull request %" PRIu64 ")", t.work_item, t.repo,
                  t.pr_number);
    return orch_rpc_reply(call, &rep.base);
}

/* ---- GetTask ------------------------------------------------------------- */

/* What GetTask reads of a task; the arrays are malloc'ed. */
typedef struct task_view {
    stage_task t;
    orch_verdicts ev;
    stage_history_row *h;
    stage_effect_row *e;
    int nh, ne;
} task_view;

static void task_view_free(task_view *v)
{
    free(v->h);
    free(v->e);
    v->h = NULL;
    v->e = NULL;
}

static orch_err read_task_view(stage_svc *ss, uint64_t dl, const char *work_item, unsigned limit,
                               task_view *v)
{
    orch_db_conn *c = NULL;
    memset(v, 0, sizeof *v);
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_get(c, dl, work_item, &v->t);
    if (!err)
        err = stage_store_history(c, dl, work_item, (int)limit, &v->h, &v->nh);
    if (!err)
        err = stage_store_effects(c, dl, work_item, &v->e, &v->ne);
    if (!err)
        err = stage_store_load_evidence(c, dl, work_item, NULL, &v->ev);
    orch_db_release(c);
    if (err)
        task_view_free(v);
    return err;
}

/* The messages of a GetTaskReply, pointing into a task_view. */
typedef struct task_msgs {
    Orch__V1__HistoryEntry *h, **hp;
    Orch__V1__SideEffect *se, **sp;
    Orch__V1__Evidence *evm, **evp;
} task_msgs;

static void task_msgs_free(task_msgs *m)
{
    free(m->h);
    free(m->hp);
    free(m->se);
    free(m->sp);
    free(m->evm);
    free(m->evp);
}

/* Fills `m` from `v` (borrowed while `m` is used); false when out of memory. */
static bool task_msgs_fill(const task_view *v, task_msgs *m)
{
    size_t nh = (size_t)v->nh, ne = (size_t)v->ne;
    m->h = calloc(nh + 1, sizeof *m->h);
    m->hp = calloc(nh + 1, sizeof *m->hp);
    m->se = calloc(ne + 1, sizeof *m->se);
    m->sp = calloc(ne + 1, sizeof *m->sp);
    m->evm = calloc(v->ev.n + 1, sizeof *m->evm);
    m->evp = calloc(v->ev.n + 1, sizeof *m->evp);
    if (!m->h || !m->hp || !m->se || !m->sp || !m->evm || !m->evp)
        return false;
    for (size_t i = 0; i < nh; i++) {
        const stage_history_row *r = &v->h[i];
        Orch__V1__HistoryEntry *h = &m->h[i];
        orch__v1__history_entry__init(h);
        h->from_stage = (char *)r->from_stage;
        h->to_stage = (char *)r->to_stage;
        h->actor = (char *)r->actor;
        h->lease_epoch = r->lease_epoch;
        h->reason = (char *)r->reason;
        h->at_unix_ms = r->at_ms;
        m->hp[i] = h;
    }
    for (size_t i = 0; i < ne; i++) {
        const stage_effect_row *r = &v->e[i];
        Orch__V1__SideEffect *se = &m->se[i];
        orch__v1__side_effect__init(se);
        se->transition = (char *)r->transition;
        se->effect = (char *)r->effect;
        se->lease_epoch = r->lease_epoch;
        se->outcome = (char *)r->outcome;
        se->detail = (char *)r->detail;
        se->created_unix_ms = r->created_ms;
        se->finished_unix_ms = r->finished_ms;
        m->sp[i] = se;
    }
    for (size_t i = 0; i < v->ev.n; i++) {
        orch__v1__evidence__init(&m->evm[i]);
        m->evm[i].key = (char *)v->ev.v[i].key;
        m->evm[i].value = (char *)v->ev.v[i].value;
        m->evp[i] = &m->evm[i];
    }
    return true;
}

static orch_code get_task(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    stage_svc *ss = arg;
    const Orch__V1__GetTaskRequest *req = (const Orch__V1__GetTaskRequest *)msg;
    orch_code bad = check_request(call, msg, ss->max_evidence, NULL);
    if (bad != ORCH_CODE_OK)
        return bad;
    unsigned limit = req->history_limit ? req->history_limit : 50;
    task_view v;
    orch_err err = read_task_view(ss, orch_rpc_call_deadline(call), req->work_item, limit, &v);
    if (err == ORCH_ENOTFOUND)
        return orch_rpc_fail(call, ORCH_CODE_NOT_FOUND, "no task %s", req->work_item);
    if (err)
        return db_fail(call, err, "reading the task");
    task_msgs m = { 0 };
    orch_code code;
    if (!task_msgs_fill(&v, &m)) {
        code = orch_rpc_fail(call, ORCH_CODE_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        Orch__V1__GetTaskReply rep = ORCH__V1__GET_TASK_REPLY__INIT;
        Orch__V1__Task tm;
        task_to_msg(&v.t, &tm);
        rep.task = &tm;
        rep.n_history = (size_t)v.nh;
        rep.history = m.hp;
        rep.n_side_effects = (size_t)v.ne;
        rep.side_effects = m.sp;
        rep.n_evidence = v.ev.n;
        rep.evidence = m.evp;
        code = orch_rpc_reply(call, &rep.base);
    }
    task_msgs_free(&m);
    task_view_free(&v);
    return code;
}

/* ---- AdvanceStage / Rollback --------------------------------------------- */

/* The wire outcome of each answered result. */
static const Orch__V1__AdvanceStageReply__Outcome outcome_of[STAGE_RESULT_COUNT] = {
    [STAGE_RESULT_ADVANCED] = ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ADVANCED,
    [STAGE_RESULT_DEFERRED] = ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_DEFERRED,
    [STAGE_RESULT_GATE_FAILED] = ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_GATE_FAILED,
    [STAGE_RESULT_ROLLED_BACK] = ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ROLLED_BACK,
    [STAGE_RESULT_EFFECT_FAILED] = ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_EFFECT_FAILED,
    [STAGE_RESULT_EFFECT_UNKNOWN] = ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_EFFECT_UNKNOWN,
};

/* Runs the engine for a request (received at `t0`, orch_mono_ns) and
 * counts it. On failure the call is answered with stage_failure_code() of
 * the failure and its message (the returned code); on OK the caller
 * replies from *out. Either way *out is the caller's to free
 * (stage_outcome_free). */
static orch_code run_advance(stage_svc *ss, orch_rpc_call *call, const stage_advance_req *ar,
                             uint64_t t0, stage_outcome *out)
{
    orch_err err = stage_advance(ss, ar, orch_rpc_call_deadline(call), out);
    stage_count_transition(ss, ar->expected_from, ar->to, out->result);
    orch_histogram_observe_ns(ss->m_advance_latency, 0, orch_mono_ns() - t0);
    if (!err)
        return ORCH_CODE_OK;
    return orch_rpc_fail(call, stage_failure_code(out->fail.kind, out->fail.err), "%s",
                         out->fail.msg);
}

/* The reply's side effects of `o`, named by `transition` (borrowed). */
static void effects_to_msg(const stage_outcome *o, char *transition, Orch__V1__SideEffect *se,
                           Orch__V1__SideEffect **sp)
{
    for (int i = 0; i < o->neffects; i++) {
        orch__v1__side_effect__init(&se[i]);
        se[i].transition = transition;
        se[i].effect = (char *)stage_effect_name(o->effects[i].effect);
        se[i].lease_epoch = o->effects[i].epoch;
        se[i].outcome = (char *)o->effects[i].outcome;
        se[i].detail = (char *)o->effects[i].detail;
        sp[i] = &se[i];
    }
}

static orch_code advance(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    stage_svc *ss = arg;
    const Orch__V1__AdvanceStageRequest *req = (const Orch__V1__AdvanceStageRequest *)msg;
    uint64_t t0 = orch_mono_ns();
    orch_verdicts ev;
    orch_code bad = check_request(call, msg, ss->max_evidence, &ev);
    if (bad != ORCH_CODE_OK)
        return bad;
    stage_advance_req ar = { req->work_item, req->expected_from, req->to, req->actor, "", &ev };
    stage_outcome res;
    orch_code code = run_advance(ss, call, &ar, t0, &res);
    if (code) {
        stage_outcome_free(&res);
        return code;
    }
    Orch__V1__AdvanceStageReply rep = ORCH__V1__ADVANCE_STAGE_REPLY__INIT;
    Orch__V1__Task tm;
    task_to_msg(&res.task, &tm);
    rep.outcome = outcome_of[res.result];
    rep.task = &tm;
    rep.lease_epoch = res.epoch;
    rep.holder = res.holder;
    rep.holder_liveness = (Orch__V1__Liveness)res.holder_liveness;
    char *fails[STAGE_ADV_MAX_FAILS];
    for (size_t i = 0; i < res.nfails; i++)
        fails[i] = res.fails[i];
    rep.n_gate_failures = res.nfails;
    rep.gate_failures = fails;
    Orch__V1__SideEffect se[STAGE_ADV_MAX_EFFECTS], *sp[STAGE_ADV_MAX_EFFECTS];
    char transition[64];
    snprintf(transition, sizeof transition, "%s->%s", req->expected_from, req->to);
    effects_to_msg(&res, transition, se, sp);
    rep.n_side_effects = (size_t)res.neffects;
    rep.side_effects = sp;
    code = orch_rpc_reply(call, &rep.base);
    stage_outcome_free(&res);
    return code;
}

static orch_code rollback(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    stage_svc *ss = arg;
    const Orch__V1__RollbackRequest *req = (const Orch__V1__RollbackRequest *)msg;
    uint64_t t0 = orch_mono_ns();
    orch_code bad = check_request(call, msg, ss->max_evidence, NULL);
    if (bad != ORCH_CODE_OK)
        return bad;
    const char *actor = req->actor[0] ? req->actor : "operator";
    stage_advance_req ar = { req->work_item, req->expected_from, "development",
                             actor,          req->reason,        NULL };
    stage_outcome res;
    orch_code code = run_advance(ss, call, &ar, t0, &res);
    if (code) {
        stage_outcome_free(&res);
        return code;
    }
    Orch__V1__RollbackReply rep = ORCH__V1__ROLLBACK_REPLY__INIT;
    Orch__V1__Task tm;
    task_to_msg(&res.task, &tm);
    rep.task = &tm;
    rep.lease_epoch = res.epoch;
    rep.deferred = res.result == STAGE_RESULT_DEFERRED;
    rep.holder = res.holder;
    code = orch_rpc_reply(call, &rep.base);
    stage_outcome_free(&res);
    return code;
}

/* ---- ListQueue, Pipeline ------------------------------------------------- */

static orch_code list_queue(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    stage_svc *ss = arg;
    const Orch__V1__ListQueueRequest *req = (const Orch__V1__ListQueueRequest *)msg;
    orch_code bad = check_request(call, msg, ss->max_evidence, NULL);
    if (bad != ORCH_CODE_OK)
        return bad;
    stage_id st = req->stage[0] ? stage_parse(req->stage) : STAGE_NONE;
    unsigned limit = req->limit ? req->limit : 100;
    uint64_t dl = orch_rpc_call_deadline(call);
    orch_db_conn *c = NULL;
    stage_task *ts = NULL;
    int n = 0;
    orch_err err = orch_db_acquire(ss->db, dl, &c);
    if (!err)
        err = stage_store_list(c, dl, &(stage_list_filter){ st, req->repo, (int)limit }, &ts, &n);
    orch_db_release(c);
    if (err)
        return db_fail(call, err, "listing tasks");
    stage_queue q;
    orch_code code = stage_queue_leases(ss, ts, n, dl, &q);
    if (!code) {
        Orch__V1__QueueEntry *qe = calloc((size_t)n + 1, sizeof *qe);
        Orch__V1__QueueEntry **qp = calloc((size_t)n + 1, sizeof *qp);
        Orch__V1__Task *tm = calloc((size_t)n + 1, sizeof *tm);
        if (!qe || !qp || !tm) {
            code = orch_rpc_fail(call, ORCH_CODE_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            for (int i = 0; i < n; i++) {
                orch__v1__queue_entry__init(&qe[i]);
                task_to_msg(&ts[i], &tm[i]);
                qe[i].task = &tm[i];
                qe[i].lease = q.lease[i];
                qe[i].lease_liveness = q.liveness[i];
                qp[i] = &qe[i];
            }
            Orch__V1__ListQueueReply rep = ORCH__V1__LIST_QUEUE_REPLY__INIT;
            rep.n_entries = (size_t)n;
            rep.entries = qp;
            code = orch_rpc_reply(call, &rep.base);
        }
        free(qe);
        free(qp);
        free(tm);
        stage_queue_free(&q);
    } else {
        code = orch_rpc_fail(call, code, "lease-service: %s", q.why);
    }
    free(ts);
    return code;
}

static orch_code pipeline(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    (void)msg;
    (void)arg;
    size_t ne;
    const stage_edge *edges = stage_pipeline_edges(&ne);
    char *stages[STAGE_COUNT];
    for (int i = 0; i < STAGE_COUNT; i++)
        stages[i] = (char *)stage_name((stage_id)i);
    Orch__V1__PipelineEdge *em = calloc(ne, sizeof *em);
    Orch__V1__PipelineEdge **ep = calloc(ne, sizeof *ep);
    char *(*gates)[STAGE_EDGE_MAX_GATES] = calloc(ne, sizeof *gates);
    char *(*rb)[STAGE_EDGE_MAX_GATES] = calloc(ne, sizeof *rb);
    char *(*effs)[STAGE_EDGE_MAX_EFFECTS] = calloc(ne, sizeof *effs);
    orch_code code;
    if (!em || !ep || !gates || !rb || !effs) {
        code = orch_rpc_fail(call, ORCH_CODE_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        for (size_t i = 0; i < ne; i++) {
            const stage_edge *e = &edges[i];
            orch__v1__pipeline_edge__init(&em[i]);
            em[i].from_stage = (char *)stage_name(e->from);
            em[i].to_stage = (char *)stage_name(e->to);
            em[i].kind = (char *)stage_edge_kind_name(e->kind);
            for (int g = 0; g < STAGE_EDGE_MAX_GATES && e->gates[g]; g++) {
                gates[i][em[i].n_gates++] = (char *)e->gates[g]->name;
                if (e->gates[g]->rolls_back)
                    rb[i][em[i].n_rollback_gates++] = (char *)e->gates[g]->name;
            }
            for (int f = 0; f < e->neffects; f++)
                effs[i][em[i].n_effects++] = (char *)stage_effect_name(e->effects[f]);
            em[i].gates = gates[i];
            em[i].rollback_gates = rb[i];
            em[i].effects = effs[i];
            ep[i] = &em[i];
        }
        Orch__V1__PipelineReply rep = ORCH__V1__PIPELINE_REPLY__INIT;
        rep.n_stages = STAGE_COUNT;
        rep.stages = stages;
        rep.n_edges = ne;
        rep.edges = ep;
        code = orch_rpc_reply(call, &rep.base);
    }
    free(em);
    free(ep);
    free(gates);
    free(rb);
    free(effs);
    return code;
}

/* Matched to the service block of stage.proto by name at registration. */
/* Handlers and the roles that may call them (docs/rpc.md, "Authorization"). */
static const orch_rpc_method methods[] = {
    { .name = "CreateTask", .handler = create_task, .roles = ORCH_ROLE_OPERATOR },
    { .name = "GetTask", .handler = get_task, .roles = ORCH_ROLE_OPERATOR },
    { .name = "AdvanceStage",
      .handler = advance,
      .roles = ORCH_ROLE_OPERATOR | ORCH_ROLE_LAUNCHER },
    { .name = "Rollback", .handler = rollback, .roles = ORCH_ROLE_OPERATOR },
    { .name = "ListQueue", .handler = list_queue, .roles = ORCH_ROLE_OPERATOR },
    { .name = "Pipeline", .handler = pipeline, .roles = ORCH_ROLE_OPERATOR },
};

orch_err stage_rpc_register(orch_service *svc, stage_svc *ss)
{
    orch_rpc_service rpc = { .desc = &orch__v1__stage_service__descriptor,
                             .methods = methods,
                             .nmethods = sizeof methods / sizeof *methods,
                             .arg = ss };
    return orch_service_add_rpc(svc, &rpc);
}
