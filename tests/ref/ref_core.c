/* ref_core.c - the pieces every reference policy in tests/ref stands on: the seeded RNG,
 * selections, restricted softmax attention with corrections, the LSE merge, and the shared
 * top-k / keep-the-ends selection rules (ALGORITHMS.md section 0). Plain float64; it must not
 * take shortcuts a kernel would (no fused online softmax), so it stays obviously right. */
#include "ref_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- RNG ---- */

void ref_rng_seed(ref_rng *g, uint64_t seed) {
  g->state = seed;
  g->has_spare = 0;
  g->spare = 0.0;
}

uint64_t ref_rng_u64(ref_rng *g) {
  uint64_t z = (g->state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* The +0.5 keeps u strictly inside (0, 1) so Box-Muller's log never sees 0. */
double ref_rng_uniform(ref_rng *g) { return ((double)(ref_rng_u64(g) >> 11) + 0.5) * 0x1p-53; }

double ref_rng_gauss(ref_rng *g) {
  if (g->has_spare) {
    g->has_spare = 0;
    return g->spare;
  }
  double u1 = ref_rng_uniform(g), u2 = ref_rng_uniform(g);
  double r = sqrt(-2.0 * log(u1)), t = 2.0 * REF_PI * u2;
  g->spare = r * sin(t);
  g->has_spare = 1;
  return r * cos(t);
}

int ref_rng_below(ref_rng *g, int n) {
  int i = (int)(ref_rng_uniform(g) * n);
  return i < n ? i : n - 1;
}

/* ---- rows and selections ---- */

int ref_npages(int T, int P) { return (T + P - 1) / P; }

int ref_sel_alloc(ref_sel *s, ref_scope scope, int G, int T) {
  if (G < 1 || T < 1) return -1;
  size_t n = (size_t)(scope == REF_PER_HEAD ? G : 1) * (size_t)T;
  uint8_t *m = calloc(n, 1);
  if (!m) return -1;
  free(s->mask);
  s->scope = scope;
  s->G = G;
  s->T = T;
  s->mask = m;
  return 0;
}

void ref_sel_free(ref_sel *s) {
  free(s->mask);
  s->mask = NULL;
}

const uint8_t *ref_sel_head(const ref_sel *s, int g) {
  return s->mask + (s->scope == REF_PER_HEAD ? (size_t)g * (size_t)s->T : 0);
}

int ref_sel_count(const ref_sel *s, int g) {
  const uint8_t *m = ref_sel_head(s, g);
  int n = 0;
  for (int i = 0; i < s->T; i++) n += m[i] != 0;
  return n;
}

/* ---- attention ---- */

double ref_i_dot(int n, const double *a, const double *b) {
  double s = 0.0;
  for (int c = 0; c < n; c++) s += a[c] * b[c];
  return s;
}

void ref_logits(const ref_row *r, double *s) {
  double scale = 1.0 / sqrt((double)r->D);
  for (int g = 0; g < r->G; g++)
    for (int i = 0; i < r->T; i++)
      s[(size_t)g * r->T + i] =
          ref_i_dot(r->D, r->q + (size_t)g * r->D, r->k + (size_t)i * r->D) * scale;
}

int ref_attn_probs(int G, int D, int T, const double *q, const double *k, ref_scope scope,
                   const uint8_t *sel, const double *corr, double *w, double *lse) {
  if (G < 1 || D < 1 || T < 1) return -1;
  double scale = 1.0 / sqrt((double)D);
  for (int g = 0; g < G; g++) {
    const uint8_t *m = sel ? sel + (scope == REF_PER_HEAD ? (size_t)g * T : 0) : NULL;
    const double *cg = corr ? corr + (size_t)g * T : NULL;
    double *wg = w + (size_t)g * T;
    double mx = -INFINITY;
    for (int i = 0; i < T; i++) {
      if (m && !m[i]) {
        wg[i] = 0.0;
        continue;
      }
      wg[i] = ref_i_dot(D, q + (size_t)g * D, k + (size_t)i * D) * scale - (cg ? cg[i] : 0.0);
      if (wg[i] > mx) mx = wg[i];
    }
    if (mx == -INFINITY) { /* empty selection: no mass anywhere */
      memset(wg, 0, (size_t)T * sizeof *wg);
      if (lse) lse[g] = -INFINITY;
      continue;
    }
    /* Subtracting the max keeps exp in range; the LSE adds it back. */
    double z = 0.0;
    for (int i = 0; i < T; i++)
      if (!m || m[i]) z += (wg[i] = exp(wg[i] - mx));
    for (int i = 0; i < T; i++) wg[i] /= z;
    if (lse) lse[g] = mx + log(z);
  }
  return 0;
}

void ref_i_mix(int G, int D, int T, const double *w, const double *v, double *out) {
  for (int g = 0; g < G; g++) {
    double *o = out + (size_t)g * D;
    memset(o, 0, (size_t)D * sizeof *o);
    for (int i = 0; i < T; i++) {
      double wi = w[(size_t)g * T + i];
      if (wi == 0.0) continue;
      for (int c = 0; c < D; c++) o[c] += wi * v[(size_t)i * D + c];
    }
  }
}

int ref_attend(int G, int D, int T, const double *q, const double *k, const double *v,
               ref_scope scope, const uint8_t *sel, const double *corr, double *out, double *lse) {
  if (G < 1 || T < 1) return -1;
  double *w = malloc((size_t)G * T * sizeof *w);
  if (!w) return -1;
  int rc = ref_attn_probs(G, D, T, q, k, scope, sel, corr, w, lse);
  if (rc == 0) ref_i_mix(G, D, T, w, v, out);
  free(w);
  return rc;
}

int ref_attend_sel(const ref_row *r, const ref_sel *s, const double *corr, double *out,
                   double *lse) {
  if (s->G != r->G || s->T != r->T) return -1;
  return ref_attend(r->G, r->D, r->T, r->q, r->k, r->v, s->scope, s->mask, corr, out, lse);
}

void ref_lse_merge(int D, const double *oA, double lA, const double *oB, double lB, double *o,
                   double *l) {
  double m = fmax(lA, lB);
  if (m == -INFINITY) {
    for (int c = 0; c < D; c++) o[c] = 0.0;
    *l = -INFINITY;
    return;
  }
  /* Scale both by e^-m: the larger part gets weight 1, so neither exp overflows. */
  double a = exp(lA - m), b = exp(lB - m), z = a + b;
  for (int c = 0; c < D; c++) o[c] = (a * oA[c] + b * oB[c]) / z;
  *l = m + log(z);
}

/* ---- selection rules ---- */

typedef struct {
  double s;
  int i;
} scored;

static int by_score_then_index(const void *pa, const void *pb) {
  const scored *a = pa, *b = pb;
  if (a->s != b->s) return a->s > b->s ? -1 : 1;
  return (a->i > b->i) - (a->i < b->i);
}

int ref_i_top(int n, const double *score, const uint8_t *eligible, int k, uint8_t *chosen) {
  if (k <= 0) return 0;
  scored *c = malloc((size_t)n * sizeof *c);
  if (!c) return -1;
  int m = 0;
  for (int i = 0; i < n; i++)
    if (eligible[i]) c[m++] = (scored){score[i], i};
  qsort(c, (size_t)m, sizeof *c, by_score_then_index);
  for (int j = 0; j < m && j < k; j++) chosen[c[j].i] = 1;
  free(c);
  return 0;
}

void ref_i_reduce_heads(int G, int n, const double *x, int use_max, double *out) {
  for (int j = 0; j < n; j++) {
    double a = x[j];
    for (int g = 1; g < G; g++) {
      double y = x[(size_t)g * n + j];
      a = use_max ? fmax(a, y) : a + y;
    }
    out[j] = use_max ? a : a / G;
  }
}

int ref_i_select(int G, int T, int P, ref_scope scope, const double *score, int budget,
                 int keep_first, int keep_last, ref_sel *out) {
  if (P < 1 || ref_sel_alloc(out, scope, G, T)) return -1;
  int H = scope == REF_PER_HEAD ? G : 1;
  if (budget >= T) {
    memset(out->mask, 1, (size_t)H * T);
    return 0;
  }
  int np = ref_npages(T, P);
  uint8_t *pick = malloc((size_t)np), *elig = malloc((size_t)np);
  int rc = pick && elig ? 0 : -1;
  for (int h = 0; h < H && rc == 0; h++) {
    int kept = 0;
    for (int j = 0; j < np; j++) {
      pick[j] = (uint8_t)ref_i_at_ends(j, np, keep_first, keep_last);
      elig[j] = !pick[j];
      kept += pick[j];
    }
    rc = ref_i_top(np, score + (size_t)h * np, elig, budget / P - kept, pick);
    uint8_t *m = out->mask + (size_t)h * T;
    for (int i = 0; i < T; i++) m[i] = pick[i / P];
  }
  free(pick);
  free(elig);
  return rc;
}
