/* cg_devmath.c - the device math library (cg_devmath.h): f32 elementary functions emitted as
 * LLVM IR, one internal alwaysinline function per function used, per module. It sits beside the
 * code generators: they ask for a call with cg_devmath_call and never see the bodies.
 *
 * Every body is built from f32/i32/i64 arithmetic, comparisons, selects, bitcasts, conversions
 * and the intrinsics fma, fabs, rint, floor, sqrt and copysign: all selectable by LLVM 22's
 * NVPTX backend (as .rn instructions, which ptxas does not contract) and by x86-64, where
 * tests/devmath measures them against float64 libm. It must not emit calls to anything else
 * (libm, llvm.exp/log/pow/..., NVVM approximations), memory accesses or fast-math flags: the
 * same IR has to give the same bits on every target. The one branch is sin/cos's rare
 * large-argument path. Subnormals are assumed kept (no flush-to-zero attributes).
 *
 * Methods (errors in cg_devmath.h's table, measured in docs/devmath.md). "hi + lo" is an
 * unevaluated double-f32 sum, made exact with Fast2Sum/TwoSum and fma products:
 * - exp, exp2: n = rint(x·log2 e) (rint(x)), r = x - n·ln2 (Cody-Waite, fma) or x - n as hi + lo,
 *   Taylor polynomial of degree 9 on |r| <= ln2/2 (exp2: 8 on |r| <= 1/2), 1 + r + rest summed
 *   with Fast2Sum, then scaled by 2^n as two exponent-bit factors (subnormals round once, overflow
 *   gives inf);
 * - log, log2: x = m·2^k with m in [sqrt(1/2), sqrt(2)) from the bits (subnormals prescaled),
 *   f = m - 1, s = f/(2+f) with its remainder, log(m) = 2s + s^3·(2/3 + s^2·Q(s^2)) (atanh
 *   series) as hi + lo good to ~2^-34, then k·ln2 (k) added with Fast2Sum;
 * - pow: exp2(y·log2|x|) with log2|x| and the product as hi + lo, sign and C99 special cases
 *   (pow(x, ±0) = pow(1, y) = 1, x < 0 with non-integer y NaN, odd y keeps the sign) by select;
 * - sqrt: llvm.sqrt (correctly rounded on both targets); rsqrt: 1/sqrt(x), then a Newton step
 *   on the exact residual 1 - x·y^2;
 * - sin, cos: r = x - j·pi/2 as hi + lo, by Cody-Waite (three-part pi/2, fma) below 2^15 and
 *   Payne-Hanek (ARM optimized-routines' 2/pi table, i64 products) above; Taylor polynomials on
 *   |r| <= pi/4 and the quadrant j & 3;
 * - tanh: t = expm1(2|x|) as hi + lo (|x| clamped to 10, where tanh rounds to 1), t/(t+2)
 *   with one remainder correction; sigmoid: e = exp(-|x|) as hi + lo, 1/(1+e) or e/(1+e) the
 *   same way;
 * - asin, acos: Cephes' asinf polynomial on |x| <= 1/2; above, s = sqrt((1-|x|)/2) with the
 *   sqrt's remainder, asin = pi/2 - 2·asin(s), acos = 2·asin(s) or pi - 2·asin(s), the constants
 *   as hi + lo; atan: Cephes' reduction to |t| <= tan(pi/8) (t = -1/|x| or (|x|-1)/(|x|+1) with
 *   the quotient's rest), an odd polynomial fitted at Chebyshev nodes, pi/2 or pi/4 as hi + lo. */
#include "cg_devmath.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const CgMathInfo cg_devmath_info[CG_MATH_COUNT] = {
#define CG_DEVMATH_INFO(name, arity, ulp) {#name, arity, ulp},
    CG_DEVMATH(CG_DEVMATH_INFO)
#undef CG_DEVMATH_INFO
};

bool cg_devmath_lookup(const char *name, CgMathFn *out) {
  for (int i = 0; i < CG_MATH_COUNT; i++)
    if (!strcmp(name, cg_devmath_info[i].name)) {
      *out = (CgMathFn)i;
      return true;
    }
  return false;
}

/* ---- an IR emitter for one body ---- */

typedef struct Em {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTypeRef f32, i32;
} Em;

typedef LLVMValueRef V;

static V k(Em *e, float v) { return LLVMConstReal(e->f32, v); }
static V ki(Em *e, int v) { return LLVMConstInt(e->i32, (unsigned long long)(long long)v, 1); }

/* A call to the f32 overload of an LLVM intrinsic (a fixed name: a miss is a bug here). */
static V intr(Em *e, const char *name, V *args, unsigned n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id) {
    fprintf(stderr, "cg_devmath: no intrinsic %s in this LLVM\n", name);
    abort();
  }
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(e->mod, id, &e->f32, 1);
  return LLVMBuildCall2(e->b, LLVMIntrinsicGetType(e->ctx, id, &e->f32, 1), fn, args, n, "");
}

static V add(Em *e, V a, V b) { return LLVMBuildFAdd(e->b, a, b, ""); }
static V sub(Em *e, V a, V b) { return LLVMBuildFSub(e->b, a, b, ""); }
static V mul(Em *e, V a, V b) { return LLVMBuildFMul(e->b, a, b, ""); }
static V fdiv(Em *e, V a, V b) { return LLVMBuildFDiv(e->b, a, b, ""); }
static V neg(Em *e, V a) { return LLVMBuildFNeg(e->b, a, ""); }
static V fma3(Em *e, V a, V b, V c) { return intr(e, "llvm.fma", (V[]){a, b, c}, 3); }
static V fabs1(Em *e, V a) { return intr(e, "llvm.fabs", &a, 1); }
static V rint1(Em *e, V a) { return intr(e, "llvm.rint", &a, 1); }
static V floor1(Em *e, V a) { return intr(e, "llvm.floor", &a, 1); }
static V sqrt1(Em *e, V a) { return intr(e, "llvm.sqrt", &a, 1); }
static V copysign2(Em *e, V mag, V sgn) { return intr(e, "llvm.copysign", (V[]){mag, sgn}, 2); }
static V cmp(Em *e, LLVMRealPredicate p, V a, V b) { return LLVMBuildFCmp(e->b, p, a, b, ""); }
static V sel(Em *e, V c, V a, V b) { return LLVMBuildSelect(e->b, c, a, b, ""); }
static V isnan1(Em *e, V a) { return cmp(e, LLVMRealUNO, a, a); }
static V and2(Em *e, V a, V b) { return LLVMBuildAnd(e->b, a, b, ""); }
static V or2(Em *e, V a, V b) { return LLVMBuildOr(e->b, a, b, ""); }
static V bits(Em *e, V a) { return LLVMBuildBitCast(e->b, a, e->i32, ""); }
static V from_bits(Em *e, V a) { return LLVMBuildBitCast(e->b, a, e->f32, ""); }
static V to_int(Em *e, V a) { return LLVMBuildFPToSI(e->b, a, e->i32, ""); }
static V to_float(Em *e, V a) { return LLVMBuildSIToFP(e->b, a, e->f32, ""); }

/* c[0] + x·(c[1] + x·(... c[n-1])), Horner with fma. */
static V poly(Em *e, V x, const float *c, int n) {
  V p = k(e, c[n - 1]);
  for (int i = n - 2; i >= 0; i--)
    p = fma3(e, p, x, k(e, c[i]));
  return p;
}

/* a + b as the f32 nearest to it plus the exact rest *lo, for |a| >= |b| or a == 0 (Fast2Sum). */
static V fast2sum(Em *e, V a, V b, V *lo) {
  V s = add(e, a, b);
  *lo = add(e, sub(e, a, s), b);
  return s;
}

/* a + b as the f32 nearest to it plus the exact rest *lo, for any a and b (TwoSum). */
static V two_sum(Em *e, V a, V b, V *lo) {
  V s = add(e, a, b);
  V bb = sub(e, s, a);
  *lo = add(e, sub(e, a, sub(e, s, bb)), sub(e, b, bb));
  return s;
}

/* (nh + nl) / (dh + dl) for normalised pairs (|lo| <= ulp(hi)): q = nh/dh plus one correction
 * from the exact remainder, so about the rounding of q alone. */
static V div_dd(Em *e, V nh, V nl, V dh, V dl) {
  V q = fdiv(e, nh, dh);
  V r = fma3(e, neg(e, q), dl, add(e, fma3(e, neg(e, q), dh, nh), nl));
  return add(e, q, fdiv(e, r, dh));
}

/* 2^n for an i32 n in [-126, 127], from the exponent bits. */
static V pow2i(Em *e, V n) {
  return from_bits(e, LLVMBuildShl(e->b, LLVMBuildAdd(e->b, n, ki(e, 127), ""), ki(e, 23), ""));
}

/* p·2^n for n in [-252, 254]: two factors, each a normal number, so that a subnormal or
 * overflowing result is rounded once. */
static V scale(Em *e, V p, V n) {
  V n1 = LLVMBuildAShr(e->b, n, ki(e, 1), "");
  V n2 = LLVMBuildSub(e->b, n, n1, "");
  return mul(e, mul(e, p, pow2i(e, n1)), pow2i(e, n2));
}

/* ---- exponentials ---- */

static const float LOG2E = 0x1.715476p+0f;
static const float LN2_HI = 0x1.62e43p-1f, LN2_LO = -0x1.05c61p-29f;

/* 1 + t + u rounded once more: t the leading term (|t| < 1), u the small rest. */
static V one_plus(Em *e, V t, V u) {
  V e1;
  V s = fast2sum(e, k(e, 1), t, &e1);
  return add(e, s, add(e, e1, u));
}

/* e^(x - n·ln2) - 1 = *t + *u for |x - n·ln2| <= ln2/2 + a little: r = x - n·ln2 as rh + rl
 * (x - n·LN2_HI is exact for |n| <= 255), then r + r^2·(1/2! + r/3! + ... + r^7/9!). */
static void expm1_reduced(Em *e, V x, V fn, V *t, V *u) {
  static const float c[] = {0x1p-1f,         0x1.555556p-3f,  0x1.555556p-5f,  0x1.111112p-7f,
                            0x1.6c16c2p-10f, 0x1.a01a02p-13f, 0x1.a01a02p-16f, 0x1.71de3ap-19f};
  V r1 = fma3(e, neg(e, fn), k(e, LN2_HI), x);
  V rh = fma3(e, neg(e, fn), k(e, LN2_LO), r1);
  V rl = fma3(e, neg(e, fn), k(e, LN2_LO), sub(e, r1, rh));
  *t = rh;
  *u = fma3(e, mul(e, rh, rh), poly(e, rh, c, 8), fma3(e, rh, rl, rl));
}

/* e^x = (hi + *lo)·2^*n with hi the return value, for x clamped to [-104, 89] (NaN -> 89). */
static V exp_unscaled(Em *e, V x, V *lo, V *n) {
  V xc = sel(e, cmp(e, LLVMRealUGT, x, k(e, 89)), k(e, 89), x);
  xc = sel(e, cmp(e, LLVMRealOLT, xc, k(e, -104)), k(e, -104), xc);
  V fn = rint1(e, mul(e, xc, k(e, LOG2E)));
  V t, u, e1;
  expm1_reduced(e, xc, fn, &t, &u);
  V hi = fast2sum(e, k(e, 1), t, &e1);
  *n = to_int(e, fn);
  return fast2sum(e, hi, add(e, e1, u), lo);
}

/* e^x for every f32 x (NaN passes through). */
static V emit_exp(Em *e, V x) {
  V lo, n;
  V hi = exp_unscaled(e, x, &lo, &n);
  return sel(e, isnan1(e, x), x, scale(e, add(e, hi, lo), n));
}

/* 2^(hi + lo) for a normalised pair (|lo| <= ulp(hi)/2; lo finite whenever hi is): r = hi - n
 * + lo as rh + rl, 2^r = 1 + r·ln2 + r^2·(ln2^2/2! + ... + r^6·ln2^8/8!). */
static V emit_exp2_dd(Em *e, V hi, V lo) {
  static const float c[] = {0x1.ebfbep-3f,   0x1.c6b08ep-5f,  0x1.3b2ab6p-7f, 0x1.5d87fep-10f,
                            0x1.430912p-13f, 0x1.ffcbfcp-17f, 0x1.62c022p-20f};
  V hc = sel(e, cmp(e, LLVMRealUGT, hi, k(e, 140)), k(e, 140), hi); /* NaN -> 140 */
  hc = sel(e, cmp(e, LLVMRealOLT, hc, k(e, -160)), k(e, -160), hc);
  V lc = sel(e, cmp(e, LLVMRealOEQ, hi, hc), lo, k(e, 0));
  V fn = rint1(e, hc);
  V rl;
  V rh = fast2sum(e, sub(e, hc, fn), lc, &rl);
  V th = mul(e, rh, k(e, LN2_HI));
  V tl = fma3(e, rl, k(e, LN2_HI), fma3(e, rh, k(e, LN2_LO), fma3(e, rh, k(e, LN2_HI), neg(e, th))));
  V p = one_plus(e, th, fma3(e, mul(e, rh, rh), poly(e, rh, c, 7), tl));
  return sel(e, isnan1(e, hi), hi, scale(e, p, to_int(e, fn)));
}

static V emit_exp2(Em *e, V x) { return emit_exp2_dd(e, x, k(e, 0)); }

/* e^x - 1 = hi + *lo for x in [0, 20] (tanh's range): 2^n·(1 + t + u) - 1 with 2^n - 1
 * exact (n <= 24) or far larger than the rest. */
static V expm1_pos(Em *e, V x, V *lo) {
  V fn = rint1(e, mul(e, x, k(e, LOG2E)));
  V t, u, e1;
  expm1_reduced(e, x, fn, &t, &u);
  V s = pow2i(e, to_int(e, fn));
  V hi = fast2sum(e, sub(e, s, k(e, 1)), mul(e, s, t), &e1); /* |2^n - 1| >= |2^n·t| or n = 0 */
  return fast2sum(e, hi, fma3(e, s, u, e1), lo);
}

/* ---- logarithms ---- */

/* For finite x > 0 (anything else gives a finite garbage value, never poison): x = m·2^k with
 * m in [sqrt(1/2), sqrt(2)), and log(m) = *hi + *lo to about 2^-34 relative. */
static V log_core(Em *e, V x, V *hi, V *lo) {
  V sub_n = cmp(e, LLVMRealOLT, x, k(e, 0x1p-126f));
  V ix = bits(e, sel(e, sub_n, mul(e, x, k(e, 0x1p23f)), x));
  ix = LLVMBuildSub(e->b, ix, ki(e, 0x3f3504f3), ""); /* bits of sqrt(1/2) */
  V kk = LLVMBuildAdd(e->b, LLVMBuildAShr(e->b, ix, ki(e, 23), ""), sel(e, sub_n, ki(e, -23), ki(e, 0)), "");
  V m = from_bits(e, LLVMBuildAdd(e->b, LLVMBuildAnd(e->b, ix, ki(e, 0x7fffff), ""), ki(e, 0x3f3504f3), ""));
  V f = sub(e, m, k(e, 1)); /* exact */
  V d = add(e, k(e, 2), f);
  V dlo = sub(e, f, sub(e, d, k(e, 2)));
  V rcp = fdiv(e, k(e, 1), d);
  V s = mul(e, f, rcp);
  V rem = fma3(e, neg(e, s), dlo, fma3(e, neg(e, s), d, f));
  V slo = mul(e, rem, rcp);
  /* log(m) = 2s + s^3·(2/3 + z·Q(z)), z = s^2, with s^3 and the product kept as hi + lo, and
   * 2s^2·slo for the remainder's share of the s^3 term. */
  static const float Q0_HI = 0x1.555556p-1f, Q0_LO = -0x1.555556p-26f;
  static const float q[] = {0x1.99999ap-2f, 0x1.24924ap-2f, 0x1.c71c72p-3f, 0x1.745d18p-3f, 0x1.3b13b2p-3f};
  V zh = mul(e, s, s);
  V zl = fma3(e, s, s, neg(e, zh));
  V ah = mul(e, s, zh);
  V al = fma3(e, s, zl, fma3(e, s, zh, neg(e, ah)));
  V ql = fma3(e, zh, poly(e, zh, q, 5), k(e, Q0_LO));
  V th = mul(e, ah, k(e, Q0_HI));
  V slo2 = add(e, slo, slo);
  V tl = fma3(e, slo2, zh, fma3(e, ah, ql, fma3(e, al, k(e, Q0_HI), fma3(e, ah, k(e, Q0_HI), neg(e, th)))));
  V e1;
  V h = fast2sum(e, add(e, s, s), th, &e1);
  *hi = fast2sum(e, h, add(e, e1, add(e, tl, slo2)), lo);
  return to_float(e, kk);
}

/* C's special cases of log and log2 around a value r computed for finite x > 0. */
static V log_special(Em *e, V x, V r) {
  r = sel(e, cmp(e, LLVMRealOEQ, x, k(e, 0)), k(e, -INFINITY), r);
  r = sel(e, cmp(e, LLVMRealOLT, x, k(e, 0)), k(e, NAN), r);
  r = sel(e, cmp(e, LLVMRealOEQ, x, k(e, INFINITY)), x, r);
  return sel(e, isnan1(e, x), x, r);
}

static V emit_log(Em *e, V x) {
  static const float LN2_HI16 = 0x1.62e4p-1f, LN2_LO16 = 0x1.7f7d1cp-20f; /* k·HI16 exact */
  V hi, lo;
  V kf = log_core(e, x, &hi, &lo);
  V a = mul(e, kf, k(e, LN2_HI16));
  V te;
  V t = fast2sum(e, a, hi, &te); /* |a| >= |hi| or a == 0 */
  V r = add(e, t, add(e, te, fma3(e, kf, k(e, LN2_LO16), lo)));
  return log_special(e, x, r);
}

/* log2 x = *hi + *lo (double-f32) for finite x > 0. */
static void log2_dd(Em *e, V x, V *hi, V *lo) {
  static const float IVLN2_HI = 0x1.715476p+0f, IVLN2_LO = 0x1.4ae0cp-26f;
  V h, l;
  V kf = log_core(e, x, &h, &l);
  V p = mul(e, h, k(e, IVLN2_HI));
  V pe = fma3(e, h, k(e, IVLN2_HI), neg(e, p));
  V pl = add(e, pe, fma3(e, h, k(e, IVLN2_LO), mul(e, l, k(e, IVLN2_HI))));
  V te;
  V t = fast2sum(e, kf, p, &te); /* |k| >= |p| or k == 0 */
  *hi = fast2sum(e, t, add(e, te, pl), lo);
}

static V emit_log2(Em *e, V x) {
  V hi, lo;
  log2_dd(e, x, &hi, &lo);
  return log_special(e, x, add(e, hi, lo));
}

/* ---- pow ---- */

static V emit_pow(Em *e, V x, V y) {
  V ax = fabs1(e, x), ay = fabs1(e, y);
  V lh, ll;
  log2_dd(e, ax, &lh, &ll);
  lh = log_special(e, ax, lh); /* -inf for 0, inf for inf */
  V zh = mul(e, y, lh), zl;
  V zc = fma3(e, y, ll, fma3(e, y, lh, neg(e, zh))); /* the rest of y·(lh + ll), if finite */
  zh = fast2sum(e, zh, sel(e, cmp(e, LLVMRealOLT, fabs1(e, zh), k(e, INFINITY)), zc, k(e, 0)), &zl);
  V r = emit_exp2_dd(e, zh, zl);
  V is_int = cmp(e, LLVMRealOEQ, floor1(e, y), y);
  V yi = to_int(e, sel(e, cmp(e, LLVMRealOLT, ay, k(e, 0x1p24f)), y, k(e, 0)));
  V odd = and2(e, is_int, LLVMBuildTrunc(e->b, yi, LLVMInt1TypeInContext(e->ctx), ""));
  V xneg = LLVMBuildICmp(e->b, LLVMIntSLT, bits(e, x), ki(e, 0), "");
  r = sel(e, and2(e, odd, xneg), neg(e, r), r);
  V finite_neg = and2(e, cmp(e, LLVMRealOLT, x, k(e, 0)), cmp(e, LLVMRealOGT, x, k(e, -INFINITY)));
  r = sel(e, and2(e, finite_neg, LLVMBuildNot(e->b, is_int, "")), k(e, NAN), r);
  r = sel(e, cmp(e, LLVMRealUNO, x, y), add(e, x, y), r);
  V one = or2(e, cmp(e, LLVMRealOEQ, y, k(e, 0)), cmp(e, LLVMRealOEQ, x, k(e, 1)));
  one = or2(e, one, and2(e, cmp(e, LLVMRealOEQ, ax, k(e, 1)), cmp(e, LLVMRealOEQ, ay, k(e, INFINITY))));
  return sel(e, one, k(e, 1), r);
}

/* ---- square roots ---- */

static V emit_sqrt(Em *e, V x) { return sqrt1(e, x); }

/* 1/sqrt(x), then one Newton step on the exact residual 1 - x·y0^2 (x prescaled by 2^100
 * below 2^-100 so that x·y0 stays normal). */
static V emit_rsqrt(Em *e, V x) {
  V small = cmp(e, LLVMRealOLT, x, k(e, 0x1p-100f));
  V xs = sel(e, small, mul(e, x, k(e, 0x1p100f)), x);
  V y0 = fdiv(e, k(e, 1), sqrt1(e, xs));
  V ph = mul(e, xs, y0);
  V pl = fma3(e, xs, y0, neg(e, ph));
  V t = fma3(e, pl, y0, fma3(e, ph, y0, k(e, -1)));
  V y = fma3(e, mul(e, k(e, -0.5f), y0), t, y0);
  V fine = and2(e, cmp(e, LLVMRealOGT, x, k(e, 0)), cmp(e, LLVMRealOLT, x, k(e, INFINITY)));
  return sel(e, fine, mul(e, y, sel(e, small, k(e, 0x1p50f), k(e, 1))), y0);
}

/* ---- trigonometric ---- */

/* Bits of 2/pi: T[i] = floor(2/pi·2^(8i+8)) mod 2^32 (the table of ARM's optimized-routines
 * sinf), so that T[a], T[a+4], T[a+8] cover |x|·2/pi mod 4 to 2^-62 for an exponent 128+8a+sh. */
static const unsigned TWO_OVER_PI_BITS[24] = {
    0x000000a2u, 0x0000a2f9u, 0x00a2f983u, 0xa2f9836eu, 0xf9836e4eu, 0x836e4e44u, 0x6e4e4415u, 0x4e441529u,
    0x441529fcu, 0x1529fc27u, 0x29fc2757u, 0xfc2757d1u, 0x2757d1f5u, 0x57d1f534u, 0xd1f534ddu, 0xf534ddc0u,
    0x34ddc0dbu, 0xddc0db62u, 0xc0db6295u, 0xdb629599u, 0x6295993cu, 0x95993c43u, 0x993c4390u, 0x3c439041u};

/* TWO_OVER_PI_BITS[idx + off] for an i32 idx in [0, 15], as a chain of selects. */
static V pick_bits(Em *e, V idx, int off) {
  V v = ki(e, (int)TWO_OVER_PI_BITS[off]);
  for (int i = 1; i < 16; i++)
    v = sel(e, LLVMBuildICmp(e->b, LLVMIntEQ, idx, ki(e, i), ""), ki(e, (int)TWO_OVER_PI_BITS[i + off]), v);
  return v;
}

/* Payne-Hanek for |x| >= 2 (used from 2^15): |x|·2/pi = n + f, |f| <= 1/2, f in 2^-62 units as an
 * i64 and n mod 4; returns r = f·pi/2 as *rh + *rl and the quadrant for x (sign applied). */
static V reduce_large(Em *e, V x, V *rh, V *rl) {
  static const float PIO2_62_HI = 0x1.921fb6p-62f, PIO2_62_LO = -0x1.777a5cp-87f;
  LLVMTypeRef i64 = LLVMInt64TypeInContext(e->ctx);
  V xi = bits(e, x);
  V e8 = LLVMBuildAnd(e->b, LLVMBuildLShr(e->b, xi, ki(e, 23), ""), ki(e, 0xff), "");
  V a = LLVMBuildAnd(e->b, LLVMBuildLShr(e->b, e8, ki(e, 3), ""), ki(e, 15), "");
  V m = LLVMBuildOr(e->b, LLVMBuildAnd(e->b, xi, ki(e, 0x7fffff), ""), ki(e, 0x800000), "");
  m = LLVMBuildShl(e->b, m, LLVMBuildAnd(e->b, e8, ki(e, 7), ""), "");
  V m64 = LLVMBuildZExt(e->b, m, i64, "");
  V top = LLVMBuildShl(e->b, LLVMBuildZExt(e->b, LLVMBuildMul(e->b, m, pick_bits(e, a, 0), ""), i64, ""),
                       LLVMConstInt(i64, 32, 0), "");
  V mid = LLVMBuildMul(e->b, m64, LLVMBuildZExt(e->b, pick_bits(e, a, 4), i64, ""), "");
  V low = LLVMBuildLShr(e->b, LLVMBuildMul(e->b, m64, LLVMBuildZExt(e->b, pick_bits(e, a, 8), i64, ""), ""),
                        LLVMConstInt(i64, 32, 0), "");
  V res = LLVMBuildAdd(e->b, LLVMBuildOr(e->b, top, low, ""), mid, "");
  V n = LLVMBuildLShr(e->b, LLVMBuildAdd(e->b, res, LLVMConstInt(i64, 1ull << 61, 0), ""), LLVMConstInt(i64, 62, 0), "");
  res = LLVMBuildSub(e->b, res, LLVMBuildShl(e->b, n, LLVMConstInt(i64, 62, 0), ""), "");
  V fh = LLVMBuildSIToFP(e->b, res, e->f32, "");
  V fl = LLVMBuildSIToFP(e->b, LLVMBuildSub(e->b, res, LLVMBuildFPToSI(e->b, fh, i64, ""), ""), e->f32, "");
  V h = mul(e, fh, k(e, PIO2_62_HI));
  V l = fma3(e, fh, k(e, PIO2_62_LO), fma3(e, fl, k(e, PIO2_62_HI), fma3(e, fh, k(e, PIO2_62_HI), neg(e, h))));
  V rest;
  V sum = fast2sum(e, h, l, &rest);
  V xneg = LLVMBuildICmp(e->b, LLVMIntSLT, xi, ki(e, 0), "");
  *rh = sel(e, xneg, neg(e, sum), sum);
  *rl = sel(e, xneg, neg(e, rest), rest);
  V q = LLVMBuildTrunc(e->b, n, e->i32, "");
  return sel(e, xneg, LLVMBuildNeg(e->b, q, ""), q);
}

/* sin (cos_shift 0) or cos (1) of every f32 x: r = x - j·pi/2 as rh + rl, by Cody-Waite
 * (three-part pi/2, fma) below 2^15 and Payne-Hanek above (in its own block), then Taylor
 * polynomials on |r| <= pi/4 and the quadrant j & 3. */
static V sin_cos(Em *e, V x, int cos_shift) {
  static const float TWO_OVER_PI = 0x1.45f306p-1f;
  static const float PIO2_1 = 0x1.921fb6p+0f, PIO2_2 = -0x1.777a5cp-25f, PIO2_3 = -0x1.ee59dap-50f;
  V ax = fabs1(e, x);
  V bad = cmp(e, LLVMRealUEQ, ax, k(e, INFINITY));
  V large = cmp(e, LLVMRealOGE, ax, k(e, 0x1p15f)); /* also inf, fixed at the end */
  V xs = sel(e, cmp(e, LLVMRealOLT, ax, k(e, 0x1p15f)), x, k(e, 0));
  V j = rint1(e, mul(e, xs, k(e, TWO_OVER_PI)));
  V r1 = fma3(e, neg(e, j), k(e, PIO2_1), xs); /* exact */
  V th = mul(e, j, k(e, PIO2_2));
  V tl = fma3(e, j, k(e, PIO2_2), neg(e, th)); /* j·PIO2_2 = th + tl exactly */
  V rl;
  V rh = two_sum(e, r1, neg(e, th), &rl);
  rh = fast2sum(e, rh, fma3(e, neg(e, j), k(e, PIO2_3), sub(e, rl, tl)), &rl);
  V q = to_int(e, j);

  LLVMBasicBlockRef from = LLVMGetInsertBlock(e->b);
  LLVMValueRef fn = LLVMGetBasicBlockParent(from);
  LLVMBasicBlockRef big_bb = LLVMAppendBasicBlockInContext(e->ctx, fn, "large");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "reduced");
  LLVMBuildCondBr(e->b, large, big_bb, join);
  LLVMPositionBuilderAtEnd(e->b, big_bb);
  V lrh, lrl;
  V lq = reduce_large(e, x, &lrh, &lrl);
  LLVMBasicBlockRef big_end = LLVMGetInsertBlock(e->b);
  LLVMBuildBr(e->b, join);
  LLVMPositionBuilderAtEnd(e->b, join);
  V vals[3][2] = {{rh, lrh}, {rl, lrl}, {q, lq}};
  V *outs[3] = {&rh, &rl, &q};
  LLVMBasicBlockRef blocks[2] = {from, big_end};
  for (int i = 0; i < 3; i++) {
    *outs[i] = LLVMBuildPhi(e->b, LLVMTypeOf(vals[i][0]), "");
    LLVMAddIncoming(*outs[i], vals[i], blocks, 2);
  }

  V r2 = mul(e, rh, rh);
  static const float sc[] = {-0x1.555556p-3f, 0x1.111112p-7f, -0x1.a01a02p-13f, 0x1.71de3ap-19f,
                             -0x1.ae6456p-26f};
  V sn = add(e, rh, fma3(e, mul(e, rh, r2), poly(e, r2, sc, 5), rl));
  static const float cc[] = {0x1.555556p-5f, -0x1.6c16c2p-10f, 0x1.a01a02p-16f, -0x1.27e4fcp-22f,
                             0x1.1eed8ep-29f};
  V hr = mul(e, k(e, 0.5f), r2);
  V w = sub(e, k(e, 1), hr);
  V r2e = fma3(e, rh, rh, neg(e, r2));
  V tail = sub(e, sub(e, sub(e, k(e, 1), w), hr), mul(e, k(e, 0.5f), r2e));
  tail = fma3(e, mul(e, r2, r2), poly(e, r2, cc, 5), fma3(e, neg(e, rh), rl, tail));
  V cs = add(e, w, tail);
  q = LLVMBuildAnd(e->b, LLVMBuildAdd(e->b, q, ki(e, cos_shift), ""), ki(e, 3), "");
  V odd = LLVMBuildTrunc(e->b, q, LLVMInt1TypeInContext(e->ctx), "");
  V negate = LLVMBuildICmp(e->b, LLVMIntUGE, q, ki(e, 2), "");
  V v = sel(e, odd, cs, sn);
  v = sel(e, negate, neg(e, v), v);
  if (!cos_shift)
    v = sel(e, cmp(e, LLVMRealOEQ, x, k(e, 0)), x, v); /* sin(-0) = -0 */
  return sel(e, bad, sub(e, x, x), v);
}

static V emit_sin(Em *e, V x) { return sin_cos(e, x, 0); }
static V emit_cos(Em *e, V x) { return sin_cos(e, x, 1); }

/* ---- hyperbolic and logistic ---- */

/* t/(t + 2) for t = expm1(2|x|) (|x| clamped to 10, where tanh rounds to 1), all as pairs. */
static V emit_tanh(Em *e, V x) {
  V a = fabs1(e, x);
  V ac = sel(e, cmp(e, LLVMRealOLE, a, k(e, 10)), a, k(e, 10)); /* NaN -> 10, fixed below */
  V tl, dl;
  V th = expm1_pos(e, add(e, ac, ac), &tl);
  V dh = two_sum(e, th, k(e, 2), &dl);
  V r = copysign2(e, div_dd(e, th, tl, dh, add(e, dl, tl)), x);
  return sel(e, isnan1(e, x), x, r);
}

/* n/(1 + e) for e = exp(-|x|) as a pair: n = 1 for x >= 0, e below. */
static V emit_sigmoid(Em *e, V x) {
  V lo, n, dl;
  V hi = exp_unscaled(e, neg(e, fabs1(e, x)), &lo, &n);
  V eh = scale(e, hi, n), el = scale(e, lo, n);
  V dh = fast2sum(e, k(e, 1), eh, &dl);
  V pos = cmp(e, LLVMRealOGE, x, k(e, 0));
  V r = div_dd(e, sel(e, pos, k(e, 1), eh), sel(e, pos, k(e, 0), el), dh, add(e, dl, el));
  return sel(e, isnan1(e, x), x, r);
}

/* ---- inverse trigonometric ---- */

static const float PIO2_HI = 0x1.921fb6p+0f, PIO2_LO = -0x1.777a5cp-25f;

/* asin(s) - s = s·z·P(z) for z = s^2 <= 1/4 (Cephes asinf). */
static V asin_tail(Em *e, V s, V z) {
  static const float c[] = {1.6666752422e-1f, 7.4953002686e-2f, 4.5470025998e-2f, 2.4181311049e-2f,
                            4.2163199048e-2f};
  return mul(e, mul(e, s, z), poly(e, z, c, 5));
}

/* For |x| > 1/2: z = (1 - |x|)/2, s = sqrt(z) and its remainder; *slo = sqrt(z) - s. */
static V half_sqrt(Em *e, V ax, V *z, V *slo) {
  *z = mul(e, k(e, 0.5f), sub(e, k(e, 1), ax));
  V s = sqrt1(e, *z);
  V den = sel(e, cmp(e, LLVMRealOGT, s, k(e, 0)), add(e, s, s), k(e, 1));
  *slo = fdiv(e, fma3(e, neg(e, s), s, *z), den);
  return s;
}

static V emit_asin(Em *e, V x) {
  V ax = fabs1(e, x);
  V big = cmp(e, LLVMRealOGT, ax, k(e, 0.5f));
  V zb, slo;
  V sb = half_sqrt(e, ax, &zb, &slo);
  V s = sel(e, big, sb, ax);
  V z = sel(e, big, zb, mul(e, ax, ax));
  V u = asin_tail(e, s, z);
  V hi = fma3(e, k(e, -2), s, k(e, PIO2_HI));
  V hl = fma3(e, k(e, -2), s, sub(e, k(e, PIO2_HI), hi)); /* PIO2_HI - hi is exact */
  V rb = add(e, hi, add(e, hl, fma3(e, k(e, -2), add(e, slo, u), k(e, PIO2_LO))));
  return copysign2(e, sel(e, big, rb, add(e, ax, u)), x);
}

static V emit_acos(Em *e, V x) {
  static const float PI_HI = 0x1.921fb6p+1f, PI_LO = -0x1.777a5cp-24f;
  V ax = fabs1(e, x);
  V big = cmp(e, LLVMRealOGT, ax, k(e, 0.5f));
  V xneg = cmp(e, LLVMRealOLT, x, k(e, 0));
  V zb, slo;
  V sb = half_sqrt(e, ax, &zb, &slo);
  V s = sel(e, big, sb, x);
  V z = sel(e, big, zb, mul(e, x, x));
  V u = asin_tail(e, s, z);
  /* acos = c_hi - m·(s + slo + u) + c_lo: (pi/2, 1) small, (pi, 2) big negative, (0, -2) big. */
  V ch = sel(e, big, sel(e, xneg, k(e, PI_HI), k(e, 0)), k(e, PIO2_HI));
  V cl = sel(e, big, sel(e, xneg, k(e, PI_LO), k(e, 0)), k(e, PIO2_LO));
  V m = sel(e, big, sel(e, xneg, k(e, 2), k(e, -2)), k(e, 1));
  V sl = sel(e, big, slo, k(e, 0));
  V hi = fma3(e, neg(e, m), s, ch);
  V hl = fma3(e, neg(e, m), s, sub(e, ch, hi)); /* ch - hi is exact */
  return add(e, hi, add(e, hl, fma3(e, neg(e, m), add(e, sl, u), cl)));
}

/* Cephes' reduction: t = -1/|x| above tan(3pi/8), (|x|-1)/(|x|+1) above tan(pi/8), with the
 * quotient's rest; atan(t) = t + t^3·P(t^2) (P fitted at Chebyshev nodes, 0.03 ulp), plus pi/2
 * or pi/4 as hi + lo. */
static V emit_atan(Em *e, V x) {
  static const float PIO4_HI = 0x1.921fb6p-1f, PIO4_LO = -0x1.777a5cp-26f;
  static const float c[] = {-0x1.555556p-2f, 0x1.99997cp-3f,  -0x1.248a16p-3f,
                            0x1.c57b76p-4f,  -0x1.6142a6p-4f, 0x1.9d82b4p-5f};
  V ax = fabs1(e, x);
  V big = cmp(e, LLVMRealOGT, ax, k(e, 0x1.3504f4p+1f)); /* tan(3pi/8) */
  V mid = cmp(e, LLVMRealOGT, ax, k(e, 0x1.a8279ap-2f));  /* tan(pi/8) */
  V nl, dl;
  V nh = two_sum(e, ax, k(e, -1), &nl);
  V dh = two_sum(e, ax, k(e, 1), &dl);
  nh = sel(e, big, k(e, -1), sel(e, mid, nh, ax));
  nl = sel(e, mid, sel(e, big, k(e, 0), nl), k(e, 0));
  dh = sel(e, big, ax, sel(e, mid, dh, k(e, 1)));
  dl = sel(e, mid, sel(e, big, k(e, 0), dl), k(e, 0));
  V t = fdiv(e, nh, dh);
  V tl = fdiv(e, fma3(e, neg(e, t), dl, add(e, fma3(e, neg(e, t), dh, nh), nl)), dh);
  tl = sel(e, big, sel(e, cmp(e, LLVMRealOEQ, ax, k(e, INFINITY)), k(e, 0), tl), tl);
  V z = mul(e, t, t);
  V bh = sel(e, big, k(e, PIO2_HI), sel(e, mid, k(e, PIO4_HI), k(e, 0)));
  V bl = sel(e, big, k(e, PIO2_LO), sel(e, mid, k(e, PIO4_LO), k(e, 0)));
  V e1;
  V h = fast2sum(e, bh, t, &e1); /* |bh| > |t| or bh == 0 */
  V rest = add(e, add(e, e1, bl), fma3(e, neg(e, tl), z, tl)); /* atan(t + tl) = atan(t) + tl/(1+t^2) */
  return copysign2(e, add(e, h, fma3(e, mul(e, t, z), poly(e, z, c, 6), rest)), x);
}

/* ---- definitions and calls ---- */

static V emit_body(Em *e, CgMathFn fn, V *a) {
  switch (fn) {
#define CG_DEVMATH_CASE1(name) \
  case CG_MATH_##name:         \
    return emit_##name(e, a[0]);
    CG_DEVMATH_CASE1(exp)
    CG_DEVMATH_CASE1(exp2)
    CG_DEVMATH_CASE1(log)
    CG_DEVMATH_CASE1(log2)
    CG_DEVMATH_CASE1(sqrt)
    CG_DEVMATH_CASE1(rsqrt)
    CG_DEVMATH_CASE1(sin)
    CG_DEVMATH_CASE1(cos)
    CG_DEVMATH_CASE1(tanh)
    CG_DEVMATH_CASE1(sigmoid)
    CG_DEVMATH_CASE1(acos)
    CG_DEVMATH_CASE1(asin)
    CG_DEVMATH_CASE1(atan)
#undef CG_DEVMATH_CASE1
  case CG_MATH_pow:
    return emit_pow(e, a[0], a[1]);
  case CG_MATH_COUNT:
    break;
  }
  abort();
}

/* The module's definition of fn, made on first use. */
static LLVMValueRef definition(LLVMModuleRef mod, CgMathFn fn) {
  char name[64];
  snprintf(name, sizeof name, "vx_devmath_%s", cg_devmath_info[fn].name);
  LLVMValueRef f = LLVMGetNamedFunction(mod, name);
  if (f)
    return f;
  Em e = {.ctx = LLVMGetModuleContext(mod), .mod = mod};
  e.f32 = LLVMFloatTypeInContext(e.ctx);
  e.i32 = LLVMInt32TypeInContext(e.ctx);
  LLVMTypeRef params[2] = {e.f32, e.f32};
  f = LLVMAddFunction(mod, name, LLVMFunctionType(e.f32, params, (unsigned)cg_devmath_info[fn].arity, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  /* memory(none) (value 0) with the rest: calls may be merged, hoisted or dropped */
  static const char *attrs[] = {"alwaysinline", "nounwind", "willreturn", "nosync", "nofree", "memory"};
  for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
    unsigned kind = LLVMGetEnumAttributeKindForName(attrs[i], strlen(attrs[i]));
    if (!kind) {
      fprintf(stderr, "cg_devmath: no attribute %s in this LLVM\n", attrs[i]);
      abort();
    }
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(e.ctx, kind, 0));
  }
  e.b = LLVMCreateBuilderInContext(e.ctx);
  LLVMPositionBuilderAtEnd(e.b, LLVMAppendBasicBlockInContext(e.ctx, f, "entry"));
  V a[2] = {LLVMGetParam(f, 0), cg_devmath_info[fn].arity > 1 ? LLVMGetParam(f, 1) : NULL};
  LLVMBuildRet(e.b, emit_body(&e, fn, a));
  LLVMDisposeBuilder(e.b);
  return f;
}

LLVMValueRef cg_devmath_call(LLVMModuleRef mod, LLVMBuilderRef b, CgMathFn fn, LLVMValueRef *args) {
  LLVMValueRef f = definition(mod, fn);
  return LLVMBuildCall2(b, LLVMGlobalGetValueType(f), f, args, (unsigned)cg_devmath_info[fn].arity, "");
}
