/* cg.h - code generation from VIR: host code for the CPU backend (cg_host.c, cg_emit.c).
 * Callers see no LLVM type; errors go to the Diags. */
#ifndef VX_CG_H
#define VX_CG_H

#include <stdbool.h>
#include <stddef.h>

#include "../runtime/vxk_gpu.h"
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

/* ---- the GPU target (cg_nvptx.c) ---- */

/* A shape the GPU kernels are specialised on: head dim, query heads per KV head, page size
 * and the KV cache's dtype (VXK_GPU_F32, _F16 or _BF16). */
typedef struct CgShape {
  int D, G, P, kv;
} CgShape;

/* The GPU kernel kinds (runtime/vxk_gpu.h), as bits of CgPtxResult.kernels. */
typedef enum CgGpuKernel {
#define CG_GPU_KIND(k) CG_GPU_##k,
  VXK_GPU_KERNELS(CG_GPU_KIND)
#undef CG_GPU_KIND
  CG_GPU_NKERNELS
} CgGpuKernel;

typedef struct CgPtxResult {
  char *ptx;        /* NUL-terminated PTX, malloc'd */
  size_t len;       /* bytes, the NUL included */
  unsigned kernels; /* bit k: the module exports kernel kind k for every shape */
  double ms;        /* VIR to PTX */
} CgPtxResult;

/* Registers LLVM's x86-64 and NVPTX targets, once per process. The registry is not
 * thread-safe: code generation calls this before it creates any target machine. */
void cg_init_targets(void);

/* Why GPU code generation failed, as text: it runs on threads that must not touch the Diags,
 * so the caller reports it (compile.c). */
typedef struct CgError {
  char code[8];      /* E1006 (a construct the GPU path cannot map yet), E1002, E1003 */
  char message[512];
  char hint[2048];
} CgError;

/* Compiles m's GPU kernels for one sm ("sm_90") and each shape into one PTX module, each
 * kernel kind on a thread of its own; false with err filled. Touches no Diags, so it may run
 * beside host code generation. */
bool cg_nvptx_compile(const VirModule *m, const char *sm, const CgShape *shapes, int nshapes,
                      CgPtxResult *out, CgError *err);
void cg_ptx_result_free(CgPtxResult *r);
/* The kernel kinds m needs on the GPU (bits of CgGpuKernel). */
unsigned cg_nvptx_kernels(const VirModule *m);
const char *cg_nvptx_kernel_name(int kind);
/* Parses "D=128,G=4,P=16,kv=bf16" (every key once, any order); false with a message. */
bool cg_shape_parse(const char *text, CgShape *out, char *err, size_t errlen);
/* The shapes compiled when none are given: D 64, 128 x G 1, 4, 8 x P 16 x bf16, f32. */
int cg_default_shapes(CgShape *out, int cap);
/* "d128g4p16_bf16" */
void cg_shape_name(const CgShape *s, char *buf, size_t n);

#endif
