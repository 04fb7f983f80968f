#!/usr/bin/env bash
# run_fuzz_loader.sh - runs the loader fuzz target (fuzz_loader.c) for a bounded time. Compiles
# every stdlib and example policy with VXC into WORK_DIR/trusted/ (the host sections the
# target may load) and seeds a fresh corpus with them: each artifact without overrides and
# with one override of its first parameter (to -5, 0 and 2^40).
#   usage: run_fuzz_loader.sh FUZZER VXC SOURCE_DIR WORK_DIR SECONDS [libFuzzer options...]
# Crash inputs go to WORK_DIR/artifacts/, the libFuzzer log to WORK_DIR/fuzz.log. Exits
# non-zero if the fuzzer finds a crash, leak, timeout or OOM.
set -euo pipefail
if [ $# -lt 5 ]; then
  echo "usage: $0 FUZZER VXC SOURCE_DIR WORK_DIR SECONDS [libFuzzer options...]" >&2
  exit 2
fi
fuzzer=$1 vxc=$2 src=$3 work=$4 seconds=$5
shift 5
rm -rf "$work/corpus" "$work/trusted"
mkdir -p "$work/corpus" "$work/trusted" "$work/artifacts"
# an f64 as 8 little-endian bytes, for printf
f64() { python3 -c "import struct,sys; sys.stdout.write(''.join('\\\\x%02x' % b for b in struct.pack('<d', float(sys.argv[1]))))" "$1"; }
nseeds=0
for f in "$src"/stdlib/*.vx "$src"/examples/*.vx; do
  [ -f "$f" ] || continue
  name=$(basename "$f" .vx)
  "$vxc" "$f" -o "$work/trusted/$name.vxp"
  { printf '\x00'; cat "$work/trusted/$name.vxp"; } >"$work/corpus/$name"
  for v in -5 0 1099511627776; do
    { printf '\x01\x00'; printf "$(f64 $v)"; cat "$work/trusted/$name.vxp"; } >"$work/corpus/$name.$v"
  done
  nseeds=$((nseeds + 4))
done
echo "run_fuzz_loader: $nseeds seeds, ${seconds}s, corpus $work/corpus, log $work/fuzz.log"
rc=0
VX_FUZZ_TRUSTED="$work/trusted" "$fuzzer" \
  -max_total_time="$seconds" \
  -max_len=1048576 \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -artifact_prefix="$work/artifacts/" \
  -print_final_stats=1 \
  "$@" \
  "$work/corpus" >"$work/fuzz.log" 2>&1 || rc=$?
grep -E '^INFO: Seed|INITED|DONE|^Done|^stat::|trusted host' "$work/fuzz.log" || true
echo "run_fuzz_loader: corpus now $(find "$work/corpus" -type f | wc -l) inputs"
if [ "$rc" -ne 0 ]; then
  echo "run_fuzz_loader: FAILED (status $rc); the end of $work/fuzz.log:"
  tail -n 80 "$work/fuzz.log"
  ls -l "$work/artifacts/"
fi
exit "$rc"
