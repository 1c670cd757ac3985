/*
 * test_dedup.c - the request-id memory of the RPC server
 * (shared/src/rpc_dedup.c, internal): first sight, joining a running call,
 * stored replies, forgetting, TTL and capacity eviction. Time is passed in
 * explicitly, so no test sleeps.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../shared/src/rpc_dedup.h"

typedef struct begin_result {
    orch__dedup_verdict verdict;
    void *reply;
    size_t len;
} begin_result;

static begin_result begin(orch__dedup *d, const char *id, uint64_t now, void *waiter)
{
    begin_result r = { (orch__dedup_verdict)-1, NULL, 0 };
    cr_assert_eq(orch__dedup_begin(d, id, now, waiter, &r.verdict, &r.reply, &r.len), ORCH_OK,
                 "begin %s", id);
    return r;
}

static orch__dedup_verdict verdict_of(orch__dedup *d, const char *id, uint64_t now)
{
    begin_result r = begin(d, id, now, NULL);
    free(r.reply);
    return r.verdict;
}

/* Finishes `id`, keeping `reply` (a string) when keep; returns the number of
 * waiters handed back. */
static size_t finish(orch__dedup *d, const char *id, uint64_t now, const char *reply, int keep)
{
    void **w = NULL;
    size_t n = 99;
    orch__dedup_finish(d, id, now, reply, reply ? strlen(reply) : 0, keep, &w, &n);
    cr_assert_neq(n, 99, "nwaiters not written");
    cr_assert(n == 0 || w != NULL);
    free(w);
    return n;
}

static void run(orch__dedup *d, const char *id, uint64_t now, const char *reply)
{
    cr_assert_eq(verdict_of(d, id, now), ORCH__DEDUP_NEW, "%s", id);
    finish(d, id, now, reply, 1);
}

Test(rpc_dedup, new_then_joined_then_finish_hands_back_the_waiters)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(16, 60000, &d), ORCH_OK);
    int first, w1, w2;
    cr_assert_eq(begin(d, "req-1", 1000, &first).verdict, ORCH__DEDUP_NEW);
    cr_assert_eq(begin(d, "req-1", 1001, &w1).verdict, ORCH__DEDUP_JOINED);
    cr_assert_eq(begin(d, "req-1", 1002, &w2).verdict, ORCH__DEDUP_JOINED);

    void **waiters = NULL;
    size_t n = 0;
    orch__dedup_finish(d, "req-1", 1003, "reply", 5, 1, &waiters, &n);
    cr_assert_eq(n, 2);
    cr_assert_not_null(waiters);
    cr_expect_eq(waiters[0], &w1);
    cr_expect_eq(waiters[1], &w2);
    free(waiters);

    /* The waiters are handed back once only. */
    orch__dedup_finish(d, "req-1", 1004, "other", 5, 1, &waiters, &n);
    cr_expect_eq(n, 0);
    cr_expect_null(waiters);
    orch__dedup_free(d);
}

Test(rpc_dedup, many_waiters_are_all_handed_back_in_order)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(16, 60000, &d), ORCH_OK);
    int slots[50];
    cr_assert_eq(begin(d, "busy", 1, NULL).verdict, ORCH__DEDUP_NEW);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(begin(d, "busy", 2, &slots[i]).verdict, ORCH__DEDUP_JOINED);
    void **waiters = NULL;
    size_t n = 0;
    orch__dedup_finish(d, "busy", 3, "r", 1, 1, &waiters, &n);
    cr_assert_eq(n, 50);
    for (int i = 0; i < 50; i++)
        cr_expect_eq(waiters[i], &slots[i], "waiter %d", i);
    free(waiters);
    orch__dedup_free(d);
}

Test(rpc_dedup, done_returns_a_copy_of_the_reply)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(16, 60000, &d), ORCH_OK);
    char reply[] = "the \0 first reply"; /* binary, with a NUL inside */
    size_t rlen = sizeof reply - 1;
    cr_assert_eq(begin(d, "req-2", 10, NULL).verdict, ORCH__DEDUP_NEW);
    void **waiters = NULL;
    size_t n = 0;
    orch__dedup_finish(d, "req-2", 11, reply, rlen, 1, &waiters, &n);
    free(waiters);
    cr_assert_eq(n, 0);
    memset(reply, 'X', rlen); /* the table must have kept its own copy */

    begin_result a = begin(d, "req-2", 12, NULL);
    begin_result b = begin(d, "req-2", 13, NULL);
    cr_assert_eq(a.verdict, ORCH__DEDUP_DONE);
    cr_assert_eq(b.verdict, ORCH__DEDUP_DONE);
    cr_assert_eq(a.len, rlen);
    cr_assert_eq(memcmp(a.reply, "the \0 first reply", rlen), 0);
    cr_assert_neq(a.reply, b.reply, "each caller owns its own copy");
    memset(a.reply, 'Y', a.len);
    cr_assert_eq(memcmp(b.reply, "the \0 first reply", rlen), 0);
    free(a.reply);
    free(b.reply);
    orch__dedup_free(d);
}

Test(rpc_dedup, empty_reply_is_remembered)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(16, 60000, &d), ORCH_OK);
    run(d, "empty", 1, "");
    begin_result r = begin(d, "empty", 2, NULL);
    cr_assert_eq(r.verdict, ORCH__DEDUP_DONE);
    cr_assert_eq(r.len, 0);
    free(r.reply);
    orch__dedup_free(d);
}

Test(rpc_dedup, keep_zero_forgets_the_id)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(16, 60000, &d), ORCH_OK);
    int w;
    cr_assert_eq(begin(d, "req-3", 1, NULL).verdict, ORCH__DEDUP_NEW);
    cr_assert_eq(begin(d, "req-3", 2, &w).verdict, ORCH__DEDUP_JOINED);
    void **waiters = NULL;
    size_t n = 0;
    orch__dedup_finish(d, "req-3", 3, "not kept", 8, 0, &waiters, &n);
    cr_assert_eq(n, 1, "waiters are handed back even when the reply is not kept");
    cr_assert_eq(waiters[0], &w);
    free(waiters);
    cr_assert_eq(verdict_of(d, "req-3", 4), ORCH__DEDUP_NEW);
    orch__dedup_free(d);
}

Test(rpc_dedup, ttl_expiry_makes_the_id_new_again)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(16, 1000, &d), ORCH_OK);
    run(d, "req-4", 5000, "r4");
    cr_assert_eq(verdict_of(d, "req-4", 5500), ORCH__DEDUP_DONE);
    cr_assert_eq(verdict_of(d, "req-4", 6000), ORCH__DEDUP_DONE, "kept for ttl_ms exactly");
    cr_assert_eq(verdict_of(d, "req-4", 6001), ORCH__DEDUP_NEW);
    orch__dedup_free(d);
}

Test(rpc_dedup, ttl_expiry_happens_on_lookups_of_other_ids)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(16, 1000, &d), ORCH_OK);
    run(d, "old", 0, "r");
    run(d, "young", 900, "r");
    /* A lookup of an unrelated id at 1500 expires "old" but not "young". */
    cr_assert_eq(verdict_of(d, "unrelated", 1500), ORCH__DEDUP_NEW);
    cr_assert_eq(verdict_of(d, "young", 1500), ORCH__DEDUP_DONE);
    cr_assert_eq(verdict_of(d, "old", 1500), ORCH__DEDUP_NEW);
    orch__dedup_free(d);
}

Test(rpc_dedup, capacity_evicts_the_oldest_finished_first)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(3, 60000, &d), ORCH_OK);
    /* Begin in one order, finish in another: eviction follows finishing. */
    cr_assert_eq(verdict_of(d, "a", 1), ORCH__DEDUP_NEW);
    cr_assert_eq(verdict_of(d, "b", 1), ORCH__DEDUP_NEW);
    cr_assert_eq(verdict_of(d, "c", 1), ORCH__DEDUP_NEW);
    finish(d, "c", 2, "rc", 1);
    finish(d, "a", 3, "ra", 1);
    finish(d, "b", 4, "rb", 1);
    run(d, "d", 5, "rd"); /* a fourth finished entry: "c" must go */

    cr_assert_eq(verdict_of(d, "a", 6), ORCH__DEDUP_DONE);
    cr_assert_eq(verdict_of(d, "b", 6), ORCH__DEDUP_DONE);
    cr_assert_eq(verdict_of(d, "d", 6), ORCH__DEDUP_DONE);
    cr_assert_eq(verdict_of(d, "c", 6), ORCH__DEDUP_NEW);
    orch__dedup_free(d);
}

Test(rpc_dedup, capacity_never_evicts_running_entries)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(2, 60000, &d), ORCH_OK);
    cr_assert_eq(verdict_of(d, "running", 1), ORCH__DEDUP_NEW);
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "f%d", i);
        run(d, id, (uint64_t)(2 + i), "r");
    }
    int w;
    cr_assert_eq(begin(d, "running", 20, &w).verdict, ORCH__DEDUP_JOINED);
    cr_assert_eq(finish(d, "running", 21, "done", 1), 1);
    cr_assert_eq(verdict_of(d, "running", 22), ORCH__DEDUP_DONE);
    /* Only the two most recently finished remain. */
    cr_assert_eq(verdict_of(d, "f9", 22), ORCH__DEDUP_DONE);
    cr_assert_eq(verdict_of(d, "f8", 22), ORCH__DEDUP_NEW);
    orch__dedup_free(d);
}

Test(rpc_dedup, many_ids_keep_their_own_replies)
{
    enum { N = 2000 };
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(N, 60000, &d), ORCH_OK);
    char id[32], reply[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        snprintf(reply, sizeof reply, "reply-%d", i);
        run(d, id, 1, reply);
    }
    int checked = 0;
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        snprintf(reply, sizeof reply, "reply-%d", i);
        begin_result r = begin(d, id, 2, NULL);
        cr_assert_eq(r.verdict, ORCH__DEDUP_DONE, "%s", id);
        cr_assert_eq(r.len, strlen(reply));
        cr_assert_eq(memcmp(r.reply, reply, r.len), 0, "%s", id);
        free(r.reply);
        checked++;
    }
    cr_assert_eq(checked, N);
    orch__dedup_free(d);
}

Test(rpc_dedup, finishing_an_unknown_id_hands_back_nothing)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(16, 60000, &d), ORCH_OK);
    cr_assert_eq(finish(d, "never-begun", 1, "r", 1), 0);
    cr_assert_eq(verdict_of(d, "never-begun", 2), ORCH__DEDUP_NEW, "finish must not create it");
    orch__dedup_free(d);
}

Test(rpc_dedup, free_accepts_null_and_live_entries)
{
    orch__dedup_free(NULL);
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(4, 60000, &d), ORCH_OK);
    int w;
    cr_assert_eq(verdict_of(d, "running", 1), ORCH__DEDUP_NEW);
    cr_assert_eq(begin(d, "running", 1, &w).verdict, ORCH__DEDUP_JOINED);
    run(d, "done", 1, "r");
    orch__dedup_free(d); /* frees a running entry with a waiter and a finished one */
}

/*
 * Regression: the server reads the clock before the dedup table takes its
 * mutex, so a call can arrive with a now_ms a little older than the done_ms
 * of an entry another worker just finished. The age must count as 0, not
 * wrap around and evict a fresh reply (which let a re-sent request run twice).
 */
Test(rpc_dedup, older_clock_reading_does_not_evict_fresh_replies)
{
    orch__dedup *d = NULL;
    cr_assert_eq(orch__dedup_new(16, 60000, &d), ORCH_OK);
    run(d, "fresh", 1000, "r");
    /* Another worker read the clock at 999, before "fresh" finished. */
    cr_assert_eq(verdict_of(d, "other", 999), ORCH__DEDUP_NEW);
    cr_assert_eq(verdict_of(d, "fresh", 1000), ORCH__DEDUP_DONE,
                 "a reply finished 1 ms 'in the future' was evicted");
    orch__dedup_free(d);
}
