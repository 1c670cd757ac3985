/*
 * test_ident.c - process identity (shared/src/ident.c): the /proc/<pid>/stat
 * parser, start times of live and vanished processes, and orch_ident_init().
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orch/ident.h"

/* Builds a 52-field stat line as Linux writes it, with the given comm and
 * starttime (field 22). The other fields are those of a real bash process. */
static void make_stat(char *buf, size_t n, const char *comm, const char *starttime)
{
    int k = snprintf(buf, n,
                     "4242 (%s) S 4241 4242 4242 34816 4300 4194304 1234 5678 0 0 12 3 4 5 20 0 "
                     "1 0 %s 9052160 1290 18446744073709551615 94823645184000 94823646097917 "
                     "140726843470592 0 0 0 65536 3686404 1266761467 1 0 0 17 2 0 0 0 0 0 "
                     "94823646341104 94823646390468 94823667101696 140726843474553 "
                     "140726843474558 140726843474558 140726843477998 0",
                     comm, starttime);
    cr_assert(k > 0 && (size_t)k < n);
}

static int count_fields_after_comm(const char *line)
{
    const char *p = strrchr(line, ')');
    int n = 2; /* pid and comm */
    for (p++; *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        n++;
        while (*p && *p != ' ')
            p++;
    }
    return n;
}

Test(ident, make_stat_builds_a_52_field_line)
{
    char line[1024];
    make_stat(line, sizeof line, "bash", "987654321");
    cr_assert_eq(count_fields_after_comm(line), 52);
}

Test(ident, parse_stat_reads_field_22_of_a_normal_line)
{
    char line[1024];
    make_stat(line, sizeof line, "bash", "987654321");
    uint64_t v = 0;
    cr_assert_eq(orch_proc_parse_stat(line, &v), ORCH_OK, "%s", line);
    cr_assert_eq(v, 987654321u);
}

Test(ident, parse_stat_reads_large_start_times)
{
    char line[1024];
    make_stat(line, sizeof line, "postgres", "123456789012345");
    uint64_t v = 0;
    cr_assert_eq(orch_proc_parse_stat(line, &v), ORCH_OK);
    cr_assert_eq(v, UINT64_C(123456789012345));
}

Test(ident, parse_stat_handles_spaces_and_parens_in_comm)
{
    static const char *const comms[] = {
        "a) b) (c", /* -> "(a) b) (c)" */
        "x y z",    ") S 1 2 3", "((", ")", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    };
    for (size_t i = 0; i < sizeof comms / sizeof comms[0]; i++) {
        char line[1024];
        make_stat(line, sizeof line, comms[i], "55555");
        uint64_t v = 0;
        cr_expect_eq(orch_proc_parse_stat(line, &v), ORCH_OK, "%s", line);
        cr_expect_eq(v, 55555u, "comm '%s' gave %" PRIu64, comms[i], v);
    }
}

Test(ident, parse_stat_of_52_fields_with_parens_in_comm)
{
    const char *line = "123 (a) b) (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4711 20 21 "
                       "22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 "
                       "46 47 48 49";
    cr_assert_eq(count_fields_after_comm(line), 52);
    uint64_t v = 0;
    cr_assert_eq(orch_proc_parse_stat(line, &v), ORCH_OK);
    cr_assert_eq(v, 4711u);
}

Test(ident, truncated_lines_are_protocol_errors)
{
    char line[1024];
    make_stat(line, sizeof line, "a) b", "987654321");
    /* Every prefix that ends before the start time field begins. */
    const char *field22 = strstr(line, " 987654321 ") + 1;
    size_t upto = (size_t)(field22 - line);
    size_t tried = 0;
    for (size_t cut = 0; cut <= upto; cut++) {
        char prefix[1024];
        memcpy(prefix, line, cut);
        prefix[cut] = '\0';
        uint64_t v = 777;
        cr_expect_eq(orch_proc_parse_stat(prefix, &v), ORCH_EPROTO, "accepted '%s'", prefix);
        cr_expect_eq(v, 777u, "output written for '%s'", prefix);
        tried++;
    }
    cr_assert_gt(tried, 60);
}

Test(ident, malformed_start_time_is_a_protocol_error)
{
    static const char *const bad[] = { "abc", "-5", "12x", "x12" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[1024];
        make_stat(line, sizeof line, "bash", bad[i]);
        uint64_t v = 777;
        cr_expect_eq(orch_proc_parse_stat(line, &v), ORCH_EPROTO, "accepted '%s'", bad[i]);
        cr_expect_eq(v, 777u);
    }
    uint64_t v = 777;
    cr_expect_eq(orch_proc_parse_stat("", &v), ORCH_EPROTO);
    cr_expect_eq(orch_proc_parse_stat("4242 bash S 1 2 3", &v), ORCH_EPROTO);
    cr_expect_eq(v, 777u);
}

/* Field 22 of /proc/self/stat, parsed independently of the code under test. */
static uint64_t own_start_ticks(void)
{
    char buf[2048];
    FILE *f = fopen("/proc/self/stat", "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    fclose(f);
    char *p = strrchr(buf, ')');
    cr_assert_not_null(p);
    char *save = NULL;
    char *tok = strtok_r(p + 1, " \n", &save);
    for (int field = 3; tok && field < 22; field++)
        tok = strtok_r(NULL, " \n", &save);
    cr_assert_not_null(tok);
    return strtoull(tok, NULL, 10);
}

Test(ident, start_ticks_of_self_match_proc)
{
    uint64_t v = 0;
    cr_assert_eq(orch_proc_start_ticks(getpid(), &v), ORCH_OK);
    uint64_t want = own_start_ticks();
    cr_assert_gt(want, 0);
    cr_assert_eq(v, want);
}

Test(ident, start_ticks_of_init_are_not_after_ours)
{
    uint64_t init = 0, self = 0;
    cr_assert_eq(orch_proc_start_ticks(1, &init), ORCH_OK);
    cr_assert_eq(orch_proc_start_ticks(getpid(), &self), ORCH_OK);
    cr_assert_leq(init, self);
}

Test(ident, start_ticks_of_a_vanished_process_is_not_found)
{
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0)
        _exit(0);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child); /* reaped: the pid is free */
    uint64_t v = 777;
    cr_assert_eq(orch_proc_start_ticks(child, &v), ORCH_ENOTFOUND);
    cr_assert_eq(v, 777u);
}

Test(ident, start_ticks_rejects_non_positive_pids)
{
    uint64_t v = 777;
    cr_expect_eq(orch_proc_start_ticks(0, &v), ORCH_EINVAL);
    cr_expect_eq(orch_proc_start_ticks(-1, &v), ORCH_EINVAL);
    cr_expect_eq(v, 777u);
}

static bool is_lower_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    return true;
}

Test(ident, init_fills_every_field)
{
    orch_ident id;
    memset(&id, 0x55, sizeof id);
    cr_assert_eq(orch_ident_init("host-a", &id), ORCH_OK);
    cr_expect_str_eq(id.host_id, "host-a");
    cr_expect_eq(id.pid, getpid());
    cr_expect_eq(id.start_ticks, own_start_ticks());
    cr_expect(is_lower_hex(id.instance_id, 32), "instance_id '%s'", id.instance_id);

    /* boot id: 8-4-4-4-12 hex, as the kernel writes it. */
    cr_assert_eq(strlen(id.boot_id), 36, "boot_id '%s'", id.boot_id);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            cr_expect_eq(id.boot_id[i], '-', "boot_id '%s'", id.boot_id);
        else
            cr_expect(isxdigit((unsigned char)id.boot_id[i]), "boot_id '%s'", id.boot_id);
    }
    char want[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(want, sizeof want, f));
    fclose(f);
    want[strcspn(want, "\n")] = '\0';
    cr_expect_str_eq(id.boot_id, want);
}

Test(ident, instance_id_differs_between_calls)
{
    orch_ident a, b;
    cr_assert_eq(orch_ident_init(NULL, &a), ORCH_OK);
    cr_assert_eq(orch_ident_init(NULL, &b), ORCH_OK);
    cr_assert(is_lower_hex(a.instance_id, 32));
    cr_assert(is_lower_hex(b.instance_id, 32));
    cr_assert_str_neq(a.instance_id, b.instance_id);
    /* Everything else describes the same process. */
    cr_assert_str_eq(a.boot_id, b.boot_id);
    cr_assert_eq(a.start_ticks, b.start_ticks);
    cr_assert_eq(a.pid, b.pid);
}

Test(ident, host_id_defaults_to_the_hostname)
{
    char host[256] = "";
    cr_assert_eq(gethostname(host, sizeof host - 1), 0);
    cr_assert_gt(strlen(host), 0);
    orch_ident a, b;
    cr_assert_eq(orch_ident_init(NULL, &a), ORCH_OK);
    cr_assert_eq(orch_ident_init("", &b), ORCH_OK);
    cr_expect_str_eq(a.host_id, host);
    cr_expect_str_eq(b.host_id, host);
}

Test(ident, host_id_of_255_chars_is_kept_whole)
{
    char longest[256];
    memset(longest, 'h', 255);
    longest[255] = '\0';
    orch_ident id;
    cr_assert_eq(orch_ident_init(longest, &id), ORCH_OK);
    cr_assert_str_eq(id.host_id, longest);
}

Test(ident, too_long_host_id_is_out_of_range)
{
    char toolong[300];
    memset(toolong, 'h', 256);
    toolong[256] = '\0';
    orch_ident id;
    memset(&id, 0x55, sizeof id);
    cr_assert_eq(orch_ident_init(toolong, &id), ORCH_ERANGE);
    cr_assert_eq(id.pid, (pid_t)0x55555555, "output written on error");
}

Test(ident, random_hex_renders_2n_lowercase_chars)
{
    char out[129];
    cr_assert_eq(orch_random_hex(out, 64), ORCH_OK);
    cr_assert(is_lower_hex(out, 128), "'%s'", out);
    cr_assert_eq(orch_random_hex(out, 65), ORCH_EINVAL);
    cr_assert_eq(orch_random_hex(out, 0), ORCH_OK);
    cr_assert_str_eq(out, "");
}

/* The lowest descriptor number this process does not use. */
static int lowest_free_fd(void)
{
    int fd = 0;
    while (fd < 4096 && fcntl(fd, F_GETFD) != -1)
        fd++;
    return fd;
}

Test(ident, proc_read_without_descriptors_is_an_io_error_not_not_found)
{
    uint64_t ticks = 0;
    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    low.rlim_cur = (rlim_t)lowest_free_fd();
    low.rlim_max = old.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    /* EMFILE: nothing is known about the process, alive or not. */
    orch_err self = orch_proc_start_ticks(getpid(), &ticks);
    orch_err init = orch_proc_start_ticks(1, &ticks);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    cr_assert_eq(self, ORCH_EIO, "got %s", orch_strerror(self));
    cr_assert_eq(init, ORCH_EIO, "got %s", orch_strerror(init));
    cr_assert_eq(orch_proc_start_ticks(getpid(), &ticks), ORCH_OK);
}
