/*
 * launcher_logic.c - pure rules of launcher-service (see launcher_logic.h).
 */
#include "launcher_logic.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *const launcher_roles[LAUNCHER_NROLES] = {
    "analyst", "architect", "developer", "reviewer", "tester", "deployer",
};

/* The route table: the one place that says which stage a finished job moves
 * its item to. Listed in docs/architecture/launcher.md and, as LLM call
 * sites, in docs/architecture/llm-call-sites.md (a unit test holds the two
 * in step). The first row of a role is its default stage. */
const launcher_route launcher_routes[] = {
    { "analyst", "analysis", "architecture", "monitor", NULL, { NULL }, 'P', false },
    { "architect", "architecture", "development", "monitor", NULL, { NULL }, 'P', false },
    { "developer", "development", "review", "monitor", NULL, { NULL }, 'P', false },
    { "reviewer",
      "review",
      "testing",
      "monitor",
      "review_verdict",
      { "APPROVE", NULL },
      'C',
      false },
    { "tester", "testing", "staging", "monitor", "test_status", { "PASS", NULL }, 'C', true },
    { "deployer",
      "staging",
      "deploy",
      "monitor",
      "staging_status",
      { "SUCCESS", NULL },
      'C',
      true },
    { "deployer",
      "deploy",
      "done",
      "deploy-finalizer",
      "deploy_status",
      { "SUCCESS", NULL },
      'C',
      true },
};
const size_t launcher_nroutes = sizeof launcher_routes / sizeof launcher_routes[0];

int launcher_role_index(const char *role)
{
    for (int i = 0; role && i < LAUNCHER_NROLES; i++)
        if (strcmp(launcher_roles[i], role) == 0)
            return i;
    return -1;
}

const char *launcher_default_stage(const char *role)
{
    for (size_t i = 0; role && i < launcher_nroutes; i++)
        if (strcmp(launcher_routes[i].role, role) == 0)
            return launcher_routes[i].from;
    return NULL;
}

const launcher_route *launcher_route_find(const char *role, const char *stage)
{
    if (!stage || !stage[0])
        stage = launcher_default_stage(role);
    for (size_t i = 0; stage && i < launcher_nroutes; i++)
        if (strcmp(launcher_routes[i].role, role) == 0 &&
            strcmp(launcher_routes[i].from, stage) == 0)
            return &launcher_routes[i];
    return NULL;
}

const char *launcher_route_class(const launcher_route *r)
{
    if (r->axis != 'C')
        return "not-control-path";
    return r->mechanical ? "avoidable" : "keep";
}

launcher_advance launcher_decide(const launcher_route *r, bool succeeded, const orch_verdicts *vs,
                                 char *why, size_t n)
{
    if (!succeeded) {
        snprintf(why, n, "the job did not succeed");
        return LAUNCHER_NOT_ADVANCE;
    }
    if (!r->key) {
        snprintf(why, n, "the job succeeded");
        return LAUNCHER_ADVANCE;
    }
    const char *v = orch_verdicts_get(vs, r->key);
    if (!v) {
        snprintf(why, n, "no %s verdict in the output", r->key);
        return LAUNCHER_NOT_ADVANCE;
    }
    for (size_t i = 0; i < 3 && r->pass[i]; i++) {
        if (strcasecmp(v, r->pass[i]) == 0) {
            snprintf(why, n, "%s: %s", r->key, v);
            return LAUNCHER_ADVANCE;
        }
    }
    snprintf(why, n, "%s is %s", r->key, v);
    return LAUNCHER_NOT_ADVANCE;
}

bool launcher_valid_text(const char *s, bool may_be_empty)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0)
        return may_be_empty;
    if (len > LAUNCHER_MAX_FIELD)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

bool launcher_valid_spawn(const launcher_spawn_in *in, int64_t max_timeout_s, char *why, size_t n)
{
    if (launcher_role_index(in->role) < 0) {
        snprintf(why, n,
                 "role '%.40s' is not one of analyst, architect, developer, reviewer, "
                 "tester, deployer",
                 in->role ? in->role : "");
        return false;
    }
    if (!launcher_valid_text(in->work_item, false)) {
        snprintf(why, n, "work_item must be 1 to %d bytes without control characters",
                 LAUNCHER_MAX_FIELD);
        return false;
    }
    if (!launcher_valid_text(in->stage, true)) {
        snprintf(why, n, "stage is too long or has control characters");
        return false;
    }
    if (!launcher_route_find(in->role, in->stage)) {
        snprintf(why, n, "a %s job cannot run in stage '%.40s'", in->role, in->stage);
        return false;
    }
    if (in->prompt_len == 0) {
        snprintf(why, n, "prompt is empty");
        return false;
    }
    if (in->prompt_len > LAUNCHER_MAX_PROMPT) {
        snprintf(why, n, "prompt is %zu bytes, over %d", in->prompt_len, LAUNCHER_MAX_PROMPT);
        return false;
    }
    if (!in->workdir || in->workdir[0] != '/' || strlen(in->workdir) > LAUNCHER_MAX_WORKDIR) {
        snprintf(why, n, "workdir must be an absolute path of at most %d bytes",
                 LAUNCHER_MAX_WORKDIR);
        return false;
    }
    if (!in->workdir_is_dir) {
        snprintf(why, n, "workdir %.200s is not an existing directory", in->workdir);
        return false;
    }
    if (in->timeout_s == 0 || (int64_t)in->timeout_s > max_timeout_s) {
        snprintf(why, n, "timeout_s must be 1 to %lld, got %u", (long long)max_timeout_s,
                 in->timeout_s);
        return false;
    }
    return true;
}

static const char *var_value(const launcher_vars *v, const char *name, size_t len)
{
    static const char *const names[] = { "role", "work_item", "job_id", "workdir", "stage" };
    const char *vals[] = { v->role, v->work_item, v->job_id, v->workdir, v->stage };
    for (size_t i = 0; i < 5; i++)
        if (strlen(names[i]) == len && strncmp(names[i], name, len) == 0)
            return vals[i] ? vals[i] : "";
    return NULL;
}

int launcher_argv_build(const char *tmpl, const launcher_vars *v, char *buf, size_t n, char **argv)
{
    size_t used = 0;
    int argc = 0;
    const char *p = tmpl ? tmpl : "";
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        if (argc == LAUNCHER_MAX_ARGS)
            return -1;
        argv[argc++] = buf + used;
        while (*p && *p != ' ' && *p != '\t') {
            const char *close = *p == '{' ? strchr(p, '}') : NULL;
            const char *val = close ? var_value(v, p + 1, (size_t)(close - p - 1)) : NULL;
            size_t len = val ? strlen(val) : 1;
            if (used + len + 1 >= n)
                return -1;
            memcpy(buf + used, val ? val : p, len);
            used += len;
            p = val ? close + 1 : p + 1;
        }
        buf[used++] = '\0';
    }
    argv[argc] = NULL;
    return argc;
}

static bool json_u64(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static void scan_json(json_t *o, orch_verdicts *vs, launcher_usage *u)
{
    json_t *usage = json_object_get(o, "usage");
    uint64_t in, out;
    if (json_is_object(usage) && json_u64(usage, "input_tokens", &in) &&
        json_u64(usage, "output_tokens", &out)) {
        u->usage_known = true;
        u->input_tokens = in;
        u->output_tokens = out;
    }
    json_t *cost = json_object_get(o, "total_cost_usd");
    if (!cost)
        cost = json_object_get(o, "cost_usd");
    if (json_is_number(cost) && json_number_value(cost) >= 0) {
        u->cost_known = true;
        u->cost_usd = json_number_value(cost);
    }
    json_t *model = json_object_get(o, "model");
    if (json_is_string(model))
        snprintf(u->model, sizeof u->model, "%s", json_string_value(model));
    json_t *result = json_object_get(o, "result");
    if (json_is_string(result))
        orch_verdicts_parse(vs, json_string_value(result), json_string_length(result));
}

void launcher_output_scan(const char *text, size_t len, orch_verdicts *vs, launcher_usage *u)
{
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t b = pos;
        while (b < end && (text[b] == ' ' || text[b] == '\t'))
            b++;
        json_t *o = NULL;
        if (b < end && text[b] == '{')
            o = json_loadb(text + b, end - b, JSON_DISABLE_EOF_CHECK, NULL);
        if (json_is_object(o)) {
            scan_json(o, vs, u);
        } else {
            orch_verdict v;
            if (orch_verdict_parse_line(text + pos, end - pos, &v))
                (void)orch_verdicts_set(vs, v.key, v.value);
        }
        json_decref(o);
        pos = end + 1;
    }
}

launcher_reap launcher_reap_decide(int64_t age_s, int64_t ceiling_s, bool process_alive,
                                   launcher_lease_owner lease)
{
    if (age_s > ceiling_s)
        return LAUNCHER_REAP_TIER3;
    if (process_alive)
        return LAUNCHER_REAP_NONE;
    if (lease == LAUNCHER_LEASE_ALIVE || lease == LAUNCHER_LEASE_UNKNOWN)
        return LAUNCHER_REAP_DEFER;
    return LAUNCHER_REAP_TIER2;
}
