/*
 * test_lease_util.c - see test_lease_util.h.
 */
#include "test_lease_util.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/clock.h"
#include "orch/ident.h"

#define MAX_OWNERS 64

static pid_t spawned[MAX_OWNERS];
static int nspawned;

void lt_sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

const char *lt_kernel_boot_id(void)
{
    static char id[64];
    if (!id[0]) {
        FILE *f = fopen(ORCH_BOOT_ID_PATH_DEFAULT, "r");
        cr_assert(f, "cannot read %s", ORCH_BOOT_ID_PATH_DEFAULT);
        cr_assert(fgets(id, sizeof id, f));
        fclose(f);
        id[strcspn(id, "\n")] = '\0';
    }
    return id;
}

void lt_owner_spawn(lt_owner *o, const char *host_id, const char *boot_id)
{
    static const char *const argv[] = { "/bin/sleep", "60", NULL };
    memset(o, 0, sizeof *o);
    o->pid = th_spawn(argv);
    cr_assert(nspawned < MAX_OWNERS, "too many owner processes");
    spawned[nspawned++] = o->pid;
    /* The child may still be the test's image for an instant; the start
     * ticks of a pid do not change across exec, so reading them now is
     * exact. */
    cr_assert(orch_proc_start_ticks(o->pid, &o->start_ticks) == ORCH_OK,
              "no /proc entry for owner %d", (int)o->pid);
    o->claimed_pid = (int32_t)o->pid;
    snprintf(o->host_id, sizeof o->host_id, "%s", host_id ? host_id : LT_HOST);
    snprintf(o->boot_id, sizeof o->boot_id, "%s", boot_id ? boot_id : lt_kernel_boot_id());
    snprintf(o->instance_id, sizeof o->instance_id, "owner-%d", (int)o->pid);
}

void lt_start_advertised(th_svc *s, const char *db, const char *const *env, const char *advertise,
                         bool wait_ready)
{
    char url[64], url_env[96], adv_env[320];
    const char *all[16];
    int n = 0;
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", th_free_port());
    snprintf(url_env, sizeof url_env, "ORCH_LEASE_RPC_URL=%s", url);
    snprintf(adv_env, sizeof adv_env, "ORCH_LEASE_ADVERTISE_URL=%s", advertise ? advertise : url);
    all[n++] = url_env;
    all[n++] = adv_env;
    for (const char *const *e = env; e && *e; e++) {
        cr_assert_lt(n, 15, "too many variables");
        all[n++] = *e;
    }
    all[n] = NULL;
    th_svc_start(s, "lease", db, all, false);
    snprintf(s->rpc_url, sizeof s->rpc_url, "%s", url);
    if (wait_ready && !th_svc_wait_health(s, TH_SERVING, 20000)) {
        th_svc_dump_log(s);
        cr_assert_fail("lease-service at %s did not become ready", url);
    }
}

void lt_owner_kill(lt_owner *o)
{
    if (o->pid <= 0)
        return;
    int rc = th_kill(o->pid, SIGKILL, 5000);
    cr_assert_eq(rc, 128 + SIGKILL, "owner %d: exit %d", (int)o->pid, rc);
    for (int i = 0; i < nspawned; i++)
        if (spawned[i] == o->pid)
            spawned[i] = 0;
    o->pid = 0;
}

void lt_owner_kill_all(void)
{
    for (int i = 0; i < nspawned; i++) {
        if (spawned[i] > 0)
            (void)th_kill(spawned[i], SIGKILL, 5000);
        spawned[i] = 0;
    }
    nspawned = 0;
}

void lt_owner_msg(const lt_owner *o, Orch__V1__Owner *m)
{
    orch__v1__owner__init(m);
    m->host_id = (char *)o->host_id;
    m->boot_id = (char *)o->boot_id;
    m->pid = o->claimed_pid;
    m->start_ticks = o->start_ticks;
    m->instance_id = (char *)o->instance_id;
}

#define MAX_CLIENTS 64

static orch_rpc_client *clients[MAX_CLIENTS];

orch_rpc_client *lt_client(const th_svc *s)
{
    orch_rpc_client *c;
    orch_rpc_client_opts o = { .default_timeout_ms = 10000 };
    cr_assert(orch_rpc_client_open(s->rpc_url, &o, &c) == ORCH_OK);
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (!clients[i]) {
            clients[i] = c;
            return c;
        }
    }
    orch_rpc_client_close(c);
    cr_assert_fail("too many clients");
    return NULL;
}

void lt_client_close(orch_rpc_client *c)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i] == c)
            clients[i] = NULL;
    orch_rpc_client_close(c);
}

void lt_cleanup(void)
{
    for (int i = 0; i < MAX_CLIENTS; i++) {
        orch_rpc_client_close(clients[i]);
        clients[i] = NULL;
    }
    lt_owner_kill_all();
}

void lt_acq_from_reply(lt_acq *a, const Orch__V1__AcquireReply *r)
{
    a->granted = r->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_GRANTED;
    a->held = r->outcome == ORCH__V1__ACQUIRE_REPLY__OUTCOME__OUTCOME_HELD;
    a->epoch = r->epoch;
    a->reclaimed = r->reclaimed;
    a->already_held = r->already_held;
    a->inert = r->inert;
    a->holder_liveness = r->holder_liveness;
    if (r->holder) {
        a->holder_epoch = r->holder->epoch;
        if (r->holder->owner) {
            a->holder_pid = r->holder->owner->pid;
            snprintf(a->holder_host, sizeof a->holder_host, "%s", r->holder->owner->host_id);
        }
    }
}

lt_acq lt_acquire(orch_rpc_client *c, const char *item, const char *repo, const lt_owner *o,
                  const char *actor)
{
    lt_acq a;
    memset(&a, 0, sizeof a);
    Orch__V1__AcquireRequest req = ORCH__V1__ACQUIRE_REQUEST__INIT;
    Orch__V1__Owner om;
    lt_owner_msg(o, &om);
    req.work_item = (char *)item;
    req.repo = (char *)(repo ? repo : "orch");
    req.transition = "review->testing";
    req.actor = (char *)(actor ? actor : "test");
    req.owner = &om;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    a.code = orch_rpc_invoke(c, orch_lease_method_acquire, &req.base,
                             &orch__v1__acquire_reply__descriptor, NULL, &st, &m);
    snprintf(a.message, sizeof a.message, "%s", st.message);
    if (a.code == ORCH_CODE_OK) {
        cr_assert(m, "Acquire answered OK without a reply");
        lt_acq_from_reply(&a, (const Orch__V1__AcquireReply *)m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return a;
}

orch_code lt_release(orch_rpc_client *c, const char *item, uint64_t epoch, bool *already,
                     orch_rpc_status *st)
{
    Orch__V1__ReleaseRequest req = ORCH__V1__RELEASE_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    orch_rpc_status local;
    req.work_item = (char *)item;
    req.epoch = epoch;
    if (!st)
        st = &local;
    orch_code code = orch_rpc_invoke(c, orch_lease_method_release, &req.base,
                                     &orch__v1__release_reply__descriptor, NULL, st, &m);
    if (already)
        *already = code == ORCH_CODE_OK && ((Orch__V1__ReleaseReply *)m)->already_released;
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

lt_valid lt_validate(orch_rpc_client *c, const char *item, uint64_t epoch)
{
    lt_valid v;
    memset(&v, 0, sizeof v);
    Orch__V1__ValidateRequest req = ORCH__V1__VALIDATE_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    orch_rpc_status st;
    req.work_item = (char *)item;
    req.epoch = epoch;
    v.code = orch_rpc_invoke(c, orch_lease_method_validate, &req.base,
                             &orch__v1__validate_reply__descriptor, NULL, &st, &m);
    snprintf(v.message, sizeof v.message, "%s", st.message);
    if (v.code == ORCH_CODE_OK) {
        const Orch__V1__ValidateReply *r = (const Orch__V1__ValidateReply *)m;
        v.valid = r->valid;
        v.held = r->held;
        v.current_epoch = r->current_epoch;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return v;
}

orch_code lt_call(orch_rpc_client *c, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *reply_desc, orch_rpc_status *st)
{
    ProtobufCMessage *m = NULL;
    orch_code code = orch_rpc_invoke(c, method, req, reply_desc, NULL, st, &m);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

static char *vsql(const char *db, const char *fmt, va_list ap)
{
    char sql[2048];
    int n = vsnprintf(sql, sizeof sql, fmt, ap);
    cr_assert(n > 0 && (size_t)n < sizeof sql, "query too long");
    return th_sql(db, sql);
}

long long lt_sql_num(const char *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = vsql(db, fmt, ap);
    va_end(ap);
    long long n = -1;
    if (v) {
        char *end;
        n = strtoll(v, &end, 10);
        cr_assert(*end == '\0', "not a number: %s", v);
        free(v);
    }
    return n;
}

char *lt_sql_text(const char *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = vsql(db, fmt, ap);
    va_end(ap);
    return v;
}

bool lt_sql_wait(const char *db, long long want, uint32_t timeout_ms, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    cr_assert(n > 0 && (size_t)n < sizeof sql, "query too long");
    uint64_t until = orch_mono_ms() + timeout_ms;
    for (;;) {
        long long got = lt_sql_num(db, "%s", sql);
        if (got == want)
            return true;
        if (orch_mono_ms() >= until)
            return false;
        lt_sleep_ms(50);
    }
}

double lt_metric(const th_svc *s, const char *series)
{
    char *body = NULL;
    cr_assert_eq(th_http_get(s->http_addr, "/metrics", &body), 200);
    double v = th_metric(body, series);
    free(body);
    return v;
}

const char *lt_orchctl(void)
{
    return ORCH_BINARY_DIR "/tools/orchctl/orchctl";
}
