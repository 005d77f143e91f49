#!/usr/bin/env bash
# ferry on one machine, end to end: a hub and two endpoints on loopback,
# set up with one-time keys, connected over mutual TLS; a real dataset
# moved from one to the other as a hub task (parallel streams, every file
# checksummed), then verified; file operations through the hub. Every
# command is printed, so you can repeat them by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

run() { printf '\n$ %s\n' "$*"; "$@"; }

cargo build --workspace --bins --quiet
# Where cargo put them: honours CARGO_TARGET_DIR and .cargo/config.
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export PATH="$target/debug:$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-demo.XXXXXX")
hub_pid=
cleanup() {
  ferry -stop -dir "$work/ep-a" >/dev/null 2>&1 || true
  ferry -stop -dir "$work/ep-b" >/dev/null 2>&1 || true
  [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export HOME="$work/home"   # a throwaway home, so nothing of yours is touched
mkdir -p "$HOME/data/run1" "$HOME/data/run2/logs"
echo "results of run 1" > "$HOME/data/run1/out.txt"
head -c 200000000 /dev/urandom > "$HOME/data/run2/large.bin"   # 200 MB
for i in $(seq 1 500); do echo "log line $i" > "$HOME/data/run2/logs/$i.log"; done

echo "== The hub"
run ferry-hub init --dir "$work/hub" --url "https://127.0.0.1:$port"
echo 'demo password 1' | run ferry-hub user add alice --password-stdin --dir "$work/hub"
ferry-hub serve --dir "$work/hub" 2>"$work/hub.log" &
hub_pid=$!
echo "\$ ferry-hub serve --dir $work/hub &   (log: $work/hub.log)"
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

echo
echo "== Two endpoints, set up with one-time keys (no questions asked)"
for ep in a b; do
  key=$(ferry-hub endpoint create --dir "$work/hub" --owner alice --name "ep-$ep" --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["setup_key"])')
  echo "\$ ferry-hub endpoint create --dir $work/hub --owner alice --name ep-$ep   -> key ${key:0:24}..."
  run ferry -setup "$key" --name "ep-$ep" -dir "$work/ep-$ep"
  run ferry -start -detach -dir "$work/ep-$ep"
done
for _ in $(seq 100); do ferry -status -dir "$work/ep-b" | grep -q '^Hub: connected' && break; sleep 0.1; done
run ferry -status -dir "$work/ep-a"

echo
echo "== As alice, through the hub's REST API"
export FERRY_HUB="https://127.0.0.1:$port" FERRY_HUB_CA="$work/hub/ca.crt"
FERRY_TOKEN=$(ferry-hub token create --dir "$work/hub" --user alice)
export FERRY_TOKEN
echo "\$ export FERRY_HUB=$FERRY_HUB FERRY_HUB_CA=$FERRY_HUB_CA FERRY_TOKEN=\$(ferry-hub token create --dir $work/hub --user alice)"
run ferry endpoint search
run ferry ls -l ep-a:/~/data/run1

echo
echo "== A transfer: ep-a's ~/data into ep-b's ~/copy, as a hub task"
run ferry transfer -r ep-a:/~/data ep-b:/~/copy --label demo --wait
task=$(ferry task list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["task_id"])')
run ferry task show "$task"
run ferry task events "$task"
run diff -r "$HOME/data" "$HOME/copy" && echo "verified: the copy is identical"
echo
echo "== Again at checksum level: nothing needs sending"
run ferry transfer -r --sync-level checksum ep-a:/~/data ep-b:/~/copy --wait
run ferry mkdir ep-b:/~/incoming
run ferry rename ep-b:/~/incoming /~/inbox
run ferry ls ep-b:/~/
run ferry ls ep-a:/etc || echo "(refused: /etc is outside ep-a's config-paths)"
run ferry rm -r ep-b:/~/inbox


echo
echo "== The web app: the same, from a browser"
echo "Hub:      https://127.0.0.1:$port/   (its CA certificate: $work/hub/ca.crt, or accept the warning)"
echo "Sign in:  alice / demo password 1"
echo "Then: File Manager, Collection ep-a and ep-b, check entries, Start; watch it on Activity."
if [ -t 0 ]; then
  read -r -p "The hub and both endpoints keep running until you press Enter. " _
else
  echo "(stdin is not a terminal, so everything stops now; run scripts/demo.sh in a terminal to keep it up)"
fi

echo
run ferry -stop -dir "$work/ep-a"
run ferry -stop -dir "$work/ep-b"
echo
echo "Done."
