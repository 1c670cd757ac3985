/*
 * cmd_job.c - `orchctl job ...` and `orchctl runs ...`: launcher-service's
 * RPCs. `job spawn` is an operator's call site of Spawn (entry S1 of
 * docs/architecture/llm-call-sites.md).
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/clock.h"
#include "orch/v1/launcher.pb-c.h"
#include "orchctl.h"
#include "pbjson.h"

#define M(name) "orch.v1.LauncherService/" name

#define WAIT_MARGIN_MS    30000 /* past the job's timeout: the launcher stops and records it */
#define WAIT_SLICE_MS     10000 /* one Wait call at most, not on a terminal */
#define WAIT_SLICE_TTY_MS 1000  /* on a terminal: the status line's refresh */

static const char *status_name(Orch__V1__JobStatus s)
{
    const char *name = pbjson_enum_name(&orch__v1__job_status__descriptor, (int)s);
    return name ? name : "?";
}

static void print_job(const Orch__V1__Job *j, const Orch__V1__AgentRun *r)
{
    printf("job %" PRIu64 "  %s  %s  %s (stage %s)  host %s pid %d  attempts %u\n", j->id,
           status_name(j->status), j->role, j->work_item, j->stage, j->host_id, (int)j->pid,
           j->attempts);
    if (j->finish_reason[0])
        printf("  ended: %s\n", j->finish_reason);
    printf("  report to stage-service: %s%s%s\n", j->monitor_state,
           j->monitor_detail[0] ? " - " : "", j->monitor_detail);
    if (j->stdout_path[0])
        printf("  stdout %s\n  stderr %s\n", j->stdout_path, j->stderr_path);
    if (!r)
        return;
    printf("  run: exit %d, %" PRIu64 " ms, model %s\n", (int)r->exit_status, r->duration_ms,
           r->model[0] ? r->model : "unknown");
    if (r->usage_known)
        printf("  tokens: %" PRIu64 " in, %" PRIu64 " out\n", r->input_tokens, r->output_tokens);
    else
        printf("  tokens: unknown\n");
    if (r->cost_known)
        printf("  cost: %.6f USD\n", r->cost_usd);
    else
        printf("  cost: unknown\n");
    for (size_t i = 0; i < r->n_verdicts; i++)
        printf("  %s: %s\n", r->verdicts[i]->key, r->verdicts[i]->value);
}

/* Reads the prompt: the --prompt text, or the file (- for stdin). */
static char *read_prompt(const char *text, const char *file)
{
    if (text)
        return strdup(text);
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    if (!f) {
        fprintf(stderr, "orchctl: cannot read %s\n", file);
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 2);
    if (buf)
        n = fread(buf, 1, cap + 1, f);
    if (f != stdin)
        fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static int job_spawn(const orchctl_args *a, const globals *g)
{
    const char *text = orchctl_opt(a, "prompt", NULL), *file = orchctl_opt(a, "prompt-file", NULL);
    const char *workdir = orchctl_opt(a, "workdir", NULL);
    uint64_t timeout = 1800;
    if (!orchctl_opt_u64(a, "timeout", UINT32_MAX, &timeout))
        return EXIT_USAGE;
    if (a->npos != 2 || !workdir || (!text == !file))
        return orchctl_usage_error(a);
    char *prompt = read_prompt(text, file);
    if (!prompt)
        return EXIT_USAGE;
    Orch__V1__SpawnRequest req = ORCH__V1__SPAWN_REQUEST__INIT;
    req.role = a->pos[0];
    req.work_item = a->pos[1];
    req.prompt = prompt;
    req.workdir = (char *)workdir;
    req.timeout_s = (uint32_t)timeout;
    req.stage = (char *)orchctl_opt(a, "stage", "");
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("launcher"), M("Spawn"), &req.base,
                          &orch__v1__spawn_reply__descriptor, &m, &st);
    free(prompt);
    if (rc)
        return rc;
    const Orch__V1__SpawnReply *r = (const Orch__V1__SpawnReply *)m;
    if (g->json)
        orchctl_print_json(m);
    else if (r->job)
        printf("job %" PRIu64 " %s\n", r->job->id, status_name(r->job->status));
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

/* Prints a Get or Wait reply (`m`) of job `j` and its run `r`. */
static void print_reply(const globals *g, const ProtobufCMessage *m, const Orch__V1__Job *j,
                        const Orch__V1__AgentRun *r)
{
    if (g->json)
        orchctl_print_json(m);
    else if (j)
        print_job(j, r);
}

static int job_show(const orchctl_args *a, const globals *g)
{
    uint64_t id;
    if (a->npos != 1 || !orchctl_parse_u64("JOB_ID", a->pos[0], &id))
        return orchctl_usage_error(a);
    Orch__V1__GetJobRequest req = ORCH__V1__GET_JOB_REQUEST__INIT;
    req.job_id = id;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("launcher"), M("Get"), &req.base,
                          &orch__v1__get_job_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__GetJobReply *r = (const Orch__V1__GetJobReply *)m;
    print_reply(g, m, r->job, r->run);
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

/* When (unix ms) a wait for `j` gives up: the job's own timeout from its
 * start (from `now` while it is queued) plus WAIT_MARGIN_MS, for the
 * launcher to stop it and record the end. */
static uint64_t wait_bound(const Orch__V1__Job *j, uint64_t now)
{
    uint64_t from = j->started_unix_ms ? j->started_unix_ms : now;
    return from + (uint64_t)j->timeout_s * 1000 + WAIT_MARGIN_MS;
}

/* The status line of a wait on a terminal, rewritten in place. */
static void progress(const Orch__V1__Job *j, uint64_t now)
{
    uint64_t from = j->started_unix_ms ? j->started_unix_ms : j->created_unix_ms;
    uint64_t s = from && now > from ? (now - from) / 1000 : 0;
    fprintf(stderr, "\rjob %" PRIu64 " %s %" PRIu64 " s (timeout %u s)\033[K", j->id,
            status_name(j->status), s, j->timeout_s);
    fflush(stderr);
}

/* `job wait`: Wait calls of at most a slice each until the job finishes or
 * its bound (wait_bound) passes; exit 0 succeeded, 2 finished otherwise,
 * 4 still running. Each call's deadline is its slice plus --timeout. */
static int job_wait(const orchctl_args *a, const globals *g)
{
    uint64_t id;
    if (a->npos != 1 || !orchctl_parse_u64("JOB_ID", a->pos[0], &id))
        return orchctl_usage_error(a);
    orch_rpc_client *c = orchctl_open(g, orchctl_target("launcher"));
    if (!c)
        return EXIT_USAGE;
    bool tty = isatty(STDERR_FILENO);
    uint64_t slice = tty ? WAIT_SLICE_TTY_MS : WAIT_SLICE_MS, bound = 0;
    Orch__V1__WaitJobReply *w = NULL;
    int rc = EXIT_OK;
    for (unsigned round = 0;; round++) {
        uint64_t now = orch_wall_ms();
        /* The first call only reads the job (its bound; an unreachable
         * launcher fails within --timeout), the next ones wait a slice. */
        uint64_t ms = round == 0 ? 1 : bound > now && bound - now < slice ? bound - now : slice;
        Orch__V1__WaitJobRequest req = ORCH__V1__WAIT_JOB_REQUEST__INIT;
        req.job_id = id;
        req.wait_ms = (uint32_t)ms;
        orch_rpc_call_opts co = { .timeout_ms = (uint32_t)ms + g->timeout_ms };
        orch_rpc_status st;
        if (w)
            protobuf_c_message_free_unpacked(&w->base, NULL);
        w = NULL;
        if (orch_rpc_invoke(c, M("Wait"), &req.base, &orch__v1__wait_job_reply__descriptor, &co,
                            &st, (ProtobufCMessage **)&w) != ORCH_CODE_OK) {
            if (tty)
                fputs("\r\033[K", stderr);
            rc = orchctl_rpc_error(g, M("Wait"), &st);
            break;
        }
        now = orch_wall_ms();
        if (w->job && (!bound || w->job->started_unix_ms))
            bound = wait_bound(w->job, now);
        if (w->finished || !w->job || now >= bound)
            break;
        if (tty)
            progress(w->job, now);
    }
    orch_rpc_client_close(c);
    if (!w)
        return rc;
    if (tty)
        fputs("\r\033[K", stderr);
    print_reply(g, &w->base, w->job, w->run);
    bool ok = w->job && w->job->status == ORCH__V1__JOB_STATUS__JOB_STATUS_SUCCEEDED;
    rc = !w->finished ? 4 : ok ? EXIT_OK : 2;
    protobuf_c_message_free_unpacked(&w->base, NULL);
    return rc;
}

static int job_cancel(const orchctl_args *a, const globals *g)
{
    uint64_t id;
    if ((a->npos != 1 && a->npos != 2) || !orchctl_parse_u64("JOB_ID", a->pos[0], &id))
        return orchctl_usage_error(a);
    Orch__V1__CancelJobRequest req = ORCH__V1__CANCEL_JOB_REQUEST__INIT;
    req.job_id = id;
    req.reason = a->npos == 2 ? a->pos[1] : "operator";
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("launcher"), M("Cancel"), &req.base,
                          &orch__v1__cancel_job_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__CancelJobReply *r = (const Orch__V1__CancelJobReply *)m;
    if (g->json)
        orchctl_print_json(m);
    else if (r->job)
        printf("job %" PRIu64 " %s%s\n", r->job->id, status_name(r->job->status),
               r->already_finished ? " (already finished)" : "");
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

const orchctl_cmd orchctl_job_cmds[] = {
    { "spawn",
      "ROLE WORK_ITEM --workdir DIR (--prompt TEXT|--prompt-file FILE|-) [--timeout S] [--stage S]",
      "analyst architect developer reviewer tester deployer",
      ORCHCTL_OPTS({ "workdir", true, 0 }, { "prompt", true, 0 }, { "prompt-file", true, 0 },
                   { "timeout", true, 0 }, { "stage", true, 0 }),
      job_spawn, "start an agent job", NULL, NULL },
    { "show", "JOB_ID", "", NULL, job_show, "the job now", NULL, NULL },
    { "wait", "JOB_ID", "", NULL, job_wait,
      "until the job finishes, at most its own timeout + 30 s; a status line on a terminal", NULL,
      NULL },
    { "cancel", "JOB_ID [REASON]", "", NULL, job_cancel, "cancel the job", NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL },
};

/* ---- runs ------------------------------------------------------------------ */

static void print_run(const Orch__V1__AgentRun *a)
{
    char tok[64] = "tokens unknown", cost[32] = "cost unknown";
    if (a->usage_known)
        snprintf(tok, sizeof tok, "%" PRIu64 "/%" PRIu64 " tokens", a->input_tokens,
                 a->output_tokens);
    if (a->cost_known)
        snprintf(cost, sizeof cost, "%.4f USD", a->cost_usd);
    printf("run %-6" PRIu64 " job %-6" PRIu64 " %-10s %-16s exit %-3d %8" PRIu64
           " ms  %s  %s  %zu verdict(s)\n",
           a->id, a->job_id, a->role, a->work_item, (int)a->exit_status, a->duration_ms, tok, cost,
           a->n_verdicts);
}

static int runs_list(const orchctl_args *a, const globals *g)
{
    Orch__V1__ListRunsRequest req = ORCH__V1__LIST_RUNS_REQUEST__INIT;
    if (!orchctl_list_args(a, &req.limit))
        return EXIT_USAGE;
    req.role = (char *)orchctl_opt(a, "role", req.role);
    req.work_item = (char *)orchctl_opt(a, "item", req.work_item);
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("launcher"), M("ListRuns"), &req.base,
                          &orch__v1__list_runs_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__ListRunsReply *r = (const Orch__V1__ListRunsReply *)m;
    if (g->json) {
        orchctl_print_json(m);
    } else {
        for (size_t i = 0; i < r->n_runs; i++)
            print_run(r->runs[i]);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

static int runs_savings(const orchctl_args *a, const globals *g)
{
    uint64_t days = 0;
    if (!orchctl_opt_u64(a, "since-days", 36500, &days))
        return EXIT_USAGE;
    if (a->npos != 0)
        return orchctl_usage_error(a);
    Orch__V1__SavingsRequest req = ORCH__V1__SAVINGS_REQUEST__INIT;
    req.since_days = (uint32_t)days;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("launcher"), M("Savings"), &req.base,
                          &orch__v1__savings_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__SavingsReply *r = (const Orch__V1__SavingsReply *)m;
    if (g->json) {
        orchctl_print_json(m);
    } else {
        printf("%-10s %-4s %-17s %6s %10s %12s %12s %12s %12s\n", "role", "axis", "class", "runs",
               "with-usage", "input-tok", "output-tok", "cost-usd", "time-s");
        for (size_t i = 0; i < r->n_roles; i++) {
            const Orch__V1__RoleSavings *s = r->roles[i];
            printf("%-10s %-4s %-17s %6" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64
                   " %12.4f %12.1f\n",
                   s->role, s->axis, s->classification, s->runs, s->runs_with_usage,
                   s->input_tokens, s->output_tokens, s->cost_usd, (double)s->duration_ms / 1000);
        }
        printf("token and cost sums cover only the runs whose agent reported them\n");
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

const orchctl_cmd orchctl_runs_cmds[] = {
    { "list", "[--role ROLE] [--item WORK_ITEM] [--limit N]", "",
      ORCHCTL_OPTS({ "role", true, 0 }, { "item", true, 0 }, { "limit", true, 0 }), runs_list,
      "finished agent runs", NULL, NULL },
    { "savings", "[--since-days N]", "", ORCHCTL_OPTS({ "since-days", true, 0 }), runs_savings,
      "per role, runs, tokens, cost and time, with the role's classification", NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL },
};
