#!/usr/bin/env bash
# Does a bandwidth cap hold? Times one file (200 MB by default) moved
# under a cap of 10 MB/s three ways: the task's --bwlimit, the sending
# endpoint's bwlimit (endpoint.toml, taken up by -reload as by SIGHUP),
# the receiving endpoint's. Prints the achieved rate and its ratio to the
# cap; the target is within 10% (a ratio between 0.90 and 1.10). The
# time runs from submission to the task's end, so it includes the hub's
# start of the task (well under a second: a small bias below 1).
#   BWLIMIT_MB=200 BWLIMIT_RATE=10M bench/bwlimit.sh
#   FERRY_BENCH_PROFILE=debug bench/bwlimit.sh   # without a release build
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. bench/lab.sh
trap lab_stop EXIT
lab_start
mb=${BWLIMIT_MB:-200}
rate=${BWLIMIT_RATE:-10M}
cap=$(python3 -c "
t='$rate'; s={'K':10**3,'M':10**6,'G':10**9}.get(t[-1].upper(),1)
print(int(t[:-1] if s>1 else t)*s)")
size=$((mb * 1000 * 1000))
data=$BENCH_SHM/bwlimit
rm -rf "$data"; mkdir -p "$data"
head -c "$size" /dev/urandom > "$data/big.bin"
now() { date +%s.%N; }

# One transfer to a fresh name; prints "seconds MB/s ratio".
measure() {
  local to=$data/copy.$1; shift
  local t0 t1 id
  t0=$(now)
  id=$(ferry transfer "bench-src:$data/big.bin" "bench-dst:$to" "$@" --json |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
  ferry task wait "$id" >/dev/null
  t1=$(now)
  cmp "$data/big.bin" "$to"
  rm -f "$to"
  python3 -c "d=$t1-$t0; r=$size/d; print(f'{d:7.2f} s  {r/1e6:7.2f} MB/s  ratio {r/$cap:.3f}')"
}

set_cap() { # endpoint, rate or "" for none
  local toml=$work/$1/endpoint.toml
  sed -i '/^bwlimit = /d' "$toml"
  [ -n "$2" ] && echo "bwlimit = \"$2\"" >> "$toml"
  ferry -reload -dir "$work/$1" >/dev/null
}

task=$(measure task --bwlimit "$rate")
set_cap src "$rate"; sending=$(measure sending); set_cap src ""
set_cap dst "$rate"; receiving=$(measure receiving); set_cap dst ""

cat <<REPORT
ferry bandwidth caps, one run ($(nproc) cores, ${FERRY_BENCH_PROFILE:-release} build, tmpfs, loopback): ${mb} MB under a cap of ${rate}B/s
  task --bwlimit ${rate}          ${task}
  sending endpoint bwlimit     ${sending}
  receiving endpoint bwlimit   ${receiving}
REPORT
rm -rf "$data"
