/*
 * stage_bench.c - full stage transitions per second through stage-service
 * against the bare expected-stage CAS sent straight to PostgreSQL.
 *
 * Three stacks, in one run, on one database:
 *   service  orch.v1.StageService/AdvanceStage on a running stage-service
 *            whose lease applies to --repo: read the task, Acquire the lease
 *            from lease-service, read the verdicts and run the gates, claim
 *            the intent and run the edge's effect (a POST to the deploy hook,
 *            answered at once by an HTTP server inside this process), the
 *            fenced CAS with its history row, Release. One RPC client shared
 *            by the callers, as a process would share it;
 *   direct   the same transition without the services: the statements
 *            stage-service and lease-service run for it, in order, sent by
 *            the callers themselves over connections of their own
 *            (stage_bench_direct.h), the hook POSTed by the caller: the
 *            necessary work, so that service/direct is the services' overhead;
 *   baseline the bare CAS `UPDATE tasks SET stage = $3 WHERE work_item = $1
 *            AND stage = $2` sent with libpq by the callers themselves, one
 *            connection per caller: one durable statement.
 * Commits per transition: the durable commits that wrote the stage and lease
 * tables during a slice, read from the WAL (tests/support/wal_commits.h, so
 * read-only transactions, the benchmark's own included, never count),
 * divided by the slice's advances; printed for every stack.
 * Modes: K callers (--callers, 1,4,16) each advancing work items of its own,
 * on each edge (staging->deploy with its deploy_start effect, and
 * analysis->architecture without an effect); and K callers (--contended, 16)
 * that all go through the same sequence of work items, every caller trying
 * every item, so that at any moment they contend on one item: outcomes are
 * advanced, deferred (the lease was held), aborted (lost the race after the
 * read) and stale (the item had already moved: FAILED_PRECONDITION).
 * Before each slice the stage tables are emptied and the slice's items are
 * inserted at the edge's first stage with passing verdicts, so the timed
 * calls run only the transitions. Each round runs every mode, the stack run
 * first rotating from round to round. Checks while measuring: every
 * service advance held a lease (the repo is in its scope), the hook saw
 * exactly one call per advance over the effect edge, and every contended
 * item was advanced exactly once.
 *
 * It prints figures and never passes or fails on them. Exit status: 0 when
 * every call and check succeeded, 1 when one failed, 2 on bad usage.
 * Threading: the main thread drives; callers of a slice are joined before
 * the next starts; each baseline caller owns its connection. Every loop is
 * bounded by a count.
 */
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/v1/stage.pb-c.h"
#include "orch/rpc.h"
#include "bench_common.h"
#include "bench_proc.h"
#include "orch/clock.h"
#include "orch/db.h"
#include "stage_bench_direct.h"

#define SB_ADVANCE     "orch.v1.StageService/AdvanceStage"
#define SB_MAX_CALLERS 64u
#define SB_MAX_MODES   16u
#define SB_MAX_ROUNDS  25u
#define SB_MAX_OPS     1000000u
#define SB_DIGEST      "sha256:2222222222222222222222222222222222222222222222222222222222222222"

enum { STK_BASE, STK_SVC, STK_DIRECT, NSTK };
static const char *const stk_names[NSTK] = { "baseline", "service", "direct" };
enum { OC_ADV, OC_DEFER, OC_ABORT, OC_STALE, NOC };

typedef struct sb_edge {
    const char *from, *to;
    bool effect; /* the deploy hook is called once per advance */
} sb_edge;

static const sb_edge edges[] = {
    { "staging", "deploy", true },
    { "analysis", "architecture", false },
};

typedef struct sb_mode {
    const sb_edge *edge;
    unsigned callers;
    bool contended;
} sb_mode;

typedef struct sb_options {
    const char *service_url, *database_url, *repo;
    unsigned hook_port;
    unsigned callers[8], ncallers, contended;
    unsigned ops, base_ops, warmup, rounds, timeout_ms;
    bool quick;
} sb_options;

/* What one stack measured in one mode and round. */
typedef struct sb_fig {
    double per_s;         /* timed calls per second */
    double oc_per_s[NOC]; /* contended: outcomes per second */
    double commits;       /* durable commits per advance (WAL), -1 unknown */
    unsigned long calls, oc[NOC];
} sb_fig;

typedef struct sb_ctx {
    const sb_options *o;
    orch_rpc_client *rpc;
    PGconn *conns[SB_MAX_CALLERS];
    PGconn *admin;
    orch_db_pool *pool; /* the direct stack's connections, one per caller */
    nng_http_server *http;
    atomic_ulong hook_calls;
    sb_mode modes[SB_MAX_MODES];
    unsigned nmodes;
    sb_fig f[SB_MAX_ROUNDS][SB_MAX_MODES][NSTK];
    bench_accum lat[SB_MAX_MODES][NSTK];
} sb_ctx;

typedef struct sb_caller {
    sb_ctx *cx;
    const sb_mode *m;
    int stack;
    unsigned id, next;
    char prefix[48];
    unsigned long oc[NOC]; /* timed calls */
    unsigned long adv_all; /* every advance, warm-up included */
} sb_caller;

/* ---- the hook imitation ------------------------------------------------ */

static sb_ctx *hook_ctx;

static void hook_cb(nng_aio *aio)
{
    nng_http_res *res;
    atomic_fetch_add(&hook_ctx->hook_calls, 1);
    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    static const char body[] = "{\"started\":true,\"digest\":\"" SB_DIGEST "\"}";
    nng_http_res_set_header(res, "Content-Type", "application/json");
    nng_http_res_copy_data(res, body, sizeof body - 1);
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static bool hook_start(sb_ctx *cx)
{
    char url[64];
    nng_url *u = NULL;
    nng_http_handler *h = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%u", cx->o->hook_port);
    hook_ctx = cx;
    int rv = nng_url_parse(&u, url);
    if (!rv)
        rv = nng_http_server_hold(&cx->http, u);
    if (!rv)
        rv = nng_http_handler_alloc(&h, "/hooks", hook_cb);
    if (!rv)
        rv = nng_http_handler_set_tree(h);
    if (!rv)
        rv = nng_http_handler_set_method(h, "POST");
    if (!rv)
        rv = nng_http_handler_collect_body(h, true, 65536);
    if (!rv && (rv = nng_http_server_add_handler(cx->http, h)) != 0)
        nng_http_handler_free(h);
    if (!rv)
        rv = nng_http_server_start(cx->http);
    nng_url_free(u);
    if (rv)
        fprintf(stderr, "stage_bench: cannot serve the hooks on %s: %s\n", url, nng_strerror(rv));
    return rv == 0;
}

/* ---- the calls --------------------------------------------------------- */

static void item_name(const sb_caller *c, unsigned i, char *out, size_t n)
{
    snprintf(out, n, "%s%u-%u", c->prefix, c->m->contended ? 0 : c->id, i);
}

static bool count(bench_worker *w, sb_caller *c, int oc)
{
    if (oc == OC_ADV)
        c->adv_all++;
    if (w->timed)
        c->oc[oc]++;
    if (oc != OC_ADV && !c->m->contended)
        return bench_failf(w, "%s: an item of its own was not advanced (outcome %d)",
                           stk_names[c->stack], oc);
    return true;
}

static bool base_call(bench_worker *w)
{
    sb_caller *c = w->arg;
    char item[96];
    item_name(c, c->next++, item, sizeof item);
    const char *p[] = { item, c->m->edge->from, c->m->edge->to };
    PGresult *r = PQexecParams(c->cx->conns[c->id],
                               "UPDATE tasks SET stage = $3 WHERE work_item = $1 AND stage = $2", 3,
                               NULL, p, NULL, NULL, 0);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c->cx->conns[c->id]);
        bench_failf(w, "baseline: CAS of %s: %.*s", item, (int)strcspn(msg, "\n"), msg);
        PQclear(r);
        return false;
    }
    bool won = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    return count(w, c, won ? OC_ADV : OC_ABORT);
}

static bool svc_call(bench_worker *w)
{
    sb_caller *c = w->arg;
    char item[96], actor[32];
    item_name(c, c->next++, item, sizeof item);
    snprintf(actor, sizeof actor, "bench-%u", c->id);
    Orch__V1__AdvanceStageRequest req = ORCH__V1__ADVANCE_STAGE_REQUEST__INIT;
    req.work_item = item;
    req.expected_from = (char *)c->m->edge->from;
    req.to = (char *)c->m->edge->to;
    req.actor = actor;
    orch_rpc_call_opts co = { .timeout_ms = c->cx->o->timeout_ms };
    orch_rpc_status st;
    Orch__V1__AdvanceStageReply *r = NULL;
    orch_code code = orch_rpc_invoke(c->cx->rpc, SB_ADVANCE, &req.base,
                                     &orch__v1__advance_stage_reply__descriptor, &co, &st,
                                     (ProtobufCMessage **)&r);
    if (code == ORCH_CODE_ABORTED)
        return count(w, c, OC_ABORT);
    if (code == ORCH_CODE_FAILED_PRECONDITION)
        return count(w, c, OC_STALE);
    if (code != ORCH_CODE_OK)
        return bench_failf(w, "service: AdvanceStage %s: %s: %s", item, orch_code_name(code),
                           st.message);
    int oc = -1;
    uint64_t epoch = r->lease_epoch;
    if (r->outcome == ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ADVANCED)
        oc = OC_ADV;
    else if (r->outcome == ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_DEFERRED)
        oc = OC_DEFER;
    int outcome = (int)r->outcome;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (oc < 0)
        return bench_failf(w, "service: AdvanceStage %s: outcome %d (were its verdicts prepared?)",
                           item, outcome);
    if (oc == OC_ADV && epoch == 0)
        return bench_failf(w,
                           "service: %s advanced without a lease: is repo '%s' in "
                           "ORCH_TRANSITION_LEASE_REPOS?",
                           item, c->cx->o->repo);
    return count(w, c, oc);
}

static bool direct_call(bench_worker *w)
{
    static const int oc_of[] = { [SBD_ADVANCED] = OC_ADV,
                                 [SBD_HELD] = OC_DEFER,
                                 [SBD_LOST] = OC_ABORT,
                                 [SBD_STALE] = OC_STALE };
    sb_caller *c = w->arg;
    char item[96], actor[32], err[300] = "";
    item_name(c, c->next++, item, sizeof item);
    snprintf(actor, sizeof actor, "bench-%u", c->id);
    orch_db_conn *conn = NULL;
    if (orch_db_acquire(c->cx->pool, orch_mono_ms() + c->cx->o->timeout_ms, &conn) != ORCH_OK)
        return bench_failf(w, "direct: no database connection");
    sbd_call call = { item,           c->cx->o->repo, c->m->edge->from,
                      c->m->edge->to, actor,          c->cx->o->hook_port };
    sbd_result r = sbd_transition(conn, &call, err, sizeof err);
    orch_db_release(conn);
    if (r == SBD_ERROR)
        return bench_failf(w, "direct: %s", err);
    return count(w, c, oc_of[r]);
}

/* ---- preparation --------------------------------------------------------- */

static bool admin_exec(sb_ctx *cx, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(cx->admin, sql, n, NULL, p, NULL, NULL, 0);
    bool ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    if (!ok)
        fprintf(stderr, "stage_bench: %.60s...: %s", sql,
                r ? PQresultErrorMessage(r) : PQerrorMessage(cx->admin));
    PQclear(r);
    return ok;
}

static long admin_count(sb_ctx *cx, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(cx->admin, sql, n, NULL, p, NULL, NULL, 0);
    long v = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                 ? strtol(PQgetvalue(r, 0, 0), NULL, 10)
                 : -1;
    PQclear(r);
    return v;
}

/* Empties the stage and lease tables and inserts `owners` x `per` items
 * "<prefix><owner>-<i>" at the edge's first stage with passing verdicts. */
static bool prepare(sb_ctx *cx, const sb_mode *m, const char *prefix, unsigned owners, unsigned per)
{
    static const char trunc[] = "TRUNCATE stage_history, side_effects, task_evidence, tasks,"
                                " transition_lease, lease_events";
    static const char ins[] =
        "INSERT INTO tasks (work_item, repo, title, stage)"
        " SELECT $1 || o || '-' || i, $2, 'bench', $3"
        " FROM generate_series(0, $4::integer - 1) o, generate_series(0, $5::integer - 1) i";
    /* A verdict counts for the edge it was recorded for (migration 0008);
     * the engine's built_image_digest has no edge and counts for all. */
    static const char ev[] = "INSERT INTO task_evidence (work_item, key, value, actor, transition)"
                             " SELECT t.work_item, kv.k, kv.v, 'bench',"
                             " CASE WHEN kv.k = 'built_image_digest' THEN '' ELSE $2 END"
                             " FROM tasks t, jsonb_each_text($1::jsonb) AS kv(k, v)";
    char no[16], np[16], edge[64];
    snprintf(no, sizeof no, "%u", owners);
    snprintf(np, sizeof np, "%u", per);
    snprintf(edge, sizeof edge, "%s->%s", m->edge->from, m->edge->to);
    const char *p[] = { prefix, cx->o->repo, m->edge->from, no, np };
    const char *verdicts[] = {
        m->edge->effect ? "{\"staging_status\":\"SUCCESS\",\"image_digest\":\"" SB_DIGEST
                          "\",\"built_image_digest\":\"" SB_DIGEST "\"}"
                        : "{\"analysis_status\":\"DONE\"}",
        edge,
    };
    return admin_exec(cx, trunc, 0, NULL) && admin_exec(cx, ins, 5, p) &&
           admin_exec(cx, ev, 2, verdicts) && admin_exec(cx, "ANALYZE tasks", 0, NULL);
}

/* ---- slices ---------------------------------------------------------------- */

/* Adds up the callers of a slice that started at t0 into f: their errors
 * (false after a message), outcomes, calls and rates; *adv is their
 * advances. `made` callers were set up, `k` ran. */
static bool slice_figures(sb_ctx *cx, unsigned mi, int stack, const sb_caller *cs,
                          const bench_worker *ws, unsigned k, unsigned made, uint64_t t0, bool ok,
                          sb_fig *f, unsigned long *adv)
{
    memset(f, 0, sizeof *f);
    *adv = 0;
    for (unsigned i = 0; i < made; i++) {
        if (ws[i].err[0]) {
            fprintf(stderr, "stage_bench: %s caller %u: %s\n", stk_names[stack], i, ws[i].err);
            ok = false;
        }
        for (int j = 0; j < NOC; j++)
            f->oc[j] += cs[i].oc[j];
        *adv += cs[i].adv_all;
    }
    if (ok) {
        uint64_t end = t0;
        for (unsigned i = 0; i < k; i++) {
            f->calls += ws[i].done;
            end = ws[i].end_ns > end ? ws[i].end_ns : end;
        }
        double secs = (double)(end - t0) / 1e9;
        f->per_s = secs > 0 ? (double)f->calls / secs : 0;
        for (int j = 0; j < NOC; j++)
            f->oc_per_s[j] = secs > 0 ? (double)f->oc[j] / secs : 0;
        bench_accum_add(&cx->lat[mi][stack], ws, k, t0);
    }
    return ok;
}

/* What a slice must have done besides succeeding: one hook call per advance
 * with an effect (service stack), and every contended item advanced (of
 * `items`). False after a message. */
static bool slice_checks(sb_ctx *cx, const sb_mode *m, int stack, unsigned long hooks,
                         unsigned long adv, unsigned items)
{
    if (stack != STK_BASE && m->edge->effect && hooks != adv) {
        fprintf(stderr, "stage_bench: the deploy hook saw %lu calls for %lu advances\n", hooks,
                adv);
        return false;
    }
    if (m->contended) {
        const char *p[] = { m->edge->from };
        long left = admin_count(cx, "SELECT count(*) FROM tasks WHERE stage = $1", 1, p);
        if (adv != items || left != 0) {
            fprintf(stderr,
                    "stage_bench: %s: %lu advances over %u contended items, %ld left behind\n",
                    stk_names[stack], adv, items, left);
            return false;
        }
    }
    return true;
}

static bool run_slice(sb_ctx *cx, unsigned round, unsigned mi, int stack)
{
    const sb_options *o = cx->o;
    const sb_mode *m = &cx->modes[mi];
    unsigned k = m->callers, total = stack == STK_BASE ? o->base_ops : o->ops;
    unsigned per = total / k ? total / k : 1;
    static sb_caller cs[SB_MAX_CALLERS];
    static bench_worker ws[SB_MAX_CALLERS];
    char prefix[48];
    snprintf(prefix, sizeof prefix, "sb-%u-%u-%c-", round, mi, stk_names[stack][0]);
    static bool (*const calls[NSTK])(bench_worker *) = { base_call, svc_call, direct_call };
    if (!prepare(cx, m, prefix, m->contended ? 1 : k, o->warmup + per))
        return false;
    bool ok = true;
    unsigned made = 0;
    for (unsigned i = 0; i < k && ok; i++, made++) {
        cs[i] = (sb_caller){ .cx = cx, .m = m, .stack = stack, .id = i };
        snprintf(cs[i].prefix, sizeof cs[i].prefix, "%s", prefix);
        ok = bench_worker_init(&ws[i], calls[stack], &cs[i], o->warmup, per);
    }
    char lsn[64] = "";
    ok = ok && sbd_wal_mark(cx->admin, lsn, sizeof lsn);
    unsigned long hooks0 = atomic_load(&cx->hook_calls);
    uint64_t t0 = ok ? bench_run_workers(ws, k, NULL, NULL) : 0;
    unsigned long hooks = atomic_load(&cx->hook_calls) - hooks0;
    long commits = t0 ? sbd_commits_since(cx->admin, lsn) : -1;
    ok = ok && t0 != 0;
    unsigned long adv = 0;
    sb_fig *f = &cx->f[round][mi][stack];
    ok = slice_figures(cx, mi, stack, cs, ws, k, made, t0, ok, f, &adv);
    f->commits = commits >= 0 && adv ? (double)commits / (double)adv : -1;
    ok = ok && slice_checks(cx, m, stack, hooks, adv, o->warmup + per);
    for (unsigned i = 0; i < made; i++)
        bench_worker_free(&ws[i]);
    return ok;
}

/* ---- printing -------------------------------------------------------------- */

static void mode_label(const sb_mode *m, char *out, size_t n)
{
    snprintf(out, n, "%u actor%s, %s", m->callers, m->callers == 1 ? "" : "s",
             m->contended ? "one item" : "distinct items");
}

static void print_round(const sb_ctx *cx, unsigned round)
{
    printf("round %u:", round + 1);
    for (unsigned mi = 0; mi < cx->nmodes; mi++) {
        const sb_fig *f = cx->f[round][mi];
        printf(" %s%.0f/%.0f/%.0f", mi ? "| " : "", f[STK_SVC].per_s, f[STK_DIRECT].per_s,
               f[STK_BASE].per_s);
    }
    printf("  (service/direct/baseline calls per second, modes in the order below)\n");
    fflush(stdout);
}

/* Advances per second of `stack` in mode mi, round r (contended: the
 * advanced outcomes only). */
static double adv_rate(const sb_ctx *cx, unsigned r, unsigned mi, int stack)
{
    const sb_fig *f = &cx->f[r][mi][stack];
    return cx->modes[mi].contended ? f->oc_per_s[OC_ADV] : f->per_s;
}

/* The median over rounds of: `what` >= 0 an outcome rate of `stack`; -1
 * its calls per second; -2 service over `stack` (advances per second);
 * -4 its commits per advance. */
static double median_of(const sb_ctx *cx, unsigned mi, int what, int stack)
{
    double v[SB_MAX_ROUNDS];
    for (unsigned r = 0; r < cx->o->rounds; r++) {
        const sb_fig *f = &cx->f[r][mi][stack];
        if (what == -1)
            v[r] = f->per_s;
        else if (what == -2) {
            double b = adv_rate(cx, r, mi, stack);
            v[r] = b > 0 ? adv_rate(cx, r, mi, STK_SVC) / b : 0;
        } else if (what == -4) {
            v[r] = f->commits;
        } else {
            v[r] = f->oc_per_s[what];
        }
    }
    return bench_median(v, cx->o->rounds);
}

static void print_contended(sb_ctx *cx, unsigned mi)
{
    const sb_mode *m = &cx->modes[mi];
    printf("\n%u actors on one item at a time (%s->%s), outcomes per second:\n", m->callers,
           m->edge->from, m->edge->to);
    for (int s = STK_SVC; s <= STK_DIRECT; s++)
        printf("  %-9s advanced %7.0f  deferred %7.0f  aborted %7.0f  stale %7.0f\n", stk_names[s],
               median_of(cx, mi, OC_ADV, s), median_of(cx, mi, OC_DEFER, s),
               median_of(cx, mi, OC_ABORT, s), median_of(cx, mi, OC_STALE, s));
    printf("  baseline  advanced %7.0f  lost CAS %7.0f\n", median_of(cx, mi, OC_ADV, STK_BASE),
           median_of(cx, mi, OC_ABORT, STK_BASE));
    printf("  ratios = advanced/s over advanced/s; every item advanced exactly once, the hook "
           "called once per advance\n");
}

static void print_summary(sb_ctx *cx)
{
    printf("\nsummary: medians of %u round%s; p50/p99 over every timed call of every round\n",
           cx->o->rounds, cx->o->rounds == 1 ? "" : "s");
    printf("%-24s %-21s %9s %6s %6s | %8s %6s %6s | %7s %6s | %6s %6s | %s\n", "mode", "edge",
           "service/s", "p50 ms", "p99 ms", "direct/s", "p50 ms", "p99 ms", "CAS/s", "p50 ms",
           "s/dir", "s/CAS", "commits/transition svc dir");
    for (unsigned mi = 0; mi < cx->nmodes; mi++) {
        const sb_mode *m = &cx->modes[mi];
        char label[48], edge[40];
        mode_label(m, label, sizeof label);
        snprintf(edge, sizeof edge, "%s->%s%s", m->edge->from, m->edge->to,
                 m->edge->effect ? " +effect" : "");
        bench_lat l[NSTK];
        for (int s = 0; s < NSTK; s++)
            l[s] = bench_accum_lat(&cx->lat[mi][s]);
        printf("%-24s %-21s %9.0f %6.2f %6.2f | %8.0f %6.2f %6.2f | %7.0f %6.2f | %6.3f %6.3f | "
               "%4.2f %4.2f\n",
               label, edge, median_of(cx, mi, -1, STK_SVC), l[STK_SVC].p50_us / 1000,
               l[STK_SVC].p99_us / 1000, median_of(cx, mi, -1, STK_DIRECT),
               l[STK_DIRECT].p50_us / 1000, l[STK_DIRECT].p99_us / 1000,
               median_of(cx, mi, -1, STK_BASE), l[STK_BASE].p50_us / 1000,
               median_of(cx, mi, -2, STK_DIRECT), median_of(cx, mi, -2, STK_BASE),
               median_of(cx, mi, -4, STK_SVC), median_of(cx, mi, -4, STK_DIRECT));
    }
    for (unsigned mi = 0; mi < cx->nmodes; mi++)
        if (cx->modes[mi].contended)
            print_contended(cx, mi);
    printf("\ns/dir = service over direct, s/CAS = service over CAS, advances per second in the "
           "same round; service = AdvanceStage (lease + gates + effect + CAS + release); direct "
           "= the same statements and hook call sent by the callers over libpq; CAS = one bare "
           "UPDATE; commits/transition = durable commits writing the stage and lease tables "
           "(WAL) per advance\n");
}

/* ---- set-up and options ------------------------------------------------------ */

static PGconn *pg_open(const char *url)
{
    const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
    const char *vals[] = { url, "10", "stage_bench", NULL };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "stage_bench: cannot connect to %s: %s", url,
                pg ? PQerrorMessage(pg) : "out of memory\n");
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static bool setup(sb_ctx *cx)
{
    const sb_options *o = cx->o;
    unsigned maxk = 0;
    for (unsigned mi = 0; mi < cx->nmodes; mi++) {
        maxk = cx->modes[mi].callers > maxk ? cx->modes[mi].callers : maxk;
        for (int s = 0; s < NSTK; s++)
            if (!bench_accum_init(&cx->lat[mi][s],
                                  (size_t)(o->ops > o->base_ops ? o->ops : o->base_ops) *
                                      o->rounds))
                return false;
    }
    if (!(cx->admin = pg_open(o->database_url)))
        return false;
    if (admin_count(cx, "SELECT count(*) FROM task_evidence", 0, NULL) < 0) {
        fprintf(stderr, "stage_bench: no stage tables: is stage-service running on %s?\n",
                o->database_url);
        return false;
    }
    for (unsigned i = 0; i < maxk; i++)
        if (!(cx->conns[i] = pg_open(o->database_url)))
            return false;
    if (orch_db_pool_open(o->database_url, (int)maxk, &cx->pool) != ORCH_OK) {
        fprintf(stderr, "stage_bench: cannot open %u connections to %s\n", maxk, o->database_url);
        return false;
    }
    PQclear(PQexec(cx->admin, "CREATE EXTENSION IF NOT EXISTS pg_walinspect"));
    orch_rpc_client_opts co = { .default_timeout_ms = o->timeout_ms,
                                .auth_token = getenv("ORCH_RPC_AUTH_TOKEN") };
    if (orch_rpc_client_open(o->service_url, &co, &cx->rpc) != ORCH_OK) {
        fprintf(stderr, "stage_bench: bad stage-service address '%s'\n", o->service_url);
        return false;
    }
    return hook_start(cx);
}

static void teardown(sb_ctx *cx)
{
    orch_rpc_client_close(cx->rpc);
    orch_db_pool_close(cx->pool);
    for (unsigned i = 0; i < SB_MAX_CALLERS; i++)
        PQfinish(cx->conns[i]);
    PQfinish(cx->admin);
    if (cx->http) {
        nng_http_server_stop(cx->http);
        nng_http_server_release(cx->http);
    }
    for (unsigned mi = 0; mi < cx->nmodes; mi++)
        for (int s = 0; s < NSTK; s++)
            bench_accum_free(&cx->lat[mi][s]);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: stage_bench --hook-port PORT [options]\n"
            "  Full transitions per second through a running stage-service (AdvanceStage:\n"
            "  lease + gates + effect + CAS + release) against the same statements sent\n"
            "  directly over libpq and the bare CAS UPDATE; commits per transition from the\n"
            "  WAL (needs pg_walinspect and a superuser).\n"
            "  Prints figures; exit 0 when every call and check succeeded.\n"
            "\n"
            "  --service-url URL   stage-service (default $ORCH_STAGE_RPC_URL, else\n"
            "                      tcp://127.0.0.1:7702)\n"
            "  --database-url URL  its database (default $ORCH_DATABASE_URL); emptied per slice\n"
            "  --hook-port PORT    this program serves http://127.0.0.1:PORT/hooks/deploy,\n"
            "                      stage-service's ORCH_DEPLOY_HOOK_URL\n"
            "  --repo NAME         repo of the items, in the lease's scope (bench/app)\n"
            "  --callers LIST      actor counts on distinct items (1,4,16)\n"
            "  --contended K       actors on one item at a time (16; 0 skips the mode)\n"
            "  --ops N             timed transitions per mode and round, all actors, of the\n"
            "                      service and the direct stack (600)\n"
            "  --base-ops N        timed bare CAS per mode and round (3000)\n"
            "  --warmup N          untimed transitions of each actor before a slice (3)\n"
            "  --rounds R          rounds, the stack run first rotating (3)\n"
            "  --timeout MS        deadline of each call (10000)\n"
            "  --quick             smoke run: --ops 64 --base-ops 256 --rounds 1 --warmup 1\n"
            "  -h, --help          this help\n");
}

static bool parse_list(const char *arg, sb_options *o)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", arg);
    char *save = NULL;
    o->ncallers = 0;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (o->ncallers == 8 || !bench_parse_uint(t, 1, SB_MAX_CALLERS, &o->callers[o->ncallers++]))
            return false;
    }
    return o->ncallers > 0;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && v[0] ? v : fallback;
}

/* The defaults: the environment's addresses, else the built-in ones. */
static void sb_defaults(sb_options *o)
{
    *o = (sb_options){ .service_url = env_or("ORCH_STAGE_RPC_URL", "tcp://127.0.0.1:7702"),
                       .database_url = env_or("ORCH_DATABASE_URL", ""),
                       .repo = "bench/app",
                       .contended = 16,
                       .ops = 600,
                       .base_ops = 3000,
                       .warmup = 3,
                       .rounds = 3,
                       .timeout_ms = 10000 };
    parse_list("1,4,16", o);
}

/* Applies option `ch` (getopt_long's value) with its argument; false when
 * the value is bad or the option unknown. */
static bool apply_opt(int ch, const char *arg, sb_options *o, bool *quick)
{
    switch (ch) {
    case 'u': o->service_url = arg; return true;
    case 'd': o->database_url = arg; return true;
    case 'H': return bench_parse_uint(arg, 1, 65535, &o->hook_port);
    case 'R': o->repo = arg; return true;
    case 'c': return parse_list(arg, o);
    case 'C': return bench_parse_uint(arg, 0, SB_MAX_CALLERS, &o->contended);
    case 'n': return bench_parse_uint(arg, 1, SB_MAX_OPS, &o->ops);
    case 'b': return bench_parse_uint(arg, 1, SB_MAX_OPS, &o->base_ops);
    case 'w': return bench_parse_uint(arg, 0, 1000, &o->warmup);
    case 'r': return bench_parse_uint(arg, 1, SB_MAX_ROUNDS, &o->rounds);
    case 'T': return bench_parse_uint(arg, 100, 600000, &o->timeout_ms);
    case 'q': *quick = true; return true;
    default: return false;
    }
}

/* After the options: --quick's settings, no stray argument, the required
 * ones given. False after a message. */
static bool check_args(int argc, char **argv, sb_options *o, bool quick)
{
    if (quick) {
        o->quick = true;
        o->ops = 64;
        o->base_ops = 256;
        o->rounds = 1;
        o->warmup = 1;
    }
    if (optind < argc) {
        fprintf(stderr, "stage_bench: unexpected argument '%s'\n", argv[optind]);
        return false;
    }
    if (!o->database_url[0] || !o->hook_port) {
        fprintf(stderr, "stage_bench: --database-url (or ORCH_DATABASE_URL) and --hook-port "
                        "are required\n");
        return false;
    }
    return true;
}

static int parse_args(int argc, char **argv, sb_options *o)
{
    static const struct option lo[] = {
        { "service-url", required_argument, NULL, 'u' },
        { "database-url", required_argument, NULL, 'd' },
        { "hook-port", required_argument, NULL, 'H' },
        { "repo", required_argument, NULL, 'R' },
        { "callers", required_argument, NULL, 'c' },
        { "contended", required_argument, NULL, 'C' },
        { "ops", required_argument, NULL, 'n' },
        { "base-ops", required_argument, NULL, 'b' },
        { "warmup", required_argument, NULL, 'w' },
        { "rounds", required_argument, NULL, 'r' },
        { "timeout", required_argument, NULL, 'T' },
        { "quick", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    sb_defaults(o);
    bool ok = true, quick = false;
    int ch;
    while (ok && (ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return 0;
        }
        ok = apply_opt(ch, optarg, o, &quick);
    }
    ok = ok && check_args(argc, argv, o, quick);
    if (!ok) {
        usage(stderr);
        return 2;
    }
    return -1;
}
int main(int argc, char **argv)
{
    static sb_options o;
    static sb_ctx cx;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    bench_prog = "stage_bench";
    signal(SIGPIPE, SIG_IGN);
    cx.o = &o;
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
        for (unsigned i = 0; i < o.ncallers; i++)
            cx.modes[cx.nmodes++] = (sb_mode){ &edges[e], o.callers[i], false };
    if (o.contended)
        cx.modes[cx.nmodes++] = (sb_mode){ &edges[0], o.contended, true };
    rc = 1;
    if (setup(&cx)) {
        char load[64];
        bench_loadavg(load, sizeof load);
        printf("stage_bench: AdvanceStage through stage-service %s against the same "
               "transition over libpq and the bare CAS\n",
               o.service_url);
        printf("repo %s, deploy hook answered at once on 127.0.0.1:%u; per mode and round %u "
               "transitions and %u CAS, %u warm-up per actor; %ld CPUs, load %s%s\n\n",
               o.repo, o.hook_port, o.ops, o.base_ops, o.warmup, sysconf(_SC_NPROCESSORS_ONLN),
               load, o.quick ? "; --quick" : "");
        bool ok = true;
        for (unsigned r = 0; ok && r < o.rounds; r++) {
            for (unsigned mi = 0; ok && mi < cx.nmodes; mi++) {
                for (int k = 0; ok && k < NSTK; k++)
                    ok = run_slice(&cx, r, mi, (int)((r + (unsigned)k) % NSTK));
            }
            if (ok)
                print_round(&cx, r);
        }
        if (ok) {
            print_summary(&cx);
            rc = 0;
        }
        admin_exec(&cx, "TRUNCATE stage_history, side_effects, task_evidence, tasks", 0, NULL);
    }
    teardown(&cx);
    return rc;
}
