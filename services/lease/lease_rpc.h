/*
 * lease_rpc.h - the input checks of lease-service's RPCs, apart from the
 * handlers so that they can be fuzzed without a database.
 *
 * Pure; thread-safe.
 */
#ifndef ORCH_LEASE_RPC_H
#define ORCH_LEASE_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "lease_logic.h"
#include "orch/err.h"

/* Checks a decoded request of any LeaseService method (known by its
 * descriptor) as its handler does before it touches the database. Returns
 * ORCH_CODE_OK, or ORCH_CODE_INVALID_ARGUMENT with the reason in `why`
 * (`n` bytes). For Acquire, *owner (may be NULL) receives the owner; it is
 * untouched for the other methods. A message of another service is
 * INVALID_ARGUMENT. */
orch_code lease_rpc_check(const ProtobufCMessage *req, lease_owner *owner, char *why, size_t n);

#endif
