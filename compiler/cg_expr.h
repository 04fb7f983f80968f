/* cg_expr.h - the element-level expression code both code generators share: conversions
 * between the language's value types, unary, binary and select operations with the
 * language's integer rules (division by zero is 0, shifts of 32 or more give 0), and the
 * built-in functions. cg_host.c (CPU) and cg_nvptx.c (GPU) decide where values live and
 * which thread computes them; this file only turns operands into one result. Targets differ
 * in one hook: how a float math intrinsic ("llvm.exp", ...) is lowered (the host calls
 * LLVM's intrinsic, NVPTX the device math library, since the NVPTX backend cannot select
 * several of them). Include only from code generation: it names LLVM types. */
#ifndef VX_CG_EXPR_H
#define VX_CG_EXPR_H

#include <llvm-c/Core.h>
#include <stdbool.h>

#include "ast.h"

typedef struct CgExpr CgExpr;
/* Lowers the float intrinsic `name` ("llvm.exp", "llvm.pow", ...) applied to n f32 args. */
typedef LLVMValueRef (*CgMathHook)(CgExpr *e, const char *name, LLVMValueRef *args, int n);

struct CgExpr {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTypeRef i1, i32, f32;
  CgMathHook math;
  const char *unsupported; /* the first built-in this emitter could not lower, or NULL */
};

void cg_expr_init(CgExpr *e, LLVMContextRef ctx, LLVMModuleRef mod, LLVMBuilderRef b, CgMathHook math);
/* An LLVM intrinsic overloaded on one type, looked up by name. */
LLVMValueRef cg_expr_intrinsic(CgExpr *e, const char *name, LLVMTypeRef t, LLVMValueRef *args, int n);
/* The LLVM host math hook: the intrinsic itself. */
LLVMValueRef cg_expr_llvm_math(CgExpr *e, const char *name, LLVMValueRef *args, int n);

LLVMTypeRef cg_expr_type(const CgExpr *e, Type t);
LLVMValueRef cg_expr_convert(CgExpr *e, LLVMValueRef x, Type from, Type to);
Type cg_expr_common_type(Type a, Type b);
/* The constant of a VI_NUM value. */
LLVMValueRef cg_expr_number(CgExpr *e, Type t, double num);

/* Operations on operands as their VIR values produced them (types lt, rt); the result has
 * type t (the VirValue's). */
LLVMValueRef cg_expr_unary(CgExpr *e, Op op, Type t, Type xt, LLVMValueRef x);
LLVMValueRef cg_expr_binary(CgExpr *e, Op op, Type t, Type lt, Type rt, LLVMValueRef l, LLVMValueRef r);
LLVMValueRef cg_expr_select(CgExpr *e, Type t, LLVMValueRef cond, Type at, LLVMValueRef a, Type bt,
                            LLVMValueRef b);
/* The type the built-in `name` with result type t converts an operand of type at to. */
Type cg_expr_call_operand_type(const char *name, Type t, Type at);
/* The built-in function `name` with result type t over n operands of types at. */
LLVMValueRef cg_expr_call(CgExpr *e, const char *name, Type t, const Type *at, LLVMValueRef *a, int n);

/* Reductions, one element at a time: the accumulator's type, its start value, one step
 * (bitpos: the element's position along the reduced axes, for bits), the merge of two
 * partial accumulators, and the result (count: the elements a mean saw). */
Type cg_expr_reduce_type(Reduction red, Type t);
LLVMValueRef cg_expr_reduce_init(CgExpr *e, Reduction red, Type t);
LLVMValueRef cg_expr_reduce_step(CgExpr *e, Reduction red, Type t, LLVMValueRef acc, Type xt, LLVMValueRef x,
                                 LLVMValueRef bitpos);
LLVMValueRef cg_expr_reduce_merge(CgExpr *e, Reduction red, Type t, LLVMValueRef acc, LLVMValueRef y);
LLVMValueRef cg_expr_reduce_finish(CgExpr *e, Reduction red, LLVMValueRef acc, LLVMValueRef count);

#endif
