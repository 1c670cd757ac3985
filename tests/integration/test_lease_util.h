/*
 * test_lease_util.h - helpers shared by the lease-service integration tests
 * (test_lease_*.c): owner processes, typed lease RPC calls, SQL polling.
 *
 * Owners are real processes (/bin/sleep) so that their pid and start ticks
 * are what lease-service reads from /proc; killing or stopping them
 * simulates a crash or a slow holder. Every helper fails the calling
 * Criterion test on an unexpected transport error.
 */
#ifndef ORCH_TEST_LEASE_UTIL_H
#define ORCH_TEST_LEASE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"
#include "orch/lease_client.h"
#include "orch/v1/lease.pb-c.h"

#define LT_HOST "lease-test-host"

typedef struct lt_owner {
    pid_t pid; /* the helper process; 0 once reaped */
    int32_t claimed_pid;
    uint64_t start_ticks;
    char host_id[64];
    char boot_id[64];
    char instance_id[64];
} lt_owner;

/* The kernel's boot id (what lease-service reads by default). */
const char *lt_kernel_boot_id(void);

/* Spawns a /bin/sleep owner on `host_id` (NULL: LT_HOST) with `boot_id`
 * (NULL: the kernel's). The identity is the process's real one. */
void lt_owner_spawn(lt_owner *o, const char *host_id, const char *boot_id);
/* SIGKILLs and reaps the process (a zombie would still look alive). */
void lt_owner_kill(lt_owner *o);
/* Kills every owner spawned by this test process (fini). */
void lt_owner_kill_all(void);
/* Fills `m` (borrowing from `o`). */
void lt_owner_msg(const lt_owner *o, Orch__V1__Owner *m);

/* Starts lease-service `s` (database `db`, then the "KEY=VALUE" strings of
 * `env`, at most 12) on a fresh loopback port with ORCH_LEASE_ADVERTISE_URL
 * set to `advertise` (NULL: its own address, as a second host on one
 * machine must). With `wait_ready`, fails the test unless it gets ready. */
void lt_start_advertised(th_svc *s, const char *db, const char *const *env, const char *advertise,
                         bool wait_ready);

/* A client of `s`, closed by lt_client_close() or at the latest by
 * lt_cleanup() (so that a failed assertion leaks nothing). */
orch_rpc_client *lt_client(const th_svc *s);
void lt_client_close(orch_rpc_client *c);
/* Closes every client still open and kills every owner (suite fini). */
void lt_cleanup(void);

typedef struct lt_acq {
    orch_code code;
    char message[512];
    bool granted, held;
    uint64_t epoch;
    bool reclaimed, already_held, inert;
    int32_t holder_pid;
    uint64_t holder_epoch;
    char holder_host[64];
    Orch__V1__Liveness holder_liveness;
} lt_acq;

/* Acquire with repo "orch", transition "review->testing", actor `actor`
 * (NULL: "test"). */
lt_acq lt_acquire(orch_rpc_client *c, const char *item, const char *repo, const lt_owner *o,
                  const char *actor);
/* Decodes an AcquireReply into `a` (code OK). */
void lt_acq_from_reply(lt_acq *a, const Orch__V1__AcquireReply *r);

orch_code lt_release(orch_rpc_client *c, const char *item, uint64_t epoch, bool *already,
                     orch_rpc_status *st);

typedef struct lt_valid {
    orch_code code;
    char message[512];
    bool valid, held;
    uint64_t current_epoch;
} lt_valid;
lt_valid lt_validate(orch_rpc_client *c, const char *item, uint64_t epoch);

/* Any request, any reply type; the decoded reply is freed here. */
orch_code lt_call(orch_rpc_client *c, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *reply_desc, orch_rpc_status *st);

/* First value of the first row of a printf-formatted query as a number
 * (-1 if no row or NULL). */
long long lt_sql_num(const char *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same as text (malloc'ed, NULL if no row). */
char *lt_sql_text(const char *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Polls `query` until it yields `want` or timeout_ms passes; true on success. */
bool lt_sql_wait(const char *db, long long want, uint32_t timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Value of one series on the service's /metrics (-1 if absent). */
double lt_metric(const th_svc *s, const char *series);

void lt_sleep_ms(unsigned ms);

/* Path of the built orchctl. */
const char *lt_orchctl(void);

#endif
