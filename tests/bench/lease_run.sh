#!/usr/bin/env bash
# lease_run.sh — the lease benchmark in one command: build, a private
# PostgreSQL cluster, lease-service on free loopback ports, then lease_bench,
# once for each lease-service configuration asked for.
#
# Usage: tests/bench/lease_run.sh [--no-build] [--configs W/P,...] [--wait-load L]
#                                 [lease_bench options...]
#   e.g. tests/bench/lease_run.sh
#        tests/bench/lease_run.sh --configs 4/4,8/8,16/16 --rounds 5
#        tests/bench/lease_run.sh --configs 8/8 --scale 2000
#   (tests/bench/lease_run.sh --help-bench lists lease_bench's options)
#
# A configuration W/P runs lease-service with ORCH_RPC_WORKERS=W and
# ORCH_DB_POOL_SIZE=P. Without --configs there are two: one taken from those
# two variables of the environment, else the service's defaults (8/8), and
# 16/16 (one caller per worker and connection at 16 callers); only one when
# the first is 16/16. lease_bench's --scale N (the scale mode,
# docs/operations/benchmarks.md) runs in each configuration like the others.
#
# Steps:
#   1. configures build/ (RelWithDebInfo, tests and bench on) and builds
#      lease-service, orchctl and lease_bench with -j2; the build log goes to
#      a file, shown only when the build fails (--no-build skips this step);
#   2. starts a private PostgreSQL cluster with tests/support/pgctl.sh in a
#      fresh mktemp -d folder under /tmp;
#   3. for each configuration, in the order given: creates a fresh database;
#      starts build/services/lease/lease-service on it, on two free ports of
#      127.0.0.1, with ORCH_HOST_ID=bench-host, ORCH_LOG_LEVEL=warn,
#      ORCH_LEASE_REAPER_INTERVAL_MS=60000 and the configuration; waits (at
#      most 60 s) until `orchctl health lease` exits 0 (three start attempts
#      on new ports); with --wait-load L, waits (at most 600 s) until the
#      1-minute load average is below L; runs build/tests/bench/lease_bench
#      against it, with the service's pid, its /metrics address and the
#      postmaster's pid, followed by the options given here; stops the
#      service.
# Whatever happens, the service then gets SIGTERM (SIGKILL after 20 s) and the
# cluster is destroyed. Service logs are kept (and their folder named) only
# when something failed.
#
# Output: per configuration, a line "== lease-service with ORCH_RPC_WORKERS=W
# ORCH_DB_POOL_SIZE=P ==" then lease_bench's figures on stdout (with --json,
# lease_bench's JSON alone: one document per configuration); this script's
# progress lines, with the load average, on stderr. Exit status: 0 when every
# lease_bench run exited 0 (the figures never decide it), else the first
# non-zero one; 1 when an earlier step failed, 2 on bad usage, 130/143 when
# interrupted by SIGINT/SIGTERM. Works as root (the cluster then runs as the
# postgres user). ORCH_BENCH_BUILD_DIR overrides the build folder.

set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
readonly BUILD_DIR="${ORCH_BENCH_BUILD_DIR:-$ROOT/build}"
readonly BENCH="$BUILD_DIR/tests/bench/lease_bench"
readonly PSQL="${ORCH_PG_BINDIR:-/usr/lib/postgresql/15/bin}/psql"
readonly SERVICES=(lease)
readonly BUILD_TARGETS=(lease_bench orchctl lease-service)
readonly HEALTH_ARGS=(lease)
readonly HEALTHY_MSG="lease-service is SERVING"
readonly BENCH_NAME=lease_bench
readonly LOAD_WAIT=600 # seconds --wait-load waits at most

# shellcheck source=tests/bench/bench_lib.sh
. "$ROOT/tests/bench/bench_lib.sh"

BUILD=1
JSON=0
WAIT_LOAD=""
CONFIGS=()
BENCH_ARGS=()

parse_configs() {
  local c
  IFS=, read -r -a CONFIGS <<<"$1"
  [[ ${#CONFIGS[@]} -gt 0 ]] || usage 2
  for c in "${CONFIGS[@]}"; do
    if [[ ! "$c" =~ ^[0-9]+/[0-9]+$ ]]; then
      say "--configs: '$c' is not WORKERS/POOL"
      usage 2
    fi
  done
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
      --configs)
        [[ $# -ge 2 ]] || usage 2
        parse_configs "$2"
        shift
        ;;
      --wait-load)
        [[ $# -ge 2 && "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage 2
        WAIT_LOAD="$2"
        shift
        ;;
      --service-url* | --metrics-addr* | --database-url* | --service-pid* | --pg-pid* | \
        --host-id* | --label*)
        say "$1 is set by this script"
        usage 2
        ;;
      --json)
        JSON=1
        BENCH_ARGS+=("$1")
        ;;
      *) BENCH_ARGS+=("$1") ;;
    esac
    shift
  done
  if [[ ${#CONFIGS[@]} -eq 0 ]]; then
    CONFIGS=("${ORCH_RPC_WORKERS:-8}/${ORCH_DB_POOL_SIZE:-8}")
    [[ "${CONFIGS[0]}" == 16/16 ]] || CONFIGS+=(16/16)
  fi
}

load1() {
  cut -d' ' -f1 /proc/loadavg
}

# With --wait-load, waits until the 1-minute load average is below the limit,
# at most LOAD_WAIT s; goes on anyway afterwards.
wait_for_low_load() {
  [[ -n "$WAIT_LOAD" ]] || return 0
  local deadline=$((SECONDS + LOAD_WAIT)) told=0
  while ((SECONDS < deadline)); do
    if awk -v l="$(load1)" -v max="$WAIT_LOAD" 'BEGIN { exit !(l < max) }'; then
      return 0
    fi
    if [[ "$told" -eq 0 ]]; then
      say "load average $(load1) is not below $WAIT_LOAD; waiting (at most $LOAD_WAIT s)"
      told=1
    fi
    sleep 5
  done
  say "load average still $(load1) after $LOAD_WAIT s; measuring anyway"
}

# Creates database $1 in the cluster and points ORCH_DATABASE_URL at it.
fresh_database() {
  "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$("$PGCTL" url "$PG_DIR")" \
    -c "CREATE DATABASE $1" >&2 || die "could not create database $1"
  ORCH_DATABASE_URL="$("$PGCTL" url "$PG_DIR" "$1")"
  export ORCH_DATABASE_URL
}

# Runs lease_bench against lease-service configured as $1 (W/P), config
# number $2; returns lease_bench's exit status.
run_config() {
  local workers="${1%/*}" pool="${1#*/}" n="$2" label pg_pid
  label="ORCH_RPC_WORKERS=$workers ORCH_DB_POOL_SIZE=$pool"
  fresh_database "lease_bench_$n"
  export ORCH_HOST_ID=bench-host ORCH_LEASE_REAPER_INTERVAL_MS=60000 ORCH_RUNTIME=test
  export ORCH_RPC_WORKERS="$workers" ORCH_DB_POOL_SIZE="$pool"
  say "configuration $n of ${#CONFIGS[@]}: lease-service with $label"
  start_and_wait
  pg_pid="$(head -n 1 "$PG_DIR/data/postmaster.pid")"
  wait_for_low_load
  say "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  [[ "$JSON" -eq 1 ]] || printf '== lease-service with %s ==\n' "$label"
  say "running $BENCH${BENCH_ARGS[*]:+ ${BENCH_ARGS[*]}}"
  local rc=0
  run_bench "$BENCH" --service-url "$ORCH_LEASE_RPC_URL" \
    --metrics-addr "$ORCH_LEASE_HTTP_ADDR" --database-url "$ORCH_DATABASE_URL" \
    --service-pid "${SVC_PID[lease]}" --pg-pid "$pg_pid" --host-id "$ORCH_HOST_ID" \
    --label "$label" "${BENCH_ARGS[@]}" || rc=$?
  stop_services
  [[ "$JSON" -eq 1 ]] || printf '\n'
  return "$rc"
}

main() {
  parse_args "$@"
  install_traps
  if [[ "$BUILD" -eq 1 ]]; then
    build
  fi
  local f
  for f in "$BENCH" "$ORCHCTL" "$PGCTL" "$PSQL"; do
    [[ -x "$f" ]] || die "$f is missing"
  done
  start_pg
  local i rc=0 status
  for i in "${!CONFIGS[@]}"; do
    status=0
    run_config "${CONFIGS[$i]}" $((i + 1)) || status=$?
    [[ "$rc" -ne 0 ]] || rc="$status"
  done
  return "$rc"
}

main "$@"
