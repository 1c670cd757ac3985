#!/usr/bin/env bash
# man_check.sh - the manual pages that cmake/Man.cmake generates with
# help2man render, orchctl.1 names every top-level command of orchctl's
# command table, and `cmake --install` puts them in share/man/man1.
#
# Usage: man_check.sh SOURCE_DIR BINARY_DIR   (ctest runs it)
#
# help2man is in deploy/local/packages.sh, so the test command installs it
# before configuring; a build without it has no pages, and this check fails.
set -euo pipefail
bin="${2:?usage: man_check.sh SOURCE_DIR BINARY_DIR}"
ctl="$bin/tools/orchctl/orchctl"
pages=(orchctl lease-service stage-service guard-service launcher-service)
bad=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for p in "${pages[@]}"; do
  f="$bin/man/$p.1"
  if [[ ! -s "$f" ]]; then
    echo "man_check: FAIL: $f missing (was help2man found when the build was configured?)"
    bad=1
    continue
  fi
  # man -l renders the file itself; warnings of groff go to stderr.
  if ! MANWIDTH=200 man -l "$f" >"$tmp/$p.txt" 2>"$tmp/$p.err" || [[ -s "$tmp/$p.err" ]]; then
    echo "man_check: FAIL: man -l $f: $(cat "$tmp/$p.err")"
    bad=1
    continue
  fi
  col -bx <"$tmp/$p.txt" >"$tmp/$p.plain"
  if ! grep -qE "^ +$p - " "$tmp/$p.plain" || ! grep -qE "^ +usage: $p " "$tmp/$p.plain"; then
    echo "man_check: FAIL: $p.1 has no NAME line or no usage line:"
    head -20 "$tmp/$p.plain"
    bad=1
  fi
  echo "$p.1: $(wc -l <"$tmp/$p.plain") lines rendered"
done

# Every top-level command of the table (`orchctl __complete`, first line)
# starts a line of orchctl.1's commands.
commands="$("$ctl" __complete | head -1 | cut -f2 | tr ' ' '\n' | grep -v '^-' | sed '/^$/d')"
n=0
for c in $commands; do
  n=$((n + 1))
  if ! grep -qE "^ +$c( |$)" "$tmp/orchctl.plain" 2>/dev/null; then
    echo "man_check: FAIL: orchctl.1 does not list the command '$c'"
    bad=1
  fi
done
if ((n < 5)); then
  echo "man_check: FAIL: orchctl __complete listed only $n commands"
  bad=1
fi
echo "orchctl.1 lists the $n commands of the table"

# cmake --install puts the pages in share/man/man1.
DESTDIR="$tmp/root" cmake --install "$bin" --prefix /usr/local >"$tmp/install.log" 2>&1 ||
  { echo "man_check: FAIL: cmake --install: $(tail -5 "$tmp/install.log")"; bad=1; }
for p in "${pages[@]}"; do
  if [[ ! -s "$tmp/root/usr/local/share/man/man1/$p.1" ]]; then
    echo "man_check: FAIL: cmake --install did not install share/man/man1/$p.1"
    bad=1
  fi
done
exit "$bad"
