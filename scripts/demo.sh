#!/usr/bin/env bash
# ferry on one machine, end to end, as far as it is built today.
#
# Today: the endpoint daemon's life cycle and its path policy. The hub,
# `ferry -setup` against it and transfers are not built yet, so this script
# writes the endpoint files `ferry -setup` would write, pointing at a hub
# address nothing serves, and says so. Every command it runs is printed,
# so you can repeat them by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

run() { printf '\n$ %s\n' "$*"; "$@"; }

cargo build --workspace --bins --quiet
FERRY="$PWD/target/debug/ferry"
export PATH="$PWD/target/debug:$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-demo.XXXXXX")
export FERRY_DIR="$work/endpoint"
trap '"$FERRY" -stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mkdir -p "$work/data/run1" "$work/data/private"
echo "results" > "$work/data/run1/out.txt"

echo "== A fake registration (no hub yet): the files ferry -setup would write, in $FERRY_DIR"
mkdir -m 700 "$FERRY_DIR"
cat > "$FERRY_DIR/endpoint.toml" <<TOML
id = "00000000-0000-4000-8000-000000000001"
name = "demo"
hub_url = "https://127.0.0.1:9"
TOML
for f in endpoint.key endpoint.crt hub-ca.crt; do
  printf 'placeholder\n' > "$FERRY_DIR/$f"; chmod 600 "$FERRY_DIR/$f"
done
cat > "$FERRY_DIR/config-paths" <<CP
# Transfers may read and write the demo's data; its private dir is read-only.
$work/data,0,1
$work/data/private,0,0
CP
run cat "$FERRY_DIR/config-paths"

echo
echo "== The endpoint daemon"
run ferry -start -detach
run ferry -start -detach || echo "(refused, as it should be: one daemon per config dir)"
sleep 1
run ferry -status || true
run ferry -pause
run ferry -status || true
run ferry -unpause

echo
echo "== The path policy"
run ferry paths check "$work/data/run1/out.txt"
run ferry paths check "$work/data/private/notes" || true
run ferry paths check /etc/passwd || true
run ferry paths check "$FERRY_DIR/endpoint.key" || true

echo
run ferry -stop
run ferry -status || echo "(exit $?: not running)"
echo
echo "Done. Not built yet: the hub, ferry -setup against it, and transfers."
