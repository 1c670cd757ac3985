/*
 * db.h - the PostgreSQL boundary: a fixed pool of libpq connections.
 *
 * Only this module sees libpq types. A worker thread checks a connection out
 * (waiting at most until its deadline), runs parameterized statements on it,
 * and checks it back in. Each connection is used by one thread at a time.
 * SQLSTATEs are kept on the result and mapped to orch_err:
 *   23505 -> ORCH_EEXISTS, 40001/40P01 -> ORCH_EDB_RETRY,
 *   55P03 (a NOWAIT race, or lock_timeout) -> ORCH_EDB_LOCKED,
 *   57P01/57P02/57P03/08xxx, 25006 (a read-only session: a standby, or
 *   a demoted primary) or a dead connection
 *   -> ORCH_EDB_UNAVAIL (the connection is reset at its next checkout),
 *   57014 (statement_timeout) -> ORCH_ETIMEDOUT,
 *   a connection lost during COMMIT -> ORCH_EDB_UNKNOWN (never "retry"),
 *   and so is a commit the server reports done after its wait for the
 *   synchronous standby was cancelled (pg_cancel_backend): committed on
 *   the primary, possibly not on the standby a failover promotes.
 * statement_timeout follows the deadline passed to each call. Every
 * connection also runs with lock_timeout and
 * idle_in_transaction_session_timeout (orch_db_pool_set_limits()), so a
 * statement never waits for a row lock without bound and a client frozen
 * inside a transaction (SIGSTOP, a hung thread) loses it, and its locks,
 * after a bounded time. The pool is thread-safe; a single orch_db_conn is
 * not.
 */
#ifndef ORCH_DB_H
#define ORCH_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"

typedef struct orch_db_pool orch_db_pool;
typedef struct orch_db_conn orch_db_conn;
typedef struct orch_db_result orch_db_result;

/* Creates a pool of `size` connections to `conninfo` (a libpq URI or
 * key=value string; copied). Connections are opened lazily, so creation
 * succeeds while the server is down; a conninfo libpq cannot parse gives
 * ORCH_EINVAL (logged, without the value). The conninfo may list several
 * hosts (postgresql://h1:p1,h2:p2/db): each connection takes the first
 * that accepts a read-write session (target_session_attrs=read-write
 * unless the conninfo sets it), so after a failover the pool reconnects to
 * the promoted standby. */
orch_err orch_db_pool_open(const char *conninfo, int size, orch_db_pool **out) ORCH_NODISCARD;
/* Defaults of orch_db_pool_set_limits() (and of ORCH_DB_LOCK_TIMEOUT_MS,
 * ORCH_DB_IDLE_IN_TX_TIMEOUT_MS). */
#define ORCH_DB_DEFAULT_LOCK_TIMEOUT_MS    5000
#define ORCH_DB_DEFAULT_IDLE_TX_TIMEOUT_MS 30000

/* Sets lock_timeout (how long one statement may wait for a lock) and
 * idle_in_transaction_session_timeout (how long a session may sit idle
 * inside a transaction before the server ends it) for the connections the
 * pool opens from now on, in milliseconds, each at least 1. Call it before
 * the first orch_db_acquire(). A session that outlives the idle limit is
 * closed by the server; its next call gives ORCH_EDB_UNAVAIL (inside a
 * COMMIT: ORCH_EDB_UNKNOWN). Returns ORCH_EINVAL for a value < 1. */
orch_err orch_db_pool_set_limits(orch_db_pool *pool, long lock_timeout_ms,
                                 long idle_in_tx_timeout_ms) ORCH_NODISCARD;
/* Closes every connection; all connections must have been checked in. */
void orch_db_pool_close(orch_db_pool *pool);

/* Borrows a connected connection until orch_db_release(). Waits for a free
 * one until `deadline` (monotonic ms, see clock.h): ORCH_ETIMEDOUT. A
 * connection that cannot (re)connect gives ORCH_EDB_UNAVAIL. On any failure
 * *out is set to NULL (so releasing it is a no-op). */
orch_err orch_db_acquire(orch_db_pool *pool, uint64_t deadline, orch_db_conn **out) ORCH_NODISCARD;
/* Returns a connection; a connection left inside a transaction is rolled
 * back first. Accepts NULL. */
void orch_db_release(orch_db_conn *conn);

/* Runs one statement with text parameters ($1..$n; NULL = SQL NULL) under a
 * statement_timeout derived from `deadline`. A statement with parameters
 * (nparams > 0) is prepared on the connection the first time its text is
 * seen there and executed by name afterwards, so the server parses and plans
 * it once per connection; after a reconnect, or when the server lost it
 * (DEALLOCATE, a schema change altering its result), it is prepared again
 * without the caller noticing. Texts are compared by content, so a text
 * built at run time may be passed too (up to 64 distinct texts per
 * connection are kept; further ones run unprepared). On ORCH_OK *out (if out is not
 * NULL) is a result the caller frees with orch_db_result_free(). On error,
 * the SQLSTATE and message are available from orch_db_last_sqlstate/error
 * until the next call on this connection. */
orch_err orch_db_exec(orch_db_conn *conn, uint64_t deadline, const char *sql, int nparams,
                      const char *const *params, orch_db_result **out) ORCH_NODISCARD;

/* orch_db_exec() for one statement that commits by itself (run outside a
 * transaction, it is its own transaction, e.g. a data-modifying CTE). When
 * it was sent and no outcome came back (connection lost, or the client gave
 * up past the deadline) the result is ORCH_EDB_UNKNOWN: it may have
 * committed, so it is never "safe to retry". Any other error means it did
 * not commit. Inside a transaction it is orch_db_exec(). */
orch_err orch_db_exec_write(orch_db_conn *conn, uint64_t deadline, const char *sql, int nparams,
                            const char *const *params, orch_db_result **out) ORCH_NODISCARD;

/* Lifts lock_timeout on this connection (`unbounded` true: waits for locks
 * until the statement_timeout of each call) or puts the pool's back. For a
 * wait that must queue, such as the migrations' advisory lock. */
orch_err orch_db_unbounded_lock_wait(orch_db_conn *conn, uint64_t deadline,
                                     bool unbounded) ORCH_NODISCARD;

/* Statements currently prepared on this connection (for tests). */
int orch_db_prepared_count(const orch_db_conn *conn);

/* Runs a script of several statements without parameters (migrations). */
orch_err orch_db_exec_script(orch_db_conn *conn, uint64_t deadline, const char *sql) ORCH_NODISCARD;

/* Transactions. orch_db_commit() returns ORCH_EDB_UNKNOWN when the
 * connection was lost before the outcome was read. */
orch_err orch_db_begin(orch_db_conn *conn, uint64_t deadline) ORCH_NODISCARD;
orch_err orch_db_commit(orch_db_conn *conn, uint64_t deadline) ORCH_NODISCARD;
void orch_db_rollback(orch_db_conn *conn);

const char *orch_db_last_sqlstate(const orch_db_conn *conn); /* "" if none */
const char *orch_db_last_error(const orch_db_conn *conn);    /* "" if none */

/* Maps a SQLSTATE (5 chars) to an orch_err; pure. */
orch_err orch_db_map_sqlstate(const char *sqlstate);

int orch_db_result_rows(const orch_db_result *res);
int orch_db_result_cols(const orch_db_result *res);
/* Value of (row, col) as text, borrowed until the result is freed; NULL for
 * SQL NULL. */
const char *orch_db_result_get(const orch_db_result *res, int row, int col);
/* Rows affected by an INSERT/UPDATE/DELETE. */
int64_t orch_db_result_affected(const orch_db_result *res);
void orch_db_result_free(orch_db_result *res);

/* Opens a connection, runs SELECT 1 and puts it back: ORCH_OK when the
 * database answers before `deadline`. */
orch_err orch_db_ping(orch_db_pool *pool, uint64_t deadline) ORCH_NODISCARD;

#endif
