#!/usr/bin/env bash
# ptx_test.sh - assembles vx-serve's hand-written PTX (runtime/serve/forward_cuda.ptx) with
# ptxas -arch=sm_90 and checks that every kernel forward_cuda.c looks up is an entry, with no
# spills or stack. CTest serve_ptx_assemble (label serve); exits 77 (skipped) without ptxas.
#   ptx_test.sh PTX_FILE FORWARD_CUDA_C
set -euo pipefail
ptx=$1 src=$2
ptxas=$(command -v ptxas || true)
[ -z "$ptxas" ] && [ -x /usr/local/cuda/bin/ptxas ] && ptxas=/usr/local/cuda/bin/ptxas
if [ -z "$ptxas" ]; then
  echo "skipped: ptxas not found (PATH or /usr/local/cuda/bin)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$ptxas" -arch=sm_90 -v "$ptx" -o "$out/k.cubin" 2>"$out/log" || { cat "$out/log"; exit 1; }
fail=0
for k in $(grep -o '"vxs_[a-z0-9_]*"' "$src" | tr -d '"' | sort -u); do
  grep -q "Compiling entry function '$k'" "$out/log" || { echo "FAIL: $k is not an entry of $ptx"; fail=1; }
done
if grep -E 'bytes (stack frame|spill)' "$out/log" | grep -vq '^ *0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads'; then
  grep -E 'stack frame|spill' "$out/log"
  echo "FAIL: a kernel spills or uses a stack"
  fail=1
fi
n=$(grep -c "Compiling entry function" "$out/log")
[ $fail = 0 ] && echo "ok: $n kernels assembled for sm_90, no spills"
exit $fail
