#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for nbhub's tests.
#
#   scripts/postgres.sh start   start it (or reuse the running one); prints its URL on stdout
#   scripts/postgres.sh url     prints the URL of the running cluster (exit 1 if none)
#   scripts/postgres.sh status  says whether it runs
#   scripts/postgres.sh stop    stops it and removes its directory
#
# The cluster lives in ${NBHUB_PG_DIR:-/tmp/nbhub-pg-<hash of the repo path>} (under /tmp rather
# than the checkout so that the `postgres` account can reach it even when the checkout sits in a
# private home), listens on 127.0.0.1 only, on a port that was free when it started, trusts
# loopback connections and has a database `nbhub_test`. PostgreSQL refuses to run as root, so
# as root every server command runs as the `postgres` Unix account (created by Debian's package).
# Binaries: ${NBHUB_PG_BIN:-the newest /usr/lib/postgresql/<version>/bin} (Debian's packages;
# scripts/test-env.sh installs them).
# Progress goes to stderr; stdout carries only the URL.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_HASH=$(printf '%s' "$REPO" | sha256sum | cut -c1-8)
PG_DIR=${NBHUB_PG_DIR:-/tmp/nbhub-pg-$REPO_HASH}
DATA="$PG_DIR/data"
DB=nbhub_test

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
    printf 'postgres.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

find_bin() {
    if [[ -n ${NBHUB_PG_BIN:-} ]]; then
        [[ -x $NBHUB_PG_BIN/pg_ctl ]] || die "NBHUB_PG_BIN=$NBHUB_PG_BIN has no pg_ctl"
        printf '%s\n' "$NBHUB_PG_BIN"
        return
    fi
    local dir best
    # The glob sorts 10 before 9: pick the highest version explicitly.
    best=$(for dir in /usr/lib/postgresql/*/bin; do
        if [[ -x $dir/pg_ctl && -x $dir/initdb ]]; then printf '%s\n' "$dir"; fi
    done | sort -V | tail -n 1)
    [[ -n $best ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; run scripts/test-env.sh (installs Debian's postgresql package)"
    printf '%s\n' "$best"
}

PG_BIN=$(find_bin)

# Run a command as the account that owns the cluster.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@" 9>&-
    else
        "$@" 9>&-
    fi
}

free_port() {
    local py
    for py in python3 "$REPO/.venv/bin/python"; do
        if command -v "$py" >/dev/null 2>&1; then
            "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' && return
        fi
    done
    # No Python: a random high port; start() retries if it turns out to be taken.
    printf '%s\n' $((20000 + RANDOM % 30000))
}

is_running() {
    [[ -f $DATA/postmaster.pid ]] && as_owner "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

url() {
    printf 'postgresql://postgres@127.0.0.1:%s/%s\n' "$(cat "$PG_DIR/port")" "$DB"
}

psql_q() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(cat "$PG_DIR/port")" -U postgres "$@"
}

cmd_start() {
    # A server may be starting, running, or dying (killed: its pid lingers for a moment).
    local tries=0
    while is_running && [[ -f $PG_DIR/port ]]; do
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$(cat "$PG_DIR/port")" -t 2; then
            log "reusing the running cluster in $PG_DIR (port $(cat "$PG_DIR/port"))"
            ensure_db
            url
            return
        fi
        tries=$((tries + 1))
        [[ $tries -lt 40 ]] || die "the cluster in $PG_DIR runs but does not accept connections; see $PG_DIR/server.log, or reset it with: $0 stop"
        sleep 0.25
    done
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "no 'postgres' Unix account to run the server as; run scripts/test-env.sh (Debian's postgresql package creates it)"
    fi
    mkdir -p "$PG_DIR"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$PG_DIR"
    if [[ ! -f $DATA/PG_VERSION ]]; then
        rm -rf "$DATA"
        log "initdb $DATA ($PG_BIN)"
        as_owner "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
            >"$PG_DIR/initdb.log" 2>&1 || die "initdb failed; see $PG_DIR/initdb.log:
$(tail -n 20 "$PG_DIR/initdb.log")"
        # Settings that change per start go to an included file.
        printf "include_if_exists = 'nbhub.conf'\n" | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
    fi
    local attempt port
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        # Durability is pointless for a throw-away test database; speed is not.
        as_owner tee "$DATA/nbhub.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
        log "starting PostgreSQL on 127.0.0.1:$port (attempt $attempt)"
        if as_owner "$PG_BIN/pg_ctl" -D "$DATA" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null; then
            printf '%s\n' "$port" >"$PG_DIR/port"
            ensure_db
            log "ready; log: $PG_DIR/server.log"
            url
            return
        fi
        log "start failed on port $port; server log tail:"
        tail -n 5 "$PG_DIR/server.log" >&2 || true
    done
    die "PostgreSQL did not start; see $PG_DIR/server.log"
}

ensure_db() {
    local exists
    exists=$(psql_q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'") ||
        die "cannot connect to the cluster in $PG_DIR"
    if [[ $exists != 1 ]]; then
        log "creating database $DB"
        psql_q -d postgres -c "CREATE DATABASE $DB" >/dev/null
    fi
}

cmd_stop() {
    if is_running; then
        log "stopping the cluster in $PG_DIR"
        as_owner "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null ||
            die "pg_ctl stop failed; see $PG_DIR/server.log"
    else
        log "no cluster running in $PG_DIR"
    fi
    rm -rf "$PG_DIR"
    log "removed $PG_DIR"
}

cmd_url() {
    is_running && [[ -f $PG_DIR/port ]] || die "no cluster running in $PG_DIR; run: scripts/postgres.sh start"
    url
}

cmd_status() {
    if is_running && [[ -f $PG_DIR/port ]]; then
        log "running in $PG_DIR on port $(cat "$PG_DIR/port")"
    else
        log "not running ($PG_DIR)"
        return 3
    fi
}

# One invocation at a time per cluster (parallel test runners may all call start). as_owner
# closes fd 9 so that the daemonised server does not inherit, and so hold, the lock.
mkdir -p "$(dirname "$PG_DIR")"
exec 9>"$PG_DIR.lock"
flock 9

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
url) cmd_url ;;
status) cmd_status ;;
*) die "usage: $0 start|stop|url|status" ;;
esac
