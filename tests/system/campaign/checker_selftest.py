#!/usr/bin/env python3
"""Self-test of the campaign's history checker: a crafted clean history must
give no anomaly, and each crafted fault must raise exactly its class (so
that every check is shown able to fail). Needs python3 only.

Usage: checker_selftest.py
"""

import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKER = os.path.join(HERE, "checker.py")
T0 = 1_800_000_000_000
FORWARD = ["backlog", "analysis", "architecture", "development", "review",
           "testing", "staging", "deploy", "done"]
EFFECTS = {"review->testing": [("merge_pr", "merge")],
           "testing->staging": [("coverage_ratchet", None), ("image_rebuild", "image")],
           "staging->deploy": [("deploy_start", "deploy")]}


def clean():
    """A history of two items through the whole pipeline, one epoch per edge."""
    h = {k: [] for k in ("tasks", "history", "intents", "events", "leases", "sink",
                         "actors", "faults", "alerts", "hooks", "grants")}
    hid = eid = 0
    t = T0
    for item in ("I-1", "I-2"):
        h["tasks"].append([item, "done", "0", "1"])
        epoch = 0
        for a, b in zip(FORWARD, FORWARD[1:]):
            epoch += 1
            tr = "%s->%s" % (a, b)
            eid += 1
            h["events"].append([eid, item, epoch, "granted", "monitor", t, "review"])
            for eff, kind in EFFECTS.get(tr, []):
                h["intents"].append([item, tr, eff, "0", epoch, "ok", t + 10])
                if kind:
                    key = "%s/%s/%s/0" % (item, tr, eff)
                    h["sink"].append([t + 20, t + 20, "10.0.0.11", kind, item, tr, eff, "0",
                                      epoch if kind != "merge" else 0, key, "accepted", "200", "1"])
            hid += 1
            h["history"].append([hid, item, a, b, "monitor", epoch, t + 30])
            h["actors"].append([t, t + 40, "h1", "monitor", item, a, b, "0", "ADVANCED", epoch])
            eid += 1
            h["events"].append([eid, item, epoch, "released", "monitor", t + 40, ""])
            t += 100
        h["leases"].append([item, epoch, "h1", "f", "released"])
    h["grants"].append([T0, T0 + 5, "h1", "lessee", "I-1", "GRANTED", 1])
    h["grants"].append([T0 + 6, T0 + 7, "h2", "lessee", "I-1", "HELD", 0])
    return h


def write(d, h):
    def csv(name, header, rows):
        with open(os.path.join(d, "db-%s.tsv" % name), "w", encoding="utf-8") as f:
            f.write(",".join(header) + "\n")
            for r in rows:
                f.write(",".join(str(x) for x in r) + "\n")

    def tsv(name, rows):
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write("\t".join(str(x) for x in r) + "\n")

    csv("tasks", ["work_item", "stage", "cycle", "pr_number"], h["tasks"])
    csv("stage_history", ["id", "work_item", "from_stage", "to_stage", "actor", "lease_epoch",
                          "at_ms"], h["history"])
    csv("side_effects", ["work_item", "transition", "effect", "cycle", "lease_epoch", "outcome",
                         "at_ms"], h["intents"])
    csv("lease_events", ["id", "work_item", "epoch", "kind", "actor", "at_ms", "detail"],
        h["events"])
    csv("transition_lease", ["work_item", "epoch", "owner_host", "held", "reason"], h["leases"])
    csv("deferrals", ["n"], [[0]])
    tsv("sink.log", h["sink"])
    tsv("actors.log", h["actors"])
    tsv("faults.log", h["faults"])
    tsv("webhooks.log", h["hooks"])
    tsv("grants.log", h["grants"])
    with open(os.path.join(d, "lease-all.log"), "w", encoding="utf-8") as f:
        for kind, item in h["alerts"]:
            f.write('{"msg":"ALERT lease.%s %s: crafted"}\n' % (kind, item))


def run(h):
    with tempfile.TemporaryDirectory() as d:
        write(d, h)
        p = subprocess.run([sys.executable, CHECKER, "--dir", d, "--ceiling-s", "8",
                            "--reaper-interval-ms", "500"], capture_output=True, text=True,
                           check=False)
    counts = {m.group(1): int(m.group(2))
              for m in re.finditer(r"^  ([a-z_]+) +(\d+)   ", p.stdout, re.M)}
    return p.returncode, counts, p.stdout


def mutations():
    def dup(h):  # the same effect run again under another key
        r = list(h["sink"][1])
        r[9] = r[9] + "-again"
        h["sink"].insert(2, r)

    def no_intent(h):
        h["intents"] = [r for r in h["intents"] if r[2] != "deploy_start" or r[0] != "I-1"]

    def illegal(h):  # analysis -> review skips two stages (the actor's ack no longer matches)
        row = [r for r in h["history"] if r[1] == "I-2" and r[2] == "analysis"][0]
        row[3] = "review"

    def stale(h):
        img = [r for r in h["sink"] if r[3] == "image" and r[4] == "I-1"][0]
        r = list(img)
        r[8] = 1  # an epoch below the one already accepted
        r[12] = "0"
        r[10] = "duplicate"
        h["sink"].append(r)

    def after_done(h):  # a rollback landing after done (no edge leaves done)
        h["history"].append([999, "I-1", "done", "development", "webhook", 50, T0 + 99999])
        h["tasks"][0][1] = "development"

    def acked(h):
        h["actors"].append([T0, T0 + 1, "h2", "reaper", "I-1", "deploy", "done", "0", "ADVANCED", 77])

    def orphan(h):
        ev = [e for e in h["events"] if e[1] == "I-1" and e[2] == 5 and e[3] == "released"][0]
        h["faults"].append([ev[5] - 20000, "kill_owner", "h1", "I-1", 5, "crafted"])

    def held_long(h):
        ev = [e for e in h["events"] if e[1] == "I-2" and e[2] == 3 and e[3] == "released"][0]
        ev[5] += 30000

    def never(h):
        h["leases"][1][3] = "t"

    def alert(h):
        h["events"].append([900, "I-1", 8, "reclaimed-stale", "reaper", T0 + 5, ""])

    def not_done(h):
        h["tasks"].append(["I-4", "review", "0", "4"])

    def robbed(h):  # one take-over of an owner killed before (fine), one of a live owner
        h["faults"].append([T0 + 1000, "kill_owner", "h1", "I-1", 50, "SIGKILL stage-service pid 4343"])
        h["events"].append([901, "I-1", 50, "reclaimed-stale", "reaper", T0 + 2000,
                            "owner h1 pid 4343 (monitor; epoch 50): no process"])
        h["events"].append([902, "I-2", 51, "reclaimed-stale", "reaper", T0 + 2000,
                            "owner h2 pid 4242 (monitor; epoch 51): no process"])
        h["alerts"] += [("reclaimed-stale", "I-1"), ("reclaimed-stale", "I-2")]

    def dup_host(h):
        h["faults"].append([T0 + 1, "dup_host_id", "h1", "-", 0, "refused: exited 1"])
        h["faults"].append([T0 + 2, "dup_host_id", "h2", "-", 0, "accepted: ran for 8 s"])

    def other_verdict(h):  # the reconciler merged after only a deferred review call
        row = [r for r in h["history"] if r[1] == "I-1" and r[2] == "review"][0]
        row[4] = "reconciler"
        call = [r for r in h["actors"] if r[4] == "I-1" and r[5] == "review"][0]
        call[8] = "DEFERRED"
        h["faults"].append([T0 + 3, "wrong_verdicts", "h1", "I-9", 0, "stayed in review: fine"])
        h["faults"].append([T0 + 4, "wrong_verdicts", "h1", "I-8", 0, "moved to testing: not"])

    def lost_hook(h):
        h["hooks"].append([T0 + 5, "h1", "I-2", 3, "503", '{"error":"held; retry"}'])
        h["hooks"].append([T0 + 6, "h1", "I-2", 3, "200", '{"result":"deferred"}'])

    def grant_lost(h):  # a GRANTED answer the database has no grant for
        h["grants"].append([T0 + 8, T0 + 9, "h1", "lessee", "I-2", "GRANTED", 77])

    def granted_twice(h):  # the same epoch granted again after a lost write
        h["grants"].append([T0 + 10, T0 + 11, "h2", "lessee", "I-1", "GRANTED", 1])

    # (class, mutation, other classes the same fault raises by necessity)
    return [("duplicate_effect", dup, ()), ("effect_without_intent", no_intent, ()),
            ("illegal_path", illegal, ("acked_not_recorded",)), ("stale_epoch_accepted", stale, ()),
            ("left_after_done", after_done, ("illegal_path", "item_not_done")),
            ("acked_not_recorded", acked, ()), ("orphan_not_reclaimed", orphan, ()),
            ("lease_held_too_long", held_long, ()), ("lease_never_released", never, ()),
            ("alert_mismatch", alert, ()), ("item_not_done", not_done, ()),
            ("live_owner_robbed", robbed, ()), ("duplicate_host_accepted", dup_host, ()),
            ("verdict_of_other_stage", other_verdict, ()), ("webhook_lost", lost_hook, ()),
            ("acked_grant_lost", grant_lost, ()), ("epoch_granted_twice", granted_twice, ())]


def main():
    failures = 0
    rc, counts, out = run(clean())
    if rc != 0 or any(counts.values()) or len(counts) < 17:
        print("FAIL: the clean history: exit %d, %s\n%s" % (rc, counts, out))
        failures += 1
    else:
        print("ok    clean history: exit 0, every class 0")
    for cls, mutate, also in mutations():
        h = clean()
        mutate(h)
        rc, counts, out = run(h)
        others = {k: v for k, v in counts.items() if k != cls and k not in also and v}
        if rc == 1 and counts.get(cls, 0) >= 1 and not others:
            print("ok    %-24s flagged (%d), exit 1" % (cls, counts[cls]))
        else:
            print("FAIL: %s: exit %d, counts %s\n%s" % (cls, rc, counts, out))
            failures += 1
    print("checker self-test: %s" % ("FAIL" if failures else "PASS"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
