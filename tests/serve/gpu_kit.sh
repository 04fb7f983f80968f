#!/usr/bin/env bash
# gpu_kit.sh - builds the kit one device call needs to test and measure vx-serve's GPU decode
# step (docs/serving.md, "The GPU decode step"): vx-serve and the two libraries the GPU machine
# lacks, the policies at the shapes the run uses (compiled here: the GPU machine has no LLVM),
# stories260K, tests/bench/torch_decode.py and tests/serve/gpu_run.sh. Then the device tool's
# run: "bash gpukit/gpu_run.sh" with carry ["gpukit"].
#   bash tests/serve/gpu_kit.sh [BUILD] [KIT]        (defaults build and gpukit/)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$repo/build}
kit=${2:-$repo/gpukit}
models=$repo/../shared/models
cd "$repo"
ninja -C "$build" vxc vx-serve >/dev/null
grep -qx '/gpukit/' .git/info/exclude 2>/dev/null || echo '/gpukit/' >>.git/info/exclude
rm -rf "$kit"
mkdir -p "$kit/models"
cp "$build/runtime/serve/vx-serve" "$kit/"
strip "$kit/vx-serve" 2>/dev/null || true
for lib in libcjson.so.1 libmicrohttpd.so.12; do cp "/lib/x86_64-linux-gnu/$lib" "$kit/"; done
cp tests/serve/gpu_run.sh tests/bench/torch_decode.py "$kit/"
vxc=$build/vxc
# stories260K: D=8 G=2 (f32 and bf16 caches); Qwen3-1.7B shapes: D=128 G=2 bf16;
# Llama-3.1-8B shapes: D=128 G=4 bf16
for p in dense quest block_topk; do
  "$vxc" -O2 "stdlib/$p.vx" --target sm_90 --shape D=8,G=2,P=16,kv=f32 --shape D=8,G=2,P=16,kv=bf16 \
    --shape D=128,G=2,P=16,kv=bf16 --shape D=128,G=4,P=16,kv=bf16 -o "$kit/$p.vxp"
done
"$vxc" -O2 examples/quest_bf16.vx --target sm_90 --shape D=128,G=2,P=16,kv=bf16 \
  --shape D=128,G=4,P=16,kv=bf16 -o "$kit/quest_bf16.vxp"
for m in stories260K.bin tok512.bin; do
  [ -f "$models/$m" ] && cp "$models/$m" "$kit/models/"
done
du -sh "$kit"
echo "gpukit ready: run 'bash gpukit/gpu_run.sh' on the GPU machine (carry gpukit)"
