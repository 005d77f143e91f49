#!/usr/bin/env bash
# A seeded kill -9 soak (issue 10): a hub and two endpoints on loopback;
# RUNS times, a mixed dataset is sent as a task while the source, the
# destination or the hub is killed with SIGKILL at a random moment and
# started again; every copy is checked byte for byte. The same SEED repeats
# the same datasets, victims and moments.
#
#   bash bench/soak.sh SEED RUNS      e.g. bash bench/soak.sh 1 50
#
# Debug build (no release build needed); needs python3.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bash bench/soak.sh SEED RUNS" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --workspace --bins --quiet
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec python3 bench/soak.py "$target/debug" "$1" "$2"
