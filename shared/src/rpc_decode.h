/*
 * rpc_decode.h - the pure steps of the RPC server's decoding (internal):
 * the method lookup, the UTF-8 check of every string field of a decoded
 * message and the fields of a request that go into the log context.
 *
 * No I/O, no allocation; thread-safe. Kept apart from rpc_server.c so that
 * the fuzz targets run exactly what the server runs.
 */
#ifndef ORCH_RPC_DECODE_H
#define ORCH_RPC_DECODE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/rpc.h"

/* The method named `full` ("orch.v1.LeaseService/Acquire") among `svcs`,
 * with the index of its service in *svc_idx; NULL when no service or
 * method matches. `full` must be NUL-terminated. */
const ProtobufCMethodDescriptor *orch__rpc_find_method(const orch_rpc_service *svcs, size_t nsvcs,
                                                       const char *full, size_t *svc_idx);

/* Whether the NUL-terminated `s` is well-formed UTF-8 (no overlongs,
 * surrogates or code points past U+10FFFF). */
bool orch__rpc_utf8_ok(const unsigned char *s);

/* Name of the first string field of `m` (nested messages included, at most
 * 32 levels deep) that is not UTF-8, or NULL when all are. The name is
 * static (from the descriptor). */
const char *orch__rpc_bad_string_field(const ProtobufCMessage *m);

/* The fields of a decoded request that the server's log context carries:
 * the top-level singular fields named work_item, target, epoch (uint64) and
 * the first non-empty of caller, actor, operator. Strings are borrowed from
 * `m` (NULL when absent or empty); epoch 0 when absent. */
typedef struct orch__rpc_log_fields {
    const char *work_item, *target, *caller;
    uint64_t epoch;
} orch__rpc_log_fields;
void orch__rpc_log_fields_of(const ProtobufCMessage *m, orch__rpc_log_fields *out);

#endif
