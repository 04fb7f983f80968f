/* numeric.h - shared support of the numeric host tests (host_numeric, host_universal,
 * host_incremental): check counting and reporting, test rows (random or ALGORITHMS.md §9
 * synthetic) rounded to the storage types, a paged KV cache with a shuffled page table, and a
 * runner that drives a compiled policy through exec_create/exec_prefill/exec_step. Results
 * are compared with tests/ref only, never with other code under test.
 *
 * Unused cache slots and pages that belong to no row are poisoned (keys +-3e4, values NaN),
 * so a kernel that reads past a row's end (a partial last page's unused slots, another row's
 * pages) spoils its summaries or output and fails the comparison instead of passing by luck. */
#ifndef VX_TEST_NUMERIC_H
#define VX_TEST_NUMERIC_H

#include <stdint.h>

#include "host_policy.h"
#include "ref.h"

/* ---- checks: one line each, then "N passed, M failed" ---- */

/* Prints "ok   NAME" or "FAIL NAME" with the formatted name; returns ok. */
int nt_check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the final line and returns the process exit status. */
int nt_finish(void);
/* A temporary directory (created once, removed by nt_finish) and the stdlib directory. */
const char *nt_tmpdir(void);
void nt_set_stdlib(const char *dir);
/* Compiles stdlib/NAME.vx; aborts the program (with a failed check) when it cannot. */
void nt_compile(const char *name, host_policy *hp);
double nt_seconds(void); /* monotonic clock */

/* ---- storage rounding (plain C, independent of the executor's conversions) ---- */

uint16_t nt_f32_to_f16(float f);  /* round to nearest even, overflow to inf */
float nt_f16_to_f32(uint16_t h);
uint16_t nt_f32_to_bf16(float f); /* round to nearest even */
float nt_bf16_to_f32(uint16_t h);
/* x rounded to the storage dtype (VXK_F32, VXK_F16, VXK_BF16), as a double. */
double nt_round(double x, int kv_dtype);
const char *nt_dtype_name(int kv_dtype);

/* ---- rows: one (request, KV head) of doubles already rounded to their storage types ---- */

typedef enum { NT_RANDOM, NT_RETRIEVAL, NT_AGGREGATION } nt_gen;
const char *nt_gen_name(nt_gen g);

typedef struct nt_row {
  int G, D, T;
  double *q, *k, *v; /* [G][D] rounded to f32; [T][D] rounded to the cache dtype */
} nt_row;

/* Random: standard Gaussian q, k, v. Synthetic: ref_syn_defaults (falls back to random for
 * T < 2, which the generator does not support). */
void nt_row_make(nt_row *r, nt_gen gen, int G, int D, int T, uint64_t seed, int kv_dtype);
/* New query heads (Gaussian), rounded to f32: a later decode step's query. */
void nt_row_new_query(nt_row *r, uint64_t seed);
void nt_row_free(nt_row *r);
/* The first T tokens of r as a ref_row. */
ref_row nt_ref_row(const nt_row *r, int T);

/* ---- the paged cache of one layer: [page][head][P][D] in the cache dtype ---- */

typedef struct nt_cache {
  int H, P, D, dtype;
  int max_pages, max_row_pages;
  void *k, *v;
  int32_t *ids; /* the row's page table, max_row_pages entries */
} nt_cache;

/* Pages [0, max_pages) are poisoned with NaN; the row's page table is a random injection
 * into them (shuffle_seed != 0) or the identity. */
void nt_cache_init(nt_cache *c, int H, int P, int D, int max_row_pages, int max_pages, int dtype,
                   uint64_t shuffle_seed);
/* Writes tokens [from, to) of rows[0..H) (rows[h] is KV head h) through the page table. */
void nt_cache_write(nt_cache *c, const nt_row *rows, int from, int to);
void nt_cache_free(nt_cache *c);
exec_kv nt_kv(const nt_cache *c, int len, int prefill_len);

/* ---- one decode step of a policy over the cache ---- */

typedef struct nt_result {
  int H, G, D, tokens; /* tokens = max_row_pages * P: the stride of sel */
  float *out;          /* [H][G][D] */
  float *lse;          /* [H][G] */
  uint8_t *sel;        /* [H][G][tokens] */
} nt_result;

void nt_result_init(nt_result *r, int H, int G, int D, int tokens);
void nt_result_free(nt_result *r);
exec_shape nt_shape(const nt_cache *c, int G);
/* q of rows[0..H) as [H][G][D] floats (malloc'd). */
float *nt_queries(const nt_row *rows, int H);
/* exec_create, exec_prefill(len, prefill_len), exec_step; 0 on success, else -1 with err. */
int nt_run(const exec_policy *pol, const nt_cache *c, const nt_row *rows, int G, int len,
           int prefill_len, nt_result *res, char *err, size_t errlen);
/* exec_step only, on an existing state. */
int nt_step(exec_state *st, int row, const nt_cache *c, const nt_row *rows, int len,
            int prefill_len, nt_result *res, char *err, size_t errlen);

/* ---- comparisons ---- */

/* Mismatches between head h's compiled selection (every query head g, tokens [0, T)) and a
 * reference selection; *first gets the first mismatching token (-1 if none). */
int nt_sel_diff(const nt_result *r, int h, const ref_sel *ref, int T, int *first);
/* Largest per-query-head relative L2 error ||o - ref|| / ||ref|| of head h, and the largest
 * |lse - ref_lse| / max(1, |ref_lse|). ref_out [G][D], ref_lse [G] (may be NULL). */
double nt_out_err(const nt_result *r, int h, const double *ref_out, const double *ref_lse,
                  double *lse_err);
/* The f32 rounding error to expect, relative to the output, of attention over a selection
 * computed in f32 (the compiled attend kernel), from the float64 reference's weights w:
 *   u (sqrt(D) S A + sqrt(T) K),   u = 2^-24,
 * S = max_i sum_c |q_c k_ic| / sqrt(D): a logit is an f32 dot product whose rounding error
 *     grows like sqrt(D) u S (random-walk estimate of recursive summation);
 * A = sum_i w_i ||v_i - o|| / ||o||: how much a logit error moves the output
 *     (d o / d s_i = w_i (v_i - o));
 * K = ||sum_i w_i |v_i| || / ||o||: the condition number of the f32 sum over the T
 *     tokens, whose rounding grows like sqrt(T) u.
 * Largest over the query heads. Callers allow a fixed multiple of it (NT_TOL_FACTOR) plus a
 * floor, never less than a few ulps. */
double nt_err_model(const ref_row *r, const ref_sel *s, const double *corr);
#define NT_TOL_FACTOR 8.0
#define NT_TOL_FLOOR 1e-6
/* LSE: |lse - ref| / max(1, |ref|) within this; the sum's rounding grows like sqrt(T) u. */
#define NT_LSE_TOL(T) (1e-5 + NT_TOL_FACTOR * 0x1p-24 * sqrt((double)(T)))

/* Running comparison of compiled heads against the reference attention. */
typedef struct nt_cmp {
  double err, lse_err; /* worst relative output error, worst LSE error */
  double ratio;        /* worst err / nt_err_model */
  int bad;             /* heads beyond tolerance */
} nt_cmp;
/* Compares head h of res with ref_attend_sel(r, sel, corr) within NT_TOL_FACTOR times the
 * error model plus NT_TOL_FLOOR (output) and NT_LSE_TOL (LSE); returns 1 when within. */
int nt_cmp_ref(nt_cmp *acc, const nt_result *res, int h, const ref_row *r, const ref_sel *sel, const double *corr);
/* The same between two compiled results (b plays the reference). */
double nt_out_diff(const nt_result *a, const nt_result *b, double *lse_err);
/* Whether two results are bitwise identical (outputs, LSEs and selections). */
int nt_same(const nt_result *a, const nt_result *b);

/* ---- tensors ---- */
/* The VIR id of the policy tensor called name, or -1. */
int nt_tensor(const exec_policy *pol, const char *name);

#endif
