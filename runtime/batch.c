/* batch.c - batched decode (vxrt_batch_* and vxrt_decode_* of vxrt.h): a batch of cache rows
 * decoded together, one call per layer for all of them, on a stream.
 *
 * One code path for both devices up to the work itself. The host part (rows, page
 * reservation, lengths, the select/attend pairing, commit) is shared. On CUDA the step's
 * lengths and page-table changes go through pinned staging to a device mirror, and each
 * call is one launch of the artifact's kernel for the whole batch (gpu.c); nothing between
 * prepare and commit allocates, so the launches can be captured in a CUDA graph. On the CPU
 * each call runs the per-row executor (exec_cpu.c) for every slot, so results equal the
 * per-row calls. The state's dense partner (vxrt_state_set_dense) runs select and attend of
 * its dense layers, and vxrt_decode_attend_dense, over the same rows and buffers. Must not
 * contain GPU kernels of its own: every kernel comes from the artifact, copies and fills are
 * driver calls. Never prints, never exits. */
#include <stdlib.h>
#include <string.h>

#include "state.h"

struct vxrt_batch {
  vxrt_state *st;
  vxrt_device *dev;
  int max_slots, nslots;
  int H, G, D, P, layers, max_row_pages;
  int *rows;           /* [max_slots]: the cache row of each slot */
  int64_t *base;       /* [max_slots]: each row's length before the step */
  int64_t *prefill;    /* [max_slots]: each row's prefill length */
  int ntokens;         /* new tokens of the prepared step */
  int prepared;        /* between prepare and commit */
  uint64_t step;       /* prepares so far: select/attend pairing */
  int sel_layer;       /* the layer of the last decode_select (-1: none) ... */
  uint64_t sel_step;   /* ... and the step it was for */
  int max_pages;       /* the step's largest row, in pages */
  /* CPU: the selection is computed at attend (and by read_selection) from select's q. */
  float *qsel;         /* [max_slots][H][G][D]: the q of the last decode_select */
  float *q1, *o1, *l1, *k1, *v1; /* one slot's q, out, lse, new k, new v in f32 */
  /* CUDA */
  int32_t *staging;    /* pinned: lengths [max_slots], prefill [max_slots], tables */
  uint64_t meta;       /* device: the same layout */
  uint64_t sel_n, sel_idx, sel_mask, keys, partials, counters;
  int *uploaded;       /* [max_slots]: page-table entries of the slot on the device ... */
  uint32_t *generation; /* ... of the row opened this many times (a reopened row: all again) */
  vxcu_event ev;       /* recorded after the last upload from staging */
  int ev_pending;
};

static int is_cuda(const vxrt_batch *b) { return b->dev->info.kind == VXRT_CUDA; }

/* Byte offsets in the staging / meta layout. */
static size_t off_prefill(const vxrt_batch *b) { return sizeof(int32_t) * (size_t)b->max_slots; }
static size_t off_tables(const vxrt_batch *b) { return 2 * sizeof(int32_t) * (size_t)b->max_slots; }

/* ------------------------------------------------------------------ the split-KV plan */

/* Chunks per row (split-KV): the count n that finishes the rows soonest when `slots` CTAs run
 * at once. A wave of CTAs takes as long as one chunk, max_pages / n pages, plus a fixed cost
 * per CTA (prologue, partial, merge) of about CHUNK_COST_PAGES pages; a last wave that is
 * partly empty costs as much as a full one. So minimise ceil(rows n / slots) (max_pages / n +
 * CHUNK_COST_PAGES), with chunks of at least 8 pages and at most 64 per row; ties go to fewer
 * chunks. */
enum { CHUNK_COST_PAGES = 4 };

int vxrt_attend_chunks(int rows, int max_pages, int slots) {
  if (rows < 1) rows = 1;
  if (slots < 1) slots = 1;
  if (max_pages < 1) max_pages = 1;
  int nmax = max_pages / 8 > 1 ? max_pages / 8 : 1;
  if (nmax > 64) nmax = 64;
  int best = 1;
  double best_cost = 0;
  for (int n = 1; n <= nmax; n++) {
    long waves = ((long)rows * n + slots - 1) / slots;
    double cost = (double)waves * ((double)max_pages / n + CHUNK_COST_PAGES);
    if (n == 1 || cost < best_cost - 1e-9) {
      best = n;
      best_cost = cost;
    }
  }
  return best;
}

/* Select's slices per row (grid.y): as many as one wave of resident CTAs holds, each slice
 * at least 64 pages; the last slice of a row to finish ranks the whole row. */
int vxrt_select_slices(int rows, int max_pages, int slots) {
  int n = rows > 0 ? slots / rows : 1;
  int cap = max_pages / 64 > 1 ? max_pages / 64 : 1;
  return n < 1 ? 1 : n > cap ? cap : n;
}

int vxrt_batch_chunks(const vxrt_batch *b) {
  return vxrt_attend_chunks(b->nslots * b->H, b->max_pages, b->st->gpu->attend_slots);
}

/* ------------------------------------------------------------------ create and free */

static void cuda_release(vxrt_batch *b) {
  vxrt_device *dev = b->dev;
  if (vxrt_cuda_push(dev) == VXRT_OK) {
    if (b->ev) {
      if (b->ev_pending) dev->cu.cuEventSynchronize(b->ev);
      dev->cu.cuEventDestroy(b->ev);
    }
    if (b->staging) dev->cu.cuMemFreeHost(b->staging);
    vxrt_cuda_pop(dev);
  }
  uint64_t bufs[] = {b->meta, b->sel_n, b->sel_idx, b->sel_mask, b->keys, b->partials, b->counters};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) vxrt_mem_free(dev, bufs[i]);
}

vxrt_status vxrt_batch_free(vxrt_batch *b) {
  if (!b) return VXRT_OK;
  if (is_cuda(b)) cuda_release(b);
  free(b->rows);
  free(b->base);
  free(b->prefill);
  free(b->qsel);
  free(b->q1);
  free(b->o1);
  free(b->l1);
  free(b->k1);
  free(b->v1);
  free(b->uploaded);
  free(b->generation);
  atomic_fetch_sub(&b->dev->live, 1);
  b->st->batches--;
  free(b);
  return VXRT_OK;
}

/* The device side: page-table mirror, lengths, selections, keys, partials, counters (zeroed
 * once: the kernels leave them zero), pinned staging, the upload event. */
static vxrt_status cuda_create(vxrt_batch *b) {
  vxrt_device *dev = b->dev;
  size_t rows = (size_t)b->max_slots * (size_t)b->H, mrp = (size_t)b->max_row_pages;
  size_t pmax = 0; /* the largest rows * chunks any step of this batch can ask for */
  for (int r = b->H; r <= b->max_slots * b->H; r += b->H) {
    size_t n = (size_t)r * (size_t)vxrt_attend_chunks(r, b->max_row_pages, b->st->gpu->attend_slots);
    if (n > pmax) pmax = n;
  }
  size_t meta = off_tables(b) + sizeof(int32_t) * (size_t)b->max_slots * mrp;
  /* keys: a word per unit (page or token) and the where() masks, [rows][P + 1][mrp] */
  size_t sel = sizeof(int32_t) * rows * (1 + 2 * mrp), keys = sizeof(uint32_t) * rows * ((size_t)b->P + 1) * mrp;
  size_t partials = sizeof(float) * pmax * (size_t)b->G * (size_t)(b->D + 2);
  size_t counters = 2 * sizeof(uint32_t) * rows;
  size_t total = meta + sel + keys + partials + counters;
  vxrt_status s = VXRT_OK;
  if ((s = vxrt_mem_alloc(dev, meta, &b->meta)) ||
      (s = vxrt_mem_alloc(dev, sizeof(int32_t) * rows, &b->sel_n)) ||
      (s = vxrt_mem_alloc(dev, sizeof(int32_t) * rows * mrp, &b->sel_idx)) ||
      (s = vxrt_mem_alloc(dev, sizeof(uint32_t) * rows * mrp, &b->sel_mask)) ||
      (s = vxrt_mem_alloc(dev, keys, &b->keys)) ||
      (s = vxrt_mem_alloc(dev, partials, &b->partials)) ||
      (s = vxrt_mem_alloc(dev, counters, &b->counters)) ||
      (s = vxrt_mem_zero(dev, b->counters, counters)) || (s = vxrt_mem_zero(dev, b->sel_n, sizeof(int32_t) * rows)))
    return s != VXRT_ERR_OUT_OF_MEMORY
               ? s
               : vxrt_fail(VXRT_ERR_OUT_OF_MEMORY,
                           "vxrt_batch_create: %d slots x %d KV heads need %zu bytes of device "
                           "memory (page tables and lengths %zu, selections %zu, top-k keys %zu, "
                           "split-KV partials %zu, counters %zu): %s",
                           b->max_slots, b->H, total, meta, sel, keys, partials, counters,
                           vxrt_last_error());
  if ((s = vxrt_cuda_push(dev))) return s;
  void *pinned = NULL;
  vxcu_result r = dev->cu.cuMemHostAlloc(&pinned, meta, 0);
  if (r) {
    vxrt_cuda_pop(dev);
    vxrt_cuda_fail(dev, VXRT_ERR_OUT_OF_MEMORY, "cuMemHostAlloc", r);
    return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY,
                     "vxrt_batch_create: %zu bytes of pinned host memory for staging: %s", meta,
                     vxrt_last_error());
  }
  b->staging = pinned;
  memset(b->staging, 0, meta);
  r = dev->cu.cuEventCreate(&b->ev, VXCU_EVENT_DEFAULT);
  vxrt_cuda_pop(dev);
  if (r) {
    b->ev = NULL;
    return vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuEventCreate", r);
  }
  return VXRT_OK;
}

vxrt_status vxrt_batch_create(vxrt_state *st, int max_slots, vxrt_batch **out) {
  if (!out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_batch_create: out is NULL");
  *out = NULL;
  if (!st) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_batch_create: state is NULL");
  const vxrt_cache_desc *d = &st->info.desc;
  if (max_slots < 1 || max_slots > d->max_rows)
    return vxrt_fail(VXRT_ERR_INVALID_ARG,
                     "vxrt_batch_create: max_slots is %d; expected 1..%d (the cache's rows)",
                     max_slots, d->max_rows);
  vxrt_batch *b = calloc(1, sizeof *b);
  if (!b) return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory creating a batch");
  b->st = st;
  b->dev = st->dev;
  b->max_slots = max_slots;
  b->H = d->kv_heads;
  b->G = st->G;
  b->D = d->head_dim;
  b->P = d->page_size;
  b->layers = d->layers;
  b->max_row_pages = d->max_row_pages;
  b->sel_layer = -1;
  atomic_fetch_add(&b->dev->live, 1);
  st->batches++;
  size_t ms = (size_t)max_slots, hgd = (size_t)b->H * (size_t)b->G * (size_t)b->D;
  b->rows = calloc(ms, sizeof(int));
  b->base = calloc(ms, sizeof(int64_t));
  b->prefill = calloc(ms, sizeof(int64_t));
  b->uploaded = calloc(ms, sizeof(int));
  b->generation = calloc(ms, sizeof(uint32_t));
  if (!is_cuda(b)) {
    b->qsel = malloc(sizeof(float) * ms * hgd);
    b->q1 = malloc(sizeof(float) * hgd);
    b->o1 = malloc(sizeof(float) * hgd);
    b->l1 = malloc(sizeof(float) * (size_t)b->H * (size_t)b->G);
    b->k1 = malloc(sizeof(float) * (size_t)b->H * (size_t)b->D);
    b->v1 = malloc(sizeof(float) * (size_t)b->H * (size_t)b->D);
  }
  vxrt_status s = VXRT_OK;
  if (!b->rows || !b->base || !b->prefill || !b->uploaded || !b->generation ||
      (!is_cuda(b) && (!b->qsel || !b->q1 || !b->o1 || !b->l1 || !b->k1 || !b->v1)))
    s = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of host memory creating a batch of %d slots",
                  max_slots);
  if (!s && is_cuda(b)) s = cuda_create(b);
  if (s) {
    vxrt_batch_free(b);
    return s;
  }
  *out = b;
  return VXRT_OK;
}

/* ------------------------------------------------------------------ host steps */

vxrt_status vxrt_batch_set_rows(vxrt_batch *b, const int *cache_rows, int n) {
  if (!b || (n && !cache_rows))
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_batch_set_rows: NULL argument");
  if (n < 0 || n > b->max_slots)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_batch_set_rows: %d rows; the batch holds 0..%d",
                     n, b->max_slots);
  if (b->prepared)
    return vxrt_fail(VXRT_ERR_STATE,
                     "vxrt_batch_set_rows: the batch has a prepared step; commit it first");
  for (int i = 0; i < n; i++) {
    vxrt_status s = vxrt_cache_row_check(b->st->cache, cache_rows[i], "vxrt_batch_set_rows");
    if (s) return s;
    for (int j = 0; j < i; j++)
      if (cache_rows[j] == cache_rows[i])
        return vxrt_fail(VXRT_ERR_INVALID_ARG,
                         "vxrt_batch_set_rows: row %d is in slots %d and %d", cache_rows[i], j, i);
  }
  memcpy(b->rows, cache_rows, sizeof(int) * (size_t)n);
  b->nslots = n;
  for (int i = 0; i < b->max_slots; i++) b->uploaded[i] = 0; /* every table goes up again */
  b->sel_layer = -1;
  return VXRT_OK;
}

static vxrt_status check_stream(const vxrt_batch *b, const vxrt_stream *s, const char *fn) {
  if (!s) return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: stream is NULL", fn);
  if (s->dev != b->dev)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: the stream belongs to another device", fn);
  return VXRT_OK;
}

/* CUDA: waits until the last upload has left staging. */
static vxrt_status wait_staging(vxrt_batch *b) {
  if (!b->ev_pending) return VXRT_OK;
  vxrt_status s = vxrt_cuda_push(b->dev);
  if (s) return s;
  vxcu_result r = b->dev->cu.cuEventSynchronize(b->ev);
  vxrt_cuda_pop(b->dev);
  b->ev_pending = 0;
  return r ? vxrt_cuda_fail(b->dev, VXRT_ERR_DEVICE, "cuEventSynchronize (an earlier step failed)", r)
           : VXRT_OK;
}

/* CUDA: writes lengths, prefill lengths and the new page-table entries of every slot to
 * staging and queues their upload on s. */
static vxrt_status upload(vxrt_batch *b, vxrt_stream *s) {
  vxrt_device *dev = b->dev;
  vxrt_status st = vxrt_cuda_push(dev);
  if (st) return st;
  vxcu_capture_status cap = VXCU_STREAM_CAPTURE_STATUS_NONE;
  vxcu_result r = dev->cu.cuStreamIsCapturing(s->s, &cap);
  if (!r && cap != VXCU_STREAM_CAPTURE_STATUS_NONE) {
    vxrt_cuda_pop(dev);
    return vxrt_fail(VXRT_ERR_STATE, "vxrt_batch_prepare: the stream is capturing a graph; "
                                     "prepare each step before its launches, outside the capture");
  }
  int32_t *len = b->staging, *pre = b->staging + b->max_slots, *tab = b->staging + 2 * b->max_slots;
  for (int i = 0; i < b->nslots && !r; i++) {
    len[i] = (int32_t)(b->base[i] + b->ntokens);
    pre[i] = (int32_t)b->prefill[i];
    int npages;
    const int32_t *t = vxrt_cache_table(b->st->cache, b->rows[i], &npages);
    uint32_t gen = vxrt_cache_row_generation(b->st->cache, b->rows[i]);
    if (gen != b->generation[i]) b->uploaded[i] = 0;
    b->generation[i] = gen;
    int from = b->uploaded[i];
    if (npages <= from) continue;
    size_t at = (size_t)i * (size_t)b->max_row_pages + (size_t)from;
    memcpy(tab + at, t + from, sizeof(int32_t) * (size_t)(npages - from));
    r = dev->cu.cuMemcpyHtoDAsync(b->meta + off_tables(b) + sizeof(int32_t) * at, tab + at,
                                  sizeof(int32_t) * (size_t)(npages - from), s->s);
    b->uploaded[i] = npages;
  }
  if (!r) r = dev->cu.cuMemcpyHtoDAsync(b->meta, b->staging, off_tables(b), s->s);
  if (!r) r = dev->cu.cuEventRecord(b->ev, s->s);
  vxrt_cuda_pop(dev);
  if (r) {
    for (int i = 0; i < b->max_slots; i++) b->uploaded[i] = 0;
    return vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "uploading the batch's lengths and page tables", r);
  }
  b->ev_pending = 1;
  return VXRT_OK;
}

static void note_pages(vxrt_batch *b) {
  b->max_pages = 1;
  for (int i = 0; i < b->nslots; i++) {
    int64_t n = (b->base[i] + b->ntokens + b->P - 1) / b->P;
    if (n > b->max_pages) b->max_pages = (int)n;
  }
}

vxrt_status vxrt_batch_prepare(vxrt_batch *b, int ntokens, vxrt_stream *s) {
  if (!b) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_batch_prepare: batch is NULL");
  vxrt_status st = check_stream(b, s, "vxrt_batch_prepare");
  if (st) return st;
  if (ntokens < 0) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_batch_prepare: ntokens is %d", ntokens);
  if (b->prepared)
    return vxrt_fail(VXRT_ERR_STATE, "vxrt_batch_prepare: the previous step was not committed");
  if (!b->nslots) return vxrt_fail(VXRT_ERR_STATE, "vxrt_batch_prepare: the batch has no rows");
  vxrt_state *S = b->st;
  /* Every row: open, prefilled, all layers at one length (the kernels see one per row). */
  for (int i = 0; i < b->nslots; i++) {
    int row = b->rows[i];
    if ((st = vxrt_cache_row_check(S->cache, row, "vxrt_batch_prepare"))) return st;
    int64_t len0 = 0, pre0 = 0;
    for (int l = 0; l < b->layers; l++) {
      int64_t len, pre = vxrt_state_prefill(S, row, l);
      vxrt_row_length(S->cache, row, l, &len);
      if (l == 0) len0 = len, pre0 = pre;
      if (pre < 1 || pre > len)
        return vxrt_fail(VXRT_ERR_STATE,
                         "vxrt_batch_prepare: row %d (slot %d) layer %d was not prefilled (call "
                         "vxrt_prefill after its prompt)", row, i, l);
      if (len != len0 || pre != pre0)
        return vxrt_fail(VXRT_ERR_STATE,
                         "vxrt_batch_prepare: row %d (slot %d) has %lld tokens (prefill %lld) in "
                         "layer 0 but %lld (prefill %lld) in layer %d; a batch decodes every layer "
                         "of a row at one length",
                         row, i, (long long)len0, (long long)pre0, (long long)len, (long long)pre, l);
    }
    if (len0 + ntokens > INT32_MAX)
      return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_batch_prepare: row %d would exceed 2^31 tokens", row);
    b->base[i] = len0;
    b->prefill[i] = pre0;
  }
  if (is_cuda(b) && (st = wait_staging(b))) return st;
  for (int i = 0; i < b->nslots; i++)
    if ((st = vxrt_cache_reserve(S->cache, b->rows[i], b->base[i] + ntokens, s))) return st;
  b->ntokens = ntokens;
  note_pages(b);
  if (is_cuda(b) && (st = upload(b, s))) return st;
  b->prepared = 1;
  b->step++;
  b->sel_layer = -1;
  return VXRT_OK;
}

vxrt_status vxrt_batch_commit(vxrt_batch *b) {
  if (!b) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_batch_commit: batch is NULL");
  if (!b->prepared)
    return vxrt_fail(VXRT_ERR_STATE, "vxrt_batch_commit: no prepared step (call vxrt_batch_prepare)");
  for (int i = 0; i < b->nslots; i++) vxrt_cache_advance(b->st->cache, b->rows[i], b->ntokens);
  b->prepared = 0;
  return VXRT_OK;
}

vxrt_status vxrt_batch_prefill(vxrt_batch *b, vxrt_stream *s) {
  const char *fn = "vxrt_batch_prefill";
  if (!b) return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: batch is NULL", fn);
  vxrt_status st = check_stream(b, s, fn);
  if (st) return st;
  if (b->prepared) return vxrt_fail(VXRT_ERR_STATE, "%s: the batch has a prepared step; commit it first", fn);
  if (!b->nslots) return vxrt_fail(VXRT_ERR_STATE, "%s: the batch has no rows", fn);
  vxrt_state *S = b->st;
  for (int i = 0; i < b->nslots; i++) {
    int64_t len0 = 0, len;
    if ((st = vxrt_cache_row_check(S->cache, b->rows[i], fn))) return st;
    for (int l = 0; l < b->layers; l++) {
      vxrt_row_length(S->cache, b->rows[i], l, &len);
      if (l == 0) len0 = len;
      if (len < 1 || len != len0)
        return vxrt_fail(VXRT_ERR_STATE,
                         "%s: row %d (slot %d) has %lld tokens in layer 0 and %lld in layer %d; append "
                         "its prompt to every layer first",
                         fn, b->rows[i], i, (long long)len0, (long long)len, l);
    }
    b->base[i] = b->prefill[i] = len0;
  }
  if (!is_cuda(b)) {
    for (int i = 0; i < b->nslots; i++)
      for (int l = 0; l < b->layers; l++)
        if ((st = vxrt_prefill(S, b->rows[i], l))) return st;
    return VXRT_OK;
  }
  b->ntokens = 0;
  note_pages(b);
  if ((st = wait_staging(b)) || (st = upload(b, s))) return st;
  for (int l = 0; l < b->layers; l++) {
    vxk_gpu_args a;
    vxrt_batch_args(b, l, &a);
    a.slot[VXK_GPU_FIRST_TOKEN] = 0;
    if ((st = vxrt_gpu_launch(S, VXRT_GPU_summarise, (unsigned)b->max_row_pages, (unsigned)(b->nslots * b->H),
                              VXK_GPU_SMALL_THREADS, &a, s->s)))
      return st;
  }
  for (int i = 0; i < b->nslots; i++)
    for (int l = 0; l < b->layers; l++) vxrt_state_set_prefill(S, b->rows[i], l, b->prefill[i]);
  return VXRT_OK;
}

vxrt_status vxrt_batch_stage_row(vxrt_batch *b, int row, int64_t len, int64_t prefill,
                                 vxrt_stream *s) {
  vxrt_status st = wait_staging(b);
  if (st) return st;
  if (b->nslots != 1 || b->rows[0] != row) b->uploaded[0] = 0; /* (a reopened row: upload()) */
  b->rows[0] = row;
  b->nslots = 1;
  b->base[0] = len;
  b->prefill[0] = prefill;
  b->ntokens = 0;
  note_pages(b);
  st = upload(b, s);
  b->prepared = !st; /* the step counter stays: a per-row attend pairs with its select */
  return st;
}

/* ------------------------------------------------------------------ device steps */

/* The device address of `layer`'s FIELDS table of a CUDA state. */
static uint64_t fields_addr(const vxrt_state *S, int layer) {
  return S->gpu->fields + sizeof(uint64_t) * (size_t)layer * (size_t)S->desc.pol.ntensors;
}

/* The state whose select and attend run `layer` of the batch: its own, or on a dense layer
 * its dense partner. */
static vxrt_state *layer_state(const vxrt_batch *b, int layer) {
  return vxrt_state_dense_layer(b->st, layer) ? b->st->dense : b->st;
}

void vxrt_batch_args(const vxrt_batch *b, int layer, vxk_gpu_args *a) {
  const vxrt_state *S = b->st;
  vxrt_kv_pool pool;
  vxrt_cache_get_pool(S->cache, layer, &pool);
  memset(a, 0, sizeof *a);
  uint64_t *x = a->slot;
  x[VXK_GPU_K_POOL] = (uint64_t)(uintptr_t)pool.k;
  x[VXK_GPU_V_POOL] = (uint64_t)(uintptr_t)pool.v;
  x[VXK_GPU_LENGTHS] = b->meta;
  x[VXK_GPU_PREFILL_LENGTHS] = b->meta + off_prefill(b);
  x[VXK_GPU_PAGE_TABLE] = b->meta + off_tables(b);
  x[VXK_GPU_NSLOTS] = (uint64_t)b->nslots;
  x[VXK_GPU_KV_HEADS] = (uint64_t)b->H;
  x[VXK_GPU_MAX_ROW_PAGES] = (uint64_t)b->max_row_pages;
  x[VXK_GPU_FIELDS] = fields_addr(S, layer);
  x[VXK_GPU_SCALARS] = S->gpu->scalars;
  /* No select kernel: SEL_N stays 0 and attend walks every page. */
  if (S->gpu->fn[VXRT_GPU_select]) {
    x[VXK_GPU_SEL_N] = b->sel_n;
    x[VXK_GPU_SEL_IDX] = b->sel_idx;
    x[VXK_GPU_SEL_MASK] = b->sel_mask;
  }
  x[VXK_GPU_SEL_CAP] = (uint64_t)b->max_row_pages;
  x[VXK_GPU_KEYS] = b->keys;
  x[VXK_GPU_PARTIALS] = b->partials;
  x[VXK_GPU_COUNTERS] = b->counters;
  x[VXK_GPU_LAYER] = (uint64_t)layer;
}

/* What every device step checks: a prepared batch, a layer in range, a stream of the device. */
static vxrt_status check_step(const vxrt_batch *b, int layer, const vxrt_stream *s, const char *fn) {
  if (!b) return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: batch is NULL", fn);
  vxrt_status st = check_stream(b, s, fn);
  if (st) return st;
  if (!b->prepared)
    return vxrt_fail(VXRT_ERR_STATE, "%s: no prepared step (call vxrt_batch_prepare first)", fn);
  if (layer < 0 || layer >= b->layers)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: layer %d out of range (cache has %d layers)", fn,
                     layer, b->layers);
  return VXRT_OK;
}

static vxrt_status check_buf(vxrt_dbuf x, const char *fn, const char *name, int optional) {
  if (!x.addr && !optional) return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: %s has address 0", fn, name);
  if (x.dtype != VXRT_F32 && x.dtype != VXRT_BF16)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: %s is %s; the batched calls take f32 or bf16", fn,
                     name, vxrt_dtype_name(x.dtype));
  return VXRT_OK;
}

/* CPU: n elements of slot `slot` of a host buffer, as f32 into dst (a view when already f32). */
static const float *host_f32(vxrt_dbuf x, size_t slot, size_t n, float *dst) {
  size_t esz = vxrt_dtype_size(x.dtype);
  const void *p = (const char *)(uintptr_t)x.addr + slot * n * esz;
  if (x.dtype == VXRT_F32) return p;
  vxrt_convert_to_f32(x.dtype, p, dst, n);
  return dst;
}

/* CPU: the executor's view of slot i for layer. */
static void slot_kv(const vxrt_batch *b, int i, int layer, exec_kv *kv) {
  vxrt_kv_pool pool;
  int npages;
  vxrt_cache_get_pool(b->st->cache, layer, &pool);
  kv->k = pool.k;
  kv->v = pool.v;
  kv->kv_dtype = (int)b->st->info.desc.kv_dtype;
  kv->page_ids = vxrt_cache_table(b->st->cache, b->rows[i], &npages);
  kv->len = (int)(b->base[i] + b->ntokens);
  kv->prefill_len = (int)b->prefill[i];
}

static vxrt_status exec_status(int ok, const char *fn, int slot, const char *err) {
  return ok ? VXRT_OK : vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: slot %d: %s", fn, slot, err);
}

vxrt_status vxrt_decode_append(vxrt_batch *b, int layer, vxrt_dbuf k, vxrt_dbuf v,
                               vxrt_stream *s) {
  const char *fn = "vxrt_decode_append";
  vxrt_status st = check_step(b, layer, s, fn);
  if (!st) st = check_buf(k, fn, "k", 0);
  if (!st) st = check_buf(v, fn, "v", 0);
  if (st) return st;
  if (b->ntokens != 1)
    return vxrt_fail(VXRT_ERR_UNSUPPORTED,
                     "%s: appends one token per row; this step was prepared for %d", fn, b->ntokens);
  size_t hd = (size_t)b->H * (size_t)b->D;
  if (is_cuda(b)) {
    vxk_gpu_args a;
    vxrt_batch_args(b, layer, &a);
    a.slot[VXK_GPU_NEW_K] = k.addr;
    a.slot[VXK_GPU_NEW_V] = v.addr;
    a.slot[VXK_GPU_NEW_DTYPE] = (uint64_t)k.dtype;
    if (k.dtype != v.dtype)
      return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: k and v must have one dtype", fn);
    return vxrt_gpu_launch(b->st, VXRT_GPU_append, (unsigned)(b->nslots * b->H), 1,
                           VXK_GPU_SMALL_THREADS, &a, s->s);
  }
  char err[512];
  for (int i = 0; i < b->nslots; i++) {
    exec_kv kv;
    slot_kv(b, i, layer, &kv);
    const float *kf = host_f32(k, (size_t)i, hd, b->k1), *vf = host_f32(v, (size_t)i, hd, b->v1);
    if ((st = vxrt_cache_write(b->st->cache, b->rows[i], layer, b->base[i], kf, vf, 1))) return st;
    if ((st = exec_status(exec_append(b->st->ex, b->rows[i], layer, &kv, (int)b->base[i], err, sizeof err),
                          fn, i, err)))
      return st;
  }
  return VXRT_OK;
}

vxrt_status vxrt_decode_select(vxrt_batch *b, int layer, vxrt_dbuf q, vxrt_stream *s) {
  const char *fn = "vxrt_decode_select";
  vxrt_status st = check_step(b, layer, s, fn);
  if (!st) st = check_buf(q, fn, "q", 0);
  if (st) return st;
  size_t hgd = (size_t)b->H * (size_t)b->G * (size_t)b->D;
  if (is_cuda(b)) {
    if (b->st->gpu->fn[VXRT_GPU_select] && layer_state(b, layer) == b->st) {
      vxk_gpu_args a;
      vxrt_batch_args(b, layer, &a);
      a.slot[VXK_GPU_Q] = q.addr;
      a.slot[VXK_GPU_Q_DTYPE] = (uint64_t)q.dtype;
      int rows = b->nslots * b->H;
      int slices = vxrt_select_slices(rows, b->max_pages, b->st->gpu->select_slots);
      st = vxrt_gpu_launch(b->st, VXRT_GPU_select, (unsigned)rows, (unsigned)slices, VXK_GPU_SELECT_THREADS, &a, s->s);
    }
  } else {
    for (int i = 0; i < b->nslots; i++) {
      float *dst = b->qsel + (size_t)i * hgd;
      const float *src = host_f32(q, (size_t)i, hgd, dst);
      if (src != dst) memcpy(dst, src, sizeof(float) * hgd);
    }
  }
  if (!st) {
    b->sel_layer = layer;
    b->sel_step = b->step;
  }
  return st;
}

/* Attend of `run` (the batch's state, or its dense partner) over the batch's rows. CUDA: one
 * launch, the partner with its own fields and scalars and no selection (it walks every page).
 * CPU: per slot, the selection of `run`'s executor (from select's q when qsel, else from q),
 * then its attend. */
static vxrt_status attend_with(vxrt_batch *b, vxrt_state *run, int layer, vxrt_dbuf q, vxrt_dbuf out,
                               vxrt_dbuf lse, int qsel, vxrt_stream *s, const char *fn) {
  if (is_cuda(b)) {
    vxk_gpu_args a;
    vxrt_batch_args(b, layer, &a);
    if (run != b->st) {
      a.slot[VXK_GPU_FIELDS] = fields_addr(run, layer);
      a.slot[VXK_GPU_SCALARS] = run->gpu->scalars;
      a.slot[VXK_GPU_SEL_N] = a.slot[VXK_GPU_SEL_IDX] = a.slot[VXK_GPU_SEL_MASK] = 0;
    }
    int chunks = vxrt_batch_chunks(b); /* the batch's plan: its partials are sized for it */
    a.slot[VXK_GPU_Q] = q.addr;
    a.slot[VXK_GPU_Q_DTYPE] = (uint64_t)q.dtype;
    a.slot[VXK_GPU_OUT] = out.addr;
    a.slot[VXK_GPU_OUT_DTYPE] = (uint64_t)out.dtype;
    a.slot[VXK_GPU_LSE] = lse.addr;
    a.slot[VXK_GPU_NCHUNKS] = (uint64_t)chunks;
    return vxrt_gpu_launch(run, VXRT_GPU_attend, (unsigned)(b->nslots * b->H), (unsigned)chunks,
                           VXK_GPU_ATTEND_THREADS, &a, s->s);
  }
  size_t hg = (size_t)b->H * (size_t)b->G, hgd = hg * (size_t)b->D;
  char err[512];
  vxrt_status st;
  for (int i = 0; i < b->nslots; i++) {
    exec_kv kv;
    slot_kv(b, i, layer, &kv);
    const float *qf = host_f32(q, (size_t)i, hgd, b->q1);
    const float *qs = qsel ? b->qsel + (size_t)i * hgd : qf;
    int ok = exec_select(run->ex, b->rows[i], layer, &kv, qs, NULL, err, sizeof err) &&
             exec_attend(run->ex, b->rows[i], layer, &kv, qf, b->o1, b->l1, err, sizeof err);
    if ((st = exec_status(ok, fn, i, err))) return st;
    void *o = (char *)(uintptr_t)out.addr + (size_t)i * hgd * vxrt_dtype_size(out.dtype);
    if (out.dtype == VXRT_F32)
      memcpy(o, b->o1, sizeof(float) * hgd);
    else
      vxrt_convert_from_f32(out.dtype, b->o1, o, hgd);
    if (lse.addr) memcpy((float *)(uintptr_t)lse.addr + (size_t)i * hg, b->l1, sizeof(float) * hg);
  }
  return VXRT_OK;
}

static vxrt_status check_attend_bufs(vxrt_dbuf q, vxrt_dbuf out, vxrt_dbuf lse, const char *fn) {
  vxrt_status st = check_buf(q, fn, "q", 0);
  if (!st) st = check_buf(out, fn, "out", 0);
  if (!st && lse.addr && lse.dtype != VXRT_F32)
    st = vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: lse is %s; it is always f32", fn, vxrt_dtype_name(lse.dtype));
  return st;
}

vxrt_status vxrt_decode_attend(vxrt_batch *b, int layer, vxrt_dbuf q, vxrt_dbuf out,
                               vxrt_dbuf lse, vxrt_stream *s) {
  const char *fn = "vxrt_decode_attend";
  vxrt_status st = check_step(b, layer, s, fn);
  if (!st) st = check_attend_bufs(q, out, lse, fn);
  if (st) return st;
  if (b->sel_layer != layer || b->sel_step != b->step)
    return vxrt_fail(VXRT_ERR_STATE,
                     "%s: layer %d has no selection for this step; call vxrt_decode_select for it "
                     "first", fn, layer);
  return attend_with(b, layer_state(b, layer), layer, q, out, lse, 1, s, fn);
}

vxrt_status vxrt_decode_attend_dense(vxrt_batch *b, int layer, vxrt_dbuf q, vxrt_dbuf out,
                                     vxrt_dbuf lse, vxrt_stream *s) {
  const char *fn = "vxrt_decode_attend_dense";
  vxrt_status st = check_step(b, layer, s, fn);
  if (!st) st = check_attend_bufs(q, out, lse, fn);
  if (st) return st;
  if (!b->st->dense)
    return vxrt_fail(VXRT_ERR_STATE, "%s: the batch's state has no dense partner (vxrt_state_set_dense)", fn);
  return attend_with(b, b->st->dense, layer, q, out, lse, 0, s, fn);
}

/* ------------------------------------------------------------------ debugging */

/* CUDA: expands a slot's device selection (SEL_N pages of SEL_IDX with SEL_MASK tokens) into
 * bytes; without a select kernel, or on a dense layer, every token of the row. */
static vxrt_status cuda_selection(vxrt_batch *b, int slot, uint8_t *selected) {
  size_t tokens = (size_t)b->max_row_pages * (size_t)b->P, mrp = (size_t)b->max_row_pages;
  int64_t len = b->base[slot] + b->ntokens;
  memset(selected, 0, tokens * (size_t)b->H * (size_t)b->G);
  if (!b->st->gpu->fn[VXRT_GPU_select] || layer_state(b, b->sel_layer) != b->st) {
    for (int h = 0; h < b->H * b->G; h++) memset(selected + (size_t)h * tokens, 1, (size_t)len);
    return VXRT_OK;
  }
  int32_t *n = malloc(sizeof(int32_t) * (size_t)b->H);
  int32_t *idx = malloc(sizeof(int32_t) * (size_t)b->H * mrp);
  uint32_t *mask = malloc(sizeof(uint32_t) * (size_t)b->H * mrp);
  size_t row0 = (size_t)slot * (size_t)b->H;
  vxrt_status st = n && idx && mask ? VXRT_OK : vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  if (!st) st = vxrt_mem_read(b->dev, n, b->sel_n + sizeof(int32_t) * row0, sizeof(int32_t) * (size_t)b->H);
  if (!st) st = vxrt_mem_read(b->dev, idx, b->sel_idx + sizeof(int32_t) * row0 * mrp, sizeof(int32_t) * (size_t)b->H * mrp);
  if (!st) st = vxrt_mem_read(b->dev, mask, b->sel_mask + sizeof(uint32_t) * row0 * mrp, sizeof(uint32_t) * (size_t)b->H * mrp);
  for (int h = 0; !st && h < b->H; h++) {
    if (n[h] < 0 || (size_t)n[h] > mrp) {
      st = vxrt_fail(VXRT_ERR_DEVICE, "the select kernel wrote %d entries for row %zu (capacity %zu)",
                     n[h], row0 + (size_t)h, mrp);
      break;
    }
    for (int e = 0; e < n[h]; e++) {
      int32_t p = idx[(size_t)h * mrp + (size_t)e];
      uint32_t m = mask[(size_t)h * mrp + (size_t)e];
      for (int t = 0; t < b->P && t < 32 && p >= 0 && (size_t)p < mrp; t++) {
        int64_t pos = (int64_t)p * b->P + t;
        if (!(m >> t & 1) || pos >= len) continue;
        for (int g = 0; g < b->G; g++)
          selected[((size_t)h * (size_t)b->G + (size_t)g) * tokens + (size_t)pos] = 1;
      }
    }
  }
  free(n);
  free(idx);
  free(mask);
  return st;
}

vxrt_status vxrt_batch_read_selection(vxrt_batch *b, int slot, uint8_t *selected) {
  const char *fn = "vxrt_batch_read_selection";
  if (!b || !selected) return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: NULL argument", fn);
  if (slot < 0 || slot >= b->nslots)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: slot %d out of range (the batch has %d)", fn, slot,
                     b->nslots);
  if (b->sel_layer < 0 || b->sel_step != b->step)
    return vxrt_fail(VXRT_ERR_STATE, "%s: no vxrt_decode_select since the last prepare", fn);
  if (is_cuda(b)) {
    vxrt_status st = vxrt_cuda_push(b->dev);
    if (st) return st;
    vxcu_result r = b->dev->cu.cuCtxSynchronize();
    vxrt_cuda_pop(b->dev);
    if (r) return vxrt_cuda_fail(b->dev, VXRT_ERR_DEVICE, "cuCtxSynchronize", r);
    return cuda_selection(b, slot, selected);
  }
  exec_kv kv;
  char err[512];
  slot_kv(b, slot, b->sel_layer, &kv);
  size_t hgd = (size_t)b->H * (size_t)b->G * (size_t)b->D;
  return exec_status(exec_select(layer_state(b, b->sel_layer)->ex, b->rows[slot], b->sel_layer, &kv,
                                 b->qsel + (size_t)slot * hgd,
                                 selected, err, sizeof err),
                     fn, slot, err);
}
