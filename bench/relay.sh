#!/usr/bin/env bash
# Relayed against direct, in the same run: one file (1 GiB by default)
# moved between two endpoints on loopback, first directly, then with the
# destination's `data_listen = false` (its daemon restarted), so every
# data stream goes through the hub. Prints each rate and their ratio.
# The time runs from submission to the task's end. Each line also says the
# CPU seconds the hub and the two daemons spent on it (/proc/PID/stat), so
# what bounds the relayed rate is measured, not guessed.
#   RELAY_MB=1024 bench/relay.sh
#   FERRY_BENCH_PROFILE=debug bench/relay.sh   # without a release build
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. bench/lab.sh
trap lab_stop EXIT
lab_start
mb=${RELAY_MB:-1024}
size=$((mb * 1024 * 1024))
data=$BENCH_SHM/relay
rm -rf "$data"; mkdir -p "$data"
head -c "$size" /dev/urandom > "$data/big.bin"
now() { date +%s.%N; }
tick=$(getconf CLK_TCK)
# CPU seconds of the hub, the source daemon and the destination daemon.
cpu_of() { awk -v t="$tick" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
cpus() { echo "$(cpu_of "$hub_pid") $(cpu_of "$(cat "$work/src/ferry.lock")") $(cpu_of "$(cat "$work/dst/ferry.lock")")"; }

# One transfer to a fresh name; prints "seconds MB/s" (MB = 10^6 bytes).
measure() {
  local to=$data/copy.$1 t0 t1 id c0 c1
  c0=$(cpus)
  t0=$(now)
  id=$(ferry transfer "bench-src:$data/big.bin" "bench-dst:$to" --json |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
  ferry task wait "$id" >/dev/null
  t1=$(now)
  c1=$(cpus)
  cmp "$data/big.bin" "$to"
  rm -f "$to"
  echo "$id $(python3 -c "
d=$t1-$t0; a='$c0'.split(); b='$c1'.split()
used=[float(y)-float(x) for x, y in zip(a, b)]
print(f'{d:7.2f} s {$size/d/1e6:8.1f} MB/s   CPU s: hub {used[0]:.2f}, source {used[1]:.2f}, destination {used[2]:.2f}')")"
}

read -r direct_id direct <<<"$(measure direct)"
ferry -stop -dir "$work/dst" >/dev/null
echo 'data_listen = false' >> "$work/dst/endpoint.toml"
ferry -start -detach -dir "$work/dst" >/dev/null
for _ in $(seq 100); do ferry -status -dir "$work/dst" | grep -q '^Hub: connected' && break; sleep 0.1; done
read -r relay_id relayed <<<"$(measure relayed)"
ferry task events "$relay_id" | grep -q RELAYED || { echo "the second transfer was not relayed" >&2; exit 1; }
ferry task events "$direct_id" | grep -q RELAYED && { echo "the first transfer was relayed" >&2; exit 1; }

rate() { awk '{print $3}' <<<"$1"; }
cat <<REPORT
ferry relay against direct, one run ($(nproc) cores, ${FERRY_BENCH_PROFILE:-release} build, tmpfs, loopback): ${mb} MiB
  direct              ${direct}
  through the hub     ${relayed}
  relayed/direct      $(python3 -c "print(f'{$(rate "$relayed")/$(rate "$direct"):.2f}')")
  (on $(nproc) cores: the CPU seconds of all three over the wall time say how busy the machine was)
REPORT
rm -rf "$data"
