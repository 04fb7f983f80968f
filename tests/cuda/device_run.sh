#!/usr/bin/env bash
# device_run.sh - one device call over a kit made by tests/cuda/devkit.sh (run from the
# repository root on the GPU machine: bash devkit/device_run.sh). In order, each bounded by a
# timeout so that one hang cannot eat the session: gpu_check on every GPU policy at three
# shapes and on the test models' shapes; compute-sanitizer memcheck on quest; vx-serve with
# its attention on the GPU (per-row and batched backends) against the CPU's tokens and eval
# results; the 60 retrieval fixtures on the GPU; peers.py, then vx-bench over dense, quest,
# block_topk and streaming with the peers side by side. JSON and logs go to $OUT (the device
# tool brings them back); make the plot here afterwards with plot_bench.py.
#   VX_QUICK=1: the correctness half only.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")"
export LD_LIBRARY_PATH=$PWD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
out=${OUT:-$PWD/out}
mkdir -p "$out"
t0=$SECONDS
step() { echo "== [$((SECONDS - t0)) s] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
date -u

step "gpu_check: every GPU policy (rows up to 8192 tokens)"
while read -r p arg; do
  printf '%-24s ' "$p"
  timeout 60 ./gpu_check "$p.vxp" --max-len 8192 $arg 2>&1 | tail -1
done <gpu_policies.txt
step "gpu_check: the test models' shapes"
for p in dense quest block_topk streaming; do
  printf '%-24s ' "${p}_m"
  arg=""; [ "$p" = quest ] || [ "$p" = block_topk ] && arg=budget=64
  timeout 60 ./gpu_check "${p}_m.vxp" --max-len 4096 $arg 2>&1 | tail -1
done
if command -v compute-sanitizer >/dev/null; then
  step "compute-sanitizer memcheck: quest"
  timeout 120 compute-sanitizer --tool memcheck ./gpu_check quest.vxp --max-len 2048 --steps 2 budget=64 2>&1 | tail -2
fi

step "vx-serve on the GPU against the CPU"
serve=./vx-serve
for attn in rows batch; do
  for pol in dense quest; do
    extra=(); [ "$pol" = quest ] && extra=(--param budget=64)
    timeout 60 $serve generate --device cuda --attn $attn --model models/stories260K.bin \
      --tokenizer models/tok512.bin --policy "${pol}_m.vxp" --dense-policy dense_m.vxp "${extra[@]}" \
      -n 128 --show-tokens >"$out/gen_${pol}_$attn.txt" 2>"$out/gen_${pol}_$attn.err"
    if cmp -s <(grep '^tokens:' "expected/gen_$pol.txt") <(grep '^tokens:' "$out/gen_${pol}_$attn.txt"); then
      echo "generate $pol --attn $attn: the CPU's 128 tokens ($(grep -o 'decode: .*' "$out/gen_${pol}_$attn.err"))"
    else
      echo "generate $pol --attn $attn: DIFFERENT tokens"; tail -2 "$out/gen_${pol}_$attn.err"
    fi
  done
  timeout 120 $serve eval --device cuda --attn $attn --model models/vx-tiny-4k.safetensors \
    --policy quest_m.vxp --dense-policy dense_m.vxp --param budget=256 --limit 6 --quiet \
    >"$out/eval6_$attn.json" 2>"$out/eval6_$attn.err"
  python3 - "$out/eval6_$attn.json" <<'PY'
import json, sys
a = json.load(open("expected/eval6_quest.json")); b = json.load(open(sys.argv[1]))
ra, rb = a["runs"][0], b["runs"][0]
same = (a["dense"] == b["dense"] and ra["accuracy"] == rb["accuracy"]
        and abs(ra["attention"]["mean_rel_err"] - rb["attention"]["mean_rel_err"]) < 1e-4)
print(sys.argv[1].split("/")[-1], "matches the CPU" if same else "DIFFERS from the CPU",
      "dense", b["dense"]["correct"], "quest", rb["accuracy"]["correct"], "of", rb["accuracy"]["prompts"])
PY
done
step "vx-serve eval: the 60 fixtures on the GPU (batched)"
timeout 300 $serve eval --device cuda --attn batch --batch 8 --model models/vx-tiny-4k.safetensors \
  --policy quest_m.vxp --dense-policy dense_m.vxp --param budget=256 --quiet >"$out/eval60.json" 2>"$out/eval60.err"
python3 -c "import json; b=json.load(open('$out/eval60.json')); r=b['runs'][0]; print('dense', b['dense']['correct'], 'quest', r['accuracy']['correct'], 'of 60 in', round(r['wall_s'], 1), 's')"

[ "${VX_QUICK:-0}" = 1 ] && { step done; exit 0; }
step "peers.py"
OUT=$out timeout 600 python3 peers.py >"$out/peers.txt" 2>&1; tail -3 "$out/peers.txt"
step "vx-bench"
timeout 900 ./vx-bench --B 1,8,32,64 --N 4096,32768,131072 --budget 2048 --peers "$out/peers.json" \
  --json "$out/vx-bench.json" dense.vxp quest.vxp block_topk.vxp streaming.vxp 2>"$out/vx-bench.err" |
  tee "$out/vx-bench.txt" | grep -v '^{'
step done
