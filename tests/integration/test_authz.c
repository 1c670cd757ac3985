/*
 * test_authz.c - authorization by caller role against the four real
 * services: every method called as every role answers as docs/rpc.md's
 * authorization table says (PERMISSION_DENIED without the role, admitted
 * with it), a refused call changes nothing and is logged and counted, an
 * unknown token is UNAUTHENTICATED, and without role tokens every caller
 * is allowed (the development default, with a warning at start).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_lease_util.h"
#include "orch/v1/envelope.pb-c.h"
#include "orch/v1/guard.pb-c.h"
#include "orch/v1/health.pb-c.h"
#include "orch/v1/launcher.pb-c.h"
#include "orch/v1/lease.pb-c.h"
#include "orch/v1/stage.pb-c.h"

#define TOKENS                                                                                     \
    "ORCH_RPC_TOKENS=operator:tok-operator,stage:tok-stage,launcher:tok-launcher,lease:tok-lease," \
    "guard:tok-guard"

static const char *const role_names[ORCH_ROLE_COUNT] = { "operator", "stage", "launcher", "lease",
                                                         "guard" };

static char db[256];
static th_svc svcs[4];
static const char *const names[4] = { "lease", "stage", "guard", "launcher" };
static const ProtobufCServiceDescriptor *const descs[4] = {
    &orch__v1__lease_service__descriptor, &orch__v1__stage_service__descriptor,
    &orch__v1__guard_service__descriptor, &orch__v1__launcher_service__descriptor
};

static void start_all(void)
{
    static const char *const env[4][4] = {
        { TOKENS, "ORCH_RPC_ROLE_TOKEN=tok-lease", "ORCH_HOST_ID=authz-host" },
        { TOKENS, "ORCH_RPC_ROLE_TOKEN=tok-stage", NULL },
        { TOKENS, "ORCH_RPC_ROLE_TOKEN=tok-guard", NULL },
        { TOKENS, "ORCH_RPC_ROLE_TOKEN=tok-launcher", NULL },
    };
    th_db_fresh(db, sizeof db);
    /* The harness's health checks go out as an operator. */
    cr_assert_eq(orch_rpc_client_defaults(NULL, "tok-operator"), ORCH_OK);
    for (int i = 0; i < 4; i++)
        th_svc_start(&svcs[i], names[i], db, env[i], true);
}

static void stop_all(void)
{
    for (int i = 0; i < 4; i++)
        if (svcs[i].pid > 0)
            th_svc_stop(&svcs[i], SIGTERM, 10000);
    lt_cleanup();
}

TestSuite(authz, .init = start_all, .fini = stop_all, .timeout = 120);

/* The roles docs/rpc.md's authorization table gives `method` (a bit set),
 * or -1 when the table has no row for it. */
static int doc_roles(const char *method)
{
    char path[600], line[512], needle[200];
    snprintf(path, sizeof path, "%s/docs/rpc.md", ORCH_SOURCE_DIR);
    snprintf(needle, sizeof needle, "| `%s` | ", method);
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot read %s", path);
    int roles = -1;
    while (roles < 0 && fgets(line, sizeof line, f)) {
        if (strncmp(line, needle, strlen(needle)) != 0)
            continue;
        roles = 0;
        for (char *tok = strtok(line + strlen(needle), ", |\n"); tok; tok = strtok(NULL, ", |\n")) {
            unsigned r = orch_rpc_role_parse(tok);
            cr_assert(r, "docs/rpc.md: unknown role '%s' for %s", tok, method);
            roles |= (int)r;
        }
    }
    fclose(f);
    return roles;
}

/* Rows of docs/rpc.md's authorization table ("| `orch.v1.X/Y` | ..."). */
static int doc_rows(void)
{
    char path[600], line[512];
    snprintf(path, sizeof path, "%s/docs/rpc.md", ORCH_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot read %s", path);
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strncmp(line, "| `orch.v1.", 11) == 0;
    fclose(f);
    return n;
}

static orch_rpc_client *client_as(const th_svc *s, const char *token)
{
    orch_rpc_client *c;
    orch_rpc_client_opts o = { .default_timeout_ms = 5000, .auth_token = token };
    cr_assert_eq(orch_rpc_client_open(s->rpc_url, &o, &c), ORCH_OK);
    return c;
}

/* Calls `method` with a payload that does not decode: an admitted caller
 * gets INVALID_ARGUMENT (the handler never runs), a refused one
 * PERMISSION_DENIED. */
static orch_code call_undecodable(orch_rpc_client *c, const char *method, const char *token)
{
    static const uint8_t bad[] = { 0x0a, 0xff }; /* a field longer than the payload */
    Orch__V1__RequestEnvelope env = ORCH__V1__REQUEST_ENVELOPE__INIT;
    env.method = (char *)method;
    env.request_id = (char *)"";
    env.timeout_ms = 5000;
    env.auth_token = (char *)token;
    env.payload.data = (uint8_t *)bad;
    env.payload.len = sizeof bad;
    uint8_t frame[512];
    size_t len = orch__v1__request_envelope__get_packed_size(&env);
    cr_assert_lt(len, sizeof frame);
    orch__v1__request_envelope__pack(&env, frame);
    void *rep = NULL;
    size_t n = 0;
    cr_assert_eq(orch_rpc_raw(c, frame, len, 5000, &rep, &n), ORCH_OK, "%s: no reply", method);
    Orch__V1__ReplyEnvelope *r = orch__v1__reply_envelope__unpack(NULL, n, rep);
    cr_assert(r && r->status);
    orch_code code = (orch_code)r->status->code;
    orch__v1__reply_envelope__free_unpacked(r, NULL);
    free(rep);
    return code;
}

/* Every table's row count, as one string ("t1=3,t2=0,..."). */
static char *row_counts(void)
{
    return th_sql(db, "SELECT string_agg(format('%s=%s', t.tablename, (xpath('/row/c/text()', "
                      "query_to_xml(format('SELECT count(*) AS c FROM %I', t.tablename), false, "
                      "true, '')))[1]::text), ',' ORDER BY t.tablename) FROM pg_tables t "
                      "WHERE t.schemaname = 'public'");
}

Test(authz, every_method_answers_each_role_as_docs_rpc_md_says)
{
    char *before = row_counts();
    int denied = 0, methods = 0;
    for (int si = 0; si < 5; si++) {
        const ProtobufCServiceDescriptor *d =
            si < 4 ? descs[si] : &orch__v1__health_service__descriptor;
        const th_svc *s = &svcs[si < 4 ? si : 0];
        for (unsigned m = 0; m < d->n_methods; m++) {
            char method[160];
            snprintf(method, sizeof method, "%s/%s", d->name, d->methods[m].name);
            int allowed = doc_roles(method);
            methods++;
            cr_assert_geq(allowed, 1, "docs/rpc.md has no roles for %s", method);
            for (unsigned r = 0; r < ORCH_ROLE_COUNT; r++) {
                char token[32];
                snprintf(token, sizeof token, "tok-%s", role_names[r]);
                orch_rpc_client *c = client_as(s, token);
                bool may = (unsigned)allowed & (1u << r);
                orch_rpc_status st;
                if (may) {
                    orch_code code = call_undecodable(c, method, token);
                    cr_expect_eq(code, ORCH_CODE_INVALID_ARGUMENT,
                                 "%s as %s: %s, the table admits the role", method, role_names[r],
                                 orch_code_name(code));
                } else {
                    /* A well-formed request: it would run if admitted. */
                    orch_code code = orch_rpc_invoke(c, method, NULL, NULL, NULL, &st, NULL);
                    cr_expect_eq(code, ORCH_CODE_PERMISSION_DENIED, "%s as %s: %s (%s)", method,
                                 role_names[r], orch_code_name(code), st.message);
                    denied++;
                }
                orch_rpc_client_close(c);
            }
        }
    }
    cr_assert_gt(denied, 50);
    cr_assert_eq(doc_rows(), methods, "docs/rpc.md lists methods the services do not have");
    char *after = row_counts();
    cr_assert_str_eq(after, before, "a refused call changed rows");
    free(before);
    free(after);
}

Test(authz, refused_force_release_keeps_the_lease_and_is_logged_and_counted)
{
    orch_rpc_client *op = client_as(&svcs[0], "tok-operator");
    orch_rpc_client *guard = client_as(&svcs[0], "tok-guard");
    orch_rpc_status st;
    lt_owner o;
    lt_owner_spawn(&o, "authz-host", NULL);
    lt_acq g = lt_acquire(op, "AUTHZ-1", "orch", &o, "monitor");
    cr_assert(g.granted, "%s", g.message);
    char *held = th_sql(
        db,
        "SELECT epoch FROM transition_lease WHERE work_item = 'AUTHZ-1' AND released_at IS NULL");

    Orch__V1__ForceReleaseRequest fr = ORCH__V1__FORCE_RELEASE_REQUEST__INIT;
    fr.work_item = (char *)"AUTHZ-1";
    fr.reason = (char *)"not allowed";
    fr.epoch = g.epoch;
    cr_assert_eq(orch_rpc_invoke(guard, "orch.v1.LeaseService/ForceRelease", &fr.base, NULL, NULL,
                                 &st, NULL),
                 ORCH_CODE_PERMISSION_DENIED, "%s", st.message);
    char *still = th_sql(
        db,
        "SELECT epoch FROM transition_lease WHERE work_item = 'AUTHZ-1' AND released_at IS NULL");
    cr_assert_str_eq(still, held);
    char *events =
        th_sql(db, "SELECT count(*) FROM lease_events WHERE work_item = 'AUTHZ-1' AND kind LIKE "
                   "'%release%'");
    cr_assert_str_eq(events, "0", "the refused ForceRelease left an event");
    cr_assert(th_svc_log_has(&svcs[0], "permission denied: role guard may not call "
                                       "orch.v1.LeaseService/ForceRelease"));
    char *metrics = NULL;
    cr_assert_eq(th_http_get(svcs[0].http_addr, "/metrics", &metrics), 200);
    cr_assert(strstr(metrics, "orch_rpc_denied_total{method=\"orch.v1.LeaseService/ForceRelease\","
                              "role=\"guard\"} 1"),
              "no denied count in /metrics");
    free(metrics);
    free(held);
    free(still);
    free(events);
    orch_rpc_client_close(op);
    orch_rpc_client_close(guard);
    lt_owner_kill(&o);
}

Test(authz, unknown_or_missing_token_is_unauthenticated)
{
    orch_rpc_status st;
    Orch__V1__HealthCheckRequest hq = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    orch_rpc_client *c = client_as(&svcs[0], "tok-nobody");
    cr_assert_eq(orch_rpc_invoke(c, "orch.v1.HealthService/Check", &hq.base, NULL, NULL, &st, NULL),
                 ORCH_CODE_UNAUTHENTICATED);
    orch_rpc_client_close(c);
    cr_assert_not(th_svc_log_has(&svcs[0], "tok-operator"), "a token reached the log");
}

Test(authz, without_role_tokens_every_caller_is_allowed_with_a_warning)
{
    th_svc s;
    char db2[256];
    th_db_fresh(db2, sizeof db2); /* a second host on the suite's database would refuse */
    th_svc_start(&s, "lease", db2, NULL, true);
    orch_rpc_client *c = client_as(&s, "tok-guard");
    orch_rpc_status st;
    Orch__V1__ListLeasesRequest lq = ORCH__V1__LIST_LEASES_REQUEST__INIT;
    cr_assert_eq(orch_rpc_invoke(c, "orch.v1.LeaseService/List", &lq.base, NULL, NULL, &st, NULL),
                 ORCH_CODE_OK, "%s", st.message);
    orch_rpc_client_close(c);
    cr_assert(th_svc_log_has(&s, "RPC authorization is off"));
    cr_assert_eq(th_svc_stop(&s, SIGTERM, 10000), 0);
}

Test(authz, shared_token_and_role_tokens_together_exit_2)
{
    char bin[600], out[8192], url[300];
    snprintf(bin, sizeof bin, "%s/services/lease/lease-service", ORCH_BINARY_DIR);
    snprintf(url, sizeof url, "ORCH_DATABASE_URL=%s", db);
    const char *argv[] = { bin, NULL };
    const char *env[] = { url, "ORCH_RUNTIME=test", TOKENS, "ORCH_RPC_AUTH_TOKEN=shared", NULL };
    cr_assert_eq(th_run(argv, env, out, sizeof out, 20000), 2, "%s", out);
    cr_assert(strstr(out, "ORCH_RPC_AUTH_TOKEN is replaced by ORCH_RPC_TOKENS"), "%s", out);
    const char *env2[] = { url, "ORCH_RUNTIME=test", "ORCH_RPC_TOKENS=boss:x", NULL };
    cr_assert_eq(th_run(argv, env2, out, sizeof out, 20000), 2, "%s", out);
    cr_assert(strstr(out, "unknown role 'boss'"), "%s", out);
}
