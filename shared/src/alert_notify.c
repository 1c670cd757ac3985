/*
 * alert_notify.c - see alert_notify.h.
 *
 * Threads: any thread raises alerts (push under the mutex, never waits for
 * space); the sender thread pops and calls guard-service with the mutex
 * released.
 */
#include "orch/alert_notify.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/v1/guard.pb-c.h"
#include "orch/alert.h"
#include "orch/clock.h"
#include "orch/ident.h"
#include "orch/log.h"
#include "orch/rpc.h"

typedef struct item {
    char kind[64];
    char work_item[128];
    char text[1024];
    char request_id[33];
} item;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item q[ORCH_ALERT_NOTIFY_QUEUE];
    size_t head, len;
    bool running, quit;
    uint64_t drain_until;
    pthread_t thread;
    orch_rpc_client *client;
    char source[64];
} N = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static _Atomic uint64_t n_sent, n_dropped;

uint64_t orch_alert_notify_sent(void)
{
    return atomic_load(&n_sent);
}
uint64_t orch_alert_notify_dropped(void)
{
    return atomic_load(&n_dropped);
}

static void sink(const char *kind, const char *work_item, const char *text, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&N.mu);
    if (!N.running || N.quit || N.len == ORCH_ALERT_NOTIFY_QUEUE) {
        bool full = N.len == ORCH_ALERT_NOTIFY_QUEUE;
        pthread_mutex_unlock(&N.mu);
        atomic_fetch_add(&n_dropped, 1);
        orch_warn("alert %s not sent to guard-service: %s", kind,
                  full ? "queue full" : "notifier stopped");
        return;
    }
    item *it = &N.q[(N.head + N.len) % ORCH_ALERT_NOTIFY_QUEUE];
    snprintf(it->kind, sizeof it->kind, "%s", kind);
    snprintf(it->work_item, sizeof it->work_item, "%s", work_item ? work_item : "");
    snprintf(it->text, sizeof it->text, "%s", text);
    if (orch_random_hex(it->request_id, 16) != ORCH_OK)
        it->request_id[0] = '\0';
    N.len++;
    pthread_cond_signal(&N.cv);
    pthread_mutex_unlock(&N.mu);
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* A fixed-width prefix: some alert texts end in the middle of a UTF-8
 * sequence after truncation; cut back to a character boundary. */
static void utf8_cut(char *s)
{
    size_t n = strlen(s);
    size_t i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i > 0 && ((unsigned char)s[i - 1] & 0x80)) {
        unsigned char lead = (unsigned char)s[i - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (n - (i - 1) < need)
            s[i - 1] = '\0';
    }
}

static void deliver(item *it)
{
    char text[1400];
    snprintf(text, sizeof text, "[%s] %s %s: %s", N.source, it->kind, it->work_item, it->text);
    utf8_cut(text);
    Orch__V1__NotifyRequest req = ORCH__V1__NOTIFY_REQUEST__INIT;
    req.text = text;
    req.caller = N.source;
    req.kind = it->kind;
    req.work_item = it->work_item;
    orch_rpc_call_opts o = { .timeout_ms = 5000,
                             .request_id = it->request_id[0] ? it->request_id : NULL };
    orch_rpc_status st = { 0 };
    for (int attempt = 1; attempt <= ORCH_ALERT_NOTIFY_ATTEMPTS; attempt++) {
        orch_code code = orch_rpc_invoke(N.client, "orch.v1.GuardService/Notify", &req.base, NULL,
                                         &o, &st, NULL);
        if (code == ORCH_CODE_OK) {
            atomic_fetch_add(&n_sent, 1);
            return;
        }
        /* A decision or bad input does not change by asking again. */
        if (code == ORCH_CODE_PERMISSION_DENIED || code == ORCH_CODE_INVALID_ARGUMENT ||
            code == ORCH_CODE_FAILED_PRECONDITION)
            break;
        pthread_mutex_lock(&N.mu);
        bool quitting = N.quit && orch_mono_ms() >= N.drain_until;
        pthread_mutex_unlock(&N.mu);
        if (quitting)
            break;
        sleep_ms(200u << attempt);
    }
    atomic_fetch_add(&n_dropped, 1);
    orch_warn("alert %s not delivered by guard-service: %s %s", it->kind, orch_code_name(st.code),
              st.message);
}

static void *sender_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&N.mu);
    for (;;) {
        while (N.len == 0 && !N.quit)
            pthread_cond_wait(&N.cv, &N.mu);
        if (N.len == 0 || (N.quit && orch_mono_ms() >= N.drain_until))
            break;
        item it = N.q[N.head];
        N.head = (N.head + 1) % ORCH_ALERT_NOTIFY_QUEUE;
        N.len--;
        pthread_mutex_unlock(&N.mu);
        deliver(&it);
        pthread_mutex_lock(&N.mu);
    }
    pthread_mutex_unlock(&N.mu);
    return NULL;
}

orch_err orch_alert_notify_start(const char *guard_url, const char *auth_token, const char *source)
{
    if (!guard_url || !guard_url[0])
        return ORCH_EINVAL;
    pthread_mutex_lock(&N.mu);
    bool running = N.running;
    pthread_mutex_unlock(&N.mu);
    if (running)
        return ORCH_EINVAL;
    orch_rpc_client_opts o = { .auth_token = auth_token && auth_token[0] ? auth_token : NULL };
    orch_err err = orch_rpc_client_open(guard_url, &o, &N.client);
    if (err)
        return err;
    snprintf(N.source, sizeof N.source, "%s", source ? source : "");
    N.quit = false;
    N.head = N.len = 0;
    if (pthread_create(&N.thread, NULL, sender_main, NULL) != 0) {
        orch_rpc_client_close(N.client);
        N.client = NULL;
        return ORCH_ENOMEM;
    }
    pthread_mutex_lock(&N.mu);
    N.running = true;
    pthread_mutex_unlock(&N.mu);
    orch_alert_set_sink(sink, NULL);
    return ORCH_OK;
}

void orch_alert_notify_stop(uint32_t grace_ms)
{
    pthread_mutex_lock(&N.mu);
    if (!N.running) {
        pthread_mutex_unlock(&N.mu);
        return;
    }
    N.quit = true;
    N.drain_until = orch_mono_ms() + grace_ms;
    pthread_cond_signal(&N.cv);
    pthread_mutex_unlock(&N.mu);
    orch_alert_set_sink(NULL, NULL);
    pthread_join(N.thread, NULL);
    orch_rpc_client_close(N.client);
    N.client = NULL;
    pthread_mutex_lock(&N.mu);
    N.running = false;
    pthread_mutex_unlock(&N.mu);
}
