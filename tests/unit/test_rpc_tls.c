/*
 * test_rpc_tls.c - the pure parts of the RPC security settings: role
 * names, role-token lists, TLS modes and the checks made at start-up.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "orch/rpc.h"

Test(rpc_tls, role_names_round_trip)
{
    const char *names[] = { "operator", "stage", "launcher", "lease", "guard" };
    for (unsigned i = 0; i < ORCH_ROLE_COUNT; i++) {
        cr_assert_eq(orch_rpc_role_parse(names[i]), 1u << i);
        cr_assert_str_eq(orch_rpc_role_name(1u << i), names[i]);
    }
    cr_assert_eq(orch_rpc_role_parse("Operator"), 0);
    cr_assert_eq(orch_rpc_role_parse(""), 0);
    cr_assert_str_eq(orch_rpc_role_name(0), "none");
    cr_assert_str_eq(orch_rpc_role_name(ORCH_ROLE_STAGE | ORCH_ROLE_LEASE), "unknown");
}

Test(rpc_tls, role_tokens_are_checked_without_showing_a_token)
{
    char why[256];
    cr_assert_eq(orch_rpc_role_tokens_check("", why, sizeof why), ORCH_OK);
    cr_assert_eq(orch_rpc_role_tokens_check("operator:a,stage:b", why, sizeof why), ORCH_OK);
    const char *bad[] = {
        "operator",    "operator:", ":tok", "boss:sekrit", "stage:sekrit,lease:sekrit",
        "operator:a,", NULL
    };
    for (int i = 0; bad[i]; i++) {
        why[0] = '\0';
        cr_assert_eq(orch_rpc_role_tokens_check(bad[i], why, sizeof why), ORCH_EINVAL, "%s",
                     bad[i]);
        cr_assert(why[0], "no reason for %s", bad[i]);
        cr_assert_null(strstr(why, "sekrit"), "the reason shows a token: %s", why);
    }
}

Test(rpc_tls, modes_parse)
{
    orch_tls_mode m;
    cr_assert_eq(orch_rpc_tls_mode_parse("off", &m), ORCH_OK);
    cr_assert_eq(m, ORCH_TLS_OFF);
    cr_assert_eq(orch_rpc_tls_mode_parse("mutual", &m), ORCH_OK);
    cr_assert_eq(m, ORCH_TLS_MUTUAL);
    cr_assert_eq(orch_rpc_tls_mode_parse("yes", &m), ORCH_EINVAL);
}

Test(rpc_tls, check_names_the_missing_file_and_the_wrong_scheme)
{
    char why[256], path[] = "/tmp/orch-tls-unit-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    orch_rpc_tls off = { ORCH_TLS_OFF, NULL, NULL, NULL };
    cr_assert_eq(orch_rpc_tls_check(&off, true, "tcp://127.0.0.1:1", why, sizeof why), ORCH_OK);
    cr_assert_eq(orch_rpc_tls_check(&off, true, "tls+tcp://127.0.0.1:1", why, sizeof why),
                 ORCH_EINVAL);
    cr_assert_eq(orch_rpc_tls_check(&off, true, "ipc:///tmp/x", why, sizeof why), ORCH_EINVAL);

    orch_rpc_tls on = { ORCH_TLS_ON, "", "", path };
    /* A client with TLS on needs the CA only; a server its pair too. */
    cr_assert_eq(orch_rpc_tls_check(&on, false, "tcp://127.0.0.1:1", why, sizeof why), ORCH_OK);
    cr_assert_eq(orch_rpc_tls_check(&on, true, "tcp://127.0.0.1:1", why, sizeof why), ORCH_EINVAL);
    cr_assert(strstr(why, "ORCH_TLS_CERT_FILE"), "%s", why);
    orch_rpc_tls mutual = { ORCH_TLS_MUTUAL, path, path, "/nonexistent/ca.pem" };
    cr_assert_eq(orch_rpc_tls_check(&mutual, false, NULL, why, sizeof why), ORCH_EINVAL);
    cr_assert(strstr(why, "ORCH_TLS_CA_FILE: cannot read"), "%s", why);
    mutual.ca_file = path;
    cr_assert_eq(orch_rpc_tls_check(&mutual, true, "tls+tcp://127.0.0.1:1", why, sizeof why),
                 ORCH_OK);
    unlink(path);
}
