#!/usr/bin/env bash
# run.sh — build orch and run it on this machine: a private PostgreSQL cluster
# plus the four services (lease, stage, guard, launcher) on loopback.
#
# Usage:
#   deploy/local/run.sh             build, start everything, wait for Ctrl-C/SIGTERM
#   deploy/local/run.sh --check     build, start, print `orchctl health`, stop;
#                                   exits with orchctl's status (smoke test)
#   deploy/local/run.sh --no-build  skip the cmake steps, use the existing build/
#
# Steps, on a Debian 12 machine:
#   1. installs the missing Debian packages (deploy/local/packages.sh; sudo when
#      not root);
#   2. configures and builds into build/ (RelWithDebInfo);
#   3. starts a private PostgreSQL cluster with tests/support/pgctl.sh in
#      <run dir>/pg and exports ORCH_DATABASE_URL for it;
#   4. starts build/services/<name>/<name>-service for each service, logging
#      (JSON lines) to <run dir>/logs/<name>.log;
#   5. waits (at most 30 s) until `build/tools/orchctl/orchctl health` succeeds,
#      writes the addresses it used to <run dir>/orchctl.env (KEY=value lines
#      for `orchctl --config`) and prints where everything listens, with hints
#      that work as printed from any shell and folder.
# Ctrl-C or SIGTERM stops the services (SIGTERM, then SIGKILL after
# ORCH_SHUTDOWN_GRACE_S + 10 s) and then PostgreSQL (fast). The exit status is
# 0 when everything stopped cleanly. Nothing is left running when a step fails.
#
# The services apply the database migrations themselves at start-up.
#
# The run dir is <checkout>/.orch when the `postgres` system user can reach the
# checkout (it must, when run as root, because PostgreSQL refuses to run as
# root), else /tmp/orch-$USER-<hash of the checkout path>. ORCH_RUN_DIR
# overrides it.
#
# Configuration is environment only. A `.env` file at the checkout root is
# loaded first; it never overrides variables already exported. Defaults:
#   ORCH_LOG_LEVEL=info
#   ORCH_RUNTIME=staging   (a local demo: guard-service lets writes through, so
#                           leave the Plane/Telegram credentials unset, or point
#                           ORCH_PLANE_BASE_URL/ORCH_TELEGRAM_BASE_URL at test
#                           doubles; never put the live credentials in .env here)
#   ORCH_LEASE_RPC_URL=tcp://127.0.0.1:7701      ORCH_LEASE_HTTP_ADDR=127.0.0.1:7711
#   ORCH_STAGE_RPC_URL=tcp://127.0.0.1:7702      ORCH_STAGE_HTTP_ADDR=127.0.0.1:7712
#   ORCH_GUARD_RPC_URL=tcp://127.0.0.1:7703      ORCH_GUARD_HTTP_ADDR=127.0.0.1:7713
#   ORCH_LAUNCHER_RPC_URL=tcp://127.0.0.1:7704   ORCH_LAUNCHER_HTTP_ADDR=127.0.0.1:7714
# ORCH_DATABASE_URL exported by the caller selects an existing database and no
# private cluster is started; a value from .env is ignored (.env is shared with
# docker-compose and .env.example, where the database has another address).
# Other keys: see .env.example. ORCH_BUILD_DIR names another build folder
# (default <checkout>/build; the test suite passes its own).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/local/packages.sh
source "$ROOT/deploy/local/packages.sh"

readonly SERVICES=(lease stage guard launcher)
readonly BUILD_DIR="${ORCH_BUILD_DIR:-$ROOT/build}"
readonly ORCHCTL="$BUILD_DIR/tools/orchctl/orchctl"
readonly PGCTL="$ROOT/tests/support/pgctl.sh"
readonly HEALTH_TIMEOUT=30 # seconds to wait for `orchctl health`

MODE=run
BUILD=1
RUN_DIR=""
PG_DIR=""
LOG_DIR=""
ORCHCTL_ENV=""    # <run dir>/orchctl.env, once written
PG_STARTED=0      # 1 when this script started the cluster (and so stops it)
PHASE=startup     # startup | running | stopping
STOP_TIMEOUT=40   # seconds the services get to stop after SIGTERM; see set_defaults
STOP_REQUESTED=0
declare -A SVC_PID=()

say() {
  printf 'run: %s\n' "$*" >&2
}

die() {
  say "error: $*"
  exit 1
}

usage() {
  sed -n '/^# Usage:/,/^#$/s/^# \{0,1\}//p' "$0" >&2
  exit "${1:-2}"
}

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --check) MODE=check ;;
      --no-build) BUILD=0 ;;
      -h | --help) usage 0 ;;
      *)
        say "unknown argument: $1"
        usage 2
        ;;
    esac
    shift
  done
}

# Loads KEY=VALUE lines from .env into the environment, keeping any variable
# that is already set. Accepts `export KEY=VALUE`, comments, blank lines and
# single- or double-quoted values; never evaluates the file as shell.
load_dotenv() {
  local file="$ROOT/.env" line key value n=0
  [[ -f "$file" ]] || return 0
  while IFS= read -r line || [[ -n "$line" ]]; do
    n=$((n + 1))
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    [[ -z "$line" || "$line" == \#* ]] && continue
    line="${line#export }"
    if [[ ! "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
      say "warning: .env line $n is not KEY=VALUE; ignored"
      continue
    fi
    key="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]}"
    if [[ "$value" =~ ^\"(.*)\"[[:space:]]*$ || "$value" =~ ^\'(.*)\'[[:space:]]*$ ]]; then
      value="${BASH_REMATCH[1]}"
    else
      value="${value%%[[:space:]]#*}"
      value="${value%"${value##*[![:space:]]}"}"
    fi
    if [[ "$key" == ORCH_DATABASE_URL ]]; then
      continue # see the header: the run command picks the database itself
    fi
    if [[ -z "${!key+set}" ]]; then
      export "$key=$value"
    fi
  done <"$file"
}

set_defaults() {
  export ORCH_LOG_LEVEL="${ORCH_LOG_LEVEL:-info}"
  export ORCH_RUNTIME="${ORCH_RUNTIME:-staging}"
  local i svc var
  for i in "${!SERVICES[@]}"; do
    svc="${SERVICES[$i]^^}"
    var="ORCH_${svc}_RPC_URL"
    export "$var=${!var:-tcp://127.0.0.1:$((7701 + i))}"
    var="ORCH_${svc}_HTTP_ADDR"
    export "$var=${!var:-127.0.0.1:$((7711 + i))}"
  done
  # The services finish in-flight requests for ORCH_SHUTDOWN_GRACE_S (default
  # 30 s) after SIGTERM; allow that plus a margin before SIGKILL.
  local grace="${ORCH_SHUTDOWN_GRACE_S:-30}"
  if [[ "$grace" =~ ^[0-9]+$ ]]; then
    STOP_TIMEOUT=$((grace + 10))
  fi
}

rpc_url() {
  local var="ORCH_${1^^}_RPC_URL"
  echo "${!var}"
}

http_addr() {
  local var="ORCH_${1^^}_HTTP_ADDR"
  echo "${!var}"
}

# True when the cluster's owner can traverse into folder $1 (always true when
# not root: the cluster then runs as the caller).
pg_user_can_reach() {
  if [[ "$(id -u)" -ne 0 ]]; then
    return 0
  fi
  id -u postgres >/dev/null 2>&1 || return 1
  (cd / && runuser -u postgres -- test -x "$1") 2>/dev/null
}

choose_run_dir() {
  if [[ -n "${ORCH_RUN_DIR:-}" ]]; then
    RUN_DIR="$(realpath -m -- "$ORCH_RUN_DIR")"
    mkdir -p "$RUN_DIR"
  elif pg_user_can_reach "$ROOT"; then
    RUN_DIR="$ROOT/.orch"
    mkdir -p "$RUN_DIR"
    chmod 0755 "$RUN_DIR"
  else
    local hash
    hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
    RUN_DIR="/tmp/orch-${USER:-$(id -un)}-$hash"
    say "the postgres user cannot reach $ROOT; using $RUN_DIR"
    mkdir -p "$RUN_DIR"
    chmod 0755 "$RUN_DIR"
  fi
  PG_DIR="$RUN_DIR/pg"
  LOG_DIR="$RUN_DIR/logs"
  mkdir -p "$LOG_DIR"
}

build() {
  say "building into $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build "$BUILD_DIR" -j"$(nproc)"
}

check_binaries() {
  local svc bin
  for svc in "${SERVICES[@]}"; do
    bin="$BUILD_DIR/services/$svc/$svc-service"
    [[ -x "$bin" ]] || die "$bin not found: did the build succeed?"
  done
  [[ -x "$ORCHCTL" ]] || die "$ORCHCTL not found: did the build succeed?"
}

start_postgres() {
  if [[ -n "${ORCH_DATABASE_URL:-}" ]]; then
    say "using the database in ORCH_DATABASE_URL; no private cluster"
    return 0
  fi
  "$PGCTL" init "$PG_DIR"
  if ! "$PGCTL" status "$PG_DIR"; then
    "$PGCTL" start "$PG_DIR"
    PG_STARTED=1
  else
    say "PostgreSQL in $PG_DIR is already running; leaving it running at exit"
  fi
  ORCH_DATABASE_URL="$("$PGCTL" url "$PG_DIR")"
  export ORCH_DATABASE_URL
}

# The port at the end of a URL or host:port; empty when there is none.
port_of() {
  local port="${1##*:}"
  port="${port%%/*}"
  [[ "$port" =~ ^[0-9]+$ ]] && echo "$port"
  return 0
}

# Fails early, with a clear message, when a service port is already taken.
check_ports() {
  command -v ss >/dev/null 2>&1 || return 0
  local svc addr port
  for svc in "${SERVICES[@]}"; do
    for addr in "$(rpc_url "$svc")" "$(http_addr "$svc")"; do
      port="$(port_of "$addr")"
      [[ -n "$port" ]] || continue
      if [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]]; then
        die "port $port ($svc: $addr) is already in use; is orch already running?"
      fi
    done
  done
}

start_services() {
  local svc bin log
  for svc in "${SERVICES[@]}"; do
    bin="$BUILD_DIR/services/$svc/$svc-service"
    log="$LOG_DIR/$svc.log"
    if [[ -f "$log" ]]; then
      mv -f "$log" "$log.prev"
    fi
    "$bin" </dev/null >>"$log" 2>&1 &
    SVC_PID[$svc]=$!
  done
}

# pid_alive PID — true while PID runs (a zombie that was not reaped yet does not count).
pid_alive() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "${stat##*) }" != Z* ]]
}

show_log_tail() {
  local svc="$1"
  say "last lines of $LOG_DIR/$svc.log:"
  tail -n 20 "$LOG_DIR/$svc.log" >&2 2>/dev/null || true
}

# Reaps a service that exited on its own and reports it.
reap_dead_service() {
  local svc="$1" pid="${SVC_PID[$1]}" status=0
  wait "$pid" 2>/dev/null || status=$?
  unset "SVC_PID[$svc]"
  say "$svc-service exited unexpectedly (status $status)"
  show_log_tail "$svc"
}

orchctl_health() {
  timeout 10 "$ORCHCTL" health
}

# Waits until every service answers `orchctl health`; fails when one exits.
wait_healthy() {
  local deadline=$((SECONDS + HEALTH_TIMEOUT)) svc
  while ((SECONDS < deadline)); do
    for svc in "${SERVICES[@]}"; do
      if [[ -n "${SVC_PID[$svc]:-}" ]] && ! pid_alive "${SVC_PID[$svc]}"; then
        reap_dead_service "$svc"
        return 1
      fi
    done
    if orchctl_health >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  say "services not healthy after $HEALTH_TIMEOUT s"
  return 1
}

# Writes <run dir>/orchctl.env: the addresses the services were started on
# (and the RPC token and reply cap when set), for `orchctl --config`, which
# then reaches them whatever the caller's shell exports. Mode 0600: it may
# hold the token.
write_orchctl_env() {
  local file="$RUN_DIR/orchctl.env" svc var
  (
    umask 077
    {
      echo "# written by deploy/local/run.sh: orchctl --config $file ..."
      for svc in "${SERVICES[@]}"; do
        var="ORCH_${svc^^}_RPC_URL"
        printf '%s=%s\n' "$var" "${!var}"
      done
      for var in ORCH_RPC_AUTH_TOKEN ORCH_RPC_MAX_MSG_BYTES; do
        if [[ -n "${!var:-}" ]]; then
          printf "%s='%s'\n" "$var" "${!var}"
        fi
      done
    } >"$file"
  )
  ORCHCTL_ENV="$file"
}

print_summary() {
  local svc addr ctl
  echo
  echo "orch is running (run dir $RUN_DIR)"
  echo
  for svc in "${SERVICES[@]}"; do
    addr="$(http_addr "$svc")"
    printf '  %-9s rpc %-24s http://%s/healthz  http://%s/metrics\n' \
      "$svc" "$(rpc_url "$svc")" "$addr" "$addr"
  done
  echo
  echo "Logs:"
  for svc in "${SERVICES[@]}"; do
    printf '  %-9s %s\n' "$svc" "$LOG_DIR/$svc.log"
  done
  if [[ -n "$PG_DIR" && -f "$PG_DIR/postgres.log" ]]; then
    printf '  %-9s %s\n' postgres "$PG_DIR/postgres.log"
  fi
  echo
  echo "Database: $ORCH_DATABASE_URL"
  echo
  # Absolute paths and --config: each line works as printed, from any
  # folder and any shell (tests/integration/run_sh_check.sh runs them).
  ctl="$(printf '%q --config %q' "$ORCHCTL" "$ORCHCTL_ENV")"
  echo "Try:"
  echo "  $ctl health lease --json"
  echo "  $ctl health"
  echo "  $ctl stage pipeline"
  echo "  $ctl lease list"
  echo "  curl -s http://$(http_addr lease)/metrics"
  echo
  echo "Press Ctrl-C to stop."
}

# Sends SIGTERM to every service, waits up to STOP_TIMEOUT s, then SIGKILLs
# the rest. Returns 0 when each stopped by itself with status 0 (or by the
# default SIGTERM action).
stop_services() {
  local svc pid status rc=0 deadline
  for svc in "${!SVC_PID[@]}"; do
    kill -TERM "${SVC_PID[$svc]}" 2>/dev/null || true
  done
  deadline=$((SECONDS + STOP_TIMEOUT))
  for svc in "${SERVICES[@]}"; do
    pid="${SVC_PID[$svc]:-}"
    [[ -n "$pid" ]] || continue
    while pid_alive "$pid" && ((SECONDS < deadline)); do
      sleep 0.1
    done
    if pid_alive "$pid"; then
      say "$svc-service did not stop within $STOP_TIMEOUT s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      rc=1
    fi
    status=0
    wait "$pid" 2>/dev/null || status=$?
    unset "SVC_PID[$svc]"
    if [[ "$status" -ne 0 && "$status" -ne 143 && "$status" -ne 137 ]]; then
      say "$svc-service exited with status $status (see $LOG_DIR/$svc.log)"
      rc=1
    fi
  done
  return "$rc"
}

# Stops whatever this script started; safe to call more than once.
shutdown_all() {
  local rc=0
  PHASE=stopping
  if [[ ${#SVC_PID[@]} -gt 0 ]]; then
    say "stopping services"
    stop_services || rc=1
  fi
  if [[ "$PG_STARTED" -eq 1 ]]; then
    say "stopping PostgreSQL"
    "$PGCTL" stop "$PG_DIR" fast || rc=1
    PG_STARTED=0
  fi
  return "$rc"
}

# shellcheck disable=SC2317 # invoked by trap
on_exit() {
  local status=$?
  trap - EXIT INT TERM HUP
  if ! shutdown_all && [[ "$status" -eq 0 ]]; then
    status=1
  fi
  exit "$status"
}

# In the running phase a signal only ends the wait below; before it, it aborts
# the start (the EXIT trap then stops what was started).
# shellcheck disable=SC2317 # invoked by trap
on_signal() {
  local code="$1"
  STOP_REQUESTED=1
  if [[ "$PHASE" != running ]]; then
    say "interrupted"
    exit "$code"
  fi
}

# Waits for Ctrl-C/SIGTERM, or for a service to exit on its own (a failure).
wait_for_stop() {
  local exited status svc
  PHASE=running
  while [[ "$STOP_REQUESTED" -eq 0 ]]; do
    exited=""
    status=0
    wait -n -p exited "${SVC_PID[@]}" || status=$?
    [[ "$STOP_REQUESTED" -eq 0 ]] || break
    [[ -n "$exited" ]] || continue
    for svc in "${!SVC_PID[@]}"; do
      if [[ "${SVC_PID[$svc]}" == "$exited" ]]; then
        unset "SVC_PID[$svc]"
        say "$svc-service exited unexpectedly (status $status)"
        show_log_tail "$svc"
      fi
    done
    return 1
  done
  return 0
}

main() {
  parse_args "$@"
  trap on_exit EXIT
  trap 'on_signal 130' INT
  trap 'on_signal 143' TERM
  trap 'on_signal 129' HUP

  orch_install_packages || die "could not install the required packages"
  load_dotenv
  set_defaults
  if [[ "$BUILD" -eq 1 ]]; then
    build
  fi
  check_binaries
  check_ports
  choose_run_dir
  start_postgres
  start_services

  if [[ "$MODE" == check ]]; then
    local status=0
    wait_healthy || true
    echo "$ orchctl health"
    orchctl_health || status=$?
    shutdown_all || say "warning: the stop was not clean"
    exit "$status"
  fi

  wait_healthy || die "orch did not start; see the logs in $LOG_DIR"
  write_orchctl_env
  print_summary
  local status=0
  wait_for_stop || status=1
  shutdown_all || status=1
  if [[ "$status" -eq 0 ]]; then
    say "stopped cleanly"
  fi
  exit "$status"
}

main "$@"
