/* ref_synth.c - seeded synthetic attention rows that behave like a real LLM's (ALGORITHMS.md
 * section 9) for tests that need no model: a sink direction, keys in a cone opposite it,
 * queries near it, and either one retrieval needle or an aggregation group. Part of tests/ref;
 * deterministic in the seed, and it must not depend on any policy (it only makes data). */
#include "ref_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_syn_defaults(ref_syn_params *p, ref_syn_regime regime, int G, int D, int T,
                      uint64_t seed) {
  double sd = sqrt((double)D);
  *p = (ref_syn_params){.regime = regime,
                        .G = G,
                        .D = D,
                        .T = T,
                        .seed = seed,
                        .alpha = 2.0 * sd,
                        .beta = 2.0 * sd,
                        .sigma = 1.0,
                        .gamma = 1.5 * sd,
                        .tau = 0.75,
                        .value_sink = 0.1,
                        .needle_pos = -1,
                        .needle_head = 0,
                        .needle_gap = 0.0,
                        .agg_frac = 0.1,
                        .agg_gap = 0.0};
}

void ref_syn_free(ref_syn *s) {
  free(s->q);
  free(s->k);
  free(s->v);
  free(s->a);
  free(s->group);
  memset(s, 0, sizeof *s);
}

ref_row ref_syn_row(const ref_syn *s) { return (ref_row){s->G, s->D, s->T, s->q, s->k, s->v}; }

/* Move key k along unit direction e until q . k / sqrt(D) == target. */
static int aim_key(int D, const double *q, const double *e, double target, double *k) {
  double qe = ref_i_dot(D, q, e);
  if (qe == 0.0) return -1;
  double x = (target - ref_i_dot(D, q, k) / sqrt((double)D)) * sqrt((double)D) / qe;
  for (int c = 0; c < D; c++) k[c] += x * e[c];
  return 0;
}

static void normalise(int D, double *x) {
  double n = sqrt(ref_i_dot(D, x, x));
  for (int c = 0; c < D; c++) x[c] /= n;
}

/* The needle answers one head: it moves along that head's query component orthogonal to a,
 * which other heads' (independent) query noise barely sees. */
static int plant_needle(const ref_syn_params *p, ref_rng *g, ref_syn *s) {
  int D = p->D, h = p->needle_head;
  if (h < 0 || h >= p->G || p->needle_pos == 0 || p->needle_pos >= p->T) return -1;
  s->needle_pos = p->needle_pos > 0 ? p->needle_pos : 1 + ref_rng_below(g, p->T - 1);
  s->needle_head = h;
  double *e = malloc((size_t)D * sizeof *e);
  if (!e) return -1;
  const double *q = s->q + (size_t)h * D;
  double qa = ref_i_dot(D, q, s->a);
  for (int c = 0; c < D; c++) e[c] = q[c] - qa * s->a[c];
  normalise(D, e);
  double sink = ref_i_dot(D, q, s->k) / sqrt((double)D);
  int rc = aim_key(D, q, e, sink + p->needle_gap, s->k + (size_t)s->needle_pos * D);
  free(e);
  return rc;
}

/* The group moves along a, which every head's query sees alike: one mid logit for all. */
static int plant_group(const ref_syn_params *p, ref_rng *g, ref_syn *s) {
  int D = p->D, T = p->T, m = (int)lround(p->agg_frac * (T - 1));
  m = m < 1 ? 1 : m > T - 1 ? T - 1 : m;
  int *pos = malloc((size_t)(T - 1) * sizeof *pos);
  double *qbar = malloc((size_t)D * sizeof *qbar);
  int rc = pos && qbar ? 0 : -1;
  if (rc == 0) {
    ref_i_reduce_heads(p->G, D, s->q, 0, qbar);
    double target = ref_i_dot(D, qbar, s->k) / sqrt((double)D) - log((double)m) + p->agg_gap;
    for (int i = 0; i < T - 1; i++) pos[i] = i + 1;
    for (int i = 0; i < m && rc == 0; i++) { /* partial Fisher-Yates: m distinct tokens */
      int j = i + ref_rng_below(g, T - 1 - i), t = pos[j];
      pos[j] = pos[i];
      pos[i] = t;
      s->group[t] = 1;
      rc = aim_key(D, qbar, s->a, target, s->k + (size_t)t * D);
    }
  }
  free(pos);
  free(qbar);
  return rc;
}

int ref_syn_make(const ref_syn_params *p, ref_syn *s) {
  int G = p->G, D = p->D, T = p->T;
  memset(s, 0, sizeof *s);
  if (G < 1 || D < 2 || T < 2) return -1;
  s->G = G;
  s->D = D;
  s->T = T;
  s->needle_pos = s->needle_head = -1;
  s->q = malloc((size_t)G * D * sizeof *s->q);
  s->k = malloc((size_t)T * D * sizeof *s->k);
  s->v = malloc((size_t)T * D * sizeof *s->v);
  s->a = malloc((size_t)D * sizeof *s->a);
  s->group = calloc((size_t)T, 1);
  if (!s->q || !s->k || !s->v || !s->a || !s->group) {
    ref_syn_free(s);
    return -1;
  }
  ref_rng g;
  ref_rng_seed(&g, p->seed);
  for (int c = 0; c < D; c++) s->a[c] = ref_rng_gauss(&g);
  normalise(D, s->a);
  for (int h = 0; h < G; h++)
    for (int c = 0; c < D; c++)
      s->q[(size_t)h * D + c] = p->gamma * s->a[c] + p->tau * ref_rng_gauss(&g);
  for (int i = 0; i < T; i++)
    for (int c = 0; c < D; c++) {
      double *k = s->k + (size_t)i * D, *v = s->v + (size_t)i * D;
      k[c] = i == 0 ? p->alpha * s->a[c] : -p->beta * s->a[c] + p->sigma * ref_rng_gauss(&g);
      v[c] = (i == 0 ? p->value_sink : 1.0) * ref_rng_gauss(&g);
    }
  int rc = p->regime == REF_SYN_RETRIEVAL ? plant_needle(p, &g, s) : plant_group(p, &g, s);
  if (rc) ref_syn_free(s);
  return rc;
}
