#!/usr/bin/env bash
# serve_test.sh - one vx-serve test (tests/serve/CMakeLists.txt runs each): checks exit
# codes, outputs and error messages of the real binary on the real models. Exits 0 passed,
# 1 failed (saying why), 77 skipped (models absent). Writes only under the build folder.
#   usage: serve_test.sh TEST VX_SERVE MODELS_DIR WORK_DIR [VXC]
set -u
test=$1 serve=$2 models=$3 work=$4
[ -n "${5:-}" ] && export VXC=$5
mkdir -p "$work"
fail() { echo "FAIL ($test): $*"; exit 1; }
need() {
  for f in "$@"; do
    [ -f "$models/$f" ] || { echo "SKIP: $models/$f not found (the test models live in ../shared/models)"; exit 77; }
  done
}
# expect_error CODE_TEXT ARGS...: vx-serve must exit 1 (not crash) and print CODE_TEXT on stderr
expect_error() {
  local want=$1
  shift
  "$serve" "$@" >"$work/out.txt" 2>"$work/err.txt"
  local rc=$?
  [ "$rc" -eq 1 ] || { cat "$work/err.txt"; fail "vx-serve $* exited $rc, expected 1"; }
  grep -qF -- "$want" "$work/err.txt" || { cat "$work/err.txt"; fail "vx-serve $*: message lacks '$want'"; }
  echo "ok: $(head -1 "$work/err.txt")"
}

case $test in
reference)
  need stories260K.bin tok512.bin
  out=$("$serve" generate --model "$models/stories260K.bin" --tokenizer "$models/tok512.bin" \
        -n 40 --show-tokens 2>"$work/err.txt") || { cat "$work/err.txt"; fail "generate failed"; }
  echo "$out"
  ref="403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 322 265 282 295 433 426 385 328 432 358 394 261 370 432 352"
  echo "$out" | grep -qF "tokens: $ref" || fail "the first 40 greedy tokens differ from the reference"
  echo "$out" | grep -qF "Once upon a time, there was a little girl named Lily." || fail "text differs"
  ;;
batching)
  # three prompts through two cache rows (the third joins when a row is freed) give the same
  # text as three separate runs, with quest on layers 1-4; sampling is reproducible by seed;
  # a synthetic model runs
  need stories260K.bin tok512.bin
  run=("$serve" generate --model "$models/stories260K.bin" --tokenizer "$models/tok512.bin"
       --policy quest --param budget=32 -n 80)
  prompts=("Once upon a time" "The cat sat on the mat and" "Tom had a big red")
  : >"$work/single.txt"
  for p in "${prompts[@]}"; do
    "${run[@]}" --prompt "$p" 2>>"$work/err.txt" | grep -v '^$' >>"$work/single.txt" || fail "generate '$p'"
  done
  "${run[@]}" --batch 2 --prompt "${prompts[0]}" --prompt "${prompts[1]}" --prompt "${prompts[2]}" \
    2>>"$work/err.txt" | grep -v -e '^--- prompt' -e '^$' >"$work/batched.txt" || fail "batched generate"
  diff "$work/single.txt" "$work/batched.txt" || fail "batched text differs from separate runs"
  a=$("${run[@]}" --prompt "${prompts[0]}" --temperature 0.9 --top-k 40 --top-p 0.95 --seed 7 2>/dev/null)
  b=$("${run[@]}" --prompt "${prompts[0]}" --temperature 0.9 --top-k 40 --top-p 0.95 --seed 7 2>/dev/null)
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "sampling with one seed is not reproducible"
  echo "$a"
  # a synthetic model (seeded random weights) with Qwen3's q/k norm, through quest, in a batch
  "$serve" generate --model synthetic:tiny:qk_norm=1:layers=3 --policy quest --param budget=32 \
    --prompt "abc" --prompt "a longer prompt" -n 40 --batch 1 >"$work/synth.txt" 2>&1 ||
    { cat "$work/synth.txt"; fail "synthetic model"; }
  ;;
bench)
  # vx-serve bench: the policy and dense in one run, a table row each, the ratio and the JSON
  need stories260K.bin tok512.bin
  "$serve" bench --model "$models/stories260K.bin" --tokenizer "$models/tok512.bin" --policy quest \
    --param budget=64 --context 256 --steps 16 --batch 2 >"$work/bench.txt" 2>"$work/bench.err" ||
    { cat "$work/bench.err"; fail "vx-serve bench"; }
  cat "$work/bench.txt"
  grep -q '^quest  *decode  *[0-9.]* tokens/s  step p50' "$work/bench.txt" || fail "no quest row"
  grep -q '^dense  *decode' "$work/bench.txt" || fail "no dense row"
  grep -q '^quest / dense: [0-9.]*x decode tokens/s' "$work/bench.txt" || fail "no ratio"
  tail -1 "$work/bench.txt" | grep -q '"runs":\[{"attention":"quest".*"kv_tokens_per_sparse_layer":64}' ||
    fail "JSON: quest's layers attend its 64-token budget"
  grep -q 'step 16/16' "$work/bench.err" || fail "no progress line"
  "$serve" bench --model "$models/stories260K.bin" --tokenizer "$models/tok512.bin" --context 500 --steps 32 \
    2>"$work/bench.err" && fail "a context that does not fit was accepted"
  grep -q 'does not fit the model' "$work/bench.err" || fail "no word on the context"
  ;;
attn_backends)
  # the batched attention backend (--attn batch, the default) against the per-row one: the
  # same tokens on stories260K (dense; quest with three prompts through two rows), the same
  # eval JSON on vx-tiny-4k but for timings (accuracy, agreement, per-head error and mass,
  # outputs; quest with layers 0 and 2 dense, and a two-value sweep that rebuilds the backend)
  need stories260K.bin tok512.bin vx-tiny-4k.safetensors vx-tiny-4k.retrieval.jsonl
  gen=("$serve" generate --model "$models/stories260K.bin" --tokenizer "$models/tok512.bin"
       -n 128 --show-tokens)
  for args in "" "--policy quest --param budget=32 --batch 2 --prompt Once --prompt The_cat --prompt Tom_had"; do
    for a in rows batch; do
      # shellcheck disable=SC2086
      "${gen[@]}" $args --attn $a >"$work/gen-$a.txt" 2>"$work/err.txt" ||
        { cat "$work/err.txt"; fail "generate --attn $a $args"; }
    done
    diff "$work/gen-rows.txt" "$work/gen-batch.txt" || fail "generate $args: tokens differ between backends"
    echo "ok: generate ${args:-(dense)}: $(grep -c '^tokens:' "$work/gen-batch.txt") token line(s) equal"
  done
  ev=("$serve" eval --model "$models/vx-tiny-4k.safetensors" --fixtures "$models/vx-tiny-4k.retrieval.jsonl"
      --limit 4 --max-ctx 1024 --quiet --policy quest --plot none)
  for args in "--param budget=128 --dense-layers 0,2" "--sweep budget=64,256"; do
    for a in rows batch; do
      # shellcheck disable=SC2086
      "${ev[@]}" $args --attn $a 2>"$work/err.txt" | grep -v -e wall_s -e prefill_tokens_per_s \
        >"$work/eval-$a.json" || { cat "$work/err.txt"; fail "eval --attn $a $args"; }
    done
    diff "$work/eval-rows.json" "$work/eval-batch.json" || fail "eval $args: results differ between backends"
    echo "ok: eval $args: $(grep -c '"correct"' "$work/eval-batch.json") accuracies, $(grep -c '"mean_rel_err"' "$work/eval-batch.json") error figures equal"
  done
  "$serve" generate --model "$models/stories260K.bin" --attn gpu 2>"$work/err.txt"
  [ $? -eq 2 ] && grep -qF -- "--attn expects rows or batch" "$work/err.txt" || fail "--attn gpu: not a usage error"
  ;;
tiny_dense | tiny_quest)
  need vx-tiny-4k.safetensors vx-tiny-4k.retrieval.jsonl
  args=(--policy dense)
  [ "$test" = tiny_quest ] && args=(--policy quest --param budget=256)
  # 6 prompts: the 1024-byte ones spread over both tasks (the CI-sized run)
  "$serve" eval --model "$models/vx-tiny-4k.safetensors" "${args[@]}" \
    --fixtures "$models/vx-tiny-4k.retrieval.jsonl" --limit 6 --max-ctx 1024 \
    >"$work/$test.json" 2>"$work/$test.err" || { cat "$work/$test.err"; fail "eval failed"; }
  cat "$work/$test.err"
  json=$work/$test.json
  # cJSON's printout: "correct": N for dense first, then for the policy
  mapfile -t correct < <(grep -oE '"correct":[[:space:]]*[0-9]+' "$json" | grep -oE '[0-9]+$')
  agree=$(grep -oE '"token_agreement":[[:space:]]*[0-9.e+-]+' "$json" | grep -oE '[0-9.e+-]+$')
  err=$(grep -m1 -oE '"mean_rel_err":[[:space:]]*[0-9.e+-]+' "$json" | grep -oE '[0-9.e+-]+$')
  echo "dense ${correct[0]:-?}/6, policy ${correct[1]:-?}/6, token agreement $agree, mean rel err $err"
  [ "${correct[0]:-}" = 6 ] || fail "dense must answer all 6"
  if [ "$test" = tiny_dense ]; then
    [ "${correct[1]:-}" = 6 ] && [ "$agree" = 1 ] || fail "the dense policy must agree with dense"
    awk -v e="$err" 'BEGIN { exit !(e < 1e-5) }' || fail "dense policy against dense: error $err"
  else
    [ "${correct[1]:-0}" -ge 5 ] || fail "quest at budget 256 on 1024-byte prompts: ${correct[1]:-?}/6"
  fi
  ;;
tiny_generate)
  # generated prompts (seeded), perplexity and a two-value sweep in one small run
  need vx-tiny-4k.safetensors vx-tiny-4k.retrieval.jsonl
  "$serve" eval --model "$models/vx-tiny-4k.safetensors" --policy quest --sweep budget=64,1024 \
    --generate 2 --gen-bytes 512 --filler fixtures --perplexity 200 --trace "$work/trace.jsonl" -n 6 \
    --plot "$work/sweep.png" >"$work/gen.json" 2>"$work/gen.err" ||
    { cat "$work/gen.err"; fail "eval --generate failed"; }
  cat "$work/gen.err"
  json=$work/gen.json
  [ "$(grep -c '"budget":' "$json")" -eq 2 ] || fail "two sweep runs expected"
  mapfile -t correct < <(grep -oE '"correct":[[:space:]]*[0-9]+' "$json" | grep -oE '[0-9]+$')
  [ "${correct[0]:-}" = 4 ] || fail "dense must answer the 4 generated prompts (got ${correct[0]:-?})"
  [ "${correct[2]:-}" = 4 ] || fail "quest at budget 1024 covers 512-byte prompts (got ${correct[2]:-?})"
  grep -q '"perplexity":' "$json" || fail "no perplexity"
  grep -q '"rel_err":\[' "$work/trace.jsonl" || fail "empty trace"
  # the default filler: Debian's texts where installed, else the fixtures' lines, said so
  "$serve" eval --model "$models/vx-tiny-4k.safetensors" --policy quest --generate 1 \
    --gen-bytes 300 -n 1 --quiet >"$work/deb.json" 2>"$work/deb.err" || { cat "$work/deb.err"; fail "eval --filler debian"; }
  if [ -d /usr/share/games/fortunes ] || [ -f /usr/share/doc/jargon-text/jargon.txt.gz ]; then
    grep -q '"filler":.*Debian' "$work/deb.json" || fail "Debian's texts are installed but not used"
  else
    grep -q "using the fixtures' own lines" "$work/deb.err" || fail "no word on the fallback filler"
  fi
  if command -v gnuplot >/dev/null; then # the sweep's plot: a PNG file, else the reason why not
    [ "$(head -c 4 "$work/sweep.png" | od -An -c | tr -d ' ')" = "211PNG" ] || fail "no PNG plot"
  else
    grep -q "gnuplot not found" "$work/gen.err" || fail "no word on the missing gnuplot"
  fi
  ;;
bad_input)
  need stories260K.bin tok512.bin vx-tiny-4k.safetensors
  tok=(--tokenizer "$models/tok512.bin")
  expect_error "no/such/model.bin" generate --model no/such/model.bin "${tok[@]}"
  head -c 5000 "$models/stories260K.bin" >"$work/truncated.bin"
  expect_error "is truncated" generate --model "$work/truncated.bin" "${tok[@]}"
  head -c 100000 "$models/vx-tiny-4k.safetensors" >"$work/truncated.safetensors"
  expect_error "truncated.safetensors" generate --model "$work/truncated.safetensors"
  printf '\x10\x00\x00\x00\x00\x00\x00\x00{not json at all' >"$work/corrupt.safetensors"
  expect_error "is corrupt" generate --model "$work/corrupt.safetensors"
  expect_error "does not match the model" generate --model "$models/vx-tiny-4k.safetensors" "${tok[@]}"
  head -c 3000 "$models/tok512.bin" >"$work/tok_short.bin"
  expect_error "tok_short.bin" generate --model "$models/stories260K.bin" --tokenizer "$work/tok_short.bin"
  for i in $(seq 300); do printf 'the little girl '; done >"$work/long.txt"
  expect_error "longer than the model's context of 512" generate --model "$models/stories260K.bin" "${tok[@]}" --prompt-file "$work/long.txt"
  expect_error "no/such/policy.vxp" generate --model "$models/stories260K.bin" "${tok[@]}" --policy no/such/policy.vxp
  printf 'policy broken { select nonsense }\n' >"$work/broken.vx"
  expect_error "failed to compile" generate --model "$models/stories260K.bin" "${tok[@]}" --policy "$work/broken.vx"
  # lserve requires P to be a multiple of 16; P = 8 must be refused with the reason
  expect_error "require" generate --model "$models/stories260K.bin" "${tok[@]}" --policy lserve --page-size 8
  expect_error "layer out of range" generate --model "$models/stories260K.bin" "${tok[@]}" --dense-layers 9
  "$serve" generate --model "$models/stories260K.bin" "${tok[@]}" --device tpu 2>"$work/err.txt"
  [ $? -eq 2 ] && grep -qF -- "--device expects cpu or cuda, got 'tpu'" "$work/err.txt" || fail "--device tpu: not a usage error"
  if [ -z "$(ldconfig -p 2>/dev/null | grep libcuda.so.1)" ]; then # no driver: said so, nothing run
    expect_error "cannot open the CUDA device" generate --model "$models/stories260K.bin" "${tok[@]}" --device cuda
  fi
  ;;
*)
  fail "unknown test"
  ;;
esac
echo "PASS ($test)"
