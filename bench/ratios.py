#!/usr/bin/env python3
"""ferry beside each peer from one peers.sh run, and the targets of issue 18
(speed with integrity; the delay line's and memory's are bench/delay.sh's
and bench/memory.sh's, which bench/run.sh runs after this).

    bench/ratios.py RESDIR   -> markdown on stdout and in RESDIR/ratios.md

A ratio is ferry's speed over the peer's (their median time over ferry's):
above 1 ferry is faster. Only runs whose copy checked out (same file count
and bytes as the source) and that exited 0 count.
"""
import glob
import json
import os
import sys

res = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/bench/results"
runs = {}  # (mode, store, ds, tool) -> (median s, files, bytes)
for path in glob.glob(os.path.join(res, "*.json")):
    base = os.path.basename(path)[:-5]
    if base.startswith("limit-"):
        continue
    mode, store, ds, tool = base.split("-", 3)
    try:
        result = json.load(open(path))["results"][0]
        check = open(os.path.join(res, base + ".verify")).read().split()
    except (OSError, ValueError, KeyError, IndexError):
        continue
    codes = set()
    if os.path.exists(os.path.join(res, base + ".time")):
        for line in open(os.path.join(res, base + ".time")):
            parts = line.split()
            if len(parts) == 5 and parts[0].isdigit():
                codes.add(parts[4])
    if check[2] != "ok" or codes - {"0"}:
        continue
    runs[(mode, store, ds, tool)] = (result["median"], int(check[0]), int(float(check[1])))


def rate(key):
    median, files, nbytes = runs[key]
    ds = key[2]
    return (files / median, "files/s") if ds == "B" else (nbytes / median / 1e6, "MB/s")


out = ["## ferry against each peer (same run; ratio = ferry's speed / the peer's)", ""]
out += ["| mode | store | set | ferry | peer | peer's speed | ratio |", "|---|---|---|---:|---|---:|---:|"]
for (mode, store, ds, tool) in sorted(runs):
    if tool != "ferry":
        continue
    ferry_time = runs[(mode, store, ds, "ferry")][0]
    ferry_rate, unit = rate((mode, store, ds, "ferry"))
    peers = sorted(t for (m, st, d, t) in runs if (m, st, d) == (mode, store, ds) and t != "ferry")
    for peer in peers:
        peer_rate, _ = rate((mode, store, ds, peer))
        ratio = runs[(mode, store, ds, peer)][0] / ferry_time
        out.append(f"| {mode} | {store} | {ds} | {ferry_rate:,.0f} {unit} | {peer} | {peer_rate:,.0f} | {ratio:.2f}x |")

# (mode, store, set, what, test) with test(ferry rate, ratio to a peer) -> (verdict, shown)
def speed(mode, store, ds, floor):
    key = (mode, store, ds, "ferry")
    if key not in runs:
        return "not run", "-"
    value, unit = rate(key)
    return ("holds" if value >= floor else "misses"), f"{value:,.0f} {unit}"


def versus(mode, store, ds, peer, floor):
    if (mode, store, ds, "ferry") not in runs or (mode, store, ds, peer) not in runs:
        return "not run", "-"
    ratio = runs[(mode, store, ds, peer)][0] / runs[(mode, store, ds, "ferry")][0]
    return ("holds" if ratio >= floor else "misses"), f"{ratio:.2f}x"


targets = [
    ("A >= 2.0x GridFTP with verify", versus("copy", "shm", "A", "guc-verify", 2.0)),
    ("A >= 1.8x rsync over ssh", versus("copy", "shm", "A", "rsync-ssh", 1.8)),
    ("A >= 1.3x rsync over ssh (aes128-gcm)", versus("copy", "shm", "A", "rsync-ssh-gcm", 1.3)),
    ("B >= 2.0x rsync over ssh", versus("copy", "shm", "B", "rsync-ssh", 2.0)),
    ("B >= 4x GridFTP best", versus("copy", "shm", "B", "guc-best", 4.0)),
    ("C >= 1.6x rsync over ssh (aes128-gcm)", versus("copy", "shm", "C", "rsync-ssh-gcm", 1.6)),
    ("C >= 1.2x GridFTP best", versus("copy", "shm", "C", "guc-best", 1.2)),
    ("A checksum re-sync >= 1.0x rsync -c over ssh", versus("noop", "shm", "A", "rsync-ssh-c", 1.0)),
    ("B checksum re-sync >= 1.0x rsync -c over ssh", versus("noop", "shm", "B", "rsync-ssh-c", 1.0)),
    ("C checksum re-sync >= 1.0x rsync -c over ssh", versus("noop", "shm", "C", "rsync-ssh-c", 1.0)),
    ("B on disk, durable, >= rsync's files/s", versus("copy", "disk", "B", "rsync-ssh-W", 1.0)),
]
for what, (verdict, shown) in targets:
    out.append(f"| {what} | {shown} | {verdict} |")
text = "\n".join(out) + "\n"
open(os.path.join(res, "ratios.md"), "w").write(text)
print(text)
