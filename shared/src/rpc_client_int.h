/*
 * rpc_client_int.h - internals of rpc_client.c that its tests reach
 * (internal, not part of the library's interface).
 */
#ifndef ORCH_RPC_CLIENT_INT_H
#define ORCH_RPC_CLIENT_INT_H

#include "orch/err.h"

/* Hex digits of a request id made by orch__rpc_request_id. */
#define ORCH__RPC_ID_HEX 32

/* Writes a fresh request id to `out` (ORCH__RPC_ID_HEX lowercase hex digits
 * and a NUL): 128 bits of the kernel's randomness (getrandom), so ids are
 * unique and cannot be guessed from earlier ones. Each thread keeps a pool
 * that one system call refills every 64 ids; a forked child refills its
 * own before its first id. Thread-safe. ORCH_EIO when the kernel gives no
 * randomness. */
orch_err orch__rpc_request_id(char out[ORCH__RPC_ID_HEX + 1]) ORCH_NODISCARD;

#endif
