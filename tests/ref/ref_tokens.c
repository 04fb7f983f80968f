/* ref_tokens.c - token-granular reference policies of tests/ref: dense, streaming, topk,
 * double_sparsity and h2o (ALGORITHMS.md sections 1-3, 7). All selections go through the
 * shared keep-the-ends-then-top rule of ref_core.c; h2o's state belongs to one request and must
 * never be reachable from another. */
#include "ref_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ref_select_dense(const ref_row *r, ref_sel *out) {
  if (ref_sel_alloc(out, REF_SHARED, r->G, r->T)) return -1;
  memset(out->mask, 1, (size_t)r->T);
  return 0;
}

int ref_select_streaming(const ref_row *r, int sink, int window, ref_sel *out) {
  if (ref_sel_alloc(out, REF_SHARED, r->G, r->T)) return -1;
  for (int i = 0; i < r->T; i++) out->mask[i] = (uint8_t)ref_i_at_ends(i, r->T, sink, window);
  return 0;
}

/* s: per-head scores [G][T], consumed (a shared selection ranks their group mean). */
static int select_token_scores(const ref_row *r, ref_scope scope, int budget, int sink, int window,
                               double *s, ref_sel *out) {
  if (scope == REF_SHARED) ref_i_reduce_heads(r->G, r->T, s, 0, s);
  return ref_i_select(r->G, r->T, 1, scope, s, budget, sink, window, out);
}

int ref_select_topk(const ref_row *r, ref_scope scope, int budget, int sink, int window,
                    ref_sel *out) {
  double *s = malloc((size_t)r->G * r->T * sizeof *s);
  if (!s) return -1;
  ref_logits(r, s);
  int rc = select_token_scores(r, scope, budget, sink, window, s, out);
  free(s);
  return rc;
}

/* ---- double_sparsity ---- */

void ref_ds_quantize(const double *k, int nchan, const int *chan, int8_t *label, double *scale) {
  double amax = 0.0;
  for (int j = 0; j < nchan; j++) amax = fmax(amax, fabs(k[chan[j]]));
  *scale = amax / 127.0;
  /* |k / scale| <= 127 by construction, so the int8 cast cannot overflow. */
  for (int j = 0; j < nchan; j++) label[j] = (int8_t)(amax > 0.0 ? lround(k[chan[j]] / *scale) : 0);
}

int ref_scores_double_sparsity(const ref_row *r, int nchan, const int *chan, double *s) {
  if (nchan < 1) return -1;
  for (int j = 0; j < nchan; j++)
    if (chan[j] < 0 || chan[j] >= r->D) return -1;
  int8_t *label = malloc((size_t)nchan);
  if (!label) return -1;
  double rs = 1.0 / sqrt((double)r->D);
  for (int i = 0; i < r->T; i++) {
    double scale;
    ref_ds_quantize(r->k + (size_t)i * r->D, nchan, chan, label, &scale);
    for (int g = 0; g < r->G; g++) {
      const double *q = r->q + (size_t)g * r->D;
      double acc = 0.0;
      for (int j = 0; j < nchan; j++) acc += q[chan[j]] * (label[j] * scale);
      s[(size_t)g * r->T + i] = acc * rs;
    }
  }
  free(label);
  return 0;
}

int ref_select_double_sparsity(const ref_row *r, ref_scope scope, int budget, int sink, int window,
                               int nchan, const int *chan, ref_sel *out) {
  double *s = malloc((size_t)r->G * r->T * sizeof *s);
  int rc = s ? ref_scores_double_sparsity(r, nchan, chan, s) : -1;
  if (rc == 0) rc = select_token_scores(r, scope, budget, sink, window, s, out);
  free(s);
  return rc;
}

/* ---- h2o ---- */

void ref_h2o_init(ref_h2o *st) {
  st->len = st->cap = 0;
  st->acc = NULL;
}

void ref_h2o_reset(ref_h2o *st) {
  if (st->acc) memset(st->acc, 0, (size_t)st->cap * sizeof *st->acc);
  st->len = 0;
}

void ref_h2o_free(ref_h2o *st) {
  free(st->acc);
  ref_h2o_init(st);
}

int ref_h2o_step(ref_h2o *st, const ref_row *r, int budget, int window, double decay, ref_sel *sel,
                 double *out, double *lse) {
  if (r->T < st->len) return -1;
  if (r->T > st->cap) {
    double *a = realloc(st->acc, (size_t)r->T * sizeof *a);
    if (!a) return -1;
    /* Fresh slots start at zero, like a zeroed page. */
    memset(a + st->cap, 0, (size_t)(r->T - st->cap) * sizeof *a);
    st->acc = a;
    st->cap = r->T;
  }
  st->len = r->T;
  int G = r->G, T = r->T;
  double *w = malloc((size_t)G * T * sizeof *w);
  int rc = w ? ref_i_select(G, T, 1, REF_SHARED, st->acc, budget, 0, window, sel) : -1;
  if (rc == 0) rc = ref_attn_probs(G, r->D, T, r->q, r->k, REF_SHARED, sel->mask, NULL, w, lse);
  if (rc == 0) {
    if (out) ref_i_mix(G, r->D, T, w, r->v, out);
    ref_i_reduce_heads(G, T, w, 0, w);
    for (int i = 0; i < T; i++) st->acc[i] = decay * st->acc[i] + w[i];
  }
  free(w);
  return rc;
}
