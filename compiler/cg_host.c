/* cg_host.c - VIR to LLVM IR for the CPU backend: one function `vxk_KIND(vxk_ctx *)` per
 * kernel, following the ABI in runtime/vxk.h. Every store becomes a loop nest over the
 * stored axes; a value is computed where it is used, reductions as inner loops, except the
 * reductions that the hoisting pass moved to a kernel's row block, which are computed once
 * into a buffer before the first store that needs them. Loop counters and accumulators are
 * allocas that LLVM's mem2reg turns into registers. This file and cg_emit.c are the only
 * ones that include LLVM headers; it reports problems through the Diags, never exits. */
#include "cg_llvm.h"

#include "cg_expr.h"
#include "../runtime/vxk.h"

#include <llvm-c/Analysis.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* Field numbers of vxk_ctx (runtime/vxk.h). */
enum {
#define CX_FIELD(type, name, tag, kind) CX_##tag,
  VXK_CTX_FIELDS(CX_FIELD)
#undef CX_FIELD
  CX_NFIELDS
};
enum { CX_I32, CX_PTR }; /* the kinds of field VXK_CTX_FIELDS names */

typedef struct Loop {
  LLVMValueRef counter;
  LLVMBasicBlockRef cond, body, exit;
} Loop;

typedef struct Cg {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTypeRef i1, i8, i16, i32, i64, f32, f64, ptr, ctx_type;
  const VirModule *m;
  Diags *diags;
  Span where; /* the policy, for errors */
  bool failed;
  /* the function being built */
  LLVMValueRef fn;
  LLVMBasicBlockRef entry;
  LLVMValueRef field[CX_NFIELDS]; /* ctx fields loaded in the entry block */
  LLVMValueRef *axis_val;         /* by axis id: the current index (i32) */
  LLVMValueRef *buffer;           /* by value id: a materialised value's buffer */
  LLVMValueRef valid;             /* i1 alloca of the innermost reduction, or NULL */
  LLVMValueRef logit;             /* attend: f32 alloca holding the current logit */
  LLVMValueRef kv_load_fn;
  CgExpr e; /* the shared element-level emitter (cg_expr.c) */
} Cg;

static void cg_error(Cg *c, const char *msg, const char *what) {
  if (!c->failed) {
    Diagnostic *d = diag_error(c->diags, c->where, "E1001", "%s '%s'", msg, what);
    diag_hint(c->diags, d, "the host backend does not support this yet; see docs/ir.md");
  }
  c->failed = true;
}

/* ---- small builders ---- */

static LLVMValueRef i32c(Cg *c, long long v) { return LLVMConstInt(c->i32, (unsigned long long)v, 1); }
static LLVMValueRef f32c(Cg *c, double v) { return LLVMConstReal(c->f32, v); }

static LLVMValueRef entry_alloca(Cg *c, LLVMTypeRef t, const char *name) {
  LLVMBuilderRef eb = LLVMCreateBuilderInContext(c->ctx);
  LLVMValueRef first = LLVMGetFirstInstruction(c->entry);
  if (first)
    LLVMPositionBuilderBefore(eb, first);
  else
    LLVMPositionBuilderAtEnd(eb, c->entry);
  LLVMValueRef a = LLVMBuildAlloca(eb, t, name);
  LLVMDisposeBuilder(eb);
  return a;
}

static LLVMBasicBlockRef new_block(Cg *c, const char *name) {
  return LLVMAppendBasicBlockInContext(c->ctx, c->fn, name);
}

static LLVMValueRef intrinsic(Cg *c, const char *name, LLVMTypeRef t, LLVMValueRef *args, int n) {
  return cg_expr_intrinsic(&c->e, name, t, args, n);
}

static LLVMValueRef f32_fn1(Cg *c, const char *name, LLVMValueRef x) {
  return intrinsic(c, name, c->f32, &x, 1);
}

static void loop_begin(Cg *c, Loop *l, LLVMValueRef from, LLVMValueRef to, LLVMValueRef *index) {
  l->counter = entry_alloca(c, c->i32, "i");
  LLVMBuildStore(c->b, from, l->counter);
  l->cond = new_block(c, "loop");
  l->body = new_block(c, "body");
  l->exit = new_block(c, "done");
  LLVMBuildBr(c->b, l->cond);
  LLVMPositionBuilderAtEnd(c->b, l->cond);
  LLVMValueRef i = LLVMBuildLoad2(c->b, c->i32, l->counter, "");
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, i, to, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(c->b, l->body);
  *index = LLVMBuildLoad2(c->b, c->i32, l->counter, "");
}

static void loop_end(Cg *c, Loop *l) {
  LLVMValueRef i = LLVMBuildLoad2(c->b, c->i32, l->counter, "");
  LLVMBuildStore(c->b, LLVMBuildAdd(c->b, i, i32c(c, 1), ""), l->counter);
  LLVMBuildBr(c->b, l->cond);
  LLVMPositionBuilderAtEnd(c->b, l->exit);
}

/* Runs the rest of the current block only when cond holds; returns the join block. */
static LLVMBasicBlockRef when(Cg *c, LLVMValueRef cond) {
  LLVMBasicBlockRef then = new_block(c, "then"), join = new_block(c, "join");
  LLVMBuildCondBr(c->b, cond, then, join);
  LLVMPositionBuilderAtEnd(c->b, then);
  return join;
}

static void end_when(Cg *c, LLVMBasicBlockRef join) {
  LLVMBuildBr(c->b, join);
  LLVMPositionBuilderAtEnd(c->b, join);
}

/* ---- types and conversions ---- */

static LLVMTypeRef llvm_type(Cg *c, Type t) { return cg_expr_type(&c->e, t); }

static LLVMValueRef convert(Cg *c, LLVMValueRef x, Type from, Type to) { return cg_expr_convert(&c->e, x, from, to); }

/* ---- extents: VIR's extent trees, evaluated at run time ---- */

static LLVMValueRef param_value(Cg *c, const VirParam *param);

static LLVMValueRef extent_name(Cg *c, const char *name) {
  static const struct {
    const char *name;
    int field;
  } scalars[] = {{"D", CX_D}, {"G", CX_G}, {"P", CX_P}, {"npages", CX_NPAGES}};
  for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
    if (!strcmp(scalars[i].name, name))
      return c->field[scalars[i].field];
  for (int i = 0; i < c->m->nparams; i++)
    if (!strcmp(c->m->params[i]->name, name))
      return param_value(c, c->m->params[i]);
  cg_error(c, "unknown extent", name);
  return i32c(c, 1);
}

static LLVMValueRef extent(Cg *c, const VirExtent *e) {
  if (!e->op)
    return e->name ? extent_name(c, e->name) : i32c(c, e->num);
  LLVMValueRef l = extent(c, e->lhs), r = extent(c, e->rhs);
  switch (e->op) {
  case '+': return LLVMBuildAdd(c->b, l, r, "");
  case '-': return LLVMBuildSub(c->b, l, r, "");
  case '*': return LLVMBuildMul(c->b, l, r, "");
  case '/': return LLVMBuildSDiv(c->b, l, r, "");
  default: return LLVMBuildSRem(c->b, l, r, "");
  }
}

/* ---- leaves ---- */

static LLVMValueRef param_value(Cg *c, const VirParam *param) {
  LLVMValueRef idx = i32c(c, param->index);
  LLVMValueRef p = LLVMBuildGEP2(c->b, c->f64, c->field[CX_PARAMS], &idx, 1, "");
  LLVMValueRef d = LLVMBuildLoad2(c->b, c->f64, p, param->name);
  if (param->type == TY_F32)
    return LLVMBuildFPTrunc(c->b, d, c->f32, "");
  return LLVMBuildFPToSI(c->b, d, c->i32, "");
}

static LLVMValueRef scalar_value(Cg *c, const char *name) {
  static const struct {
    const char *name;
    int field;
  } fields[] = {{"D", CX_D},         {"G", CX_G},           {"P", CX_P},
                {"layer", CX_LAYER}, {"len", CX_LEN},       {"npages", CX_NPAGES},
                {"prefill_len", CX_PREFILL_LEN}};
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (!strcmp(fields[i].name, name))
      return c->field[fields[i].field];
  if (!strcmp(name, "pi"))
    return f32c(c, 3.14159265358979323846);
  if (!strcmp(name, "inf"))
    return f32c(c, __builtin_inf());
  cg_error(c, "unknown scalar", name);
  return i32c(c, 0);
}

/* ---- tensors in memory ---- */

static bool is_paged(const VirTensor *t) {
  return (t->kind == VT_PAGE || t->kind == VT_TOKEN || t->kind == VT_ROW) && t->rank > 0 &&
         vir_extent_is(t->exts[0], "npages");
}

static void mark_invalid_unless(Cg *c, LLVMValueRef ok) {
  if (!c->valid)
    return;
  LLVMValueRef cur = LLVMBuildLoad2(c->b, c->i1, c->valid, "");
  LLVMBuildStore(c->b, LLVMBuildAnd(c->b, cur, ok, ""), c->valid);
}

static LLVMValueRef to_i64(Cg *c, LLVMValueRef v) { return LLVMBuildSExt(c->b, v, c->i64, ""); }

/* Linear element index (i64) of tensor t at subs; paged tensors go through the page table,
 * one block per (physical page, KV head). */
static LLVMValueRef element_index(Cg *c, const VirTensor *t, LLVMValueRef *subs, bool paged) {
  LLVMValueRef idx = LLVMConstInt(c->i64, 0, 0);
  int first = 0;
  if (paged) {
    LLVMValueRef at = LLVMBuildGEP2(c->b, c->i32, c->field[CX_PAGE_IDS], &subs[0], 1, "");
    LLVMValueRef phys = LLVMBuildLoad2(c->b, c->i32, at, "page");
    LLVMValueRef block = LLVMBuildMul(c->b, to_i64(c, phys), to_i64(c, c->field[CX_KV_HEADS]), "");
    idx = LLVMBuildAdd(c->b, block, to_i64(c, c->field[CX_HEAD]), "");
    first = 1;
  }
  for (int i = first; i < t->rank; i++) {
    idx = LLVMBuildMul(c->b, idx, to_i64(c, extent(c, t->exts[i])), "");
    idx = LLVMBuildAdd(c->b, idx, to_i64(c, subs[i]), "");
  }
  return idx;
}

/* Tokens past the row's end are absent (docs/ir.md): a (page, token) pair of subscripts
 * marks the element invalid for the enclosing reduction. */
static void check_token_slots(Cg *c, const VirTensor *t, LLVMValueRef *subs) {
  for (int i = 0; i + 1 < t->rank; i++)
    if (vir_extent_is(t->exts[i], "npages") && vir_extent_is(t->exts[i + 1], "P")) {
      LLVMValueRef pos = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, subs[i], c->field[CX_P], ""), subs[i + 1], "");
      mark_invalid_unless(c, LLVMBuildICmp(c->b, LLVMIntSLT, pos, c->field[CX_LEN], ""));
    }
}

/* IEEE half <-> float by bit manipulation: LLVM's fpext/fptrunc of `half` become calls to
 * compiler-rt's __extendhfsf2/__truncsfhf2 on x86-64 without F16C, which a dlopen'ed policy
 * cannot count on finding. */
static LLVMValueRef half_to_float(Cg *c, LLVMValueRef h16) {
  LLVMValueRef h = LLVMBuildZExt(c->b, h16, c->i32, "");
  LLVMValueRef sign = LLVMBuildShl(c->b, LLVMBuildAnd(c->b, h, i32c(c, 0x8000), ""), i32c(c, 16), "");
  LLVMValueRef exp = LLVMBuildAnd(c->b, LLVMBuildLShr(c->b, h, i32c(c, 10), ""), i32c(c, 31), "");
  LLVMValueRef man = LLVMBuildAnd(c->b, h, i32c(c, 0x3ff), "");
  /* normal: rebias the exponent; inf/NaN: all-ones exponent; subnormal: man * 2^-24 exactly */
  LLVMValueRef normal = LLVMBuildOr(c->b, LLVMBuildShl(c->b, LLVMBuildAdd(c->b, exp, i32c(c, 112), ""), i32c(c, 23), ""),
                                    LLVMBuildShl(c->b, man, i32c(c, 13), ""), "");
  LLVMValueRef special = LLVMBuildOr(c->b, i32c(c, 0x7f800000), LLVMBuildShl(c->b, man, i32c(c, 13), ""), "");
  LLVMValueRef tiny = LLVMBuildBitCast(c->b, LLVMBuildFMul(c->b, LLVMBuildUIToFP(c->b, man, c->f32, ""),
                                                           f32c(c, 0x1p-24), ""), c->i32, "");
  LLVMValueRef bits = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, exp, i32c(c, 0), ""), tiny,
                                      LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, exp, i32c(c, 31), ""),
                                                      special, normal, ""), "");
  return LLVMBuildBitCast(c->b, LLVMBuildOr(c->b, bits, sign, ""), c->f32, "");
}

/* Round to nearest even; overflow to infinity; NaN stays NaN. */
static LLVMValueRef float_to_half(Cg *c, LLVMValueRef f) {
  LLVMValueRef b = LLVMBuildBitCast(c->b, f, c->i32, "");
  LLVMValueRef sign = LLVMBuildAnd(c->b, LLVMBuildLShr(c->b, b, i32c(c, 16), ""), i32c(c, 0x8000), "");
  LLVMValueRef a = LLVMBuildAnd(c->b, b, i32c(c, 0x7fffffff), "");
  /* normal halves: drop 13 mantissa bits with rounding, the carry may bump the exponent */
  LLVMValueRef r = LLVMBuildSub(c->b, a, i32c(c, 0x38000000), "");
  LLVMValueRef odd = LLVMBuildAnd(c->b, LLVMBuildLShr(c->b, r, i32c(c, 13), ""), i32c(c, 1), "");
  LLVMValueRef normal = LLVMBuildLShr(c->b, LLVMBuildAdd(c->b, r, LLVMBuildAdd(c->b, odd, i32c(c, 0xfff), ""), ""),
                                      i32c(c, 13), "");
  /* subnormal halves: |f| * 2^24 rounded to an integer, the ties to even by the FPU's own
   * round-to-nearest-even (adding and subtracting 2^23 in f32) */
  LLVMValueRef af = LLVMBuildBitCast(c->b, a, c->f32, "");
  LLVMValueRef scaled = LLVMBuildFMul(c->b, af, f32c(c, 0x1p24), "");
  LLVMValueRef rounded = LLVMBuildFSub(c->b, LLVMBuildFAdd(c->b, scaled, f32c(c, 0x1p23), ""), f32c(c, 0x1p23), "");
  LLVMValueRef tiny = LLVMBuildFPToUI(c->b, rounded, c->i32, "");
  LLVMValueRef nan = LLVMBuildICmp(c->b, LLVMIntUGT, a, i32c(c, 0x7f800000), "");
  LLVMValueRef big = LLVMBuildICmp(c->b, LLVMIntUGE, a, i32c(c, 0x477ff000), ""); /* rounds to >= 65536 */
  LLVMValueRef small = LLVMBuildICmp(c->b, LLVMIntULT, a, i32c(c, 0x38800000), ""); /* below 2^-14 */
  LLVMValueRef h = LLVMBuildSelect(c->b, small, tiny, normal, "");
  h = LLVMBuildSelect(c->b, big, i32c(c, 0x7c00), h, "");
  h = LLVMBuildSelect(c->b, nan, i32c(c, 0x7e00), h, "");
  return LLVMBuildTrunc(c->b, LLVMBuildOr(c->b, h, sign, ""), c->i16, "");
}

/* fp8 is OCP E4M3 (bias 7, no infinities, 0x7f/0xff are NaN, largest finite 448). */
static LLVMValueRef fp8_to_float(Cg *c, LLVMValueRef b8) {
  LLVMValueRef b = LLVMBuildZExt(c->b, b8, c->i32, "");
  LLVMValueRef sign = LLVMBuildShl(c->b, LLVMBuildAnd(c->b, b, i32c(c, 0x80), ""), i32c(c, 24), "");
  LLVMValueRef exp = LLVMBuildAnd(c->b, LLVMBuildLShr(c->b, b, i32c(c, 3), ""), i32c(c, 15), "");
  LLVMValueRef man = LLVMBuildAnd(c->b, b, i32c(c, 7), "");
  LLVMValueRef normal = LLVMBuildOr(c->b, LLVMBuildShl(c->b, LLVMBuildAdd(c->b, exp, i32c(c, 120), ""), i32c(c, 23), ""),
                                    LLVMBuildShl(c->b, man, i32c(c, 20), ""), "");
  LLVMValueRef tiny = LLVMBuildBitCast(c->b, LLVMBuildFMul(c->b, LLVMBuildUIToFP(c->b, man, c->f32, ""),
                                                           f32c(c, 0x1p-9), ""), c->i32, "");
  LLVMValueRef nan = LLVMBuildICmp(c->b, LLVMIntEQ, LLVMBuildAnd(c->b, b, i32c(c, 0x7f), ""), i32c(c, 0x7f), "");
  LLVMValueRef bits = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, exp, i32c(c, 0), ""), tiny, normal, "");
  bits = LLVMBuildSelect(c->b, nan, i32c(c, 0x7fc00000), LLVMBuildOr(c->b, bits, sign, ""), "");
  return LLVMBuildBitCast(c->b, bits, c->f32, "");
}

/* Round to nearest even, saturating at 448 (E4M3 has no infinity); NaN stays NaN. */
static LLVMValueRef float_to_fp8(Cg *c, LLVMValueRef f) {
  LLVMValueRef b = LLVMBuildBitCast(c->b, f, c->i32, "");
  LLVMValueRef sign = LLVMBuildAnd(c->b, LLVMBuildLShr(c->b, b, i32c(c, 24), ""), i32c(c, 0x80), "");
  LLVMValueRef a = LLVMBuildAnd(c->b, b, i32c(c, 0x7fffffff), "");
  LLVMValueRef r = LLVMBuildSub(c->b, a, i32c(c, 0x3c000000), ""); /* rebias 127 -> 7 */
  LLVMValueRef odd = LLVMBuildAnd(c->b, LLVMBuildLShr(c->b, r, i32c(c, 20), ""), i32c(c, 1), "");
  LLVMValueRef normal = LLVMBuildLShr(c->b, LLVMBuildAdd(c->b, r, LLVMBuildAdd(c->b, odd, i32c(c, 0x7ffff), ""), ""),
                                      i32c(c, 20), "");
  LLVMValueRef scaled = LLVMBuildFMul(c->b, LLVMBuildBitCast(c->b, a, c->f32, ""), f32c(c, 0x1p9), "");
  LLVMValueRef rounded = LLVMBuildFSub(c->b, LLVMBuildFAdd(c->b, scaled, f32c(c, 0x1p23), ""), f32c(c, 0x1p23), "");
  LLVMValueRef tiny = LLVMBuildFPToUI(c->b, rounded, c->i32, "");
  LLVMValueRef small = LLVMBuildICmp(c->b, LLVMIntULT, a, i32c(c, 0x3c800000), ""); /* below 2^-6 */
  LLVMValueRef h = LLVMBuildSelect(c->b, small, tiny, normal, "");
  /* 448 and everything that would round above it saturate to 0x7e */
  h = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntUGT, h, i32c(c, 0x7e), ""), i32c(c, 0x7e), h, "");
  h = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntUGT, a, i32c(c, 0x7f800000), ""), i32c(c, 0x7f), h, "");
  return LLVMBuildTrunc(c->b, LLVMBuildOr(c->b, h, sign, ""), c->i8, "");
}

static LLVMValueRef load_stored(Cg *c, LLVMValueRef base, LLVMValueRef idx, DType dt, Type type) {
  LLVMValueRef v;
  Type have = TY_F32;
  switch (dt) {
  case DT_F16:
    v = half_to_float(c, LLVMBuildLoad2(c->b, c->i16, LLVMBuildGEP2(c->b, c->i16, base, &idx, 1, ""), ""));
    break;
  case DT_BF16: {
    LLVMValueRef h = LLVMBuildLoad2(c->b, c->i16, LLVMBuildGEP2(c->b, c->i16, base, &idx, 1, ""), "");
    v = LLVMBuildBitCast(c->b, LLVMBuildShl(c->b, LLVMBuildZExt(c->b, h, c->i32, ""), i32c(c, 16), ""), c->f32, "");
    break;
  }
  case DT_INT8:
    v = LLVMBuildSExt(c->b, LLVMBuildLoad2(c->b, c->i8, LLVMBuildGEP2(c->b, c->i8, base, &idx, 1, ""), ""), c->i32, "");
    have = TY_I32;
    break;
  case DT_U32:
    v = LLVMBuildLoad2(c->b, c->i32, LLVMBuildGEP2(c->b, c->i32, base, &idx, 1, ""), "");
    have = TY_U32;
    break;
  case DT_FP8:
    v = fp8_to_float(c, LLVMBuildLoad2(c->b, c->i8, LLVMBuildGEP2(c->b, c->i8, base, &idx, 1, ""), ""));
    break;
  default:
    v = LLVMBuildLoad2(c->b, c->f32, LLVMBuildGEP2(c->b, c->f32, base, &idx, 1, ""), "");
    break;
  }
  return convert(c, v, have, type);
}

static void store_stored(Cg *c, LLVMValueRef base, LLVMValueRef idx, DType dt, LLVMValueRef v, Type type) {
  switch (dt) {
  case DT_F16:
    LLVMBuildStore(c->b, float_to_half(c, convert(c, v, type, TY_F32)),
                   LLVMBuildGEP2(c->b, c->i16, base, &idx, 1, ""));
    return;
  case DT_BF16: {
    /* round to nearest even on the upper 16 bits */
    LLVMValueRef bits = LLVMBuildBitCast(c->b, convert(c, v, type, TY_F32), c->i32, "");
    LLVMValueRef lsb = LLVMBuildAnd(c->b, LLVMBuildLShr(c->b, bits, i32c(c, 16), ""), i32c(c, 1), "");
    bits = LLVMBuildAdd(c->b, bits, LLVMBuildAdd(c->b, lsb, i32c(c, 0x7fff), ""), "");
    LLVMValueRef h = LLVMBuildTrunc(c->b, LLVMBuildLShr(c->b, bits, i32c(c, 16), ""), c->i16, "");
    LLVMBuildStore(c->b, h, LLVMBuildGEP2(c->b, c->i16, base, &idx, 1, ""));
    return;
  }
  case DT_INT8: {
    LLVMValueRef f = convert(c, v, type, TY_F32);
    f = f32_fn1(c, "llvm.round", f);
    LLVMValueRef lo = f32c(c, -128), hi = f32c(c, 127);
    LLVMValueRef args[2] = {f, lo};
    f = intrinsic(c, "llvm.maxnum", c->f32, args, 2);
    args[0] = f;
    args[1] = hi;
    f = intrinsic(c, "llvm.minnum", c->f32, args, 2);
    LLVMBuildStore(c->b, LLVMBuildFPToSI(c->b, f, c->i8, ""), LLVMBuildGEP2(c->b, c->i8, base, &idx, 1, ""));
    return;
  }
  case DT_U32:
    LLVMBuildStore(c->b, convert(c, v, type, TY_U32), LLVMBuildGEP2(c->b, c->i32, base, &idx, 1, ""));
    return;
  case DT_FP8:
    LLVMBuildStore(c->b, float_to_fp8(c, convert(c, v, type, TY_F32)), LLVMBuildGEP2(c->b, c->i8, base, &idx, 1, ""));
    return;
  default:
    LLVMBuildStore(c->b, convert(c, v, type, TY_F32), LLVMBuildGEP2(c->b, c->f32, base, &idx, 1, ""));
    return;
  }
}

static LLVMValueRef tensor_base(Cg *c, const VirTensor *t) {
  LLVMValueRef id = i32c(c, t->id);
  LLVMValueRef at = LLVMBuildGEP2(c->b, c->ptr, c->field[CX_TENSORS], &id, 1, "");
  return LLVMBuildLoad2(c->b, c->ptr, at, t->name);
}

/* k and v live in the cache's dtype, chosen at run time: a small internal function that
 * O2 inlines where it is hot. */
static LLVMValueRef kv_load(Cg *c, LLVMValueRef pool, LLVMValueRef idx) {
  LLVMTypeRef params[3] = {c->ptr, c->i64, c->i32};
  LLVMTypeRef ft = LLVMFunctionType(c->f32, params, 3, 0);
  if (!c->kv_load_fn) {
    c->kv_load_fn = LLVMAddFunction(c->mod, "vx_kv_load", ft);
    LLVMSetLinkage(c->kv_load_fn, LLVMInternalLinkage);
    LLVMBuilderRef saved = c->b;
    LLVMValueRef saved_fn = c->fn;
    c->b = LLVMCreateBuilderInContext(c->ctx);
    c->fn = c->kv_load_fn;
    LLVMBasicBlockRef e = new_block(c, "entry"), f16b = new_block(c, "f16"), bf16b = new_block(c, "bf16"),
                      f32b = new_block(c, "f32");
    LLVMPositionBuilderAtEnd(c->b, e);
    LLVMValueRef base = LLVMGetParam(c->fn, 0), i = LLVMGetParam(c->fn, 1), dt = LLVMGetParam(c->fn, 2);
    LLVMValueRef sw = LLVMBuildSwitch(c->b, dt, f32b, 2);
    LLVMAddCase(sw, i32c(c, 1), f16b);
    LLVMAddCase(sw, i32c(c, 2), bf16b);
    LLVMPositionBuilderAtEnd(c->b, f32b);
    LLVMBuildRet(c->b, load_stored(c, base, i, DT_F32, TY_F32));
    LLVMPositionBuilderAtEnd(c->b, f16b);
    LLVMBuildRet(c->b, load_stored(c, base, i, DT_F16, TY_F32));
    LLVMPositionBuilderAtEnd(c->b, bf16b);
    LLVMBuildRet(c->b, load_stored(c, base, i, DT_BF16, TY_F32));
    LLVMDisposeBuilder(c->b);
    c->b = saved;
    c->fn = saved_fn;
  }
  LLVMValueRef args[3] = {pool, idx, c->field[CX_KV_DTYPE]};
  return LLVMBuildCall2(c->b, ft, c->kv_load_fn, args, 3, "");
}

/* Index of key/value element (p, t, ch) of this row and head. */
static LLVMValueRef kv_index(Cg *c, LLVMValueRef p, LLVMValueRef t, LLVMValueRef ch) {
  LLVMValueRef at = LLVMBuildGEP2(c->b, c->i32, c->field[CX_PAGE_IDS], &p, 1, "");
  LLVMValueRef phys = LLVMBuildLoad2(c->b, c->i32, at, "page");
  LLVMValueRef idx = LLVMBuildMul(c->b, to_i64(c, phys), to_i64(c, c->field[CX_KV_HEADS]), "");
  idx = LLVMBuildAdd(c->b, idx, to_i64(c, c->field[CX_HEAD]), "");
  idx = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, idx, to_i64(c, c->field[CX_P]), ""), to_i64(c, t), "");
  return LLVMBuildAdd(c->b, LLVMBuildMul(c->b, idx, to_i64(c, c->field[CX_D]), ""), to_i64(c, ch), "");
}

/* ---- values ---- */

static LLVMValueRef gen(Cg *c, const VirValue *v);

static LLVMValueRef token_pos(Cg *c, LLVMValueRef p, LLVMValueRef t) {
  return LLVMBuildAdd(c->b, LLVMBuildMul(c->b, p, c->field[CX_P], ""), t, "");
}

static LLVMValueRef gen_input(Cg *c, const VirValue *v, LLVMValueRef *s) {
  const char *name = v->tensor->name;
  if (!strcmp(name, "logit"))
    return LLVMBuildLoad2(c->b, c->f32, c->logit, "logit");
  if (!strcmp(name, "q")) {
    LLVMValueRef idx = to_i64(c, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, s[0], c->field[CX_D], ""), s[1], ""));
    return LLVMBuildLoad2(c->b, c->f32, LLVMBuildGEP2(c->b, c->f32, c->field[CX_Q], &idx, 1, ""), "q");
  }
  if (!strcmp(name, "from_end"))
    return LLVMBuildSub(c->b, LLVMBuildSub(c->b, c->field[CX_NPAGES], i32c(c, 1), ""), s[0], "");
  check_token_slots(c, v->tensor, s);
  if (!strcmp(name, "k") || !strcmp(name, "v"))
    return kv_load(c, c->field[name[0] == 'k' ? CX_K : CX_V], kv_index(c, s[0], s[1], s[2]));
  if (!strcmp(name, "pos"))
    return token_pos(c, s[0], s[1]);
  if (!strcmp(name, "kept")) {
    LLVMValueRef idx = to_i64(c, token_pos(c, s[0], s[1]));
    LLVMValueRef b = LLVMBuildLoad2(c->b, c->i8, LLVMBuildGEP2(c->b, c->i8, c->field[CX_KEPT], &idx, 1, ""), "");
    return LLVMBuildICmp(c->b, LLVMIntNE, b, LLVMConstInt(c->i8, 0, 0), "kept");
  }
  if (!strcmp(name, "prob")) {
    LLVMValueRef row = LLVMBuildMul(c->b, s[0], LLVMBuildMul(c->b, c->field[CX_NPAGES], c->field[CX_P], ""), "");
    LLVMValueRef idx = to_i64(c, LLVMBuildAdd(c->b, row, token_pos(c, s[1], s[2]), ""));
    return LLVMBuildLoad2(c->b, c->f32, LLVMBuildGEP2(c->b, c->f32, c->field[CX_PROB], &idx, 1, ""), "prob");
  }
  cg_error(c, "input tensor", name);
  return LLVMConstNull(llvm_type(c, v->type));
}

static LLVMValueRef gen_load(Cg *c, const VirValue *v) {
  const VirTensor *t = v->tensor;
  LLVMValueRef s[8];
  if (t->rank > 8) {
    cg_error(c, "tensor of rank over 8", t->name);
    return LLVMConstNull(llvm_type(c, v->type));
  }
  for (int i = 0; i < t->rank; i++) {
    s[i] = convert(c, gen(c, v->args[i]), v->args[i]->type, TY_I32);
    if (v->args[i]->op != VI_AXIS) {
      /* a computed subscript out of range reads element 0 and marks the element absent */
      LLVMValueRef n = extent(c, t->exts[i]);
      LLVMValueRef in = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, s[i], i32c(c, 0), ""),
                                     LLVMBuildICmp(c->b, LLVMIntSLT, s[i], n, ""), "");
      mark_invalid_unless(c, in);
      s[i] = LLVMBuildSelect(c->b, in, s[i], i32c(c, 0), "");
    }
  }
  if (t->kind == VT_INPUT)
    return gen_input(c, v, s);
  check_token_slots(c, t, s);
  LLVMValueRef idx = element_index(c, t, s, is_paged(t));
  return load_stored(c, tensor_base(c, t), idx, t->dtype, v->type);
}

static LLVMValueRef gen_call(Cg *c, const VirValue *v) {
  LLVMValueRef a[3];
  Type at[3];
  for (int i = 0; i < v->nargs && i < 3; i++) {
    at[i] = cg_expr_call_operand_type(v->name, v->type, v->args[i]->type);
    a[i] = convert(c, gen(c, v->args[i]), v->args[i]->type, at[i]);
  }
  LLVMValueRef r = cg_expr_call(&c->e, v->name, v->type, at, a, v->nargs);
  if (c->e.unsupported)
    cg_error(c, "function", c->e.unsupported);
  return r;
}

/* Operands are converted as they are generated, so the IR keeps the order it always had. */
static LLVMValueRef gen_binary(Cg *c, const VirValue *v) {
  Op op = v->opcode;
  Type lt = v->args[0]->type, rt = v->args[1]->type;
  Type ct = op == OP_AND || op == OP_OR ? TY_BOOL
            : op >= OP_EQ && op <= OP_GE ? cg_expr_common_type(lt, rt)
                                         : v->type;
  LLVMValueRef l = convert(c, gen(c, v->args[0]), lt, ct);
  LLVMValueRef r = convert(c, gen(c, v->args[1]), rt, ct);
  return cg_expr_binary(&c->e, op, v->type, ct, ct, l, r);
}

/* Loops over axes[0..n) (each over its extent), calling body at the innermost point. */
typedef void (*BodyFn)(Cg *c, void *arg);

static void loop_nest(Cg *c, VirAxis *const *axes, int n, BodyFn body, void *arg) {
  if (n == 0) {
    body(c, arg);
    return;
  }
  Loop l;
  LLVMValueRef i;
  loop_begin(c, &l, i32c(c, 0), extent(c, axes[0]->ext), &i);
  c->axis_val[axes[0]->id] = i;
  loop_nest(c, axes + 1, n - 1, body, arg);
  loop_end(c, &l);
}

typedef struct ReduceState {
  const VirValue *v;
  LLVMValueRef acc, count;
  LLVMTypeRef acc_type;
} ReduceState;

static LLVMValueRef linear_over(Cg *c, VirAxis *const *axes, int n) {
  LLVMValueRef idx = i32c(c, 0);
  for (int i = 0; i < n; i++)
    idx = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, idx, extent(c, axes[i]->ext), ""), c->axis_val[axes[i]->id], "");
  return idx;
}

static void reduce_body(Cg *c, void *arg) {
  ReduceState *st = arg;
  const VirValue *v = st->v;
  LLVMBuildStore(c->b, LLVMConstInt(c->i1, 1, 0), c->valid);
  Type xt = v->args[0]->type;
  LLVMValueRef x = gen(c, v->args[0]);
  LLVMValueRef ok = LLVMBuildLoad2(c->b, c->i1, c->valid, "");
  if (v->nargs == 2)
    ok = LLVMBuildAnd(c->b, ok, gen(c, v->args[1]), "");
  LLVMBasicBlockRef join = when(c, ok);
  LLVMValueRef acc = LLVMBuildLoad2(c->b, st->acc_type, st->acc, "");
  LLVMValueRef pos = v->red == RED_BITS ? linear_over(c, v->axes, v->naxes) : NULL;
  LLVMValueRef next = cg_expr_reduce_step(&c->e, v->red, v->type, acc, xt, x, pos);
  LLVMBuildStore(c->b, next, st->acc);
  if (st->count)
    LLVMBuildStore(c->b, LLVMBuildAdd(c->b, LLVMBuildLoad2(c->b, c->i32, st->count, ""), i32c(c, 1), ""), st->count);
  end_when(c, join);
}

static LLVMValueRef gen_softmax(Cg *c, const VirValue *v);

static LLVMValueRef gen_reduce(Cg *c, const VirValue *v) {
  if (v->red == RED_SOFTMAX)
    return gen_softmax(c, v);
  ReduceState st = {v, NULL, NULL, NULL};
  Type at = cg_expr_reduce_type(v->red, v->type);
  st.acc_type = llvm_type(c, at);
  st.acc = entry_alloca(c, st.acc_type, "acc");
  LLVMValueRef init = cg_expr_reduce_init(&c->e, v->red, v->type);
  LLVMBuildStore(c->b, init, st.acc);
  if (v->red == RED_MEAN) {
    st.count = entry_alloca(c, c->i32, "n");
    LLVMBuildStore(c->b, i32c(c, 0), st.count);
  }
  LLVMValueRef saved_valid = c->valid;
  c->valid = entry_alloca(c, c->i1, "valid");
  loop_nest(c, v->axes, v->naxes, reduce_body, &st);
  c->valid = saved_valid;
  LLVMValueRef r = LLVMBuildLoad2(c->b, st.acc_type, st.acc, "");
  LLVMValueRef n = v->red == RED_MEAN ? LLVMBuildLoad2(c->b, c->i32, st.count, "") : NULL;
  r = cg_expr_reduce_finish(&c->e, v->red, r, n);
  return r;
}

/* softmax[p] x: exp(x - max_p x) / sum_p exp(x - max_p x) at the current p. */
static LLVMValueRef gen_softmax(Cg *c, const VirValue *v) {
  if (v->naxes != 1) {
    cg_error(c, "softmax over several axes", v->axes[0]->name);
    return f32c(c, 0);
  }
  VirAxis *a = v->axes[0];
  LLVMValueRef here = c->axis_val[a->id];
  LLVMValueRef mx = entry_alloca(c, c->f32, "smax"), sum = entry_alloca(c, c->f32, "ssum");
  LLVMBuildStore(c->b, f32c(c, -__builtin_inf()), mx);
  LLVMBuildStore(c->b, f32c(c, 0), sum);
  LLVMValueRef saved_valid = c->valid;
  c->valid = entry_alloca(c, c->i1, "valid");
  for (int pass = 0; pass < 2; pass++) {
    Loop l;
    LLVMValueRef i;
    loop_begin(c, &l, i32c(c, 0), extent(c, a->ext), &i);
    c->axis_val[a->id] = i;
    LLVMBuildStore(c->b, LLVMConstInt(c->i1, 1, 0), c->valid);
    LLVMValueRef x = convert(c, gen(c, v->args[0]), v->args[0]->type, TY_F32);
    LLVMBasicBlockRef join = when(c, LLVMBuildLoad2(c->b, c->i1, c->valid, ""));
    LLVMValueRef m = LLVMBuildLoad2(c->b, c->f32, mx, "");
    if (pass == 0) {
      LLVMValueRef args[2] = {m, x};
      LLVMBuildStore(c->b, intrinsic(c, "llvm.maxnum", c->f32, args, 2), mx);
    } else {
      LLVMValueRef e = f32_fn1(c, "llvm.exp", LLVMBuildFSub(c->b, x, m, ""));
      LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, LLVMBuildLoad2(c->b, c->f32, sum, ""), e, ""), sum);
    }
    end_when(c, join);
    loop_end(c, &l);
  }
  c->valid = saved_valid;
  c->axis_val[a->id] = here;
  LLVMValueRef x = convert(c, gen(c, v->args[0]), v->args[0]->type, TY_F32);
  LLVMValueRef e = f32_fn1(c, "llvm.exp", LLVMBuildFSub(c->b, x, LLVMBuildLoad2(c->b, c->f32, mx, ""), ""));
  return LLVMBuildFDiv(c->b, e, LLVMBuildLoad2(c->b, c->f32, sum, ""), "softmax");
}

static LLVMValueRef gen_uncached(Cg *c, const VirValue *v) {
  switch (v->op) {
  case VI_NUM:
    return cg_expr_number(&c->e, v->type, v->num);
  case VI_PARAM:
    return param_value(c, v->param);
  case VI_SCALAR:
    return scalar_value(c, v->name);
  case VI_AXIS:
    if (!c->axis_val[v->axis->id]) {
      cg_error(c, "axis without a loop", v->axis->name);
      return i32c(c, 0);
    }
    return c->axis_val[v->axis->id];
  case VI_LOAD:
    return gen_load(c, v);
  case VI_UNARY:
    return cg_expr_unary(&c->e, v->opcode, v->type, v->args[0]->type, gen(c, v->args[0]));
  case VI_BINARY:
    return gen_binary(c, v);
  case VI_SELECT: {
    LLVMValueRef cond = gen(c, v->args[0]);
    LLVMValueRef a = convert(c, gen(c, v->args[1]), v->args[1]->type, v->type);
    LLVMValueRef b = convert(c, gen(c, v->args[2]), v->args[2]->type, v->type);
    return cg_expr_select(&c->e, v->type, cond, v->type, a, v->type, b);
  }
  case VI_CALL:
    return gen_call(c, v);
  case VI_REDUCE:
    return gen_reduce(c, v);
  }
  return LLVMConstNull(llvm_type(c, v->type));
}

static LLVMTypeRef buffer_elem(Cg *c, Type t) { return t == TY_BOOL ? c->i8 : llvm_type(c, t); }

static LLVMValueRef gen(Cg *c, const VirValue *v) {
  if (!c->buffer[v->id])
    return gen_uncached(c, v);
  LLVMValueRef idx = to_i64(c, linear_over(c, v->dom, v->ndom));
  LLVMTypeRef et = buffer_elem(c, v->type);
  LLVMValueRef x = LLVMBuildLoad2(c->b, et, LLVMBuildGEP2(c->b, et, c->buffer[v->id], &idx, 1, ""), "");
  return v->type == TY_BOOL ? LLVMBuildTrunc(c->b, x, c->i1, "") : x;
}

/* ---- materialising hoisted reductions ---- */

typedef struct Materialise {
  const VirValue *v;
  LLVMValueRef buf;
} Materialise;

static void materialise_body(Cg *c, void *arg) {
  Materialise *mt = arg;
  LLVMValueRef x = gen_uncached(c, mt->v);
  if (mt->v->type == TY_BOOL)
    x = LLVMBuildZExt(c->b, x, c->i8, "");
  LLVMValueRef idx = to_i64(c, linear_over(c, mt->v->dom, mt->v->ndom));
  LLVMTypeRef et = buffer_elem(c, mt->v->type);
  LLVMBuildStore(c->b, x, LLVMBuildGEP2(c->b, et, mt->buf, &idx, 1, ""));
}

static LLVMValueRef malloc_fn(Cg *c, LLVMTypeRef *ft) {
  *ft = LLVMFunctionType(c->ptr, &c->i64, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(c->mod, "malloc");
  return f ? f : LLVMAddFunction(c->mod, "malloc", *ft);
}

/* Buffers of this kernel, freed before it returns. */
typedef struct Buffers {
  LLVMValueRef list[256];
  int n;
} Buffers;

static void materialise(Cg *c, const VirValue *v, Buffers *bufs) {
  LLVMValueRef size = LLVMConstInt(c->i64, 4, 0);
  for (int i = 0; i < v->ndom; i++)
    size = LLVMBuildMul(c->b, size, to_i64(c, extent(c, v->dom[i]->ext)), "");
  LLVMTypeRef ft;
  LLVMValueRef fn = malloc_fn(c, &ft);
  LLVMValueRef buf = LLVMBuildCall2(c->b, ft, fn, &size, 1, "hoisted");
  Materialise mt = {v, buf};
  loop_nest(c, v->dom, v->ndom, materialise_body, &mt);
  c->buffer[v->id] = buf;
  if (bufs->n < 256)
    bufs->list[bufs->n++] = buf;
}

static bool in_row_block(const VirKernel *k, const VirValue *v) {
  for (const VirValue *x = k->row.first; x; x = x->next)
    if (x == v)
      return true;
  return false;
}

/* Materialises, in block order, the hoisted reductions that value v reads. */
static void materialise_needed(Cg *c, const VirKernel *k, const VirValue *v, Buffers *bufs) {
  if (c->buffer[v->id])
    return;
  for (int i = 0; i < v->nargs; i++)
    materialise_needed(c, k, v->args[i], bufs);
  if (v->op == VI_REDUCE && v->red != RED_SOFTMAX && in_row_block(k, v))
    materialise(c, v, bufs);
}

static void free_buffers(Cg *c, Buffers *bufs) {
  LLVMTypeRef ft = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), &c->ptr, 1, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(c->mod, "free");
  if (!fn)
    fn = LLVMAddFunction(c->mod, "free", ft);
  for (int i = 0; i < bufs->n; i++)
    LLVMBuildCall2(c->b, ft, fn, &bufs->list[i], 1, "");
}

/* Loads the ctx fields at the top of a new function named name. */
static void begin_function(Cg *c, const char *name, LLVMTypeRef ft) {
  c->fn = LLVMAddFunction(c->mod, name, ft);
  c->entry = new_block(c, "entry");
  LLVMPositionBuilderAtEnd(c->b, c->entry);
  LLVMValueRef ctxp = LLVMGetParam(c->fn, 0);
  for (int i = 0; i < CX_NFIELDS; i++) {
    LLVMValueRef at = LLVMBuildStructGEP2(c->b, c->ctx_type, ctxp, (unsigned)i, "");
    c->field[i] = LLVMBuildLoad2(c->b, i < CX_PAGE_IDS ? c->i32 : c->ptr, at, "");
  }
  c->valid = NULL;
  c->logit = NULL;
}

/* ---- kernels ---- */

typedef struct StoreState {
  const VirStore *s;
  const VirKernel *k;
} StoreState;

static void store_body(Cg *c, void *arg) {
  StoreState *st = arg;
  const VirStore *s = st->s;
  const VirTensor *t = s->dst;
  LLVMValueRef subs[8];
  for (int i = 0; i < t->rank && i < 8; i++)
    subs[i] = c->axis_val[s->axes[i]->id];
  /* An append summarises the open page again, but its older tokens' fields must stay: a
   * token field may be state that an update has rewritten since (h2o's acc). */
  LLVMBasicBlockRef join = NULL;
  if (st->k->kind == VK_SUMMARISE && t->kind == VT_TOKEN)
    join = when(c, LLVMBuildICmp(c->b, LLVMIntSGE, token_pos(c, subs[0], subs[1]), c->field[CX_TOKEN_LO], ""));
  LLVMValueRef x = gen(c, s->value);
  LLVMValueRef idx = element_index(c, t, subs, is_paged(t));
  store_stored(c, tensor_base(c, t), idx, t->dtype, x, s->value->type);
  if (join)
    end_when(c, join);
}

/* A summarise kernel stores fields of pages [page_lo, page_hi) only (token fields of tokens
 * from token_lo on, see store_body); every other loop runs over its axis's whole extent. */
static void store_nest(Cg *c, StoreState *st, int i) {
  const VirStore *s = st->s;
  if (i == s->dst->rank) {
    store_body(c, st);
    return;
  }
  VirAxis *a = s->axes[i];
  bool pages = st->k->kind == VK_SUMMARISE && i == 0 && is_paged(s->dst);
  Loop l;
  LLVMValueRef idx;
  loop_begin(c, &l, pages ? c->field[CX_PAGE_LO] : i32c(c, 0),
             pages ? c->field[CX_PAGE_HI] : extent(c, a->ext), &idx);
  c->axis_val[a->id] = idx;
  store_nest(c, st, i + 1);
  loop_end(c, &l);
}

static void gen_stores(Cg *c, const VirKernel *k, Buffers *bufs) {
  for (const VirStore *s = k->stores; s; s = s->next) {
    if (s->dst->rank > 8) {
      cg_error(c, "tensor of rank over 8", s->dst->name);
      return;
    }
    materialise_needed(c, k, s->value, bufs);
    StoreState st = {s, k};
    store_nest(c, &st, 0);
  }
}

/* Attention of query head g over the selection, with the logit modifiers applied in source
 * order, online softmax in f32 (docs/ir.md, "Host code generation"). */
static void gen_attend(Cg *c, const VirKernel *k, Buffers *bufs) {
  for (const VirStore *s = k->stores; s; s = s->next)
    materialise_needed(c, k, s->value, bufs);
  LLVMValueRef acc = LLVMBuildArrayAlloca(c->b, c->f32, c->field[CX_D], "acc");
  LLVMValueRef mx = entry_alloca(c, c->f32, "m"), sum = entry_alloca(c, c->f32, "l");
  c->logit = entry_alloca(c, c->f32, "logit");
  LLVMValueRef dot = entry_alloca(c, c->f32, "dot");
  LLVMValueRef scale = LLVMBuildFDiv(c->b, f32c(c, 1),
                                     f32_fn1(c, "llvm.sqrt", LLVMBuildSIToFP(c->b, c->field[CX_D], c->f32, "")), "");
  LLVMValueRef tokens = LLVMBuildMul(c->b, c->field[CX_NPAGES], c->field[CX_P], "");
  Loop lg, lc, lp, lt;
  LLVMValueRef g, ch, p, t;
  loop_begin(c, &lg, i32c(c, 0), c->field[CX_G], &g);
  LLVMBuildStore(c->b, f32c(c, -__builtin_inf()), mx);
  LLVMBuildStore(c->b, f32c(c, 0), sum);
  loop_begin(c, &lc, i32c(c, 0), c->field[CX_D], &ch);
  LLVMBuildStore(c->b, f32c(c, 0), LLVMBuildGEP2(c->b, c->f32, acc, &ch, 1, ""));
  loop_end(c, &lc);
  LLVMValueRef per_head = LLVMBuildICmp(c->b, LLVMIntNE, c->field[CX_PER_HEAD], i32c(c, 0), "");
  LLVMValueRef sel_row = LLVMBuildSelect(c->b, per_head, LLVMBuildMul(c->b, g, tokens, ""), i32c(c, 0), "");
  loop_begin(c, &lp, i32c(c, 0), c->field[CX_NPAGES], &p);
  loop_begin(c, &lt, i32c(c, 0), c->field[CX_P], &t);
  LLVMValueRef pos = token_pos(c, p, t);
  LLVMValueRef sidx = to_i64(c, LLVMBuildAdd(c->b, sel_row, pos, ""));
  LLVMValueRef selected = LLVMBuildICmp(c->b, LLVMIntNE,
      LLVMBuildLoad2(c->b, c->i8, LLVMBuildGEP2(c->b, c->i8, c->field[CX_SELECTED], &sidx, 1, ""), ""),
      LLVMConstInt(c->i8, 0, 0), "");
  LLVMValueRef live = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, pos, c->field[CX_LEN], ""), selected, "");
  LLVMBasicBlockRef join = when(c, live);
  /* logit = q[g] . k[p, t] / sqrt(D) */
  LLVMBuildStore(c->b, f32c(c, 0), dot);
  loop_begin(c, &lc, i32c(c, 0), c->field[CX_D], &ch);
  LLVMValueRef qi = to_i64(c, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, g, c->field[CX_D], ""), ch, ""));
  LLVMValueRef qv = LLVMBuildLoad2(c->b, c->f32, LLVMBuildGEP2(c->b, c->f32, c->field[CX_Q], &qi, 1, ""), "");
  LLVMValueRef kv = kv_load(c, c->field[CX_K], kv_index(c, p, t, ch));
  LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, LLVMBuildLoad2(c->b, c->f32, dot, ""), LLVMBuildFMul(c->b, qv, kv, ""), ""), dot);
  loop_end(c, &lc);
  LLVMBuildStore(c->b, LLVMBuildFMul(c->b, LLVMBuildLoad2(c->b, c->f32, dot, ""), scale, ""), c->logit);
  for (const VirStore *s = k->stores; s; s = s->next) {
    c->axis_val[s->axes[0]->id] = g;
    c->axis_val[s->axes[1]->id] = p;
    c->axis_val[s->axes[2]->id] = t;
    LLVMValueRef x = convert(c, gen(c, s->value), s->value->type, TY_F32);
    LLVMValueRef cur = LLVMBuildLoad2(c->b, c->f32, c->logit, "");
    LLVMValueRef next = s->op == OP_ADD ? LLVMBuildFAdd(c->b, cur, x, "")
                        : s->op == OP_SUB ? LLVMBuildFSub(c->b, cur, x, "")
                        : s->op == OP_MUL ? LLVMBuildFMul(c->b, cur, x, "") : x;
    LLVMBuildStore(c->b, next, c->logit);
  }
  LLVMValueRef x = LLVMBuildLoad2(c->b, c->f32, c->logit, "");
  LLVMValueRef m = LLVMBuildLoad2(c->b, c->f32, mx, "");
  LLVMValueRef mm[2] = {m, x};
  LLVMValueRef mnew = intrinsic(c, "llvm.maxnum", c->f32, mm, 2);
  LLVMValueRef rescale = f32_fn1(c, "llvm.exp", LLVMBuildFSub(c->b, m, mnew, ""));
  LLVMValueRef w = f32_fn1(c, "llvm.exp", LLVMBuildFSub(c->b, x, mnew, ""));
  LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, LLVMBuildFMul(c->b, LLVMBuildLoad2(c->b, c->f32, sum, ""), rescale, ""), w, ""), sum);
  loop_begin(c, &lc, i32c(c, 0), c->field[CX_D], &ch);
  LLVMValueRef ap = LLVMBuildGEP2(c->b, c->f32, acc, &ch, 1, "");
  LLVMValueRef vv = kv_load(c, c->field[CX_V], kv_index(c, p, t, ch));
  LLVMValueRef a = LLVMBuildFAdd(c->b, LLVMBuildFMul(c->b, LLVMBuildLoad2(c->b, c->f32, ap, ""), rescale, ""),
                                 LLVMBuildFMul(c->b, w, vv, ""), "");
  LLVMBuildStore(c->b, a, ap);
  loop_end(c, &lc);
  LLVMBuildStore(c->b, mnew, mx);
  end_when(c, join);
  loop_end(c, &lt);
  loop_end(c, &lp);
  /* out[g] = acc / l; lse[g] = m + log l; nothing selected gives 0 and -inf */
  LLVMValueRef l = LLVMBuildLoad2(c->b, c->f32, sum, "");
  LLVMValueRef any = LLVMBuildFCmp(c->b, LLVMRealOGT, l, f32c(c, 0), "");
  LLVMValueRef inv = LLVMBuildSelect(c->b, any, LLVMBuildFDiv(c->b, f32c(c, 1), l, ""), f32c(c, 0), "");
  loop_begin(c, &lc, i32c(c, 0), c->field[CX_D], &ch);
  LLVMValueRef oi = to_i64(c, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, g, c->field[CX_D], ""), ch, ""));
  LLVMValueRef o = LLVMBuildFMul(c->b, LLVMBuildLoad2(c->b, c->f32, LLVMBuildGEP2(c->b, c->f32, acc, &ch, 1, ""), ""), inv, "");
  LLVMBuildStore(c->b, o, LLVMBuildGEP2(c->b, c->f32, c->field[CX_OUT], &oi, 1, ""));
  loop_end(c, &lc);
  LLVMValueRef lse = LLVMBuildSelect(c->b, any, LLVMBuildFAdd(c->b, LLVMBuildLoad2(c->b, c->f32, mx, ""), f32_fn1(c, "llvm.log", l), ""),
                                     f32c(c, -__builtin_inf()), "");
  LLVMValueRef gi = to_i64(c, g);
  LLVMBuildStore(c->b, lse, LLVMBuildGEP2(c->b, c->f32, c->field[CX_LSE], &gi, 1, ""));
  loop_end(c, &lg);
}

static void gen_kernel(Cg *c, const VirKernel *k) {
  char name[64];
  snprintf(name, sizeof name, "vxk_%s", vir_kernel_kind_text(k->kind));
  begin_function(c, name, LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), &c->ptr, 1, 0));
  memset(c->axis_val, 0, sizeof(LLVMValueRef) * (size_t)(c->m->next_axis_id + 1));
  memset(c->buffer, 0, sizeof(LLVMValueRef) * (size_t)(c->m->next_value_id + 1));
  Buffers bufs = {.n = 0};
  if (k->kind == VK_ATTEND)
    gen_attend(c, k, &bufs);
  else
    gen_stores(c, k, &bufs);
  free_buffers(c, &bufs);
  LLVMBuildRetVoid(c->b);
}

/* vxk_scalars(ctx, double *out): the keep counts (in keep order) then the budgets of the
 * top() selections (in selection order), as the runtime needs them once per row. */
static void gen_scalars(Cg *c) {
  LLVMTypeRef params[2] = {c->ptr, c->ptr};
  begin_function(c, "vxk_scalars", LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), params, 2, 0));
  LLVMValueRef out = LLVMGetParam(c->fn, 1);
  int n = 0;
  const VirValue *counts[512];
  for (int i = 0; i < c->m->nkeeps && n < 512; i++)
    if (c->m->keeps[i].count)
      counts[n++] = c->m->keeps[i].count;
  for (int i = 0; i < c->m->nselections && n < 512; i++)
    if (c->m->selections[i].kind == VS_TOP)
      counts[n++] = c->m->selections[i].count;
  for (int i = 0; i < n; i++) {
    LLVMValueRef x = convert(c, gen(c, counts[i]), counts[i]->type, TY_F32);
    LLVMValueRef idx = i32c(c, i);
    LLVMBuildStore(c->b, LLVMBuildFPExt(c->b, x, c->f64, ""), LLVMBuildGEP2(c->b, c->f64, out, &idx, 1, ""));
  }
  LLVMBuildRetVoid(c->b);
}

/* int vxk_require(ctx): 0 when every require holds, else the 1-based number of the first
 * that does not. */
static void gen_require(Cg *c) {
  begin_function(c, "vxk_require", LLVMFunctionType(c->i32, &c->ptr, 1, 0));
  for (int i = 0; i < c->m->nrequires; i++) {
    LLVMValueRef ok = gen(c, c->m->requires[i]);
    LLVMBasicBlockRef bad = new_block(c, "bad"), next = new_block(c, "next");
    LLVMBuildCondBr(c->b, ok, next, bad);
    LLVMPositionBuilderAtEnd(c->b, bad);
    LLVMBuildRet(c->b, i32c(c, i + 1));
    LLVMPositionBuilderAtEnd(c->b, next);
  }
  LLVMBuildRet(c->b, i32c(c, 0));
}

/* vxk_ctx as LLVM sees it, from the runtime's list of its fields. */
static LLVMTypeRef ctx_struct(LLVMContextRef ctx) {
  LLVMTypeRef i32 = LLVMInt32TypeInContext(ctx), ptr = LLVMPointerTypeInContext(ctx, 0);
  LLVMTypeRef fields[CX_NFIELDS] = {
#define CX_TYPE(type, name, tag, kind) [CX_##tag] = CX_##kind == CX_I32 ? i32 : ptr,
      VXK_CTX_FIELDS(CX_TYPE)
#undef CX_TYPE
  };
  return LLVMStructTypeInContext(ctx, fields, CX_NFIELDS, 0);
}

static void init_types(Cg *c) {
  c->i1 = LLVMInt1TypeInContext(c->ctx);
  c->i8 = LLVMInt8TypeInContext(c->ctx);
  c->i16 = LLVMInt16TypeInContext(c->ctx);
  c->i32 = LLVMInt32TypeInContext(c->ctx);
  c->i64 = LLVMInt64TypeInContext(c->ctx);
  c->f32 = LLVMFloatTypeInContext(c->ctx);
  c->f64 = LLVMDoubleTypeInContext(c->ctx);
  c->ptr = LLVMPointerTypeInContext(c->ctx, 0);
  c->ctx_type = ctx_struct(c->ctx);
}

bool cg_host_check_abi(LLVMContextRef ctx, LLVMTargetDataRef layout, char *why, size_t len) {
  static const struct {
    const char *name;
    size_t offset;
  } fields[CX_NFIELDS] = {
#define CX_OFFSET(type, name, tag, kind) [CX_##tag] = {#name, offsetof(vxk_ctx, name)},
      VXK_CTX_FIELDS(CX_OFFSET)
#undef CX_OFFSET
  };
  LLVMTypeRef t = ctx_struct(ctx);
  for (unsigned i = 0; i < CX_NFIELDS; i++)
    if (LLVMOffsetOfElement(layout, t, i) != fields[i].offset) {
      snprintf(why, len, "vxk_ctx.%s is at offset %llu in the generated code and %zu in runtime/vxk.h",
               fields[i].name, LLVMOffsetOfElement(layout, t, i), fields[i].offset);
      return false;
    }
  if (LLVMABISizeOfType(layout, t) != sizeof(vxk_ctx)) {
    snprintf(why, len, "vxk_ctx is %llu bytes in the generated code and %zu in runtime/vxk.h",
             LLVMABISizeOfType(layout, t), sizeof(vxk_ctx));
    return false;
  }
  return true;
}

LLVMModuleRef cg_host_module(LLVMContextRef ctx, const VirModule *m, Diags *diags, Span where) {
  Cg c = {0};
  c.ctx = ctx;
  c.m = m;
  c.diags = diags;
  c.where = where;
  c.mod = LLVMModuleCreateWithNameInContext(m->name, ctx);
  c.b = LLVMCreateBuilderInContext(ctx);
  cg_expr_init(&c.e, ctx, c.mod, c.b, cg_expr_llvm_math);
  init_types(&c);
  c.axis_val = calloc((size_t)m->next_axis_id + 1, sizeof(LLVMValueRef));
  c.buffer = calloc((size_t)m->next_value_id + 1, sizeof(LLVMValueRef));
  if (!c.axis_val || !c.buffer) {
    cg_error(&c, "out of memory building", m->name);
  } else {
    for (const VirKernel *k = m->kernels; k && !c.failed; k = k->next)
      gen_kernel(&c, k);
    gen_scalars(&c);
    gen_require(&c);
  }
  free(c.axis_val);
  free(c.buffer);
  LLVMDisposeBuilder(c.b);
  char *msg = NULL;
  if (!c.failed && LLVMVerifyModule(c.mod, LLVMReturnStatusAction, &msg)) {
    Diagnostic *d = diag_error(diags, where, "E1002", "internal error: invalid LLVM IR for '%s'", m->name);
    diag_hint(diags, d, "%s", msg ? msg : "");
    c.failed = true;
  }
  LLVMDisposeMessage(msg);
  if (c.failed) {
    LLVMDisposeModule(c.mod);
    return NULL;
  }
  return c.mod;
}
