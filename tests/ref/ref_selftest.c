/* ref_selftest.c - checks the tests/ref references against the properties ALGORITHMS.md
 * lists for each algorithm: closed forms, hand-computed examples, bounds, statistical tests
 * over seeds, and the universal "budget >= T is dense" test. It must never compare a reference
 * with itself: every expected value is computed here by a different route (naive loops, ranks
 * instead of sorting, exact fractions, literal formulas). Prints one line per check and ends
 * with "N passed, M failed"; exits 1 if anything failed. Sizes keep it within seconds, also
 * under ASan. */
#include "ref.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

static int n_pass, n_fail;

static void check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s  ", ok ? "PASS" : "FAIL");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  ok ? n_pass++ : n_fail++;
}

/* A test that cannot allocate cannot say anything: stop loudly rather than pass silently. */
static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "ref_selftest: out of memory\n");
    exit(2);
  }
  return p;
}

static void must(int rc, const char *what) {
  if (rc) {
    fprintf(stderr, "ref_selftest: %s failed\n", what);
    exit(2);
  }
}

/* ---- random rows ---- */

typedef struct {
  int G, D, T;
  double *q, *k, *v;
} data;

static data data_make(int G, int D, int T, uint64_t seed) {
  data d = {G, D, T, NULL, NULL, NULL};
  d.q = xmalloc(sizeof(double) * G * D);
  d.k = xmalloc(sizeof(double) * T * D);
  d.v = xmalloc(sizeof(double) * T * D);
  ref_rng g;
  ref_rng_seed(&g, seed);
  for (int i = 0; i < G * D; i++) d.q[i] = ref_rng_gauss(&g);
  for (int i = 0; i < T * D; i++) d.k[i] = ref_rng_gauss(&g);
  for (int i = 0; i < T * D; i++) d.v[i] = ref_rng_gauss(&g);
  return d;
}

static void data_free(data *d) {
  free(d->q);
  free(d->k);
  free(d->v);
}

static ref_row row_of(const data *d) { return (ref_row){d->G, d->D, d->T, d->q, d->k, d->v}; }

/* q_g . k_i, by its own loop. */
static double qk(const ref_row *r, int g, int i) {
  double s = 0.0;
  for (int c = 0; c < r->D; c++) s += r->q[g * r->D + c] * r->k[i * r->D + c];
  return s;
}

static double logit(const ref_row *r, int g, int i) { return qk(r, g, i) / sqrt((double)r->D); }

static double mean_logit(const ref_row *r, int i) {
  double s = 0.0;
  for (int g = 0; g < r->G; g++) s += logit(r, g, i);
  return s / r->G;
}

static double rel_err(int n, const double *a, const double *b) {
  double num = 0.0, den = 0.0;
  for (int i = 0; i < n; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return sqrt(num) / (den > 0.0 ? sqrt(den) : 1.0);
}

static int sel_equal(const ref_sel *a, const ref_sel *b) {
  if (a->T != b->T || a->G != b->G) return 0;
  for (int g = 0; g < a->G; g++)
    if (memcmp(ref_sel_head(a, g), ref_sel_head(b, g), (size_t)a->T)) return 0;
  return 1;
}

static int sel_all(const ref_sel *s) {
  for (int g = 0; g < s->G; g++)
    if (ref_sel_count(s, g) != s->T) return 0;
  return 1;
}

/* Expected token top-k by rank counting, no sorting: token i (not kept) is chosen iff fewer
 * than budget - kept other candidates beat it (higher score, or equal and lower index). */
static void expect_topk(int T, const double *score, int budget, int sink, int window, uint8_t *m) {
  if (budget >= T) {
    memset(m, 1, (size_t)T);
    return;
  }
  int kept = 0;
  for (int i = 0; i < T; i++) kept += i < sink || i >= T - window;
  for (int i = 0; i < T; i++) {
    if (i < sink || i >= T - window) {
      m[i] = 1;
      continue;
    }
    int beaten = 0;
    for (int j = 0; j < T; j++)
      if (!(j < sink || j >= T - window) &&
          (score[j] > score[i] || (score[j] == score[i] && j < i)))
        beaten++;
    m[i] = beaten < budget - kept;
  }
}

/* ---- section 0: attention and the LSE merge ---- */

static void test_attend_hand(void) {
  double q[2] = {1, 1}, k[2] = {0, log(3.0)}, v[2] = {1, 5}, corr[2] = {0, log(3.0)};
  double o, l;
  must(ref_attend(1, 1, 2, q, k, v, REF_SHARED, NULL, NULL, &o, &l), "attend");
  /* weights 1/4, 3/4 */
  int ok = fabs(o - 4.0) < 1e-12 && fabs(l - log(4.0)) < 1e-12;
  must(ref_attend(1, 1, 2, q, k, v, REF_SHARED, NULL, corr, &o, &l), "attend");
  /* the correction log 3 evens them out: weights 1/2, 1/2 */
  ok = ok && fabs(o - 3.0) < 1e-12 && fabs(l - log(2.0)) < 1e-12;
  check(ok, "attend: hand example (w = 1/4, 3/4; with correction log 3: 1/2, 1/2)");

  double k0[2] = {0, 0}, o2[2], l2[2];
  uint8_t per[4] = {1, 0, 0, 1}, none[4] = {0, 0, 1, 1};
  must(ref_attend(2, 1, 2, q, k0, v, REF_PER_HEAD, per, NULL, o2, l2), "attend");
  ok = o2[0] == 1.0 && o2[1] == 5.0 && l2[0] == 0.0 && l2[1] == 0.0;
  must(ref_attend(2, 1, 2, q, k0, v, REF_PER_HEAD, none, NULL, o2, l2), "attend");
  ok = ok && o2[0] == 0.0 && l2[0] == -INFINITY && fabs(o2[1] - 3.0) < 1e-12 &&
       fabs(l2[1] - log(2.0)) < 1e-12;
  check(ok,
        "attend: per-head masks pick each head's own tokens; empty selection gives 0, lse -inf");
}

static void test_attend_naive(void) {
  data d = data_make(3, 16, 50, 11);
  ref_row r = row_of(&d);
  ref_rng g;
  ref_rng_seed(&g, 12);
  uint8_t *m = xmalloc((size_t)3 * 50);
  double *corr = xmalloc(sizeof(double) * 3 * 50), o[3 * 16], l[3], exp_o[16];
  for (int i = 0; i < 3 * 50; i++) {
    m[i] = ref_rng_uniform(&g) < 0.6;
    corr[i] = ref_rng_gauss(&g);
  }
  must(ref_attend(3, 16, 50, d.q, d.k, d.v, REF_PER_HEAD, m, corr, o, l), "attend");
  double worst = 0.0;
  for (int h = 0; h < 3; h++) {
    /* Logits are O(1) here, so the textbook formula without max-subtraction is exact enough. */
    double z = 0.0;
    memset(exp_o, 0, sizeof exp_o);
    for (int i = 0; i < 50; i++) {
      if (!m[h * 50 + i]) continue;
      double e = exp(logit(&r, h, i) - corr[h * 50 + i]);
      z += e;
      for (int c = 0; c < 16; c++) exp_o[c] += e * d.v[i * 16 + c];
    }
    for (int c = 0; c < 16; c++) exp_o[c] /= z;
    worst = fmax(worst, rel_err(16, o + h * 16, exp_o));
    worst = fmax(worst, fabs(l[h] - log(z)));
  }
  check(worst < 1e-12, "attend: per-head masks + corrections equal the direct formula (err %.1e)",
        worst);
  free(m);
  free(corr);
  data_free(&d);
}

static void test_lse_merge(void) {
  int G = 4, D = 32, T = 77;
  data d = data_make(G, D, T, 21);
  ref_rng g;
  ref_rng_seed(&g, 22);
  uint8_t a[77], b[77];
  for (int i = 0; i < T; i++) b[i] = !(a[i] = ref_rng_uniform(&g) < 0.4);
  double oA[4 * 32], oB[4 * 32], oF[4 * 32], lA[4], lB[4], lF[4], o[32], l, worst = 0.0;
  must(ref_attend(G, D, T, d.q, d.k, d.v, REF_SHARED, a, NULL, oA, lA), "attend");
  must(ref_attend(G, D, T, d.q, d.k, d.v, REF_SHARED, b, NULL, oB, lB), "attend");
  must(ref_attend(G, D, T, d.q, d.k, d.v, REF_SHARED, NULL, NULL, oF, lF), "attend");
  for (int h = 0; h < G; h++) {
    ref_lse_merge(D, oA + h * D, lA[h], oB + h * D, lB[h], o, &l);
    worst = fmax(worst, fmax(rel_err(D, o, oF + h * D), fabs(l - lF[h])));
  }
  check(worst < 1e-12, "lse merge: two disjoint halves merge to full attention (err %.1e)", worst);

  double zero[32] = {0};
  ref_lse_merge(D, oA, lA[0], zero, -INFINITY, o, &l);
  int ok = memcmp(o, oA, sizeof o) == 0 && l == lA[0];
  ref_lse_merge(D, zero, -INFINITY, zero, -INFINITY, o, &l);
  ok = ok && o[0] == 0.0 && l == -INFINITY;
  check(ok,
        "lse merge: an empty part (lse -inf) leaves the other unchanged; two empties stay empty");
  data_free(&d);
}

/* ---- page summaries ---- */

static int summary_same(const ref_summary *a, const ref_summary *b) {
  size_t n = (size_t)a->D * sizeof(double);
  return a->n == b->n && !memcmp(a->kmax, b->kmax, n) && !memcmp(a->kmin, b->kmin, n) &&
         !memcmp(a->ksum, b->ksum, n);
}

static void test_summaries(void) {
  ref_summary s;
  double hand[6] = {1, -2, 3, 0, -1, 5}, mean[8];
  must(ref_summary_init(&s, 2), "summary init");
  ref_summary_bulk(&s, 3, hand);
  ref_summary_mean(&s, mean);
  check(s.kmax[0] == 3 && s.kmax[1] == 5 && s.kmin[0] == -1 && s.kmin[1] == -2 && mean[0] == 1 &&
            mean[1] == 1,
        "summaries: hand example kmax (3,5) kmin (-1,-2) kmean (1,1)");
  ref_summary_free(&s);

  /* A page buffer whose unused slots hold huge garbage: reading one would show at once. */
  int P = 16, D = 8, ok = 1;
  data d = data_make(1, D, P, 31);
  ref_summary inc, bulk;
  must(ref_summary_init(&inc, D) || ref_summary_init(&bulk, D), "summary init");
  double *page = xmalloc(sizeof(double) * P * D);
  for (int n = 1; n <= P; n++) {
    ref_summary_append(&inc, d.k + (n - 1) * D);
    for (int i = 0; i < P * D; i++) page[i] = i < n * D ? d.k[i] : (i % 2 ? 1e300 : -1e300);
    ref_summary_bulk(&bulk, n, page);
    ok = ok && summary_same(&inc, &bulk);
  }
  check(ok, "summaries: incremental == bulk after each of %d appends, unused slots ignored", P);

  ref_summary_clear(&inc);
  for (int n = 0; n < 5; n++) ref_summary_append(&inc, d.k + (P - 1 - n) * D);
  for (int n = 0; n < 5; n++) memcpy(page + n * D, d.k + (P - 1 - n) * D, sizeof(double) * D);
  ref_summary_bulk(&bulk, 5, page);
  check(summary_same(&inc, &bulk), "summaries: a cleared (reused) page starts from nothing");

  /* Row of 37 tokens at P = 16: the last page has 5 tokens. */
  data e = data_make(1, D, 37, 32);
  ref_row r = row_of(&e);
  double *kmax = xmalloc(sizeof(double) * 3 * D), *kmin = xmalloc(sizeof(double) * 3 * D),
         *kmean = xmalloc(sizeof(double) * 3 * D);
  must(ref_page_summaries(&r, 16, kmax, kmin, kmean), "page summaries");
  ok = 1;
  for (int j = 0; j < 3; j++) {
    ref_summary_clear(&inc);
    for (int i = j * 16; i < e.T && i < (j + 1) * 16; i++) ref_summary_append(&inc, e.k + i * D);
    ref_summary_mean(&inc, mean);
    ok = ok && !memcmp(kmax + j * D, inc.kmax, sizeof(double) * D) &&
         !memcmp(kmin + j * D, inc.kmin, sizeof(double) * D) &&
         !memcmp(kmean + j * D, mean, sizeof(double) * D);
  }
  /* and the partial page's mean divides by 5, not 16 */
  double m0 = 0.0;
  for (int i = 32; i < 37; i++) m0 += e.k[i * D];
  ok = ok && fabs(kmean[2 * D] - m0 / 5) < 1e-15;
  check(ok, "summaries: row summaries (T=37, P=16, partial last page) == incremental per page");
  free(kmax);
  free(kmin);
  free(kmean);
  free(page);
  ref_summary_free(&inc);
  ref_summary_free(&bulk);
  data_free(&d);
  data_free(&e);
}

/* ---- streaming and topk ---- */

static void test_streaming(void) {
  data a = data_make(4, 16, 300, 41), b = data_make(4, 16, 300, 42);
  ref_row ra = row_of(&a), rb = row_of(&b);
  rb.k = a.k; /* same keys, different queries */
  rb.v = a.v;
  ref_sel sa = REF_SEL_EMPTY, sb = REF_SEL_EMPTY;
  must(ref_select_streaming(&ra, 4, 100, &sa) || ref_select_streaming(&rb, 4, 100, &sb),
       "streaming");
  const uint8_t *m = ref_sel_head(&sa, 0);
  check(sel_equal(&sa, &sb) && ref_sel_count(&sa, 0) == 104 && m[0] && m[3] && !m[4] && !m[199] &&
            m[200] && m[299] && sa.scope == REF_SHARED,
        "streaming: selection independent of q; exactly sinks [0,4) and window [200,300)");
  ref_sel_free(&sa);
  ref_sel_free(&sb);
  data_free(&a);
  data_free(&b);
}

static void test_topk(void) {
  int G = 4, D = 32, T = 300, ok = 1, cases = 0;
  data d = data_make(G, D, T, 51);
  ref_row r = row_of(&d);
  double *score = xmalloc(sizeof(double) * T);
  uint8_t *exp_m = xmalloc((size_t)T);
  ref_sel s = REF_SEL_EMPTY;
  int sinks[2] = {0, REF_TOPK_SINK}, windows[2] = {0, REF_TOPK_WINDOW};
  for (int sw = 0; sw < 2; sw++)
    for (int budget = 70; budget <= T; budget += 23)
      for (int scope = 0; scope < 2; scope++) {
        must(ref_select_topk(&r, (ref_scope)scope, budget, sinks[sw], windows[sw], &s), "topk");
        for (int h = 0; h < (scope ? G : 1); h++) {
          for (int i = 0; i < T; i++) score[i] = scope ? logit(&r, h, i) : mean_logit(&r, i);
          expect_topk(T, score, budget, sinks[sw], windows[sw], exp_m);
          ok = ok && !memcmp(ref_sel_head(&s, h), exp_m, (size_t)T) && (int)s.scope == scope;
          cases++;
        }
      }
  check(ok,
        "topk: selection == argsort(-s)[:B] (and with 4 sinks + window 64), both scopes, %d cases",
        cases);

  /* Kept mass W_S and KL(p_S || w) = -log W_S, per head, as the budget grows. */
  double *w = xmalloc(sizeof(double) * G * T), *pS = xmalloc(sizeof(double) * G * T);
  double prev[4] = {0, 0, 0, 0}, worst_kl = 0.0;
  int mono = 1;
  must(ref_attn_probs(G, D, T, d.q, d.k, REF_SHARED, NULL, NULL, w, NULL), "probs");
  for (int budget = 68; budget <= T; budget += 8) {
    must(ref_select_topk(&r, REF_SHARED, budget, 4, 64, &s), "topk");
    must(ref_attn_probs(G, D, T, d.q, d.k, s.scope, s.mask, NULL, pS, NULL), "probs");
    for (int h = 0; h < G; h++) {
      double WS = 0.0, kl = 0.0;
      for (int i = 0; i < T; i++) {
        if (!s.mask[i]) continue;
        WS += w[h * T + i];
        kl += pS[h * T + i] * log(pS[h * T + i] / w[h * T + i]);
      }
      mono = mono && WS >= prev[h] - 1e-15;
      prev[h] = WS;
      worst_kl = fmax(worst_kl, fabs(kl + log(WS)));
    }
  }
  int full = 1;
  for (int h = 0; h < G; h++) full = full && fabs(prev[h] - 1.0) < 1e-12;
  check(mono && full, "topk: kept mass W_S non-decreasing in budget (68..%d), W_S = 1 at B = T", T);
  check(worst_kl < 1e-10, "topk: KL(p_S || w) = -log W_S for every budget and head (err %.1e)",
        worst_kl);
  free(w);
  free(pS);
  free(score);
  free(exp_m);
  ref_sel_free(&s);
  data_free(&d);
}

/* ---- page policies ---- */

static void test_block_topk(void) {
  double worst = 0.0;
  int Gs[2] = {1, 4}, Ps[3] = {5, 16, 64};
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 3; b++) {
      data d = data_make(Gs[a], 32, 101, 61 + a * 3 + b);
      ref_row r = row_of(&d);
      int P = Ps[b], np = ref_npages(r.T, P);
      double *sc = xmalloc(sizeof(double) * np);
      must(ref_scores_block_topk(&r, P, sc), "block scores");
      for (int j = 0; j < np; j++) {
        double m = 0.0;
        int n = 0;
        for (int i = j * P; i < r.T && i < (j + 1) * P; i++, n++) m += mean_logit(&r, i);
        worst = fmax(worst, fabs(sc[j] - m / n));
      }
      free(sc);
      data_free(&d);
    }
  check(worst < 1e-12,
        "block_topk: page score == mean token logit of the page, partial too (err %.1e)", worst);

  data d = data_make(4, 32, 200, 67);
  ref_row r = row_of(&d);
  ref_sel bt = REF_SEL_EMPTY, tk = REF_SEL_EMPTY;
  int ok = 1;
  for (int budget = 2; budget <= 200; budget += 9) {
    must(ref_select_block_topk(&r, 1, budget, &bt) ||
             ref_select_topk(&r, REF_SHARED, budget, 1, 1, &tk),
         "select");
    ok = ok && sel_equal(&bt, &tk) && bt.scope == REF_SHARED;
  }
  check(ok, "block_topk: P=1 == group-mean token top-k (first + last kept), shared selection");

  ok = 1;
  for (int P = 4; P <= 32; P *= 2)
    for (int budget = 2 * P; budget < 200; budget += 13) {
      must(ref_select_block_topk(&r, P, budget, &bt), "block_topk");
      const uint8_t *m = ref_sel_head(&bt, 0);
      ok = ok && ref_sel_count(&bt, 0) <= budget && m[0] && m[199];
    }
  check(ok, "block_topk: |S| <= budget, first and last page always selected");
  ref_sel_free(&bt);
  ref_sel_free(&tk);
  data_free(&d);
}

static void test_quest(void) {
  /* page [1,-2], [3,0], q (1,-1): kmax (3,0), kmin (1,-2), U = max(3,1) + max(0,2) = 5 */
  double hq[2] = {1, -1}, hk[4] = {1, -2, 3, 0}, U1;
  ref_row hr = {1, 2, 2, hq, hk, hk};
  must(ref_scores_quest(&hr, 2, &U1), "quest scores");
  check(U1 == 5.0, "quest: hand example U = 5 (true max q.k = 3)");

  double min_slack = INFINITY, worst_eq = 0.0;
  int bound_ok = 1, Ps[4] = {1, 7, 16, 64};
  for (int b = 0; b < 4; b++)
    for (int rep = 0; rep < 5; rep++) {
      data d = data_make(4, 32, 150, 71 + b * 10 + rep); /* Gaussian q: mixed signs */
      ref_row r = row_of(&d);
      int P = Ps[b], np = ref_npages(r.T, P);
      double *U = xmalloc(sizeof(double) * r.G * np);
      must(ref_scores_quest(&r, P, U), "quest scores");
      for (int g = 0; g < r.G; g++)
        for (int j = 0; j < np; j++) {
          double mx = -INFINITY;
          for (int i = j * P; i < r.T && i < (j + 1) * P; i++) mx = fmax(mx, qk(&r, g, i));
          double u = U[g * np + j];
          bound_ok = bound_ok && u >= mx - 1e-12 * (1 + fabs(mx));
          if (P == 1)
            worst_eq = fmax(worst_eq, fabs(u - mx) / (1 + fabs(mx)));
          else
            min_slack = fmin(min_slack, u - mx);
        }
      free(U);
      data_free(&d);
    }
  check(bound_ok && worst_eq < 1e-12,
        "quest: U_j >= max q.k for P in {7,16,64} (min slack %.3g), == at P=1 (err %.1e)",
        min_slack, worst_eq);

  data d = data_make(4, 32, 200, 79), d1 = data_make(1, 32, 200, 80);
  ref_row r = row_of(&d), r1 = row_of(&d1);
  ref_sel qs = REF_SEL_EMPTY, tk = REF_SEL_EMPTY;
  int ok = 1;
  for (int budget = 1; budget <= 200; budget += 11) {
    must(ref_select_quest(&r, REF_PER_HEAD, 1, budget, &qs) ||
             ref_select_topk(&r, REF_PER_HEAD, budget, 0, 1, &tk),
         "select");
    ok = ok && sel_equal(&qs, &tk) && qs.scope == REF_PER_HEAD;
    must(ref_select_quest(&r1, REF_SHARED, 1, budget, &qs) ||
             ref_select_topk(&r1, REF_SHARED, budget, 0, 1, &tk),
         "select");
    ok = ok && sel_equal(&qs, &tk);
  }
  check(ok, "quest: P=1 == token top-k with the last token kept (per head, and shared at G=1)");

  ok = 1;
  int cases = 0;
  for (int T = 150; T <= 200; T += 25) {
    ref_row rt = r;
    rt.T = T;
    for (int P = 4; P <= 64; P *= 4)
      for (int budget = P; budget < T; budget += 7)
        for (int scope = 0; scope < 2; scope++, cases++) {
          must(ref_select_quest(&rt, (ref_scope)scope, P, budget, &qs), "quest");
          for (int h = 0; h < (scope ? rt.G : 1); h++) {
            const uint8_t *m = ref_sel_head(&qs, h);
            for (int i = (ref_npages(T, P) - 1) * P; i < T; i++) ok = ok && m[i];
            ok = ok && ref_sel_count(&qs, h) <= budget;
          }
        }
  }
  check(ok, "quest: last page always selected and |S| <= budget (%d cases, partial pages)", cases);
  ref_sel_free(&qs);
  ref_sel_free(&tk);
  data_free(&d);
  data_free(&d1);
}

static void test_lserve(void) {
  data d = data_make(4, 32, 300, 91);
  ref_row r = row_of(&d);
  int np16 = ref_npages(300, 16), np64 = ref_npages(300, 64);
  double *Ul = xmalloc(sizeof(double) * 4 * np16), *Uq = xmalloc(sizeof(double) * 4 * np16);
  must(ref_scores_lserve(&r, 16, Ul) || ref_scores_quest(&r, 16, Uq), "scores");
  int ok = !memcmp(Ul, Uq, sizeof(double) * 4 * np16);
  ref_sel a = REF_SEL_EMPTY, b = REF_SEL_EMPTY;
  for (int budget = 16; budget <= 300; budget += 16) {
    must(ref_select_lserve(&r, 16, budget, &a) || ref_select_quest(&r, REF_SHARED, 16, budget, &b),
         "select");
    ok = ok && sel_equal(&a, &b);
  }
  check(ok, "lserve: P=16 == quest (scores and selections)");

  /* P=64: sub-block envelopes are tighter than the page's but still bound q.k. */
  must(ref_scores_lserve(&r, 64, Ul) || ref_scores_quest(&r, 64, Uq), "scores");
  int sandwich = 1, tighter = 0;
  for (int g = 0; g < 4; g++)
    for (int j = 0; j < np64; j++) {
      double mx = -INFINITY, l = Ul[g * np64 + j], q = Uq[g * np64 + j];
      for (int i = j * 64; i < 300 && i < (j + 1) * 64; i++) mx = fmax(mx, qk(&r, g, i));
      sandwich = sandwich && mx <= l + 1e-12 * (1 + fabs(mx)) && l <= q + 1e-12 * (1 + fabs(q));
      tighter += l < q - 1e-9;
    }
  check(sandwich && tighter > 0,
        "lserve: P=64 max q.k <= U_lserve <= U_quest per head and page (%d/%d strictly tighter)",
        tighter, 4 * np64);
  ref_sel_free(&a);
  ref_sel_free(&b);
  free(Ul);
  free(Uq);
  data_free(&d);
}

static void test_gqa_softmax(void) {
  /* G=2, D=1, P=1: keys 0, ln 2, ln 3; head q=+1 gives softmax (1,2,3)/6, head q=-1 gives
   * (1, 1/2, 1/3)/(11/6) = (6,3,2)/11; max over heads = (6/11, 1/3, 1/2). */
  double q[2] = {1, -1}, k[3] = {0, log(2.0), log(3.0)}, s[3];
  ref_row hr = {2, 1, 3, q, k, k};
  must(ref_scores_gqa_softmax(&hr, 1, s), "gqa scores");
  check(fabs(s[0] - 6.0 / 11) < 1e-12 && fabs(s[1] - 1.0 / 3) < 1e-12 && fabs(s[2] - 0.5) < 1e-12,
        "gqa_softmax: hand example scores (6/11, 1/3, 1/2)");

  data d = data_make(1, 32, 250, 101);
  ref_row r = row_of(&d);
  ref_sel a = REF_SEL_EMPTY, b = REF_SEL_EMPTY;
  int ok = 1;
  for (int budget = 32; budget <= 250; budget += 16) {
    must(ref_select_gqa_softmax(&r, 16, budget, &a) || ref_select_block_topk(&r, 16, budget, &b),
         "select");
    ok = ok && sel_equal(&a, &b);
  }
  check(ok, "gqa_softmax: G=1 == block_topk (softmax over pages is monotone)");
  ref_sel_free(&a);
  ref_sel_free(&b);
  data_free(&d);
}

/* ---- double_sparsity ---- */

static void test_double_sparsity(void) {
  int G = 2, D = 32, T = 200, chan[8] = {1, 4, 5, 9, 16, 22, 30, 31}, all[32];
  for (int c = 0; c < D; c++) all[c] = c;
  data d = data_make(G, D, T, 111);
  ref_row r = row_of(&d);
  int8_t lab[32];
  double scale, s_approx[2 * 200];
  int qok = 1;
  for (int i = 0; i < T; i++) {
    ref_ds_quantize(d.k + i * D, 8, chan, lab, &scale);
    int amax = 0;
    for (int j = 0; j < 8; j++) {
      amax = abs(lab[j]) > amax ? abs(lab[j]) : amax;
      qok = qok && abs(lab[j]) <= 127 &&
            fabs(lab[j] * scale - d.k[i * D + chan[j]]) <= scale * 0.5 * (1 + 1e-12);
    }
    qok = qok && amax == 127;
  }
  double zero[3] = {0, 0, 0};
  int zc[3] = {0, 1, 2};
  ref_ds_quantize(zero, 3, zc, lab, &scale);
  qok = qok && scale == 0.0 && lab[0] == 0;
  check(qok,
        "double_sparsity: int8 labels within +-127, absmax hits 127, |label*scale - k| <= scale/2");

  must(ref_scores_double_sparsity(&r, 8, chan, s_approx), "ds scores");
  int bound = 1;
  for (int i = 0; i < T; i++) {
    ref_ds_quantize(d.k + i * D, 8, chan, lab, &scale);
    for (int g = 0; g < G; g++) {
      double exact = 0.0, slack = 0.0;
      for (int j = 0; j < 8; j++) {
        exact += d.q[g * D + chan[j]] * d.k[i * D + chan[j]];
        slack += fabs(d.q[g * D + chan[j]]) * scale * 0.5;
      }
      bound = bound && fabs(s_approx[g * T + i] - exact / sqrt(D)) <= slack / sqrt(D) * (1 + 1e-9);
    }
  }
  check(bound, "double_sparsity: score within the int8 rounding bound of q[chan].k[chan]/sqrt(D)");

  /* Integer keys with |k| <= 127 and 127 in one of the channels quantise exactly (scale 1). */
  ref_rng g;
  ref_rng_seed(&g, 112);
  for (int i = 0; i < T; i++)
    for (int c = 0; c < D; c++)
      d.k[i * D + c] = c == chan[i % 8] ? 127.0 : (double)(ref_rng_below(&g, 255) - 127);
  must(ref_scores_double_sparsity(&r, 8, chan, s_approx), "ds scores");
  double worst = 0.0;
  for (int i = 0; i < T; i++)
    for (int h = 0; h < G; h++) {
      double exact = 0.0;
      for (int j = 0; j < 8; j++) exact += d.q[h * D + chan[j]] * d.k[i * D + chan[j]];
      worst = fmax(worst, fabs(s_approx[h * T + i] - exact / sqrt(D)));
    }
  ref_sel a = REF_SEL_EMPTY, b = REF_SEL_EMPTY;
  int same = 1;
  for (int budget = 70; budget <= T; budget += 19)
    for (int scope = 0; scope < 2; scope++) {
      must(ref_select_double_sparsity(&r, (ref_scope)scope, budget, 4, 64, 32, all, &a) ||
               ref_select_topk(&r, (ref_scope)scope, budget, 4, 64, &b),
           "select");
      same = same && sel_equal(&a, &b);
    }
  check(worst < 1e-9 && same,
        "double_sparsity: exact int8 keys: score exact (err %.1e); all channels == topk", worst);
  ref_sel_free(&a);
  ref_sel_free(&b);
  data_free(&d);
}

/* ---- h2o ---- */

/* D=1, P irrelevant; head 0 has q=1, head 1 q=0, k = ln a, so head 0's weights are a_i/sum
 * and head 1's are uniform over the selection. budget 3 except step 1 (2), window 1, decay 1/2.
 *   step 1, a=(4,1,2):     S={0,2}   h0 (2/3,1/3)       h1 (1/2,1/2)
 *                          acc = (7/12, 0, 5/12)
 *   step 2, a=(4,1,2,1):   S={0,2,3} h0 (4,2,1)/7        h1 1/3 each
 *                          acc = (125, 0, 87, 40)/168
 *   step 3, a=(4,1,2,1,8): S={0,2,4} h0 (2,1,4)/7        h1 1/3 each
 *                          acc = (229, 0, 167, 40, 152)/336
 * Step 3 output with v = (1..5): head 0 (2*1 + 1*3 + 4*5)/7 = 25/7, head 1 (1+3+5)/3 = 3. */
static void test_h2o_hand(void) {
  double q[2] = {1, 0}, k[5] = {log(4.0), 0, log(2.0), 0, log(8.0)}, v[5] = {1, 2, 3, 4, 5};
  static const uint8_t want_sel[3][5] = {{1, 0, 1}, {1, 0, 1, 1}, {1, 0, 1, 0, 1}};
  static const double want_acc[3][5] = {{7.0 / 12, 0, 5.0 / 12},
                                        {125.0 / 168, 0, 87.0 / 168, 40.0 / 168},
                                        {229.0 / 336, 0, 167.0 / 336, 40.0 / 336, 152.0 / 336}};
  int budgets[3] = {2, 3, 3}, ok = 1;
  ref_h2o st;
  ref_h2o_init(&st);
  ref_sel s = REF_SEL_EMPTY;
  double o[2];
  for (int step = 0; step < 3; step++) {
    ref_row r = {2, 1, 3 + step, q, k, v};
    must(ref_h2o_step(&st, &r, budgets[step], 1, 0.5, &s, o, NULL), "h2o step");
    for (int i = 0; i < r.T; i++)
      ok = ok && s.mask[i] == want_sel[step][i] && fabs(st.acc[i] - want_acc[step][i]) < 1e-12;
  }
  ok = ok && fabs(o[0] - 25.0 / 7) < 1e-12 && fabs(o[1] - 3.0) < 1e-12;
  check(ok,
        "h2o: hand-computed 3-step example (selections, acc = (229,0,167,40,152)/336, outputs)");
  ref_sel_free(&s);
  ref_h2o_free(&st);
}

/* Runs steps T0..T0+n-1 of one request on st, appending outputs to out. */
static void h2o_run(ref_h2o *st, const data *d, int T0, int n, double *out) {
  ref_sel s = REF_SEL_EMPTY;
  for (int t = 0; t < n; t++) {
    ref_row r = row_of(d);
    r.T = T0 + t;
    must(ref_h2o_step(st, &r, 24, 8, 0.9, &s, out + t * d->G * d->D, NULL), "h2o step");
  }
  ref_sel_free(&s);
}

static void test_h2o_isolation(void) {
  int G = 2, D = 8, n = 6;
  data a = data_make(G, D, 70, 121), b = data_make(G, D, 50, 122);
  size_t bytes = sizeof(double) * n * G * D;
  double *alone = xmalloc(bytes), *mixed = xmalloc(bytes), *reused = xmalloc(bytes),
         *junk = xmalloc(bytes);
  ref_h2o sa, sb;
  ref_h2o_init(&sa);
  ref_h2o_init(&sb);
  h2o_run(&sb, &b, 40, n, alone);
  ref_h2o_reset(&sb);
  /* Interleave A's and B's steps on their own states. */
  for (int t = 0; t < n; t++) {
    h2o_run(&sa, &a, 60 + t, 1, junk);
    h2o_run(&sb, &b, 40 + t, 1, mixed + t * G * D);
  }
  /* Reuse A's (now longer, dirty) state for B after a reset. */
  ref_h2o_reset(&sa);
  h2o_run(&sa, &b, 40, n, reused);
  int ok = !memcmp(alone, mixed, bytes) && !memcmp(alone, reused, bytes);
  /* Without the reset a shorter row is refused instead of inheriting A's scores. */
  h2o_run(&sa, &a, 60, 1, junk);
  ref_row rb = row_of(&b);
  ref_sel s = REF_SEL_EMPTY;
  ok = ok && ref_h2o_step(&sa, &rb, 24, 8, 0.9, &s, NULL, NULL) == -1;
  check(ok, "h2o: no leak: interleaved == alone == reset+reused; unreset reuse refused");
  ref_sel_free(&s);
  ref_h2o_free(&sa);
  ref_h2o_free(&sb);
  free(alone);
  free(mixed);
  free(reused);
  free(junk);
  data_free(&a);
  data_free(&b);
}

/* ---- magicpig ---- */

static double u_literal(double theta, int K, int L) {
  double p = 1 - theta / PI, pk = pow(p, K);
  return 1 - pow(1 - pk, L) - L * pk * pow(1 - pk, L - 1);
}

static void test_magicpig_u(void) {
  double worst = 0.0;
  int KL[5][2] = {{1, 4}, {2, 4}, {8, 75}, {9, 120}, {10, 150}};
  for (int a = 0; a < 5; a++)
    for (int t = 0; t <= 20; t++) {
      double th = PI * t / 20;
      worst = fmax(worst,
                   fabs(ref_simhash_u(th, KL[a][0], KL[a][1]) - u_literal(th, KL[a][0], KL[a][1])));
    }
  check(worst < 1e-12 && ref_simhash_u(0, 10, 150) == 1.0 && ref_simhash_u(PI, 10, 150) == 0.0 &&
            ref_simhash_u(1.0, 0, 5) == 1.0,
        "magicpig: u == 1-(1-p^K)^L-Lp^K(1-p^K)^(L-1) on a theta grid (err %.1e), u(0)=1, u(pi)=0",
        worst);
}

static void test_magicpig_collision(void) {
  enum { D = 16 };
  struct {
    double theta;
    int K, L, seeds;
  } cfg[5] = {{PI / 3, 2, 4, 3000},
              {PI / 2, 2, 4, 3000},
              {2 * PI / 3, 1, 4, 3000},
              {PI / 3, 8, 75, 600},
              {0.4 * PI, 10, 150, 400}};
  for (int a = 0; a < 5; a++) {
    int K = cfg[a].K, L = cfg[a].L, N = cfg[a].seeds, hits = 0;
    double q[D] = {0}, x[D] = {0};
    q[0] = 1.3;
    x[0] = 2.0 * cos(cfg[a].theta);
    x[1] = 2.0 * sin(cfg[a].theta);
    double *W = xmalloc(sizeof(double) * D * K * L);
    uint32_t *cq = xmalloc(sizeof(uint32_t) * L), *cx = xmalloc(sizeof(uint32_t) * L);
    for (int s = 0; s < N; s++) {
      ref_gaussian_fill(1 + (uint64_t)s + 1000003u * (uint64_t)a, (size_t)D * K * L, W);
      ref_simhash_codes(D, K, L, W, q, cq);
      ref_simhash_codes(D, K, L, W, x, cx);
      int eq = 0;
      for (int l = 0; l < L; l++) eq += cq[l] == cx[l];
      hits += eq >= 2;
    }
    double u = u_literal(cfg[a].theta, K, L), f = (double)hits / N, sd = sqrt(u * (1 - u) / N);
    check(fabs(f - u) <= 4 * sd,
          "magicpig: P(>=2 of L equal) theta=%.3f K=%d L=%d: %.4f vs u %.4f (%.1f sd, %d seeds)",
          cfg[a].theta, K, L, f, u, fabs(f - u) / sd, N);
    free(W);
    free(cq);
    free(cx);
  }
}

static void test_magicpig_unbiased(void) {
  enum { G = 1, D = 16, T = 256, N = 1500 };
  data d = data_make(G, D, T, 131);
  ref_row r = row_of(&d);
  ref_magicpig_params p;
  ref_magicpig_defaults(&p);
  p.K = 3;
  p.L = 6;
  double o[D], l, od[D], ld, *corr = xmalloc(sizeof(double) * G * T);
  must(ref_attend(G, D, T, d.q, d.k, d.v, REF_SHARED, NULL, NULL, od, &ld), "dense");
  /* Unbiased targets: the softmax's denominator Z and numerator Z*o (channel 0, and summed). */
  double truth[3] = {exp(ld), exp(ld) * od[0], 0.0};
  for (int c = 0; c < D; c++) truth[2] += exp(ld) * od[c];
  double sum[3] = {0}, sq[3] = {0}, frac = 0.0;
  ref_sel s = REF_SEL_EMPTY;
  for (int seed = 0; seed < N; seed++) {
    p.seed = 5000 + (uint64_t)seed;
    must(ref_magicpig(&r, &p, &s, corr, NULL), "magicpig");
    must(ref_attend_sel(&r, &s, corr, o, &l), "attend");
    double x[3] = {exp(l), exp(l) * o[0], 0.0};
    for (int c = 0; c < D; c++) x[2] += exp(l) * o[c];
    for (int j = 0; j < 3; j++) {
      sum[j] += x[j];
      sq[j] += x[j] * x[j];
    }
    frac += (double)(ref_sel_count(&s, 0) - 68) / (T - 68) / N;
  }
  double z[3];
  for (int j = 0; j < 3; j++) {
    double mean = sum[j] / N, var = (sq[j] - N * mean * mean) / (N - 1);
    z[j] = (mean - truth[j]) / sqrt(var / N);
  }
  check(
      fabs(z[0]) < 3 && fabs(z[1]) < 3 && fabs(z[2]) < 3 && frac > 0.05 && frac < 0.95,
      "magicpig: unbiased at %.0f%% sampled, z: denominator %.2f, numerator %.2f (ch 0) %.2f (sum)",
      100 * frac, z[0], z[1], z[2]);
  ref_sel_free(&s);
  free(corr);
  data_free(&d);
}

static void test_magicpig_error_vs_L(void) {
  enum { G = 2, D = 16, T = 256, N = 60 };
  data d = data_make(G, D, T, 141);
  ref_row r = row_of(&d);
  ref_magicpig_params p;
  ref_magicpig_defaults(&p);
  p.K = 4;
  double od[G * D], o[G * D], *corr = xmalloc(sizeof(double) * G * T), err[3];
  must(ref_attend(G, D, T, d.q, d.k, d.v, REF_SHARED, NULL, NULL, od, NULL), "dense");
  int Ls[3] = {4, 16, 64};
  ref_sel s = REF_SEL_EMPTY;
  for (int a = 0; a < 3; a++) {
    p.L = Ls[a];
    err[a] = 0.0;
    for (int seed = 0; seed < N; seed++) {
      p.seed = 7000 + (uint64_t)seed;
      must(ref_magicpig(&r, &p, &s, corr, NULL), "magicpig");
      must(ref_attend_sel(&r, &s, corr, o, NULL), "attend");
      err[a] += rel_err(G * D, o, od) / N;
    }
  }
  check(err[0] > err[1] && err[1] > err[2],
        "magicpig: mean output error shrinks with L (K=4; L=4: %.3f, 16: %.3f, 64: %.4f)", err[0],
        err[1], err[2]);
  ref_sel_free(&s);
  free(corr);
  data_free(&d);
}

static void test_magicpig_forced_and_centring(void) {
  enum { G = 4, D = 16, T = 200 };
  data d = data_make(G, D, T, 151);
  for (int i = 0; i < T * D; i++) d.k[i] += 3.0; /* keys off-centre, so mu matters */
  ref_row r = row_of(&d);
  ref_magicpig_params p;
  ref_magicpig_defaults(&p);
  p.K = 0; /* no bits: every code agrees in every table, u = 1 for all tokens */
  p.L = 4;
  p.eps = 0.0;
  double od[G * D], o[G * D], *corr = xmalloc(sizeof(double) * G * T), mu[D];
  ref_sel s = REF_SEL_EMPTY;
  must(ref_attend(G, D, T, d.q, d.k, d.v, REF_SHARED, NULL, NULL, od, NULL), "dense");
  must(ref_magicpig(&r, &p, &s, corr, mu), "magicpig");
  must(ref_attend_sel(&r, &s, corr, o, NULL), "attend");
  double e0 = rel_err(G * D, o, od);
  check(sel_all(&s) && e0 < 1e-12,
        "magicpig: u = 1 forced (K=0, eps 0) samples all and == dense (err %.1e)", e0);

  /* With eps 1e-4 the sampled tokens are down-weighted by exactly 1/(1 + 1e-4). */
  p.eps = 1e-4;
  must(ref_magicpig(&r, &p, &s, corr, NULL), "magicpig");
  must(ref_attend_sel(&r, &s, corr, o, NULL), "attend");
  double worst = 0.0;
  for (int h = 0; h < G; h++) {
    double z = 0.0, num[D] = {0};
    for (int i = 0; i < T; i++) {
      double w = exp(logit(&r, h, i)) * (i < 4 || i >= T - 64 ? 1.0 : 1.0 / (1.0 + 1e-4));
      z += w;
      for (int c = 0; c < D; c++) num[c] += w * d.v[i * D + c];
    }
    for (int c = 0; c < D; c++) num[c] /= z;
    worst = fmax(worst, rel_err(D, o + h * D, num));
  }
  check(worst < 1e-12,
        "magicpig: K=0, eps 1e-4 == closed form (kept weight 1, sampled 1/(1+eps)) (err %.1e)",
        worst);

  /* mu is the mean of the keys outside the kept set; centring all keys leaves dense alone. */
  double mu_want[D] = {0};
  for (int i = 4; i < T - 64; i++)
    for (int c = 0; c < D; c++) mu_want[c] += d.k[i * D + c] / (T - 68);
  double *kc = xmalloc(sizeof(double) * T * D);
  for (int i = 0; i < T * D; i++) kc[i] = d.k[i] - mu[i % D];
  double oc[G * D];
  must(ref_attend(G, D, T, d.q, kc, d.v, REF_SHARED, NULL, NULL, oc, NULL), "dense");
  double ec = rel_err(G * D, oc, od), em = rel_err(D, mu, mu_want);
  check(ec < 1e-12 && em < 1e-12,
        "magicpig: mu == mean of non-kept keys (err %.1e); centring keeps dense (err %.1e)", em,
        ec);
  ref_sel_free(&s);
  free(kc);
  free(corr);
  data_free(&d);
}

/* ---- universal test: budget >= T is dense ---- */

enum {
  U_DENSE,
  U_STREAMING,
  U_TOPK_SHARED,
  U_TOPK_HEAD,
  U_BLOCK,
  U_QUEST_SHARED,
  U_QUEST_HEAD,
  U_LSERVE,
  U_GQA,
  U_DS,
  U_H2O,
  U_MAGICPIG,
  U_N
};
static const char *const u_name[U_N] = {
    "dense",          "streaming", "topk shared", "topk per-head",   "block_topk", "quest shared",
    "quest per-head", "lserve",    "gqa_softmax", "double_sparsity", "h2o",        "magicpig"};

/* Selection (and corrections) of policy u at budget B on r. */
static void universal_select(int u, const ref_row *r, int P, int B, ref_sel *s, double *corr) {
  static const int chan[4] = {0, 2, 3, 7};
  int rc;
  memset(corr, 0, sizeof(double) * r->G * r->T);
  switch (u) {
  case U_DENSE: rc = ref_select_dense(r, s); break;
  case U_STREAMING: rc = ref_select_streaming(r, 4, B - 4 > 0 ? B - 4 : 0, s); break;
  case U_TOPK_SHARED: rc = ref_select_topk(r, REF_SHARED, B, 4, 64, s); break;
  case U_TOPK_HEAD: rc = ref_select_topk(r, REF_PER_HEAD, B, 4, 64, s); break;
  case U_BLOCK: rc = ref_select_block_topk(r, P, B, s); break;
  case U_QUEST_SHARED: rc = ref_select_quest(r, REF_SHARED, P, B, s); break;
  case U_QUEST_HEAD: rc = ref_select_quest(r, REF_PER_HEAD, P, B, s); break;
  case U_LSERVE: rc = ref_select_lserve(r, P, B, s); break;
  case U_GQA: rc = ref_select_gqa_softmax(r, P, B, s); break;
  case U_DS: rc = ref_select_double_sparsity(r, REF_SHARED, B, 4, 64, 4, chan, s); break;
  case U_H2O: {
    ref_h2o st;
    ref_h2o_init(&st);
    rc = ref_h2o_step(&st, r, B, 64, 0.5, s, NULL, NULL);
    ref_h2o_free(&st);
    break;
  }
  default: {
    ref_magicpig_params p;
    ref_magicpig_defaults(&p);
    p.K = 4;
    p.L = 8;
    p.window = B - 4; /* the kept set covers the row */
    rc = ref_magicpig(r, &p, s, corr, NULL);
  }
  }
  must(rc, u_name[u]);
}

static void test_universal(void) {
  int Ds[3] = {8, 64, 128}, Gs[4] = {1, 2, 4, 8}, Ps[3] = {1, 16, 64}, Ts[4] = {1, 37, 100, 130};
  double worst[U_N] = {0};
  int bad[U_N] = {0}, cfgs = 0;
  ref_sel s = REF_SEL_EMPTY;
  printf(
      "      universal grid: D 8/64/128 x G 1/2/4/8 x P 1/16/64 x T 1/37/100/130, B T or 2T+3\n");
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 4; b++)
      for (int c = 0; c < 3; c++)
        for (int e = 0; e < 4; e++, cfgs++) {
          int D = Ds[a], G = Gs[b], P = Ps[c], T = Ts[e], B = cfgs % 2 ? T : 2 * T + 3;
          data d = data_make(G, D, T, 9000 + (uint64_t)cfgs);
          ref_row r = row_of(&d);
          double *od = xmalloc(sizeof(double) * G * D), *o = xmalloc(sizeof(double) * G * D);
          double *corr = xmalloc(sizeof(double) * G * T), ld[8], l[8];
          must(ref_attend(G, D, T, d.q, d.k, d.v, REF_SHARED, NULL, NULL, od, ld), "dense");
          for (int u = 0; u < U_N; u++) {
            universal_select(u, &r, P, B, &s, corr);
            must(ref_attend_sel(&r, &s, corr, o, l), "attend");
            double err = fmax(rel_err(G * D, o, od), rel_err(G, l, ld));
            worst[u] = fmax(worst[u], err);
            if (!sel_all(&s) || !(err < 1e-12)) {
              if (!bad[u])
                printf("      %s differs from dense at D=%d G=%d P=%d T=%d B=%d\n", u_name[u], D, G,
                       P, T, B);
              bad[u]++;
            }
          }
          free(od);
          free(o);
          free(corr);
          data_free(&d);
        }
  for (int u = 0; u < U_N; u++)
    check(!bad[u], "universal: %-15s budget >= T: all selected, == dense in %d configs (err %.1e)",
          u_name[u], cfgs - bad[u], worst[u]);
  ref_sel_free(&s);
}

/* ---- synthetic regimes (section 9) ---- */

static void test_synthetic(void) {
  enum { D = 64, T = 2048, P = 16, B = T / 16, SEEDS = 8 };
  int quest_hits = 0, block_hits = 0, stream_miss = 0, weighty = 0;
  double min_w = 1.0, max_other = 0.0;
  ref_sel s = REF_SEL_EMPTY;
  for (int seed = 0; seed < SEEDS; seed++) {
    ref_syn_params sp;
    ref_syn y;
    /* quest: shared over a group of 4, the needle answering one head of it */
    ref_syn_defaults(&sp, REF_SYN_RETRIEVAL, 4, D, T, 300 + (uint64_t)seed);
    sp.needle_head = seed % 4;
    must(ref_syn_make(&sp, &y), "syn");
    ref_row r = ref_syn_row(&y);
    must(ref_select_quest(&r, REF_SHARED, P, B, &s), "quest");
    quest_hits += s.mask[y.needle_pos];
    ref_syn_free(&y);

    /* block_topk ranks by the group-mean query, which dilutes a one-head needle: G = 1 */
    ref_syn_defaults(&sp, REF_SYN_RETRIEVAL, 1, D, T, 400 + (uint64_t)seed);
    must(ref_syn_make(&sp, &y), "syn");
    r = ref_syn_row(&y);
    must(ref_select_block_topk(&r, P, B, &s), "block_topk");
    block_hits += s.mask[y.needle_pos];
    ref_syn_free(&y);

    /* streaming with the same budget, needle early */
    ref_syn_defaults(&sp, REF_SYN_RETRIEVAL, 4, D, T, 500 + (uint64_t)seed);
    sp.needle_pos = T / 4 + seed;
    sp.needle_head = seed % 4;
    must(ref_syn_make(&sp, &y), "syn");
    r = ref_syn_row(&y);
    must(ref_select_streaming(&r, 4, B - 4, &s), "streaming");
    stream_miss += !s.mask[y.needle_pos];
    double *w = xmalloc(sizeof(double) * 4 * T);
    must(ref_attn_probs(4, D, T, y.q, y.k, REF_SHARED, NULL, NULL, w, NULL), "probs");
    for (int h = 0; h < 4; h++) {
      double wn = w[h * T + y.needle_pos];
      if (h == y.needle_head)
        min_w = fmin(min_w, wn);
      else
        max_other = fmax(max_other, wn);
    }
    weighty += w[y.needle_head * T + y.needle_pos] > 0.25;
    free(w);
    ref_syn_free(&y);
  }
  check(weighty == SEEDS && max_other < 0.05,
        "synthetic retrieval: needle holds >= %.2f of its head's mass, <= %.1e of others'", min_w,
        max_other);
  check(quest_hits == SEEDS,
        "synthetic retrieval: quest (G=4, shared) finds the needle at 1/16 budget in %d/%d seeds",
        quest_hits, SEEDS);
  check(block_hits == SEEDS,
        "synthetic retrieval: block_topk (G=1) finds the needle at 1/16 budget in %d/%d seeds",
        block_hits, SEEDS);
  check(stream_miss == SEEDS,
        "synthetic retrieval: streaming at 1/16 budget loses an early needle in %d/%d seeds",
        stream_miss, SEEDS);

  /* magicpig on the cone: uncentred keys point away from every query, so almost nothing
   * collides; centring restores ~u(pi/2). */
  ref_syn_params sp;
  ref_syn y;
  ref_syn_defaults(&sp, REF_SYN_RETRIEVAL, 2, D, T, 600);
  must(ref_syn_make(&sp, &y), "syn");
  ref_row r = ref_syn_row(&y);
  ref_magicpig_params p;
  ref_magicpig_defaults(&p);
  p.K = 8;
  p.L = 75;
  double *corr = xmalloc(sizeof(double) * 2 * T), frac[2];
  for (int c = 0; c < 2; c++) {
    p.centre = c;
    must(ref_magicpig(&r, &p, &s, corr, NULL), "magicpig");
    frac[c] = (ref_sel_count(&s, 0) + ref_sel_count(&s, 1) - 2 * 68) / (2.0 * (T - 68));
  }
  check(frac[1] > 0.01 && frac[0] < 0.1 * frac[1],
        "synthetic: magicpig K=8 L=75 samples %.4f%% uncentred vs %.2f%% centred", 100 * frac[0],
        100 * frac[1]);
  ref_syn_free(&y);

  /* aggregation: the group shares one group-mean logit, sink's - log m */
  ref_syn_defaults(&sp, REF_SYN_AGGREGATION, 4, D, T, 700);
  must(ref_syn_make(&sp, &y), "syn");
  r = ref_syn_row(&y);
  int m = 0;
  for (int i = 0; i < T; i++) m += y.group[i];
  double target = mean_logit(&r, 0) - log((double)m), worst = 0.0, mass = 0.0;
  double *w = xmalloc(sizeof(double) * 4 * T);
  must(ref_attn_probs(4, D, T, y.q, y.k, REF_SHARED, NULL, NULL, w, NULL), "probs");
  for (int i = 0; i < T; i++) {
    if (!y.group[i]) continue;
    worst = fmax(worst, fabs(mean_logit(&r, i) - target));
    for (int h = 0; h < 4; h++) mass += w[h * T + i] / 4;
  }
  check(m == (int)lround(0.1 * (T - 1)) && worst < 1e-9 && mass > 0.25 && mass < 0.75 &&
            !y.group[0],
        "synthetic aggregation: %d tokens at logit sink - log m (err %.1e) hold %.2f of mass", m,
        worst, mass);
  free(w);
  free(corr);
  ref_sel_free(&s);
  ref_syn_free(&y);
}

int main(void) {
  test_attend_hand();
  test_attend_naive();
  test_lse_merge();
  test_summaries();
  test_streaming();
  test_topk();
  test_block_topk();
  test_quest();
  test_lserve();
  test_gqa_softmax();
  test_double_sparsity();
  test_h2o_hand();
  test_h2o_isolation();
  test_magicpig_u();
  test_magicpig_collision();
  test_magicpig_unbiased();
  test_magicpig_error_vs_L();
  test_magicpig_forced_and_centring();
  test_universal();
  test_synthetic();
  printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
