/*
 * fuzz_envelope.c - libFuzzer target: the RPC server's decoding of a raw
 * request, as shared/src/rpc_server.c does it on NNG's callback thread:
 * the RequestEnvelope decoder and the method lookup, then the payload's
 * decoder and the method's check (fuzz_rpc.h).
 * Input: one NNG message body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_rpc.h"
#include "orch/v1/envelope.pb-c.h"
#include "rpc_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static orch_rpc_service services[FUZZ_NSERVICES];

static void setup(void)
{
    for (size_t i = 0; i < FUZZ_NSERVICES; i++) {
        services[i].desc = fuzz_services[i];
        services[i].nonblocking = i == 0; /* HealthService, as in svc.c */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!services[0].desc)
        setup();
    Orch__V1__RequestEnvelope *env = orch__v1__request_envelope__unpack(NULL, size, data);
    if (!env)
        return 0;
    size_t si = 0;
    const ProtobufCMethodDescriptor *md =
        orch__rpc_find_method(services, FUZZ_NSERVICES, env->method, &si);
    if (md) {
        if (si >= FUZZ_NSERVICES || md < services[si].desc->methods ||
            md >= services[si].desc->methods + services[si].desc->n_methods)
            abort();
        fuzz_decode_and_check(md, env->payload.data, env->payload.len);
    }
    for (size_t i = 0; i < env->n_metadata; i++)
        if (!env->metadata[i]->key || !env->metadata[i]->value)
            abort();
    orch__v1__request_envelope__free_unpacked(env, NULL);
    return 0;
}
