/* test_cuda_mock.c - libvxrt's CUDA executor against a stand-in driver (mock_cuda.c), so
 * that its host side is tested on machines without a GPU.
 *
 * Usage: test_cuda_mock VXC STDLIB_DIR TMP_DIR, with LD_LIBRARY_PATH holding the mock's
 * libcuda.so.1 (CTest sets it; skipped, exit 77, when the device opened is not the mock).
 * Artifacts are stdlib policies compiled by vxc with a PTX section added here (entries that
 * do nothing; the mock records launches instead of running them). Checks what the runtime
 * hands the kernels, slot by slot (runtime/vxk_gpu.h): pools, page tables and lengths in the
 * device mirrors, FIELDS and SCALARS tables, selection buffers, NCHUNKS, launch shapes;
 * prefill/summarise, a batched step, graph capture and replay, the per-row calls; the kernel
 * cache (JIT once, hit, corrupt entry rebuilt); and the errors: shapes without kernels,
 * unsupported policies, missing GPU kernels, broken PTX, device memory exhausted. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include "kcache.h"
#include "rt_fixture.h"
#include "vxk_gpu.h"

typedef struct mock_launch {
  char name[128];
  unsigned grid[2], block;
  uint64_t args[64];
} mock_launch;

static mock_launch *mlog;
static int *mnlog, *mnjit, *mmemset2d;
static size_t *mlimit;

static const char *vxc, *stdlib_dir, *tmp;

/* The policy compiled by vxc, plus a PTX section with entries for `kinds` of `shape`
 * (PTX text in ptx_out if not NULL, else generated). */
static rt_blob artifact(const char *policy, const char *shape, const char *kinds, const char *broken_ptx) {
  rt_blob none = {NULL, 0};
  char path[1024], cmd[3072];
  snprintf(path, sizeof path, "%s/mock_%s.vxp", tmp, policy);
  snprintf(cmd, sizeof cmd, "'%s' '%s/%s.vx' -o '%s'", vxc, stdlib_dir, policy, path);
  if (system(cmd) != 0) return none;
  rt_blob host = rt_read_file(path);
  art_manifest *m = NULL;
  art_error err;
  if (art_parse(host.data, host.len, &m, &err) != ART_OK) {
    fprintf(stderr, "%s: %s\n", path, err.msg);
    free(host.data);
    return none;
  }
  static char ptx[8192];
  static const char *names[8], *shapes[1];
  int nk = 0, n = snprintf(ptx, sizeof ptx, ".version 8.0\n.target sm_90\n.address_size 64\n\n");
  static char kbuf[128];
  snprintf(kbuf, sizeof kbuf, "%s", kinds);
  for (char *k = strtok(kbuf, ","); k && nk < 8; k = strtok(NULL, ",")) {
    names[nk++] = k;
    n += snprintf(ptx + n, sizeof ptx - (size_t)n, ".visible .entry vxg_%s__%s(.param .align 8 .b8 a[%d])\n{\n  ret;\n}\n\n",
                  k, shape, 8 * VXK_GPU_NARGS);
  }
  shapes[0] = shape;
  art_target t[2] = {m->targets[0], {.name = "sm_90", .kind = ART_PTX}};
  t[1].data = (const unsigned char *)(broken_ptx ? broken_ptx : ptx);
  t[1].size = strlen((const char *)t[1].data);
  t[1].nshapes = 1;
  t[1].shapes = shapes;
  t[1].ngpu_kernels = nk;
  t[1].gpu_kernels = names;
  art_manifest copy = *m;
  copy.targets = t;
  copy.ntargets = 2;
  rt_blob b = rt_write(&copy);
  art_manifest_free(m);
  free(host.data);
  return b;
}

static int blob_ok(rt_blob b) {
  RT_CHECK(b.data != NULL, "artifact built with vxc and a PTX section");
  return b.data != NULL;
}

/* Flips a byte in every cached cubin. */
static void corrupt_cache(const char *dir) {
  char sub[1200], path[1500];
  snprintf(sub, sizeof sub, "%s/vx/kernels", dir);
  DIR *d = opendir(sub);
  for (struct dirent *e; d && (e = readdir(d));) {
    if (!strstr(e->d_name, ".cubin")) continue;
    snprintf(path, sizeof path, "%s/%s", sub, e->d_name);
    FILE *f = fopen(path, "r+b");
    if (!f) continue;
    fseek(f, 40, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 40, SEEK_SET);
    fputc(c ^ 1, f);
    fclose(f);
  }
  if (d) closedir(d);
}

static char cache_dir[1100];

static const mock_launch *last(void) { return *mnlog ? &mlog[*mnlog - 1] : NULL; }
static uint64_t slot(const mock_launch *l, vxk_gpu_arg a) { return l ? l->args[a] : 0; }
static int32_t i32_at(uint64_t addr, size_t i) { return ((const int32_t *)(uintptr_t)addr)[i]; }

/* Summarise and prefill: a launch per (row, layer) with the row's mirror. */
static void check_row_launch(vxrt_cache *cache, const mock_launch *l, const char *name, int row, int layer,
                             int64_t len, int64_t prefill) {
  vxrt_kv_pool pool;
  int32_t pages[64];
  int np = 0;
  vxrt_cache_get_pool(cache, layer, &pool);
  vxrt_row_pages(cache, row, pages, 64, &np);
  int ok = l && strcmp(l->name, name) == 0 && slot(l, VXK_GPU_NSLOTS) == 1 &&
           slot(l, VXK_GPU_LAYER) == (uint64_t)layer && slot(l, VXK_GPU_K_POOL) == (uint64_t)(uintptr_t)pool.k &&
           slot(l, VXK_GPU_V_POOL) == (uint64_t)(uintptr_t)pool.v &&
           i32_at(slot(l, VXK_GPU_LENGTHS), 0) == len && i32_at(slot(l, VXK_GPU_PREFILL_LENGTHS), 0) == prefill;
  for (int p = 0; ok && p < np; p++) ok = i32_at(slot(l, VXK_GPU_PAGE_TABLE), (size_t)p) == pages[p];
  RT_CHECK(ok, "%s launch for row %d layer %d: %s, length %d, prefill %d", name, row, layer, l ? l->name : "none",
           l ? i32_at(slot(l, VXK_GPU_LENGTHS), 0) : -1, l ? i32_at(slot(l, VXK_GPU_PREFILL_LENGTHS), 0) : -1);
}

static void quest(vxrt_device *dev) {
  const char *shape = "d64g2p16_bf16";
  rt_blob b = artifact("quest", shape, "append,summarise,select,attend", NULL);
  if (!blob_ok(b)) return;
  vxrt_param_override ovr = {"budget", 48};
  vxrt_policy *pol = NULL;
  int jit0 = *mnjit;
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, &ovr, 1, &pol), VXRT_OK, NULL);
  RT_CHECK(*mnjit == jit0 + 1, "the first load JIT-compiles (%d)", *mnjit - jit0);
  vxrt_policy_free(pol);
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, &ovr, 1, &pol), VXRT_OK, NULL);
  RT_CHECK(*mnjit == jit0 + 1, "the second load takes the cubin from the cache");
  vxrt_policy_free(pol);
  corrupt_cache(cache_dir);
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, &ovr, 1, &pol), VXRT_OK, NULL);
  RT_CHECK(*mnjit == jit0 + 2, "a corrupt cache entry is rebuilt by the JIT");
  vxrt_policy_free(pol);
  enum { L = 2, H = 2, D = 64, G = 2, P = 16, ROWS = 3 };
  vxrt_cache_desc cd = {L, H, D, P, VXRT_BF16, 64, 4, 16};
  vxrt_cache *cache;
  vxrt_state *st;
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, &ovr, 1, &pol), VXRT_OK, NULL);
  RT_EXPECT(vxrt_cache_create(dev, &cd, &cache), VXRT_OK, NULL);
  if (!RT_EXPECT(vxrt_state_create(pol, cache, G, &st), VXRT_OK, NULL)) return;
  int rows[ROWS], lens[ROWS] = {20, 40, 70};
  float kv[70 * H * D];
  for (int i = 0; i < 70 * H * D; i++) kv[i] = (float)(i % 5);
  for (int r = 0; r < ROWS; r++) {
    vxrt_row_open(cache, &rows[r]);
    for (int l = 0; l < L; l++) {
      vxrt_append(cache, rows[r], l, kv, kv, lens[r]);
      int n0 = *mnlog;
      RT_EXPECT(vxrt_prefill(st, rows[r], l), VXRT_OK, NULL);
      RT_CHECK(*mnlog == n0 + 1, "prefill is one launch");
      const mock_launch *x = last();
      check_row_launch(cache, x, "vxg_summarise__d64g2p16_bf16", rows[r], l, lens[r], lens[r]);
      RT_CHECK(x && x->grid[0] == 16 && x->grid[1] == H && x->block == 128 && slot(x, VXK_GPU_FIRST_TOKEN) == 0,
               "summarise grid (max_row_pages, kv_heads), first token 0");
    }
  }
  /* FIELDS and SCALARS of layers 0 and 1. */
  const mock_launch *x = last();
  vxrt_policy_info pi;
  vxrt_policy_get_info(pol, &pi);
  const uint64_t *f1 = (const uint64_t *)(uintptr_t)slot(x, VXK_GPU_FIELDS);
  const uint64_t *f0 = f1 - pi.nfields;
  int fields_ok = 1;
  for (int i = 0; i < pi.nfields; i++) {
    vxrt_field_info fi;
    vxrt_policy_get_field(pol, i, &fi);
    int stored = fi.stage == VXRT_STAGE_PAGE || fi.stage == VXRT_STAGE_TOKEN || fi.stage == VXRT_STAGE_CONST;
    fields_ok &= stored ? f0[i] && f1[i] && (fi.stage == VXRT_STAGE_CONST) == (f0[i] == f1[i]) : !f0[i] && !f1[i];
  }
  RT_CHECK(fields_ok, "FIELDS: a pool per layer for page/token fields, consts shared, 0 for inputs and steps");
  const float *sc = (const float *)(uintptr_t)slot(x, VXK_GPU_SCALARS);
  RT_CHECK(sc && sc[0] == 48.0f && sc[1] == 1.0f && sc[2] == 48.0f,
           "SCALARS: budget 48, then keep count 1 (page) and budget 48: %g %g %g", sc ? sc[0] : -1, sc ? sc[1] : -1,
           sc ? sc[2] : -1);

  /* A batched step. */
  vxrt_stream *s;
  vxrt_batch *bt;
  int n0;
  RT_EXPECT(vxrt_stream_create(dev, &s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_create(st, ROWS, &bt), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_set_rows(bt, rows, ROWS), VXRT_OK, NULL);
  n0 = *mnlog;
  RT_EXPECT(vxrt_batch_prefill(bt, s), VXRT_OK, NULL);
  x = last();
  RT_CHECK(*mnlog == n0 + L && x && !strcmp(x->name, "vxg_summarise__d64g2p16_bf16") && x->grid[0] == 16 &&
               x->grid[1] == ROWS * H && slot(x, VXK_GPU_NSLOTS) == ROWS && slot(x, VXK_GPU_FIRST_TOKEN) == 0 &&
               i32_at(slot(x, VXK_GPU_LENGTHS), 2) == lens[2] && i32_at(slot(x, VXK_GPU_PREFILL_LENGTHS), 2) == lens[2],
           "batch prefill: one summarise launch per layer for every row");
  uint64_t q, o, lse, k;
  vxrt_buffer_alloc(dev, 4096 * 4, &q);
  vxrt_buffer_alloc(dev, 4096 * 4, &o);
  vxrt_buffer_alloc(dev, 64 * 4, &lse);
  vxrt_buffer_alloc(dev, 1024 * 2, &k);
  vxrt_dbuf Q = {q, VXRT_BF16}, O = {o, VXRT_F32}, LSE = {lse, VXRT_F32}, K = {k, VXRT_BF16};
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_OK, NULL);
  n0 = *mnlog;
  for (int l = 0; l < L; l++) {
    RT_EXPECT(vxrt_decode_append(bt, l, K, K, s), VXRT_OK, NULL);
    x = last();
    RT_CHECK(x && !strcmp(x->name, "vxg_append__d64g2p16_bf16") && x->grid[0] == ROWS * H && x->block == 128 &&
                 slot(x, VXK_GPU_NEW_K) == k && slot(x, VXK_GPU_NEW_DTYPE) == VXK_GPU_BF16 &&
                 slot(x, VXK_GPU_NSLOTS) == ROWS && slot(x, VXK_GPU_KV_HEADS) == H && slot(x, VXK_GPU_MAX_ROW_PAGES) == 16,
             "append launch, layer %d", l);
    int table_ok = 1;
    for (int r = 0; r < ROWS; r++) {
      int32_t pages[16];
      int np;
      vxrt_row_pages(cache, rows[r], pages, 16, &np);
      table_ok &= i32_at(slot(x, VXK_GPU_LENGTHS), (size_t)r) == lens[r] + 1 &&
                  i32_at(slot(x, VXK_GPU_PREFILL_LENGTHS), (size_t)r) == lens[r] && np == (lens[r] + 1 + P - 1) / P;
      for (int p = 0; p < np; p++) table_ok &= i32_at(slot(x, VXK_GPU_PAGE_TABLE), (size_t)r * 16 + (size_t)p) == pages[p];
    }
    RT_CHECK(table_ok, "device mirror: lengths with the new token, prefill lengths, page tables");
    RT_EXPECT(vxrt_decode_attend(bt, l, Q, O, LSE, s), VXRT_ERR_STATE, "vxrt_decode_select");
    RT_EXPECT(vxrt_decode_select(bt, l, Q, s), VXRT_OK, NULL);
    x = last();
    RT_CHECK(x && !strcmp(x->name, "vxg_select__d64g2p16_bf16") && x->grid[0] == ROWS * H && x->block == 512 &&
                 slot(x, VXK_GPU_Q) == q && slot(x, VXK_GPU_Q_DTYPE) == VXK_GPU_BF16 && slot(x, VXK_GPU_SEL_N) &&
                 slot(x, VXK_GPU_SEL_IDX) && slot(x, VXK_GPU_SEL_MASK) && slot(x, VXK_GPU_SEL_CAP) == 16 &&
                 slot(x, VXK_GPU_KEYS),
             "select launch, layer %d", l);
    RT_EXPECT(vxrt_decode_attend(bt, l, Q, O, LSE, s), VXRT_OK, NULL);
    x = last();
    RT_CHECK(x && !strcmp(x->name, "vxg_attend__d64g2p16_bf16") && x->grid[0] == ROWS * H &&
                 x->grid[1] == slot(x, VXK_GPU_NCHUNKS) && slot(x, VXK_GPU_NCHUNKS) == 1 && x->block == 128 &&
                 slot(x, VXK_GPU_OUT) == o && slot(x, VXK_GPU_OUT_DTYPE) == VXK_GPU_F32 && slot(x, VXK_GPU_LSE) == lse &&
                 slot(x, VXK_GPU_SEL_N) && slot(x, VXK_GPU_PARTIALS) && slot(x, VXK_GPU_COUNTERS) &&
                 slot(x, VXK_GPU_LAYER) == (uint64_t)l,
             "attend launch, layer %d (NCHUNKS %llu)", l, (unsigned long long)slot(x, VXK_GPU_NCHUNKS));
    const uint32_t *counters = (const uint32_t *)(uintptr_t)slot(x, VXK_GPU_COUNTERS);
    int zero = 1;
    for (int i = 0; i < 2 * ROWS * H; i++) zero &= counters[i] == 0;
    RT_CHECK(zero, "counters zeroed at batch creation");
  }
  RT_CHECK(*mnlog == n0 + 3 * L, "three launches per layer");
  uint8_t *sel = malloc(H * G * 16 * P);
  RT_EXPECT(vxrt_batch_read_selection(bt, 1, sel), VXRT_OK, NULL);
  free(sel);
  RT_EXPECT(vxrt_stream_sync(s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);
  int64_t len;
  vxrt_row_length(cache, rows[2], 1, &len);
  RT_CHECK(len == lens[2] + 1, "commit: %lld", (long long)len);

  /* Graphs: prepare refuses a capturing stream; a captured step replays its launches. */
  vxrt_graph *g = NULL;
  RT_EXPECT(vxrt_graph_begin(s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_ERR_STATE, "capturing");
  RT_EXPECT(vxrt_graph_end(s, &g), VXRT_OK, NULL);
  vxrt_graph_free(g);
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_graph_begin(s), VXRT_OK, NULL);
  n0 = *mnlog;
  for (int l = 0; l < L; l++) {
    vxrt_decode_append(bt, l, K, K, s);
    vxrt_decode_select(bt, l, Q, s);
    vxrt_decode_attend(bt, l, Q, O, LSE, s);
  }
  RT_EXPECT(vxrt_graph_end(s, &g), VXRT_OK, NULL);
  RT_CHECK(*mnlog == n0, "capturing launches nothing");
  RT_EXPECT(vxrt_graph_launch(g, s), VXRT_OK, NULL);
  RT_CHECK(*mnlog == n0 + 3 * L && !strcmp(mlog[n0].name, "vxg_append__d64g2p16_bf16") &&
               i32_at(mlog[n0].args[VXK_GPU_LENGTHS], 2) == lens[2] + 2,
           "a replay runs the step's launches, reading the current lengths");
  RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_graph_launch(g, s), VXRT_OK, NULL);
  RT_CHECK(i32_at(mlog[n0].args[VXK_GPU_LENGTHS], 2) == lens[2] + 3, "the next prepare updates the mirror the graph reads");
  RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);
  vxrt_graph_free(g);

  /* A row closed and reopened under the same id: its new page table reaches the mirror. */
  static float qh0[H * G * D];
  RT_EXPECT(vxrt_row_close(cache, rows[0]), VXRT_OK, NULL);
  int again = -1;
  RT_EXPECT(vxrt_row_open(cache, &again), VXRT_OK, NULL);
  RT_CHECK(again == rows[0], "the row id is reused (%d)", again);
  for (int l = 0; l < L; l++) {
    vxrt_append(cache, rows[2], l, kv, kv, 40); /* takes the freed pages first */
    vxrt_append(cache, again, l, kv, kv, 5);
    RT_EXPECT(vxrt_prefill(st, again, l), VXRT_OK, NULL);
  }
  RT_EXPECT(vxrt_row_close(cache, again), VXRT_OK, NULL); /* reopened without a prefill: refused */
  RT_EXPECT(vxrt_row_open(cache, &again), VXRT_OK, NULL);
  for (int l = 0; l < L; l++) vxrt_append(cache, again, l, kv, kv, 5);
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_ERR_STATE, "layer 0 was not prefilled");
  RT_EXPECT(vxrt_select(st, again, 0, qh0, NULL), VXRT_ERR_STATE, "was not prefilled");
  for (int l = 0; l < L; l++) vxrt_prefill(st, again, l);
  vxrt_append(cache, again, 0, kv, kv, 1); /* layers at different lengths are refused */
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_ERR_STATE, "at one length");
  vxrt_append(cache, again, 1, kv, kv, 1);
  vxrt_append(cache, rows[2], 0, kv, kv, 1); /* rows[2] was not prefilled again: fine, */
  vxrt_append(cache, rows[2], 1, kv, kv, 1); /* its prefill length stays */
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_decode_append(bt, 0, K, K, s), VXRT_OK, NULL);
  {
    int32_t pages[16];
    int np;
    vxrt_row_pages(cache, again, pages, 16, &np);
    int same = np == 1 && i32_at(slot(last(), VXK_GPU_PAGE_TABLE), 0) == pages[0] &&
               i32_at(slot(last(), VXK_GPU_LENGTHS), 0) == 7;
    RT_CHECK(same, "a reopened row's page table and length are uploaded again (%d pages, first %d, mirror %d)", np,
             pages[0], i32_at(slot(last(), VXK_GPU_PAGE_TABLE), 0));
  }
  RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);

  /* Events. */
  vxrt_event *e0, *e1;
  float ms = -1;
  RT_EXPECT(vxrt_event_create(dev, &e0), VXRT_OK, NULL);
  RT_EXPECT(vxrt_event_create(dev, &e1), VXRT_OK, NULL);
  vxrt_event_record(e0, s);
  vxrt_event_record(e1, s);
  RT_EXPECT(vxrt_event_elapsed(e0, e1, &ms), VXRT_OK, NULL);
  RT_CHECK(ms >= 0, "elapsed %g ms", ms);
  vxrt_event_free(e0);
  vxrt_event_free(e1);

  /* Per-row calls on CUDA: a batch of one. */
  float qh[H * G * D] = {0}, out[H * G * D], lh[H * G];
  uint8_t *rsel = malloc(H * G * 16 * P);
  n0 = *mnlog;
  RT_EXPECT(vxrt_select(st, rows[1], 1, qh, rsel), VXRT_OK, NULL);
  RT_EXPECT(vxrt_attend(st, rows[1], 1, qh, out, lh), VXRT_OK, NULL);
  vxrt_row_length(cache, rows[1], 1, &len);
  RT_CHECK(*mnlog == n0 + 2 && !strcmp(mlog[n0].name, "vxg_select__d64g2p16_bf16") &&
               !strcmp(mlog[n0 + 1].name, "vxg_attend__d64g2p16_bf16") && mlog[n0 + 1].args[VXK_GPU_NSLOTS] == 1 &&
               i32_at(mlog[n0 + 1].args[VXK_GPU_LENGTHS], 0) == len && mlog[n0 + 1].grid[0] == H,
           "per-row select and attend: one-slot launches at the row's length");
  free(rsel);
  vxrt_buffer_free(dev, q);
  vxrt_buffer_free(dev, o);
  vxrt_buffer_free(dev, lse);
  vxrt_buffer_free(dev, k);

  /* Pages a step takes are zeroed by one memset each, queued on the step's stream. */
  vxrt_cache_info ci;
  vxrt_cache_get_info(cache, &ci);
  for (int l = 0; l < L; l++) {
    vxrt_kv_pool pool;
    vxrt_cache_get_pool(cache, l, &pool);
    memset(pool.k, 0xff, ci.pool_bytes);
    memset(pool.v, 0xff, ci.pool_bytes);
  }
  int m0 = *mmemset2d;
  RT_EXPECT(vxrt_batch_prepare(bt, P, s), VXRT_OK, NULL);
  RT_CHECK(*mmemset2d == m0 + ROWS, "one 2D memset per new page: %d", *mmemset2d - m0);
  int zeroed = 1, kept = 1;
  for (int r = 0; r < ROWS; r++) {
    int32_t pages[16];
    int np;
    vxrt_row_pages(cache, rows[r], pages, 16, &np);
    for (int l = 0; l < L; l++) {
      vxrt_kv_pool pool;
      vxrt_cache_get_pool(cache, l, &pool);
      const unsigned char *pk = (const unsigned char *)pool.k, *pv = (const unsigned char *)pool.v;
      for (size_t i = 0; i < ci.block_bytes * H; i++) {
        zeroed &= pk[(size_t)pages[np - 1] * ci.block_bytes * H + i] == 0 && pv[(size_t)pages[np - 1] * ci.block_bytes * H + i] == 0;
        kept &= pk[(size_t)pages[np - 2] * ci.block_bytes * H + i] == 0xff;
      }
    }
  }
  RT_CHECK(zeroed && kept, "the new page of every row is zero in every layer's K and V, the others untouched");
  RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);

  /* Device memory exhausted at batch creation. */
  size_t keep = *mlimit;
  *mlimit = 100;
  vxrt_batch *big = NULL;
  RT_EXPECT(vxrt_batch_create(st, ROWS, &big), VXRT_ERR_OUT_OF_MEMORY, "3 slots x 2 KV heads need");
  RT_EXPECT(vxrt_state_free(st), VXRT_ERR_STATE, "1 batch(es)"); /* bt; the failed one is gone */
  printf("OOM message: %s\n", vxrt_last_error());
  *mlimit = keep;
  vxrt_batch_free(bt);
  vxrt_stream_free(s);
  vxrt_state_free(st);
  vxrt_cache_free(cache);
  vxrt_policy_free(pol);
  free(b.data);
}

static void dense_and_errors(vxrt_device *dev) {
  rt_blob b = artifact("dense", "d64g1p16_f32", "append,attend", NULL);
  if (!blob_ok(b)) return;
  vxrt_policy *pol;
  vxrt_cache *cache;
  vxrt_state *st;
  vxrt_cache_desc wrong = {1, 1, 128, 16, VXRT_F32, 16, 2, 8};
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_OK, NULL);
  vxrt_cache_create(dev, &wrong, &cache);
  RT_EXPECT(vxrt_state_create(pol, cache, 1, &st), VXRT_ERR_UNSUPPORTED, "no GPU kernels for the cache shape d128g1p16_f32");
  RT_CHECK(strstr(vxrt_last_error(), "shapes [d64g1p16_f32]") && strstr(vxrt_last_error(), "--shape D=128,G=1,P=16,kv=f32"),
           "the message lists the artifact's shapes and the option: %s", vxrt_last_error());
  vxrt_cache_free(cache);
  vxrt_cache_desc cd = {1, 1, 64, 16, VXRT_F32, 16, 2, 8};
  vxrt_cache_create(dev, &cd, &cache);
  if (RT_EXPECT(vxrt_state_create(pol, cache, 1, &st), VXRT_OK, NULL)) {
    int row;
    float kv[64 * 30] = {0}, q[64] = {0}, out[64], lse[1];
    vxrt_row_open(cache, &row);
    vxrt_append(cache, row, 0, kv, kv, 30);
    int n0 = *mnlog;
    RT_EXPECT(vxrt_prefill(st, row, 0), VXRT_OK, NULL);
    RT_CHECK(*mnlog == n0, "dense has no summarise kernel: prefill launches nothing");
    RT_EXPECT(vxrt_select(st, row, 0, q, NULL), VXRT_OK, NULL);
    RT_EXPECT(vxrt_attend(st, row, 0, q, out, lse), VXRT_OK, NULL);
    RT_CHECK(*mnlog == n0 + 1 && !strcmp(mlog[n0].name, "vxg_attend__d64g1p16_f32") && mlog[n0].args[VXK_GPU_SEL_N] == 0,
             "dense: no select launch; attend with SEL_N 0 (every page)");
    vxrt_state_free(st);
  }
  vxrt_cache_free(cache);
  vxrt_policy_free(pol);
  free(b.data);

  /* A GPU kernel the policy needs is missing; broken PTX; unsupported policies. */
  b = artifact("quest", "d64g1p16_f32", "append,attend", NULL);
  vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol);
  vxrt_cache_create(dev, &cd, &cache);
  RT_EXPECT(vxrt_state_create(pol, cache, 1, &st), VXRT_ERR_LOAD, "lacks the GPU kernel 'summarise'");
  vxrt_cache_free(cache);
  vxrt_policy_free(pol);
  free(b.data);
  b = artifact("dense", "d64g1p16_f32", "append,attend",
               ".version 8.0\n.target sm_90\n.entry vxg_attend__d64g1p16_f32()\n{\n frobnicate;\n}\n");
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_ERR_LOAD, "PTX of target sm_90 failed to load");
  RT_CHECK(strstr(vxrt_last_error(), "cuLinkAddData failed: CUDA_ERROR_INVALID_PTX") && strstr(vxrt_last_error(), "frobnicate"),
           "driver error and JIT log: %s", vxrt_last_error());
  free(b.data);
  static const char *const unsupported[][2] = {{"h2o", "update kernel"}, {"magicpig", "row state 'mu'"}};
  for (int i = 0; i < 2; i++) {
    b = artifact(unsupported[i][0], "d64g1p16_f32", "append,summarise,select,attend", NULL);
    if (!blob_ok(b) || !RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_OK, NULL)) continue;
    vxrt_cache_create(dev, &cd, &cache);
    RT_EXPECT(vxrt_state_create(pol, cache, 1, &st), VXRT_ERR_UNSUPPORTED, unsupported[i][1]);
    vxrt_cache_free(cache);
    vxrt_policy_free(pol);
    free(b.data);
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: test_cuda_mock VXC STDLIB_DIR TMP_DIR\n");
    return 2;
  }
  vxc = argv[1], stdlib_dir = argv[2], tmp = argv[3];
  char *dir = cache_dir;
  snprintf(cache_dir, sizeof cache_dir, "%s/mock-kcache-XXXXXX", tmp);
  if (!mkdtemp(dir)) return rt_skip("cannot make a temporary directory");
  setenv("XDG_CACHE_HOME", dir, 1);
  vxrt_device *dev;
  if (vxrt_device_open(VXRT_CUDA, 0, &dev)) return rt_skip(vxrt_last_error());
  vxrt_device_info di;
  vxrt_device_get_info(dev, &di);
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (strcmp(di.name, "Mock GPU") != 0 || !lib || !(mlog = dlsym(lib, "mock_log"))) {
    vxrt_device_close(dev);
    return rt_skip("the CUDA driver found is not the mock (set LD_LIBRARY_PATH to its directory)");
  }
  mnlog = dlsym(lib, "mock_nlog");
  mnjit = dlsym(lib, "mock_njit");
  mmemset2d = dlsym(lib, "mock_nmemset2d");
  mlimit = dlsym(lib, "mock_mem_limit");
  quest(dev);
  dense_and_errors(dev);
  RT_EXPECT(vxrt_device_close(dev), VXRT_OK, NULL);
  dlclose(lib);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return rt_finish();
}
