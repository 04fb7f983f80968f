/* ref_pages.c - page-granular reference policies of tests/ref: page summaries (kmax, kmin,
 * kmean, bulk and incremental) and the block_topk, quest, lserve and gqa_softmax scores and
 * selections (ALGORITHMS.md sections 4, 5, 7). Summaries read only a page's written slots;
 * nothing here may assume T is a multiple of P. */
#include "ref_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- summaries ---- */

int ref_summary_init(ref_summary *s, int D) {
  if (D < 1) return -1;
  s->D = D;
  s->kmax = malloc(3 * (size_t)D * sizeof *s->kmax);
  if (!s->kmax) return -1;
  s->kmin = s->kmax + D;
  s->ksum = s->kmax + 2 * (size_t)D;
  ref_summary_clear(s);
  return 0;
}

void ref_summary_free(ref_summary *s) {
  free(s->kmax);
  s->kmax = s->kmin = s->ksum = NULL;
}

/* Identities of max/min/sum, so the first append needs no special case. */
void ref_summary_clear(ref_summary *s) {
  s->n = 0;
  for (int c = 0; c < s->D; c++) {
    s->kmax[c] = -INFINITY;
    s->kmin[c] = INFINITY;
    s->ksum[c] = 0.0;
  }
}

void ref_summary_append(ref_summary *s, const double *k) {
  for (int c = 0; c < s->D; c++) {
    if (k[c] > s->kmax[c]) s->kmax[c] = k[c];
    if (k[c] < s->kmin[c]) s->kmin[c] = k[c];
    s->ksum[c] += k[c];
  }
  s->n++;
}

/* Channel-major on purpose: a different loop order from append, so comparing the two means
 * something. Sums still run in token order, which keeps them bit-identical. */
void ref_summary_bulk(ref_summary *s, int n, const double *k) {
  s->n = n;
  for (int c = 0; c < s->D; c++) {
    double mx = -INFINITY, mn = INFINITY, sum = 0.0;
    for (int t = 0; t < n; t++) {
      double x = k[(size_t)t * s->D + c];
      mx = x > mx ? x : mx;
      mn = x < mn ? x : mn;
      sum += x;
    }
    s->kmax[c] = mx;
    s->kmin[c] = mn;
    s->ksum[c] = sum;
  }
}

void ref_summary_mean(const ref_summary *s, double *kmean) {
  for (int c = 0; c < s->D; c++) kmean[c] = s->n ? s->ksum[c] / s->n : 0.0;
}

int ref_page_summaries(const ref_row *r, int P, double *kmax, double *kmin, double *kmean) {
  ref_summary s;
  if (P < 1 || ref_summary_init(&s, r->D)) return -1;
  size_t bytes = (size_t)r->D * sizeof(double);
  for (int j = 0, np = ref_npages(r->T, P); j < np; j++) {
    int n = r->T - j * P < P ? r->T - j * P : P;
    ref_summary_bulk(&s, n, r->k + (size_t)j * P * r->D);
    size_t at = (size_t)j * r->D;
    if (kmax) memcpy(kmax + at, s.kmax, bytes);
    if (kmin) memcpy(kmin + at, s.kmin, bytes);
    if (kmean) ref_summary_mean(&s, kmean + at);
  }
  ref_summary_free(&s);
  return 0;
}

/* ---- scores ---- */

/* kmean of every page, [np][D]; NULL when out of memory. */
static double *page_means(const ref_row *r, int P) {
  double *m = malloc((size_t)ref_npages(r->T, P) * r->D * sizeof *m);
  if (m && ref_page_summaries(r, P, NULL, NULL, m)) {
    free(m);
    m = NULL;
  }
  return m;
}

int ref_scores_block_topk(const ref_row *r, int P, double *score) {
  if (P < 1) return -1;
  int np = ref_npages(r->T, P);
  double *km = page_means(r, P), *qbar = malloc((size_t)r->D * sizeof *qbar);
  int rc = km && qbar ? 0 : -1;
  if (rc == 0) {
    /* q_bar . kmean equals the page's mean group-mean logit by linearity (tested). */
    ref_i_reduce_heads(r->G, r->D, r->q, 0, qbar);
    double scale = 1.0 / sqrt((double)r->D);
    for (int j = 0; j < np; j++) score[j] = ref_i_dot(r->D, qbar, km + (size_t)j * r->D) * scale;
  }
  free(km);
  free(qbar);
  return rc;
}

int ref_scores_quest(const ref_row *r, int P, double *U) {
  if (P < 1) return -1;
  int np = ref_npages(r->T, P), D = r->D;
  double *kmax = malloc(2 * (size_t)np * D * sizeof *kmax);
  if (!kmax) return -1;
  double *kmin = kmax + (size_t)np * D;
  int rc = ref_page_summaries(r, P, kmax, kmin, NULL);
  for (int g = 0; g < r->G && rc == 0; g++)
    for (int j = 0; j < np; j++) {
      const double *q = r->q + (size_t)g * D;
      double u = 0.0;
      for (int c = 0; c < D; c++)
        u += fmax(q[c] * kmax[(size_t)j * D + c], q[c] * kmin[(size_t)j * D + c]);
      U[(size_t)g * np + j] = u;
    }
  free(kmax);
  return rc;
}

int ref_scores_lserve(const ref_row *r, int P, double *U) {
  int sub = P < REF_LSERVE_SUB ? P : REF_LSERVE_SUB;
  if (P < 1 || P % sub) return -1;
  int np = ref_npages(r->T, P), ns = ref_npages(r->T, sub), per = P / sub;
  double *Us = malloc((size_t)r->G * ns * sizeof *Us);
  int rc = Us ? ref_scores_quest(r, sub, Us) : -1;
  for (int g = 0; g < r->G && rc == 0; g++)
    for (int j = 0; j < np; j++) {
      double u = -INFINITY;
      for (int b = j * per; b < (j + 1) * per && b < ns; b++) u = fmax(u, Us[(size_t)g * ns + b]);
      U[(size_t)g * np + j] = u;
    }
  free(Us);
  return rc;
}

int ref_scores_gqa_softmax(const ref_row *r, int P, double *score) {
  if (P < 1) return -1;
  int np = ref_npages(r->T, P);
  double *km = page_means(r, P), *p = malloc((size_t)r->G * np * sizeof *p);
  int rc = km && p ? 0 : -1;
  if (rc == 0) {
    /* Attention over page centroids, as if each page were one token with key kmean: exactly
     * ref_attn_probs with the centroids as keys. */
    rc = ref_attn_probs(r->G, r->D, np, r->q, km, REF_SHARED, NULL, NULL, p, NULL);
    ref_i_reduce_heads(r->G, np, p, 1, score);
  }
  free(km);
  free(p);
  return rc;
}

/* ---- selections ---- */

/* scorer writes [G][np] when per_head, else [np]; per-head scores are maxed over the group for
 * a shared selection. Every page policy keeps the last page; keep_first says about the first. */
static int select_pages(const ref_row *r, int P, int budget, int keep_first,
                        int (*scorer)(const ref_row *, int, double *), int per_head,
                        ref_scope scope, ref_sel *out) {
  if (P < 1) return -1;
  int np = ref_npages(r->T, P);
  double *s = malloc((size_t)(per_head ? r->G : 1) * np * sizeof *s);
  int rc = s ? scorer(r, P, s) : -1;
  if (rc == 0) {
    if (per_head && scope == REF_SHARED) ref_i_reduce_heads(r->G, np, s, 1, s);
    rc = ref_i_select(r->G, r->T, P, scope, s, budget, keep_first, 1, out);
  }
  free(s);
  return rc;
}

int ref_select_block_topk(const ref_row *r, int P, int budget, ref_sel *out) {
  return select_pages(r, P, budget, 1, ref_scores_block_topk, 0, REF_SHARED, out);
}

int ref_select_quest(const ref_row *r, ref_scope scope, int P, int budget, ref_sel *out) {
  return select_pages(r, P, budget, 0, ref_scores_quest, 1, scope, out);
}

int ref_select_lserve(const ref_row *r, int P, int budget, ref_sel *out) {
  return select_pages(r, P, budget, 0, ref_scores_lserve, 1, REF_SHARED, out);
}

int ref_select_gqa_softmax(const ref_row *r, int P, int budget, ref_sel *out) {
  return select_pages(r, P, budget, 1, ref_scores_gqa_softmax, 0, REF_SHARED, out);
}
