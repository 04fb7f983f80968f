/* cg_nvptx.c - VIR to PTX: the GPU kernels of a policy, written as fixed skeletons in C that
 * build LLVM IR, with the policy's VIR inlined at typed hooks (docs/gpu.md).
 * The ABI is runtime/vxk_gpu.h: one by-value table of 64-bit slots per kernel, entries
 * "vxg_<kind>__<shape>", specialised on D, G, P and the KV dtype so that channel loops unroll
 * into registers and every K/V access is a 16-byte load.
 *
 * The skeletons:
 *   attend    split-KV paged attention over the selection (or every page): a lane group per
 *             token, 16 bytes per lane, U tokens in flight, online softmax in the log2 domain,
 *             a CTA-level merge in shared memory, and the last CTA of a row merging the
 *             chunks' partials in chunk order (deterministic, one launch);
 *   select    a lane group per page evaluates the score hook, order keys go to a global
 *             scratch, then a 4-pass radix select with the CPU's lower-index tie rule and an
 *             ordered compaction into the selection list (pages + token masks);
 *   summarise the page-field hook for one page per CTA (prefill, and any page on demand);
 *   append    writes the new token's K and V, then reruns the page-field hook for its page.
 * The hooks come from the element emitter below: a VIR value is evaluated per element
 * (page) with every axis but the channel unrolled at compile time and the channel axis split
 * across the lanes of the group (8 channels per lane), reductions over channels finishing
 * with a butterfly of shuffles. What the emitter cannot map yet is reported as E1006 at the
 * policy, never an abort. Scalar operations come from cg_expr.c, shared with the host.
 * This file never prints and never exits. */
#include "cg.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/vxk_gpu.h"
#include "cg_devmath.h"
#include "cg_expr.h"

enum {
  CPL = 8,            /* channels per lane in the element emitter */
  ATT_WARPS = VXK_GPU_ATTEND_THREADS / 32,
  ATT_UNROLL = 4,     /* at most, tokens in flight per lane group in attend */
  ATT_SEG = 256,      /* selection entries staged in shared memory at a time */
  SEL_THREADS = VXK_GPU_SELECT_THREADS,
  SEL_UNROLL = 4,     /* at most, pages in flight per lane group in the select sweep */
  MAX_COMBOS = 4096,  /* unrolled elements one value may expand to */
};

typedef struct Memo {
  int id; /* value id + 1; 0 = empty */
  unsigned gen;
  uint64_t key;
  LLVMValueRef val, valid;
} Memo;

typedef struct Gx {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTypeRef i1, i8, i16, i32, i64, f32, half, bf16, ptr, gptr, sptr, args_type;
  CgExpr e;
  const VirModule *m;
  CgShape s;
  bool failed;
  CgError error;        /* the first failure, reported by the caller's thread */
  char suffix[48];
  /* the kernel being built */
  LLVMValueRef fn, args;
  LLVMValueRef row, slot, head, len, prefill_len, npages;
  /* the element being evaluated */
  LLVMValueRef page, page_phys, lane;
  LLVMValueRef tok;    /* attend hooks: the token slot in the page (else NULL: t is unrolled) */
  LLVMValueRef logit;  /* attend hooks: the current logit of the head being evaluated */
  LLVMValueRef qlane[16][8]; /* the lane's q (its CPL channels, every head), loaded once per
                                kernel at the first read; qlane[0][0] NULL until then */
  struct LaneVec {            /* the lane's CPL channels of one row of a tensor, loaded with
                                 16-byte loads once per element (keyed by tensor and the
                                 other subscripts), so VIR loads of it share them */
    unsigned gen;
    int tensor;
    uint64_t key;
    LLVMValueRef v[8], valid;
  } lvec[64];
  int nlvec;
  int lanes;           /* lanes per element group: D / CPL */
  const VirKernel *k;
  Memo *memo;
  int memo_cap;
  unsigned gen, row_gen; /* memo generations: the element's, and the kernel's (invariant values) */
  unsigned gens;         /* the last generation handed out */
  LLVMValueRef store_ok; /* whether this lane writes the fields it computes */
} Gx;

/* ------------------------------------------------------------------ small builders */

/* The first error of a kernel job, kept as text: jobs run on their own threads, and only the
 * caller's thread reports to the Diags (cg_nvptx_compile). */
static void gx_fail(Gx *g, const char *code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void gx_fail(Gx *g, const char *code, const char *hint, const char *fmt, ...) {
  if (!g->failed) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->error.message, sizeof g->error.message, fmt, ap);
    va_end(ap);
    snprintf(g->error.code, sizeof g->error.code, "%s", code);
    snprintf(g->error.hint, sizeof g->error.hint, "%s", hint ? hint : "");
  }
  g->failed = true;
}

static void gx_error(Gx *g, const char *what, const char *detail) {
  gx_fail(g, "E1006", "the CPU backend runs it (vxc without --target); docs/gpu.md lists what the GPU path supports",
          "policy '%s' cannot run on the GPU yet: %s%s%s", g->m->name, what, detail ? " " : "",
          detail ? detail : "");
}

static LLVMValueRef c32(Gx *g, long long v) { return LLVMConstInt(g->i32, (unsigned long long)v, 1); }
static LLVMValueRef c64(Gx *g, long long v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }
static LLVMValueRef cf(Gx *g, double v) { return LLVMConstReal(g->f32, v); }

static LLVMValueRef call_intrinsic(Gx *g, const char *name, LLVMTypeRef *over, int nover, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id) {
    gx_error(g, "internal error: unknown intrinsic", name);
    return LLVMGetUndef(g->i32);
  }
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, over, (size_t)nover);
  LLVMTypeRef ft = LLVMIntrinsicGetType(g->ctx, id, over, (size_t)nover);
  return LLVMBuildCall2(g->b, ft, fn, args, (unsigned)n, "");
}

static LLVMValueRef sreg(Gx *g, const char *name) { return call_intrinsic(g, name, NULL, 0, NULL, 0); }
static LLVMValueRef tid(Gx *g) { return sreg(g, "llvm.nvvm.read.ptx.sreg.tid.x"); }

static void barrier(Gx *g) {
  LLVMValueRef z = c32(g, 0);
  call_intrinsic(g, "llvm.nvvm.barrier.cta.sync.aligned.all", NULL, 0, &z, 1);
}

static void fence_gpu(Gx *g) { LLVMBuildFence(g->b, LLVMAtomicOrderingSequentiallyConsistent, 0, ""); }

/* A butterfly shuffle of an f32 or i32 across the warp. */
static LLVMValueRef shfl_xor(Gx *g, LLVMValueRef x, int lane_mask) {
  bool fl = LLVMTypeOf(x) == g->f32;
  LLVMValueRef v = fl ? x : LLVMBuildZExtOrBitCast(g->b, x, g->i32, "");
  LLVMValueRef args[4] = {c32(g, -1), v, c32(g, lane_mask), c32(g, 31)};
  LLVMValueRef r = call_intrinsic(g, fl ? "llvm.nvvm.shfl.sync.bfly.f32" : "llvm.nvvm.shfl.sync.bfly.i32", NULL, 0, args, 4);
  return LLVMTypeOf(x) == g->i1 ? LLVMBuildTrunc(g->b, r, g->i1, "") : r;
}

static LLVMValueRef fmax_(Gx *g, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef args[2] = {a, b};
  return call_intrinsic(g, "llvm.maxnum", &g->f32, 1, args, 2);
}

static LLVMValueRef exp2_(Gx *g, LLVMValueRef x) { return call_intrinsic(g, "llvm.exp2", &g->f32, 1, &x, 1); }
static LLVMValueRef log2_(Gx *g, LLVMValueRef x) { return call_intrinsic(g, "llvm.nvvm.lg2.approx.f", NULL, 0, &x, 1); }

static LLVMBasicBlockRef block(Gx *g, const char *name) { return LLVMAppendBasicBlockInContext(g->ctx, g->fn, name); }

/* if (cond) { ...then... } : returns the join block; the builder sits in "then". */
static LLVMBasicBlockRef if_then(Gx *g, LLVMValueRef cond) {
  LLVMBasicBlockRef then = block(g, "then"), join = block(g, "join");
  LLVMBuildCondBr(g->b, cond, then, join);
  LLVMPositionBuilderAtEnd(g->b, then);
  return join;
}

static void end_if(Gx *g, LLVMBasicBlockRef join) {
  LLVMBuildBr(g->b, join);
  LLVMPositionBuilderAtEnd(g->b, join);
}

/* A counted loop with an i32 phi: for (i = from; i < to; i += step). */
typedef struct GLoop {
  LLVMValueRef i;
  LLVMBasicBlockRef head, body, exit, pre;
  LLVMValueRef step;
} GLoop;

static LLVMValueRef loop_begin(Gx *g, GLoop *l, LLVMValueRef from, LLVMValueRef to, LLVMValueRef step) {
  l->pre = LLVMGetInsertBlock(g->b);
  l->head = block(g, "loop");
  l->body = block(g, "body");
  l->exit = block(g, "done");
  l->step = step;
  LLVMBuildBr(g->b, l->head);
  LLVMPositionBuilderAtEnd(g->b, l->head);
  l->i = LLVMBuildPhi(g->b, g->i32, "i");
  LLVMAddIncoming(l->i, &from, &l->pre, 1);
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, l->i, to, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(g->b, l->body);
  return l->i;
}

static void loop_end(Gx *g, GLoop *l) {
  LLVMValueRef next = LLVMBuildAdd(g->b, l->i, l->step, "");
  LLVMBasicBlockRef here = LLVMGetInsertBlock(g->b);
  LLVMAddIncoming(l->i, &next, &here, 1);
  LLVMBuildBr(g->b, l->head);
  LLVMPositionBuilderAtEnd(g->b, l->exit);
}

/* A loop-carried f32/i32 variable kept in an alloca (mem2reg makes it a register). */
static LLVMValueRef var(Gx *g, LLVMTypeRef t, LLVMValueRef init) {
  LLVMBuilderRef eb = LLVMCreateBuilderInContext(g->ctx);
  LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(g->fn);
  LLVMValueRef first = LLVMGetFirstInstruction(entry);
  if (first)
    LLVMPositionBuilderBefore(eb, first);
  else
    LLVMPositionBuilderAtEnd(eb, entry);
  LLVMValueRef a = LLVMBuildAlloca(eb, t, "");
  LLVMDisposeBuilder(eb);
  LLVMBuildStore(g->b, init, a);
  return a;
}

static LLVMValueRef get(Gx *g, LLVMValueRef v) { return LLVMBuildLoad2(g->b, LLVMGetAllocatedType(v), v, ""); }
static void set(Gx *g, LLVMValueRef v, LLVMValueRef x) { LLVMBuildStore(g->b, x, v); }

/* ------------------------------------------------------------------ memory */

static LLVMValueRef arg(Gx *g, vxk_gpu_arg a) {
  LLVMValueRef idx[2] = {c32(g, 0), c32(g, a)};
  LLVMValueRef p = LLVMBuildGEP2(g->b, g->args_type, g->args, idx, 2, "");
  return LLVMBuildLoad2(g->b, g->i64, p, "");
}

static LLVMValueRef arg32(Gx *g, vxk_gpu_arg a) { return LLVMBuildTrunc(g->b, arg(g, a), g->i32, ""); }
static LLVMValueRef gaddr(Gx *g, LLVMValueRef i64addr) { return LLVMBuildIntToPtr(g->b, i64addr, g->gptr, ""); }

/* &base[idx] for elements of type t, base a global pointer, idx i32 or i64. */
static LLVMValueRef elem(Gx *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef idx) {
  if (LLVMTypeOf(idx) != g->i64)
    idx = LLVMBuildSExt(g->b, idx, g->i64, "");
  return LLVMBuildGEP2(g->b, t, base, &idx, 1, "");
}

static LLVMValueRef load(Gx *g, LLVMTypeRef t, LLVMValueRef p) { return LLVMBuildLoad2(g->b, t, p, ""); }

/* A load that no kernel writes while this one runs: ld.global.nc. */
static LLVMValueRef load_ro(Gx *g, LLVMTypeRef t, LLVMValueRef p, unsigned align) {
  LLVMValueRef l = LLVMBuildLoad2(g->b, t, p, "");
  LLVMSetAlignment(l, align);
  unsigned kind = LLVMGetMDKindIDInContext(g->ctx, "invariant.load", 14);
  LLVMSetMetadata(l, kind, LLVMMDNodeInContext(g->ctx, NULL, 0));
  return l;
}

static LLVMValueRef load_i32_at(Gx *g, vxk_gpu_arg a, LLVMValueRef idx) {
  return load(g, g->i32, elem(g, g->i32, gaddr(g, arg(g, a)), idx));
}

static LLVMValueRef shared_array(Gx *g, LLVMTypeRef t, int n, const char *name) {
  LLVMTypeRef at = LLVMArrayType2(t, (uint64_t)n);
  LLVMValueRef gv = LLVMAddGlobalInAddressSpace(g->mod, at, name, 3);
  LLVMSetLinkage(gv, LLVMInternalLinkage);
  LLVMSetInitializer(gv, LLVMGetUndef(at));
  LLVMSetAlignment(gv, 16);
  return gv;
}

static LLVMValueRef sh_elem(Gx *g, LLVMValueRef arr, LLVMTypeRef t, LLVMValueRef idx) {
  LLVMValueRef i[2] = {c32(g, 0), idx};
  (void)t;
  return LLVMBuildGEP2(g->b, LLVMGlobalGetValueType(arr), arr, i, 2, "");
}

/* ------------------------------------------------------------------ element types */

static int kv_size(const Gx *g) { return g->s.kv == VXK_GPU_F32 ? 4 : 2; }

/* Unpacks 16 bytes (as <4 x i32>) of elements of dtype kv into f32 values. */
static void unpack16(Gx *g, LLVMValueRef v4, int kv, LLVMValueRef *out) {
  for (int w = 0; w < 4; w++) {
    LLVMValueRef word = LLVMBuildExtractElement(g->b, v4, c32(g, w), "");
    if (kv == VXK_GPU_F32) {
      out[w] = LLVMBuildBitCast(g->b, word, g->f32, "");
    } else if (kv == VXK_GPU_BF16) {
      out[2 * w] = LLVMBuildBitCast(g->b, LLVMBuildShl(g->b, word, c32(g, 16), ""), g->f32, "");
      out[2 * w + 1] = LLVMBuildBitCast(g->b, LLVMBuildAnd(g->b, word, c32(g, (int)0xffff0000u), ""), g->f32, "");
    } else {
      LLVMValueRef lo = LLVMBuildBitCast(g->b, LLVMBuildTrunc(g->b, word, g->i16, ""), g->half, "");
      LLVMValueRef hi = LLVMBuildBitCast(g->b, LLVMBuildTrunc(g->b, LLVMBuildLShr(g->b, word, c32(g, 16), ""), g->i16, ""), g->half, "");
      out[2 * w] = LLVMBuildFPExt(g->b, lo, g->f32, "");
      out[2 * w + 1] = LLVMBuildFPExt(g->b, hi, g->f32, "");
    }
  }
}

static LLVMValueRef load16(Gx *g, LLVMValueRef p) {
  return load_ro(g, LLVMVectorType(g->i32, 4), p, 16);
}

/* A stored element of dtype dt (the language's DType) at p, as f32. */
static LLVMValueRef load_dtype(Gx *g, DType dt, LLVMValueRef base, LLVMValueRef idx) {
  switch (dt) {
  case DT_F32: return load(g, g->f32, elem(g, g->f32, base, idx));
  case DT_F16: return LLVMBuildFPExt(g->b, load(g, g->half, elem(g, g->half, base, idx)), g->f32, "");
  case DT_BF16: {
    LLVMValueRef h = LLVMBuildZExt(g->b, load(g, g->i16, elem(g, g->i16, base, idx)), g->i32, "");
    return LLVMBuildBitCast(g->b, LLVMBuildShl(g->b, h, c32(g, 16), ""), g->f32, "");
  }
  default: return LLVMBuildUIToFP(g->b, load(g, g->i32, elem(g, g->i32, base, idx)), g->f32, "");
  }
}

/* f32 x converted with round-to-nearest-even and stored as dtype dt. */
static void store_dtype(Gx *g, DType dt, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef x) {
  switch (dt) {
  case DT_F32: LLVMBuildStore(g->b, x, elem(g, g->f32, base, idx)); break;
  case DT_F16: LLVMBuildStore(g->b, LLVMBuildFPTrunc(g->b, x, g->half, ""), elem(g, g->half, base, idx)); break;
  case DT_BF16: LLVMBuildStore(g->b, LLVMBuildFPTrunc(g->b, x, g->bf16, ""), elem(g, g->bf16, base, idx)); break;
  default: LLVMBuildStore(g->b, x, elem(g, g->i32, base, idx)); break;
  }
}

/* An element of a buffer whose dtype (VXK_GPU_F32 or _BF16) is a run-time slot value. */
static LLVMValueRef load_dyn(Gx *g, LLVMValueRef base, LLVMValueRef dtype, LLVMValueRef idx) {
  LLVMValueRef is_bf = LLVMBuildICmp(g->b, LLVMIntEQ, dtype, c64(g, VXK_GPU_BF16), "");
  LLVMBasicBlockRef from = LLVMGetInsertBlock(g->b), bf = block(g, "bf16"), f = block(g, "f32"), join = block(g, "ld");
  LLVMBuildCondBr(g->b, is_bf, bf, f);
  LLVMPositionBuilderAtEnd(g->b, bf);
  LLVMValueRef a = load_dtype(g, DT_BF16, base, idx);
  LLVMBasicBlockRef bf_end = LLVMGetInsertBlock(g->b);
  LLVMBuildBr(g->b, join);
  LLVMPositionBuilderAtEnd(g->b, f);
  LLVMValueRef b = load_dtype(g, DT_F32, base, idx);
  LLVMBasicBlockRef f_end = LLVMGetInsertBlock(g->b);
  LLVMBuildBr(g->b, join);
  LLVMPositionBuilderAtEnd(g->b, join);
  LLVMValueRef phi = LLVMBuildPhi(g->b, g->f32, "");
  LLVMValueRef vals[2] = {a, b};
  LLVMBasicBlockRef blocks[2] = {bf_end, f_end};
  LLVMAddIncoming(phi, vals, blocks, 2);
  (void)from;
  return phi;
}

static void store_dyn(Gx *g, LLVMValueRef base, LLVMValueRef dtype, LLVMValueRef idx, LLVMValueRef x) {
  LLVMValueRef is_bf = LLVMBuildICmp(g->b, LLVMIntEQ, dtype, c64(g, VXK_GPU_BF16), "");
  LLVMBasicBlockRef bf = block(g, "st_bf16"), f = block(g, "st_f32"), join = block(g, "st");
  LLVMBuildCondBr(g->b, is_bf, bf, f);
  LLVMPositionBuilderAtEnd(g->b, bf);
  store_dtype(g, DT_BF16, base, idx, x);
  LLVMBuildBr(g->b, join);
  LLVMPositionBuilderAtEnd(g->b, f);
  store_dtype(g, DT_F32, base, idx, x);
  LLVMBuildBr(g->b, join);
  LLVMPositionBuilderAtEnd(g->b, join);
}

/* This row's q for G heads and n channels from first_ch (all f32), with one branch on the
 * dtype for all of them: a branch per element would serialise the loads' latencies. */
static void load_q_lane(Gx *g, LLVMValueRef first_ch, int n, LLVMValueRef out[16][8]) {
  LLVMValueRef base = gaddr(g, arg(g, VXK_GPU_Q)), dtype = arg(g, VXK_GPU_Q_DTYPE);
  LLVMValueRef vars[16][8];
  for (int h = 0; h < g->s.G; h++)
    for (int v = 0; v < n; v++)
      vars[h][v] = var(g, g->f32, cf(g, 0));
  LLVMValueRef is_bf = LLVMBuildICmp(g->b, LLVMIntEQ, dtype, c64(g, VXK_GPU_BF16), "");
  LLVMBasicBlockRef bf = block(g, "q_bf16"), f = block(g, "q_f32"), join = block(g, "q");
  LLVMBuildCondBr(g->b, is_bf, bf, f);
  for (int pass = 0; pass < 2; pass++) {
    LLVMPositionBuilderAtEnd(g->b, pass ? f : bf);
    for (int h = 0; h < g->s.G; h++)
      for (int v = 0; v < n; v++) {
        LLVMValueRef rowq = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->row, c32(g, g->s.G), ""), c32(g, h), "");
        LLVMValueRef idx = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, rowq, c32(g, g->s.D), ""), LLVMBuildAdd(g->b, first_ch, c32(g, v), ""), "");
        set(g, vars[h][v], load_dtype(g, pass ? DT_F32 : DT_BF16, base, idx));
      }
    LLVMBuildBr(g->b, join);
  }
  LLVMPositionBuilderAtEnd(g->b, join);
  for (int h = 0; h < g->s.G; h++)
    for (int v = 0; v < n; v++)
      out[h][v] = get(g, vars[h][v]);
}

/* ------------------------------------------------------------------ kernels: entry, row */

static const char *const kernel_names[] = {
#define GX_KERNEL_NAME(k) #k,
  VXK_GPU_KERNELS(GX_KERNEL_NAME)
#undef GX_KERNEL_NAME
};

static void begin_kernel(Gx *g, const char *kind, int threads, int maxnreg) {
  char name[96];
  snprintf(name, sizeof name, "vxg_%s__%s", kind, g->suffix);
  LLVMTypeRef ft = LLVMFunctionType(LLVMVoidTypeInContext(g->ctx), &g->ptr, 1, 0);
  g->fn = LLVMAddFunction(g->mod, name, ft);
  LLVMSetFunctionCallConv(g->fn, LLVMPTXKernelCallConv);
  unsigned byval = LLVMGetEnumAttributeKindForName("byval", 5);
  LLVMAddAttributeAtIndex(g->fn, 1, LLVMCreateTypeAttribute(g->ctx, byval, g->args_type));
  LLVMSetParamAlignment(LLVMGetParam(g->fn, 0), 8);
  char n[16];
  snprintf(n, sizeof n, "%d", threads);
  LLVMAddAttributeAtIndex(g->fn, LLVMAttributeFunctionIndex, LLVMCreateStringAttribute(g->ctx, "nvvm.maxntid", 12, n, (unsigned)strlen(n)));
  /* an explicit register cap: with only maxntid, ptxas picked 64 and spilled (docs/performance.md) */
  snprintf(n, sizeof n, "%d", maxnreg);
  LLVMAddAttributeAtIndex(g->fn, LLVMAttributeFunctionIndex, LLVMCreateStringAttribute(g->ctx, "nvvm.maxnreg", 12, n, (unsigned)strlen(n)));
  LLVMPositionBuilderAtEnd(g->b, block(g, "entry"));
  g->args = LLVMGetParam(g->fn, 0);
  /* values memoised in another function must not be reused here */
  g->qlane[0][0] = NULL;
  g->row_gen = ++g->gens;
  g->gen = ++g->gens;
}

/* row = blockIdx.y or .x; slot, head, the slot's lengths and page count. */
static void load_row(Gx *g, bool row_in_y) {
  g->row = sreg(g, row_in_y ? "llvm.nvvm.read.ptx.sreg.ctaid.y" : "llvm.nvvm.read.ptx.sreg.ctaid.x");
  LLVMValueRef kvh = arg32(g, VXK_GPU_KV_HEADS);
  g->slot = LLVMBuildUDiv(g->b, g->row, kvh, "slot");
  g->head = LLVMBuildURem(g->b, g->row, kvh, "head");
  g->len = load_i32_at(g, VXK_GPU_LENGTHS, g->slot);
  g->prefill_len = load_i32_at(g, VXK_GPU_PREFILL_LENGTHS, g->slot);
  g->npages = LLVMBuildUDiv(g->b, LLVMBuildAdd(g->b, g->len, c32(g, g->s.P - 1), ""), c32(g, g->s.P), "npages");
}

static LLVMValueRef page_of(Gx *g, LLVMValueRef logical) {
  LLVMValueRef i = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->slot, arg32(g, VXK_GPU_MAX_ROW_PAGES), ""), logical, "");
  return load_i32_at(g, VXK_GPU_PAGE_TABLE, i);
}

/* Element index of (page, head, token t, channel ch) in a K/V pool. */
/* The (page, head) block's number: pools of K, V and paged fields are [page][head][block]. */
static LLVMValueRef block_number(Gx *g, LLVMValueRef phys) {
  return LLVMBuildAdd(g->b, LLVMBuildMul(g->b, LLVMBuildZExt(g->b, phys, g->i64, ""), arg(g, VXK_GPU_KV_HEADS), ""),
                      LLVMBuildZExt(g->b, g->head, g->i64, ""), "");
}

/* The device address of manifest field t's storage for this layer (the FIELDS table). */
static LLVMValueRef field_base(Gx *g, const VirTensor *t) {
  LLVMValueRef fields = gaddr(g, arg(g, VXK_GPU_FIELDS));
  return gaddr(g, load(g, g->i64, elem(g, g->i64, fields, c32(g, t->id))));
}

static LLVMValueRef kv_index(Gx *g, LLVMValueRef phys, LLVMValueRef t, LLVMValueRef ch) {
  LLVMValueRef tok = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, block_number(g, phys), c64(g, g->s.P), ""), LLVMBuildSExt(g->b, t, g->i64, ""), "");
  return LLVMBuildAdd(g->b, LLVMBuildMul(g->b, tok, c64(g, g->s.D), ""), LLVMBuildSExt(g->b, ch, g->i64, ""), "");
}

/* ------------------------------------------------------------------ extents and params */

static bool shape_value(void *user, const char *name, long long *out) {
  const Gx *g = user;
  *out = !strcmp(name, "D") ? g->s.D : !strcmp(name, "G") ? g->s.G : !strcmp(name, "P") ? g->s.P : -1;
  return *out >= 0; /* a param or npages: not known when compiling */
}

/* The extent's value for this shape, or -1 when it is not a compile-time constant. */
static long extent_of(Gx *g, const VirExtent *e) {
  long long v;
  return vir_extent_eval(e, shape_value, g, &v) && v >= 0 ? (long)v : -1;
}

static LLVMValueRef scalar_slot(Gx *g, int i) {
  return load(g, g->f32, elem(g, g->f32, gaddr(g, arg(g, VXK_GPU_SCALARS)), c32(g, i)));
}

/* The index in SCALARS of the n-th keep count or top() budget (vxk_scalars' order). */
static int keep_scalar(const Gx *g, int keep) {
  int j = 0;
  for (int i = 0; i < keep; i++)
    j += g->m->keeps[i].count != NULL;
  return g->m->nparams + j;
}

static int budget_scalar(const Gx *g) {
  int j = 0;
  for (int i = 0; i < g->m->nkeeps; i++)
    j += g->m->keeps[i].count != NULL;
  return g->m->nparams + j;
}

/* ------------------------------------------------------------------ the element emitter */

/* An axis is lane-split when it runs over the channels; every other axis is unrolled. */
static bool lane_axis(const VirAxis *a) { return a->role == AX_CHANNEL && vir_extent_is(a->ext, "D"); }
/* Axes the element itself binds at run time: the page, and in attend hooks the token too. */
static bool element_axis(const Gx *g, const VirAxis *a) { return a->role == AX_PAGE || (a->role == AX_TOKEN && g->tok); }

typedef struct Ev {
  LLVMValueRef val, valid; /* valid: NULL = always */
} Ev;

static Ev eval(Gx *g, const VirValue *v, const int *coord);

static bool memo_key(const Gx *g, const VirValue *v, const int *coord, uint64_t *key) {
  uint64_t k = 0;
  int n = 0;
  for (int i = 0; i < v->ndom; i++) {
    if (element_axis(g, v->dom[i]))
      continue;
    int c = coord[v->dom[i]->id];
    if (c < 0 || c > 255 || n >= 8)
      return false;
    k |= (uint64_t)c << (8 * n++);
  }
  *key = k;
  return true;
}

static bool memo_live(const Gx *g, const Memo *e) { return e->id && (e->gen == g->gen || e->gen == g->row_gen); }

/* The live entry of (v, key), or the free slot where it would go (dead entries are free). */
static Memo *memo_slot(Gx *g, const VirValue *v, uint64_t key) {
  unsigned h = (unsigned)((uint64_t)v->id * 0x9e3779b97f4a7c15ull ^ key * 0xff51afd7ed558ccdull) & (unsigned)(g->memo_cap - 1);
  for (;;) {
    Memo *e = &g->memo[h];
    if (!memo_live(g, e) || (e->id == v->id + 1 && e->key == key))
      return e;
    h = (h + 1) & (unsigned)(g->memo_cap - 1);
  }
}

static LLVMValueRef and_valid(Gx *g, LLVMValueRef a, LLVMValueRef b) {
  return !a ? b : !b ? a : LLVMBuildAnd(g->b, a, b, "");
}

/* Every combination of coordinates of axes[0..n): calls fn for each, with coord set. */
typedef void (*ComboFn)(Gx *g, int *coord, void *arg);

static long axis_count(Gx *g, const VirAxis *a) {
  if (lane_axis(a))
    return CPL;
  return extent_of(g, a->ext);
}

static void for_combos(Gx *g, VirAxis *const *axes, int n, int *coord, ComboFn fn, void *arg) {
  if (n == 0) {
    fn(g, coord, arg);
    return;
  }
  if (element_axis(g, axes[0])) {
    for_combos(g, axes + 1, n - 1, coord, fn, arg);
    return;
  }
  long count = axis_count(g, axes[0]);
  if (count < 0 || count > MAX_COMBOS) {
    gx_error(g, "an axis whose extent is not a small constant for this shape:", axes[0]->extent);
    return;
  }
  int saved = coord[axes[0]->id];
  for (int i = 0; i < count && !g->failed; i++) {
    coord[axes[0]->id] = i;
    for_combos(g, axes + 1, n - 1, coord, fn, arg);
  }
  coord[axes[0]->id] = saved;
}

/* The channel a lane-split coordinate stands for. */
static LLVMValueRef channel(Gx *g, int local) {
  return LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->lane, c32(g, CPL), ""), c32(g, local), "");
}

static LLVMValueRef axis_value(Gx *g, const VirAxis *a, const int *coord) {
  if (a->role == AX_PAGE)
    return g->page;
  if (element_axis(g, a))
    return g->tok;
  if (lane_axis(a)) {
    if (!g->lane) {
      gx_error(g, "a channel axis in an attend modifier", NULL);
      return c32(g, 0);
    }
    return channel(g, coord[a->id]);
  }
  return c32(g, coord[a->id]);
}

/* The store of tensor t in kernel k (or NULL). */
static const VirStore *store_of_kernel(const VirKernel *k, const VirTensor *t) {
  for (const VirStore *s = k ? k->stores : NULL; s; s = s->next)
    if (s->dst == t)
      return s;
  return NULL;
}

/* The store of tensor t in the kernel being built, if this kernel computes it. */
static const VirStore *store_of(const Gx *g, const VirTensor *t) { return store_of_kernel(g->k, t); }

/* Subscript i of load v, and whether it is within the tensor's extent there (computed
 * subscripts out of range read element 0 and make the element absent, as on the CPU). */
static LLVMValueRef subscript(Gx *g, const VirValue *v, int i, long extent, const int *coord, LLVMValueRef *valid) {
  const VirValue *a = v->args[i];
  if (a->op == VI_AXIS)
    return axis_value(g, a->axis, coord);
  Ev x = eval(g, a, coord);
  LLVMValueRef s = cg_expr_convert(&g->e, x.val, a->type, TY_I32);
  LLVMValueRef in = LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntSGE, s, c32(g, 0), ""),
                                 LLVMBuildICmp(g->b, LLVMIntSLT, s, c32(g, extent), ""), "");
  *valid = and_valid(g, and_valid(g, *valid, x.valid), in);
  return LLVMBuildSelect(g->b, in, s, c32(g, 0), "");
}

/* CPL consecutive elements of dtype dt at base[idx0...] as f32: 16-byte loads (one for
 * 16-bit types, two for f32). Plain loads: append reads K it has just written. */
static void load_lane_vector(Gx *g, DType dt, LLVMValueRef base, LLVMValueRef idx0, LLVMValueRef *out) {
  LLVMTypeRef et = dt == DT_F32 ? g->f32 : g->i16;
  LLVMTypeRef v4 = LLVMVectorType(g->i32, 4);
  int nvec = dt == DT_F32 ? 2 : 1;
  for (int k = 0; k < nvec; k++) {
    LLVMValueRef p = elem(g, et, base, LLVMBuildAdd(g->b, idx0, c64(g, 4 * k), ""));
    LLVMValueRef x = LLVMBuildLoad2(g->b, v4, p, "");
    LLVMSetAlignment(x, 16);
    unpack16(g, x, dt == DT_F32 ? VXK_GPU_F32 : dt == DT_F16 ? VXK_GPU_F16 : VXK_GPU_BF16, out + 4 * k);
  }
}

/* The memoised lane vector of (tensor, key) for this element, or NULL. */
static struct LaneVec *lane_vec_find(Gx *g, int tensor, uint64_t key) {
  for (int i = 0; i < g->nlvec; i++)
    if (g->lvec[i].gen == g->gen && g->lvec[i].tensor == tensor && g->lvec[i].key == key)
      return &g->lvec[i];
  return NULL;
}

static struct LaneVec *lane_vec_new(Gx *g, int tensor, uint64_t key) {
  int i = 0;
  while (i < g->nlvec && g->lvec[i].gen == g->gen)
    i++;
  if (i == 64)
    return NULL;
  if (i == g->nlvec)
    g->nlvec++;
  g->lvec[i] = (struct LaneVec){g->gen, tensor, key, {0}, NULL};
  return &g->lvec[i];
}

/* Whether load v reads a lane's CPL contiguous channels (last subscript the lane-split
 * channel axis, every other one a plain axis), and then the key of its other coordinates. */
static bool lane_vector_load(const Gx *g, const VirValue *v, const int *coord, uint64_t *key) {
  const VirTensor *t = v->tensor;
  if (!g->lane || t->rank < 1 || v->args[t->rank - 1]->op != VI_AXIS || !lane_axis(v->args[t->rank - 1]->axis) ||
      !vir_extent_is(t->exts[t->rank - 1], "D"))
    return false;
  uint64_t k = 0;
  for (int i = 0; i < t->rank - 1; i++) {
    const VirValue *a = v->args[i];
    if (a->op != VI_AXIS || (element_axis(g, a->axis) && a->axis->role != AX_PAGE))
      return false;
    int c = a->axis->role == AX_PAGE ? 0 : coord[a->axis->id];
    if (c < 0 || c > 255 || i >= 8)
      return false;
    k |= (uint64_t)c << (8 * i);
  }
  *key = k;
  return true;
}

/* Loads of page and token fields ([page][head][rest] blocks, runtime/vxk.h) and of consts
 * (dense, row-major). */
static Ev load_field(Gx *g, const VirValue *v, const int *coord) {
  const VirTensor *t = v->tensor;
  bool paged = (t->kind == VT_PAGE || t->kind == VT_TOKEN) && t->rank >= 1 && vir_extent_is(t->exts[0], "npages");
  if (!paged && t->kind != VT_CONST) {
    gx_error(g, "a load of", t->name);
    return (Ev){LLVMGetUndef(g->f32), NULL};
  }
  if (paged && (v->args[0]->op != VI_AXIS || v->args[0]->axis->role != AX_PAGE)) {
    gx_error(g, "a field read at another page than the element's:", t->name);
    return (Ev){LLVMGetUndef(g->f32), NULL};
  }
  uint64_t key;
  bool vec = (t->dtype == DT_F32 || t->dtype == DT_F16 || t->dtype == DT_BF16) && lane_vector_load(g, v, coord, &key);
  struct LaneVec *lv = vec ? lane_vec_find(g, t->id, key) : NULL;
  if (lv)
    return (Ev){cg_expr_convert(&g->e, lv->v[coord[v->args[t->rank - 1]->axis->id]], TY_F32, v->type), lv->valid};
  int local = vec ? coord[v->args[t->rank - 1]->axis->id] : 0;
  int saved_local = 0;
  if (vec) { /* address the lane's first channel, then load all of them */
    saved_local = local;
    ((int *)coord)[v->args[t->rank - 1]->axis->id] = 0;
  }
  LLVMValueRef valid = NULL, rest = c32(g, 0);
  long blk = 1;
  for (int i = paged; i < t->rank; i++) {
    long n = extent_of(g, t->exts[i]);
    if (n < 0) {
      gx_error(g, "a run-time extent in", t->name);
      return (Ev){LLVMGetUndef(g->f32), NULL};
    }
    blk *= n;
    rest = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, rest, c32(g, n), ""), subscript(g, v, i, n, coord, &valid), "");
  }
  LLVMValueRef base = field_base(g, t);
  LLVMValueRef idx = LLVMBuildZExt(g->b, rest, g->i64, "");
  if (paged)
    idx = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, block_number(g, g->page_phys), c64(g, blk), ""), idx, "");
  if (vec) {
    ((int *)coord)[v->args[t->rank - 1]->axis->id] = saved_local;
    lv = lane_vec_new(g, t->id, key);
    if (lv) {
      load_lane_vector(g, t->dtype, base, idx, lv->v);
      lv->valid = valid;
      return (Ev){cg_expr_convert(&g->e, lv->v[saved_local], TY_F32, v->type), valid};
    }
    idx = LLVMBuildAdd(g->b, idx, c64(g, saved_local), "");
  }
  LLVMValueRef x = load_dtype(g, t->dtype, base, idx);
  return (Ev){t->dtype == DT_U32 ? LLVMBuildFPToUI(g->b, x, g->i32, "") : cg_expr_convert(&g->e, x, TY_F32, v->type), valid};
}

static Ev load_input(Gx *g, const VirValue *v, const int *coord) {
  const char *n = v->tensor->name;
  LLVMValueRef valid = NULL;
  if (!strcmp(n, "logit") && g->logit)
    return (Ev){g->logit, NULL};
  if (!strcmp(n, "q") && v->args[0]->op == VI_AXIS && v->args[1]->op == VI_AXIS && lane_axis(v->args[1]->axis) &&
      g->lane && !element_axis(g, v->args[0]->axis)) {
    if (!g->qlane[0][0])
      load_q_lane(g, channel(g, 0), CPL, g->qlane);
    return (Ev){g->qlane[coord[v->args[0]->axis->id]][coord[v->args[1]->axis->id]], NULL};
  }
  if (!strcmp(n, "q")) {
    LLVMValueRef gi = subscript(g, v, 0, g->s.G, coord, &valid), ch = subscript(g, v, 1, g->s.D, coord, &valid);
    LLVMValueRef rowq = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->row, c32(g, g->s.G), ""), gi, "");
    LLVMValueRef idx = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, rowq, c32(g, g->s.D), ""), ch, "");
    return (Ev){load_dyn(g, gaddr(g, arg(g, VXK_GPU_Q)), arg(g, VXK_GPU_Q_DTYPE), idx), valid};
  }
  uint64_t key;
  if ((!strcmp(n, "k") || !strcmp(n, "v")) && lane_vector_load(g, v, coord, &key)) {
    struct LaneVec *lv = lane_vec_find(g, v->tensor->id, key);
    int local = coord[v->args[2]->axis->id];
    if (!lv && (lv = lane_vec_new(g, v->tensor->id, key))) {
      LLVMValueRef t = axis_value(g, v->args[1]->axis, coord);
      LLVMValueRef pool = gaddr(g, arg(g, n[0] == 'k' ? VXK_GPU_K_POOL : VXK_GPU_V_POOL));
      DType dt = g->s.kv == VXK_GPU_F32 ? DT_F32 : g->s.kv == VXK_GPU_F16 ? DT_F16 : DT_BF16;
      load_lane_vector(g, dt, pool, kv_index(g, g->page_phys, t, channel(g, 0)), lv->v);
      LLVMValueRef pos = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->page, c32(g, g->s.P), ""), t, "");
      lv->valid = LLVMBuildICmp(g->b, LLVMIntSLT, pos, g->len, "");
    }
    if (lv)
      return (Ev){lv->v[local], lv->valid};
  }
  if (!strcmp(n, "k") || !strcmp(n, "v")) {
    LLVMValueRef t = subscript(g, v, 1, g->s.P, coord, &valid), ch = subscript(g, v, 2, g->s.D, coord, &valid);
    LLVMValueRef pool = gaddr(g, arg(g, n[0] == 'k' ? VXK_GPU_K_POOL : VXK_GPU_V_POOL));
    DType dt = g->s.kv == VXK_GPU_F32 ? DT_F32 : g->s.kv == VXK_GPU_F16 ? DT_F16 : DT_BF16;
    LLVMValueRef x = load_dtype(g, dt, pool, kv_index(g, g->page_phys, t, ch));
    LLVMValueRef pos = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->page, c32(g, g->s.P), ""), t, "");
    return (Ev){x, and_valid(g, valid, LLVMBuildICmp(g->b, LLVMIntSLT, pos, g->len, ""))};
  }
  if (!strcmp(n, "pos")) {
    LLVMValueRef t = subscript(g, v, 1, g->s.P, coord, &valid);
    return (Ev){LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->page, c32(g, g->s.P), ""), t, ""), valid};
  }
  if (!strcmp(n, "from_end"))
    return (Ev){LLVMBuildSub(g->b, LLVMBuildSub(g->b, g->npages, c32(g, 1), ""), g->page, ""), NULL};
  gx_error(g, "the input", n);
  return (Ev){LLVMGetUndef(g->f32), NULL};
}

static Ev eval_load(Gx *g, const VirValue *v, const int *coord) {
  const VirTensor *t = v->tensor;
  if (t->kind == VT_INPUT)
    return load_input(g, v, coord);
  const VirStore *s = store_of(g, t);
  if (s) {
    /* a tensor this kernel computes: stays in registers, read with the store's axes bound
     * to the load's subscripts */
    int *c2 = malloc(sizeof(int) * (size_t)(g->m->next_axis_id + 1));
    memcpy(c2, coord, sizeof(int) * (size_t)(g->m->next_axis_id + 1));
    for (int i = 0; i < t->rank; i++) {
      if (v->args[i]->op != VI_AXIS) {
        free(c2);
        gx_error(g, "a computed subscript of", t->name);
        return (Ev){LLVMGetUndef(g->f32), NULL};
      }
      c2[s->axes[i]->id] = coord[v->args[i]->axis->id];
    }
    Ev r = eval(g, s->value, c2);
    free(c2);
    r.val = cg_expr_convert(&g->e, r.val, s->value->type, v->type);
    return r;
  }
  return load_field(g, v, coord);
}

typedef struct ReduceArg {
  const VirValue *v;
  LLVMValueRef acc, count;
  bool lane_split;
} ReduceArg;

static void reduce_one(Gx *g, int *coord, void *rarg) {
  ReduceArg *r = rarg;
  const VirValue *v = r->v;
  Ev x = eval(g, v->args[0], coord);
  LLVMValueRef ok = x.valid;
  if (v->nargs == 2) {
    Ev f = eval(g, v->args[1], coord);
    ok = and_valid(g, and_valid(g, ok, f.valid), f.val);
  }
  LLVMValueRef pos = NULL;
  if (v->red == RED_BITS) {
    pos = c32(g, 0);
    for (int i = 0; i < v->naxes; i++) {
      long n = axis_count(g, v->axes[i]);
      LLVMValueRef here = axis_value(g, v->axes[i], coord);
      pos = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, pos, c32(g, lane_axis(v->axes[i]) ? g->s.D : n), ""), here, "");
    }
  }
  LLVMValueRef acc = get(g, r->acc);
  LLVMValueRef next = cg_expr_reduce_step(&g->e, v->red, v->type, acc, v->args[0]->type, x.val, pos);
  set(g, r->acc, ok ? LLVMBuildSelect(g->b, ok, next, acc, "") : next);
  if (r->count) {
    LLVMValueRef n = get(g, r->count);
    LLVMValueRef inc = ok ? LLVMBuildZExt(g->b, ok, g->i32, "") : c32(g, 1);
    set(g, r->count, LLVMBuildAdd(g->b, n, inc, ""));
  }
}

static Ev eval_reduce(Gx *g, const VirValue *v, const int *coord) {
  if (v->red == RED_SOFTMAX) {
    gx_error(g, "softmax", NULL);
    return (Ev){LLVMGetUndef(g->f32), NULL};
  }
  ReduceArg r = {v, NULL, NULL, false};
  Type at = cg_expr_reduce_type(v->red, v->type);
  r.acc = var(g, cg_expr_type(&g->e, at), cg_expr_reduce_init(&g->e, v->red, v->type));
  if (v->red == RED_MEAN)
    r.count = var(g, g->i32, c32(g, 0));
  for (int i = 0; i < v->naxes; i++) {
    r.lane_split |= lane_axis(v->axes[i]);
    if (element_axis(g, v->axes[i])) {
      gx_error(g, "a reduction over pages in a per-page hook", NULL);
      return (Ev){LLVMGetUndef(g->f32), NULL};
    }
  }
  int *c2 = malloc(sizeof(int) * (size_t)(g->m->next_axis_id + 1));
  memcpy(c2, coord, sizeof(int) * (size_t)(g->m->next_axis_id + 1));
  for_combos(g, v->axes, v->naxes, c2, reduce_one, &r);
  free(c2);
  LLVMValueRef acc = get(g, r.acc), count = r.count ? get(g, r.count) : NULL;
  if (r.lane_split) {
    for (int off = g->lanes / 2; off >= 1; off /= 2) {
      acc = cg_expr_reduce_merge(&g->e, v->red, v->type, acc, shfl_xor(g, acc, off));
      if (count)
        count = LLVMBuildAdd(g->b, count, shfl_xor(g, count, off), "");
    }
  }
  return (Ev){cg_expr_reduce_finish(&g->e, v->red, acc, count), NULL};
}

static Ev eval_uncached(Gx *g, const VirValue *v, const int *coord) {
  switch (v->op) {
  case VI_NUM:
    return (Ev){cg_expr_number(&g->e, v->type, v->num), NULL};
  case VI_PARAM: {
    LLVMValueRef x = scalar_slot(g, v->param->index);
    bool fl = v->param->type == TY_F32;
    return (Ev){fl ? x : LLVMBuildFPToSI(g->b, x, g->i32, ""), NULL};
  }
  case VI_SCALAR: {
    const char *n = v->name;
    LLVMValueRef x = !strcmp(n, "D") ? c32(g, g->s.D) : !strcmp(n, "G") ? c32(g, g->s.G) : !strcmp(n, "P") ? c32(g, g->s.P)
                     : !strcmp(n, "len") ? g->len : !strcmp(n, "npages") ? g->npages
                     : !strcmp(n, "prefill_len") ? g->prefill_len
                     : !strcmp(n, "layer") ? arg32(g, VXK_GPU_LAYER)
                     : !strcmp(n, "pi") ? cf(g, 3.14159265358979323846)
                     : !strcmp(n, "inf") ? cf(g, __builtin_inf()) : NULL;
    if (!x) {
      gx_error(g, "the scalar", n);
      x = c32(g, 0);
    }
    return (Ev){x, NULL};
  }
  case VI_AXIS:
    return (Ev){axis_value(g, v->axis, coord), NULL};
  case VI_LOAD:
    return eval_load(g, v, coord);
  case VI_UNARY: {
    Ev x = eval(g, v->args[0], coord);
    return (Ev){cg_expr_unary(&g->e, v->opcode, v->type, v->args[0]->type, x.val), x.valid};
  }
  case VI_BINARY: {
    Ev l = eval(g, v->args[0], coord), r = eval(g, v->args[1], coord);
    return (Ev){cg_expr_binary(&g->e, v->opcode, v->type, v->args[0]->type, v->args[1]->type, l.val, r.val),
                and_valid(g, l.valid, r.valid)};
  }
  case VI_SELECT: {
    Ev c = eval(g, v->args[0], coord), a = eval(g, v->args[1], coord), b = eval(g, v->args[2], coord);
    return (Ev){cg_expr_select(&g->e, v->type, c.val, v->args[1]->type, a.val, v->args[2]->type, b.val),
                and_valid(g, c.valid, and_valid(g, a.valid, b.valid))};
  }
  case VI_CALL: {
    LLVMValueRef a[3];
    Type at[3];
    LLVMValueRef ok = NULL;
    for (int i = 0; i < v->nargs && i < 3; i++) {
      Ev x = eval(g, v->args[i], coord);
      a[i] = x.val;
      at[i] = v->args[i]->type;
      ok = and_valid(g, ok, x.valid);
    }
    LLVMValueRef r = cg_expr_call(&g->e, v->name, v->type, at, a, v->nargs);
    if (g->e.unsupported)
      gx_error(g, "the function", g->e.unsupported);
    return (Ev){r, ok};
  }
  case VI_REDUCE:
    return eval_reduce(g, v, coord);
  }
  return (Ev){LLVMGetUndef(g->f32), NULL};
}

static Ev eval(Gx *g, const VirValue *v, const int *coord) {
  if (g->failed)
    return (Ev){LLVMGetUndef(cg_expr_type(&g->e, v->type)), NULL};
  uint64_t key;
  bool memo = memo_key(g, v, coord, &key);
  Memo *e = memo ? memo_slot(g, v, key) : NULL;
  if (e && memo_live(g, e))
    return (Ev){e->val, e->valid};
  Ev r = eval_uncached(g, v, coord);
  if (e) {
    /* memo_slot may have been overwritten by nested evaluations: look again */
    e = memo_slot(g, v, key);
    *e = (Memo){v->id + 1, v->invariant ? g->row_gen : g->gen, key, r.val, r.valid};
  }
  return r;
}

static void new_element(Gx *g) { g->gen = ++g->gens; }

/* ------------------------------------------------------------------ page fields (hook) */

typedef struct StoreArg {
  const VirStore *s;
} StoreArg;

static void store_field_one(Gx *g, int *coord, void *sarg) {
  const VirStore *s = ((StoreArg *)sarg)->s;
  const VirTensor *t = s->dst;
  Ev x = eval(g, s->value, coord);
  long blk = 1;
  LLVMValueRef rest = c32(g, 0);
  for (int i = 1; i < t->rank; i++) {
    long n = extent_of(g, t->exts[i]);
    blk *= n;
    rest = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, rest, c32(g, n), ""), axis_value(g, s->axes[i], coord), "");
  }
  LLVMValueRef base = field_base(g, t);
  LLVMValueRef idx = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, block_number(g, g->page_phys), c64(g, blk), ""),
                                  LLVMBuildZExt(g->b, rest, g->i64, ""), "");
  LLVMValueRef f = cg_expr_convert(&g->e, x.val, s->value->type, TY_F32);
  LLVMBasicBlockRef join = if_then(g, and_valid(g, g->store_ok, x.valid));
  store_dtype(g, t->dtype, base, idx, f);
  end_if(g, join);
}

/* The page fields of logical page `page` (this row), by the lanes of one group. */
static void page_fields(Gx *g, LLVMValueRef page) {
  const VirKernel *k = NULL;
  for (const VirKernel *x = g->m->kernels; x; x = x->next)
    if (x->kind == VK_SUMMARISE)
      k = x;
  if (!k)
    return;
  g->k = k;
  g->page = page;
  g->page_phys = page_of(g, page);
  new_element(g);
  int *coord = calloc((size_t)g->m->next_axis_id + 1, sizeof(int));
  for (const VirStore *s = k->stores; s && !g->failed; s = s->next) {
    StoreArg a = {s};
    for_combos(g, s->axes, s->dst->rank, coord, store_field_one, &a);
  }
  free(coord);
  g->k = NULL;
}

/* What the GPU path handles this session: page fields, page-granular group-shared top(),
 * keeps, select all; no token fields, row state, consts, where(), per-head selections,
 * attend modifiers or updates. */
static bool check_supported(Gx *g) {
  const VirModule *m = g->m;
  for (int i = 0; i < m->ntensors; i++) {
    const VirTensor *t = m->tensors[i];
    if (t->kind == VT_TOKEN || t->kind == VT_ROW) {
      gx_error(g, t->kind == VT_TOKEN ? "a token field:" : "row state:", t->name);
      return false;
    }
    if (t->kind == VT_PAGE && t->dtype != DT_F32 && t->dtype != DT_F16 && t->dtype != DT_BF16) {
      gx_error(g, "a page field stored as fp8, int8 or u32:", t->name);
      return false;
    }
  }
  if (m->per_head) {
    gx_error(g, "per-head selections", NULL);
    return false;
  }
  int tops = 0;
  for (int i = 0; i < m->nselections; i++) {
    tops += m->selections[i].kind == VS_TOP;
  }
  if (tops > 1) {
    gx_error(g, "more than one top()", NULL);
    return false;
  }
  for (const VirKernel *k = m->kernels; k; k = k->next) {
    if (k->kind == VK_UPDATE || k->kind == VK_ROW) {
      gx_error(g, "update or row kernels", NULL);
      return false;
    }
  }
  int lanes = g->s.D / CPL;
  if (g->s.P > 32 || g->s.G > 16 || g->s.D % CPL || lanes > 32 || (lanes & (lanes - 1)) ||
      (g->s.D * kv_size(g)) / 16 > 32) {
    gx_error(g, "this shape (P <= 32, G <= 16, D / 8 a power of two up to 256, 128 for f32, are supported):", g->suffix);
    return false;
  }
  /* attend's CTA merge keeps every lane group's o[G][D] in static shared memory (48 KB) */
  int groups = VXK_GPU_ATTEND_THREADS / 32 * (32 / (g->s.D * kv_size(g) / 16));
  if ((long)groups * g->s.G * g->s.D * 4 + (4 * 3 + 8) * ATT_SEG + 1024 > 48 * 1024) {
    gx_error(g, "this shape (attend's merge would need more than 48 KB of shared memory):", g->suffix);
    return false;
  }
  return true;
}

/* ------------------------------------------------------------------ kept ranges */

/* Token bits of logical page p kept by the policy's keep ranges (u32, bit t = token t). */
static LLVMValueRef kept_mask(Gx *g, LLVMValueRef p) {
  LLVMValueRef mask = c32(g, 0);
  LLVMValueRef base = LLVMBuildMul(g->b, p, c32(g, g->s.P), "");
  for (int i = 0; i < g->m->nkeeps; i++) {
    const VirKeep *k = &g->m->keeps[i];
    LLVMValueRef from, to;
    if (k->kind == KEEP_GENERATED) {
      from = g->prefill_len;
      to = g->len;
    } else {
      LLVMValueRef n = LLVMBuildFPToSI(g->b, scalar_slot(g, keep_scalar(g, i)), g->i32, "");
      if (k->kind == KEEP_FIRST) {
        from = c32(g, 0);
        to = k->unit == UNIT_PAGES ? LLVMBuildMul(g->b, n, c32(g, g->s.P), "") : n;
      } else {
        LLVMValueRef end = k->at_prefill ? g->prefill_len : g->len;
        to = end;
        if (k->unit == UNIT_PAGES) {
          LLVMValueRef pages = LLVMBuildSDiv(g->b, LLVMBuildAdd(g->b, end, c32(g, g->s.P - 1), ""), c32(g, g->s.P), "");
          from = LLVMBuildMul(g->b, LLVMBuildSub(g->b, pages, n, ""), c32(g, g->s.P), "");
        } else {
          from = LLVMBuildSub(g->b, end, n, "");
        }
      }
    }
    /* clamp to [0, len) and to this page, then the bits [lo, hi) */
    LLVMValueRef args[2];
    args[0] = LLVMBuildSub(g->b, from, base, "");
    args[1] = c32(g, 0);
    LLVMValueRef lo = call_intrinsic(g, "llvm.smax", &g->i32, 1, args, 2);
    args[0] = lo;
    args[1] = c32(g, g->s.P);
    lo = call_intrinsic(g, "llvm.smin", &g->i32, 1, args, 2);
    args[0] = LLVMBuildSub(g->b, to, base, "");
    args[1] = LLVMBuildSub(g->b, g->len, base, "");
    LLVMValueRef hi = call_intrinsic(g, "llvm.smin", &g->i32, 1, args, 2);
    args[0] = hi;
    args[1] = c32(g, g->s.P);
    hi = call_intrinsic(g, "llvm.smin", &g->i32, 1, args, 2);
    args[0] = hi;
    args[1] = lo;
    hi = call_intrinsic(g, "llvm.smax", &g->i32, 1, args, 2);
    LLVMValueRef ones = c64(g, -1);
    LLVMValueRef hb = LLVMBuildShl(g->b, ones, LLVMBuildZExt(g->b, hi, g->i64, ""), "");
    LLVMValueRef lb = LLVMBuildShl(g->b, ones, LLVMBuildZExt(g->b, lo, g->i64, ""), "");
    LLVMValueRef bits = LLVMBuildTrunc(g->b, LLVMBuildAnd(g->b, lb, LLVMBuildNot(g->b, hb, ""), ""), g->i32, "");
    mask = LLVMBuildOr(g->b, mask, bits, "");
  }
  return mask;
}

/* Token bits of every token of logical page p that exists (pos < len). */
static LLVMValueRef full_mask(Gx *g, LLVMValueRef p) {
  LLVMValueRef n = LLVMBuildSub(g->b, g->len, LLVMBuildMul(g->b, p, c32(g, g->s.P), ""), "");
  LLVMValueRef args[2] = {n, c32(g, g->s.P)};
  n = call_intrinsic(g, "llvm.smin", &g->i32, 1, args, 2);
  LLVMValueRef hb = LLVMBuildShl(g->b, c64(g, -1), LLVMBuildZExt(g->b, n, g->i64, ""), "");
  return LLVMBuildTrunc(g->b, LLVMBuildNot(g->b, hb, ""), g->i32, "");
}

/* ------------------------------------------------------------------ block scan */

/* Exclusive prefix sum of x over the CTA's `threads` threads (in thread order); *total gets the
 * sum. Uses sh (threads/32 + 1 u32) and two barriers. */
static LLVMValueRef block_scan(Gx *g, LLVMValueRef x, int threads, LLVMValueRef sh, LLVMValueRef *total) {
  LLVMValueRef t = tid(g);
  LLVMValueRef lane = LLVMBuildAnd(g->b, t, c32(g, 31), ""), warp = LLVMBuildLShr(g->b, t, c32(g, 5), "");
  LLVMValueRef incl = x;
  for (int off = 1; off < 32; off *= 2) {
    LLVMValueRef args[4] = {c32(g, -1), incl, c32(g, off), c32(g, 0)};
    LLVMValueRef up = call_intrinsic(g, "llvm.nvvm.shfl.sync.up.i32", NULL, 0, args, 4);
    LLVMValueRef has = LLVMBuildICmp(g->b, LLVMIntUGE, lane, c32(g, off), "");
    incl = LLVMBuildAdd(g->b, incl, LLVMBuildSelect(g->b, has, up, c32(g, 0), ""), "");
  }
  LLVMBasicBlockRef j = if_then(g, LLVMBuildICmp(g->b, LLVMIntEQ, lane, c32(g, 31), ""));
  LLVMBuildStore(g->b, incl, sh_elem(g, sh, g->i32, warp));
  end_if(g, j);
  barrier(g);
  int nw = threads / 32;
  LLVMValueRef before = c32(g, 0), sum = c32(g, 0);
  for (int w = 0; w < nw; w++) {
    LLVMValueRef wt = load(g, g->i32, sh_elem(g, sh, g->i32, c32(g, w)));
    before = LLVMBuildAdd(g->b, before, LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntULT, c32(g, w), warp, ""), wt, c32(g, 0), ""), "");
    sum = LLVMBuildAdd(g->b, sum, wt, "");
  }
  barrier(g);
  *total = sum;
  return LLVMBuildAdd(g->b, before, LLVMBuildSub(g->b, incl, x, ""), "");
}

/* ------------------------------------------------------------------ select */

/* The order key of a score: larger score, larger key; NaN ranks as -inf; -0 as +0; every key of
 * a real score is above 0, which marks "not a candidate". */
static LLVMValueRef order_key(Gx *g, LLVMValueRef score) {
  LLVMValueRef nan = LLVMBuildFCmp(g->b, LLVMRealUNO, score, score, "");
  LLVMValueRef x = LLVMBuildSelect(g->b, nan, cf(g, -__builtin_inf()), score, "");
  x = LLVMBuildFAdd(g->b, x, cf(g, 0.0), "");
  LLVMValueRef u = LLVMBuildBitCast(g->b, x, g->i32, "");
  LLVMValueRef neg = LLVMBuildICmp(g->b, LLVMIntSLT, u, c32(g, 0), "");
  return LLVMBuildSelect(g->b, neg, LLVMBuildNot(g->b, u, ""), LLVMBuildOr(g->b, u, c32(g, (int)0x80000000u), ""), "");
}

static const VirStore *score_store(const Gx *g, const VirKernel *k) {
  const VirTensor *score = NULL;
  for (int i = 0; i < g->m->nselections; i++)
    if (g->m->selections[i].kind == VS_TOP)
      score = g->m->selections[i].scores;
  for (const VirStore *s = k ? k->stores : NULL; s; s = s->next)
    if (s->dst == score)
      return s;
  return NULL;
}

static void eval_row_value(Gx *g, int *coord, void *arg) { eval(g, arg, coord); }

/* KEYS is [rows][P + 1][MAX_ROW_PAGES] words: the order key of each unit (a page, or a token
 * p P + t for token-granular selections), then the where() token mask of each page. */
static LLVMValueRef scratch(Gx *g, int masks, LLVMValueRef unit) {
  LLVMValueRef mrp = arg(g, VXK_GPU_MAX_ROW_PAGES);
  LLVMValueRef row = LLVMBuildMul(g->b, LLVMBuildMul(g->b, LLVMBuildZExt(g->b, g->row, g->i64, ""), c64(g, g->s.P + 1), ""), mrp, "");
  LLVMValueRef at = LLVMBuildAdd(g->b, row, LLVMBuildZExt(g->b, unit, g->i64, ""), "");
  if (masks)
    at = LLVMBuildAdd(g->b, at, LLVMBuildMul(g->b, c64(g, g->s.P), mrp, ""), "");
  return elem(g, g->i32, gaddr(g, arg(g, VXK_GPU_KEYS)), at);
}

static LLVMValueRef key_at(Gx *g, LLVMValueRef unit) { return load(g, g->i32, scratch(g, 0, unit)); }

/* Units a top() ranks per page: the page, or its P tokens. */
static int units_per_page(const Gx *g) { return g->m->token_granular ? g->s.P : 1; }

/* The token mask a where() condition gives the element's page: per token when the
 * condition has a token axis, else every token of the page. */
static LLVMValueRef where_mask(Gx *g, const VirStore *w, int *coord) {
  const VirAxis *tok = NULL;
  for (int i = 0; i < w->dst->rank; i++)
    if (w->axes[i]->role == AX_TOKEN)
      tok = w->axes[i];
  if (!tok) {
    Ev c = eval(g, w->value, coord);
    LLVMValueRef on = cg_expr_convert(&g->e, c.val, w->value->type, TY_BOOL);
    return LLVMBuildSelect(g->b, and_valid(g, c.valid, on), full_mask(g, g->page), c32(g, 0), "");
  }
  LLVMValueRef bits = c32(g, 0);
  for (int t = 0; t < g->s.P; t++) {
    coord[tok->id] = t;
    Ev c = eval(g, w->value, coord);
    LLVMValueRef on = and_valid(g, c.valid, cg_expr_convert(&g->e, c.val, w->value->type, TY_BOOL));
    bits = LLVMBuildOr(g->b, bits, LLVMBuildShl(g->b, LLVMBuildZExt(g->b, on, g->i32, ""), c32(g, t), ""), "");
  }
  return LLVMBuildAnd(g->b, bits, full_mask(g, g->page), "");
}

/* Evaluates the select hook for this CTA's slice of the row's pages (slice y of S = grid.y):
 * the top() score's order key (0 for kept pages) and the union of the where() masks, into
 * KEYS. A lane group takes SEL_UNROLL pages at a time, their page ids and fields loaded
 * before their math, so that several pages per group are in flight (docs/gpu.md). */
static void score_sweep(Gx *g, const VirKernel *k, const VirStore *score, const VirStore *const *wheres, int nwheres) {
  g->k = k;
  g->lanes = g->s.D / CPL;
  LLVMValueRef t = tid(g);
  g->lane = LLVMBuildURem(g->b, t, c32(g, g->lanes), "lane");
  LLVMValueRef grp = LLVMBuildUDiv(g->b, t, c32(g, g->lanes), "");
  int groups = SEL_THREADS / g->lanes;
  LLVMValueRef S = sreg(g, "llvm.nvvm.read.ptx.sreg.nctaid.y"), y = sreg(g, "llvm.nvvm.read.ptx.sreg.ctaid.y");
  LLVMValueRef per = LLVMBuildUDiv(g->b, LLVMBuildAdd(g->b, g->npages, LLVMBuildSub(g->b, S, c32(g, 1), ""), ""), S, "");
  LLVMValueRef lo = LLVMBuildMul(g->b, y, per, "");
  LLVMValueRef mm[2] = {LLVMBuildAdd(g->b, lo, per, ""), g->npages};
  LLVMValueRef hi = call_intrinsic(g, "llvm.smin", &g->i32, 1, mm, 2);
  int *coord = calloc((size_t)g->m->next_axis_id + 1, sizeof(int));
  /* the row block once, before the sweep: its values are memoised for every page */
  g->page = c32(g, 0);
  g->page_phys = c32(g, 0);
  for (const VirValue *v = k->row.first; v && !g->failed; v = v->next)
    for_combos(g, v->dom, v->ndom, coord, eval_row_value, (void *)v);
  /* 512 threads allow 128 registers: q of G heads takes 8 G of them; a token score is P
   * values per page */
  const int unroll = g->m->token_granular ? 1 : g->s.G <= 4 ? SEL_UNROLL : 2;
  const int upp = units_per_page(g);
  const VirAxis *tok_axis = score && upp > 1 ? score->axes[1] : NULL;
  GLoop l;
  LLVMValueRef p0 = loop_begin(g, &l, lo, hi, c32(g, groups * unroll));
  LLVMValueRef page[SEL_UNROLL], phys[SEL_UNROLL], valid[SEL_UNROLL], key[SEL_UNROLL][32], wmask[SEL_UNROLL];
  for (int u = 0; u < unroll; u++) {
    LLVMValueRef p = LLVMBuildAdd(g->b, p0, LLVMBuildAdd(g->b, c32(g, u * groups), grp, ""), "");
    valid[u] = LLVMBuildICmp(g->b, LLVMIntSLT, p, hi, "");
    page[u] = LLVMBuildSelect(g->b, valid[u], p, lo, "");
    phys[u] = page_of(g, page[u]);
  }
  for (int u = 0; u < unroll; u++) {
    g->page = page[u];
    g->page_phys = phys[u];
    new_element(g);
    key[u][0] = NULL;
    wmask[u] = c32(g, 0);
    if (score) {
      /* a unit that is kept, or a token past the row's end, is not a candidate (key 0) */
      LLVMValueRef kept = kept_mask(g, g->page), live = full_mask(g, g->page);
      for (int k = 0; k < upp; k++) {
        if (tok_axis)
          coord[tok_axis->id] = k;
        Ev sv = eval(g, score->value, coord);
        LLVMValueRef kk = order_key(g, cg_expr_convert(&g->e, sv.val, score->value->type, TY_F32));
        LLVMValueRef out = upp == 1 ? LLVMBuildICmp(g->b, LLVMIntNE, kept, c32(g, 0), "")
                                    : LLVMBuildICmp(g->b, LLVMIntNE, LLVMBuildAnd(g->b, LLVMBuildLShr(g->b, LLVMBuildAnd(g->b, live, LLVMBuildNot(g->b, kept, ""), ""), c32(g, k), ""), c32(g, 1), ""), c32(g, 1), "");
        key[u][k] = LLVMBuildSelect(g->b, out, c32(g, 0), kk, "");
      }
    }
    for (int i = 0; i < nwheres; i++)
      wmask[u] = LLVMBuildOr(g->b, wmask[u], where_mask(g, wheres[i], coord), "");
  }
  for (int u = 0; u < unroll; u++) {
    LLVMBasicBlockRef j = if_then(g, LLVMBuildAnd(g->b, valid[u], LLVMBuildICmp(g->b, LLVMIntEQ, g->lane, c32(g, 0), ""), ""));
    for (int k = 0; key[u][0] && k < upp; k++)
      LLVMBuildStore(g->b, key[u][k], scratch(g, 0, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, page[u], c32(g, upp), ""), c32(g, k), "")));
    if (nwheres)
      LLVMBuildStore(g->b, wmask[u], scratch(g, 1, page[u]));
    end_if(g, j);
  }
  loop_end(g, &l);
  free(coord);
  g->k = NULL;
}

/* Radix select over KEYS: afterwards sh_state holds {threshold T, how many keys equal to T to
 * take, candidates}. Keys above T are taken; want <= 0 takes none, want >= candidates all. */
static void radix_select(Gx *g, LLVMValueRef budget_units, LLVMValueRef hist, LLVMValueRef st) {
  /* units: pages, or tokens p P + t (those past the row's end have key 0, like kept ones) */
  LLVMValueRef nkeys = LLVMBuildMul(g->b, g->npages, c32(g, units_per_page(g)), "");
  LLVMValueRef nunits = units_per_page(g) > 1 ? g->len : g->npages;
  LLVMValueRef t = tid(g);
  LLVMValueRef s_thr = sh_elem(g, st, g->i32, c32(g, 0)), s_need = sh_elem(g, st, g->i32, c32(g, 1)),
               s_cand = sh_elem(g, st, g->i32, c32(g, 2)), s_done = sh_elem(g, st, g->i32, c32(g, 3));
  LLVMBasicBlockRef j = if_then(g, LLVMBuildICmp(g->b, LLVMIntEQ, t, c32(g, 0), ""));
  LLVMBuildStore(g->b, c32(g, 0), s_thr);
  LLVMBuildStore(g->b, c32(g, 0), s_cand);
  LLVMBuildStore(g->b, c32(g, 0), s_done);
  end_if(g, j);
  for (int pass = 0; pass < 4; pass++) {
    int shift = 24 - 8 * pass;
    j = if_then(g, LLVMBuildICmp(g->b, LLVMIntULT, t, c32(g, 256), ""));
    LLVMBuildStore(g->b, c32(g, 0), sh_elem(g, hist, g->i32, t));
    end_if(g, j);
    barrier(g);
    LLVMValueRef prefix = load(g, g->i32, s_thr);
    LLVMValueRef pmask = c32(g, shift == 24 ? 0 : (int)(0xffffffffu << (shift + 8)));
    GLoop l;
    LLVMValueRef p = loop_begin(g, &l, t, nkeys, c32(g, SEL_THREADS));
    LLVMValueRef key = key_at(g, p);
    LLVMValueRef match = LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntNE, key, c32(g, 0), ""),
                                      LLVMBuildICmp(g->b, LLVMIntEQ, LLVMBuildAnd(g->b, key, pmask, ""),
                                                    LLVMBuildAnd(g->b, prefix, pmask, ""), ""), "");
    j = if_then(g, match);
    LLVMValueRef bin = LLVMBuildAnd(g->b, LLVMBuildLShr(g->b, key, c32(g, shift), ""), c32(g, 255), "");
    LLVMBuildAtomicRMW(g->b, LLVMAtomicRMWBinOpAdd, sh_elem(g, hist, g->i32, bin), c32(g, 1), LLVMAtomicOrderingMonotonic, 0);
    if (pass == 0)
      LLVMBuildAtomicRMW(g->b, LLVMAtomicRMWBinOpAdd, s_cand, c32(g, 1), LLVMAtomicOrderingMonotonic, 0);
    end_if(g, j);
    loop_end(g, &l);
    barrier(g);
    /* the first warp finds the bin where the count from the top reaches `need`: lane l holds
     * bins 255 - 8l ... 248 - 8l, a warp scan finds the lane, that lane its bin */
    j = if_then(g, LLVMBuildICmp(g->b, LLVMIntULT, t, c32(g, 32), ""));
    LLVMValueRef done, need;
    if (pass == 0) {
      LLVMValueRef cand = load(g, g->i32, s_cand);
      LLVMValueRef kept = LLVMBuildSub(g->b, nunits, cand, "");
      LLVMValueRef want = LLVMBuildSub(g->b, budget_units, kept, "");
      LLVMValueRef none = LLVMBuildICmp(g->b, LLVMIntSLE, want, c32(g, 0), "");
      LLVMValueRef all = LLVMBuildICmp(g->b, LLVMIntSGE, want, cand, "");
      done = LLVMBuildOr(g->b, none, all, "");
      need = want;
      /* none: T = max, take 0 equal; all: T = 0 (every candidate key is above it) */
      LLVMBasicBlockRef j0 = if_then(g, LLVMBuildICmp(g->b, LLVMIntEQ, t, c32(g, 0), ""));
      LLVMBuildStore(g->b, LLVMBuildSelect(g->b, none, c32(g, -1), c32(g, 0), ""), s_thr);
      LLVMBuildStore(g->b, LLVMBuildSelect(g->b, done, c32(g, 0), want, ""), s_need);
      LLVMBuildStore(g->b, LLVMBuildZExt(g->b, done, g->i32, ""), s_done);
      end_if(g, j0);
    } else {
      done = LLVMBuildICmp(g->b, LLVMIntNE, load(g, g->i32, s_done), c32(g, 0), "");
      need = load(g, g->i32, s_need);
    }
    LLVMBasicBlockRef work = if_then(g, LLVMBuildNot(g->b, done, ""));
    LLVMValueRef bins[8], cnt = c32(g, 0);
    for (int b = 0; b < 8; b++) {
      LLVMValueRef bi = LLVMBuildSub(g->b, c32(g, 255 - b), LLVMBuildMul(g->b, t, c32(g, 8), ""), "");
      bins[b] = load(g, g->i32, sh_elem(g, hist, g->i32, bi));
      cnt = LLVMBuildAdd(g->b, cnt, bins[b], "");
    }
    LLVMValueRef incl = cnt;
    for (int off = 1; off < 32; off *= 2) {
      LLVMValueRef args[4] = {c32(g, -1), incl, c32(g, off), c32(g, 0)};
      LLVMValueRef up = call_intrinsic(g, "llvm.nvvm.shfl.sync.up.i32", NULL, 0, args, 4);
      incl = LLVMBuildAdd(g->b, incl, LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntUGE, t, c32(g, off), ""), up, c32(g, 0), ""), "");
    }
    LLVMValueRef vote[2] = {c32(g, -1), LLVMBuildICmp(g->b, LLVMIntSGE, incl, need, "")};
    LLVMValueRef ballot = call_intrinsic(g, "llvm.nvvm.vote.ballot.sync", NULL, 0, vote, 2);
    LLVMValueRef ctz[2] = {ballot, LLVMConstInt(g->i1, 1, 0)};
    LLVMValueRef lane_at = call_intrinsic(g, "llvm.cttz", &g->i32, 1, ctz, 2);
    LLVMBasicBlockRef mine = if_then(g, LLVMBuildICmp(g->b, LLVMIntEQ, t, lane_at, ""));
    LLVMValueRef acc = LLVMBuildSub(g->b, incl, cnt, ""), digit = c32(g, 0), above = c32(g, 0);
    LLVMValueRef found = LLVMConstInt(g->i1, 0, 0);
    for (int b = 0; b < 8; b++) {
      LLVMValueRef bin = LLVMBuildSub(g->b, c32(g, 255 - b), LLVMBuildMul(g->b, t, c32(g, 8), ""), "");
      LLVMValueRef next = LLVMBuildAdd(g->b, acc, bins[b], "");
      LLVMValueRef reach = LLVMBuildAnd(g->b, LLVMBuildNot(g->b, found, ""), LLVMBuildICmp(g->b, LLVMIntSGE, next, need, ""), "");
      digit = LLVMBuildSelect(g->b, reach, bin, digit, "");
      above = LLVMBuildSelect(g->b, reach, acc, above, "");
      found = LLVMBuildOr(g->b, found, reach, "");
      acc = next;
    }
    LLVMBuildStore(g->b, LLVMBuildOr(g->b, prefix, LLVMBuildShl(g->b, digit, c32(g, shift), ""), ""), s_thr);
    LLVMBuildStore(g->b, LLVMBuildSub(g->b, need, above, ""), s_need);
    end_if(g, mine);
    end_if(g, work);
    end_if(g, j);
    barrier(g);
  }
}

/* Writes SEL_N, SEL_IDX and SEL_MASK: pages in ascending order with their token masks. take
 * says whether a page is chosen by top() (given its key, and its rank among equal keys). */
static void compact(Gx *g, bool has_top, bool has_where, LLVMValueRef all_mode, LLVMValueRef st, LLVMValueRef scan) {
  LLVMValueRef t = tid(g);
  LLVMValueRef per = LLVMBuildUDiv(g->b, LLVMBuildAdd(g->b, g->npages, c32(g, SEL_THREADS - 1), ""), c32(g, SEL_THREADS), "");
  LLVMValueRef lo = LLVMBuildMul(g->b, t, per, "");
  LLVMValueRef args[2] = {LLVMBuildAdd(g->b, lo, per, ""), g->npages};
  LLVMValueRef hi = call_intrinsic(g, "llvm.smin", &g->i32, 1, args, 2);
  LLVMValueRef thr = has_top ? load(g, g->i32, sh_elem(g, st, g->i32, c32(g, 0))) : c32(g, -1);
  LLVMValueRef need = has_top ? load(g, g->i32, sh_elem(g, st, g->i32, c32(g, 1))) : c32(g, 0);
  const int upp = units_per_page(g);
  barrier(g);
  /* ranks among keys equal to T, in page order */
  LLVMValueRef eq_base = c32(g, 0), tot;
  if (has_top) {
    LLVMValueRef n = var(g, g->i32, c32(g, 0));
    GLoop l;
    LLVMValueRef p = loop_begin(g, &l, lo, hi, c32(g, 1));
    for (int k = 0; k < upp; k++) {
      LLVMValueRef unit = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, p, c32(g, upp), ""), c32(g, k), "");
      set(g, n, LLVMBuildAdd(g->b, get(g, n), LLVMBuildZExt(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, key_at(g, unit), thr, ""), g->i32, ""), ""));
    }
    loop_end(g, &l);
    eq_base = block_scan(g, get(g, n), SEL_THREADS, scan, &tot);
  }
  /* pass 1 counts this thread's selected pages, pass 2 writes them */
  LLVMValueRef count = var(g, g->i32, c32(g, 0)), offset = NULL;
  for (int pass = 0; pass < 2; pass++) {
    LLVMValueRef eq = var(g, g->i32, eq_base);
    LLVMValueRef n = var(g, g->i32, c32(g, 0));
    GLoop l;
    LLVMValueRef p = loop_begin(g, &l, lo, hi, c32(g, 1));
    LLVMValueRef full = full_mask(g, p);
    LLVMValueRef mask = kept_mask(g, p);
    /* the units top() takes: every unit above T, and the first `need` equal to T in order */
    LLVMValueRef chosen_bits = c32(g, 0);
    for (int k = 0; has_top && k < upp; k++) {
      LLVMValueRef key = key_at(g, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, p, c32(g, upp), ""), c32(g, k), ""));
      LLVMValueRef is_eq = LLVMBuildICmp(g->b, LLVMIntEQ, key, thr, "");
      LLVMValueRef chosen = LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntUGT, key, thr, ""),
                                        LLVMBuildAnd(g->b, is_eq, LLVMBuildICmp(g->b, LLVMIntSLT, get(g, eq), need, ""), ""), "");
      chosen = LLVMBuildAnd(g->b, chosen, LLVMBuildICmp(g->b, LLVMIntNE, key, c32(g, 0), ""), "");
      set(g, eq, LLVMBuildAdd(g->b, get(g, eq), LLVMBuildZExt(g->b, is_eq, g->i32, ""), ""));
      LLVMValueRef bits = upp == 1 ? full : c32(g, 1 << k);
      chosen_bits = LLVMBuildOr(g->b, chosen_bits, LLVMBuildSelect(g->b, chosen, bits, c32(g, 0), ""), "");
    }
    mask = LLVMBuildSelect(g->b, all_mode, full, LLVMBuildOr(g->b, mask, LLVMBuildAnd(g->b, chosen_bits, full, ""), ""), "");
    if (has_where)
      mask = LLVMBuildOr(g->b, mask, LLVMBuildSelect(g->b, all_mode, c32(g, 0), load(g, g->i32, scratch(g, 1, p)), ""), "");
    LLVMValueRef sel = LLVMBuildICmp(g->b, LLVMIntNE, mask, c32(g, 0), "");
    if (pass == 1) {
      LLVMBasicBlockRef j = if_then(g, sel);
      LLVMValueRef cap = arg(g, VXK_GPU_SEL_CAP);
      LLVMValueRef at = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, LLVMBuildZExt(g->b, g->row, g->i64, ""), cap, ""),
                                     LLVMBuildZExt(g->b, LLVMBuildAdd(g->b, offset, get(g, n), ""), g->i64, ""), "");
      LLVMBuildStore(g->b, p, elem(g, g->i32, gaddr(g, arg(g, VXK_GPU_SEL_IDX)), at));
      LLVMBuildStore(g->b, mask, elem(g, g->i32, gaddr(g, arg(g, VXK_GPU_SEL_MASK)), at));
      end_if(g, j);
    }
    set(g, n, LLVMBuildAdd(g->b, get(g, n), LLVMBuildZExt(g->b, sel, g->i32, ""), ""));
    loop_end(g, &l);
    if (pass == 0) {
      set(g, count, get(g, n));
      offset = block_scan(g, get(g, count), SEL_THREADS, scan, &tot);
      LLVMBasicBlockRef j = if_then(g, LLVMBuildICmp(g->b, LLVMIntEQ, t, c32(g, 0), ""));
      LLVMBuildStore(g->b, tot, elem(g, g->i32, gaddr(g, arg(g, VXK_GPU_SEL_N)), g->row));
      end_if(g, j);
    }
  }
}

/* The slices of a row (grid.y) count themselves out on the row's select counter; every CTA
 * but the last returns, and the last, seeing all slices' keys, goes on (and resets the
 * counter for the next launch). */
static void last_slice_only(Gx *g, LLVMValueRef st) {
  LLVMValueRef S = sreg(g, "llvm.nvvm.read.ptx.sreg.nctaid.y"), t = tid(g);
  LLVMBasicBlockRef j = if_then(g, LLVMBuildICmp(g->b, LLVMIntUGT, S, c32(g, 1), ""));
  fence_gpu(g);
  barrier(g);
  LLVMValueRef rows = LLVMBuildMul(g->b, arg32(g, VXK_GPU_NSLOTS), arg32(g, VXK_GPU_KV_HEADS), "");
  LLVMValueRef counter = elem(g, g->i32, gaddr(g, arg(g, VXK_GPU_COUNTERS)), LLVMBuildAdd(g->b, rows, g->row, ""));
  LLVMValueRef flag = sh_elem(g, st, g->i32, c32(g, 3));
  LLVMBasicBlockRef j0 = if_then(g, LLVMBuildICmp(g->b, LLVMIntEQ, t, c32(g, 0), ""));
  LLVMValueRef old = LLVMBuildAtomicRMW(g->b, LLVMAtomicRMWBinOpAdd, counter, c32(g, 1), LLVMAtomicOrderingAcquireRelease, 0);
  LLVMValueRef last = LLVMBuildICmp(g->b, LLVMIntEQ, old, LLVMBuildSub(g->b, S, c32(g, 1), ""), "");
  LLVMBuildStore(g->b, LLVMBuildZExt(g->b, last, g->i32, ""), flag);
  LLVMBasicBlockRef r0 = if_then(g, last);
  LLVMBuildStore(g->b, c32(g, 0), counter);
  end_if(g, r0);
  end_if(g, j0);
  barrier(g);
  LLVMValueRef is_last = LLVMBuildICmp(g->b, LLVMIntNE, load(g, g->i32, flag), c32(g, 0), "");
  LLVMBasicBlockRef go = block(g, "last_slice"), out = block(g, "not_last");
  LLVMBuildCondBr(g->b, is_last, go, out);
  LLVMPositionBuilderAtEnd(g->b, out);
  LLVMBuildRetVoid(g->b);
  LLVMPositionBuilderAtEnd(g->b, go);
  fence_gpu(g);
  barrier(g); /* the flag is read before radix_select reuses its word */
  end_if(g, j);
}

static void gen_select(Gx *g) {
  begin_kernel(g, "select", SEL_THREADS, 128);
  load_row(g, false);
  LLVMValueRef hist = shared_array(g, g->i32, 256, "sel_hist");
  LLVMValueRef st = shared_array(g, g->i32, 4, "sel_state");
  LLVMValueRef scan = shared_array(g, g->i32, SEL_THREADS / 32 + 1, "sel_scan");
  const VirKernel *k = NULL;
  for (const VirKernel *x = g->m->kernels; x; x = x->next)
    if (x->kind == VK_SELECT)
      k = x;
  const VirStore *score = score_store(g, k);
  const VirStore *wheres[8];
  int nwheres = 0;
  bool has_top = false, has_all = false;
  for (int i = 0; i < g->m->nselections; i++) {
    const VirSelection *x = &g->m->selections[i];
    has_top |= x->kind == VS_TOP;
    has_all |= x->kind == VS_ALL;
    if (x->kind == VS_WHERE) {
      const VirStore *w = store_of_kernel(k, x->scores);
      if (!w || nwheres == 8) {
        gx_error(g, "a where() whose condition the select kernel does not compute", NULL);
        return;
      }
      wheres[nwheres++] = w;
    }
  }
  if (has_top && !score) {
    gx_error(g, "a top() whose score the select kernel does not compute", NULL);
    return;
  }
  LLVMValueRef all_mode = LLVMConstInt(g->i1, has_all, 0);
  LLVMValueRef budget_pages = c32(g, 0);
  if (has_top) {
    const VirSelection *sel = NULL;
    for (int i = 0; i < g->m->nselections; i++)
      if (g->m->selections[i].kind == VS_TOP)
        sel = &g->m->selections[i];
    LLVMValueRef b = LLVMBuildFPToSI(g->b, scalar_slot(g, budget_scalar(g)), g->i32, "");
    LLVMValueRef tokens = sel->unit == UNIT_PAGES ? LLVMBuildMul(g->b, b, c32(g, g->s.P), "") : b;
    /* a budget that covers the row selects all of it, as the CPU does */
    all_mode = LLVMBuildOr(g->b, all_mode, LLVMBuildICmp(g->b, LLVMIntSGE, tokens, g->len, ""), "");
    budget_pages = g->m->token_granular ? tokens : LLVMBuildSDiv(g->b, tokens, c32(g, g->s.P), "");
  }
  LLVMValueRef sweep = LLVMBuildAnd(g->b, LLVMConstInt(g->i1, has_top || nwheres, 0), LLVMBuildNot(g->b, all_mode, ""), "");
  if (has_top || nwheres) {
    LLVMBasicBlockRef j = if_then(g, sweep);
    score_sweep(g, k, has_top ? score : NULL, wheres, nwheres);
    end_if(g, j);
  }
  last_slice_only(g, st);
  if (has_top) {
    LLVMBasicBlockRef j = if_then(g, sweep);
    barrier(g);
    radix_select(g, budget_pages, hist, st);
    end_if(g, j);
  }
  compact(g, has_top, nwheres > 0, all_mode, st, scan);
  LLVMBuildRetVoid(g->b);
}

/* ------------------------------------------------------------------ summarise and append */

static void gen_summarise(Gx *g) {
  begin_kernel(g, "summarise", VXK_GPU_SMALL_THREADS, 255);
  load_row(g, true);
  g->lanes = g->s.D / CPL;
  LLVMValueRef t = tid(g);
  LLVMValueRef p = sreg(g, "llvm.nvvm.read.ptx.sreg.ctaid.x");
  LLVMValueRef first = LLVMBuildTrunc(g->b, arg(g, VXK_GPU_FIRST_TOKEN), g->i32, "");
  LLVMValueRef in_row = LLVMBuildICmp(g->b, LLVMIntSLT, LLVMBuildMul(g->b, p, c32(g, g->s.P), ""), g->len, "");
  LLVMValueRef new_tokens = LLVMBuildICmp(g->b, LLVMIntSGT, LLVMBuildMul(g->b, LLVMBuildAdd(g->b, p, c32(g, 1), ""), c32(g, g->s.P), ""), first, "");
  /* the whole first warp runs the hook (its shuffles need every lane); lanes past D / 8
   * compute a copy and do not store */
  LLVMValueRef go = LLVMBuildAnd(g->b, LLVMBuildAnd(g->b, in_row, new_tokens, ""), LLVMBuildICmp(g->b, LLVMIntULT, t, c32(g, 32), ""), "");
  LLVMBasicBlockRef j = if_then(g, go);
  g->lane = LLVMBuildURem(g->b, t, c32(g, g->lanes), "");
  g->store_ok = LLVMBuildICmp(g->b, LLVMIntULT, t, c32(g, g->lanes), "");
  page_fields(g, p);
  end_if(g, j);
  LLVMBuildRetVoid(g->b);
}

static void gen_append(Gx *g) {
  begin_kernel(g, "append", VXK_GPU_SMALL_THREADS, 255);
  load_row(g, false);
  g->lanes = g->s.D / CPL;
  LLVMValueRef t = tid(g);
  LLVMValueRef pos = LLVMBuildSub(g->b, g->len, c32(g, 1), "");
  LLVMValueRef lp = LLVMBuildUDiv(g->b, pos, c32(g, g->s.P), ""), slot_t = LLVMBuildURem(g->b, pos, c32(g, g->s.P), "");
  LLVMValueRef phys = page_of(g, lp);
  DType dt = g->s.kv == VXK_GPU_F32 ? DT_F32 : g->s.kv == VXK_GPU_F16 ? DT_F16 : DT_BF16;
  GLoop l;
  LLVMValueRef d = loop_begin(g, &l, t, c32(g, g->s.D), c32(g, VXK_GPU_SMALL_THREADS));
  LLVMValueRef src = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->row, c32(g, g->s.D), ""), d, "");
  LLVMValueRef dst = kv_index(g, phys, slot_t, d);
  for (int kv = 0; kv < 2; kv++) {
    LLVMValueRef x = load_dyn(g, gaddr(g, arg(g, kv ? VXK_GPU_NEW_V : VXK_GPU_NEW_K)), arg(g, VXK_GPU_NEW_DTYPE), src);
    store_dtype(g, dt, gaddr(g, arg(g, kv ? VXK_GPU_V_POOL : VXK_GPU_K_POOL)), dst, x);
  }
  loop_end(g, &l);
  barrier(g);
  LLVMBasicBlockRef j = if_then(g, LLVMBuildICmp(g->b, LLVMIntULT, t, c32(g, 32), ""));
  g->lane = LLVMBuildURem(g->b, t, c32(g, g->lanes), "");
  g->store_ok = LLVMBuildICmp(g->b, LLVMIntULT, t, c32(g, g->lanes), "");
  page_fields(g, lp);
  end_if(g, j);
  LLVMBuildRetVoid(g->b);
}

/* ------------------------------------------------------------------ attend */

typedef struct Att {
  int vec, lpt, tpw, groups; /* channels per lane, lanes per token, tokens per warp, per CTA */
  LLVMValueRef lane, grp;
  LLVMValueRef sh_page, sh_lp, sh_mask, sh_block; /* the segment's entries in shared memory */
  LLVMValueRef lane_ch;                           /* this lane's first channel */
  bool modifiers;                                 /* the policy has attend modifiers */
  LLVMValueRef q[16][8];     /* q[g][v], scaled by log2(e)/sqrt(D) */
  LLVMValueRef o[16][8], m[16], l[16]; /* allocas */
} Att;

/* The token of each unrolled slot of the attend sweep. */
typedef struct AttElem {
  LLVMValueRef page, phys, tok;
} AttElem;

/* The policy's logit modifiers, in source order, on each token's logits s[h][u] (log2
 * units, scaled: the language's logit is s * ln 2). */
static void attend_modifiers(Gx *g, LLVMValueRef s[][ATT_UNROLL], const AttElem *el, int U) {
  const VirKernel *k = NULL;
  for (const VirKernel *x = g->m->kernels; x; x = x->next)
    if (x->kind == VK_ATTEND)
      k = x;
  if (!k || !k->stores)
    return;
  g->k = k;
  g->lane = NULL;
  int *coord = calloc((size_t)g->m->next_axis_id + 1, sizeof(int));
  for (int u = 0; u < U && !g->failed; u++) {
    g->page = el[u].page;
    g->page_phys = el[u].phys;
    g->tok = el[u].tok;
    for (int h = 0; h < g->s.G; h++) {
      LLVMValueRef logit = LLVMBuildFMul(g->b, s[h][u], cf(g, 0.6931471805599453), "");
      for (const VirStore *st = k->stores; st && !g->failed; st = st->next) {
        new_element(g); /* each modifier sees the logit the previous one left */
        coord[st->axes[0]->id] = h;
        g->logit = logit;
        Ev x = eval(g, st->value, coord);
        LLVMValueRef y = cg_expr_convert(&g->e, x.val, st->value->type, TY_F32);
        logit = st->op == OP_ADD ? LLVMBuildFAdd(g->b, logit, y, "")
                : st->op == OP_SUB ? LLVMBuildFSub(g->b, logit, y, "")
                : st->op == OP_MUL ? LLVMBuildFMul(g->b, logit, y, "") : y;
      }
      s[h][u] = LLVMBuildFMul(g->b, logit, cf(g, 1.4426950408889634), "");
    }
  }
  free(coord);
  g->tok = g->logit = NULL;
  g->k = NULL;
}

/* The selection entry e of this row: its logical page and token mask. */
static void att_entry(Gx *g, LLVMValueRef dense, LLVMValueRef e, LLVMValueRef *logical, LLVMValueRef *mask) {
  LLVMValueRef cap = arg(g, VXK_GPU_SEL_CAP);
  LLVMValueRef at = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, LLVMBuildZExt(g->b, g->row, g->i64, ""), cap, ""), LLVMBuildZExt(g->b, e, g->i64, ""), "");
  LLVMValueRef base_idx = gaddr(g, LLVMBuildSelect(g->b, dense, arg(g, VXK_GPU_PAGE_TABLE), arg(g, VXK_GPU_SEL_IDX), ""));
  LLVMValueRef lp = load(g, g->i32, elem(g, g->i32, base_idx, LLVMBuildSelect(g->b, dense, c64(g, 0), at, "")));
  *logical = LLVMBuildSelect(g->b, dense, e, lp, "");
  LLVMValueRef mk = load(g, g->i32, elem(g, g->i32, gaddr(g, LLVMBuildSelect(g->b, dense, arg(g, VXK_GPU_PAGE_TABLE), arg(g, VXK_GPU_SEL_MASK), "")),
                                       LLVMBuildSelect(g->b, dense, c64(g, 0), at, "")));
  *mask = LLVMBuildSelect(g->b, dense, c32(g, -1), mk, "");
}

typedef struct AttSlot {
  LLVMValueRef idx, ok; /* element index of this lane's 16 bytes; whether the token counts */
  AttElem el;
} AttSlot;

/* The token this lane group handles at segment offset j0 + grp (past the segment: the first
 * token, masked). */
static void att_slot(Gx *g, const Att *a, LLVMValueRef j0, LLVMValueRef ntok, AttSlot *out) {
  int P = g->s.P;
  LLVMValueRef j = LLVMBuildAdd(g->b, j0, a->grp, "");
  LLVMValueRef in = LLVMBuildICmp(g->b, LLVMIntSLT, j, ntok, "");
  j = LLVMBuildSelect(g->b, in, j, c32(g, 0), "");
  LLVMValueRef e = LLVMBuildUDiv(g->b, j, c32(g, P), ""), tt = LLVMBuildURem(g->b, j, c32(g, P), "");
  LLVMValueRef mask = load(g, g->i32, sh_elem(g, a->sh_mask, g->i32, e));
  LLVMValueRef bit = LLVMBuildAnd(g->b, LLVMBuildLShr(g->b, mask, tt, ""), c32(g, 1), "");
  out->ok = LLVMBuildAnd(g->b, in, LLVMBuildICmp(g->b, LLVMIntNE, bit, c32(g, 0), ""), "");
  /* the block's first element was computed when the segment was staged */
  LLVMValueRef blk = load(g, g->i64, sh_elem(g, a->sh_block, g->i64, e));
  LLVMValueRef within = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, tt, c32(g, g->s.D), ""), a->lane_ch, "");
  out->idx = LLVMBuildAdd(g->b, blk, LLVMBuildZExt(g->b, within, g->i64, ""), "");
  out->el = (AttElem){NULL, NULL, tt};
  if (a->modifiers)
    out->el = (AttElem){load(g, g->i32, sh_elem(g, a->sh_lp, g->i32, e)), load(g, g->i32, sh_elem(g, a->sh_page, g->i32, e)), tt};
}

/* The last CTA of a row: out and lse from the chunks' partials, merged in chunk order with an
 * online rescale. A thread takes every 128th output element at once and MERGE_UNROLL chunks
 * at a time, loads first, so the chain of L2 latencies is nchunks / MERGE_UNROLL long. */
static void merge_chunks(Gx *g, LLVMValueRef nchunks, LLVMValueRef partials, LLVMValueRef outb, LLVMValueRef odt,
                         LLVMValueRef lse_addr) {
  enum { MAX_UNROLL = 8, MAX_NX = 32 };
  int G = g->s.G, D = g->s.D, GD = G * D, pstride = D + 2;
  int nx = (GD + VXK_GPU_ATTEND_THREADS - 1) / VXK_GPU_ATTEND_THREADS;
  const int MERGE_UNROLL = 16 / nx > MAX_UNROLL ? MAX_UNROLL : 16 / nx < 2 ? 2 : 16 / nx; /* about 50 loads in flight */
  LLVMValueRef t = tid(g), inf = cf(g, -__builtin_inf());
  LLVMValueRef xs[MAX_NX], act[MAX_NX], hs[MAX_NX], ds[MAX_NX], M[MAX_NX], L[MAX_NX], O[MAX_NX];
  LLVMValueRef rowp = LLVMBuildMul(g->b, LLVMBuildMul(g->b, g->row, nchunks, ""), c32(g, G * pstride), "");
  for (int i = 0; i < nx; i++) {
    LLVMValueRef x = LLVMBuildAdd(g->b, t, c32(g, i * VXK_GPU_ATTEND_THREADS), "");
    act[i] = LLVMBuildICmp(g->b, LLVMIntSLT, x, c32(g, GD), "");
    xs[i] = LLVMBuildSelect(g->b, act[i], x, c32(g, 0), "");
    hs[i] = LLVMBuildUDiv(g->b, xs[i], c32(g, D), "");
    ds[i] = LLVMBuildURem(g->b, xs[i], c32(g, D), "");
    M[i] = var(g, g->f32, inf);
    L[i] = var(g, g->f32, cf(g, 0));
    O[i] = var(g, g->f32, cf(g, 0));
  }
  GLoop cl;
  LLVMValueRef c0 = loop_begin(g, &cl, c32(g, 0), nchunks, c32(g, MERGE_UNROLL));
  LLVMValueRef pm[MAX_NX][MAX_UNROLL], pl[MAX_NX][MAX_UNROLL], po[MAX_NX][MAX_UNROLL], ok[MAX_UNROLL];
  for (int u = 0; u < MERGE_UNROLL; u++) {
    LLVMValueRef c = LLVMBuildAdd(g->b, c0, c32(g, u), "");
    ok[u] = LLVMBuildICmp(g->b, LLVMIntSLT, c, nchunks, "");
    c = LLVMBuildSelect(g->b, ok[u], c, c32(g, 0), "");
    for (int i = 0; i < nx; i++) {
      LLVMValueRef ci = LLVMBuildAdd(g->b, rowp, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, c, c32(g, G * pstride), ""),
                                                           LLVMBuildMul(g->b, hs[i], c32(g, pstride), ""), ""), "");
      pm[i][u] = load(g, g->f32, elem(g, g->f32, partials, LLVMBuildAdd(g->b, ci, c32(g, D), "")));
      pl[i][u] = load(g, g->f32, elem(g, g->f32, partials, LLVMBuildAdd(g->b, ci, c32(g, D + 1), "")));
      po[i][u] = load(g, g->f32, elem(g, g->f32, partials, LLVMBuildAdd(g->b, ci, ds[i], "")));
    }
  }
  for (int i = 0; i < nx; i++) {
    LLVMValueRef m = get(g, M[i]), mx = m;
    for (int u = 0; u < MERGE_UNROLL; u++)
      mx = fmax_(g, mx, LLVMBuildSelect(g->b, ok[u], pm[i][u], inf, ""));
    LLVMValueRef base = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOEQ, mx, inf, ""), cf(g, 0), mx, "");
    LLVMValueRef scale = exp2_(g, LLVMBuildFSub(g->b, m, base, ""));
    LLVMValueRef l = LLVMBuildFMul(g->b, get(g, L[i]), scale, ""), o = LLVMBuildFMul(g->b, get(g, O[i]), scale, "");
    for (int u = 0; u < MERGE_UNROLL; u++) {
      LLVMValueRef w = LLVMBuildSelect(g->b, ok[u], exp2_(g, LLVMBuildFSub(g->b, pm[i][u], base, "")), cf(g, 0), "");
      l = call_intrinsic(g, "llvm.fma", &g->f32, 1, (LLVMValueRef[]){pl[i][u], w, l}, 3);
      o = call_intrinsic(g, "llvm.fma", &g->f32, 1, (LLVMValueRef[]){po[i][u], w, o}, 3);
    }
    set(g, M[i], mx);
    set(g, L[i], l);
    set(g, O[i], o);
  }
  loop_end(g, &cl);
  for (int i = 0; i < nx; i++) {
    LLVMBasicBlockRef aj = if_then(g, act[i]);
    LLVMValueRef Lf = get(g, L[i]), Mv = get(g, M[i]);
    LLVMValueRef none = LLVMBuildFCmp(g->b, LLVMRealOEQ, Lf, cf(g, 0), "");
    store_dyn(g, outb, odt, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->row, c32(g, GD), ""), xs[i], ""),
              LLVMBuildSelect(g->b, none, cf(g, 0), LLVMBuildFDiv(g->b, get(g, O[i]), Lf, ""), ""));
    LLVMValueRef want = LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, ds[i], c32(g, 0), ""),
                                     LLVMBuildICmp(g->b, LLVMIntNE, lse_addr, c64(g, 0), ""), "");
    LLVMBasicBlockRef wj = if_then(g, want);
    LLVMValueRef lse = LLVMBuildSelect(g->b, none, cf(g, -__builtin_inf()),
                                       LLVMBuildFMul(g->b, LLVMBuildFAdd(g->b, Mv, log2_(g, Lf), ""), cf(g, 0.6931471805599453), ""), "");
    LLVMBuildStore(g->b, lse, elem(g, g->f32, gaddr(g, lse_addr), LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->row, c32(g, G), ""), hs[i], "")));
    end_if(g, wj);
    end_if(g, aj);
  }
}

/* Tokens in flight per lane group and the register cap. q and o take 2 G vec registers (vec:
 * channels per lane), and the cap sets how many CTAs share an SM: 128 gives 4 (measured on
 * the H200: 3.6-3.7 TB/s against 3.3 at 168, docs/performance.md), so groups up to 64 q and o
 * registers stay under it; G = 8 keeps fewer tokens in flight and takes more registers. */
static int att_unroll(const Gx *g) { return g->s.G <= 4 ? 4 : g->s.G <= 8 ? 2 : 1; }
static int att_regs(const Gx *g) {
  int qo = 2 * g->s.G * (16 / kv_size(g));
  bool modifiers = false; /* their math (tanh, pow, ...) needs registers of its own */
  for (const VirKernel *k = g->m->kernels; k; k = k->next)
    modifiers |= k->kind == VK_ATTEND && k->stores;
  return qo <= 64 && !modifiers ? 128 : qo <= 64 || (qo <= 128 && kv_size(g) == 4) ? 168 : 255;
}

static void gen_attend(Gx *g) {
  begin_kernel(g, "attend", VXK_GPU_ATTEND_THREADS, att_regs(g));
  const int U = att_unroll(g);
  load_row(g, false);
  Att a;
  int G = g->s.G, D = g->s.D, P = g->s.P;
  a.vec = 16 / kv_size(g);
  a.lpt = D / a.vec;
  a.tpw = 32 / a.lpt;
  a.groups = ATT_WARPS * a.tpw;
  LLVMValueRef t = tid(g);
  a.lane = LLVMBuildURem(g->b, t, c32(g, a.lpt), "lane");
  a.grp = LLVMBuildUDiv(g->b, t, c32(g, a.lpt), "grp");
  LLVMValueRef chunk = sreg(g, "llvm.nvvm.read.ptx.sreg.ctaid.y");
  LLVMValueRef nchunks = arg32(g, VXK_GPU_NCHUNKS);
  LLVMValueRef dense = LLVMBuildICmp(g->b, LLVMIntEQ, arg(g, VXK_GPU_SEL_N), c64(g, 0), "");
  /* entries of the row, and this chunk's share */
  LLVMValueRef seln = gaddr(g, LLVMBuildSelect(g->b, dense, arg(g, VXK_GPU_LENGTHS), arg(g, VXK_GPU_SEL_N), ""));
  LLVMValueRef nsel = load(g, g->i32, elem(g, g->i32, seln, LLVMBuildSelect(g->b, dense, c32(g, 0), g->row, "")));
  LLVMValueRef nent = LLVMBuildSelect(g->b, dense, g->npages, nsel, "");
  LLVMValueRef per = LLVMBuildUDiv(g->b, LLVMBuildAdd(g->b, nent, LLVMBuildSub(g->b, nchunks, c32(g, 1), ""), ""), nchunks, "");
  LLVMValueRef e_lo = LLVMBuildMul(g->b, chunk, per, "");
  LLVMValueRef mm[2] = {LLVMBuildAdd(g->b, e_lo, per, ""), nent};
  LLVMValueRef e_hi = call_intrinsic(g, "llvm.smin", &g->i32, 1, mm, 2);
  /* q for this lane's channels, all G heads, scaled to the log2 domain */
  float scale = (float)(1.4426950408889634 / __builtin_sqrt((double)D));
  load_q_lane(g, LLVMBuildMul(g->b, a.lane, c32(g, a.vec), ""), a.vec, a.q);
  for (int h = 0; h < G; h++)
    for (int v = 0; v < a.vec; v++)
      a.q[h][v] = LLVMBuildFMul(g->b, a.q[h][v], cf(g, scale), "");
  for (int h = 0; h < G; h++) {
    a.m[h] = var(g, g->f32, cf(g, -__builtin_inf()));
    a.l[h] = var(g, g->f32, cf(g, 0));
    for (int v = 0; v < a.vec; v++)
      a.o[h][v] = var(g, g->f32, cf(g, 0));
  }
  LLVMValueRef sh_page = a.sh_page = shared_array(g, g->i32, ATT_SEG, "att_page");
  LLVMValueRef sh_lp = a.sh_lp = shared_array(g, g->i32, ATT_SEG, "att_logical");
  LLVMValueRef sh_mask = a.sh_mask = shared_array(g, g->i32, ATT_SEG, "att_mask");
  a.sh_block = shared_array(g, g->i64, ATT_SEG, "att_block");
  a.lane_ch = LLVMBuildMul(g->b, a.lane, c32(g, a.vec), "");
  a.modifiers = false;
  for (const VirKernel *x = g->m->kernels; x; x = x->next)
    a.modifiers |= x->kind == VK_ATTEND && x->stores;
  LLVMValueRef kpool = gaddr(g, arg(g, VXK_GPU_K_POOL)), vpool = gaddr(g, arg(g, VXK_GPU_V_POOL));
  /* segments of ATT_SEG entries: stage page ids and masks, then sweep their tokens */
  GLoop seg;
  LLVMValueRef s0 = loop_begin(g, &seg, e_lo, e_hi, c32(g, ATT_SEG));
  LLVMValueRef mm2[2] = {LLVMBuildSub(g->b, e_hi, s0, ""), c32(g, ATT_SEG)};
  LLVMValueRef nseg = call_intrinsic(g, "llvm.smin", &g->i32, 1, mm2, 2);
  barrier(g);
  GLoop st;
  LLVMValueRef i = loop_begin(g, &st, t, nseg, c32(g, VXK_GPU_ATTEND_THREADS));
  LLVMValueRef lp, mk;
  att_entry(g, dense, LLVMBuildAdd(g->b, s0, i, ""), &lp, &mk);
  LLVMValueRef phys = page_of(g, lp);
  LLVMBuildStore(g->b, phys, sh_elem(g, sh_page, g->i32, i));
  LLVMBuildStore(g->b, lp, sh_elem(g, sh_lp, g->i32, i));
  /* tokens past the row's end are masked here, once per page, not per token */
  LLVMBuildStore(g->b, LLVMBuildAnd(g->b, mk, full_mask(g, lp), ""), sh_elem(g, sh_mask, g->i32, i));
  LLVMBuildStore(g->b, kv_index(g, phys, c32(g, 0), c32(g, 0)), sh_elem(g, a.sh_block, g->i64, i));
  loop_end(g, &st);
  barrier(g);
  LLVMValueRef ntok = LLVMBuildMul(g->b, nseg, c32(g, P), "");
  int step = a.groups * U;
  /* software pipelining: the K and V of the next U tokens are loaded before this U's math,
   * so a lane group always has 2 U rows in flight (bytes in flight: docs/gpu.md) */
  AttSlot at;
  LLVMValueRef kv[ATT_UNROLL][2], cur[ATT_UNROLL][2], ok[ATT_UNROLL];
  AttElem el[ATT_UNROLL];
  LLVMTypeRef v4 = LLVMVectorType(g->i32, 4);
  LLVMValueRef cur_ok[ATT_UNROLL], cur_el[ATT_UNROLL][3];
  for (int u = 0; u < U; u++) {
    att_slot(g, &a, c32(g, u * a.groups), ntok, &at);
    for (int w = 0; w < 2; w++)
      cur[u][w] = var(g, v4, load16(g, elem(g, kv_size(g) == 4 ? g->f32 : g->i16, w ? vpool : kpool, at.idx)));
    cur_ok[u] = var(g, g->i1, at.ok);
    LLVMValueRef e3[3] = {at.el.page, at.el.phys, at.el.tok};
    for (int k = 0; k < 3; k++)
      cur_el[u][k] = e3[k] ? var(g, g->i32, e3[k]) : NULL;
  }
  GLoop tl;
  LLVMValueRef j0 = loop_begin(g, &tl, c32(g, 0), ntok, c32(g, step));
  LLVMValueRef nxt[ATT_UNROLL][2];
  AttSlot nat[ATT_UNROLL];
  for (int u = 0; u < U; u++) {
    att_slot(g, &a, LLVMBuildAdd(g->b, j0, c32(g, step + u * a.groups), ""), ntok, &nat[u]);
    for (int w = 0; w < 2; w++)
      nxt[u][w] = load16(g, elem(g, kv_size(g) == 4 ? g->f32 : g->i16, w ? vpool : kpool, nat[u].idx));
  }
  for (int u = 0; u < U; u++) {
    ok[u] = get(g, cur_ok[u]);
    set(g, cur_ok[u], nat[u].ok);
    LLVMValueRef e3[3] = {nat[u].el.page, nat[u].el.phys, nat[u].el.tok}, got[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++)
      if (cur_el[u][k]) {
        got[k] = get(g, cur_el[u][k]);
        set(g, cur_el[u][k], e3[k]);
      }
    el[u] = (AttElem){got[0], got[1], got[2]};
    for (int w = 0; w < 2; w++) {
      kv[u][w] = get(g, cur[u][w]);
      set(g, cur[u][w], nxt[u][w]);
    }
  }
  LLVMValueRef s[16][ATT_UNROLL];
  for (int u = 0; u < U; u++) {
    LLVMValueRef kf[8];
    unpack16(g, kv[u][0], g->s.kv, kf);
    for (int h = 0; h < G; h++) {
      LLVMValueRef acc = LLVMBuildFMul(g->b, a.q[h][0], kf[0], "");
      for (int v = 1; v < a.vec; v++)
        acc = call_intrinsic(g, "llvm.fma", &g->f32, 1, (LLVMValueRef[]){a.q[h][v], kf[v], acc}, 3);
      s[h][u] = acc;
    }
  }
  for (int off = a.lpt / 2; off >= 1; off /= 2)
    for (int u = 0; u < U; u++)
      for (int h = 0; h < G; h++)
        s[h][u] = LLVMBuildFAdd(g->b, s[h][u], shfl_xor(g, s[h][u], off), "");
  attend_modifiers(g, s, el, U);
  LLVMValueRef vf[ATT_UNROLL][8];
  for (int u = 0; u < U; u++)
    unpack16(g, kv[u][1], g->s.kv, vf[u]);
  for (int h = 0; h < G; h++) {
    LLVMValueRef mx = get(g, a.m[h]);
    LLVMValueRef mnew = mx;
    for (int u = 0; u < U; u++) {
      s[h][u] = LLVMBuildSelect(g->b, ok[u], s[h][u], cf(g, -__builtin_inf()), "");
      mnew = fmax_(g, mnew, s[h][u]);
    }
    /* an all-masked start keeps m = -inf: shift by 0 then, so no inf - inf */
    LLVMValueRef isinf = LLVMBuildFCmp(g->b, LLVMRealOEQ, mnew, cf(g, -__builtin_inf()), "");
    LLVMValueRef base = LLVMBuildSelect(g->b, isinf, cf(g, 0), mnew, "");
    LLVMValueRef corr = exp2_(g, LLVMBuildFSub(g->b, mx, base, ""));
    LLVMValueRef lsum = LLVMBuildFMul(g->b, get(g, a.l[h]), corr, "");
    LLVMValueRef pw[ATT_UNROLL];
    for (int u = 0; u < U; u++) {
      pw[u] = exp2_(g, LLVMBuildFSub(g->b, s[h][u], base, ""));
      lsum = LLVMBuildFAdd(g->b, lsum, pw[u], "");
    }
    set(g, a.l[h], lsum);
    set(g, a.m[h], mnew);
    for (int v = 0; v < a.vec; v++) {
      LLVMValueRef o = LLVMBuildFMul(g->b, get(g, a.o[h][v]), corr, "");
      for (int u = 0; u < U; u++)
        o = call_intrinsic(g, "llvm.fma", &g->f32, 1, (LLVMValueRef[]){pw[u], vf[u][v], o}, 3);
      set(g, a.o[h][v], o);
    }
  }
  loop_end(g, &tl);
  loop_end(g, &seg);
  /* CTA merge: every lane group's (m, l, o) to shared memory, then per output element */
  int GD = G * D;
  LLVMValueRef sh_o = shared_array(g, g->f32, a.groups * GD, "att_o");
  LLVMValueRef sh_ml = shared_array(g, g->f32, a.groups * G * 2, "att_ml");
  barrier(g);
  for (int h = 0; h < G; h++) {
    LLVMValueRef base = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, a.grp, c32(g, GD), ""),
                                     LLVMBuildAdd(g->b, c32(g, (long long)h * D), LLVMBuildMul(g->b, a.lane, c32(g, a.vec), ""), ""), "");
    for (int v = 0; v < a.vec; v++)
      LLVMBuildStore(g->b, get(g, a.o[h][v]), sh_elem(g, sh_o, g->f32, LLVMBuildAdd(g->b, base, c32(g, v), "")));
    LLVMValueRef mi = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, a.grp, c32(g, 2 * G), ""), c32(g, 2 * h), "");
    LLVMBasicBlockRef j = if_then(g, LLVMBuildICmp(g->b, LLVMIntEQ, a.lane, c32(g, 0), ""));
    LLVMBuildStore(g->b, get(g, a.m[h]), sh_elem(g, sh_ml, g->f32, mi));
    LLVMBuildStore(g->b, get(g, a.l[h]), sh_elem(g, sh_ml, g->f32, LLVMBuildAdd(g->b, mi, c32(g, 1), "")));
    end_if(g, j);
  }
  barrier(g);
  LLVMValueRef partials = gaddr(g, arg(g, VXK_GPU_PARTIALS));
  LLVMValueRef one_chunk = LLVMBuildICmp(g->b, LLVMIntEQ, nchunks, c32(g, 1), "");
  int pstride = D + 2;
  LLVMValueRef my_part = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->row, nchunks, ""), chunk, ""), c32(g, G * pstride), "");
  LLVMValueRef outb = gaddr(g, arg(g, VXK_GPU_OUT)), odt = arg(g, VXK_GPU_OUT_DTYPE);
  LLVMValueRef lse_addr = arg(g, VXK_GPU_LSE);
  const float ln2 = 0.6931471805599453f;
  /* finish: o / l and lse in natural log, or a partial of this chunk */
  GLoop ol;
  LLVMValueRef x = loop_begin(g, &ol, t, c32(g, GD), c32(g, VXK_GPU_ATTEND_THREADS));
  LLVMValueRef h = LLVMBuildUDiv(g->b, x, c32(g, D), ""), d = LLVMBuildURem(g->b, x, c32(g, D), "");
  LLVMValueRef M = var(g, g->f32, cf(g, -__builtin_inf()));
  for (int gi = 0; gi < a.groups; gi++)
    set(g, M, fmax_(g, get(g, M), load(g, g->f32, sh_elem(g, sh_ml, g->f32, LLVMBuildAdd(g->b, c32(g, gi * 2 * G), LLVMBuildMul(g->b, h, c32(g, 2), ""), "")))));
  LLVMValueRef Mv = get(g, M);
  LLVMValueRef Mb = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOEQ, Mv, cf(g, -__builtin_inf()), ""), cf(g, 0), Mv, "");
  LLVMValueRef L = cf(g, 0), O = cf(g, 0);
  for (int gi = 0; gi < a.groups; gi++) {
    LLVMValueRef mi = LLVMBuildAdd(g->b, c32(g, gi * 2 * G), LLVMBuildMul(g->b, h, c32(g, 2), ""), "");
    LLVMValueRef w = exp2_(g, LLVMBuildFSub(g->b, load(g, g->f32, sh_elem(g, sh_ml, g->f32, mi)), Mb, ""));
    L = call_intrinsic(g, "llvm.fma", &g->f32, 1, (LLVMValueRef[]){load(g, g->f32, sh_elem(g, sh_ml, g->f32, LLVMBuildAdd(g->b, mi, c32(g, 1), ""))), w, L}, 3);
    O = call_intrinsic(g, "llvm.fma", &g->f32, 1, (LLVMValueRef[]){load(g, g->f32, sh_elem(g, sh_o, g->f32, LLVMBuildAdd(g->b, c32(g, gi * GD), x, ""))), w, O}, 3);
  }
  LLVMBasicBlockRef fin = block(g, "final"), part = block(g, "partial"), next = block(g, "next");
  LLVMBuildCondBr(g->b, one_chunk, fin, part);
  LLVMPositionBuilderAtEnd(g->b, fin);
  {
    LLVMValueRef none = LLVMBuildFCmp(g->b, LLVMRealOEQ, L, cf(g, 0), "");
    LLVMValueRef res = LLVMBuildSelect(g->b, none, cf(g, 0), LLVMBuildFDiv(g->b, O, L, ""), "");
    store_dyn(g, outb, odt, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->row, c32(g, GD), ""), x, ""), res);
    LLVMValueRef want = LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, d, c32(g, 0), ""), LLVMBuildICmp(g->b, LLVMIntNE, lse_addr, c64(g, 0), ""), "");
    LLVMBasicBlockRef j = if_then(g, want);
    LLVMValueRef lse = LLVMBuildSelect(g->b, none, cf(g, -__builtin_inf()), LLVMBuildFMul(g->b, LLVMBuildFAdd(g->b, Mv, log2_(g, L), ""), cf(g, ln2), ""), "");
    LLVMBuildStore(g->b, lse, elem(g, g->f32, gaddr(g, lse_addr), LLVMBuildAdd(g->b, LLVMBuildMul(g->b, g->row, c32(g, G), ""), h, "")));
    end_if(g, j);
    LLVMBuildBr(g->b, next);
  }
  LLVMPositionBuilderAtEnd(g->b, part);
  {
    LLVMValueRef pi = LLVMBuildAdd(g->b, my_part, LLVMBuildMul(g->b, h, c32(g, pstride), ""), "");
    LLVMBuildStore(g->b, O, elem(g, g->f32, partials, LLVMBuildAdd(g->b, pi, d, "")));
    LLVMBasicBlockRef j = if_then(g, LLVMBuildICmp(g->b, LLVMIntEQ, d, c32(g, 0), ""));
    LLVMBuildStore(g->b, Mv, elem(g, g->f32, partials, LLVMBuildAdd(g->b, pi, c32(g, D), "")));
    LLVMBuildStore(g->b, L, elem(g, g->f32, partials, LLVMBuildAdd(g->b, pi, c32(g, D + 1), "")));
    end_if(g, j);
    LLVMBuildBr(g->b, next);
  }
  LLVMPositionBuilderAtEnd(g->b, next);
  loop_end(g, &ol);
  /* the last CTA of the row merges the chunks in chunk order */
  LLVMBasicBlockRef merge = if_then(g, LLVMBuildNot(g->b, one_chunk, ""));
  fence_gpu(g);
  barrier(g);
  LLVMValueRef sh_last = shared_array(g, g->i32, 1, "att_last");
  LLVMValueRef counter = elem(g, g->i32, gaddr(g, arg(g, VXK_GPU_COUNTERS)), g->row);
  LLVMBasicBlockRef j = if_then(g, LLVMBuildICmp(g->b, LLVMIntEQ, t, c32(g, 0), ""));
  LLVMValueRef old = LLVMBuildAtomicRMW(g->b, LLVMAtomicRMWBinOpAdd, counter, c32(g, 1), LLVMAtomicOrderingAcquireRelease, 0);
  LLVMValueRef last = LLVMBuildICmp(g->b, LLVMIntEQ, old, LLVMBuildSub(g->b, nchunks, c32(g, 1), ""), "");
  LLVMBuildStore(g->b, LLVMBuildZExt(g->b, last, g->i32, ""), sh_elem(g, sh_last, g->i32, c32(g, 0)));
  end_if(g, j);
  barrier(g);
  LLVMValueRef is_last = LLVMBuildICmp(g->b, LLVMIntNE, load(g, g->i32, sh_elem(g, sh_last, g->i32, c32(g, 0))), c32(g, 0), "");
  LLVMBasicBlockRef lj = if_then(g, is_last);
  fence_gpu(g);
  merge_chunks(g, nchunks, partials, outb, odt, lse_addr);
  LLVMBasicBlockRef rj = if_then(g, LLVMBuildICmp(g->b, LLVMIntEQ, t, c32(g, 0), ""));
  LLVMBuildStore(g->b, c32(g, 0), counter); /* ready for the next launch (graph replay) */
  end_if(g, rj);
  end_if(g, lj);
  end_if(g, merge);
  LLVMBuildRetVoid(g->b);
}

/* ------------------------------------------------------------------ module and PTX */

static LLVMValueRef nvptx_math(CgExpr *e, const char *name, LLVMValueRef *args, int n) {
  static const char *const native[] = {"llvm.sqrt", "llvm.floor", "llvm.ceil", "llvm.fabs", "llvm.round"};
  for (size_t i = 0; i < sizeof native / sizeof native[0]; i++)
    if (!strcmp(name, native[i]))
      return cg_expr_intrinsic(e, name, e->f32, args, n);
  CgMathFn fn;
  if (!strncmp(name, "llvm.", 5) && cg_devmath_lookup(name + 5, &fn))
    return cg_devmath_call(e->mod, e->b, fn, args);
  if (!e->unsupported)
    e->unsupported = name;
  return LLVMGetUndef(e->f32);
}

unsigned cg_nvptx_kernels(const VirModule *m) {
  unsigned k = 1u << CG_GPU_append | 1u << CG_GPU_attend;
  bool fields = false;
  for (int i = 0; i < m->ntensors; i++)
    fields |= m->tensors[i]->kind == VT_PAGE;
  if (fields)
    k |= 1u << CG_GPU_summarise;
  bool select_all = false;
  for (int i = 0; i < m->nselections; i++)
    select_all |= m->selections[i].kind == VS_ALL;
  if (m->nkeeps || !select_all)
    k |= 1u << CG_GPU_select;
  return k;
}

const char *cg_nvptx_kernel_name(int kind) { return kernel_names[kind]; }

void cg_shape_name(const CgShape *s, char *buf, size_t n) {
  static const char *const kv[] = {"f32", "f16", "bf16"};
  snprintf(buf, n, "d%dg%dp%d_%s", s->D, s->G, s->P, kv[s->kv]);
}

bool cg_shape_parse(const char *text, CgShape *out, char *err, size_t errlen) {
  CgShape s = {0, 0, 0, -1};
  const char *p = text;
  while (*p) {
    const char *eq = strchr(p, '=');
    const char *end = strchr(p, ',');
    if (!end)
      end = p + strlen(p);
    if (!eq || eq > end) {
      snprintf(err, errlen, "--shape '%s': expected KEY=VALUE pairs (D, G, P, kv) separated by commas", text);
      return false;
    }
    size_t klen = (size_t)(eq - p), vlen = (size_t)(end - eq - 1);
    int *dst = klen == 1 && *p == 'D' ? &s.D : klen == 1 && *p == 'G' ? &s.G : klen == 1 && *p == 'P' ? &s.P : NULL;
    if (dst) {
      char *stop;
      long v = strtol(eq + 1, &stop, 10);
      if (stop != end || v < 1 || v > 1024) {
        snprintf(err, errlen, "--shape '%s': %.*s must be an integer from 1 to 1024", text, (int)klen, p);
        return false;
      }
      *dst = (int)v;
    } else if (klen == 2 && !strncmp(p, "kv", 2)) {
      static const char *const kv[] = {"f32", "f16", "bf16"};
      for (int i = 0; i < 3; i++)
        if (strlen(kv[i]) == vlen && !strncmp(eq + 1, kv[i], vlen))
          s.kv = i;
      if (s.kv < 0) {
        snprintf(err, errlen, "--shape '%s': kv must be f32, f16 or bf16", text);
        return false;
      }
    } else {
      snprintf(err, errlen, "--shape '%s': unknown key '%.*s' (expected D, G, P, kv)", text, (int)klen, p);
      return false;
    }
    p = *end ? end + 1 : end;
  }
  if (!s.D || !s.G || !s.P || s.kv < 0) {
    snprintf(err, errlen, "--shape '%s': give all of D, G, P and kv", text);
    return false;
  }
  *out = s;
  return true;
}

int cg_default_shapes(CgShape *out, int cap) {
  static const int Ds[] = {64, 128}, Gs[] = {1, 4, 8}, kvs[] = {VXK_GPU_BF16, VXK_GPU_F32};
  int n = 0;
  for (int d = 0; d < 2; d++)
    for (int gi = 0; gi < 3; gi++)
      for (int k = 0; k < 2 && n < cap; k++)
        out[n++] = (CgShape){Ds[d], Gs[gi], 16, kvs[k]};
  return n;
}

/* The kernels of one shape among kinds (bits of CgGpuKernel), in the module's order. */
static void build_shape(Gx *g, const CgShape *s, unsigned kinds) {
  g->s = *s;
  cg_shape_name(s, g->suffix, sizeof g->suffix);
  if (!check_supported(g))
    return;
  if (kinds & (1u << CG_GPU_append))
    gen_append(g);
  if (!g->failed && (kinds & (1u << CG_GPU_summarise)))
    gen_summarise(g);
  if (!g->failed && (kinds & (1u << CG_GPU_select)))
    gen_select(g);
  if (!g->failed && (kinds & (1u << CG_GPU_attend)))
    gen_attend(g);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Intrinsics NVPTX can select: anything else would abort LLVM or leave an extern in the PTX. */
static bool intrinsics_allowed(Gx *g) {
  static const char *const allowed[] = {
    "llvm.nvvm.read.ptx.sreg.", "llvm.nvvm.barrier.cta.sync.aligned.all", "llvm.nvvm.shfl.sync.",
    "llvm.nvvm.lg2.approx.f", "llvm.nvvm.ex2.approx", "llvm.exp2.f32", "llvm.fma.f32", "llvm.maxnum.f32",
    "llvm.minnum.f32", "llvm.smax.i32", "llvm.smin.i32", "llvm.umax.i32", "llvm.umin.i32", "llvm.sqrt.f32",
    "llvm.floor.f32", "llvm.ceil.f32", "llvm.fabs.f32", "llvm.round.f32", "llvm.rint.f32", "llvm.abs.i32",
    "llvm.ctpop.i32", "llvm.cttz.i32", "llvm.copysign.f32", "llvm.trunc.f32", "llvm.nvvm.",
  };
  for (LLVMValueRef f = LLVMGetFirstFunction(g->mod); f; f = LLVMGetNextFunction(f)) {
    if (!LLVMIsDeclaration(f))
      continue;
    size_t n;
    const char *name = LLVMGetValueName2(f, &n);
    bool ok = false;
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0] && !ok; i++)
      ok = !strncmp(name, allowed[i], strlen(allowed[i]));
    if (!ok) {
      gx_error(g, "internal error: a call NVPTX cannot lower:", name);
      return false;
    }
  }
  return true;
}

static LLVMTargetMachineRef nvptx_machine(Gx *g, const char *sm) {
  cg_init_targets();
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple("nvptx64-nvidia-cuda", &target, &err)) {
    gx_fail(g, "E1003", err, "code generation failed: no NVPTX target in this LLVM");
    LLVMDisposeMessage(err);
    return NULL;
  }
  /* LLVM's default codegen level: the fast selector compiled 4x faster but its PTX made the
   * dense attend 5% slower at B >= 8 on the H200 (docs/performance.md); -O1 ("less") is no
   * faster than the default for NVPTX */
  return LLVMCreateTargetMachine(target, "nvptx64-nvidia-cuda", sm, "+ptx80", LLVMCodeGenLevelDefault,
                                 LLVMRelocDefault, LLVMCodeModelDefault);
}

/* One kernel kind for every shape, in an LLVM context of its own: the kinds compile on
 * threads of their own, since LLVM's optimiser and instruction selection, not building the
 * IR, take the time (docs/performance.md). */
typedef struct PtxJob {
  Gx g;
  unsigned kinds;
  const char *sm;
  const CgShape *shapes;
  int nshapes;
  char *ptx; /* malloc'd */
  size_t len;
  pthread_t thread;
  bool threaded;
} PtxJob;

static void gx_open(Gx *g, const VirModule *m) {
  g->ctx = LLVMContextCreate();
  g->m = m;
  g->mod = LLVMModuleCreateWithNameInContext(m->name, g->ctx);
  g->b = LLVMCreateBuilderInContext(g->ctx);
  g->i1 = LLVMInt1TypeInContext(g->ctx);
  g->i8 = LLVMInt8TypeInContext(g->ctx);
  g->i16 = LLVMInt16TypeInContext(g->ctx);
  g->i32 = LLVMInt32TypeInContext(g->ctx);
  g->i64 = LLVMInt64TypeInContext(g->ctx);
  g->f32 = LLVMFloatTypeInContext(g->ctx);
  g->half = LLVMHalfTypeInContext(g->ctx);
  g->bf16 = LLVMBFloatTypeInContext(g->ctx);
  g->ptr = LLVMPointerTypeInContext(g->ctx, 0);
  g->gptr = LLVMPointerTypeInContext(g->ctx, 1);
  g->sptr = LLVMPointerTypeInContext(g->ctx, 3);
  g->args_type = LLVMArrayType2(g->i64, VXK_GPU_NARGS);
  g->memo_cap = 1 << 14;
  g->memo = calloc((size_t)g->memo_cap, sizeof *g->memo);
  g->gens = 1;
  g->gen = g->row_gen = 1;
  if (!g->memo)
    gx_fail(g, "E1003", NULL, "code generation failed: out of memory");
  cg_expr_init(&g->e, g->ctx, g->mod, g->b, nvptx_math);
}

static void gx_close(Gx *g) {
  free(g->memo);
  LLVMDisposeBuilder(g->b);
  LLVMDisposeModule(g->mod);
  LLVMContextDispose(g->ctx);
}

static void set_target(Gx *g, LLVMTargetMachineRef tm) {
  char *triple = LLVMGetTargetMachineTriple(tm);
  LLVMSetTarget(g->mod, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(tm);
  char *dl = LLVMCopyStringRepOfTargetData(layout);
  LLVMSetDataLayout(g->mod, dl);
  LLVMDisposeMessage(dl);
  LLVMDisposeTargetData(layout);
}

/* Verifies, optimises and prints g's module as PTX into job->ptx. */
static void emit_ptx(PtxJob *job, LLVMTargetMachineRef tm) {
  Gx *g = &job->g;
  char *msg = NULL;
  if (LLVMVerifyModule(g->mod, LLVMReturnStatusAction, &msg)) {
    gx_fail(g, "E1002", msg, "internal error: invalid LLVM IR for the GPU kernels of '%s'", g->m->name);
    LLVMDisposeMessage(msg);
    return;
  }
  LLVMDisposeMessage(msg);
  if (!intrinsics_allowed(g))
    return;
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  /* a short pipeline: ptxas optimises the PTX again, and a compile-and-measure loop wants
   * milliseconds (the host's -O1 pipeline, docs/gpu.md) */
  LLVMErrorRef e = LLVMRunPasses(g->mod, "function(sroa,early-cse,instcombine<no-verify-fixpoint>,simplifycfg,loop-mssa(licm))", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (e) {
    char *em = LLVMGetErrorMessage(e);
    gx_fail(g, "E1003", em, "code generation failed: the LLVM optimiser failed");
    LLVMDisposeErrorMessage(em);
    return;
  }
  char *err = NULL;
  LLVMMemoryBufferRef buf;
  if (LLVMTargetMachineEmitToMemoryBuffer(tm, g->mod, LLVMAssemblyFile, &err, &buf)) {
    gx_fail(g, "E1003", err, "code generation failed: emitting PTX failed");
    LLVMDisposeMessage(err);
    return;
  }
  job->len = LLVMGetBufferSize(buf);
  job->ptx = malloc(job->len + 1);
  if (job->ptx) {
    memcpy(job->ptx, LLVMGetBufferStart(buf), job->len);
    job->ptx[job->len] = '\0';
  } else {
    gx_fail(g, "E1003", NULL, "code generation failed: out of memory");
  }
  LLVMDisposeMemoryBuffer(buf);
}

static void *run_job(void *arg) {
  PtxJob *job = arg;
  Gx *g = &job->g;
  LLVMTargetMachineRef tm = nvptx_machine(g, job->sm);
  if (tm) {
    gx_open(g, g->m);
    set_target(g, tm);
    for (int i = 0; i < job->nshapes && !g->failed; i++)
      build_shape(g, &job->shapes[i], job->kinds);
    if (!g->failed)
      emit_ptx(job, tm);
    gx_close(g);
    LLVMDisposeTargetMachine(tm);
  }
  return NULL;
}

/* The PTX of the jobs as one module: the first job's header (.version, .target,
 * .address_size) once, then every job's kernels in kind order. */
static char *merge_ptx(PtxJob *jobs, int n, size_t *len) {
  static const char header_end[] = ".address_size 64\n";
  size_t total = 1;
  for (int i = 0; i < n; i++)
    total += jobs[i].len;
  char *out = malloc(total), *p = out;
  for (int i = 0; out && i < n; i++) {
    const char *body = jobs[i].ptx;
    const char *h = strstr(body, header_end);
    if (i > 0 && h)
      body = h + sizeof header_end - 1;
    size_t k = strlen(body);
    memcpy(p, body, k);
    p += k;
  }
  if (out) {
    *p = '\0';
    *len = (size_t)(p - out) + 1; /* the driver wants the NUL */
  }
  return out;
}

bool cg_nvptx_compile(const VirModule *m, const char *sm, const CgShape *shapes, int nshapes,
                      CgPtxResult *out, CgError *err) {
  memset(out, 0, sizeof *out);
  memset(err, 0, sizeof *err);
  double t0 = now_ms();
  out->kernels = cg_nvptx_kernels(m);
  PtxJob jobs[CG_GPU_NKERNELS];
  int njobs = 0;
  for (int k = 0; k < CG_GPU_NKERNELS; k++)
    if (out->kernels & (1u << k))
      jobs[njobs++] = (PtxJob){.g = {.m = m}, .kinds = 1u << k, .sm = sm, .shapes = shapes, .nshapes = nshapes};
  /* the first job runs here, the others on threads; where a thread cannot start, its job
   * runs here too */
  for (int i = 1; i < njobs; i++)
    jobs[i].threaded = !pthread_create(&jobs[i].thread, NULL, run_job, &jobs[i]);
  for (int i = 0; i < njobs; i++)
    if (i == 0 || !jobs[i].threaded)
      run_job(&jobs[i]);
  for (int i = 1; i < njobs; i++)
    if (jobs[i].threaded)
      pthread_join(jobs[i].thread, NULL);
  bool ok = true;
  for (int i = 0; i < njobs && ok; i++)
    if (jobs[i].g.failed) {
      *err = jobs[i].g.error;
      ok = false;
    }
  if (ok) {
    out->ptx = merge_ptx(jobs, njobs, &out->len);
    if (!out->ptx) {
      snprintf(err->code, sizeof err->code, "E1003");
      snprintf(err->message, sizeof err->message, "code generation failed: out of memory");
      ok = false;
    }
  }
  for (int i = 0; i < njobs; i++)
    free(jobs[i].ptx);
  out->ms = now_ms() - t0;
  return ok;
}

void cg_ptx_result_free(CgPtxResult *r) {
  free(r->ptx);
  memset(r, 0, sizeof *r);
}
