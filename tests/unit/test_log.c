/*
 * test_log.c - the JSON-lines logger (shared/src/log.c). Each test moves
 * stderr onto a temporary file, logs, restores stderr and parses what was
 * written with jansson. Each Criterion test runs in its own process, so the
 * level set by one test does not reach another.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orch/log.h"

typedef struct capture {
    FILE *tmp;
    int saved_fd;
} capture;

static void capture_start(capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    cr_assert_not_null(c->tmp);
    c->saved_fd = dup(STDERR_FILENO);
    cr_assert_geq(c->saved_fd, 0);
    cr_assert_geq(dup2(fileno(c->tmp), STDERR_FILENO), 0);
}

/* Restores stderr; returns everything written meanwhile (caller frees). */
static char *capture_end(capture *c)
{
    fflush(stderr);
    cr_assert_geq(dup2(c->saved_fd, STDERR_FILENO), 0);
    close(c->saved_fd);
    cr_assert_eq(fseek(c->tmp, 0, SEEK_END), 0);
    long n = ftell(c->tmp);
    cr_assert_geq(n, 0);
    rewind(c->tmp);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, c->tmp), (size_t)n);
    buf[n] = '\0';
    fclose(c->tmp);
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Parses the single line in `text`, which must end with its only newline. */
static json_t *parse_one_line(const char *text)
{
    size_t len = strlen(text);
    cr_assert_gt(len, 0, "nothing was logged");
    cr_assert_eq(text[len - 1], '\n', "line does not end with a newline: %s", text);
    cr_assert_eq(count_lines(text), 1, "want exactly one line: %s", text);
    json_error_t e;
    json_t *o = json_loadb(text, len - 1, 0, &e);
    cr_assert_not_null(o, "not JSON (%s): %s", e.text, text);
    cr_assert(json_is_object(o), "not an object: %s", text);
    return o;
}

static const char *str_field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int side_effects;

static const char *side_effect(void)
{
    side_effects++;
    return "evaluated";
}

Test(log, level_is_tested_before_arguments_are_evaluated)
{
    orch_log_init("test-svc", ORCH_LOG_INFO);
    capture c;
    capture_start(&c);
    orch_debug("debug %s", side_effect());
    int after_debug = side_effects;
    orch_info("info %s", side_effect());
    int after_info = side_effects;
    char *out = capture_end(&c);
    cr_expect_eq(after_debug, 0, "a disabled level evaluated its arguments");
    cr_expect_eq(after_info, 1, "an enabled level must evaluate them once");
    json_t *o = parse_one_line(out);
    cr_expect_str_eq(str_field(o, "msg"), "info evaluated");
    json_decref(o);
    free(out);
}

Test(log, threshold_filters_lower_levels)
{
    orch_log_init("test-svc", ORCH_LOG_WARN);
    cr_expect_not(orch_log_enabled(ORCH_LOG_DEBUG));
    cr_expect_not(orch_log_enabled(ORCH_LOG_INFO));
    cr_expect(orch_log_enabled(ORCH_LOG_WARN));
    cr_expect(orch_log_enabled(ORCH_LOG_ERROR));
    capture c;
    capture_start(&c);
    orch_debug("d");
    orch_info("i");
    orch_warn("w");
    orch_error("e");
    char *out = capture_end(&c);
    cr_expect_eq(count_lines(out), 2, "%s", out);
    cr_expect_null(strstr(out, "\"msg\":\"i\""), "%s", out);
    cr_expect_not_null(strstr(out, "\"msg\":\"w\""), "%s", out);
    free(out);
}

Test(log, off_writes_nothing_and_evaluates_nothing)
{
    orch_log_init("test-svc", ORCH_LOG_OFF);
    capture c;
    capture_start(&c);
    orch_error("error %s", side_effect());
    char *out = capture_end(&c);
    cr_expect_eq(side_effects, 0);
    cr_expect_str_eq(out, "");
    cr_expect_not(orch_log_enabled(ORCH_LOG_OFF));
    free(out);
}

Test(log, line_is_json_with_ts_level_service_msg)
{
    orch_log_init("test-svc", ORCH_LOG_DEBUG);
    capture c;
    capture_start(&c);
    orch_warn("hello %d", 42);
    char *out = capture_end(&c);
    json_t *o = parse_one_line(out);
    cr_expect_str_eq(str_field(o, "level"), "warn");
    cr_expect_str_eq(str_field(o, "service"), "test-svc");
    cr_expect_str_eq(str_field(o, "msg"), "hello 42");
    const char *ts = str_field(o, "ts");
    cr_assert_not_null(ts, "%s", out);
    regex_t re;
    cr_assert_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    cr_expect_eq(regexec(&re, ts, 0, NULL, 0), 0, "ts '%s' is not RFC 3339 UTC", ts);
    regfree(&re);
    cr_expect_null(json_object_get(o, "request_id"));
    cr_expect_null(json_object_get(o, "method"));
    json_decref(o);
    free(out);
}

Test(log, each_level_has_its_name)
{
    orch_log_init("test-svc", ORCH_LOG_DEBUG);
    capture c;
    capture_start(&c);
    orch_debug("m");
    orch_info("m");
    orch_warn("m");
    orch_error("m");
    char *out = capture_end(&c);
    cr_assert_eq(count_lines(out), 4, "%s", out);
    static const char *const want[] = { "debug", "info", "warn", "error" };
    char *save = NULL;
    int i = 0;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
        json_t *o = json_loads(line, 0, NULL);
        cr_assert_not_null(o, "%s", line);
        cr_expect_str_eq(str_field(o, "level"), want[i]);
        json_decref(o);
    }
    cr_expect_eq(i, 4);
    free(out);
}

Test(log, request_fields_appear_only_while_set)
{
    orch_log_init("test-svc", ORCH_LOG_INFO);
    capture c;
    capture_start(&c);
    orch_info("before");
    orch_log_set_request("0123456789abcdef", "orch.test.EchoService/Echo");
    orch_info("during");
    orch_log_set_request(NULL, NULL);
    orch_info("after");
    char *out = capture_end(&c);
    cr_assert_eq(count_lines(out), 3, "%s", out);

    char *save = NULL;
    char *line = strtok_r(out, "\n", &save);
    json_t *o = json_loads(line, 0, NULL);
    cr_assert_not_null(o);
    cr_expect_null(json_object_get(o, "request_id"), "%s", line);
    cr_expect_null(json_object_get(o, "method"), "%s", line);
    json_decref(o);

    line = strtok_r(NULL, "\n", &save);
    o = json_loads(line, 0, NULL);
    cr_assert_not_null(o);
    cr_expect_str_eq(str_field(o, "msg"), "during");
    cr_expect_str_eq(str_field(o, "request_id"), "0123456789abcdef", "%s", line);
    cr_expect_str_eq(str_field(o, "method"), "orch.test.EchoService/Echo", "%s", line);
    json_decref(o);

    line = strtok_r(NULL, "\n", &save);
    o = json_loads(line, 0, NULL);
    cr_assert_not_null(o);
    cr_expect_str_eq(str_field(o, "msg"), "after");
    cr_expect_null(json_object_get(o, "request_id"), "%s", line);
    cr_expect_null(json_object_get(o, "method"), "%s", line);
    json_decref(o);
    free(out);
}

static void *log_from_other_thread(void *arg)
{
    (void)arg;
    orch_info("other thread");
    return NULL;
}

Test(log, request_context_belongs_to_its_thread)
{
    orch_log_init("test-svc", ORCH_LOG_INFO);
    capture c;
    capture_start(&c);
    orch_log_set_request("rid-main", "svc/Main");
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, log_from_other_thread, NULL), 0);
    pthread_join(t, NULL);
    orch_log_set_request(NULL, NULL);
    char *out = capture_end(&c);
    json_t *o = parse_one_line(out);
    cr_expect_str_eq(str_field(o, "msg"), "other thread");
    cr_expect_null(json_object_get(o, "request_id"), "%s", out);
    json_decref(o);
    free(out);
}

Test(log, quotes_newlines_and_controls_are_escaped)
{
    orch_log_init("test-svc", ORCH_LOG_INFO);
    const char *nasty = "say \"hi\"\nsecond line\tand a \\ backslash\r and \x01 control";
    capture c;
    capture_start(&c);
    orch_info("%s", nasty);
    char *out = capture_end(&c);
    json_t *o = parse_one_line(out); /* exactly one physical line */
    cr_expect_str_eq(str_field(o, "msg"), nasty);
    json_decref(o);
    free(out);
}

Test(log, invalid_utf8_still_gives_a_json_line)
{
    orch_log_init("test-svc", ORCH_LOG_INFO);
    capture c;
    capture_start(&c);
    orch_info("bad bytes \xff\xfe here");
    char *out = capture_end(&c);
    json_t *o = parse_one_line(out);
    const char *msg = str_field(o, "msg");
    cr_expect_not_null(msg, "msg must still be present: %s", out);
    json_decref(o);
    free(out);
}

Test(log, long_message_gives_one_valid_line)
{
    orch_log_init("test-svc", ORCH_LOG_INFO);
    char big[10000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    capture c;
    capture_start(&c);
    orch_info("%s", big);
    char *out = capture_end(&c);
    json_t *o = parse_one_line(out);
    const char *msg = str_field(o, "msg");
    cr_assert_not_null(msg);
    cr_expect_gt(strlen(msg), 1000, "message cut too short");
    cr_expect_eq(strspn(msg, "x"), strlen(msg));
    json_decref(o);
    free(out);
}

#define LOG_THREADS 8
#define LOG_LINES   200

static void *log_many(void *arg)
{
    long id = (long)(intptr_t)arg;
    char rid[32];
    snprintf(rid, sizeof rid, "thread-%ld", id);
    orch_log_set_request(rid, "svc/Many");
    for (int i = 0; i < LOG_LINES; i++)
        orch_info("thread %ld line %d %s", id, i, "padding padding padding padding padding");
    orch_log_set_request(NULL, NULL);
    return NULL;
}

Test(log, lines_from_many_threads_never_interleave)
{
    orch_log_init("test-svc", ORCH_LOG_INFO);
    capture c;
    capture_start(&c);
    pthread_t t[LOG_THREADS];
    for (long i = 0; i < LOG_THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, log_many, (void *)(intptr_t)i), 0);
    for (int i = 0; i < LOG_THREADS; i++)
        pthread_join(t[i], NULL);
    char *out = capture_end(&c);
    cr_assert_eq(count_lines(out), LOG_THREADS * LOG_LINES);
    int per_thread[LOG_THREADS] = { 0 };
    char *save = NULL;
    int parsed = 0;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        cr_assert_not_null(o, "broken line: %s", line);
        long id = -1;
        int n = -1;
        cr_assert_eq(sscanf(str_field(o, "msg"), "thread %ld line %d", &id, &n), 2);
        cr_assert(id >= 0 && id < LOG_THREADS);
        char rid[32];
        snprintf(rid, sizeof rid, "thread-%ld", id);
        cr_expect_str_eq(str_field(o, "request_id"), rid, "context crossed threads");
        cr_expect_eq(n, per_thread[id], "lines of one thread out of order");
        per_thread[id]++;
        parsed++;
        json_decref(o);
    }
    cr_assert_eq(parsed, LOG_THREADS * LOG_LINES);
    free(out);
}

Test(log, level_names_parse)
{
    static const struct {
        const char *text;
        orch_log_level level;
    } ok[] = {
        { "debug", ORCH_LOG_DEBUG }, { "info", ORCH_LOG_INFO }, { "warn", ORCH_LOG_WARN },
        { "error", ORCH_LOG_ERROR }, { "off", ORCH_LOG_OFF },   { "INFO", ORCH_LOG_INFO },
        { "Warn", ORCH_LOG_WARN },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        orch_log_level l = (orch_log_level)-1;
        cr_expect_eq(orch_log_level_parse(ok[i].text, &l), ORCH_OK, "%s", ok[i].text);
        cr_expect_eq(l, ok[i].level, "%s", ok[i].text);
    }
    static const char *const bad[] = { "", "warning", "trace", "3" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        orch_log_level l = ORCH_LOG_ERROR;
        cr_expect_eq(orch_log_level_parse(bad[i], &l), ORCH_EINVAL, "%s", bad[i]);
        cr_expect_eq(l, ORCH_LOG_ERROR);
    }
    orch_log_level l = ORCH_LOG_ERROR;
    cr_expect_eq(orch_log_level_parse(NULL, &l), ORCH_EINVAL);
}

Test(log, context_fields_are_keys_of_their_own)
{
    orch_log_init("test-svc", ORCH_LOG_INFO);
    capture c;
    capture_start(&c);
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, "ORCH-114");
    orch_log_ctx_set_epoch(7);
    orch_log_ctx_set(ORCH_LOG_TARGET, "project-1");
    orch_log_ctx_set(ORCH_LOG_CALLER, "tcp://127.0.0.1:40000");
    orch_info("granted");
    orch_log_ctx_set(ORCH_LOG_TARGET, NULL);
    orch_log_ctx_set_epoch(0);
    orch_info("target and epoch removed");
    orch_log_ctx_clear();
    orch_info("cleared");
    char *out = capture_end(&c);
    cr_assert_eq(count_lines(out), 3, "%s", out);

    char *save = NULL;
    char *line = strtok_r(out, "\n", &save);
    json_t *o = json_loads(line, 0, NULL);
    cr_assert_not_null(o, "%s", line);
    cr_expect_str_eq(str_field(o, "msg"), "granted");
    cr_expect_str_eq(str_field(o, "work_item"), "ORCH-114", "%s", line);
    cr_expect_eq(json_integer_value(json_object_get(o, "epoch")), 7, "%s", line);
    cr_expect_str_eq(str_field(o, "target"), "project-1", "%s", line);
    cr_expect_str_eq(str_field(o, "caller"), "tcp://127.0.0.1:40000", "%s", line);
    json_decref(o);

    line = strtok_r(NULL, "\n", &save);
    o = json_loads(line, 0, NULL);
    cr_assert_not_null(o, "%s", line);
    cr_expect_str_eq(str_field(o, "work_item"), "ORCH-114", "%s", line);
    cr_expect_null(json_object_get(o, "epoch"), "%s", line);
    cr_expect_null(json_object_get(o, "target"), "%s", line);
    json_decref(o);

    line = strtok_r(NULL, "\n", &save);
    o = json_loads(line, 0, NULL);
    cr_assert_not_null(o, "%s", line);
    static const char *const keys[] = { "work_item", "epoch", "target", "caller" };
    for (size_t i = 0; i < 4; i++)
        cr_expect_null(json_object_get(o, keys[i]), "%s: %s", keys[i], line);
    json_decref(o);
    free(out);
}

static void *log_with_own_context(void *arg)
{
    (void)arg;
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, "ORCH-OTHER");
    orch_info("other");
    return NULL;
}

Test(log, context_belongs_to_its_thread)
{
    orch_log_init("test-svc", ORCH_LOG_INFO);
    capture c;
    capture_start(&c);
    orch_log_ctx_set(ORCH_LOG_WORK_ITEM, "ORCH-MAIN");
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, log_with_own_context, NULL), 0);
    pthread_join(t, NULL);
    orch_info("main");
    char *out = capture_end(&c);
    cr_expect(strstr(out, "\"work_item\":\"ORCH-OTHER\",\"msg\":\"other\""), "%s", out);
    cr_expect(strstr(out, "\"work_item\":\"ORCH-MAIN\",\"msg\":\"main\""), "%s", out);
    free(out);
}

/* Sets JOURNAL_STREAM to the dev:ino of the capture file (or of another
 * file) before orch_log_init, as systemd does for a unit's stderr. */
static void set_journal_stream(int fd)
{
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    char v[64];
    snprintf(v, sizeof v, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    cr_assert_eq(setenv("JOURNAL_STREAM", v, 1), 0);
}

Test(log, journal_stream_gets_priority_prefixes)
{
    capture c;
    capture_start(&c);
    set_journal_stream(STDERR_FILENO);
    orch_log_init("test-svc", ORCH_LOG_DEBUG);
    orch_debug("d");
    orch_info("i");
    orch_warn("w");
    orch_error("e");
    char *out = capture_end(&c);
    cr_assert_eq(count_lines(out), 4, "%s", out);
    static const char *const want[] = { "<7>{", "<6>{", "<4>{", "<3>{" };
    char *save = NULL;
    int i = 0;
    for (char *line = strtok_r(out, "\n", &save); line && i < 4;
         line = strtok_r(NULL, "\n", &save), i++) {
        cr_expect_eq(strncmp(line, want[i], 4), 0, "line %d: %s", i, line);
        json_t *o = json_loads(line + 3, 0, NULL);
        cr_expect_not_null(o, "not JSON after the prefix: %s", line);
        json_decref(o);
    }
    free(out);
}

Test(log, journal_stream_of_another_file_gives_plain_lines)
{
    FILE *other = tmpfile();
    cr_assert_not_null(other);
    set_journal_stream(fileno(other));
    capture c;
    capture_start(&c);
    orch_log_init("test-svc", ORCH_LOG_INFO);
    orch_error("e");
    char *out = capture_end(&c);
    json_t *o = parse_one_line(out);
    cr_expect_str_eq(str_field(o, "msg"), "e");
    json_decref(o);
    free(out);
    fclose(other);
}
