/*
 * test_rpc_match.c - matching a handler table to its service descriptor by
 * method name (shared/src/rpc_match.c), and the RPC server refusing to start
 * with a table that does not match. Uses EchoService (Echo, Slow) of
 * proto/testsvc.proto; no socket is opened.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "orch/log.h"
#include "orch/rpc.h"
#include "proto/testsvc.pb-c.h"

static orch_code echo(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    (void)call, (void)msg, (void)arg;
    return ORCH_CODE_OK;
}

static orch_code slow(orch_rpc_call *call, const ProtobufCMessage *msg, void *arg)
{
    (void)call, (void)msg, (void)arg;
    return ORCH_CODE_OK;
}

static orch_rpc_service echo_service(const orch_rpc_method *m, size_t n)
{
    orch_rpc_service s = { .desc = &orch__test__echo_service__descriptor,
                           .methods = m,
                           .nmethods = n };
    return s;
}

/* Runs the matcher; returns its error, `why` holds the message. */
static orch_err match(const orch_rpc_method *m, size_t n, orch_rpc_handler out[2], char *why,
                      size_t wn)
{
    orch_rpc_service s = echo_service(m, n);
    why[0] = '\0';
    return orch_rpc_match(&s, out, 2, why, wn);
}

Test(rpc_match, complete_table_in_any_order_is_accepted)
{
    static const orch_rpc_method m[] = { { .name = "Slow", .handler = slow },
                                         { .name = "Echo", .handler = echo } };
    orch_rpc_handler out[2] = { NULL, NULL };
    char why[256];
    cr_assert_eq(match(m, 2, out, why, sizeof why), ORCH_OK, "%s", why);
    /* Indexed by the descriptor's method order, not the table's. */
    cr_assert_str_eq(orch__test__echo_service__descriptor.methods[0].name, "Echo");
    cr_assert_eq(out[0], echo);
    cr_assert_eq(out[1], slow);
}

Test(rpc_match, declared_unimplemented_method_is_accepted_as_null)
{
    static const orch_rpc_method m[] = {
        { .name = "Echo", .handler = echo, .roles = ORCH_ROLE_ANY },
        { .name = "Slow", .handler = NULL, .roles = ORCH_ROLE_ANY }
    };
    orch_rpc_handler out[2] = { slow, slow };
    char why[256];
    cr_assert_eq(match(m, 2, out, why, sizeof why), ORCH_OK, "%s", why);
    cr_assert_eq(out[0], echo);
    cr_assert_null(out[1]);
}

Test(rpc_match, table_missing_a_method_is_refused_naming_it)
{
    static const orch_rpc_method m[] = {
        { .name = "Echo", .handler = echo, .roles = ORCH_ROLE_ANY }
    };
    orch_rpc_handler out[2] = { NULL, NULL };
    char why[256];
    cr_assert_eq(match(m, 1, out, why, sizeof why), ORCH_EINVAL);
    cr_assert(strstr(why, "'Slow'") && strstr(why, "orch.test.EchoService"), "%s", why);
    cr_assert(strstr(why, "no entry"), "%s", why);
    cr_assert_null(out[0], "outputs written on failure");
}

Test(rpc_match, table_naming_an_unknown_method_is_refused_naming_it)
{
    static const orch_rpc_method m[] = {
        { .name = "Echo", .handler = echo, .roles = ORCH_ROLE_ANY },
        { .name = "Slow", .handler = slow, .roles = ORCH_ROLE_ANY },
        { .name = "Shout", .handler = echo, .roles = ORCH_ROLE_ANY }
    };
    orch_rpc_handler out[2] = { NULL, NULL };
    char why[256];
    cr_assert_eq(match(m, 3, out, why, sizeof why), ORCH_EINVAL);
    cr_assert(strstr(why, "'Shout'") && strstr(why, "has no method"), "%s", why);
    cr_assert_null(out[0], "outputs written on failure");
}

Test(rpc_match, table_naming_a_method_twice_is_refused_naming_it)
{
    static const orch_rpc_method m[] = {
        { .name = "Echo", .handler = echo, .roles = ORCH_ROLE_ANY },
        { .name = "Slow", .handler = slow, .roles = ORCH_ROLE_ANY },
        { .name = "Echo", .handler = slow, .roles = ORCH_ROLE_ANY }
    };
    orch_rpc_handler out[2] = { NULL, NULL };
    char why[256];
    cr_assert_eq(match(m, 3, out, why, sizeof why), ORCH_EINVAL);
    cr_assert(strstr(why, "'Echo'") && strstr(why, "twice"), "%s", why);
}

Test(rpc_match, table_entry_without_a_name_is_refused)
{
    static const orch_rpc_method m[] = {
        { .name = "Echo", .handler = echo, .roles = ORCH_ROLE_ANY },
        { .name = NULL, .handler = slow, .roles = ORCH_ROLE_ANY }
    };
    char why[256];
    cr_assert_eq(match(m, 2, NULL, why, sizeof why), ORCH_EINVAL);
    cr_assert(strstr(why, "(null)"), "%s", why);
}

Test(rpc_match, check_only_without_outputs)
{
    static const orch_rpc_method m[] = {
        { .name = "Echo", .handler = echo, .roles = ORCH_ROLE_ANY },
        { .name = "Slow", .handler = slow, .roles = ORCH_ROLE_ANY }
    };
    orch_rpc_service s = echo_service(m, 2);
    char why[256] = "";
    cr_assert_eq(orch_rpc_match(&s, NULL, 0, why, sizeof why), ORCH_OK, "%s", why);
    cr_assert_eq(orch_rpc_match(&s, (orch_rpc_handler[1]){ NULL }, 1, why, sizeof why), ORCH_EINVAL,
                 "an output array of the wrong size is refused");
}

/* Before, the server indexed the table by method number with no bound: a
 * method added to the .proto (here: a table shorter than the descriptor)
 * was read past the end of the array. Now the server refuses to start. */
Test(rpc_match, server_with_table_missing_a_method_refuses_to_start)
{
    static const orch_rpc_method m[] = {
        { .name = "Echo", .handler = echo, .roles = ORCH_ROLE_ANY }
    };
    orch_rpc_service s = echo_service(m, 1);
    orch_rpc_server_opts o = { .url = "tcp://127.0.0.1:0",
                               .max_msg_bytes = 64 * 1024,
                               .concurrency = 2,
                               .workers = 1,
                               .default_timeout_ms = 1000,
                               .dedup_entries = 16,
                               .dedup_ttl_ms = 1000 };
    orch_rpc_server *srv = NULL;
    orch_log_init("unit-rpc-match", ORCH_LOG_ERROR);
    cr_assert_eq(orch_rpc_server_start(&o, &s, 1, &srv), ORCH_EINVAL);
    cr_assert_null(srv);
}
