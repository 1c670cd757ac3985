/*
 * rpc_decode.c - the pure decoding steps of the RPC server (rpc_decode.h).
 *
 * Every function reads only its arguments; nothing is allocated or kept.
 */
#include <string.h>

#include "rpc_decode.h"

const ProtobufCMethodDescriptor *orch__rpc_find_method(const orch_rpc_service *svcs, size_t nsvcs,
                                                       const char *full, size_t *svc_idx)
{
    const char *slash = strrchr(full, '/');
    if (!slash)
        return NULL;
    size_t plen = (size_t)(slash - full);
    for (size_t i = 0; i < nsvcs; i++) {
        const char *name = svcs[i].desc->name;
        if (strlen(name) == plen && strncmp(name, full, plen) == 0) {
            *svc_idx = i;
            return protobuf_c_service_descriptor_get_method_by_name(svcs[i].desc, slash + 1);
        }
    }
    return NULL;
}

bool orch__rpc_utf8_ok(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s++;
        int n = c < 0x80           ? 0
                : (c >> 5) == 0x6  ? 1
                : (c >> 4) == 0xe  ? 2
                : (c >> 3) == 0x1e ? 3
                                   : -1;
        if (n < 0 || (n == 1 && c < 0xc2))
            return false;
        uint32_t cp = n == 0 ? c : c & (0x3fu >> n);
        for (int i = 0; i < n; i++, s++) {
            if ((*s & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (*s & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
    }
    return true;
}

static const char *bad_string_field(const ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (depth > 32)
        return d->name;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m + f->offset;
        size_t n = 1;
        void *const *items = (void *const *)base;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)((const char *)m + f->quantifier_offset);
            items = *(void *const *const *)base;
        }
        for (size_t k = 0; k < n; k++) {
            const void *v = items[k];
            if (!v)
                continue;
            if (f->type == PROTOBUF_C_TYPE_STRING && !orch__rpc_utf8_ok(v))
                return f->name;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                const char *bad = bad_string_field(v, depth + 1);
                if (bad)
                    return bad;
            }
        }
    }
    return NULL;
}

const char *orch__rpc_bad_string_field(const ProtobufCMessage *m)
{
    return bad_string_field(m, 0);
}

/* The top-level singular field `name` of type `type` in `m`, or NULL. */
static const void *field_of(const ProtobufCMessage *m, const char *name, ProtobufCType type)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (!fd || fd->type != type || fd->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t which = *(const uint32_t *)((const char *)m + fd->quantifier_offset);
        if (which != fd->id)
            return NULL;
    }
    return (const char *)m + fd->offset;
}

static const char *string_of(const ProtobufCMessage *m, const char *name)
{
    const char *const *p = field_of(m, name, PROTOBUF_C_TYPE_STRING);
    return p && *p && (*p)[0] ? *p : NULL;
}

void orch__rpc_log_fields_of(const ProtobufCMessage *m, orch__rpc_log_fields *out)
{
    static const char *const caller_names[] = { "caller", "actor", "operator" };
    memset(out, 0, sizeof *out);
    out->work_item = string_of(m, "work_item");
    out->target = string_of(m, "target");
    for (size_t i = 0; !out->caller && i < sizeof caller_names / sizeof caller_names[0]; i++)
        out->caller = string_of(m, caller_names[i]);
    const uint64_t *epoch = field_of(m, "epoch", PROTOBUF_C_TYPE_UINT64);
    out->epoch = epoch ? *epoch : 0;
}
