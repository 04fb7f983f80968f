/* test_dense_layers.c - a state's dense partner (vxrt_state_set_dense) on the CPU equals
 * routing by hand, bit for bit.
 *
 * Three identical caches, each with a policy state and a dense state, decode the same steps:
 * the reference calls dense's vxrt_select / vxrt_attend itself on the dense layers (what
 * vx-serve's per-row backend does) and measures the policy against dense on the others; the
 * second sets the partner with a layer mask and calls the policy's per-row functions only;
 * the third decodes the policy's rows as one batch, with vxrt_decode_attend_dense for the
 * measurement. Outputs, lse and the dense reference must be identical; on a dense layer the
 * batch's selection is every token. Policies: quest, and magicpig, whose logit modifier must
 * not reach the dense layers. Then the partner's errors. Usage: test_dense_layers VXC
 * STDLIB_DIR TMP_DIR */
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"

enum { L = 3, H = 2, D = 64, P = 16, G = 2, ROWS = 3, STEPS = 5 };
enum { HGD = H * G * D, HD = H * D, HG = H * G };
static const uint8_t mask[L] = {1, 0, 1};
static const int prompt[ROWS] = {37, 64, 90};

static const char *compile(const char *vxc, const char *stdlib, const char *tmp, const char *name,
                           char *out, size_t cap) {
  char cmd[3072];
  snprintf(out, cap, "%s/%s.vxp", tmp, name);
  snprintf(cmd, sizeof cmd, "'%s' '%s/%s.vx' -o '%s'", vxc, stdlib, name, out);
  return system(cmd) == 0 ? out : NULL;
}

static float value(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((int)(*s >> 40 & 0xffff) - 32768) / 8192.0f;
}

typedef struct Side {
  vxrt_cache *cache;
  vxrt_state *pol, *dense;
  int rows[ROWS];
} Side;

/* Both states prefilled per row in every layer; the partner set when `partner`. */
static int open_side(vxrt_device *dev, vxrt_policy *pol, vxrt_policy *dense, Side *s, int partner) {
  memset(s, 0, sizeof *s);
  vxrt_cache_desc cd = {L, H, D, P, VXRT_F32, 64, ROWS + 1, 16};
  if (!RT_EXPECT(vxrt_cache_create(dev, &cd, &s->cache), VXRT_OK, NULL) ||
      !RT_EXPECT(vxrt_state_create(pol, s->cache, G, &s->pol), VXRT_OK, NULL) ||
      !RT_EXPECT(vxrt_state_create(dense, s->cache, G, &s->dense), VXRT_OK, NULL))
    return 0;
  uint64_t seed = 7;
  float *k = malloc(sizeof(float) * 128 * HD), *v = malloc(sizeof(float) * 128 * HD);
  for (int r = 0; r < ROWS; r++) {
    for (int i = 0; i < prompt[r] * HD; i++) k[i] = value(&seed), v[i] = value(&seed);
    RT_EXPECT(vxrt_row_open(s->cache, &s->rows[r]), VXRT_OK, NULL);
    for (int l = 0; l < L; l++) {
      RT_EXPECT(vxrt_append(s->cache, s->rows[r], l, k, v, prompt[r]), VXRT_OK, NULL);
      RT_EXPECT(vxrt_prefill(s->pol, s->rows[r], l), VXRT_OK, NULL);
      RT_EXPECT(vxrt_prefill(s->dense, s->rows[r], l), VXRT_OK, NULL);
    }
  }
  free(k);
  free(v);
  return !partner || RT_EXPECT(vxrt_state_set_dense(s->pol, s->dense, mask, L), VXRT_OK, NULL);
}

static void close_side(Side *s) {
  vxrt_state_free(s->pol); /* first: it names dense */
  vxrt_state_free(s->dense);
  vxrt_cache_free(s->cache);
}

/* One row's per-row step of layer l: append and summarise both states, then attend with
 * `st` into out, lse. */
static void row_step(Side *s, vxrt_state *st, int r, int l, const float *q, const float *k,
                     const float *v, float *out, float *lse) {
  int64_t len;
  RT_EXPECT(vxrt_append(s->cache, s->rows[r], l, k, v, 1), VXRT_OK, NULL);
  vxrt_row_length(s->cache, s->rows[r], l, &len);
  RT_EXPECT(vxrt_summarise(s->pol, s->rows[r], l, len - 1), VXRT_OK, NULL);
  RT_EXPECT(vxrt_summarise(s->dense, s->rows[r], l, len - 1), VXRT_OK, NULL);
  RT_EXPECT(vxrt_select(st, s->rows[r], l, q, NULL), VXRT_OK, NULL);
  RT_EXPECT(vxrt_attend(st, s->rows[r], l, q, out, lse), VXRT_OK, NULL);
}

/* Dense attention on a row per row: the measurement's reference. */
static void row_dense(Side *s, int r, int l, const float *q, float *out, float *lse) {
  RT_EXPECT(vxrt_select(s->dense, s->rows[r], l, q, NULL), VXRT_OK, NULL);
  RT_EXPECT(vxrt_attend(s->dense, s->rows[r], l, q, out, lse), VXRT_OK, NULL);
}

typedef struct Out {
  float out[ROWS * HGD], lse[ROWS * HG], ref[ROWS * HGD], lse_ref[ROWS * HG];
} Out;

static int same(const Out *a, const Out *b) {
  return !memcmp(a->out, b->out, sizeof a->out) && !memcmp(a->lse, b->lse, sizeof a->lse) &&
         !memcmp(a->ref, b->ref, sizeof a->ref) && !memcmp(a->lse_ref, b->lse_ref, sizeof a->lse_ref);
}

/* Every token of slot r's row at layer l is selected, for every query head. */
static int all_selected(vxrt_batch *bt, int r, int64_t len) {
  size_t tokens = 16 * P;
  uint8_t *sel = malloc(HG * tokens);
  int ok = RT_EXPECT(vxrt_batch_read_selection(bt, r, sel), VXRT_OK, NULL);
  for (size_t h = 0; ok && h < HG; h++)
    for (size_t t = 0; t < tokens; t++) ok &= sel[h * tokens + t] == (t < (size_t)len);
  free(sel);
  return ok;
}

static void compare(vxrt_device *dev, const char *name, vxrt_policy *pol, vxrt_policy *dense) {
  Side a, c, b;
  if (!open_side(dev, pol, dense, &a, 0) || !open_side(dev, pol, dense, &c, 1) ||
      !open_side(dev, pol, dense, &b, 1))
    return;
  vxrt_stream *s;
  vxrt_batch *bt;
  uint64_t q, k, v;
  float *qf = malloc(sizeof(float) * ROWS * HGD), *kf = malloc(sizeof(float) * ROWS * HD);
  float *vf = malloc(sizeof(float) * ROWS * HD);
  Out *oa = calloc(3, sizeof *oa), *oc = oa + 1, *ob = oa + 2;
  RT_EXPECT(vxrt_stream_create(dev, &s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_create(b.pol, ROWS, &bt), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_set_rows(bt, b.rows, ROWS), VXRT_OK, NULL);
  vxrt_buffer_alloc(dev, sizeof(float) * ROWS * HGD, &q);
  vxrt_buffer_alloc(dev, sizeof(float) * ROWS * HD, &k);
  vxrt_buffer_alloc(dev, sizeof(float) * ROWS * HD, &v);
  vxrt_dbuf Q = {q, VXRT_F32}, K = {k, VXRT_F32}, V = {v, VXRT_F32};
  vxrt_dbuf O = {(uint64_t)(uintptr_t)ob->out, VXRT_F32}, LSE = {(uint64_t)(uintptr_t)ob->lse, VXRT_F32};
  vxrt_dbuf R = {(uint64_t)(uintptr_t)ob->ref, VXRT_F32}, LR = {(uint64_t)(uintptr_t)ob->lse_ref, VXRT_F32};
  uint64_t seed = 99;
  int diffs = 0, sel_bad = 0;
  for (int step = 0; step < STEPS; step++) {
    RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_OK, NULL);
    for (int l = 0; l < L; l++) {
      for (size_t i = 0; i < ROWS * HGD; i++) qf[i] = value(&seed);
      for (size_t i = 0; i < ROWS * HD; i++) kf[i] = value(&seed), vf[i] = value(&seed);
      for (int r = 0; r < ROWS; r++) {
        const float *qr = qf + r * HGD, *kr = kf + r * HD, *vr = vf + r * HD;
        float *o = oa->out + r * HGD, *ls = oa->lse + r * HG;
        row_step(&a, mask[l] ? a.dense : a.pol, r, l, qr, kr, vr, o, ls);
        if (mask[l]) { /* a dense layer: the reference is the output itself */
          memcpy(oa->ref + r * HGD, o, sizeof(float) * HGD);
          memcpy(oa->lse_ref + r * HG, ls, sizeof(float) * HG);
        } else {
          row_dense(&a, r, l, qr, oa->ref + r * HGD, oa->lse_ref + r * HG);
        }
        row_step(&c, c.pol, r, l, qr, kr, vr, oc->out + r * HGD, oc->lse + r * HG);
        row_dense(&c, r, l, qr, oc->ref + r * HGD, oc->lse_ref + r * HG);
      }
      vxrt_buffer_upload(dev, q, qf, sizeof(float) * ROWS * HGD);
      vxrt_buffer_upload(dev, k, kf, sizeof(float) * ROWS * HD);
      vxrt_buffer_upload(dev, v, vf, sizeof(float) * ROWS * HD);
      RT_EXPECT(vxrt_decode_append(bt, l, K, V, s), VXRT_OK, NULL);
      RT_EXPECT(vxrt_decode_select(bt, l, Q, s), VXRT_OK, NULL);
      for (int r = 0; r < ROWS && mask[l]; r++)
        sel_bad += !all_selected(bt, r, prompt[r] + step + 1);
      RT_EXPECT(vxrt_decode_attend(bt, l, Q, O, LSE, s), VXRT_OK, NULL);
      RT_EXPECT(vxrt_decode_attend_dense(bt, l, Q, R, LR, s), VXRT_OK, NULL);
      diffs += !same(oa, oc) + !same(oa, ob);
    }
    RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);
  }
  RT_CHECK(diffs == 0, "%s: %d (step, layer)s differ from routing by hand", name, diffs);
  RT_CHECK(sel_bad == 0, "%s: %d selections on dense layers are not every token", name, sel_bad);
  printf("%-9s %d steps x %d layers (dense: 0, 2) x %d rows: per-row with the partner and batched "
         "equal routing by hand: %s\n", name, STEPS, L, ROWS, diffs || sel_bad ? "no" : "yes");
  vxrt_batch_free(bt);
  vxrt_stream_free(s);
  vxrt_buffer_free(dev, q), vxrt_buffer_free(dev, k), vxrt_buffer_free(dev, v);
  free(qf), free(kf), free(vf), free(oa);
  close_side(&a), close_side(&c), close_side(&b);
}

static void errors(vxrt_device *dev, vxrt_policy *pol, vxrt_policy *dense) {
  Side a, b;
  if (!open_side(dev, pol, dense, &a, 0) || !open_side(dev, pol, dense, &b, 1)) return;
  RT_EXPECT(vxrt_state_set_dense(b.pol, b.pol, mask, L), VXRT_ERR_INVALID_ARG, "its own dense partner");
  RT_EXPECT(vxrt_state_set_dense(a.dense, a.pol, NULL, 0), VXRT_ERR_UNSUPPORTED, "does more than attend");
  RT_EXPECT(vxrt_state_set_dense(b.pol, b.dense, mask, 2), VXRT_ERR_INVALID_ARG, "the mask has 2 layers");
  RT_EXPECT(vxrt_state_set_dense(b.pol, a.dense, mask, L), VXRT_ERR_INVALID_ARG, "same cache");
  RT_EXPECT(vxrt_state_set_dense(b.dense, b.dense, NULL, 0), VXRT_ERR_INVALID_ARG, "its own");
  RT_EXPECT(vxrt_state_set_dense(NULL, b.dense, NULL, 0), VXRT_ERR_INVALID_ARG, "NULL state");
  RT_EXPECT(vxrt_state_free(b.dense), VXRT_ERR_STATE, "the dense partner of 1 state");
  vxrt_stream *s;
  vxrt_batch *bt;
  float x[ROWS * HGD];
  vxrt_dbuf X = {(uint64_t)(uintptr_t)x, VXRT_F32};
  RT_EXPECT(vxrt_stream_create(dev, &s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_create(a.pol, ROWS, &bt), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_set_rows(bt, a.rows, ROWS), VXRT_OK, NULL);
  RT_EXPECT(vxrt_decode_attend_dense(bt, 0, X, X, X, s), VXRT_ERR_STATE, "no prepared step");
  RT_EXPECT(vxrt_batch_prepare(bt, 0, s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_decode_attend_dense(bt, 0, X, X, X, s), VXRT_ERR_STATE, "no dense partner");
  RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);
  vxrt_batch_free(bt);
  vxrt_stream_free(s);
  /* cleared, the partner frees */
  RT_EXPECT(vxrt_state_set_dense(b.pol, NULL, NULL, 0), VXRT_OK, NULL);
  RT_EXPECT(vxrt_state_free(b.dense), VXRT_OK, NULL);
  b.dense = NULL;
  close_side(&a), close_side(&b);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: test_dense_layers VXC STDLIB_DIR TMP_DIR\n");
    return 2;
  }
  char dense_path[1024], path[1024];
  vxrt_device *dev;
  vxrt_policy *dense = NULL, *pol;
  if (!RT_EXPECT(vxrt_device_open(VXRT_CPU, 0, &dev), VXRT_OK, NULL)) return rt_finish();
  RT_CHECK(compile(argv[1], argv[2], argv[3], "dense", dense_path, sizeof dense_path), "vxc dense.vx");
  RT_EXPECT(vxrt_policy_load_file(dev, dense_path, NULL, 0, &dense), VXRT_OK, NULL);
  static const char *const names[] = {"quest", "magicpig"};
  static const vxrt_param_override budget[] = {{"budget", 48}};
  for (size_t i = 0; dense && i < sizeof names / sizeof names[0]; i++) {
    RT_CHECK(compile(argv[1], argv[2], argv[3], names[i], path, sizeof path), "vxc %s.vx", names[i]);
    if (!RT_EXPECT(vxrt_policy_load_file(dev, path, budget, i == 0, &pol), VXRT_OK, NULL)) continue;
    compare(dev, names[i], pol, dense);
    if (i == 0) errors(dev, pol, dense);
    vxrt_policy_free(pol);
  }
  vxrt_policy_free(dense);
  RT_EXPECT(vxrt_device_close(dev), VXRT_OK, NULL);
  return rt_finish();
}
