/*
 * migrate.h - forward-only schema migrations.
 *
 * Migrations are the files shared/migrations/NNNN_name.sql, compiled into
 * every binary at build time. orch_migrate() applies the missing ones in
 * order, each in its own transaction together with its schema_migrations
 * row, under a PostgreSQL advisory lock so that services starting at once
 * do not race. An applied migration whose text changed since is refused.
 */
#ifndef ORCH_MIGRATE_H
#define ORCH_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#include "orch/db.h"
#include "orch/err.h"

typedef struct orch_migration {
    int version;
    const char *name; /* "0001_initial" */
    const char *sql;
} orch_migration;

extern const orch_migration orch__migrations[];
extern const size_t orch__migrations_count;

/* Applies missing migrations; *applied (may be NULL) receives how many ran.
 * ORCH_EPROTO if the database holds a version this binary does not know or a
 * checksum that differs from the embedded text. */
orch_err orch_migrate(orch_db_conn *conn, uint64_t deadline, int *applied) ORCH_NODISCARD;

/* 64-bit FNV-1a of a migration's text, rendered as 16 hex chars. Pure. */
void orch_migration_checksum(const char *sql, char out[17]);

#endif
