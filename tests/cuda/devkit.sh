#!/usr/bin/env bash
# devkit.sh - everything one device call needs, built on this machine (the GPU machine has
# no LLVM, re2c or lemon, and no libmicrohttpd): the GPU programs and vx-serve, the libraries
# the GPU machine lacks, every GPU policy compiled for the benchmark shape and for the test
# models' shapes, the test models, peers.py, CPU reference outputs of vx-serve, and
# tests/cuda/device_run.sh. Then one call runs it all (docs/gpu.md, "Running the GPU tests"):
#
#   bash tests/cuda/devkit.sh [BUILD] [KIT]        (defaults build and devkit/)
#   device tool: run "bash devkit/device_run.sh" with carry ["devkit"]
#
# KIT must be ignored by git (devkit/ is listed in .git/info/exclude by this script).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$repo/build}
kit=${2:-$repo/devkit}
models=$repo/../shared/models
cd "$repo"
ninja -C "$build" vxc vx-serve vx-bench gpu_check >/dev/null
grep -qx '/devkit/' .git/info/exclude 2>/dev/null || echo '/devkit/' >>.git/info/exclude
rm -rf "$kit"
mkdir -p "$kit/models" "$kit/expected"
cp "$build/tests/cuda/gpu_check" "$build/runtime/bench/vx-bench" "$build/runtime/serve/vx-serve" "$kit/"
for lib in libcjson.so.1 libmicrohttpd.so.12; do cp "/lib/x86_64-linux-gnu/$lib" "$kit/"; done
cp "$repo/tests/cuda/device_run.sh" "$repo/tests/bench/plot_bench.py" "$repo/../shared/bench/peers.py" "$kit/"

# every policy the GPU path compiles: the benchmark shape, and the shapes gpu_check covers
vxc=$build/vxc
gpu_policies=()
for f in stdlib/*.vx examples/*.vx; do
  p=$(basename "$f" .vx)
  if "$vxc" -O2 "$f" --target sm_90 --shape D=128,G=4,P=16,kv=bf16 --shape D=64,G=1,P=16,kv=f32 \
       --shape D=128,G=8,P=16,kv=f16 -o "$kit/$p.vxp" 2>/dev/null; then
    gpu_policies+=("$p")
    # gpu_check overrides a budget param to make the policy sparse on its rows
    if grep -q 'param budget' "$f"; then echo "$p budget=256"; else echo "$p"; fi >>"$kit/gpu_policies.txt"
  fi
done
# the test models' shapes: stories260K D=8 G=2, vx-tiny-4k D=64 G=3 (f32 and bf16 caches)
model_shapes=(--shape D=8,G=2,P=16,kv=f32 --shape D=64,G=3,P=16,kv=f32 --shape D=64,G=3,P=16,kv=bf16)
for p in dense quest block_topk streaming; do
  "$vxc" -O2 "stdlib/$p.vx" --target sm_90 "${model_shapes[@]}" -o "$kit/${p}_m.vxp"
done
for m in stories260K.bin tok512.bin vx-tiny-4k.safetensors vx-tiny-4k.retrieval.jsonl; do
  [ -f "$models/$m" ] && cp "$models/$m" "$kit/models/"
done

# CPU references: the tokens and eval results the GPU runs must reproduce
cd "$kit"
serve=./vx-serve
if [ -f models/stories260K.bin ]; then
  for pol in dense quest; do
    extra=(); [ "$pol" = quest ] && extra=(--param budget=64)
    $serve generate --model models/stories260K.bin --tokenizer models/tok512.bin --policy "${pol}_m.vxp" \
      --dense-policy dense_m.vxp "${extra[@]}" -n 128 --show-tokens >"expected/gen_$pol.txt" 2>/dev/null
  done
fi
if [ -f models/vx-tiny-4k.safetensors ]; then
  $serve eval --model models/vx-tiny-4k.safetensors --policy quest_m.vxp --dense-policy dense_m.vxp \
    --param budget=256 --limit 6 --quiet >expected/eval6_quest.json
fi
du -sh "$kit"
echo "devkit: ${#gpu_policies[@]} GPU policies (${gpu_policies[*]}); run: bash devkit/device_run.sh"
