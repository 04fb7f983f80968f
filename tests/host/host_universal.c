/* host_universal.c - ALGORITHMS.md §0's universal test on the CPU backend: every stdlib
 * policy given a budget of at least T (streaming: sink + window >= T; magicpig, which has no
 * budget: every token in its always-kept set) selects every token and gives the compiled
 * dense policy's output within 1e-6 relative in f32 -- in practice bit for bit, since both
 * run the same attend kernel over the same tokens in the same order. The compiled dense
 * policy itself is checked against ref dense (tests/ref) within the f32 error model of
 * numeric.h (nt_cmp_ref).
 *
 * The matrix (every shape runs all ten policies; lserve only where P % 16 == 0):
 *   - full grid: D in {8, 64, 128} x G in {1, 2, 4, 8} x P in {1, 16, 64} x
 *     T in {1, 2, 15, 16, 17, 63, 64, 65, 100, 130} (360 shapes; partial last pages wherever
 *     P does not divide T);
 *   - diagonal for long rows: the `long_rows` table below (T from 257 to 8192, each D, G and
 *     P at least twice, partial and full last pages).
 *   Every third shape has two KV heads; rows are random, or §9 synthetic (retrieval,
 *   aggregation) by turns; page tables are shuffled.
 *   Budgets: T itself on even shapes, npages * P + 7 on odd ones (both "at least T").
 *   magicpig: prefill_len = min(T, 68) and the rest generated, so that every token is kept;
 *   (K, L) = (8, 75) where hashing costs at most MAGICPIG_COST_MAX, else (2, 4) -- the hash
 *   parameters cannot change which tokens are kept.
 * Usage: host_universal STDLIB_DIR. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numeric.h"

#define TOL_SAME 1e-6 /* a policy at budget >= T vs compiled dense (ALGORITHMS.md §0) */
#define MAGICPIG_COST_MAX 2e6

enum { NPOL = 10 };
static const char *const pol_name[NPOL] = {"dense", "streaming", "topk", "block_topk", "quest",
                                           "lserve", "gqa_softmax", "double_sparsity", "magicpig", "h2o"};
static host_policy hps[NPOL];
static double worst[NPOL];
static int runs[NPOL];

/* R distinct channels of [0, D) into the channel file (double_sparsity). */
static void write_channels(int D, int R) {
  char path[256];
  snprintf(path, sizeof path, "%s/double_sparsity.channels", nt_tmpdir());
  FILE *f = fopen(path, "wb");
  for (int j = 0; j < R; j++) {
    uint32_t c = (uint32_t)((j * 5 + 3) % D); /* distinct for R <= D when gcd(5, D) = 1 */
    uint8_t b[4] = {(uint8_t)c, (uint8_t)(c >> 8), (uint8_t)(c >> 16), (uint8_t)(c >> 24)};
    fwrite(b, 1, 4, f);
  }
  fclose(f);
}

static int all_selected(const nt_result *r, int T) {
  for (int h = 0; h < r->H; h++)
    for (int g = 0; g < r->G; g++)
      for (int i = 0; i < T; i++)
        if (!r->sel[((size_t)h * r->G + g) * r->tokens + i])
          return 0;
  return 1;
}

static void run_shape(int idx, int D, int G, int P, int T) {
  int H = idx % 3 == 2 ? 2 : 1, npages = (T + P - 1) / P;
  int budget = idx % 2 ? npages * P + 7 : T;
  nt_gen gen = T < 2 ? NT_RANDOM : (nt_gen)(idx % 3);
  nt_row rows[2];
  for (int h = 0; h < H; h++)
    nt_row_make(&rows[h], gen, G, D, T, 10000 + (uint64_t)idx * 4 + (uint64_t)h, VXK_F32);
  nt_cache c;
  nt_cache_init(&c, H, P, D, npages, npages + 2, VXK_F32, 77 + (uint64_t)idx);
  nt_cache_write(&c, rows, 0, T);
  char tag[160];
  snprintf(tag, sizeof tag, "D=%d G=%d P=%d T=%d H=%d %s budget=%d", D, G, P, T, H, nt_gen_name(gen), budget);

  /* dense: against the reference */
  nt_result dense;
  nt_result_init(&dense, H, G, D, npages * P);
  char err[512] = "";
  if (!nt_check(nt_run(&hps[0].pol, &c, rows, G, T, T, &dense, err, sizeof err) == 0, "dense %s: runs %s", tag, err))
    goto done;
  nt_cmp cmp = {0, 0, 0, 0};
  for (int h = 0; h < H; h++) {
    ref_row r = nt_ref_row(&rows[h], T);
    ref_sel sel = REF_SEL_EMPTY;
    ref_select_dense(&r, &sel);
    nt_cmp_ref(&cmp, &dense, h, &r, &sel, NULL);
    ref_sel_free(&sel);
  }
  nt_check(all_selected(&dense, T) && !cmp.bad,
           "dense %s: all selected, equals ref dense: out err %.2e (%.2f of the f32 error model), lse err %.2e", tag,
           cmp.err, cmp.ratio, cmp.lse_err);
  worst[0] = fmax(worst[0], cmp.ratio);
  runs[0]++;

  for (int p = 1; p < NPOL; p++) {
    host_policy *hp = &hps[p];
    int prefill = T, K = 0, L = 0;
    const char *name = pol_name[p];
    if (!strcmp(name, "lserve") && P % 16)
      continue;
    if (!strcmp(name, "streaming")) {
      host_policy_set(hp, "sink", 4);
      host_policy_set(hp, "window", budget > 4 ? budget - 4 : 0);
    } else if (!strcmp(name, "magicpig")) {
      prefill = T < 68 ? T : 68;
      int big = (double)H * T * D * 8 * 75 > MAGICPIG_COST_MAX;
      K = big ? 2 : 8, L = big ? 4 : 75;
      host_policy_set(hp, "K", K);
      host_policy_set(hp, "L", L);
    } else {
      host_policy_set(hp, "budget", budget);
    }
    if (!strcmp(name, "double_sparsity")) {
      int R = D >= 32 ? 16 : D / 2;
      host_policy_set(hp, "R", R);
      write_channels(D, R);
    }
    nt_result res;
    nt_result_init(&res, H, G, D, npages * P);
    double le = 0, e = INFINITY;
    int ok = nt_run(&hp->pol, &c, rows, G, T, prefill, &res, err, sizeof err) == 0;
    if (ok)
      e = nt_out_diff(&res, &dense, &le);
    char extra[64] = "";
    if (K)
      snprintf(extra, sizeof extra, " (prefill %d, K=%d L=%d)", prefill, K, L);
    nt_check(ok && all_selected(&res, T) && e <= TOL_SAME && le <= TOL_SAME,
             "%s %s%s: all selected, equals compiled dense: out diff %.2e, lse diff %.2e%s%s", name, tag, extra, e, le,
             ok ? "" : " ", err);
    worst[p] = fmax(worst[p], e);
    runs[p]++;
    nt_result_free(&res);
  }
done:
  nt_result_free(&dense);
  nt_cache_free(&c);
  for (int h = 0; h < H; h++)
    nt_row_free(&rows[h]);
}

/* Long rows: a diagonal through (D, G, P), T up to 8192. */
static const struct {
  int D, G, P, T;
} long_rows[] = {
    {128, 8, 64, 8192}, /* full pages */
    {64, 4, 16, 8191},  /* last page 15 of 16 */
    {8, 1, 1, 8192},
    {128, 2, 16, 4097}, /* last page 1 of 16 */
    {64, 1, 64, 4096},
    {8, 8, 16, 2049},
    {128, 4, 1, 1000},
    {64, 2, 64, 3000},  /* last page 56 of 64 */
    {8, 4, 64, 6000},   /* last page 48 of 64 */
    {64, 8, 1, 5000},
    {128, 1, 64, 257},  /* last page 1 of 64 */
    {8, 2, 16, 7777},   /* last page 1 of 16 */
};

int main(int argc, char **argv) {
  nt_set_stdlib(argc > 1 ? argv[1] : "stdlib");
  double t0 = nt_seconds();
  for (int p = 0; p < NPOL; p++)
    nt_compile(pol_name[p], &hps[p]);
  hps[7].pol.base_dir = nt_tmpdir();
  static const int Ds[] = {8, 64, 128}, Gs[] = {1, 2, 4, 8}, Ps[] = {1, 16, 64};
  static const int Ts[] = {1, 2, 15, 16, 17, 63, 64, 65, 100, 130};
  int idx = 0;
  for (int d = 0; d < 3; d++)
    for (int g = 0; g < 4; g++)
      for (int p = 0; p < 3; p++)
        for (size_t t = 0; t < sizeof Ts / sizeof Ts[0]; t++)
          run_shape(idx++, Ds[d], Gs[g], Ps[p], Ts[t]);
  for (size_t i = 0; i < sizeof long_rows / sizeof long_rows[0]; i++)
    run_shape(idx++, long_rows[i].D, long_rows[i].G, long_rows[i].P, long_rows[i].T);
  for (int p = 0; p < NPOL; p++)
    printf("# %-16s %4d shapes, worst %s %.2e\n", pol_name[p], runs[p],
           p ? "relative diff from compiled dense" : "error / f32 error model vs ref dense", worst[p]);
  printf("# %.1f s\n", nt_seconds() - t0);
  for (int p = 0; p < NPOL; p++)
    host_policy_free(&hps[p]);
  return nt_finish();
}
