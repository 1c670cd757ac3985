#!/usr/bin/env bash
# pg_fixture.sh - the CTest fixture around the shared test cluster.
#   pg_fixture.sh setup FILE    write the cluster folder into FILE; create and
#                               start a cluster unless ORCH_TEST_PG_DIR names one
#   pg_fixture.sh cleanup FILE  destroy the cluster if setup created it
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:?usage: pg_fixture.sh setup|cleanup FILE}"
file="${2:?usage: pg_fixture.sh setup|cleanup FILE}"

case "$cmd" in
setup)
  if [ -n "${ORCH_TEST_PG_DIR:-}" ]; then
    bash "$here/pgctl.sh" status "$ORCH_TEST_PG_DIR" >/dev/null
    printf '%s\n' "$ORCH_TEST_PG_DIR" >"$file"
    rm -f "$file.owned"
  else
    dir="$(mktemp -d /tmp/orch-test-pg.XXXXXX)"
    bash "$here/pgctl.sh" init "$dir" >/dev/null
    bash "$here/pgctl.sh" start "$dir" >/dev/null
    printf '%s\n' "$dir" >"$file"
    : >"$file.owned"
  fi
  echo "test cluster: $(cat "$file")"
  ;;
cleanup)
  if [ -f "$file.owned" ] && [ -s "$file" ]; then
    bash "$here/pgctl.sh" destroy "$(cat "$file")"
    rm -f "$file" "$file.owned"
  fi
  ;;
*)
  echo "usage: pg_fixture.sh setup|cleanup FILE" >&2
  exit 2
  ;;
esac
