/*
 * stage_rpc.h - StageService (stage_rpc.c): its registration, and the input
 * checks of its RPCs, apart from the handlers so that they can be fuzzed
 * without a database.
 *
 * The checks are pure and thread-safe.
 */
#ifndef ORCH_STAGE_RPC_H
#define ORCH_STAGE_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "orch/err.h"
#include "orch/svc.h"
#include "orch/verdict.h"

/* Checks a decoded request of any StageService method (known by its
 * descriptor) as its handler does before it touches the database. Returns
 * ORCH_CODE_OK, or ORCH_CODE_INVALID_ARGUMENT with the reason in `why`
 * (`n` bytes). `max_evidence` is ORCH_STAGE_MAX_EVIDENCE_BYTES. For
 * AdvanceStage, *ev (may be NULL) receives the request's verdict set; it is
 * untouched for the other methods. A message of another service is
 * INVALID_ARGUMENT. */
orch_code stage_rpc_check(const ProtobufCMessage *req, size_t max_evidence, orch_verdicts *ev,
                          char *why, size_t n);

struct stage_svc;

/* Adds StageService's methods to `svc`; `ss` is borrowed for the service's
 * life. */
orch_err stage_rpc_register(orch_service *svc, struct stage_svc *ss) ORCH_NODISCARD;

#endif
