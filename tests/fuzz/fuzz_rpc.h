/*
 * fuzz_rpc.h - what the RPC fuzz targets share: the services a server of
 * the project registers, and the decode-then-check path of one request.
 *
 * The path is the server's own (shared/src/rpc_decode.h): protobuf-c's
 * unpack of the method's input type, the UTF-8 check of every string
 * field, then the service's check function, which the handler also runs
 * before it touches the database.
 */
#ifndef ORCH_FUZZ_RPC_H
#define ORCH_FUZZ_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "orch/err.h"

/* The service descriptors of every RPC service, HealthService first. */
#define FUZZ_NSERVICES 5
extern const ProtobufCServiceDescriptor *const fuzz_services[FUZZ_NSERVICES];

/* Runs the check of the service that owns `req`'s type; `why` gets the
 * reason. Aborts when the check's answer breaks its contract (a code other
 * than the documented ones, or an unterminated reason). */
orch_code fuzz_check_request(const ProtobufCMessage *req);

/* Decodes `payload` as the input of `md`, checks its strings like the
 * server and, when they are UTF-8, runs fuzz_check_request(). Frees all. */
void fuzz_decode_and_check(const ProtobufCMethodDescriptor *md, const uint8_t *payload, size_t len);

/* Body of the per-service targets: data[0] picks a method of `svc` (modulo
 * its method count), the rest is that method's request payload. */
int fuzz_service_one_input(const ProtobufCServiceDescriptor *svc, const uint8_t *data, size_t size);

#endif
