/*
 * rpc_match.c - matching a service's handler table to its protobuf-c
 * descriptor by method name (orch_rpc_match in rpc.h).
 *
 * Pure: reads only its arguments, allocates nothing, keeps nothing; safe
 * from any thread. Every service registers through it (orch_service_add_rpc
 * and orch_rpc_server_start), so a .proto method without a handler, or a
 * handler for a method the .proto lacks, stops the service at start-up.
 */
#include <stdio.h>
#include <string.h>

#include "orch/rpc.h"

/* Index of the method called `name` in `d`, or -1. */
static int method_index(const ProtobufCServiceDescriptor *d, const char *name)
{
    for (unsigned i = 0; i < d->n_methods; i++)
        if (strcmp(d->methods[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Whether table[0..k) names `name` already. */
static bool named_before(const orch_rpc_method *table, size_t k, const char *name)
{
    for (size_t j = 0; j < k; j++)
        if (strcmp(table[j].name, name) == 0)
            return true;
    return false;
}

orch_err orch_rpc_match(const orch_rpc_service *svc, orch_rpc_handler *out, size_t nout, char *why,
                        size_t n)
{
    const ProtobufCServiceDescriptor *d = svc->desc;
    if (!d || (out && nout != d->n_methods) || (svc->nmethods && !svc->methods)) {
        snprintf(why, n, "%s: malformed handler table", d ? d->name : "(no descriptor)");
        return ORCH_EINVAL;
    }
    for (size_t k = 0; k < svc->nmethods; k++) {
        const char *name = svc->methods[k].name;
        if (!name || method_index(d, name) < 0) {
            snprintf(why, n, "%s has no method '%s', yet its handler table names it", d->name,
                     name ? name : "(null)");
            return ORCH_EINVAL;
        }
        if (named_before(svc->methods, k, name)) {
            snprintf(why, n, "%s: method '%s' is named twice in the handler table", d->name, name);
            return ORCH_EINVAL;
        }
    }
    for (unsigned i = 0; i < d->n_methods; i++) {
        bool found = false;
        for (size_t k = 0; k < svc->nmethods && !found; k++)
            found = strcmp(svc->methods[k].name, d->methods[i].name) == 0;
        if (!found) {
            snprintf(why, n, "%s: method '%s' has no entry in the handler table", d->name,
                     d->methods[i].name);
            return ORCH_EINVAL;
        }
    }
    for (size_t k = 0; out && k < svc->nmethods; k++)
        out[method_index(d, svc->methods[k].name)] = svc->methods[k].handler;
    return ORCH_OK;
}
