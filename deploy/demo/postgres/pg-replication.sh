#!/usr/bin/env bash
# Starts a PostgreSQL primary, or a read replica that clones the primary with
# `pg_basebackup -R` and streams from it through a replication slot. The
# demo StatefulSets run it as their entrypoint, and the load generator's
# tests run the very same script on 127.0.0.1, so what is tested is what is
# deployed.
#
# usage: pg-replication.sh primary|replica
#
# Environment:
#   PGDATA                  data directory (required; created on first start)
#   PGPORT                  port to listen on (default 5432)
#   PG_LISTEN               listen_addresses (default '*')
#   PG_SOCKET_DIR           Unix socket directory (default /var/run/postgresql)
#   PG_CLIENT_CIDR          who may connect over TCP (default 0.0.0.0/0; the
#                           NetworkPolicy and Services decide in a cluster)
#   POSTGRES_USER           the application's superuser (default postgres)
#   POSTGRES_PASSWORD[_FILE]  its password (required on the primary)
#   POSTGRES_DB             a database to create (default: none besides postgres)
#   REPLICATION_USER        role replicas stream as (default replicator)
#   REPLICATION_PASSWORD[_FILE]  its password (required)
#   PRIMARY_HOST, PRIMARY_PORT  where the primary listens (replica only)
#   REPLICA_SLOT            slot name (replica only; default: from the hostname)
#   PRIMARY_WAIT_SECONDS    how long a replica waits for the primary (default 300)
#
# Passwords are read from the environment or from *_FILE (a mounted Secret)
# and never passed on a command line.
set -euo pipefail

role="${1:?usage: pg-replication.sh primary|replica}"
: "${PGDATA:?PGDATA must be set}"
port="${PGPORT:-5432}"
listen="${PG_LISTEN:-*}"
socket_dir="${PG_SOCKET_DIR:-/var/run/postgresql}"
cidr="${PG_CLIENT_CIDR:-0.0.0.0/0}"
user="${POSTGRES_USER:-postgres}"
repl_user="${REPLICATION_USER:-replicator}"

# Debian installs the server binaries outside PATH; the postgres image does not.
if ! command -v initdb >/dev/null 2>&1; then
    for dir in /usr/lib/postgresql/*/bin; do PATH="$dir:$PATH"; done
fi

# secret NAME: the value of $NAME, or the contents of the file $NAME_FILE.
secret() {
    local file_var="$1_FILE"
    if [ -n "${!file_var:-}" ]; then
        cat "${!file_var}"
    elif [ -n "${!1:-}" ]; then
        printf '%s' "${!1}"
    else
        echo "pg-replication: $1 or $file_var must be set" >&2
        exit 2
    fi
}

repl_password="$(secret REPLICATION_PASSWORD)"
export REPL_PASSWORD="$repl_password"
mkdir -p "$socket_dir"

# The settings both roles run with, on the command line so that they win
# over whatever a cloned postgresql.conf says. max_slot_wal_keep_size: a
# replica removed by a scale-down leaves its slot behind; past 1 GB of WAL
# the slot is given up instead of filling the primary's disk.
run_server() {
    exec postgres -D "$PGDATA" \
        -c port="$port" \
        -c listen_addresses="$listen" \
        -c unix_socket_directories="$socket_dir" \
        -c wal_level=replica \
        -c max_wal_senders=10 \
        -c max_replication_slots=10 \
        -c wal_keep_size=256MB \
        -c hot_standby=on \
        -c hot_standby_feedback=on \
        -c max_slot_wal_keep_size=1GB \
        -c password_encryption=scram-sha-256
}

init_primary() {
    local pwfile
    pwfile="$(mktemp)"
    secret POSTGRES_PASSWORD >"$pwfile"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    rm -f "$pwfile"
    {
        echo "host replication $repl_user $cidr scram-sha-256"
        echo "host all all $cidr scram-sha-256"
    } >>"$PGDATA/pg_hba.conf"

    # Create the replication role (and the app database) on a server that
    # listens on the socket only, then stop it.
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c port=$port -c unix_socket_directories=$socket_dir" start >/dev/null
    psql -v ON_ERROR_STOP=1 -h "$socket_dir" -p "$port" -U "$user" -d postgres -q <<SQL
\getenv repl_password REPL_PASSWORD
CREATE ROLE "$repl_user" WITH REPLICATION LOGIN PASSWORD :'repl_password';
SQL
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
        psql -v ON_ERROR_STOP=1 -h "$socket_dir" -p "$port" -U "$user" -d postgres -q \
            -c "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$user\""
    fi
    pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
}

init_replica() {
    : "${PRIMARY_HOST:?PRIMARY_HOST must be set for a replica}"
    local primary_port="${PRIMARY_PORT:-5432}"
    local slot="${REPLICA_SLOT:-$(hostname)}"
    # Slot names allow lower-case letters, digits and underscores only.
    slot="$(printf '%s' "$slot" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_' '_')"
    local waited=0 limit="${PRIMARY_WAIT_SECONDS:-300}"
    until pg_isready -q -h "$PRIMARY_HOST" -p "$primary_port"; do
        if [ "$waited" -ge "$limit" ]; then
            echo "pg-replication: primary $PRIMARY_HOST:$primary_port not ready after ${limit}s" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    export PGPASSWORD="$repl_password"
    local base=(pg_basebackup -h "$PRIMARY_HOST" -p "$primary_port" -U "$repl_user"
        -D "$PGDATA" -R -X stream -S "$slot" --checkpoint=fast)
    # A replica that lost its volume finds its slot still there: reuse it.
    if ! "${base[@]}" -C 2>/dev/null; then
        rm -rf "${PGDATA:?}"/*
        "${base[@]}"
    fi
    unset PGPASSWORD
    chmod 700 "$PGDATA"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    case "$role" in
    primary) init_primary ;;
    replica) init_replica ;;
    *)
        echo "usage: pg-replication.sh primary|replica" >&2
        exit 2
        ;;
    esac
fi
unset REPL_PASSWORD
run_server
