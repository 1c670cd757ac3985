/*
 * cmd_lease.c - `orchctl lease ...`: every RPC of lease-service.
 *
 * `acquire` takes the lease on behalf of a process: by default orchctl's
 * parent (the shell or script that runs it), so that a script holds the
 * lease for as long as it lives; --owner-pid names another process. The
 * owner's identity (host, boot id, pid, start time) is read here from /proc.
 *
 * Every call goes through the typed lease client (orch/lease_client.h), one
 * RPC client per command. --json prints the reply message; where the typed
 * result is all the client returns (Release, Validate, ForceRelease,
 * ProbeOwner) the reply is rebuilt from it, field for field.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orch/v1/lease.pb-c.h"
#include "orch/ident.h"
#include "orch/lease_client.h"
#include "orchctl.h"

static const char *liveness_name(Orch__V1__Liveness l)
{
    switch (l) {
    case ORCH__V1__LIVENESS__LIVENESS_ALIVE: return "alive";
    case ORCH__V1__LIVENESS__LIVENESS_DEAD: return "dead";
    case ORCH__V1__LIVENESS__LIVENESS_UNKNOWN: return "unknown";
    default: return "unspecified";
    }
}

static void print_lease(const Orch__V1__Lease *l)
{
    time_t at = (time_t)(l->acquired_unix_ms / 1000);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&at));
    printf("%-20s epoch %-6" PRIu64 " %-8s %s pid %d  %s  %s  %s  since %s%s%s\n", l->work_item,
           l->epoch, l->held ? "HELD" : "released", l->owner ? l->owner->host_id : "?",
           l->owner ? (int)l->owner->pid : 0, l->actor, l->transition, l->repo, when,
           l->held ? "" : "  ", l->held ? "" : l->release_reason);
}

/* Builds the identity of process `pid` on this host. */
static bool owner_of(pid_t pid, const char *instance, Orch__V1__Owner *o, orch_ident *id,
                     char *inst, size_t n)
{
    uint64_t ticks;
    if (orch_ident_init_from(getenv("ORCH_HOST_ID"), getenv("ORCH_BOOT_ID_PATH"), id) != ORCH_OK) {
        fprintf(stderr, "orchctl: cannot read this host's identity\n");
        return false;
    }
    if (orch_proc_start_ticks(pid, &ticks) != ORCH_OK) {
        fprintf(stderr, "orchctl: no process %d on this host\n", (int)pid);
        return false;
    }
    if (instance)
        snprintf(inst, n, "%s", instance);
    else
        snprintf(inst, n, "proc-%d-%" PRIu64, (int)pid, ticks);
    o->host_id = id->host_id;
    o->boot_id = id->boot_id;
    o->pid = (int32_t)pid;
    o->start_ticks = ticks;
    o->instance_id = inst;
    return true;
}

/* A client of lease-service; NULL after a message. */
static orch_rpc_client *lease_client(const globals *g)
{
    return orchctl_open(g, orchctl_target("lease"));
}

/* The exit status of a call of `method` that returned `err`: 0, or the RPC
 * error printed. */
static int call_status(const globals *g, orch_err err, const char *method,
                       const orch_rpc_status *st)
{
    return err == ORCH_OK ? EXIT_OK : orchctl_rpc_error(g, method, st);
}

/* Prints the answer to Acquire of `item`; returns the exit status. */
static int print_acquire(const globals *g, const char *item, const Orch__V1__AcquireReply *r)
{
    bool held = r->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_HELD;
    if (g->json) {
        orchctl_print_json(&r->base);
    } else if (!held) {
        printf("GRANTED %s epoch %" PRIu64 "%s%s%s\n", item, r->epoch,
               r->reclaimed ? " (taken over from a dead owner)" : "",
               r->already_held ? " (already held by this owner)" : "",
               r->inert ? " (inert: lease switched off or repo out of scope)" : "");
    } else {
        printf("HELD %s by another owner, owner %s:\n", item, liveness_name(r->holder_liveness));
        if (r->holder)
            print_lease(r->holder);
    }
    return held ? EXIT_HELD : EXIT_OK;
}

static int lease_acquire(const orchctl_args *a, const globals *g)
{
    const char *repo = orchctl_opt(a, "repo", getenv("ORCH_ORCHESTRATOR_REPO"));
    uint64_t pid = (uint64_t)getppid();
    if (!orchctl_opt_u64(a, "owner-pid", INT32_MAX, &pid))
        return EXIT_USAGE;
    if (a->npos != 1)
        return orchctl_usage_error(a);
    Orch__V1__Owner owner = ORCH__V1__OWNER__INIT;
    orch_ident id;
    char inst[64];
    if (!owner_of((pid_t)pid, orchctl_opt(a, "instance", NULL), &owner, &id, inst, sizeof inst))
        return EXIT_USAGE;
    orch_lease_acquire_req req = {
        .work_item = a->pos[0],
        .repo = repo && repo[0] ? repo : "orch",
        .transition = orchctl_opt(a, "transition", "manual"),
        .actor = orchctl_opt(a, "actor", "orchctl"),
        .owner = &owner,
    };
    orch_rpc_client *c = lease_client(g);
    if (!c)
        return EXIT_USAGE;
    orch_rpc_status st;
    orch_lease_acquire_res r;
    int rc =
        call_status(g, orch_lease_acquire(c, NULL, &req, &st, &r), orch_lease_method_acquire, &st);
    orch_rpc_client_close(c);
    if (rc)
        return rc;
    rc = print_acquire(g, req.work_item, r.reply);
    orch_lease_acquire_res_free(&r);
    return rc;
}

/* Parses "WORK_ITEM EPOCH" positional arguments and opens the client, to
 * be closed by the caller; NULL after a message (exit EXIT_USAGE). */
static orch_rpc_client *item_epoch(const orchctl_args *a, const globals *g, const char **item,
                                   uint64_t *epoch)
{
    if (a->npos != 2) {
        orchctl_usage_error(a);
        return NULL;
    }
    *item = a->pos[0];
    return orchctl_parse_u64("EPOCH", a->pos[1], epoch) ? lease_client(g) : NULL;
}

static int lease_release(const orchctl_args *a, const globals *g)
{
    const char *item;
    uint64_t epoch;
    orch_rpc_client *c = item_epoch(a, g, &item, &epoch);
    if (!c)
        return EXIT_USAGE;
    orch_rpc_status st;
    orch_lease_release_res r;
    int rc = call_status(g, orch_lease_release(c, NULL, item, epoch, NULL, &st, &r),
                         orch_lease_method_release, &st);
    orch_rpc_client_close(c);
    if (rc)
        return rc;
    Orch__V1__ReleaseReply m = ORCH__V1__RELEASE_REPLY__INIT;
    m.already_released = r.already_released;
    m.released_epoch = r.released_epoch;
    if (g->json)
        orchctl_print_json(&m.base);
    else
        printf("released %s epoch %" PRIu64 "%s\n", item, epoch,
               r.already_released ? " (it already was)" : "");
    return EXIT_OK;
}

static int lease_validate(const orchctl_args *a, const globals *g)
{
    const char *item;
    uint64_t epoch;
    orch_rpc_client *c = item_epoch(a, g, &item, &epoch);
    if (!c)
        return EXIT_USAGE;
    orch_rpc_status st;
    orch_lease_validate_res r;
    int rc = call_status(g, orch_lease_validate(c, NULL, item, epoch, &st, &r),
                         orch_lease_method_validate, &st);
    orch_rpc_client_close(c);
    if (rc)
        return rc;
    Orch__V1__ValidateReply m = ORCH__V1__VALIDATE_REPLY__INIT;
    m.valid = r.valid;
    m.current_epoch = r.current_epoch;
    m.held = r.held;
    if (g->json)
        orchctl_print_json(&m.base);
    else if (r.valid)
        printf("valid: %s epoch %" PRIu64 " is the live grant\n", item, epoch);
    else
        printf("not valid: %s is at epoch %" PRIu64 ", %s\n", item, r.current_epoch,
               r.held ? "held" : "not held");
    return r.valid ? EXIT_OK : EXIT_HELD;
}

/* The epoch of the live grant of `item` (0 when it is not held, with a
 * message); an RPC failure is returned as its exit status. */
static int read_live_epoch(const globals *g, orch_rpc_client *c, const char *item, uint64_t *epoch)
{
    orch_rpc_status st;
    Orch__V1__Lease *l = NULL;
    int rc = call_status(g, orch_lease_get(c, NULL, item, &st, &l), orch_lease_method_get, &st);
    if (rc)
        return rc;
    bool held = l->held;
    *epoch = held ? l->epoch : 0;
    if (!held)
        fprintf(stderr, "orchctl: %s is not held (epoch %" PRIu64 ", %s)\n", item, l->epoch,
                l->release_reason);
    orch_lease_free(l);
    return held ? EXIT_OK : EXIT_RPC_BASE + ORCH_CODE_FAILED_PRECONDITION;
}

/* ForceRelease of `req` (its epoch read first when 0) on `c`; prints the
 * result and returns the exit status. */
static int force_release(const globals *g, orch_rpc_client *c, orch_lease_force_release_req *req)
{
    /* Without --epoch, the live grant is read first: the release names it,
     * so a resend never releases a newer grant. */
    int rc = req->epoch ? EXIT_OK : read_live_epoch(g, c, req->work_item, &req->epoch);
    if (rc)
        return rc;
    orch_rpc_status st;
    orch_lease_release_res r;
    rc = call_status(g, orch_lease_force_release(c, NULL, req, &st, &r),
                     orch_lease_method_force_release, &st);
    if (rc)
        return rc;
    Orch__V1__ForceReleaseReply m = ORCH__V1__FORCE_RELEASE_REPLY__INIT;
    m.released_epoch = r.released_epoch;
    m.already_released = r.already_released;
    if (g->json)
        orchctl_print_json(&m.base);
    else
        printf("force-released %s epoch %" PRIu64 "%s\n", req->work_item, r.released_epoch,
               r.already_released ? " (already, by an earlier call)" : "");
    return EXIT_OK;
}

static int lease_force_release(const orchctl_args *a, const globals *g)
{
    const char *op = orchctl_opt(a, "operator", getenv("USER"));
    orch_lease_force_release_req req = {
        .reason = orchctl_opt(a, "reason", NULL),
        .operator_ = op ? op : "",
    };
    if (!orchctl_opt_u64(a, "epoch", UINT64_MAX, &req.epoch))
        return EXIT_USAGE;
    if (a->npos != 1 || !req.reason)
        return orchctl_usage_error(a);
    req.work_item = a->pos[0];
    orch_rpc_client *c = lease_client(g);
    if (!c)
        return EXIT_USAGE;
    int rc = force_release(g, c, &req);
    orch_rpc_client_close(c);
    return rc;
}

static int lease_show(const orchctl_args *a, const globals *g)
{
    if (a->npos != 1)
        return orchctl_usage_error(a);
    orch_rpc_client *c = lease_client(g);
    if (!c)
        return EXIT_USAGE;
    orch_rpc_status st;
    Orch__V1__Lease *l = NULL;
    int rc =
        call_status(g, orch_lease_get(c, NULL, a->pos[0], &st, &l), orch_lease_method_get, &st);
    orch_rpc_client_close(c);
    if (rc)
        return rc;
    if (g->json)
        orchctl_print_json(&l->base);
    else
        print_lease(l);
    orch_lease_free(l);
    return EXIT_OK;
}

static int lease_list_once(const orchctl_args *a, const globals *g)
{
    orch_lease_list_req req = {
        .held_only = !orchctl_flag(a, "all"),
        .repo = orchctl_opt(a, "repo", ""),
    };
    if (!orchctl_list_args(a, &req.limit))
        return EXIT_USAGE;
    orch_rpc_client *c = lease_client(g);
    if (!c)
        return EXIT_USAGE;
    orch_rpc_status st;
    orch_lease_list_res r;
    int rc = call_status(g, orch_lease_list(c, NULL, &req, &st, &r), orch_lease_method_list, &st);
    orch_rpc_client_close(c);
    if (rc)
        return rc;
    if (g->json)
        orchctl_print_json(&r.reply->base);
    else if (r.n == 0)
        printf("no %sleases\n", req.held_only ? "held " : "");
    for (size_t i = 0; !g->json && i < r.n; i++)
        print_lease(r.leases[i]);
    orch_lease_list_res_free(&r);
    return EXIT_OK;
}

static int lease_list(const orchctl_args *a, const globals *g)
{
    return orchctl_watch(a, g, lease_list_once);
}

static int lease_probe(const orchctl_args *a, const globals *g)
{
    Orch__V1__Owner owner = ORCH__V1__OWNER__INIT;
    uint64_t pid;
    if (a->npos != 3)
        return orchctl_usage_error(a);
    if (!orchctl_parse_u64("PID", a->pos[0], &pid) || pid > INT32_MAX ||
        !orchctl_parse_u64("START_TICKS", a->pos[1], &owner.start_ticks))
        return EXIT_USAGE;
    owner.pid = (int32_t)pid;
    owner.boot_id = a->pos[2];
    orch_rpc_client *c = lease_client(g);
    if (!c)
        return EXIT_USAGE;
    orch_rpc_status st;
    orch_lease_probe_res r;
    int rc = call_status(g, orch_lease_probe_owner(c, NULL, &owner, &st, &r),
                         orch_lease_method_probe_owner, &st);
    orch_rpc_client_close(c);
    if (rc)
        return rc;
    /* As answered: the owner named here has no host to check it against. */
    Orch__V1__ProbeOwnerReply m = ORCH__V1__PROBE_OWNER_REPLY__INIT;
    m.liveness = r.answer;
    m.reason = r.reason;
    m.host_id = r.host_id;
    m.boot_id = r.boot_id;
    if (g->json)
        orchctl_print_json(&m.base);
    else
        printf("%s on %s: %s\n", liveness_name(r.answer), r.host_id, r.reason);
    return EXIT_OK;
}

const orchctl_cmd orchctl_lease_cmds[] = {
    { "acquire",
      "WORK_ITEM [--repo R] [--transition T] [--actor A] [--owner-pid PID] [--instance ID]", "",
      ORCHCTL_OPTS({ "actor", true, 0 }, { "transition", true, 0 }, { "repo", true, 0 },
                   { "owner-pid", true, 0 }, { "instance", true, 0 }),
      lease_acquire, "take the lease for PID (default: orchctl's parent); exit 0 GRANTED, 3 HELD",
      NULL, NULL },
    { "release", "WORK_ITEM EPOCH", "", NULL, lease_release,
      "release a lease you hold (73: not the live grant)", NULL, NULL },
    { "validate", "WORK_ITEM EPOCH", "", NULL, lease_validate,
      "exit 0 if EPOCH is the live grant, else 3", NULL, NULL },
    { "force-release", "WORK_ITEM --reason TEXT [--epoch N] [--operator NAME]", "",
      ORCHCTL_OPTS({ "epoch", true, 0 }, { "operator", true, 0 }, { "reason", true, 0 }),
      lease_force_release, "operator action; recorded and alerted", NULL, NULL },
    { "show", "WORK_ITEM", "", NULL, lease_show, "the lease row", NULL, NULL },
    { "list", "[--all] [--repo R] [--limit N] [-w|--watch [--interval MS] [--count N]]", "",
      ORCHCTL_OPTS({ "all", false, 0 }, { "repo", true, 0 }, { "limit", true, 0 },
                   ORCHCTL_WATCH_OPTS),
      lease_list, "held leases (--all: released too); -w: again every MS until Ctrl-C", NULL,
      NULL },
    { "probe", "PID START_TICKS BOOT_ID", "", NULL, lease_probe,
      "is this process alive on the service's host", NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL },
};
