#!/usr/bin/env bash
# buf_lint.sh - buf's linter over proto/ (buf.yaml at the checkout root).
#
#   buf_lint.sh install ROOT   installs the pinned buf from the npm registry's
#                              @bufbuild/buf into ROOT/.tools/buf (npm's cache
#                              there too); nothing to do when it is present.
#                              tests/run.sh runs it before the builds.
#   buf_lint.sh check ROOT     runs `buf lint` in ROOT; exits 1 on any
#                              finding, printing them (the ctest lint_buf).
#
# Needs Node.js and npm for `install` (the machine's; no other network).
set -euo pipefail

readonly BUF_VERSION=1.75.0
cmd="${1:?usage: buf_lint.sh install|check ROOT}"
root="$(cd "${2:?usage: buf_lint.sh install|check ROOT}" && pwd)"
dir="$root/.tools/buf"
buf="$dir/node_modules/.bin/buf"

installed() {
  [[ -x "$buf" ]] && [[ "$("$buf" --version 2>/dev/null)" == "$BUF_VERSION" ]]
}

case "$cmd" in
install)
  if installed; then
    echo "buf $BUF_VERSION: present in ${dir#"$root"/}"
    exit 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "buf_lint.sh: npm not found: install Node.js and npm" >&2
    exit 1
  fi
  mkdir -p "$dir"
  npm install --prefix "$dir" --cache "$dir/npm-cache" --save-exact --no-audit --no-fund \
    --loglevel=error "@bufbuild/buf@$BUF_VERSION" </dev/null
  installed || {
    echo "buf_lint.sh: $buf does not run as buf $BUF_VERSION after npm install" >&2
    exit 1
  }
  echo "buf $BUF_VERSION: installed into ${dir#"$root"/}"
  ;;
check)
  if ! installed; then
    echo "buf_lint.sh: buf $BUF_VERSION is not in $dir: run tests/run.sh, or" \
      "bash tests/lint/buf_lint.sh install ." >&2
    exit 1
  fi
  cd "$root"
  # buf prints one line per finding and exits non-zero on any.
  if "$buf" lint; then
    echo "buf lint: no findings in proto/"
  else
    echo "buf lint: the findings above (buf.yaml lists the accepted exceptions)" >&2
    exit 1
  fi
  ;;
*)
  echo "usage: buf_lint.sh install|check ROOT" >&2
  exit 2
  ;;
esac
