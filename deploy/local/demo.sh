#!/usr/bin/env bash
# demo.sh — a one-minute scripted demonstration of what orch is for.
#
# Usage:
#   deploy/local/demo.sh             build if needed, run the demo, clean up
#   deploy/local/demo.sh --no-build  use the existing build/
# ORCH_BUILD_DIR names another build folder (the test suite passes its own).
#
# What it does, on loopback only, in a temporary folder it deletes afterwards:
#   1. starts a private PostgreSQL (tests/support/pgctl.sh), a stand-in for
#      Gitea that counts merge requests (python3, a few lines below), and
#      lease-service and stage-service on free ports (ORCH_RUNTIME=staging);
#   2. creates three work items and walks ORCH-1 to review with orchctl;
#   3. five actors race the merging transition review -> testing of ORCH-1 at
#      once: one advances, the others are deferred or find the stage moved;
#   4. an owner process takes the lease of ORCH-2 and is killed (SIGKILL); a
#      second actor then gets the lease, reclaimed from the dead owner;
#   5. shows the lease table, the queue, ORCH-1's history and side effects,
#      the lease events (the audit), and the number of merges Gitea received.
# Exit status: 0 when exactly one merge happened and the dead owner's lease
# was reclaimed; 1 otherwise (or when a step failed). Nothing is left running.

set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
readonly PGCTL="$ROOT/tests/support/pgctl.sh"
readonly BUILD="${ORCH_BUILD_DIR:-$ROOT/build}"
readonly CTL="$BUILD/tools/orchctl/orchctl"

WORK=""
PIDS=()
FAILED=0

say() {
  if [[ -t 1 ]]; then
    printf '\n\033[1m== %s\033[0m\n' "$*"
  else
    printf '\n== %s\n' "$*"
  fi
}
run() {
  printf '$ %s\n' "${*/#$CTL/orchctl}"
  "$@"
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -n "$WORK" ]]; then
    "$PGCTL" destroy "$WORK/pg" >/dev/null 2>&1 || true
    rm -rf -- "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for CMD... : retries CMD for up to 30 s.
wait_for() {
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "demo: timed out waiting for: $*" >&2
  return 1
}

if [[ "${1:-}" != "--no-build" ]]; then
  # shellcheck source=deploy/local/packages.sh
  source "$ROOT/deploy/local/packages.sh"
  orch_install_packages
  cmake -S "$ROOT" -B "$BUILD" >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target lease-service stage-service orchctl >/dev/null
fi
for f in "$CTL" "$BUILD/services/lease/lease-service" "$BUILD/services/stage/stage-service"; do
  [[ -x "$f" ]] || {
    echo "demo: $f is missing: run without --no-build" >&2
    exit 1
  }
done

WORK="$(mktemp -d /tmp/orch-demo.XXXXXX)"
chmod 0755 "$WORK"
mkdir -p "$WORK/logs"

say "a private PostgreSQL, a Gitea stand-in, lease-service and stage-service"
"$PGCTL" init "$WORK/pg" >/dev/null
"$PGCTL" start "$WORK/pg" >/dev/null
DB_URL="$("$PGCTL" url "$WORK/pg")"

GITEA_PORT="$(free_port)"
cat >"$WORK/gitea.py" <<'EOF'
# Answers the two calls stage-service's merge effect makes and counts merges.
import http.server, sys
merged, count_file = set(), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):  # is-merged: 204 merged, 404 not
        self.send_response(204 if self.path in merged else 404); self.end_headers()
    def do_POST(self):  # merge
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        merged.add(self.path)
        with open(count_file, "a") as f: f.write(self.path + "\n")
        self.send_response(200); self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
: >"$WORK/merges"
python3 "$WORK/gitea.py" "$GITEA_PORT" "$WORK/merges" &
PIDS+=($!)

LEASE_RPC="tcp://127.0.0.1:$(free_port)"
STAGE_RPC="tcp://127.0.0.1:$(free_port)"
export ORCH_LEASE_RPC_URL="$LEASE_RPC" ORCH_STAGE_RPC_URL="$STAGE_RPC"
common=(
  ORCH_RUNTIME=staging ORCH_DATABASE_URL="$DB_URL" ORCH_LOG_LEVEL=warn
  ORCH_LEASE_RPC_URL="$LEASE_RPC" ORCH_STAGE_RPC_URL="$STAGE_RPC"
  ORCH_GUARD_RPC_URL="tcp://127.0.0.1:$(free_port)"
  ORCH_LEASE_HTTP_ADDR="127.0.0.1:$(free_port)" ORCH_STAGE_HTTP_ADDR="127.0.0.1:$(free_port)"
  ORCH_TRANSITION_LEASE_REPOS=demo/app ORCH_LEASE_RECOVERY_WAIT_MS=0
  ORCH_LEASE_REAPER_INTERVAL_MS=1000 ORCH_RECONCILER_INTERVAL_MS=0
  ORCH_GITEA_URL="http://127.0.0.1:$GITEA_PORT" ORCH_GITEA_TOKEN=demo
)
env "${common[@]}" "$BUILD/services/lease/lease-service" >"$WORK/logs/lease.log" 2>&1 &
PIDS+=($!)
env "${common[@]}" "$BUILD/services/stage/stage-service" >"$WORK/logs/stage.log" 2>&1 &
PIDS+=($!)
wait_for "$CTL" health lease stage
run "$CTL" health lease stage

say "three work items; ORCH-1 walks to review on its verdicts"
for i in 1 2 3; do
  run "$CTL" stage create "ORCH-$i" --repo demo/app --title "demo item $i" --pr "$((40 + i))"
done
run "$CTL" stage advance ORCH-1 --from backlog --to analysis
run "$CTL" stage advance ORCH-1 --from analysis --to architecture --verdict analysis_status=DONE
run "$CTL" stage advance ORCH-1 --from architecture --to development \
  --verdict architecture_status=DONE
run "$CTL" stage advance ORCH-1 --from development --to review --verdict dev_status=DONE

say "five actors race review -> testing of ORCH-1 (that edge merges PR #41)"
race=()
for actor in monitor webhook reconciler reaper finalizer; do
  "$CTL" stage advance ORCH-1 --from review --to testing --actor "$actor" \
    --verdict review_verdict=APPROVE >"$WORK/race-$actor.out" 2>&1 &
  race+=("$!:$actor")
done
for entry in "${race[@]}"; do
  rc=0
  wait "${entry%%:*}" || rc=$?
  printf '  %-10s exit %-3d %s\n' "${entry#*:}" "$rc" "$(head -n 1 "$WORK/race-${entry#*:}.out")"
done
echo "  (0 advanced; 4 deferred: another owner held the lease; 73: the stage had"
echo "   already moved; see docs/operations/orchctl.md)"

say "an owner takes the lease of ORCH-2 and is killed"
sleep 300 &
doomed=$!
PIDS+=("$doomed")
run "$CTL" lease acquire ORCH-2 --repo demo/app --actor doomed-owner --owner-pid "$doomed"
run "$CTL" lease list
kill -KILL "$doomed"
wait "$doomed" 2>/dev/null || true
echo "\$ kill -KILL $doomed"
rc=0
run "$CTL" lease acquire ORCH-2 --repo demo/app --actor rescuer --owner-pid $$ || rc=$?
if [[ "$rc" -ne 0 ]]; then
  echo "demo: the dead owner's lease was not reclaimed (exit $rc)"
  FAILED=1
fi

say "the lease table, the queue, ORCH-1's record"
run "$CTL" lease list --all
run "$CTL" stage queue
run "$CTL" stage show ORCH-1

say "the audit: lease events"
psql -X -q "$DB_URL" -c "SELECT work_item, epoch, kind, actor, detail FROM lease_events ORDER BY id"

say "merges Gitea received"
merges="$(wc -l <"$WORK/merges")"
echo "  $merges merge request(s): $(tr '\n' ' ' <"$WORK/merges")"
if [[ "$merges" -ne 1 ]]; then
  echo "demo: expected exactly one merge"
  FAILED=1
else
  echo "  exactly one merge, whatever the race"
fi
exit "$FAILED"
