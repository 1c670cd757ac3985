/*
 * wal_commits.h - the number of durable commits that wrote given tables of
 * the current database since a WAL position, read from the WAL itself with
 * pg_walinspect (superuser; `CREATE EXTENSION pg_walinspect` first). Used by
 * the commit-count tests and by stage_bench.
 *
 * A COMMIT record exists only for a transaction that wrote something, so
 * read-only transactions never count, and it is written by the commit
 * itself, so the count is exact at once (no statistics flush to wait for).
 * A commit counts when its transaction wrote a block of one of the named
 * tables of this database: other databases of the cluster and other tables
 * (a lease-service heartbeat on `hosts`) do not count.
 *
 * ORCH_WAL_COMMITS_SQL: $1 the WAL position read before (text, from
 * ORCH_WAL_LSN_SQL), $2 the table names, comma-separated ("tasks,..."). One
 * row, one column: the count.
 */
#ifndef ORCH_TEST_WAL_COMMITS_H
#define ORCH_TEST_WAL_COMMITS_H

#define ORCH_WAL_LSN_SQL "SELECT pg_current_wal_insert_lsn()::text"

#define ORCH_WAL_COMMITS_SQL                                                                \
    "WITH w AS (SELECT xid, resource_manager, record_type, block_ref"                       \
    "   FROM pg_get_wal_records_info($1::pg_lsn, pg_current_wal_flush_lsn())),"             \
    " rel AS (SELECT format('/%s/%s ', d.oid, pg_relation_filenode(c.oid)) AS tag"          \
    "   FROM pg_class c, pg_database d WHERE d.datname = current_database()"                \
    "     AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace"                  \
    "     AND c.relname = ANY (string_to_array($2, ',')))"                                  \
    " SELECT count(*) FROM w WHERE w.resource_manager = 'Transaction'"                      \
    "   AND w.record_type LIKE 'COMMIT%' AND w.xid IN (SELECT DISTINCT x.xid FROM w x, rel" \
    "     WHERE strpos(x.block_ref, rel.tag) > 0)"

/* The same commits, each as "xid:table,table" (one text, ';' between), to
 * tell which transaction wrote what when a count is not what a test wants. */
#define ORCH_WAL_COMMITS_DETAIL_SQL                                                           \
    "WITH w AS (SELECT xid::text::bigint AS xid, resource_manager, record_type, block_ref"    \
    "   FROM pg_get_wal_records_info($1::pg_lsn, pg_current_wal_flush_lsn())),"               \
    " rel AS (SELECT c.relname, format('/%s/%s ', d.oid, pg_relation_filenode(c.oid)) AS tag" \
    "   FROM pg_class c, pg_database d WHERE d.datname = current_database()"                  \
    "     AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace"                    \
    "     AND c.relname = ANY (string_to_array($2, ','))),"                                   \
    " x AS (SELECT x.xid, string_agg(DISTINCT rel.relname, ',') AS tables FROM w x, rel"      \
    "   WHERE strpos(x.block_ref, rel.tag) > 0 GROUP BY x.xid)"                               \
    " SELECT coalesce(string_agg(x.xid || ':' || x.tables, ';' ORDER BY x.xid), '') FROM x"   \
    " WHERE x.xid IN (SELECT xid FROM w WHERE resource_manager = 'Transaction'"               \
    "   AND record_type LIKE 'COMMIT%')"

/* The tables one stage transition writes (stage-service's and
 * lease-service's). */
#define ORCH_WAL_STAGE_TABLES                                                                  \
    "tasks,stage_history,task_evidence,side_effects,coverage_baseline,transition_lease,lease_" \
    "events"

#endif
