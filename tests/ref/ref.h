/* ref.h - float64 reference implementations of every algorithm in shared/ALGORITHMS.md
 * sections 0-7, plus the section 9 synthetic data generator. Library vxref under tests/ref;
 * the numeric tests compare compiled .vx policies against it. It must stay independent of the
 * compiler, the runtime and stdlib/ (plain C11 + libm, nothing of ours included or linked), so
 * a bug there can never make a policy agree with its own reference.
 *
 * Data model: one row = one request x one KV head. q is [G][D], k and v are [T][D], all
 * row-major doubles. Logit s[g][i] = q[g] . k[i] / sqrt(D). Pages hold P tokens; page j covers
 * tokens [jP, jP+P) and the last page may be partial. Budgets count tokens and include every
 * always-kept token; a budget >= T selects everything. Top-k ties go to the lowest index.
 * Functions returning int give 0 on success and -1 on bad arguments or out of memory. */
#ifndef VX_TESTS_REF_H
#define VX_TESTS_REF_H

#include <stddef.h>
#include <stdint.h>

/* ---- deterministic random numbers ------------------------------------------------------
 * splitmix64: state += 0x9E3779B97F4A7C15, then the usual two xor-shift-multiply rounds.
 * uniform = ((u64 >> 11) + 0.5) * 2^-53, in (0, 1). Gaussians by Box-Muller from two uniforms
 * u1, u2: r = sqrt(-2 ln u1), first r cos(2 pi u2), then r sin(2 pi u2). Spelled out because
 * the compiler's gaussian(seed) constants must match it for selections to be compared. */
typedef struct {
  uint64_t state;
  int has_spare;
  double spare;
} ref_rng;

void ref_rng_seed(ref_rng *g, uint64_t seed);
uint64_t ref_rng_u64(ref_rng *g);
double ref_rng_uniform(ref_rng *g);
double ref_rng_gauss(ref_rng *g);
int ref_rng_below(ref_rng *g, int n); /* uniform in [0, n), n >= 1 */

/* ---- rows and selections --------------------------------------------------------------- */
typedef struct {
  int G, D, T;
  const double *q, *k, *v;
} ref_row;

int ref_npages(int T, int P);

/* Selection scope (ALGORITHMS.md section 0): one mask per query head, or one shared by the
 * GQA group. Every selection records it. */
typedef enum { REF_SHARED = 0, REF_PER_HEAD = 1 } ref_scope;

/* mask is [T] when shared, [G][T] per head; 1 = selected. Start from REF_SEL_EMPTY; every
 * function that fills a ref_sel (re)allocates it; release with ref_sel_free. */
typedef struct {
  ref_scope scope;
  int G, T;
  uint8_t *mask;
} ref_sel;
#define REF_SEL_EMPTY                                                                              \
  { REF_SHARED, 0, 0, NULL }

int ref_sel_alloc(ref_sel *s, ref_scope scope, int G, int T); /* all zero */
void ref_sel_free(ref_sel *s);
const uint8_t *ref_sel_head(const ref_sel *s, int g); /* head g's [T] view */
int ref_sel_count(const ref_sel *s, int g);

/* ---- attention (section 0) --------------------------------------------------------------- */
void ref_logits(const ref_row *r, double *s /* [G][T] */);

/* Softmax over the selection only of s - corr. sel: [G][T] (REF_PER_HEAD) or [T] (REF_SHARED),
 * NULL = every token; corr: [G][T] or NULL (no correction). w: [G][T], zero off the selection.
 * lse: [G] or NULL, natural-log sum of exp over the selection, -inf for an empty selection. */
int ref_attn_probs(int G, int D, int T, const double *q, const double *k, ref_scope scope,
                   const uint8_t *sel, const double *corr, double *w, double *lse);
/* out: [G][D] = sum_i w_i v_i with w as above (zero for an empty selection). */
int ref_attend(int G, int D, int T, const double *q, const double *k, const double *v,
               ref_scope scope, const uint8_t *sel, const double *corr, double *out, double *lse);
int ref_attend_sel(const ref_row *r, const ref_sel *s, const double *corr, double *out,
                   double *lse);
/* Exact merge of two disjoint partial attentions of one head (natural-log LSEs; o may alias
 * oA or oB). Both empty gives o = 0, l = -inf. */
void ref_lse_merge(int D, const double *oA, double lA, const double *oB, double lB, double *o,
                   double *l);

/* ---- page summaries (sections 4, 5) --------------------------------------------------------
 * Running kmax/kmin/ksum over the n tokens written so far; slots beyond n are never read. */
typedef struct {
  int D, n;
  double *kmax, *kmin, *ksum;
} ref_summary;

int ref_summary_init(ref_summary *s, int D); /* empty: n = 0 */
void ref_summary_free(ref_summary *s);
void ref_summary_clear(ref_summary *s); /* page reused */
void ref_summary_append(ref_summary *s, const double *k /* [D] */);
void ref_summary_bulk(ref_summary *s, int n, const double *k /* [n][D] */);
void ref_summary_mean(const ref_summary *s, double *kmean /* [D]; zeros when empty */);
/* Bulk summaries of every page of a row; outputs [npages][D], any may be NULL. */
int ref_page_summaries(const ref_row *r, int P, double *kmax, double *kmin, double *kmean);

/* ---- scores ------------------------------------------------------------------------------ */
/* block_topk: q_bar . kmean_j / sqrt(D) = mean token logit of page j. score: [npages]. */
int ref_scores_block_topk(const ref_row *r, int P, double *score);
/* quest: U[g][j] = sum_c max(q_gc kmax_jc, q_gc kmin_jc), unscaled (bounds q.k). [G][npages]. */
int ref_scores_quest(const ref_row *r, int P, double *U);
/* lserve: quest envelopes of each REF_LSERVE_SUB-token sub-block (the whole page if P is not
 * larger), max over a page's sub-blocks. P > REF_LSERVE_SUB must be a multiple of it. */
#define REF_LSERVE_SUB 16
int ref_scores_lserve(const ref_row *r, int P, double *U /* [G][npages] */);
/* gqa_softmax: per head softmax over pages of q_g . kmean_j / sqrt(D), max over heads. */
int ref_scores_gqa_softmax(const ref_row *r, int P, double *score /* [npages] */);
/* double_sparsity: sum over chan of q_gc * label_ic * scale_i / sqrt(D). s: [G][T]. */
int ref_scores_double_sparsity(const ref_row *r, int nchan, const int *chan, double *s);
/* One token's int8 labels (absmax): scale = max_c |k_c| / 127, label_c = round(k_c / scale);
 * an all-zero token gets scale 0 and labels 0. label: [nchan]. */
void ref_ds_quantize(const double *k, int nchan, const int *chan, int8_t *label, double *scale);

/* ---- selections (sections 1-5, 7) ----------------------------------------------------------- */
#define REF_TOPK_SINK 4
#define REF_TOPK_WINDOW 64

int ref_select_dense(const ref_row *r, ref_sel *out);
/* First sink and last window tokens; q is never read. */
int ref_select_streaming(const ref_row *r, int sink, int window, ref_sel *out);
/* sink first + window last tokens, then the top budget - kept of the rest by logit (group mean
 * when shared). ALGORITHMS.md uses sink 4, window 64. */
int ref_select_topk(const ref_row *r, ref_scope scope, int budget, int sink, int window,
                    ref_sel *out);
/* Shared; first and last page kept, top budget/P - 2 others by ref_scores_block_topk. */
int ref_select_block_topk(const ref_row *r, int P, int budget, ref_sel *out);
/* Last page kept, top budget/P - 1 others by U (max over the group when shared). */
int ref_select_quest(const ref_row *r, ref_scope scope, int P, int budget, ref_sel *out);
/* Shared; last page kept, top budget/P - 1 others by ref_scores_lserve maxed over heads. */
int ref_select_lserve(const ref_row *r, int P, int budget, ref_sel *out);
/* Shared; first and last page kept, top budget/P - 2 others by ref_scores_gqa_softmax. */
int ref_select_gqa_softmax(const ref_row *r, int P, int budget, ref_sel *out);
/* ref_select_topk's rule on ref_scores_double_sparsity scores (group mean when shared). */
int ref_select_double_sparsity(const ref_row *r, ref_scope scope, int budget, int sink, int window,
                               int nchan, const int *chan, ref_sel *out);

/* ---- h2o (section 7): per-request state ------------------------------------------------------
 * acc[i] for the len tokens seen so far. One ref_h2o per request: nothing is shared, so a
 * request can only see its own history. */
typedef struct {
  int len, cap;
  double *acc;
} ref_h2o;

void ref_h2o_init(ref_h2o *st);
void ref_h2o_reset(ref_h2o *st); /* zero the state (its pages are reused by a new request) */
void ref_h2o_free(ref_h2o *st);
/* One decode step: tokens new since the last step enter with acc 0; select the last window
 * tokens plus the top budget - window of the rest by acc (shared); attend over it (out [G][D]
 * and lse [G], either may be NULL); then acc <- decay * acc + mean over heads of this step's
 * attention probabilities (zero off the selection). A row shorter than the state is a new
 * request that was not reset: -1. */
int ref_h2o_step(ref_h2o *st, const ref_row *r, int budget, int window, double decay, ref_sel *sel,
                 double *out, double *lse);

/* ---- magicpig (section 6) ------------------------------------------------------------------ */
typedef struct {
  int K, L;         /* bits per table (0..32; 0 forces u = 1), tables */
  uint64_t seed;    /* W = ref_gaussian_fill(seed) as [D][K*L], column l*K + b */
  const double *W;  /* or an explicit [D][K*L] matrix; NULL = from seed */
  int sink, window; /* always kept: first sink and last window tokens, correction 0 */
  int centre;       /* 1: hash and measure angles of k - mu, mu = mean of the other keys */
  double eps;       /* correction log(u + eps); ALGORITHMS.md uses 1e-4 */
} ref_magicpig_params;

void ref_magicpig_defaults(ref_magicpig_params *p); /* K 10, L 150, seed 1, 4, 64, 1, 1e-4 */
void ref_gaussian_fill(uint64_t seed, size_t n, double *out);
/* Probability that >= 2 of L K-bit SimHash codes agree at angle theta. */
double ref_simhash_u(double theta, int K, int L);
/* code[l] = bit b set iff x . W[:, l*K + b] > 0. */
void ref_simhash_codes(int D, int K, int L, const double *W, const double *x, uint32_t *code);
/* Per-head selection (kept tokens for every head, others iff their code equals the query's in
 * >= 2 tables) and corr [G][T] (log(u + eps) for sampled, 0 elsewhere). Attending with the
 * raw keys is exact: centring shifts every logit of a head by the same q.mu / sqrt(D).
 * mu_out: [D] or NULL. */
int ref_magicpig(const ref_row *r, const ref_magicpig_params *p, ref_sel *out, double *corr,
                 double *mu_out);

/* ---- synthetic attention (section 9) ---------------------------------------------------------
 * a: random unit vector. Query heads gamma a + tau g; token 0 is the sink, key alpha a and
 * value of std value_sink; other keys -beta a + sigma g_i with standard Gaussian values.
 * Retrieval: the needle key gets a component along needle_head's query (orthogonal to a) so
 * that head's needle logit is the sink's plus needle_gap; other heads barely move.
 * Aggregation: a random agg_frac of tokens 1..T-1 are moved along a so that their group-mean
 * logit is the sink's - log(group size) + agg_gap: the group holds about the sink's mass. */
typedef enum { REF_SYN_RETRIEVAL, REF_SYN_AGGREGATION } ref_syn_regime;

typedef struct {
  ref_syn_regime regime;
  int G, D, T; /* T >= 2 */
  uint64_t seed;
  double alpha, beta, sigma, gamma, tau, value_sink;
  int needle_pos; /* -1: uniform in [1, T) */
  int needle_head;
  double needle_gap;
  double agg_frac, agg_gap;
} ref_syn_params;

typedef struct {
  int G, D, T;
  double *q, *k, *v, *a;
  int needle_pos, needle_head; /* -1 in the aggregation regime */
  uint8_t *group;              /* [T], aggregation group members */
} ref_syn;

/* gamma 1.5 sqrt(D), tau 0.75 (queries within ~27 deg of a), beta 2 sqrt(D), sigma 1 (a
 * ~27 deg cone), alpha 2 sqrt(D), value_sink 0.1, needle at a random position answering head 0
 * with gap 0, agg_frac 0.1, agg_gap 0. */
void ref_syn_defaults(ref_syn_params *p, ref_syn_regime regime, int G, int D, int T, uint64_t seed);
int ref_syn_make(const ref_syn_params *p, ref_syn *s);
void ref_syn_free(ref_syn *s);
ref_row ref_syn_row(const ref_syn *s);

#endif
