#!/usr/bin/env bash
# pgctl.sh — manage a private, throw-away PostgreSQL 15 cluster in one folder.
#
# Used by the test script (tests/run.sh), by integration tests (through
# ORCH_TEST_PG_DIR) and by the local run command (deploy/local/run.sh).
#
# Usage:
#   pgctl.sh init    DIR                    initdb into DIR/data, pick a free port
#   pgctl.sh start   DIR                    start; no-op when already running
#   pgctl.sh stop    DIR [fast|immediate]   stop; no-op when not running
#   pgctl.sh restart DIR [fast|immediate]   stop (default fast) and start again
#   pgctl.sh url     DIR [DBNAME]           print postgresql://orch@127.0.0.1:PORT/DBNAME
#   pgctl.sh standby DIR PRIMARY_DIR        make DIR a streaming standby of the running
#                                           cluster in PRIMARY_DIR (pg_basebackup -R),
#                                           application_name orch_standby; start it
#   pgctl.sh promote DIR                    promote the standby in DIR; wait until it writes
#   pgctl.sh status  DIR                    exit 0 when running, 3 when not
#   pgctl.sh destroy DIR                    stop immediately and delete DIR
#
# Layout of DIR (created by `init`):
#   DIR/data/          the cluster (PGDATA)
#   DIR/port           the TCP port, one line; the server listens on 127.0.0.1 only
#   DIR/postgres.log   the server log
#   DIR/.s.PGSQL.PORT  the Unix socket (omitted when the path would be too long)
#   DIR/.orch-pgctl    marker: `destroy` deletes only folders that carry it
#
# Access: trust authentication, on the Unix socket and on 127.0.0.1 only. The
# superuser role `orch` and its database `orch` exist after `init`, so
# `psql "$(pgctl.sh url DIR)"` just works. fsync stays on. Replication
# connections are trusted the same way, so `standby` needs nothing more.
#
# Root: initdb and postgres refuse to run as root. When run as root, the script
# gives DIR to the `postgres` system user (created by Debian's postgresql
# package) and runs the PostgreSQL programs through `runuser -u postgres --`.
# That user must be able to traverse every parent folder of DIR: a folder made
# with `mktemp -d` under /tmp always works. Otherwise the programs run as the
# calling user.
#
# Environment:
#   ORCH_PG_BINDIR   folder with initdb/pg_ctl/postgres/psql
#                    (default /usr/lib/postgresql/15/bin)
#   ORCH_PG_USER     system user that owns the cluster when run as root
#                    (default postgres)
#
# Exit status: 0 on success, 1 on failure (with a message on stderr), 2 on bad
# usage, 3 from `status` when the cluster is not running.

set -euo pipefail

readonly PG_BINDIR="${ORCH_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
readonly PG_OWNER="${ORCH_PG_USER:-postgres}"
readonly MARKER=".orch-pgctl"
# Seconds pg_ctl waits for the server to start or stop.
readonly PG_WAIT=60
# sun_path holds 107 characters plus the terminating NUL.
readonly MAX_SOCKET_PATH=107

prog="$(basename "$0")"

die() {
  printf '%s: %s\n' "$prog" "$*" >&2
  exit 1
}

usage() {
  sed -n '/^# Usage:/,/^#$/s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

is_root() {
  [[ "$(id -u)" -eq 0 ]]
}

# as_owner CMD ARGS... — run a command as the cluster's owner, from a folder
# that user can read (runuser keeps the caller's working directory).
as_owner() {
  if is_root; then
    (cd / && runuser -u "$PG_OWNER" -- "$@")
  else
    "$@"
  fi
}

# Absolute path of $1 without requiring it to exist.
abspath() {
  realpath -m -- "$1"
}

check_bindir() {
  local tool
  for tool in initdb pg_ctl postgres psql; do
    [[ -x "$PG_BINDIR/$tool" ]] ||
      die "$PG_BINDIR/$tool not found: install Debian's postgresql-15 package or set ORCH_PG_BINDIR"
  done
}

check_owner_user() {
  if is_root; then
    id -u "$PG_OWNER" >/dev/null 2>&1 ||
      die "system user '$PG_OWNER' does not exist: install Debian's postgresql package (or set ORCH_PG_USER)"
  fi
}

# Fails with a clear message when the cluster's owner cannot write into DIR,
# which happens when one of DIR's parent folders is not traversable for it.
check_reachable() {
  local dir="$1"
  if ! as_owner test -w "$dir" -a -x "$dir"; then
    local who="$PG_OWNER"
    is_root || who="$(id -un)"
    die "user '$who' cannot reach $dir" \
      "(a parent folder is not traversable for it);" \
      "use a folder under /tmp instead, e.g. DIR=\$(mktemp -d /tmp/orch-pg.XXXXXX)"
  fi
}

# Prints a TCP port on 127.0.0.1 that nothing listens on right now.
pick_port() {
  local port
  if command -v python3 >/dev/null 2>&1; then
    port="$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')" && [[ -n "$port" ]] && { echo "$port"; return 0; }
  fi
  local tries
  for ((tries = 0; tries < 200; tries++)); do
    port=$((20000 + RANDOM % 40000))
    port_is_free "$port" && { echo "$port"; return 0; }
  done
  die "could not find a free TCP port on 127.0.0.1"
}

# port_is_free PORT — true when no socket listens on 127.0.0.1:PORT.
port_is_free() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    [[ -z "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]]
  else
    # Without ss: a refused connection means nothing listens.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 1
    fi
    return 0
  fi
}

read_port() {
  local dir="$1" port
  [[ -r "$dir/port" ]] || die "$dir/port not found: run '$prog init $dir' first"
  port="$(<"$dir/port")"
  [[ "$port" =~ ^[0-9]+$ ]] || die "$dir/port does not hold a port number"
  echo "$port"
}

is_initialized() {
  [[ -f "$1/data/PG_VERSION" && -f "$1/port" ]]
}

# Prints the postmaster's PID from DIR/data/postmaster.pid, if there is one.
postmaster_pid() {
  local pidfile="$1/data/postmaster.pid" pid=""
  if [[ -r "$pidfile" ]]; then
    read -r pid <"$pidfile" || true
  fi
  [[ "$pid" =~ ^[0-9]+$ ]] && echo "$pid"
}

# pid_is_zombie PID — true when PID has exited but was not reaped yet (possible
# when the postmaster was killed and the init process reaps lazily).
pid_is_zombie() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  # Field 3, after the parenthesised command name, is the state.
  [[ "${stat##*) }" == Z* ]]
}

is_running() {
  local dir="$1" pid
  is_initialized "$dir" || return 1
  pid="$(postmaster_pid "$dir")" || return 1
  ! pid_is_zombie "$pid" || return 1
  as_owner "$PG_BINDIR/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

# Removes postmaster.pid and the socket lock file when they name a postmaster
# that is gone but not yet reaped (a zombie), so that the next start is not
# refused; postgres itself handles lock files whose PID is free.
clear_stale_lockfiles() {
  local dir="$1" pid lock
  if pid="$(postmaster_pid "$dir")" && pid_is_zombie "$pid"; then
    echo "$prog: removing stale $dir/data/postmaster.pid (PID $pid has exited)" >&2
    rm -f -- "$dir/data/postmaster.pid"
  fi
  for lock in "$dir"/.s.PGSQL.*.lock; do
    [[ -e "$lock" ]] || continue
    pid=""
    read -r pid <"$lock" || true
    if [[ "$pid" =~ ^[0-9]+$ ]] && pid_is_zombie "$pid"; then
      rm -f -- "$lock" "${lock%.lock}"
    fi
  done
}

# Writes the settings this script manages into DATA/orch.conf, which
# postgresql.conf includes; re-run whenever the port changes.
write_conf() {
  local dir="$1" port="$2" sockdir="$1"
  local socket_suffix="/.s.PGSQL.$port"
  if ((${#dir} + ${#socket_suffix} > MAX_SOCKET_PATH)); then
    echo "$prog: $dir is too long for a Unix socket; the cluster listens on TCP only" >&2
    sockdir=""
  fi
  as_owner tee "$dir/data/orch.conf" >/dev/null <<EOF
# Managed by tests/support/pgctl.sh; rewritten by 'init' and when the port moves.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sockdir'
unix_socket_permissions = 0700
max_connections = 200
fsync = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF
  as_owner tee "$dir/port" >/dev/null <<<"$port"
}

write_hba() {
  local dir="$1"
  as_owner tee "$dir/data/pg_hba.conf" >/dev/null <<'EOF'
# Managed by tests/support/pgctl.sh: a private cluster for tests and local runs.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
local   replication all               trust
host    replication all 127.0.0.1/32  trust
EOF
}

# move_port DIR OLD_PORT — rewrite the configuration for a new free port.
move_port() {
  local dir="$1" old="$2" new
  new="$(pick_port)"
  echo "$prog: port $old is taken; moving the cluster in $dir to port $new" >&2
  write_conf "$dir" "$new"
}

# pg_ctl_start DIR — start the cluster and wait until it accepts connections.
# When its port is taken (by something started since init, or by a cluster
# that picked the same port at the same instant), moves to a free port; up to
# three tries. On failure prints the end of the log and exits 1.
pg_ctl_start() {
  local dir="$1" log="$1/postgres.log" try port size
  for try in 1 2 3; do
    port="$(read_port "$dir")"
    if ! port_is_free "$port"; then
      move_port "$dir" "$port"
      continue
    fi
    size="$(stat -c %s "$log" 2>/dev/null || echo 0)"
    if as_owner "$PG_BINDIR/pg_ctl" start -D "$dir/data" -l "$log" \
      -w -t "$PG_WAIT" >/dev/null; then
      return 0
    fi
    # Retry only when this attempt lost its port.
    if tail -c +"$((size + 1))" "$log" 2>/dev/null |
      grep -q -e 'could not bind' -e 'Address already in use'; then
      echo "$prog: start attempt $try could not bind port $port" >&2
      move_port "$dir" "$port"
      continue
    fi
    break
  done
  echo "$prog: PostgreSQL in $dir did not start; last lines of $log:" >&2
  tail -n 50 "$log" >&2 2>/dev/null || true
  exit 1
}

# claim_dir DIR — make DIR the (empty, or ours) folder of a new cluster,
# owned by the cluster's owner and marked as made by this script.
claim_dir() {
  local dir="$1"
  if [[ -d "$dir" && -n "$(ls -A "$dir")" && ! -e "$dir/$MARKER" ]]; then
    die "$dir exists and is not empty: refusing to use it"
  fi
  mkdir -p "$dir"
  chmod 0700 "$dir"
  if is_root; then
    chown "$PG_OWNER:" "$dir"
  fi
  check_reachable "$dir"
  as_owner touch "$dir/$MARKER"
}

cmd_init() {
  local dir
  dir="$(abspath "$1")"
  check_bindir
  check_owner_user
  if is_initialized "$dir"; then
    local port
    port="$(read_port "$dir")"
    echo "$prog: $dir already holds a cluster (port $port)" >&2
    return 0
  fi
  claim_dir "$dir"
  rm -rf "$dir/data"

  as_owner "$PG_BINDIR/initdb" -D "$dir/data" -U postgres -A trust \
    --encoding=UTF8 --no-locale --no-instructions >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    die "initdb failed in $dir/data"
  }
  write_hba "$dir"
  as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<'EOF'

# Settings for this private cluster live in orch.conf (see tests/support/pgctl.sh).
include_if_exists = 'orch.conf'
EOF
  write_conf "$dir" "$(pick_port)"

  # Create the role and database on a short-lived server.
  pg_ctl_start "$dir"
  local port
  port="$(read_port "$dir")"
  if ! as_owner "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" \
    -U postgres -d postgres >/dev/null <<'EOF'; then
CREATE ROLE orch WITH LOGIN SUPERUSER;
CREATE DATABASE orch OWNER orch;
EOF
    as_owner "$PG_BINDIR/pg_ctl" stop -D "$dir/data" -m immediate >/dev/null 2>&1 || true
    die "could not create role and database 'orch' in $dir"
  fi
  as_owner "$PG_BINDIR/pg_ctl" stop -D "$dir/data" -m fast -w -t "$PG_WAIT" >/dev/null
  echo "$prog: initialized $dir (port $port)" >&2
}

cmd_start() {
  local dir
  dir="$(abspath "$1")"
  check_bindir
  check_owner_user
  is_initialized "$dir" || die "no cluster in $dir: run '$prog init $dir' first"
  if is_running "$dir"; then
    return 0
  fi
  clear_stale_lockfiles "$dir"
  pg_ctl_start "$dir"
}

cmd_stop() {
  local dir mode="${2:-fast}"
  dir="$(abspath "$1")"
  case "$mode" in
    fast | immediate | smart) ;;
    *) die "unknown stop mode '$mode' (fast, immediate or smart)" ;;
  esac
  is_running "$dir" || return 0
  as_owner "$PG_BINDIR/pg_ctl" stop -D "$dir/data" -m "$mode" -w -t "$PG_WAIT" >/dev/null ||
    die "PostgreSQL in $dir did not stop within $PG_WAIT s"
}

cmd_restart() {
  local mode="${2:-fast}"
  cmd_stop "$1" "$mode"
  cmd_start "$1"
}

cmd_standby() {
  local dir primary pport
  dir="$(abspath "$1")"
  primary="$(abspath "$2")"
  check_bindir
  check_owner_user
  is_running "$primary" || die "no running cluster in $primary"
  is_initialized "$dir" && die "$dir already holds a cluster"
  claim_dir "$dir"
  pport="$(read_port "$primary")"
  as_owner "$PG_BINDIR/pg_basebackup" -h 127.0.0.1 -p "$pport" -U orch -D "$dir/data" -R \
    -X stream -c fast >"$dir/basebackup.log" 2>&1 || {
    cat "$dir/basebackup.log" >&2
    die "pg_basebackup from $primary failed"
  }
  # The copy carries the primary's orch.conf: a port of its own. The
  # application_name is what synchronous_standby_names names on the primary.
  write_conf "$dir" "$(pick_port)"
  as_owner tee -a "$dir/data/postgresql.auto.conf" >/dev/null <<EOF
primary_conninfo = 'host=127.0.0.1 port=$pport user=orch application_name=orch_standby'
EOF
  pg_ctl_start "$dir"
  echo "$prog: $dir is a standby of $primary (port $(read_port "$dir"))" >&2
}

cmd_promote() {
  local dir
  dir="$(abspath "$1")"
  check_bindir
  is_running "$dir" || die "no running cluster in $dir"
  as_owner "$PG_BINDIR/pg_ctl" promote -D "$dir/data" -w -t "$PG_WAIT" >/dev/null ||
    die "the standby in $dir was not promoted within $PG_WAIT s"
}

cmd_url() {
  local dir port db="${2:-orch}"
  dir="$(abspath "$1")"
  port="$(read_port "$dir")"
  printf 'postgresql://orch@127.0.0.1:%s/%s\n' "$port" "$db"
}

cmd_status() {
  local dir
  dir="$(abspath "$1")"
  is_running "$dir" && return 0
  return 3
}

cmd_destroy() {
  local dir
  dir="$(abspath "$1")"
  [[ -e "$dir" ]] || return 0
  [[ "$dir" != "/" ]] || die "refusing to delete /"
  if [[ ! -e "$dir/$MARKER" && -n "$(ls -A "$dir")" ]]; then
    die "$dir was not made by '$prog init': refusing to delete it"
  fi
  if is_initialized "$dir"; then
    check_bindir
    check_owner_user
    cmd_stop "$dir" immediate || true
  fi
  rm -rf -- "$dir"
}

main() {
  [[ $# -ge 2 ]] || usage
  local cmd="$1"
  shift
  case "$cmd" in
    init | start | status | destroy | promote)
      [[ $# -eq 1 ]] || usage
      ;;
    standby)
      [[ $# -eq 2 && -n "$2" ]] || usage
      ;;
    stop | restart | url)
      [[ $# -le 2 ]] || usage
      ;;
    *) usage ;;
  esac
  [[ -n "$1" ]] || usage
  "cmd_$cmd" "$@"
}

main "$@"
