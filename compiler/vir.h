/* vir.h - VIR, the SSA tensor IR that sits between the checked AST and code generation.
 *
 * A value is a tensor over a named index domain: the set of axes it varies along (sorted
 * by axis id). Operations broadcast over the union of their operands' domains; a reduction
 * removes its axes; a load reads a tensor at subscripts (axes or integer values). A module
 * holds the policy's params, tensors (inputs, fields, row state, consts, step temporaries)
 * and kernels; a kernel is a list of stores, each computing one tensor from values in the
 * kernel's blocks. Blocks split a kernel by how often their values are evaluated: once per
 * row (the hoisted prologue) or once per element of the kernel's grid (pages or tokens).
 * Built by lower.c, changed by the passes (pass_*.c), checked by vir_verify, printed by
 * vir_print (vxc --emit=ir). VIR knows nothing of LLVM. */
#ifndef VX_VIR_H
#define VX_VIR_H

#include <stdbool.h>
#include <stdio.h>

#include "../runtime/vxk.h"
#include "arena.h"
#include "ast.h"

/* An extent: a literal (num), a name (D, G, P, npages or a param) or op applied to lhs and
 * rhs (+ - * / %, integer arithmetic as in C). Parsed once from sema's canonical text
 * (vir_extent.c); every stage after lowering walks this, never the text. */
typedef struct VirExtent VirExtent;
struct VirExtent {
  char op; /* 0: a leaf */
  long long num;
  const char *name; /* a leaf's name, NULL for a literal */
  VirExtent *lhs, *rhs;
};

/* The value of a name in an extent; false when the caller does not know it. */
typedef bool (*VirNameValue)(void *user, const char *name, long long *out);
VirExtent *vir_extent_parse(Arena *arena, const char *text);
/* False when a name is unknown or a division is by zero. */
bool vir_extent_eval(const VirExtent *e, VirNameValue value, void *user, long long *out);
/* Whether e is just the name ("npages"). */
bool vir_extent_is(const VirExtent *e, const char *name);

typedef struct VirAxis {
  int id;
  const char *name;
  const char *extent; /* canonical extent text (see sema.c), for printing */
  VirExtent *ext;     /* the same, parsed */
  AxisRole role;
} VirAxis;

/* A tensor's stage (runtime/vxk.h's VXK_STAGES: VT_INPUT, VT_CONST, VT_ROW, VT_PAGE,
 * VT_TOKEN, VT_STEP). */
typedef enum VirTensorKind {
#define VIR_TENSOR_KIND(tag, name) VT_##tag,
  VXK_STAGES(VIR_TENSOR_KIND)
#undef VIR_TENSOR_KIND
} VirTensorKind;

/* A policy parameter, as lowering found it: the runtime sets its value at load time (the
 * default, or an override). */
typedef struct VirParam {
  int index;            /* source order: its slot in the params array the kernels read */
  const char *name;
  Type type;            /* TY_F32 or TY_I32 */
  Unit unit;
  double def;           /* the default */
  const char *def_text; /* the default as written, sign included ("-0.5") */
} VirParam;

/* A const made by a generator at load time: gaussian(seed) or load("file"). */
typedef struct VirInit {
  const char *fn;  /* "gaussian" or "load" */
  const char *arg; /* the seed (a param's name or a literal's text) or the file */
} VirInit;

typedef struct VirTensor {
  int id;
  const char *name;
  VirTensorKind kind;
  int rank;
  const char **extents; /* canonical text per dimension, for printing and the manifest */
  VirExtent **exts;     /* the same, parsed (vir_tensor_set_extent sets both) */
  DType dtype;
  Type type;     /* the value type it holds in computation */
  bool updated;  /* rewritten by the update kernel every step */
  VirInit *init; /* VT_CONST made by a generator, else NULL */
} VirTensor;

typedef enum VirOp {
  VI_NUM,      /* literal: num */
  VI_PARAM,    /* a load-time parameter: param */
  VI_SCALAR,   /* a scalar intrinsic: name (D G P layer len npages prefill_len pi inf) */
  VI_AXIS,     /* the integer index along axis */
  VI_LOAD,     /* tensor[args...] (nargs = rank) */
  VI_UNARY,    /* op args[0] */
  VI_BINARY,   /* args[0] op args[1] */
  VI_SELECT,   /* args[0] ? args[1] : args[2] */
  VI_CALL,     /* name(args...) */
  VI_REDUCE,   /* red over axes of args[0], filtered by args[1] when nargs == 2 */
} VirOp;

typedef struct VirValue VirValue;
typedef struct VirBlock VirBlock;
struct VirValue {
  int id;
  VirOp op;
  Type type;
  VirAxis **dom; /* the domain, sorted by axis id */
  int ndom;
  VirValue **args;
  int nargs;
  double num;
  bool is_int;
  const char *name;     /* VI_SCALAR, VI_CALL */
  VirParam *param;      /* VI_PARAM */
  Op opcode;            /* VI_UNARY, VI_BINARY */
  Reduction red;        /* VI_REDUCE */
  VirAxis **axes;       /* VI_REDUCE: reduced (or, for softmax, normalised) axes */
  int naxes;
  VirAxis *axis;        /* VI_AXIS */
  VirTensor *tensor;    /* VI_LOAD */
  bool invariant;       /* depends on no page or token axis (set by pass_hoist) */
  VirValue *next;       /* order within its block */
  const VirBlock *emitted_in; /* vir_emit's block, for sharing identical values there */
  VirValue *cse_next;   /* chain in the module's table of emitted values */
};

typedef struct VirStore VirStore;
struct VirStore {
  VirTensor *dst;
  VirAxis **axes; /* one per dimension of dst */
  Op op;          /* OP_ASSIGN, or OP_ADD/OP_SUB/OP_MUL for attend logit modifiers */
  VirValue *value;
  VirStore *next;
};

struct VirBlock {
  VirValue *first, *last;
};

/* The kernels of a module (runtime/vxk.h's VXK_HOST_KERNELS, in that order):
 *   VK_CONST     consts computed from expressions, once when the policy is loaded
 *   VK_ROW       row state, once per row at the end of prefill
 *   VK_SUMMARISE page and token fields: all pages at prefill, the open page on append
 *   VK_SELECT    lets, score and the selection, every step
 *   VK_ATTEND    attention over the selection with the logit modifiers inlined
 *   VK_UPDATE    state updates after attention */
typedef enum VirKernelKind {
#define VIR_KERNEL_KIND(tag, name) VK_##tag,
  VXK_HOST_KERNELS(VIR_KERNEL_KIND)
#undef VIR_KERNEL_KIND
} VirKernelKind;

typedef struct VirKernel VirKernel;
struct VirKernel {
  VirKernelKind kind;
  VirBlock row;      /* evaluated once per row */
  VirBlock each;     /* evaluated per grid element */
  VirStore *stores;
  VirKernel *next;
};

typedef struct VirKeep {
  KeepKind kind;
  VirValue *count; /* in units; NULL for generated */
  Unit unit;
  bool at_prefill;
} VirKeep;

typedef enum VirSelectionKind { VS_TOP, VS_WHERE, VS_ALL } VirSelectionKind;

typedef struct VirSelection {
  VirSelectionKind kind;
  VirTensor *scores;   /* VS_TOP: the ranked tensor; VS_WHERE: the 0/1 condition tensor */
  VirValue *count;     /* VS_TOP: the budget */
  Unit unit;
} VirSelection;

typedef struct VirModule {
  Arena *arena;
  const char *name;
  VirParam **params;  /* in source order */
  int nparams;
  VirTensor **tensors;
  int ntensors, cap_tensors;
  VirKernel *kernels;
  VirKeep *keeps;
  int nkeeps;
  VirSelection *selections;
  int nselections;
  bool per_head;
  bool token_granular;   /* the selection picks tokens, not pages */
  VirBlock scalars;      /* load-time scalars: keep counts, budgets, requires */
  VirValue **requires;
  Span *require_spans;   /* where each require's condition is written (for messages) */
  int nrequires;
  int next_value_id;
  int next_axis_id;
  VirValue **cse;         /* emitted values by hash (vir_emit), chained; power-of-two size */
  int cse_cap, cse_count;
} VirModule;

/* Builders used by lower.c and the passes. */
VirModule *vir_module_new(Arena *arena, const char *name);
VirTensor *vir_tensor_new(VirModule *m, const char *name, VirTensorKind kind, int rank);
VirKernel *vir_kernel_get(VirModule *m, VirKernelKind kind);
VirAxis *vir_axis_new(VirModule *m, const char *name, const char *extent, AxisRole role);
void vir_tensor_set_extent(VirModule *m, VirTensor *t, int dim, const char *extent);
/* Appends a value to block b, or returns an identical value already there (CSE). */
VirValue *vir_emit(VirModule *m, VirBlock *b, VirValue *proto);
void vir_store_add(VirModule *m, VirKernel *k, VirTensor *dst, VirAxis **axes, Op op, VirValue *value);
const char *vir_kernel_kind_text(VirKernelKind kind);
/* Whether axis a is among dom[0..n). */
bool vir_dom_has(VirAxis *const *dom, int n, const VirAxis *a);

/* Checks the module's invariants; prints each violation to err; returns the count. */
int vir_verify(const VirModule *m, FILE *err);
void vir_print(FILE *out, const VirModule *m);

#endif
