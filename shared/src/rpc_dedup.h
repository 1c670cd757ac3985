/*
 * rpc_dedup.h - request-id memory of the RPC server (internal).
 *
 * Maps a request id to the call running it or to the reply it produced, so
 * that a re-sent request never runs twice. Bounded: at most `cap` finished
 * replies are kept, each at most `ttl_ms`; running entries are bounded by
 * the server's concurrency. Thread-safe (one mutex).
 */
#ifndef ORCH_RPC_DEDUP_H
#define ORCH_RPC_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"

typedef struct orch__dedup orch__dedup;

typedef enum orch__dedup_verdict {
    ORCH__DEDUP_NEW,    /* first sight: caller runs it, then calls finish */
    ORCH__DEDUP_JOINED, /* running elsewhere: `waiter` was parked */
    ORCH__DEDUP_DONE,   /* finished: *reply is a malloc'ed copy to send */
} orch__dedup_verdict;

orch_err orch__dedup_new(size_t cap, uint32_t ttl_ms, orch__dedup **out);
void orch__dedup_free(orch__dedup *d);

/* Looks `id` up at monotonic time now_ms. On ORCH__DEDUP_DONE, *reply and
 * *len receive a copy the caller owns. ORCH_ENOMEM leaves nothing behind. */
orch_err orch__dedup_begin(orch__dedup *d, const char *id, uint64_t now_ms, void *waiter,
                           orch__dedup_verdict *verdict, void **reply, size_t *len);

/* Ends the running entry `id`. With `keep`, the reply (copied) is remembered;
 * otherwise the entry is forgotten. The parked waiters are handed back
 * through `waiters` (malloc'ed array, caller frees) and `nwaiters`. */
void orch__dedup_finish(orch__dedup *d, const char *id, uint64_t now_ms, const void *reply,
                        size_t len, int keep, void ***waiters, size_t *nwaiters);

#endif
