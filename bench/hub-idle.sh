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
#   bench/hub-idle.sh                              # 10,000 endpoints, 60 s
#   ENDPOINTS=200 HOLD_SECS=15 bench/hub-idle.sh   # a quick look
#   WAVES=3 HOLD_SECS=20 bench/hub-idle.sh         # after reconnects
# Needs an open files limit (ulimit -Hn) of ENDPOINTS + 256 for the hub and
# for the load generator. The hub's log is left in $FERRY_HUB_IDLE_WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
n=${ENDPOINTS:-10000} hold=${HOLD_SECS:-60} heartbeat=${HEARTBEAT_SECS:-5} waves=${WAVES:-1}
work=${FERRY_HUB_IDLE_WORK:-/var/tmp/ferry-hub-idle-work}
hub_pid=

stop_hub() {
  if [ -n "$hub_pid" ]; then kill "$hub_pid" 2>/dev/null; wait "$hub_pid" 2>/dev/null; fi
  true
}
trap stop_hub EXIT

cargo build --release -p ferry-hub --bins --quiet
cargo build --release -p ferry-tests --example idle_endpoints --quiet
bin=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release

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
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/ferry-hub" init --dir "$work/hub" --url "https://127.0.0.1:$port" >/dev/null
# Room for every endpoint plus the registration's HTTP connections, and a
# short heartbeat so the hold spans many rounds. No other limit applies to
# control connections (the login limiter counts failed logins only).
sed -i -E "s/^heartbeat_secs = .*/heartbeat_secs = $heartbeat/; s/^max_connections = .*/max_connections = $((n + 1024))/" \
  "$work/hub/hub.toml"
grep -qx "heartbeat_secs = $heartbeat" "$work/hub/hub.toml" &&
  grep -qx "max_connections = $((n + 1024))" "$work/hub/hub.toml" ||
  { echo "hub-idle: could not set heartbeat_secs/max_connections in $work/hub/hub.toml" >&2; exit 1; }
echo 'bench password 1' | "$bin/ferry-hub" user add bench --password-stdin --dir "$work/hub" >/dev/null
FERRY_TOKEN=$("$bin/ferry-hub" token create --dir "$work/hub" --user bench --expires 86400)
export FERRY_TOKEN

"$bin/ferry-hub" serve --dir "$work/hub" 2>"$work/hub.log" &
hub_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

"$bin/examples/idle_endpoints" --hub-dir "$work/hub" --hub-pid "$hub_pid" \
  --endpoints "$n" --hold-secs "$hold" --waves "$waves"
