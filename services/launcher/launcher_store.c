/*
 * launcher_store.c - see launcher_store.h. The only file of launcher-service
 * that holds SQL. All statements are parameterized; the database clock
 * stamps every time.
 */
#include "launcher_store.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const launcher_job_statuses[6] = { "queued", "running",   "succeeded",
                                               "failed", "timed_out", "cancelled" };

#define MS(col) "coalesce((extract(epoch FROM " col ") * 1000)::bigint, 0)"

#define JOB_COLUMNS                                                                              \
    "id, role, work_item, stage, status, coalesce(host_id, ''), coalesce(boot_id, ''),"          \
    " coalesce(instance_id, ''), coalesce(pid, 0), coalesce(start_ticks, 0), timeout_s, " MS(    \
        "created_at") ", " MS("started_at") ", " MS("finished_at") ","                           \
                                                                   " coalesce(greatest(0, "      \
                                                                   "extract(epoch FROM now() - " \
                                                                   "started_at))::bigint, 0),"   \
                                                                   " finish_reason, workdir, "   \
                                                                   "stdout_path, stderr_path, "  \
                                                                   "attempts, monitor_state,"    \
                                                                   " monitor_detail, "           \
                                                                   "cancel_requested"

#define RUN_COLUMNS                                                                  \
    "id, job_id, role, work_item, coalesce(model, ''), input_tokens, output_tokens," \
    " cost_usd, coalesce(duration_ms, 0), coalesce(exit_status, -1), verdicts::text, " MS("at")

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static uint64_t u64(const char *s)
{
    return s ? strtoull(s, NULL, 10) : 0;
}

static int64_t i64(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

static void read_job(const orch_db_result *r, int i, launcher_job *j)
{
#define G(k) orch_db_result_get(r, i, k)
    memset(j, 0, sizeof *j);
    j->id = u64(G(0));
    copy(j->role, sizeof j->role, G(1));
    copy(j->work_item, sizeof j->work_item, G(2));
    copy(j->stage, sizeof j->stage, G(3));
    copy(j->status, sizeof j->status, G(4));
    copy(j->host_id, sizeof j->host_id, G(5));
    copy(j->boot_id, sizeof j->boot_id, G(6));
    copy(j->instance_id, sizeof j->instance_id, G(7));
    j->pid = (int32_t)i64(G(8));
    j->start_ticks = u64(G(9));
    j->timeout_s = (uint32_t)u64(G(10));
    j->created_ms = u64(G(11));
    j->started_ms = u64(G(12));
    j->finished_ms = u64(G(13));
    j->running_s = i64(G(14));
    copy(j->finish_reason, sizeof j->finish_reason, G(15));
    copy(j->workdir, sizeof j->workdir, G(16));
    copy(j->stdout_path, sizeof j->stdout_path, G(17));
    copy(j->stderr_path, sizeof j->stderr_path, G(18));
    j->attempts = (uint32_t)u64(G(19));
    copy(j->monitor_state, sizeof j->monitor_state, G(20));
    copy(j->monitor_detail, sizeof j->monitor_detail, G(21));
    j->cancel_requested = G(22) && G(22)[0] == 't';
#undef G
}

static void read_verdicts(const char *text, orch_verdicts *vs)
{
    orch_verdicts_init(vs);
    json_t *o = text ? json_loads(text, 0, NULL) : NULL;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        orch_verdict one;
        if (!json_is_string(v) || strlen(k) >= sizeof one.key ||
            json_string_length(v) >= sizeof one.value)
            continue;
        copy(one.key, sizeof one.key, k);
        copy(one.value, sizeof one.value, json_string_value(v));
        (void)orch_verdicts_set(vs, one.key, one.value);
    }
    json_decref(o);
}

static void read_run(const orch_db_result *r, int i, launcher_run *run)
{
#define G(k) orch_db_result_get(r, i, k)
    memset(run, 0, sizeof *run);
    run->id = u64(G(0));
    run->job_id = u64(G(1));
    copy(run->role, sizeof run->role, G(2));
    copy(run->work_item, sizeof run->work_item, G(3));
    copy(run->usage.model, sizeof run->usage.model, G(4));
    run->usage.usage_known = G(5) != NULL && G(6) != NULL;
    run->usage.input_tokens = u64(G(5));
    run->usage.output_tokens = u64(G(6));
    run->usage.cost_known = G(7) != NULL;
    run->usage.cost_usd = G(7) ? strtod(G(7), NULL) : 0;
    run->duration_ms = u64(G(8));
    run->exit_status = (int32_t)i64(G(9));
    read_verdicts(G(10), &run->verdicts);
    run->at_ms = u64(G(11));
#undef G
}

orch_err launcher_store_insert(orch_db_conn *c, uint64_t dl, const launcher_spawn_in *in,
                               const char *stage, const char *host_id, uint64_t *id)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%u", in->timeout_s);
    const char *p[] = { in->role, in->work_item, stage, in->prompt, in->workdir, timeout, host_id };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl,
                                "INSERT INTO jobs (role, work_item, stage, prompt, workdir,"
                                " timeout_s, host_id, status)"
                                " VALUES ($1, $2, $3, $4, $5, $6::integer, $7, 'queued')"
                                " RETURNING id",
                                7, p, &r);
    if (err)
        return err;
    *id = u64(orch_db_result_get(r, 0, 0));
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_claim(orch_db_conn *c, uint64_t dl, const char *host_id,
                              const char *boot_id, const char *instance_id, bool *found,
                              launcher_job *job, char **prompt)
{
    const char *p[] = { host_id, boot_id, instance_id };
    orch_db_result *r;
    orch_err err = orch_db_exec(
        c, dl,
        "WITH q AS (SELECT id AS qid FROM jobs WHERE status = 'queued' AND host_id = $1"
        "   AND NOT cancel_requested ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " UPDATE jobs j SET status = 'running', boot_id = $2, instance_id = $3, pid = NULL,"
        "   start_ticks = NULL, started_at = now(), attempts = attempts + 1"
        " FROM q WHERE j.id = q.qid RETURNING " JOB_COLUMNS ", prompt",
        3, p, &r);
    if (err)
        return err;
    *found = orch_db_result_rows(r) == 1;
    if (*found) {
        read_job(r, 0, job);
        *prompt = strdup(orch_db_result_get(r, 0, 23));
        if (!*prompt) {
            orch_db_result_free(r);
            return ORCH_ENOMEM;
        }
    }
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_started(orch_db_conn *c, uint64_t dl, uint64_t id, pid_t pid,
                                uint64_t start_ticks, const char *out_path, const char *err_path)
{
    char sid[24], spid[16], sticks[24];
    snprintf(sid, sizeof sid, "%" PRIu64, id);
    snprintf(spid, sizeof spid, "%d", (int)pid);
    snprintf(sticks, sizeof sticks, "%" PRIu64, start_ticks);
    const char *p[] = { sid, spid, sticks, out_path, err_path };
    return orch_db_exec(c, dl,
                        "UPDATE jobs SET pid = $2::integer, start_ticks = $3::bigint,"
                        " stdout_path = $4, stderr_path = $5 WHERE id = $1::bigint",
                        5, p, NULL);
}

static char *verdicts_json(const orch_verdicts *vs)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < vs->n; i++)
        json_object_set_new(o, vs->v[i].key, json_string(vs->v[i].value));
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

/* The finish of a job and its agent run, one statement (one commit, no row
 * lock held between round trips). `k` locks the running job: LOCK_CLAUSE
 * waits for another transaction's lock or skips the row. $1 id, $2 status,
 * $3 exit status, $4 reason, $5 monitor state, $6 whether a run is
 * recorded, $7.. the run. */
#define FINISH_SQL(LOCK_CLAUSE)                                                                \
    "WITH k AS (SELECT id FROM jobs WHERE id = $1::bigint AND status = 'running' " LOCK_CLAUSE \
    "),"                                                                                       \
    " f AS (UPDATE jobs j SET status = $2, exit_status = $3::integer, finish_reason = $4,"     \
    "   monitor_state = $5, finished_at = now() FROM k WHERE j.id = k.id"                      \
    "   RETURNING j.id, j.role, j.work_item),"                                                 \
    " a AS (INSERT INTO agent_runs (job_id, role, work_item, model, input_tokens,"             \
    "   output_tokens, cost_usd, duration_ms, exit_status, verdicts)"                          \
    "   SELECT id, role, work_item, $7, $8::bigint, $9::bigint, $10::numeric, $11::bigint,"    \
    "     $12::integer, $13::jsonb FROM f WHERE $6::boolean)"                                  \
    " SELECT count(*) FROM f"

static orch_err finish(orch_db_conn *c, uint64_t dl, bool skip_locked, uint64_t id,
                       const char *status, int exit_status, const char *reason,
                       const char *monitor_state, const launcher_run *run, bool *done)
{
    static const char wait_sql[] = FINISH_SQL("FOR UPDATE");
    static const char skip_sql[] = FINISH_SQL("FOR UPDATE SKIP LOCKED");
    char sid[24], ex[16], in[24], out[24], cost[48], dur[24], rex[16];
    const launcher_usage *u = run ? &run->usage : NULL;
    char *vj = NULL;
    snprintf(sid, sizeof sid, "%" PRIu64, id);
    snprintf(ex, sizeof ex, "%d", exit_status);
    if (run) {
        snprintf(in, sizeof in, "%" PRIu64, u->input_tokens);
        snprintf(out, sizeof out, "%" PRIu64, u->output_tokens);
        snprintf(cost, sizeof cost, "%.6f", u->cost_usd);
        snprintf(dur, sizeof dur, "%" PRIu64, run->duration_ms);
        snprintf(rex, sizeof rex, "%d", (int)run->exit_status);
        if (!(vj = verdicts_json(&run->verdicts)))
            return ORCH_ENOMEM;
    }
    const char *p[] = { sid,
                        status,
                        run ? ex : NULL,
                        reason,
                        monitor_state,
                        run ? "true" : "false",
                        run && u->model[0] ? u->model : NULL,
                        run && u->usage_known ? in : NULL,
                        run && u->usage_known ? out : NULL,
                        run && u->cost_known ? cost : NULL,
                        run ? dur : NULL,
                        run ? rex : NULL,
                        vj };
    orch_db_result *r = NULL;
    orch_err err = orch_db_exec_write(c, dl, skip_locked ? skip_sql : wait_sql, 13, p, &r);
    free(vj);
    if (err)
        return err;
    *done = strcmp(orch_db_result_get(r, 0, 0), "1") == 0;
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_finish(orch_db_conn *c, uint64_t dl, uint64_t id, const char *status,
                               int exit_status, const char *reason, const char *monitor_state,
                               const launcher_run *run, bool *done)
{
    return finish(c, dl, false, id, status, exit_status, reason, monitor_state, run, done);
}

orch_err launcher_store_finish_reaped(orch_db_conn *c, uint64_t dl, uint64_t id, const char *reason,
                                      bool *done)
{
    return finish(c, dl, true, id, "failed", -1, reason, "none", NULL, done);
}

orch_err launcher_store_get(orch_db_conn *c, uint64_t dl, uint64_t id, bool *found,
                            launcher_job *job)
{
    char sid[24];
    snprintf(sid, sizeof sid, "%" PRIu64, id);
    const char *p[] = { sid };
    orch_db_result *r;
    orch_err err =
        orch_db_exec(c, dl, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = $1::bigint", 1, p, &r);
    if (err)
        return err;
    *found = orch_db_result_rows(r) == 1;
    if (*found)
        read_job(r, 0, job);
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_get_run(orch_db_conn *c, uint64_t dl, uint64_t job_id, bool *found,
                                launcher_run *run)
{
    char sid[24];
    snprintf(sid, sizeof sid, "%" PRIu64, job_id);
    const char *p[] = { sid };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl,
                                "SELECT " RUN_COLUMNS " FROM agent_runs WHERE job_id = $1::bigint"
                                " ORDER BY id DESC LIMIT 1",
                                1, p, &r);
    if (err)
        return err;
    *found = orch_db_result_rows(r) == 1;
    if (*found)
        read_run(r, 0, run);
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_cancel(orch_db_conn *c, uint64_t dl, uint64_t id, const char *reason,
                               bool *done, bool *requested)
{
    char sid[24];
    snprintf(sid, sizeof sid, "%" PRIu64, id);
    const char *p[] = { sid, reason };
    orch_db_result *r;
    orch_err err =
        orch_db_exec(c, dl,
                     "UPDATE jobs SET cancel_requested = true,"
                     " status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,"
                     " finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,"
                     " finish_reason = CASE WHEN status = 'queued' THEN 'cancelled: ' || $2"
                     "   ELSE finish_reason END"
                     " WHERE id = $1::bigint AND status IN ('queued', 'running')"
                     " RETURNING status",
                     2, p, &r);
    if (err)
        return err;
    bool any = orch_db_result_rows(r) == 1;
    *done = any && strcmp(orch_db_result_get(r, 0, 0), "cancelled") == 0;
    *requested = any && !*done;
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_cancel_asked(orch_db_conn *c, uint64_t dl, const char *instance_id,
                                     uint64_t *ids, size_t max, size_t *n)
{
    const char *p[] = { instance_id };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl,
                                "SELECT id FROM jobs WHERE status = 'running' AND cancel_requested"
                                " AND instance_id = $1 ORDER BY id LIMIT 1000",
                                1, p, &r);
    if (err)
        return err;
    size_t k = 0;
    for (int i = 0; i < orch_db_result_rows(r) && k < max; i++)
        ids[k++] = u64(orch_db_result_get(r, i, 0));
    *n = k;
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_running(orch_db_conn *c, uint64_t dl, const char *host_id,
                                void (*cb)(const launcher_job *job, void *arg), void *arg)
{
    const char *p[] = { host_id };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl,
                                "SELECT " JOB_COLUMNS " FROM jobs WHERE status = 'running'"
                                " AND ($1 = '' OR host_id = $1) ORDER BY id LIMIT 10000",
                                1, p, &r);
    if (err)
        return err;
    for (int i = 0; i < orch_db_result_rows(r); i++) {
        launcher_job j;
        read_job(r, i, &j);
        cb(&j, arg);
    }
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_requeue(orch_db_conn *c, uint64_t dl, const char *host_id,
                                const char *boot_id, const char *instance_id, pid_t pid,
                                uint64_t start_ticks, bool fail, int *requeued, int *failed)
{
    char spid[16], sticks[24];
    snprintf(spid, sizeof spid, "%d", (int)pid);
    snprintf(sticks, sizeof sticks, "%" PRIu64, start_ticks);
    const char *p[] = { host_id, instance_id, fail ? "fail" : "requeue" };
    orch_db_result *r = NULL;
    orch_err err = orch_db_begin(c, dl);
    if (!err)
        err = orch_db_exec(
            c, dl,
            "UPDATE jobs SET"
            " status = CASE WHEN $3 = 'fail' OR cancel_requested THEN"
            "   CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END ELSE 'queued' END,"
            " finished_at = CASE WHEN $3 = 'fail' OR cancel_requested THEN now() END,"
            " finish_reason = CASE WHEN $3 = 'fail' THEN 'launcher restarted: failed by policy'"
            "   WHEN cancel_requested THEN 'cancelled: launcher restarted' ELSE finish_reason END,"
            " requeued_at = now(), pid = NULL, start_ticks = NULL"
            " WHERE host_id = $1 AND status = 'running' AND instance_id IS DISTINCT FROM $2"
            " RETURNING status",
            3, p, &r);
    int nq = 0, nf = 0;
    for (int i = 0; !err && i < orch_db_result_rows(r); i++) {
        if (strcmp(orch_db_result_get(r, i, 0), "queued") == 0)
            nq++;
        else
            nf++;
    }
    orch_db_result_free(r);
    if (!err) {
        char sq[16], sf[16];
        snprintf(sq, sizeof sq, "%d", nq);
        snprintf(sf, sizeof sf, "%d", nf);
        const char *m[] = { host_id, boot_id, instance_id, spid, sticks, sq, sf };
        err = orch_db_exec(c, dl,
                           "INSERT INTO launcher_recovery (host_id, boot_id, instance_id, pid,"
                           " start_ticks, requeued, failed, done_at)"
                           " VALUES ($1, $2, $3, $4::integer, $5::bigint, $6::integer,"
                           " $7::integer, clock_timestamp())"
                           " ON CONFLICT (host_id) DO UPDATE SET boot_id = EXCLUDED.boot_id,"
                           " instance_id = EXCLUDED.instance_id, pid = EXCLUDED.pid,"
                           " start_ticks = EXCLUDED.start_ticks, requeued = EXCLUDED.requeued,"
                           " failed = EXCLUDED.failed, done_at = EXCLUDED.done_at",
                           7, m, NULL);
    }
    if (err) {
        orch_db_rollback(c);
        return err;
    }
    err = orch_db_commit(c, dl);
    if (!err) {
        *requeued = nq;
        *failed = nf;
    }
    return err;
}

orch_err launcher_store_monitor_due(orch_db_conn *c, uint64_t dl, const char *host_id,
                                    int64_t retry_ms, uint64_t *ids, size_t max, size_t *n)
{
    char sretry[24], smax[24];
    snprintf(sretry, sizeof sretry, "%" PRId64, retry_ms);
    snprintf(smax, sizeof smax, "%zu", max);
    const char *p[] = { sretry, smax, host_id };
    orch_db_result *r;
    /* Each host reports the jobs it ran: two launchers on two hosts never
     * report the same job. */
    orch_err err =
        orch_db_exec(c, dl,
                     "SELECT id FROM jobs WHERE host_id = $3 AND (monitor_state = 'pending' OR"
                     " (monitor_state IN ('deferred', 'error') AND finished_at + monitor_attempts"
                     " * ($1::bigint * interval '1 millisecond') <= now()))"
                     " ORDER BY id LIMIT $2::integer",
                     3, p, &r);
    if (err)
        return err;
    size_t k = 0;
    for (int i = 0; i < orch_db_result_rows(r) && k < max; i++)
        ids[k++] = u64(orch_db_result_get(r, i, 0));
    *n = k;
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_set_monitor(orch_db_conn *c, uint64_t dl, uint64_t id, const char *state,
                                    const char *detail)
{
    char sid[24];
    snprintf(sid, sizeof sid, "%" PRIu64, id);
    const char *p[] = { sid, state, detail };
    /* A settled report (advanced, not-advanced, failed) is never overwritten
     * by a later, concurrent one. */
    return orch_db_exec(c, dl,
                        "UPDATE jobs SET monitor_state = $2, monitor_detail = left($3, 250),"
                        " monitor_attempts = monitor_attempts + 1 WHERE id = $1::bigint"
                        " AND (monitor_state IN ('none', 'pending', 'deferred', 'error')"
                        "      OR monitor_state = $2)",
                        3, p, NULL);
}

orch_err launcher_store_list_runs(orch_db_conn *c, uint64_t dl, const char *role,
                                  const char *work_item, unsigned limit,
                                  void (*cb)(const launcher_run *run, void *arg), void *arg)
{
    char slimit[16];
    snprintf(slimit, sizeof slimit, "%u", limit);
    const char *p[] = { role, work_item, slimit };
    orch_db_result *r;
    orch_err err = orch_db_exec(c, dl,
                                "SELECT " RUN_COLUMNS " FROM agent_runs"
                                " WHERE ($1 = '' OR role = $1) AND ($2 = '' OR work_item = $2)"
                                " ORDER BY id DESC LIMIT $3::integer",
                                3, p, &r);
    if (err)
        return err;
    for (int i = 0; i < orch_db_result_rows(r); i++) {
        launcher_run run;
        read_run(r, i, &run);
        cb(&run, arg);
    }
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_savings(orch_db_conn *c, uint64_t dl, unsigned since_days,
                                launcher_role_sum *sums, size_t max, size_t *n)
{
    char sdays[16];
    snprintf(sdays, sizeof sdays, "%u", since_days);
    const char *p[] = { sdays };
    orch_db_result *r;
    orch_err err = orch_db_exec(
        c, dl,
        "SELECT role, count(*),"
        " count(*) FILTER (WHERE input_tokens IS NOT NULL AND output_tokens IS NOT NULL),"
        " coalesce(sum(input_tokens) FILTER (WHERE output_tokens IS NOT NULL), 0),"
        " coalesce(sum(output_tokens) FILTER (WHERE input_tokens IS NOT NULL), 0),"
        " count(cost_usd), coalesce(sum(cost_usd), 0), coalesce(sum(duration_ms), 0)"
        " FROM agent_runs WHERE $1::integer = 0 OR at >= now() - $1::integer * interval '1 day'"
        " GROUP BY role ORDER BY role",
        1, p, &r);
    if (err)
        return err;
    size_t k = 0;
    for (int i = 0; i < orch_db_result_rows(r) && k < max; i++, k++) {
        launcher_role_sum *s = &sums[k];
        memset(s, 0, sizeof *s);
        copy(s->role, sizeof s->role, orch_db_result_get(r, i, 0));
        s->runs = u64(orch_db_result_get(r, i, 1));
        s->runs_with_usage = u64(orch_db_result_get(r, i, 2));
        s->input_tokens = u64(orch_db_result_get(r, i, 3));
        s->output_tokens = u64(orch_db_result_get(r, i, 4));
        s->runs_with_cost = u64(orch_db_result_get(r, i, 5));
        s->cost_usd = strtod(orch_db_result_get(r, i, 6), NULL);
        s->duration_ms = u64(orch_db_result_get(r, i, 7));
    }
    *n = k;
    orch_db_result_free(r);
    return ORCH_OK;
}

orch_err launcher_store_count_status(orch_db_conn *c, uint64_t dl, int64_t *counts)
{
    orch_db_result *r;
    orch_err err =
        orch_db_exec(c, dl, "SELECT status, count(*) FROM jobs GROUP BY status", 0, NULL, &r);
    if (err)
        return err;
    for (int k = 0; k < 6; k++)
        counts[k] = 0;
    for (int i = 0; i < orch_db_result_rows(r); i++)
        for (int k = 0; k < 6; k++)
            if (strcmp(orch_db_result_get(r, i, 0), launcher_job_statuses[k]) == 0)
                counts[k] = i64(orch_db_result_get(r, i, 1));
    orch_db_result_free(r);
    return ORCH_OK;
}
