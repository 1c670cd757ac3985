#!/usr/bin/env bash
# campaign.sh — the multi-host fault campaign (docs/testing/campaign.md).
#
# Builds network namespaces pg, h1, h2, h3 and sink on one bridge; runs
# PostgreSQL in pg, a lease-service and a stage-service on each host, the
# side-effect sink in sink, and racing actors (monitor, webhook, reaper,
# finalizer through orchctl; the stage-service's own reconciler) on each
# host; injects faults at random moments (seeded); then hands the database
# history, the sink log, the actors' logs and the fault log to the history
# checker (checker.py), whose exit status is the campaign's.
#
# Usage: campaign.sh [BUILD_DIR]
# Environment:
#   CAMPAIGN_SEED        RNG seed (default 8)
#   CAMPAIGN_DURATION_S  load phase length (default 120)
#   CAMPAIGN_ITEMS       work items (default 80; 50 when ASAN_OPTIONS is set)
#   CAMPAIGN_SINK_MODE   fenced (default) or unfenced
#   CAMPAIGN_LISTEN      wildcard (default: lease-services listen on 0.0.0.0 and
#                        advertise their address) or address
#   CAMPAIGN_FAULTS      only these fault kinds, comma-separated
#   CAMPAIGN_KEEP_DIR    when set, the run's folder is copied there
#   ORCH_TEST_LOG_DIR    when set, the logs are copied there
# Exit status: 0 pass, 1 anomaly or failure, 77 skip (no namespaces, ...).

set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
BUILD="$(realpath -m -- "${1:-$SRC_DIR/build}")"
HERE="$SRC_DIR/tests/system/campaign"
readonly SRC_DIR BUILD HERE
readonly PG_OWNER="${ORCH_PG_USER:-postgres}"

readonly SEED="${CAMPAIGN_SEED:-8}"
readonly DURATION_S="${CAMPAIGN_DURATION_S:-120}"
# Under the sanitizers the services are several times slower: 50 items
# (the campaign's minimum) by default instead of 80.
if [[ -n "${ASAN_OPTIONS:-}" ]]; then
  readonly N_ITEMS="${CAMPAIGN_ITEMS:-50}"
else
  readonly N_ITEMS="${CAMPAIGN_ITEMS:-80}"
fi
readonly SINK_MODE="${CAMPAIGN_SINK_MODE:-fenced}"
readonly LISTEN="${CAMPAIGN_LISTEN:-wildcard}"

# Timing of the services under test: the ceiling above the step timeout,
# effects time out below the ceiling.
readonly CEILING_S=8
readonly STEP_TIMEOUT_S=3
readonly REAPER_INTERVAL_MS=500
readonly PROBE_TIMEOUT_MS=500
readonly EFFECT_TIMEOUT_MS=3000
readonly RECONCILER_MS=1500
readonly LEASE_RPC_PORT=7701 LEASE_HTTP_PORT=7711 STAGE_RPC_PORT=7702 STAGE_HTTP_PORT=7712
readonly SINK_PORT=8080
readonly DUP_LEASE_RPC_PORT=7703 DUP_LEASE_HTTP_PORT=7713
# A registration of another boot id older than this is a reboot; a fresher
# one is a second live machine with the same host id (refused).
readonly HOST_STALE_MS=3000
readonly HOOK_SECRET="campaign-hook-secret"
readonly REPO="org/app"
readonly HOSTS=(h1 h2 h3)
readonly ACTORS=(monitor webhook reaper finalizer)

# shellcheck source=../lib.sh
source "$SRC_DIR/tests/system/lib.sh"

# shellcheck disable=SC2119 # no PostgreSQL tool beyond the usual ones
campaign_programs
command -v ip >/dev/null 2>&1 || skip "network namespaces unavailable: no 'ip' command (iproute2)"
[[ "$(id -u)" -eq 0 ]] || skip "network namespaces unavailable: needs root (running as $(id -un))"
id -u "$PG_OWNER" >/dev/null 2>&1 || skip "system user '$PG_OWNER' (PostgreSQL's owner) does not exist"
[[ "$SINK_MODE" == fenced || "$SINK_MODE" == unfenced ]] || die "CAMPAIGN_SINK_MODE: fenced or unfenced"
[[ "$LISTEN" == wildcard || "$LISTEN" == address ]] || die "CAMPAIGN_LISTEN: wildcard or address"

SUF="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
declare -A NS=() VETH=() IP=()
for n in pg h1 h2 h3 sink; do
  NS[$n]="orch-c$n-$SUF"
  VETH[$n]="oc${n:0:2}$SUF" # root-side ends; under 16 characters
done
VETH[sink]="ocsk$SUF"
BR="ocbr$SUF"
TMP="" PGDIR=""
declare -A PID_LEASE=() PID_STAGE=()
declare -a ACTOR_PIDS=()
SINK_PID=""

alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "${stat##*) }" != Z* ]]
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local p h
  [[ -n "$TMP" ]] && touch "$TMP/stop"
  for p in "${ACTOR_PIDS[@]}"; do kill_wait KILL "$p"; done
  for h in "${HOSTS[@]}"; do
    [[ -n "${PID_STAGE[$h]:-}" ]] && kill -CONT "${PID_STAGE[$h]}" 2>/dev/null
    kill_wait KILL "${PID_STAGE[$h]:-}"
    kill_wait KILL "${PID_LEASE[$h]:-}"
  done
  kill_wait KILL "$SINK_PID"
  if [[ -n "$TMP" && -d "$TMP" ]]; then
    [[ -n "$PGDIR" && -f "$PGDIR/postgres.log" ]] && cp -f "$PGDIR/postgres.log" "$TMP/" 2>/dev/null
    if [[ -n "${ORCH_TEST_LOG_DIR:-}" ]]; then
      mkdir -p "$ORCH_TEST_LOG_DIR/system_campaign" && cp -rf "$TMP"/. "$ORCH_TEST_LOG_DIR/system_campaign/"
    fi
    if [[ -n "${CAMPAIGN_KEEP_DIR:-}" ]]; then
      mkdir -p "$CAMPAIGN_KEEP_DIR" && cp -rf "$TMP"/. "$CAMPAIGN_KEEP_DIR/"
    fi
  fi
  [[ -n "$PGDIR" && -d "$PGDIR" ]] && ip netns exec "${NS[pg]}" "$PGCTL" destroy "$PGDIR" >/dev/null 2>&1
  for n in pg h1 h2 h3 sink; do
    ip netns del "${NS[$n]}" 2>/dev/null
    ip link del "${VETH[$n]}" 2>/dev/null
  done
  ip link del "$BR" 2>/dev/null
  [[ -n "$TMP" && -d "$TMP" ]] && rm -rf -- "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- topology -----------------------------------------------------------------

errf="$(mktemp)"
if ! ip netns add "${NS[pg]}" 2>"$errf"; then
  reason="$(tr '\n' ' ' <"$errf")"
  rm -f "$errf"
  unset 'NS[pg]'
  NS[pg]="orch-none-$SUF"
  skip "network namespaces unavailable: ${reason:-ip netns add failed}"
fi
rm -f "$errf"
for n in h1 h2 h3 sink; do ip netns add "${NS[$n]}" || die "setup: ip netns add ${NS[$n]}"; done

NET=""
for _ in $(seq 1 64); do
  cand="10.232.$((RANDOM % 256))"
  if ! ip -4 -o addr show | grep -qF " $cand." && ! ip -4 route show | grep -qF "$cand."; then
    NET="$cand"
    break
  fi
done
[[ -n "$NET" ]] || die "setup: no free /24 in 10.232.0.0/16"
IP[pg]="$NET.1" IP[h1]="$NET.11" IP[h2]="$NET.12" IP[h3]="$NET.13" IP[sink]="$NET.20"
IP_ROOT="$NET.254"

TMP="$(mktemp -d /tmp/orch-campaign.XXXXXX)"
chmod 755 "$TMP"
{
  ip link add "$BR" type bridge && ip addr add "$IP_ROOT/24" dev "$BR" && ip link set "$BR" up
  for n in pg h1 h2 h3 sink; do
    ip link add "${VETH[$n]}" type veth peer name eth0 netns "${NS[$n]}" &&
      ip link set "${VETH[$n]}" master "$BR" up &&
      ip -n "${NS[$n]}" addr add "${IP[$n]}/24" dev eth0 &&
      ip -n "${NS[$n]}" link set lo up && ip -n "${NS[$n]}" link set eth0 up || exit 1
  done
} 2>"$TMP/setup.err" || die "setup: network topology: $(tr '\n' ' ' <"$TMP/setup.err")"
say "topology: pg ${IP[pg]}, h1 ${IP[h1]}, h2 ${IP[h2]}, h3 ${IP[h3]}, sink ${IP[sink]} on bridge $BR"

# ---- PostgreSQL in pg -----------------------------------------------------------

PGDIR="$(mktemp -d /tmp/orch-campaign-pg.XXXXXX)"
pgns() { ip netns exec "${NS[pg]}" "$PGCTL" "$@"; }
pgns init "$PGDIR" >"$TMP/pgctl.log" 2>&1 || die "setup: pgctl.sh init: $(tail -n 5 "$TMP/pgctl.log")"
(cd / && runuser -u "$PG_OWNER" -- tee -a "$PGDIR/data/postgresql.conf" >/dev/null) <<EOF

# Added by tests/system/campaign/campaign.sh: reachable from the test namespaces.
listen_addresses = '127.0.0.1,${IP[pg]}'
max_connections = 200
EOF
(cd / && runuser -u "$PG_OWNER" -- tee -a "$PGDIR/data/pg_hba.conf" >/dev/null) <<EOF
host    all       all   $NET.0/24   trust
EOF
pgns start "$PGDIR" >>"$TMP/pgctl.log" 2>&1 || die "setup: pgctl.sh start: $(tail -n 5 "$TMP/pgctl.log")"
PG_PORT="$(<"$PGDIR/port")"
DB_URL="postgresql://orch@${IP[pg]}:$PG_PORT/orch"
sql() { "$PG_BINDIR/psql" -X -At -q -v ON_ERROR_STOP=1 -d "$DB_URL?connect_timeout=5" -c "$1"; }
sql 'SELECT 1' >/dev/null 2>"$TMP/setup.err" || die "setup: PostgreSQL unreachable: $(cat "$TMP/setup.err")"
say "PostgreSQL in ${NS[pg]} at ${IP[pg]}:$PG_PORT"

# ---- the sink -------------------------------------------------------------------

mkdir -p "$TMP/sinkctl"
SINK_URL="http://${IP[sink]}:$SINK_PORT"
sink_args=(--listen "${IP[sink]}:$SINK_PORT" --log "$TMP/sink.log" --ctl-dir "$TMP/sinkctl"
  --hook-delay-ms 300)
[[ "$SINK_MODE" == unfenced ]] && sink_args+=(--unfenced)
ip netns exec "${NS[sink]}" "$SINK_BIN" "${sink_args[@]}" 2>"$TMP/sink.err" &
SINK_PID=$!
touch "$TMP/sink.log"

# ---- services -------------------------------------------------------------------

BASE_ENV=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
for v in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS; do
  [[ -n "${!v:-}" ]] && BASE_ENV+=("$v=${!v}")
done
for h in "${HOSTS[@]}"; do cat /proc/sys/kernel/random/uuid >"$TMP/$h.boot_id"; done

common_env() { # common_env HOST
  local h="$1"
  echo ORCH_HOST_ID="$h" ORCH_BOOT_ID_PATH="$TMP/$h.boot_id" ORCH_DATABASE_URL="$DB_URL" \
    ORCH_LEASE_RPC_URL="tcp://${IP[$h]}:$LEASE_RPC_PORT" ORCH_ORCHESTRATOR_REPO="$REPO" \
    ORCH_TRANSITION_LEASE_REPOS="$REPO" ORCH_REAPER_MAX_RUNNING_S="$CEILING_S" \
    ORCH_STEP_TIMEOUT_S="$STEP_TIMEOUT_S" ORCH_DB_CONNECT_TIMEOUT_S=2 ORCH_DB_STARTUP_WAIT_S=30 \
    ORCH_SHUTDOWN_GRACE_S=3 ORCH_LOG_LEVEL=info
}

# lease-service listens on the wildcard address, as a multi-host user sets it,
# and advertises its own address to the other hosts (ORCH_LEASE_ADVERTISE_URL);
# CAMPAIGN_LISTEN=address: it listens on the host's address, advertising none.
listen_env() { # listen_env HOST PORT
  if [[ "$LISTEN" == wildcard ]]; then
    echo ORCH_LEASE_RPC_URL="tcp://0.0.0.0:$2" ORCH_LEASE_ADVERTISE_URL="tcp://${IP[$1]}:$2"
  else
    echo ORCH_LEASE_RPC_URL="tcp://${IP[$1]}:$2"
  fi
}

start_lease() { # start_lease HOST
  local h="$1"
  # shellcheck disable=SC2046
  ip netns exec "${NS[$h]}" env -i "${BASE_ENV[@]}" $(common_env "$h") ORCH_RUNTIME=test \
    $(listen_env "$h" "$LEASE_RPC_PORT") ORCH_LEASE_HOST_STALE_MS="$HOST_STALE_MS" \
    ORCH_LEASE_HTTP_ADDR="${IP[$h]}:$LEASE_HTTP_PORT" \
    ORCH_LEASE_PROBE_TIMEOUT_MS="$PROBE_TIMEOUT_MS" \
    ORCH_LEASE_REAPER_INTERVAL_MS="$REAPER_INTERVAL_MS" \
    "$LEASE_BIN" >>"$TMP/lease-$h.log" 2>&1 &
  PID_LEASE[$h]=$!
}

# The stage-service runs with ORCH_RUNTIME=staging: the test runtime allows
# HTTP to loopback only, and the sink lives in its own namespace.
start_stage() { # start_stage HOST
  local h="$1"
  # shellcheck disable=SC2046
  ip netns exec "${NS[$h]}" env -i "${BASE_ENV[@]}" $(common_env "$h") ORCH_RUNTIME=staging \
    ORCH_STAGE_RPC_URL="tcp://${IP[$h]}:$STAGE_RPC_PORT" \
    ORCH_STAGE_HTTP_ADDR="${IP[$h]}:$STAGE_HTTP_PORT" \
    ORCH_GITEA_URL="$SINK_URL" ORCH_GITEA_TOKEN=campaign-token \
    ORCH_GITEA_WEBHOOK_SECRET="$HOOK_SECRET" \
    ORCH_IMAGE_HOOK_URL="$SINK_URL/hooks/image" ORCH_DEPLOY_HOOK_URL="$SINK_URL/hooks/deploy" \
    ORCH_EFFECT_TIMEOUT_MS="$EFFECT_TIMEOUT_MS" ORCH_STAGE_LEASE_TIMEOUT_MS=3000 \
    ORCH_RECONCILER_INTERVAL_MS="$RECONCILER_MS" ORCH_RECONCILER_BATCH=10 \
    "$STAGE_BIN" >>"$TMP/stage-$h.log" 2>&1 &
  PID_STAGE[$h]=$!
}

ctl() { # ctl HOST ARGS...: orchctl in HOST's namespace against HOST's services
  local h="$1"
  shift
  ip netns exec "${NS[$h]}" env -i "${BASE_ENV[@]}" ORCH_HOST_ID="$h" \
    ORCH_BOOT_ID_PATH="$TMP/$h.boot_id" ORCH_LEASE_RPC_URL="tcp://${IP[$h]}:$LEASE_RPC_PORT" \
    ORCH_STAGE_RPC_URL="tcp://${IP[$h]}:$STAGE_RPC_PORT" "$ORCHCTL" "$@"
}

wait_ready() { # wait_ready HOST: both services answer Check (30 s at most)
  local h="$1" until=$(($(now_ms) + 30000))
  while (($(now_ms) < until)); do
    if ctl "$h" --timeout 1000 health lease >/dev/null 2>&1 &&
      ctl "$h" --timeout 1000 health stage >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

for h in "${HOSTS[@]}"; do start_lease "$h"; done
for h in "${HOSTS[@]}"; do start_stage "$h"; done
for h in "${HOSTS[@]}"; do wait_ready "$h" || die "setup: services on $h did not become ready"; done
say "lease-service and stage-service ready on h1, h2, h3; sink $SINK_MODE at $SINK_URL"

# ---- work items -------------------------------------------------------------------

: >"$TMP/items"
for i in $(seq 1 "$N_ITEMS"); do
  item="CMP-$SUF-$i"
  echo "$item" >>"$TMP/items"
  ctl h1 --timeout 5000 stage create "$item" --repo "$REPO" --pr "$i" --title "campaign $i" \
    >/dev/null || die "setup: stage create $item"
done
say "$N_ITEMS work items created (pull requests 1..$N_ITEMS)"

# ---- actors ---------------------------------------------------------------------

LOAD_START_MS="$(now_ms)"
readonly LOAD_START_MS
readonly DEADLINE_MS=$((LOAD_START_MS + DURATION_S * 1000))
# The actors go on through the drain (faults stop at the deadline), until
# every item is done or the drain ends.
readonly DRAIN_MS=90000
: >"$TMP/actors.log"
k=0
for h in "${HOSTS[@]}"; do
  for a in "${ACTORS[@]}"; do
    k=$((k + 1))
    ip netns exec "${NS[$h]}" env -i "${BASE_ENV[@]}" ORCHCTL="$ORCHCTL" \
      ORCH_STAGE_RPC_URL="tcp://${IP[$h]}:$STAGE_RPC_PORT" STOP_FILE="$TMP/stop" \
      bash "$HERE/actor.sh" "$h" "$a" "$((SEED * 100 + k))" "$TMP/items" "$TMP/actors.log" \
      "$((DEADLINE_MS + DRAIN_MS))" 100000 &
    ACTOR_PIDS+=("$!")
  done
done
say "${#ACTOR_PIDS[@]} actors racing (seed $SEED, load phase at most $DURATION_S s)"

# ---- faults ---------------------------------------------------------------------

RANDOM="$SEED"
: >"$TMP/faults.log"
: >"$TMP/webhooks.log"
: >"$TMP/lease-dup.log"
fault_log() { # fault_log KIND HOST ITEM EPOCH DETAIL; FAULT_T: the moment, if not now
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${FAULT_T:-$(now_ms)}" "$1" "$2" "${3:--}" "${4:-0}" "${5:-}" >>"$TMP/faults.log"
  say "fault: $1 $2 ${3:-} ${5:-}"
}

restart_host() { # restart_host HOST NEW_BOOT(0|1): SIGKILL both services, start again
  local h="$1"
  kill -CONT "${PID_STAGE[$h]}" 2>/dev/null || true
  kill_wait KILL "${PID_STAGE[$h]}"
  kill_wait KILL "${PID_LEASE[$h]}"
  (($2)) && cat /proc/sys/kernel/random/uuid >"$TMP/$h.boot_id"
  sleep 0.5
  start_lease "$h"
  start_stage "$h"
  wait_ready "$h" || say "warning: services on $h slow to come back"
}

# held_lease [extra SQL condition]: "item|epoch|host|pid" of one held lease owned
# by a stage-service of this campaign (random among them), or nothing.
held_lease() {
  sql "SELECT work_item || '|' || epoch || '|' || owner_host || '|' || owner_pid
       FROM transition_lease l WHERE released_at IS NULL ${1:-} ORDER BY random() LIMIT 1" 2>/dev/null || true
}
wait_held_lease() { # up to 3 s
  local row="" i
  for ((i = 0; i < 30; i++)); do
    row="$(held_lease)"
    [[ -n "$row" ]] && break
    sleep 0.1
  done
  echo "$row"
}
owner_is_stage() { [[ "${PID_STAGE[$2]:-}" == "$1" ]]; }

fault_kill_owner() {
  # Prefer an owner inside an effect (an intent row still pending).
  local row="" i
  for ((i = 0; i < 30; i++)); do
    row="$(held_lease "AND EXISTS (SELECT 1 FROM side_effects s WHERE s.work_item = l.work_item
                                  AND s.outcome = 'pending')")"
    [[ -n "$row" ]] && break
    sleep 0.1
  done
  [[ -n "$row" ]] || row="$(wait_held_lease)"
  [[ -n "$row" ]] || return 1
  IFS='|' read -r item epoch host pid <<<"$row"
  owner_is_stage "$pid" "$host" || return 1
  local t
  t="$(now_ms)" # the kill's moment: a take-over may follow within milliseconds
  kill_wait KILL "$pid"
  FAULT_T="$t" fault_log kill_owner "$host" "$item" "$epoch" "SIGKILL stage-service pid $pid holding epoch $epoch"
  sleep 0.3
  start_stage "$host"
}

fault_kill_services() {
  local h="${HOSTS[RANDOM % 3]}"
  fault_log kill_services "$h" - 0 "SIGKILL lease-service and stage-service pid ${PID_STAGE[$h]}, same boot id"
  restart_host "$h" 0
}

fault_reboot() {
  local h="${HOSTS[RANDOM % 3]}"
  fault_log reboot_new_boot_id "$h" - 0 "SIGKILL both services (stage-service pid ${PID_STAGE[$h]}), new boot id"
  restart_host "$h" 1
}

fault_stop_owner() {
  local row
  row="$(wait_held_lease)"
  [[ -n "$row" ]] || return 1
  IFS='|' read -r item epoch host pid <<<"$row"
  owner_is_stage "$pid" "$host" || return 1
  kill -STOP "$pid" 2>/dev/null || return 1
  fault_log stop_owner "$host" "$item" "$epoch" "SIGSTOP stage-service pid $pid for $((CEILING_S + 2)) s"
  sleep "$((CEILING_S + 2))"
  kill -CONT "$pid" 2>/dev/null || true
}

fault_cut() { # fault_cut pg|sink
  local h="${HOSTS[RANDOM % 3]}" secs=$((2 + RANDOM % (CEILING_S + 2)))
  ip -n "${NS[$h]}" route add unreachable "${IP[$1]}/32" 2>/dev/null || return 1
  fault_log "cut_$1" "$h" - 0 "route to ${IP[$1]} unreachable for $secs s"
  sleep "$secs"
  ip -n "${NS[$h]}" route del unreachable "${IP[$1]}/32" 2>/dev/null || true
}

fault_delay_sink() {
  local h="${HOSTS[RANDOM % 3]}" ms=$(((CEILING_S + 3) * 1000))
  echo "$ms" >"$TMP/sinkctl/delay.${IP[$h]}"
  fault_log delay_sink "$h" - 0 "calls from $h handled $ms ms late for $((CEILING_S + 4)) s"
  sleep "$((CEILING_S + 4))"
  rm -f "$TMP/sinkctl/delay.${IP[$h]}"
}

fault_pg_restart() {
  fault_log pg_restart pg - 0 "immediate restart"
  pgns restart "$PGDIR" immediate >>"$TMP/pgctl.log" 2>&1 || pgns start "$PGDIR" >>"$TMP/pgctl.log" 2>&1
}

fault_force_release() {
  local row
  row="$(wait_held_lease)"
  [[ -n "$row" ]] || return 1
  IFS='|' read -r item epoch host pid <<<"$row"
  if ctl "${HOSTS[RANDOM % 3]}" --timeout 5000 lease force-release "$item" --epoch "$epoch" \
    --reason "campaign: force-release of a live owner" --operator campaign >/dev/null 2>&1; then
    fault_log force_release "$host" "$item" "$epoch" "operator force-release of pid $pid"
  fi
}

# A lease-service that runs out of descriptors cannot read /proc: that must
# make its owners UNKNOWN (defer), never DEAD. The limit is lowered to the
# descriptors it has open now, for a few seconds, on the host of a held lease.
fault_fd_exhaust() {
  local row item epoch host pid lp n
  row="$(wait_held_lease)"
  [[ -n "$row" ]] || return 1
  IFS='|' read -r item epoch host pid <<<"$row"
  lp="${PID_LEASE[$host]:-}"
  [[ -n "$lp" ]] && alive "$lp" || return 1
  n="$(find "/proc/$lp/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
  prlimit --pid "$lp" --nofile="$n:$n" 2>/dev/null || return 1
  fault_log fd_exhaust "$host" "$item" "$epoch" "lease-service pid $lp limited to $n descriptors for 4 s (owner pid $pid)"
  sleep 4
  prlimit --pid "$lp" --nofile=65536:65536 2>/dev/null || true
}

# A second machine started with an existing host id (and its own boot id
# and machine id): it must refuse to start and leave the live host's
# registration alone.
fault_dup_host_id() {
  local victim="${HOSTS[RANDOM % 3]}" on="${HOSTS[RANDOM % 3]}" p boot="$TMP/dup.boot_id" i rc=0
  local machine="$TMP/dup.machine_id"
  cat /proc/sys/kernel/random/uuid >"$boot"
  tr -d '-' </proc/sys/kernel/random/uuid >"$machine"
  # shellcheck disable=SC2046
  ip netns exec "${NS[$on]}" env -i "${BASE_ENV[@]}" $(common_env "$victim") ORCH_RUNTIME=test \
    ORCH_BOOT_ID_PATH="$boot" ORCH_MACHINE_ID_PATH="$machine" \
    $(listen_env "$on" "$DUP_LEASE_RPC_PORT") \
    ORCH_LEASE_HOST_STALE_MS="$HOST_STALE_MS" \
    ORCH_LEASE_HTTP_ADDR="${IP[$on]}:$DUP_LEASE_HTTP_PORT" \
    ORCH_LEASE_PROBE_TIMEOUT_MS="$PROBE_TIMEOUT_MS" \
    ORCH_LEASE_REAPER_INTERVAL_MS="$REAPER_INTERVAL_MS" \
    "$LEASE_BIN" >>"$TMP/lease-dup.log" 2>&1 &
  p=$!
  for ((i = 0; i < 80; i++)); do
    alive "$p" || break
    sleep 0.1
  done
  if alive "$p"; then
    kill_wait KILL "$p"
    fault_log dup_host_id "$victim" - 0 "accepted: a second lease-service as $victim (on $on) ran for 8 s"
  else
    wait "$p" 2>/dev/null
    rc=$?
    fault_log dup_host_id "$victim" - 0 "refused: a second lease-service as $victim (on $on) exited $rc"
  fi
}

# SIGSTOP of a stage-service while one of its connections is inside a
# transaction (pg_stat_activity: idle in transaction), else of one holding a
# lease: no reaper pass may wait on its row locks. Longer than the ceiling
# plus the checker's slack, so a stalled reaper shows as a lease held too long.
fault_stop_in_cas() {
  local h="" pid="" row addr port i where="not inside a transaction"
  for ((i = 0; i < 30; i++)); do
    [[ -z "$pid" ]] || break
    row="$(sql "SELECT host(client_addr) || '|' || client_port FROM pg_stat_activity
               WHERE state = 'idle in transaction' AND client_addr IS NOT NULL
               ORDER BY random() LIMIT 1" 2>/dev/null || true)"
    if [[ -n "$row" ]]; then
      IFS='|' read -r addr port <<<"$row"
      for h in "${HOSTS[@]}"; do
        [[ "${IP[$h]}" == "$addr" ]] || continue
        if ip netns exec "${NS[$h]}" ss -Htnp "sport = :$port" 2>/dev/null |
          grep -q "pid=${PID_STAGE[$h]},"; then
          pid="${PID_STAGE[$h]}" where="inside a transaction"
        fi
        break
      done
    fi
    [[ -n "$pid" ]] || sleep 0.1
  done
  if [[ -z "$pid" ]]; then
    row="$(wait_held_lease)"
    [[ -n "$row" ]] || return 1
    IFS='|' read -r _ _ h pid <<<"$row"
    owner_is_stage "$pid" "$h" || return 1
  fi
  kill -STOP "$pid" 2>/dev/null || return 1
  fault_log stop_in_cas "$h" - 0 "SIGSTOP stage-service pid $pid $where for $((CEILING_S + 6)) s"
  sleep "$((CEILING_S + 6))"
  kill -CONT "$pid" 2>/dev/null || true
}

# A developer's output that also carries the reviewer's verdict: no gate of
# another edge may read it. On an item of its own (repo org/misc, outside the
# lease's scope and the actors' list, so nobody else moves it): walked to
# development, reported with review_verdict=APPROVE, then left to the
# reconcilers for 8 s; it must still be in review.
fault_wrong_verdicts() {
  local h="${HOSTS[RANDOM % 3]}" item from to stage n
  n="$(now_ms)"
  item="CMP-$SUF-wv$n"
  ctl "$h" --timeout 5000 stage create "$item" --repo org/misc --pr "$((1000 + n % 1000000))" \
    --title "wrong verdicts" >/dev/null 2>&1 || return 1
  for from in backlog analysis architecture; do
    case "$from" in
    backlog) to=analysis set=() ;;
    analysis) to=architecture set=(--verdict analysis_status=DONE) ;;
    architecture) to=development set=(--verdict architecture_status=DONE) ;;
    esac
    ctl "$h" --timeout 10000 stage advance "$item" --from "$from" --to "$to" --actor monitor \
      "${set[@]}" >/dev/null 2>&1 || return 1
  done
  ctl "$h" --timeout 10000 stage advance "$item" --from development --to review --actor monitor \
    --verdict dev_status=DONE --verdict review_verdict=APPROVE >/dev/null 2>&1 || return 1
  sleep 8
  stage="$(sql "SELECT stage FROM tasks WHERE work_item = '$item'" 2>/dev/null || true)"
  if [[ "$stage" == review ]]; then
    fault_log wrong_verdicts "$h" "$item" 0 "stayed in review: a developer's review_verdict=APPROVE passed no gate"
  else
    fault_log wrong_verdicts "$h" "$item" 0 "moved to ${stage:-?}: a developer's review_verdict=APPROVE passed the review"
  fi
}

# A Gitea approval delivered while the item's lease is held by a live owner
# (a process of this harness, for 3 s), sent as Gitea sends it and retried as
# Gitea retries (non-2xx, every 0.5 s, 60 times at most). Nothing the sender
# was told it delivered may be dropped.
fault_webhook_held() {
  local h="${HOSTS[RANDOM % 3]}" item="" pr body sig code ans i t0 holder epoch out
  for ((i = 0; i < 50; i++)); do
    item="$(sql "SELECT t.work_item FROM tasks t WHERE t.repo = '$REPO' AND t.stage = 'review'
                 AND NOT EXISTS (SELECT 1 FROM transition_lease l WHERE l.work_item = t.work_item
                                 AND l.released_at IS NULL) ORDER BY random() LIMIT 1" 2>/dev/null || true)"
    [[ -n "$item" ]] && break
    sleep 0.1
  done
  [[ -n "$item" ]] || return 1
  ip netns exec "${NS[$h]}" sleep 30 &
  holder=$!
  sleep 0.1
  out="$(ctl "$h" --timeout 5000 --json lease acquire "$item" --repo "$REPO" --actor campaign-holder \
    --transition "review->testing" --owner-pid "$holder" 2>/dev/null)"
  epoch="$(jq -r 'select(.outcome == "GRANTED") | .epoch // empty' <<<"$out" 2>/dev/null)"
  if [[ -z "$epoch" ]]; then
    kill_wait KILL "$holder"
    return 1
  fi
  pr="$(sql "SELECT pr_number FROM tasks WHERE work_item = '$item'" 2>/dev/null)"
  body="{\"action\":\"reviewed\",\"repository\":{\"full_name\":\"$REPO\"},\"pull_request\":{\"number\":$pr}}"
  sig="$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$HOOK_SECRET" -r | cut -d' ' -f1)"
  for ((i = 0; i < 60; i++)); do
    ((i == 6)) && ctl "$h" --timeout 5000 lease release "$item" "$epoch" >/dev/null 2>&1
    t0="$(now_ms)"
    ans="$(ip netns exec "${NS[$h]}" curl -s -m 20 -o - -w '\n%{http_code}' \
      -H "Content-Type: application/json" -H "X-Gitea-Event: pull_request_approved" \
      -H "X-Gitea-Signature: $sig" --data-binary "$body" \
      "http://${IP[$h]}:$STAGE_HTTP_PORT/webhooks/gitea" 2>/dev/null)"
    code="${ans##*$'\n'}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t0" "$h" "$item" "$epoch" "$code" \
      "$(head -n 1 <<<"$ans" | tr '\t' ' ')" >>"$TMP/webhooks.log"
    [[ "$code" == 2* || "$code" == 4* ]] && break
    sleep 0.5
  done
  ((i >= 6)) || { sleep 3; ctl "$h" --timeout 5000 lease release "$item" "$epoch" >/dev/null 2>&1; }
  kill_wait KILL "$holder"
  fault_log webhook_held "$h" "$item" "$epoch" "Gitea approval of pull request $pr while epoch $epoch is held: HTTP $code after $((i + 1)) deliveries"
}

KINDS=(kill_owner kill_services reboot stop_owner "cut pg" "cut sink" delay_sink pg_restart force_release
  fd_exhaust dup_host_id stop_in_cas wrong_verdicts webhook_held)
if [[ -n "${CAMPAIGN_FAULTS:-}" ]]; then # e.g. "kill_owner,cut pg": only these kinds
  IFS=',' read -r -a KINDS <<<"$CAMPAIGN_FAULTS"
fi
# The long faults (a stopped owner, a cut, a delay) run beside the loop, at
# most two at a time; the others run in this shell (they restart services).
declare -a BG_PIDS=()
bg_reap() {
  local p keep=()
  for p in "${BG_PIDS[@]}"; do alive "$p" && keep+=("$p") || wait "$p" 2>/dev/null; done
  BG_PIDS=("${keep[@]}")
}
nfault=0 done_count=0
sleep 3
while (($(now_ms) < DEADLINE_MS - 12000 && nfault < 1000 && done_count < N_ITEMS)); do
  # Each kind in turn (a shuffled round), at a random moment.
  order=("${KINDS[@]}")
  for ((i = ${#order[@]} - 1; i > 0; i--)); do
    j=$((RANDOM % (i + 1)))
    t="${order[i]}" order[i]="${order[j]}" order[j]="$t"
  done
  for kind in "${order[@]}"; do
    (($(now_ms) < DEADLINE_MS - 12000)) || break
    sleep "$((RANDOM % 2)).$((RANDOM % 10))"
    nfault=$((nfault + 1))
    case "$kind" in
    stop_owner | stop_in_cas | cut* | delay_sink | fd_exhaust | webhook_held | wrong_verdicts)
      bg_reap
      while ((${#BG_PIDS[@]} >= 2)); do
        sleep 0.2
        bg_reap
      done
      # shellcheck disable=SC2086 # "cut pg" is a function and its argument
      { fault_$kind || say "fault $kind: no target this time"; } &
      BG_PIDS+=("$!")
      ;;
    *)
      # shellcheck disable=SC2086
      fault_$kind || say "fault $kind: no target this time"
      ;;
    esac
  done
  done_count="$(sql "SELECT count(*) FROM tasks WHERE repo = '$REPO' AND stage = 'done'" 2>/dev/null || echo 0)"
  say "progress: $done_count of $N_ITEMS items done"
done
for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
BG_PIDS=()

# ---- drain: let the actors finish, then the reaper settle -----------------------

rm -f "$TMP"/sinkctl/delay.* 2>/dev/null
for h in "${HOSTS[@]}"; do
  kill -CONT "${PID_STAGE[$h]}" 2>/dev/null || true
  alive "${PID_LEASE[$h]}" || start_lease "$h"
  alive "${PID_STAGE[$h]}" || start_stage "$h"
done
until=$((DEADLINE_MS + DRAIN_MS))
while (($(now_ms) < until)); do
  left="$(sql "SELECT count(*) FROM tasks WHERE repo = '$REPO' AND stage <> 'done'" 2>/dev/null || echo "$N_ITEMS")"
  ((left == 0)) && break
  sleep 1
done
touch "$TMP/stop"
for p in "${ACTOR_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
ACTOR_PIDS=()
# Every lease released: the last calls finish, the reaper handles the rest.
until=$(($(now_ms) + (CEILING_S + 10) * 1000))
while (($(now_ms) < until)); do
  held="$(sql "SELECT count(*) FROM transition_lease WHERE released_at IS NULL" 2>/dev/null || echo 1)"
  ((held == 0)) && break
  sleep 0.5
done
say "load over after $((($(now_ms) - LOAD_START_MS) / 1000)) s; $nfault faults; leases still held: $held"

for h in "${HOSTS[@]}"; do
  kill_wait TERM "${PID_STAGE[$h]}"
  kill_wait TERM "${PID_LEASE[$h]}"
  PID_STAGE[$h]="" PID_LEASE[$h]=""
done
kill_wait TERM "$SINK_PID"
SINK_PID=""

# ---- history ----------------------------------------------------------------------

bash "$HERE/dump_history.sh" "$PG_BINDIR/psql" "$DB_URL" "$TMP" "$REPO"
cat "$TMP"/lease-h*.log "$TMP"/lease-dup.log >"$TMP/lease-all.log" 2>/dev/null || true

echo
set +e
"$PYTHON" "$HERE/checker.py" --dir "$TMP" --ceiling-s "$CEILING_S" \
  --reaper-interval-ms "$REAPER_INTERVAL_MS" --sink-mode "$SINK_MODE" --seed "$SEED" |
  tee "$TMP/checker.txt"
rc=${PIPESTATUS[0]}
set -e
if grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$TMP"/lease-h*.log "$TMP"/stage-h*.log; then
  say "FAIL: sanitizer report in a service log"
  rc=1
fi
((rc == 0)) && echo "PASS: system_campaign" || echo "FAIL: system_campaign"
exit "$rc"
