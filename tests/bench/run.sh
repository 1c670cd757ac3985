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
readonly PGCTL="$ROOT/tests/support/pgctl.sh"
readonly ORCHCTL="$BUILD_DIR/tools/orchctl/orchctl"
readonly BENCH="$BUILD_DIR/tests/bench/rpc_bench"
readonly SERVICES=(lease stage guard launcher)
readonly HEALTH_TIMEOUT=60 # seconds for `orchctl health` to succeed
readonly STOP_TIMEOUT=20   # seconds the services get after SIGTERM

BUILD=1
BENCH_ARGS=()
PG_DIR=""
LOG_DIR=""
BENCH_PID=""
FAILED=0
declare -A SVC_PID=()

say() {
  printf 'bench: %s\n' "$*" >&2
}

die() {
  say "error: $*"
  FAILED=1
  exit 1
}

usage() {
  sed -n '/^# Usage:/,/^#$/s/^# \{0,1\}//p' "$0" >&2
  exit "${1:-2}"
}

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

build() {
  local log="$LOG_DIR/build.log"
  say "building into $BUILD_DIR (log: $log)"
  if ! {
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DORCH_BUILD_TESTS=ON -DORCH_BUILD_BENCH=ON &&
      cmake --build "$BUILD_DIR" -j2 --target rpc_bench orchctl \
        "${SERVICES[@]/%/-service}"
  } >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    die "build failed (full log: $log)"
  fi
}

# Prints N distinct TCP ports of 127.0.0.1 that were free a moment ago, one a
# line. All are bound at once, so they differ from each other.
free_ports() {
  local n="$1"
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$n" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
    return
  fi
  local -A seen=()
  local port tries=0
  while ((${#seen[@]} < n && tries < 1000)); do
    tries=$((tries + 1))
    port=$((20000 + RANDOM % 40000))
    [[ -z "${seen[$port]:-}" ]] || continue
    [[ -z "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]] || continue
    seen[$port]=1
    echo "$port"
  done
}

# alive PID — true while PID runs (an exited, unreaped child does not count).
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "${stat##*) }" != Z* ]]
}

start_pg() {
  PG_DIR="$(mktemp -d /tmp/orch-bench.XXXXXX)"
  say "starting PostgreSQL in $PG_DIR"
  "$PGCTL" init "$PG_DIR" || die "pgctl.sh init failed"
  "$PGCTL" start "$PG_DIR" || die "pgctl.sh start failed"
  ORCH_DATABASE_URL="$("$PGCTL" url "$PG_DIR")"
  export ORCH_DATABASE_URL
}

start_services() {
  local -a ports
  mapfile -t ports < <(free_ports $((2 * ${#SERVICES[@]})))
  [[ ${#ports[@]} -eq $((2 * ${#SERVICES[@]})) ]] || die "could not find free ports"
  export ORCH_LOG_LEVEL=warn
  local i svc up
  for i in "${!SERVICES[@]}"; do
    up="${SERVICES[$i]^^}"
    export "ORCH_${up}_RPC_URL=tcp://127.0.0.1:${ports[$((2 * i))]}"
    export "ORCH_${up}_HTTP_ADDR=127.0.0.1:${ports[$((2 * i + 1))]}"
  done
  for svc in "${SERVICES[@]}"; do
    "$BUILD_DIR/services/$svc/$svc-service" >"$LOG_DIR/$svc.log" 2>&1 &
    SVC_PID[$svc]=$!
  done
  local started=""
  for svc in "${SERVICES[@]}"; do
    up="ORCH_${svc^^}_RPC_URL"
    started+="${started:+, }$svc-service ${!up} (pid ${SVC_PID[$svc]})"
  done
  say "started $started"
}

show_log() {
  say "last lines of $LOG_DIR/$1.log:"
  tail -n 30 "$LOG_DIR/$1.log" >&2 || true
}

# Returns 0 once `orchctl health` succeeds; 1 (after showing why) when a
# service exits or HEALTH_TIMEOUT s pass.
wait_healthy() {
  local deadline=$((SECONDS + HEALTH_TIMEOUT)) svc
  while ((SECONDS < deadline)); do
    for svc in "${SERVICES[@]}"; do
      if ! alive "${SVC_PID[$svc]}"; then
        show_log "$svc"
        say "$svc-service exited during start-up"
        return 1
      fi
    done
    if "$ORCHCTL" --timeout 1000 health >/dev/null 2>&1; then
      say "all four services are SERVING"
      return 0
    fi
    sleep 0.2
  done
  "$ORCHCTL" --timeout 1000 health >&2 || true
  say "the services were not healthy within $HEALTH_TIMEOUT s"
  return 1
}

# Starts the services and waits for them; on a failed start (for instance a
# free port taken by another program meanwhile), stops them and tries again
# on new ports, three attempts in all.
start_and_wait() {
  local attempt
  for attempt in 1 2 3; do
    start_services
    if wait_healthy; then
      return 0
    fi
    FAILED=1 # keep the logs
    stop_services quiet
    [[ "$attempt" -lt 3 ]] && say "start-up attempt $attempt failed; trying again on new ports"
  done
  die "the services did not start"
}

# SIGTERM to every service, at most STOP_TIMEOUT s to exit, then SIGKILL.
# Reports a service that did not exit with status 0, unless $1 is "quiet".
stop_services() {
  local quiet="${1:-}" svc pid status deadline=$((SECONDS + STOP_TIMEOUT))
  for svc in "${!SVC_PID[@]}"; do
    kill -TERM "${SVC_PID[$svc]}" 2>/dev/null || true
  done
  for svc in "${!SVC_PID[@]}"; do
    pid="${SVC_PID[$svc]}"
    while alive "$pid" && ((SECONDS < deadline)); do
      sleep 0.1
    done
    if alive "$pid"; then
      say "$svc-service did not stop within $STOP_TIMEOUT s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      FAILED=1
    fi
    status=0
    wait "$pid" 2>/dev/null || status=$?
    if [[ "$status" -ne 0 && "$quiet" != quiet ]]; then
      say "$svc-service exited with status $status"
      show_log "$svc"
      FAILED=1
    fi
    unset "SVC_PID[$svc]"
  done
}

# shellcheck disable=SC2317 # invoked by trap
on_exit() {
  local status=$?
  trap - EXIT INT TERM HUP
  [[ "$status" -eq 0 ]] || FAILED=1
  if [[ -n "$BENCH_PID" ]] && alive "$BENCH_PID"; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  stop_services
  if [[ -n "$PG_DIR" ]]; then
    "$PGCTL" destroy "$PG_DIR" || say "could not destroy $PG_DIR"
  fi
  if [[ -n "$LOG_DIR" ]]; then
    if [[ "$FAILED" -eq 0 ]]; then
      rm -rf -- "$LOG_DIR"
    else
      say "logs kept in $LOG_DIR"
    fi
  fi
  exit "$status"
}

main() {
  parse_args "$@"
  trap on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  LOG_DIR="$(mktemp -d /tmp/orch-bench-logs.XXXXXX)"
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
  local rc=0
  # In the background so that a signal to this script is handled at once.
  "$BENCH" --lease-url "$ORCH_LEASE_RPC_URL" --pids "$pids" "${BENCH_ARGS[@]}" &
  BENCH_PID=$!
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=""
  if [[ "$rc" -ne 0 ]]; then
    FAILED=1
    say "rpc_bench exited with status $rc"
  fi
  return "$rc"
}

main "$@"
