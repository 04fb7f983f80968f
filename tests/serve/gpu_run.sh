#!/usr/bin/env bash
# gpu_run.sh - one device call's tests and measurements of vx-serve's GPU decode step, run from
# the kit gpu_kit.sh builds (nothing is built here): the kernels' self-test and the GPU step
# against the CPU forward (stories260K with f32 and bf16 caches, dense and quest at a budget
# covering every token; a 2-layer Qwen3-shaped model), then vx-serve bench at Qwen3-1.7B
# shapes (32K context, batch auto; quest, quest_bf16 and block_topk at a 2048-token budget,
# and dense), then torch_decode.py at the same batch and context, then Llama-3.1-8B shapes at
# 32K (quest_bf16 and dense). Logs and JSON go to $OUT.
#   bash gpukit/gpu_run.sh        (OUT defaults to ./out)
set -u
kit=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$kit:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
cd "$kit"
s=./vx-serve
step() { # name timeout command...: runs it, keeps stdout and stderr, says how it ended
  local name=$1 t=$2; shift 2
  local t0=$(date +%s)
  timeout "$t" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
  local rc=$?
  echo "== $name: exit $rc, $(( $(date +%s) - t0 )) s: $*" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.out"; tail -n 6 "$OUT/$name.err"
}
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv; } >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
m=models/stories260K.bin
step check_stories_f32 20 $s bench --device cuda --model $m --check 64 --kv-dtype f32 --dense-policy dense.vxp
step check_stories_bf16_quest 20 $s bench --device cuda --model $m --check 64 --kv-dtype bf16 \
  --dense-policy dense.vxp --policy quest.vxp --param budget=1024
step check_qwen3_2layers 25 $s bench --device cuda --model synthetic:qwen3-1.7b:layers=2:ctx=4096 --check 24 \
  --kv-dtype bf16 --dense-policy dense.vxp
step bench_qwen3_32k 90 $s bench --device cuda --model synthetic:qwen3-1.7b --context 32768 --batch auto \
  --steps 48 --dense-policy dense.vxp --policy quest.vxp --policy quest_bf16.vxp --policy block_topk.vxp \
  --param budget=2048
B=$(python3 -c "import json,sys
for l in open('$OUT/bench_qwen3_32k.out'):
    if l.startswith('{'): print(json.loads(l)['batch'])" 2>/dev/null)
step torch_qwen3_32k 60 python3 torch_decode.py --model qwen3-1.7b --context 32768 --batch "${B:-32}" --steps 32
step bench_llama8b_32k 100 $s bench --device cuda --model synthetic:llama-3.1-8b --context 32768 --batch auto \
  --steps 32 --dense-policy dense.vxp --policy quest_bf16.vxp --param budget=2048
exit 0
