/* numeric.c - see numeric.h. */
#define _GNU_SOURCE /* mkdtemp, clock_gettime */
#include "numeric.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- checks ---- */

static int passed, failed;
static char tmpdir[64];
static const char *stdlib_dir = "stdlib";

int nt_check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs(ok ? "ok   " : "FAIL ", stdout);
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
  fflush(stdout);
  if (ok)
    passed++;
  else
    failed++;
  return ok;
}


const char *nt_tmpdir(void) {
  if (!tmpdir[0]) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/vx-numeric-XXXXXX");
    if (!mkdtemp(tmpdir)) {
      perror("mkdtemp");
      exit(2);
    }
  }
  return tmpdir;
}

int nt_finish(void) {
  if (tmpdir[0]) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
      fprintf(stderr, "could not remove %s\n", tmpdir);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}

void nt_set_stdlib(const char *dir) { stdlib_dir = dir; }

void nt_compile(const char *name, host_policy *hp) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.vx", stdlib_dir, name);
  if (!nt_check(host_policy_compile(path, hp) == 0, "%s: compiles to host code", name))
    exit(nt_finish() | 1);
}

double nt_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- storage rounding ---- */

/* Round-to-nearest-even of the mantissa bits below `shift`; may carry into the exponent,
 * which is the right answer (up to infinity). */
static uint32_t round_shift(uint32_t m, int shift) {
  uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  return r + (rem > half || (rem == half && (r & 1)));
}

uint16_t nt_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  int exp = (int)((x >> 23) & 0xff);
  uint32_t man = x & 0x7fffff;
  if (exp == 0xff)
    return sign | 0x7c00 | (man ? 0x200 : 0);
  int e = exp - 127 + 15;
  if (e >= 31)
    return sign | 0x7c00;
  if (e <= 0) { /* subnormal half: value * 2^24 as an integer */
    if (e < -10)
      return sign;
    return sign | (uint16_t)round_shift(man | 0x800000, 14 - e);
  }
  return sign | (uint16_t)round_shift(((uint32_t)e << 23) | man, 13);
}

float nt_f16_to_f32(uint16_t h) {
  int exp = (h >> 10) & 31, man = h & 1023;
  double v = exp == 0 ? ldexp(man, -24) : exp == 31 ? (man ? NAN : INFINITY) : ldexp(man + 1024, exp - 25);
  return (float)(h & 0x8000 ? -v : v);
}

uint16_t nt_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000)
    return (uint16_t)((x >> 16) | 0x40);
  return (uint16_t)round_shift(x, 16);
}

float nt_bf16_to_f32(uint16_t h) {
  uint32_t x = (uint32_t)h << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}

double nt_round(double x, int kv_dtype) {
  float f = (float)x;
  if (kv_dtype == VXK_F16)
    return nt_f16_to_f32(nt_f32_to_f16(f));
  if (kv_dtype == VXK_BF16)
    return nt_bf16_to_f32(nt_f32_to_bf16(f));
  return f;
}

const char *nt_dtype_name(int kv_dtype) {
  return kv_dtype == VXK_F16 ? "f16" : kv_dtype == VXK_BF16 ? "bf16" : "f32";
}

/* ---- rows ---- */

const char *nt_gen_name(nt_gen g) {
  return g == NT_RANDOM ? "random" : g == NT_RETRIEVAL ? "retrieval" : "aggregation";
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

void nt_row_make(nt_row *r, nt_gen gen, int G, int D, int T, uint64_t seed, int kv_dtype) {
  r->G = G;
  r->D = D;
  r->T = T;
  size_t nq = (size_t)G * D, nk = (size_t)T * D;
  r->q = xmalloc(nq * sizeof(double));
  r->k = xmalloc(nk * sizeof(double));
  r->v = xmalloc(nk * sizeof(double));
  ref_syn s;
  ref_syn_params p;
  if (gen != NT_RANDOM && T >= 2) {
    ref_syn_defaults(&p, gen == NT_RETRIEVAL ? REF_SYN_RETRIEVAL : REF_SYN_AGGREGATION, G, D, T, seed);
    if (ref_syn_make(&p, &s)) {
      fprintf(stderr, "ref_syn_make failed\n");
      exit(2);
    }
    memcpy(r->q, s.q, nq * sizeof(double));
    memcpy(r->k, s.k, nk * sizeof(double));
    memcpy(r->v, s.v, nk * sizeof(double));
    ref_syn_free(&s);
  } else {
    ref_rng g;
    ref_rng_seed(&g, seed * 1000003u + 17);
    for (size_t i = 0; i < nq; i++)
      r->q[i] = ref_rng_gauss(&g);
    for (size_t i = 0; i < nk; i++) {
      r->k[i] = ref_rng_gauss(&g);
      r->v[i] = ref_rng_gauss(&g);
    }
  }
  for (size_t i = 0; i < nq; i++)
    r->q[i] = (float)r->q[i];
  for (size_t i = 0; i < nk; i++) {
    r->k[i] = nt_round(r->k[i], kv_dtype);
    r->v[i] = nt_round(r->v[i], kv_dtype);
  }
}

void nt_row_new_query(nt_row *r, uint64_t seed) {
  ref_rng g;
  ref_rng_seed(&g, seed * 7919u + 5);
  for (int i = 0; i < r->G * r->D; i++)
    r->q[i] = (float)ref_rng_gauss(&g);
}

void nt_row_free(nt_row *r) {
  free(r->q);
  free(r->k);
  free(r->v);
  memset(r, 0, sizeof *r);
}

ref_row nt_ref_row(const nt_row *r, int T) { return (ref_row){r->G, r->D, T, r->q, r->k, r->v}; }

/* ---- cache ---- */

static size_t elem_size(int dtype) { return dtype == VXK_F32 ? 4 : 2; }

static void put(void *base, int dtype, size_t i, double x) {
  if (dtype == VXK_F32)
    ((float *)base)[i] = (float)x;
  else if (dtype == VXK_F16)
    ((uint16_t *)base)[i] = nt_f32_to_f16((float)x);
  else
    ((uint16_t *)base)[i] = nt_f32_to_bf16((float)x);
}

void nt_cache_init(nt_cache *c, int H, int P, int D, int max_row_pages, int max_pages, int dtype,
                   uint64_t shuffle_seed) {
  c->H = H;
  c->P = P;
  c->D = D;
  c->dtype = dtype;
  c->max_pages = max_pages;
  c->max_row_pages = max_row_pages;
  size_t n = (size_t)max_pages * H * P * D;
  c->k = xmalloc(n * elem_size(dtype));
  c->v = xmalloc(n * elem_size(dtype));
  /* Keys: +-3e4 (finite in f16), so that a max or min over an absent slot shows (maxnum
   * ignores NaN) and a logit over one overflows; values: NaN, which any sum propagates. */
  for (size_t i = 0; i < n; i++) {
    put(c->k, dtype, i, (i / (size_t)D + i) % 2 ? 3e4 : -3e4);
    put(c->v, dtype, i, NAN);
  }
  int *perm = xmalloc(sizeof(int) * (size_t)max_pages);
  for (int i = 0; i < max_pages; i++)
    perm[i] = i;
  if (shuffle_seed) {
    ref_rng g;
    ref_rng_seed(&g, shuffle_seed);
    for (int i = max_pages - 1; i > 0; i--) {
      int j = ref_rng_below(&g, i + 1), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
  }
  c->ids = xmalloc(sizeof(int32_t) * (size_t)max_row_pages);
  for (int i = 0; i < max_row_pages; i++)
    c->ids[i] = perm[i % max_pages];
  free(perm);
}

void nt_cache_write(nt_cache *c, const nt_row *rows, int from, int to) {
  for (int h = 0; h < c->H; h++)
    for (int i = from; i < to; i++)
      for (int d = 0; d < c->D; d++) {
        size_t at = (((size_t)c->ids[i / c->P] * c->H + h) * c->P + (size_t)(i % c->P)) * c->D + d;
        put(c->k, c->dtype, at, rows[h].k[(size_t)i * c->D + d]);
        put(c->v, c->dtype, at, rows[h].v[(size_t)i * c->D + d]);
      }
}

void nt_cache_free(nt_cache *c) {
  free(c->k);
  free(c->v);
  free(c->ids);
  memset(c, 0, sizeof *c);
}

exec_kv nt_kv(const nt_cache *c, int len, int prefill_len) {
  return (exec_kv){c->k, c->v, c->dtype, c->ids, len, prefill_len};
}

/* ---- running ---- */

void nt_result_init(nt_result *r, int H, int G, int D, int tokens) {
  r->H = H;
  r->G = G;
  r->D = D;
  r->tokens = tokens;
  r->out = xmalloc(sizeof(float) * (size_t)H * G * D);
  r->lse = xmalloc(sizeof(float) * (size_t)H * G);
  r->sel = xmalloc((size_t)H * G * tokens);
}

void nt_result_free(nt_result *r) {
  free(r->out);
  free(r->lse);
  free(r->sel);
  memset(r, 0, sizeof *r);
}

exec_shape nt_shape(const nt_cache *c, int G) {
  return (exec_shape){1, c->H, c->D, G, c->P, c->max_pages, 2, c->max_row_pages};
}

float *nt_queries(const nt_row *rows, int H) {
  size_t gd = (size_t)rows[0].G * rows[0].D;
  float *q = xmalloc(sizeof(float) * H * gd);
  for (int h = 0; h < H; h++)
    for (size_t i = 0; i < gd; i++)
      q[h * gd + i] = (float)rows[h].q[i];
  return q;
}

int nt_step(exec_state *st, int row, const nt_cache *c, const nt_row *rows, int len, int prefill_len,
            nt_result *res, char *err, size_t errlen) {
  exec_kv kv = nt_kv(c, len, prefill_len);
  float *q = nt_queries(rows, c->H);
  int ok = exec_step(st, row, 0, &kv, q, res->out, res->lse, res->sel, err, errlen);
  free(q);
  return ok ? 0 : -1;
}

int nt_run(const exec_policy *pol, const nt_cache *c, const nt_row *rows, int G, int len, int prefill_len,
           nt_result *res, char *err, size_t errlen) {
  exec_shape sh = nt_shape(c, G);
  exec_state *st = exec_create(pol, &sh, err, errlen);
  if (!st)
    return -1;
  exec_kv kv = nt_kv(c, len, prefill_len);
  int rc = exec_prefill(st, 0, 0, &kv, err, errlen) ? 0 : -1;
  if (rc == 0)
    rc = nt_step(st, 0, c, rows, len, prefill_len, res, err, errlen);
  exec_destroy(st);
  return rc;
}

/* ---- comparisons ---- */

int nt_sel_diff(const nt_result *r, int h, const ref_sel *ref, int T, int *first) {
  int n = 0;
  *first = -1;
  for (int g = 0; g < r->G; g++) {
    const uint8_t *a = r->sel + ((size_t)h * r->G + g) * r->tokens, *b = ref_sel_head(ref, g);
    for (int i = 0; i < T; i++)
      if (!a[i] != !b[i]) {
        if (*first < 0)
          *first = i;
        n++;
      }
  }
  return n;
}

double nt_out_err(const nt_result *r, int h, const double *ref_out, const double *ref_lse, double *lse_err) {
  double worst = 0, lworst = 0;
  for (int g = 0; g < r->G; g++) {
    const float *o = r->out + ((size_t)h * r->G + g) * r->D;
    const double *x = ref_out + (size_t)g * r->D;
    double e = 0, n = 0;
    for (int d = 0; d < r->D; d++) {
      e += (o[d] - x[d]) * (o[d] - x[d]);
      n += x[d] * x[d];
    }
    double rel = n > 0 ? sqrt(e / n) : sqrt(e);
    if (!(rel <= worst))
      worst = isnan(rel) ? INFINITY : rel;
    if (ref_lse) {
      double l = r->lse[(size_t)h * r->G + g], lr = ref_lse[g];
      double le = l == lr ? 0 : fabs(l - lr) / fmax(1, fabs(lr));
      if (!(le <= lworst))
        lworst = isnan(le) ? INFINITY : le;
    }
  }
  if (lse_err)
    *lse_err = lworst;
  return worst;
}

double nt_err_model(const ref_row *r, const ref_sel *s, const double *corr) {
  int G = r->G, D = r->D, T = r->T;
  double *w = xmalloc(sizeof(double) * (size_t)G * T), *o = xmalloc(sizeof(double) * (size_t)D);
  double *a = xmalloc(sizeof(double) * (size_t)D), worst = 0, u = 0x1p-24;
  ref_attn_probs(G, D, T, r->q, r->k, s->scope, s->mask, corr, w, NULL);
  for (int g = 0; g < G; g++) {
    const double *wg = w + (size_t)g * T, *q = r->q + (size_t)g * D;
    memset(o, 0, sizeof(double) * (size_t)D);
    memset(a, 0, sizeof(double) * (size_t)D);
    double S = 0;
    for (int i = 0; i < T; i++) {
      if (wg[i] == 0)
        continue;
      double si = 0;
      for (int d = 0; d < D; d++) {
        double x = wg[i] * r->v[(size_t)i * D + d];
        o[d] += x;
        a[d] += fabs(x);
        si += fabs(q[d] * r->k[(size_t)i * D + d]);
      }
      S = fmax(S, si / sqrt((double)D));
    }
    double no = 0, na = 0, A = 0;
    for (int d = 0; d < D; d++) {
      no += o[d] * o[d];
      na += a[d] * a[d];
    }
    no = sqrt(no);
    if (no == 0)
      continue;
    for (int i = 0; i < T; i++) {
      if (wg[i] == 0)
        continue;
      double dv = 0;
      for (int d = 0; d < D; d++)
        dv += (r->v[(size_t)i * D + d] - o[d]) * (r->v[(size_t)i * D + d] - o[d]);
      A += wg[i] * sqrt(dv);
    }
    double m = u * (sqrt((double)D) * S * A / no + sqrt((double)T) * sqrt(na) / no);
    worst = fmax(worst, m);
  }
  free(w);
  free(o);
  free(a);
  return worst;
}

int nt_cmp_ref(nt_cmp *acc, const nt_result *res, int h, const ref_row *r, const ref_sel *sel, const double *corr) {
  double *ro = xmalloc(sizeof(double) * (size_t)r->G * r->D), *rl = xmalloc(sizeof(double) * (size_t)r->G);
  ref_attend_sel(r, sel, corr, ro, rl);
  double le, e = nt_out_err(res, h, ro, rl, &le), m = nt_err_model(r, sel, corr);
  int ok = e <= NT_TOL_FACTOR * m + NT_TOL_FLOOR && le <= NT_LSE_TOL(r->T);
  acc->err = fmax(acc->err, e);
  acc->lse_err = fmax(acc->lse_err, le);
  acc->ratio = fmax(acc->ratio, m > 0 ? e / m : e > 0 ? INFINITY : 0);
  acc->bad += !ok;
  free(ro);
  free(rl);
  return ok;
}

double nt_out_diff(const nt_result *a, const nt_result *b, double *lse_err) {
  double worst = 0, lworst = 0;
  double *ro = xmalloc(sizeof(double) * (size_t)b->G * b->D), *rl = xmalloc(sizeof(double) * (size_t)b->G);
  for (int h = 0; h < a->H; h++) {
    for (int i = 0; i < b->G * b->D; i++)
      ro[i] = b->out[(size_t)h * b->G * b->D + i];
    for (int g = 0; g < b->G; g++)
      rl[g] = b->lse[(size_t)h * b->G + g];
    double le, e = nt_out_err(a, h, ro, rl, &le);
    worst = fmax(worst, e);
    lworst = fmax(lworst, le);
  }
  free(ro);
  free(rl);
  if (lse_err)
    *lse_err = lworst;
  return worst;
}

int nt_same(const nt_result *a, const nt_result *b) {
  size_t no = (size_t)a->H * a->G * a->D, nl = (size_t)a->H * a->G, ns = nl * a->tokens;
  return !memcmp(a->out, b->out, no * sizeof(float)) && !memcmp(a->lse, b->lse, nl * sizeof(float)) &&
         !memcmp(a->sel, b->sel, ns);
}

int nt_tensor(const exec_policy *pol, const char *name) {
  for (int i = 0; i < pol->ntensors; i++)
    if (!strcmp(pol->tensors[i].name, name))
      return i;
  return -1;
}
