/* cg_expr.c - element-level expressions shared by the host and NVPTX code generators (see
 * cg_expr.h). Never decides where a value lives or which thread computes it; never prints. */
#include "cg_expr.h"

#include "builtins.h"

#include <string.h>

void cg_expr_init(CgExpr *e, LLVMContextRef ctx, LLVMModuleRef mod, LLVMBuilderRef b, CgMathHook math) {
  memset(e, 0, sizeof *e);
  e->ctx = ctx;
  e->mod = mod;
  e->b = b;
  e->i1 = LLVMInt1TypeInContext(ctx);
  e->i32 = LLVMInt32TypeInContext(ctx);
  e->f32 = LLVMFloatTypeInContext(ctx);
  e->math = math;
}

static LLVMValueRef i32c(CgExpr *e, long long v) { return LLVMConstInt(e->i32, (unsigned long long)v, 1); }
static LLVMValueRef f32c(CgExpr *e, double v) { return LLVMConstReal(e->f32, v); }

LLVMValueRef cg_expr_intrinsic(CgExpr *e, const char *name, LLVMTypeRef t, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(e->mod, id, &t, 1);
  LLVMTypeRef ft = LLVMIntrinsicGetType(e->ctx, id, &t, 1);
  return LLVMBuildCall2(e->b, ft, fn, args, (unsigned)n, "");
}

LLVMValueRef cg_expr_llvm_math(CgExpr *e, const char *name, LLVMValueRef *args, int n) {
  return cg_expr_intrinsic(e, name, e->f32, args, n);
}

LLVMTypeRef cg_expr_type(const CgExpr *e, Type t) { return t == TY_F32 ? e->f32 : t == TY_BOOL ? e->i1 : e->i32; }

LLVMValueRef cg_expr_number(CgExpr *e, Type t, double num) {
  return t == TY_F32 ? f32c(e, num) : t == TY_BOOL ? LLVMConstInt(e->i1, num != 0, 0) : i32c(e, (long long)num);
}

LLVMValueRef cg_expr_convert(CgExpr *e, LLVMValueRef x, Type from, Type to) {
  if (from == to)
    return x;
  if (to == TY_F32) {
    if (from == TY_BOOL)
      return LLVMBuildUIToFP(e->b, x, e->f32, "");
    return from == TY_U32 ? LLVMBuildUIToFP(e->b, x, e->f32, "") : LLVMBuildSIToFP(e->b, x, e->f32, "");
  }
  if (to == TY_BOOL) {
    if (from == TY_F32)
      return LLVMBuildFCmp(e->b, LLVMRealUNE, x, f32c(e, 0), "");
    return LLVMBuildICmp(e->b, LLVMIntNE, x, i32c(e, 0), "");
  }
  /* to i32 / u32 */
  if (from == TY_F32)
    return to == TY_U32 ? LLVMBuildFPToUI(e->b, x, e->i32, "") : LLVMBuildFPToSI(e->b, x, e->i32, "");
  if (from == TY_BOOL)
    return LLVMBuildZExt(e->b, x, e->i32, "");
  return x; /* i32 <-> u32 share a representation */
}

Type cg_expr_common_type(Type a, Type b) {
  if (a == TY_F32 || b == TY_F32)
    return TY_F32;
  if (a == TY_U32 || b == TY_U32)
    return TY_U32;
  if (a == TY_BOOL && b == TY_BOOL)
    return TY_BOOL;
  return TY_I32;
}

LLVMValueRef cg_expr_unary(CgExpr *e, Op op, Type t, Type xt, LLVMValueRef x) {
  if (op == OP_NOT)
    return LLVMBuildNot(e->b, x, "");
  if (op == OP_BITNOT)
    return LLVMBuildNot(e->b, cg_expr_convert(e, x, xt, t), "");
  x = cg_expr_convert(e, x, xt, t);
  return t == TY_F32 ? LLVMBuildFNeg(e->b, x, "") : LLVMBuildNeg(e->b, x, "");
}

LLVMValueRef cg_expr_select(CgExpr *e, Type t, LLVMValueRef cond, Type at, LLVMValueRef a, Type bt,
                            LLVMValueRef b) {
  return LLVMBuildSelect(e->b, cond, cg_expr_convert(e, a, at, t), cg_expr_convert(e, b, bt, t), "");
}

LLVMValueRef cg_expr_binary(CgExpr *e, Op op, Type t, Type lt, Type rt, LLVMValueRef l, LLVMValueRef r) {
  if (op == OP_AND || op == OP_OR)
    return op == OP_AND ? LLVMBuildAnd(e->b, l, r, "") : LLVMBuildOr(e->b, l, r, "");
  Type ct = (op >= OP_EQ && op <= OP_GE) ? cg_expr_common_type(lt, rt) : t;
  l = cg_expr_convert(e, l, lt, ct);
  r = cg_expr_convert(e, r, rt, ct);
  bool fl = ct == TY_F32, un = ct == TY_U32;
  LLVMBuilderRef b = e->b;
  switch (op) {
  case OP_ADD: return fl ? LLVMBuildFAdd(b, l, r, "") : LLVMBuildAdd(b, l, r, "");
  case OP_SUB: return fl ? LLVMBuildFSub(b, l, r, "") : LLVMBuildSub(b, l, r, "");
  case OP_MUL: return fl ? LLVMBuildFMul(b, l, r, "") : LLVMBuildMul(b, l, r, "");
  case OP_DIV:
  case OP_MOD: {
    if (fl)
      return LLVMBuildFDiv(b, l, r, "");
    /* integer division by zero is defined here as 0, not undefined behaviour */
    LLVMValueRef zero = LLVMBuildICmp(b, LLVMIntEQ, r, i32c(e, 0), "");
    LLVMValueRef safe = LLVMBuildSelect(b, zero, i32c(e, 1), r, "");
    LLVMValueRef q = op == OP_DIV ? (un ? LLVMBuildUDiv(b, l, safe, "") : LLVMBuildSDiv(b, l, safe, ""))
                                  : (un ? LLVMBuildURem(b, l, safe, "") : LLVMBuildSRem(b, l, safe, ""));
    return LLVMBuildSelect(b, zero, i32c(e, 0), q, "");
  }
  case OP_BITAND: return LLVMBuildAnd(b, l, r, "");
  case OP_BITOR: return LLVMBuildOr(b, l, r, "");
  case OP_BITXOR: return LLVMBuildXor(b, l, r, "");
  case OP_SHL:
  case OP_SHR: {
    /* shifts of 32 or more give 0 instead of poison */
    LLVMValueRef big = LLVMBuildICmp(b, LLVMIntUGE, r, i32c(e, 32), "");
    LLVMValueRef amt = LLVMBuildAnd(b, r, i32c(e, 31), "");
    LLVMValueRef x = op == OP_SHL ? LLVMBuildShl(b, l, amt, "")
                     : un ? LLVMBuildLShr(b, l, amt, "") : LLVMBuildAShr(b, l, amt, "");
    return LLVMBuildSelect(b, big, i32c(e, 0), x, "");
  }
  default: {
    static const LLVMRealPredicate fp[] = {[OP_EQ] = LLVMRealOEQ, [OP_NE] = LLVMRealUNE, [OP_LT] = LLVMRealOLT,
                                          [OP_LE] = LLVMRealOLE, [OP_GT] = LLVMRealOGT, [OP_GE] = LLVMRealOGE};
    static const LLVMIntPredicate sp[] = {[OP_EQ] = LLVMIntEQ, [OP_NE] = LLVMIntNE, [OP_LT] = LLVMIntSLT,
                                         [OP_LE] = LLVMIntSLE, [OP_GT] = LLVMIntSGT, [OP_GE] = LLVMIntSGE};
    static const LLVMIntPredicate up[] = {[OP_EQ] = LLVMIntEQ, [OP_NE] = LLVMIntNE, [OP_LT] = LLVMIntULT,
                                         [OP_LE] = LLVMIntULE, [OP_GT] = LLVMIntUGT, [OP_GE] = LLVMIntUGE};
    if (fl)
      return LLVMBuildFCmp(b, fp[op], l, r, "");
    return LLVMBuildICmp(b, un ? up[op] : sp[op], l, r, "");
  }
  }
}

/* Built-ins (builtins.h): how each types its operands, and the intrinsic a float function
 * lowers through the target's math hook (NULL: lowered here by hand). */
static const struct {
  BuiltinOperands ops;
  const char *intrinsic;
} builtins[BI_COUNT] = {
#define CG_BUILTIN(name, cls, nargs, ops, intrinsic, fold1, fold2) [BI_##name] = {ops, intrinsic},
    VX_BUILTINS(CG_BUILTIN)
#undef CG_BUILTIN
};

static LLVMValueRef math1(CgExpr *e, const char *name, LLVMValueRef x) { return e->math(e, name, &x, 1); }

static LLVMValueRef minmax(CgExpr *e, bool mx, Type t, LLVMValueRef a, LLVMValueRef b) {
  const char *in = t == TY_F32 ? (mx ? "llvm.maxnum" : "llvm.minnum")
                   : t == TY_U32 ? (mx ? "llvm.umax" : "llvm.umin")
                                 : (mx ? "llvm.smax" : "llvm.smin");
  LLVMValueRef args[2] = {a, b};
  return cg_expr_intrinsic(e, in, cg_expr_type(e, t), args, 2);
}

static LLVMValueRef sign_of(CgExpr *e, Type t, LLVMValueRef x) {
  LLVMBuilderRef b = e->b;
  if (t == TY_F32) {
    LLVMValueRef pos = LLVMBuildUIToFP(b, LLVMBuildFCmp(b, LLVMRealOGT, x, f32c(e, 0), ""), e->f32, "");
    LLVMValueRef neg = LLVMBuildUIToFP(b, LLVMBuildFCmp(b, LLVMRealOLT, x, f32c(e, 0), ""), e->f32, "");
    return LLVMBuildFSub(b, pos, neg, "");
  }
  LLVMValueRef pos = LLVMBuildZExt(b, LLVMBuildICmp(b, LLVMIntSGT, x, i32c(e, 0), ""), e->i32, "");
  LLVMValueRef neg = LLVMBuildZExt(b, LLVMBuildICmp(b, LLVMIntSLT, x, i32c(e, 0), ""), e->i32, "");
  return LLVMBuildSub(b, pos, neg, "");
}

Type cg_expr_call_operand_type(const char *n, Type t, Type at) {
  Builtin k = builtin_find(n);
  if (k == BI_COUNT)
    return at;
  return builtins[k].ops == OPS_F32 ? TY_F32 : builtins[k].ops == OPS_SAME ? t : at;
}

LLVMValueRef cg_expr_call(CgExpr *e, const char *n, Type t, const Type *at, LLVMValueRef *args, int nargs) {
  Builtin k = builtin_find(n);
  if (k == BI_COUNT || builtins[k].ops == OPS_NONE) {
    if (!e->unsupported)
      e->unsupported = n;
    return LLVMConstNull(cg_expr_type(e, t));
  }
  LLVMValueRef a[3];
  for (int i = 0; i < nargs && i < 3; i++)
    a[i] = cg_expr_convert(e, args[i], at[i], cg_expr_call_operand_type(n, t, at[i]));
  if (builtins[k].intrinsic)
    return e->math(e, builtins[k].intrinsic, a, nargs);
  LLVMBuilderRef b = e->b;
  switch (k) {
  case BI_rsqrt:
    return LLVMBuildFDiv(b, f32c(e, 1), math1(e, "llvm.sqrt", a[0]), "");
  case BI_sigmoid:
    return LLVMBuildFDiv(b, f32c(e, 1), LLVMBuildFAdd(b, f32c(e, 1), math1(e, "llvm.exp", LLVMBuildFNeg(b, a[0], "")), ""), "");
  case BI_max:
  case BI_min:
    return minmax(e, k == BI_max, t, a[0], a[1]);
  case BI_clamp:
    return minmax(e, false, t, minmax(e, true, t, a[0], a[1]), a[2]);
  case BI_abs: {
    if (t == TY_F32)
      return cg_expr_intrinsic(e, "llvm.fabs", e->f32, a, 1);
    LLVMValueRef ab[2] = {a[0], LLVMConstInt(e->i1, 0, 0)};
    return cg_expr_intrinsic(e, "llvm.abs", e->i32, ab, 2);
  }
  case BI_sign:
    return sign_of(e, t, a[0]);
  case BI_popcount:
    return cg_expr_intrinsic(e, "llvm.ctpop", e->i32, a, 1);
  default:
    return cg_expr_convert(e, a[0], at[0], t); /* int, u32, float, f32 */
  }
}

/* ---- reductions: the accumulator's type, its start, one step, merging two, the result ---- */

Type cg_expr_reduce_type(Reduction red, Type t) { return red == RED_MEAN || red == RED_NORM ? TY_F32 : t; }

LLVMValueRef cg_expr_reduce_init(CgExpr *e, Reduction red, Type t) {
  Type at = cg_expr_reduce_type(red, t);
  switch (red) {
  case RED_MAX:
    return at == TY_F32 ? f32c(e, -__builtin_inf()) : at == TY_U32 ? i32c(e, 0) : i32c(e, -2147483647 - 1);
  case RED_MIN:
    return at == TY_F32 ? f32c(e, __builtin_inf()) : at == TY_U32 ? i32c(e, -1) : i32c(e, 2147483647);
  case RED_ALL:
    return LLVMConstInt(e->i1, 1, 0);
  default:
    return LLVMConstNull(cg_expr_type(e, at));
  }
}

/* acc and y are accumulators (for a step, y is one element already prepared). */
LLVMValueRef cg_expr_reduce_merge(CgExpr *e, Reduction red, Type t, LLVMValueRef acc, LLVMValueRef y) {
  Type at = cg_expr_reduce_type(red, t);
  switch (red) {
  case RED_SUM:
  case RED_MEAN:
  case RED_NORM:
  case RED_COUNT:
    return at == TY_F32 ? LLVMBuildFAdd(e->b, acc, y, "") : LLVMBuildAdd(e->b, acc, y, "");
  case RED_MAX:
  case RED_MIN:
    return minmax(e, red == RED_MAX, t, acc, y);
  case RED_BITS:
  case RED_ANY:
    return LLVMBuildOr(e->b, acc, y, "");
  default: /* RED_ALL */
    return LLVMBuildAnd(e->b, acc, y, "");
  }
}

LLVMValueRef cg_expr_reduce_step(CgExpr *e, Reduction red, Type t, LLVMValueRef acc, Type xt, LLVMValueRef x,
                                 LLVMValueRef bitpos) {
  switch (red) {
  case RED_SUM:
  case RED_MEAN:
  case RED_NORM: {
    LLVMValueRef y = cg_expr_convert(e, x, xt, cg_expr_reduce_type(red, t));
    if (red == RED_NORM)
      y = LLVMBuildFMul(e->b, y, y, "");
    return cg_expr_reduce_merge(e, red, t, acc, y);
  }
  case RED_MAX:
  case RED_MIN:
    return cg_expr_reduce_merge(e, red, t, acc, cg_expr_convert(e, x, xt, t));
  case RED_COUNT:
    return LLVMBuildAdd(e->b, acc, LLVMBuildZExt(e->b, x, e->i32, ""), "");
  case RED_BITS: {
    LLVMValueRef bit = LLVMBuildShl(e->b, LLVMBuildZExt(e->b, x, e->i32, ""), LLVMBuildAnd(e->b, bitpos, i32c(e, 31), ""), "");
    return LLVMBuildOr(e->b, acc, bit, "");
  }
  default:
    return cg_expr_reduce_merge(e, red, t, acc, x);
  }
}

LLVMValueRef cg_expr_reduce_finish(CgExpr *e, Reduction red, LLVMValueRef acc, LLVMValueRef count) {
  if (red == RED_MEAN)
    return LLVMBuildFDiv(e->b, acc, LLVMBuildSIToFP(e->b, count, e->f32, ""), "mean"); /* empty: NaN, 0/0 */
  if (red == RED_NORM)
    return math1(e, "llvm.sqrt", acc);
  return acc;
}
