/*
 * db_int.h - helpers db.c shares with db_result.c; not part of db.h.
 */
#ifndef ORCH_DB_INT_H
#define ORCH_DB_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* Hosts listed by a parsed conninfo: the comma-separated entries of `host`
 * (or of `hostaddr`), at least 1. */
int orch__db_count_hosts(const PQconninfoOption *opts);

/* Rounds down to two significant digits: 4987 -> 4900, 123 -> 120. */
long orch__db_quantize_ms(uint64_t ms);
/* Whether statement_timeout `cur` (-1 unknown, 0 none) serves a call with
 * `left` ms (UINT64_MAX: no deadline): it ends the statement no later than
 * the deadline, and no sooner than an eighth of the budget before it. */
bool orch__db_timeout_fits(long cur, uint64_t left);

#endif
