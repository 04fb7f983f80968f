#!/bin/sh
# check_ptx.sh - every stdlib policy and example through `vxc --emit=ptx` for one sm at the
# default shapes, assembled by ptxas: zero spill bytes and zero stack frame in every kernel,
# registers within the budgets checked into tests/ptx/budgets_SM.txt (a kernel that grows
# fails), the structure the runtime relies on (.version 8.0, .target, one .entry per shape
# and kernel kind, no .extern .func: a misspelt NVVM intrinsic would become one). Policies
# the GPU path cannot compile yet are listed, with the reason vxc gives, in
# tests/ptx/unsupported.txt; a new failure or a newly supported policy fails the test until
# the list is updated. VX_UPDATE_BUDGETS=1 rewrites the budget file instead of checking it.
# Exit 77 (skipped) when ptxas is absent. Usage: check_ptx.sh VXC SRCDIR SM WORKDIR
set -u
vxc=$1 src=$2 sm=$3 work=$4
ptxas=${PTXAS:-/usr/local/cuda/bin/ptxas}
[ -x "$ptxas" ] || ptxas=$(command -v ptxas 2>/dev/null || true)
if [ -z "$ptxas" ] || [ ! -x "$ptxas" ]; then
  echo "SKIP: ptxas not found (set PTXAS or install the CUDA toolkit's ptxas)"
  exit 77
fi
mkdir -p "$work"
budgets=$src/tests/ptx/budgets_$sm.txt
measured=$work/measured_$sm.txt
: > "$measured"
fail=0
for f in "$src"/stdlib/*.vx "$src"/examples/*.vx; do
  p=$(basename "$f" .vx)
  if ! "$vxc" --emit=ptx --target "$sm" "$f" > "$work/$p.ptx" 2> "$work/$p.err"; then
    reason=$(grep -o "cannot run on the GPU yet: .*" "$work/$p.err" | head -1)
    expected=$(awk -v p="$p" '$1 == p { $1 = ""; sub(/^ /, ""); print }' "$src/tests/ptx/unsupported.txt")
    if [ -n "$reason" ] && [ "$reason" = "cannot run on the GPU yet: $expected" ]; then
      echo "unsupported (listed): $p: $expected"
    else
      echo "FAIL: $p: vxc failed: $(head -3 "$work/$p.err")"
      fail=1
    fi
    continue
  fi
  if grep -q "^$p " "$src/tests/ptx/unsupported.txt"; then
    echo "FAIL: $p compiles for the GPU now: remove it from tests/ptx/unsupported.txt"
    fail=1
  fi
  ptx=$work/$p.ptx
  grep -q "^\.version 8\.0" "$ptx" || { echo "FAIL: $p: not PTX ISA 8.0"; fail=1; }
  grep -q "^\.target $sm" "$ptx" || { echo "FAIL: $p: not .target $sm"; fail=1; }
  if grep -q "\.extern \.func" "$ptx"; then echo "FAIL: $p: .extern .func in the PTX"; fail=1; fi
  if ! "$ptxas" -arch="$sm" -v "$ptx" -o "$work/$p.cubin" > "$work/$p.ptxas" 2>&1; then
    echo "FAIL: $p: ptxas: $(grep -m3 error "$work/$p.ptxas")"
    fail=1
    continue
  fi
  # one line per kernel: name stack spill_stores spill_loads registers
  awk -v p="$p" '
    /Function properties for/ { name = $NF }
    /bytes stack frame/ { stack = $1; st = $5; ld = $9 }
    /Used [0-9]+ registers/ { for (i = 1; i <= NF; i++) if ($i == "Used") regs = $(i + 1);
                              print p, name, stack, st, ld, regs }' "$work/$p.ptxas" > "$work/$p.kernels"
  entries=$(grep -c "^\.visible \.entry" "$ptx")
  kernels=$(wc -l < "$work/$p.kernels")
  [ "$entries" = "$kernels" ] || { echo "FAIL: $p: $entries entries, ptxas reported $kernels"; fail=1; }
  while read -r pol name stack st ld regs; do
    if [ "$stack" != 0 ] || [ "$st" != 0 ] || [ "$ld" != 0 ]; then
      echo "FAIL: $pol $name: stack $stack, spill stores $st, spill loads $ld"
      fail=1
    fi
    echo "$pol $name $regs" >> "$measured"
  done < "$work/$p.kernels"
  echo "ok: $p: $kernels kernels"
done
if [ "${VX_UPDATE_BUDGETS:-0}" = 1 ]; then
  cp "$measured" "$budgets"
  echo "wrote $budgets"
  exit $fail
fi
[ -f "$budgets" ] || { echo "FAIL: no $budgets (run with VX_UPDATE_BUDGETS=1)"; exit 1; }
awk 'NR == FNR { budget[$1 " " $2] = $3; next }
     { key = $1 " " $2
       if (!(key in budget)) { print "FAIL: no register budget for " key " (" $3 " registers)"; bad = 1 }
       else if ($3 + 0 > budget[key] + 0) { print "FAIL: " key " uses " $3 " registers, budget " budget[key]; bad = 1 } }
     END { exit bad }' "$budgets" "$measured" || fail=1
[ $fail = 0 ] && echo "PASS: every kernel assembled for $sm without spills, within its register budget"
exit $fail
