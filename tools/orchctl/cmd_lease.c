/*
 * cmd_lease.c - `orchctl lease ...`: every RPC of lease-service.
 *
 * `acquire` takes the lease on behalf of a process: by default orchctl's
 * parent (the shell or script that runs it), so that a script holds the
 * lease for as long as it lives; --owner-pid names another process. The
 * owner's identity (host, boot id, pid, start time) is read here from /proc.
 */
#include <getopt.h>
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

static int lease_acquire(int argc, char **argv, const globals *g)
{
    static const struct option opts[] = {
        { "repo", required_argument, NULL, 'r' },
        { "transition", required_argument, NULL, 't' },
        { "actor", required_argument, NULL, 'a' },
        { "owner-pid", required_argument, NULL, 'p' },
        { "instance", required_argument, NULL, 'i' },
        { NULL, 0, NULL, 0 },
    };
    const char *repo = getenv("ORCH_ORCHESTRATOR_REPO"), *transition = "manual";
    const char *actor = "orchctl", *instance = NULL;
    uint64_t pid = (uint64_t)getppid();
    int ch;
    optind = 0; /* 0: full reset of GNU getopt after the top-level parse */
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'r': repo = optarg; break;
        case 't': transition = optarg; break;
        case 'a': actor = optarg; break;
        case 'p':
            if (!orchctl_parse_u64("--owner-pid", optarg, &pid))
                return EXIT_USAGE;
            break;
        case 'i': instance = optarg; break;
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        return orchctl_usage_error("lease", "acquire");
    }
    Orch__V1__AcquireRequest req = ORCH__V1__ACQUIRE_REQUEST__INIT;
    Orch__V1__Owner owner = ORCH__V1__OWNER__INIT;
    orch_ident id;
    char inst[64];
    if (!owner_of((pid_t)pid, instance, &owner, &id, inst, sizeof inst))
        return EXIT_USAGE;
    req.work_item = argv[optind];
    req.repo = (char *)(repo && repo[0] ? repo : "orch");
    req.transition = (char *)transition;
    req.actor = (char *)actor;
    req.owner = &owner;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    int rc = orchctl_call(g, orchctl_target("lease"), M("Acquire"), &req.base,
                          &orch__v1__acquire_reply__descriptor, &m, &st);
    if (rc)
        return rc;
    const Orch__V1__AcquireReply *r = (const Orch__V1__AcquireReply *)m;
    bool held = r->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__HELD;
    if (g->json) {
        orchctl_print_json(m);
    } else if (!held) {
        printf("GRANTED %s epoch %" PRIu64 "%s%s%s\n", req.work_item, r->epoch,
               r->reclaimed ? " (taken over from a dead owner)" : "",
               r->already_held ? " (already held by this owner)" : "",
               r->inert ? " (inert: lease switched off or repo out of scope)" : "");
    } else {
        printf("HELD %s by another owner, owner %s:\n", req.work_item,
               liveness_name(r->holder_liveness));
        if (r->holder)
            print_lease(r->holder);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return held ? EXIT_HELD : EXIT_OK;
}

/* Parses "WORK_ITEM EPOCH" positional arguments. */
static bool item_epoch(int argc, char **argv, char **item, uint64_t *epoch)
{
    if (argc != 3) {
        orchctl_usage_error("lease", argv[0]);
        return false;
    }
    *item = argv[1];
    return orchctl_parse_u64("EPOCH", argv[2], epoch);
}

static int lease_release(int argc, char **argv, const globals *g)
{
    Orch__V1__ReleaseRequest req = ORCH__V1__RELEASE_REQUEST__INIT;
    if (!item_epoch(argc, argv, &req.work_item, &req.epoch))
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

static int lease_validate(int argc, char **argv, const globals *g)
{
    Orch__V1__ValidateRequest req = ORCH__V1__VALIDATE_REQUEST__INIT;
    if (!item_epoch(argc, argv, &req.work_item, &req.epoch))
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

static int lease_force_release(int argc, char **argv, const globals *g)
{
    static const struct option opts[] = {
        { "reason", required_argument, NULL, 'r' },
        { "operator", required_argument, NULL, 'o' },
        { "epoch", required_argument, NULL, 'e' },
        { NULL, 0, NULL, 0 },
    };
    const char *reason = NULL, *op = getenv("USER");
    uint64_t epoch = 0;
    int ch;
    optind = 0; /* 0: full reset of GNU getopt after the top-level parse */
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'r')
            reason = optarg;
        else if (ch == 'o')
            op = optarg;
        else if (ch != 'e' || !orchctl_parse_u64("--epoch", optarg, &epoch) || epoch == 0)
            return EXIT_USAGE;
    }
    if (optind != argc - 1 || !reason) {
        orchctl_usage_error("lease", argv[0]);
        return EXIT_USAGE;
    }
    /* Without --epoch, the live grant is read first: the release names it,
     * so a resend never releases a newer grant. */
    int rc = epoch ? EXIT_OK : read_live_epoch(g, argv[optind], &epoch);
    if (rc)
        return rc;
    Orch__V1__ForceReleaseRequest req = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    req.work_item = argv[optind];
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

static int lease_show(int argc, char **argv, const globals *g)
{
    if (argc != 2) {
        orchctl_usage_error("lease", argv[0]);
        return EXIT_USAGE;
    }
    Orch__V1__GetLeaseRequest req = ORCH__V1__GET_LEASE_REQUEST__INIT;
    req.work_item = argv[1];
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

static int lease_list(int argc, char **argv, const globals *g)
{
    static const struct option opts[] = {
        { "all", no_argument, NULL, 'a' },
        { "repo", required_argument, NULL, 'r' },
        { "limit", required_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 },
    };
    Orch__V1__ListLeasesRequest req = ORCH__V1__LIST_LEASES_REQUEST__INIT;
    uint64_t limit;
    int ch;
    req.held_only = true;
    optind = 0; /* 0: full reset of GNU getopt after the top-level parse */
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'a': req.held_only = false; break;
        case 'r': req.repo = optarg; break;
        case 'l':
            if (!orchctl_parse_u64("--limit", optarg, &limit) || limit > 1000)
                return EXIT_USAGE;
            req.limit = (uint32_t)limit;
            break;
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        orchctl_usage_error("lease", argv[0]);
        return EXIT_USAGE;
    }
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

static int lease_probe(int argc, char **argv, const globals *g)
{
    Orch__V1__ProbeOwnerRequest req = ORCH__V1__PROBE_OWNER_REQUEST__INIT;
    uint64_t pid, ticks;
    if (argc != 4) {
        orchctl_usage_error("lease", argv[0]);
        return EXIT_USAGE;
    }
    if (!orchctl_parse_u64("PID", argv[1], &pid) || pid > INT32_MAX ||
        !orchctl_parse_u64("START_TICKS", argv[2], &ticks))
        return EXIT_USAGE;
    req.pid = (int32_t)pid;
    req.start_ticks = ticks;
    req.boot_id = argv[3];
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
      "WORK_ITEM [--repo R] [--transition T] [--actor A] [--owner-pid PID] [--instance ID]",
      "--actor --transition --repo --owner-pid --instance --help", lease_acquire,
      "take the lease for PID (default: orchctl's parent); exit 0 GRANTED, 3 HELD", NULL, NULL },
    { "release", "WORK_ITEM EPOCH", "--help", lease_release,
      "release a lease you hold (73: not the live grant)", NULL, NULL },
    { "validate", "WORK_ITEM EPOCH", "--help", lease_validate,
      "exit 0 if EPOCH is the live grant, else 3", NULL, NULL },
    { "force-release", "WORK_ITEM --reason TEXT [--epoch N] [--operator NAME]",
      "--epoch --operator --reason --help", lease_force_release,
      "operator action; recorded and alerted", NULL, NULL },
    { "show", "WORK_ITEM", "--help", lease_show, "the lease row", NULL, NULL },
    { "list", "[--all] [--repo R] [--limit N]", "--all --repo --limit --help", lease_list,
      "held leases (--all: released too)", NULL, NULL },
    { "probe", "PID START_TICKS BOOT_ID", "--help", lease_probe,
      "is this process alive on the service's host", NULL, NULL },
    { NULL, NULL, NULL, NULL, NULL, NULL, NULL },
};
