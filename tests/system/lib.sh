# lib.sh — helpers the system test scripts source (campaign/campaign.sh,
# failover.sh): timestamped messages, skip and fail exits, reaping a child.
# Sourcing sets T_START, the moment `say` counts from.
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
