/* gpu_algorithms_test.c - the two algorithms of the GPU kernels (compiler/cg_nvptx.c) that
 * differ from the CPU executor's, written again in plain C and checked on the host against
 * independent references:
 *   - select's radix top-k: order keys (NaN ranks as -inf, -0 as +0), four 8-bit passes from
 *     the most significant digit that find the threshold key, then the keys above it and the
 *     first `need` keys equal to it in index order (the CPU's lower-index tie rule), against
 *     a stable sort by (score descending, index ascending);
 *   - attend's split-KV: each chunk of tokens reduced with an online softmax in the log2
 *     domain in f32 (m, l, o), the chunks merged in chunk order, against float64 attention
 *     (ref_attend), with empty chunks and every chunk count from 1 to the token count.
 * A failure prints the case; exit 1. Needs no GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

static int failures, checks;

static void check(int ok, const char *what, int n, int want) {
  checks++;
  if (!ok && failures++ < 20)
    printf("FAIL: %s (n %d, want %d)\n", what, n, want);
}

/* ---- radix top-k ---- */

static uint32_t order_key(float score) {
  float x = isnan(score) ? -INFINITY : score;
  x += 0.0f; /* -0 becomes +0 */
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* The GPU's selection of `want` of n keys (0 = not a candidate): taken[i] = 1 for the keys
 * above the threshold and the first `need` equal to it. */
static void radix_take(const uint32_t *key, int n, int want, uint8_t *taken) {
  int cand = 0;
  for (int i = 0; i < n; i++)
    cand += key[i] != 0;
  uint32_t thr = 0, need = 0;
  if (want <= 0) {
    thr = 0xffffffffu; /* none: nothing is above it, and none equal is taken */
  } else if (want < cand) {
    need = (uint32_t)want;
    for (int pass = 0; pass < 4; pass++) {
      int shift = 24 - 8 * pass;
      uint32_t pmask = shift == 24 ? 0 : 0xffffffffu << (shift + 8), hist[256] = {0};
      for (int i = 0; i < n; i++)
        if (key[i] && (key[i] & pmask) == (thr & pmask))
          hist[(key[i] >> shift) & 255]++;
      uint32_t acc = 0;
      int bin = 255;
      while (acc + hist[bin] < need)
        acc += hist[bin--];
      thr |= (uint32_t)bin << shift;
      need -= acc;
    }
  }
  for (int i = 0; i < n; i++) {
    taken[i] = key[i] && key[i] > thr;
    if (key[i] && key[i] == thr && need > 0) {
      taken[i] = 1;
      need--;
    }
  }
}

typedef struct Scored {
  double score;
  int index;
} Scored;

static int by_score_then_index(const void *a, const void *b) {
  const Scored *x = a, *y = b;
  if (x->score != y->score)
    return x->score < y->score ? 1 : -1;
  return x->index - y->index;
}

/* The rule written plainly: the `want` best scores, NaN as -inf, ties to the lower index. */
static void sorted_take(const float *score, const uint8_t *cand, int n, int want, uint8_t *taken) {
  Scored *s = malloc(sizeof *s * (size_t)(n > 0 ? n : 1));
  int m = 0;
  for (int i = 0; i < n; i++) {
    taken[i] = 0;
    if (cand[i])
      s[m++] = (Scored){isnan(score[i]) ? -INFINITY : (double)score[i], i};
  }
  qsort(s, (size_t)m, sizeof *s, by_score_then_index);
  for (int i = 0; i < m && i < want; i++)
    taken[s[i].index] = 1;
  free(s);
}

/* Scores drawn to make ties, signed zeros, infinities and NaN common. */
static float draw_score(ref_rng *g, int kind) {
  switch (ref_rng_below(g, kind ? 12 : 4)) {
  case 0: return (float)ref_rng_gauss(g);
  case 1: return (float)ref_rng_below(g, 5) - 2.0f; /* ties */
  case 2: return ref_rng_below(g, 2) ? 0.0f : -0.0f;
  case 3: return (float)(ref_rng_uniform(g) * 1e-30);
  case 4: return -INFINITY;
  case 5: return INFINITY;
  case 6: return NAN;
  default: return (float)ref_rng_gauss(g) * 1e6f;
  }
}

static void test_radix(void) {
  ref_rng g;
  ref_rng_seed(&g, 7);
  for (int trial = 0; trial < 4000; trial++) {
    int n = 1 + ref_rng_below(&g, trial < 2000 ? 40 : 3000);
    float *score = malloc(sizeof(float) * (size_t)n);
    uint32_t *key = malloc(sizeof(uint32_t) * (size_t)n);
    uint8_t *cand = malloc((size_t)n), *a = malloc((size_t)n), *b = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
      score[i] = draw_score(&g, trial % 3);
      cand[i] = ref_rng_below(&g, 8) != 0; /* the others: kept or past the row (key 0) */
      key[i] = cand[i] ? order_key(score[i]) : 0;
    }
    int want = ref_rng_below(&g, n + 3) - 1; /* -1 .. n + 1: none, some, all */
    radix_take(key, n, want, a);
    sorted_take(score, cand, n, want, b);
    check(!memcmp(a, b, (size_t)n), "radix top-k differs from the sorted reference", n, want);
    free(score);
    free(key);
    free(cand);
    free(a);
    free(b);
  }
  /* order keys: every real score has a key above 0, and the order is the scores' */
  ref_rng_seed(&g, 11);
  for (int i = 0; i < 100000; i++) {
    float x = draw_score(&g, 1), y = draw_score(&g, 1);
    double dx = isnan(x) ? -INFINITY : x, dy = isnan(y) ? -INFINITY : y;
    uint32_t kx = order_key(x), ky = order_key(y);
    check(kx != 0 && (dx < dy) == (kx < ky) && (dx == dy) == (kx == ky), "order keys", i, 0);
  }
}

/* ---- split-KV attention ---- */

typedef struct Partial {
  float m, l; /* log2-domain max and sum of exp2 */
  float *o;   /* [D], unnormalised */
} Partial;

/* One chunk [lo, hi) of one head, as the attend kernel's online softmax does it. */
static void chunk_partial(int D, const float *q, const float *k, const float *v, int lo, int hi, Partial *p) {
  const float scale = (float)(1.4426950408889634 / sqrt((double)D));
  p->m = -INFINITY;
  p->l = 0;
  memset(p->o, 0, sizeof(float) * (size_t)D);
  for (int t = lo; t < hi; t++) {
    float s = 0;
    for (int c = 0; c < D; c++)
      s = fmaf(q[c] * scale, k[(size_t)t * D + c], s);
    float mnew = fmaxf(p->m, s);
    float corr = exp2f(p->m - mnew), w = exp2f(s - mnew);
    p->l = p->l * corr + w;
    for (int c = 0; c < D; c++)
      p->o[c] = fmaf(w, v[(size_t)t * D + c], p->o[c] * corr);
    p->m = mnew;
  }
}

/* The chunks merged in chunk order; lse in the natural log. */
static void merge(int D, const Partial *p, int n, float *out, float *lse) {
  float m = -INFINITY, l = 0;
  for (int i = 0; i < n; i++)
    m = fmaxf(m, p[i].m);
  memset(out, 0, sizeof(float) * (size_t)D);
  for (int i = 0; i < n; i++) {
    if (p[i].m == -INFINITY)
      continue; /* an empty chunk */
    float w = exp2f(p[i].m - m);
    l += p[i].l * w;
    for (int c = 0; c < D; c++)
      out[c] += p[i].o[c] * w;
  }
  for (int c = 0; c < D; c++)
    out[c] /= l;
  *lse = (float)((m + log2((double)l)) * log(2.0));
}

static void test_split_kv(void) {
  ref_rng g;
  ref_rng_seed(&g, 3);
  const int Ds[] = {8, 64, 128};
  for (int trial = 0; trial < 300; trial++) {
    int D = Ds[trial % 3], T = 1 + ref_rng_below(&g, trial < 150 ? 40 : 700);
    double *qd = malloc(sizeof(double) * (size_t)D), *kd = malloc(sizeof(double) * (size_t)T * D),
           *vd = malloc(sizeof(double) * (size_t)T * D), out_ref[128], lse_ref;
    float *q = malloc(sizeof(float) * (size_t)D), *k = malloc(sizeof(float) * (size_t)T * D),
          *v = malloc(sizeof(float) * (size_t)T * D), out[128], lse;
    double amp = trial % 5 == 0 ? 30 : 1; /* large logits: the max shift matters */
    for (int c = 0; c < D; c++)
      qd[c] = q[c] = (float)(ref_rng_gauss(&g) * amp);
    for (int i = 0; i < T * D; i++) {
      kd[i] = k[i] = (float)ref_rng_gauss(&g);
      vd[i] = v[i] = (float)ref_rng_gauss(&g);
    }
    ref_attend(1, D, T, qd, kd, vd, REF_SHARED, NULL, NULL, out_ref, &lse_ref);
    for (int chunks = 1; chunks <= T + 2; chunks += chunks < 8 ? 1 : chunks) {
      Partial *p = malloc(sizeof *p * (size_t)chunks);
      int per = (T + chunks - 1) / chunks; /* as the kernel splits: the last chunks may be empty */
      for (int i = 0; i < chunks; i++) {
        p[i].o = malloc(sizeof(float) * (size_t)D);
        int lo = i * per < T ? i * per : T, hi = lo + per < T ? lo + per : T;
        chunk_partial(D, q, k, v, lo, hi, &p[i]);
      }
      merge(D, p, chunks, out, &lse);
      double err = 0, norm = 0;
      for (int c = 0; c < D; c++) {
        err += (out[c] - out_ref[c]) * (out[c] - out_ref[c]);
        norm += out_ref[c] * out_ref[c];
      }
      check(sqrt(err / (norm > 0 ? norm : 1)) < 1e-5 && fabs(lse - lse_ref) < 1e-4 * (1 + fabs(lse_ref)),
            "split-KV attention differs from float64 attention", T, chunks);
      for (int i = 0; i < chunks; i++)
        free(p[i].o);
      free(p);
    }
    free(qd);
    free(kd);
    free(vd);
    free(q);
    free(k);
    free(v);
  }
}

int main(void) {
  test_radix();
  test_split_kv();
  printf("%d checks, %d failed\n", checks, failures);
  return failures != 0;
}
