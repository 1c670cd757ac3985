#!/usr/bin/env bash
# systemd_check.sh - checks the units of deploy/systemd/.
#
# Usage: systemd_check.sh SOURCE_DIR BINARY_DIR   (ctest runs it)
#
# 1. Every orch-*.service has the settings docs/operations/deploy.md promises:
#    Type=notify, EnvironmentFile, Restart=on-failure, User=, hardening
#    (NoNewPrivileges=yes, ProtectSystem=) and an ExecStart of one of the four
#    service binaries; the four units exist.
#    Each has PartOf=orch.target (stop and restart of the target reach it)
#    and requires orch-migrate.service, a oneshot running --migrate-only;
#    orch.target wants all five.
# 2. `systemd-analyze verify` accepts every unit, with ExecStart pointed at the
#    binaries of BINARY_DIR (systemd checks that the program exists). When
#    systemd-analyze is missing, the script says so and fails.
# 3. `cmake --install BINARY_DIR` into a DESTDIR puts a file at every
#    /usr/local path the units name (ExecStart, Documentation=file://) and
#    installs the units themselves.
# Exit 0 when all hold.
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
    "^ExecStart=/usr/local/bin/$svc-service\$" '^PartOf=orch\.target$' \
    '^Requires=orch-migrate\.service$' '^After=.*orch-migrate\.service'; do
    grep -Eq "$want" "$u" || complain "orch-$svc.service has no line matching $want"
  done
  grep -Eq "^Wants=.*orch-$svc\.service" "$units/orch.target" ||
    complain "orch.target does not want orch-$svc.service"
done
m="$units/orch-migrate.service"
for want in '^Type=oneshot$' '^RemainAfterExit=yes$' '^EnvironmentFile=/etc/orch/orch\.env$' \
  '^User=orch$' '^PartOf=orch\.target$' '^ExecStart=/usr/local/bin/lease-service --migrate-only$'; do
  grep -Eq "$want" "$m" || complain "orch-migrate.service has no line matching $want"
done
grep -Eq '^Wants=.*orch-migrate\.service' "$units/orch.target" ||
  complain "orch.target does not want orch-migrate.service"

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

# 3. The install rules put every file the units name where they name it.
if ! command -v cmake >/dev/null 2>&1; then
  complain "cmake is not installed: the install rules are NOT checked"
else
  dest="$tmp/root"
  if ! out="$(DESTDIR="$dest" cmake --install "$bin" --prefix /usr/local 2>&1)"; then
    complain "cmake --install failed:"
    printf '%s\n' "$out"
  fi
  for u in "$units"/*.service "$units"/*.target; do
    name="$(basename "$u")"
    [[ -f "$dest/usr/local/lib/systemd/system/$name" ]] ||
      complain "cmake --install did not install $name into /usr/local/lib/systemd/system"
    while read -r path; do
      [[ -e "$dest$path" ]] || complain "$name names $path, which cmake --install does not install"
    done < <(grep -Eo '^(ExecStart=|Documentation=file://)/usr/local/[^ ]+' "$u" |
      sed -E 's/^(ExecStart=|Documentation=file:\/\/)//')
  done
  [[ -x "$dest/usr/local/bin/orchctl" ]] || complain "cmake --install did not install orchctl"
  [[ -f "$dest/usr/local/share/bash-completion/completions/orchctl" ]] ||
    complain "cmake --install did not install orchctl's completion"
  [[ "$bad" -eq 0 ]] && echo "cmake --install: every path the units name is installed"
fi
exit "$bad"
