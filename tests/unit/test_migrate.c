/*
 * test_migrate.c - the embedded migration table (generated from
 * shared/migrations at build time) and the migration checksum
 * (shared/src/migrate.c). No database is contacted.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/migrate.h"

#define MIGRATIONS_DIR ORCH_SOURCE_DIR "/shared/migrations"

Test(migrate, table_is_not_empty)
{
    cr_assert_gt(orch__migrations_count, 0);
}

Test(migrate, versions_strictly_increase)
{
    cr_assert_gt(orch__migrations_count, 0);
    int prev = 0;
    for (size_t i = 0; i < orch__migrations_count; i++) {
        const orch_migration *m = &orch__migrations[i];
        cr_expect_gt(m->version, prev, "%s: version %d after %d", m->name, m->version, prev);
        cr_expect_lt(m->version, 10000);
        prev = m->version;
    }
}

Test(migrate, names_start_with_the_four_digit_version)
{
    for (size_t i = 0; i < orch__migrations_count; i++) {
        const orch_migration *m = &orch__migrations[i];
        char want[8];
        snprintf(want, sizeof want, "%04d_", m->version);
        cr_assert_not_null(m->name);
        cr_expect_eq(strncmp(m->name, want, 5), 0, "'%s' does not start with %s", m->name, want);
        cr_expect_gt(strlen(m->name), 5, "'%s' has no descriptive part", m->name);
    }
}

Test(migrate, no_migration_is_empty)
{
    for (size_t i = 0; i < orch__migrations_count; i++) {
        const orch_migration *m = &orch__migrations[i];
        cr_assert_not_null(m->sql, "%s", m->name);
        size_t ws = strspn(m->sql, " \t\r\n");
        cr_expect_lt(ws, strlen(m->sql), "%s holds no SQL", m->name);
    }
}

/* Reads a whole file into a malloc'ed NUL-terminated string. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(migrate, embedded_text_equals_the_files)
{
    size_t files = 0;
    DIR *dir = opendir(MIGRATIONS_DIR);
    cr_assert_not_null(dir, "%s", MIGRATIONS_DIR);
    for (struct dirent *e = readdir(dir); e; e = readdir(dir)) {
        size_t n = strlen(e->d_name);
        if (n > 9 && isdigit((unsigned char)e->d_name[0]) && isdigit((unsigned char)e->d_name[1]) &&
            isdigit((unsigned char)e->d_name[2]) && isdigit((unsigned char)e->d_name[3]) &&
            e->d_name[4] == '_' && strcmp(e->d_name + n - 4, ".sql") == 0)
            files++;
    }
    closedir(dir);
    cr_assert_eq(files, orch__migrations_count, "%zu files in %s, %zu embedded", files,
                 MIGRATIONS_DIR, orch__migrations_count);

    for (size_t i = 0; i < orch__migrations_count; i++) {
        const orch_migration *m = &orch__migrations[i];
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.sql", MIGRATIONS_DIR, m->name);
        char *text = slurp(path);
        cr_expect_str_eq(m->sql, text, "%s differs from its file", m->name);
        free(text);
    }
}

Test(migrate, checksum_is_16_lowercase_hex_and_stable)
{
    for (size_t i = 0; i < orch__migrations_count; i++) {
        char a[17], b[17];
        memset(a, 'Z', sizeof a);
        orch_migration_checksum(orch__migrations[i].sql, a);
        orch_migration_checksum(orch__migrations[i].sql, b);
        cr_assert_eq(strlen(a), 16);
        cr_expect_eq(strspn(a, "0123456789abcdef"), 16, "'%s'", a);
        cr_expect_str_eq(a, b);
    }
}

/*
 * Regression: the checksum is the standard 64-bit FNV-1a (offset basis
 * 0xcbf29ce484222325), so other tools can recompute the checksums stored in
 * schema_migrations. An offset basis missing its last digit once broke that.
 */
Test(migrate, checksum_is_fnv1a_64)
{
    /* Reference values of 64-bit FNV-1a. */
    char out[17];
    orch_migration_checksum("", out);
    cr_expect_str_eq(out, "cbf29ce484222325");
    orch_migration_checksum("a", out);
    cr_expect_str_eq(out, "af63dc4c8601ec8c");
    orch_migration_checksum("foobar", out);
    cr_expect_str_eq(out, "85944171f73967e8");
}

Test(migrate, checksum_changes_when_one_byte_changes)
{
    int compared = 0;
    for (size_t i = 0; i < orch__migrations_count; i++) {
        const char *sql = orch__migrations[i].sql;
        size_t n = strlen(sql);
        char orig[17];
        orch_migration_checksum(sql, orig);
        char *copy = strdup(sql);
        cr_assert_not_null(copy);
        size_t positions[] = { 0, n / 2, n - 1 };
        for (size_t k = 0; k < 3; k++) {
            size_t pos = positions[k];
            char saved = copy[pos];
            copy[pos] = saved == ' ' ? '\t' : ' ';
            char changed[17];
            orch_migration_checksum(copy, changed);
            cr_expect_str_neq(changed, orig, "%s: byte %zu changed, same checksum",
                              orch__migrations[i].name, pos);
            copy[pos] = saved;
            compared++;
        }
        char again[17];
        orch_migration_checksum(copy, again);
        cr_expect_str_eq(again, orig);
        free(copy);
    }
    cr_assert_geq(compared, 3);
    /* And on small texts: one byte apart, different sums. */
    char x[17], y[17];
    orch_migration_checksum("CREATE TABLE t (a int);", x);
    orch_migration_checksum("CREATE TABLE t (b int);", y);
    cr_expect_str_neq(x, y);
}
