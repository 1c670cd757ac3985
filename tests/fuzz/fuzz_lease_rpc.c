/*
 * fuzz_lease_rpc.c - libFuzzer target: every LeaseService request decoder
 * and its check. Input: one byte choosing the method, then the request.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_rpc.h"
#include "orch/v1/lease.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_service_one_input(&orch__v1__lease_service__descriptor, data, size);
}
