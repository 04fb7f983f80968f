/* devmath_host.c - accuracy of the device math library (compiler/cg_devmath.c) on the host:
 * the same IR the GPU gets, optimised with default<O3> and run through ORC LLJIT on x86-64,
 * against float64 libm. For each function: every 256th f32 bit pattern (low bits varied by a
 * hash), edge values, and for pow a grid of x and y plus x near 1 and negative x with integer y.
 * Error in ulps of the float64 result (an f32 inf counts as 2^128); NaN, inf and the sign of a
 * zero must match exactly. Fails when any function exceeds its bound in cg_devmath.h; prints
 * the measured maxima that docs/devmath.md quotes. Optional argument: the stride shift (8). */
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_devmath.h"
#include "dm_module.h"

typedef float (*Fn1)(float);
typedef float (*Fn2)(float, float);

static double sigmoid_ref(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }
static double rsqrt_ref(double x) { return 1 / sqrt(x); }

static double ref1(CgMathFn fn, double x) {
  switch (fn) {
  case CG_MATH_exp: return exp(x);
  case CG_MATH_exp2: return exp2(x);
  case CG_MATH_log: return log(x);
  case CG_MATH_log2: return log2(x);
  case CG_MATH_sqrt: return sqrt(x);
  case CG_MATH_rsqrt: return rsqrt_ref(x);
  case CG_MATH_sin: return sin(x);
  case CG_MATH_cos: return cos(x);
  case CG_MATH_tanh: return tanh(x);
  case CG_MATH_sigmoid: return sigmoid_ref(x);
  case CG_MATH_acos: return acos(x);
  case CG_MATH_asin: return asin(x);
  case CG_MATH_atan: return atan(x);
  default: abort();
  }
}

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* The error of got against ref in f32 ulps at ref; INFINITY for a wrong NaN, inf or zero sign. */
static double ulp_error(float got, double ref) {
  if (isnan(ref) || isnan(got))
    return isnan(ref) && isnan(got) ? 0 : INFINITY;
  if (isinf(ref))
    return (double)got == ref ? 0 : INFINITY;
  if (ref == 0 && (got != 0 || !signbit(got) != !signbit(ref)))
    return INFINITY;
  if (isinf((float)ref)) /* f32 overflow: inf is the correctly rounded result */
    ref = copysign(0x1p128, ref);
  double g = isinf(got) ? copysign(0x1p128, got) : got;
  int ex;
  frexp(ref, &ex);
  ex -= 1; /* |ref| in [2^ex, 2^(ex+1)) */
  if (ex < -126)
    ex = -126;
  if (ex > 127)
    ex = 127;
  return fabs(g - ref) / ldexp(1, ex - 23);
}

typedef struct Worst {
  double err;
  float x, y;
  long n;
} Worst;

static void note(Worst *w, float got, double ref, float x, float y) {
  double e = ulp_error(got, ref);
  w->n++;
  if (e > w->err || (isinf(e) && !isinf(w->err))) {
    w->err = e;
    w->x = x;
    w->y = y;
  }
}

static const float edges[] = {0.0f, 0x1p-149f, 0x1p-126f, 0x1.fffffcp-127f, 0x1p-24f, 0x1p-12f, 0.5f,
                              0x1.6a09e6p-1f, 0x1.6a09e8p-1f, 1.0f, 0x1.000002p+0f, 0x1.fffffep-1f,
                              1.5f, 2.0f, 3.0f, 10.0f, 0x1.62e43p+6f, 0x1.62e42ep+6f, 88.72284f,
                              89.0f, -87.33655f, -103.27893f, -103.97208f, -104.0f, 126.0f, 127.0f,
                              128.0f, -149.0f, -150.0f, 0x1.921fb6p+0f, 0x1.921fb6p+1f,
                              0x1.3504f4p+1f, 0x1.a8279ap-2f, 0x1p17f, 0x1p24f, 0x1p30f,
                              0x1.fffffep+127f, INFINITY};

static void sweep1(CgMathFn fn, Fn1 f, int shift, Worst *w) {
  uint64_t count = 1ull << (32 - shift);
  for (uint64_t i = 0; i < count; i++) {
    uint32_t low = (uint32_t)(i * 0x9E3779B1u) >> (32 - shift);
    float x = from_bits((uint32_t)(i << shift) | low);
    note(w, f(x), ref1(fn, x), x, 0);
  }
  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
    for (int s = 0; s < 2; s++) {
      float x = s ? -edges[i] : edges[i];
      note(w, f(x), ref1(fn, x), x, 0);
    }
  note(w, f(NAN), NAN, NAN, 0);
}

static void pow_case(Fn2 f, float x, float y, Worst *w) { note(w, f(x, y), pow(x, y), x, y); }

static void sweep_pow(Fn2 f, int shift, Worst *w) {
  int xs = 13 - (shift - 8) / 2, ys = 11 - (shift - 8) / 2;
  for (uint32_t i = 0; i < (1u << xs); i++) {
    float x = from_bits((i << (32 - xs)) | ((i * 0x9E3779B1u) >> xs));
    for (uint32_t j = 0; j < (1u << ys); j++)
      pow_case(f, x, from_bits((j << (32 - ys)) | ((j * 0x85EBCA77u) >> ys)), w);
  }
  /* x near 1 (all of [1/2, 2) at a stride) with y up to the overflow range */
  for (uint32_t i = 0; i < (1u << 16); i++) {
    float x = from_bits(0x3f000000u + i * 256 + (i & 255));
    for (int j = 0; j < 256; j++) {
      float y = ldexpf(1.0f + (float)j / 256, j % 32 - 8) * (j & 1 ? -1.0f : 1.0f);
      pow_case(f, x, y, w);
    }
  }
  for (int i = 0; i < 4096; i++) /* negative x, integer y */
    for (int y = -40; y <= 40; y++)
      pow_case(f, -from_bits(0x3c000000u + (uint32_t)i * 4099u), (float)y, w);
  const size_t ne = sizeof edges / sizeof edges[0];
  for (size_t i = 0; i < 2 * ne + 1; i++)
    for (size_t j = 0; j < 2 * ne + 1; j++) {
      float x = i == 2 * ne ? NAN : i & 1 ? -edges[i / 2] : edges[i / 2];
      float y = j == 2 * ne ? NAN : j & 1 ? -edges[j / 2] : edges[j / 2];
      pow_case(f, x, y, w);
    }
  static const float ints[] = {-3.0f, -2.0f, -1.0f, 0.5f, 1.0f, 2.0f, 3.0f, 0x1p24f + 2, 0x1.000002p+24f};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    for (size_t j = 0; j < ne; j++)
      for (int s = 0; s < 4; s++)
        pow_case(f, s & 1 ? -edges[j] : edges[j], s & 2 ? -ints[i] : ints[i], w);
}

static void die_on(LLVMErrorRef err, const char *what) {
  if (err) {
    char *msg = LLVMGetErrorMessage(err);
    fprintf(stderr, "devmath_host: %s: %s\n", what, msg);
    LLVMDisposeErrorMessage(msg);
    exit(1);
  }
}

int main(int argc, char **argv) {
  int shift = argc > 1 ? atoi(argv[1]) : 8;
  if (shift < 4 || shift > 16) {
    fprintf(stderr, "usage: devmath_host [stride shift 4..16]\n");
    return 2;
  }
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = dm_module(ctx);
  char *msg = NULL;
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
    fprintf(stderr, "devmath_host: invalid module: %s\n", msg);
    return 1;
  }
  LLVMDisposeMessage(msg);
  int defs = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
    size_t len;
    defs += !strncmp(LLVMGetValueName2(f, &len), "vx_devmath_", 11);
  }
  if (defs != CG_MATH_COUNT) {
    fprintf(stderr, "devmath_host: %d library definitions for %d functions\n", defs, CG_MATH_COUNT);
    return 1;
  }
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  die_on(LLVMRunPasses(mod, "default<O3>", NULL, opts), "passes");
  LLVMDisposePassBuilderOptions(opts);

  LLVMOrcLLJITRef jit;
  die_on(LLVMOrcCreateLLJIT(&jit, NULL), "LLJIT");
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContextFromLLVMContext(ctx);
  die_on(LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit),
                                     LLVMOrcCreateNewThreadSafeModule(mod, tsc)),
         "add module");
  LLVMOrcDisposeThreadSafeContext(tsc);

  int failed = 0;
  printf("%-8s %12s %6s  %s\n", "function", "max ulp", "bound", "worst case (samples)");
  for (int i = 0; i < CG_MATH_COUNT; i++) {
    char name[64];
    snprintf(name, sizeof name, "t_%s", cg_devmath_info[i].name);
    LLVMOrcExecutorAddress addr;
    die_on(LLVMOrcLLJITLookup(jit, &addr, name), name);
    Worst w = {0, 0, 0, 0};
    if (cg_devmath_info[i].arity == 2)
      sweep_pow((Fn2)(uintptr_t)addr, shift, &w);
    else
      sweep1((CgMathFn)i, (Fn1)(uintptr_t)addr, shift, &w);
    bool bad = !(w.err <= cg_devmath_info[i].max_ulp);
    failed |= bad;
    printf("%-8s %12.3f %6.2f  x=%a", cg_devmath_info[i].name, w.err, cg_devmath_info[i].max_ulp, w.x);
    if (cg_devmath_info[i].arity == 2)
      printf(" y=%a", w.y);
    printf(" (%ld)%s\n", w.n, bad ? "  FAIL" : "");
  }
  LLVMOrcDisposeLLJIT(jit);
  return failed;
}
