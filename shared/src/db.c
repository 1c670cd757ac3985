/*
 * db.c - a fixed pool of libpq connections.
 *
 * Threading: the pool's free list is guarded by a mutex; a checked-out
 * connection belongs to one thread until released. Connections are opened
 * lazily and reopened at checkout after a failure marked them broken, so a
 * server restart costs the callers of that moment an ORCH_EDB_UNAVAIL and
 * nothing more. statement_timeout is set from each call's deadline, and
 * re-set only when the one in force would outlive the deadline or cut the
 * budget by more than an eighth (apply_timeout), so that calls with similar
 * budgets share one setting and most statements cost one round trip.
 * Statements with parameters are prepared once per connection (a small cache
 * of texts on each orch_db_conn, emptied whenever its PGconn is replaced).
 * lock_timeout and idle_in_transaction_session_timeout are set on every new
 * session, right after it connects (a SET, not the startup `options`, so a
 * connection URL that carries its own `options` keeps them).
 * Failover: a URL may list several hosts (libpq tries them in order); the
 * pool asks for a read-write session unless the URL says otherwise, gives
 * each host its share of the connect deadline, logs the host:port it lands
 * on when that changes, and treats a session that turned out read-only
 * (25006) as one to replace, like a lost connection.
 * Ownership: results are PGresults handed to the caller, freed with
 * orch_db_result_free().
 */
#include "orch/db.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch/clock.h"
#include "orch/log.h"
#include "db_int.h"

/* Parameterized statements are prepared once per connection, up to this many
 * distinct texts; further texts run unnamed (parsed and planned each time). */
#define ORCH_DB_MAX_PREPARED 64

/* A statement prepared on one connection under the name "orch_<index>". */
typedef struct prepared {
    const char *ptr; /* the caller's text pointer last seen for it */
    char *sql;       /* own copy of the text */
    size_t len;
    uint64_t hash;
} prepared;

struct orch_db_conn {
    orch_db_pool *pool;
    PGconn *pg;
    bool broken;                          /* reconnect at the next checkout */
    bool lost;                            /* the last failure left no outcome (connection gone) */
    prepared stmts[ORCH_DB_MAX_PREPARED]; /* valid for this PGconn only */
    int nstmts;
    long timeout_ms;  /* statement_timeout in force; -1 unknown */
    bool sent;        /* the current call's statement went out */
    bool in_doubt;    /* ...outside a transaction, and no outcome came back */
    bool unconfirmed; /* a commit of this call stopped waiting for the sync standby */
    char sqlstate[6];
    char error[1024];
    orch_db_conn *next;
};

struct orch_db_pool {
    char *conninfo;
    int size;
    int nhosts; /* hosts the conninfo lists (each gets its own connect_timeout) */
    long lock_timeout_ms, idle_tx_timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    orch_db_conn *free;
    orch_db_conn *conns;
    char server[160]; /* host:port of the last connection made; guarded by mu */
};

orch_err orch_db_pool_open(const char *conninfo, int size, orch_db_pool **out)
{
    if (!conninfo || size < 1)
        return ORCH_EINVAL;
    char *why = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &why);
    if (!opts) {
        /* libpq's message quotes the part it could not read, which may be
         * a secret: only the text before the quote is logged. */
        const char *what = why ? why : "out of memory";
        orch_error("database URL is not a libpq connection string: %.*s",
                   (int)strcspn(what, "\"\n"), what);
        PQfreemem(why);
        return ORCH_EINVAL;
    }
    int nhosts = orch__db_count_hosts(opts);
    PQconninfoFree(opts);
    orch_db_pool *p = calloc(1, sizeof *p);
    if (!p)
        return ORCH_ENOMEM;
    p->conns = calloc((size_t)size, sizeof *p->conns);
    p->conninfo = strdup(conninfo);
    if (!p->conns || !p->conninfo)
        goto fail;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->mu, NULL);
    p->size = size;
    p->nhosts = nhosts;
    p->lock_timeout_ms = ORCH_DB_DEFAULT_LOCK_TIMEOUT_MS;
    p->idle_tx_timeout_ms = ORCH_DB_DEFAULT_IDLE_TX_TIMEOUT_MS;
    for (int i = 0; i < size; i++) {
        p->conns[i].pool = p;
        p->conns[i].timeout_ms = -1;
        p->conns[i].next = p->free;
        p->free = &p->conns[i];
    }
    *out = p;
    return ORCH_OK;
fail:
    free(p->conninfo);
    free(p->conns);
    free(p);
    return ORCH_ENOMEM;
}

orch_err orch_db_pool_set_limits(orch_db_pool *p, long lock_timeout_ms, long idle_in_tx_timeout_ms)
{
    if (!p || lock_timeout_ms < 1 || idle_in_tx_timeout_ms < 1)
        return ORCH_EINVAL;
    p->lock_timeout_ms = lock_timeout_ms;
    p->idle_tx_timeout_ms = idle_in_tx_timeout_ms;
    return ORCH_OK;
}

/* Forgets the statements prepared on c's session (closed or replaced). */
static void forget_prepared(orch_db_conn *c)
{
    for (int i = 0; i < c->nstmts; i++)
        free(c->stmts[i].sql);
    c->nstmts = 0;
}

void orch_db_pool_close(orch_db_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->size; i++) {
        if (p->conns[i].pg)
            PQfinish(p->conns[i].pg);
        forget_prepared(&p->conns[i]);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->conninfo);
    free(p->conns);
    free(p);
}

static void set_error(orch_db_conn *c, const char *state, const char *msg)
{
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state ? state : "");
    snprintf(c->error, sizeof c->error, "%s", msg ? msg : "");
    c->error[strcspn(c->error, "\n")] = '\0';
}

/* Records a failed connect on c. libpq writes one line per host it tried,
 * with indented hints: the lines are joined by "; ", a hint by a space, so
 * that the one log line names every host. */
static void set_connect_error(orch_db_conn *c, const char *msg)
{
    size_t n = 0;
    snprintf(c->sqlstate, sizeof c->sqlstate, "08006");
    for (const char *q = msg ? msg : ""; *q && n + 3 < sizeof c->error; q++) {
        if (*q != '\n') {
            c->error[n++] = *q == '\t' ? ' ' : *q;
            continue;
        }
        while (q[1] == '\n')
            q++;
        if (q[1] == '\0')
            break;
        if (q[1] == '\t') {
            c->error[n++] = ' ';
            q++;
        } else {
            c->error[n++] = ';';
            c->error[n++] = ' ';
        }
    }
    c->error[n] = '\0';
}

/* Server notices become log lines instead of raw stderr text. One matters:
 * a commit whose wait for the synchronous standby was cancelled (a cancel
 * request, pg_cancel_backend; statement_timeout is lifted before the
 * commit and never ends that wait) is reported committed with a WARNING from
 * SyncRepWaitForLSN, although the standby may not have it; a failover then
 * loses it. The routine's name, unlike the message, is not translated. */
static void notice_received(void *arg, const PGresult *res)
{
    orch_db_conn *c = arg;
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *fn = PQresultErrorField(res, PG_DIAG_SOURCE_FUNCTION);
    if (fn && strcmp(fn, "SyncRepWaitForLSN") == 0) {
        c->unconfirmed = true;
        orch_warn("database: %s", msg ? msg : "synchronous replication wait cancelled");
        return;
    }
    orch_debug("database notice: %s", msg ? msg : "");
}

static PGresult *run(orch_db_conn *c, uint64_t deadline, const char *sql, int nparams,
                     const char *const *params, bool *expired);
static orch_err result_error(orch_db_conn *c, PGresult *r);

/* Sets the session's lock_timeout (`lock_ms`, 0: none) and, once per
 * session, its idle_in_transaction_session_timeout. */
static orch_err set_limits(orch_db_conn *c, uint64_t deadline, long lock_ms, bool idle_too)
{
    char sql[128];
    if (idle_too)
        snprintf(sql, sizeof sql,
                 "SET lock_timeout = %ld; SET idle_in_transaction_session_timeout = %ld", lock_ms,
                 c->pool->idle_tx_timeout_ms);
    else
        snprintf(sql, sizeof sql, "SET lock_timeout = %ld", lock_ms);
    bool expired;
    PGresult *r = run(c, deadline, sql, -1, NULL, &expired);
    orch_err err = ORCH_OK;
    if (expired)
        err = ORCH_ETIMEDOUT;
    else if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
        err = result_error(c, r);
    PQclear(r);
    return err;
}

/* Logs the server c reached when it is not the one the pool reached last
 * (first connection, or a failover / another host of the list). */
static void note_server(orch_db_conn *c)
{
    char now[160];
    const char *host = PQhost(c->pg), *port = PQport(c->pg);
    snprintf(now, sizeof now, "%s:%s", host ? host : "?", port ? port : "?");
    orch_db_pool *p = c->pool;
    pthread_mutex_lock(&p->mu);
    bool changed = strcmp(p->server, now) != 0;
    char was[sizeof p->server];
    snprintf(was, sizeof was, "%s", p->server);
    if (changed)
        snprintf(p->server, sizeof p->server, "%s", now);
    pthread_mutex_unlock(&p->mu);
    if (changed && was[0])
        orch_info("database connection now to %s (was %s)", now, was);
    else if (changed)
        orch_info("database connection to %s", now);
}

/* Seconds of connect_timeout: libpq applies it to each host (each address)
 * in turn, so each of the pool's hosts gets its share of what is left;
 * whole seconds, at least 2 (libpq's minimum). */
static unsigned long long connect_secs(const orch_db_pool *p, uint64_t deadline)
{
    uint64_t left = orch_deadline_left_ms(deadline);
    if (left == UINT64_MAX)
        return 10;
    uint64_t secs = left / 1000 / (uint64_t)p->nhosts;
    return secs < 2 ? 2 : (unsigned long long)secs;
}

static orch_err connect_conn(orch_db_conn *c, uint64_t deadline)
{
    char timeout[24];
    snprintf(timeout, sizeof timeout, "%llu", connect_secs(c->pool, deadline));
    /* Keepalives and target_session_attrs first, so that the URL may
     * override them; connect_timeout after it, so that the deadline wins. A
     * dead peer is noticed within about ten seconds even while nothing is
     * being read. Every session writes: of several hosts, the one that
     * accepts writes (the primary) is taken. */
    const char *keys[] = { "keepalives",
                           "keepalives_idle",
                           "keepalives_interval",
                           "keepalives_count",
                           "tcp_user_timeout",
                           "target_session_attrs",
                           "dbname",
                           "connect_timeout",
                           "application_name",
                           NULL };
    const char *vals[] = { "1",     "5",    "2", "3", "10000", "read-write", c->pool->conninfo,
                           timeout, "orch", NULL };

    if (c->pg)
        PQfinish(c->pg);
    forget_prepared(c);
    c->pg = PQconnectdbParams(keys, vals, 1);
    c->timeout_ms = -1;
    if (!c->pg) {
        set_error(c, "", "out of memory");
        return ORCH_ENOMEM;
    }
    if (PQstatus(c->pg) != CONNECTION_OK) {
        set_connect_error(c, PQerrorMessage(c->pg));
        PQfinish(c->pg);
        c->pg = NULL;
        return ORCH_EDB_UNAVAIL;
    }
    PQsetNoticeReceiver(c->pg, notice_received, c);
    c->broken = false;
    note_server(c);
    orch_err err = set_limits(c, deadline, c->pool->lock_timeout_ms, true);
    if (err && c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    return err;
}

orch_err orch_db_acquire(orch_db_pool *p, uint64_t deadline, orch_db_conn **out)
{
    struct timespec ts;
    orch_db_conn *c;

    /* A caller that releases its connection on every path, as most do,
     * releases NULL after a failure here, never a connection this call has
     * already put back (a double release hands one connection to two
     * threads). */
    *out = NULL;
    pthread_mutex_lock(&p->mu);
    while (!p->free) {
        if (deadline == ORCH_DEADLINE_NONE) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        if (orch_deadline_left_ms(deadline) == 0) {
            pthread_mutex_unlock(&p->mu);
            return ORCH_ETIMEDOUT;
        }
        ts.tv_sec = (time_t)(deadline / 1000);
        ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    c = p->free;
    p->free = c->next;
    pthread_mutex_unlock(&p->mu);

    if (!c->pg || c->broken || PQstatus(c->pg) != CONNECTION_OK) {
        orch_err err = connect_conn(c, deadline);
        if (err) {
            orch_warn("database connection failed: %s", c->error);
            orch_db_release(c);
            return err;
        }
    }
    set_error(c, "", "");
    *out = c;
    return ORCH_OK;
}

void orch_db_release(orch_db_conn *c)
{
    if (!c)
        return;
    if (c->pg && !c->broken && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        orch_db_rollback(c);
    orch_db_pool *p = c->pool;
    pthread_mutex_lock(&p->mu);
    c->next = p->free;
    p->free = c;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Classifies a failed or NULL result and records its state on the conn. */
static orch_err result_error(orch_db_conn *c, PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c->pg);
    if (PQstatus(c->pg) != CONNECTION_OK || !state) {
        c->broken = true;
        c->lost = true;
        set_error(c, state ? state : "08006", msg);
        return ORCH_EDB_UNAVAIL;
    }
    set_error(c, state, msg);
    c->lost = false;
    orch_err err = orch_db_map_sqlstate(state);
    /* The server answered, but this session cannot serve (read-only, being
     * shut down): the next checkout opens a new one. */
    if (err == ORCH_EDB_UNAVAIL)
        c->broken = true;
    return err;
}

/* Sends `sql` (with parameters, or as a multi-statement script when nparams
 * is negative) and waits for its results without ever blocking past the
 * deadline: the server's statement_timeout normally ends a slow statement
 * first, but it cannot when the server is unreachable. Past deadline plus a
 * small slack the connection is closed (its state is unknown) and *expired
 * is set. Returns the last result, or NULL. */
#define CLIENT_SLACK_MS 1000

static void drop_connection(orch_db_conn *c, const char *why)
{
    set_error(c, "57014", why);
    PQfinish(c->pg);
    forget_prepared(c);
    c->pg = NULL;
    c->broken = true;
    c->timeout_ms = -1;
}

/* Waits for the results of what was sent (see run()). */
static PGresult *await_result(orch_db_conn *c, uint64_t deadline, bool *expired)
{
    uint64_t until = deadline == ORCH_DEADLINE_NONE ? deadline : deadline + CLIENT_SLACK_MS;
    PGresult *last = NULL, *r;
    for (;;) {
        while (PQisBusy(c->pg)) {
            uint64_t left = orch_deadline_left_ms(until);
            if (left == 0) {
                PQclear(last);
                drop_connection(c, "no answer from the database before the deadline");
                *expired = true;
                return NULL;
            }
            struct pollfd pfd = { .fd = PQsocket(c->pg), .events = POLLIN };
            int rc = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
            if (rc < 0 && errno != EINTR)
                break;
            if (rc > 0 && !PQconsumeInput(c->pg))
                break; /* connection failed: PQgetResult reports it */
        }
        r = PQgetResult(c->pg);
        if (!r)
            break;
        PQclear(last);
        last = r;
        if (PQstatus(c->pg) == CONNECTION_BAD)
            break;
    }
    return last;
}

static PGresult *run(orch_db_conn *c, uint64_t deadline, const char *sql, int nparams,
                     const char *const *params, bool *expired)
{
    *expired = false;
    int sent = nparams < 0 ? PQsendQuery(c->pg, sql)
                           : PQsendQueryParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    c->sent = c->sent || sent;
    return sent ? await_result(c, deadline, expired) : NULL;
}

/* ---- prepared statements ------------------------------------------------- */

static void stmt_name(char *buf, size_t n, int idx)
{
    snprintf(buf, n, "orch_%d", idx);
}

static uint64_t text_hash(const char *s, size_t *len)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    const char *p = s;
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    *len = (size_t)(p - s);
    return h;
}

/* The cache slot of `sql` on c, or -1. The caller's pointer is tried first:
 * callers pass the same constant text again and again. */
static int find_prepared(orch_db_conn *c, const char *sql)
{
    for (int i = 0; i < c->nstmts; i++)
        if (c->stmts[i].ptr == sql && strcmp(c->stmts[i].sql, sql) == 0)
            return i;
    size_t len;
    uint64_t h = text_hash(sql, &len);
    for (int i = 0; i < c->nstmts; i++) {
        prepared *st = &c->stmts[i];
        if (st->hash == h && st->len == len && memcmp(st->sql, sql, len) == 0) {
            st->ptr = sql;
            return i;
        }
    }
    return -1;
}

/* Prepares `sql` on c and remembers it. *idx is its slot, or -1 when the
 * cache is full (the statement then runs unnamed). */
static orch_err prepare(orch_db_conn *c, uint64_t deadline, const char *sql, int nparams, int *idx)
{
    *idx = -1;
    if (c->nstmts == ORCH_DB_MAX_PREPARED)
        return ORCH_OK;
    prepared st = { .ptr = sql };
    st.hash = text_hash(sql, &st.len);
    st.sql = malloc(st.len + 1);
    if (!st.sql)
        return ORCH_OK; /* run it unnamed */
    memcpy(st.sql, sql, st.len + 1);
    char name[16];
    bool expired = false;
    stmt_name(name, sizeof name, c->nstmts);
    PGresult *r =
        PQsendPrepare(c->pg, name, sql, nparams, NULL) ? await_result(c, deadline, &expired) : NULL;
    orch_err err = ORCH_OK;
    if (expired)
        err = ORCH_ETIMEDOUT;
    else if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
        err = result_error(c, r);
    PQclear(r);
    if (err) {
        free(st.sql);
        return err;
    }
    *idx = c->nstmts;
    c->stmts[c->nstmts++] = st;
    return ORCH_OK;
}

/* Runs `sql` as a statement prepared on c (preparing it on first use). */
static PGresult *run_prepared(orch_db_conn *c, uint64_t deadline, const char *sql, int nparams,
                              const char *const *params, bool *expired, orch_err *err)
{
    *expired = false;
    int idx = find_prepared(c, sql);
    if (idx < 0) {
        *err = prepare(c, deadline, sql, nparams, &idx);
        if (*err)
            return NULL;
        if (idx < 0)
            return run(c, deadline, sql, nparams, params, expired);
    }
    char name[16];
    stmt_name(name, sizeof name, idx);
    if (!PQsendQueryPrepared(c->pg, name, nparams, params, NULL, NULL, 0))
        return NULL;
    c->sent = true;
    return await_result(c, deadline, expired);
}

/* Whether a failure of a prepared statement means the server no longer has
 * it as prepared (DISCARD ALL / DEALLOCATE by someone else, or a schema
 * change that altered its result columns): prepare it again. */
static bool stale_prepared(const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!state)
        return false;
    return strcmp(state, "26000") == 0 ||
           (strcmp(state, "0A000") == 0 && msg && strstr(msg, "cached plan must not change"));
}

/* Forgets c's prepared statements, on the server too. */
static void reset_prepared(orch_db_conn *c, uint64_t deadline)
{
    bool expired;
    PGresult *r = run(c, deadline, "DEALLOCATE ALL", 0, NULL, &expired);
    if (!expired && (!r || PQresultStatus(r) != PGRES_COMMAND_OK))
        c->broken = true; /* unknown what is still prepared: reconnect */
    PQclear(r);
    forget_prepared(c);
}

static orch_err apply_timeout(orch_db_conn *c, uint64_t deadline)
{
    uint64_t left = orch_deadline_left_ms(deadline);
    if (left == 0) {
        set_error(c, "57014", "deadline passed before the statement was sent");
        return ORCH_ETIMEDOUT;
    }
    if (orch__db_timeout_fits(c->timeout_ms, left))
        return ORCH_OK;
    /* A sixteenth below the budget: later calls of the same budget, a little
     * further on, still fit it. */
    long want = left == UINT64_MAX ? 0 : orch__db_quantize_ms(left - left / 16);
    char sql[64];
    snprintf(sql, sizeof sql, "SET statement_timeout = %ld", want);
    bool expired;
    PGresult *r = run(c, deadline, sql, 0, NULL, &expired);
    orch_err err = ORCH_OK;
    if (expired)
        return ORCH_ETIMEDOUT;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
        err = result_error(c, r);
    else
        c->timeout_ms = want;
    PQclear(r);
    return err;
}

static orch_err check_ready(orch_db_conn *c)
{
    if (!c || !c->pg)
        return ORCH_EINVAL;
    if (c->broken) {
        set_error(c, "08006", "connection lost");
        return ORCH_EDB_UNAVAIL;
    }
    return ORCH_OK;
}

/* Runs `sql` prepared; a statement the server lost is prepared again, once,
 * when outside a transaction (nothing was done then). */
static PGresult *exec_prepared(orch_db_conn *c, uint64_t deadline, const char *sql, int nparams,
                               const char *const *params, bool idle, bool *expired, orch_err *err)
{
    PGresult *r = run_prepared(c, deadline, sql, nparams, params, expired, err);
    if (*err || *expired || !idle || !stale_prepared(r))
        return r;
    PQclear(r);
    reset_prepared(c, deadline);
    if (!c->pg || c->broken) {
        set_error(c, "08006", "connection lost while preparing statements again");
        *err = ORCH_EDB_UNAVAIL;
        return NULL;
    }
    c->sent = false;
    return run_prepared(c, deadline, sql, nparams, params, expired, err);
}

/* Statements with parameters run prepared (see ORCH_DB_MAX_PREPARED); the
 * others (BEGIN, DDL, SELECT 1) unnamed. Records on c whether a statement
 * run outside a transaction went out without an outcome coming back. */
orch_err orch_db_exec(orch_db_conn *c, uint64_t deadline, const char *sql, int nparams,
                      const char *const *params, orch_db_result **out)
{
    if (c)
        c->in_doubt = c->lost = c->unconfirmed = false;
    orch_err err = check_ready(c);
    if (!err)
        err = apply_timeout(c, deadline);
    if (err)
        return err;
    bool expired;
    bool idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
    PGresult *r;
    c->sent = false;
    if (nparams > 0) {
        r = exec_prepared(c, deadline, sql, nparams, params, idle, &expired, &err);
        if (err)
            return err;
    } else {
        r = run(c, deadline, sql, 0, params, &expired);
    }
    if (expired) {
        c->in_doubt = idle && c->sent;
        return ORCH_ETIMEDOUT;
    }
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        err = result_error(c, r);
        /* The connection went before an answer: the outcome never arrived
         * (an error the server sent, 25006 included, is an outcome). */
        c->in_doubt = idle && c->sent && c->lost;
        PQclear(r);
        return err;
    }
    set_error(c, "", "");
    if (out)
        *out = (orch_db_result *)r;
    else
        PQclear(r);
    return ORCH_OK;
}

static const char unconfirmed_msg[] =
    "committed on the primary, not confirmed by the synchronous standby";

orch_err orch_db_exec_write(orch_db_conn *c, uint64_t deadline, const char *sql, int nparams,
                            const char *const *params, orch_db_result **out)
{
    orch_db_result *r = NULL;
    orch_err err = orch_db_exec(c, deadline, sql, nparams, params, out ? &r : NULL);
    if (err)
        return c && c->in_doubt ? ORCH_EDB_UNKNOWN : err;
    if (c->unconfirmed) {
        /* It committed here; a failover may still lose it: unknown. */
        orch_db_result_free(r);
        set_error(c, "01000", unconfirmed_msg);
        return ORCH_EDB_UNKNOWN;
    }
    if (out)
        *out = r;
    return ORCH_OK;
}

orch_err orch_db_unbounded_lock_wait(orch_db_conn *c, uint64_t deadline, bool unbounded)
{
    orch_err err = check_ready(c);
    if (err)
        return err;
    return set_limits(c, deadline, unbounded ? 0 : c->pool->lock_timeout_ms, false);
}

orch_err orch_db_exec_script(orch_db_conn *c, uint64_t deadline, const char *sql)
{
    orch_err err = check_ready(c);
    if (!err)
        err = apply_timeout(c, deadline);
    if (err)
        return err;
    bool expired;
    PGresult *r = run(c, deadline, sql, -1, NULL, &expired);
    if (expired)
        return ORCH_ETIMEDOUT;
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY)
        err = result_error(c, r);
    PQclear(r);
    return err;
}

orch_err orch_db_begin(orch_db_conn *c, uint64_t deadline)
{
    return orch_db_exec(c, deadline, "BEGIN", 0, NULL, NULL);
}

orch_err orch_db_commit(orch_db_conn *c, uint64_t deadline)
{
    orch_err err = check_ready(c);
    if (err)
        return err;
    bool expired;
    c->lost = c->unconfirmed = false;
    PGresult *r = run(c, deadline, "COMMIT", 0, NULL, &expired);
    if (expired)
        return ORCH_EDB_UNKNOWN; /* sent, never answered: it may have committed */
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        err = result_error(c, r);
        /* Lost while committing: the server may or may not have committed.
         * An error the server answered (a read-only session) did not. */
        if (err == ORCH_EDB_UNAVAIL && c->lost)
            err = ORCH_EDB_UNKNOWN;
    } else if (strcmp(PQcmdStatus(r), "ROLLBACK") == 0) {
        set_error(c, "25P02", "transaction was aborted and rolled back");
        err = ORCH_EDB;
    } else if (c->unconfirmed) {
        set_error(c, "01000", unconfirmed_msg);
        err = ORCH_EDB_UNKNOWN;
    }
    PQclear(r);
    c->timeout_ms = err ? -1 : c->timeout_ms;
    return err;
}

void orch_db_rollback(orch_db_conn *c)
{
    if (!c || !c->pg || c->broken)
        return;
    bool expired;
    PGresult *r = run(c, orch_mono_ms() + 5000, "ROLLBACK", 0, NULL, &expired);
    if (expired)
        return;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
        c->broken = true;
    PQclear(r);
    c->timeout_ms = -1; /* a SET inside the transaction was undone */
}

int orch_db_prepared_count(const orch_db_conn *c)
{
    return c->nstmts;
}

const char *orch_db_last_sqlstate(const orch_db_conn *c)
{
    return c->sqlstate;
}
const char *orch_db_last_error(const orch_db_conn *c)
{
    return c->error;
}
