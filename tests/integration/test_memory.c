/*
 * test_memory.c - the resident memory of each service binary: under 10 MiB
 * idle, at most 32 MiB (peak) with 64 requests in flight, and no libcurl
 * mapped by a service that has sent no HTTP request
 * (docs/operations/benchmarks.md, "Memory"). stage-service and
 * guard-service are measured a second time as deployed: every HTTP
 * upstream they have set (to loopback addresses, where nothing needs to
 * listen: an idle service sends nothing), so that the start-up check of
 * those URLs is paid for too.
 *
 * Sanitizer builds are skipped: ASan's shadow memory and quarantine put
 * every process far above these limits.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "orch/clock.h"
#include "orch/v1/health.pb-c.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define IDLE_LIMIT_KIB   (10 * 1024)
#define LOADED_LIMIT_KIB (32 * 1024)
#define IN_FLIGHT        64
#define IDLE_WAIT_MS     1000 /* as tests/bench/run.sh: idle 1 s after ready */
#define LOAD_MS          1500

/* A "Vm...:" field of /proc/PID/status in KiB, -1 when absent. */
static long status_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    long v = -1;
    size_t n = strlen(field);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot open %s", path);
    while (v < 0 && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

/* Whether a mapping of the process names `needle` (a library's name). */
static bool maps_has(pid_t pid, const char *needle)
{
    char path[64], line[1024];
    bool found = false;
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot open %s", path);
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

typedef struct load {
    const char *url;
    uint64_t until_ms;
    atomic_int calls_ok;
    atomic_int calls_failed;
} load;

/* One caller: Check on its own connection until the time is up. */
static void *caller(void *arg)
{
    load *l = arg;
    orch_rpc_client *c;
    orch_rpc_client_opts o = { .default_timeout_ms = 5000 };
    if (orch_rpc_client_open(l->url, &o, &c) != ORCH_OK) {
        atomic_fetch_add(&l->calls_failed, 1);
        return NULL;
    }
    while (orch_mono_ms() < l->until_ms) {
        Orch__V1__HealthCheckRequest req = ORCH__V1__HEALTH_CHECK_REQUEST__INIT;
        ProtobufCMessage *rep = NULL;
        orch_rpc_status st;
        orch_code code =
            orch_rpc_invoke(c, "orch.v1.HealthService/Check", &req.base,
                            &orch__v1__health_check_response__descriptor, NULL, &st, &rep);
        atomic_fetch_add(code == ORCH_CODE_OK ? &l->calls_ok : &l->calls_failed, 1);
        if (rep)
            protobuf_c_message_free_unpacked(rep, NULL);
    }
    orch_rpc_client_close(c);
    return NULL;
}

/* IN_FLIGHT callers for LOAD_MS; fails the test when a call failed. */
static void load_service(const th_svc *s)
{
    static load l;
    pthread_t t[IN_FLIGHT];
    l.url = s->rpc_url;
    l.until_ms = orch_mono_ms() + LOAD_MS;
    atomic_store(&l.calls_ok, 0);
    atomic_store(&l.calls_failed, 0);
    for (int i = 0; i < IN_FLIGHT; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, caller, &l), 0);
    for (int i = 0; i < IN_FLIGHT; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&l.calls_failed), 0, "%s-service: %d call(s) failed under load",
                 s->name, atomic_load(&l.calls_failed));
    cr_assert_gt(atomic_load(&l.calls_ok), IN_FLIGHT, "%s-service answered too few calls", s->name);
}

/* The service with ORCH_LOG_LEVEL=warn and `extra` (NULL-terminated, may
 * be NULL) in its environment. */
static void check_service(const char *name, const char *const *extra)
{
#ifdef UNDER_ASAN
    cr_skip_test("resident memory limits do not apply to an AddressSanitizer build");
#endif
    char url[512];
    const char *env[16] = { "ORCH_LOG_LEVEL=warn" };
    size_t ne = 1;
    for (; extra && *extra; extra++) {
        cr_assert_lt(ne, sizeof env / sizeof env[0] - 1);
        env[ne++] = *extra;
    }
    th_svc s;
    th_db_fresh(url, sizeof url);
    th_svc_start(&s, name, url, env, true);
    usleep(IDLE_WAIT_MS * 1000);
    long idle = status_kib(s.pid, "VmRSS");
    bool curl = maps_has(s.pid, "libcurl");
    load_service(&s);
    long peak = status_kib(s.pid, "VmHWM");
    cr_log_info("%s-service: idle RSS %ld KiB, peak %ld KiB with %d in flight", name, idle, peak,
                IN_FLIGHT);
    cr_assert_eq(th_svc_stop(&s, SIGTERM, 20000), 0);
    cr_expect_not(curl, "%s-service maps libcurl without having sent an HTTP request", name);
    cr_expect_lt(idle, IDLE_LIMIT_KIB, "%s-service: idle RSS %ld KiB, limit %d KiB", name, idle,
                 IDLE_LIMIT_KIB);
    cr_expect_leq(peak, LOADED_LIMIT_KIB,
                  "%s-service: peak RSS %ld KiB with %d in flight, limit %d", name, peak, IN_FLIGHT,
                  LOADED_LIMIT_KIB);
}

Test(memory, lease_service_stays_within_its_limits)
{
    check_service("lease", NULL);
}

Test(memory, stage_service_stays_within_its_limits)
{
    check_service("stage", NULL);
}

Test(memory, guard_service_stays_within_its_limits)
{
    check_service("guard", NULL);
}

Test(memory, launcher_service_stays_within_its_limits)
{
    check_service("launcher", NULL);
}

Test(memory, stage_service_with_every_effect_url_set_stays_within_its_limits)
{
    static const char *const env[] = { "ORCH_GITEA_URL=http://127.0.0.1:3000",
                                       "ORCH_GITEA_TOKEN=memory-test-token",
                                       "ORCH_IMAGE_HOOK_URL=http://127.0.0.1:8081/image",
                                       "ORCH_DEPLOY_HOOK_URL=http://[::1]:8082/deploy",
                                       "ORCH_HOOK_TOKEN=memory-test-token",
                                       NULL };
    check_service("stage", env);
}

Test(memory, guard_service_with_every_upstream_url_set_stays_within_its_limits)
{
    static const char *const env[] = { "ORCH_PLANE_BASE_URL=http://127.0.0.1:8083",
                                       "ORCH_PLANE_API_KEY=memory-test-key",
                                       "ORCH_PLANE_WORKSPACE_SLUG=orch",
                                       "ORCH_TELEGRAM_BASE_URL=http://127.0.0.1:8084",
                                       "ORCH_TELEGRAM_BOT_TOKEN=123:memory-test-token",
                                       "ORCH_TELEGRAM_CHAT_ID=-100123",
                                       NULL };
    check_service("guard", env);
}
