/*
 * pbjson.h - renders any protobuf-c message as a jansson object, driven by
 * its descriptor, so that every orchctl command has a --json form.
 * Field names are the .proto names; enums are their names as
 * pbjson_enum_name gives them; 64-bit integers are JSON integers; bytes are
 * omitted. The caller owns the result.
 */
#ifndef ORCHCTL_PBJSON_H
#define ORCHCTL_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

json_t *pbjson_from_message(const ProtobufCMessage *m);

/* The name orchctl prints for value `v` of enum `d` (NULL: not a value of
 * it): the value's name without its type's prefix (CODE_NOT_FOUND prints
 * NOT_FOUND, OUTCOME_GRANTED prints GRANTED, LIVENESS_ALIVE prints ALIVE),
 * the names orchctl printed before the values were prefixed. A zero value
 * keeps its whole name (LIVENESS_UNSPECIFIED), except ServingStatus's,
 * which prints UNKNOWN as gRPC's health protocol names it. Points into the
 * descriptor or a literal: never freed. */
const char *pbjson_enum_name(const ProtobufCEnumDescriptor *d, int v);

#endif
