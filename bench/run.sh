#!/usr/bin/env bash
# ferry beside its peers, measured in one run on this machine.
#
# Builds ferry (release), starts a hub and two endpoints on loopback whose
# config-paths cover the bench stores, then runs ../shared/bench/peers.sh
# with ferry (through bench/ferry-copy.sh as FERRY_COPY) and the peers in
# the same call, so ratios come from one run. Arguments go to peers.sh:
#
#   bench/run.sh                                   # everything peers.sh does
#   STORES=shm DATASETS="A B" SHM_TOOLS="ferry rsync-ssh-gcm guc-best" bench/run.sh peers report
#
# Unless SHM_TOOLS, DISK_TOOLS or NOOP_TOOLS say otherwise, ferry runs beside
# the peers the targets name (the set BENCHMARKS.md reports).
# Then bench/ratios.py prints ferry's speed over each peer's and the targets.
# Then, unless BENCH_PARTS says otherwise ("peers delay memory" by default),
# bench/delay.sh measures the same tools on A and B through
# bench/delayline.py (25 ms each way, a shared cap) and bench/memory.sh
# both daemons' memory and the destination's descriptors through 1,000,000
# files: every target of issue 18 from this one command. Arguments go to
# peers.sh only.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
peers="$repo/../shared/bench/peers.sh"
[ -x "$peers" ] || [ -f "$peers" ] || { echo "bench/run.sh: $peers not found (../shared must sit beside the repo)" >&2; exit 1; }

parts=" ${BENCH_PARTS:-peers delay memory} "

if [[ $parts == *" peers "* ]]; then
  (
    # shellcheck disable=SC1091
    . "$repo/bench/lab.sh"
    trap lab_stop EXIT
    lab_start
    export FERRY_COPY="$repo/bench/ferry-copy.sh"
    export SHM_TOOLS="${SHM_TOOLS:-ferry cp guc-best guc-verify rsync-ssh rsync-ssh-gcm scp rclone-local}"
    export DISK_TOOLS="${DISK_TOOLS:-ferry cp guc-best rsync-ssh-W}"
    export NOOP_TOOLS="${NOOP_TOOLS:-ferry rsync-ssh-c guc-sync3}"
    bash "$peers" "$@"
  )
  python3 "$repo/bench/ratios.py" "${RES:-${BENCH_DISK:-/var/tmp/bench}/results}"
fi
# Each runs a lab of its own (their own work dirs), one after the other.
if [[ $parts == *" delay "* ]]; then
  FERRY_BENCH_SHARED="${FERRY_BENCH_SHARED:-$repo/../shared/bench}" bash "$repo/bench/delay.sh"
fi
if [[ $parts == *" memory "* ]]; then
  bash "$repo/bench/memory.sh"
fi
