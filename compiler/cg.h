/* cg.h - code generation from VIR: host code for the CPU backend (cg_host.c, cg_emit.c).
 * Callers see no LLVM type; errors go to the Diags. */
#ifndef VX_CG_H
#define VX_CG_H

#include <stdbool.h>
#include <stddef.h>

#include "diag.h"
#include "vir.h"

typedef struct CgHostResult {
  char *llvm_ir;        /* the optimised module as text (when asked for), malloc'd */
  unsigned char *so;    /* the shared object, malloc'd */
  size_t so_len;
  double ms_codegen;    /* VIR to LLVM IR, optimisation and object emission */
  double ms_link;       /* the object to a shared object */
} CgHostResult;

/* Compiles m to a shared object exporting vxk_KIND functions (runtime/vxk.h), optimised at
 * level 1 (fast to compile, the default) or 2 (LLVM's O2). With llvm_only, stops after
 * optimisation and returns only the IR text. */
bool cg_host_compile(const VirModule *m, Diags *diags, Span where, int level, bool llvm_only,
                     CgHostResult *out);
void cg_host_result_free(CgHostResult *r);
/* The target name host code is compiled for ("x86_64-linux"). */
const char *cg_host_target(void);

#endif
