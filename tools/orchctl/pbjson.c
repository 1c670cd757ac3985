/*
 * pbjson.c - see pbjson.h.
 */
#include "pbjson.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Whether `name` starts with the UPPER_SNAKE_CASE form of the enum's
 * PascalCase name and an underscore ("JobStatus": "JOB_STATUS_"); stores
 * that prefix's length in *len. */
static bool has_type_prefix(const char *type, const char *name, size_t *len)
{
    size_t k = 0;
    for (size_t i = 0; type[i]; i++) {
        unsigned char c = (unsigned char)type[i];
        if (i > 0 && isupper(c) && !isupper((unsigned char)type[i - 1])) {
            if (name[k++] != '_')
                return false;
        }
        if (name[k++] != (char)toupper(c))
            return false;
    }
    if (name[k] != '_')
        return false;
    *len = k + 1;
    return true;
}

const char *pbjson_enum_name(const ProtobufCEnumDescriptor *d, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    if (!ev)
        return NULL;
    /* gRPC's health protocol names ServingStatus 0 UNKNOWN. */
    if (v == 0 && strcmp(d->name, "orch.v1.HealthCheckResponse.ServingStatus") == 0)
        return "UNKNOWN";
    size_t len = 0;
    if (!has_type_prefix(d->short_name, ev->name, &len) ||
        strcmp(ev->name + len, "UNSPECIFIED") == 0)
        return ev->name;
    return ev->name + len;
}

static json_t *enum_value(const ProtobufCEnumDescriptor *d, int v)
{
    const char *name = pbjson_enum_name(d, v);
    return name ? json_string(name) : json_integer(v);
}

/* One value of field `f` stored at `p`. */
static json_t *scalar(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: return json_integer(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return json_integer((json_int_t) * (const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT: return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL: return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: return enum_value(f->descriptor, *(const int *)p);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return json_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? pbjson_from_message(m) : json_null();
    }
    case PROTOBUF_C_TYPE_BYTES: return NULL;
    }
    return NULL;
}

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    default: return 4;
    }
}

json_t *pbjson_from_message(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    json_t *o = json_object();
    for (unsigned i = 0; o && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *p = base + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)p;
            json_t *a = json_array();
            for (size_t k = 0; a && k < n; k++) {
                json_t *v = scalar(f, arr + k * elem_size(f));
                if (v)
                    json_array_append_new(a, v);
            }
            json_object_set_new(o, f->name, a);
            continue;
        }
        json_t *v = scalar(f, p);
        if (v)
            json_object_set_new(o, f->name, v);
    }
    return o;
}
