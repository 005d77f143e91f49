#!/usr/bin/env bash
# A throwaway PostgreSQL server for the storage tests: Debian's packages
# (installed when missing), a fresh cluster in a temp dir, listening on
# loopback only (and a Unix socket in that dir), on a free port, with a
# role and a database for the tests.
#
#   eval "$(bash .ci/postgres.sh start)"   # exports FERRY_TEST_POSTGRES, FERRY_CI_PG_DIR
#   bash .ci/postgres.sh stop "$FERRY_CI_PG_DIR"
#
# Progress goes to stderr; only the export lines go to stdout.
set -euo pipefail

bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# Run as the postgres user when we are root (the server refuses to run as
# root); as ourselves otherwise.
as_server() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  if [ -z "$(bin_dir)" ] || [ ! -x "$(bin_dir)/initdb" ]; then
    echo "installing postgresql from Debian's packages" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local bin dir port password
  bin=$(bin_dir)
  dir=$(mktemp -d /tmp/ferry-ci-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  # A free port: nothing answers on it now.
  port=55432
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
  done
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  as_server "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    exit 1
  }
  # Durability buys nothing for a throwaway test server and costs time.
  as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >&2 || {
    cat "$dir/server.log" >&2
    exit 1
  }
  as_server "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres \
    -c "CREATE ROLE ferry LOGIN PASSWORD '$password'" \
    -c "CREATE DATABASE ferry OWNER ferry" >&2
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $dir)" >&2
  echo "export FERRY_CI_PG_DIR='$dir'"
  echo "export FERRY_TEST_POSTGRES='postgres://ferry:$password@127.0.0.1:$port/ferry'"
}

stop() {
  local dir=${1:?usage: postgres.sh stop DIR}
  [ -d "$dir/data" ] || return 0
  as_server "$(bin_dir)/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac
