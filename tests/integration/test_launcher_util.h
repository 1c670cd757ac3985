/*
 * test_launcher_util.h - helpers of the launcher-service integration tests:
 * starting the service with the fake agent, typed Spawn/Wait/Get/Cancel
 * calls, a recording StageService server, /proc checks.
 */
#ifndef ORCH_TEST_LAUNCHER_UTIL_H
#define ORCH_TEST_LAUNCHER_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"
#include "orch/v1/launcher.pb-c.h"

#define LN_M(name) "orch.v1.LauncherService/" name

/* A fresh folder under /tmp (workdir and output folder of a test). */
void ln_tmpdir(char *out, size_t n);

/* Starts launcher-service on `db` with the fake agent as the command of
 * every role, its output folder `outdir`, and the extra env. */
void ln_start(th_svc *s, const char *db, const char *outdir, const char *const *extra);

typedef struct ln_job {
    orch_code code;
    char message[512];
    uint64_t id;
    char status[16];
    int32_t pid;
    char finish_reason[256];
    char monitor_state[32];
    char stdout_path[1200];
    bool finished;
    bool have_run;
    bool usage_known, cost_known;
    uint64_t input_tokens, output_tokens;
    double cost_usd;
    int32_t exit_status;
    char verdicts[1024]; /* "key=value;" ... */
} ln_job;

ln_job ln_spawn(const th_svc *s, const char *role, const char *item, const char *prompt,
                const char *workdir, uint32_t timeout_s, const char *stage);
ln_job ln_wait(const th_svc *s, uint64_t id, uint32_t wait_ms);
ln_job ln_cancel(const th_svc *s, uint64_t id);

/* Whether process `pid` exists (and is not a zombie). */
bool ln_proc_alive(pid_t pid);
/* Reads a pid from a file (0 if absent). */
pid_t ln_read_pid(const char *path);

/* The recording StageService: answers AdvanceStage with DEFERRED for the
 * first `defer_first` calls, then ADVANCED. */
typedef struct ln_stage_call {
    char work_item[64], expected_from[32], to[32], actor[32];
    char evidence[512];
    int nverdicts;
} ln_stage_call;
void ln_stage_start(int defer_first, char *url, size_t n);
int ln_stage_calls(ln_stage_call *out, int max);
void ln_stage_stop(void);

#endif
