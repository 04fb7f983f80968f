/* test_cache.c - the paged KV cache of libvxrt against a plain-C reference.
 *
 * The reference keeps, per (row, layer), the list of appended tokens as the cache should
 * store them (f32 values rounded through rt_ref.h's independent codecs). For several shapes
 * (layers, KV heads, D, P, dtype), rows are grown one token at a time, in bulk across page
 * boundaries, and with layers at different lengths; then lengths, page tables, read-back
 * (whole rows and ranges straddling pages) and, on the CPU, the raw pool bytes at the
 * documented layout (DESIGN.md section 5) are compared with the reference, and unused slots
 * must be zero. Then: a full pool and a full page table fail cleanly and change nothing,
 * closing a row returns its pages, a reused page shows nothing of its previous owner, and
 * bad arguments are errors. `test_cache cuda` runs the same on GPU 0 (exit 77 without one).
 */
#include <math.h>
#include <stdlib.h>

#include "rt_check.h"
#include "rt_ref.h"

static vxrt_device *dev;
static int on_cpu;
static uint64_t rng = 0x853c49e6748fea9bull;

static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static float uniform(float lo, float hi) {
  return lo + (hi - lo) * (float)((next() >> 40) * 0x1p-24);
}

/* What the cache should hold for x: x rounded to the dtype and back (reference codec). */
static float stored(vxrt_dtype t, float x) {
  if (t == VXRT_F32) return x;
  rt_fmt f = rt_fmt_of(t);
  return (float)rt_decode(f, rt_encode(f, x));
}

typedef struct ref_seq {
  float *k, *v; /* [len][H][D], stored values */
  int64_t len, cap;
} ref_seq;

typedef struct ref_cache {
  vxrt_cache_desc d;
  ref_seq *seq; /* [row][layer] */
} ref_cache;

static ref_seq *ref_at(ref_cache *r, int row, int layer) {
  return &r->seq[(size_t)row * (size_t)r->d.layers + (size_t)layer];
}

static void ref_append(ref_cache *r, int row, int layer, const float *k, const float *v, int n) {
  ref_seq *s = ref_at(r, row, layer);
  size_t tok = (size_t)r->d.kv_heads * (size_t)r->d.head_dim;
  if (s->len + n > s->cap) {
    s->cap = (s->len + n) * 2;
    s->k = realloc(s->k, sizeof(float) * tok * (size_t)s->cap);
    s->v = realloc(s->v, sizeof(float) * tok * (size_t)s->cap);
  }
  for (size_t i = 0; i < (size_t)n * tok; i++) {
    s->k[(size_t)s->len * tok + i] = stored(r->d.kv_dtype, k[i]);
    s->v[(size_t)s->len * tok + i] = stored(r->d.kv_dtype, v[i]);
  }
  s->len += n;
}

static void ref_reset(ref_cache *r, int row) {
  for (int l = 0; l < r->d.layers; l++) ref_at(r, row, l)->len = 0;
}

static void ref_free(ref_cache *r) {
  for (int i = 0; i < r->d.max_rows * r->d.layers; i++) {
    free(r->seq[i].k);
    free(r->seq[i].v);
  }
  free(r->seq);
}

static void random_kv(vxrt_dtype t, float *k, float *v, size_t n) {
  float range = t == VXRT_FP8E4M3 ? 300.0f : 4.0f;
  for (size_t i = 0; i < n; i++) {
    k[i] = uniform(-range, range);
    v[i] = (next() & 7) == 0 ? uniform(-0.01f, 0.01f) : uniform(-range, range);
  }
}

/* Appends n random tokens to (row, layer) of both the cache and the reference. */
static int append(vxrt_cache *c, ref_cache *r, int row, int layer, int n) {
  size_t tok = (size_t)r->d.kv_heads * (size_t)r->d.head_dim;
  float *k = malloc(sizeof(float) * tok * (size_t)(n ? n : 1));
  float *v = malloc(sizeof(float) * tok * (size_t)(n ? n : 1));
  random_kv(r->d.kv_dtype, k, v, tok * (size_t)n);
  vxrt_status st = vxrt_append(c, row, layer, k, v, n);
  if (st == VXRT_OK) ref_append(r, row, layer, k, v, n);
  else RT_CHECK(0, "append row %d layer %d n %d: %s", row, layer, n, vxrt_last_error());
  free(k);
  free(v);
  return st == VXRT_OK;
}

/* Value of element i of a raw pool block in dtype t. */
static float raw_elem(vxrt_dtype t, const unsigned char *p, size_t i) {
  switch (t) {
  case VXRT_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
  case VXRT_F16: case VXRT_BF16: {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return (float)rt_decode(rt_fmt_of(t), h);
  }
  default: return (float)rt_decode(rt_fmt_of(t), p[i]);
  }
}

/* Compares everything the cache says about `row` with the reference. */
static void verify_row(vxrt_cache *c, ref_cache *r, int row, const char *cfg) {
  vxrt_cache_desc d = r->d;
  size_t tok = (size_t)d.kv_heads * (size_t)d.head_dim, elem = vxrt_dtype_size(d.kv_dtype);
  int64_t maxlen = 0;
  for (int l = 0; l < d.layers; l++)
    if (ref_at(r, row, l)->len > maxlen) maxlen = ref_at(r, row, l)->len;
  int32_t *pages = malloc(sizeof(int32_t) * (size_t)d.max_pages);
  int np = -1;
  RT_EXPECT(vxrt_row_pages(c, row, pages, d.max_pages, &np), VXRT_OK, NULL);
  RT_CHECK(np == (maxlen + d.page_size - 1) / d.page_size, "%s row %d: %d pages for %lld tokens",
           cfg, row, np, (long long)maxlen);
  for (int l = 0; l < d.layers; l++) {
    ref_seq *s = ref_at(r, row, l);
    int64_t len = -1;
    RT_EXPECT(vxrt_row_length(c, row, l, &len), VXRT_OK, NULL);
    RT_CHECK(len == s->len, "%s row %d layer %d: length %lld, want %lld", cfg, row, l,
             (long long)len, (long long)s->len);
    if (len != s->len) continue;
    float *k = malloc(sizeof(float) * tok * (size_t)(len + 1));
    float *v = malloc(sizeof(float) * tok * (size_t)(len + 1));
    RT_EXPECT(vxrt_read_kv(c, row, l, 0, (int)len, k, v), VXRT_OK, NULL);
    int bad = 0;
    for (size_t i = 0; i < tok * (size_t)len; i++) bad += k[i] != s->k[i] || v[i] != s->v[i];
    RT_CHECK(bad == 0, "%s row %d layer %d: %d of %zu elements differ on read-back", cfg, row, l,
             bad, 2 * tok * (size_t)len);
    if (len > 2) { /* a range that starts and ends inside pages */
      int64_t a = 1 + (int64_t)(next() % (uint64_t)(len - 2));
      int n = (int)(1 + next() % (uint64_t)(len - a));
      RT_EXPECT(vxrt_read_kv(c, row, l, a, n, NULL, v), VXRT_OK, NULL);
      bad = 0;
      for (size_t i = 0; i < tok * (size_t)n; i++) bad += v[i] != s->v[(size_t)a * tok + i];
      RT_CHECK(bad == 0, "%s row %d layer %d: range [%lld,+%d) differs", cfg, row, l,
               (long long)a, n);
    }
    if (on_cpu) {
      /* The documented layout: token t of head h is slot t % P of block (page, h), block
       * index page * H + h, P x D elements each; unused slots of this row's pages are 0. */
      vxrt_kv_pool pool;
      RT_EXPECT(vxrt_cache_get_pool(c, l, &pool), VXRT_OK, NULL);
      size_t block = (size_t)d.page_size * (size_t)d.head_dim * elem;
      int badraw = 0, dirty = 0;
      for (int pi = 0; pi < np; pi++)
        for (int h = 0; h < d.kv_heads; h++)
          for (int slot = 0; slot < d.page_size; slot++) {
            int64_t t = (int64_t)pi * d.page_size + slot;
            size_t off = ((size_t)pages[pi] * (size_t)d.kv_heads + (size_t)h) * block;
            const unsigned char *kb = (const unsigned char *)pool.k + off;
            const unsigned char *vb = (const unsigned char *)pool.v + off;
            for (int ch = 0; ch < d.head_dim; ch++) {
              size_t e = (size_t)slot * (size_t)d.head_dim + (size_t)ch;
              if (t < len) {
                size_t ri = ((size_t)t * (size_t)d.kv_heads + (size_t)h) * (size_t)d.head_dim + (size_t)ch;
                badraw += raw_elem(d.kv_dtype, kb, e) != s->k[ri] ||
                          raw_elem(d.kv_dtype, vb, e) != s->v[ri];
              } else {
                for (size_t by = 0; by < elem; by++) dirty += kb[e * elem + by] | vb[e * elem + by];
              }
            }
          }
      RT_CHECK(badraw == 0, "%s row %d layer %d: %d raw elements differ from the layout", cfg,
               row, l, badraw);
      RT_CHECK(dirty == 0, "%s row %d layer %d: unused slots are not zero", cfg, row, l);
    }
    free(k);
    free(v);
  }
  free(pages);
}

/* Pages of all open rows are distinct and in range. */
static void verify_ownership(vxrt_cache *c, ref_cache *r, const int *rows, int nrows, const char *cfg) {
  unsigned char *seen = calloc((size_t)r->d.max_pages, 1);
  int32_t *pages = malloc(sizeof(int32_t) * (size_t)r->d.max_pages);
  int dup = 0, out = 0, total = 0;
  for (int i = 0; i < nrows; i++) {
    int np = 0;
    if (vxrt_row_pages(c, rows[i], pages, r->d.max_pages, &np) != VXRT_OK) continue;
    for (int p = 0; p < np; p++) {
      if (pages[p] < 0 || pages[p] >= r->d.max_pages) { out++; continue; }
      dup += seen[pages[p]]++ != 0;
    }
    total += np;
  }
  vxrt_cache_info info;
  vxrt_cache_get_info(c, &info);
  RT_CHECK(dup == 0 && out == 0, "%s: %d pages shared, %d out of range", cfg, dup, out);
  RT_CHECK(info.free_pages + total == r->d.max_pages, "%s: %d free + %d owned != %d", cfg,
           info.free_pages, total, r->d.max_pages);
  free(seen);
  free(pages);
}

static void run_config(int layers, int heads, int D, int P, vxrt_dtype t) {
  char cfg[96];
  snprintf(cfg, sizeof cfg, "[L%d H%d D%d P%d %s]", layers, heads, D, P, vxrt_dtype_name(t));
  vxrt_cache_desc d = {layers, heads, D, P, t, 64, 4, 0};
  /* Enough pages for the schedule below: 3 rows of at most ~6P + 2 tokens... plus slack. */
  d.max_pages = 3 * 12 + 8;
  vxrt_cache *c = NULL;
  if (!RT_EXPECT(vxrt_cache_create(dev, &d, &c), VXRT_OK, NULL)) return;
  ref_cache r = {d, calloc((size_t)d.max_rows * (size_t)layers, sizeof(ref_seq))};
  r.d.max_row_pages = d.max_pages;
  int rows[3];
  for (int i = 0; i < 3; i++) RT_EXPECT(vxrt_row_open(c, &rows[i]), VXRT_OK, NULL);
  RT_CHECK(rows[0] != rows[1] && rows[1] != rows[2] && rows[0] != rows[2], "%s: distinct rows", cfg);

  /* Row 0: one token at a time, all layers, through 2.5 pages. */
  for (int i = 0; i < 2 * P + P / 2 + 1; i++)
    for (int l = 0; l < layers; l++) append(c, &r, rows[0], l, 1);
  /* Row 1: bulk appends that cross page boundaries and leave partial pages. */
  const int bulk[] = {2 * P + 3, P - 1, 1, P, (3 * P) / 2 + 1, 0};
  for (size_t i = 0; i < sizeof bulk / sizeof bulk[0]; i++)
    for (int l = 0; l < layers; l++) append(c, &r, rows[1], l, bulk[i]);
  /* Row 2: layers at different lengths (layer 0 runs ahead; the others catch up partly). */
  for (int step = 0; step < 6; step++) {
    int n = (int)(next() % (uint64_t)(P + 2));
    append(c, &r, rows[2], 0, n);
    for (int l = 1; l < layers; l++)
      if (step % 2 == 0 || l % 2) append(c, &r, rows[2], l, n);
  }
  /* Interleave: a few more single tokens on row 0 after the others grew. */
  for (int l = 0; l < layers; l++) append(c, &r, rows[0], l, 1);
  for (int i = 0; i < 3; i++) verify_row(c, &r, rows[i], cfg);
  verify_ownership(c, &r, rows, 3, cfg);

  /* Close row 1: its pages return; the others are untouched. */
  vxrt_cache_info before, after;
  vxrt_cache_get_info(c, &before);
  int np1 = 0;
  vxrt_row_pages(c, rows[1], NULL, 0, &np1);
  RT_EXPECT(vxrt_row_close(c, rows[1]), VXRT_OK, NULL);
  ref_reset(&r, rows[1]);
  vxrt_cache_get_info(c, &after);
  RT_CHECK(after.free_pages == before.free_pages + np1 && after.open_rows == before.open_rows - 1,
           "%s: closing a row of %d pages: free %d -> %d", cfg, np1, before.free_pages,
           after.free_pages);
  int alive[2] = {rows[0], rows[2]};
  verify_row(c, &r, rows[0], cfg);
  verify_row(c, &r, rows[2], cfg);
  /* Reopen: gets a row with nothing in it, reusing the freed pages for new data. */
  int again = -1;
  RT_EXPECT(vxrt_row_open(c, &again), VXRT_OK, NULL);
  int64_t len = -1;
  RT_EXPECT(vxrt_row_length(c, again, layers - 1, &len), VXRT_OK, NULL);
  RT_CHECK(len == 0, "%s: a reopened row is empty", cfg);
  append(c, &r, again, 0, 1);
  if (layers > 1) append(c, &r, again, layers - 1, P + 1);
  verify_row(c, &r, again, cfg);
  int all[3] = {alive[0], alive[1], again};
  verify_ownership(c, &r, all, 3, cfg);

  vxrt_cache_info info;
  RT_EXPECT(vxrt_cache_get_info(c, &info), VXRT_OK, NULL);
  RT_CHECK(info.elem_bytes == vxrt_dtype_size(t) &&
               info.block_bytes == (size_t)P * (size_t)D * vxrt_dtype_size(t) &&
               info.pool_bytes == info.block_bytes * (size_t)heads * (size_t)d.max_pages &&
               info.desc.max_row_pages == d.max_pages,
           "%s: cache info", cfg);
  ref_free(&r);
  RT_EXPECT(vxrt_cache_free(c), VXRT_OK, NULL);
}

/* A full pool and a full page table fail without changing anything; freed pages come back
 * clean. */
static void test_limits(void) {
  vxrt_cache_desc d = {2, 2, 4, 4, VXRT_F16, 4, 3, 3};
  vxrt_cache *c = NULL;
  if (!RT_EXPECT(vxrt_cache_create(dev, &d, &c), VXRT_OK, NULL)) return;
  ref_cache r = {d, calloc((size_t)d.max_rows * (size_t)d.layers, sizeof(ref_seq))};
  int a, b;
  RT_EXPECT(vxrt_row_open(c, &a), VXRT_OK, NULL);
  RT_EXPECT(vxrt_row_open(c, &b), VXRT_OK, NULL);
  /* Row a: 3 pages (its table's limit), 10 tokens. */
  append(c, &r, a, 0, 10);
  append(c, &r, a, 1, 12);
  float k[4 * 2 * 16] = {0}, v[4 * 2 * 16] = {0};
  RT_EXPECT(vxrt_append(c, a, 1, k, v, 1), VXRT_ERR_POOL_FULL, "holds at most 3 (max_row_pages)");
  RT_EXPECT(vxrt_append(c, a, 0, k, v, 3), VXRT_ERR_POOL_FULL, "max_row_pages");
  append(c, &r, a, 0, 2); /* fits in the pages a already has */
  /* Row b: one page left in the pool. */
  append(c, &r, b, 0, 3);
  RT_EXPECT(vxrt_append(c, b, 0, k, v, 2), VXRT_ERR_POOL_FULL,
            "KV pool full: row 1 needs 1 more page(s), 0 of 4 are free");
  RT_EXPECT(vxrt_append(c, b, 1, k, v, 5), VXRT_ERR_POOL_FULL, "KV pool full");
  append(c, &r, b, 1, 4); /* exactly fills b's page in layer 1 */
  verify_row(c, &r, a, "[limits]");
  verify_row(c, &r, b, "[limits]");
  int rr[2] = {a, b};
  verify_ownership(c, &r, rr, 2, "[limits]");
  /* Rows: 3 may be open. */
  int x, y;
  RT_EXPECT(vxrt_row_open(c, &x), VXRT_OK, NULL);
  RT_EXPECT(vxrt_row_open(c, &y), VXRT_ERR_POOL_FULL, "all 3 rows of the cache are open");
  RT_EXPECT(vxrt_row_close(c, x), VXRT_OK, NULL);
  RT_EXPECT(vxrt_row_close(c, x), VXRT_ERR_STATE, "is not open");
  /* Close a (3 pages): b can grow now; reused pages show nothing of a. */
  RT_EXPECT(vxrt_row_close(c, a), VXRT_OK, NULL);
  ref_reset(&r, a);
  append(c, &r, b, 0, 9); /* 12 tokens: 3 pages */
  verify_row(c, &r, b, "[limits reuse]");
  int32_t pages[4];
  int np = 0;
  RT_EXPECT(vxrt_row_pages(c, b, pages, 4, &np), VXRT_OK, NULL);
  RT_CHECK(np == 3, "b has 3 pages");
  RT_EXPECT(vxrt_row_pages(c, b, pages, 2, &np), VXRT_ERR_INVALID_ARG, "has 3 pages, buffer holds 2");
  RT_CHECK(np == 3, "row_pages reports the size needed");
  /* A new row reusing a's pages: its partial page must read 0 beyond its tokens. */
  int z;
  RT_EXPECT(vxrt_row_open(c, &z), VXRT_OK, NULL);
  append(c, &r, z, 1, 1); /* takes the last free page, which a had filled */
  RT_EXPECT(vxrt_append(c, z, 0, k, v, 5), VXRT_ERR_POOL_FULL, "needs 1 more page(s), 0 of 4 are free");
  verify_row(c, &r, z, "[limits fresh]");
  RT_EXPECT(vxrt_row_close(c, b), VXRT_OK, NULL);
  ref_reset(&r, b);
  verify_row(c, &r, z, "[limits fresh]");
  vxrt_cache_info info;
  vxrt_cache_get_info(c, &info);
  RT_CHECK(info.free_pages == 3 && info.open_rows == 1, "after closing: %d free, %d open",
           info.free_pages, info.open_rows);
  ref_free(&r);
  RT_EXPECT(vxrt_cache_free(c), VXRT_OK, NULL); /* with a row still open */
}

static void test_errors(void) {
  vxrt_cache_desc d = {1, 1, 8, 4, VXRT_BF16, 8, 2, 0};
  vxrt_cache *c = NULL;
  vxrt_cache_desc bad = d;
  bad.layers = 0;
  RT_EXPECT(vxrt_cache_create(dev, &bad, &c), VXRT_ERR_INVALID_ARG, "layers is 0");
  bad = d;
  bad.kv_dtype = (vxrt_dtype)17;
  RT_EXPECT(vxrt_cache_create(dev, &bad, &c), VXRT_ERR_INVALID_ARG, "not a KV dtype");
  bad = d;
  bad.max_row_pages = 9;
  RT_EXPECT(vxrt_cache_create(dev, &bad, &c), VXRT_ERR_INVALID_ARG, "max_row_pages is 9");
  bad = d;
  bad.page_size = -4;
  RT_EXPECT(vxrt_cache_create(dev, &bad, &c), VXRT_ERR_INVALID_ARG, "page_size");
  bad = (vxrt_cache_desc){4096, 4096, 65536, 65536, VXRT_F32, 0x7fffffff, 1, 0};
  RT_EXPECT(vxrt_cache_create(dev, &bad, &c), VXRT_ERR_OUT_OF_MEMORY, "overflows");
  RT_EXPECT(vxrt_cache_create(dev, NULL, &c), VXRT_ERR_INVALID_ARG, NULL);
  RT_CHECK(c == NULL, "no cache on failure");
  if (!RT_EXPECT(vxrt_cache_create(dev, &d, &c), VXRT_OK, NULL)) return;
  float k[16] = {0}, v[16] = {0};
  int row = -1;
  RT_EXPECT(vxrt_append(c, 0, 0, k, v, 1), VXRT_ERR_STATE, "row 0 is not open");
  RT_EXPECT(vxrt_append(c, 5, 0, k, v, 1), VXRT_ERR_INVALID_ARG, "row 5 out of range");
  RT_EXPECT(vxrt_row_open(c, &row), VXRT_OK, NULL);
  RT_EXPECT(vxrt_append(c, row, 1, k, v, 1), VXRT_ERR_INVALID_ARG, "layer 1 out of range");
  RT_EXPECT(vxrt_append(c, row, 0, k, v, -1), VXRT_ERR_INVALID_ARG, "ntokens is -1");
  RT_EXPECT(vxrt_append(c, row, 0, NULL, v, 1), VXRT_ERR_INVALID_ARG, "NULL");
  RT_EXPECT(vxrt_append(c, row, 0, NULL, NULL, 0), VXRT_OK, NULL);
  RT_EXPECT(vxrt_append(c, row, 0, k, v, 2), VXRT_OK, NULL);
  float out[16];
  RT_EXPECT(vxrt_read_kv(c, row, 0, 1, 2, out, NULL), VXRT_ERR_INVALID_ARG, "outside row");
  RT_EXPECT(vxrt_read_kv(c, row, 0, -1, 1, out, NULL), VXRT_ERR_INVALID_ARG, "outside row");
  RT_EXPECT(vxrt_read_kv(c, row, 0, 2, 0, out, out), VXRT_OK, NULL);
  RT_EXPECT(vxrt_row_length(c, row, 0, NULL), VXRT_ERR_INVALID_ARG, NULL);
  vxrt_kv_pool pool;
  RT_EXPECT(vxrt_cache_get_pool(c, 1, &pool), VXRT_ERR_INVALID_ARG, "layer 1 out of range");
  RT_EXPECT(vxrt_device_close(dev), VXRT_ERR_STATE, "live");
  RT_EXPECT(vxrt_cache_free(c), VXRT_OK, NULL);
  RT_EXPECT(vxrt_cache_free(NULL), VXRT_OK, NULL);
}

int main(int argc, char **argv) {
  int cuda = argc > 1 && strcmp(argv[1], "cuda") == 0;
  vxrt_status st = vxrt_device_open(cuda ? VXRT_CUDA : VXRT_CPU, 0, &dev);
  if (cuda && st == VXRT_ERR_NO_DEVICE) return rt_skip(vxrt_last_error());
  if (!RT_EXPECT(st, VXRT_OK, NULL)) return rt_finish();
  on_cpu = !cuda;
  vxrt_device_info di;
  vxrt_device_get_info(dev, &di);
  printf("device: %s (%s)\n", di.name, di.target);
  run_config(1, 1, 1, 1, VXRT_F32);
  run_config(2, 3, 5, 4, VXRT_F32);
  run_config(3, 2, 8, 16, VXRT_F16);
  run_config(2, 4, 64, 16, VXRT_BF16);
  run_config(1, 8, 128, 16, VXRT_FP8E4M3);
  run_config(4, 2, 7, 3, VXRT_BF16);
  run_config(2, 2, 16, 5, VXRT_FP8E4M3);
  run_config(2, 1, 128, 32, VXRT_F16);
  test_limits();
  test_errors();
  RT_EXPECT(vxrt_device_close(dev), VXRT_OK, NULL);
  return rt_finish();
}
