#!/usr/bin/env bash
# run.sh — the RPC benchmark in one command: build, a private PostgreSQL
# cluster, the four services on free loopback ports, then rpc_bench.
#
# Usage: tests/bench/run.sh [--no-build] [rpc_bench options...]
#   e.g. tests/bench/run.sh --rounds 5      tests/bench/run.sh --json
#   (tests/bench/run.sh --help-bench lists rpc_bench's options)
#
# Steps:
#   1. configures build/ (RelWithDebInfo, tests and bench on) and builds the
#      four services, orchctl and rpc_bench with -j2; the build log goes to a
#      file, shown only when the build fails (--no-build skips this step);
#   2. starts a private PostgreSQL cluster with tests/support/pgctl.sh in a
#      fresh mktemp -d folder under /tmp;
#   3. starts build/services/<svc>/<svc>-service for lease, stage, guard and
#      launcher, each on two free ports of 127.0.0.1 (ORCH_<SVC>_RPC_URL,
#      ORCH_<SVC>_HTTP_ADDR), with ORCH_LOG_LEVEL=warn;
#   4. waits (at most 60 s) until `build/tools/orchctl/orchctl health` exits 0
#      (after a failed start, steps 3 and 4 are tried again on new ports, three
#      attempts in all);
#   5. runs build/tests/bench/rpc_bench --lease-url ... --pids ... followed by
#      the options given here.
# Whatever happens, the services then get SIGTERM (SIGKILL after 20 s) and the
# cluster is destroyed. Service logs are kept (and their folder named) only
# when something failed.
#
# Output: rpc_bench's figures on stdout (its JSON alone with --json); this
# script's progress lines on stderr. Exit status: rpc_bench's (0 when every
# call succeeded; the figures never decide it), 1 when an earlier step failed,
# 2 on bad usage, 130/143 when interrupted by SIGINT/SIGTERM. Works as root
# (the cluster then runs as the postgres user).
# ORCH_BENCH_BUILD_DIR overrides the build folder.

set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
readonly BUILD_DIR="${ORCH_BENCH_BUILD_DIR:-$ROOT/build}"
readonly BENCH="$BUILD_DIR/tests/bench/rpc_bench"
readonly SERVICES=(lease stage guard launcher)
readonly BUILD_TARGETS=(rpc_bench orchctl "${SERVICES[@]/%/-service}")
readonly HEALTH_ARGS=()
readonly HEALTHY_MSG="all four services are SERVING"
readonly BENCH_NAME=rpc_bench
HEALTH_TIMEOUT=60 # seconds for `orchctl health` to succeed
STOP_TIMEOUT=20   # seconds the services get after SIGTERM

# shellcheck source=tests/bench/bench_lib.sh
. "$ROOT/tests/bench/bench_lib.sh"

BUILD=1
BENCH_ARGS=()

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --no-build) BUILD=0 ;;
      -h | --help) usage 0 ;;
      --help-bench)
        [[ -x "$BENCH" ]] || die "$BENCH not built yet: run without --help-bench first"
        "$BENCH" --help
        exit 0
        ;;
      --lease-url* | --pids*)
        say "$1 is set by this script"
        usage 2
        ;;
      *) BENCH_ARGS+=("$1") ;;
    esac
    shift
  done
}

main() {
  parse_args "$@"
  install_traps
  if [[ "$BUILD" -eq 1 ]]; then
    build
  fi
  local f
  for f in "$BENCH" "$ORCHCTL" "$PGCTL"; do
    [[ -x "$f" ]] || die "$f is missing"
  done
  start_pg
  start_and_wait

  local pids="" svc
  for svc in "${SERVICES[@]}"; do
    pids+="${pids:+,}$svc=${SVC_PID[$svc]}"
  done
  say "running $BENCH${BENCH_ARGS[*]:+ ${BENCH_ARGS[*]}}"
  run_bench "$BENCH" --lease-url "$ORCH_LEASE_RPC_URL" --pids "$pids" "${BENCH_ARGS[@]}"
}

main "$@"
