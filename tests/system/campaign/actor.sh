#!/usr/bin/env bash
# actor.sh — one racing actor of the fault campaign (tests/system/campaign).
# It runs inside a host's network namespace and keeps trying to move random
# work items one edge forward through the host's stage-service with orchctl,
# sending the verdicts that let the gates pass (and, now and then, a failing
# security verdict that rolls the item back to development).
#
# Usage: actor.sh HOST ACTOR SEED ITEMS_FILE LOG DEADLINE_MS MAX_OPS
# Environment: ORCHCTL (path), ORCH_STAGE_RPC_URL; STOP_FILE (optional): the
# actor ends when that file exists.
#
# Log line (tab-separated): start_ms end_ms host actor item from to exit outcome epoch
# outcome: the reply's outcome, or "-" when the call got no reply.

set -uo pipefail

HOST="$1" ACTOR="$2" SEED="$3" ITEMS_FILE="$4" LOG="$5" DEADLINE_MS="$6" MAX_OPS="$7"
RANDOM="$SEED"
mapfile -t ITEMS <"$ITEMS_FILE"
readonly DIGEST="sha256:1111111111111111111111111111111111111111111111111111111111111111"

now_ms() { date +%s%3N; }

next_of() {
  case "$1" in
  backlog) echo analysis ;;
  analysis) echo architecture ;;
  architecture) echo development ;;
  development) echo review ;;
  review) echo testing ;;
  testing) echo staging ;;
  staging) echo deploy ;;
  deploy) echo "done" ;;
  *) echo "" ;;
  esac
}

# verdicts FROM ITEM CYCLE: the --verdict options for the edge leaving FROM.
# A cycle after a rollback reports its own pull request at development ->
# review (the item's number + 10000 x cycle): the merged one of an earlier
# cycle does not count again.
verdicts() {
  case "$1" in
  development)
    if (($3 > 0)); then
      echo "--verdict dev_status=DONE --verdict pr_number=$((${2##*-} + 10000 * $3))"
    else
      echo "--verdict dev_status=DONE"
    fi
    ;;
  analysis) echo "--verdict analysis_status=DONE" ;;
  architecture) echo "--verdict architecture_status=DONE" ;;
  review) echo "--verdict review_verdict=APPROVE" ;;
  testing)
    # One attempt in 25 reports a failed security scan: a rollback.
    if ((RANDOM % 25 == 0)); then
      echo "--verdict test_status=PASS --verdict security_status=FAIL --verdict coverage_pct=80"
    else
      echo "--verdict test_status=PASS --verdict security_status=PASS --verdict coverage_pct=80"
    fi
    ;;
  staging) echo "--verdict staging_status=SUCCESS --verdict image_digest=$DIGEST" ;;
  deploy) echo "--verdict deploy_status=SUCCESS" ;;
  *) echo "" ;;
  esac
}

ops=0
while ((ops < MAX_OPS)); do
  [[ -n "${STOP_FILE:-}" && -e "$STOP_FILE" ]] && break
  (($(now_ms) < DEADLINE_MS)) || break
  item="${ITEMS[RANDOM % ${#ITEMS[@]}]}"
  show="$("$ORCHCTL" --timeout 4000 --json stage show "$item" 2>/dev/null)" || {
    sleep 0.2
    continue
  }
  from="$(jq -r '.task.stage // empty' <<<"$show" 2>/dev/null)"
  # The cycle: rollbacks so far (every entry into development but the first).
  cycle="$(jq -r '[.history[]? | select((.to_stage // .toStage) == "development")] | length' \
    <<<"$show" 2>/dev/null)"
  cycle=$(((${cycle:-1} > 0 ? ${cycle:-1} : 1) - 1))
  to="$(next_of "$from")"
  if [[ -z "$to" ]]; then
    sleep 0.05
    continue
  fi
  ops=$((ops + 1))
  t0="$(now_ms)"
  # shellcheck disable=SC2046 # the verdict options are split on purpose
  out="$("$ORCHCTL" --timeout 15000 --json stage advance "$item" --from "$from" --to "$to" \
    --actor "$ACTOR" $(verdicts "$from" "$item" "$cycle") 2>/dev/null)"
  rc=$?
  t1="$(now_ms)"
  outcome="$(jq -r '.outcome // "-"' <<<"$out" 2>/dev/null)"
  epoch="$(jq -r '.lease_epoch // 0' <<<"$out" 2>/dev/null)"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t0" "$t1" "$HOST" "$ACTOR" "$item" "$from" \
    "$to" "$rc" "${outcome:--}" "${epoch:-0}" >>"$LOG"
  sleep "0.0$((RANDOM % 10))"
done
exit 0
