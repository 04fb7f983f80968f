/* compile.c - the one pipeline (compile.h), its half without LLVM: options and the middle
 * end (lowering, then the passes with the verifier in debug builds). The fuzz target links
 * only this half; code generation and packaging are compile_code.c. */
#include "compile.h"

#include <stdio.h>
#include <string.h>

#include "lower.h"
#include "pass.h"

void compile_options_init(CompileOptions *o) {
  memset(o, 0, sizeof *o);
  o->opt_level = 1;
}

VirModule *compile_middle(Compilation *c) {
  VirModule *m = lower_policy(&c->arena, c->policy);
  if (pass_run(m, stderr)) {
    fputs("vx: internal error: invalid VIR (a compiler bug; please report it)\n", stderr);
    return NULL;
  }
  return m;
}
