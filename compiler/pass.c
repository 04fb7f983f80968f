/* pass.c - pass_run: the VIR passes in order (pass.h), with the verifier after each in
 * debug builds. The passes themselves are pass_fold.c and pass_hoist.c. */
#include "pass.h"

int pass_run(VirModule *m, FILE *err) {
  int problems = 0;
#ifndef NDEBUG
  problems += vir_verify(m, err);
#endif
  pass_fold(m);
#ifndef NDEBUG
  problems += vir_verify(m, err);
#endif
  pass_hoist(m);
#ifndef NDEBUG
  problems += vir_verify(m, err);
#endif
  (void)err;
  return problems;
}
