/* test_report.c - checks vxc --report's figures (compiler/report.c) against closed-form
 * formulas written out here from the counting rule in docs/report.md, not from the code:
 * for dense, quest, block_topk, topk, streaming, h2o and magicpig over a grid of context
 * lengths N, budgets B, head dims D, group sizes G, page sizes P and KV dtypes. The stdlib
 * policies are compiled in-process (front end, lowering, passes). Also checks the JSON form,
 * the policy's default budget, and that a require that fails for the given P is an error.
 *   usage: test_report STDLIB_DIR          prints "N passed, M failed" last */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "report.h"

static int passed, failed;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
  if (ok) {
    passed++;
    return;
  }
  failed++;
  va_list ap;
  va_start(ap, fmt);
  fputs("FAIL: ", stdout);
  vprintf(fmt, ap);
  fputc('\n', stdout);
  va_end(ap);
}

/* Every figure is an integer far below 2^53, or a ratio of two such: equal to rounding. */
static bool same(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(1, fabs(b)); }

typedef struct Policy {
  Compilation c;
  VirModule *m;
} Policy;

static bool load_file(Policy *p, const char *path) {
  char *text;
  int len;
  const char *error;
  if (!front_read_file(path, &text, &len, &error)) {
    printf("FAIL: cannot read %s: %s\n", path, error);
    return false;
  }
  int nerrors = front_compile(&p->c, path, text, len);
  free(text);
  if (nerrors) {
    diag_render(&p->c.diags, stdout, DIAG_TEXT);
    front_destroy(&p->c);
    return false;
  }
  p->m = compile_middle(&p->c);
  if (!p->m) {
    front_destroy(&p->c);
    return false;
  }
  return true;
}

static bool load(Policy *p, const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.vx", dir, name);
  return load_file(p, path);
}

/* The expected figures of one case. */
typedef struct Expect {
  double selected;
  double scoring_bytes, scoring_flops;
  double attention_bytes, attention_flops;
  double update_bytes, update_flops;
  bool estimate;
} Expect;

typedef struct Case {
  double N, B, D, G, P, kv; /* kv: bytes per K or V element */
  DType kv_dtype;
} Case;

static double kv_size(DType d) { return d == DT_F32 ? 4 : 2; }

/* Tokens attended by a page-granular top(): floor(B/P) pages, at least the kept pages, as
 * tokens, at most N. Token-granular: B tokens, at least the kept ones, at most N. */
static double pages_selected(const Case *c, double kept_tokens) {
  double kept = fmin(kept_tokens, c->N);
  return fmin(c->N, fmax(floor(c->B / c->P), ceil(kept / c->P)) * c->P);
}
static double tokens_selected(const Case *c, double kept_tokens) {
  return fmin(c->N, fmax(c->B, fmin(kept_tokens, c->N)));
}

/* Attention over S tokens: K and V of each, 4 G D FLOPs each. */
static void attention(Expect *e, const Case *c, double S) {
  e->selected = S;
  e->attention_bytes = S * 2 * c->D * c->kv;
  e->attention_flops = S * 4 * c->G * c->D;
}

static Expect expect_dense(const Case *c) {
  Expect e = {0};
  attention(&e, c, c->N);
  return e;
}

/* quest: keep last 1 page. Per page: kmax and kmin, D f32 each; q*kmax, q*kmin, max, and the
 * sum over c read G*D elements each; max over g reads G. Skipped when the row is covered. */
static Expect expect_quest(const Case *c) {
  Expect e = {0};
  double n = ceil(c->N / c->P), S = pages_selected(c, c->P);
  attention(&e, c, S);
  if (S < c->N) {
    e.scoring_bytes = n * 2 * c->D * 4;
    e.scoring_flops = n * (4 * c->G * c->D + c->G);
  }
  return e;
}

/* block_topk: keep first and last page. Row: mean over g of q (G*D reads + D divisions),
 * sqrt(D) (1). Per page: kmean, D f32; qbar*kmean, /sqrt(D), sum over c: D each. */
static Expect expect_block_topk(const Case *c) {
  Expect e = {0};
  double n = ceil(c->N / c->P), S = pages_selected(c, 2 * c->P);
  attention(&e, c, S);
  if (S < c->N) {
    e.scoring_bytes = n * c->D * 4;
    e.scoring_flops = c->G * c->D + c->D + 1 + n * 3 * c->D;
  }
  return e;
}

/* topk: keep 4 + 64 tokens. Row as block_topk; per token: k (D elements of the KV dtype);
 * qbar*k, /sqrt(D), sum over c: D each. */
static Expect expect_topk(const Case *c) {
  Expect e = {0};
  double S = tokens_selected(c, 68);
  attention(&e, c, S);
  if (S < c->N) {
    e.scoring_bytes = c->N * c->D * c->kv;
    e.scoring_flops = c->G * c->D + c->D + 1 + c->N * 3 * c->D;
  }
  return e;
}

/* streaming: sink 4 + window 1024 tokens, nothing scored. */
static Expect expect_streaming(const Case *c) {
  Expect e = {0};
  attention(&e, c, fmin(c->N, 1028));
  return e;
}

/* h2o: keep last 64 tokens; scoring reads acc (f32 per token), computes nothing. Update,
 * per token: acc (f32) and prob (G f32); mean over g (G reads + 1 division), decay*acc, +. */
static Expect expect_h2o(const Case *c) {
  Expect e = {0};
  double S = tokens_selected(c, 64);
  attention(&e, c, S);
  if (S < c->N)
    e.scoring_bytes = c->N * 4;
  e.update_bytes = c->N * 4 + c->N * c->G * 4;
  e.update_flops = c->N * (c->G + 1 + 2);
  return e;
}

/* magicpig (K = 10, L = 150): kept 4 + 64; S = kept + density * (N - kept), an estimate.
 * Scoring, per token: code (L u32), k (D), knorm (f32). Attention reads u (G f32) per
 * selected token and spends 3 G FLOPs on it (+ 1e-4, log, select). Selected per head: the
 * group reads K and V of the union, kept + G (S - kept) tokens at most, at most N. */
static Expect expect_magicpig(const Case *c, double density) {
  Expect e = {0};
  double kept = fmin(68, c->N), S = kept + density * (c->N - kept);
  attention(&e, c, S);
  e.attention_bytes = fmin(c->N, kept + c->G * (S - kept)) * 2 * c->D * c->kv;
  e.estimate = true;
  e.attention_bytes += S * c->G * 4;
  e.attention_flops += S * 3 * c->G;
  e.scoring_bytes = c->N * (150 * 4 + c->D * c->kv + 4);
  return e;
}

static void compare(const char *name, const Case *c, const Report *r, const Expect *e,
                    bool check_scoring_flops) {
  char tag[160];
  snprintf(tag, sizeof tag, "%s N=%.0f B=%.0f D=%.0f G=%.0f P=%.0f kv=%s", name, c->N, c->B, c->D,
           c->G, c->P, ast_dtype_text(c->kv_dtype));
  bool ok = same(r->selected, e->selected) && same(r->scoring.bytes, e->scoring_bytes) &&
            (!check_scoring_flops || same(r->scoring.flops, e->scoring_flops)) &&
            same(r->attention.bytes, e->attention_bytes) &&
            same(r->attention.flops, e->attention_flops) &&
            same(r->update.bytes, e->update_bytes) && same(r->update.flops, e->update_flops) &&
            r->estimate == e->estimate;
  double total_bytes = e->scoring_bytes + e->attention_bytes + e->update_bytes;
  double dense_bytes = c->N * 2 * c->D * c->kv;
  ok = ok && same(r->dense.bytes, dense_bytes) && same(r->dense.flops, c->N * 4 * c->G * c->D) &&
       same(r->speedup_bytes, dense_bytes / total_bytes);
  check(ok,
        "%s: selected %.0f/%.0f scoring %.0f/%.0f B %.0f/%.0f FLOPs attention %.0f/%.0f B "
        "%.0f/%.0f FLOPs update %.0f/%.0f B %.0f/%.0f FLOPs (got/expected)",
        tag, r->selected, e->selected, r->scoring.bytes, e->scoring_bytes, r->scoring.flops,
        e->scoring_flops, r->attention.bytes, e->attention_bytes, r->attention.flops,
        e->attention_flops, r->update.bytes, e->update_bytes, r->update.flops, e->update_flops);
}

enum { NPOLICIES = 7 };
static const char *const names[NPOLICIES] = {"dense", "quest", "block_topk", "topk",
                                             "streaming", "h2o", "magicpig"};

static Expect expected(int policy, const Case *c, double density) {
  switch (policy) {
  case 0: return expect_dense(c);
  case 1: return expect_quest(c);
  case 2: return expect_block_topk(c);
  case 3: return expect_topk(c);
  case 4: return expect_streaming(c);
  case 5: return expect_h2o(c);
  default: return expect_magicpig(c, density);
  }
}

static void grid(Policy *policies) {
  static const double Ns[] = {1, 15, 16, 17, 100, 1000, 4096, 32768, 131077};
  static const double Bs[] = {0, 16, 100, 256, 2048, 4095, 1 << 20};
  static const double Ds[] = {64, 128};
  static const double Gs[] = {1, 4, 8};
  static const double Ps[] = {1, 16, 64};
  static const DType kvs[] = {DT_F32, DT_F16, DT_BF16};
#define COUNT(a) (sizeof a / sizeof a[0])
  for (int p = 0; p < NPOLICIES; p++)
    for (size_t in = 0; in < COUNT(Ns); in++)
      for (size_t ib = 0; ib < COUNT(Bs); ib++)
        for (size_t id = 0; id < COUNT(Ds); id++)
          for (size_t ig = 0; ig < COUNT(Gs); ig++)
            for (size_t ip = 0; ip < COUNT(Ps); ip++)
              for (size_t ik = 0; ik < COUNT(kvs); ik++) {
                Case c = {Ns[in], Bs[ib], Ds[id], Gs[ig], Ps[ip], kv_size(kvs[ik]), kvs[ik]};
                ReportOptions o;
                report_options_init(&o);
                o.enabled = true;
                o.context = (long long)c.N;
                o.budget = (long long)c.B;
                o.D = (long long)c.D;
                o.G = (long long)c.G;
                o.P = (long long)c.P;
                o.kv_dtype = c.kv_dtype;
                o.density = ib % 2 ? 0.05 : 0.125;
                Report r;
                char err[256];
                if (!report_compute(policies[p].m, &o, &r, err, sizeof err)) {
                  check(false, "%s: report_compute: %s", names[p], err);
                  continue;
                }
                Expect e = expected(p, &c, o.density);
                /* magicpig's scoring FLOPs (hashing, pow, acos...) are not written out here */
                compare(names[p], &c, &r, &e, p != 6);
              }
#undef COUNT
}

/* --report --context 32768 with every other option at its default. */
static ReportOptions options_32k(void) {
  ReportOptions o;
  report_options_init(&o);
  o.enabled = true;
  o.context = 32768;
  return o;
}

/* A selection that reads 'layer' (layered.vx): with --layers 8, layers 0-1 attend all N
 * tokens, layers 2-7 the 64-token budget plus the expected density of the rest; the
 * headline figures are the mean over the 8 layers. */
static void per_layer(Policy *layered) {
  ReportOptions o = options_32k();
  Report r;
  char err[256];
  bool ok = report_compute(layered->m, &o, &r, err, sizeof err);
  check(ok && r.layer_dependent && r.nlayer_ranges == 0 && r.nnotes > 0 &&
            strstr(r.notes[r.nnotes - 1], "--layers"),
        "layered without --layers: one set of figures and a note naming --layers");
  o.layers = 8;
  ok = report_compute(layered->m, &o, &r, err, sizeof err);
  double N = 32768, D = 128, kv = 2, scoring = 2048 * D * 4; /* kmax f32, every page */
  double rest = 64 + 0.05 * (N - 64);
  double early = scoring + N * 2 * D * kv, late = scoring + rest * 2 * D * kv;
  double mean = (2 * early + 6 * late) / 8, dense = N * 2 * D * kv;
  check(ok && r.nlayer_ranges == 2, "layered, 8 layers: two runs of layers (%s)", ok ? "" : err);
  if (r.nlayer_ranges != 2)
    return;
  const ReportLayers *a = &r.layer_ranges[0], *b = &r.layer_ranges[1];
  check(a->first == 0 && a->last == 1 && a->selected == N && !a->estimate &&
            same(a->total.bytes, early),
        "layers 0-1 attend all %g tokens exactly: %g bytes, expected %g", N, a->total.bytes, early);
  check(b->first == 2 && b->last == 7 && same(b->selected, rest) && b->estimate &&
            same(b->total.bytes, late),
        "layers 2-7: %g tokens (estimate), %g bytes, expected %g", b->selected, b->total.bytes, late);
  check(same(r.total.bytes, mean) && same(r.speedup_bytes, dense / mean),
        "the headline is the mean over the layers: %g bytes, expected %g", r.total.bytes, mean);
}

/* Specific cases: the defaults, the JSON form, a failing require. */
static void specifics(Policy *policies, Policy *lserve) {
  ReportOptions o = options_32k();
  Report r;
  char err[256];
  /* quest with its own budget (2048 tokens), the Llama-3.1-8B defaults and bf16 */
  bool ok = report_compute(policies[1].m, &o, &r, err, sizeof err);
  Case c = {32768, 2048, 128, 4, 16, 2, DT_BF16};
  Expect e = expect_quest(&c);
  check(ok && r.budget == 2048 && r.budget_from_source && same(r.scoring.bytes, e.scoring_bytes) &&
            same(r.attention.bytes, e.attention_bytes) && same(r.speedup_bytes, 16.0 / 3.0),
        "quest at its default budget: speedup %.4f, expected 16/3", r.speedup_bytes);
  check(r.nreads == 2 && !strcmp(r.reads[0].tensor, "kmax") && r.reads[0].per_elem == 512 &&
            !r.reads[0].per_token && !strcmp(r.reads[1].tensor, "kmin"),
        "quest's scoring reads kmax and kmin, 512 B per page each");

  /* the JSON object carries the same figures */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  report_print(f, &r, true);
  fclose(f);
  cJSON *j = cJSON_Parse(buf);
  cJSON *scoring = cJSON_GetObjectItem(j, "scoring");
  cJSON *speedup = cJSON_GetObjectItem(j, "speedup");
  check(j && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "policy")), "quest") &&
            cJSON_GetNumberValue(cJSON_GetObjectItem(scoring, "bytes")) == r.scoring.bytes &&
            cJSON_GetNumberValue(cJSON_GetObjectItem(scoring, "flops")) == r.scoring.flops &&
            same(cJSON_GetNumberValue(cJSON_GetObjectItem(speedup, "bytes")), r.speedup_bytes) &&
            cJSON_IsFalse(cJSON_GetObjectItem(j, "selected_is_estimate")) &&
            strchr(buf, '\n') == buf + len - 1,
        "JSON report of quest: %s", buf);
  cJSON_Delete(j);
  free(buf);

  /* a where() selection says its count is an estimate, in text */
  report_compute(policies[6].m, &o, &r, err, sizeof err);
  f = open_memstream(&buf, &len);
  report_print(f, &r, false);
  fclose(f);
  check(r.estimate && strstr(buf, "ESTIMATE") != NULL, "magicpig's text report says ESTIMATE");
  free(buf);

  /* lserve requires P % 16 == 0 */
  o.P = 8;
  check(!report_compute(lserve->m, &o, &r, err, sizeof err) && strstr(err, "require"),
        "lserve at P = 8 fails its require");
  o.P = 64;
  check(report_compute(lserve->m, &o, &r, err, sizeof err), "lserve at P = 64: %s", err);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_report STDLIB_DIR LAYERED.vx\n");
    return 2;
  }
  Policy policies[NPOLICIES], lserve, layered;
  for (int p = 0; p < NPOLICIES; p++)
    if (!load(&policies[p], argv[1], names[p])) {
      printf("0 passed, 1 failed\n");
      return 1;
    }
  if (!load(&lserve, argv[1], "lserve") || !load_file(&layered, argv[2])) {
    printf("0 passed, 1 failed\n");
    return 1;
  }
  grid(policies);
  specifics(policies, &lserve);
  per_layer(&layered);
  front_destroy(&layered.c);
  for (int p = 0; p < NPOLICIES; p++)
    front_destroy(&policies[p].c);
  front_destroy(&lserve.c);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
