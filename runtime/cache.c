/* cache.c - the paged KV cache of libvxrt (docs/runtime.md, the cache).
 *
 * One device allocation holds, for every layer, a K pool and a V pool of max_pages pages;
 * in a pool, the (page p, KV head h) block is contiguous (P x D elements, token-major) at
 * block index p * kv_heads + h, so all heads of one page are contiguous too. Rows (requests)
 * own pages through a page table shared by all their layers; free pages sit on a stack.
 * Everything is allocated at creation: appends and row management never allocate, which is
 * what lets a decode step be captured in a CUDA graph later. Pages are zeroed when a row
 * takes them, so nothing of a previous row can leak into a new one (summaries of a partial
 * page must ignore unused slots, but zeros make a mistake there harmless and visible).
 * A cache is not thread-safe; distinct caches are independent. Never prints, never exits.
 */
#include "vxrt_internal.h"

#include <stdlib.h>
#include <string.h>

struct vxrt_cache {
  vxrt_device *dev;
  vxrt_cache_desc d;      /* max_row_pages resolved */
  size_t elem;            /* bytes per element */
  size_t block_bytes;     /* one (page, head) block: P * D elements */
  size_t page_bytes;      /* one page of one layer's K (or V) pool, all heads */
  size_t pool_bytes;      /* one layer's K (or V) pool */
  uint64_t base;          /* the one allocation: pools ordered K0 V0 K1 V1 ... */
  int32_t *free_pages;    /* stack of free page ids */
  int nfree;
  int32_t *tables;        /* max_rows x max_row_pages page ids */
  int *npages;            /* pages owned per row */
  int64_t *lengths;       /* max_rows x layers token counts */
  unsigned char *open;    /* per row */
  uint32_t *opened;       /* per row: how often it was opened (batches notice a reopened row) */
  int *free_rows;         /* stack of closed row ids */
  int nfree_rows;
  unsigned char *staging; /* one block, converting to/from device memory (CUDA only) */
};

static uint64_t pool_addr(const vxrt_cache *c, int layer, int is_v) {
  return c->base + (uint64_t)(2 * layer + is_v) * c->pool_bytes;
}

/* Address of token slot `slot` of (page, head) in a pool. */
static uint64_t slot_addr(const vxrt_cache *c, uint64_t pool, int32_t page, int head, int slot) {
  return pool + ((uint64_t)page * (uint64_t)c->d.kv_heads + (uint64_t)head) * c->block_bytes +
         (uint64_t)slot * (uint64_t)c->d.head_dim * c->elem;
}

static vxrt_status check_desc(const vxrt_cache_desc *d) {
#define VXRT_RANGE(field, lo, hi)                                                           \
  if (d->field < (lo) || d->field > (hi))                                                   \
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_cache_create: " #field " is %d; expected %d..%d", \
                     d->field, (lo), (hi));
  VXRT_RANGE(layers, 1, 4096)
  VXRT_RANGE(kv_heads, 1, 4096)
  VXRT_RANGE(head_dim, 1, 65536)
  VXRT_RANGE(page_size, 1, 65536)
  VXRT_RANGE(max_pages, 1, 0x7fffffff)
  VXRT_RANGE(max_rows, 1, 1 << 24)
  VXRT_RANGE(max_row_pages, 0, d->max_pages)
#undef VXRT_RANGE
  if (!vxrt_dtype_size(d->kv_dtype))
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_cache_create: kv_dtype %d is not a KV dtype",
                     (int)d->kv_dtype);
  return VXRT_OK;
}

/* a * b into *out, 0 if it overflows size_t. */
static int mul_ok(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }

/* Everything of a cache but its pools, which live on the device. */
static void free_host_parts(vxrt_cache *c) {
  free(c->free_pages);
  free(c->tables);
  free(c->npages);
  free(c->lengths);
  free(c->open);
  free(c->opened);
  free(c->free_rows);
  free(c->staging);
  free(c);
}

vxrt_status vxrt_cache_create(vxrt_device *dev, const vxrt_cache_desc *desc, vxrt_cache **out) {
  if (!dev || !desc || !out)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_cache_create: NULL argument");
  *out = NULL;
  vxrt_status st = check_desc(desc);
  if (st) return st;
  vxrt_cache *c = calloc(1, sizeof *c);
  if (!c) return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory creating a cache");
  c->dev = dev;
  c->d = *desc;
  if (!c->d.max_row_pages) c->d.max_row_pages = c->d.max_pages;
  c->elem = vxrt_dtype_size(desc->kv_dtype);
  size_t total, tables;
  if (!mul_ok((size_t)desc->page_size * (size_t)desc->head_dim, c->elem, &c->block_bytes) ||
      !mul_ok(c->block_bytes, (size_t)desc->kv_heads, &c->page_bytes) ||
      !mul_ok(c->page_bytes, (size_t)desc->max_pages, &c->pool_bytes) ||
      !mul_ok(c->pool_bytes, 2 * (size_t)desc->layers, &total) ||
      !mul_ok((size_t)desc->max_rows, (size_t)c->d.max_row_pages, &tables)) {
    free(c);
    return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "vxrt_cache_create: the cache's size overflows");
  }
  c->free_pages = malloc(sizeof(int32_t) * (size_t)desc->max_pages);
  c->tables = malloc(sizeof(int32_t) * tables);
  c->npages = calloc((size_t)desc->max_rows, sizeof(int));
  c->lengths = calloc((size_t)desc->max_rows * (size_t)desc->layers, sizeof(int64_t));
  c->open = calloc((size_t)desc->max_rows, 1);
  c->opened = calloc((size_t)desc->max_rows, sizeof(uint32_t));
  c->free_rows = malloc(sizeof(int) * (size_t)desc->max_rows);
  c->staging = dev->info.kind == VXRT_CUDA ? malloc(c->block_bytes) : NULL;
  if (!c->free_pages || !c->tables || !c->npages || !c->lengths || !c->open || !c->opened || !c->free_rows ||
      (dev->info.kind == VXRT_CUDA && !c->staging)) {
    st = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of host memory creating a cache");
    goto fail;
  }
  if ((st = vxrt_mem_alloc(dev, total, &c->base))) goto fail;
  /* Stacks filled so that the first pops hand out page 0 and row 0, then 1, ...: the order
   * is not part of the contract, but it makes dumps and tests easier to read. */
  for (int i = 0; i < desc->max_pages; i++) c->free_pages[i] = desc->max_pages - 1 - i;
  c->nfree = desc->max_pages;
  for (int i = 0; i < desc->max_rows; i++) c->free_rows[i] = desc->max_rows - 1 - i;
  c->nfree_rows = desc->max_rows;
  atomic_fetch_add(&dev->live, 1);
  *out = c;
  return VXRT_OK;
fail:
  free_host_parts(c);
  return st;
}

vxrt_status vxrt_cache_free(vxrt_cache *c) {
  if (!c) return VXRT_OK;
  vxrt_mem_free(c->dev, c->base);
  atomic_fetch_sub(&c->dev->live, 1);
  free_host_parts(c);
  return VXRT_OK;
}

vxrt_status vxrt_cache_get_info(const vxrt_cache *c, vxrt_cache_info *out) {
  if (!c || !out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_cache_get_info: NULL argument");
  out->desc = c->d;
  out->free_pages = c->nfree;
  out->open_rows = c->d.max_rows - c->nfree_rows;
  out->elem_bytes = c->elem;
  out->block_bytes = c->block_bytes;
  out->pool_bytes = c->pool_bytes;
  return VXRT_OK;
}

vxrt_status vxrt_cache_get_pool(const vxrt_cache *c, int layer, vxrt_kv_pool *out) {
  if (!c || !out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_cache_get_pool: NULL argument");
  if (layer < 0 || layer >= c->d.layers)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "layer %d out of range (cache has %d layers)", layer,
                     c->d.layers);
  out->k = (void *)(uintptr_t)pool_addr(c, layer, 0);
  out->v = (void *)(uintptr_t)pool_addr(c, layer, 1);
  return VXRT_OK;
}

/* ------------------------------------------------------------------ rows */

static vxrt_status check_row(const vxrt_cache *c, int row, const char *fn) {
  if (!c) return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: cache is NULL", fn);
  if (row < 0 || row >= c->d.max_rows)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: row %d out of range (cache has %d rows)", fn,
                     row, c->d.max_rows);
  if (!c->open[row]) return vxrt_fail(VXRT_ERR_STATE, "%s: row %d is not open", fn, row);
  return VXRT_OK;
}

static vxrt_status check_layer(const vxrt_cache *c, int layer, const char *fn) {
  if (layer < 0 || layer >= c->d.layers)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: layer %d out of range (cache has %d layers)",
                     fn, layer, c->d.layers);
  return VXRT_OK;
}

vxrt_status vxrt_row_open(vxrt_cache *c, int *row) {
  if (!c || !row) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_row_open: NULL argument");
  if (!c->nfree_rows)
    return vxrt_fail(VXRT_ERR_POOL_FULL, "all %d rows of the cache are open", c->d.max_rows);
  int r = c->free_rows[--c->nfree_rows];
  c->open[r] = 1;
  c->opened[r]++;
  c->npages[r] = 0;
  memset(&c->lengths[(size_t)r * (size_t)c->d.layers], 0, sizeof(int64_t) * (size_t)c->d.layers);
  *row = r;
  return VXRT_OK;
}

vxrt_status vxrt_row_close(vxrt_cache *c, int row) {
  vxrt_status st = check_row(c, row, "vxrt_row_close");
  if (st) return st;
  const int32_t *table = &c->tables[(size_t)row * (size_t)c->d.max_row_pages];
  /* Pushed in reverse so the next row to grow gets them back in the same order. */
  for (int i = c->npages[row] - 1; i >= 0; i--) c->free_pages[c->nfree++] = table[i];
  c->npages[row] = 0;
  c->open[row] = 0;
  c->free_rows[c->nfree_rows++] = row;
  return VXRT_OK;
}

vxrt_status vxrt_row_length(const vxrt_cache *c, int row, int layer, int64_t *len) {
  vxrt_status st = check_row(c, row, "vxrt_row_length");
  if (st || (st = check_layer(c, layer, "vxrt_row_length"))) return st;
  if (!len) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_row_length: len is NULL");
  *len = c->lengths[(size_t)row * (size_t)c->d.layers + (size_t)layer];
  return VXRT_OK;
}

vxrt_status vxrt_row_pages(const vxrt_cache *c, int row, int32_t *pages, int cap, int *npages) {
  vxrt_status st = check_row(c, row, "vxrt_row_pages");
  if (st) return st;
  if (!npages || cap < 0 || (cap && !pages))
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_row_pages: bad output buffer");
  int n = c->npages[row];
  *npages = n;
  if (cap < n)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_row_pages: row %d has %d pages, buffer holds %d",
                     row, n, cap);
  if (n)
    memcpy(pages, &c->tables[(size_t)row * (size_t)c->d.max_row_pages],
           sizeof(int32_t) * (size_t)n);
  return VXRT_OK;
}

/* ------------------------------------------------------------------ append and read */

/* Zeroes page p of every pool (K0 V0 K1 V1 ...: one 2D region of 2 x layers rows, pool_bytes
 * apart) as one memset queued on s; 0 when that cannot be done (then the caller zeroes it
 * synchronously). */
static int zero_page_async(vxrt_cache *c, int32_t p, const vxrt_stream *s) {
  vxrt_device *dev = c->dev;
  if (!s || dev->info.kind != VXRT_CUDA || c->page_bytes % 4 || c->pool_bytes % 4 || vxrt_cuda_push(dev))
    return 0;
  vxcu_result r = dev->cu.cuMemsetD2D32Async(c->base + (uint64_t)p * c->page_bytes, c->pool_bytes, 0,
                                             c->page_bytes / 4, 2 * (size_t)c->d.layers, s->s);
  vxrt_cuda_pop(dev);
  return r == 0;
}

/* Takes `extra` pages for `row` from the pool and zeroes them in every layer's K and V: queued
 * on s where there is one (CUDA), else at once. */
static vxrt_status grow_row(vxrt_cache *c, int row, int extra, const vxrt_stream *s) {
  int32_t *table = &c->tables[(size_t)row * (size_t)c->d.max_row_pages];
  for (int i = 0; i < extra; i++) {
    int32_t p = c->free_pages[--c->nfree];
    table[c->npages[row]++] = p;
    if (zero_page_async(c, p, s)) continue;
    for (int l = 0; l < c->d.layers; l++)
      for (int kv = 0; kv < 2; kv++) {
        vxrt_status st = vxrt_mem_zero(c->dev, pool_addr(c, l, kv) + (uint64_t)p * c->page_bytes,
                                       c->page_bytes);
        if (st) return st;
      }
  }
  return VXRT_OK;
}

/* Copies `n` tokens of one head between the caller's f32 layout (token stride H * D) and
 * slots [slot, slot + n) of one block, converting on the way. */
static vxrt_status put_run(vxrt_cache *c, uint64_t dst, const float *src, int n) {
  size_t D = (size_t)c->d.head_dim, stride = (size_t)c->d.kv_heads * D;
  int host = c->dev->info.kind == VXRT_CPU;
  unsigned char *buf = host ? (unsigned char *)(uintptr_t)dst : c->staging;
  for (int i = 0; i < n; i++)
    vxrt_convert_from_f32(c->d.kv_dtype, src + (size_t)i * stride,
                          buf + (size_t)i * D * c->elem, D);
  return host ? VXRT_OK : vxrt_mem_write(c->dev, dst, buf, (size_t)n * D * c->elem);
}

static vxrt_status get_run(const vxrt_cache *c, float *dst, uint64_t src, int n) {
  size_t D = (size_t)c->d.head_dim, stride = (size_t)c->d.kv_heads * D;
  int host = c->dev->info.kind == VXRT_CPU;
  const unsigned char *buf = (const unsigned char *)(uintptr_t)src;
  if (!host) {
    vxrt_status st = vxrt_mem_read(c->dev, c->staging, src, (size_t)n * D * c->elem);
    if (st) return st;
    buf = c->staging;
  }
  for (int i = 0; i < n; i++)
    vxrt_convert_to_f32(c->d.kv_dtype, buf + (size_t)i * D * c->elem, dst + (size_t)i * stride, D);
  return VXRT_OK;
}

/* Walks tokens [start, start + n) of a row page by page; for each run of tokens in one page
 * and each head, moves K and V between the caller's buffers and the pools. */
static vxrt_status walk(vxrt_cache *c, int row, int layer, int64_t start, int n, float *k,
                        float *v, const float *kin, const float *vin) {
  const int32_t *table = &c->tables[(size_t)row * (size_t)c->d.max_row_pages];
  int P = c->d.page_size, H = c->d.kv_heads;
  size_t D = (size_t)c->d.head_dim;
  uint64_t kpool = pool_addr(c, layer, 0), vpool = pool_addr(c, layer, 1);
  for (int done = 0; done < n;) {
    int64_t pos = start + done;
    int32_t page = table[pos / P];
    int slot = (int)(pos % P), run = P - slot < n - done ? P - slot : n - done;
    for (int h = 0; h < H; h++) {
      size_t off = ((size_t)done * (size_t)H + (size_t)h) * D;
      vxrt_status st = VXRT_OK;
      if (kin) st = put_run(c, slot_addr(c, kpool, page, h, slot), kin + off, run);
      if (!st && vin) st = put_run(c, slot_addr(c, vpool, page, h, slot), vin + off, run);
      if (!st && k) st = get_run(c, k + off, slot_addr(c, kpool, page, h, slot), run);
      if (!st && v) st = get_run(c, v + off, slot_addr(c, vpool, page, h, slot), run);
      if (st) return st;
    }
    done += run;
  }
  return VXRT_OK;
}

vxrt_status vxrt_append(vxrt_cache *c, int row, int layer, const float *k, const float *v,
                        int ntokens) {
  vxrt_status st = check_row(c, row, "vxrt_append");
  if (st || (st = check_layer(c, layer, "vxrt_append"))) return st;
  if (ntokens < 0)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_append: ntokens is %d", ntokens);
  if (ntokens == 0) return VXRT_OK;
  if (!k || !v) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_append: k or v is NULL");
  int64_t *len = &c->lengths[(size_t)row * (size_t)c->d.layers + (size_t)layer];
  int64_t new_len = *len + ntokens, P = c->d.page_size;
  int64_t need = (new_len + P - 1) / P;
  if (need > c->d.max_row_pages)
    return vxrt_fail(VXRT_ERR_POOL_FULL,
                     "row %d would need %lld pages for %lld tokens; a row holds at most %d "
                     "(max_row_pages)",
                     row, (long long)need, (long long)new_len, c->d.max_row_pages);
  int extra = need > c->npages[row] ? (int)(need - c->npages[row]) : 0;
  if (extra > c->nfree)
    return vxrt_fail(VXRT_ERR_POOL_FULL,
                     "KV pool full: row %d needs %d more page(s), %d of %d are free", row, extra,
                     c->nfree, c->d.max_pages);
  if (extra && (st = grow_row(c, row, extra, NULL))) return st;
  if ((st = walk(c, row, layer, *len, ntokens, NULL, NULL, k, v))) return st;
  *len = new_len;
  return VXRT_OK;
}

vxrt_status vxrt_read_kv(const vxrt_cache *c, int row, int layer, int64_t start, int ntokens,
                         float *k, float *v) {
  vxrt_status st = check_row(c, row, "vxrt_read_kv");
  if (st || (st = check_layer(c, layer, "vxrt_read_kv"))) return st;
  int64_t len = c->lengths[(size_t)row * (size_t)c->d.layers + (size_t)layer];
  if (start < 0 || ntokens < 0 || start > len || ntokens > len - start)
    return vxrt_fail(VXRT_ERR_INVALID_ARG,
                     "vxrt_read_kv: tokens [%lld, %lld) outside row %d layer %d of length %lld",
                     (long long)start, (long long)start + ntokens, row, layer, (long long)len);
  if (!ntokens || (!k && !v)) return VXRT_OK;
  /* walk() only writes to the pools when kin/vin are given; reading leaves the cache as is
   * (staging aside), hence the cast. */
  return walk((vxrt_cache *)c, row, layer, start, ntokens, k, v, NULL, NULL);
}

/* ------------------------------------------------------------------ batched decode (batch.c) */

vxrt_device *vxrt_cache_device(const vxrt_cache *c) { return c->dev; }

vxrt_status vxrt_cache_row_check(const vxrt_cache *c, int row, const char *fn) {
  return check_row(c, row, fn);
}

uint32_t vxrt_cache_row_generation(const vxrt_cache *c, int row) { return c->opened[row]; }

const int32_t *vxrt_cache_table(const vxrt_cache *c, int row, int *npages) {
  *npages = c->npages[row];
  return &c->tables[(size_t)row * (size_t)c->d.max_row_pages];
}

vxrt_status vxrt_cache_reserve(vxrt_cache *c, int row, int64_t tokens, const vxrt_stream *s) {
  int64_t P = c->d.page_size, need = (tokens + P - 1) / P;
  if (need > c->d.max_row_pages)
    return vxrt_fail(VXRT_ERR_POOL_FULL,
                     "row %d would need %lld pages for %lld tokens; a row holds at most %d "
                     "(max_row_pages)",
                     row, (long long)need, (long long)tokens, c->d.max_row_pages);
  int extra = need > c->npages[row] ? (int)(need - c->npages[row]) : 0;
  if (extra > c->nfree)
    return vxrt_fail(VXRT_ERR_POOL_FULL,
                     "KV pool full: row %d needs %d more page(s), %d of %d are free", row, extra,
                     c->nfree, c->d.max_pages);
  return extra ? grow_row(c, row, extra, s) : VXRT_OK;
}

vxrt_status vxrt_cache_write(vxrt_cache *c, int row, int layer, int64_t pos, const float *k,
                             const float *v, int ntokens) {
  int64_t cap = (int64_t)c->npages[row] * c->d.page_size;
  if (pos < 0 || ntokens < 0 || pos + ntokens > cap)
    return vxrt_fail(VXRT_ERR_STATE, "row %d: tokens [%lld, %lld) lie outside its %lld reserved slots",
                     row, (long long)pos, (long long)pos + ntokens, (long long)cap);
  return walk(c, row, layer, pos, ntokens, NULL, NULL, k, v);
}

void vxrt_cache_advance(vxrt_cache *c, int row, int ntokens) {
  for (int l = 0; l < c->d.layers; l++) c->lengths[(size_t)row * (size_t)c->d.layers + (size_t)l] += ntokens;
}
