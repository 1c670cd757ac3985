/*
 * test_rpc_checks.c - the services' RPC input checks (lease_rpc_check,
 * stage_rpc_check, guard_rpc_check, launcher_rpc_check), which the
 * handlers and the fuzz targets share; no database.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "guard_rpc.h"
#include "launcher_rpc.h"
#include "lease_rpc.h"
#include "orch/v1/guard.pb-c.h"
#include "orch/v1/launcher.pb-c.h"
#include "orch/v1/lease.pb-c.h"
#include "orch/v1/stage.pb-c.h"
#include "stage_rpc.h"

Test(rpc_checks, lease_release_with_epoch_zero_is_refused)
{
    Orch__V1__ReleaseRequest r = ORCH__V1__RELEASE_REQUEST__INIT;
    char why[200];
    r.work_item = "ORCH-1";
    cr_assert_eq(lease_rpc_check(&r.base, NULL, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_str_eq(why, "epoch must be positive, or owner set to release by owner");
    r.epoch = 3;
    cr_assert_eq(lease_rpc_check(&r.base, NULL, why, sizeof why), ORCH_CODE_OK);
}

Test(rpc_checks, lease_release_by_owner_needs_a_valid_owner)
{
    Orch__V1__ReleaseRequest r = ORCH__V1__RELEASE_REQUEST__INIT;
    Orch__V1__Owner o = ORCH__V1__OWNER__INIT;
    lease_owner got;
    char why[200];
    r.work_item = "ORCH-1";
    r.owner = &o;
    cr_assert_eq(lease_rpc_check(&r.base, &got, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
    o.host_id = "h1";
    o.boot_id = "b1";
    o.instance_id = "i1";
    o.pid = 42;
    o.start_ticks = 7;
    cr_assert_eq(lease_rpc_check(&r.base, &got, why, sizeof why), ORCH_CODE_OK, "%s", why);
    cr_assert_eq(got.pid, 42);
    cr_assert_str_eq(got.instance_id, "i1");
}

Test(rpc_checks, lease_force_release_needs_its_epoch)
{
    Orch__V1__ForceReleaseRequest r = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    char why[200];
    r.work_item = "ORCH-1";
    r.reason = "stuck";
    cr_assert_eq(lease_rpc_check(&r.base, NULL, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert(strstr(why, "epoch is required"), "%s", why);
    r.epoch = 9;
    cr_assert_eq(lease_rpc_check(&r.base, NULL, why, sizeof why), ORCH_CODE_OK, "%s", why);
}

Test(rpc_checks, lease_acquire_fills_the_owner)
{
    Orch__V1__Owner o = ORCH__V1__OWNER__INIT;
    Orch__V1__AcquireRequest a = ORCH__V1__ACQUIRE_REQUEST__INIT;
    o.host_id = "h1";
    o.boot_id = "b1";
    o.instance_id = "i1";
    o.pid = 7;
    o.start_ticks = 9;
    a.work_item = "ORCH-1";
    a.repo = "orch/orch";
    a.transition = "review->testing";
    a.actor = "monitor";
    a.owner = &o;
    lease_owner got;
    char why[200];
    cr_assert_eq(lease_rpc_check(&a.base, &got, why, sizeof why), ORCH_CODE_OK, "%s", why);
    cr_assert_str_eq(got.host_id, "h1");
    cr_assert_eq(got.pid, 7);
    a.owner = NULL;
    cr_assert_eq(lease_rpc_check(&a.base, &got, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
}

Test(rpc_checks, request_of_another_service_is_refused)
{
    Orch__V1__GetTaskRequest g = ORCH__V1__GET_TASK_REQUEST__INIT;
    char why[200];
    cr_assert_eq(lease_rpc_check(&g.base, NULL, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_eq(guard_rpc_check(&g.base, 100, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
}

Test(rpc_checks, stage_rollback_from_done_is_refused)
{
    Orch__V1__RollbackRequest r = ORCH__V1__ROLLBACK_REQUEST__INIT;
    char why[320];
    r.work_item = "ORCH-1";
    r.expected_from = "done";
    r.reason = "wrong";
    cr_assert_eq(stage_rpc_check(&r.base, 1000, NULL, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert(strstr(why, "no rollback from \"done\""), "%s", why);
    r.expected_from = "review";
    cr_assert_eq(stage_rpc_check(&r.base, 1000, NULL, why, sizeof why), ORCH_CODE_OK, "%s", why);
}

Test(rpc_checks, stage_advance_over_the_evidence_bound_is_refused)
{
    Orch__V1__AdvanceStageRequest a = ORCH__V1__ADVANCE_STAGE_REQUEST__INIT;
    char why[320];
    orch_verdicts ev;
    a.work_item = "ORCH-1";
    a.actor = "monitor";
    a.evidence = "test_status: PASS\n";
    cr_assert_eq(stage_rpc_check(&a.base, 4, &ev, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_eq(stage_rpc_check(&a.base, 1000, &ev, why, sizeof why), ORCH_CODE_OK, "%s", why);
    cr_assert_str_eq(orch_verdicts_get(&ev, "test_status"), "PASS");
}

Test(rpc_checks, guard_state_name_and_id_together_are_refused)
{
    Orch__V1__UpdateIssueStateRequest u = ORCH__V1__UPDATE_ISSUE_STATE_REQUEST__INIT;
    char why[200];
    u.project_id = "p1";
    u.issue_id = "i1";
    u.state_name = "Done";
    u.state_id = "s1";
    cr_assert_eq(guard_rpc_check(&u.base, 100, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert_str_eq(why, "give state_name or state_id, not both");
}

static bool never_dir(const char *path)
{
    (void)path;
    return false;
}

Test(rpc_checks, launcher_job_id_past_bigint_is_not_found)
{
    Orch__V1__GetJobRequest g = ORCH__V1__GET_JOB_REQUEST__INIT;
    launcher_rpc_limits lim = { 3600, never_dir };
    char why[320];
    g.job_id = (uint64_t)INT64_MAX + 1;
    cr_assert_eq(launcher_rpc_check(&g.base, &lim, why, sizeof why), ORCH_CODE_NOT_FOUND);
    g.job_id = 0;
    cr_assert_eq(launcher_rpc_check(&g.base, &lim, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
    g.job_id = 5;
    cr_assert_eq(launcher_rpc_check(&g.base, &lim, why, sizeof why), ORCH_CODE_OK);
}

Test(rpc_checks, launcher_spawn_in_a_missing_workdir_is_refused)
{
    Orch__V1__SpawnRequest s = ORCH__V1__SPAWN_REQUEST__INIT;
    launcher_rpc_limits lim = { 3600, never_dir };
    char why[320];
    s.role = "developer";
    s.work_item = "ORCH-1";
    s.prompt = "do it";
    s.workdir = "/nowhere";
    s.timeout_s = 60;
    cr_assert_eq(launcher_rpc_check(&s.base, &lim, why, sizeof why), ORCH_CODE_INVALID_ARGUMENT);
    cr_assert(strstr(why, "workdir"), "%s", why);
}
