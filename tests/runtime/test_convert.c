/* test_convert.c - the KV dtype conversions of libvxrt against independent references.
 *
 * For f16, bf16 and fp8 e4m3: every code decodes to the value its fields give (rt_ref.h),
 * every finite code survives encode(decode(code)), every midpoint between neighbouring codes
 * rounds to the even one (and a hair either side rounds to the nearer one), random floats of
 * every magnitude encode like the reference, and values round-trip within the format's
 * precision. f16 is also cross-checked with the compiler's _Float16 where it exists.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "rt_check.h"
#include "rt_ref.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static uint32_t enc1(vxrt_dtype t, float x) {
  uint16_t h = 0;
  uint8_t b = 0;
  if (t == VXRT_FP8E4M3) {
    vxrt_convert_from_f32(t, &x, &b, 1);
    return b;
  }
  vxrt_convert_from_f32(t, &x, &h, 1);
  return h;
}

static float dec1(vxrt_dtype t, uint32_t c) {
  float f = 0;
  uint16_t h = (uint16_t)c;
  uint8_t b = (uint8_t)c;
  vxrt_convert_to_f32(t, t == VXRT_FP8E4M3 ? (const void *)&b : (const void *)&h, &f, 1);
  return f;
}

static void test_format(vxrt_dtype t) {
  rt_fmt f = rt_fmt_of(t);
  uint32_t ncodes = 1u << (1 + f.ebits + f.mbits), top = rt_max_code(f);
  const char *name = vxrt_dtype_name(t);
  int bad_dec = 0, bad_rt = 0, bad_mid = 0, bad_rand = 0, bad_prec = 0;

  /* Every code: decode, and re-encode the finite ones. */
  for (uint32_t c = 0; c < ncodes; c++) {
    double want = rt_decode(f, c);
    float got = dec1(t, c);
    if (isnan(want) ? !isnan(got) : (double)got != want || !signbit(got) != !signbit(want)) {
      if (bad_dec++ < 5) fprintf(stderr, "%s: code 0x%x decodes to %g, want %g\n", name, c, got, want);
    }
    if (!isnan(want) && enc1(t, got) != c) {
      if (bad_rt++ < 5) fprintf(stderr, "%s: code 0x%x re-encodes to 0x%x\n", name, c, enc1(t, got));
    }
  }
  RT_CHECK(bad_dec == 0, "%s: %d codes decode wrongly", name, bad_dec);
  RT_CHECK(bad_rt == 0, "%s: %d codes do not survive a round trip", name, bad_rt);

  /* Midpoints between neighbouring positive codes (exact in f32 for all three formats), and
   * the f32 neighbours of each midpoint; both signs. */
  for (uint32_t c = 0; c < top; c++) {
    double mid = (rt_decode(f, c) + rt_decode(f, c + 1)) / 2;
    float m = (float)mid;
    if ((double)m != mid) continue;
    float probes[3] = {m, nextafterf(m, 0), nextafterf(m, INFINITY)};
    for (int i = 0; i < 3; i++)
      for (int s = 0; s < 2; s++) {
        float x = s ? -probes[i] : probes[i];
        uint32_t got = enc1(t, x), want = rt_encode(f, x);
        if (got != want && bad_mid++ < 5)
          fprintf(stderr, "%s: %.9g encodes to 0x%x, want 0x%x\n", name, x, got, want);
      }
  }
  RT_CHECK(bad_mid == 0, "%s: %d midpoint probes round wrongly", name, bad_mid);

  /* Random floats over every exponent (f32 bit patterns), NaN/inf included. */
  int nrand = 200000;
  for (int i = 0; i < nrand; i++) {
    uint32_t bits = (uint32_t)next_u64();
    float x;
    memcpy(&x, &bits, 4);
    uint32_t got = enc1(t, x);
    if (isnan(x)) {
      if (!isnan(dec1(t, got)) && bad_rand++ < 5) fprintf(stderr, "%s: NaN lost\n", name);
      continue;
    }
    uint32_t want = rt_encode(f, x);
    if (got != want && bad_rand++ < 5)
      fprintf(stderr, "%s: %.9g (0x%08x) encodes to 0x%x, want 0x%x\n", name, x, bits, got, want);
  }
  RT_CHECK(bad_rand == 0, "%s: %d random floats encode wrongly", name, bad_rand);

  /* Precision: in the normal range, |decode(encode(x)) - x| <= half an ulp = 2^-(mbits+1)|x|. */
  double minnorm = ldexp(1.0, 1 - f.bias), maxv = rt_decode(f, top);
  for (int i = 0; i < 100000; i++) {
    double u = (double)(next_u64() >> 11) / 9007199254740992.0;
    double x = minnorm * pow(maxv / minnorm, u) * (next_u64() & 1 ? -1 : 1);
    float xf = (float)x;
    float back = dec1(t, enc1(t, xf));
    if (fabs((double)back - xf) > ldexp(fabs(xf), -(f.mbits + 1)) && bad_prec++ < 5)
      fprintf(stderr, "%s: %.9g round-trips to %.9g\n", name, xf, back);
  }
  RT_CHECK(bad_prec == 0, "%s: %d values round-trip beyond half an ulp", name, bad_prec);

  /* Specials. */
  RT_CHECK(t == VXRT_FP8E4M3 || isinf(dec1(t, enc1(t, INFINITY))), "%s: inf", name);
  if (t == VXRT_FP8E4M3) {
    RT_CHECK(dec1(t, enc1(t, INFINITY)) == 448.0f, "e4m3: inf saturates to 448");
    RT_CHECK(dec1(t, enc1(t, -1e30f)) == -448.0f, "e4m3: -1e30 saturates to -448");
    RT_CHECK(dec1(t, enc1(t, 470.0f)) == 448.0f, "e4m3: 470 saturates to 448");
  } else {
    RT_CHECK(isinf(dec1(t, enc1(t, -INFINITY))) && dec1(t, enc1(t, -INFINITY)) < 0, "%s: -inf",
             name);
  }
  RT_CHECK(signbit(dec1(t, enc1(t, -0.0f))), "%s: -0 keeps its sign", name);
}

static void test_bulk_and_errors(void) {
  float src[64], back[64];
  uint16_t h[64];
  for (int i = 0; i < 64; i++) src[i] = (float)(i - 32) * 0.37f;
  RT_EXPECT(vxrt_convert_from_f32(VXRT_BF16, src, h, 64), VXRT_OK, NULL);
  RT_EXPECT(vxrt_convert_to_f32(VXRT_BF16, h, back, 64), VXRT_OK, NULL);
  int bad = 0;
  for (int i = 0; i < 64; i++) bad += fabsf(back[i] - src[i]) > fabsf(src[i]) / 256;
  RT_CHECK(bad == 0, "bulk bf16 round trip: %d bad", bad);
  float f32[3] = {1.5f, -2.25f, 3e-40f}, f32b[3];
  RT_EXPECT(vxrt_convert_from_f32(VXRT_F32, f32, f32b, 3), VXRT_OK, NULL);
  RT_CHECK(memcmp(f32, f32b, sizeof f32) == 0, "f32 conversion is a copy");
  RT_EXPECT(vxrt_convert_from_f32((vxrt_dtype)9, src, h, 1), VXRT_ERR_INVALID_ARG, "dtype");
  RT_EXPECT(vxrt_convert_to_f32(VXRT_F16, NULL, back, 1), VXRT_ERR_INVALID_ARG, "NULL");
  RT_EXPECT(vxrt_convert_to_f32(VXRT_F16, NULL, NULL, 0), VXRT_OK, NULL);
  RT_CHECK(vxrt_dtype_size(VXRT_F32) == 4 && vxrt_dtype_size(VXRT_F16) == 2 &&
               vxrt_dtype_size(VXRT_BF16) == 2 && vxrt_dtype_size(VXRT_FP8E4M3) == 1 &&
               vxrt_dtype_size((vxrt_dtype)-1) == 0,
           "dtype sizes");
  RT_CHECK(strcmp(vxrt_dtype_name(VXRT_FP8E4M3), "fp8") == 0, "dtype name");
}

#ifdef __FLT16_MAX__
/* A third opinion for f16: the compiler's own float -> _Float16 conversion. */
static void test_f16_vs_compiler(void) {
  int bad = 0;
  for (int i = 0; i < 200000; i++) {
    uint32_t bits = (uint32_t)next_u64();
    float x;
    memcpy(&x, &bits, 4);
    if (isnan(x)) continue;
    _Float16 y = (_Float16)x;
    uint16_t want;
    memcpy(&want, &y, 2);
    if (enc1(VXRT_F16, x) != want && bad++ < 5)
      fprintf(stderr, "f16: %.9g: ours 0x%x, _Float16 0x%x\n", x, enc1(VXRT_F16, x), want);
  }
  RT_CHECK(bad == 0, "f16 vs _Float16: %d differ", bad);
}
#endif

int main(void) {
  test_format(VXRT_F16);
  test_format(VXRT_BF16);
  test_format(VXRT_FP8E4M3);
  test_bulk_and_errors();
#ifdef __FLT16_MAX__
  test_f16_vs_compiler();
#endif
  return rt_finish();
}
