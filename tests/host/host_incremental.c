/* host_incremental.c - incremental summaries (ALGORITHMS.md §5: "incremental summaries equal
 * summaries recomputed from scratch, also for a partial last page") for every stdlib policy
 * with page, token or row fields: quest, block_topk, lserve, gqa_softmax, double_sparsity,
 * magicpig and h2o.
 *
 * State A is prefilled with T0 tokens, then grows one token at a time (the token written to
 * the cache, then exec_append with first = len - 1). At checkpoints, a fresh state B is
 * prefilled with the same len tokens in one exec_prefill, and every field of A (each page and
 * token field over the row's pages and valid tokens, each row tensor) is compared with B's:
 * bitwise for everything (max, min, int8 labels, u32 codes, norms), within 4 ulps for means
 * (none observed). A's fields are also checked against tests/ref: kmax/kmin/kmean with
 * ref_page_summaries (lserve per 16-token sub-block), double_sparsity's absmax and labels with
 * ref_ds_quantize, magicpig's mu, |k - mu| and codes with ref_magicpig and ref_simhash_codes.
 * Two KV heads, shuffled page tables, f32 and a bf16/f16 cache.
 *
 * magicpig: T0 = the prefill (mu is made at its end), prefill_len = T0 for A and B (tokens
 * after it are generated, hence kept, so B's mu is A's); checkpoints every few tokens, since
 * each costs a prefill that hashes every key.
 * Usage: host_incremental STDLIB_DIR. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numeric.h"

/* ---- reading fields ---- */

static int is_state(const exec_tensor *t) {
  return t->kind == EXEC_PAGE || t->kind == EXEC_TOKEN || t->kind == EXEC_ROW;
}

static uint32_t bits_of(float x) {
  uint32_t b;
  memcpy(&b, &x, 4);
  return b;
}

/* Distance in units in the last place between two finite floats of the same sign. */
static double ulps(float a, float b) {
  if (a == b)
    return 0;
  if ((a < 0) != (b < 0) || !isfinite(a) || !isfinite(b))
    return INFINITY;
  uint32_t x = bits_of(fabsf(a)), y = bits_of(fabsf(b));
  return x > y ? x - y : y - x;
}

typedef struct field_cmp {
  long values, differ;
  double max_ulps;
  char first[160];
} field_cmp;

/* Calls fn for every element of tensor id that the row of len tokens holds: page axis over
 * its pages, token slots only below len. */
typedef void (*visit_fn)(void *arg, int id, const int *idx);

static void visit(const exec_policy *pol, const exec_shape *sh, int id, int len, visit_fn fn, void *arg) {
  const exec_tensor *t = &pol->tensors[id];
  int npages = (len + sh->P - 1) / sh->P;
  long ext[EXEC_MAX_RANK];
  for (int d = 0; d < t->rank; d++)
    ext[d] = exec_extent(pol, sh, t->extents[d], npages);
  int tokens = t->rank >= 2 && !strcmp(t->extents[0], "npages") && !strcmp(t->extents[1], "P");
  int idx[EXEC_MAX_RANK] = {0};
  if (t->rank == 0) {
    fn(arg, id, idx);
    return;
  }
  for (;;) {
    if (!tokens || idx[0] * sh->P + idx[1] < len)
      fn(arg, id, idx);
    int d = t->rank - 1;
    while (d >= 0 && ++idx[d] == ext[d])
      idx[d--] = 0;
    if (d < 0)
      return;
  }
}

typedef struct ab_ctx {
  exec_state *a, *b;
  const exec_policy *pol;
  const exec_kv *kv;
  int head;
  field_cmp *cmp;
} ab_ctx;

static void compare_one(void *arg, int id, const int *idx) {
  ab_ctx *c = arg;
  float x = NAN, y = NAN;
  int ra = exec_read_tensor(c->a, 0, 0, c->head, c->kv, id, idx, &x);
  int rb = exec_read_tensor(c->b, 0, 0, c->head, c->kv, id, idx, &y);
  c->cmp->values++;
  const exec_tensor *t = &c->pol->tensors[id];
  int mean = strstr(t->name, "mean") != NULL;
  double u = ulps(x, y);
  int same = ra && rb && (bits_of(x) == bits_of(y) || (isnan(x) && isnan(y)) || (mean && u <= 4));
  if (mean && ra && rb && u > c->cmp->max_ulps && isfinite(u))
    c->cmp->max_ulps = u;
  if (!same && !c->cmp->differ++)
    snprintf(c->cmp->first, sizeof c->cmp->first, "%s head %d [%d,%d,%d]: %.9g vs %.9g", t->name, c->head, idx[0],
             t->rank > 1 ? idx[1] : 0, t->rank > 2 ? idx[2] : 0, x, y);
}

/* ---- the reference side ---- */

typedef struct ref_ctx {
  exec_state *a;
  const exec_policy *pol;
  const exec_shape *sh;
  const exec_kv *kv;
  int head, len;
  const nt_row *row;
  /* what the fields should hold */
  double *kmax, *kmin, *kmean, *kabs; /* [npages(len, P or 16)][D]; kabs: mean |k| */
  int sub;                            /* 16 for lserve's sub-blocks, else P */
  const int *chan;
  int R;
  const double *mu, *W;
  int K, L;
  long values, differ;
  double worst_mean; /* |err| / bound, kmean */
  long code_flips;   /* code bits that differ, each at a tiny margin */
  char first[200];
} ref_ctx;

static void ref_bad(ref_ctx *c, const char *what, const int *idx, float got, double want) {
  if (!c->differ++)
    snprintf(c->first, sizeof c->first, "%s head %d [%d,%d,%d]: %.9g, reference %.9g", what, c->head, idx[0], idx[1],
             idx[2], got, want);
}

static void ref_one(void *arg, int id, const int *idx) {
  ref_ctx *c = arg;
  const exec_tensor *t = &c->pol->tensors[id];
  float x = NAN;
  exec_read_tensor(c->a, 0, 0, c->head, c->kv, id, idx, &x);
  int D = c->row->D, P = c->sh->P;
  const double *k = c->row->k;
  c->values++;
  if (!strcmp(t->name, "kmax") || !strcmp(t->name, "kmin")) {
    /* quest [p, c]; lserve [p, s, c] over 16-token sub-blocks: sub-block p * P/16 + s */
    int lserve = t->rank == 3, blk = lserve ? idx[0] * (P / 16) + idx[1] : idx[0], ch = idx[t->rank - 1];
    int nblk = (c->len + c->sub - 1) / c->sub;
    int mx = t->name[2] == 'a';
    double want = blk < nblk ? (mx ? c->kmax : c->kmin)[(size_t)blk * D + ch] : (mx ? -INFINITY : INFINITY);
    if (x != (float)want) /* max and min of f32 values are f32 values: exact */
      ref_bad(c, t->name, idx, x, want);
  } else if (!strcmp(t->name, "kmean")) {
    /* an f32 running sum of n <= P values then a division: |err| <= (n + 1) u mean|k| */
    int n = c->len - idx[0] * P < P ? c->len - idx[0] * P : P;
    double want = c->kmean[(size_t)idx[0] * D + idx[1]];
    double bound = (n + 1) * 0x1p-24 * c->kabs[(size_t)idx[0] * D + idx[1]] + 1e-30;
    c->worst_mean = fmax(c->worst_mean, fabs(x - want) / bound);
    if (!(fabs(x - want) <= bound))
      ref_bad(c, t->name, idx, x, want);
  } else if (!strcmp(t->name, "amax") || !strcmp(t->name, "label")) {
    int i = idx[0] * P + idx[1];
    int8_t label[64];
    double scale;
    ref_ds_quantize(k + (size_t)i * D, c->R, c->chan, label, &scale);
    if (!strcmp(t->name, "amax")) {
      double want = fmax(scale * 127, 1e-20); /* the policy clamps the absmax at 1e-20 */
      if (x != (float)want)
        ref_bad(c, t->name, idx, x, want);
    } else if (x != label[idx[2]]) {
      ref_bad(c, t->name, idx, x, label[idx[2]]);
    }
  } else if (!strcmp(t->name, "mu")) {
    /* f32 mean of n values: |err| <= n u max|k|, with n < len */
    double want = c->mu[idx[0]], maxk = 0;
    for (int i = 0; i < c->len * D; i++)
      maxk = fmax(maxk, fabs(k[i]));
    if (!(fabs(x - want) <= c->len * 0x1p-24 * maxk))
      ref_bad(c, t->name, idx, x, want);
  } else if (!strcmp(t->name, "knorm")) {
    int i = idx[0] * P + idx[1];
    double s = 0;
    for (int d = 0; d < D; d++)
      s += (k[(size_t)i * D + d] - c->mu[d]) * (k[(size_t)i * D + d] - c->mu[d]);
    if (!(fabs(x - sqrt(s)) <= 1e-5 * sqrt(s) + 1e-6))
      ref_bad(c, t->name, idx, x, sqrt(s));
  } else if (!strcmp(t->name, "code")) {
    /* sign bits of (k - mu) . W[:, l, b]: a bit may differ only where the projection is
     * within f32 rounding of 0 (margin 1e-5 of |k - mu| |W column|) */
    int i = idx[0] * P + idx[1], l = idx[2], cols = c->K * c->L;
    uint32_t got = (uint32_t)x, want = 0;
    int bad = 0;
    for (int b = 0; b < c->K; b++) {
      double dot = 0, nx = 0, nw = 0;
      for (int d = 0; d < D; d++) {
        double xd = k[(size_t)i * D + d] - c->mu[d], w = c->W[(size_t)d * cols + l * c->K + b];
        dot += xd * w;
        nx += xd * xd;
        nw += w * w;
      }
      uint32_t bit = dot > 0;
      want |= bit << b;
      if (((got >> b) & 1) != bit) {
        if (fabs(dot) <= 1e-5 * sqrt(nx * nw))
          c->code_flips++;
        else
          bad = 1;
      }
    }
    if (bad)
      ref_bad(c, t->name, idx, (float)got, want);
  } else if (!strcmp(t->name, "acc")) {
    if (x != 0) /* no step ran: every token's acc is its initial 0 */
      ref_bad(c, t->name, idx, x, 0);
  } else {
    c->values--;
  }
}

/* ---- one policy, one configuration ---- */

typedef struct config {
  const char *policy;
  int D, G, P, T0, T, dtype, stride; /* checkpoints every stride tokens, page ends, the end */
  int K, L;                          /* magicpig */
} config;

static host_policy hp_cache[16];
static const char *hp_names[16];

static host_policy *policy(const char *name) {
  for (int i = 0; i < 16; i++) {
    if (hp_names[i] && !strcmp(hp_names[i], name))
      return &hp_cache[i];
    if (!hp_names[i]) {
      nt_compile(name, &hp_cache[i]);
      hp_names[i] = name;
      return &hp_cache[i];
    }
  }
  return NULL;
}

static int chan[16];

static void run_config(const config *cf) {
  host_policy *hp = policy(cf->policy);
  int H = 2, D = cf->D, G = cf->G, P = cf->P, T = cf->T, T0 = cf->T0;
  int mp = !strcmp(cf->policy, "magicpig"), ds = !strcmp(cf->policy, "double_sparsity");
  int R = D >= 32 ? 16 : D / 2;
  if (mp) {
    host_policy_set(hp, "K", cf->K);
    host_policy_set(hp, "L", cf->L);
  }
  if (ds) {
    host_policy_set(hp, "R", R);
    for (int j = 0; j < R; j++)
      chan[j] = (j * 7 + 1) % D; /* distinct: gcd(7, D) = 1 */
    char path[256];
    snprintf(path, sizeof path, "%s/double_sparsity.channels", nt_tmpdir());
    FILE *f = fopen(path, "wb");
    for (int j = 0; j < R; j++) {
      uint8_t b[4] = {(uint8_t)chan[j], 0, 0, 0};
      fwrite(b, 1, 4, f);
    }
    fclose(f);
    hp->pol.base_dir = nt_tmpdir();
  }
  char tag[200];
  snprintf(tag, sizeof tag, "%s H=%d D=%d G=%d P=%d %s prefill %d then %d appends", cf->policy, H, D, G, P,
           nt_dtype_name(cf->dtype), T0, T - T0);
  if (mp) {
    size_t n = strlen(tag);
    snprintf(tag + n, sizeof tag - n, " K=%d L=%d", cf->K, cf->L);
  }
  nt_row rows[2];
  for (int h = 0; h < H; h++)
    nt_row_make(&rows[h], h ? NT_RETRIEVAL : NT_RANDOM, G, D, T, 20000 + (uint64_t)(D * 7 + P + h), cf->dtype);
  int np = (T + P - 1) / P;
  nt_cache c;
  nt_cache_init(&c, H, P, D, np, np + 3, cf->dtype, 300 + (uint64_t)(D + P));
  nt_cache_write(&c, rows, 0, T0);
  exec_shape sh = nt_shape(&c, G);
  char err[512] = "";
  exec_state *a = exec_create(&hp->pol, &sh, err, sizeof err);
  exec_kv kv = nt_kv(&c, T0, T0);
  int ok = a && exec_prefill(a, 0, 0, &kv, err, sizeof err);
  field_cmp fc = {0, 0, 0, ""};
  ref_ctx rc;
  memset(&rc, 0, sizeof rc);
  int checkpoints = 0;
  /* magicpig's reference: mu of the prefill, W */
  double *mu = calloc((size_t)D, sizeof(double)), *W = NULL;
  if (mp) {
    W = malloc(sizeof(double) * (size_t)D * cf->K * cf->L);
    ref_gaussian_fill(1, (size_t)D * cf->K * cf->L, W);
  }
  for (int len = T0 + 1; len <= T && ok; len++) {
    nt_cache_write(&c, rows, len - 1, len);
    kv = nt_kv(&c, len, mp ? T0 : len);
    ok &= exec_append(a, 0, 0, &kv, len - 1, err, sizeof err);
    if (!ok || !((len - T0) % cf->stride == 0 || len % P == 0 || len % P == 1 || len == T))
      continue;
    checkpoints++;
    exec_state *b = exec_create(&hp->pol, &sh, err, sizeof err);
    ok &= b && exec_prefill(b, 0, 0, &kv, err, sizeof err);
    for (int h = 0; h < H && ok; h++) {
      ab_ctx ac = {a, b, &hp->pol, &kv, h, &fc};
      for (int id = 0; id < hp->pol.ntensors; id++)
        if (is_state(&hp->pol.tensors[id]))
          visit(&hp->pol, &sh, id, len, compare_one, &ac);
      /* the reference: every checkpoint, except magicpig's hashing (the end only) */
      if (mp && len != T)
        continue;
      ref_row r = nt_ref_row(&rows[h], len);
      int lserve = !strcmp(cf->policy, "lserve"), sub = lserve ? 16 : P, nb = (len + sub - 1) / sub;
      double *kmax = malloc(sizeof(double) * (size_t)nb * D), *kmin = malloc(sizeof(double) * (size_t)nb * D);
      double *kmean = malloc(sizeof(double) * (size_t)nb * D), *kabs = calloc((size_t)nb * D, sizeof(double));
      ref_page_summaries(&r, sub, kmax, kmin, kmean);
      for (int i = 0; i < len; i++)
        for (int d = 0; d < D; d++)
          kabs[(size_t)(i / sub) * D + d] += fabs(r.k[(size_t)i * D + d]) / (i / sub == nb - 1 ? len - (nb - 1) * sub : sub);
      if (mp) {
        ref_row r0 = nt_ref_row(&rows[h], T0);
        ref_magicpig_params pp;
        ref_magicpig_defaults(&pp);
        pp.K = 0, pp.L = 1; /* mu only */
        ref_sel s = REF_SEL_EMPTY;
        double *corr = malloc(sizeof(double) * (size_t)G * T0);
        ref_magicpig(&r0, &pp, &s, corr, mu);
        free(corr);
        ref_sel_free(&s);
      }
      ref_ctx x = {a, &hp->pol, &sh, &kv, h, len, &rows[h], kmax, kmin, kmean, kabs, sub, chan, R, mu, W,
                   cf->K, cf->L, 0, 0, rc.worst_mean, rc.code_flips, ""};
      for (int id = 0; id < hp->pol.ntensors; id++)
        if (is_state(&hp->pol.tensors[id]))
          visit(&hp->pol, &sh, id, len, ref_one, &x);
      rc.values += x.values;
      if (x.differ && !rc.differ)
        memcpy(rc.first, x.first, sizeof rc.first);
      rc.differ += x.differ;
      rc.worst_mean = x.worst_mean;
      rc.code_flips = x.code_flips;
      free(kmax);
      free(kmin);
      free(kmean);
      free(kabs);
    }
    exec_destroy(b);
  }
  nt_check(ok && fc.values > 0 && fc.differ == 0,
           "%s: incremental fields equal prefill's at %d lengths: %ld values, %ld differ (means: max %.0f ulps)%s%s %s",
           tag, checkpoints, fc.values, fc.differ, fc.max_ulps, fc.differ ? ", first " : "", fc.first, err);
  nt_check(ok && rc.values > 0 && rc.differ == 0,
           "%s: fields equal the reference: %ld values, %ld differ%s%s (kmean worst %.2f of its bound; %ld code bits "
           "at |projection| < 1e-5)",
           tag, rc.values, rc.differ, rc.differ ? ", first " : "", rc.first, rc.worst_mean, rc.code_flips);
  free(mu);
  free(W);
  exec_destroy(a);
  nt_cache_free(&c);
  for (int h = 0; h < H; h++)
    nt_row_free(&rows[h]);
}

static const config configs[] = {
    /* policy, D, G, P, T0, T, dtype, stride, K, L */
    {"quest", 64, 4, 16, 1, 100, VXK_F32, 1, 0, 0},
    {"quest", 8, 2, 1, 1, 40, VXK_F32, 1, 0, 0},
    {"quest", 128, 1, 64, 30, 150, VXK_BF16, 1, 0, 0},
    {"quest", 16, 8, 16, 5, 37, VXK_F16, 1, 0, 0},
    {"block_topk", 64, 4, 16, 1, 100, VXK_F32, 1, 0, 0},
    {"block_topk", 8, 2, 1, 1, 40, VXK_F32, 1, 0, 0},
    {"block_topk", 128, 1, 64, 30, 150, VXK_BF16, 1, 0, 0},
    {"gqa_softmax", 64, 4, 16, 1, 100, VXK_F32, 1, 0, 0},
    {"gqa_softmax", 16, 8, 64, 3, 90, VXK_F16, 1, 0, 0},
    {"lserve", 64, 4, 16, 1, 100, VXK_F32, 1, 0, 0},
    {"lserve", 32, 2, 64, 1, 150, VXK_F32, 1, 0, 0},
    {"lserve", 128, 1, 32, 10, 120, VXK_BF16, 1, 0, 0},
    {"double_sparsity", 64, 4, 16, 1, 100, VXK_F32, 1, 0, 0},
    {"double_sparsity", 8, 2, 1, 1, 40, VXK_BF16, 1, 0, 0},
    {"double_sparsity", 128, 1, 64, 30, 150, VXK_F16, 1, 0, 0},
    {"h2o", 64, 4, 16, 1, 100, VXK_F32, 1, 0, 0},
    {"h2o", 8, 2, 1, 1, 40, VXK_F32, 1, 0, 0},
    {"magicpig", 16, 2, 16, 80, 130, VXK_F32, 7, 8, 75},
    {"magicpig", 32, 1, 64, 100, 150, VXK_F32, 11, 10, 150},
    {"magicpig", 8, 4, 1, 70, 100, VXK_BF16, 5, 9, 120},
};

int main(int argc, char **argv) {
  nt_set_stdlib(argc > 1 ? argv[1] : "stdlib");
  double t0 = nt_seconds();
  for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
    run_config(&configs[i]);
  printf("# %.1f s\n", nt_seconds() - t0);
  for (int i = 0; i < 16; i++)
    if (hp_names[i])
      host_policy_free(&hp_cache[i]);
  return nt_finish();
}
