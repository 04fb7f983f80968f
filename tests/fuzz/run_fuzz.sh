#!/usr/bin/env bash
# run_fuzz.sh - runs the front-end fuzz target for a bounded time over a fresh corpus seeded
# with every .vx file in the tree (stdlib, examples, compile-fail and golden tests).
#   usage: run_fuzz.sh FUZZER SOURCE_DIR WORK_DIR SECONDS [libFuzzer options...]
# The corpus lives in WORK_DIR/corpus (recreated each run; never committed); crash inputs go
# to WORK_DIR/artifacts/, the full libFuzzer log to WORK_DIR/fuzz.log. Exits non-zero if the
# fuzzer finds a crash, leak, timeout or OOM.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 FUZZER SOURCE_DIR WORK_DIR SECONDS [libFuzzer options...]" >&2
  exit 2
fi
fuzzer=$1 src=$2 work=$3 seconds=$4
shift 4
rm -rf "$work/corpus"
mkdir -p "$work/corpus" "$work/artifacts"
nseeds=0
for dir in stdlib examples tests/compile_fail tests/golden; do
  for f in "$src/$dir"/*.vx; do
    [ -f "$f" ] || continue
    cp "$f" "$work/corpus/$(echo "$dir" | tr / _)_$(basename "$f")"
    nseeds=$((nseeds + 1))
  done
done
echo "run_fuzz: $nseeds seed files, ${seconds}s, corpus $work/corpus, log $work/fuzz.log"
rc=0
"$fuzzer" \
  -max_total_time="$seconds" \
  -max_len=65536 \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -dict="$src/tests/fuzz/vx.dict" \
  -artifact_prefix="$work/artifacts/" \
  -print_final_stats=1 \
  "$@" \
  "$work/corpus" >"$work/fuzz.log" 2>&1 || rc=$?
# The full log has a line per new input; show the start, the end and the statistics.
grep -E '^INFO: Seed|INITED|DONE|^Done|^stat::' "$work/fuzz.log" || true
echo "run_fuzz: corpus now $(find "$work/corpus" -type f | wc -l) inputs"
if [ "$rc" -ne 0 ]; then
  echo "run_fuzz: FAILED (status $rc); the end of $work/fuzz.log:"
  tail -n 80 "$work/fuzz.log"
  ls -l "$work/artifacts/"
fi
exit "$rc"
