#!/usr/bin/env bash
# Start throwaway PostgreSQL and MariaDB servers on loopback for asyncdb's tests.
#
#   scripts/servers.sh start    install missing Debian packages, init data dirs (first time),
#                               start both servers (or reuse ours if already up), create the
#                               test user and database; prints `export ASYNCDB_TEST_*=...` lines
#   scripts/servers.sh stop     stop the servers this script started
#   scripts/servers.sh clean    stop and delete the data directories
#   scripts/servers.sh env      print the export lines of running servers
#
# Settings: ASYNCDB_SERVERS_DIR (/tmp/asyncdb-servers), PG_PORT (55432), MYSQL_PORT (53306).
# TLS: a throwaway CA signs a certificate for 127.0.0.1/localhost; both servers accept TLS and
# have a role `asyncdb_tls` that can only log in over TLS (ASYNCDB_TEST_*_TLS_URL, ASYNCDB_TEST_CA).
# A port taken by something else is skipped for the next free one. stdout carries only the
# export lines; progress goes to stderr. Servers run as the unprivileged postgres/mysql users.
set -euo pipefail

BASE=${ASYNCDB_SERVERS_DIR:-/tmp/asyncdb-servers}
PG_DIR=$BASE/pg
PGB_DIR=$BASE/pgbouncer
MY_DIR=$BASE/mysql
TLS_DIR=$BASE/tls
TLS_USER=asyncdb_tls
DB_USER=asyncdb
DB_PASSWORD=asyncdb
DB_NAME=asyncdb_test

log() { echo "servers: $*" >&2; }
die() { echo "servers: ERROR: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    echo "$d"
}

pgbouncer_bin() {
    command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; } || true
}

mariadbd_bin() {
    command -v mariadbd 2>/dev/null || { [ -x /usr/sbin/mariadbd ] && echo /usr/sbin/mariadbd; } || true
}

install_packages() {
    local missing=()
    [ -n "$(pg_bindir)" ] && [ -x "$(pg_bindir)/initdb" ] || missing+=(postgresql)
    [ -n "$(mariadbd_bin)" ] || missing+=(mariadb-server mariadb-client)
    [ -n "$(pgbouncer_bin)" ] || missing+=(pgbouncer)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} (apt)"
    # Keep apt's postinst from starting distro servers on 5432/3306 and from creating a
    # default cluster: this script runs its own servers.
    local policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
        policy_added=1
    fi
    as_root mkdir -p /etc/postgresql-common/createcluster.d
    as_root sh -c 'echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/50-asyncdb-no-main.conf'
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2 </dev/null
    [ $policy_added -eq 1 ] && as_root rm -f /usr/sbin/policy-rc.d
    return 0
}

ensure_user() {
    id "$1" >/dev/null 2>&1 || as_root useradd --system --no-create-home --shell /usr/sbin/nologin "$1"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if $1 is a live (non-zombie) process whose command name matches $2.
pid_alive() {
    local pid=$1 name=$2 state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
    [ "$state" != Z ] || return 1
    grep -q "$name" "/proc/$pid/comm" 2>/dev/null
}

free_port() {
    local port=$1
    while port_busy "$port"; do port=$((port + 1)); done
    echo "$port"
}

saved_port() { cat "$1/port" 2>/dev/null || true; }

# A CA and a server certificate for 127.0.0.1 and localhost, made once; each server gets its
# own copy of the key, owned by its user with mode 600 (both servers refuse looser keys).
# The extensions are those of a real CA: Python >= 3.13 verifies with VERIFY_X509_STRICT and
# rejects a CA without keyUsage or a leaf without authorityKeyIdentifier. Certificates made by
# an older version of this script (CA without keyUsage) are made again.
make_certs() {
    mkdir -p "$TLS_DIR"
    chmod 755 "$TLS_DIR"
    if [ -s "$TLS_DIR/server.crt" ] && ! openssl x509 -in "$TLS_DIR/ca.crt" -noout -ext keyUsage \
            2>/dev/null | grep -q "Key Usage"; then
        log "TLS certificates in $TLS_DIR lack the extensions Python 3.13 requires: making new ones"
        rm -f "$TLS_DIR/server.crt"
    fi
    if [ ! -s "$TLS_DIR/server.crt" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=asyncdb test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
        printf "%s\n" "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
            "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" > "$TLS_DIR/ext.cnf"
        openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
            -CAcreateserial -days 3650 -extfile "$TLS_DIR/ext.cnf" -out "$TLS_DIR/server.crt" 2>/dev/null
        chmod 600 "$TLS_DIR/ca.key" "$TLS_DIR/server.key"
        chmod 644 "$TLS_DIR/ca.crt" "$TLS_DIR/server.crt"
        log "TLS certificates created in $TLS_DIR"
    fi
}

# Copy the certificate and key into a server's directory for its user ($1 dir, $2 user).
install_certs() {
    cp "$TLS_DIR/server.crt" "$TLS_DIR/ca.crt" "$1/"
    install -m 600 -o "$2" -g "$2" "$TLS_DIR/server.key" "$1/server.key"
    chown "$2:$2" "$1/server.crt" "$1/ca.crt"
}

# TLS on a running PostgreSQL (ALTER SYSTEM + reload: no restart, works for reused servers),
# and pg_hba rules that let asyncdb_tls in over TLS only. Idempotent.
enable_pg_tls() {
    local port=$1 hba=$PG_DIR/data/pg_hba.conf
    install_certs "$PG_DIR" postgres
    if ! grep -q "$TLS_USER" "$hba"; then
        { echo "hostssl all $TLS_USER 127.0.0.1/32 scram-sha-256"
          echo "host all $TLS_USER 127.0.0.1/32 reject"
          echo "local all $TLS_USER reject"
          cat "$hba"; } > "$hba.new"
        chown postgres:postgres "$hba.new"
        chmod 600 "$hba.new"
        mv "$hba.new" "$hba"
    fi
    psql -h "$PG_DIR" -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
ALTER SYSTEM SET ssl = on;
ALTER SYSTEM SET ssl_cert_file = '$PG_DIR/server.crt';
ALTER SYSTEM SET ssl_key_file = '$PG_DIR/server.key';
SELECT pg_reload_conf();
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='$TLS_USER') THEN
    CREATE ROLE $TLS_USER LOGIN PASSWORD '$DB_PASSWORD';
  END IF; END \$\$;
SQL
}

pg_running() {
    local pid
    pid=$(head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null || true)
    pid_alive "$pid" postgres
}

start_postgres() {
    local bindir port
    bindir=$(pg_bindir)
    mkdir -p "$PG_DIR"
    chown postgres:postgres "$PG_DIR"
    if pg_running; then
        port=$(saved_port "$PG_DIR")
        log "postgres already running on $port"
    else
        if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
            echo "$DB_PASSWORD" > "$PG_DIR/pw"
            chown postgres "$PG_DIR/pw"
            runuser -u postgres -- "$bindir/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust \
                --auth-host=scram-sha-256 --pwfile="$PG_DIR/pw" -E UTF8 --no-locale -N >/dev/null
        fi
        # A postmaster killed without cleanup may linger as a zombie for a moment.
        for _ in $(seq 1 100); do
            pid=$(head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null || true)
            [ -z "$pid" ] || [ ! -e "/proc/$pid" ] && break
            pid_alive "$pid" postgres && break
            sleep 0.2
        done
        port=$(saved_port "$PG_DIR")
        port=$(free_port "${port:-${PG_PORT:-55432}}")
        echo "$port" > "$PG_DIR/port"
        runuser -u postgres -- "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
            -o "-p $port -c listen_addresses=127.0.0.1 -k $PG_DIR -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=300" \
            start >/dev/null
        log "postgres started on $port"
    fi
    psql -h "$PG_DIR" -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN SUPERUSER PASSWORD '$DB_PASSWORD';
  END IF; END \$\$;
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname='$DB_NAME')\gexec
SQL
    enable_pg_tls "$port"
}

pgbouncer_running() {
    pid_alive "$(cat "$PGB_DIR/pgbouncer.pid" 2>/dev/null || true)" pgbouncer
}

# PgBouncer in transaction pooling mode in front of our PostgreSQL (asyncpg then needs
# statement_cache_size=0). It refuses to run as root, and exits 0 even when it cannot open
# its log, so its files are created for the postgres user first and the port is waited on.
start_pgbouncer() {
    local port pg_port
    pg_port=$(saved_port "$PG_DIR")
    mkdir -p "$PGB_DIR"
    chown postgres:postgres "$PGB_DIR"
    if pgbouncer_running; then
        log "pgbouncer already running on $(saved_port "$PGB_DIR")"
        return 0
    fi
    port=$(saved_port "$PGB_DIR")
    port=$(free_port "${port:-${PGBOUNCER_PORT:-56432}}")
    echo "$port" > "$PGB_DIR/port"
    cat > "$PGB_DIR/pgbouncer.ini" <<INI
[databases]
$DB_NAME = host=127.0.0.1 port=$pg_port dbname=$DB_NAME
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $PGB_DIR
auth_type = scram-sha-256
auth_file = $PGB_DIR/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
ignore_startup_parameters = extra_float_digits,options
pidfile = $PGB_DIR/pgbouncer.pid
logfile = $PGB_DIR/pgbouncer.log
INI
    echo "\"$DB_USER\" \"$DB_PASSWORD\"" > "$PGB_DIR/userlist.txt"
    touch "$PGB_DIR/pgbouncer.log"
    chown postgres:postgres "$PGB_DIR"/*
    chmod 600 "$PGB_DIR/userlist.txt"
    runuser -u postgres -- "$(pgbouncer_bin)" -d -q "$PGB_DIR/pgbouncer.ini" </dev/null >/dev/null 2>&1
    for _ in $(seq 1 100); do port_busy "$port" && break; sleep 0.05; done
    port_busy "$port" || { tail -n 20 "$PGB_DIR/pgbouncer.log" >&2; die "pgbouncer did not start"; }
    log "pgbouncer started on $port"
}

mysql_running() {
    pid_alive "$(cat "$MY_DIR/mysqld.pid" 2>/dev/null || true)" mariadbd
}

write_my_cnf() {
    cat > "$MY_DIR/my.cnf" <<CNF
[client]
port = $1
socket = $MY_DIR/mysqld.sock
[mysqld]
user = mysql
datadir = $MY_DIR/data
socket = $MY_DIR/mysqld.sock
pid-file = $MY_DIR/mysqld.pid
log-error = $MY_DIR/mysqld.err
tmpdir = $MY_DIR
port = $1
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
max_connections = 400
skip-log-bin
sync_binlog = 0
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
innodb_flush_method = nosync
innodb_buffer_pool_size = 256M
innodb_log_file_size = 48M
innodb_lock_wait_timeout = 5
ssl-ca = $MY_DIR/ca.crt
ssl-cert = $MY_DIR/server.crt
ssl-key = $MY_DIR/server.key
CNF
}

# A server this script started before it knew about TLS has no certificate.
mysql_without_tls() {
    [ "$(mariadb --defaults-file="$MY_DIR/my.cnf" -uroot -N -e "SELECT @@have_ssl" 2>/dev/null)" != YES ]
}

stop_mysql() {
    local pid
    pid=$(cat "$MY_DIR/mysqld.pid" 2>/dev/null || true)
    if pid_alive "$pid" mariadbd; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do pid_alive "$pid" mariadbd || break; sleep 0.1; done
        log "mariadb stopped"
    fi
}

start_mysql() {
    local port
    mkdir -p "$MY_DIR"
    chown mysql:mysql "$MY_DIR"
    install_certs "$MY_DIR" mysql
    if mysql_running && mysql_without_tls; then
        # never restart a server that others may be using: say what to do instead
        log "WARNING: mariadb on $(saved_port "$MY_DIR") was started without TLS (older script);" \
            "run '$0 stop' then '$0 start' to enable it (the TLS tests fail until then)"
    fi
    if mysql_running; then
        port=$(saved_port "$MY_DIR")
        log "mariadb already running on $port"
    else
        port=$(saved_port "$MY_DIR")
        port=$(free_port "${port:-${MYSQL_PORT:-53306}}")
        echo "$port" > "$MY_DIR/port"
        write_my_cnf "$port"
        if [ ! -d "$MY_DIR/data/mysql" ]; then
            mariadb-install-db --defaults-file="$MY_DIR/my.cnf" --skip-test-db \
                --auth-root-authentication-method=socket >/dev/null 2>&1 \
                || die "mariadb-install-db failed (see $MY_DIR)"
        fi
        # mariadbd does not daemonise; full redirection keeps CI log pipes from hanging.
        setsid "$(mariadbd_bin)" --defaults-file="$MY_DIR/my.cnf" >>"$MY_DIR/mysqld.out" 2>&1 </dev/null &
        for _ in $(seq 1 300); do
            mariadb-admin --defaults-file="$MY_DIR/my.cnf" -uroot ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        mariadb-admin --defaults-file="$MY_DIR/my.cnf" -uroot ping >/dev/null 2>&1 \
            || { tail -n 20 "$MY_DIR/mysqld.err" >&2 || true; die "mariadb did not start"; }
        log "mariadb started on $port"
    fi
    mariadb --defaults-file="$MY_DIR/my.cnf" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS '$TLS_USER'@'%' IDENTIFIED BY '$DB_PASSWORD' REQUIRE SSL;
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$TLS_USER'@'%';
FLUSH PRIVILEGES;
SQL
    # A server that was already running reloads the certificates make_certs may have renewed.
    mariadb --defaults-file="$MY_DIR/my.cnf" -uroot -e "FLUSH SSL" >/dev/null 2>&1 || true
}

print_env() {
    local pg_port my_port
    pg_port=$(saved_port "$PG_DIR")
    my_port=$(saved_port "$MY_DIR")
    {
        echo "export ASYNCDB_TEST_POSTGRES_URL=postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$pg_port/$DB_NAME"
        echo "export ASYNCDB_TEST_PGBOUNCER_URL=postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$(saved_port "$PGB_DIR")/$DB_NAME"
        echo "export ASYNCDB_TEST_MYSQL_URL=mysql://$DB_USER:$DB_PASSWORD@127.0.0.1:$my_port/$DB_NAME"
        echo "export ASYNCDB_TEST_SQLITE_URL=sqlite:///$BASE/test.sqlite3"
        echo "export ASYNCDB_PG_SOCKET_DIR=$PG_DIR"
        echo "export ASYNCDB_PG_DATA=$PG_DIR/data"
        echo "export ASYNCDB_PG_BINDIR=$(pg_bindir)"
        # the tests that restart servers run this script again: it must find these servers
        echo "export ASYNCDB_SERVERS_DIR=$BASE"
        echo "export ASYNCDB_MYSQL_SOCKET=$MY_DIR/mysqld.sock"
        echo "export ASYNCDB_TEST_CA=$TLS_DIR/ca.crt"
        echo "export ASYNCDB_TEST_POSTGRES_TLS_URL=postgresql://$TLS_USER:$DB_PASSWORD@127.0.0.1:$pg_port/$DB_NAME"
        echo "export ASYNCDB_TEST_MYSQL_TLS_URL=mysql://$TLS_USER:$DB_PASSWORD@127.0.0.1:$my_port/$DB_NAME"
    } | tee "$BASE/env.sh"
}

stop_all() {
    local pid
    pid=$(cat "$PGB_DIR/pgbouncer.pid" 2>/dev/null || true)
    if pid_alive "$pid" pgbouncer; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do pid_alive "$pid" pgbouncer || break; sleep 0.05; done
        log "pgbouncer stopped"
    fi
    if pg_running; then
        runuser -u postgres -- "$(pg_bindir)/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null || true
        log "postgres stopped"
    fi
    stop_mysql
}

case "${1:-start}" in
start)
    [ "$(id -u)" -eq 0 ] || die "run as root (servers are started as the postgres/mysql users)"
    install_packages
    ensure_user postgres
    ensure_user mysql
    mkdir -p "$BASE"
    chmod 755 "$BASE"
    make_certs
    start_postgres
    start_pgbouncer
    start_mysql
    print_env
    ;;
stop) stop_all ;;
clean) stop_all; rm -rf "$BASE" ;;
env) print_env ;;
*) die "usage: $0 start|stop|clean|env" ;;
esac
