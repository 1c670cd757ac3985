/*
 * imitation.c - orch-imitation: a small recording HTTP server that stands
 * in for an outside service (Plane, Telegram) in tests, on loopback only.
 *
 *   orch-imitation --personality plane|telegram [--port N] [--port-file F]
 *                  [--log F]
 *
 * Every request except those to /__imitation/ is written to the log as one
 * JSON line: time_ms, method, path, query, headers (names lower-cased),
 * body. A test steers the next answers with
 *   POST /__imitation/script {"status":N,"times":K,"delay_ms":D,
 *                             "retry_after":R,"location":"..."}
 * (each field optional; the next K requests are delayed D ms and, if N is
 * given, answered N in the personality's own error shape) and
 *   POST /__imitation/reset.
 * A personality is one row of `personalities` below: adding one (a forge, a
 * deploy hook) is one answer function and one row. One thread, one request
 * per connection (Connection: close); bounded header and body sizes.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http_request.h"

#define MAX_BODY (4 * 1024 * 1024)

typedef hreq request;

typedef struct script {
    int status; /* 0 = the personality's normal answer */
    int times;
    int delay_ms;
    int retry_after;
    char location[512];
} script;

typedef struct response {
    int status;
    char extra_headers[1024];
    char *body; /* malloc'ed */
} response;

typedef void (*answer_fn)(const request *rq, const script *sc, response *rs, unsigned long seq);

static void set_json(response *rs, int status, json_t *o)
{
    rs->status = status;
    rs->body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ---- personalities -------------------------------------------------------- */

/* Plane REST API v1: issues, comments, states; X-API-Key required. */
static void plane_answer(const request *rq, const script *sc, response *rs, unsigned long seq)
{
    if (sc) {
        set_json(rs, sc->status, json_pack("{s:s}", "error", "scripted failure"));
        return;
    }
    const char *key = hreq_header(rq, "X-API-Key");
    if (!key || !key[0]) {
        set_json(rs, 401,
                 json_pack("{s:s}", "error", "Authentication credentials were not provided."));
        return;
    }
    if (strncmp(rq->path, "/api/v1/workspaces/", 19) != 0) {
        set_json(rs, 404, json_pack("{s:s}", "error", "not found"));
        return;
    }
    if (strcmp(rq->method, "GET") == 0 && ends_with(rq->path, "/states/")) {
        set_json(rs, 200,
                 json_pack("{s:[{s:s,s:s},{s:s,s:s},{s:s,s:s}]}", "results", "id",
                           "11111111-0000-4000-8000-000000000001", "name", "Backlog", "id",
                           "11111111-0000-4000-8000-000000000002", "name", "In Progress", "id",
                           "11111111-0000-4000-8000-000000000003", "name", "Done"));
        return;
    }
    if (strcmp(rq->method, "POST") == 0 && ends_with(rq->path, "/comments/")) {
        char id[64];
        snprintf(id, sizeof id, "comment-%lu", seq);
        json_t *in = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, NULL);
        const char *html = json_string_value(json_object_get(in, "comment_html"));
        set_json(rs, 201, json_pack("{s:s, s:s}", "id", id, "comment_html", html ? html : ""));
        json_decref(in);
        return;
    }
    if (strcmp(rq->method, "PATCH") == 0 && strstr(rq->path, "/issues/")) {
        json_t *in = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, NULL);
        const char *st = json_string_value(json_object_get(in, "state"));
        set_json(rs, st ? 200 : 400,
                 st ? json_pack("{s:s, s:s}", "id", "issue", "state", st)
                    : json_pack("{s:s}", "error", "state is required"));
        json_decref(in);
        return;
    }
    set_json(rs, 404, json_pack("{s:s}", "error", "not found"));
}

/* Telegram Bot API: POST /bot<token>/sendMessage. */
static void telegram_answer(const request *rq, const script *sc, response *rs, unsigned long seq)
{
    if (sc && sc->status == 429) {
        char d[96];
        snprintf(d, sizeof d, "Too Many Requests: retry after %d", sc->retry_after);
        snprintf(rs->extra_headers, sizeof rs->extra_headers, "Retry-After: %d\r\n",
                 sc->retry_after);
        set_json(rs, 429,
                 json_pack("{s:b, s:i, s:s, s:{s:i}}", "ok", 0, "error_code", 429, "description", d,
                           "parameters", "retry_after", sc->retry_after));
        return;
    }
    if (sc) {
        set_json(rs, sc->status,
                 json_pack("{s:b, s:i, s:s}", "ok", 0, "error_code", sc->status, "description",
                           "scripted failure"));
        return;
    }
    if (strncmp(rq->path, "/bot", 4) != 0 || !ends_with(rq->path, "/sendMessage")) {
        set_json(
            rs, 404,
            json_pack("{s:b, s:i, s:s}", "ok", 0, "error_code", 404, "description", "Not Found"));
        return;
    }
    json_t *in = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, NULL);
    json_t *chat = json_object_get(in, "chat_id");
    const char *text = json_string_value(json_object_get(in, "text"));
    if (!chat || !text) {
        set_json(rs, 400,
                 json_pack("{s:b, s:i, s:s}", "ok", 0, "error_code", 400, "description",
                           "Bad Request: chat_id and text are required"));
    } else {
        set_json(rs, 200,
                 json_pack("{s:b, s:{s:I, s:O, s:s}}", "ok", 1, "result", "message_id",
                           (json_int_t)seq, "chat", chat, "text", text));
    }
    json_decref(in);
}

static const struct {
    const char *name;
    answer_fn answer;
} personalities[] = {
    { "plane", plane_answer },
    { "telegram", telegram_answer },
};

/* ---- HTTP ----------------------------------------------------------------- */

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

static void send_response(int fd, const response *rs)
{
    char head[2048];
    size_t bl = rs->body ? strlen(rs->body) : 0;
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n",
                     rs->status, reason(rs->status), bl, rs->extra_headers);
    if (n > 0 && (size_t)n < sizeof head && hreq_write_all(fd, head, (size_t)n) && bl)
        hreq_write_all(fd, rs->body, bl);
}

static void log_request(FILE *log, const request *rq)
{
    if (!log)
        return;
    json_t *h = json_object();
    for (int i = 0; i < rq->nh; i++) {
        char name[128];
        size_t k = 0;
        for (; rq->hname[i][k] && k < sizeof name - 1; k++)
            name[k] = (char)(rq->hname[i][k] >= 'A' && rq->hname[i][k] <= 'Z'
                                 ? rq->hname[i][k] - 'A' + 'a'
                                 : rq->hname[i][k]);
        name[k] = '\0';
        json_object_set_new(h, name, json_string(rq->hvalue[i]));
    }
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:o, s:s%}", "time_ms", (json_int_t)now_ms(),
                          "method", rq->method, "path", rq->path, "query", rq->query, "headers", h,
                          "body", rq->body ? rq->body : "", rq->body_len);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (line) {
        fprintf(log, "%s\n", line);
        fflush(log);
    }
    free(line);
    json_decref(o);
}

static void control(const request *rq, script *sc, response *rs)
{
    if (strcmp(rq->path, "/__imitation/reset") == 0) {
        memset(sc, 0, sizeof *sc);
    } else if (strcmp(rq->path, "/__imitation/script") == 0) {
        json_t *in = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, NULL);
        if (!json_is_object(in)) {
            set_json(rs, 400, json_pack("{s:s}", "error", "a JSON object is required"));
            return;
        }
        memset(sc, 0, sizeof *sc);
        sc->status = (int)json_integer_value(json_object_get(in, "status"));
        sc->times = json_object_get(in, "times")
                        ? (int)json_integer_value(json_object_get(in, "times"))
                        : 1;
        sc->delay_ms = (int)json_integer_value(json_object_get(in, "delay_ms"));
        sc->retry_after = (int)json_integer_value(json_object_get(in, "retry_after"));
        const char *loc = json_string_value(json_object_get(in, "location"));
        snprintf(sc->location, sizeof sc->location, "%s", loc ? loc : "");
        json_decref(in);
    } else {
        set_json(rs, 404, json_pack("{s:s}", "error", "unknown control"));
        return;
    }
    set_json(rs, 200, json_pack("{s:b}", "ok", 1));
}

static void serve_one(int fd, answer_fn answer, script *sc, FILE *log, unsigned long *seq)
{
    request rq;
    response rs = { .status = 400 };
    struct timeval tv = { 5, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (!hreq_read(fd, MAX_BODY, &rq)) {
        rs.body = strdup("{\"error\":\"malformed request\"}");
    } else if (strncmp(rq.path, "/__imitation/", 13) == 0) {
        control(&rq, sc, &rs);
    } else {
        log_request(log, &rq);
        ++*seq;
        bool scripted = sc->times > 0;
        if (scripted) {
            sc->times--;
            if (sc->delay_ms > 0) {
                struct timespec ts = { sc->delay_ms / 1000,
                                       (long)(sc->delay_ms % 1000) * 1000000L };
                nanosleep(&ts, NULL);
            }
        }
        if (scripted && sc->location[0]) {
            rs.status = sc->status ? sc->status : 302;
            snprintf(rs.extra_headers, sizeof rs.extra_headers, "Location: %s\r\n", sc->location);
            rs.body = strdup("{}");
        } else {
            answer(&rq, scripted && sc->status ? sc : NULL, &rs, *seq);
        }
    }
    send_response(fd, &rs);
    free(rs.body);
    hreq_free(&rq);
}

static int listen_loopback(int port, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        perror("orch-imitation: listen");
        return -1;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

/* Writes the bound port to port_file (atomically, by rename) or, without
 * one, to stdout; false (reported) on failure. */
static bool announce_port(const char *port_file, int bound)
{
    if (!port_file) {
        printf("%d\n", bound);
        fflush(stdout);
        return true;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
        perror("orch-imitation: port file");
        return false;
    }
    return true;
}

/* Reads the options; *answer is the personality's answer function (NULL
 * when none is named or known). False on an unknown option. */
static bool parse_args(int argc, char **argv, answer_fn *answer, int *port, const char **port_file,
                       const char **log_path)
{
    static const struct option opts[] = {
        { "personality", required_argument, NULL, 'P' },
        { "port", required_argument, NULL, 'p' },
        { "port-file", required_argument, NULL, 'f' },
        { "log", required_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 },
    };
    const char *pers = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'P': pers = optarg; break;
        case 'p': *port = (int)strtol(optarg, NULL, 10); break;
        case 'f': *port_file = optarg; break;
        case 'l': *log_path = optarg; break;
        default: return false;
        }
    }
    *answer = NULL;
    for (size_t i = 0; pers && i < sizeof personalities / sizeof personalities[0]; i++)
        if (strcmp(pers, personalities[i].name) == 0)
            *answer = personalities[i].answer;
    return true;
}

int main(int argc, char **argv)
{
    const char *port_file = NULL, *log_path = NULL;
    int port = 0;
    answer_fn answer = NULL;
    if (!parse_args(argc, argv, &answer, &port, &port_file, &log_path))
        return 2;
    if (!answer || port < 0 || port > 65535) {
        fprintf(stderr, "usage: orch-imitation --personality plane|telegram [--port N] "
                        "[--port-file F] [--log F]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int bound = 0, lfd = listen_loopback(port, &bound);
    if (lfd < 0)
        return 1;
    FILE *log = log_path ? fopen(log_path, "a") : NULL;
    if (log_path && !log) {
        perror("orch-imitation: log");
        return 1;
    }
    if (!announce_port(port_file, bound))
        return 1;
    script sc = { 0 };
    unsigned long seq = 0;
    while (!stopping) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue; /* EINTR on a stop signal: the loop condition ends it */
        serve_one(fd, answer, &sc, log, &seq);
        close(fd);
    }
    if (log)
        fclose(log);
    close(lfd);
    return 0;
}
