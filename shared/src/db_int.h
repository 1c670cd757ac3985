/*
 * db_int.h - helpers db.c shares with db_result.c; not part of db.h.
 */
#ifndef ORCH_DB_INT_H
#define ORCH_DB_INT_H

#include <libpq-fe.h>

/* Hosts listed by a parsed conninfo: the comma-separated entries of `host`
 * (or of `hostaddr`), at least 1. */
int orch__db_count_hosts(const PQconninfoOption *opts);

#endif
