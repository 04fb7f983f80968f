#!/usr/bin/env bash
# run-all.sh - every test of vx, as CI runs them (.ci/run): a normal build and its CTest suite
# plus README.md's main job, an ASan/UBSan build and its CTest suite, then the libFuzzer
# build and bounded fuzz runs (front end, artifact loader). Needs the packages listed in
# README.md (installed already).
#   usage: bash tests/run-all.sh            (from anywhere; builds under build-ci/)
# Environment: VX_CI_BUILD (build root, default <repo>/build-ci), VX_FUZZ_SECONDS (default 60),
#   VX_JOBS (parallel test jobs, default: CPU count), VX_SKIP_FUZZ=1 / VX_SKIP_ASAN=1.
# Exits non-zero if any stage fails; every test stage runs even after an earlier one failed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
out=${VX_CI_BUILD:-$repo/build-ci}
jobs=${VX_JOBS:-$(nproc 2>/dev/null || echo 2)}
fuzz_seconds=${VX_FUZZ_SECONDS:-60}
failed=()
t_all=$SECONDS

stage() { printf '\n==== %s ====\n' "$*"; }

# configure DIR [cmake args...] then build (all targets unless VX_BUILD_TARGET is set)
configure_build() {
  local dir=$1
  shift
  cmake -S "$repo" -B "$dir" -G Ninja "$@"
  # shellcheck disable=SC2086 # empty means all targets
  ninja -C "$dir" ${VX_BUILD_TARGET:-}
}

# ctest_stage NAME DIR [ctest args...]: runs and records a failure without stopping
ctest_stage() {
  local name=$1 dir=$2
  shift 2
  local t=$SECONDS
  if (cd "$dir" && ctest --output-on-failure -j "$jobs" "$@"); then
    echo "---- $name: passed ($((SECONDS - t)) s)"
  else
    echo "---- $name: FAILED ($((SECONDS - t)) s)"
    failed+=("$name")
  fi
}

stage "tools"
cmake --version | head -1
echo "ninja $(ninja --version)"
gcc --version | head -1
re2c --version
/usr/lib/llvm-22/bin/llvm-config --version | sed 's/^/LLVM /'

stage "1/3 normal build (RelWithDebInfo, gcc)"
configure_build "$out/release" -DCMAKE_BUILD_TYPE=RelWithDebInfo
ctest_stage "ctest (normal build)" "$out/release" -LE fuzz
# CTest hides the output of passing tests: show what the benchmarks measured.
grep -hE '^bench_[a-z_]+: ' "$out/release/Testing/Temporary/LastTest.log" 2>/dev/null || true

stage "main job: vxc --check over stdlib/ and examples/, every stdlib policy to an artifact, run_policy on quest and streaming, vx-serve generate with quest"
# README.md's main job: the whole path from .vx to attention output, then to a real model's text.
vxc=$out/release/vxc
policies=$out/release/policies
mkdir -p "$policies"
nbad=0
for f in stdlib/*.vx examples/*.vx; do
  [ -f "$f" ] || continue
  if "$vxc" --check "$f"; then echo "ok   $f"; else echo "FAIL $f"; nbad=$((nbad + 1)); fi
done
for f in stdlib/*.vx; do
  [ -f "$f" ] || continue
  a=$policies/$(basename "$f" .vx).vxp
  if "$vxc" "$f" -o "$a"; then echo "ok   $a"; else echo "FAIL $a"; nbad=$((nbad + 1)); fi
done
for p in quest streaming; do
  if [ -f "$policies/$p.vxp" ]; then
    "$out/release/examples/run_policy" "$policies/$p.vxp" || nbad=$((nbad + 1))
  fi
done
models=$repo/../shared/models
if [ -f "$models/stories260K.bin" ] && [ -f "$policies/quest.vxp" ]; then
  "$out/release/runtime/serve/vx-serve" generate --model "$models/stories260K.bin" \
    --tokenizer "$models/tok512.bin" --policy stdlib/quest.vx --param budget=64 \
    --device "$(nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)" \
    --prompt 'Once upon a time' -n 128 || nbad=$((nbad + 1))
else
  echo "vx-serve generate skipped: $models/stories260K.bin not found"
fi
if [ "$nbad" -ne 0 ]; then failed+=("main job ($nbad failures)"); fi

if [ "${VX_SKIP_ASAN:-0}" != 1 ]; then
  stage "2/3 ASan/UBSan build (-DVX_SANITIZE=ON)"
  configure_build "$out/asan" -DCMAKE_BUILD_TYPE=Debug -DVX_SANITIZE=ON
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    ctest_stage "ctest (ASan/UBSan build)" "$out/asan" -LE fuzz
fi

if [ "${VX_SKIP_FUZZ:-0}" != 1 ]; then
  stage "3/3 fuzz build (clang-14, libFuzzer, -DVX_FUZZ=ON): ${fuzz_seconds} s bounded runs of the front end and the loader"
  # fuzz_loader's seeds are artifacts compiled by this build's vxc
  CC=${VX_FUZZ_CC:-clang-14} VX_BUILD_TARGET="fuzz_front fuzz_loader vxc" configure_build "$out/fuzz" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVX_FUZZ=ON -DVX_FUZZ_SECONDS="$fuzz_seconds"
  ctest_stage "fuzz_front_smoke, fuzz_loader_smoke" "$out/fuzz" -L fuzz -V
fi

stage "summary"
echo "total time: $((SECONDS - t_all)) s"
if [ ${#failed[@]} -ne 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all stages passed"
