#!/usr/bin/env bash
# completion_check.sh - tools/orchctl/completion.bash loads in bash and
# completes what orchctl really has.
#
# Usage: completion_check.sh SOURCE_DIR BINARY_DIR   (ctest runs it)
#
# The top-level commands offered must be exactly those `orchctl --help` lists
# under "commands:", and every subcommand offered for lease, stage, guard,
# job and runs must be accepted by orchctl (`orchctl CMD SUB --help` exits 0),
# so neither side can drift. Exit 0 when all of that holds.
set -euo pipefail
src="${1:?usage: completion_check.sh SOURCE_DIR BINARY_DIR}"
ctl="${2:?usage: completion_check.sh SOURCE_DIR BINARY_DIR}/tools/orchctl/orchctl"
bad=0

# complete WORDS... : what the completion offers for the last (partial) word.
complete_words() {
  bash --norc --noprofile -c '
    set -u
    source "$1" || exit 9
    shift
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    _orchctl
    printf "%s\n" "${COMPREPLY[@]}" | sort' _ "$src/tools/orchctl/completion.bash" "$@"
}

if ! complete -p >/dev/null 2>&1 && ! bash -c "source '$src/tools/orchctl/completion.bash' && complete -p orchctl" >/dev/null; then
  echo "completion_check: FAIL: the script does not register a completion for orchctl"
  bad=1
fi

offered="$(complete_words orchctl '' | grep -v '^-' | tr '\n' ' ')"
listed="$("$ctl" --help | sed -n '/^commands:/,/^$/p' | awk '/^  [a-z]/ {print $1}' | sort | tr '\n' ' ')"
if [[ "$offered" != "$listed" ]]; then
  echo "completion_check: FAIL: top level offers '$offered', orchctl --help lists '$listed'"
  bad=1
else
  echo "top level: $offered"
fi

for cmd in lease stage guard job runs; do
  subs="$(complete_words orchctl "$cmd" '' | grep -v '^-' || true)"
  if [[ -z "$subs" ]]; then
    echo "completion_check: FAIL: nothing offered after '$cmd'"
    bad=1
  fi
  for sub in $subs; do
    if ! "$ctl" "$cmd" "$sub" --help >/dev/null 2>&1; then
      echo "completion_check: FAIL: offered '$cmd $sub', which orchctl rejects"
      bad=1
    fi
  done
  echo "$cmd: $(printf '%s ' $subs)"
done

got="$(complete_words orchctl --json stage advance ORCH-1 --from rev | tr '\n' ' ')"
if [[ "$got" != "review " ]]; then
  echo "completion_check: FAIL: --from rev completed to '$got', expected 'review'"
  bad=1
fi
got="$(complete_words orchctl lease f | tr '\n' ' ')"
if [[ "$got" != "force-release " ]]; then
  echo "completion_check: FAIL: 'lease f' completed to '$got'"
  bad=1
fi
exit "$bad"
