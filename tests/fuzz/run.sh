#!/usr/bin/env bash
# run.sh — builds the libFuzzer targets (clang, ORCH_FUZZ=ON, into
# build-fuzz/) and runs each one from its seed corpus (tests/fuzz/corpus).
#
# Usage: tests/fuzz/run.sh [--runs N | --seconds S] [--keep] [--build-only] [TARGET...]
#   --runs N      executions per target (default 50000)
#   --seconds S   time per target instead of a count
#   --keep        go on from the working corpus of the last run instead of
#                 starting again from the seeds
#   --build-only  configure and build, run nothing
#   TARGET        a subset, e.g. fuzz_verdict fuzz_webhook (default: all)
#
# Each target fuzzes a working copy of its seeds in
# build-fuzz/fuzz-work/<target>/ (new inputs stay there; the checked-in
# corpus is not touched) and writes any crashing input to
# build-fuzz/fuzz-artifacts/. Prints one line per target: executions,
# executions per second, coverage (libFuzzer's cov and ft counters), corpus
# size, result (execs/s is measured over the whole run, start-up included). Exits non-zero when a build fails or any target crashes,
# leaks, times out or reports a sanitizer error.
#
# Environment: ORCH_FUZZ_BUILD_DIR (default <checkout>/build-fuzz),
# CC (default clang).

set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${ORCH_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
readonly ALL_TARGETS=(fuzz_envelope fuzz_lease_rpc fuzz_stage_rpc fuzz_guard_rpc
  fuzz_launcher_rpc fuzz_verdict fuzz_launcher_output fuzz_webhook)

runs=50000
seconds=""
build_only=0
keep=0
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
  --runs) runs="$2"; seconds=""; shift 2 ;;
  --seconds) seconds="$2"; shift 2 ;;
  --build-only) build_only=1; shift ;;
  --keep) keep=1; shift ;;
  -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
  fuzz_*) targets+=("$1"); shift ;;
  *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=("${ALL_TARGETS[@]}")
fi
if ! [[ "$runs" =~ ^[0-9]+$ ]] || { [[ -n "$seconds" ]] && ! [[ "$seconds" =~ ^[0-9]+$ ]]; }; then
  echo "run.sh: --runs and --seconds take a whole number" >&2
  exit 2
fi

echo "fuzz: configuring and building into ${BUILD#"$ROOT"/}"
CC="${CC:-clang}" cmake -S "$ROOT" -B "$BUILD" -DORCH_FUZZ=ON -DORCH_BUILD_TESTS=OFF \
  -DORCH_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD.configure.log" 2>&1 || {
  cat "$BUILD.configure.log"
  echo "fuzz: cmake configure failed" >&2
  exit 1
}
if ! cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}" >"$BUILD.build.log" 2>&1; then
  tail -n 60 "$BUILD.build.log"
  echo "fuzz: build failed" >&2
  exit 1
fi
rm -f "$BUILD.configure.log" "$BUILD.build.log"
if [[ "$build_only" -eq 1 ]]; then
  exit 0
fi

# Leaks fail a run; UBSan findings abort (cmake/Fuzz.cmake).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

budget=(-runs="$runs")
if [[ -n "$seconds" ]]; then
  budget=(-max_total_time="$seconds")
fi
mkdir -p "$BUILD/fuzz-artifacts"
failed=0
printf '%-22s %12s %10s %8s %8s %8s  %s\n' target executions execs/s cov ft corpus result
for t in "${targets[@]}"; do
  name="${t#fuzz_}"
  seeds="$ROOT/tests/fuzz/corpus/$name"
  work="$BUILD/fuzz-work/$name"
  log="$BUILD/fuzz-work/$name.log"
  if [[ "$keep" -eq 0 ]]; then
    rm -rf -- "$work"
  fi
  mkdir -p "$work"
  rc=0
  t0="$(date +%s%N)"
  "$BUILD/tests/fuzz/$t" "${budget[@]}" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$BUILD/fuzz-artifacts/$name-" "$work" "$seeds" >"$log" 2>&1 || rc=$?
  elapsed_ms=$((($(date +%s%N) - t0) / 1000000 + 1))
  execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || true)"
  speed=""
  if [[ -n "$execs" ]]; then
    speed=$((execs * 1000 / elapsed_ms))
  fi
  last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
  cov="$(grep -Eo 'cov: [0-9]+' <<<"$last" | grep -Eo '[0-9]+' || true)"
  ft="$(grep -Eo 'ft: [0-9]+' <<<"$last" | grep -Eo '[0-9]+' || true)"
  corp="$(grep -Eo 'corp: [0-9]+' <<<"$last" | grep -Eo '[0-9]+' || true)"
  result=ok
  if [[ "$rc" -ne 0 ]] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
    result="FAILED (exit $rc; log ${log#"$ROOT"/})"
    failed=$((failed + 1))
  fi
  printf '%-22s %12s %10s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$result"
  if [[ "$result" != ok ]]; then
    grep -E -A 25 'ERROR: |runtime error:' "$log" | head -n 60 || true
  fi
done
if [[ "$failed" -ne 0 ]]; then
  echo "fuzz: $failed target(s) failed; crashing inputs in ${BUILD#"$ROOT"/}/fuzz-artifacts/"
  exit 1
fi
echo "fuzz: ${#targets[@]} target(s), no crash"
