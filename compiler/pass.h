/* pass.h - the VIR passes, run in order by pass_run: constant folding, then hoisting of
 * row-invariant work. Each pass keeps the module valid; debug builds verify after each. */
#ifndef VX_PASS_H
#define VX_PASS_H

#include <stdio.h>

#include "vir.h"

void pass_fold(VirModule *m);
void pass_hoist(VirModule *m);
/* Runs every pass; in debug builds verifies after each and returns the violations found. */
int pass_run(VirModule *m, FILE *err);

#endif
