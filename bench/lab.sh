# shellcheck shell=bash
# Sourced by the bench scripts: a hub and two endpoints (bench-src,
# bench-dst) on loopback, release build, config-paths covering the bench
# stores. Defines lab_start and lab_stop; writes $work/env for ferry-copy.sh.
# FERRY_BENCH_PROFILE=debug uses a debug build instead (a quick look on a
# busy machine; figures of speed want release). FERRY_BENCH_BIN=DIR uses the
# ferry and ferry-hub already built in DIR and builds nothing.
# FERRY_BENCH_DST_TOML: lines appended to the destination's endpoint.toml
# before it starts (bench/delay.sh routes its data through a delay line).
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_SHM="${BENCH_SHM:-/dev/shm/bench}" BENCH_DISK="${BENCH_DISK:-/var/tmp/bench}"
work=${FERRY_BENCH_WORK:-/var/tmp/ferry-bench-work}
export FERRY_BENCH_WORK=$work
hub_pid=
profile=${FERRY_BENCH_PROFILE:-release}

lab_start() {
  local bin
  if [ -n "${FERRY_BENCH_BIN:-}" ]; then
    bin=$(cd "$FERRY_BENCH_BIN" && pwd)
    if [ ! -x "$bin/ferry" ] || [ ! -x "$bin/ferry-hub" ]; then
      echo "lab.sh: FERRY_BENCH_BIN=$FERRY_BENCH_BIN holds no ferry and ferry-hub" >&2
      return 1
    fi
  else
    if [ "$profile" = release ]; then
      (cd "$repo" && cargo build --release --bins --quiet)
    else
      (cd "$repo" && cargo build --bins --quiet)
    fi
    target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    bin=$target/$profile
  fi
  export PATH="$bin:$PATH"
  rm -rf "$work"; mkdir -p "$work" "$BENCH_SHM" "$BENCH_DISK"
  local port key ep
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  ferry-hub init --dir "$work/hub" --url "https://127.0.0.1:$port" >/dev/null
  echo 'bench password 1' | ferry-hub user add bench --password-stdin --dir "$work/hub" >/dev/null
  ferry-hub serve --dir "$work/hub" 2>"$work/hub.log" &
  hub_pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
  for ep in src dst; do
    key=$(ferry-hub endpoint create --dir "$work/hub" --owner bench --name "bench-$ep" --json |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["setup_key"])')
    ferry -setup "$key" --name "bench-$ep" -dir "$work/$ep" >/dev/null
    printf '%s,0,1\n%s,0,1\n' "$BENCH_SHM" "$BENCH_DISK" > "$work/$ep/config-paths"
    if [ "$ep" = dst ] && [ -n "${FERRY_BENCH_DST_TOML:-}" ]; then
      printf '%s\n' "$FERRY_BENCH_DST_TOML" >> "$work/$ep/endpoint.toml"
    fi
    ferry -start -detach -dir "$work/$ep" >/dev/null
  done
  for _ in $(seq 100); do ferry -status -dir "$work/dst" | grep -q '^Hub: connected' && break; sleep 0.1; done
  cat > "$work/env" <<ENV
export PATH="$bin:\$PATH"
export FERRY_HUB="https://127.0.0.1:$port" FERRY_HUB_CA="$work/hub/ca.crt"
export FERRY_TOKEN="$(ferry-hub token create --dir "$work/hub" --user bench --expires 86400)"
ENV
  # shellcheck disable=SC1091
  . "$work/env"
}

lab_stop() {
  ferry -stop -dir "$work/src" >/dev/null 2>&1 || true
  ferry -stop -dir "$work/dst" >/dev/null 2>&1 || true
  if [ -n "$hub_pid" ]; then kill "$hub_pid" 2>/dev/null; wait "$hub_pid" 2>/dev/null; fi
  true
}
