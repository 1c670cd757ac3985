#!/usr/bin/env bash
# completion_check.sh - tools/orchctl/completion.bash loads in bash and
# completes what orchctl really has.
#
# Usage: completion_check.sh SOURCE_DIR BINARY_DIR   (ctest runs it)
#
# The top-level commands offered must be exactly those `orchctl --help` lists
# under "commands:", and every subcommand offered for lease, stage, guard,
# job and runs must be accepted by orchctl (`orchctl CMD SUB --help` exits 0),
# so neither side can drift. Then the table itself: at every level that
# `orchctl __complete` lists ("PATH<TAB>WORDS"), the completion must offer
# exactly WORDS, and the synopsis block of docs/operations/orchctl.md must be
# exactly what `orchctl help --synopsis` prints. Exit 0 when all of that holds.
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
# The command table against completion.bash, level by level.
sorted() { tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' '; }
table="$("$ctl" __complete)" || { echo "completion_check: FAIL: orchctl __complete"; bad=1; }
levels=0
while IFS= read -r line; do
  # A tab is IFS white space to read, so the fields are split by hand.
  path="${line%%$'\t'*}" words="${line#*$'\t'}"
  levels=$((levels + 1))
  # shellcheck disable=SC2086 # PATH is one or two words
  got="$(complete_words orchctl $path '' | sorted)"
  want="$(printf '%s' "$words" | sorted)"
  if [[ "$got" != "$want" ]]; then
    echo "completion_check: FAIL: after 'orchctl $path' completion offers '$got', the table '$want'"
    bad=1
  fi
done <<<"$table"
if ((levels < 20)); then
  echo "completion_check: FAIL: orchctl __complete listed only $levels levels"
  bad=1
fi
echo "table levels compared with completion.bash: $levels"

# The synopsis block of the docs against the table.
doc="$src/docs/operations/orchctl.md"
documented="$(awk '/^<!-- synopsis: orchctl help --synopsis -->$/ {on = 1; next}
  on && /^```$/ {if (++fence == 2) exit; next}
  on && fence == 1 {print}' "$doc")"
synopsis="$("$ctl" help --synopsis)"
if [[ "$documented" != "$synopsis" ]]; then
  echo "completion_check: FAIL: the synopsis block of docs/operations/orchctl.md differs from 'orchctl help --synopsis':"
  diff <(printf '%s\n' "$documented") <(printf '%s\n' "$synopsis") || true
  bad=1
else
  echo "docs synopsis lines: $(printf '%s\n' "$synopsis" | wc -l)"
fi
exit "$bad"
