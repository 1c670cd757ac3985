/*
 * launcher_rpc.c - decodes, validates and answers launcher-service's RPCs.
 *
 * Spawn records a queued job and wakes the supervisor, which starts it; it
 * never waits for the agent. Wait polls the job's row until it is finished
 * or the wait ends (bounded by the call's deadline). Every input is checked
 * first: a bad request gets INVALID_ARGUMENT naming the field.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "launcher_rpc.h"
#include "launcher_svc.h"
#include "orch/clock.h"
#include "orch/log.h"
#include "orch/v1/launcher.pb-c.h"

#define MAX_LIST 1000

static orch_code db_fail(orch_rpc_call *call, orch_err err, orch_db_conn *c)
{
    orch_code code = orch_err_to_code(err);
    if (code == ORCH_CODE_INVALID_ARGUMENT)
        code = ORCH_CODE_INTERNAL;
    return orch_rpc_fail(call, code, "database: %s%s%s", orch_strerror(err), c ? ": " : "",
                         c ? orch_db_last_error(c) : "");
}

static Orch__V1__JobStatus status_enum(const char *s)
{
    static const Orch__V1__JobStatus map[6] = {
        ORCH__V1__JOB_STATUS__JOB_STATUS_QUEUED,    ORCH__V1__JOB_STATUS__JOB_STATUS_RUNNING,
        ORCH__V1__JOB_STATUS__JOB_STATUS_SUCCEEDED, ORCH__V1__JOB_STATUS__JOB_STATUS_FAILED,
        ORCH__V1__JOB_STATUS__JOB_STATUS_TIMED_OUT, ORCH__V1__JOB_STATUS__JOB_STATUS_CANCELLED,
    };
    for (int i = 0; i < 6; i++)
        if (strcmp(s, launcher_job_statuses[i]) == 0)
            return map[i];
    return ORCH__V1__JOB_STATUS__JOB_STATUS_UNSPECIFIED;
}

static bool is_final(const char *s)
{
    return strcmp(s, "queued") != 0 && strcmp(s, "running") != 0;
}

/* Fills `m` borrowing from `j`. */
static void job_to_msg(const launcher_job *j, Orch__V1__Job *m)
{
    orch__v1__job__init(m);
    m->id = j->id;
    m->role = (char *)j->role;
    m->work_item = (char *)j->work_item;
    m->stage = (char *)j->stage;
    m->status = status_enum(j->status);
    m->host_id = (char *)j->host_id;
    m->boot_id = (char *)j->boot_id;
    m->pid = j->pid;
    m->start_ticks = j->start_ticks;
    m->timeout_s = j->timeout_s;
    m->created_unix_ms = j->created_ms;
    m->started_unix_ms = j->started_ms;
    m->finished_unix_ms = j->finished_ms;
    m->finish_reason = (char *)j->finish_reason;
    m->stdout_path = (char *)j->stdout_path;
    m->stderr_path = (char *)j->stderr_path;
    m->attempts = j->attempts;
    m->monitor_state = (char *)j->monitor_state;
    m->monitor_detail = (char *)j->monitor_detail;
}

typedef struct run_msg {
    Orch__V1__AgentRun m;
    Orch__V1__Verdict v[ORCH_VERDICTS_MAX];
    Orch__V1__Verdict *vp[ORCH_VERDICTS_MAX];
} run_msg;

/* Fills `rm` borrowing from `r`. */
static void run_to_msg(const launcher_run *r, run_msg *rm)
{
    Orch__V1__AgentRun *m = &rm->m;
    orch__v1__agent_run__init(m);
    m->id = r->id;
    m->job_id = r->job_id;
    m->role = (char *)r->role;
    m->work_item = (char *)r->work_item;
    m->model = (char *)r->usage.model;
    m->usage_known = r->usage.usage_known;
    m->input_tokens = r->usage.input_tokens;
    m->output_tokens = r->usage.output_tokens;
    m->cost_known = r->usage.cost_known;
    m->cost_usd = r->usage.cost_usd;
    m->duration_ms = r->duration_ms;
    m->exit_status = r->exit_status;
    m->at_unix_ms = r->at_ms;
    for (size_t i = 0; i < r->verdicts.n; i++) {
        orch__v1__verdict__init(&rm->v[i]);
        rm->v[i].key = (char *)r->verdicts.v[i].key;
        rm->v[i].value = (char *)r->verdicts.v[i].value;
        rm->vp[i] = &rm->v[i];
    }
    m->n_verdicts = r->verdicts.n;
    m->verdicts = rm->vp;
}

/* ---- input checks (launcher_rpc.h) ------------------------------------------ */

static orch_code check_job_id(uint64_t id, char *why, size_t n)
{
    if (id == 0) {
        snprintf(why, n, "job_id must be positive");
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    if (id > INT64_MAX) {
        snprintf(why, n, "no job %" PRIu64, id);
        return ORCH_CODE_NOT_FOUND;
    }
    return ORCH_CODE_OK;
}

static orch_code check_spawn(const Orch__V1__SpawnRequest *req, const launcher_rpc_limits *lim,
                             char *why, size_t n)
{
    launcher_spawn_in in = {
        .role = req->role,
        .work_item = req->work_item,
        .stage = req->stage,
        .prompt = req->prompt,
        .prompt_len = strlen(req->prompt),
        .workdir = req->workdir,
        .timeout_s = req->timeout_s,
    };
    in.workdir_is_dir = req->workdir[0] == '/' && strlen(req->workdir) <= LAUNCHER_MAX_WORKDIR &&
                        lim->workdir_is_dir(req->workdir);
    if (!launcher_valid_spawn(&in, lim->max_timeout_s, why, n))
        return ORCH_CODE_INVALID_ARGUMENT;
    return ORCH_CODE_OK;
}

static orch_code check_cancel(const Orch__V1__CancelJobRequest *req, char *why, size_t n)
{
    if (!launcher_valid_text(req->reason, true)) {
        snprintf(why, n, "reason must be at most %d bytes without control characters",
                 LAUNCHER_MAX_FIELD);
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    return check_job_id(req->job_id, why, n);
}

static orch_code check_list_runs(const Orch__V1__ListRunsRequest *req, char *why, size_t n)
{
    unsigned limit = req->limit ? req->limit : 100;
    if (limit > MAX_LIST) {
        snprintf(why, n, "limit %u is over %d", req->limit, MAX_LIST);
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    if (req->role[0] && launcher_role_index(req->role) < 0) {
        snprintf(why, n, "role '%.40s' is unknown", req->role);
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    if (!launcher_valid_text(req->work_item, true)) {
        snprintf(why, n, "work_item is invalid");
        return ORCH_CODE_INVALID_ARGUMENT;
    }
    return ORCH_CODE_OK;
}

orch_code launcher_rpc_check(const ProtobufCMessage *msg, const launcher_rpc_limits *lim, char *why,
                             size_t n)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    if (d == &orch__v1__spawn_request__descriptor)
        return check_spawn((const Orch__V1__SpawnRequest *)msg, lim, why, n);
    if (d == &orch__v1__get_job_request__descriptor)
        return check_job_id(((const Orch__V1__GetJobRequest *)msg)->job_id, why, n);
    if (d == &orch__v1__wait_job_request__descriptor)
        return check_job_id(((const Orch__V1__WaitJobRequest *)msg)->job_id, why, n);
    if (d == &orch__v1__cancel_job_request__descriptor)
        return check_cancel((const Orch__V1__CancelJobRequest *)msg, why, n);
    if (d == &orch__v1__list_runs_request__descriptor)
        return check_list_runs((const Orch__V1__ListRunsRequest *)msg, why, n);
    if (d == &orch__v1__savings_request__descriptor) {
        if (((const Orch__V1__SavingsRequest *)msg)->since_days > 36500) {
            snprintf(why, n, "since_days is over 36500");
            return ORCH_CODE_INVALID_ARGUMENT;
        }
        return ORCH_CODE_OK;
    }
    snprintf(why, n, "%s is not a LauncherService request", d->name);
    return ORCH_CODE_INVALID_ARGUMENT;
}

static bool path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Runs launcher_rpc_check() on a handler's request. Returns ORCH_CODE_OK, or
 * the check's code with the reason set on the call (the handler returns it). */
static orch_code check_request(orch_rpc_call *call, const ProtobufCMessage *msg,
                               const launcher_svc *ls)
{
    char why[320];
    launcher_rpc_limits lim = { ls->max_timeout_s, path_is_dir };
    orch_code code = launcher_rpc_check(msg, &lim, why, sizeof why);
    if (code != ORCH_CODE_OK)
        return orch_rpc_fail(call, code, "%s", why);
    return ORCH_CODE_OK;
}

/* Reads job `id` and its run. Returns OK or the failure set on the call. */
static orch_code read_job(orch_rpc_call *call, launcher_svc *ls, uint64_t id, launcher_job *j,
                          launcher_run *run, bool *have_run)
{
    uint64_t dl = orch_rpc_call_deadline(call);
    orch_db_conn *c = NULL;
    bool found = false;
    char why[64];
    orch_code bad = check_job_id(id, why, sizeof why);
    if (bad)
        return orch_rpc_fail(call, bad, "%s", why);
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (err)
        return db_fail(call, err, NULL);
    err = launcher_store_get(c, dl, id, &found, j);
    *have_run = false;
    if (!err && found && run)
        err = launcher_store_get_run(c, dl, id, have_run, run);
    orch_code code = err ? db_fail(call, err, c) : ORCH_CODE_OK;
    orch_db_release(c);
    if (!code && !found)
        return orch_rpc_fail(call, ORCH_CODE_NOT_FOUND, "no job %" PRIu64, id);
    return code;
}

/* ---- Spawn ------------------------------------------------------------------ */

static orch_code spawn(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    launcher_svc *ls = arg;
    const Orch__V1__SpawnRequest *req = (const Orch__V1__SpawnRequest *)msg;
    orch_code bad = check_request(call, msg, ls);
    if (bad != ORCH_CODE_OK)
        return bad;
    launcher_spawn_in in = {
        .role = req->role,
        .work_item = req->work_item,
        .stage = req->stage,
        .prompt = req->prompt,
        .prompt_len = strlen(req->prompt),
        .workdir = req->workdir,
        .timeout_s = req->timeout_s,
        .workdir_is_dir = true,
    };
    int ri = launcher_role_index(req->role);
    if (!ls->templates[ri][0])
        return orch_rpc_fail(call, ORCH_CODE_FAILED_PRECONDITION,
                             "no agent command for role %s: set ORCH_AGENT_COMMAND or "
                             "ORCH_AGENT_COMMAND_%s",
                             req->role, req->role);
    if (access(ls->out_dir, W_OK | X_OK) != 0)
        return orch_rpc_fail(call, ORCH_CODE_FAILED_PRECONDITION,
                             "ORCH_LAUNCHER_OUTPUT_DIR %s is not a writable folder", ls->out_dir);
    const char *stage = req->stage[0] ? req->stage : launcher_default_stage(req->role);
    uint64_t dl = orch_rpc_call_deadline(call), id = 0;
    orch_db_conn *c = NULL;
    launcher_job j;
    bool found = false;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (err)
        return db_fail(call, err, NULL);
    err = launcher_store_insert(c, dl, &in, stage, ls->me->host_id, &id);
    if (!err)
        err = launcher_store_get(c, dl, id, &found, &j);
    orch_code code = err ? db_fail(call, err, c) : ORCH_CODE_OK;
    orch_db_release(c);
    if (code)
        return code;
    launcher_wake(ls);
    orch_info("job %" PRIu64 " queued: %s for %s in %s", id, req->role, req->work_item, stage);
    Orch__V1__SpawnReply rep = ORCH__V1__SPAWN_REPLY__INIT;
    Orch__V1__Job jm;
    job_to_msg(&j, &jm);
    rep.job = &jm;
    return orch_rpc_reply(call, &rep.base);
}

/* ---- Get, Wait, Cancel ------------------------------------------------------ */

static orch_code get(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    const Orch__V1__GetJobRequest *req = (const Orch__V1__GetJobRequest *)msg;
    launcher_job j;
    launcher_run run;
    bool have_run;
    orch_code code = read_job(call, arg, req->job_id, &j, &run, &have_run);
    if (code)
        return code;
    Orch__V1__GetJobReply rep = ORCH__V1__GET_JOB_REPLY__INIT;
    Orch__V1__Job jm;
    run_msg rm;
    job_to_msg(&j, &jm);
    rep.job = &jm;
    if (have_run) {
        run_to_msg(&run, &rm);
        rep.run = &rm.m;
    }
    return orch_rpc_reply(call, &rep.base);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static orch_code wait_job(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    const Orch__V1__WaitJobRequest *req = (const Orch__V1__WaitJobRequest *)msg;
    uint64_t dl = orch_rpc_call_deadline(call);
    /* Answer a little before the deadline so that the reply arrives in time. */
    uint64_t until = dl > 300 ? dl - 300 : dl;
    if (req->wait_ms && orch_mono_ms() + req->wait_ms < until)
        until = orch_mono_ms() + req->wait_ms;
    launcher_job j;
    launcher_run run;
    bool have_run = false;
    orch_code code;
    for (int round = 0; round < 1000000; round++) { /* bounded by `until` */
        code = read_job(call, arg, req->job_id, &j, &run, &have_run);
        if (code)
            return code;
        if (is_final(j.status) || orch_mono_ms() + 50 >= until)
            break;
        sleep_ms(50);
    }
    Orch__V1__WaitJobReply rep = ORCH__V1__WAIT_JOB_REPLY__INIT;
    Orch__V1__Job jm;
    run_msg rm;
    job_to_msg(&j, &jm);
    rep.job = &jm;
    rep.finished = is_final(j.status);
    if (have_run) {
        run_to_msg(&run, &rm);
        rep.run = &rm.m;
    }
    return orch_rpc_reply(call, &rep.base);
}

static orch_code cancel(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    launcher_svc *ls = arg;
    const Orch__V1__CancelJobRequest *req = (const Orch__V1__CancelJobRequest *)msg;
    orch_code bad = check_request(call, msg, ls);
    if (bad != ORCH_CODE_OK)
        return bad;
    launcher_job j;
    orch_code code = read_job(call, ls, req->job_id, &j, NULL, &(bool){ false });
    if (code)
        return code;
    Orch__V1__CancelJobReply rep = ORCH__V1__CANCEL_JOB_REPLY__INIT;
    if (!is_final(j.status)) {
        uint64_t dl = orch_rpc_call_deadline(call);
        orch_db_conn *c = NULL;
        bool done = false, requested = false;
        orch_err err = orch_db_acquire(ls->db, dl, &c);
        if (err)
            return db_fail(call, err, NULL);
        err = launcher_store_cancel(c, dl, j.id, req->reason[0] ? req->reason : "by request", &done,
                                    &requested);
        code = err ? db_fail(call, err, c) : ORCH_CODE_OK;
        orch_db_release(c);
        if (code)
            return code;
        if (requested)
            launcher_proc_cancel(ls, j.id); /* else its own instance sees the flag */
        orch_info("job %" PRIu64 ": cancellation asked (%s)", j.id,
                  done ? "was queued" : "running");
        code = read_job(call, ls, req->job_id, &j, NULL, &(bool){ false });
        if (code)
            return code;
    } else {
        rep.already_finished = true;
    }
    Orch__V1__Job jm;
    job_to_msg(&j, &jm);
    rep.job = &jm;
    return orch_rpc_reply(call, &rep.base);
}

/* ---- ListRuns, Savings ------------------------------------------------------- */

typedef struct run_acc {
    launcher_run *runs;
    size_t n, cap;
} run_acc;

static void run_collect(const launcher_run *r, void *arg)
{
    run_acc *a = arg;
    if (a->n < a->cap)
        a->runs[a->n++] = *r;
}

static orch_code list_runs(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    launcher_svc *ls = arg;
    const Orch__V1__ListRunsRequest *req = (const Orch__V1__ListRunsRequest *)msg;
    orch_code bad = check_request(call, msg, ls);
    if (bad != ORCH_CODE_OK)
        return bad;
    unsigned limit = req->limit ? req->limit : 100;
    run_acc a = { calloc(limit, sizeof *a.runs), 0, limit };
    run_msg *rms = calloc(limit, sizeof *rms);
    Orch__V1__AgentRun **ps = calloc(limit, sizeof *ps);
    orch_code code = ORCH_CODE_OK;
    if (!a.runs || !rms || !ps)
        code = orch_rpc_fail(call, ORCH_CODE_RESOURCE_EXHAUSTED, "out of memory");
    uint64_t dl = orch_rpc_call_deadline(call);
    orch_db_conn *c = NULL;
    orch_err err = code ? ORCH_OK : orch_db_acquire(ls->db, dl, &c);
    if (err)
        code = db_fail(call, err, NULL);
    if (!code) {
        err = launcher_store_list_runs(c, dl, req->role, req->work_item, limit, run_collect, &a);
        if (err)
            code = db_fail(call, err, c);
    }
    orch_db_release(c);
    if (!code) {
        Orch__V1__ListRunsReply rep = ORCH__V1__LIST_RUNS_REPLY__INIT;
        for (size_t i = 0; i < a.n; i++) {
            run_to_msg(&a.runs[i], &rms[i]);
            ps[i] = &rms[i].m;
        }
        rep.n_runs = a.n;
        rep.runs = ps;
        code = orch_rpc_reply(call, &rep.base);
    }
    free(a.runs);
    free(rms);
    free(ps);
    return code;
}

static const launcher_route *first_route(const char *role)
{
    return launcher_route_find(role, "");
}

static orch_code savings(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    launcher_svc *ls = arg;
    const Orch__V1__SavingsRequest *req = (const Orch__V1__SavingsRequest *)msg;
    orch_code bad = check_request(call, msg, ls);
    if (bad != ORCH_CODE_OK)
        return bad;
    launcher_role_sum sums[32];
    size_t n = 0;
    uint64_t dl = orch_rpc_call_deadline(call);
    orch_db_conn *c = NULL;
    orch_err err = orch_db_acquire(ls->db, dl, &c);
    if (err)
        return db_fail(call, err, NULL);
    err = launcher_store_savings(c, dl, req->since_days, sums, 32, &n);
    orch_code code = err ? db_fail(call, err, c) : ORCH_CODE_OK;
    orch_db_release(c);
    if (code)
        return code;
    Orch__V1__RoleSavings rs[32], *rp[32];
    char axis[32][2];
    for (size_t i = 0; i < n; i++) {
        const launcher_route *r = first_route(sums[i].role);
        orch__v1__role_savings__init(&rs[i]);
        axis[i][0] = r ? r->axis : '?';
        axis[i][1] = '\0';
        rs[i].role = sums[i].role;
        rs[i].axis = axis[i];
        rs[i].classification = r ? (char *)launcher_route_class(r) : "unknown";
        rs[i].runs = sums[i].runs;
        rs[i].runs_with_usage = sums[i].runs_with_usage;
        rs[i].input_tokens = sums[i].input_tokens;
        rs[i].output_tokens = sums[i].output_tokens;
        rs[i].runs_with_cost = sums[i].runs_with_cost;
        rs[i].cost_usd = sums[i].cost_usd;
        rs[i].duration_ms = sums[i].duration_ms;
        rp[i] = &rs[i];
    }
    Orch__V1__SavingsReply rep = ORCH__V1__SAVINGS_REPLY__INIT;
    rep.n_roles = n;
    rep.roles = rp;
    return orch_rpc_reply(call, &rep.base);
}

/* Matched to the service block of launcher.proto by name at registration.
 * Wait is a long poll: it is kept out of the RPC duration histogram. */
/* Handlers and the roles that may call them (docs/rpc.md, "Authorization"):
 * jobs are started and watched by operators (orchctl job). */
static const orch_rpc_method methods[] = {
    { .name = "Spawn", .handler = spawn, .roles = ORCH_ROLE_OPERATOR },
    { .name = "Get", .handler = get, .roles = ORCH_ROLE_OPERATOR },
    { .name = "Wait", .handler = wait_job, .roles = ORCH_ROLE_OPERATOR, .long_poll = true },
    { .name = "Cancel", .handler = cancel, .roles = ORCH_ROLE_OPERATOR },
    { .name = "ListRuns", .handler = list_runs, .roles = ORCH_ROLE_OPERATOR },
    { .name = "Savings", .handler = savings, .roles = ORCH_ROLE_OPERATOR },
};

orch_err launcher_rpc_register(orch_service *svc, launcher_svc *ls)
{
    orch_rpc_service rpc = { .desc = &orch__v1__launcher_service__descriptor,
                             .methods = methods,
                             .nmethods = sizeof methods / sizeof *methods,
                             .arg = ls };
    return orch_service_add_rpc(svc, &rpc);
}
