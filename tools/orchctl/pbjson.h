/*
 * pbjson.h - renders any protobuf-c message as a jansson object, driven by
 * its descriptor, so that every orchctl command has a --json form.
 * Field names are the .proto names; enums are their names; 64-bit integers
 * are JSON integers; bytes are omitted. The caller owns the result.
 */
#ifndef ORCHCTL_PBJSON_H
#define ORCHCTL_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

json_t *pbjson_from_message(const ProtobufCMessage *m);

#endif
