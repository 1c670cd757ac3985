/*
 * db_result.c - the parts of db.h that need no connection state: reading
 * a result (a PGresult behind the opaque type), SQLSTATE to orch_err, and
 * the ping built on the public calls, counting a URL's hosts, and the
 * statement_timeout rule.
 */
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "orch/db.h"

orch_err orch_db_map_sqlstate(const char *s)
{
    if (!s || strlen(s) != 5)
        return ORCH_EDB;
    if (strcmp(s, "23505") == 0)
        return ORCH_EEXISTS;
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0)
        return ORCH_EDB_RETRY;
    if (strcmp(s, "55P03") == 0)
        return ORCH_EDB_LOCKED;
    if (strcmp(s, "57014") == 0)
        return ORCH_ETIMEDOUT;
    /* 25006: a read-only session (a standby, or a server demoted under us):
     * the primary is elsewhere, so reconnect rather than fail for good. */
    if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
        strcmp(s, "57P03") == 0 || strcmp(s, "25006") == 0)
        return ORCH_EDB_UNAVAIL;
    if (strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0)
        return ORCH_EINVAL;
    return ORCH_EDB;
}

int orch_db_result_rows(const orch_db_result *res)
{
    return PQntuples((const PGresult *)res);
}

int orch_db_result_cols(const orch_db_result *res)
{
    return PQnfields((const PGresult *)res);
}

const char *orch_db_result_get(const orch_db_result *res, int row, int col)
{
    const PGresult *r = (const PGresult *)res;
    if (row < 0 || col < 0 || row >= PQntuples(r) || col >= PQnfields(r) ||
        PQgetisnull(r, row, col))
        return NULL;
    return PQgetvalue(r, row, col);
}

int64_t orch_db_result_affected(const orch_db_result *res)
{
    const char *s = PQcmdTuples((PGresult *)res);
    return s && s[0] ? strtoll(s, NULL, 10) : 0;
}

void orch_db_result_free(orch_db_result *res)
{
    PQclear((PGresult *)res);
}

orch_err orch_db_ping(orch_db_pool *p, uint64_t deadline)
{
    orch_db_conn *c;
    orch_err err = orch_db_acquire(p, deadline, &c);
    if (err)
        return err;
    err = orch_db_exec(c, deadline, "SELECT 1", 0, NULL, NULL);
    orch_db_release(c);
    return err;
}

int orch__db_count_hosts(const PQconninfoOption *opts)
{
    const char *host = NULL, *addr = NULL;
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            addr = o->val;
    }
    const char *list = host && host[0] ? host : addr;
    int n = 1;
    for (const char *q = list; q && *q; q++)
        n += *q == ',';
    return n;
}

long orch__db_quantize_ms(uint64_t ms)
{
    uint64_t p = 1;
    while (ms / p >= 100)
        p *= 10;
    ms = ms / p * p;
    return ms > 0x7fffffff ? 0x7fffffff : (long)ms;
}

bool orch__db_timeout_fits(long cur, uint64_t left)
{
    if (left == UINT64_MAX)
        return cur == 0;
    if (cur <= 0)
        return false;
    uint64_t have = (uint64_t)cur, floor = left - left / 8;
    return have <= left && (have >= floor || have == 0x7fffffff);
}
