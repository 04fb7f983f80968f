#!/usr/bin/env bash
# vx_bench_test.sh - vx-bench end to end: compiles quest, dense and streaming with vxc, runs
# them through vx-bench and checks its table and JSON. On the CPU (CI) at a small shape; with
# --device cuda at the Llama-3.1-8B shape (exit 77 without a GPU).
#   usage: vx_bench_test.sh VXC VX_BENCH STDLIB WORK cpu|cuda
set -u
vxc=$1 bench=$2 stdlib=$3 work=$4 device=$5
mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
if [ "$device" = cpu ]; then
  shape=(--shape Hkv=2,G=2,D=64,P=16,kv=f32) lists=(--B 1,2 --N 256,640 --budget 64 --iters 2)
else
  shape=() lists=(--B 1,8 --N 4096,32768 --iters 20)
fi
for p in quest dense streaming; do
  "$vxc" "$stdlib/$p.vx" --target sm_90 --shape D=128,G=4,P=16,kv=bf16 -o "$work/$p.vxp" || fail "vxc $p"
done
"$bench" --device "$device" "${shape[@]}" "${lists[@]}" --json "$work/bench.json" \
  "$work/quest.vxp" plain="$work/dense.vxp" "$work/streaming.vxp" >"$work/out.txt" 2>"$work/err.txt"
rc=$?
[ $rc -eq 77 ] && { cat "$work/err.txt"; exit 77; }
[ $rc -eq 0 ] || { cat "$work/err.txt"; fail "vx-bench exited $rc"; }
cat "$work/out.txt"
# 3 policies x 2 B x 2 N rows; the label given (plain=) and the policies' own names
[ "$(grep -c ' B=' "$work/out.txt")" -eq 12 ] || fail "not 12 table rows"
grep -q '^plain ' "$work/out.txt" && grep -q '^quest ' "$work/out.txt" && grep -q '^streaming ' "$work/out.txt" ||
  fail "labels"
[ "$(grep -c '^\[[0-9]*/12\]' "$work/err.txt")" -eq 12 ] || fail "no progress line per configuration"
json=$(tail -1 "$work/out.txt")
cmp -s <(echo "$json") "$work/bench.json" || fail "--json differs from the printed JSON"
[ "$(echo "$json" | grep -o '"policy":' | wc -l)" -eq 12 ] || fail "JSON results"
# quest attends its budget, dense every token: the selection is counted, not assumed
if [ "$device" = cpu ]; then
  echo "$json" | grep -q '"policy":"quest","B":1,"N":640,"attended_tokens":64,' || fail "quest attends 64 tokens"
  echo "$json" | grep -q '"policy":"plain","B":2,"N":640,"attended_tokens":640,' || fail "dense attends every token"
fi
echo "PASS"
