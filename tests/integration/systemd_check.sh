#!/usr/bin/env bash
# systemd_check.sh - checks the units of deploy/systemd/.
#
# Usage: systemd_check.sh SOURCE_DIR BINARY_DIR   (ctest runs it)
#
# 1. Every orch-*.service has the settings docs/operations/deploy.md promises:
#    Type=notify, EnvironmentFile, Restart=on-failure, User=, hardening
#    (NoNewPrivileges=yes, ProtectSystem=) and an ExecStart of one of the four
#    service binaries; the four units exist.
# 2. `systemd-analyze verify` accepts every unit, with ExecStart pointed at the
#    binaries of BINARY_DIR (systemd checks that the program exists). When
#    systemd-analyze is missing, the script says so and fails.
# Exit 0 when both hold.
set -euo pipefail
src="${1:?usage: systemd_check.sh SOURCE_DIR BINARY_DIR}"
bin="${2:?usage: systemd_check.sh SOURCE_DIR BINARY_DIR}"
units="$src/deploy/systemd"
bad=0
complain() {
  echo "systemd_check: FAIL: $*"
  bad=1
}

for svc in lease stage guard launcher; do
  u="$units/orch-$svc.service"
  if [[ ! -f "$u" ]]; then
    complain "$u is missing"
    continue
  fi
  for want in '^Type=notify$' '^EnvironmentFile=' '^Restart=on-failure$' '^User=orch$' \
    '^NoNewPrivileges=yes$' '^ProtectSystem=' '^PrivateTmp=yes$' '^TimeoutStopSec=' \
    "^ExecStart=/usr/local/bin/$svc-service\$"; do
    grep -Eq "$want" "$u" || complain "orch-$svc.service has no line matching $want"
  done
done

tmp="$(mktemp -d /tmp/orch-systemd.XXXXXX)"
trap 'rm -rf -- "$tmp"' EXIT
for u in "$units"/*.service "$units"/*.target; do
  sed -E "s|^ExecStart=/usr/local/bin/([a-z]+)-service|ExecStart=$bin/services/\\1/\\1-service|" \
    "$u" >"$tmp/$(basename "$u")"
done
if ! command -v systemd-analyze >/dev/null 2>&1; then
  complain "systemd-analyze is not installed (package systemd): the units are NOT verified"
else
  out="$(cd "$tmp" && systemd-analyze verify ./*.service ./*.target 2>&1)" || true
  # Lines about units outside deploy/systemd (the host's own) are not ours.
  ours="$(printf '%s\n' "$out" | grep -E '^(\./)?orch[-.]|/orch[-.]' || true)"
  if [[ -n "$ours" ]]; then
    complain "systemd-analyze verify:"
    printf '%s\n' "$ours"
  else
    echo "systemd-analyze verify: $(ls "$tmp" | tr '\n' ' ')accepted"
  fi
fi
exit "$bad"
