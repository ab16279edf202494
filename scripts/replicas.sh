#!/usr/bin/env bash
# A throwaway PostgreSQL primary + streaming standby on loopback, for the replica tests.
#
#   scripts/replicas.sh start    start the pair (or reuse ours if both are up); prints
#                                `export ASYNCDB_TEST_PG_PRIMARY_URL=...` lines
#   scripts/replicas.sh stop     stop both servers
#   scripts/replicas.sh reset    throw the pair away and make a fresh one (about 1.5 s)
#   scripts/replicas.sh promote  stop the current primary, promote the standby
#   scripts/replicas.sh rejoin   rewind the stopped old primary and start it as a standby
#   scripts/replicas.sh split    promote the standby and leave the primary running (two
#                                primaries: a split brain; `reset` afterwards)
#   scripts/replicas.sh pause    pause WAL replay on the standby (deterministic lag)
#   scripts/replicas.sh resume   resume it
#   scripts/replicas.sh env      print the export lines
#
# Settings: ASYNCDB_REPLICAS_DIR (/tmp/asyncdb-replicas), REPL_PRIMARY_PORT (55441),
# REPL_STANDBY_PORT (55442); a port taken by something else is skipped for the next free one.
# The two data directories are node1 (first primary) and node2 (first standby); the file
# `roles` says which is which now. Needs the PostgreSQL packages (scripts/servers.sh installs
# them). stdout carries only the export lines; progress goes to stderr.
set -euo pipefail

BASE=${ASYNCDB_REPLICAS_DIR:-/tmp/asyncdb-replicas}
DB_USER=asyncdb
DB_PASSWORD=asyncdb
DB_NAME=asyncdb_test
OPTS="-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=on -c wal_log_hints=on"
OPTS="$OPTS -c max_wal_senders=10 -c hot_standby_feedback=on -c wal_keep_size=256MB"
OPTS="$OPTS -c max_connections=300"

log() { echo "replicas: $*" >&2; }
die() { echo "replicas: ERROR: $*" >&2; exit 1; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_pg() { runuser -u postgres -- "$@"; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local port=$1
    while port_busy "$port"; do port=$((port + 1)); done
    echo "$port"
}
port_of() { cat "$BASE/$1.port"; }

running() { # node
    local pid
    pid=$(head -n 1 "$BASE/$1/postmaster.pid" 2>/dev/null || true)
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && grep -q postgres "/proc/$pid/comm" \
        && [ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ]
}

pg_start() { # node port
    as_pg "$(bindir)/pg_ctl" -D "$BASE/$1" -l "$BASE/$1.log" -w -t 60 \
        -o "-p $2 -k $BASE $OPTS" start >/dev/null
}

pg_stop() { # node
    if running "$1"; then as_pg "$(bindir)/pg_ctl" -D "$BASE/$1" -m fast -w stop >/dev/null || true; fi
}

psql_on() { # port sql
    psql -h 127.0.0.1 -p "$1" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 -c "$2"
}

roles() { cat "$BASE/roles" 2>/dev/null || echo "node1 node2"; }
primary() { roles | cut -d' ' -f1; }
standby() { roles | cut -d' ' -f2; }

create_pair() {
    local bin p1 p2
    bin=$(bindir)
    [ -x "$bin/initdb" ] || die "PostgreSQL is not installed (run scripts/servers.sh start first)"
    pg_stop node1; pg_stop node2
    # a pair made afresh keeps its ports (tests that reset it hold its URLs)
    local old1 old2
    old1=$(cat "$BASE/node1.port" 2>/dev/null || true)
    old2=$(cat "$BASE/node2.port" 2>/dev/null || true)
    rm -rf "$BASE"
    mkdir -p "$BASE"
    chown postgres:postgres "$BASE"
    p1=$(free_port "${old1:-${REPL_PRIMARY_PORT:-55441}}")
    p2=$(free_port "${old2:-${REPL_STANDBY_PORT:-55442}}")
    [ "$p2" != "$p1" ] || p2=$(free_port $((p1 + 1)))
    echo "$p1" > "$BASE/node1.port"
    echo "$p2" > "$BASE/node2.port"
    as_pg "$bin/initdb" -D "$BASE/node1" -U postgres --auth=trust -E UTF8 --no-locale -N >/dev/null
    pg_start node1 "$p1"
    psql_on "$p1" "CREATE ROLE $DB_USER LOGIN SUPERUSER PASSWORD '$DB_PASSWORD'" >/dev/null
    psql_on "$p1" "CREATE DATABASE $DB_NAME OWNER $DB_USER" >/dev/null
    as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$p1" -U postgres -D "$BASE/node2" -R -X stream -c fast
    pg_start node2 "$p2"
    echo "node1 node2" > "$BASE/roles"
    log "primary on $p1, standby on $p2"
}

print_env() {
    local p s
    p=$(port_of "$(primary)"); s=$(port_of "$(standby)")
    echo "export ASYNCDB_TEST_PG_PRIMARY_URL=postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$p/$DB_NAME"
    echo "export ASYNCDB_TEST_PG_STANDBY_URL=postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$s/$DB_NAME"
    echo "export ASYNCDB_REPLICAS_DIR=$BASE"
}

# Wait until the standby has replayed everything the primary wrote (so tests start in sync).
wait_sync() {
    local p s want
    p=$(port_of "$(primary)"); s=$(port_of "$(standby)")
    # A WAL record of our own to wait for: on an idle primary the insert position can sit
    # past a page header that the standby reaches only with the next record (a running-xacts
    # snapshot, every 15 s), so waiting for pg_current_wal_insert_lsn() could take 15 s.
    want=$(psql_on "$p" "SELECT pg_logical_emit_message(false, 'asyncdb', 'sync')")
    for _ in $(seq 1 200); do
        [ "$(psql_on "$s" "SELECT pg_last_wal_replay_lsn() >= '$want'::pg_lsn" 2>/dev/null)" = t ] && return 0
        sleep 0.05
    done
    die "the standby did not catch up"
}

case "${1:-start}" in
start)
    [ "$(id -u)" -eq 0 ] || die "run as root (servers run as the postgres user)"
    if running "$(primary)" && running "$(standby)"; then
        log "pair already running"
    elif [ -f "$BASE/roles" ] && [ -d "$BASE/node1" ] && [ -d "$BASE/node2" ] \
        && pg_start "$(primary)" "$(port_of "$(primary)")" 2>/dev/null \
        && pg_start "$(standby)" "$(port_of "$(standby)")" 2>/dev/null; then
        log "pair restarted"
    else
        create_pair
    fi
    wait_sync
    print_env
    ;;
reset) create_pair; wait_sync; print_env ;;
stop) pg_stop node1; pg_stop node2; log "pair stopped" ;;
env) print_env ;;
promote)
    old=$(primary); new=$(standby)
    pg_stop "$old"
    as_pg "$(bindir)/pg_ctl" -D "$BASE/$new" -w promote >/dev/null
    echo "$new $old" > "$BASE/roles"
    log "$new promoted; $old stopped"
    ;;
rejoin)
    old=$(standby); new=$(primary)
    pg_stop "$old"
    as_pg "$(bindir)/pg_rewind" --target-pgdata="$BASE/$old" \
        --source-server="host=127.0.0.1 port=$(port_of "$new") user=postgres dbname=postgres" -R >&2
    pg_start "$old" "$(port_of "$old")"
    log "$old rejoined as a standby of $new"
    ;;
split) as_pg "$(bindir)/pg_ctl" -D "$BASE/$(standby)" -w promote >/dev/null; log "two primaries" ;;
pause) psql_on "$(port_of "$(standby)")" "SELECT pg_wal_replay_pause()" >/dev/null ;;
resume) psql_on "$(port_of "$(standby)")" "SELECT pg_wal_replay_resume()" >/dev/null ;;
*) die "usage: $0 start|stop|reset|promote|rejoin|split|pause|resume|env" ;;
esac
