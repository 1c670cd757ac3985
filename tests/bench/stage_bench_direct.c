/*
 * stage_bench_direct.c - see stage_bench_direct.h.
 */
#include "stage_bench_direct.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lease_store.h"
#include "orch/clock.h"
#include "stage_engine.h"
#include "stage_pipeline.h"
#include "stage_store.h"
#include "wal_commits.h"

#define SBD_BUDGET_MS 10000

/* POSTs to the hook imitation on 127.0.0.1:`port` and reads its answer, as
 * the deploy hook call does; false when no 2xx came back. */
static bool post_hook(unsigned port, const char *item, char *err, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        snprintf(err, n, "cannot connect to the hook on port %u", port);
        if (fd >= 0)
            close(fd);
        return false;
    }
    char req[512], body[160];
    int bl = snprintf(body, sizeof body, "{\"work_item\":\"%.100s\"}", item);
    int rl = snprintf(req, sizeof req,
                      "POST /hooks/deploy HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                      "Content-Type: application/json\r\nIdempotency-Key: %.100s\r\n"
                      "Content-Length: %d\r\n\r\n%s",
                      item, bl, body);
    bool ok = write(fd, req, (size_t)rl) == rl;
    char buf[1024];
    ssize_t got = ok ? read(fd, buf, sizeof buf - 1) : -1;
    close(fd);
    ok = got > 12 && strncmp(buf + 8, " 2", 2) == 0;
    if (!ok)
        snprintf(err, n, "the hook did not answer 2xx");
    return ok;
}

/* The service's Acquire statement for `call` as owner `instance`. */
static orch_err acquire(orch_db_conn *c, uint64_t dl, const sbd_call *call, const char *tr,
                        bool *granted, uint64_t *epoch)
{
    static lease_owner me = {
        .host_id = "bench-host", .boot_id = "bench-boot", .pid = 1, .start_ticks = 1
    };
    lease_owner ow = me;
    snprintf(ow.instance_id, sizeof ow.instance_id, "direct.%.40s", call->work_item);
    lease_claim cl = { call->work_item, call->repo, tr, call->actor, &ow };
    lease_row row;
    bool found = false;
    return lease_store_acquire(c, dl, &cl, granted, epoch, &row, &found);
}

/* The effect: claim its intent under `epoch`, POST the hook; *id the
 * intent on success. */
static bool run_effect(orch_db_conn *c, uint64_t dl, const sbd_call *call, const stage_edge *e,
                       const stage_task *t, uint64_t epoch, int64_t *id, char *err, size_t n)
{
    char tr[64];
    stage_edge_transition(e, tr, sizeof tr);
    stage_intent_key k = { t->work_item, tr, stage_effect_name(e->effects[0]), t->cycle };
    stage_intent_state st;
    stage_intent row;
    orch_err rc = stage_store_intent_claim(c, dl, &k, epoch, NULL, &st, &row);
    if (rc || st != STAGE_INTENT_CLAIMED) {
        snprintf(err, n, "intent claim of %s: %s", t->work_item, rc ? orch_strerror(rc) : "lost");
        return false;
    }
    *id = row.id;
    return post_hook(call->hook_port, t->work_item, err, n);
}

/* The reads and gates of the locked part: SBD_LOST when the task left
 * e->from, SBD_ERROR (with `err`) when they fail or the gates refuse. */
static sbd_result read_and_gate(orch_db_conn *c, uint64_t dl, const char *item, const stage_edge *e,
                                stage_task *t, char *err, size_t n)
{
    stage_gate_input gi;
    orch_verdicts ev;
    char fails[4][STAGE_GATE_WHY_MAX];
    size_t nf = 0;
    orch_err rc = stage_store_get(c, dl, item, t);
    if (!rc && t->stage != e->from)
        return SBD_LOST;
    if (!rc)
        rc = stage_gate_input_read(c, dl, t, e, &ev, &gi);
    if (rc) {
        snprintf(err, n, "reading %s: %s", item, orch_strerror(rc));
        return SBD_ERROR;
    }
    if (stage_pipeline_run_gates(e, &gi, fails, 4, &nf) != STAGE_GATES_PASS) {
        snprintf(err, n, "the gates refused %s: %s", item, nf ? fails[0] : "");
        return SBD_ERROR;
    }
    return SBD_ADVANCED;
}

/* Under the grant `epoch`: the reads, gates, effect and stage write. */
static sbd_result locked(orch_db_conn *c, uint64_t dl, const sbd_call *call, const stage_edge *e,
                         uint64_t epoch, bool *released, char *err, size_t n)
{
    char tr[64];
    stage_task t, now;
    bool won = false, recorded = false;
    int64_t id = 0;
    stage_edge_transition(e, tr, sizeof tr);
    sbd_result res = read_and_gate(c, dl, call->work_item, e, &t, err, n);
    if (res != SBD_ADVANCED)
        return res;
    if (e->neffects && !run_effect(c, dl, call, e, &t, epoch, &id, err, n))
        return SBD_ERROR;
    stage_intent_outcome io = { id, epoch, "ok", "started", &t, NULL, NULL };
    stage_cas cas = { .work_item = call->work_item,
                      .expected = e->from,
                      .to = e->to,
                      .conditional = true,
                      .epoch = epoch,
                      .actor = call->actor,
                      .reason = "",
                      .released = released,
                      .transition = tr,
                      .outcome = e->neffects ? &io : NULL,
                      .outcome_recorded = &recorded };
    orch_err rc = stage_store_cas(c, dl, &cas, &won, &now);
    if (rc) {
        snprintf(err, n, "stage write of %s: %s", call->work_item, orch_strerror(rc));
        return SBD_ERROR;
    }
    return won ? SBD_ADVANCED : SBD_LOST;
}

sbd_result sbd_transition(orch_db_conn *c, const sbd_call *call, char *err, size_t n)
{
    uint64_t dl = orch_mono_ms() + SBD_BUDGET_MS, epoch = 0;
    const stage_edge *e = stage_pipeline_edge(stage_parse(call->from), stage_parse(call->to));
    char tr[64];
    stage_task t;
    bool granted = false, released = false;
    if (!e) {
        snprintf(err, n, "no edge %s->%s", call->from, call->to);
        return SBD_ERROR;
    }
    stage_edge_transition(e, tr, sizeof tr);
    orch_err rc = stage_store_get(c, dl, call->work_item, &t);
    if (!rc && t.stage != e->from)
        return SBD_STALE;
    if (!rc)
        rc = acquire(c, dl, call, tr, &granted, &epoch);
    if (!rc && !granted)
        return SBD_HELD;
    sbd_result res = rc ? SBD_ERROR : locked(c, dl, call, e, epoch, &released, err, n);
    if (!rc && !released)
        rc =
            lease_store_release(c, dl, call->work_item, epoch, "released", "holder", "", &released);
    if (rc) {
        snprintf(err, n, "%s: %s", call->work_item, orch_strerror(rc));
        return SBD_ERROR;
    }
    return res;
}

bool sbd_wal_mark(PGconn *admin, char *lsn, size_t n)
{
    PGresult *r = PQexec(admin, ORCH_WAL_LSN_SQL);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok)
        snprintf(lsn, n, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return ok;
}

long sbd_commits_since(PGconn *admin, const char *lsn)
{
    const char *p[] = { lsn, ORCH_WAL_STAGE_TABLES };
    PGresult *r = PQexecParams(admin, ORCH_WAL_COMMITS_SQL, 2, NULL, p, NULL, NULL, 0);
    long v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                 ? strtol(PQgetvalue(r, 0, 0), NULL, 10)
                 : -1;
    PQclear(r);
    return v;
}
