/*
 * cmd_stage.c - `orchctl stage ...`: every RPC of stage-service.
 *
 * `advance` and `rollback` exit with a status a script can branch on:
 * 0 the stage moved, 4 deferred (another live owner holds the lease:
 * nothing ran, try later), 5 the transition was refused (a gate failed, the
 * item was rolled back, an effect failed or its outcome is unknown), 64 +
 * the RPC code otherwise (74 ABORTED: lost the race; 73 FAILED_PRECONDITION:
 * the item is not in the expected stage). `cancel` reads the current stage
 * with GetTask and advances from it to cancelled.
 *
 * Ownership: every reply is freed before the subcommand returns; request
 * fields borrow argv or buffers local to the subcommand.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/v1/stage.pb-c.h"
#include "orchctl.h"

#define M(name)           "orch.v1.StageService/" name
#define MAX_VERDICTS      64
#define MAX_EVIDENCE_READ (4u << 20) /* bytes read from --evidence-file at most */

static const char *liveness_name(Orch__V1__Liveness l)
{
    switch (l) {
    case ORCH__V1__LIVENESS__LIVENESS_ALIVE: return "alive";
    case ORCH__V1__LIVENESS__LIVENESS_DEAD: return "dead";
    case ORCH__V1__LIVENESS__LIVENESS_UNKNOWN: return "unknown";
    default: return "unspecified";
    }
}

static void when(uint64_t unix_ms, char *buf, size_t n)
{
    time_t at = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (!unix_ms || !gmtime_r(&at, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, n, "-");
}

static void print_task(const Orch__V1__Task *t)
{
    char upd[32];
    if (!t)
        return;
    when(t->updated_unix_ms, upd, sizeof upd);
    printf("%-20s %-13s version %-4" PRIu64 " repo %s  updated %s%s%s\n", t->work_item, t->stage,
           t->version, t->repo, upd, t->title[0] ? "  " : "", t->title);
}

static void print_effect(const Orch__V1__SideEffect *e)
{
    printf("  %-22s %-17s %-8s epoch %-5" PRIu64 " %s\n", e->transition, e->effect, e->outcome,
           e->lease_epoch, e->detail);
}

static void print_holder(const Orch__V1__Lease *l, Orch__V1__Liveness lv)
{
    if (!l) {
        printf("  holder unknown\n");
        return;
    }
    printf("  held by %s pid %d (%s, %s), epoch %" PRIu64 "%s%s\n",
           l->owner ? l->owner->host_id : "?", l->owner ? (int)l->owner->pid : 0, l->actor,
           l->transition, l->epoch, lv ? ", owner " : "", lv ? liveness_name(lv) : "");
}

/* ---- create -------------------------------------------------------------- */

static int stage_create(const orchctl_args *a, const globals *g)
{
    Orch__V1__CreateTaskRequest req = ORCH__V1__CREATE_TASK_REQUEST__INIT;
    const char *repo = orchctl_opt(a, "repo", NULL);
    req.title = (char *)orchctl_opt(a, "title", req.title);
    if (!orchctl_opt_u64(a, "pr", UINT64_MAX, &req.pr_number))
        return EXIT_USAGE;
    if (a->npos != 1 || !repo)
        return orchctl_usage_error(a);
    req.work_item = a->pos[0];
    req.repo = (char *)repo;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("stage"), M("CreateTask"), &req.base,
                          &orch__v1__create_task_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__CreateTaskReply *r = (const Orch__V1__CreateTaskReply *)m;
    if (g->json) {
        orchctl_print_json(m);
    } else {
        printf("%s ", r->already_exists ? "exists (no change):" : "created:");
        print_task(r->task);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

/* ---- show ---------------------------------------------------------------- */

static int get_task(const globals *g, const char *item, uint32_t limit,
                    Orch__V1__GetTaskReply **out)
{
    Orch__V1__GetTaskRequest req = ORCH__V1__GET_TASK_REQUEST__INIT;
    req.work_item = (char *)item;
    req.history_limit = limit;
    orch_rpc_status st;
    return orchctl_call(g, orchctl_target("stage"), M("GetTask"), &req.base,
                        &orch__v1__get_task_reply__descriptor, (ProtobufCMessage **)out, &st);
}

static int stage_show(const orchctl_args *a, const globals *g)
{
    uint64_t limit = 0;
    if (!orchctl_opt_u64(a, "history", 1000, &limit))
        return EXIT_USAGE;
    if (a->npos != 1)
        return orchctl_usage_error(a);
    Orch__V1__GetTaskReply *r = NULL;
    int rc = get_task(g, a->pos[0], (uint32_t)limit, &r);
    if (rc)
        return rc;
    if (g->json) {
        orchctl_print_json(&r->base);
    } else {
        print_task(r->task);
        printf("history (oldest first):\n");
        if (r->n_history == 0)
            printf("  none\n");
        for (size_t i = 0; i < r->n_history; i++) {
            const Orch__V1__HistoryEntry *h = r->history[i];
            char at[32];
            when(h->at_unix_ms, at, sizeof at);
            printf("  %s  %-12s -> %-12s by %-12s epoch %-5" PRIu64 " %s\n", at, h->from_stage,
                   h->to_stage, h->actor, h->lease_epoch, h->reason);
        }
        printf("side effects:\n");
        if (r->n_side_effects == 0)
            printf("  none\n");
        for (size_t i = 0; i < r->n_side_effects; i++)
            print_effect(r->side_effects[i]);
        printf("verdicts:\n");
        if (r->n_evidence == 0)
            printf("  none\n");
        for (size_t i = 0; i < r->n_evidence; i++)
            printf("  %s: %s\n", r->evidence[i]->key, r->evidence[i]->value);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EXIT_OK;
}

/* ---- advance, cancel ----------------------------------------------------- */

static const char *outcome_name(Orch__V1__AdvanceStageReply__Outcome o)
{
    switch (o) {
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ADVANCED: return "ADVANCED";
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_DEFERRED: return "DEFERRED";
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_GATE_FAILED: return "GATE_FAILED";
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ROLLED_BACK: return "ROLLED_BACK";
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_EFFECT_FAILED: return "EFFECT_FAILED";
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_EFFECT_UNKNOWN: return "EFFECT_UNKNOWN";
    default: return "UNSPECIFIED";
    }
}

static int outcome_exit(Orch__V1__AdvanceStageReply__Outcome o)
{
    switch (o) {
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ADVANCED: return EXIT_OK;
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_DEFERRED: return EXIT_DEFERRED;
    default: return EXIT_REFUSED;
    }
}

/* Reads FILE ("-": stdin) whole into a malloc'ed string; NULL after a
 * message. */
static char *read_evidence(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "orchctl: --evidence-file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    bool ok = buf != NULL;
    while (ok && len <= MAX_EVIDENCE_READ) {
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                ok = false;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ok && ferror(f)) {
        fprintf(stderr, "orchctl: --evidence-file %s: read error\n", path);
        ok = false;
    } else if (ok && len > MAX_EVIDENCE_READ) {
        fprintf(stderr, "orchctl: --evidence-file %s is over %u bytes\n", path, MAX_EVIDENCE_READ);
        ok = false;
    } else if (ok && memchr(buf, '\0', len)) {
        fprintf(stderr, "orchctl: --evidence-file %s holds a NUL byte: not text\n", path);
        ok = false;
    } else if (!ok) {
        fprintf(stderr, "orchctl: out of memory\n");
    }
    if (f != stdin)
        fclose(f);
    if (!ok) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

typedef struct verdict_args {
    Orch__V1__Evidence v[MAX_VERDICTS];
    Orch__V1__Evidence *p[MAX_VERDICTS];
    char *copies[MAX_VERDICTS];
    size_t n;
} verdict_args;

/* Adds "key=value" (split at the first '='); false after a message. */
static bool add_verdict(verdict_args *va, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) {
        fprintf(stderr, "orchctl: --verdict wants KEY=VALUE, got '%s'\n", arg);
        return false;
    }
    if (va->n == MAX_VERDICTS) {
        fprintf(stderr, "orchctl: at most %d --verdict options\n", MAX_VERDICTS);
        return false;
    }
    char *c = strdup(arg);
    if (!c) {
        fprintf(stderr, "orchctl: out of memory\n");
        return false;
    }
    c[eq - arg] = '\0';
    Orch__V1__Evidence *e = &va->v[va->n];
    orch__v1__evidence__init(e);
    e->key = c;
    e->value = c + (eq - arg) + 1;
    va->p[va->n] = e;
    va->copies[va->n++] = c;
    return true;
}

static void free_verdicts(verdict_args *va)
{
    for (size_t i = 0; i < va->n; i++)
        free(va->copies[i]);
    va->n = 0;
}

/* Sends AdvanceStage and prints the reply; returns the exit status. */
static int do_advance(const globals *g, Orch__V1__AdvanceStageRequest *req)
{
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("stage"), M("AdvanceStage"), &req->base,
                          &orch__v1__advance_stage_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__AdvanceStageReply *r = (const Orch__V1__AdvanceStageReply *)m;
    rc = outcome_exit(r->outcome);
    if (g->json) {
        orchctl_print_json(m);
        protobuf_c_message_free_unpacked(m, NULL);
        return rc;
    }
    const char *now = r->task ? r->task->stage : "?";
    switch (r->outcome) {
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ADVANCED:
        printf("ADVANCED %s %s -> %s (lease epoch %" PRIu64 ")\n", req->work_item,
               req->expected_from, now, r->lease_epoch);
        break;
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_DEFERRED:
        printf("DEFERRED %s stays in %s: another owner holds the lease; nothing ran\n",
               req->work_item, now);
        print_holder(r->holder, r->holder_liveness);
        break;
    case ORCH__V1__ADVANCE_STAGE_REPLY__OUTCOME__OUTCOME_ROLLED_BACK:
        printf("ROLLED_BACK %s %s -> %s\n", req->work_item, req->expected_from, now);
        break;
    default: printf("%s %s stays in %s\n", outcome_name(r->outcome), req->work_item, now); break;
    }
    for (size_t i = 0; i < r->n_gate_failures; i++)
        printf("  gate: %s\n", r->gate_failures[i]);
    for (size_t i = 0; i < r->n_side_effects; i++)
        print_effect(r->side_effects[i]);
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

static int stage_advance(const orchctl_args *a, const globals *g)
{
    Orch__V1__AdvanceStageRequest req = ORCH__V1__ADVANCE_STAGE_REQUEST__INIT;
    const char *from = orchctl_opt(a, "from", NULL), *to = orchctl_opt(a, "to", NULL);
    const char *file = orchctl_opt(a, "evidence-file", NULL), *v;
    verdict_args va = { .n = 0 };
    int rc = EXIT_USAGE;
    for (size_t i = 0; (v = orchctl_opt_nth(a, "verdict", i)); i++)
        if (!add_verdict(&va, v))
            goto done;
    if (a->npos != 1 || !from || !to) {
        orchctl_usage_error(a);
        goto done;
    }
    char *text = NULL;
    if (file && !(text = read_evidence(file)))
        goto done;
    req.work_item = a->pos[0];
    req.actor = (char *)orchctl_opt(a, "actor", "operator");
    req.expected_from = (char *)from;
    req.to = (char *)to;
    req.evidence = text ? text : "";
    req.n_verdicts = va.n;
    req.verdicts = va.p;
    rc = do_advance(g, &req);
    free(text);
done:
    free_verdicts(&va);
    return rc;
}

static int stage_cancel(const orchctl_args *a, const globals *g)
{
    if (a->npos != 1)
        return orchctl_usage_error(a);
    Orch__V1__GetTaskReply *t = NULL;
    int rc = get_task(g, a->pos[0], 1, &t);
    if (rc)
        return rc;
    char from[64];
    snprintf(from, sizeof from, "%s", t->task ? t->task->stage : "");
    protobuf_c_message_free_unpacked(&t->base, NULL);
    Orch__V1__AdvanceStageRequest req = ORCH__V1__ADVANCE_STAGE_REQUEST__INIT;
    req.work_item = a->pos[0];
    req.expected_from = from;
    req.to = "cancelled";
    req.actor = (char *)orchctl_opt(a, "actor", "operator");
    return do_advance(g, &req);
}

/* ---- rollback ------------------------------------------------------------ */

static int stage_rollback(const orchctl_args *a, const globals *g)
{
    Orch__V1__RollbackRequest req = ORCH__V1__ROLLBACK_REQUEST__INIT;
    req.expected_from = (char *)orchctl_opt(a, "from", req.expected_from);
    req.reason = (char *)orchctl_opt(a, "reason", req.reason);
    req.actor = (char *)orchctl_opt(a, "actor", "operator");
    if (a->npos != 1 || !req.expected_from[0] || !req.reason[0])
        return orchctl_usage_error(a);
    req.work_item = a->pos[0];
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("stage"), M("Rollback"), &req.base,
                          &orch__v1__rollback_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__RollbackReply *r = (const Orch__V1__RollbackReply *)m;
    rc = r->deferred ? EXIT_DEFERRED : EXIT_OK;
    if (g->json) {
        orchctl_print_json(m);
    } else if (r->deferred) {
        printf("DEFERRED %s stays in %s: another owner holds the lease; nothing changed\n",
               req.work_item, r->task ? r->task->stage : "?");
        print_holder(r->holder, ORCH__V1__LIVENESS__LIVENESS_UNSPECIFIED);
    } else {
        printf("ROLLED_BACK %s %s -> %s (lease epoch %" PRIu64 ")\n", req.work_item,
               req.expected_from, r->task ? r->task->stage : "?", r->lease_epoch);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* ---- queue, pipeline ----------------------------------------------------- */

static int stage_queue_once(const orchctl_args *a, const globals *g)
{
    Orch__V1__ListQueueRequest req = ORCH__V1__LIST_QUEUE_REQUEST__INIT;
    if (!orchctl_list_args(a, &req.limit))
        return EXIT_USAGE;
    req.stage = (char *)orchctl_opt(a, "stage", req.stage);
    req.repo = (char *)orchctl_opt(a, "repo", req.repo);
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("stage"), M("ListQueue"), &req.base,
                          &orch__v1__list_queue_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__ListQueueReply *r = (const Orch__V1__ListQueueReply *)m;
    if (g->json)
        orchctl_print_json(m);
    else if (r->n_entries == 0)
        printf("no tasks\n");
    for (size_t i = 0; !g->json && i < r->n_entries; i++) {
        const Orch__V1__QueueEntry *e = r->entries[i];
        print_task(e->task);
        if (e->lease && e->lease->held)
            print_holder(e->lease, e->lease_liveness);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

static int stage_queue(const orchctl_args *a, const globals *g)
{
    return orchctl_watch(a, g, stage_queue_once);
}

/* "a, b, c" or "-" for an empty list. */
static void join(char **v, size_t n, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len < cap; i++) {
        int w = snprintf(out + len, cap - len, "%s%s", i ? ", " : "", v[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    if (n == 0)
        snprintf(out, cap, "-");
}

static int stage_pipeline(const orchctl_args *a, const globals *g)
{
    if (a->npos != 0)
        return orchctl_usage_error(a);
    Orch__V1__PipelineRequest req = ORCH__V1__PIPELINE_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("stage"), M("Pipeline"), &req.base,
                          &orch__v1__pipeline_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__PipelineReply *r = (const Orch__V1__PipelineReply *)m;
    if (g->json) {
        orchctl_print_json(m);
    } else {
        printf("stages:");
        for (size_t i = 0; i < r->n_stages; i++)
            printf(" %s", r->stages[i]);
        printf("\n%-27s %-9s %-44s %-20s %s\n", "edge", "kind", "gates", "rollback gates",
               "effects");
        for (size_t i = 0; i < r->n_edges; i++) {
            const Orch__V1__PipelineEdge *e = r->edges[i];
            char edge[80], gates[400], rb[400], effs[300];
            snprintf(edge, sizeof edge, "%s -> %s", e->from_stage, e->to_stage);
            join(e->gates, e->n_gates, gates, sizeof gates);
            join(e->rollback_gates, e->n_rollback_gates, rb, sizeof rb);
            join(e->effects, e->n_effects, effs, sizeof effs);
            printf("%-27s %-9s %-44s %-20s %s\n", edge, e->kind, gates, rb, effs);
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

/* ---- dispatch ------------------------------------------------------------ */

const orchctl_cmd orchctl_stage_cmds[] = {
    { "create", "WORK_ITEM --repo OWNER/NAME [--title T] [--pr N]", "",
      ORCHCTL_OPTS({ "repo", true, 0 }, { "title", true, 0 }, { "pr", true, 0 }), stage_create,
      "a new task in backlog (the same again: no change)", NULL, NULL },
    { "show", "WORK_ITEM [--history N]", "", ORCHCTL_OPTS({ "history", true, 0 }), stage_show,
      "stage, version, history, side effects, verdicts", NULL, NULL },
    { "advance",
      "WORK_ITEM --from S --to S [--actor A] [--verdict K=V]... [--evidence-file FILE|-]", "",
      ORCHCTL_OPTS({ "from", true, 0 }, { "to", true, 0 }, { "actor", true, 0 },
                   { "verdict", true, 0 }, { "evidence-file", true, 0 }),
      stage_advance,
      "one transition: lease, gates, effects, expected-stage write; FILE holds verdict lines "
      "(\"key: VALUE\"), - reads stdin",
      NULL, NULL },
    { "rollback", "WORK_ITEM --from S --reason TEXT [--actor A]", "",
      ORCHCTL_OPTS({ "from", true, 0 }, { "reason", true, 0 }, { "actor", true, 0 }),
      stage_rollback, "back to development from review, testing, staging or deploy", NULL, NULL },
    { "cancel", "WORK_ITEM [--actor A]", "", ORCHCTL_OPTS({ "actor", true, 0 }), stage_cancel,
      "to cancelled from the current stage", NULL, NULL },
    { "queue", "[--stage S] [--repo R] [--limit N] [-w|--watch [--interval MS] [--count N]]", "",
      ORCHCTL_OPTS({ "stage", true, 0 }, { "repo", true, 0 }, { "limit", true, 0 },
                   ORCHCTL_WATCH_OPTS),
      stage_queue, "tasks and their leases; -w: again every MS until Ctrl-C", NULL, NULL },
    { "pipeline", "", "", NULL, stage_pipeline,
      "the edges, their gates, rollback gates and effects", NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL },
};
