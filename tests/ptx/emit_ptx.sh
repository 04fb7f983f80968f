#!/bin/sh
# emit_ptx.sh - the GPU code generator over every stdlib policy and example at the default
# shapes, without ptxas: each either compiles (exit 0) or is refused with E1006 (exit 1);
# anything else (a crash, an internal error, a sanitizer report) fails. The ASan/UBSan build
# runs this instead of check_ptx.sh, whose ptxas half gains nothing from instrumentation.
# Usage: emit_ptx.sh VXC SRCDIR
vxc=$1 src=$2 fail=0
for f in "$src"/stdlib/*.vx "$src"/examples/*.vx; do
  "$vxc" --emit=ptx --target sm_90 "$f" > /dev/null 2> /tmp/vx_emit_ptx.$$
  rc=$?
  if [ $rc = 0 ] || { [ $rc = 1 ] && grep -q "cannot run on the GPU yet" /tmp/vx_emit_ptx.$$; }; then
    echo "ok: $(basename "$f") (exit $rc)"
  else
    echo "FAIL: $(basename "$f"): exit $rc"
    cat /tmp/vx_emit_ptx.$$
    fail=1
  fi
done
rm -f /tmp/vx_emit_ptx.$$
exit $fail
