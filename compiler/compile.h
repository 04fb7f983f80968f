/* compile.h - the one pipeline from a checked policy to an artifact: lowering and the VIR
 * passes, host code and the GPU kernels of every target (at the same time, on threads of
 * their own), and packaging. vxc, the tests, the benchmarks, the fuzz target and vx-serve
 * all go through these functions; none keeps a second pipeline. Problems go to the
 * Compilation's Diags; it never exits, and prints only a verifier report (a compiler bug). */
#ifndef VX_COMPILE_H
#define VX_COMPILE_H

#include <stdbool.h>
#include <stddef.h>

#include "cg.h"
#include "front.h"
#include "vir.h"

enum { COMPILE_MAX_TARGETS = 4, COMPILE_MAX_SHAPES = 32 };

typedef struct CompileOptions {
  int opt_level;              /* host code: 1 (fast to compile, the default) or 2 */
  bool llvm_ir_only;          /* stop host code after optimisation: its LLVM IR text only */
  const char *const *targets; /* GPU targets ("sm_90", "sm_80"); none: host code only */
  int ntargets;
  const CgShape *shapes;      /* what the GPU kernels are specialised on; NULL: the defaults */
  int nshapes;
} CompileOptions;

/* The code sections of one compile: the host's, and one PTX module per target. */
typedef struct CompileCode {
  CgHostResult host;
  CgPtxResult ptx[COMPILE_MAX_TARGETS];
  int ntargets;
  double ms; /* host and GPU code together, wall time */
} CompileCode;

/* Options with the defaults: -O1, host code only. */
void compile_options_init(CompileOptions *o);
/* Lowers and optimises c's checked policy; NULL when the verifier caught a compiler bug
 * (reported on stderr). */
VirModule *compile_middle(Compilation *c);
/* Host code and every target's PTX; false with the reasons in c->diags. */
bool compile_code(Compilation *c, const VirModule *m, const CompileOptions *o, CompileCode *out);
void compile_code_free(CompileCode *code);
/* The artifact of m and code: written to path (atomically), or into *bytes (malloc'd) when
 * path is NULL. */
bool compile_package(Compilation *c, const VirModule *m, const CompileCode *code, const CompileOptions *o,
                     const char *path, unsigned char **bytes, size_t *len);
/* All of it from source text: front_compile into c (the caller destroys it and renders its
 * Diags), then the artifact's bytes. False when anything failed. */
bool compile_source(Compilation *c, const char *path, const char *text, int len, const CompileOptions *o,
                    unsigned char **bytes, size_t *nbytes);

#endif
