/* host_numeric.c - every stdlib policy, compiled to host code and run by the CPU executor,
 * against the float64 references of tests/ref (ALGORITHMS.md §1-7):
 *   - selections (exec_step's `selected`) equal the reference's exactly, per KV head and query
 *     head, and outputs/LSEs match ref_attend_sel on the same selection (with magicpig's
 *     corrections) within the f32 error model below, on random rows and on §9 synthetic rows,
 *     over a matrix of (D, G, P, T, budget) with partial last pages, T = 1, budgets below the
 *     always-kept set, two KV heads and shuffled page tables (the `cases` table), and many
 *     more seeds for magicpig ((K, L) in {(10, 150), (9, 120), (8, 75)}, 3 seeds of W);
 *   - the properties ALGORITHMS.md lists where they concern the compiled policy;
 *   - h2o over several decode steps (state carried by the executor), a hand-computed example,
 *     and isolation between rows;
 *   - load-time errors: lserve's require, double_sparsity's channel file;
 *   - f16 and bf16 caches against the reference on the rounded keys and values.
 * Usage: host_numeric STDLIB_DIR. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numeric.h"

/* Outputs are compared per query head by relative L2 error, LSEs by |lse - ref| / max(1,
 * |ref|), within NT_TOL_FACTOR (8) times nt_err_model's estimate of the f32 rounding error
 * (numeric.h): the logit's dot product over D channels and the sum over T tokens, scaled by
 * how much the data magnifies them. The model tracks the observed error closely (worst
 * observed / model ~ 1, printed at the end), so 8x is margin, while a real mistake (a wrong
 * token in or out, a missing correction, a page read through the wrong table entry) costs
 * orders of magnitude more. */

typedef enum {
  P_DENSE, P_STREAMING, P_TOPK, P_BLOCK_TOPK, P_QUEST, P_LSERVE, P_GQA_SOFTMAX, P_DOUBLE_SPARSITY,
  P_MAGICPIG, P_H2O, NPOL
} pol_id;

static const char *const pol_name[NPOL] = {"dense", "streaming", "topk", "block_topk", "quest",
                                           "lserve", "gqa_softmax", "double_sparsity", "magicpig", "h2o"};
static host_policy hps[NPOL];
static nt_cmp worst[NPOL]; /* per policy, for the summary */

/* magicpig hashes every key with L*K hyperplanes of D channels, in the compiled summarise
 * and in the float64 reference alike (~1e8 multiply-adds a second each in a Debug build):
 * its cases are sized by this cost, H T D L K, to keep the suite within seconds. */
#define MAGICPIG_COST_MAX 3e7
static long magicpig_sampled;
static double magicpig_cost(int H, int T, int D, int K, int L) { return (double)H * T * D * K * L; }

/* ---- double_sparsity's channel file ---- */

static int ds_R(int D) { return D >= 32 ? 16 : D / 2; }

/* R distinct channels of [0, D), from a seed. */
static void ds_channels(int D, int R, uint64_t seed, int *chan) {
  int *all = malloc(sizeof(int) * (size_t)D);
  for (int i = 0; i < D; i++)
    all[i] = i;
  ref_rng g;
  ref_rng_seed(&g, seed);
  for (int i = 0; i < R; i++) {
    int j = i + ref_rng_below(&g, D - i), t = all[j];
    all[j] = all[i];
    all[i] = t;
    chan[i] = all[i];
  }
  free(all);
}

/* Writes n of the R channels as little-endian u32 into nt_tmpdir()/double_sparsity.channels
 * (n < 0: no file at all). */
static void ds_write(const int *chan, int n) {
  char path[256];
  snprintf(path, sizeof path, "%s/double_sparsity.channels", nt_tmpdir());
  remove(path);
  if (n < 0)
    return;
  FILE *f = fopen(path, "wb");
  for (int i = 0; i < n; i++) {
    uint8_t b[4] = {(uint8_t)chan[i], (uint8_t)(chan[i] >> 8), (uint8_t)(chan[i] >> 16), (uint8_t)(chan[i] >> 24)};
    fwrite(b, 1, 4, f);
  }
  fclose(f);
}

/* ---- one case: a policy over H KV heads of one row ---- */

typedef struct knobs {
  int budget;         /* tokens; streaming: sink 4 + window budget - 4 */
  int K, L, seed;     /* magicpig (0: defaults) */
  int window;         /* h2o (0: default 64) */
} knobs;

static int chan_cache[16];

/* Sets the policy's params for a case; returns the magicpig parameters for the reference. */
static void apply(pol_id p, int D, const knobs *kn, ref_magicpig_params *mp) {
  host_policy *hp = &hps[p];
  switch (p) {
  case P_STREAMING:
    host_policy_set(hp, "sink", 4);
    host_policy_set(hp, "window", kn->budget > 4 ? kn->budget - 4 : 0);
    break;
  case P_DOUBLE_SPARSITY: {
    int R = ds_R(D);
    host_policy_set(hp, "budget", kn->budget);
    host_policy_set(hp, "R", R);
    ds_channels(D, R, (uint64_t)D * 31 + 7, chan_cache);
    ds_write(chan_cache, R);
    break;
  }
  case P_MAGICPIG:
    ref_magicpig_defaults(mp);
    if (kn->K)
      mp->K = kn->K, mp->L = kn->L;
    if (kn->seed)
      mp->seed = (uint64_t)kn->seed;
    host_policy_set(hp, "K", mp->K);
    host_policy_set(hp, "L", mp->L);
    host_policy_set(hp, "seed", (double)mp->seed);
    break;
  case P_H2O:
    host_policy_set(hp, "budget", kn->budget);
    host_policy_set(hp, "window", kn->window ? kn->window : 64);
    host_policy_set(hp, "decay", 0.9);
    break;
  default:
    host_policy_set(hp, "budget", kn->budget);
    break;
  }
}

/* The reference selection (and corrections, [G][T], for magicpig) of one head's row. */
static void reference(pol_id p, const ref_row *r, int P, const knobs *kn, const ref_magicpig_params *mp,
                      ref_sel *sel, double *corr, int *has_corr) {
  int rc = 0, B = kn->budget;
  *has_corr = 0;
  switch (p) {
  case P_DENSE: rc = ref_select_dense(r, sel); break;
  case P_STREAMING: rc = ref_select_streaming(r, 4, B > 4 ? B - 4 : 0, sel); break;
  case P_TOPK: rc = ref_select_topk(r, REF_SHARED, B, 4, 64, sel); break;
  case P_BLOCK_TOPK: rc = ref_select_block_topk(r, P, B, sel); break;
  case P_QUEST: rc = ref_select_quest(r, REF_SHARED, P, B, sel); break;
  case P_LSERVE: rc = ref_select_lserve(r, P, B, sel); break;
  case P_GQA_SOFTMAX: rc = ref_select_gqa_softmax(r, P, B, sel); break;
  case P_DOUBLE_SPARSITY:
    rc = ref_select_double_sparsity(r, REF_SHARED, B, 4, 64, ds_R(r->D), chan_cache, sel);
    break;
  case P_MAGICPIG:
    rc = ref_magicpig(r, mp, sel, corr, NULL);
    *has_corr = 1;
    break;
  case P_H2O: {
    /* one step after prefill: every acc is 0 */
    ref_h2o st;
    ref_h2o_init(&st);
    rc = ref_h2o_step(&st, r, B, kn->window ? kn->window : 64, 0.9, sel, NULL, NULL);
    ref_h2o_free(&st);
    break;
  }
  default: break;
  }
  if (rc) {
    fprintf(stderr, "reference of %s failed\n", pol_name[p]);
    exit(2);
  }
}

typedef struct case_out {
  nt_result res;
  int T, P, G, H;
} case_out;

/* Runs policy p on H KV heads of fresh rows and checks selection and output against the
 * reference. keep != NULL receives the result (for property checks); free it. */
static void run_case(pol_id p, int H, int D, int G, int P, int T, const knobs *kn, nt_gen gen, uint64_t seed,
                     int dtype, case_out *keep) {
  ref_magicpig_params mp;
  apply(p, D, kn, &mp);
  char tag[256];
  snprintf(tag, sizeof tag, "%s %s%s%s H=%d D=%d G=%d P=%d T=%d budget=%d seed=%llu", pol_name[p],
           nt_gen_name(gen), dtype ? " " : "", dtype ? nt_dtype_name(dtype) : "", H, D, G, P, T, kn->budget,
           (unsigned long long)seed);
  if (p == P_MAGICPIG && (kn->K || kn->seed)) {
    size_t n = strlen(tag);
    snprintf(tag + n, sizeof tag - n, " K=%d L=%d Wseed=%llu", mp.K, mp.L, (unsigned long long)mp.seed);
  }
  nt_row *rows = calloc((size_t)H, sizeof *rows);
  for (int h = 0; h < H; h++)
    nt_row_make(&rows[h], gen, G, D, T, seed * 16 + (uint64_t)h, dtype);
  int npages = (T + P - 1) / P;
  nt_cache c;
  nt_cache_init(&c, H, P, D, npages + 1, npages + 4, dtype, seed + 99);
  nt_cache_write(&c, rows, 0, T);
  nt_result res;
  nt_result_init(&res, H, G, D, c.max_row_pages * P);
  char err[512] = "";
  int sel_bad = 0, first = -1, count = 0, sampled = 0;
  nt_cmp cmp = {0, 0, 0, 0};
  if (!nt_check(nt_run(&hps[p].pol, &c, rows, G, T, T, &res, err, sizeof err) == 0, "%s: runs %s", tag, err))
    goto done;
  double *corr = malloc(sizeof(double) * (size_t)G * T);
  for (int h = 0; h < H; h++) {
    ref_row r = nt_ref_row(&rows[h], T);
    ref_sel sel = REF_SEL_EMPTY;
    int has_corr;
    reference(p, &r, P, kn, &mp, &sel, corr, &has_corr);
    int f;
    int bad = nt_sel_diff(&res, h, &sel, T, &f);
    if (bad && first < 0)
      first = f;
    sel_bad += bad;
    if (h == 0)
      count = ref_sel_count(&sel, 0);
    /* magicpig: the sampled (not always-kept) token-heads that the comparison covered */
    for (int g = 0; p == P_MAGICPIG && g < G; g++)
      for (int i = 4; i < T - 64; i++)
        sampled += ref_sel_head(&sel, g)[i] != 0;
    nt_cmp_ref(&cmp, &res, h, &r, &sel, has_corr ? corr : NULL);
    ref_sel_free(&sel);
  }
  free(corr);
  char extra[64] = "";
  if (p == P_MAGICPIG)
    snprintf(extra, sizeof extra, "; %d sampled token-heads", sampled);
  nt_check(sel_bad == 0, "%s: selection equals the reference (%d tokens in head 0, %d mismatches, first at %d%s)", tag,
           count, sel_bad, first, extra);
  magicpig_sampled += sampled;
  nt_check(!cmp.bad, "%s: output rel err %.2e (%.2f of the f32 error model), lse err %.2e", tag, cmp.err, cmp.ratio,
           cmp.lse_err);
  worst[p].err = fmax(worst[p].err, cmp.err);
  worst[p].ratio = fmax(worst[p].ratio, cmp.ratio);
  worst[p].lse_err = fmax(worst[p].lse_err, cmp.lse_err);
done:
  if (keep) {
    keep->res = res;
    keep->T = T;
    keep->P = P;
    keep->G = G;
    keep->H = H;
  } else {
    nt_result_free(&res);
  }
  nt_cache_free(&c);
  for (int h = 0; h < H; h++)
    nt_row_free(&rows[h]);
  free(rows);
}

/* ---- the matrix ---- */

typedef struct shape {
  int H, D, G, P, T, budget;
} shape;

/* Every policy runs every shape (lserve only where P % 16 == 0, magicpig only where T > 68 so
 * that something is sampled, or T = 1) on random rows and both synthetic regimes. */
static const shape cases[] = {
    {1, 64, 4, 16, 300, 128},  /* partial last page (12 of 16) */
    {2, 128, 8, 16, 1000, 256}, /* two KV heads, partial last page (8 of 16) */
    {1, 8, 1, 1, 50, 20},      /* P = 1: every policy is token-granular */
    {2, 64, 2, 64, 777, 256},  /* P = 64, partial last page (9 of 64) */
    {1, 128, 2, 16, 1, 64},    /* T = 1 */
    {1, 64, 4, 16, 17, 16},    /* one full page and one token */
    {1, 64, 4, 16, 500, 40},   /* budget below the always-kept set of topk/double_sparsity */
    {1, 16, 4, 16, 500, 16},   /* budget of one page: below block_topk's two kept pages */
    {1, 32, 8, 64, 2100, 640}, /* 33 pages, the last with 52 tokens */
    {1, 64, 1, 16, 4096, 512}, /* full pages only, long row */
};

static void test_matrix(void) {
  static const nt_gen gens[] = {NT_RANDOM, NT_RETRIEVAL, NT_AGGREGATION};
  for (int p = 0; p < NPOL; p++)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      const shape *s = &cases[i];
      if (p == P_LSERVE && s->P % 16)
        continue;
      /* magicpig: only where something is sampled (T > 68) or T = 1, with (K, L) = (8, 75)
       * (its defaults run in test_magicpig) and one generator where the cost is high */
      int mp = p == P_MAGICPIG;
      double cost = magicpig_cost(s->H, s->T, s->D, 8, 75);
      if (mp && ((s->T <= 68 && s->T != 1) || cost > 2 * MAGICPIG_COST_MAX))
        continue;
      for (int gi = 0; gi < 3; gi++) {
        if (mp && gi && cost > MAGICPIG_COST_MAX / 3)
          continue;
        knobs kn = {s->budget, mp ? 8 : 0, mp ? 75 : 0, 0, 0};
        run_case((pol_id)p, s->H, s->D, s->G, s->P, s->T, &kn, gens[gi], 1000 + i * 10 + (uint64_t)gi, VXK_F32,
                 NULL);
      }
    }
}

/* ---- properties (ALGORITHMS.md) on the compiled selections ---- */

static const uint8_t *sel_of(const case_out *o, int h, int g) {
  return o->res.sel + ((size_t)h * o->G + g) * o->res.tokens;
}

static int count_sel(const uint8_t *s, int T) {
  int n = 0;
  for (int i = 0; i < T; i++)
    n += s[i] != 0;
  return n;
}

/* Shared selections are identical across the query heads of a group. */
static int group_identical(const case_out *o) {
  for (int h = 0; h < o->H; h++)
    for (int g = 1; g < o->G; g++)
      if (memcmp(sel_of(o, h, 0), sel_of(o, h, g), (size_t)o->T))
        return 0;
  return 1;
}

static void test_quest_properties(void) {
  /* last page always selected, |S| <= budget (budget >= P), shared across the group */
  int ok_last = 1, ok_budget = 1, ok_group = 1, n = 0;
  for (int seed = 0; seed < 12; seed++) {
    int P = seed % 3 == 0 ? 16 : seed % 3 == 1 ? 64 : 1;
    int T = 50 + seed * 137, budget = P * (2 + seed % 5);
    case_out o;
    knobs kn = {budget, 0, 0, 0, 0};
    run_case(P_QUEST, 2, 32, 4, P, T, &kn, seed % 2 ? NT_RETRIEVAL : NT_RANDOM, 500 + (uint64_t)seed, VXK_F32, &o);
    for (int h = 0; h < 2; h++) {
      const uint8_t *s = sel_of(&o, h, 0);
      for (int i = (T - 1) / P * P; i < T; i++)
        ok_last &= s[i] != 0;
      ok_budget &= count_sel(s, T) <= budget;
    }
    ok_group &= group_identical(&o);
    n++;
    nt_result_free(&o.res);
  }
  nt_check(ok_last, "quest: the last page is selected in all %d rows", n);
  nt_check(ok_budget, "quest: |S| <= budget in all %d rows", n);
  nt_check(ok_group, "quest: the selection is identical across the group in all %d rows", n);
}

static void test_block_topk_properties(void) {
  int ok_group = 1, ok_ends = 1;
  for (int seed = 0; seed < 8; seed++) {
    int P = seed % 2 ? 16 : 64, T = 300 + 91 * seed;
    case_out o;
    knobs kn = {P * 5, 0, 0, 0, 0};
    run_case(P_BLOCK_TOPK, 1, 64, 8, P, T, &kn, seed % 2 ? NT_AGGREGATION : NT_RANDOM, 600 + (uint64_t)seed,
             VXK_F32, &o);
    ok_group &= group_identical(&o);
    const uint8_t *s = sel_of(&o, 0, 0);
    ok_ends &= s[0] && s[T - 1];
    nt_result_free(&o.res);
  }
  nt_check(ok_group, "block_topk: the selection is identical across the group (G=8, 8 rows)");
  nt_check(ok_ends, "block_topk: the first and the last page are selected (8 rows)");

  /* P = 1 gives the group-mean token top-k (keeping the first and the last token) */
  int same = 1;
  for (int seed = 0; seed < 4; seed++) {
    int T = 200 + 37 * seed, G = 4, D = 32, B = 40;
    nt_row r;
    nt_row_make(&r, NT_RANDOM, G, D, T, 700 + (uint64_t)seed, VXK_F32);
    nt_cache c;
    nt_cache_init(&c, 1, 1, D, T + 1, T + 3, VXK_F32, 9 + (uint64_t)seed);
    nt_cache_write(&c, &r, 0, T);
    nt_result res;
    nt_result_init(&res, 1, G, D, (T + 1));
    host_policy_set(&hps[P_BLOCK_TOPK], "budget", B);
    char err[256];
    ref_sel want = REF_SEL_EMPTY;
    ref_row rr = nt_ref_row(&r, T);
    ref_select_topk(&rr, REF_SHARED, B, 1, 1, &want);
    int f;
    same &= nt_run(&hps[P_BLOCK_TOPK].pol, &c, &r, G, T, T, &res, err, sizeof err) == 0 &&
            nt_sel_diff(&res, 0, &want, T, &f) == 0;
    ref_sel_free(&want);
    nt_result_free(&res);
    nt_cache_free(&c);
    nt_row_free(&r);
  }
  nt_check(same, "block_topk: P=1 selection equals group-mean token top-k (ref topk, sink 1, window 1), 4 rows");
}

static void test_shared_group(void) {
  /* every shared policy gives one selection for the whole group */
  static const pol_id shared[] = {P_STREAMING, P_TOPK, P_LSERVE, P_GQA_SOFTMAX, P_DOUBLE_SPARSITY, P_H2O};
  for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++) {
    case_out o;
    knobs kn = {320, 0, 0, 0, 0};
    run_case(shared[i], 2, 64, 8, 16, 1203, &kn, NT_RETRIEVAL, 800 + i, VXK_F32, &o);
    nt_check(group_identical(&o), "%s: the selection is identical across the group (G=8)", pol_name[shared[i]]);
    nt_result_free(&o.res);
  }
}

static void test_streaming_independent_of_q(void) {
  int G = 4, D = 64, P = 16, T = 700;
  nt_row r;
  nt_row_make(&r, NT_RANDOM, G, D, T, 900, VXK_F32);
  nt_cache c;
  nt_cache_init(&c, 1, P, D, (T + P - 1) / P, (T + P - 1) / P + 2, VXK_F32, 17);
  nt_cache_write(&c, &r, 0, T);
  nt_result a, b;
  nt_result_init(&a, 1, G, D, c.max_row_pages * P);
  nt_result_init(&b, 1, G, D, c.max_row_pages * P);
  host_policy_set(&hps[P_STREAMING], "sink", 4);
  host_policy_set(&hps[P_STREAMING], "window", 100);
  char err[256];
  int ok = nt_run(&hps[P_STREAMING].pol, &c, &r, G, T, T, &a, err, sizeof err) == 0;
  for (int s = 0; s < 5 && ok; s++) {
    nt_row_new_query(&r, 950 + (uint64_t)s);
    ok = nt_run(&hps[P_STREAMING].pol, &c, &r, G, T, T, &b, err, sizeof err) == 0 &&
         !memcmp(a.sel, b.sel, (size_t)G * a.tokens) && count_sel(a.sel, T) == 104;
  }
  nt_check(ok, "streaming: the selection does not depend on q (5 other queries), |S| = sink + window");
  nt_result_free(&a);
  nt_result_free(&b);
  nt_cache_free(&c);
  nt_row_free(&r);
}

typedef struct scored {
  double s;
  int i;
} scored;

static int by_score(const void *pa, const void *pb) {
  const scored *a = pa, *b = pb;
  return a->s != b->s ? (a->s > b->s ? -1 : 1) : a->i - b->i;
}

static void test_topk_argsort(void) {
  /* the compiled selection is the kept ends plus argsort(-s)[:B - 68] of the rest, s the
   * group-mean logit: computed here by sorting, not by the reference's selection code */
  int ok = 1, n = 0;
  for (int seed = 0; seed < 10; seed++) {
    int G = 1 << (seed % 4), D = seed % 2 ? 64 : 128, P = seed % 3 ? 16 : 1, T = 200 + 311 * seed,
        B = 68 + 10 * (seed + 1);
    nt_row r;
    nt_row_make(&r, seed % 2 ? NT_RETRIEVAL : NT_RANDOM, G, D, T, 1100 + (uint64_t)seed, VXK_F32);
    int np = (T + P - 1) / P;
    nt_cache c;
    nt_cache_init(&c, 1, P, D, np, np + 5, VXK_F32, 33 + (uint64_t)seed);
    nt_cache_write(&c, &r, 0, T);
    nt_result res;
    nt_result_init(&res, 1, G, D, np * P);
    host_policy_set(&hps[P_TOPK], "budget", B);
    char err[256];
    ok &= nt_run(&hps[P_TOPK].pol, &c, &r, G, T, T, &res, err, sizeof err) == 0;
    ref_row rr = nt_ref_row(&r, T);
    double *s = malloc(sizeof(double) * (size_t)G * T);
    ref_logits(&rr, s);
    scored *x = malloc(sizeof(scored) * (size_t)T);
    int m = 0;
    for (int i = 4; i < T - 64; i++) {
      double a = 0;
      for (int g = 0; g < G; g++)
        a += s[(size_t)g * T + i];
      x[m++] = (scored){a / G, i};
    }
    qsort(x, (size_t)m, sizeof *x, by_score);
    uint8_t *want = calloc((size_t)T, 1);
    for (int i = 0; i < T; i++)
      want[i] = i < 4 || i >= T - 64;
    for (int j = 0; j < B - 68 && j < m; j++)
      want[x[j].i] = 1;
    for (int i = 0; i < T; i++)
      ok &= !res.sel[i] == !want[i];
    n++;
    free(want);
    free(x);
    free(s);
    nt_result_free(&res);
    nt_cache_free(&c);
    nt_row_free(&r);
  }
  nt_check(ok, "topk: the selection equals 4 sinks + 64 window + argsort(-mean_g s)[:B-68] (%d rows)", n);
}

static void test_lserve(void) {
  /* P = 16: lserve is quest */
  int same = 1;
  for (int seed = 0; seed < 5; seed++) {
    int G = 4, D = 64, P = 16, T = 333 + 100 * seed, B = 96;
    nt_row r;
    nt_row_make(&r, seed % 2 ? NT_RETRIEVAL : NT_RANDOM, G, D, T, 1200 + (uint64_t)seed, VXK_F32);
    int np = (T + P - 1) / P;
    nt_cache c;
    nt_cache_init(&c, 1, P, D, np, np + 1, VXK_F32, 44 + (uint64_t)seed);
    nt_cache_write(&c, &r, 0, T);
    nt_result a, b;
    nt_result_init(&a, 1, G, D, np * P);
    nt_result_init(&b, 1, G, D, np * P);
    host_policy_set(&hps[P_LSERVE], "budget", B);
    host_policy_set(&hps[P_QUEST], "budget", B);
    char err[256];
    same &= nt_run(&hps[P_LSERVE].pol, &c, &r, G, T, T, &a, err, sizeof err) == 0 &&
            nt_run(&hps[P_QUEST].pol, &c, &r, G, T, T, &b, err, sizeof err) == 0 && nt_same(&a, &b);
    nt_result_free(&a);
    nt_result_free(&b);
    nt_cache_free(&c);
    nt_row_free(&r);
  }
  nt_check(same, "lserve: P=16 gives exactly quest's selection and output (5 rows)");

  /* require P % 16 == 0: exec_create refuses other P with a message */
  static const int Ps[] = {1, 8, 24, 40, 16, 32, 64, 128};
  for (size_t i = 0; i < sizeof Ps / sizeof Ps[0]; i++) {
    exec_shape sh = {1, 1, 64, 4, Ps[i], 8, 1, 4};
    char err[256] = "";
    exec_state *st = exec_create(&hps[P_LSERVE].pol, &sh, err, sizeof err);
    if (Ps[i] % 16)
      nt_check(!st && strstr(err, "require #1") && strstr(err, "P="),
               "lserve: exec_create refuses P=%d: \"%s\"", Ps[i], err);
    else
      nt_check(st != NULL, "lserve: exec_create accepts P=%d %s", Ps[i], err);
    exec_destroy(st);
  }
}

static void test_double_sparsity_file(void) {
  host_policy *hp = &hps[P_DOUBLE_SPARSITY];
  hp->pol.base_dir = nt_tmpdir();
  int chan[16];
  ds_channels(64, 16, 5, chan);
  host_policy_set(hp, "R", 16);
  exec_shape sh = {1, 1, 64, 4, 16, 8, 1, 4};
  struct {
    int n;
    const char *want, *what;
  } files[] = {{-1, "cannot open", "a missing"}, {15, "is shorter", "a short (15 of 16 entries)"},
               {0, "is shorter", "an empty"}, {16, NULL, "a correct"}};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    ds_write(chan, files[i].n);
    char err[512] = "";
    exec_state *st = exec_create(&hp->pol, &sh, err, sizeof err);
    if (files[i].want)
      nt_check(!st && strstr(err, files[i].want) && strstr(err, "double_sparsity.channels") && strstr(err, "chan"),
               "double_sparsity: %s channel file is refused by exec_create: \"%s\"", files[i].what, err);
    else
      nt_check(st != NULL, "double_sparsity: %s channel file is accepted %s", files[i].what, err);
    exec_destroy(st);
  }
  /* a long file (17 entries for R = 16) is refused too */
  int chan17[17];
  memcpy(chan17, chan, sizeof chan);
  chan17[16] = 0;
  ds_write(chan17, 17);
  char err[512] = "";
  exec_state *st = exec_create(&hp->pol, &sh, err, sizeof err);
  nt_check(!st && strstr(err, "is longer"), "double_sparsity: a long channel file is refused: \"%s\"", err);
  exec_destroy(st);
  /* base_dir NULL resolves against the working directory, where there is no such file */
  hp->pol.base_dir = NULL;
  st = exec_create(&hp->pol, &sh, err, sizeof err);
  nt_check(!st && strstr(err, "cannot open"), "double_sparsity: no base_dir, no file in cwd: \"%s\"", err);
  exec_destroy(st);
  hp->pol.base_dir = nt_tmpdir();
}

/* ---- magicpig ---- */

static void test_magicpig(void) {
  host_policy *hp = &hps[P_MAGICPIG];
  /* W = gaussian(seed) draws exactly ref_gaussian_fill(seed), in [D][L][K] order */
  static const int seeds[] = {1, 2, 12345};
  for (size_t s = 0; s < 3; s++) {
    int D = 16, K = 9, L = 20;
    host_policy_set(hp, "K", K);
    host_policy_set(hp, "L", L);
    host_policy_set(hp, "seed", seeds[s]);
    exec_shape sh = {1, 1, D, 2, 16, 4, 1, 4};
    char err[256];
    exec_state *st = exec_create(&hp->pol, &sh, err, sizeof err);
    int W = nt_tensor(&hp->pol, "W"), ok = st && W >= 0;
    double *want = malloc(sizeof(double) * (size_t)D * K * L);
    ref_gaussian_fill((uint64_t)seeds[s], (size_t)D * K * L, want);
    exec_kv kv = {NULL, NULL, 0, NULL, 1, 1};
    for (int c = 0; c < D && ok; c++)
      for (int l = 0; l < L; l++)
        for (int b = 0; b < K; b++) {
          int idx[3] = {c, l, b};
          float x;
          ok &= exec_read_tensor(st, 0, 0, 0, &kv, W, idx, &x) && x == (float)want[((size_t)c * L + l) * K + b];
        }
    nt_check(ok, "magicpig: const W (D=%d, L=%d, K=%d) equals ref_gaussian_fill(%d) rounded to f32", D, L, K,
             seeds[s]);
    free(want);
    exec_destroy(st);
  }

  /* selection equal to the reference's per head on many seeds, with the estimator's output;
   * and mu equal to the reference's */
  int mu_ok = 1;
  double mu_err = 0;
  static const int Ds[] = {32, 16, 64, 128, 8};
  for (int seed = 0; seed < 20; seed++) {
    /* (K, L) in {(10, 150), (9, 120), (8, 75)}, W seeds 1-3, P 16/64/1, G 1-8; T from 69
     * up as the cost allows, partial last pages */
    int G = 1 << (seed % 4), D = Ds[seed % 5], P = seed % 3 == 0 ? 16 : seed % 3 == 1 ? 64 : 1, H = seed % 7 ? 1 : 2;
    int K = 10 - seed % 3, L = K == 10 ? 150 : K == 9 ? 120 : 75;
    int T = 100 + 53 * seed;
    while (T > 100 && magicpig_cost(H, T, D, K, L) > MAGICPIG_COST_MAX / 4)
      T = T * 3 / 4 > 100 ? T * 3 / 4 : 100;
    knobs kn = {0, K, L, 1 + seed % 3, 0};
    run_case(P_MAGICPIG, H, D, G, P, T, &kn, seed % 3 == 2 ? NT_AGGREGATION : seed % 3 ? NT_RETRIEVAL : NT_RANDOM,
             2000 + (uint64_t)seed, VXK_F32, NULL);
  }
  /* mu after prefill against the reference's (its hashing switched off: K = 0, L = 1) */
  for (int seed = 0; seed < 6; seed++) {
    int G = 2, D = Ds[seed % 5], P = seed % 2 ? 16 : 64, T = 100 + 150 * seed;
    host_policy_set(hp, "K", 1);
    host_policy_set(hp, "L", 2);
    nt_row r;
    nt_row_make(&r, NT_RANDOM, G, D, T, 2100 + (uint64_t)seed, VXK_F32);
    int np = (T + P - 1) / P;
    nt_cache c;
    nt_cache_init(&c, 1, P, D, np, np + 2, VXK_F32, 3 + (uint64_t)seed);
    nt_cache_write(&c, &r, 0, T);
    exec_shape sh = nt_shape(&c, G);
    char err[256];
    exec_state *st = exec_create(&hp->pol, &sh, err, sizeof err);
    exec_kv kv = nt_kv(&c, T, T);
    mu_ok &= st && exec_prefill(st, 0, 0, &kv, err, sizeof err);
    ref_magicpig_params mp;
    ref_magicpig_defaults(&mp);
    mp.K = 0, mp.L = 1;
    ref_row rr = nt_ref_row(&r, T);
    ref_sel sel = REF_SEL_EMPTY;
    double *corr = malloc(sizeof(double) * (size_t)G * T), *mu = malloc(sizeof(double) * (size_t)D);
    ref_magicpig(&rr, &mp, &sel, corr, mu);
    int id = nt_tensor(&hp->pol, "mu");
    /* an f32 running sum of n values then a division: |err| <= n eps_f32 max|k| */
    double scale = 0;
    for (int i = 0; i < T * D; i++)
      scale = fmax(scale, fabs(r.k[i]));
    scale *= (T - 68) * (double)FLT_EPSILON;
    for (int d = 0; d < D && mu_ok; d++) {
      float x;
      mu_ok &= exec_read_tensor(st, 0, 0, 0, &kv, id, &d, &x);
      mu_err = fmax(mu_err, fabs(x - mu[d]) / scale);
    }
    ref_sel_free(&sel);
    free(corr);
    free(mu);
    exec_destroy(st);
    nt_cache_free(&c);
    nt_row_free(&r);
  }
  nt_check(mu_ok && mu_err <= 1, "magicpig: mu after prefill equals the reference's within n eps max|k| (worst %.2f of it)",
           mu_err);
}

/* ---- h2o over several steps ---- */

/* The hand-computed example of tests/ref/ref_selftest.c (D = 1, G = 2, window 1, decay 1/2,
 * budgets 2, 3, 3) through the compiled policy, one token appended per step. The budget
 * changes between steps through the params array that the state shares with host_policy. */
static void test_h2o_hand(void) {
  host_policy *hp = &hps[P_H2O];
  double q[2] = {1, 0}, k[5] = {log(4.0), 0, log(2.0), 0, log(8.0)}, v[5] = {1, 2, 3, 4, 5};
  static const uint8_t want_sel[3][5] = {{1, 0, 1}, {1, 0, 1, 1}, {1, 0, 1, 0, 1}};
  static const double want_acc[3][5] = {{7.0 / 12, 0, 5.0 / 12},
                                        {125.0 / 168, 0, 87.0 / 168, 40.0 / 168},
                                        {229.0 / 336, 0, 167.0 / 336, 40.0 / 336, 152.0 / 336}};
  int budgets[3] = {2, 3, 3};
  for (int P = 1; P <= 4; P *= 2) {
    host_policy_set(hp, "window", 1);
    host_policy_set(hp, "decay", 0.5);
    nt_row r = {2, 1, 5, NULL, NULL, NULL};
    r.q = malloc(sizeof q), r.k = malloc(sizeof k), r.v = malloc(sizeof v);
    for (int i = 0; i < 5; i++)
      r.k[i] = (float)k[i], r.v[i] = v[i];
    memcpy(r.q, q, sizeof q);
    nt_cache c;
    nt_cache_init(&c, 1, P, 1, 5, 7, VXK_F32, 5);
    nt_cache_write(&c, &r, 0, 3);
    exec_shape sh = nt_shape(&c, 2);
    char err[256] = "";
    exec_state *st = exec_create(&hp->pol, &sh, err, sizeof err);
    exec_kv kv = nt_kv(&c, 3, 3);
    int ok = st && exec_prefill(st, 0, 0, &kv, err, sizeof err);
    nt_result res;
    nt_result_init(&res, 1, 2, 1, 5 * P);
    double acc_err = 0;
    int acc = nt_tensor(&hp->pol, "acc");
    for (int step = 0; step < 3 && ok; step++) {
      int T = 3 + step;
      if (step) {
        nt_cache_write(&c, &r, T - 1, T);
        kv = nt_kv(&c, T, 3);
        ok &= exec_append(st, 0, 0, &kv, T - 1, err, sizeof err);
      }
      host_policy_set(hp, "budget", budgets[step]);
      ok &= nt_step(st, 0, &c, &r, T, 3, &res, err, sizeof err) == 0;
      for (int i = 0; i < T; i++) {
        ok &= !res.sel[i] == !want_sel[step][i];
        int idx[2] = {i / P, i % P};
        float x = NAN;
        ok &= exec_read_tensor(st, 0, 0, 0, &kv, acc, idx, &x);
        acc_err = fmax(acc_err, fabs(x - want_acc[step][i]));
      }
    }
    ok &= fabs(res.out[0] - 25.0 / 7) < 1e-6 && fabs(res.out[1] - 3.0) < 1e-6;
    nt_check(ok && acc_err < 1e-6,
             "h2o: hand-computed 3-step example, P=%d: selections, acc (worst err %.1e), step 3 outputs %g, %g %s", P,
             acc_err, res.out[0], res.out[1], err);
    nt_result_free(&res);
    exec_destroy(st);
    nt_cache_free(&c);
    nt_row_free(&r);
  }
}

/* Decode steps [from, from + n) of one request (H heads, prefilled with T0 tokens) on row
 * `row` of st: each appends one token (written to the cache first) and decodes it with a
 * query drawn from query stream `stream`, so a request sees the same queries on any row. */
static int decode_steps(exec_state *st, int row, nt_cache *c, nt_row *rows, int T0, int from, int n, int stream,
                        nt_result *out, char *err, size_t errlen) {
  for (int s = from; s < from + n; s++) {
    int T = T0 + s + 1;
    nt_cache_write(c, rows, T - 1, T);
    exec_kv kv = nt_kv(c, T, T0);
    if (!exec_append(st, row, 0, &kv, T - 1, err, errlen))
      return -1;
    for (int h = 0; h < c->H; h++)
      nt_row_new_query(&rows[h], (uint64_t)(stream * 1000 + s * 10 + h));
    if (nt_step(st, row, c, rows, T, T0, &out[s], err, errlen))
      return -1;
  }
  return 0;
}

static void test_h2o_steps(void) {
  host_policy *hp = &hps[P_H2O];
  struct {
    int D, G, P, T0, budget, window, steps;
  } cfgs[] = {{64, 4, 16, 200, 48, 8, 12}, {32, 2, 1, 90, 30, 4, 8}, {128, 8, 64, 300, 130, 64, 6},
              {16, 1, 16, 37, 20, 3, 40}};
  for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
    int D = cfgs[ci].D, G = cfgs[ci].G, P = cfgs[ci].P, T0 = cfgs[ci].T0, n = cfgs[ci].steps, H = 2;
    int Tend = T0 + n, np = (Tend + P - 1) / P;
    knobs kn = {cfgs[ci].budget, 0, 0, 0, cfgs[ci].window};
    apply(P_H2O, D, &kn, NULL);
    nt_row rows[2];
    for (int h = 0; h < H; h++)
      nt_row_make(&rows[h], NT_RANDOM, G, D, Tend, 3000 + ci * 4 + (uint64_t)h, VXK_F32);
    nt_cache c;
    nt_cache_init(&c, H, P, D, np, np + 3, VXK_F32, 71 + ci);
    nt_cache_write(&c, rows, 0, T0);
    exec_shape sh = nt_shape(&c, G);
    char err[256] = "";
    exec_state *st = exec_create(&hp->pol, &sh, err, sizeof err);
    exec_kv kv = nt_kv(&c, T0, T0);
    int ok = st && exec_prefill(st, 0, 0, &kv, err, sizeof err);
    ref_h2o ref[2];
    ref_h2o_init(&ref[0]);
    ref_h2o_init(&ref[1]);
    int acc = nt_tensor(&hp->pol, "acc"), sel_bad = 0, steps_done = 0;
    double aerr = 0;
    nt_cmp cmp = {0, 0, 0, 0};
    nt_result res;
    nt_result_init(&res, H, G, D, np * P);
    for (int s = 0; s < n && ok; s++) {
      int T = T0 + s + 1;
      nt_cache_write(&c, rows, T - 1, T);
      kv = nt_kv(&c, T, T0);
      ok &= exec_append(st, 0, 0, &kv, T - 1, err, sizeof err);
      for (int h = 0; h < H; h++)
        nt_row_new_query(&rows[h], 3100 + (uint64_t)(s * 2 + h));
      ok &= nt_step(st, 0, &c, rows, T, T0, &res, err, sizeof err) == 0;
      for (int h = 0; h < H && ok; h++) {
        ref_row r = nt_ref_row(&rows[h], T);
        ref_sel sel = REF_SEL_EMPTY;
        ref_h2o_step(&ref[h], &r, kn.budget, kn.window, 0.9, &sel, NULL, NULL);
        int f;
        sel_bad += nt_sel_diff(&res, h, &sel, T, &f);
        nt_cmp_ref(&cmp, &res, h, &r, &sel, NULL);
        for (int i = 0; i < T; i++) {
          int idx[2] = {i / P, i % P};
          float x = NAN;
          exec_read_tensor(st, 0, 0, h, &kv, acc, idx, &x);
          double d = fabs(x - ref[h].acc[i]);
          aerr = fmax(aerr, isnan(d) ? INFINITY : d);
        }
        ref_sel_free(&sel);
      }
      steps_done++;
    }
    /* acc is a sum of probabilities (each < 1) decayed by 0.9: absolute error ~ steps eps */
    nt_check(ok && sel_bad == 0 && !cmp.bad && aerr <= 1e-6,
             "h2o: %d decode steps (H=2 D=%d G=%d P=%d prefill %d budget %d window %d) equal ref_h2o_step each step: "
             "%d selection mismatches, out err %.2e (%.2f of the model), lse err %.2e, acc err %.2e %s",
             steps_done, D, G, P, T0, kn.budget, kn.window, sel_bad, cmp.err, cmp.ratio, cmp.lse_err, aerr, err);
    worst[P_H2O].err = fmax(worst[P_H2O].err, cmp.err);
    worst[P_H2O].ratio = fmax(worst[P_H2O].ratio, cmp.ratio);
    worst[P_H2O].lse_err = fmax(worst[P_H2O].lse_err, cmp.lse_err);
    nt_result_free(&res);
    ref_h2o_free(&ref[0]);
    ref_h2o_free(&ref[1]);
    exec_destroy(st);
    nt_cache_free(&c);
    for (int h = 0; h < H; h++)
      nt_row_free(&rows[h]);
  }
}

/* Two requests on rows 0 and 1 of one state (disjoint pages of the same pools), steps
 * interleaved, give bitwise what each gives alone on a fresh state; a finished row reset and
 * reused (same pages) for a new request gives what the new request gives alone. For h2o
 * (token state, updated every step) and magicpig (row state mu, written at prefill). */
static void test_isolation(pol_id p) {
  host_policy *hp = &hps[p];
  int D = 32, G = 2, P = 16, n = 6, H = 2;
  int TA = 150, TB = 100, np = (TA + n + P - 1) / P;
  knobs kn = {40, 8, 75, 0, 8}; /* magicpig: (K, L) = (8, 75); h2o: window 8 */
  ref_magicpig_params mp;
  apply(p, D, &kn, &mp);
  nt_row a[2], b[2];
  for (int h = 0; h < H; h++) {
    nt_row_make(&a[h], NT_RANDOM, G, D, TA + n, 4000 + (uint64_t)h, VXK_F32);
    nt_row_make(&b[h], NT_RETRIEVAL, G, D, TB + n, 4010 + (uint64_t)h, VXK_F32);
  }
  /* one pool of 2 np pages: A gets one half of a shuffled order, B the other */
  nt_cache ca, cb;
  nt_cache_init(&ca, H, P, D, 2 * np, 2 * np, VXK_F32, 123);
  nt_cache_init(&cb, H, P, D, 2 * np, 2 * np, VXK_F32, 1);
  free(cb.k);
  free(cb.v);
  cb.k = ca.k;
  cb.v = ca.v;
  for (int i = 0; i < np; i++)
    cb.ids[i] = ca.ids[np + i];
  ca.max_row_pages = cb.max_row_pages = np;
  exec_shape sh = nt_shape(&ca, G);
  nt_result alone[6], mixed[6], reused[6], junk[6];
  for (int s = 0; s < n; s++) {
    nt_result_init(&alone[s], H, G, D, np * P);
    nt_result_init(&mixed[s], H, G, D, np * P);
    nt_result_init(&reused[s], H, G, D, np * P);
    nt_result_init(&junk[s], H, G, D, np * P);
  }
  char err[256] = "";
  int ok = 1;
  /* B alone, fresh state, on row 1 */
  exec_state *st = exec_create(&hp->pol, &sh, err, sizeof err);
  nt_cache_write(&cb, b, 0, TB);
  exec_kv kv = nt_kv(&cb, TB, TB);
  ok &= st && exec_prefill(st, 1, 0, &kv, err, sizeof err);
  ok &= ok && decode_steps(st, 1, &cb, b, TB, 0, n, 2, alone, err, sizeof err) == 0;
  exec_destroy(st);
  /* A on row 0 and B on row 1, interleaved (same pools) */
  st = exec_create(&hp->pol, &sh, err, sizeof err);
  nt_cache_write(&ca, a, 0, TA);
  nt_cache_write(&cb, b, 0, TB);
  exec_kv ka = nt_kv(&ca, TA, TA), kb = nt_kv(&cb, TB, TB);
  ok &= st && exec_prefill(st, 0, 0, &ka, err, sizeof err) && exec_prefill(st, 1, 0, &kb, err, sizeof err);
  for (int s = 0; s < n && ok; s++) {
    ok &= decode_steps(st, 0, &ca, a, TA, s, 1, 1, junk, err, sizeof err) == 0;
    ok &= decode_steps(st, 1, &cb, b, TB, s, 1, 2, mixed, err, sizeof err) == 0;
  }
  int same = ok;
  for (int s = 0; s < n; s++)
    same &= nt_same(&alone[s], &mixed[s]);
  nt_check(same, "%s: two rows interleaved on one state give bitwise what each gives alone %s", pol_name[p], err);
  /* row 0 (A, longer, with state) reset and reused on A's pages for request B */
  exec_row_reset(st, 0);
  nt_cache ca2 = ca;
  nt_cache_write(&ca2, b, 0, TB);
  exec_kv k2 = nt_kv(&ca2, TB, TB);
  ok &= exec_prefill(st, 0, 0, &k2, err, sizeof err);
  ok &= ok && decode_steps(st, 0, &ca2, b, TB, 0, n, 2, reused, err, sizeof err) == 0;
  same = ok;
  for (int s = 0; s < n; s++)
    same &= nt_same(&alone[s], &reused[s]);
  nt_check(same, "%s: a row reset (exec_row_reset) and reused on dirty pages gives what a fresh state gives %s",
           pol_name[p], err);
  exec_destroy(st);
  for (int s = 0; s < n; s++) {
    nt_result_free(&alone[s]);
    nt_result_free(&mixed[s]);
    nt_result_free(&reused[s]);
    nt_result_free(&junk[s]);
  }
  cb.k = cb.v = NULL;
  nt_cache_free(&cb);
  nt_cache_free(&ca);
  for (int h = 0; h < H; h++) {
    nt_row_free(&a[h]);
    nt_row_free(&b[h]);
  }
}

/* ---- f16 and bf16 caches ---- */

static void test_dtypes(void) {
  static const pol_id pols[] = {P_DENSE, P_TOPK, P_QUEST, P_BLOCK_TOPK, P_GQA_SOFTMAX, P_LSERVE,
                                P_DOUBLE_SPARSITY, P_MAGICPIG, P_STREAMING, P_H2O};
  for (int dt = VXK_F16; dt <= VXK_BF16; dt++)
    for (size_t i = 0; i < sizeof pols / sizeof pols[0]; i++) {
      int mp = pols[i] == P_MAGICPIG;
      knobs kn = {200, mp ? 8 : 0, mp ? 75 : 0, 0, 0};
      run_case(pols[i], 2, 64, 4, 16, mp ? 300 : 555, &kn, NT_RANDOM, 5000 + i, dt, NULL);
      run_case(pols[i], 1, 128, 2, 64, mp ? 200 : 1111, &kn, NT_RETRIEVAL, 5100 + i, dt, NULL);
    }
}

int main(int argc, char **argv) {
  nt_set_stdlib(argc > 1 ? argv[1] : "stdlib");
  double t0 = nt_seconds();
  for (int p = 0; p < NPOL; p++)
    nt_compile(pol_name[p], &hps[p]);
  hps[P_DOUBLE_SPARSITY].pol.base_dir = nt_tmpdir();
  test_matrix();
  test_quest_properties();
  test_block_topk_properties();
  test_shared_group();
  test_streaming_independent_of_q();
  test_topk_argsort();
  test_lserve();
  test_double_sparsity_file();
  test_magicpig();
  test_h2o_hand();
  test_h2o_steps();
  test_isolation(P_H2O);
  test_isolation(P_MAGICPIG);
  test_dtypes();
  for (int p = 0; p < NPOL; p++)
    printf("# %-16s worst output rel err %.2e, worst err / f32 error model %.2f, worst lse err %.2e\n", pol_name[p],
           worst[p].err, worst[p].ratio, worst[p].lse_err);
  printf("# magicpig: %ld sampled (not always-kept) token-heads compared with the reference\n", magicpig_sampled);
  printf("# %.1f s\n", nt_seconds() - t0);
  for (int p = 0; p < NPOL; p++)
    host_policy_free(&hps[p]);
  return nt_finish();
}
