#!/usr/bin/env bash
# Memory of both daemons through one transfer of many small files (default
# 1,000,000 files of 16 bytes in 1,000 directories, on tmpfs), sampled every
# second, against the targets: each daemon <= 100 MiB RSS, flat in file
# count, and the destination holding <= 256 open descriptors (the most seen
# in /proc/PID/fd at each sample).
#
#   bench/memory.sh            # FILES=1000000 by default
#   FILES=200000 bench/memory.sh
#
# Needs about 2 x FILES x 4.5 KiB of /dev/shm (tmpfs keeps a page per file).
set -euo pipefail
cd "$(dirname "$0")/.."
files=${FILES:-1000000}
export FERRY_BENCH_WORK=${FERRY_BENCH_WORK:-/var/tmp/ferry-memory-work}
# shellcheck disable=SC1091
. bench/lab.sh
data=${BENCH_SHM}/memory
cleanup() { lab_stop; rm -rf "$data"; }
trap cleanup EXIT
lab_start
rm -rf "$data"; mkdir -p "$data/src"
python3 - "$data/src" "$files" <<'PY'
import os, sys
root, files = sys.argv[1], int(sys.argv[2])
per_dir = 1000
for i in range(files):
    d = f"{root}/d{i // per_dir:04d}"
    if i % per_dir == 0:
        os.mkdir(d)
    with open(f"{d}/f{i % per_dir:04d}", "wb") as fh:
        fh.write(b"0123456789abcdef")
PY
src_pid=$(cat "$work/src/ferry.lock"); dst_pid=$(cat "$work/dst/ferry.lock")
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }
echo "before: source VmRSS $(kib VmRSS "$src_pid") KiB, destination VmRSS $(kib VmRSS "$dst_pid") KiB"
t0=$(date +%s.%N)
id=$(ferry transfer -r "bench-src:$data/src" "bench-dst:$data/dst" --json |
     python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
dst_fds_peak=$(fds "$dst_pid")
echo "seconds  files_done  source_rss_mib  destination_rss_mib  destination_fds"
status=ACTIVE
for _ in $(seq 3600); do
  dst_fds=$(fds "$dst_pid")
  [ "$dst_fds" -gt "$dst_fds_peak" ] && dst_fds_peak=$dst_fds
  info=$(ferry task show "$id" --json)
  status=$(echo "$info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  done_files=$(echo "$info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["files_transferred"])')
  awk -v now="$(date +%s.%N)" -v t0="$t0" -v files="$done_files" \
      -v src="$(kib VmRSS "$src_pid")" -v dst="$(kib VmRSS "$dst_pid")" -v fds="$dst_fds" \
      'BEGIN { printf "%7.0f  %10s  %14.1f  %19.1f  %15s\n", now - t0, files, src / 1024, dst / 1024, fds }'
  [ "$status" = ACTIVE ] || break
  sleep 1
done
t1=$(date +%s.%N)
[ "$status" = SUCCEEDED ] || { echo "memory.sh: the task ended $status" >&2; exit 1; }
copied=$(find "$data/dst" -type f | wc -l)
[ "$copied" -eq "$files" ] || { echo "memory.sh: $copied of $files files arrived" >&2; exit 1; }
src_peak=$(kib VmHWM "$src_pid"); dst_peak=$(kib VmHWM "$dst_pid")
verdict() { [ "$1" -le $((100 * 1024)) ] && echo holds || echo misses; }
cat <<REPORT
ferry memory, $files files of 16 bytes, tmpfs, loopback ($(python3 -c "print(round($files/($t1-$t0)))") files/s)
  source peak RSS (VmHWM)       $((src_peak / 1024)) MiB   target <= 100 MiB: $(verdict "$src_peak")
  destination peak RSS (VmHWM)  $((dst_peak / 1024)) MiB   target <= 100 MiB: $(verdict "$dst_peak")
  destination open descriptors  $dst_fds_peak at most   target <= 256: $([ "$dst_fds_peak" -le 256 ] && echo holds || echo misses)
REPORT
