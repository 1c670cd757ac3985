#!/usr/bin/env bash
# run.sh — the test command: everything CI checks, in one run.
#
# Usage: tests/run.sh          (from anywhere; CI calls it through .ci/run)
#
# Steps:
#   1. installs the missing Debian packages (deploy/local/packages.sh), and
#      buf, pinned, from the npm registry into .tools/buf with npm's cache
#      there too (tests/lint/buf_lint.sh install; the ctest lint_buf runs it);
#   2. format check: clang-format --dry-run --Werror over every *.c/*.h under
#      shared/ services/ tools/ tests/ (build folders excluded), with the
#      checkout's .clang-format;
#   3. build/ with warnings as errors, then ctest;
#   4. build-asan/ with ASan+UBSan and warnings as errors, then ctest with the
#      sanitizers set to abort on the first report; then greps the ctest output,
#      every test log and the service logs for sanitizer reports (a
#      LeakSanitizer report does not fail a Criterion test by itself);
#   5. build-release/ as deploy/Dockerfile builds it (Release, no tests,
#      warnings as errors);
#   6. build-fuzz/ with clang and libFuzzer, then every fuzz target for
#      ORCH_FUZZ_RUNS executions (default 50000) from its seed corpus
#      (tests/fuzz/run.sh); fails on any crash, leak or sanitizer report.
# Each ctest run gets a fresh private PostgreSQL cluster (tests/support/pgctl.sh,
# in a mktemp -d folder under /tmp) that is destroyed afterwards.
#
# Environment given to the tests (see tests/support/README.md):
#   ORCH_TEST_PG_DIR     the running cluster's folder (pgctl.sh DIR)
#   ORCH_TEST_PG_URL     postgresql://orch@127.0.0.1:PORT/orch for that cluster
#   ORCH_TEST_PGCTL      absolute path of tests/support/pgctl.sh
#   ORCH_TEST_LOG_DIR    a fresh folder for the logs of services the tests start
#
# Every step runs even when an earlier one failed, so one run reports all
# failures. The output ends with the last ctest run's summary lines ("N% tests
# passed, ..." and "Total Test time"); the exit status is 0 only when every step
# passed. Each test is limited to 300 s and each ctest run to
# ORCH_CTEST_TOTAL_TIMEOUT s (default 1500). Runs without a terminal or stdin,
# as root or not.

set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/local/packages.sh
source "$ROOT/deploy/local/packages.sh"

readonly PGCTL="$ROOT/tests/support/pgctl.sh"
readonly TEST_TIMEOUT=300
readonly CTEST_TOTAL_TIMEOUT="${ORCH_CTEST_TOTAL_TIMEOUT:-1500}"
readonly SANITIZER_PATTERN='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:'
readonly FORMAT_DIRS=(shared services tools tests)
readonly FUZZ_RUNS="${ORCH_FUZZ_RUNS:-50000}"

FAILURES=()         # one line per failed step
STATUS_LINES=()     # one line per step, printed in the closing summary
LAST_CTEST_LOG=""   # the log of the last ctest run
FAILED_CTEST_LOG="" # the log of the first ctest run that failed
LOG_ROOT=""         # holds ORCH_TEST_LOG_DIR of each ctest run
CURRENT_PG=""       # the cluster of the ctest run in progress, if any

section() {
  printf '\n==> %s\n' "$*"
}

step_ok() {
  STATUS_LINES+=("ok      $1")
}

step_failed() {
  FAILURES+=("$1")
  STATUS_LINES+=("FAILED  $1")
  printf 'FAILED: %s\n' "$1"
}

# Destroys the private cluster of the current ctest run, if one exists.
destroy_pg() {
  if [[ -n "$CURRENT_PG" ]]; then
    "$PGCTL" destroy "$CURRENT_PG" || true
    CURRENT_PG=""
  fi
}

# shellcheck disable=SC2317 # invoked by trap
on_exit() {
  local status=$?
  trap - EXIT
  destroy_pg
  exit "$status"
}

# shellcheck disable=SC2317 # invoked by trap
on_signal() {
  echo "tests/run.sh: interrupted" >&2
  exit "$1"
}

install_packages() {
  section "packages"
  if orch_install_packages; then
    step_ok "packages"
  else
    step_failed "packages: could not install the required Debian packages"
  fi
}

install_buf() {
  section "buf (npm: @bufbuild/buf into .tools/buf)"
  if bash "$ROOT/tests/lint/buf_lint.sh" install "$ROOT"; then
    step_ok "buf: installed"
  else
    step_failed "buf: could not install buf from the npm registry"
  fi
}

format_check() {
  section "format check (clang-format --dry-run --Werror)"
  if [[ ! -f "$ROOT/.clang-format" ]]; then
    step_failed "format: no .clang-format at the checkout root"
    return 0
  fi
  local -a dirs=() files=()
  local d
  for d in "${FORMAT_DIRS[@]}"; do
    if [[ -d "$d" ]]; then
      dirs+=("$d")
    fi
  done
  if [[ ${#dirs[@]} -gt 0 ]]; then
    mapfile -d '' files < <(find "${dirs[@]}" \
      \( -type d \( -name 'build' -o -name 'build-*' -o -name '.orch' \) -prune \) \
      -o -type f \( -name '*.c' -o -name '*.h' \) -print0 | sort -z)
  fi
  if [[ ${#files[@]} -eq 0 ]]; then
    echo "no C sources found"
    step_ok "format: no C sources"
    return 0
  fi
  if printf '%s\0' "${files[@]}" | xargs -0 clang-format --style=file --dry-run --Werror; then
    echo "${#files[@]} files are formatted"
    step_ok "format: ${#files[@]} files"
  else
    step_failed "format: files above need clang-format -i"
  fi
}

# configure_and_build NAME DIR CMAKE_ARGS... — returns non-zero on failure.
configure_and_build() {
  local name="$1" dir="$2"
  shift 2
  section "$name: configure and build into ${dir#"$ROOT"/}"
  if ! cmake -S "$ROOT" -B "$dir" "$@"; then
    step_failed "$name: cmake configure"
    return 1
  fi
  if ! cmake --build "$dir" -j"$(nproc)"; then
    step_failed "$name: build"
    return 1
  fi
  step_ok "$name: compiled"
}

# Prints the ctest summary lines ("N% tests passed, ..." and "Total Test
# time") found in a ctest log.
ctest_summary() {
  grep -E '^[0-9]+% tests passed|^Total Test time' "$1" 2>/dev/null || true
}

# run_ctest NAME DIR [VAR=VALUE...] — runs ctest in DIR against a fresh private
# cluster, with the given extra environment; output goes to the terminal and to
# DIR/ctest.log. Returns non-zero when a test failed.
run_ctest() {
  local name="$1" dir="$2"
  shift 2
  local log="$dir/ctest.log" rc=0
  section "$name: ctest"

  CURRENT_PG="$(mktemp -d /tmp/orch-test-pg.XXXXXX)"
  if ! "$PGCTL" init "$CURRENT_PG" || ! "$PGCTL" start "$CURRENT_PG"; then
    step_failed "$name: could not start the test PostgreSQL cluster"
    destroy_pg
    return 1
  fi
  export ORCH_TEST_PG_DIR="$CURRENT_PG"
  ORCH_TEST_PG_URL="$("$PGCTL" url "$CURRENT_PG")"
  export ORCH_TEST_PG_URL
  export ORCH_TEST_PGCTL="$PGCTL"
  export ORCH_TEST_LOG_DIR="$LOG_ROOT/$name"
  mkdir -p "$ORCH_TEST_LOG_DIR"

  # timeout(1) runs ctest in a process group of its own, which it kills whole
  # when time runs out; on a terminal it must stay in the foreground group
  # instead, so that Ctrl-C reaches ctest and the tests.
  local -a limit=(timeout -k 30)
  if [[ -t 1 ]]; then
    limit+=(--foreground)
  fi
  "${limit[@]}" "$CTEST_TOTAL_TIMEOUT" env "$@" ctest --test-dir "$dir" \
    --output-on-failure -j2 --timeout "$TEST_TIMEOUT" --no-tests=error 2>&1 |
    tee "$log" || rc=${PIPESTATUS[0]}
  LAST_CTEST_LOG="$log"
  if [[ "$rc" -ne 0 && -z "$FAILED_CTEST_LOG" ]]; then
    FAILED_CTEST_LOG="$log"
  fi

  if [[ "$rc" -eq 0 ]]; then
    step_ok "$name: $(ctest_summary "$log" | head -n 1)"
  else
    if [[ "$rc" -eq 124 || "$rc" -eq 137 ]]; then
      step_failed "$name: ctest ran over $CTEST_TOTAL_TIMEOUT s"
    else
      step_failed "$name: ctest exited $rc; $(ctest_summary "$log" | head -n 1)"
    fi
    echo "--- last lines of the test cluster's log ($CURRENT_PG/postgres.log) ---"
    tail -n 80 "$CURRENT_PG/postgres.log" 2>/dev/null || true
    echo "--- end of postgres.log ---"
  fi
  destroy_pg
  unset ORCH_TEST_PG_DIR ORCH_TEST_PG_URL
  return "$rc"
}

# Greps the ctest output, ctest's per-test logs and the service logs of the
# sanitized run for sanitizer reports; prints the hits and fails on any.
sanitizer_grep() {
  local dir="$1" logdir="$2" hits
  section "sanitizer reports"
  local -a sources=()
  local f
  for f in "$dir/ctest.log" "$dir/Testing/Temporary" "$logdir"; do
    if [[ -e "$f" ]]; then
      sources+=("$f")
    fi
  done
  if [[ ${#sources[@]} -eq 0 ]]; then
    step_failed "sanitizers: no logs to search"
    return 1
  fi
  hits="$(grep -rInE -- "$SANITIZER_PATTERN" "${sources[@]}" || true)"
  if [[ -z "$hits" ]]; then
    echo "none in ${sources[*]}"
    step_ok "sanitizers: no reports"
    return 0
  fi
  local count
  count="$(printf '%s\n' "$hits" | wc -l)"
  # The reports with the lines that follow them (the stacks), within bounds.
  grep -rInE -A 20 -- "$SANITIZER_PATTERN" "${sources[@]}" | head -n 300 || true
  echo "--- $count matching line(s):"
  printf '%s\n' "$hits" | head -n 50
  step_failed "sanitizers: $count report line(s) (see above)"
  return 1
}

plain_build() {
  local dir="$ROOT/build"
  configure_and_build "build" "$dir" -DORCH_WERROR=ON -DORCH_SANITIZE=OFF \
    -DORCH_FAULT_INJECTION=ON || return 0
  run_ctest "build" "$dir" || true
}

asan_build() {
  local dir="$ROOT/build-asan" lsan="print_suppressions=0"
  configure_and_build "build-asan" "$dir" \
    -DORCH_SANITIZE=ON -DORCH_WERROR=ON -DORCH_BUILD_BENCH=OFF \
    -DORCH_FAULT_INJECTION=ON || return 0
  if [[ -f "$ROOT/tests/support/lsan.supp" ]]; then
    lsan="suppressions=$ROOT/tests/support/lsan.supp:$lsan"
  fi
  run_ctest "build-asan" "$dir" \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    LSAN_OPTIONS="$lsan" || true
  sanitizer_grep "$dir" "$LOG_ROOT/build-asan" || true
}

# Builds the services as deploy/Dockerfile does (Release, no tests, warnings
# as errors): optimisation brings warnings of its own (-Warray-bounds).
release_build() {
  configure_and_build "build-release" "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release \
    -DORCH_BUILD_TESTS=OFF -DORCH_BUILD_BENCH=OFF -DORCH_FAULT_INJECTION=OFF \
    -DORCH_WERROR=ON || true
}

# Builds the libFuzzer targets and runs each for FUZZ_RUNS executions.
fuzz_targets() {
  section "fuzz: tests/fuzz/run.sh --runs $FUZZ_RUNS"
  if "$ROOT/tests/fuzz/run.sh" --runs "$FUZZ_RUNS"; then
    step_ok "fuzz: every target $FUZZ_RUNS runs, no crash"
  else
    step_failed "fuzz: a target failed to build or crashed (see above)"
  fi
}

# Prints what each step did, then the closing ctest summary lines.
print_summary() {
  section "summary"
  local line
  for line in "${STATUS_LINES[@]}"; do
    echo "  $line"
  done
  if [[ ${#FAILURES[@]} -eq 0 || -z "$(find "$LOG_ROOT" -type f -print -quit)" ]]; then
    rm -rf -- "$LOG_ROOT"
  else
    echo "  service logs of the tests kept in $LOG_ROOT"
  fi
  echo
  # A failed run's summary closes the output in preference to a passing one.
  local final="${FAILED_CTEST_LOG:-$LAST_CTEST_LOG}"
  if [[ -n "$final" ]]; then
    ctest_summary "$final"
  elif [[ ${#FAILURES[@]} -gt 0 ]]; then
    echo "tests/run.sh: ${#FAILURES[@]} step(s) failed before any test ran"
  fi
}

main() {
  trap on_exit EXIT
  trap 'on_signal 130' INT
  trap 'on_signal 143' TERM

  LOG_ROOT="$(mktemp -d /tmp/orch-test-logs.XXXXXX)"
  chmod 0755 "$LOG_ROOT"

  install_packages
  install_buf
  format_check
  plain_build
  asan_build
  release_build
  fuzz_targets
  print_summary
  [[ ${#FAILURES[@]} -eq 0 ]]
}

main "$@"
