#!/usr/bin/env bash
# The scheduler's task claims on PostgreSQL at growing queue depths, one
# run, loopback: a throwaway PostgreSQL (.ci/postgres.sh, stopped at the
# end), then the claim_scale example (crates/ferry-hub/src/bench.rs) fills
# the queue to each of DEPTHS ACTIVE tasks (default 1000,10000,100000) and
# at each depth measures, with 1 and with INSTANCES (default 3) hub
# instances claiming at once: the take-up of the whole queue (claims/s),
# the sweeps' times (one claim_changes each, p50/p99) over STEADY_SECS
# (default 20), and the time from insert to claim of RATE (default 20) new
# tasks a second. Then a short second pass at the deepest queue with
# auto_explain on the server logs the plans (EXPLAIN ANALYZE) of the
# statements the sweep runs; they are left in $FERRY_HUB_CLAIMS_WORK.
#   bench/hub-claims.sh                                   # about 10 minutes
#   DEPTHS=1000,10000 STEADY_SECS=5 bench/hub-claims.sh   # a quick look
#   FERRY_BENCH_PROFILE=debug bench/hub-claims.sh         # without a release build
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
depths=${DEPTHS:-1000,10000,100000} instances=${INSTANCES:-3}
steady=${STEADY_SECS:-20} rate=${RATE:-20}
work=${FERRY_HUB_CLAIMS_WORK:-/var/tmp/ferry-hub-claims-work}
profile=${FERRY_BENCH_PROFILE:-release}
pg_dir=

stop_pg() {
  if [ -n "$pg_dir" ]; then bash .ci/postgres.sh stop "$pg_dir"; fi
  true
}
trap stop_pg EXIT

# FERRY_BENCH_BIN=DIR: the binaries already built there (DIR/examples/claim_scale); nothing is built.
if [ -n "${FERRY_BENCH_BIN:-}" ]; then
  bin=$(cd "$FERRY_BENCH_BIN" && pwd)
else
  flags=(--quiet); [ "$profile" = release ] && flags+=(--release)
  cargo build "${flags[@]}" -p ferry-hub --example claim_scale
  bin=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/$profile
fi
[ -x "$bin/examples/claim_scale" ] || { echo "hub-claims: no $bin/examples/claim_scale" >&2; exit 1; }
rm -rf "$work"; mkdir -p "$work"

eval "$(bash .ci/postgres.sh start)"
pg_dir=$FERRY_CI_PG_DIR
export FERRY_BENCH_DATABASE="$FERRY_TEST_POSTGRES?sslmode=require&sslrootcert=$FERRY_TEST_POSTGRES_CA"
pg_port=${FERRY_TEST_POSTGRES##*:}; pg_port=${pg_port%%/*}
# As the server's superuser over its Unix socket, as .ci/postgres.sh does.
superuser() {
  local psql
  psql=$(printf "%s\n" /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_dir" -p "$pg_port" -U postgres -d ferry "$@"
  else
    "$psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_dir" -p "$pg_port" -U postgres -d ferry "$@"
  fi
}

echo "hub-claims: load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$bin/examples/claim_scale" --depths "$depths" --instances "1,$instances" \
  --steady-secs "$steady" --rate "$rate" | tee "$work/report.txt"

# The plans, from the server itself: auto_explain logs every statement's
# plan with its actual rows and times, for new sessions after the reload.
# Not during the measured run above: instrumenting every row costs time.
deepest=$(tr ',' '\n' <<<"$depths" | sort -n | tail -n 1)
# LOAD first: ALTER SYSTEM knows auto_explain's settings once it is loaded.
superuser -c "LOAD 'auto_explain'" \
  -c "ALTER SYSTEM SET session_preload_libraries = 'auto_explain'" \
  -c "ALTER SYSTEM SET auto_explain.log_min_duration = 0" \
  -c "ALTER SYSTEM SET auto_explain.log_analyze = on" \
  -c "ALTER SYSTEM SET auto_explain.log_buffers = on" \
  -c "SELECT pg_reload_conf()" >/dev/null
log_start=$(stat -c %s "$pg_dir/server.log")
"$bin/examples/claim_scale" --depths "$deepest" --instances 1 --steady-secs 10 --rate 5 >/dev/null
superuser -c "ALTER SYSTEM RESET ALL" -c "SELECT pg_reload_conf()" >/dev/null
tail -c +"$((log_start + 1))" "$pg_dir/server.log" >"$work/plans.log"
# The slowest logged plan of each statement a sweep runs.
python3 - "$work/plans.log" <<'EOF' | tee "$work/plans.txt"
import re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
entries = re.split(r"\n(?=\d{4}-\d\d-\d\d )", text)
wanted = {
    "claim_changes: the claim of free tasks": "WITH free AS",
    "claim_changes: the take-over of dead instances": "DELETE FROM hub_instances WHERE id IN",
    "claim_changes: the links held elsewhere": "SELECT l.endpoint_id FROM control_links",
    "claim_changes: the read of what changed": "WHERE t.changed >=",
    "claim_changes: the whole picture": "WHERE t.status = 'ACTIVE'",
}
for name, needle in wanted.items():
    found = [e for e in entries if "plan:" in e and needle in e]
    def ms(e):
        m = re.search(r"duration: ([0-9.]+) ms", e)
        return float(m.group(1)) if m else 0.0
    print(f"== {name}: {len(found)} logged at {sys.argv[1]}")
    if found:
        worst = max(found, key=ms)
        print(worst.strip())
EOF
