/*
 * guard_rpc.h - the input checks of guard-service's RPCs, apart from the
 * handlers so that they can be fuzzed without a database or an upstream.
 *
 * Pure; thread-safe.
 */
#ifndef ORCH_GUARD_RPC_H
#define ORCH_GUARD_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "orch/err.h"

/* Checks a decoded request of any GuardService method (known by its
 * descriptor) as its handler does before the gate runs. Returns
 * ORCH_CODE_OK, or ORCH_CODE_INVALID_ARGUMENT with the reason in `why`
 * (`n` bytes). `comment_max` is the configured bound on a comment's bytes.
 * A message of another service is INVALID_ARGUMENT. */
orch_code guard_rpc_check(const ProtobufCMessage *req, size_t comment_max, char *why, size_t n);

#endif
