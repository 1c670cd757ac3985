#!/usr/bin/env bash
# lease_two_hosts.sh — system test of liveness across hosts (DESIGN.md,
# invariant 5): two lease-service instances in two network namespaces share one
# PostgreSQL; a remote owner is judged by asking its host's lease-service, an
# unreachable host means "defer, never steal" until the ceiling, and a dead
# remote owner is taken over at once.
#
# Usage: lease_two_hosts.sh [BUILD_DIR]     (default: build/ of this source tree)
#
# Needs root and `ip netns`, PostgreSQL 15 (see tests/support/pgctl.sh) and jq.
# Exit status: 0 pass, 1 fail, 77 skip (no namespaces, no PostgreSQL, ...).
# ORCH_TEST_LOG_DIR: when set, the service and database logs are copied there.
# tests/system/README.md describes the topology and the scenario.

set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(realpath -m -- "${1:-$SRC_DIR/build}")"
readonly SRC_DIR BUILD
readonly LEASE_BIN="$BUILD/services/lease/lease-service"
readonly ORCHCTL="$BUILD/tools/orchctl/orchctl"
readonly PGCTL="$SRC_DIR/tests/support/pgctl.sh"
readonly PG_BINDIR="${ORCH_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
readonly PG_OWNER="${ORCH_PG_USER:-postgres}"

# Timing of the services under test (ceiling > step timeout is required).
readonly CEILING_S=12
readonly STEP_TIMEOUT_S=5
readonly PROBE_TIMEOUT_MS=500
readonly REAPER_INTERVAL_MS=300
readonly RPC_PORT=7701
readonly HTTP_PORT=7711

T_START="$(date +%s%3N)"
FAILED=0
declare -a RESULTS=()
declare -a SVC_PIDS=()
declare -a OWNER_PIDS=()
NS1="" NS2="" BR="" V1="" V2="" TMP="" PGDIR=""

say() { printf '[%6.1fs] %s\n' "$(($(date +%s%3N) - T_START))e-3" "$*"; }
pass() {
  say "PASS: $*"
  RESULTS+=("PASS|$*")
}
fail() {
  say "FAIL: $*"
  RESULTS+=("FAIL|$*")
  FAILED=1
}
skip() {
  echo "SKIP: $*"
  exit 77
}
# check DESCRIPTION CMD...: PASS when CMD succeeds, FAIL otherwise.
check() {
  local what="$1"
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# check_eq DESCRIPTION WANT GOT: PASS when equal; the FAIL line shows both.
check_eq() {
  if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1: want '$2', got '$3'"; fi
}
# abort DESCRIPTION: a failure the rest of the scenario cannot go on from.
abort() {
  fail "$*"
  summary
  exit 1
}

now_ms() { date +%s%3N; }

summary() {
  local r total=0 failed=0
  echo
  echo "==== system_lease_two_hosts: summary ===="
  printf '%-6s %s\n' RESULT CHECK
  for r in "${RESULTS[@]}"; do
    printf '%-6s %s\n' "${r%%|*}" "${r#*|}"
    total=$((total + 1))
    [[ "${r%%|*}" == FAIL ]] && failed=$((failed + 1))
  done
  echo "$((total - failed)) of $total checks passed in $((($(now_ms) - T_START) / 1000)) s"
}

# ---- preconditions ---------------------------------------------------------

[[ -x "$LEASE_BIN" ]] || {
  echo "FAIL: $LEASE_BIN not found (build first, or pass the build folder as \$1)"
  exit 1
}
[[ -x "$ORCHCTL" ]] || {
  echo "FAIL: $ORCHCTL not found (build first, or pass the build folder as \$1)"
  exit 1
}
command -v ip >/dev/null 2>&1 || skip "network namespaces unavailable: no 'ip' command (iproute2)"
command -v jq >/dev/null 2>&1 || skip "jq is not installed"
for tool in initdb pg_ctl postgres psql; do
  [[ -x "$PG_BINDIR/$tool" ]] || skip "PostgreSQL not installed ($PG_BINDIR/$tool missing)"
done
if [[ "$(id -u)" -ne 0 ]]; then
  skip "network namespaces unavailable: needs root (running as $(id -un))"
fi
id -u "$PG_OWNER" >/dev/null 2>&1 || skip "system user '$PG_OWNER' (PostgreSQL's owner) does not exist"

SUF="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
NS1="orch-h1-$SUF"
NS2="orch-h2-$SUF"
BR="obr$SUF"  # interface names stay under 16 characters
V1="oh1$SUF"  # root-side ends of the veth pairs; eth0 inside each namespace
V2="oh2$SUF"
ITEM="SYS-$SUF-1"
ITEM2="SYS-$SUF-2"
ITEM3="SYS-$SUF-3"

# ---- cleanup ---------------------------------------------------------------

# alive PID: the process exists and is not a zombie.
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "${stat##*) }" != Z* ]]
}

# stop_pid PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL. Sets
# STOP_RC to the exit status (124 when it had to be killed). Not to be run in
# a subshell: only this shell can wait for its children.
STOP_RC=0
stop_pid() {
  local pid="$1" secs="$2" i
  STOP_RC=0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    STOP_RC=124
    return 0
  fi
  wait "$pid" 2>/dev/null || STOP_RC=$?
}

print_logs() {
  local f
  for f in "$TMP"/*.log "$PGDIR/postgres.log"; do
    [[ -f "$f" ]] || continue
    echo "----- last 150 lines of $f -----"
    tail -n 150 "$f"
  done
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local pid
  for pid in "${SVC_PIDS[@]}"; do
    alive "$pid" && stop_pid "$pid" 5
  done
  for pid in "${OWNER_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [[ -n "$TMP" && -d "$TMP" ]]; then
    ((rc == 0 || rc == 77)) || print_logs
    if [[ -n "${ORCH_TEST_LOG_DIR:-}" ]]; then
      mkdir -p "$ORCH_TEST_LOG_DIR/system_lease_two_hosts" &&
        cp -f "$TMP"/*.log "$ORCH_TEST_LOG_DIR/system_lease_two_hosts/" 2>/dev/null
      [[ -n "$PGDIR" && -f "$PGDIR/postgres.log" ]] &&
        cp -f "$PGDIR/postgres.log" "$ORCH_TEST_LOG_DIR/system_lease_two_hosts/" 2>/dev/null
    fi
  fi
  [[ -n "$PGDIR" && -d "$PGDIR" ]] && "$PGCTL" destroy "$PGDIR" >/dev/null 2>&1
  [[ -n "$NS1" ]] && ip netns del "$NS1" 2>/dev/null
  [[ -n "$NS2" ]] && ip netns del "$NS2" 2>/dev/null
  ip link del "$V1" 2>/dev/null
  ip link del "$V2" 2>/dev/null
  ip link del "$BR" 2>/dev/null
  [[ -n "$TMP" && -d "$TMP" ]] && rm -rf -- "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- topology ---------------------------------------------------------------

errf="$(mktemp)"
if ! ip netns add "$NS1" 2>"$errf"; then
  reason="$(tr '\n' ' ' <"$errf")"
  rm -f "$errf"
  NS1=""
  skip "network namespaces unavailable: ${reason:-ip netns add failed}"
fi
rm -f "$errf"
ip netns add "$NS2" || { NS2="" && abort "setup: ip netns add $NS2"; }

# A /24 in 10.231.0.0/16 that nothing on this host uses yet.
NET=""
for _ in $(seq 1 64); do
  cand="10.231.$((RANDOM % 256))"
  if ! ip -4 -o addr show | grep -qF " $cand." && ! ip -4 route show | grep -qF "$cand."; then
    NET="$cand"
    break
  fi
done
[[ -n "$NET" ]] || abort "setup: no free /24 in 10.231.0.0/16"
readonly IP_PG="$NET.1" IP1="$NET.2" IP2="$NET.3"

TMP="$(mktemp -d /tmp/orch-system.XXXXXX)"

{
  ip link add "$BR" type bridge &&
    ip addr add "$IP_PG/24" dev "$BR" &&
    ip link set "$BR" up &&
    ip link add "$V1" type veth peer name eth0 netns "$NS1" &&
    ip link add "$V2" type veth peer name eth0 netns "$NS2" &&
    ip link set "$V1" master "$BR" up &&
    ip link set "$V2" master "$BR" up &&
    ip -n "$NS1" addr add "$IP1/24" dev eth0 &&
    ip -n "$NS2" addr add "$IP2/24" dev eth0 &&
    ip -n "$NS1" link set lo up && ip -n "$NS1" link set eth0 up &&
    ip -n "$NS2" link set lo up && ip -n "$NS2" link set eth0 up
} 2>"$TMP/setup.err" || abort "setup: network topology: $(tr '\n' ' ' <"$TMP/setup.err")"
say "topology: $NS1 ($IP1) and $NS2 ($IP2) on bridge $BR ($IP_PG/24)"

# ---- PostgreSQL, reachable from both namespaces ----------------------------

PGDIR="$(mktemp -d /tmp/orch-system-pg.XXXXXX)"
"$PGCTL" init "$PGDIR" >"$TMP/pgctl.log" 2>&1 || abort "setup: pgctl.sh init: $(tail -n 5 "$TMP/pgctl.log")"
# The private cluster listens on 127.0.0.1; add the bridge address and let the
# test subnet in. Lines after orch.conf's include win.
(cd / && runuser -u "$PG_OWNER" -- tee -a "$PGDIR/data/postgresql.conf" >/dev/null) <<EOF

# Added by tests/system/lease_two_hosts.sh: reachable from the test namespaces.
listen_addresses = '127.0.0.1,$IP_PG'
EOF
(cd / && runuser -u "$PG_OWNER" -- tee -a "$PGDIR/data/pg_hba.conf" >/dev/null) <<EOF
host    all       all   $NET.0/24   trust
EOF
"$PGCTL" start "$PGDIR" >>"$TMP/pgctl.log" 2>&1 || abort "setup: pgctl.sh start: $(tail -n 5 "$TMP/pgctl.log")"
PG_PORT="$(<"$PGDIR/port")"
DB_URL_ROOT="$("$PGCTL" url "$PGDIR")"
DB_URL_NS="postgresql://orch@$IP_PG:$PG_PORT/orch"

sql() {
  "$PG_BINDIR/psql" -X -At -q -v ON_ERROR_STOP=1 -d "$DB_URL_ROOT" -c "$1"
}

ip netns exec "$NS1" "$PG_BINDIR/psql" -X -At -q -d "$DB_URL_NS?connect_timeout=3" -c 'SELECT 1' \
  >/dev/null 2>"$TMP/setup.err" ||
  abort "setup: PostgreSQL at $IP_PG:$PG_PORT unreachable from $NS1: $(tr '\n' ' ' <"$TMP/setup.err")"
ip netns exec "$NS2" "$PG_BINDIR/psql" -X -At -q -d "$DB_URL_NS?connect_timeout=3" -c 'SELECT 1' \
  >/dev/null 2>"$TMP/setup.err" ||
  abort "setup: PostgreSQL at $IP_PG:$PG_PORT unreachable from $NS2: $(tr '\n' ' ' <"$TMP/setup.err")"
say "PostgreSQL at $IP_PG:$PG_PORT (and 127.0.0.1), reachable from both namespaces"

# ---- helpers: hosts, services, orchctl --------------------------------------

# Each "host" has its own boot id, as two real machines would.
cat /proc/sys/kernel/random/uuid >"$TMP/h1.boot_id"
cat /proc/sys/kernel/random/uuid >"$TMP/h2.boot_id"

ns_of() { [[ "$1" == h1 ]] && echo "$NS1" || echo "$NS2"; }
ip_of() { [[ "$1" == h1 ]] && echo "$IP1" || echo "$IP2"; }
url_of() { echo "tcp://$(ip_of "$1"):$RPC_PORT"; }

# Environment handed through to every program (sanitizer settings only).
BASE_ENV=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "ORCH_RUNTIME=test")
for v in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS; do
  [[ -n "${!v:-}" ]] && BASE_ENV+=("$v=${!v}")
done

declare -A SVC_PID=()

# start_service HOST LOGNAME REAPER_INTERVAL_MS
start_service() {
  local host="$1" log="$TMP/$2.log" interval="$3" ip
  ip="$(ip_of "$host")"
  ip netns exec "$(ns_of "$host")" env -i "${BASE_ENV[@]}" \
    ORCH_HOST_ID="$host" \
    ORCH_BOOT_ID_PATH="$TMP/$host.boot_id" \
    ORCH_DATABASE_URL="$DB_URL_NS" \
    ORCH_LEASE_RPC_URL="tcp://$ip:$RPC_PORT" \
    ORCH_LEASE_HTTP_ADDR="$ip:$HTTP_PORT" \
    ORCH_LEASE_PROBE_TIMEOUT_MS="$PROBE_TIMEOUT_MS" \
    ORCH_LEASE_REAPER_INTERVAL_MS="$interval" \
    ORCH_REAPER_MAX_RUNNING_S="$CEILING_S" \
    ORCH_STEP_TIMEOUT_S="$STEP_TIMEOUT_S" \
    ORCH_DB_CONNECT_TIMEOUT_S=2 \
    ORCH_DB_STARTUP_WAIT_S=20 \
    ORCH_SHUTDOWN_GRACE_S=5 \
    ORCH_LOG_LEVEL=debug \
    "$LEASE_BIN" >"$log" 2>&1 &
  SVC_PID[$host]=$!
  SVC_PIDS+=("$!")
}

# ctl HOST URL ARGS...: runs orchctl on HOST (its identity, its namespace)
# against the lease-service at URL. Sets OUT (stdout) and RC.
OUT="" RC=0
ctl() {
  local host="$1" url="$2"
  shift 2
  RC=0
  OUT="$(ip netns exec "$(ns_of "$host")" env -i "${BASE_ENV[@]}" \
    ORCH_HOST_ID="$host" ORCH_BOOT_ID_PATH="$TMP/$host.boot_id" ORCH_LEASE_RPC_URL="$url" \
    "$ORCHCTL" --timeout 5000 "$@" 2>"$TMP/ctl.err")" || RC=$?
  if [[ -s "$TMP/ctl.err" ]]; then
    OUT="$OUT$(printf '\n[stderr] %s' "$(cat "$TMP/ctl.err")")"
  fi
  return 0
}

# wait_ready HOST: until Check answers SERVING (20 s at most).
wait_ready() {
  local host="$1" pid="${SVC_PID[$1]}" until=$(($(now_ms) + 20000))
  while (($(now_ms) < until)); do
    alive "$pid" || return 1
    ctl "$host" "$(url_of "$host")" health lease
    ((RC == 0)) && return 0
    sleep 0.2
  done
  return 1
}

# start_owner HOST: starts a long-lived process in HOST's namespace; sets LAST_OWNER.
# (Network namespaces share the pid namespace, so the pid is the same here.)
start_owner() {
  ip netns exec "$(ns_of "$1")" sleep 300 &
  OWNER_PIDS+=("$!")
  LAST_OWNER=$!
}

start_ticks() {
  local stat
  stat="$(cat "/proc/$1/stat")"
  stat="${stat##*) }"
  # Field 22 of the whole line is field 20 after "pid (comm) ".
  awk '{print $20}' <<<"$stat"
}

jget() { jq -r "$1" <<<"$OUT" 2>/dev/null || echo "?"; }

lease_row() { sql "SELECT epoch, owner_host, owner_pid, released_at IS NULL FROM transition_lease WHERE work_item = '$1'"; }
events_of() { sql "SELECT count(*) FROM lease_events WHERE work_item = '$1' AND kind = '$2'"; }
lease_age_s() { sql "SELECT floor(extract(epoch FROM now() - acquired_at)) FROM transition_lease WHERE work_item = '$1'"; }

# ---- start the two lease-services -------------------------------------------

start_service h1 h1 "$REAPER_INTERVAL_MS"
start_service h2 h2 "$REAPER_INTERVAL_MS"
wait_ready h1 || abort "setup: lease-service on h1 did not become ready: $OUT"
wait_ready h2 || abort "setup: lease-service on h2 did not become ready: $OUT"
URL1="$(url_of h1)"
URL2="$(url_of h2)"
say "lease-service ready on h1 ($URL1) and h2 ($URL2)"
check_eq "setup: both hosts registered with their own boot ids" 2 \
  "$(sql "SELECT count(DISTINCT boot_id) FROM hosts WHERE host_id IN ('h1','h2')")"

# ---- scenario 1, step 1: an owner on h1 takes the lease ----------------------

start_owner h1
OWNER1=$LAST_OWNER
start_owner h2
OWNER2=$LAST_OWNER
TICKS1="$(start_ticks "$OWNER1")"
BOOT1="$(<"$TMP/h1.boot_id")"

ctl h1 "$URL1" --json lease acquire "$ITEM" --owner-pid "$OWNER1" --actor sys-h1
EPOCH1="$(jget .epoch)"
T_GRANT="$(now_ms)"
if ((RC == 0)) && [[ "$(jget .outcome)" == GRANTED && "$EPOCH1" =~ ^[1-9][0-9]*$ ]]; then
  pass "1  owner pid $OWNER1 on h1 acquires $ITEM through h1: GRANTED epoch $EPOCH1"
else
  abort "1  owner on h1 acquires $ITEM: want exit 0 GRANTED, got exit $RC: $OUT"
fi

# ---- step 2: h2 defers on a live remote owner --------------------------------

ctl h2 "$URL2" --json lease acquire "$ITEM" --owner-pid "$OWNER2" --actor sys-h2
if ((RC == 3)) && [[ "$(jget .outcome)" == HELD && "$(jget .holder_liveness)" == ALIVE &&
  "$(jget .epoch)" == "$EPOCH1" && "$(jget .holder.owner.host_id)" == h1 ]]; then
  pass "2  h2 Acquire: exit 3 HELD, holder h1 epoch $EPOCH1, liveness ALIVE (asked h1)"
else
  fail "2  h2 Acquire: want exit 3 HELD ALIVE by h1 at epoch $EPOCH1, got exit $RC: $OUT"
fi

ctl h2 "$URL1" --json lease probe "$OWNER1" "$TICKS1" "$BOOT1"
if ((RC == 0)) && [[ "$(jget .liveness)" == ALIVE && "$(jget .host_id)" == h1 ]]; then
  pass "2  ProbeOwner at h1 (from h2) for pid $OWNER1: ALIVE"
else
  fail "2  ProbeOwner at h1 for pid $OWNER1: want ALIVE from h1, got exit $RC: $OUT"
fi
ctl h2 "$URL1" --json lease probe "$OWNER1" "$((TICKS1 + 1))" "$BOOT1"
if ((RC == 0)) && [[ "$(jget .liveness)" == DEAD ]]; then
  pass "2  ProbeOwner at h1 with the wrong start time: DEAD"
else
  fail "2  ProbeOwner at h1 with the wrong start time: want DEAD, got exit $RC: $OUT"
fi

# ---- step 3: h1 cut off; h2 must defer (UNKNOWN), never steal -----------------

ip link set "$V1" down
say "h1 cut off (link $V1 down); owner pid $OWNER1 still runs on h1"
ctl h2 "$URL1" --timeout 1000 lease probe "$OWNER1" "$TICKS1" "$BOOT1"
check "3  h1's lease-service is unreachable from h2 (probe exit $RC)" test "$RC" -ne 0

attempts=0 bad=0
AGE0="$(lease_age_s "$ITEM")"
while :; do
  ctl h2 "$URL2" --json lease acquire "$ITEM" --owner-pid "$OWNER2" --actor sys-h2
  attempts=$((attempts + 1))
  if ((RC != 3)) || [[ "$(jget .outcome)" != HELD || "$(jget .holder_liveness)" != UNKNOWN ||
    "$(jget .epoch)" != "$EPOCH1" ]]; then
    bad=$((bad + 1))
    say "   attempt $attempts: exit $RC: $(tr '\n' ' ' <<<"$OUT")"
  fi
  age="$(lease_age_s "$ITEM")"
  # Keep asking until 9 s after the grant, well before the 12 s ceiling (the
  # wall clock bounds the loop should the row be re-granted meanwhile).
  [[ "$age" =~ ^[0-9]+$ ]] && ((age < CEILING_S - 3)) || break
  (($(now_ms) < T_GRANT + (CEILING_S - 3) * 1000)) || break
  sleep 0.6
done
if ((bad == 0 && attempts >= 4)); then
  pass "3  h2 Acquire x$attempts over ${AGE0}..${age} s of lease age: always exit 3 HELD, liveness UNKNOWN"
else
  fail "3  h2 Acquire while h1 is cut off: $bad of $attempts answers were not HELD/UNKNOWN"
fi
check_eq "3  lease row unchanged (epoch|owner host|owner pid|held)" \
  "$EPOCH1|h1|$OWNER1|t" "$(lease_row "$ITEM")"
check_eq "3  no reclaimed-stale, ceiling-released or other release event (reapers left it alone)" "" \
  "$(sql "SELECT string_agg(kind || '@' || epoch, ',') FROM lease_events WHERE work_item = '$ITEM'
          AND kind IN ('reclaimed-stale','ceiling-released','released','force-released')")"
check "3  deferrals recorded for h2's attempts" \
  test "$(events_of "$ITEM" deferred)" -ge "$attempts"
check "3  owner pid $OWNER1 on h1 still alive" alive "$OWNER1"

# ---- step 4: past the ceiling h2's reaper releases it; h2 gets it --------------

granted=0 held_ok=1 until=$(($(now_ms) + (CEILING_S + 8) * 1000))
while (($(now_ms) < until)); do
  ctl h2 "$URL2" --json lease acquire "$ITEM" --owner-pid "$OWNER2" --actor sys-h2
  if ((RC == 0)); then
    granted=1
    break
  fi
  if ((RC != 3)) || [[ "$(jget .holder_liveness)" != UNKNOWN ]]; then
    held_ok=0
    say "   before the ceiling: exit $RC: $(tr '\n' ' ' <<<"$OUT")"
  fi
  sleep 0.4
done
EPOCH2="$(jget .epoch)"
check "4  until the ceiling every answer was HELD/UNKNOWN" test "$held_ok" = 1
if ((granted)) && [[ "$(jget .outcome)" == GRANTED && "$(jget .reclaimed)" == false &&
  "$EPOCH2" =~ ^[0-9]+$ ]] && ((EPOCH2 > EPOCH1)); then
  pass "4  h2 Acquire after the ceiling: GRANTED epoch $EPOCH2 > $EPOCH1"
else
  fail "4  h2 Acquire after the ceiling: want exit 0 GRANTED with an epoch > $EPOCH1, got exit $RC: $OUT"
  EPOCH2=0
fi
check_eq "4  ceiling-released event for epoch $EPOCH1 (by the reaper)" 1 \
  "$(sql "SELECT count(*) FROM lease_events WHERE work_item = '$ITEM' AND epoch = $EPOCH1
          AND kind = 'ceiling-released' AND actor = 'reaper'")"
held_for="$(sql "SELECT floor(extract(epoch FROM c.at - g.at)) FROM lease_events g, lease_events c
                 WHERE g.work_item = '$ITEM' AND c.work_item = g.work_item AND g.epoch = $EPOCH1
                   AND c.epoch = g.epoch AND g.kind = 'granted' AND c.kind = 'ceiling-released'")"
check "4  released no earlier than the ceiling (held ${held_for:-?} s, ceiling $CEILING_S s)" \
  test "${held_for:-0}" -ge "$CEILING_S"
check_eq "4  still no reclaimed-stale event for $ITEM" 0 "$(events_of "$ITEM" reclaimed-stale)"
check "4  'ALERT lease.ceiling-released' in h2's log" \
  grep -qF "ALERT lease.ceiling-released $ITEM" "$TMP/h2.log"
check "4  h1 (cut off from the database) did not release it" \
  bash -c "! grep -qF 'ALERT lease.ceiling-released $ITEM' '$TMP/h1.log'"
check_eq "4  lease row (epoch|owner host|owner pid|held)" "$EPOCH2|h2|$OWNER2|t" "$(lease_row "$ITEM")"

# ---- step 5: h1 comes back; its owner's stale epoch is fenced off ---------------

ip link set "$V1" up
say "h1 reconnected (link $V1 up)"
before_row="$(lease_row "$ITEM")"
before_ev="$(sql "SELECT count(*) FROM lease_events WHERE work_item = '$ITEM' AND kind <> 'deferred'")"
until=$(($(now_ms) + 20000))
while :; do
  ctl h1 "$URL1" lease release "$ITEM" "$EPOCH1"
  # Anything but 73 (refused) or 0 (accepted): h1 may still be reconnecting.
  ((RC == 73 || RC == 0)) && break
  (($(now_ms) < until)) || break
  sleep 0.3
done
if ((RC == 73)); then
  pass "5  h1 owner's Release of old epoch $EPOCH1: exit 73 FAILED_PRECONDITION"
else
  fail "5  h1 owner's Release of old epoch $EPOCH1: want exit 73, got exit $RC: $OUT"
fi
check_eq "5  nothing changed (lease row|events other than deferrals)" "$before_row|$before_ev" \
  "$(lease_row "$ITEM")|$(sql "SELECT count(*) FROM lease_events WHERE work_item = '$ITEM' AND kind <> 'deferred'")"
ctl h1 "$URL1" lease validate "$ITEM" "$EPOCH1"
check "5  Validate of old epoch $EPOCH1 through h1: not valid (exit $RC)" test "$RC" = 3
if ((EPOCH2 > 0)); then
  ctl h1 "$URL1" lease validate "$ITEM" "$EPOCH2"
  check "5  Validate of h2's epoch $EPOCH2 through h1: valid (exit $RC)" test "$RC" = 0
else
  fail "5  Validate of h2's epoch through h1: h2 got no epoch in step 4"
fi
ctl h1 "$URL1" --json lease acquire "$ITEM" --owner-pid "$OWNER1" --actor sys-h1
if ((RC == 3)) && [[ "$(jget .holder_liveness)" == ALIVE && "$(jget .holder.owner.host_id)" == h2 ]]; then
  pass "5  h1 Acquire now defers to h2's live owner (HELD, ALIVE asked from h2)"
else
  fail "5  h1 Acquire after reconnect: want exit 3 HELD ALIVE by h2, got exit $RC: $OUT"
fi
# h2's service keeps its connection to h1's service from before the cut: it
# must be able to judge h1's owners again (not UNKNOWN until the ceiling).
ctl h1 "$URL1" --json lease acquire "$ITEM3" --owner-pid "$OWNER1" --actor sys-h1
check_eq "5  owner pid $OWNER1 on h1 acquires $ITEM3 through h1 (exit|outcome)" "0|GRANTED" \
  "$RC|$(jget .outcome)"
t0="$(now_ms)" until=$(($(now_ms) + 15000))
while :; do
  ctl h2 "$URL2" --json lease acquire "$ITEM3" --owner-pid "$OWNER2" --actor sys-h2
  [[ "$RC|$(jget .holder_liveness)" == "3|UNKNOWN" ]] || break
  (($(now_ms) < until)) || break
  sleep 0.3
done
check_eq "5  h2 judges h1's owners again after the reconnect, in $((($(now_ms) - t0) / 1000)) s (exit|liveness)" \
  "3|ALIVE" "$RC|$(jget .holder_liveness)"

# ---- restart both services for scenario 2 ------------------------------------
# Scenario 2 needs Acquire (not a reaper pass) to find the dead owner first:
# restart both services with the reaper's interval far beyond the test's time.

for host in h1 h2; do
  stop_pid "${SVC_PID[$host]}" 10
  check "6  lease-service on $host stops on SIGTERM with exit 0 (got $STOP_RC)" test "$STOP_RC" = 0
done
start_service h1 h1-run2 600000
start_service h2 h2-run2 600000
wait_ready h1 || abort "6  lease-service on h1 did not restart: $OUT"
wait_ready h2 || abort "6  lease-service on h2 did not restart: $OUT"
say "both lease-services restarted (reaper interval 600 s)"

# ---- scenario 2: a dead remote owner is taken over at once --------------------

start_owner h1
OWNER3=$LAST_OWNER
ctl h1 "$URL1" --json lease acquire "$ITEM2" --owner-pid "$OWNER3" --actor sys-h1
EPOCH3="$(jget .epoch)"
if ((RC == 0)) && [[ "$(jget .outcome)" == GRANTED && "$EPOCH3" =~ ^[1-9][0-9]*$ ]]; then
  pass "6  owner pid $OWNER3 on h1 acquires $ITEM2: GRANTED epoch $EPOCH3"
else
  abort "6  owner on h1 acquires $ITEM2: want exit 0 GRANTED, got exit $RC: $OUT"
fi
ctl h2 "$URL2" --json lease acquire "$ITEM2" --owner-pid "$OWNER2" --actor sys-h2
check_eq "6  h2 Acquire while the owner lives (exit|liveness)" "3|ALIVE" "$RC|$(jget .holder_liveness)"

kill -KILL "$OWNER3"
wait "$OWNER3" 2>/dev/null || true # reaped: no zombie left in /proc
say "owner pid $OWNER3 on h1 killed (SIGKILL)"
ctl h2 "$URL2" --json lease acquire "$ITEM2" --owner-pid "$OWNER2" --actor sys-h2
EPOCH4="$(jget .epoch)"
if ((RC == 0)) && [[ "$(jget .outcome)" == GRANTED && "$(jget .reclaimed)" == true &&
  "$EPOCH4" =~ ^[0-9]+$ ]] && ((EPOCH4 > EPOCH3)); then
  pass "6  h2 Acquire: GRANTED epoch $EPOCH4 > $EPOCH3, reclaimed (taken over from a dead owner)"
else
  fail "6  h2 Acquire after the owner died: want exit 0 GRANTED reclaimed, got exit $RC: $OUT"
fi
stale="$(sql "SELECT actor || '|' || detail FROM lease_events WHERE work_item = '$ITEM2'
              AND kind = 'reclaimed-stale' AND epoch = $EPOCH3")"
check "6  reclaimed-stale event by h2's Acquire, judged by h1's ProbeOwner ($stale)" \
  grep -q "^sys-h2|.*owner's host says it is gone" <<<"$stale"
check_eq "6  lease row (epoch|owner host|owner pid|held)" "$((EPOCH3 + 1))|h2|$OWNER2|t" "$(lease_row "$ITEM2")"
check "6  'ALERT lease.reclaimed-stale' in h2's log" \
  grep -qF "ALERT lease.reclaimed-stale $ITEM2" "$TMP/h2-run2.log"

# ---- shutdown ---------------------------------------------------------------

for host in h1 h2; do
  stop_pid "${SVC_PID[$host]}" 10
  check "end lease-service on $host stops on SIGTERM with exit 0 (got $STOP_RC)" test "$STOP_RC" = 0
done
check "end no sanitizer reports in the service logs" \
  bash -c "! grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' '$TMP'/*.log"

summary
if ((FAILED)); then
  echo "FAIL: system_lease_two_hosts"
  exit 1
fi
echo "PASS: system_lease_two_hosts"
exit 0
