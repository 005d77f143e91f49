#!/usr/bin/env bash
# Through a delay line: ferry beside rsync over ssh, scp and GridFTP when the
# path is far away and capped, in one run (bench/run.sh's companion for
# issue 18's latency targets: B >= 3x rsync over ssh, A >= 0.9x the cap).
#
# This kernel has no netem, so bench/delayline.py (user space, loopback only)
# stands between each client and its server: 25 ms each way, one shared cap
# per direction, a 4 MiB window per stream. Every tool's data crosses it:
#   ferry   the destination advertises data_address 127.0.0.2:50900 (the line),
#           its listener is on 50800; the source dials the line
#   rsync/scp  ssh to 127.0.0.2:2223 (the line) -> peers.sh's sshd on 2222
#   GridFTP a server of its own on 2813 with data ports 50600-50699; the line
#           rewrites its passive replies and the client's PORTs so every data
#           connection goes through the line too (globus-url-copy -fast -pp -p 4 -cc 4)
# Each run copies into a fresh directory and is checked (files and bytes);
# runs are interleaved across tools; a run that exceeds DELAY_TIMEOUT counts
# what had landed by then (files/s of a tool paying a round trip per file)
# and that tool is not run again on that dataset.
#
#   bench/delay.sh                                      # A = 2 GiB, B = 20,000 x 4 KiB, 3 runs
#   DELAY_A_MB=512 FERRY_BENCH_BIN=/tmp/bins bench/delay.sh   # quick, prebuilt ferry
#   DELAY_MS=0 DELAY_RATE=0 bench/delay.sh              # same path, no delay, no cap: the reference
# Env: DELAY_MS [25] one way, DELAY_RATE [1G] bits/s, DELAY_WINDOW [4M],
#      DELAY_A_MB [2048] MiB, DELAY_B_FILES [20000], DATASETS ["A B"], RUNS [3],
#      DELAY_TOOLS ["ferry rsync-ssh scp guc"; also ferry-s4: ferry with --streams 4,
#      no tuning], DELAY_TIMEOUT [120] s a run,
#      DELAY_SELFTEST [1] runs delayline.py --self-test first (the line's own ceiling),
#      FERRY_BENCH_SHARED [../shared/bench] where peers.sh and gen_datasets.py are,
#      FERRY_BENCH_BIN / FERRY_BENCH_PROFILE as bench/lab.sh reads them.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
shared=${FERRY_BENCH_SHARED:-$repo/../shared/bench}
[ -f "$shared/peers.sh" ] || { echo "bench/delay.sh: $shared/peers.sh not found; set FERRY_BENCH_SHARED to the shared bench directory" >&2; exit 1; }
DELAY_MS=${DELAY_MS:-25} DELAY_RATE=${DELAY_RATE:-1G} DELAY_WINDOW=${DELAY_WINDOW:-4M}
DELAY_A_MB=${DELAY_A_MB:-2048} DELAY_B_FILES=${DELAY_B_FILES:-20000}
DATASETS=${DATASETS:-A B} RUNS=${RUNS:-3} DELAY_TIMEOUT=${DELAY_TIMEOUT:-120}
DELAY_TOOLS=${DELAY_TOOLS:-ferry rsync-ssh scp guc}
export BENCH_SHM="${BENCH_SHM:-/dev/shm/bench}" BENCH_DISK="${BENCH_DISK:-/var/tmp/bench}"
export FERRY_BENCH_WORK=${FERRY_BENCH_WORK:-/var/tmp/ferry-delay-work}
root=$BENCH_SHM/delay
res=${RES:-$BENCH_DISK/results}/delay
SC=$BENCH_DISK/ssh/ssh_config
SSH_LINE=2223 GFTP=2813 FERRY_DATA=50800 FERRY_LINE=50900
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

bash "$shared/peers.sh" install servers

mkdir -p "$root" "$res"
: > "$res/runs.tsv"
src_of() { case "$1" in A) echo "$root/a$DELAY_A_MB/A";; B) echo "$root/b$DELAY_B_FILES/B";; esac; }
for ds in $DATASETS; do
  case "$ds" in
    A) BENCH_A_BYTES=$((DELAY_A_MB * 1024 * 1024)) python3 "$shared/gen_datasets.py" "$root/a$DELAY_A_MB" A ;;
    B) BENCH_B_FILES=$DELAY_B_FILES python3 "$shared/gen_datasets.py" "$root/b$DELAY_B_FILES" B ;;
    *) echo "bench/delay.sh: datasets are A and B, got $ds" >&2; exit 2 ;;
  esac
done

rm -f "$res/selftest.txt"
if [ "${DELAY_SELFTEST:-1}" = 1 ]; then
  python3 bench/delayline.py --self-test | tee "$res/selftest.txt" || true
fi

# GridFTP with a data port range the line forwards (peers.sh's own has none).
gdir=$BENCH_DISK/gridftp-delay
mkdir -p "$gdir"
if ! { [ -f "$gdir/pid" ] && kill -0 "$(cat "$gdir/pid")" 2>/dev/null; }; then
  (cd "$gdir" && globus-gridftp-server -aa -anonymous-user root -allow-root -p "$GFTP" \
     -control-interface 127.0.0.1 -data-interface 127.0.0.1 -port-range 50600,50699 \
     -l "$gdir/gridftp.log" -pidfile "$gdir/pid" -S)
fi

line_pid=
cleanup() {
  [ -n "$line_pid" ] && kill "$line_pid" 2>/dev/null && wait "$line_pid" 2>/dev/null
  [ -f "$gdir/pid" ] && kill "$(cat "$gdir/pid")" 2>/dev/null; rm -f "$gdir/pid"
  lab_stop
}
python3 bench/delayline.py --delay-ms "$DELAY_MS" --rate "$DELAY_RATE" --window "$DELAY_WINDOW" --ready \
  --listen "127.0.0.2:$SSH_LINE" --to 127.0.0.1:2222 \
  --ftp-listen "127.0.0.2:$GFTP" --ftp-to "127.0.0.1:$GFTP" \
  --listen 127.0.0.2:50700-50799 --to 127.0.0.1:50600-50699 \
  --listen "127.0.0.2:$FERRY_LINE" --to "127.0.0.1:$FERRY_DATA" \
  > "$res/line.out" 2> "$res/line.err" &
line_pid=$!

export FERRY_BENCH_DST_TOML="data_ports = \"$FERRY_DATA-$FERRY_DATA\"
data_address = \"127.0.0.2:$FERRY_LINE\""
# shellcheck disable=SC1091
. bench/lab.sh
trap cleanup EXIT
for _ in $(seq 100); do grep -q ready "$res/line.out" && break; sleep 0.1; done
grep -q ready "$res/line.out" || { echo "bench/delay.sh: the delay line did not start: $(cat "$res/line.err")" >&2; exit 1; }
lab_start

ssh_line="ssh -F $SC -o HostName=127.0.0.2 -o Port=$SSH_LINE"
cmd_of() { # TOOL SRC DST
  case "$1" in
    ferry)    echo "bash $repo/bench/ferry-copy.sh $2 $3" ;;
    # ferry with its stream count fixed at the start's (no tuning): what
    # adding streams from measured throughput is worth on this path.
    ferry-s4) echo "FERRY_COPY_ARGS='--streams 4' bash $repo/bench/ferry-copy.sh $2 $3" ;;
    rsync-ssh) echo "rsync -a -e '$ssh_line' benchlo:$2/ $3/" ;;
    scp)      echo "scp -q -r -F $SC -o HostName=127.0.0.2 -o Port=$SSH_LINE benchlo:$2 $3" ;;
    guc)      echo "globus-url-copy -cd -r -fast -pp -p 4 -cc 4 ftp://127.0.0.2:$GFTP$2/ file://$3/" ;;
    *) echo "bench/delay.sh: unknown tool $1 (ferry ferry-s4 rsync-ssh scp guc)" >&2; return 1 ;;
  esac
}
tally() { find "$1" -type f -printf '%s\n' 2>/dev/null | awk '{n++; t+=$1} END {printf "%d %d\n", n, t}'; }

declare -A gave_up=()
for run in $(seq "$RUNS"); do
  for ds in $DATASETS; do
    s=$(src_of "$ds") d=$root/dst/$ds
    read -r sf sb < <(tally "$s")
    for t in $DELAY_TOOLS; do
      [ -n "${gave_up[$ds-$t]:-}" ] && continue
      cmd=$(cmd_of "$t" "$s" "$d")
      rm -rf "$root/dst"; mkdir -p "$root/dst"; sync
      log "run $run $ds $t: $cmd"
      t0=$(date +%s.%N); rc=0
      timeout "$DELAY_TIMEOUT" bash -c "$cmd" > "$res/$ds-$t.out" 2>&1 || rc=$?
      t1=$(date +%s.%N)
      read -r df db < <(tally "$d")
      if [ "$rc" = 124 ]; then status=timeout
      elif [ "$rc" != 0 ]; then status="failed($rc)"
      elif [ "$df" != "$sf" ] || [ "$db" != "$sb" ]; then status=mismatch
      else status=ok; fi
      [ "$status" = ok ] || gave_up[$ds-$t]=1
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ds" "$t" "$run" "$t0" "$t1" "$df" "$db" "$sf" "$status" >> "$res/runs.tsv"
    done
  done
done
rm -rf "$root/dst"

cleanup; trap - EXIT
python3 - "$res" "$DELAY_MS" "$DELAY_RATE" "$DELAY_WINDOW" <<'PY'
import collections, statistics, sys
res, delay, rate, window = sys.argv[1:5]
t = rate.strip(); m = {"K": 1e3, "M": 1e6, "G": 1e9}.get(t[-1:].upper(), 1)
cap = float(t[:-1] if m > 1 else t) * m / 8
runs = collections.defaultdict(list)
for line in open(f"{res}/runs.tsv"):
    ds, tool, _, t0, t1, df, db, sf, status = line.rstrip("\n").split("\t")
    runs[ds, tool].append((float(t1) - float(t0), int(df), int(db), int(sf), status))
capped = f"cap {rate}bit/s = {cap / 1e6:.0f} MB/s per direction" if cap else "no cap"
print(f"\nThrough the delay line: {delay} ms each way (RTT {2 * float(delay):.0f} ms), {capped}, window {window} per stream")
print(f"{'data':<4} {'tool':<10} {'runs':>4} {'median s':>9} {'MB/s':>8} {'files/s':>9}  note")
rates = {}
for (ds, tool), rs in runs.items():
    ok = [r for r in rs if r[4] == "ok"]
    if ok:
        sec = statistics.median(r[0] for r in ok); files, b = ok[0][1], ok[0][2]; note = ""
        if len(ok) < len(rs):
            note = "; ".join(r[4] for r in rs if r[4] != "ok")
    else:
        sec, files, b = rs[-1][0], rs[-1][1], rs[-1][2]
        note = f"{rs[-1][4]}: {files} of {rs[-1][3]} files landed"
    rates[ds, tool] = (b / sec, files / sec, bool(ok))
    print(f"{ds:<4} {tool:<10} {len(ok):>4} {sec:9.2f} {b / sec / 1e6:8.1f} {files / sec:9.0f}  {note}")
print("\nratios (ferry's rate over each peer's; a peer that timed out is counted by what had landed)")
for ds in sorted({k[0] for k in rates}):
    f = rates.get((ds, "ferry"))
    if not f:
        continue
    cells = [f"{p} {f[0] / rates[ds, p][0]:.2f}x" for p in ("rsync-ssh", "scp", "guc") if (ds, p) in rates and rates[ds, p][0]]
    if ds == "A" and cap:
        cells.append(f"of the cap {f[0] / cap:.2f}")
    print(f"  {ds}: " + ", ".join(cells))
def target(name, ok):
    print(f"  {name:<40} {'holds' if ok else 'MISSED'}")
print("targets")
if ("B", "ferry") in rates and ("B", "rsync-ssh") in rates:
    target("B >= 3x rsync over ssh", rates["B", "ferry"][0] >= 3 * rates["B", "rsync-ssh"][0])
if ("A", "ferry") in rates and cap:
    target("A >= 0.9x the line's cap", rates["A", "ferry"][0] >= 0.9 * cap)
PY
echo "line: $(tail -1 "$res/line.err")"
if [ -f "$res/selftest.txt" ]; then
  echo "line's own ceiling (self-test, no delay, no cap):$(grep 'line alone' "$res/selftest.txt" | sed 's/.*streams//')"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores; a busy machine slows every tool and the line)"
