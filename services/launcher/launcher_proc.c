/*
 * launcher_proc.c - the single transport: the only code of the project that
 * starts a process (DESIGN.md invariant 10; docs/architecture/
 * llm-call-sites.md, entry S0).
 *
 * The supervisor thread claims queued jobs of this host, starts each agent
 * with posix_spawnp in a process group of its own (prompt file on stdin,
 * stdout and stderr to files under ORCH_LAUNCHER_OUTPUT_DIR), and every
 * ORCH_LAUNCHER_POLL_MS looks at each process: exit, timeout, cancellation,
 * output over its bound. Ending a job early sends SIGTERM to the whole group,
 * then SIGKILL after ORCH_LAUNCHER_KILL_GRACE_MS. When the group leader has
 * exited the rest of the group is killed before the leader is reaped, so no
 * member outlives its job. The service is a child subreaper, so group
 * members whose parent died are reaped here too.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launcher_svc.h"
#include "orch/clock.h"
#include "orch/ident.h"
#include "orch/log.h"

extern char **environ;

/* Variables never passed to an agent: the secrets of the services. */
static const char *const withheld[] = { "ORCH_DATABASE_URL=", "ORCH_RPC_AUTH_TOKEN=",
                                        "ORCH_RPC_TOKENS=", "ORCH_RPC_ROLE_TOKEN=", NULL };

void launcher_wake(launcher_svc *ls)
{
    pthread_mutex_lock(&ls->mu);
    orch_ticker_wake(ls->supervisor);
    pthread_mutex_unlock(&ls->mu);
}

static launcher_slot *slot_of(launcher_svc *ls, uint64_t id)
{
    for (int i = 0; i < ls->nslots; i++)
        if (ls->slots[i].used && ls->slots[i].job.id == id)
            return &ls->slots[i];
    return NULL;
}

static bool mark(launcher_svc *ls, uint64_t id, launcher_kill why)
{
    pthread_mutex_lock(&ls->mu);
    launcher_slot *s = slot_of(ls, id);
    if (s && s->kill == KILL_NONE)
        s->kill = why;
    orch_ticker_wake(ls->supervisor);
    pthread_mutex_unlock(&ls->mu);
    return s != NULL;
}

bool launcher_proc_cancel(launcher_svc *ls, uint64_t id)
{
    return mark(ls, id, KILL_CANCEL);
}

bool launcher_proc_ceiling(launcher_svc *ls, uint64_t id)
{
    return mark(ls, id, KILL_CEILING);
}

bool launcher_proc_tracks(launcher_svc *ls, uint64_t id)
{
    pthread_mutex_lock(&ls->mu);
    bool t = slot_of(ls, id) != NULL;
    pthread_mutex_unlock(&ls->mu);
    return t;
}

/* ---- starting ------------------------------------------------------------- */

/* The agent's environment: ours without the withheld secrets, plus the job's
 * identity. Returns a malloc'ed array whose strings point into `extra` or
 * environ. */
static char **child_env(char extra[4][300])
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 5, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool skip = strncmp(environ[i], "ORCH_JOB_", 9) == 0 ||
                    strncmp(environ[i], "ORCH_WORK_ITEM=", 15) == 0;
        for (size_t w = 0; withheld[w] && !skip; w++)
            skip = strncmp(environ[i], withheld[w], strlen(withheld[w])) == 0;
        if (!skip)
            env[k++] = environ[i];
    }
    for (int i = 0; i < 4; i++)
        env[k++] = extra[i];
    env[k] = NULL;
    return env;
}

static orch_err write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ORCH_EIO;
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return ORCH_EIO;
        }
        off += (size_t)w;
    }
    return close(fd) == 0 ? ORCH_OK : ORCH_EIO;
}

static int spawn_attrs(posix_spawnattr_t *a)
{
    sigset_t none, deflt;
    sigemptyset(&none);
    sigemptyset(&deflt);
    int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2 };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&deflt, sigs[i]);
    int rc = posix_spawnattr_init(a);
    if (!rc)
        rc = posix_spawnattr_setflags(a, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                             POSIX_SPAWN_SETSIGDEF);
    if (!rc)
        rc = posix_spawnattr_setpgroup(a, 0);
    if (!rc)
        rc = posix_spawnattr_setsigmask(a, &none);
    if (!rc)
        rc = posix_spawnattr_setsigdefault(a, &deflt);
    return rc;
}

static int spawn_files(posix_spawn_file_actions_t *fa, const launcher_job *j, const char *in,
                       const char *out, const char *err)
{
    int rc = posix_spawn_file_actions_init(fa);
    if (!rc)
        rc = posix_spawn_file_actions_addopen(fa, 0, in, O_RDONLY, 0);
    if (!rc)
        rc = posix_spawn_file_actions_addopen(fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (!rc)
        rc = posix_spawn_file_actions_addopen(fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (!rc)
        rc = posix_spawn_file_actions_addchdir_np(fa, j->workdir);
    return rc;
}

#define PRLIMIT_PATH "/usr/bin/prlimit"

/* Starts the agent of `j` (S0 in llm-call-sites.md). On success *pid is
 * the process, also its group id. `why` gets the failure. */
static orch_err launcher_proc_spawn(launcher_svc *ls, const launcher_job *j, const char *prompt,
                                    const char *out, const char *err, pid_t *pid, char *why,
                                    size_t n)
{
    char in[1200], sid[24], buf[8192], extra[4][300];
    char *argv[LAUNCHER_MAX_ARGS + 1];
    snprintf(sid, sizeof sid, "%" PRIu64, j->id);
    snprintf(in, sizeof in, "%s/job-%s.prompt", ls->out_dir, sid);
    int ri = launcher_role_index(j->role);
    launcher_vars v = { j->role, j->work_item, sid, j->workdir, j->stage };
    int argc = ri < 0 ? 0 : launcher_argv_build(ls->templates[ri], &v, buf, sizeof buf, argv);
    if (argc <= 0) {
        snprintf(why, n, "no usable agent command for role %s", j->role);
        return ORCH_EINVAL;
    }
    /* A hard cap on each output file, set before the agent runs and
     * inherited by everything it starts (util-linux prlimit execs the
     * command with RLIMIT_FSIZE): a flood stops at the limit however late
     * the supervisor's poll comes (SIGXFSZ); the poll still kills the group. */
    char fsize[48];
    char *capped[LAUNCHER_MAX_ARGS + 4];
    if (ls->output_max > 0 && access(PRLIMIT_PATH, X_OK) == 0 && argc + 3 <= LAUNCHER_MAX_ARGS) {
        snprintf(fsize, sizeof fsize, "--fsize=%lld", (long long)ls->output_max + 1);
        capped[0] = PRLIMIT_PATH;
        capped[1] = fsize;
        capped[2] = "--";
        for (int i = 0; i <= argc; i++)
            capped[3 + i] = argv[i];
        memcpy(argv, capped, (size_t)(argc + 4) * sizeof argv[0]);
        argc += 3;
    }
    if (write_file(in, prompt) != ORCH_OK) {
        snprintf(why, n, "cannot write %.200s: %s", in, strerror(errno));
        return ORCH_EIO;
    }
    snprintf(extra[0], sizeof extra[0], "ORCH_JOB_ID=%s", sid);
    snprintf(extra[1], sizeof extra[1], "ORCH_JOB_ROLE=%s", j->role);
    snprintf(extra[2], sizeof extra[2], "ORCH_WORK_ITEM=%s", j->work_item);
    snprintf(extra[3], sizeof extra[3], "ORCH_JOB_STAGE=%s", j->stage);
    char **env = child_env(extra);
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    int rc = env ? spawn_attrs(&attr) : ENOMEM;
    if (!rc)
        rc = spawn_files(&fa, j, in, out, err);
    if (!rc)
        rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(env);
    if (rc) {
        snprintf(why, n, "cannot start %s: %s", argv[0], strerror(rc));
        return ORCH_EIO;
    }
    return ORCH_OK;
}

/* Claims one queued job and starts it; false when nothing was queued. */
static bool start_one(launcher_svc *ls, launcher_slot *slot)
{
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    launcher_job j;
    char *prompt = NULL, why[512] = "", out[1200], err[1200];
    bool found = false;
    if (orch_db_acquire(ls->db, dl, &c) != ORCH_OK)
        return false;
    orch_err e = launcher_store_claim(c, dl, ls->me->host_id, ls->me->boot_id, ls->me->instance_id,
                                      &found, &j, &prompt);
    if (e)
        orch_warn("cannot claim a queued job: %s: %s", orch_strerror(e), orch_db_last_error(c));
    orch_db_release(c);
    if (e || !found) {
        free(prompt);
        return false;
    }
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, j.work_item); /* cleared by the supervisor's tick */
    snprintf(out, sizeof out, "%s/job-%" PRIu64 ".out", ls->out_dir, j.id);
    snprintf(err, sizeof err, "%s/job-%" PRIu64 ".err", ls->out_dir, j.id);
    pid_t pid = 0;
    uint64_t ticks = 0;
    e = launcher_proc_spawn(ls, &j, prompt, out, err, &pid, why, sizeof why);
    free(prompt);
    if (!e && orch_proc_start_ticks(pid, &ticks) != ORCH_OK)
        ticks = 0; /* exited already: the supervisor sees it at once */
    if (orch_db_acquire(ls->db, dl, &c) != ORCH_OK)
        return true; /* the reaper finds the job (Tier-2) */
    bool done = false;
    if (e) {
        orch_warn("job %" PRIu64 " (%s, %s): %s", j.id, j.role, j.work_item, why);
        if (launcher_store_finish(c, dl, j.id, "failed", -1, why, "none", NULL, &done))
            orch_warn("job %" PRIu64 ": could not record the failure", j.id);
        orch_db_release(c);
        return true;
    }
    if (launcher_store_started(c, dl, j.id, pid, ticks, out, err))
        orch_warn("job %" PRIu64 ": could not record pid %d: %s", j.id, (int)pid,
                  orch_db_last_error(c));
    orch_db_release(c);
    snprintf(j.stdout_path, sizeof j.stdout_path, "%s", out);
    snprintf(j.stderr_path, sizeof j.stderr_path, "%s", err);
    orch_info("job %" PRIu64 " started: %s for %s, pid %d, timeout %u s", j.id, j.role, j.work_item,
              (int)pid, j.timeout_s);
    pthread_mutex_lock(&ls->mu);
    slot->used = true;
    slot->job = j;
    slot->pid = pid;
    slot->started_ms = orch_mono_ms();
    slot->deadline_ms = slot->started_ms + (uint64_t)j.timeout_s * 1000u;
    slot->term_sent_ms = 0;
    slot->kill = KILL_NONE;
    pthread_mutex_unlock(&ls->mu);
    return true;
}

/* ---- finishing ------------------------------------------------------------ */

/* Reads at most `max` bytes from the end of `path`; malloc'ed, *len set. */
static char *read_tail(const char *path, int64_t max, size_t *len)
{
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    off_t from = st.st_size > max ? st.st_size - (off_t)max : 0;
    size_t want = (size_t)(st.st_size - from);
    char *buf = malloc(want + 1);
    ssize_t got = buf ? pread(fd, buf, want, from) : -1;
    close(fd);
    if (got < 0) {
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    *len = (size_t)got;
    return buf;
}

static const char *status_of(const launcher_slot *s, int exit_status, char *reason, size_t n)
{
    switch (s->kill) {
    case KILL_TIMEOUT:
        snprintf(reason, n, "timeout after %u s", s->job.timeout_s);
        return "timed_out";
    case KILL_CANCEL: snprintf(reason, n, "cancelled"); return "cancelled";
    case KILL_OUTPUT:
        snprintf(reason, n, "output over ORCH_LAUNCHER_OUTPUT_MAX_BYTES");
        return "failed";
    case KILL_CEILING:
        snprintf(reason, n, "reaped: tier-3, running over ORCH_REAPER_MAX_RUNNING_S");
        return "failed";
    case KILL_NONE: break;
    }
    if (exit_status == 128 + SIGXFSZ) {
        snprintf(reason, n, "output over ORCH_LAUNCHER_OUTPUT_MAX_BYTES (file size limit)");
        return "failed";
    }
    if (exit_status > 128)
        snprintf(reason, n, "killed by signal %d", exit_status - 128);
    else
        snprintf(reason, n, "exit %d", exit_status);
    return exit_status == 0 ? "succeeded" : "failed";
}

static void account(launcher_svc *ls, const launcher_run *run)
{
    int ri = launcher_role_index(run->role);
    if (ri < 0)
        return;
    orch_counter_add(ls->m_runs, (size_t)ri, 1);
    if (run->usage.cost_known)
        orch_counter_add(ls->m_cost, (size_t)ri, (uint64_t)(run->usage.cost_usd * 1e6 + 0.5));
    if (run->usage.usage_known) {
        orch_counter_add2(ls->m_tokens, (size_t)ri, 0, run->usage.input_tokens);
        orch_counter_add2(ls->m_tokens, (size_t)ri, 1, run->usage.output_tokens);
    }
}

/* Records the end of the job in `s` (its process already reaped). */
static void finish(launcher_svc *ls, launcher_slot *s, int exit_status)
{
    launcher_run run;
    memset(&run, 0, sizeof run);
    snprintf(run.role, sizeof run.role, "%s", s->job.role);
    snprintf(run.work_item, sizeof run.work_item, "%s", s->job.work_item);
    run.exit_status = exit_status;
    run.duration_ms = orch_mono_ms() - s->started_ms;
    orch_verdicts_init(&run.verdicts);
    size_t len;
    char *text = read_tail(s->job.stdout_path[0] ? s->job.stdout_path : "", ls->parse_max, &len);
    if (text)
        launcher_output_scan(text, len, &run.verdicts, &run.usage);
    free(text);
    char reason[256], why[256];
    const char *status = status_of(s, exit_status, reason, sizeof reason);
    const launcher_route *r = launcher_route_find(s->job.role, s->job.stage);
    const char *mon = "skipped";
    if (r && s->kill != KILL_CANCEL) {
        bool ok = strcmp(status, "succeeded") == 0;
        mon = launcher_decide(r, ok, &run.verdicts, why, sizeof why) == LAUNCHER_ADVANCE
                  ? "pending"
                  : "not-advanced";
    }
    uint64_t dl = orch_mono_ms() + 10000;
    orch_db_conn *c = NULL;
    bool done = false;
    orch_err e = orch_db_acquire(ls->db, dl, &c);
    if (!e) {
        e = launcher_store_finish(c, dl, s->job.id, status, exit_status, reason, mon, &run, &done);
        if (!e && done && strcmp(mon, "not-advanced") == 0)
            e = launcher_store_set_monitor(c, dl, s->job.id, mon, why);
        orch_db_release(c);
    }
    if (e)
        orch_error("job %" PRIu64 ": could not record its end (%s): %s", s->job.id, status,
                   orch_strerror(e));
    if (done)
        account(ls, &run);
    orch_info("job %" PRIu64 " %s: %s; %zu verdict(s); report %s", s->job.id, status, reason,
              run.verdicts.n, mon);
    pthread_mutex_lock(&ls->mu);
    orch_ticker_wake(ls->background);
    pthread_mutex_unlock(&ls->mu);
}

/* Kills what is left of group `pgid` and reaps its members that are our
 * children (bounded). */
static void sweep_group(pid_t pgid)
{
    kill(-pgid, SIGKILL);
    for (int i = 0; i < 1000; i++)
        if (waitpid(-pgid, NULL, WNOHANG) <= 0)
            break;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Looks at one running slot: exit, or the next step of ending it. */
static void tend(launcher_svc *ls, launcher_slot *s, uint64_t now)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)s->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == s->pid) {
        /* The leader is a zombie: its pid, the group id, cannot be reused. */
        kill(-s->pid, SIGKILL);
        int st = 0;
        waitpid(s->pid, &st, 0);
        sweep_group(s->pid);
        int exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        finish(ls, s, exit_status);
        pthread_mutex_lock(&ls->mu);
        s->used = false;
        pthread_mutex_unlock(&ls->mu);
        return;
    }
    pthread_mutex_lock(&ls->mu);
    if (s->kill == KILL_NONE && now >= s->deadline_ms)
        s->kill = KILL_TIMEOUT;
    if (s->kill == KILL_NONE && (file_size(s->job.stdout_path) > ls->output_max ||
                                 file_size(s->job.stderr_path) > ls->output_max))
        s->kill = KILL_OUTPUT;
    launcher_kill k = s->kill;
    pthread_mutex_unlock(&ls->mu);
    if (k == KILL_NONE)
        return;
    if (s->term_sent_ms == 0 && k != KILL_CEILING && k != KILL_OUTPUT) {
        kill(-s->pid, SIGTERM);
        s->term_sent_ms = now;
        orch_info("job %" PRIu64 ": SIGTERM to group %d", s->job.id, (int)s->pid);
    } else if (s->term_sent_ms == 0 || now - s->term_sent_ms >= (uint64_t)ls->kill_grace_ms) {
        kill(-s->pid, SIGKILL);
        if (s->term_sent_ms == 0)
            s->term_sent_ms = now;
    }
}

static void poll_cancels(launcher_svc *ls)
{
    uint64_t ids[64];
    size_t n = 0;
    uint64_t dl = orch_mono_ms() + 5000;
    orch_db_conn *c = NULL;
    if (orch_db_acquire(ls->db, dl, &c) != ORCH_OK)
        return;
    orch_err e = launcher_store_cancel_asked(c, dl, ls->me->instance_id, ids, 64, &n);
    orch_db_release(c);
    for (size_t i = 0; !e && i < n; i++)
        (void)mark(ls, ids[i], KILL_CANCEL);
}

/* One supervisor pass, every ORCH_LAUNCHER_POLL_MS or when woken. */
static bool supervisor_tick(void *arg)
{
    launcher_svc *ls = arg;
    pthread_mutex_lock(&ls->mu);
    int busy = 0;
    for (int i = 0; i < ls->nslots; i++)
        busy += ls->slots[i].used ? 1 : 0;
    pthread_mutex_unlock(&ls->mu);
    if (busy)
        poll_cancels(ls);
    uint64_t now = orch_mono_ms();
    /* The lines about a job carry its work item (the log context). */
    for (int i = 0; i < ls->nslots; i++) {
        if (!ls->slots[i].used)
            continue;
        orch_log_ctx_set(ORCH_LOG_WORK_ITEM, ls->slots[i].job.work_item);
        tend(ls, &ls->slots[i], now);
        orch_log_ctx_clear();
    }
    for (int i = 0; i < ls->nslots; i++) {
        if (ls->slots[i].used)
            continue;
        bool started = start_one(ls, &ls->slots[i]);
        orch_log_ctx_clear();
        if (!started)
            break;
    }
    return true;
}

orch_err launcher_proc_start(launcher_svc *ls)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", ls->out_dir);
    for (char *p = dir + 1; *p; p++) { /* mkdir -p */
        if (*p != '/')
            continue;
        *p = '\0';
        (void)mkdir(dir, 0750);
        *p = '/';
    }
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        orch_error("ORCH_LAUNCHER_OUTPUT_DIR %s cannot be created: %s; Spawn fails until it "
                   "exists",
                   ls->out_dir, strerror(errno));
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        orch_warn("cannot become a child subreaper: %s", strerror(errno));
    orch_ticker *t = NULL;
    orch_err err =
        orch_ticker_start("supervisor", (uint32_t)ls->poll_ms, 0, supervisor_tick, ls, &t);
    if (err)
        return err;
    pthread_mutex_lock(&ls->mu);
    ls->supervisor = t;
    pthread_mutex_unlock(&ls->mu);
    return ORCH_OK;
}

/* At stop, the processes still running are ended like a cancellation (TERM,
 * grace, KILL) but their jobs stay `running`: the next start of this host's
 * launcher requeues them. */
void launcher_proc_stop(launcher_svc *ls)
{
    pthread_mutex_lock(&ls->mu);
    orch_ticker *t = ls->supervisor;
    ls->supervisor = NULL;
    pthread_mutex_unlock(&ls->mu);
    if (!t)
        return;
    orch_ticker_stop(t);
    for (int i = 0; i < ls->nslots; i++) {
        if (!ls->slots[i].used)
            continue;
        kill(-ls->slots[i].pid, SIGKILL);
        waitpid(ls->slots[i].pid, NULL, 0);
        sweep_group(ls->slots[i].pid);
        orch_info("job %" PRIu64 " left running for the next start to requeue",
                  ls->slots[i].job.id);
    }
}
