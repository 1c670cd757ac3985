#!/usr/bin/env bash
# run.sh — the RPC benchmark in one command: build, a private PostgreSQL
# cluster, the four services on free loopback ports, then rpc_bench.
#
# Usage: tests/bench/run.sh [--no-build] [--no-tls] [rpc_bench options...]
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
#   5. makes throw-away certificates (tests/support/tls_certs.sh) and starts a
#      second lease-service, "lease-tls", with ORCH_TLS_MODE=mutual on its own
#      database and ports (--no-tls skips this and the TLS figure);
#   6. runs build/tests/bench/rpc_bench --lease-url ... --pids ...
#      [--tls-lease-url ... --tls-cert-dir ...] followed by the options given
#      here; its last line compares Check over tcp:// and tls+tcp://.
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
TLS=1
BENCH_ARGS=()

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --no-build) BUILD=0 ;;
      --no-tls) TLS=0 ;;
      -h | --help) usage 0 ;;
      --help-bench)
        [[ -x "$BENCH" ]] || die "$BENCH not built yet: run without --help-bench first"
        "$BENCH" --help
        exit 0
        ;;
      --lease-url* | --pids* | --tls-lease-url* | --tls-cert-dir*)
        say "$1 is set by this script"
        usage 2
        ;;
      *) BENCH_ARGS+=("$1") ;;
    esac
    shift
  done
}

# Starts lease-service with mutual TLS on a database of its own (a second
# lease-service on the first one's database would be a second host) and
# waits until it answers over TLS. Sets TLS_URL and CERT_DIR.
start_tls_lease() {
  CERT_DIR="$LOG_DIR/certs"
  bash "$ROOT/tests/support/tls_certs.sh" "$CERT_DIR" || die "tls_certs.sh failed"
  psql -X -q "$ORCH_DATABASE_URL" -c "CREATE DATABASE orch_tls" >/dev/null ||
    die "cannot create database orch_tls"
  local -a ports
  mapfile -t ports < <(free_ports 2)
  TLS_URL="tcp://127.0.0.1:${ports[0]}"
  local -a tls_env=(ORCH_TLS_MODE=mutual "ORCH_TLS_CA_FILE=$CERT_DIR/ca.pem")
  env "ORCH_DATABASE_URL=$("$PGCTL" url "$PG_DIR" orch_tls)" "ORCH_LEASE_RPC_URL=$TLS_URL" \
    "ORCH_LEASE_HTTP_ADDR=127.0.0.1:${ports[1]}" "${tls_env[@]}" \
    "ORCH_TLS_CERT_FILE=$CERT_DIR/server.pem" "ORCH_TLS_KEY_FILE=$CERT_DIR/server.key" \
    "$BUILD_DIR/services/lease/lease-service" >"$LOG_DIR/lease-tls.log" 2>&1 &
  SVC_PID[lease-tls]=$!
  local deadline=$((SECONDS + HEALTH_TIMEOUT))
  while ((SECONDS < deadline)); do
    alive "${SVC_PID[lease-tls]}" || { show_log lease-tls; die "lease-tls exited during start-up"; }
    if env "${tls_env[@]}" ORCH_TLS_CERT_FILE="$CERT_DIR/operator.pem" \
      ORCH_TLS_KEY_FILE="$CERT_DIR/operator.key" ORCH_LEASE_RPC_URL="$TLS_URL" \
      "$ORCHCTL" --timeout 1000 health lease >/dev/null 2>&1; then
      say "lease-tls (mutual TLS) at $TLS_URL is SERVING"
      return 0
    fi
    sleep 0.2
  done
  show_log lease-tls
  die "lease-tls was not healthy within $HEALTH_TIMEOUT s"
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
  local -a tls_args=()
  if [[ "$TLS" -eq 1 ]]; then
    start_tls_lease
    tls_args=(--tls-lease-url "$TLS_URL" --tls-cert-dir "$CERT_DIR")
  fi
  say "running $BENCH${BENCH_ARGS[*]:+ ${BENCH_ARGS[*]}}"
  run_bench "$BENCH" --lease-url "$ORCH_LEASE_RPC_URL" --pids "$pids" "${tls_args[@]}" \
    "${BENCH_ARGS[@]}"
}

main "$@"
