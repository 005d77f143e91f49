#!/usr/bin/env bash
# A throwaway PostgreSQL server for the storage tests: Debian's packages
# (installed when missing), a fresh cluster in a temp dir, listening on
# loopback only (and a Unix socket in that dir), on a free port, with TLS
# from a CA made for the run, a role and a database for the tests.
#
#   eval "$(bash .ci/postgres.sh start)"
#     # exports FERRY_TEST_POSTGRES (its URL), FERRY_TEST_POSTGRES_CA (the
#     # CA of its TLS certificate), FERRY_CI_PG_DIR
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
  # TLS too, with a CA made for this run, so that the tests can check the
  # hub verifies the server (sslmode=require&sslrootcert=...). The openssl
  # command only makes these test certificates; ferry links no OpenSSL.
  command -v openssl >/dev/null 2>&1 || {
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
  }
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=ferry CI PostgreSQL CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req "${ec[@]}" -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
  chmod 600 "$dir/server.key"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir/server.key" "$dir/server.crt"
  as_server "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    exit 1
  }
  # Durability buys nothing for a throwaway test server and costs time.
  as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" \
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
  echo "export FERRY_TEST_POSTGRES_CA='$dir/ca.crt'"
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
