/* ref_impl.h - helpers shared by the vxref sources (tests/ref) and nothing else: not part of
 * the ref.h API, so tests must not call them. The selection rules every policy reduces to live
 * here once: top-k with lowest-index tie-break, "keep the ends, top the rest" over tokens or
 * pages, and the reduction over the GQA group. */
#ifndef VX_TESTS_REF_IMPL_H
#define VX_TESTS_REF_IMPL_H

#include "ref.h"

#define REF_PI 3.14159265358979323846

double ref_i_dot(int n, const double *a, const double *b);

/* Is i among the first `first` or the last `last` of n? */
static inline int ref_i_at_ends(int i, int n, int first, int last) {
  return i < first || i >= n - last;
}

/* Sets chosen[i] = 1 for the k highest-scoring i with eligible[i] (all of them if fewer; none
 * if k <= 0); ties go to the lower index; other entries of chosen are left as they are. */
int ref_i_top(int n, const double *score, const uint8_t *eligible, int k, uint8_t *chosen);

/* The rule every selection reduces to, over units of P tokens (P = 1: tokens): keep the
 * first keep_first and last keep_last units, then the top budget/P - kept of the others by
 * score ([G][units] when per head, [units] when shared). budget >= T selects all. */
int ref_i_select(int G, int T, int P, ref_scope scope, const double *score, int budget,
                 int keep_first, int keep_last, ref_sel *out);

/* out[j] = mean (use_max 0) or max (use_max 1) over g of x[g][j]; x is [G][n]. out may be x
 * itself (the result overwrites head 0's row). */
void ref_i_reduce_heads(int G, int n, const double *x, int use_max, double *out);

/* out[g] = sum_i w[g][i] v[i]: the value mix once the weights are known. */
void ref_i_mix(int G, int D, int T, const double *w, const double *v, double *out);

#endif
