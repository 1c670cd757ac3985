/*
 * test_lease_input.c - kill switch and scope (DESIGN.md invariant 8), bad
 * input (invariant 11) and the orchctl lease commands.
 *
 * Switched off or out of scope, Acquire answers GRANTED inert and writes
 * nothing: two actors both "hold" the item, as if the lease did not exist.
 * Every malformed request gets INVALID_ARGUMENT or NOT_FOUND with a message
 * naming the field, writes nothing, and the service keeps serving; unknown
 * protobuf fields are ignored.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/envelope.pb-c.h"
#include "test_lease_util.h"

static th_svc svc;
static char db[600];

static void setup(void)
{
    memset(&svc, 0, sizeof svc);
    th_db_fresh(db, sizeof db);
}

static void teardown(void)
{
    lt_cleanup();
    if (svc.pid > 0 && th_svc_stop(&svc, SIGTERM, 10000) != 0)
        th_svc_dump_log(&svc);
}

TestSuite(lease_input, .init = setup, .fini = teardown, .timeout = 60);

static void start(const char *const *extra)
{
    const char *env[12];
    int n = 0;
    env[n++] = "ORCH_HOST_ID=" LT_HOST;
    env[n++] = "ORCH_LEASE_REAPER_INTERVAL_MS=60000";
    for (const char *const *e = extra; e && *e && n < 11; e++)
        env[n++] = *e;
    env[n] = NULL;
    th_svc_start(&svc, "lease", db, env, true);
}

static void assert_serving(void)
{
    orch_rpc_status st;
    cr_assert(th_svc_alive(&svc), "lease-service died");
    cr_assert_eq(th_check(svc.rpc_url, 2000, &st), ORCH_CODE_OK, "Check: %s", st.message);
}

static long long rows(const char *table)
{
    return lt_sql_num(db, "SELECT count(*) FROM %s", table);
}

/* ---- kill switch and scope ---------------------------------------------------- */

/* Two live actors on one item, both GRANTED inert, nothing written. */
static void assert_inert(orch_rpc_client *c, const char *item, const char *repo)
{
    lt_owner a, b;
    lt_owner_spawn(&a, NULL, NULL);
    lt_owner_spawn(&b, NULL, NULL);
    lt_acq x = lt_acquire(c, item, repo, &a, "monitor");
    lt_acq y = lt_acquire(c, item, repo, &b, "webhook");
    cr_assert_eq(x.code, ORCH_CODE_OK, "%s", x.message);
    cr_assert_eq(y.code, ORCH_CODE_OK, "%s", y.message);
    cr_assert(x.granted && x.inert && x.epoch == 0, "%s/%s: first actor not inert", item, repo);
    cr_assert(y.granted && y.inert && y.epoch == 0, "%s/%s: second actor not inert", item, repo);
    cr_assert_not(x.reclaimed || x.already_held || y.reclaimed || y.already_held);
    char *n = lt_sql_text(db, "SELECT count(*) FROM transition_lease WHERE work_item = '%s'", item);
    cr_assert_str_eq(n, "0", "%s/%s: a lease row was written", item, repo);
    free(n);
    n = lt_sql_text(db, "SELECT count(*) FROM lease_events WHERE work_item = '%s'", item);
    cr_assert_str_eq(n, "0", "%s/%s: a lease event was written", item, repo);
    free(n);
}

Test(lease_input, kill_switch_off_makes_the_lease_inert)
{
    static const char *const env[] = { "ORCH_TRANSITION_LEASE_ENABLED=false", NULL };
    start(env);
    orch_rpc_client *c = lt_client(&svc);
    assert_inert(c, "ORCH-OFF-1", "orch");
    assert_inert(c, "ORCH-OFF-2", "any-repo");
    cr_assert_eq(rows("transition_lease"), 0);
    cr_assert_eq(rows("lease_events"), 0);
    cr_assert(th_svc_log_has(&svc, "the lease is inert"));
    cr_assert_eq(lt_metric(&svc, "orch_lease_acquire_total{outcome=\"inert\"}"), 4);
    cr_assert_eq(lt_metric(&svc, "orch_lease_acquire_total{outcome=\"granted\"}"), 0);
    lt_client_close(c);
}

Test(lease_input, default_scope_is_the_orchestrator_repo_only)
{
    start(NULL);
    orch_rpc_client *c = lt_client(&svc);
    assert_inert(c, "ORCH-SCOPE-1", "some-product");
    lt_owner a, b;
    lt_owner_spawn(&a, NULL, NULL);
    lt_owner_spawn(&b, NULL, NULL);
    lt_acq g = lt_acquire(c, "ORCH-SCOPE-2", "orch", &a, "monitor");
    cr_assert(g.granted && !g.inert && g.epoch == 1, "%s", g.message);
    cr_assert(lt_acquire(c, "ORCH-SCOPE-2", "orch", &b, "webhook").held);
    cr_assert_eq(rows("transition_lease"), 1);
    lt_client_close(c);
}

Test(lease_input, repo_list_limits_the_scope)
{
    static const char *const env[] = { "ORCH_TRANSITION_LEASE_REPOS= alpha , beta",
                                       "ORCH_ORCHESTRATOR_REPO=orch", NULL };
    start(env);
    orch_rpc_client *c = lt_client(&svc);
    assert_inert(c, "ORCH-LIST-1", "gamma");
    assert_inert(c, "ORCH-LIST-2", "orch"); /* a list replaces the default */
    assert_inert(c, "ORCH-LIST-3", "alph");
    lt_owner a, b;
    lt_owner_spawn(&a, NULL, NULL);
    lt_owner_spawn(&b, NULL, NULL);
    lt_acq g = lt_acquire(c, "ORCH-LIST-4", "beta", &a, "monitor");
    cr_assert(g.granted && !g.inert && g.epoch == 1, "%s", g.message);
    lt_acq h = lt_acquire(c, "ORCH-LIST-4", "beta", &b, "webhook");
    cr_assert(h.held, "in scope, the second actor defers");
    g = lt_acquire(c, "ORCH-LIST-5", "alpha", &a, "monitor");
    cr_assert(g.granted && !g.inert, "%s", g.message);
    cr_assert_eq(rows("transition_lease"), 2);
    lt_client_close(c);
}

/* ---- bad input ---------------------------------------------------------------- */

typedef struct bad_case {
    const char *what;
    orch_code want;
    const char *field; /* must appear in the message */
} bad_case;

static void expect(const bad_case *bc, orch_code got, const char *message)
{
    cr_assert_eq(got, bc->want, "%s: got %s (%s), want %s", bc->what, orch_code_name(got), message,
                 orch_code_name(bc->want));
    cr_assert(strstr(message, bc->field), "%s: message '%s' does not name '%s'", bc->what, message,
              bc->field);
}

static void acquire_bad(orch_rpc_client *c, const bad_case *bc, const char *item, const char *repo,
                        const char *actor, const char *transition, const Orch__V1__Owner *owner)
{
    Orch__V1__AcquireRequest req = ORCH__V1__ACQUIRE_REQUEST__INIT;
    req.work_item = (char *)item;
    req.repo = (char *)repo;
    req.actor = (char *)actor;
    req.transition = (char *)transition;
    req.owner = (Orch__V1__Owner *)owner;
    orch_rpc_status st;
    orch_code code =
        lt_call(c, orch_lease_method_acquire, &req.base, &orch__v1__acquire_reply__descriptor, &st);
    expect(bc, code, st.message);
}

/* Acquire with bad work items, then bad repo, actor, transition and a
 * missing owner; `big` is 201 bytes. */
static void acquire_bad_fields(orch_rpc_client *c, const lt_owner *o, const char *big)
{
    Orch__V1__Owner om;
    static const bad_case items[] = {
        { "empty work item", ORCH_CODE_INVALID_ARGUMENT, "work_item" },
        { "201-byte work item", ORCH_CODE_INVALID_ARGUMENT, "work_item" },
        { "newline in work item", ORCH_CODE_INVALID_ARGUMENT, "work_item" },
        { "escape in work item", ORCH_CODE_INVALID_ARGUMENT, "work_item" },
        { "DEL in work item", ORCH_CODE_INVALID_ARGUMENT, "work_item" },
    };
    const char *values[] = { "", big, "ORCH-1\nORCH-2", "ORCH-\x1b[31m", "ORCH-\x7f" };
    lt_owner_msg(o, &om);
    for (size_t i = 0; i < sizeof items / sizeof *items; i++)
        acquire_bad(c, &items[i], values[i], "orch", "monitor", "a->b", &om);

    static const bad_case empty_repo = { "empty repo", ORCH_CODE_INVALID_ARGUMENT, "repo" };
    acquire_bad(c, &empty_repo, "ORCH-1", "", "monitor", "a->b", &om);
    static const bad_case tab_actor = { "tab in actor", ORCH_CODE_INVALID_ARGUMENT, "actor" };
    acquire_bad(c, &tab_actor, "ORCH-1", "orch", "mon\titor", "a->b", &om);
    static const bad_case no_tr = { "empty transition", ORCH_CODE_INVALID_ARGUMENT, "transition" };
    acquire_bad(c, &no_tr, "ORCH-1", "orch", "monitor", "", &om);
    static const bad_case no_owner = { "missing owner", ORCH_CODE_INVALID_ARGUMENT, "owner" };
    acquire_bad(c, &no_owner, "ORCH-1", "orch", "monitor", "a->b", NULL);
}

/* Acquire with each owner field bad in turn; `big` is 201 bytes. */
static void acquire_bad_owner(orch_rpc_client *c, const lt_owner *o, char *big)
{
    Orch__V1__Owner om;
    lt_owner_msg(o, &om);
    static const bad_case neg = { "negative pid", ORCH_CODE_INVALID_ARGUMENT, "owner.pid" };
    om.pid = -5;
    acquire_bad(c, &neg, "ORCH-1", "orch", "monitor", "a->b", &om);
    static const bad_case zero = { "pid 0", ORCH_CODE_INVALID_ARGUMENT, "owner.pid" };
    om.pid = 0;
    acquire_bad(c, &zero, "ORCH-1", "orch", "monitor", "a->b", &om);
    lt_owner_msg(o, &om);
    static const bad_case ticks = { "start_ticks 0", ORCH_CODE_INVALID_ARGUMENT,
                                    "owner.start_ticks" };
    om.start_ticks = 0;
    acquire_bad(c, &ticks, "ORCH-1", "orch", "monitor", "a->b", &om);
    lt_owner_msg(o, &om);
    static const bad_case host = { "empty host id", ORCH_CODE_INVALID_ARGUMENT, "owner.host_id" };
    om.host_id = "";
    acquire_bad(c, &host, "ORCH-1", "orch", "monitor", "a->b", &om);
    lt_owner_msg(o, &om);
    static const bad_case boot = { "empty boot id", ORCH_CODE_INVALID_ARGUMENT, "owner.boot_id" };
    om.boot_id = "";
    acquire_bad(c, &boot, "ORCH-1", "orch", "monitor", "a->b", &om);
    lt_owner_msg(o, &om);
    static const bad_case inst = { "empty instance", ORCH_CODE_INVALID_ARGUMENT,
                                   "owner.instance_id" };
    om.instance_id = "";
    acquire_bad(c, &inst, "ORCH-1", "orch", "monitor", "a->b", &om);
    lt_owner_msg(o, &om);
    static const bad_case longboot = { "oversized boot id", ORCH_CODE_INVALID_ARGUMENT, "owner" };
    om.boot_id = big;
    acquire_bad(c, &longboot, "ORCH-1", "orch", "monitor", "a->b", &om);
}

Test(lease_input, bad_acquire_requests_name_the_field_and_write_nothing)
{
    start(NULL);
    orch_rpc_client *c = lt_client(&svc);
    lt_owner o;
    lt_owner_spawn(&o, NULL, NULL);
    char big[202], edge[201];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0'; /* 201 bytes */
    memset(edge, 'y', sizeof edge - 1);
    edge[sizeof edge - 1] = '\0'; /* 200 bytes: the limit, accepted */

    acquire_bad_fields(c, &o, big);
    acquire_bad_owner(c, &o, big);

    cr_assert_eq(rows("transition_lease"), 0, "a rejected request wrote a lease");
    cr_assert_eq(rows("lease_events"), 0, "a rejected request wrote an event");
    assert_serving();

    /* The limit itself is fine. */
    lt_acq g = lt_acquire(c, edge, "orch", &o, "monitor");
    cr_assert(g.granted, "a 200-byte work item must be accepted: %s", g.message);
    lt_client_close(c);
}

Test(lease_input, non_utf8_work_item_is_invalid_argument)
{
    /* Regression: invalid UTF-8 reached PostgreSQL and came back as
     * INTERNAL; the RPC layer now rejects any string field that is not
     * UTF-8 (proto3's rule) with INVALID_ARGUMENT naming the field. */
    start(NULL);
    orch_rpc_client *c = lt_client(&svc);
    lt_owner o;
    lt_owner_spawn(&o, NULL, NULL);
    lt_acq g = lt_acquire(c, "ORCH-\xff\xfe", "orch", &o, "monitor");
    cr_assert_eq(rows("transition_lease"), 0);
    assert_serving();
    cr_assert_eq(g.code, ORCH_CODE_INVALID_ARGUMENT, "got %s: %s", orch_code_name(g.code),
                 g.message);
    cr_assert(strstr(g.message, "work_item"), "%s", g.message);
    lt_client_close(c);
}

Test(lease_input, out_of_range_numbers_are_not_internal_errors)
{
    /* Regression: uint64 start ticks and epochs above INT64_MAX failed the
     * bigint cast in the database and came back as INTERNAL. Start ticks are
     * now bounded by validation; such an epoch is simply not the live grant. */
    start(NULL);
    orch_rpc_client *c = lt_client(&svc);
    lt_owner o;
    lt_owner_spawn(&o, NULL, NULL);
    lt_acq g = lt_acquire(c, "ORCH-RANGE", "orch", &o, "monitor");
    cr_assert(g.granted, "%s", g.message);

    orch_rpc_status st;
    orch_code rel = lt_release(c, "ORCH-RANGE", UINT64_MAX, NULL, &st);
    char rel_msg[512];
    snprintf(rel_msg, sizeof rel_msg, "%s", st.message);
    lt_owner huge = o;
    huge.start_ticks = UINT64_MAX;
    lt_acq h = lt_acquire(c, "ORCH-RANGE-2", "orch", &huge, "monitor");

    assert_serving();
    cr_assert(lt_validate(c, "ORCH-RANGE", g.epoch).valid, "the held lease was touched");
    cr_assert_eq(rows("transition_lease"), 1);
    cr_expect_eq(rel, ORCH_CODE_FAILED_PRECONDITION, "Release epoch 2^64-1: got %s: %s",
                 orch_code_name(rel), rel_msg);
    cr_expect_eq(h.code, ORCH_CODE_INVALID_ARGUMENT, "start_ticks 2^64-1: got %s: %s",
                 orch_code_name(h.code), h.message);
    cr_expect(strstr(h.message, "start_ticks"), "%s", h.message);
    lt_client_close(c);
}

/* Release and Validate with a bad epoch, item or an item without a lease;
 * ORCH-HELD is held. */
static void bad_release_and_validate(orch_rpc_client *c)
{
    orch_rpc_status st;
    static const bad_case rel0 = { "Release epoch 0", ORCH_CODE_INVALID_ARGUMENT, "epoch" };
    expect(&rel0, lt_release(c, "ORCH-HELD", 0, NULL, &st), st.message);
    static const bad_case relempty = { "Release empty item", ORCH_CODE_INVALID_ARGUMENT,
                                       "work_item" };
    expect(&relempty, lt_release(c, "", 1, NULL, &st), st.message);
    static const bad_case relnone = { "Release of no lease", ORCH_CODE_NOT_FOUND, "ORCH-NONE" };
    expect(&relnone, lt_release(c, "ORCH-NONE", 1, NULL, &st), st.message);

    static const bad_case val0 = { "Validate epoch 0", ORCH_CODE_INVALID_ARGUMENT, "epoch" };
    lt_valid v = lt_validate(c, "ORCH-HELD", 0);
    expect(&val0, v.code, v.message);
    /* Validate of an unknown item is an answer: not valid. */
    v = lt_validate(c, "ORCH-NONE", 1);
    cr_assert(v.code == ORCH_CODE_OK && !v.valid && !v.held && v.current_epoch == 0);
}

/* ForceRelease without reason or epoch, and of an item without a lease. */
static void bad_force_release(orch_rpc_client *c)
{
    orch_rpc_status st;
    Orch__V1__ForceReleaseRequest fr = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    fr.work_item = "ORCH-HELD";
    static const bad_case noreason = { "ForceRelease without reason", ORCH_CODE_INVALID_ARGUMENT,
                                       "reason" };
    expect(&noreason,
           lt_call(c, orch_lease_method_force_release, &fr.base,
                   &orch__v1__force_release_reply__descriptor, &st),
           st.message);
    fr.reason = "cleanup";
    static const bad_case frnoepoch = { "ForceRelease without epoch", ORCH_CODE_INVALID_ARGUMENT,
                                        "epoch is required" };
    expect(&frnoepoch,
           lt_call(c, orch_lease_method_force_release, &fr.base,
                   &orch__v1__force_release_reply__descriptor, &st),
           st.message);
    fr.work_item = "ORCH-NONE";
    fr.epoch = 1;
    static const bad_case frnone = { "ForceRelease of no lease", ORCH_CODE_NOT_FOUND, "ORCH-NONE" };
    expect(&frnone,
           lt_call(c, orch_lease_method_force_release, &fr.base,
                   &orch__v1__force_release_reply__descriptor, &st),
           st.message);
}

/* Get, List and ProbeOwner with bad arguments; List's limit 1000 is fine. */
static void bad_get_list_probe(orch_rpc_client *c)
{
    orch_rpc_status st;
    Orch__V1__GetLeaseRequest get = ORCH__V1__GET_LEASE_REQUEST__INIT;
    get.work_item = "ORCH-NONE";
    static const bad_case getnone = { "Get of no lease", ORCH_CODE_NOT_FOUND, "ORCH-NONE" };
    expect(&getnone,
           lt_call(c, orch_lease_method_get, &get.base, &orch__v1__lease__descriptor, &st),
           st.message);
    get.work_item = "";
    static const bad_case getempty = { "Get empty item", ORCH_CODE_INVALID_ARGUMENT, "work_item" };
    expect(&getempty,
           lt_call(c, orch_lease_method_get, &get.base, &orch__v1__lease__descriptor, &st),
           st.message);

    Orch__V1__ListLeasesRequest ls = ORCH__V1__LIST_LEASES_REQUEST__INIT;
    ls.limit = 1001;
    static const bad_case biglimit = { "List limit 1001", ORCH_CODE_INVALID_ARGUMENT, "limit" };
    expect(
        &biglimit,
        lt_call(c, orch_lease_method_list, &ls.base, &orch__v1__list_leases_reply__descriptor, &st),
        st.message);
    ls.limit = 1000;
    cr_assert_eq(
        lt_call(c, orch_lease_method_list, &ls.base, &orch__v1__list_leases_reply__descriptor, &st),
        ORCH_CODE_OK, "List limit 1000: %s", st.message);

    Orch__V1__ProbeOwnerRequest pr = ORCH__V1__PROBE_OWNER_REQUEST__INIT;
    pr.pid = -1;
    pr.start_ticks = 1;
    pr.boot_id = "x";
    static const bad_case probeneg = { "ProbeOwner negative pid", ORCH_CODE_INVALID_ARGUMENT,
                                       "pid" };
    expect(&probeneg,
           lt_call(c, orch_lease_method_probe_owner, &pr.base,
                   &orch__v1__probe_owner_reply__descriptor, &st),
           st.message);
}

Test(lease_input, bad_release_validate_force_get_list_requests)
{
    start(NULL);
    orch_rpc_client *c = lt_client(&svc);
    lt_owner o;
    lt_owner_spawn(&o, NULL, NULL);
    lt_acq g = lt_acquire(c, "ORCH-HELD", "orch", &o, "monitor");
    cr_assert(g.granted, "%s", g.message);
    long long events_before = rows("lease_events");

    bad_release_and_validate(c);
    bad_force_release(c);
    bad_get_list_probe(c);

    /* Nothing changed: the held lease is intact, no event was added. */
    cr_assert(lt_validate(c, "ORCH-HELD", g.epoch).valid);
    cr_assert_eq(rows("lease_events"), events_before);
    cr_assert_eq(rows("transition_lease"), 1);
    assert_serving();
    lt_client_close(c);
}

/* Packs `req`, appends `extra` raw bytes, sends it in an envelope; returns
 * the status and (on OK) the decoded reply of type `desc`. */
static orch_code call_with_trailer(const char *method, const ProtobufCMessage *req,
                                   const uint8_t *extra, size_t nextra,
                                   const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                                   char *msg, size_t n)
{
    size_t plen = protobuf_c_message_get_packed_size(req);
    uint8_t *payload = malloc(plen + nextra);
    cr_assert(payload);
    protobuf_c_message_pack(req, payload);
    memcpy(payload + plen, extra, nextra);

    Orch__V1__RequestEnvelope env = ORCH__V1__REQUEST_ENVELOPE__INIT;
    env.method = (char *)method;
    static int seq;
    char rid[32];
    snprintf(rid, sizeof rid, "unknown-fields-%d", ++seq);
    env.request_id = rid;
    env.timeout_ms = 5000;
    env.payload.data = payload;
    env.payload.len = plen + nextra;
    size_t flen = orch__v1__request_envelope__get_packed_size(&env);
    uint8_t *frame = malloc(flen);
    cr_assert(frame);
    orch__v1__request_envelope__pack(&env, frame);

    orch_rpc_client *c = lt_client(&svc);
    void *buf = NULL;
    size_t blen = 0;
    cr_assert(orch_rpc_raw(c, frame, flen, 5000, &buf, &blen) == ORCH_OK, "no reply");
    Orch__V1__ReplyEnvelope *rep = orch__v1__reply_envelope__unpack(NULL, blen, buf);
    cr_assert(rep && rep->status, "the reply is not a ReplyEnvelope");
    orch_code code = (orch_code)rep->status->code;
    snprintf(msg, n, "%s", rep->status->message);
    *out = NULL;
    if (code == ORCH_CODE_OK) {
        *out = protobuf_c_message_unpack(desc, NULL, rep->payload.len, rep->payload.data);
        cr_assert(*out, "the reply payload does not decode");
    }
    orch__v1__reply_envelope__free_unpacked(rep, NULL);
    free(buf);
    lt_client_close(c);
    free(frame);
    free(payload);
    return code;
}

Test(lease_input, unknown_fields_are_ignored)
{
    start(NULL);
    lt_owner o;
    lt_owner_spawn(&o, NULL, NULL);
    Orch__V1__Owner om;
    lt_owner_msg(&o, &om);
    Orch__V1__AcquireRequest req = ORCH__V1__ACQUIRE_REQUEST__INIT;
    req.work_item = "ORCH-UNKNOWN-FIELDS";
    req.repo = "orch";
    req.transition = "review->testing";
    req.actor = "monitor";
    req.owner = &om;
    /* field 99 varint 1; field 100 length-delimited "future"; field 101
     * fixed64; field 102 fixed32 */
    static const uint8_t extra[] = { 0x98, 0x06, 0x01, 0xa2, 0x06, 0x06, 'f', 'u', 't', 'u',
                                     'r',  'e',  0xa9, 0x06, 1,    2,    3,   4,   5,   6,
                                     7,    8,    0xb5, 0x06, 9,    9,    9,   9 };
    ProtobufCMessage *m;
    char msg[512];
    orch_code code = call_with_trailer(orch_lease_method_acquire, &req.base, extra, sizeof extra,
                                       &orch__v1__acquire_reply__descriptor, &m, msg, sizeof msg);
    cr_assert_eq(code, ORCH_CODE_OK, "%s: %s", orch_code_name(code), msg);
    lt_acq a;
    memset(&a, 0, sizeof a);
    lt_acq_from_reply(&a, (const Orch__V1__AcquireReply *)m);
    protobuf_c_message_free_unpacked(m, NULL);
    cr_assert(a.granted && a.epoch == 1 && !a.inert);
    cr_assert_eq(lt_sql_num(db, "SELECT owner_pid FROM transition_lease"
                                " WHERE work_item = 'ORCH-UNKNOWN-FIELDS' AND released_at IS NULL"),
                 o.pid);

    Orch__V1__ValidateRequest vr = ORCH__V1__VALIDATE_REQUEST__INIT;
    vr.work_item = "ORCH-UNKNOWN-FIELDS";
    vr.epoch = 1;
    code = call_with_trailer(orch_lease_method_validate, &vr.base, extra, sizeof extra,
                             &orch__v1__validate_reply__descriptor, &m, msg, sizeof msg);
    cr_assert_eq(code, ORCH_CODE_OK, "%s", msg);
    cr_assert(((Orch__V1__ValidateReply *)m)->valid);
    protobuf_c_message_free_unpacked(m, NULL);

    /* A truncated trailer is a malformed payload, not a crash. */
    static const uint8_t cut[] = { 0xa2, 0x06, 0x40, 'x' };
    code = call_with_trailer(orch_lease_method_validate, &vr.base, cut, sizeof cut,
                             &orch__v1__validate_reply__descriptor, &m, msg, sizeof msg);
    cr_assert_eq(code, ORCH_CODE_INVALID_ARGUMENT, "%s: %s", orch_code_name(code), msg);
    assert_serving();
}

/* ---- orchctl lease ---------------------------------------------------------------- */

typedef struct ctl {
    char url_env[128];
    const char *env[4];
    char out[16384];
} ctl;

static int run_ctl(ctl *t, const char *const *args)
{
    const char *argv[16];
    int n = 0;
    argv[n++] = lt_orchctl();
    for (const char *const *a = args; *a && n < 15; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    return th_run(argv, t->env, t->out, sizeof t->out, 15000);
}

static json_t *parse(const ctl *t)
{
    json_error_t err;
    json_t *j = json_loads(t->out, 0, &err);
    cr_assert(j, "not JSON (%s):\n%s", err.text, t->out);
    return j;
}

/* The orchctl lease commands of orchctl_lease_commands_exit_codes_and_json,
 * in the order the test runs them: each step sees the leases of the last. */
static const char *const ctl_list[] = { "--json", "lease", "list", NULL };
static const char *const ctl_val_ok[] = { "lease", "validate", "ORCH-CTL-1", "2", NULL };

/* Owner a (pid pa) acquires ORCH-CTL-1 at epoch 1, then again (already
 * held, at epoch 2: each answer names a grant of its own); owner b (pid
 * pb) is refused with HELD naming a. */
static void ctl_acquire(ctl *t, const lt_owner *a, const char *pa, const char *pb)
{
    /* acquire --json: GRANTED, exit 0 */
    const char *acq_a[] = { "--json", "lease",   "acquire",       "ORCH-CTL-1", "--owner-pid",
                            pa,       "--actor", "operator-test", NULL };
    cr_assert_eq(run_ctl(t, acq_a), 0, "%s", t->out);
    json_t *j = parse(t);
    cr_assert_str_eq(json_string_value(json_object_get(j, "outcome")), "GRANTED", "%s", t->out);
    json_int_t epoch = json_integer_value(json_object_get(j, "epoch"));
    cr_assert_eq(epoch, 1, "%s", t->out);
    json_decref(j);

    /* the same owner again: already held, at the next epoch, exit 0 */
    cr_assert_eq(run_ctl(t, acq_a), 0, "%s", t->out);
    j = parse(t);
    cr_assert(json_is_true(json_object_get(j, "already_held")), "%s", t->out);
    cr_assert_eq(json_integer_value(json_object_get(j, "epoch")), 2, "%s", t->out);
    json_decref(j);

    /* another owner: HELD, exit 3, the holder named */
    const char *acq_b[] = { "--json", "lease", "acquire", "ORCH-CTL-1", "--owner-pid", pb, NULL };
    cr_assert_eq(run_ctl(t, acq_b), 3, "%s", t->out);
    j = parse(t);
    cr_assert_str_eq(json_string_value(json_object_get(j, "outcome")), "HELD");
    json_t *holder = json_object_get(j, "holder");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(holder, "owner"), "pid")),
                 a->pid, "%s", t->out);
    cr_assert_str_eq(json_string_value(json_object_get(holder, "actor")), "operator-test");
    cr_assert_str_eq(json_string_value(json_object_get(j, "holder_liveness")), "ALIVE");
    json_decref(j);
    const char *acq_b_text[] = { "lease", "acquire", "ORCH-CTL-1", "--owner-pid", pb, NULL };
    cr_assert_eq(run_ctl(t, acq_b_text), 3, "%s", t->out);
    cr_assert(strstr(t->out, "HELD") && strstr(t->out, pa), "%s", t->out);

    /* an owner pid that does not exist: usage error, nothing sent */
    const char *acq_nopid[] = {
        "lease", "acquire", "ORCH-CTL-1", "--owner-pid", "2147483000", NULL
    };
    cr_assert_eq(run_ctl(t, acq_nopid), 1, "%s", t->out);
}

static void ctl_show_and_validate(ctl *t)
{
    /* show */
    const char *show[] = { "--json", "lease", "show", "ORCH-CTL-1", NULL };
    cr_assert_eq(run_ctl(t, show), 0, "%s", t->out);
    json_t *j = parse(t);
    cr_assert_str_eq(json_string_value(json_object_get(j, "work_item")), "ORCH-CTL-1");
    cr_assert(json_is_true(json_object_get(j, "held")));
    json_decref(j);
    const char *show_none[] = { "lease", "show", "ORCH-CTL-NONE", NULL };
    cr_assert_eq(run_ctl(t, show_none), 64 + ORCH_CODE_NOT_FOUND, "%s", t->out);

    /* validate: 0 for the live epoch, 3 otherwise */
    cr_assert_eq(run_ctl(t, ctl_val_ok), 0, "%s", t->out);
    const char *val_bad[] = { "lease", "validate", "ORCH-CTL-1", "1", NULL };
    cr_assert_eq(run_ctl(t, val_bad), 3, "%s", t->out);
    const char *val_zero[] = { "lease", "validate", "ORCH-CTL-1", "0", NULL };
    int rc = run_ctl(t, val_zero);
    cr_assert(rc == 1 || rc == 64 + ORCH_CODE_INVALID_ARGUMENT, "epoch 0: exit %d %s", rc, t->out);
}

/* a (pid pa) also takes ORCH-CTL-2; list shows both, --limit applies. */
static void ctl_list_two(ctl *t, const char *pa)
{
    /* list --json */
    const char *acq_a2[] = { "lease", "acquire", "ORCH-CTL-2", "--owner-pid",
                             pa,      "--repo",  "orch",       NULL };
    cr_assert_eq(run_ctl(t, acq_a2), 0, "%s", t->out);
    cr_assert_eq(run_ctl(t, ctl_list), 0, "%s", t->out);
    json_t *j = parse(t);
    json_t *leases = json_object_get(j, "leases");
    cr_assert(json_is_array(leases), "%s", t->out);
    cr_assert_eq(json_array_size(leases), 2, "%s", t->out);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(leases, 0), "work_item")),
                     "ORCH-CTL-1");
    json_decref(j);
    const char *list_lim[] = { "--json", "lease", "list", "--limit", "1", NULL };
    cr_assert_eq(run_ctl(t, list_lim), 0, "%s", t->out);
    j = parse(t);
    cr_assert_eq(json_array_size(json_object_get(j, "leases")), 1, "%s", t->out);
    json_decref(j);
    const char *list_over[] = { "lease", "list", "--limit", "1001", NULL };
    cr_assert_eq(run_ctl(t, list_over), 1, "%s", t->out);
}

/* ORCH-CTL-1 is released (and released again); ORCH-CTL-2 stays held. */
static void ctl_release(ctl *t)
{
    /* release: wrong epoch 73, right epoch 0, again 0 (retry), none 69 */
    const char *rel_bad[] = { "lease", "release", "ORCH-CTL-1", "7", NULL };
    cr_assert_eq(run_ctl(t, rel_bad), 64 + ORCH_CODE_FAILED_PRECONDITION, "%s", t->out);
    const char *rel[] = { "lease", "release", "ORCH-CTL-1", "2", NULL };
    cr_assert_eq(run_ctl(t, rel), 0, "%s", t->out);
    const char *rel_json[] = { "--json", "lease", "release", "ORCH-CTL-1", "2", NULL };
    cr_assert_eq(run_ctl(t, rel_json), 0, "%s", t->out);
    json_t *j = parse(t);
    cr_assert(json_is_true(json_object_get(j, "already_released")), "%s", t->out);
    json_decref(j);
    const char *rel_none[] = { "lease", "release", "ORCH-CTL-NONE", "1", NULL };
    cr_assert_eq(run_ctl(t, rel_none), 64 + ORCH_CODE_NOT_FOUND, "%s", t->out);
    cr_assert_eq(run_ctl(t, ctl_val_ok), 3, "a released epoch is not valid: %s", t->out);

    /* list: held only by default, --all shows released ones too */
    cr_assert_eq(run_ctl(t, ctl_list), 0, "%s", t->out);
    j = parse(t);
    cr_assert_eq(json_array_size(json_object_get(j, "leases")), 1, "%s", t->out);
    json_decref(j);
    const char *list_all[] = { "--json", "lease", "list", "--all", NULL };
    cr_assert_eq(run_ctl(t, list_all), 0, "%s", t->out);
    j = parse(t);
    cr_assert_eq(json_array_size(json_object_get(j, "leases")), 2, "%s", t->out);
    json_decref(j);
}

/* ORCH-CTL-2 is force-released by operator "tester", with its event and alert. */
static void ctl_force_release(ctl *t)
{
    /* force-release: needs --reason (1), releases (0), not held (73), none (69) */
    const char *fr_noreason[] = { "lease", "force-release", "ORCH-CTL-2", NULL };
    cr_assert_eq(run_ctl(t, fr_noreason), 1, "%s", t->out);
    const char *fr[] = { "--json", "lease",      "force-release", "ORCH-CTL-2", "--reason",
                         "stuck",  "--operator", "tester",        NULL };
    cr_assert_eq(run_ctl(t, fr), 0, "%s", t->out);
    json_t *j = parse(t);
    cr_assert_eq(json_integer_value(json_object_get(j, "released_epoch")), 1, "%s", t->out);
    json_decref(j);
    cr_assert_eq(run_ctl(t, fr), 64 + ORCH_CODE_FAILED_PRECONDITION, "%s", t->out);
    const char *fr_none[] = { "lease", "force-release", "ORCH-CTL-NONE", "--reason", "x", NULL };
    cr_assert_eq(run_ctl(t, fr_none), 64 + ORCH_CODE_NOT_FOUND, "%s", t->out);
    cr_assert_eq(lt_sql_num(db, "SELECT count(*) FROM lease_events WHERE kind = 'force-released'"
                                " AND actor = 'tester' AND detail = 'stuck'"),
                 1);
    cr_assert(th_svc_wait_log(&svc, "ALERT lease.force-released", 2000));
}

/* Nothing is held any more; then the usage errors. */
static void ctl_empty_and_usage(ctl *t)
{
    /* empty list */
    cr_assert_eq(run_ctl(t, ctl_list), 0, "%s", t->out);
    json_t *j = parse(t);
    cr_assert_eq(json_array_size(json_object_get(j, "leases")), 0, "%s", t->out);
    json_decref(j);
    const char *list_text[] = { "lease", "list", NULL };
    cr_assert_eq(run_ctl(t, list_text), 0, "%s", t->out);
    cr_assert(strstr(t->out, "no held leases"), "%s", t->out);

    /* usage errors */
    const char *nosub[] = { "lease", NULL };
    cr_assert_eq(run_ctl(t, nosub), 1, "%s", t->out);
    const char *unknown[] = { "lease", "steal", "X", NULL };
    cr_assert_eq(run_ctl(t, unknown), 1, "%s", t->out);
    const char *help[] = { "lease", "--help", NULL };
    cr_assert_eq(run_ctl(t, help), 0, "%s", t->out);
}

Test(lease_input, orchctl_lease_commands_exit_codes_and_json)
{
    start(NULL);
    ctl t;
    snprintf(t.url_env, sizeof t.url_env, "ORCH_LEASE_RPC_URL=%s", svc.rpc_url);
    t.env[0] = t.url_env;
    t.env[1] = "ORCH_HOST_ID=" LT_HOST;
    t.env[2] = NULL;
    lt_owner a, b;
    lt_owner_spawn(&a, NULL, NULL);
    lt_owner_spawn(&b, NULL, NULL);
    char pa[16], pb[16];
    snprintf(pa, sizeof pa, "%d", (int)a.pid);
    snprintf(pb, sizeof pb, "%d", (int)b.pid);

    ctl_acquire(&t, &a, pa, pb);
    ctl_show_and_validate(&t);
    ctl_list_two(&t, pa);
    ctl_release(&t);
    ctl_force_release(&t);
    ctl_empty_and_usage(&t);
}
