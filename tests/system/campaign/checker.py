#!/usr/bin/env python3
"""History checker of the fault campaign (docs/testing/campaign.md).

Reads one campaign run's folder: the database history dumped by campaign.sh
(db-*.tsv, CSV with a header), the sink log (sink.log), the actors' log
(actors.log), the fault log (faults.log), the lease-services' logs
(lease-all.log) and, when there is one, the log of actors that take leases
directly (grants.log). Prints a table of operations, faults, anomalies by
class and reclaim latencies; exits 1 when any anomaly class is not zero.

Usage: checker.py --dir DIR --ceiling-s N --reaper-interval-ms N
                  [--sink-mode fenced|unfenced] [--seed N] [--slack-ms N]
                  [--title TEXT]
"""

import argparse
import collections
import csv
import os
import re
import sys

FORWARD = ["backlog", "analysis", "architecture", "development", "review",
           "testing", "staging", "deploy", "done"]
# The pipeline table (docs/architecture/pipeline.md): forward, rollback, cancel.
EDGES = set(zip(FORWARD, FORWARD[1:]))
EDGES |= {(s, "development") for s in ("review", "testing", "staging", "deploy")}
EDGES |= {(s, "cancelled") for s in FORWARD if s != "done"}

ANOMALY_CLASSES = [
    ("duplicate_effect", "effect executed more than once per (item, transition, cycle)"),
    ("effect_without_intent", "effect executed at the sink without an intent row"),
    ("illegal_path", "stage path not along the pipeline table"),
    ("stale_epoch_accepted", "call accepted after a higher epoch reached the sink"),
    ("left_after_done", "item moved after done, or not in done after reaching it"),
    ("acked_not_recorded", "ADVANCED answered but no history row with that epoch"),
    ("orphan_not_reclaimed", "killed owner's lease not released within ceiling + interval"),
    ("lease_held_too_long", "a grant held past ceiling + reaper interval"),
    ("lease_never_released", "a lease still held after the drain"),
    ("alert_mismatch", "alerts emitted != forced + stale + ceiling reclaims"),
    ("item_not_done", "item not in done at the end of the run"),
    ("live_owner_robbed", "a lease taken over from an owner no fault had killed"),
    ("duplicate_host_accepted", "a second lease-service with a live host id kept running"),
    ("verdict_of_other_stage", "review->testing passed on a verdict not sent for it"),
    ("webhook_lost", "a webhook answered 2xx but deferred (dropped)"),
    ("acked_grant_lost", "GRANTED answered but no granted event with that epoch"),
    ("epoch_granted_twice", "one epoch of an item answered GRANTED to two acquirers"),
]

# "owner h2 pid 1234 (monitor, epoch 7): why" (lease-service's reclaim detail)
OWNER_RE = re.compile(r"owner (\S+) pid (\d+) ")
KILLED_RE = re.compile(r"pid (\d+)")


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_tsv(path, names):
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(names):
                continue
            rows.append(dict(zip(names, parts)))
    return rows


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ceiling-s", type=int, required=True)
    ap.add_argument("--reaper-interval-ms", type=int, required=True)
    ap.add_argument("--sink-mode", default="fenced")
    ap.add_argument("--seed", default="?")
    ap.add_argument("--slack-ms", type=int, default=3000,
                    help="allowance for process restarts and database restarts")
    ap.add_argument("--title", default="campaign history check")
    a = ap.parse_args()
    d = a.dir
    bound_ms = a.ceiling_s * 1000 + a.reaper_interval_ms + a.slack_ms

    tasks = read_csv(os.path.join(d, "db-tasks.tsv"))
    history = read_csv(os.path.join(d, "db-stage_history.tsv"))
    intents = read_csv(os.path.join(d, "db-side_effects.tsv"))
    events = read_csv(os.path.join(d, "db-lease_events.tsv"))
    leases = read_csv(os.path.join(d, "db-transition_lease.tsv"))
    deferrals = read_csv(os.path.join(d, "db-deferrals.tsv"))
    sink = read_tsv(os.path.join(d, "sink.log"),
                    ["arrived", "handled", "peer", "kind", "item", "transition", "effect",
                     "cycle", "epoch", "key", "result", "status", "executed"])
    actors = read_tsv(os.path.join(d, "actors.log"),
                      ["t0", "t1", "host", "actor", "item", "from", "to", "rc", "outcome",
                       "epoch"])
    faults = read_tsv(os.path.join(d, "faults.log"),
                      ["t", "kind", "host", "item", "epoch", "detail"])
    hooks = read_tsv(os.path.join(d, "webhooks.log"),
                     ["t", "host", "item", "epoch", "code", "body"])
    grants_acked = read_tsv(os.path.join(d, "grants.log"),
                            ["t0", "t1", "host", "actor", "item", "outcome", "epoch"])
    if not tasks:
        print("checker: no tasks in the history (db-tasks.tsv): nothing to check")
        return 1
    items = {t["work_item"] for t in tasks}

    anomalies = collections.Counter()
    examples = collections.defaultdict(list)

    def flag(cls, text):
        anomalies[cls] += 1
        if len(examples[cls]) < 5:
            examples[cls].append(text)

    # 1. Each effect at most once per (item, transition, effect, cycle).
    executed = collections.Counter()
    intent_keys = {(r["work_item"], r["transition"], r["effect"], r["cycle"]) for r in intents}
    effect_kinds = {"merge", "image", "deploy"}
    calls = [s for s in sink if s["kind"] in effect_kinds]
    for s in calls:
        if s["executed"] != "1":
            continue
        k = (s["item"], s["transition"], s["effect"], s["cycle"])
        executed[k] += 1
        if k not in intent_keys:
            flag("effect_without_intent", "%s executed at %s with no intent row" % ("/".join(k), s["handled"]))
    for k, n in executed.items():
        if n > 1:
            flag("duplicate_effect", "%s executed %d times" % ("/".join(k), n))
    dup_executions = sum(n - 1 for n in executed.values() if n > 1)

    # 3. No accepted call with an epoch below one the sink had already seen
    # (log order is the sink's handling order), and, for information, calls
    # accepted while the database already held a newer grant.
    max_seen = {}
    grants = collections.defaultdict(list)
    for e in events:
        if e["kind"] == "granted":
            grants[e["work_item"]].append((int(e["at_ms"]), int(e["epoch"] or 0)))
    newer_grant_accepted = 0
    stale_refused = 0
    for s in calls:
        if s["kind"] == "merge":
            continue
        ep = int(s["epoch"] or 0)
        if s["result"] == "stale":
            stale_refused += 1
            continue
        if not s["status"].startswith("2"):
            continue
        m = max_seen.get(s["item"], 0)
        if ep < m:
            flag("stale_epoch_accepted", "%s epoch %d accepted after epoch %d" % (s["key"], ep, m))
        max_seen[s["item"]] = max(m, ep)
        h = int(s["handled"])
        if s["executed"] == "1" and any(g_ep > ep and g_at < h for g_at, g_ep in grants[s["item"]]):
            newer_grant_accepted += 1

    # 2. Stage paths legal; 4. nothing after done.
    by_item = collections.defaultdict(list)
    for h in history:
        by_item[h["work_item"]].append(h)
    final = {t["work_item"]: t["stage"] for t in tasks}
    transitions = 0
    rollbacks = 0
    for item, rows in by_item.items():
        rows.sort(key=lambda r: int(r["id"]))
        cur = "backlog"
        seen_done = False
        for r in rows:
            transitions += 1
            if r["to_stage"] == "development" and r["from_stage"] != "architecture":
                rollbacks += 1
            if r["from_stage"] != cur or (r["from_stage"], r["to_stage"]) not in EDGES:
                flag("illegal_path", "%s: %s -> %s while in %s" % (item, r["from_stage"], r["to_stage"], cur))
            if seen_done:
                flag("left_after_done", "%s: %s -> %s after done" % (item, r["from_stage"], r["to_stage"]))
            cur = r["to_stage"]
            seen_done = seen_done or cur == "done"
        if seen_done and final.get(item) != "done":
            flag("left_after_done", "%s: reached done, ends in %s" % (item, final.get(item)))
    for item in sorted(items):
        if final.get(item) != "done":
            flag("item_not_done", "%s ends in %s" % (item, final.get(item)))

    # Every ADVANCED answer is backed by a history row with its epoch.
    recorded = {(h["work_item"], h["from_stage"], h["to_stage"], h["lease_epoch"]) for h in history}
    ops = collections.Counter()
    for r in actors:
        o, rc = r["outcome"], r["rc"]
        if o in ("ADVANCED", "ROLLED_BACK"):
            ops["ok"] += 1
        elif o == "DEFERRED":
            ops["deferred"] += 1
        elif o in ("ABORTED", "GATE_FAILED", "EFFECT_FAILED") or rc in ("73", "74"):
            ops["aborted"] += 1
        else:
            ops["unknown"] += 1
        if o == "ADVANCED" and (r["item"], r["from"], r["to"], r["epoch"]) not in recorded:
            flag("acked_not_recorded", "%s %s->%s epoch %s by %s/%s" % (r["item"], r["from"], r["to"], r["epoch"], r["host"], r["actor"]))

    # 5. Leases: every grant released within ceiling + one reaper interval
    # (+ slack); a killed owner's lease released within that bound of the kill.
    ends = {}
    end_kinds = ("released", "reclaimed-stale", "ceiling-released", "force-released")
    for e in events:
        if e["kind"] in end_kinds:
            key = (e["work_item"], e["epoch"])
            if key not in ends:
                ends[key] = (int(e["at_ms"]), e["kind"])
    rel_kinds = collections.Counter(e["kind"] for e in events)
    for e in events:
        if e["kind"] != "granted":
            continue
        key = (e["work_item"], e["epoch"])
        if key not in ends:
            continue
        held = ends[key][0] - int(e["at_ms"])
        if held > bound_ms:
            flag("lease_held_too_long", "%s epoch %s held %d ms (%s)" % (key[0], key[1], held, ends[key][1]))
    for l in leases:
        if l["held"] in ("t", "true"):
            flag("lease_never_released", "%s epoch %s (owner %s)" % (l["work_item"], l["epoch"], l["owner_host"]))
    orphan_latency = []
    for f in faults:
        if f["kind"] != "kill_owner":
            continue
        key = (f["item"], f["epoch"])
        if key not in ends:
            flag("orphan_not_reclaimed", "%s epoch %s: no release after the kill" % key)
            continue
        lat = ends[key][0] - int(f["t"])
        if ends[key][1] != "released" or lat > 0:
            orphan_latency.append(max(lat, 0))
        if lat > bound_ms:
            flag("orphan_not_reclaimed", "%s epoch %s released %d ms after the kill" % (key[0], key[1], lat))
    ceiling_over = []
    grant_at = {(e["work_item"], e["epoch"]): int(e["at_ms"]) for e in events if e["kind"] == "granted"}
    for key, (at, kind) in ends.items():
        if kind == "ceiling-released" and key in grant_at:
            ceiling_over.append(at - grant_at[key] - a.ceiling_s * 1000)

    # 6. Alerts emitted = forced + stale + ceiling releases.
    alerts = collections.Counter()
    alert_re = re.compile(r"ALERT (lease\.[a-z-]+) ")
    path = os.path.join(d, "lease-all.log")
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = alert_re.search(line)
                if m:
                    alerts[m.group(1)] += 1
    for kind in ("reclaimed-stale", "ceiling-released", "force-released"):
        if alerts["lease." + kind] != rel_kinds[kind]:
            flag("alert_mismatch", "lease.%s: %d alerts, %d events" % (kind, alerts["lease." + kind], rel_kinds[kind]))

    # 7. Liveness: a lease is taken over (reclaimed-stale) only from an owner
    # a fault had killed before (SIGKILL, a reboot); a stopped, slow or
    # merely unreachable owner is alive, and a host that cannot read /proc,
    # probes itself through a wildcard address or shares its host id with
    # another machine must not judge it dead.
    killed = collections.defaultdict(list)  # (host, pid) -> kill times
    for f in faults:
        if f["kind"] in ("kill_owner", "kill_services", "reboot_new_boot_id", "kill_holder"):
            for pid in KILLED_RE.findall(f["detail"]):
                killed[(f["host"], pid)].append(int(f["t"]))
    for e in events:
        if e["kind"] != "reclaimed-stale":
            continue
        m = OWNER_RE.search(e.get("detail") or "")
        if not m:
            continue
        at = int(e["at_ms"])
        if not any(t <= at for t in killed[(m.group(1), m.group(2))]):
            flag("live_owner_robbed", "%s epoch %s: owner %s pid %s taken over at %d (%s)" % (
                e["work_item"], e["epoch"], m.group(1), m.group(2), at, e.get("detail", "")[:120]))
    for f in faults:
        if f["kind"] == "dup_host_id" and f["detail"].startswith("accepted"):
            flag("duplicate_host_accepted", "%s at %s: %s" % (f["host"], f["t"], f["detail"]))

    # 8. A gate reads only verdicts sent for its edge: a review->testing move
    # needs a call (an actor's or a webhook's) for review->testing since the
    # item last entered review. A call answered DEFERRED counts too: its
    # request may have run once before (an attempt whose stage-service was
    # killed after recording the verdicts under the lease), and the resend
    # of the same request is what was answered DEFERRED.
    calls_at = collections.defaultdict(list)
    for r in actors:
        calls_at[(r["item"], r["from"], r["to"])].append(int(r["t0"]))
    for w in hooks:
        calls_at[(w["item"], "review", "testing")].append(int(w["t"]))
    for item, rows in by_item.items():
        entered = None
        for r in rows:
            at = int(r["at_ms"])
            if r["to_stage"] == "review":
                entered = at
            if (r["from_stage"], r["to_stage"]) != ("review", "testing") or entered is None:
                continue
            if not any(entered - 1000 <= t <= at for t in calls_at[(item, "review", "testing")]):
                flag("verdict_of_other_stage", "%s: review->testing by %s at %d with no review"
                     " call since it entered review at %d" % (item, r["actor"], at, entered))

    for f in faults:
        if f["kind"] == "wrong_verdicts" and f["detail"].startswith("moved"):
            flag("verdict_of_other_stage", "%s: %s" % (f["item"], f["detail"]))

    # 9. A webhook is never answered 2xx and dropped.
    for w in hooks:
        if w["code"].startswith("2") and '"result":"deferred"' in w["body"]:
            flag("webhook_lost", "%s: HTTP %s %s" % (w["item"], w["code"], w["body"][:100]))

    # 10. Every GRANTED answer is a granted event of that epoch, and no
    # epoch of an item is answered GRANTED twice (a grant lost with a
    # database, then given again: two owners with one fencing epoch).
    granted_at = {(e["work_item"], e["epoch"]) for e in events if e["kind"] == "granted"}
    answered = collections.defaultdict(list)
    for g in grants_acked:
        if g["outcome"] != "GRANTED" or g["epoch"] in ("", "0"):
            continue  # epoch 0: an inert grant (lease off or out of scope), never written
        key = (g["item"], g["epoch"])
        answered[key].append("%s/%s at %s" % (g["host"], g["actor"], g["t1"]))
        if key not in granted_at:
            flag("acked_grant_lost", "%s epoch %s granted to %s/%s at %s" % (
                key[0], key[1], g["host"], g["actor"], g["t1"]))
    for key, who in sorted(answered.items()):
        if len(who) > 1:
            flag("epoch_granted_twice", "%s epoch %s granted to %s" % (key[0], key[1], ", ".join(who)))

    # ---- the table ----
    done = sum(1 for t in tasks if t["stage"] == "done")
    print("==== %s (seed %s, sink %s) ====" % (a.title, a.seed, a.sink_mode))
    print("items done                 %d of %d" % (done, len(tasks)))
    print("stage transitions          %d (rollbacks %d)" % (transitions, rollbacks))
    print("operations (actors)        %d" % len(actors))
    for k in ("ok", "deferred", "aborted", "unknown"):
        print("  %-24s %d" % (k, ops[k]))
    if grants_acked:
        go = collections.Counter(g["outcome"] for g in grants_acked)
        print("lease acquires (actors)    %d (%s)" % (
            len(grants_acked), ", ".join("%s %d" % (k, v) for k, v in sorted(go.items()))))
    print("lease deferrals (db)       %s" % (deferrals[0]["n"] if deferrals else "?"))
    print("lease ends                 " + ", ".join("%s %d" % (k, rel_kinds[k]) for k in end_kinds))
    print("alerts                     " + ", ".join("%s %d" % (k, v) for k, v in sorted(alerts.items())))
    print("sink calls                 %d (executed %d, refused stale %d)" % (
        len(calls), sum(1 for s in calls if s["executed"] == "1"), stale_refused))
    print("  executions above one per (item, transition, cycle): %d%s" % (
        dup_executions, "  (unfenced baseline)" if a.sink_mode == "unfenced" else ""))
    print("  accepted while a newer grant existed (sink cannot know): %d" % newer_grant_accepted)
    print("faults by kind")
    fk = collections.Counter(f["kind"] for f in faults)
    for k in sorted(fk):
        print("  %-24s %d" % (k, fk[k]))
    print("anomalies by class")
    for cls, what in ANOMALY_CLASSES:
        print("  %-24s %d   %s" % (cls, anomalies[cls], what))
        for ex in examples[cls]:
            print("      e.g. " + ex)
    def fmt(v):
        return "-" if v is None else "%d ms" % v
    print("reclaim latency, killed owner -> lease released (n=%d): p50 %s, p99 %s, bound %d ms" % (
        len(orphan_latency), fmt(pct(orphan_latency, 50)), fmt(pct(orphan_latency, 99)), bound_ms))
    print("ceiling releases, time past the ceiling (n=%d): p50 %s, p99 %s" % (
        len(ceiling_over), fmt(pct(ceiling_over, 50)), fmt(pct(ceiling_over, 99))))
    total = sum(anomalies.values())
    print("anomalies total            %d" % total)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
