# lib.sh — helpers the system test scripts source (campaign/campaign.sh,
# failover.sh): timestamped messages, skip and fail exits, reaping a child,
# and the programs both run (campaign_programs). Sourcing sets T_START, the
# moment `say` counts from.
# shellcheck shell=bash

T_START="$(date +%s%3N)"
now_ms() { date +%s%3N; }
say() { printf '[%6.1fs] %s\n' "$(($(now_ms) - T_START))e-3" "$*"; }
skip() { # skip REASON: CTest's SKIP_RETURN_CODE
  echo "SKIP: $*"
  exit 77
}
die() {
  say "FAIL: $*"
  exit 1
}
kill_wait() { # kill_wait SIGNAL PID: signal a child of this shell and reap it
  [[ -n "$2" ]] || return 0
  kill "-$1" "$2" 2>/dev/null || true
  wait "$2" 2>/dev/null || true
}
# campaign_programs [PG_TOOL...]: the programs of the fault campaign and the
# failover test, from SRC_DIR and BUILD (set by the caller). Sets LEASE_BIN,
# STAGE_BIN, ORCHCTL, SINK_BIN, PGCTL, PG_BINDIR (ORCH_PG_BINDIR, default
# PostgreSQL 15's) and PYTHON, read-only. Fails when one of ours is not
# built; skips without jq, python3, or PG_BINDIR's initdb, pg_ctl, postgres,
# psql and the extra PG_TOOLs.
# shellcheck disable=SC2034 # the sourcing scripts read them
campaign_programs() {
  declare -gr LEASE_BIN="$BUILD/services/lease/lease-service"
  declare -gr STAGE_BIN="$BUILD/services/stage/stage-service"
  declare -gr ORCHCTL="$BUILD/tools/orchctl/orchctl"
  declare -gr SINK_BIN="$BUILD/tests/system/campaign/orch-campaign-sink"
  declare -gr PGCTL="$SRC_DIR/tests/support/pgctl.sh"
  declare -gr PG_BINDIR="${ORCH_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
  local b tool py
  for b in "$LEASE_BIN" "$STAGE_BIN" "$ORCHCTL" "$SINK_BIN"; do
    [[ -x "$b" ]] || die "$b not found (build first, or pass the build folder as \$1)"
  done
  command -v jq >/dev/null 2>&1 || skip "jq is not installed"
  py="$(command -v /usr/bin/python3 || command -v python3 || true)"
  declare -gr PYTHON="$py"
  [[ -n "$PYTHON" ]] || skip "python3 is not installed (the history checker)"
  for tool in initdb pg_ctl postgres psql "$@"; do
    [[ -x "$PG_BINDIR/$tool" ]] || skip "PostgreSQL 15 not installed ($PG_BINDIR/$tool missing)"
  done
}
