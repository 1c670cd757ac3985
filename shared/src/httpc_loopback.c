/*
 * httpc_loopback.c - loopback-only mode of the HTTP client (httpc.h) and
 * the address checks behind it.
 *
 * Apart from httpc.c so that a service that never makes an HTTP request
 * (svc.c sets the mode in every service) does not link libcurl: the library
 * and its dependencies cost each process about 0.6 MiB of resident memory
 * (docs/operations/benchmarks.md).
 */
#include "orch/httpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>

static atomic_bool loopback_only;

void orch_httpc_set_loopback_only(bool on)
{
    atomic_store(&loopback_only, on);
}

bool orch_httpc_loopback_only(void)
{
    return atomic_load(&loopback_only);
}

static bool v4_is_loopback(const struct in_addr *a)
{
    return (ntohl(a->s_addr) >> 24) == 127;
}

static bool v6_is_loopback(const struct in6_addr *a)
{
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

bool orch_httpc_sockaddr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_is_loopback(&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return v6_is_loopback(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

bool orch_httpc_is_loopback_text(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (addr && inet_pton(AF_INET, addr, &a4) == 1)
        return v4_is_loopback(&a4);
    if (addr && inet_pton(AF_INET6, addr, &a6) == 1)
        return v6_is_loopback(&a6);
    return false;
}
