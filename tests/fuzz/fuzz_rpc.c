/*
 * fuzz_rpc.c - the decode-then-check path shared by the RPC fuzz targets
 * (fuzz_rpc.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_rpc.h"
#include "guard_rpc.h"
#include "launcher_rpc.h"
#include "lease_rpc.h"
#include "orch/v1/guard.pb-c.h"
#include "orch/v1/health.pb-c.h"
#include "orch/v1/launcher.pb-c.h"
#include "orch/v1/lease.pb-c.h"
#include "orch/v1/stage.pb-c.h"
#include "rpc_decode.h"
#include "stage_rpc.h"

const ProtobufCServiceDescriptor *const fuzz_services[FUZZ_NSERVICES] = {
    &orch__v1__health_service__descriptor,   &orch__v1__lease_service__descriptor,
    &orch__v1__stage_service__descriptor,    &orch__v1__guard_service__descriptor,
    &orch__v1__launcher_service__descriptor,
};

/* The launcher's workdir check without the file system: "/tmp" and paths
 * under "/work" count as folders, so that both answers are reached. */
static bool fake_is_dir(const char *path)
{
    return strcmp(path, "/tmp") == 0 || strncmp(path, "/work", 5) == 0;
}

static bool in_service(const ProtobufCServiceDescriptor *svc, const ProtobufCMessageDescriptor *d)
{
    for (unsigned i = 0; i < svc->n_methods; i++)
        if (svc->methods[i].input == d)
            return true;
    return false;
}

orch_code fuzz_check_request(const ProtobufCMessage *req)
{
    char why[320];
    memset(why, 0x5a, sizeof why);
    why[sizeof why - 1] = '\0';
    orch_code code = ORCH_CODE_OK;
    const ProtobufCMessageDescriptor *d = req->descriptor;
    if (in_service(&orch__v1__lease_service__descriptor, d)) {
        lease_owner owner;
        code = lease_rpc_check(req, &owner, why, sizeof why);
    } else if (in_service(&orch__v1__stage_service__descriptor, d)) {
        orch_verdicts ev;
        code = stage_rpc_check(req, 65536, &ev, why, sizeof why);
        if (code == ORCH_CODE_OK && d == &orch__v1__advance_stage_request__descriptor &&
            ev.n > ORCH_VERDICTS_MAX)
            abort();
    } else if (in_service(&orch__v1__guard_service__descriptor, d)) {
        code = guard_rpc_check(req, 16384, why, sizeof why);
    } else if (in_service(&orch__v1__launcher_service__descriptor, d)) {
        launcher_rpc_limits lim = { 3600, fake_is_dir };
        code = launcher_rpc_check(req, &lim, why, sizeof why);
    } else {
        return ORCH_CODE_OK; /* HealthService: nothing to check */
    }
    if (code != ORCH_CODE_OK && code != ORCH_CODE_INVALID_ARGUMENT && code != ORCH_CODE_NOT_FOUND)
        abort();
    /* A refusal always explains itself, within the buffer. */
    if (code != ORCH_CODE_OK && (why[0] == '\0' || strlen(why) >= sizeof why))
        abort();
    return code;
}

void fuzz_decode_and_check(const ProtobufCMethodDescriptor *md, const uint8_t *payload, size_t len)
{
    ProtobufCMessage *req = protobuf_c_message_unpack(md->input, NULL, len, payload);
    if (!req)
        return;
    if (!orch__rpc_bad_string_field(req))
        (void)fuzz_check_request(req);
    protobuf_c_message_free_unpacked(req, NULL);
}

int fuzz_service_one_input(const ProtobufCServiceDescriptor *svc, const uint8_t *data, size_t size)
{
    if (size < 1 || svc->n_methods == 0)
        return 0;
    const ProtobufCMethodDescriptor *md = &svc->methods[data[0] % svc->n_methods];
    fuzz_decode_and_check(md, data + 1, size - 1);
    return 0;
}
