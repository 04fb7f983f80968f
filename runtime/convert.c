/* convert.c - f32 <-> KV storage dtypes (f16, bf16, fp8 e4m3) for libvxrt.
 *
 * The cache stores K and V in a narrow dtype; appends convert from f32 here and reads for
 * tests convert back. Integer bit manipulation only (no _Float16, no FPU rounding modes), so
 * the result is the same on every host: round to nearest, ties to even; f16 and bf16
 * overflow to inf; e4m3 (OCP "E4M3FN": no inf, max 448) saturates to +-448 like CUDA's
 * __NV_SATFINITE. NaN stays NaN (quiet). Must not allocate or fail.
 */
#include "vxrt_internal.h"

#include <string.h>

static uint32_t bits_of(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  return x;
}

static float float_of(uint32_t x) {
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

/* Round-to-nearest-even of m / 2^shift (shift >= 1). */
static uint32_t shift_rne(uint32_t m, unsigned shift) {
  uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t vxrt_f32_to_f16(float f) {
  uint32_t x = bits_of(f), ax = x & 0x7fffffffu;
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  if (ax > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((ax >> 13) & 0x3ffu); /* NaN */
  if (ax >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 (max + half ulp, ties to inf) */
  if (ax >= 0x38800000u) {                     /* normal f16: >= 2^-14 */
    uint32_t h = ((ax >> 23) - 112) << 10 | (ax & 0x7fffffu) >> 13;
    uint32_t rem = ax & 0x1fffu;
    h += rem > 0x1000u || (rem == 0x1000u && (h & 1)); /* a carry bumps the exponent: right */
    return sign | (uint16_t)h;
  }
  if (ax <= 0x33000000u) return sign;          /* <= 2^-25: half the smallest subnormal */
  /* Subnormal f16: count of 2^-24 units = mant * 2^(E - 126), E = biased f32 exponent. */
  uint32_t e = ax >> 23, mant = (ax & 0x7fffffu) | 0x800000u;
  return sign | (uint16_t)shift_rne(mant, 126 - e);
}

float vxrt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    float v = (float)m * 0x1p-24f; /* exact: subnormals and zero */
    return sign ? -v : v;
  }
  if (e == 31) return float_of(sign | 0x7f800000u | m << 13);
  return float_of(sign | (e + 112) << 23 | m << 13);
}

uint16_t vxrt_f32_to_bf16(float f) {
  uint32_t x = bits_of(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
  x += 0x7fffu + ((x >> 16) & 1); /* ties to even; a carry into the exponent is right */
  return (uint16_t)(x >> 16);
}

float vxrt_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

uint8_t vxrt_f32_to_e4m3(float f) {
  uint32_t x = bits_of(f), ax = x & 0x7fffffffu;
  uint8_t sign = (uint8_t)((x >> 24) & 0x80u);
  if (ax > 0x7f800000u) return sign | 0x7fu; /* NaN */
  if (ax >= 0x43e00000u) return sign | 0x7eu; /* >= 448, inf included: saturate */
  if (ax >= 0x3c800000u) {                   /* normal e4m3: >= 2^-6 */
    uint32_t c = ((ax >> 23) - 120) << 3 | (ax & 0x7fffffu) >> 20;
    uint32_t rem = ax & 0xfffffu;
    c += rem > 0x80000u || (rem == 0x80000u && (c & 1));
    return sign | (uint8_t)(c > 0x7eu ? 0x7eu : c); /* 464..480 would round to NaN's code */
  }
  if (ax <= 0x3a800000u) return sign; /* <= 2^-10: half the smallest subnormal */
  /* Subnormal e4m3: count of 2^-9 units = mant * 2^(E - 141). 8 units = min normal code. */
  uint32_t e = ax >> 23, mant = (ax & 0x7fffffu) | 0x800000u;
  return sign | (uint8_t)shift_rne(mant, 141 - e);
}

float vxrt_e4m3_to_f32(uint8_t c) {
  uint32_t sign = (uint32_t)(c & 0x80u) << 24, e = (c >> 3) & 0xfu, m = c & 7u;
  if (e == 15 && m == 7) return float_of(sign | 0x7fc00000u);
  if (e == 0) {
    float v = (float)m * 0x1p-9f;
    return sign ? -v : v;
  }
  return float_of(sign | (e + 120) << 23 | m << 20);
}

size_t vxrt_dtype_size(vxrt_dtype t) {
  switch (t) {
  case VXRT_F32: return 4;
  case VXRT_F16: case VXRT_BF16: return 2;
  case VXRT_FP8E4M3: return 1;
  }
  return 0;
}

const char *vxrt_dtype_name(vxrt_dtype t) {
  switch (t) {
  case VXRT_F32: return "f32";
  case VXRT_F16: return "f16";
  case VXRT_BF16: return "bf16";
  case VXRT_FP8E4M3: return "fp8";
  }
  return "?";
}

vxrt_status vxrt_convert_from_f32(vxrt_dtype t, const float *src, void *dst, size_t n) {
  if (!vxrt_dtype_size(t)) return vxrt_fail(VXRT_ERR_INVALID_ARG, "invalid dtype %d", (int)t);
  if (n && (!src || !dst)) return vxrt_fail(VXRT_ERR_INVALID_ARG, "NULL buffer");
  uint16_t *h = dst;
  uint8_t *b = dst;
  switch (t) {
  case VXRT_F32:
    if (n) memmove(dst, src, n * 4);
    break;
  case VXRT_F16:
    for (size_t i = 0; i < n; i++) h[i] = vxrt_f32_to_f16(src[i]);
    break;
  case VXRT_BF16:
    for (size_t i = 0; i < n; i++) h[i] = vxrt_f32_to_bf16(src[i]);
    break;
  case VXRT_FP8E4M3:
    for (size_t i = 0; i < n; i++) b[i] = vxrt_f32_to_e4m3(src[i]);
    break;
  }
  return VXRT_OK;
}

vxrt_status vxrt_convert_to_f32(vxrt_dtype t, const void *src, float *dst, size_t n) {
  if (!vxrt_dtype_size(t)) return vxrt_fail(VXRT_ERR_INVALID_ARG, "invalid dtype %d", (int)t);
  if (n && (!src || !dst)) return vxrt_fail(VXRT_ERR_INVALID_ARG, "NULL buffer");
  const uint16_t *h = src;
  const uint8_t *b = src;
  switch (t) {
  case VXRT_F32:
    if (n) memmove(dst, src, n * 4);
    break;
  case VXRT_F16:
    for (size_t i = 0; i < n; i++) dst[i] = vxrt_f16_to_f32(h[i]);
    break;
  case VXRT_BF16:
    for (size_t i = 0; i < n; i++) dst[i] = vxrt_bf16_to_f32(h[i]);
    break;
  case VXRT_FP8E4M3:
    for (size_t i = 0; i < n; i++) dst[i] = vxrt_e4m3_to_f32(b[i]);
    break;
  }
  return VXRT_OK;
}
