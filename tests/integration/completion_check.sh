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
# exactly what `orchctl help --synopsis` prints. Last, the options: each
# leaf's synopsis names exactly the options of its table row, the leaf
# accepts every one of them and refuses every other option (those of the
# other rows, and one that no row has) with a usage error. Exit 0 when all of
# that holds.
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
# A global option's value is not taken for the command.
got="$(complete_words orchctl --config x.env --lease-url tcp://h:1 stage advance ORCH-1 --from rev | tr '\n' ' ')"
if [[ "$got" != "review " ]]; then
  echo "completion_check: FAIL: after --config/--lease-url values, --from rev completed to '$got'"
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

# The options of every leaf, against addresses with nothing behind them: a
# command line orchctl accepts gets as far as the call (exit 64 + code), one
# it refuses is a usage error (1) that names the option.
export ORCH_LEASE_RPC_URL=tcp://127.0.0.1:1 ORCH_STAGE_RPC_URL=tcp://127.0.0.1:1 \
  ORCH_GUARD_RPC_URL=tcp://127.0.0.1:1 ORCH_LAUNCHER_RPC_URL=tcp://127.0.0.1:1
# A valid command line of each leaf after its name; "|" separates
# alternatives (job spawn takes --prompt or --prompt-file, not both).
declare -A sample=(
  [health]="" [version]="" ["lease acquire"]="ORCH-1" ["lease release"]="ORCH-1 1"
  ["lease validate"]="ORCH-1 1" ["lease force-release"]="ORCH-1 --reason r"
  ["lease show"]="ORCH-1" ["lease list"]="" ["lease probe"]="1 1 boot"
  ["guard decide"]="comment target" ["guard audit"]="" ["guard comment"]="p i e text"
  ["guard state"]="p i s" ["guard notify"]="text"
  ["job spawn"]="developer ORCH-1 --workdir /tmp --prompt p|developer ORCH-1 --workdir /tmp --prompt-file /dev/null"
  ["job show"]="1" ["job wait"]="1" ["job cancel"]="1" ["runs list"]="" ["runs savings"]=""
  ["stage create"]="ORCH-1 --repo o/n" ["stage show"]="ORCH-1"
  ["stage advance"]="ORCH-1 --from review --to testing"
  ["stage rollback"]="ORCH-1 --from review --reason r" ["stage cancel"]="ORCH-1"
  ["stage queue"]="" ["stage pipeline"]=""
)
# An option and a valid value (none for a flag).
with_value() {
  case "$1" in
  --all | --name | --watch | --services) echo "$1" ;;
  --limit | --history | --pr | --epoch | --since-days | --timeout | --interval | --count) echo "$1 5" ;;
  --owner-pid) echo "$1 $$" ;;
  --evidence-file | --prompt-file) echo "$1 /dev/null" ;;
  --workdir) echo "$1 /tmp" ;;
  --verdict) echo "$1 k=v" ;;
  --from | --stage) echo "$1 review" ;;
  --to) echo "$1 testing" ;;
  --decision) echo "$1 allow" ;;
  --operation) echo "$1 comment" ;;
  *) echo "$1 x" ;;
  esac
}
err="$(mktemp)"
trap 'rm -f "$err"' EXIT
# run LEAF ARGS: orchctl's exit status; its stderr in $err.
run() {
  local rc=0
  # shellcheck disable=SC2086 # LEAF and ARGS are words
  "$ctl" --timeout 100 $1 $2 >/dev/null 2>"$err" || rc=$?
  echo "$rc"
}
declare -A row_opts
leaves=() all_opts=" --no-such-option "
while IFS= read -r line; do
  path="${line%%$'\t'*}" words="${line#*$'\t'}"
  [[ "$path" == *" "* || "$path" == health || "$path" == version ]] || continue
  leaves+=("$path")
  # shellcheck disable=SC2086 # WORDS are words
  row_opts[$path]="$(printf '%s\n' $words | grep '^--' | grep -vx -- --help | sort | tr '\n' ' ' || true)"
  for o in ${row_opts[$path]}; do
    [[ "$all_opts" == *" $o "* ]] || all_opts+="$o "
  done
done <<<"$table"
accepted=0 refused=0
for leaf in "${leaves[@]}"; do
  if [[ ! -v "sample[$leaf]" ]]; then
    echo "completion_check: FAIL: no sample command line for '$leaf' in completion_check.sh"
    bad=1
    continue
  fi
  named="$(printf '%s\n' "$synopsis" | grep -E "^orchctl $leaf( |\$)" | grep -oE -- '--[a-z][a-z-]*' | sort -u | tr '\n' ' ' || true)"
  if [[ "$named" != "${row_opts[$leaf]}" ]]; then
    echo "completion_check: FAIL: the synopsis of '$leaf' names '$named', its table row '${row_opts[$leaf]}'"
    bad=1
  fi
  IFS='|' read -r -a alts <<<"${sample[$leaf]}"
  [[ ${#alts[@]} -gt 0 ]] || alts=("")
  for o in ${row_opts[$leaf]}; do
    args="${alts[0]} $(with_value "$o")"
    for alt in "${alts[@]}"; do
      [[ " $alt " == *" $o "* ]] && args="$alt"
    done
    rc="$(run "$leaf" "$args")"
    if ((rc < 64)); then
      echo "completion_check: FAIL: 'orchctl $leaf $args' exits $rc, not 64 + code: $(cat "$err")"
      bad=1
    fi
    accepted=$((accepted + 1))
  done
  for o in $all_opts; do
    # --timeout of job spawn's row is a global option everywhere else.
    [[ " ${row_opts[$leaf]} " == *" $o "* || "$o" == --timeout ]] && continue
    args="${alts[0]} $(with_value "$o")"
    rc="$(run "$leaf" "$args")"
    if [[ "$rc" != 1 ]] || ! grep -qF "unknown option '$o'" "$err" || ! grep -qF "usage: orchctl $leaf" "$err"; then
      echo "completion_check: FAIL: 'orchctl $leaf $args' exits $rc, not a usage error naming $o: $(cat "$err")"
      bad=1
    fi
    refused=$((refused + 1))
  done
done
# The short form of --watch, where a row has it: the call is made (64 + code).
for leaf in "lease list" "stage queue"; do
  rc="$(run "$leaf" "-w --count 1 --interval 5")"
  if ((rc < 64)); then
    echo "completion_check: FAIL: 'orchctl $leaf -w --count 1' exits $rc: $(cat "$err")"
    bad=1
  fi
done
rc="$(run "lease show" "ORCH-1 -w")"
if [[ "$rc" != 1 ]] || ! grep -qF "unknown option '-w'" "$err"; then
  echo "completion_check: FAIL: 'orchctl lease show ORCH-1 -w' exits $rc: $(cat "$err")"
  bad=1
fi
echo "leaves: ${#leaves[@]}, options accepted: $accepted, refused: $refused"
exit "$bad"
