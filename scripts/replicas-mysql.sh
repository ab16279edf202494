#!/usr/bin/env bash
# Start throwaway MariaDB replication servers on loopback for asyncdb's replica tests:
# a primary with a GTID replica, and a two-node Galera cluster.
#
#   scripts/replicas-mysql.sh start     install missing Debian packages (mariadb, galera-4,
#                                       rsync), start the four servers (or reuse ours when all
#                                       are up; otherwise they are made afresh: ~7 s), create
#                                       the test user and database; prints `export ...` lines
#   scripts/replicas-mysql.sh stop      stop the servers this script started
#   scripts/replicas-mysql.sh clean     stop them and delete their directory
#   scripts/replicas-mysql.sh env       print the export lines of running servers
#   scripts/replicas-mysql.sh demote            SET GLOBAL read_only=1 on the primary
#   scripts/replicas-mysql.sh undemote          SET GLOBAL read_only=0 on the primary
#   scripts/replicas-mysql.sh stop-replica-sql  STOP SLAVE SQL_THREAD on the replica
#   scripts/replicas-mysql.sh start-replica-sql START SLAVE SQL_THREAD on the replica
#   scripts/replicas-mysql.sh galera-stop N     stop Galera node N (1 or 2) gracefully: it
#                                               leaves the cluster, the other keeps quorum
#   scripts/replicas-mysql.sh galera-start N    start it again: it rejoins (IST) and the
#                                               command returns once it is Synced
#   scripts/replicas-mysql.sh promote   a switchover: the primary made read-only, the replica
#                                       (once it has every write) made a writable primary
#   scripts/replicas-mysql.sh rejoin    the old primary (after promote) made a read-only GTID
#                                       replica of the promoted one
#   scripts/replicas-mysql.sh reset     the primary and its replica made afresh, on their
#                                       ports (the original topology back, after promote)
#
# Settings: ASYNCDB_REPLICAS_MYSQL_DIR (/tmp/asyncdb-replicas-mysql), MARIADB_PRIMARY_PORT
# (53406), MARIADB_REPLICA_PORT (53407), GALERA_PORT1 (53408), GALERA_PORT2 (53409) and
# GALERA_BASE_PORT (62567: six ports from there for group communication, IST and SST,
# skipping those another cluster of this script claimed in $TMPDIR/asyncdb-galera-ports).
# A port taken by something else is skipped for the next free one. stdout carries only the
# export lines (ASYNCDB_TEST_MYSQL_PRIMARY_URL, ASYNCDB_TEST_MYSQL_REPLICA_URL,
# ASYNCDB_TEST_GALERA_URLS comma-separated, ASYNCDB_REPLICAS_MYSQL_DIR); progress goes to
# stderr. The servers run as the unprivileged mysql user. `start` also makes the primary and
# replica afresh when they are not as it made them (a promote left them the other way round).
set -euo pipefail

BASE=${ASYNCDB_REPLICAS_MYSQL_DIR:-/tmp/asyncdb-replicas-mysql}
DB_USER=asyncdb
DB_PASSWORD=asyncdb
DB_NAME=asyncdb_test
GALERA_LIB=/usr/lib/galera/libgalera_smm.so
NODES=(primary replica n1 n2)

log() { echo "replicas-mysql: $*" >&2; }
die() { echo "replicas-mysql: ERROR: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

mariadbd_bin() {
    command -v mariadbd 2>/dev/null || { [ -x /usr/sbin/mariadbd ] && echo /usr/sbin/mariadbd; } || true
}

install_packages() {
    local missing=()
    [ -n "$(mariadbd_bin)" ] || missing+=(mariadb-server mariadb-client)
    [ -e "$GALERA_LIB" ] || missing+=(galera-4)
    command -v rsync >/dev/null 2>&1 || missing+=(rsync)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} (apt)"
    local policy_added=0  # keep apt's postinst from starting a distro server on 3306
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
        policy_added=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2 </dev/null
    [ $policy_added -eq 1 ] && as_root rm -f /usr/sbin/policy-rc.d
    return 0
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# PORT= the next port from $1 on that nobody listens on and that we have not handed out yet
# (a variable, not an echo: $(...) would run it in a subshell that forgets TAKEN).
TAKEN=" "
free_port() {
    PORT=$1
    while port_busy "$PORT" || [[ "$TAKEN" == *" $PORT "* ]]; do PORT=$((PORT + 1)); done
    TAKEN="$TAKEN$PORT "
}

pid_alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
    [ "$state" != Z ] || return 1
    grep -q mariadbd "/proc/$pid/comm" 2>/dev/null
}

node_pid() { cat "$BASE/$1/pid" 2>/dev/null || true; }
node_running() { pid_alive "$(node_pid "$1")"; }
node_port() { cat "$BASE/$1/port" 2>/dev/null || true; }

q() { mariadb --no-defaults --protocol=socket -S "$BASE/$1/sock" -uroot -N -e "$2"; }

status_var() {
    q "$1" "SELECT variable_value FROM information_schema.global_status WHERE variable_name='$2'" 2>/dev/null || true
}

# Start one server: name, sql port, then extra mariadbd options. Waits until it answers.
start_node() {
    local n=$1 port=$2
    shift 2
    echo "$port" > "$BASE/$n/port"
    setsid "$(mariadbd_bin)" --no-defaults --user=mysql --datadir="$BASE/$n/data" --port="$port" \
        --bind-address=127.0.0.1 --socket="$BASE/$n/sock" --pid-file="$BASE/$n/pid" \
        --log-error="$BASE/$n/err.log" --tmpdir="$BASE/$n" --skip-name-resolve \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
        --innodb-flush-log-at-trx-commit=2 --binlog-format=ROW --max-connections=200 \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --innodb-lock-wait-timeout=5 "$@" >>"$BASE/$n/out.log" 2>&1 </dev/null &
    local pid=$!
    for _ in $(seq 1 600); do
        [ -S "$BASE/$n/sock" ] && q "$n" "SELECT 1" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || break  # it exited: say why at once
        sleep 0.05
    done
    tail -n 20 "$BASE/$n/err.log" >&2 || true
    die "$n did not start"
}

install_db() {
    mariadb-install-db --no-defaults --user=mysql --datadir="$BASE/$1/data" \
        --auth-root-authentication-method=socket --skip-test-db >/dev/null 2>&1 \
        || die "mariadb-install-db failed for $1 (see $BASE/$1)"
}

fresh_dirs() {
    rm -rf "$BASE"
    mkdir -p "$BASE"
    chmod 755 "$BASE"
    for n in "${NODES[@]}"; do mkdir -p "$BASE/$n/data"; done
    chown -R mysql:mysql "$BASE"
}

# The test login: every privilege (so it also has READ_ONLY ADMIN, as root would) over TCP.
USER_SQL="CREATE DATABASE IF NOT EXISTS $DB_NAME CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'%' WITH GRANT OPTION;"

start_replication() {
    local p1 p2
    free_port "${1:-${MARIADB_PRIMARY_PORT:-53406}}"; p1=$PORT
    free_port "${2:-${MARIADB_REPLICA_PORT:-53407}}"; p2=$PORT
    install_db primary
    install_db replica
    local gtid=(--log-bin=bin --gtid-strict-mode=ON --log-slave-updates=ON)
    start_node primary "$p1" --server-id=1 "${gtid[@]}"
    start_node replica "$p2" --server-id=2 "${gtid[@]}" --read-only=ON
    q primary "CREATE USER repl@'127.0.0.1' IDENTIFIED BY 'repl';
               GRANT REPLICATION SLAVE ON *.* TO repl@'127.0.0.1';"
    follow replica "$p1"
    q primary "$USER_SQL"
    caught_up_with replica primary
    log "primary on $p1, GTID replica on $p2"
}

# Galera's IST and SST ports listen only during a state transfer, so probing cannot see
# that another cluster of ours owns them: every cluster this script starts writes its ports
# to one file of claims, and a new cluster skips the ports other live clusters claimed (a
# node that rejoins later must find its IST port free, or it cannot join).
GALERA_CLAIMS=${TMPDIR:-/tmp}/asyncdb-galera-ports
claim_galera_ports() { # ports...
    local dir ports line
    touch "$GALERA_CLAIMS"
    while read -r dir ports; do
        [ -n "$dir" ] && [ "$dir" != "$BASE" ] && [ -d "$dir" ] || continue
        TAKEN="$TAKEN$ports "
    done < "$GALERA_CLAIMS"
}
record_galera_ports() { # ports...
    local rest
    rest=$(grep -v "^$BASE " "$GALERA_CLAIMS" 2>/dev/null || true)
    { [ -z "$rest" ] || printf '%s\n' "$rest"; echo "$BASE $*"; } > "$GALERA_CLAIMS.new"
    mv "$GALERA_CLAIMS.new" "$GALERA_CLAIMS"
}

start_galera() {
    local s1 s2 g
    free_port "${GALERA_PORT1:-53408}"; s1=$PORT
    free_port "${GALERA_PORT2:-53409}"; s2=$PORT
    # above the kernel's ephemeral range (32768-60999), so that no client socket holds one
    g=${GALERA_BASE_PORT:-62567}
    claim_galera_ports
    local g1 ist1 sst1 g2 ist2 sst2
    free_port "$g"; g1=$PORT; free_port "$g1"; ist1=$PORT; free_port "$ist1"; sst1=$PORT
    free_port "$sst1"; g2=$PORT; free_port "$g2"; ist2=$PORT; free_port "$ist2"; sst2=$PORT
    record_galera_ports "$g1" "$ist1" "$sst1" "$g2" "$ist2" "$sst2"
    install_db n1
    galera_node n1 "$s1" "$g1" "$ist1" "$sst1" gcomm:// --wsrep-new-cluster
    galera_node n2 "$s2" "$g2" "$ist2" "$sst2" "gcomm://127.0.0.1:$g1"
    q n1 "$USER_SQL"
    log "galera nodes on $s1 and $s2 (cluster size $(status_var n2 wsrep_cluster_size))"
}

# Make node $1 a GTID replica of the server on port $2 and start replicating.
follow() {
    q "$1" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$2, MASTER_USER='repl',
            MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
            START SLAVE;"
}

# Wait until node $1 has applied every write node $2 has logged.
caught_up_with() {
    local pos
    pos=$(q "$2" "SELECT @@gtid_binlog_pos")
    [ "$(q "$1" "SELECT MASTER_GTID_WAIT('$pos', 30)")" = 0 ] \
        || die "$1 did not catch up with $2 (see $BASE/$1/err.log)"
}

# A Galera node: name, sql port, group port, IST port, SST port, cluster address, extra...
galera_node() {
    local n=$1 port=$2 g=$3 ist=$4 sst=$5 addr=$6
    shift 6
    echo "$g $ist $sst" > "$BASE/$n/galera-ports"
    start_node "$n" "$port" --innodb-autoinc-lock-mode=2 --wsrep-on=ON \
        --wsrep-provider="$GALERA_LIB" --wsrep-cluster-name=asyncdb --wsrep-node-name="$n" \
        --wsrep-node-address="127.0.0.1:$g" --wsrep-cluster-address="$addr" \
        --wsrep-sst-method=rsync --wsrep-sst-receive-address="127.0.0.1:$sst" \
        --wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:$g;ist.recv_addr=127.0.0.1:$ist;base_port=$g" \
        "$@"
    for _ in $(seq 1 600); do
        [ "$(status_var "$n" wsrep_local_state_comment)" = Synced ] && return 0
        sleep 0.1
    done
    tail -n 20 "$BASE/$n/err.log" >&2 || true
    die "$n did not reach Synced"
}

galera_name() {
    case "$1" in 1|n1) echo n1 ;; 2|n2) echo n2 ;; *) die "no Galera node '$1' (1 or 2)" ;; esac
}

# Leave the cluster gracefully (a node killed hard would cost a 2-node cluster its quorum).
galera_stop() {
    local n pid
    n=$(galera_name "$1")
    pid=$(node_pid "$n")
    pid_alive "$pid" || return 0
    mariadb-admin --no-defaults --protocol=socket -S "$BASE/$n/sock" -uroot shutdown
    for _ in $(seq 1 600); do pid_alive "$pid" || { log "$n stopped"; return 0; }; sleep 0.05; done
    die "$n did not stop"
}

# Rejoin through the other node (IST: only the writes it missed).
galera_start() {
    local n other g ist sst og
    n=$(galera_name "$1")
    node_running "$n" && return 0
    if [ "$n" = n1 ]; then other=n2; else other=n1; fi
    need_running "$other"
    read -r g ist sst < "$BASE/$n/galera-ports"
    read -r og _ < "$BASE/$other/galera-ports"
    galera_node "$n" "$(node_port "$n")" "$g" "$ist" "$sst" "gcomm://127.0.0.1:$og"
    log "$n rejoined (cluster size $(status_var "$n" wsrep_cluster_size))"
}

stop_all() { stop_nodes n2 n1 replica primary; }

stop_nodes() {
    local n pid
    for n in "$@"; do
        pid=$(node_pid "$n")
        pid_alive "$pid" || continue
        kill -TERM "$pid"
        for _ in $(seq 1 200); do pid_alive "$pid" || break; sleep 0.05; done
        pid_alive "$pid" && kill -KILL "$pid"
        log "$n stopped"
    done
    return 0
}

# One field of node $1's SHOW SLAVE STATUS (empty when it replicates from nothing).
slave_field() {
    mariadb --no-defaults --protocol=socket -S "$BASE/$1/sock" -uroot -e "SHOW SLAVE STATUS\G" \
        2>/dev/null | awk -v f="$2:" '$1 == f {print $2}'
}

# The primary and replica as `start` made them: the primary writable, the replica read-only
# and fed by it (not swapped by promote/rejoin).
pair_intact() {
    [ "$(q primary "SELECT @@read_only" 2>/dev/null)" = 0 ] \
        && [ "$(q replica "SELECT @@read_only" 2>/dev/null)" = 1 ] \
        && [ -z "$(q primary "SHOW SLAVE STATUS" 2>/dev/null)" ] \
        && [ "$(slave_field replica Master_Port)" = "$(node_port primary)" ]
}

# The primary and its replica made afresh on the ports they had (the Galera nodes stay).
reset_pair() {
    local p1 p2 n
    p1=$(node_port primary); p2=$(node_port replica)
    stop_nodes replica primary
    for n in primary replica; do
        rm -rf "${BASE:?}/$n"
        mkdir -p "$BASE/$n/data"
        chown -R mysql:mysql "$BASE/$n"
    done
    start_replication "$p1" "$p2"
}

all_running() {
    local n
    for n in "${NODES[@]}"; do node_running "$n" || return 1; done
}

print_env() {
    local my="mysql://$DB_USER:$DB_PASSWORD@127.0.0.1"
    {
        echo "export ASYNCDB_TEST_MYSQL_PRIMARY_URL=$my:$(node_port primary)/$DB_NAME"
        echo "export ASYNCDB_TEST_MYSQL_REPLICA_URL=$my:$(node_port replica)/$DB_NAME"
        echo "export ASYNCDB_TEST_GALERA_URLS=$my:$(node_port n1)/$DB_NAME,$my:$(node_port n2)/$DB_NAME"
        echo "export ASYNCDB_REPLICAS_MYSQL_DIR=$BASE"
    } | tee "$BASE/env.sh"
}

need_running() { node_running "$1" || die "$1 is not running (run '$0 start')"; }

case "${1:-start}" in
start)
    [ "$(id -u)" -eq 0 ] || die "run as root (servers are started as the mysql user)"
    install_packages
    id mysql >/dev/null 2>&1 || as_root useradd --system --no-create-home --shell /usr/sbin/nologin mysql
    if all_running && pair_intact; then
        log "reusing the servers in $BASE"
    elif all_running; then
        log "the primary and replica are not as start made them (promoted?): making them afresh"
        reset_pair
    else
        stop_all
        fresh_dirs
        start_replication
        start_galera
    fi
    print_env
    ;;
stop) stop_all ;;
clean) stop_all; rm -rf "$BASE" ;;
env) all_running || die "the servers are not running (run '$0 start')"; print_env ;;
demote) need_running primary; q primary "SET GLOBAL read_only=1" ;;
undemote) need_running primary; q primary "SET GLOBAL read_only=0" ;;
stop-replica-sql) need_running replica; q replica "STOP SLAVE SQL_THREAD" ;;
start-replica-sql) need_running replica; q replica "START SLAVE SQL_THREAD" ;;
galera-stop) galera_stop "${2:-}" ;;
galera-start) galera_start "${2:-}" ;;
promote)
    need_running primary; need_running replica
    q primary "SET GLOBAL read_only=1"  # first: nothing commits there any more (but SUPER)
    caught_up_with replica primary
    q replica "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0"
    log "replica promoted; primary read-only"
    ;;
rejoin)
    need_running primary; need_running replica
    q primary "SET GLOBAL read_only=1; STOP SLAVE; RESET SLAVE ALL;
               SET GLOBAL gtid_slave_pos=@@gtid_binlog_pos"  # it has all it logged itself
    follow primary "$(node_port replica)"
    caught_up_with primary replica
    log "old primary rejoined as a replica of the promoted one"
    ;;
reset) [ -s "$BASE/primary/port" ] || die "no servers in $BASE (run '$0 start')"; reset_pair; print_env ;;
*) die "usage: $0 start|stop|clean|env|demote|undemote|stop-replica-sql|start-replica-sql|galera-stop N|galera-start N|promote|rejoin|reset" ;;
esac
