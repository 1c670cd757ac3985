# shellcheck shell=bash
# bench_lib.sh — what the benchmark drivers (run.sh, lease_run.sh) share:
# the build, a private PostgreSQL cluster, services on free loopback ports,
# their health, and the clean-up on exit. Sourced, never run.
#
# The sourcing script sets, before calling anything here:
#   ROOT, BUILD_DIR    the repository and the build folder
#   SERVICES           array of service names (lease, stage, ...)
#   BUILD_TARGETS      array of CMake targets to build
#   HEALTH_ARGS        array of arguments after `orchctl health` (empty: all)
#   HEALTHY_MSG        progress line printed once the services are SERVING
#   BENCH_NAME         the benchmark program's name, for messages
# and may override HEALTH_TIMEOUT and STOP_TIMEOUT. Services are started
# with the environment of the moment (export settings before start_services).
# State kept here: PG_DIR, LOG_DIR, BENCH_PID, FAILED, SVC_PID.

readonly PGCTL="$ROOT/tests/support/pgctl.sh"
readonly ORCHCTL="$BUILD_DIR/tools/orchctl/orchctl"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-60}" # seconds for `orchctl health` to succeed
STOP_TIMEOUT="${STOP_TIMEOUT:-20}"     # seconds the services get after SIGTERM

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

build() {
  local log="$LOG_DIR/build.log"
  say "building into $BUILD_DIR (log: $log)"
  if ! {
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DORCH_BUILD_TESTS=ON -DORCH_BUILD_BENCH=ON &&
      cmake --build "$BUILD_DIR" -j2 --target "${BUILD_TARGETS[@]}"
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
  export ORCH_RUNTIME=test
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
    if "$ORCHCTL" --timeout 1000 health "${HEALTH_ARGS[@]}" >/dev/null 2>&1; then
      say "$HEALTHY_MSG"
      return 0
    fi
    sleep 0.2
  done
  "$ORCHCTL" --timeout 1000 health "${HEALTH_ARGS[@]}" >&2 || true
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

# Runs the benchmark program with the given arguments in the background, so
# that a signal to the script is handled at once; returns its exit status.
run_bench() {
  local rc=0
  "$@" &
  BENCH_PID=$!
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=""
  if [[ "$rc" -ne 0 ]]; then
    FAILED=1
    say "$BENCH_NAME exited with status $rc"
  fi
  return "$rc"
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

# Installs the clean-up and the signal handling, and makes LOG_DIR.
install_traps() {
  trap on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  LOG_DIR="$(mktemp -d /tmp/orch-bench-logs.XXXXXX)"
}
