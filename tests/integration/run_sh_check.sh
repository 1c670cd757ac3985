#!/usr/bin/env bash
# run_sh_check.sh - deploy/local/run.sh starts orch and its printed hints
# work exactly as printed.
#
# Usage: run_sh_check.sh SOURCE_DIR BINARY_DIR   (ctest runs it)
#
# With the build of BINARY_DIR (--no-build), packages skipped, a scratch run
# dir and free ports that are not the defaults (as if .env had changed them):
#   1. `run.sh --check` exits 0;
#   2. `run.sh` is started, and once it prints "Press Ctrl-C to stop.", each
#      line of its "Try:" block is run with bash from / in an environment
#      that has none of the ORCH_ variables (a fresh shell of the operator):
#      each must exit 0, and the first (`orchctl ... health lease --json`)
#      must print lease-service SERVING as JSON;
#   3. SIGTERM stops run.sh with exit 0.
set -euo pipefail
src="${1:?usage: run_sh_check.sh SOURCE_DIR BINARY_DIR}"
bin="${2:?usage: run_sh_check.sh SOURCE_DIR BINARY_DIR}"
tmp="$(mktemp -d /tmp/orch-runsh-XXXXXX)"
chmod 0755 "$tmp" # the postgres user must reach the run dir when we are root
run_pid=""
cleanup() {
  if [[ -n "$run_pid" ]] && kill -0 "$run_pid" 2>/dev/null; then
    kill -TERM "$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "run_sh_check: FAIL: $*"
  for f in "$tmp"/out "$tmp"/err "$tmp"/run/logs/*.log; do
    [[ -f "$f" ]] && { echo "--- $f"; tail -n 30 "$f"; }
  done
  exit 1
}

# Eight free loopback ports.
read -r -a ports <<<"$(python3 "$src/tests/support/free_ports.py" 8)"
for v in $(env | grep -o '^ORCH_[A-Z0-9_]*'); do unset "$v"; done
export ORCH_SKIP_PACKAGES=1 ORCH_BUILD_DIR="$bin" ORCH_RUN_DIR="$tmp/run"
export ORCH_LAUNCHER_OUTPUT_DIR="$tmp/jobs" ORCH_SHUTDOWN_GRACE_S=5
i=0
for svc in LEASE STAGE GUARD LAUNCHER; do
  export "ORCH_${svc}_RPC_URL=tcp://127.0.0.1:${ports[$i]}"
  export "ORCH_${svc}_HTTP_ADDR=127.0.0.1:${ports[$((i + 4))]}"
  i=$((i + 1))
done

# 1. --check
bash "$src/deploy/local/run.sh" --check --no-build >"$tmp/out" 2>"$tmp/err" || fail "run.sh --check exited $?"
grep -q "lease-service *SERVING" "$tmp/out" || fail "run.sh --check did not show lease-service SERVING"
echo "run.sh --check: ok"

# 2. the hints of a running orch
bash "$src/deploy/local/run.sh" --no-build >"$tmp/out" 2>"$tmp/err" &
run_pid=$!
for ((n = 0; n < 600; n++)); do
  grep -q '^Press Ctrl-C to stop\.$' "$tmp/out" && break
  kill -0 "$run_pid" 2>/dev/null || fail "run.sh exited before it was ready"
  sleep 0.1
done
grep -q '^Press Ctrl-C to stop\.$' "$tmp/out" || fail "run.sh not ready after 60 s"
mapfile -t hints < <(sed -n '/^Try:$/,/^$/p' "$tmp/out" | sed '1d;/^$/d;s/^  //')
((${#hints[@]} >= 2)) || fail "no hints printed"
[[ "${hints[0]}" == *" health lease --json" ]] || fail "the first hint is '${hints[0]}'"
for k in "${!hints[@]}"; do
  line="${hints[$k]}"
  rc=0
  (cd / && env -i PATH="$PATH" HOME="${HOME:-/}" bash -c "$line") >"$tmp/hint" 2>&1 || rc=$?
  ((rc == 0)) || fail "hint '$line' exited $rc: $(cat "$tmp/hint")"
  if ((k == 0)); then
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r[0]["service"] == "lease-service" and r[0]["status"] == "SERVING", r
assert r[0]["address"] == sys.argv[2], r' "$tmp/hint" "$ORCH_LEASE_RPC_URL" ||
      fail "hint '$line' printed: $(cat "$tmp/hint")"
  fi
  echo "hint ok: $line"
done

# 3. SIGTERM
kill -TERM "$run_pid"
rc=0
wait "$run_pid" || rc=$?
run_pid=""
((rc == 0)) || fail "run.sh exited $rc after SIGTERM"
echo "run_sh_check: ${#hints[@]} hints ran as printed; stopped cleanly"
