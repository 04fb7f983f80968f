#!/usr/bin/env bash
# hf_test.sh - Hugging Face model folders end to end (tests/serve/CMakeLists.txt runs it): runs
# hf_test (loaders and tokenizer in-process, on folders it writes), then vx-serve generate and
# eval on its Llama folder, and the bad inputs a folder model can meet on the command line.
# Exits 0 passed, 1 failed (saying why). Writes only under WORK_DIR; needs no shared models.
#   usage: hf_test.sh HF_TEST VX_SERVE WORK_DIR [VXC]
set -u
hf_test=$1 serve=$2 work=$3
[ -n "${4:-}" ] && export VXC=$4
fail() { echo "FAIL (hf): $*"; exit 1; }
rm -rf "$work" && mkdir -p "$work"
"$hf_test" "$work" || fail "hf_test"
dir=$work/llama-f32
out=$("$serve" generate --model "$dir" --prompt 'hello world' -n 6 --show-tokens 2>"$work/err.txt") ||
  { cat "$work/err.txt"; fail "generate on a folder"; }
echo "$out"
grep -q "hf:llama" "$work/err.txt" || fail "generate does not name the architecture"
echo "$out" | grep -q '^tokens:\( [0-9]*\)\{1,6\}$' || fail "no generated tokens"
"$serve" generate --model "$dir" --policy quest --param budget=16 --page-size 4 \
  --prompt 'hello world, hello world, hello world, hello world' -n 8 >/dev/null 2>"$work/err.txt" ||
  { cat "$work/err.txt"; fail "quest on a folder"; }
expect_error() { # TEXT ARGS...: exit 1 and TEXT on stderr
  local want=$1
  shift
  "$serve" "$@" >/dev/null 2>"$work/err.txt"
  local rc=$?
  [ "$rc" -eq 1 ] || { cat "$work/err.txt"; fail "vx-serve $* exited $rc, expected 1"; }
  grep -qF -- "$want" "$work/err.txt" || { cat "$work/err.txt"; fail "vx-serve $*: message lacks '$want'"; }
  echo "ok: $(head -1 "$work/err.txt")"
}
expect_error "MistralForCausalLM" generate --model "$work/bad-arch"
expect_error "model-00002-of-00002.safetensors" generate --model "$work/missing-shard"
expect_error "big-tokenizer.json" generate --model "$dir" --tokenizer "$dir/big-tokenizer.json"
long=$(printf 'hello world %.0s' $(seq 40))
expect_error "longer than the model's context of 64" generate --model "$dir" --prompt "$long"
expect_error "require" generate --model "$dir" --policy lserve --page-size 8
echo "PASS (hf)"
