#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (tests/service runs against it when
# FEDMETAMAL_TEST_POSTGRES_URL is set).
#
#   scripts/postgres.sh [ENVFILE]     start one; print (or write to ENVFILE) the lines
#                                     export FEDMETAMAL_TEST_POSTGRES_URL=postgresql://...
#                                     export FEDMETAMAL_TEST_POSTGRES_DIR=/tmp/fmm-pg.XXXXXX
#   scripts/postgres.sh --stop DIR    stop it and delete DIR (does nothing if DIR is gone)
#
# The server listens on 127.0.0.1 only, on a free port, with its unix socket and data in a fresh
# temporary directory, trust authentication and fsync off (test data only). Binaries come from
# PATH or /usr/lib/postgresql/*/bin; when missing and we are root, Debian's postgresql package is
# installed. PostgreSQL refuses to run as root, so as root the server runs as the system user
# fmmpg (created when missing). Messages go to stderr, so `eval "$(scripts/postgres.sh)"` works.
set -euo pipefail

PG_USER=fmmpg
DB_USER=fedmetamal
DB_NAME=fedmetamal_test

say() { echo "postgres.sh: $*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

# Run a command as the server's user (fmmpg when we are root, else ourselves).
as_pg() {
    if ! is_root; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$PG_USER" -- "$@"
    else
        su -s /bin/sh "$PG_USER" -c "$(printf '%q ' "$@")"
    fi
}

find_bindir() {
    local initdb dir
    if initdb=$(command -v initdb 2>/dev/null) && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$initdb")"
        return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

stop_server() {
    local dir=$1
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    if [ -f "$dir/data/postmaster.pid" ] && [ -f "$dir/bindir" ]; then
        as_pg "$(cat "$dir/bindir")/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 \
            || say "warning: pg_ctl stop failed; see $dir/server.log"
    fi
    rm -rf -- "$dir"
}

if [ "${1:-}" = "--stop" ]; then
    stop_server "${2:-}"
    exit 0
fi
envfile=${1:-}

if ! bindir=$(find_bindir); then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        say "installing Debian's postgresql package"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends postgresql >&2
    fi
    bindir=$(find_bindir) || {
        say "no PostgreSQL server binaries (initdb, pg_ctl) found; install PostgreSQL"
        exit 1
    }
fi

if is_root && ! id "$PG_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
fi

dir=$(mktemp -d /tmp/fmm-pg.XXXXXX)
started=0
trap '[ "$started" = 1 ] || stop_server "$dir"' EXIT
echo "$bindir" >"$dir/bindir"
is_root && chown "$PG_USER" "$dir"
chmod 700 "$dir"

port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')

as_pg "$bindir/initdb" -D "$dir/data" -U "$DB_USER" --auth-local=trust --auth-host=trust \
    -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
    || as_pg "$bindir/initdb" -D "$dir/data" -U "$DB_USER" --auth-local=trust \
        --auth-host=trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
    || { say "initdb failed:"; cat "$dir/initdb.log" >&2; false; }

opts="-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off"
opts="$opts -c full_page_writes=off -c max_connections=100"
if ! as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 30 start \
    >/dev/null; then
    say "the server did not start:"
    cat "$dir/server.log" >&2
    false
fi
"$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres \
    -c "CREATE DATABASE $DB_NAME" >/dev/null

started=1
exports="export FEDMETAMAL_TEST_POSTGRES_URL=postgresql://$DB_USER@127.0.0.1:$port/$DB_NAME
export FEDMETAMAL_TEST_POSTGRES_DIR=$dir"
if [ -n "$envfile" ]; then
    echo "$exports" >"$envfile"
else
    echo "$exports"
fi
say "PostgreSQL is up on 127.0.0.1:$port (stop: scripts/postgres.sh --stop $dir)"
