/* ref_magicpig.c - reference MagicPIG (ALGORITHMS.md section 6) for tests/ref: seeded
 * Gaussian hyperplanes, SimHash codes, the ">= 2 of L tables" sampling rule, the collision
 * probability u(theta) and the importance correction log(u + eps). Only the selection and the
 * corrections are made here; attention is ref_attend's job, so the estimator is tested through
 * the same softmax every other policy uses. */
#include "ref_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_magicpig_defaults(ref_magicpig_params *p) {
  p->K = 10;
  p->L = 150;
  p->seed = 1;
  p->W = NULL;
  p->sink = 4;
  p->window = 64;
  p->centre = 1;
  p->eps = 1e-4;
}

void ref_gaussian_fill(uint64_t seed, size_t n, double *out) {
  ref_rng g;
  ref_rng_seed(&g, seed);
  for (size_t i = 0; i < n; i++) out[i] = ref_rng_gauss(&g);
}

/* Same value as 1 - (1-p^K)^L - L p^K (1-p^K)^(L-1), rewritten as
 * 1 - (1-p^K)^(L-1) (1 + (L-1) p^K) and evaluated through log1p/expm1: the textbook form
 * cancels to garbage (even negative) when p^K is tiny, and log(u + eps) must see the truth. */
double ref_simhash_u(double theta, int K, int L) {
  if (L < 2) return 0.0;
  double p = 1.0 - theta / REF_PI, pk = pow(p, K);
  if (pk >= 1.0) return 1.0;
  return -expm1((L - 1) * log1p(-pk) + log1p((L - 1) * pk));
}

void ref_simhash_codes(int D, int K, int L, const double *W, const double *x, uint32_t *code) {
  int cols = K * L;
  for (int l = 0; l < L; l++) {
    uint32_t c = 0;
    for (int b = 0; b < K; b++) {
      double d = 0.0;
      for (int j = 0; j < D; j++) d += x[j] * W[(size_t)j * cols + l * K + b];
      if (d > 0.0) c |= 1u << b;
    }
    code[l] = c;
  }
}

/* A zero vector has no direction; call it orthogonal so u stays finite. */
static double angle(int D, const double *a, double na, const double *b, double nb) {
  if (na == 0.0 || nb == 0.0) return REF_PI / 2;
  double c = ref_i_dot(D, a, b) / (na * nb);
  return acos(c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c);
}

int ref_magicpig(const ref_row *r, const ref_magicpig_params *p, ref_sel *out, double *corr,
                 double *mu_out) {
  int G = r->G, D = r->D, T = r->T, K = p->K, L = p->L;
  if (K < 0 || K > 32 || L < 1 || ref_sel_alloc(out, REF_PER_HEAD, G, T)) return -1;
  size_t wn = (size_t)D * K * L;
  double *Wown = p->W ? NULL : malloc(wn ? wn * sizeof *Wown : 1);
  double *mu = calloc((size_t)D, sizeof *mu), *kc = malloc((size_t)D * sizeof *kc);
  double *qn = malloc((size_t)G * sizeof *qn);
  uint32_t *cq = malloc((size_t)G * L * sizeof *cq), *ck = malloc((size_t)L * sizeof *ck);
  int rc = (p->W || Wown) && mu && kc && qn && cq && ck ? 0 : -1;
  if (rc == 0) {
    const double *W = p->W ? p->W : Wown;
    if (Wown) ref_gaussian_fill(p->seed, wn, Wown);

    int others = 0;
    for (int i = 0; i < T && p->centre; i++) {
      if (ref_i_at_ends(i, T, p->sink, p->window)) continue;
      for (int c = 0; c < D; c++) mu[c] += r->k[(size_t)i * D + c];
      others++;
    }
    for (int c = 0; c < D && others; c++) mu[c] /= others;

    for (int g = 0; g < G; g++) {
      const double *q = r->q + (size_t)g * D;
      qn[g] = sqrt(ref_i_dot(D, q, q));
      ref_simhash_codes(D, K, L, W, q, cq + (size_t)g * L);
    }
    memset(corr, 0, (size_t)G * T * sizeof *corr);
    for (int i = 0; i < T; i++) {
      if (ref_i_at_ends(i, T, p->sink, p->window)) {
        for (int g = 0; g < G; g++) out->mask[(size_t)g * T + i] = 1;
        continue;
      }
      for (int c = 0; c < D; c++) kc[c] = r->k[(size_t)i * D + c] - mu[c];
      double kn = sqrt(ref_i_dot(D, kc, kc));
      ref_simhash_codes(D, K, L, W, kc, ck);
      for (int g = 0; g < G; g++) {
        int hits = 0;
        for (int l = 0; l < L; l++) hits += cq[(size_t)g * L + l] == ck[l];
        if (hits < 2) continue;
        double u = ref_simhash_u(angle(D, r->q + (size_t)g * D, qn[g], kc, kn), K, L);
        out->mask[(size_t)g * T + i] = 1;
        corr[(size_t)g * T + i] = log(u + p->eps);
      }
    }
    if (mu_out) memcpy(mu_out, mu, (size_t)D * sizeof *mu);
  }
  free(Wown);
  free(mu);
  free(kc);
  free(qn);
  free(cq);
  free(ck);
  return rc;
}
