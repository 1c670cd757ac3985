/*
 * cmd_lease.c - `orchctl lease ...`: every RPC of lease-service.
 *
 * `acquire` takes the lease on behalf of a process: by default orchctl's
 * parent (the shell or script that runs it), so that a script holds the
 * lease for as long as it lives; --owner-pid names another process. The
 * owner's identity (host, boot id, pid, start time) is read here from /proc.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orch/v1/lease.pb-c.h"
#include "orch/ident.h"
#include "orchctl.h"

#define M(name) "orch.v1.LeaseService/" name

static const char *liveness_name(Orch__V1__Liveness l)
{
    switch (l) {
    case ORCH__V1__LIVENESS__ALIVE: return "alive";
    case ORCH__V1__LIVENESS__DEAD: return "dead";
    case ORCH__V1__LIVENESS__UNKNOWN: return "unknown";
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

/* Prints the answer to Acquire of `item`; returns the exit status. */
static int print_acquire(const globals *g, const char *item, const ProtobufCMessage *m)
{
    const Orch__V1__AcquireReply *r = (const Orch__V1__AcquireReply *)m;
    bool held = r->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__HELD;
    if (g->json) {
        orchctl_print_json(m);
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
    Orch__V1__AcquireRequest req = ORCH__V1__ACQUIRE_REQUEST__INIT;
    Orch__V1__Owner owner = ORCH__V1__OWNER__INIT;
    orch_ident id;
    char inst[64];
    if (!owner_of((pid_t)pid, orchctl_opt(a, "instance", NULL), &owner, &id, inst, sizeof inst))
        return EXIT_USAGE;
    req.work_item = a->pos[0];
    req.repo = (char *)(repo && repo[0] ? repo : "orch");
    req.transition = (char *)orchctl_opt(a, "transition", "manual");
    req.actor = (char *)orchctl_opt(a, "actor", "orchctl");
    req.owner = &owner;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("lease"), M("Acquire"), &req.base,
                          &orch__v1__acquire_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    rc = print_acquire(g, req.work_item, m);
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* Parses "WORK_ITEM EPOCH" positional arguments. */
static bool item_epoch(const orchctl_args *a, char **item, uint64_t *epoch)
{
    if (a->npos != 2) {
        orchctl_usage_error(a);
        return false;
    }
    *item = a->pos[0];
    return orchctl_parse_u64("EPOCH", a->pos[1], epoch);
}

static int lease_release(const orchctl_args *a, const globals *g)
{
    Orch__V1__ReleaseRequest req = ORCH__V1__RELEASE_REQUEST__INIT;
    if (!item_epoch(a, &req.work_item, &req.epoch))
        return EXIT_USAGE;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("lease"), M("Release"), &req.base,
                          &orch__v1__release_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__ReleaseReply *r = (const Orch__V1__ReleaseReply *)m;
    if (g->json)
        orchctl_print_json(m);
    else
        printf("released %s epoch %" PRIu64 "%s\n", req.work_item, req.epoch,
               r->already_released ? " (it already was)" : "");
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

static int lease_validate(const orchctl_args *a, const globals *g)
{
    Orch__V1__ValidateRequest req = ORCH__V1__VALIDATE_REQUEST__INIT;
    if (!item_epoch(a, &req.work_item, &req.epoch))
        return EXIT_USAGE;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("lease"), M("Validate"), &req.base,
                          &orch__v1__validate_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__ValidateReply *r = (const Orch__V1__ValidateReply *)m;
    bool valid = r->valid;
    if (g->json)
        orchctl_print_json(m);
    else if (valid)
        printf("valid: %s epoch %" PRIu64 " is the live grant\n", req.work_item, req.epoch);
    else
        printf("not valid: %s is at epoch %" PRIu64 ", %s\n", req.work_item, r->current_epoch,
               r->held ? "held" : "not held");
    protobuf_c_message_free_unpacked(m, NULL);
    return valid ? EXIT_OK : EXIT_HELD;
}

/* The epoch of the live grant of `item` (0 when it is not held, with a
 * message); an RPC failure is returned as its exit status. */
static int read_live_epoch(const globals *g, const char *item, uint64_t *epoch)
{
    Orch__V1__GetLeaseRequest req = ORCH__V1__GET_LEASE_REQUEST__INIT;
    req.work_item = (char *)item;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("lease"), M("Get"), &req.base,
                          &orch__v1__lease__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__Lease *l = (const Orch__V1__Lease *)m;
    bool held = l->held;
    *epoch = held ? l->epoch : 0;
    if (!held)
        fprintf(stderr, "orchctl: %s is not held (epoch %" PRIu64 ", %s)\n", item, l->epoch,
                l->release_reason);
    protobuf_c_message_free_unpacked(m, NULL);
    return held ? EXIT_OK : EXIT_RPC_BASE + ORCH_CODE_FAILED_PRECONDITION;
}

static int lease_force_release(const orchctl_args *a, const globals *g)
{
    const char *reason = orchctl_opt(a, "reason", NULL);
    uint64_t epoch = 0;
    if (!orchctl_opt_u64(a, "epoch", UINT64_MAX, &epoch))
        return EXIT_USAGE;
    if (a->npos != 1 || !reason)
        return orchctl_usage_error(a);
    /* Without --epoch, the live grant is read first: the release names it,
     * so a resend never releases a newer grant. */
    int rc = epoch ? EXIT_OK : read_live_epoch(g, a->pos[0], &epoch);
    if (rc)
        return rc;
    const char *op = orchctl_opt(a, "operator", getenv("USER"));
    Orch__V1__ForceReleaseRequest req = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    req.work_item = a->pos[0];
    req.reason = (char *)reason;
    req.operator_ = (char *)(op ? op : "");
    req.epoch = epoch;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    rc = orchctl_call(g, orchctl_target("lease"), M("ForceRelease"), &req.base,
                      &orch__v1__force_release_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__ForceReleaseReply *r = (const Orch__V1__ForceReleaseReply *)m;
    if (g->json)
        orchctl_print_json(m);
    else
        printf("force-released %s epoch %" PRIu64 "%s\n", req.work_item, r->released_epoch,
               r->already_released ? " (already, by an earlier call)" : "");
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

static int lease_show(const orchctl_args *a, const globals *g)
{
    if (a->npos != 1)
        return orchctl_usage_error(a);
    Orch__V1__GetLeaseRequest req = ORCH__V1__GET_LEASE_REQUEST__INIT;
    req.work_item = a->pos[0];
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("lease"), M("Get"), &req.base,
                          &orch__v1__lease__descriptor, &m, &st);
    if (rc)
        return rc;
    if (g->json)
        orchctl_print_json(m);
    else
        print_lease((const Orch__V1__Lease *)m);
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

static int lease_list(const orchctl_args *a, const globals *g)
{
    Orch__V1__ListLeasesRequest req = ORCH__V1__LIST_LEASES_REQUEST__INIT;
    uint64_t limit = 0;
    if (!orchctl_opt_u64(a, "limit", 1000, &limit))
        return EXIT_USAGE;
    if (a->npos != 0)
        return orchctl_usage_error(a);
    req.held_only = !orchctl_flag(a, "all");
    req.repo = (char *)orchctl_opt(a, "repo", req.repo);
    req.limit = (uint32_t)limit;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("lease"), M("List"), &req.base,
                          &orch__v1__list_leases_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__ListLeasesReply *r = (const Orch__V1__ListLeasesReply *)m;
    if (g->json)
        orchctl_print_json(m);
    else if (r->n_leases == 0)
        printf("no %sleases\n", req.held_only ? "held " : "");
    for (size_t i = 0; !g->json && i < r->n_leases; i++)
        print_lease(r->leases[i]);
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

static int lease_probe(const orchctl_args *a, const globals *g)
{
    Orch__V1__ProbeOwnerRequest req = ORCH__V1__PROBE_OWNER_REQUEST__INIT;
    uint64_t pid, ticks;
    if (a->npos != 3)
        return orchctl_usage_error(a);
    if (!orchctl_parse_u64("PID", a->pos[0], &pid) || pid > INT32_MAX ||
        !orchctl_parse_u64("START_TICKS", a->pos[1], &ticks))
        return EXIT_USAGE;
    req.pid = (int32_t)pid;
    req.start_ticks = ticks;
    req.boot_id = a->pos[2];
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("lease"), M("ProbeOwner"), &req.base,
                          &orch__v1__probe_owner_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__ProbeOwnerReply *r = (const Orch__V1__ProbeOwnerReply *)m;
    if (g->json)
        orchctl_print_json(m);
    else
        printf("%s on %s: %s\n", liveness_name(r->liveness), r->host_id, r->reason);
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

const orchctl_cmd orchctl_lease_cmds[] = {
    { "acquire",
      "WORK_ITEM [--repo R] [--transition T] [--actor A] [--owner-pid PID] [--instance ID]", "",
      ORCHCTL_OPTS({ "actor", true }, { "transition", true }, { "repo", true },
                   { "owner-pid", true }, { "instance", true }),
      lease_acquire, "take the lease for PID (default: orchctl's parent); exit 0 GRANTED, 3 HELD",
      NULL, NULL },
    { "release", "WORK_ITEM EPOCH", "", NULL, lease_release,
      "release a lease you hold (73: not the live grant)", NULL, NULL },
    { "validate", "WORK_ITEM EPOCH", "", NULL, lease_validate,
      "exit 0 if EPOCH is the live grant, else 3", NULL, NULL },
    { "force-release", "WORK_ITEM --reason TEXT [--epoch N] [--operator NAME]", "",
      ORCHCTL_OPTS({ "epoch", true }, { "operator", true }, { "reason", true }),
      lease_force_release, "operator action; recorded and alerted", NULL, NULL },
    { "show", "WORK_ITEM", "", NULL, lease_show, "the lease row", NULL, NULL },
    { "list", "[--all] [--repo R] [--limit N]", "",
      ORCHCTL_OPTS({ "all", false }, { "repo", true }, { "limit", true }), lease_list,
      "held leases (--all: released too)", NULL, NULL },
    { "probe", "PID START_TICKS BOOT_ID", "", NULL, lease_probe,
      "is this process alive on the service's host", NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL },
};
