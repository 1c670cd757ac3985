#!/usr/bin/env bash
# gen_corpus.sh — regenerates the seed files of tests/fuzz/corpus from
# gen_corpus.c (needs the fuzz build: tests/fuzz/run.sh --build-only).
# Regression inputs (corpus/<target>/regression-*) are kept as they are.
#
# Usage: tests/fuzz/gen_corpus.sh [BUILD_DIR]   (default build-fuzz)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$ROOT/build-fuzz}"
CORPUS="$ROOT/tests/fuzz/corpus"
readonly TARGETS=(envelope lease_rpc stage_rpc guard_rpc launcher_rpc verdict launcher_output webhook)
for t in "${TARGETS[@]}"; do
  mkdir -p "$CORPUS/$t"
done
"$BUILD/tests/fuzz/fuzz_gen_corpus" "$CORPUS"
for t in "${TARGETS[@]}"; do
  printf '%-16s %s files\n' "$t" "$(find "$CORPUS/$t" -type f | wc -l)"
done
