#!/usr/bin/env bash
# The hub's memory with many idle endpoints, one run, loopback: ENDPOINTS
# endpoints (default 10,000) register over the REST API, each dials the
# control channel with its own certificate (mutual TLS, as the daemon does)
# and keeps heartbeats for HOLD_SECS (default 60) at a HEARTBEAT_SECS
# interval (default 5, so a minute holds a dozen rounds). Meanwhile the
# hub's VmRSS/VmHWM are sampled. Passes if every endpoint connects, none is
# lost, each keeps a heartbeat round every interval, and the hub's peak RSS
# stays <= 1 GiB; the report comes from tests/examples/idle_endpoints.rs.
# WAVES=K (default 1) connects, holds and drops every endpoint K times, as
# a reconnect storm after a network blip would.
# DATABASE=postgres puts the hub on a throwaway PostgreSQL (.ci/postgres.sh,
# stopped at the end) instead of its SQLite file; INSTANCES=K (needs
# DATABASE=postgres) serves it with K `ferry-hub serve` processes of one
# state dir, each on its own loopback port, as docs/hub.md deploys them
# behind a front. No front here: the load generator spreads the endpoints
# round robin (endpoint i dials instance i mod K directly) and reports
# each instance's memory; registration goes to the first instance.
#   bench/hub-idle.sh                              # 10,000 endpoints, 60 s
#   ENDPOINTS=200 HOLD_SECS=15 bench/hub-idle.sh   # a quick look
#   WAVES=3 HOLD_SECS=20 bench/hub-idle.sh         # after reconnects
#   INSTANCES=3 DATABASE=postgres bench/hub-idle.sh  # 3 instances, one database
# Needs an open files limit (ulimit -Hn) of ENDPOINTS + 256 for the hub and
# for the load generator. The hubs' logs are left in $FERRY_HUB_IDLE_WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
n=${ENDPOINTS:-10000} hold=${HOLD_SECS:-60} heartbeat=${HEARTBEAT_SECS:-5} waves=${WAVES:-1}
instances=${INSTANCES:-1} database=${DATABASE:-sqlite}
work=${FERRY_HUB_IDLE_WORK:-/var/tmp/ferry-hub-idle-work}
hub_pids=() pg_dir=

case "$database" in
  sqlite | postgres) ;;
  *) echo "hub-idle: DATABASE is sqlite or postgres, not $database" >&2; exit 2 ;;
esac
if ! [ "$instances" -ge 1 ] 2>/dev/null; then
  echo "hub-idle: INSTANCES must be a number of at least 1" >&2; exit 2
fi
if [ "$instances" -gt 1 ] && [ "$database" != postgres ]; then
  echo "hub-idle: INSTANCES=$instances needs DATABASE=postgres (instances share a database; SQLite is one process's file)" >&2
  exit 2
fi

stop_all() {
  local pid
  for pid in "${hub_pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  if [ -n "$pg_dir" ]; then bash .ci/postgres.sh stop "$pg_dir"; fi
  true
}
trap stop_all EXIT

# FERRY_BENCH_PROFILE=debug: a quick look without a release build (its
# figures are not the release build's).
profile=${FERRY_BENCH_PROFILE:-release}
# FERRY_BENCH_BIN=DIR: the binaries already built there (DIR/ferry-hub,
# DIR/examples/idle_endpoints); nothing is built.
if [ -n "${FERRY_BENCH_BIN:-}" ]; then
  bin=$(cd "$FERRY_BENCH_BIN" && pwd)
else
  flags=(--quiet); [ "$profile" = release ] && flags+=(--release)
  cargo build "${flags[@]}" -p ferry-hub --bins
  cargo build "${flags[@]}" -p ferry-tests --example idle_endpoints
  bin=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/$profile
fi
for b in ferry-hub examples/idle_endpoints; do
  [ -x "$bin/$b" ] || { echo "hub-idle: no $bin/$b" >&2; exit 1; }
done

# One descriptor per connection on each side, plus headroom.
need=$((n + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  echo "hub-idle: $n endpoints need $need open files, but the hard limit is $hard;" \
       "raise it (limits.conf, or ulimit -Hn $need as root) or set ENDPOINTS lower" >&2
  exit 1
fi
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$need" ]; then ulimit -Sn "$need"; fi

rm -rf "$work"; mkdir -p "$work"
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
"$bin/ferry-hub" init --dir "$work/hub" --url "https://127.0.0.1:$port" >/dev/null
if [ "$database" = postgres ]; then
  eval "$(bash .ci/postgres.sh start)"
  pg_dir=$FERRY_CI_PG_DIR
  # Top-level keys go before any [table] of hub.toml.
  { echo "database = \"$FERRY_TEST_POSTGRES?sslmode=require&sslrootcert=$FERRY_TEST_POSTGRES_CA\""
    cat "$work/hub/hub.toml"; } >"$work/hub.toml.new"
  mv "$work/hub.toml.new" "$work/hub/hub.toml"
fi
# Room for every endpoint plus the registration's HTTP connections, and a
# short heartbeat so the hold spans many rounds. No other limit applies to
# control connections (the login limiter counts failed logins only).
sed -i -E "s/^heartbeat_secs = .*/heartbeat_secs = $heartbeat/; s/^max_connections = .*/max_connections = $((n + 1024))/" \
  "$work/hub/hub.toml"
if ! grep -qx "heartbeat_secs = $heartbeat" "$work/hub/hub.toml" ||
  ! grep -qx "max_connections = $((n + 1024))" "$work/hub/hub.toml"; then
  echo "hub-idle: could not set heartbeat_secs/max_connections in $work/hub/hub.toml" >&2; exit 1
fi
echo 'bench password 1' | "$bin/ferry-hub" user add bench --password-stdin --dir "$work/hub" >/dev/null
FERRY_TOKEN=$("$bin/ferry-hub" token create --dir "$work/hub" --user bench --expires 86400)
export FERRY_TOKEN

# Instance 0 listens where hub.toml says (the URL's port); the others on
# ports of their own. Every one serves the same state dir and database.
ports=("$port")
for _ in $(seq 2 "$instances"); do ports+=("$(free_port)"); done
targets=()
for i in "${!ports[@]}"; do
  "$bin/ferry-hub" serve --dir "$work/hub" --listen "127.0.0.1:${ports[$i]}" 2>"$work/hub-$i.log" &
  hub_pids+=($!)
  targets+=(--hub-pid "$!" --port "${ports[$i]}")
done
for p in "${ports[@]}"; do
  for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null && break; sleep 0.1; done
  (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null ||
    { echo "hub-idle: no hub instance listens on 127.0.0.1:$p; see $work/hub-*.log" >&2; exit 1; }
done

echo "hub-idle: $n endpoints, $instances instance(s), $database, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$bin/examples/idle_endpoints" --hub-dir "$work/hub" "${targets[@]}" \
  --endpoints "$n" --hold-secs "$hold" --waves "$waves"
echo "hub-idle: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2
