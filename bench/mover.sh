#!/usr/bin/env bash
# The data mover's own figures, one run, tmpfs, loopback, encrypted and
# verified: MB/s for one 2 GiB file, files/s for 20,000 files of 4 KiB, and
# the bytes resent after a kill -9 of the source at about half way, as a
# fraction of the dataset. Peers are measured by bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. bench/lab.sh
trap lab_stop EXIT
lab_start
data=$BENCH_SHM/mover
rm -rf "$data"; mkdir -p "$data/A" "$data/B"
head -c $((2 * 1024 * 1024 * 1024)) /dev/urandom > "$data/A/big.bin"
python3 - "$data/B" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(200):
        with open(f"{root}/d{d}/f{f}", "wb") as fh:
            fh.write(os.urandom(4096))
PY
now() { date +%s.%N; }
task_field() { ferry task show "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
copy() { ferry transfer -r "bench-src:$1" "bench-dst:$2" "${@:3}" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])'; }

t0=$(now); id=$(copy "$data/A" "$data/A.copy"); ferry task wait "$id" >/dev/null; t1=$(now)
cmp "$data/A/big.bin" "$data/A.copy/big.bin"
a_rate=$(python3 -c "print(round(2*1024**3/($t1-$t0)/1e6))")
t0=$(now); id=$(copy "$data/B" "$data/B.copy"); ferry task wait "$id" >/dev/null; t1=$(now)
diff -r "$data/B" "$data/B.copy" >/dev/null
b_rate=$(python3 -c "print(round(20000/($t1-$t0)))")
t0=$(now); id=$(copy "$data/B" "$data/B.copy" --sync-level checksum); ferry task wait "$id" >/dev/null; t1=$(now)
b_noop=$(python3 -c "print(round(20000/($t1-$t0)))")

# kill -9 of the source once about half the bytes are in.
id=$(copy "$data/A" "$data/A.kill")
size=$((2 * 1024 * 1024 * 1024))
for _ in $(seq 600); do
  done_bytes=$(task_field "$id" bytes_transferred)
  [ "$done_bytes" -ge $((size / 2)) ] && break
  sleep 0.05
done
pid=$(cat "$work/src/ferry.lock"); kill -9 "$pid"; sleep 1
# What the destination kept: verified chunks it journaled (4 MiB each).
kept_chunks=$(cat "$work"/dst/state/*.journal 2>/dev/null | grep -c '^K ' || true)
ferry -start -detach -dir "$work/src" >/dev/null
ferry task wait "$id" >/dev/null
cmp "$data/A/big.bin" "$data/A.kill/big.bin"
total=$(task_field "$id" bytes_transferred)
kept=$((kept_chunks * 4 * 1024 * 1024))
# The resumed attempt sends only chunks not kept; what was on the wire at
# the kill but not journaled is what got sent twice.
resent=$(python3 -c "print(round(max(0, $done_bytes - $kept) / $size, 4))")

cat <<REPORT
ferry data mover, one run ($(nproc) cores, tmpfs, loopback, TLS + SHA-256 on both ends)
  A  one 2 GiB file             ${a_rate} MB/s
  B  20,000 x 4 KiB             ${b_rate} files/s
  B  re-sync at checksum level  ${b_noop} files/s (identical tree: nothing sent)
  kill -9 of the source at ~50%: ${done_bytes} bytes in at the kill, ${kept_chunks} chunks kept; resent ${resent} of the dataset (hub total ${total} B)
REPORT
rm -rf "$data"
