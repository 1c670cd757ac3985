/*
 * launcher_rpc.h - the input checks of launcher-service's RPCs, apart from
 * the handlers so that they can be fuzzed without a database.
 *
 * Pure apart from `workdir_is_dir`, which the caller supplies; thread-safe
 * when that function is.
 */
#ifndef ORCH_LAUNCHER_RPC_H
#define ORCH_LAUNCHER_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"

typedef struct launcher_rpc_limits {
    int64_t max_timeout_s; /* ORCH_LAUNCHER_MAX_TIMEOUT_S */
    /* Whether the absolute path `path` is a folder; asked only of a path
     * that starts with '/' and fits LAUNCHER_MAX_WORKDIR. */
    bool (*workdir_is_dir)(const char *path);
} launcher_rpc_limits;

/* Checks a decoded request of any LauncherService method (known by its
 * descriptor) as its handler does before it touches the database. Returns
 * ORCH_CODE_OK, ORCH_CODE_INVALID_ARGUMENT, or ORCH_CODE_NOT_FOUND for a
 * job id no job can have, with the reason in `why` (`n` bytes). A message
 * of another service is INVALID_ARGUMENT. */
orch_code launcher_rpc_check(const ProtobufCMessage *req, const launcher_rpc_limits *lim, char *why,
                             size_t n);

#endif
