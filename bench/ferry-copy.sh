#!/usr/bin/env bash
# FERRY_COPY for ../shared/bench/peers.sh: copies directory SRC into the
# fresh directory DST through the hub and the two endpoints that
# bench/run.sh started, and fails loudly unless the task SUCCEEDED. When DST
# already exists (peers.sh's no-op re-sync phase), the task re-syncs it at
# checksum level: every file is hashed on both ends and nothing identical is sent.
set -euo pipefail
src=${1:?usage: ferry-copy.sh SRC DST}
dst=${2:?usage: ferry-copy.sh SRC DST}
# shellcheck disable=SC1091
. "${FERRY_BENCH_WORK:-/var/tmp/ferry-bench-work}/env"
sync=()
[ -e "$dst" ] && sync=(--sync-level checksum)
# FERRY_COPY_ARGS: more options for the transfer (e.g. --streams 4).
read -r -a extra <<< "${FERRY_COPY_ARGS:-}"
out=$(ferry transfer -r "bench-src:$src" "bench-dst:$dst" "${sync[@]}" "${extra[@]}" --wait --json) || {
  echo "ferry-copy: transfer $src -> $dst did not succeed: $out" >&2
  exit 1
}
