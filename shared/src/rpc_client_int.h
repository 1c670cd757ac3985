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
 * and a NUL): 16 digits of a prefix drawn at random once per process (and
 * again in a forked child), then 16 digits of a counter of the
 * process passed through a bijection keyed by 128 more random bits. No two
 * calls of one process share an id (until 2^64 calls), two processes share
 * none unless their 64 random bits agree, and the ids do not read as a
 * sequence; they are unique, not secret. Thread-safe; after the first call
 * of a process, no system call. ORCH_EIO when the first draw finds no
 * randomness. */
orch_err orch__rpc_request_id(char out[ORCH__RPC_ID_HEX + 1]) ORCH_NODISCARD;

#endif
