/* test_batch_cpu.c - the batched API on the CPU equals the per-row calls, bit for bit.
 *
 * For each stdlib policy (compiled here by vxc; budgets and windows overridden small so that
 * selections are sparse), two identical caches and states: one prefilled with
 * vxrt_batch_prefill and decoded with vxrt_batch_* /
 * vxrt_decode_* (three rows of different lengths, two layers, f32 and bf16 device buffers),
 * the other with vxrt_prefill, then vxrt_append / vxrt_summarise / vxrt_select / vxrt_attend per row and
 * layer. Outputs, lse and selections must be identical. Then the batched API's errors, and
 * the split-KV plan function. Usage: test_batch_cpu VXC STDLIB_DIR TMP_DIR */
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"

/* libvxrt's split-KV plan (runtime/batch.c; internal, declared here for its unit test). */
int vxrt_attend_chunks(int rows, int max_pages, int sms);

enum { L = 2, H = 2, D = 64, P = 16, G = 2, ROWS = 3, STEPS = 5 };
static const int prompt[ROWS] = {37, 64, 90};

static const char *compile(const char *vxc, const char *stdlib, const char *tmp, const char *name) {
  static char out[1024];
  char cmd[3072];
  snprintf(out, sizeof out, "%s/%s.vxp", tmp, name);
  snprintf(cmd, sizeof cmd, "'%s' '%s/%s.vx' -o '%s'", vxc, stdlib, name, out);
  return system(cmd) == 0 ? out : NULL;
}

/* Deterministic values that bf16 represents exactly, so f32 and bf16 buffers carry the same
 * numbers. */
static float value(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  float x = (float)((int)(*s >> 40 & 0xffff) - 32768) / 8192.0f;
  uint16_t h;
  vxrt_convert_from_f32(VXRT_BF16, &x, &h, 1);
  vxrt_convert_to_f32(VXRT_BF16, &h, &x, 1);
  return x;
}

typedef struct Side {
  vxrt_policy *pol;
  vxrt_cache *cache;
  vxrt_state *st;
  int rows[ROWS];
} Side;

/* batched: prefill with vxrt_batch_prefill instead of vxrt_prefill per row and layer. */
static int open_side(vxrt_device *dev, const char *path, vxrt_dtype kv, Side *s, int batched) {
  static const vxrt_param_override ovr[] = {{"budget", 48}, {"window", 24}, {"sink", 4}};
  vxrt_param_override use[3];
  int n = 0;
  memset(s, 0, sizeof *s);
  if (vxrt_policy_load_file(dev, path, NULL, 0, &s->pol)) return 0;
  for (int i = 0; i < 3; i++) {
    int idx;
    if (vxrt_policy_find_param(s->pol, ovr[i].name, &idx) == VXRT_OK) use[n++] = ovr[i];
  }
  vxrt_policy_free(s->pol);
  vxrt_cache_desc cd = {L, H, D, P, kv, 64, ROWS + 1, 16};
  if (!RT_EXPECT(vxrt_policy_load_file(dev, path, use, n, &s->pol), VXRT_OK, NULL) ||
      !RT_EXPECT(vxrt_cache_create(dev, &cd, &s->cache), VXRT_OK, NULL) ||
      !RT_EXPECT(vxrt_state_create(s->pol, s->cache, G, &s->st), VXRT_OK, NULL))
    return 0;
  uint64_t seed = 7;
  float *k = malloc(sizeof(float) * 128 * H * D), *v = malloc(sizeof(float) * 128 * H * D);
  for (int r = 0; r < ROWS; r++) {
    for (int i = 0; i < prompt[r] * H * D; i++) k[i] = value(&seed), v[i] = value(&seed);
    RT_EXPECT(vxrt_row_open(s->cache, &s->rows[r]), VXRT_OK, NULL);
    for (int l = 0; l < L; l++) {
      RT_EXPECT(vxrt_append(s->cache, s->rows[r], l, k, v, prompt[r]), VXRT_OK, NULL);
      if (!batched) RT_EXPECT(vxrt_prefill(s->st, s->rows[r], l), VXRT_OK, NULL);
    }
  }
  if (batched) {
    vxrt_batch *b = NULL;
    vxrt_stream *st = NULL;
    RT_EXPECT(vxrt_stream_create(dev, &st), VXRT_OK, NULL);
    RT_EXPECT(vxrt_batch_create(s->st, ROWS, &b), VXRT_OK, NULL);
    RT_EXPECT(vxrt_batch_set_rows(b, s->rows, ROWS), VXRT_OK, NULL);
    RT_EXPECT(vxrt_batch_prefill(b, st), VXRT_OK, NULL);
    vxrt_batch_free(b);
    vxrt_stream_free(st);
  }
  free(k);
  free(v);
  return 1;
}

static void close_side(Side *s) {
  vxrt_state_free(s->st);
  vxrt_cache_free(s->cache);
  vxrt_policy_free(s->pol);
}

/* Copies n f32 to a buffer of dtype t at dst. */
static void put(vxrt_dtype t, const float *src, uint64_t dst, size_t n) {
  if (t == VXRT_F32)
    memcpy((void *)(uintptr_t)dst, src, sizeof(float) * n);
  else
    vxrt_convert_from_f32(t, src, (void *)(uintptr_t)dst, n);
}

static void compare_policy(vxrt_device *dev, const char *name, const char *path, vxrt_dtype kv, vxrt_dtype io) {
  Side a, b;
  memset(&b, 0, sizeof b);
  if (!open_side(dev, path, kv, &a, 1) || !open_side(dev, path, kv, &b, 0)) {
    fprintf(stderr, "  (policy %s: %s)\n", name, vxrt_last_error());
    close_side(&a);
    close_side(&b);
    return;
  }
  size_t hgd = (size_t)H * G * D, hd = (size_t)H * D, hg = (size_t)H * G;
  size_t tokens = 16 * P, sel_bytes = hg * tokens;
  size_t esz = vxrt_dtype_size(io);
  uint64_t q, k, v, out, lse;
  vxrt_buffer_alloc(dev, ROWS * hgd * esz, &q);
  vxrt_buffer_alloc(dev, ROWS * hd * esz, &k);
  vxrt_buffer_alloc(dev, ROWS * hd * esz, &v);
  vxrt_buffer_alloc(dev, ROWS * hgd * esz, &out);
  vxrt_buffer_alloc(dev, ROWS * hg * sizeof(float), &lse);
  float *qf = malloc(sizeof(float) * ROWS * hgd), *kf = malloc(sizeof(float) * ROWS * hd);
  float *vf = malloc(sizeof(float) * ROWS * hd), *ro = malloc(sizeof(float) * ROWS * hgd);
  float rl[ROWS * H * G];
  uint8_t *sel_a = malloc(sel_bytes), *sel_b = malloc(sel_bytes);
  vxrt_stream *s;
  vxrt_batch *bt;
  RT_EXPECT(vxrt_stream_create(dev, &s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_create(a.st, ROWS, &bt), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_set_rows(bt, a.rows, ROWS), VXRT_OK, NULL);
  uint64_t seed = 99;
  int diffs = 0, seldiffs = 0, selected = 0;
  for (int step = 0; step < STEPS; step++) {
    RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_OK, NULL);
    for (int l = 0; l < L; l++) {
      for (size_t i = 0; i < ROWS * hgd; i++) qf[i] = value(&seed);
      for (size_t i = 0; i < ROWS * hd; i++) kf[i] = value(&seed), vf[i] = value(&seed);
      put(io, qf, q, ROWS * hgd);
      put(io, kf, k, ROWS * hd);
      put(io, vf, v, ROWS * hd);
      RT_EXPECT(vxrt_decode_append(bt, l, (vxrt_dbuf){k, io}, (vxrt_dbuf){v, io}, s), VXRT_OK, NULL);
      RT_EXPECT(vxrt_decode_select(bt, l, (vxrt_dbuf){q, io}, s), VXRT_OK, NULL);
      for (int r = 0; r < ROWS; r++) {
        RT_EXPECT(vxrt_batch_read_selection(bt, r, sel_a), VXRT_OK, NULL);
        int64_t len;
        vxrt_row_length(b.cache, b.rows[r], l, &len);
        RT_EXPECT(vxrt_append(b.cache, b.rows[r], l, kf + r * hd, vf + r * hd, 1), VXRT_OK, NULL);
        RT_EXPECT(vxrt_summarise(b.st, b.rows[r], l, len), VXRT_OK, NULL);
        RT_EXPECT(vxrt_select(b.st, b.rows[r], l, qf + r * hgd, sel_b), VXRT_OK, NULL);
        seldiffs += memcmp(sel_a, sel_b, sel_bytes) != 0;
        for (size_t i = 0; i < sel_bytes; i++) selected += sel_b[i];
        RT_EXPECT(vxrt_attend(b.st, b.rows[r], l, qf + r * hgd, ro + r * hgd, rl + r * hg), VXRT_OK, NULL);
      }
      RT_EXPECT(vxrt_decode_attend(bt, l, (vxrt_dbuf){q, io}, (vxrt_dbuf){out, io}, (vxrt_dbuf){lse, VXRT_F32}, s),
                VXRT_OK, NULL);
      for (int r = 0; r < ROWS; r++) {
        unsigned char want[sizeof(float) * H * G * D];
        put(io, ro + r * hgd, (uint64_t)(uintptr_t)want, hgd);
        diffs += memcmp((char *)(uintptr_t)out + r * hgd * esz, want, hgd * esz) != 0;
        diffs += memcmp((float *)(uintptr_t)lse + r * hg, rl + r * hg, sizeof(float) * hg) != 0;
      }
    }
    RT_EXPECT(vxrt_stream_sync(s), VXRT_OK, NULL);
    RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);
  }
  int64_t la, lb;
  vxrt_row_length(a.cache, a.rows[2], 1, &la);
  vxrt_row_length(b.cache, b.rows[2], 1, &lb);
  RT_CHECK(la == lb && la == prompt[2] + STEPS, "%s: lengths after %d steps: %lld %lld", name, STEPS, (long long)la,
           (long long)lb);
  RT_CHECK(diffs == 0, "%s (kv %s, buffers %s): %d outputs differ from the per-row calls", name,
           vxrt_dtype_name(kv), vxrt_dtype_name(io), diffs);
  RT_CHECK(seldiffs == 0, "%s (kv %s, buffers %s): %d selections differ", name, vxrt_dtype_name(kv),
           vxrt_dtype_name(io), seldiffs);
  printf("%-16s kv %-4s buffers %-4s: %d steps x %d layers x %d rows, %d outputs differ, %d selections "
         "differ (%d tokens selected in all)\n",
         name, vxrt_dtype_name(kv), vxrt_dtype_name(io), STEPS, L, ROWS, diffs, seldiffs, selected);
  vxrt_batch_free(bt);
  vxrt_stream_free(s);
  uint64_t bufs[] = {q, k, v, out, lse};
  for (int i = 0; i < 5; i++) vxrt_buffer_free(dev, bufs[i]);
  free(qf), free(kf), free(vf), free(ro), free(sel_a), free(sel_b);
  close_side(&a);
  close_side(&b);
}

static void errors(vxrt_device *dev, const char *path) {
  Side a;
  if (!open_side(dev, path, VXRT_F32, &a, 0)) return;
  vxrt_batch *bt = NULL;
  vxrt_stream *s;
  vxrt_graph *g;
  RT_EXPECT(vxrt_stream_create(dev, &s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_create(a.st, ROWS + 2, &bt), VXRT_ERR_INVALID_ARG, "max_slots is 5");
  RT_EXPECT(vxrt_batch_create(a.st, ROWS, &bt), VXRT_OK, NULL);
  RT_EXPECT(vxrt_state_free(a.st), VXRT_ERR_STATE, "1 batch(es) made on this state are alive");
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_ERR_STATE, "no rows");
  int bad[2] = {a.rows[0], 3};
  RT_EXPECT(vxrt_batch_set_rows(bt, bad, 2), VXRT_ERR_STATE, "row 3 is not open");
  bad[1] = a.rows[0];
  RT_EXPECT(vxrt_batch_set_rows(bt, bad, 2), VXRT_ERR_INVALID_ARG, "is in slots 0 and 1");
  RT_EXPECT(vxrt_batch_set_rows(bt, a.rows, ROWS), VXRT_OK, NULL);
  float q[ROWS * H * G * D] = {0}, out[ROWS * H * G * D], kv[ROWS * H * D] = {0};
  vxrt_dbuf Q = {(uint64_t)(uintptr_t)q, VXRT_F32}, O = {(uint64_t)(uintptr_t)out, VXRT_F32},
            K = {(uint64_t)(uintptr_t)kv, VXRT_F32}, none = {0, VXRT_F32};
  RT_EXPECT(vxrt_decode_select(bt, 0, Q, s), VXRT_ERR_STATE, "no prepared step");
  RT_EXPECT(vxrt_batch_commit(bt), VXRT_ERR_STATE, "no prepared step");
  RT_EXPECT(vxrt_batch_prepare(bt, 2, s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_decode_append(bt, 0, K, K, s), VXRT_ERR_UNSUPPORTED, "prepared for 2");
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_ERR_STATE, "not committed");
  RT_EXPECT(vxrt_batch_set_rows(bt, a.rows, 1), VXRT_ERR_STATE, "commit it first");
  RT_EXPECT(vxrt_batch_prefill(bt, s), VXRT_ERR_STATE, "commit it first");
  RT_EXPECT(vxrt_batch_read_selection(bt, 0, (uint8_t *)out), VXRT_ERR_STATE, "no vxrt_decode_select");
  RT_EXPECT(vxrt_decode_attend(bt, 0, Q, O, none, s), VXRT_ERR_STATE, "call vxrt_decode_select");
  RT_EXPECT(vxrt_decode_select(bt, 0, Q, s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_decode_attend(bt, 1, Q, O, none, s), VXRT_ERR_STATE, "layer 1 has no selection");
  RT_EXPECT(vxrt_decode_attend(bt, 2, Q, O, none, s), VXRT_ERR_INVALID_ARG, "layer 2 out of range");
  RT_EXPECT(vxrt_decode_attend(bt, 0, Q, (vxrt_dbuf){O.addr, VXRT_F16}, none, s), VXRT_ERR_INVALID_ARG,
            "f32 or bf16");
  RT_EXPECT(vxrt_decode_attend(bt, 0, Q, O, none, s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);
  RT_EXPECT(vxrt_graph_begin(s), VXRT_ERR_UNSUPPORTED, "CUDA devices only");
  RT_EXPECT(vxrt_graph_end(s, &g), VXRT_ERR_UNSUPPORTED, "CUDA devices only");
  /* A row whose layers are at different lengths. */
  RT_EXPECT(vxrt_append(a.cache, a.rows[1], 0, kv, kv, 1), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_ERR_STATE, "a batch decodes every layer of a row at one length");
  vxrt_batch_free(bt);
  RT_EXPECT(vxrt_stream_free(s), VXRT_OK, NULL);
  close_side(&a);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: test_batch_cpu VXC STDLIB_DIR TMP_DIR\n");
    return 2;
  }
  /* 396 slots: an H200's 132 SMs at 3 attend CTAs each */
  RT_CHECK(vxrt_attend_chunks(64, 2048, 396) == 6, "64 rows of 2048 pages fill one wave: %d", vxrt_attend_chunks(64, 2048, 396));
  RT_CHECK(vxrt_attend_chunks(8, 2048, 396) == 49, "8 rows: 392 CTAs in one wave: %d", vxrt_attend_chunks(8, 2048, 396));
  RT_CHECK(vxrt_attend_chunks(1, 2048, 396) == 64, "one row: at most 64 chunks: %d", vxrt_attend_chunks(1, 2048, 396));
  RT_CHECK(vxrt_attend_chunks(1, 7, 396) == 1, "a short row: one chunk");
  int n = vxrt_attend_chunks(256, 2048, 396);
  RT_CHECK(n > 1 && (256 * n + 395) / 396 * (2048.0 / n + 4) < 0.7 * 2052, "256 rows: split, not one chunk each: %d", n);
  vxrt_device *dev;
  if (!RT_EXPECT(vxrt_device_open(VXRT_CPU, 0, &dev), VXRT_OK, NULL)) return rt_finish();
  /* Every stdlib policy but double_sparsity, whose const is load()ed from a file. */
  static const char *const policies[] = {"dense", "quest", "streaming", "topk", "h2o", "magicpig",
                                         "lserve", "block_topk", "gqa_softmax"};
  const char *dense = NULL;
  char dense_path[1024] = "";
  for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++) {
    const char *path = compile(argv[1], argv[2], argv[3], policies[i]);
    RT_CHECK(path != NULL, "vxc compiles %s", policies[i]);
    if (!path) continue;
    if (i == 0) dense = strcpy(dense_path, path);
    compare_policy(dev, policies[i], path, VXRT_BF16, VXRT_F32);
    if (i < 3) {
      compare_policy(dev, policies[i], path, VXRT_F32, VXRT_F32);
      compare_policy(dev, policies[i], path, VXRT_BF16, VXRT_BF16);
    }
  }
  if (dense) errors(dev, dense);
  RT_EXPECT(vxrt_device_close(dev), VXRT_OK, NULL);
  return rt_finish();
}
