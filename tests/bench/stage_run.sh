#!/usr/bin/env bash
# stage_run.sh — the stage benchmark in one command: build, a private
# PostgreSQL cluster, lease-service and stage-service on free loopback ports,
# then stage_bench.
#
# Usage: tests/bench/stage_run.sh [--no-build] [stage_bench options...]
#   e.g. tests/bench/stage_run.sh
#        tests/bench/stage_run.sh --quick
#        tests/bench/stage_run.sh --rounds 5 --ops 1000
#   (tests/bench/stage_run.sh --help-bench lists stage_bench's options)
#
# Steps:
#   1. configures build/ (RelWithDebInfo, tests and bench on) and builds
#      lease-service, stage-service, orchctl and stage_bench with -j2; the
#      build log goes to a file, shown only when the build fails (--no-build
#      skips this step);
#   2. starts a private PostgreSQL cluster with tests/support/pgctl.sh in a
#      fresh mktemp -d folder under /tmp, and creates database stage_bench;
#   3. picks a free port of 127.0.0.1 for the hook imitation that stage_bench
#      serves, and starts lease-service and stage-service on four more, with
#      ORCH_HOST_ID=bench-host, ORCH_LOG_LEVEL=warn, the lease applying to
#      the benchmark's repo (ORCH_TRANSITION_LEASE_REPOS=bench/app), the
#      image and deploy hooks pointed at stage_bench, the reconciler off and
#      the services' default workers and pool (ORCH_RPC_WORKERS and
#      ORCH_DB_POOL_SIZE of the environment apply to both); waits (at most
#      60 s, three start attempts on new ports) until `orchctl health lease
#      stage` exits 0;
#   4. runs build/tests/bench/stage_bench against them with the options given
#      here (the service, the same transition sent directly over libpq, and
#      the bare CAS; commits per transition read from the WAL with
#      pg_walinspect, which this private cluster's superuser may create);
#      stops the services.
# Whatever happens, the services then get SIGTERM (SIGKILL after 20 s) and the
# cluster is destroyed. Service logs are kept (and their folder named) only
# when something failed.
#
# Output: stage_bench's figures on stdout; this script's progress lines on
# stderr. Exit status: stage_bench's (0 when every call and check succeeded;
# the figures never decide it); 1 when an earlier step failed, 2 on bad usage,
# 130/143 when interrupted by SIGINT/SIGTERM. Works as root (the cluster then
# runs as the postgres user). ORCH_BENCH_BUILD_DIR overrides the build folder.

set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
readonly BUILD_DIR="${ORCH_BENCH_BUILD_DIR:-$ROOT/build}"
readonly BENCH="$BUILD_DIR/tests/bench/stage_bench"
readonly PSQL="${ORCH_PG_BINDIR:-/usr/lib/postgresql/15/bin}/psql"
readonly SERVICES=(lease stage)
readonly BUILD_TARGETS=(stage_bench orchctl lease-service stage-service)
readonly HEALTH_ARGS=(lease stage)
readonly HEALTHY_MSG="lease-service and stage-service are SERVING"
readonly BENCH_NAME=stage_bench
readonly REPO=bench/app

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
      --service-url* | --database-url* | --hook-port* | --repo*)
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
  for f in "$BENCH" "$ORCHCTL" "$PGCTL" "$PSQL"; do
    [[ -x "$f" ]] || die "$f is missing"
  done
  start_pg
  "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$ORCH_DATABASE_URL" \
    -c "CREATE DATABASE stage_bench" >&2 || die "could not create database stage_bench"
  ORCH_DATABASE_URL="$("$PGCTL" url "$PG_DIR" stage_bench)"
  export ORCH_DATABASE_URL

  local hook_port
  hook_port="$(free_ports 1)"
  [[ -n "$hook_port" ]] || die "could not find a free port for the hooks"
  export ORCH_HOST_ID=bench-host ORCH_LEASE_REAPER_INTERVAL_MS=60000
  export ORCH_TRANSITION_LEASE_REPOS="$REPO"
  export ORCH_DEPLOY_HOOK_URL="http://127.0.0.1:$hook_port/hooks/deploy"
  export ORCH_IMAGE_HOOK_URL="http://127.0.0.1:$hook_port/hooks/image"
  export ORCH_RECONCILER_INTERVAL_MS=0 ORCH_EFFECT_TIMEOUT_MS=5000
  start_and_wait
  say "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  say "running $BENCH${BENCH_ARGS[*]:+ ${BENCH_ARGS[*]}}"
  local rc=0
  run_bench "$BENCH" --service-url "$ORCH_STAGE_RPC_URL" --database-url "$ORCH_DATABASE_URL" \
    --hook-port "$hook_port" --repo "$REPO" "${BENCH_ARGS[@]}" || rc=$?
  stop_services
  return "$rc"
}

main "$@"
