#!/usr/bin/python3
"""alerts_check.py - deploy/prometheus/orch-alerts.yml stays usable.

Usage: alerts_check.py SOURCE_DIR   (ctest runs it as integration_alerts_check)

Checks, with python3-yaml:
  1. the file parses and has groups of rules, each rule an alert with a
     name, an expr, labels.severity and annotations summary and runbook_url;
  2. every runbook_url is docs/operations/runbook.md#ANCHOR and ANCHOR is the
     anchor of a heading of runbook.md (GitHub's rule: lower case, spaces to
     hyphens, punctuation dropped);
  3. every orch_* and process_* metric an expr names (a histogram by its
     _bucket, _sum or _count series) is a row of a table of
     docs/operations/metrics.md. tests/integration/test_ops.c
     (ops.metrics_doc_matches_every_service) checks that the services export
     every row of those tables, so an alert cannot watch a metric that does
     not exist;
  4. metrics.md links the rules file.
"""
import os
import re
import sys

import yaml

RULES = "deploy/prometheus/orch-alerts.yml"
RUNBOOK = "docs/operations/runbook.md"
METRICS = "docs/operations/metrics.md"


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def runbook_anchors(text):
    anchors = set()
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            m = re.match(r"^#{1,6} (.+)$", line)
            if m:
                anchors.add(slug(m.group(1)))
    return anchors


def documented_metrics(text):
    return set(re.findall(r"^\| `((?:orch|process)_[a-z0-9_]+)` \|", text, re.M))


def metrics_of(expr):
    names = set()
    for name in re.findall(r"\b((?:orch|process)_[a-zA-Z0-9_]+)", expr):
        names.add(re.sub(r"_(bucket|sum|count)$", "", name)
                  if name.endswith(("_bucket", "_sum", "_count")) else name)
    return names


def check(src):
    errors = []
    with open(os.path.join(src, RULES), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    with open(os.path.join(src, RUNBOOK), encoding="utf-8") as f:
        anchors = runbook_anchors(f.read())
    with open(os.path.join(src, METRICS), encoding="utf-8") as f:
        metrics_text = f.read()
    known = documented_metrics(metrics_text)
    if len(known) < 20:
        errors.append(f"only {len(known)} metrics found in {METRICS}")
    if RULES not in metrics_text:
        errors.append(f"{METRICS} does not link {RULES}")

    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not groups:
        return errors + [f"{RULES}: no groups"]
    seen = set()
    nalerts = 0
    for g in groups:
        for r in g.get("rules") or []:
            name = r.get("alert")
            if not name:
                errors.append(f"group {g.get('name')}: a rule without an alert name")
                continue
            nalerts += 1
            if name in seen:
                errors.append(f"{name}: defined twice")
            seen.add(name)
            expr = r.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                errors.append(f"{name}: no expr")
                expr = ""
            if not (r.get("labels") or {}).get("severity"):
                errors.append(f"{name}: no labels.severity")
            ann = r.get("annotations") or {}
            if not ann.get("summary"):
                errors.append(f"{name}: no annotations.summary")
            url = ann.get("runbook_url") or ""
            m = re.fullmatch(re.escape(RUNBOOK) + r"#([a-z0-9_-]+)", url)
            if not m:
                errors.append(f"{name}: runbook_url '{url}' is not {RUNBOOK}#anchor")
            elif m.group(1) not in anchors:
                errors.append(f"{name}: {RUNBOOK} has no heading with anchor #{m.group(1)}")
            for metric in sorted(metrics_of(expr)):
                if metric not in known:
                    errors.append(f"{name}: {metric} is not a metric of {METRICS}")
    if nalerts < 5:
        errors.append(f"only {nalerts} alerts in {RULES}")
    return errors


def selftest():
    assert slug("OrchRpcSlow") == "orchrpcslow"
    assert slug("Force-release a lease safely") == "force-release-a-lease-safely"
    assert slug("Upgrade (migrations)") == "upgrade-migrations"
    assert metrics_of("rate(orch_rpc_request_duration_seconds_bucket[5m]) and up") == {
        "orch_rpc_request_duration_seconds"}
    assert metrics_of("process_open_fds / process_max_fds") == {"process_open_fds",
                                                                "process_max_fds"}
    assert metrics_of("orch_database_probes_total") == {"orch_database_probes_total"}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    selftest()
    errors = check(sys.argv[1])
    for e in errors:
        print("alerts_check:", e, file=sys.stderr)
    if errors:
        return 1
    print("alerts_check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
