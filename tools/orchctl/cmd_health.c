/*
 * cmd_health.c - `orchctl health [SERVICE...]`: HealthService/Check on each
 * service named (default all), one line (or JSON object) per service; and
 * `orchctl version [--services]`: orchctl's version, with each service's
 * from the same Check.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/v1/health.pb-c.h"
#include "orch/clock.h"
#include "orchctl.h"

static const char *serving_name(int s)
{
    switch (s) {
    case ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_SERVING: return "SERVING";
    case ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_NOT_SERVING:
        return "NOT_SERVING";
    default: return "UNKNOWN";
    }
}

static void print_one(const target *t, const globals *g, const orch_rpc_status *st,
                      const Orch__V1__HealthCheckResponse *r, double ms, json_t *arr)
{
    if (g->json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:f}", "service", t->server, "address",
                              orchctl_address(t), "code", orch_code_name(st->code), "message",
                              st->message, "latency_ms", ms);
        if (o && r) {
            json_object_set_new(o, "status", json_string(serving_name(r->status)));
            json_object_set_new(o, "instance_id", json_string(r->instance_id));
            json_object_set_new(o, "host_id", json_string(r->host_id));
            json_object_set_new(o, "database_ok", json_boolean(r->database_ok));
            json_object_set_new(o, "version", json_string(r->version));
            json_object_set_new(o, "detail", json_string(r->detail));
        }
        json_array_append_new(arr, o);
    } else if (r) {
        printf("%-17s %-11s %s  host %s  instance %.8s  db %s  %.2f ms%s%s\n", t->server,
               serving_name(r->status), orchctl_address(t), r->host_id, r->instance_id,
               r->database_ok ? "ok" : "DOWN", ms, r->detail[0] ? "  " : "", r->detail);
    } else {
        printf("%-17s %-11s %s  %s\n", t->server, orch_code_name(st->code), orchctl_address(t),
               st->message);
    }
}

#ifndef ORCH_VERSION
#define ORCH_VERSION "0.0.0"
#endif
const char orchctl_version[] = ORCH_VERSION;

/* Calls Check on `t` into *st and *reply (freed by the caller, NULL on
 * error); *ms is the round trip. */
static void check(const target *t, const globals *g, orch_rpc_status *st,
                  Orch__V1__HealthCheckResponse **reply, double *ms)
{
    orch_rpc_client *c;
    Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
    /* TLS and the role token come from the environment (ORCH_TLS_*,
     * ORCH_RPC_ROLE_TOKEN or ORCH_RPC_AUTH_TOKEN), as for every command. */
    orch_rpc_client_opts o = { .default_timeout_ms = g->timeout_ms };
    *reply = NULL;
    *ms = 0;
    if (orch_rpc_client_env(st->message, sizeof st->message) != ORCH_OK) {
        st->code = ORCH_CODE_INVALID_ARGUMENT;
        return;
    }
    if (orch_rpc_client_open(orchctl_address(t), &o, &c) != ORCH_OK) {
        st->code = ORCH_CODE_INVALID_ARGUMENT;
        snprintf(st->message, sizeof st->message, "bad address in %s", t->var);
        return;
    }
    uint64_t t0 = orch_mono_ns();
    orch_rpc_invoke(c, "orch.v1.HealthService/Check", &req.base,
                    &orch__v1__health_check_response__descriptor, NULL, st,
                    (ProtobufCMessage **)reply);
    *ms = (double)(orch_mono_ns() - t0) / 1e6;
    orch_rpc_client_close(c);
}

/* Checks one service; returns the status code, UNAVAILABLE for an answer
 * that says NOT_SERVING (exit 78, as for a service that cannot serve). */
static orch_code health_one(const target *t, const globals *g, json_t *arr)
{
    orch_rpc_status st = { 0 };
    Orch__V1__HealthCheckResponse *r;
    double ms;
    check(t, g, &st, &r, &ms);
    print_one(t, g, &st, r, ms, arr);
    orch_code code = st.code;
    if (code == ORCH_CODE_OK &&
        (!r ||
         r->status != ORCH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING_STATUS_SERVING))
        code = ORCH_CODE_UNAVAILABLE;
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
    return code;
}

/* --help is answered from the command table before this runs. */
int cmd_health(const orchctl_args *a, const globals *g)
{
    bool want[8] = { false };
    bool any = false;
    char **argv = a->pos;
    for (int i = 0; i < a->npos; i++) {
        bool found = false;
        for (size_t k = 0; k < orchctl_ntargets; k++) {
            const target *t = &orchctl_targets[k];
            if (strcmp(argv[i], "all") == 0 || strcmp(argv[i], t->name) == 0 ||
                strcmp(argv[i], t->server) == 0)
                want[k] = found = any = true;
        }
        if (!found) {
            fprintf(stderr,
                    "orchctl health: unknown service '%s' (lease, stage, guard, launcher, all)\n",
                    argv[i]);
            return EXIT_USAGE;
        }
    }
    json_t *arr = g->json ? json_array() : NULL;
    int rc = EXIT_OK;
    for (size_t k = 0; k < orchctl_ntargets; k++) {
        if (any && !want[k])
            continue;
        orch_code code = health_one(&orchctl_targets[k], g, arr);
        if (code != ORCH_CODE_OK && rc == EXIT_OK)
            rc = EXIT_RPC_BASE + (int)code;
    }
    if (arr) {
        json_dumpf(arr, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(arr);
    }
    return rc;
}

/* `version [--services]`: exit 0, or with --services 64 + the code of the
 * first service that did not answer Check. */
int cmd_version(const orchctl_args *a, const globals *g)
{
    if (a->npos != 0)
        return orchctl_usage_error(a);
    bool services = orchctl_flag(a, "services");
    json_t *o = g->json ? json_pack("{s:s}", "orchctl", orchctl_version) : NULL;
    json_t *arr = o && services ? json_array() : NULL;
    if (!g->json)
        printf("orchctl %s\n", orchctl_version);
    int rc = EXIT_OK;
    for (size_t k = 0; services && k < orchctl_ntargets; k++) {
        const target *t = &orchctl_targets[k];
        orch_rpc_status st = { 0 };
        Orch__V1__HealthCheckResponse *r;
        double ms;
        check(t, g, &st, &r, &ms);
        if (arr && r)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "service", t->server, "address",
                                                 orchctl_address(t), "version", r->version));
        else if (arr)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "service", t->server,
                                                 "address", orchctl_address(t), "code",
                                                 orch_code_name(st.code), "message", st.message));
        else if (r)
            printf("%-17s %s  %s\n", t->server, r->version, orchctl_address(t));
        else
            printf("%-17s %s  %s  %s\n", t->server, orch_code_name(st.code), orchctl_address(t),
                   st.message);
        if (!r && rc == EXIT_OK)
            rc = EXIT_RPC_BASE + (int)st.code;
        if (r)
            protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    if (o) {
        if (arr)
            json_object_set_new(o, "services", arr);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(o);
    }
    return rc;
}
