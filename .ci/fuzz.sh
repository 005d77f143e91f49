#!/usr/bin/env bash
# Fuzzing: builds the cargo-fuzz targets in fuzz/ on the stable toolchain
# and runs each for FUZZ_SECONDS (default 20) from its seed corpus; fails
# if any target crashes, fails an assertion, hangs or is killed. One
# summary line per target. See fuzz/README.md.
#
#   bash .ci/fuzz.sh                     # the core targets, 20 s each
#   FUZZ_ALL=1 bash .ci/fuzz.sh          # also those that need ferry-mover
#   FUZZ_SECONDS=300 FUZZ_ALL=1 bash .ci/fuzz.sh capability   # some, longer
#
# Cold, on 2 cores shared with other work: 6 min 44 s in all (65 s to
# install cargo-fuzz, 2 min 48 s to build the core targets, 8 x 21 s to
# run them). FUZZ_ALL=1 builds ferry-mover's TLS, HTTP and certificate
# crates too: ~8.5 min to build, ~13 min in all.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
# Sanitizer: none by default, which needs nothing unstable. `address` also
# works on stable (via RUSTC_BOOTSTRAP=1, set below) but builds slower.
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
BUILD_FLAGS=(--fuzz-dir fuzz --sanitizer "$FUZZ_SANITIZER" --debug-assertions)
if [ "${FUZZ_ALL:-0}" != 1 ]; then
  BUILD_FLAGS+=(--no-default-features)
fi
if [ "$FUZZ_SANITIZER" != none ]; then
  # -Zsanitizer is unstable; the stable toolchain ships the runtimes.
  export RUSTC_BOOTSTRAP=1
fi
started=$(date +%s)
elapsed() { echo "$(($(date +%s) - started))s"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== cargo install cargo-fuzz"
  # A build tool, not fuzzed code: optimise it less to install it faster.
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 cargo install cargo-fuzz --locked --quiet
fi
echo "== $(cargo fuzz --version), $(rustc --version), sanitizer $FUZZ_SANITIZER ($(elapsed))"

echo "== cargo fuzz build ${BUILD_FLAGS[*]}"
cargo fuzz build "${BUILD_FLAGS[@]}"
echo "== built ($(elapsed))"

# The binaries just built are run directly, so that a source edited
# meanwhile cannot trigger a rebuild halfway through.
# Where cargo put them: fuzz/target, or CARGO_TARGET_DIR when it is set.
target_dir=$(cargo metadata --manifest-path fuzz/Cargo.toml --no-deps --format-version 1 |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin_dir="$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"
if [ $# -gt 0 ]; then
  targets=("$@")
else
  # Every [[bin]] whose required features this build has.
  mapfile -t targets < <(cargo metadata --manifest-path fuzz/Cargo.toml --no-deps \
    --format-version 1 | python3 -c '
import json, sys
all_features = sys.argv[1] == "1"
for t in json.load(sys.stdin)["packages"][0]["targets"]:
    if "bin" in t["kind"] and (all_features or not t.get("required-features")):
        print(t["name"])' "${FUZZ_ALL:-0}")
fi

logs=$(mktemp -d)
failed=()
for target in "${targets[@]}"; do
  # New inputs go to a scratch corpus: the committed seeds stay as they are.
  work="$logs/corpus-$target"
  mkdir -p "$work" "fuzz/artifacts/$target"
  log="$logs/$target.log"
  status=ok
  if ! timeout --kill-after=10 $((FUZZ_SECONDS + 60)) \
    "$bin_dir/$target" -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$target/" "$work" "fuzz/corpus/$target" >"$log" 2>&1; then
    status=FAILED
    failed+=("$target")
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1 || true)
  cov=$( (grep -o 'cov: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)
  corpus=$(find "$work" -type f | wc -l)
  printf 'fuzz %-15s %-6s %9s runs %7s exec/s  cov %5s  new inputs %5s\n' \
    "$target" "$status" "${runs:-?}" "${speed:-?}" "${cov:-?}" "$corpus"
  if [ "$status" != ok ]; then
    echo "---- $target: last lines of its log"
    (grep -v '^#[0-9]' "$log" || true) | tail -40
    find "fuzz/artifacts/$target" -type f -newer "$work" | sed 's/^/artifact: /' 
    echo "----"
  fi
done
rm -rf "$logs"

echo "== fuzzing took $(elapsed) in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets FAILED: ${failed[*]}"
  echo "reproduce: $bin_dir/TARGET fuzz/artifacts/TARGET/FILE"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed, ${FUZZ_SECONDS}s each"
