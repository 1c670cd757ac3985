/*
 * migrate.c - applies the embedded migrations under an advisory lock.
 *
 * The lock is a session-level pg_advisory_lock taken on the caller's
 * connection, so concurrent starters queue behind the first one and then
 * find nothing left to do. Each migration and its schema_migrations row
 * commit together. Single-threaded use of the connection passed in.
 */
#include "orch/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/log.h"

/* Arbitrary constant naming the lock ("orch" migrations). */
#define MIGRATE_LOCK_KEY "7301880012"

void orch_migration_checksum(const char *sql, char out[17])
{
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static const char create_table_sql[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                       " version integer PRIMARY KEY,"
                                       " name text NOT NULL,"
                                       " checksum text NOT NULL,"
                                       " applied_at timestamptz NOT NULL DEFAULT now())";

/* Verifies an applied version against the embedded one. */
static orch_err check_applied(const char *ver, const char *sum)
{
    int v = (int)strtol(ver, NULL, 10);
    for (size_t i = 0; i < orch__migrations_count; i++) {
        const orch_migration *m = &orch__migrations[i];
        if (m->version != v)
            continue;
        char want[17];
        orch_migration_checksum(m->sql, want);
        if (strcmp(want, sum) != 0) {
            orch_error("migration %s was changed after it was applied "
                       "(checksum %s, database has %s)",
                       m->name, want, sum);
            return ORCH_EPROTO;
        }
        return ORCH_OK;
    }
    orch_error("database has migration version %d that this binary does not "
               "know: it is older than the schema",
               v);
    return ORCH_EPROTO;
}

static bool is_applied(const orch_db_result *r, int version)
{
    for (int i = 0; i < orch_db_result_rows(r); i++)
        if (strtol(orch_db_result_get(r, i, 0), NULL, 10) == version)
            return true;
    return false;
}

static orch_err apply_one(orch_db_conn *c, uint64_t deadline, const orch_migration *m)
{
    char ver[16], sum[17];
    snprintf(ver, sizeof ver, "%d", m->version);
    orch_migration_checksum(m->sql, sum);
    const char *params[] = { ver, m->name, sum };

    orch_err err = orch_db_begin(c, deadline);
    if (!err)
        err = orch_db_exec_script(c, deadline, m->sql);
    if (!err)
        err = orch_db_exec(c, deadline,
                           "INSERT INTO schema_migrations (version, name, checksum)"
                           " VALUES ($1::integer, $2, $3)",
                           3, params, NULL);
    if (!err)
        err = orch_db_commit(c, deadline);
    if (err) {
        orch_error("migration %s failed: %s (%s)", m->name, orch_db_last_error(c),
                   orch_strerror(err));
        orch_db_rollback(c);
        return err;
    }
    orch_info("applied migration %s", m->name);
    return ORCH_OK;
}

orch_err orch_migrate(orch_db_conn *c, uint64_t deadline, int *applied)
{
    orch_db_result *r = NULL;
    int n = 0;
    /* Starters queue for the lock as long as their deadline allows, not
     * only for the session's lock_timeout. */
    orch_err err = orch_db_unbounded_lock_wait(c, deadline, true);
    if (!err)
        err = orch_db_exec(c, deadline, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL,
                           NULL);
    orch_err bounded = orch_db_unbounded_lock_wait(c, deadline, false);
    if (!err)
        err = bounded;
    if (err)
        return err;
    err = orch_db_exec(c, deadline, create_table_sql, 0, NULL, NULL);
    if (!err)
        err = orch_db_exec(c, deadline,
                           "SELECT version, checksum FROM schema_migrations"
                           " ORDER BY version",
                           0, NULL, &r);
    for (int i = 0; !err && i < orch_db_result_rows(r); i++)
        err = check_applied(orch_db_result_get(r, i, 0), orch_db_result_get(r, i, 1));
    for (size_t i = 0; !err && i < orch__migrations_count; i++) {
        if (is_applied(r, orch__migrations[i].version))
            continue;
        err = apply_one(c, deadline, &orch__migrations[i]);
        n += err ? 0 : 1;
    }
    orch_db_result_free(r);
    orch_err unlock =
        orch_db_exec(c, deadline, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", 0, NULL, NULL);
    if (!err && unlock)
        err = unlock;
    if (!err && applied)
        *applied = n;
    return err;
}
