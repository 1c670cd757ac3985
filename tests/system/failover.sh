#!/usr/bin/env bash
# failover.sh — PostgreSQL failover under load, nothing acknowledged lost
# (tests/system/README.md, docs/operations/database.md "Failover").
#
# For each replication mode (synchronous, then asynchronous): a primary and a
# streaming standby (tests/support/pgctl.sh standby), a lease-service and a
# stage-service given both as one multi-host URL
# (postgresql://…:P1,…:P2/orch?target_session_attrs=read-write), the fault
# campaign's actors (campaign/actor.sh) moving work items through the
# pipeline and two actors taking leases directly with orchctl. Under load
# the standby stops receiving WAL (its primary_conninfo emptied: a standby
# cut off or behind), the primary is stopped hard (pg_ctl stop -m
# immediate), the standby is promoted (pg_ctl promote) and the load goes on
# against it. Then the campaign's checker (campaign/checker.py) reads the
# promoted database's history, the sink log and the actors' logs, and the old
# primary is started alone to count what it had committed that the promoted
# one lacks.
#
# Verdict: the synchronous run must show no anomaly (every ADVANCED and
# GRANTED answer and every executed effect's intent is in the promoted
# database; no effect ran twice; every item done). The asynchronous run
# documents what it lost (the counts are printed) and fails the test only
# when the services did not carry on after the promotion.
#
# Usage: failover.sh [BUILD_DIR]
# Environment:
#   FAILOVER_MODES      modes to run, in order (default "sync async")
#   FAILOVER_ITEMS      work items per run (default 12)
#   FAILOVER_KEEP_DIR   when set, the runs' folders are copied there
#   ORCH_TEST_LOG_DIR   when set, the logs are copied there
# Exit status: 0 pass, 1 fail, 77 skip (no PostgreSQL 15, jq or python3).

set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(realpath -m -- "${1:-$SRC_DIR/build}")"
CAMPAIGN="$SRC_DIR/tests/system/campaign"
readonly SRC_DIR BUILD CAMPAIGN

read -r -a MODES <<<"${FAILOVER_MODES:-sync async}"
readonly N_ITEMS="${FAILOVER_ITEMS:-12}"
# The campaign's service timing (docs/testing/campaign.md).
readonly CEILING_S=8 STEP_TIMEOUT_S=3 REAPER_INTERVAL_MS=500 EFFECT_TIMEOUT_MS=3000
readonly REPO="org/app"
readonly ACTORS=(monitor webhook reaper finalizer)
# Phases of one run, seconds: load, load with the standby cut off, then the
# primary dies; after the promotion the load goes on until every item is
# done (at most DRAIN_S).
readonly LOAD_S=6 CUT_S=4 DRAIN_S=90

# shellcheck source=lib.sh
source "$SRC_DIR/tests/system/lib.sh"

campaign_programs pg_basebackup

TMP="$(mktemp -d /tmp/orch-failover.XXXXXX)"
chmod 755 "$TMP"
SUF="${TMP##*.}"
PRIMARY="" STANDBY="" PID_LEASE="" PID_STAGE="" SINK_PID=""
declare -a BG=()

stop_run() { # ends every process of the current run; keeps its folder
  local p
  [[ -n "${RUN:-}" ]] && touch "$RUN/stop"
  for p in "${BG[@]}"; do kill_wait KILL "$p"; done
  BG=()
  kill_wait KILL "$PID_STAGE"
  kill_wait KILL "$PID_LEASE"
  kill_wait KILL "$SINK_PID"
  PID_STAGE="" PID_LEASE="" SINK_PID=""
  for p in "$STANDBY" "$PRIMARY"; do
    [[ -n "$p" ]] || continue
    cp -f "$p/postgres.log" "$RUN/$(basename "$p").log" 2>/dev/null || true
    bash "$PGCTL" destroy "$p" >/dev/null 2>&1 || true
  done
  PRIMARY="" STANDBY=""
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_run
  if [[ -n "${ORCH_TEST_LOG_DIR:-}" ]]; then
    mkdir -p "$ORCH_TEST_LOG_DIR/system_failover" && cp -rf "$TMP"/. "$ORCH_TEST_LOG_DIR/system_failover/"
  fi
  if [[ -n "${FAILOVER_KEEP_DIR:-}" ]]; then
    mkdir -p "$FAILOVER_KEEP_DIR" && cp -rf "$TMP"/. "$FAILOVER_KEEP_DIR/"
  fi
  rm -rf -- "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_ports() { # free_ports N: N distinct free TCP ports on 127.0.0.1
  "$PYTHON" "$SRC_DIR/tests/support/free_ports.py" "$1"
}

psql_at() { # psql_at URL SQL: one query, unaligned, tuples only
  "$PG_BINDIR/psql" -X -At -q -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

BASE_ENV=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
for v in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS; do
  [[ -n "${!v:-}" ]] && BASE_ENV+=("$v=${!v}")
done

ctl() { # ctl ARGS...: orchctl against this run's services
  env -i "${BASE_ENV[@]}" ORCH_HOST_ID=h1 ORCH_BOOT_ID_PATH="$RUN/boot_id" \
    ORCH_LEASE_RPC_URL="tcp://127.0.0.1:$LEASE_RPC" ORCH_STAGE_RPC_URL="tcp://127.0.0.1:$STAGE_RPC" \
    "$ORCHCTL" "$@"
}

start_services() {
  local common=(ORCH_HOST_ID=h1 ORCH_BOOT_ID_PATH="$RUN/boot_id" ORCH_DATABASE_URL="$DB_URL"
    ORCH_RUNTIME=test ORCH_LEASE_RPC_URL="tcp://127.0.0.1:$LEASE_RPC"
    ORCH_ORCHESTRATOR_REPO="$REPO" ORCH_TRANSITION_LEASE_REPOS="$REPO"
    ORCH_REAPER_MAX_RUNNING_S="$CEILING_S" ORCH_STEP_TIMEOUT_S="$STEP_TIMEOUT_S"
    ORCH_DB_CONNECT_TIMEOUT_S=2 ORCH_DB_STARTUP_WAIT_S=30 ORCH_SHUTDOWN_GRACE_S=3
    ORCH_LOG_LEVEL=info)
  env -i "${BASE_ENV[@]}" "${common[@]}" ORCH_LEASE_HTTP_ADDR="127.0.0.1:$LEASE_HTTP" \
    ORCH_LEASE_PROBE_TIMEOUT_MS=500 ORCH_LEASE_REAPER_INTERVAL_MS="$REAPER_INTERVAL_MS" \
    "$LEASE_BIN" >>"$RUN/lease.log" 2>&1 &
  PID_LEASE=$!
  env -i "${BASE_ENV[@]}" "${common[@]}" ORCH_STAGE_RPC_URL="tcp://127.0.0.1:$STAGE_RPC" \
    ORCH_STAGE_HTTP_ADDR="127.0.0.1:$STAGE_HTTP" ORCH_GITEA_URL="$SINK_URL" \
    ORCH_GITEA_TOKEN=failover-token ORCH_GITEA_WEBHOOK_SECRET=failover-secret \
    ORCH_IMAGE_HOOK_URL="$SINK_URL/hooks/image" ORCH_DEPLOY_HOOK_URL="$SINK_URL/hooks/deploy" \
    ORCH_EFFECT_TIMEOUT_MS="$EFFECT_TIMEOUT_MS" ORCH_STAGE_LEASE_TIMEOUT_MS=3000 \
    ORCH_RECONCILER_INTERVAL_MS=1500 ORCH_RECONCILER_BATCH=10 \
    "$STAGE_BIN" >>"$RUN/stage.log" 2>&1 &
  PID_STAGE=$!
  local until=$(($(now_ms) + 30000))
  while (($(now_ms) < until)); do
    ctl --timeout 1000 health lease >/dev/null 2>&1 && ctl --timeout 1000 health stage >/dev/null 2>&1 &&
      return 0
    sleep 0.2
  done
  die "$MODE: the services did not become ready (see $RUN/lease.log, $RUN/stage.log)"
}

# lease_actor NAME SEED: takes leases of three items of its own (lease rows
# only, no task) for a process of its own, logs every answer to grants.log (t0 t1 host actor
# item outcome epoch) and releases what it was granted, retrying through the
# failover until the release is done or refused (73: not the live grant).
# A holder that may still own a lease when it is killed (no answer to the
# acquire, or a release that never succeeded) is logged in faults.log as
# kill_holder: the reaper may take that lease over.
lease_actor() {
  local name="$1" item holder out t0 t1 outcome epoch i rc
  RANDOM="$2"
  while [[ ! -e "$RUN/stop" ]]; do
    item="FOL-$SUF-$((RANDOM % 3))"
    sleep 60 &
    holder=$!
    t0="$(now_ms)"
    out="$(ctl --timeout 4000 --json lease acquire "$item" --repo "$REPO" --actor "$name" \
      --transition "review->testing" --owner-pid "$holder" 2>/dev/null)" || true
    t1="$(now_ms)"
    outcome="$(jq -r '.outcome // "-"' <<<"$out" 2>/dev/null)" || outcome="-"
    epoch="$(jq -r '.epoch // 0' <<<"$out" 2>/dev/null)" || epoch=0
    printf '%s\t%s\th1\t%s\t%s\t%s\t%s\n' "$t0" "$t1" "$name" "$item" "${outcome:--}" "${epoch:-0}" \
      >>"$RUN/grants.log"
    rc=0
    if [[ "$outcome" == GRANTED ]]; then
      sleep "0.$((RANDOM % 3))"
      for ((i = 0; i < 60; i++)); do
        rc=0
        ctl --timeout 3000 lease release "$item" "$epoch" >/dev/null 2>&1 || rc=$?
        ((rc == 0 || rc == 73)) && break
        sleep 0.5
      done
    fi
    if [[ "$outcome" != GRANTED && "$outcome" != HELD ]] || ((rc != 0)); then
      printf '%s\tkill_holder\th1\t%s\t%s\tSIGKILL lease holder pid %s (%s, release %s)\n' \
        "$(now_ms)" "$item" "${epoch:-0}" "$holder" "$outcome" "$rc" >>"$RUN/faults.log"
    fi
    kill_wait KILL "$holder"
    sleep "0.0$((RANDOM % 10))"
  done
}

# rows_of URL: the durable facts of a database, one line each, sorted: stage
# moves, lease events, effect intents.
# The time of each row is part of it: an epoch granted again after a lost
# grant is another row.
rows_of() {
  psql_at "$1" "SELECT 'stage ' || t.work_item || ' ' || h.from_stage || '->' || h.to_stage
                  || ' epoch ' || h.lease_epoch || ' at ' || h.at
                FROM stage_history h JOIN tasks t ON t.id = h.task_id
                UNION ALL
                SELECT 'lease ' || work_item || ' epoch ' || epoch || ' ' || kind || ' at ' || at
                FROM lease_events WHERE kind <> 'deferred'
                UNION ALL
                SELECT 'effect ' || work_item || ' ' || transition || ' ' || effect || ' cycle '
                  || cycle || ' epoch ' || lease_epoch || ' ' || outcome || ' at ' || created_at
                FROM side_effects" | sort
}

# class_count FILE CLASS: the count the checker printed for CLASS.
class_count() {
  sed -n "s/^  $2 \+\([0-9]\+\) .*/\1/p" "$1" | head -n 1
}

declare -A SUMMARY=()
run_mode() { # run_mode sync|async
  MODE="$1"
  RUN="$TMP/$MODE"
  mkdir -p "$RUN"
  chmod 755 "$RUN"
  cat /proc/sys/kernel/random/uuid >"$RUN/boot_id"
  : >"$RUN/actors.log"
  : >"$RUN/grants.log"
  : >"$RUN/faults.log"
  : >"$RUN/webhooks.log"
  : >"$RUN/sink.log"

  PRIMARY="$(mktemp -d /tmp/orch-failover-p.XXXXXX)"
  STANDBY="$(mktemp -d /tmp/orch-failover-s.XXXXXX)"
  rmdir "$STANDBY"
  bash "$PGCTL" init "$PRIMARY" >"$RUN/pgctl.log" 2>&1 || die "$MODE: pgctl.sh init: $(tail -n 5 "$RUN/pgctl.log")"
  bash "$PGCTL" start "$PRIMARY" >>"$RUN/pgctl.log" 2>&1 || die "$MODE: pgctl.sh start: $(tail -n 5 "$RUN/pgctl.log")"
  local purl surl
  purl="$(bash "$PGCTL" url "$PRIMARY")"
  if [[ "$MODE" == sync ]]; then
    psql_at "$purl" "ALTER SYSTEM SET synchronous_standby_names = 'orch_standby'" >/dev/null
    psql_at "$purl" "ALTER SYSTEM SET synchronous_commit = 'on'" >/dev/null
  else
    psql_at "$purl" "ALTER SYSTEM SET synchronous_standby_names = ''" >/dev/null
  fi
  psql_at "$purl" "SELECT pg_reload_conf()" >/dev/null
  bash "$PGCTL" standby "$STANDBY" "$PRIMARY" >>"$RUN/pgctl.log" 2>&1 ||
    die "$MODE: pgctl.sh standby: $(tail -n 5 "$RUN/pgctl.log")"
  surl="$(bash "$PGCTL" url "$STANDBY")"
  local want=async state="" i
  [[ "$MODE" == sync ]] && want=sync
  for ((i = 0; i < 100; i++)); do
    state="$(psql_at "$purl" "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'orch_standby'")"
    [[ "$state" == "$want" ]] && break
    sleep 0.1
  done
  [[ "$state" == "$want" ]] || die "$MODE: the standby replicates '$state', not $want"
  local pport sport
  pport="$(<"$PRIMARY/port")" sport="$(<"$STANDBY/port")"
  DB_URL="postgresql://orch@127.0.0.1:$pport,127.0.0.1:$sport/orch?target_session_attrs=read-write"
  say "$MODE: primary :$pport, standby :$sport ($state); services use $DB_URL"

  read -r LEASE_RPC LEASE_HTTP STAGE_RPC STAGE_HTTP SINK_PORT <<<"$(free_ports 5)"
  SINK_URL="http://127.0.0.1:$SINK_PORT"
  "$SINK_BIN" --listen "127.0.0.1:$SINK_PORT" --log "$RUN/sink.log" 2>"$RUN/sink.err" &
  SINK_PID=$!
  start_services

  : >"$RUN/items"
  for ((i = 1; i <= N_ITEMS; i++)); do
    echo "FO-$SUF-$MODE-$i" >>"$RUN/items"
    ctl --timeout 5000 stage create "FO-$SUF-$MODE-$i" --repo "$REPO" --pr "$i" --title "failover $i" \
      >/dev/null || die "$MODE: stage create"
  done

  local end_ms=$(($(now_ms) + (LOAD_S + CUT_S + DRAIN_S + 10) * 1000)) k=0 a
  for a in "${ACTORS[@]}"; do
    k=$((k + 1))
    env -i "${BASE_ENV[@]}" ORCHCTL="$ORCHCTL" ORCH_STAGE_RPC_URL="tcp://127.0.0.1:$STAGE_RPC" \
      STOP_FILE="$RUN/stop" bash "$CAMPAIGN/actor.sh" h1 "$a" "$((800 + k))" "$RUN/items" \
      "$RUN/actors.log" "$end_ms" 100000 &
    BG+=("$!")
  done
  lease_actor lessee-1 31 &
  BG+=("$!")
  lease_actor lessee-2 32 &
  BG+=("$!")
  say "$MODE: $N_ITEMS items, ${#ACTORS[@]} stage actors and 2 lease actors racing"

  sleep "$LOAD_S"
  # The standby stops receiving WAL: it keeps what it has, nothing more.
  psql_at "$surl" "ALTER SYSTEM SET primary_conninfo = ''" >/dev/null
  psql_at "$surl" "SELECT pg_reload_conf()" >/dev/null
  say "$MODE: standby cut off from the primary"
  sleep "$CUT_S"
  local t_kill
  t_kill="$(now_ms)"
  bash "$PGCTL" stop "$PRIMARY" immediate >>"$RUN/pgctl.log" 2>&1 || die "$MODE: stopping the primary"
  say "$MODE: primary stopped (immediate)"
  sleep 1
  # The new primary has no standby of its own: a synchronous_standby_names
  # it inherited from the old one (pg_basebackup copies postgresql.auto.conf)
  # would hold every commit. A failover manager clears it (Patroni does,
  # unless synchronous_mode_strict); so does this test, before promoting.
  psql_at "$surl" "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null
  psql_at "$surl" "SELECT pg_reload_conf()" >/dev/null
  bash "$PGCTL" promote "$STANDBY" >>"$RUN/pgctl.log" 2>&1 || die "$MODE: promote"
  local t_promote
  t_promote="$(now_ms)"
  say "$MODE: standby promoted"

  local until=$((t_promote + DRAIN_S * 1000)) left="$N_ITEMS"
  while (($(now_ms) < until)); do
    left="$(psql_at "$surl" "SELECT count(*) FROM tasks WHERE repo = '$REPO' AND stage <> 'done'" 2>/dev/null || echo "$N_ITEMS")"
    ((left == 0)) && break
    sleep 1
  done
  touch "$RUN/stop"
  for a in "${BG[@]}"; do wait "$a" 2>/dev/null || true; done
  BG=()
  until=$(($(now_ms) + (CEILING_S + 5) * 1000))
  local held=1
  while (($(now_ms) < until)); do
    held="$(psql_at "$surl" "SELECT count(*) FROM transition_lease WHERE released_at IS NULL" 2>/dev/null || echo 1)"
    ((held == 0)) && break
    sleep 0.5
  done
  say "$MODE: load over, $left items not done, $held leases held"
  kill_wait TERM "$PID_STAGE"
  kill_wait TERM "$PID_LEASE"
  kill_wait TERM "$SINK_PID"
  PID_STAGE="" PID_LEASE="" SINK_PID=""

  # The services found the promoted standby by themselves.
  local moved=0
  grep -q "database connection now to 127.0.0.1:$sport" "$RUN/lease.log" && moved=$((moved + 1))
  grep -q "database connection now to 127.0.0.1:$sport" "$RUN/stage.log" && moved=$((moved + 1))
  # Work acknowledged after the promotion: the load carried on.
  local after_ok
  after_ok="$(awk -F'\t' -v t="$t_promote" '$1 >= t && ($9 == "ADVANCED" || $9 == "ROLLED_BACK")' \
    "$RUN/actors.log" | wc -l)"

  bash "$CAMPAIGN/dump_history.sh" "$PG_BINDIR/psql" "$surl" "$RUN" "$REPO" ||
    die "$MODE: dumping the promoted database"
  cp -f "$RUN/lease.log" "$RUN/lease-all.log"
  rows_of "$surl" >"$RUN/rows-new.txt"
  # The old primary, alone: what it committed that the promoted one lacks.
  bash "$PGCTL" start "$PRIMARY" >>"$RUN/pgctl.log" 2>&1 || die "$MODE: restarting the old primary"
  rows_of "$(bash "$PGCTL" url "$PRIMARY")" >"$RUN/rows-old.txt"
  comm -23 "$RUN/rows-old.txt" "$RUN/rows-new.txt" >"$RUN/rows-lost.txt"
  local lost_stage lost_lease lost_effect
  lost_stage="$(grep -c '^stage ' "$RUN/rows-lost.txt" || true)"
  lost_lease="$(grep -c '^lease ' "$RUN/rows-lost.txt" || true)"
  lost_effect="$(grep -c '^effect ' "$RUN/rows-lost.txt" || true)"

  echo
  set +e
  "$PYTHON" "$CAMPAIGN/checker.py" --dir "$RUN" --ceiling-s "$CEILING_S" \
    --reaper-interval-ms "$REAPER_INTERVAL_MS" --seed 8 \
    --title "failover history check ($MODE replication)" | tee "$RUN/checker.txt"
  local rc=${PIPESTATUS[0]}
  set -e
  if grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$RUN/lease.log" "$RUN/stage.log"; then
    say "FAIL: $MODE: sanitizer report in a service log"
    rc=1
  fi
  local unknown
  unknown="$(awk -F'\t' '$9 != "ADVANCED" && $9 != "ROLLED_BACK" && $9 != "DEFERRED" && $9 != "ABORTED" && $9 != "GATE_FAILED" && $9 != "EFFECT_FAILED" && $8 != 73 && $8 != 74' "$RUN/actors.log" | wc -l)"
  SUMMARY[$MODE]="$(printf '%-5s acknowledged but lost: stage %s, grants %s, effect intents %s; epochs granted twice %s; effects run twice %s; items not done %s | committed on the old primary, missing after promotion: stage %s, lease events %s, effects %s | calls without a definite answer %s; acknowledged after the promotion %s; services followed %s/2' \
    "$MODE" "$(class_count "$RUN/checker.txt" acked_not_recorded)" \
    "$(class_count "$RUN/checker.txt" acked_grant_lost)" \
    "$(class_count "$RUN/checker.txt" effect_without_intent)" \
    "$(class_count "$RUN/checker.txt" epoch_granted_twice)" \
    "$(class_count "$RUN/checker.txt" duplicate_effect)" \
    "$(class_count "$RUN/checker.txt" item_not_done)" \
    "$lost_stage" "$lost_lease" "$lost_effect" "$unknown" "$after_ok" "$moved")"
  stop_run
  if ((moved < 2 || after_ok == 0)); then
    say "FAIL: $MODE: the services did not carry on against the promoted standby (followed $moved/2, $after_ok answers after)"
    return 1
  fi
  if [[ "$MODE" == sync ]] && ((rc != 0)); then
    say "FAIL: sync: the checker found anomalies (see above)"
    return 1
  fi
  return 0
}

verdict=0
for m in "${MODES[@]}"; do
  [[ "$m" == sync || "$m" == async ]] || die "FAILOVER_MODES: sync and/or async"
  run_mode "$m" || verdict=1
done
echo
echo "==== failover summary ===="
for m in "${MODES[@]}"; do echo "${SUMMARY[$m]:-$m: did not finish}"; done | tee "$TMP/summary.txt"
((verdict == 0)) && echo "PASS: system_failover" || echo "FAIL: system_failover"
exit "$verdict"
