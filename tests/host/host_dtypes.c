/* host_dtypes.c - narrow storage dtypes of compiled fields: the f16, bf16 and int8 values the
 * generated host code stores equal C's own conversions of the float64 page summaries
 * (_Float16 for f16; bit rounding to nearest even for bf16; round-and-saturate for int8;
 * libvxrt's own E4M3 conversion, tested against its reference in tests/runtime, for fp8),
 * over keys spanning normal, subnormal, overflowing and tie-breaking f16 values.
 * Usage: host_dtypes POLICY_DIR */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host_policy.h"
#include "ref.h"
#include "vxrt.h"

static float bf16_round(float x) {
  uint32_t b;
  memcpy(&b, &x, 4);
  b += 0x7fff + ((b >> 16) & 1);
  b &= 0xffff0000u;
  float y;
  memcpy(&y, &b, 4);
  return y;
}

static float fp8_round(float x) {
  uint8_t b;
  float y;
  vxrt_convert_from_f32(VXRT_FP8E4M3, &x, &b, 1);
  vxrt_convert_to_f32(VXRT_FP8E4M3, &b, &y, 1);
  return y;
}

static float int8_round(float x) {
  float r = roundf(x);
  return r < -128 ? -128 : r > 127 ? 127 : r;
}

int main(int argc, char **argv) {
  char path[1024];
  snprintf(path, sizeof path, "%s/envelopes_f16.vx", argc > 1 ? argv[1] : ".");
  host_policy hp;
  if (host_policy_compile(path, &hp))
    return 1;
  enum { D = 16, G = 2, P = 4, T = 4 * 40 };
  static float k[T * D], v[T * D];
  ref_rng g;
  ref_rng_seed(&g, 5);
  /* magnitudes from 2^-30 (f16 subnormal and below) to 2^17 (f16 overflow), and exact f16
   * ties (odd multiples of half an f16 ulp) */
  for (int i = 0; i < T * D; i++) {
    double m = ldexp(1.0 + ref_rng_uniform(&g), (int)(ref_rng_uniform(&g) * 48) - 30);
    if (i % 7 == 0)
      m = ldexp(1.0 + (2 * (i % 512) + 1) / 2048.0, (i % 20) - 10);
    k[i] = (float)(ref_rng_uniform(&g) < 0.5 ? -m : m);
    v[i] = 0;
  }
  int32_t ids[T / P];
  for (int p = 0; p < T / P; p++)
    ids[p] = p;
  exec_shape sh = {1, 1, D, G, P, T / P, 1, T / P};
  char err[256];
  exec_state *st = exec_create(&hp.pol, &sh, err, sizeof err);
  exec_kv kv = {k, v, VXK_F32, ids, T, T};
  if (!st || !exec_prefill(st, 0, 0, &kv, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  int fields[4] = {-1, -1, -1, -1};
  const char *names[4] = {"kmax", "kmin", "kmean", "kfirst"};
  for (int i = 0; i < hp.pol.ntensors; i++)
    for (int f = 0; f < 4; f++)
      if (!strcmp(hp.pol.tensors[i].name, names[f]))
        fields[f] = i;
  int bad[4] = {0, 0, 0, 0}, n = 0;
  for (int p = 0; p < T / P; p++)
    for (int c = 0; c < D; c++, n++) {
      double mx = -INFINITY, mn = INFINITY, sum = 0;
      for (int t = 0; t < P; t++) {
        double x = k[(p * P + t) * D + c];
        mx = fmax(mx, x), mn = fmin(mn, x), sum += x;
      }
      float want[4] = {(float)(_Float16)(float)mx, bf16_round((float)mn), int8_round((float)(sum / P * 16)),
                       fp8_round(k[(p * P) * D + c])};
      for (int f = 0; f < 4; f++) {
        int idx[2] = {p, c};
        float got;
        if (!exec_read_tensor(st, 0, 0, 0, &kv, fields[f], idx, &got) ||
            !(got == want[f] || (isnan(got) && isnan(want[f])))) {
          if (!bad[f])
            printf("  %s[%d, %d]: stored %.9g, C gives %.9g\n", names[f], p, c, got, want[f]);
          bad[f]++;
        }
      }
    }
  /* gaussian(3) made by the executor in f16: the reference's draws, rounded by the compiler */
  double draws[D * 4];
  ref_gaussian_fill(3, D * 4, draws);
  int wid = -1, wbad = 0;
  for (int i = 0; i < hp.pol.ntensors; i++)
    if (!strcmp(hp.pol.tensors[i].name, "W"))
      wid = i;
  for (int i = 0; i < D * 4; i++) {
    int idx[2] = {i / 4, i % 4};
    float got;
    if (!exec_read_tensor(st, 0, 0, 0, &kv, wid, idx, &got) || got != (float)(_Float16)(float)draws[i])
      wbad++;
  }
  printf("%s W: %d of %d f16 gaussian() values equal the reference draws in _Float16\n", wbad ? "FAIL" : "ok  ",
         D * 4 - wbad, D * 4);
  int failed = wbad != 0;
  for (int f = 0; f < 4; f++) {
    printf("%s %s: %d of %d stored values equal C's conversion\n", bad[f] ? "FAIL" : "ok  ", names[f], n - bad[f], n);
    failed += bad[f] != 0;
  }
  exec_destroy(st);
  host_policy_free(&hp);
  printf("%d passed, %d failed\n", 5 - failed, failed);
  return failed != 0;
}
