/* vxk.h - the ABI between host code that vxc generates (compiler/cg_host.c) and the CPU
 * backend of libvxrt that calls it. Shared by both sides and by nothing else; it must stay
 * plain C with fixed-width fields, since the generated side addresses it by offsets.
 *
 * Every kernel is `void vxk_KIND(vxk_ctx *ctx)` for one (row, layer, KV head), KIND in
 * const, row, summarise, select, attend, update (see docs/ir.md for what each computes).
 *
 * Tensor storage, by the VIR tensor id that the manifest lists:
 * - paged tensors (page and token fields, and row state whose first axis is the page): a
 *   pool per layer, laid out [physical page][KV head][the other axes, row-major], like the
 *   KV cache; element (p, rest) of this row is at
 *   tensors[id] + ((page_ids[p] * kv_heads + head) * block + rest) * elem_size;
 * - everything else (consts, other row state, step tensors): dense row-major over its
 *   extents, with npages = this row's page count; the runtime sizes the buffers.
 * k and v are paged the same way with block = P * D, in the cache's dtype (kv_dtype).
 * Computation is f32; stores convert to the tensor's declared dtype. */
#ifndef VX_VXK_H
#define VX_VXK_H

#include <stdint.h>

enum { VXK_ABI_VERSION = 1 };

/* kv_dtype values */
enum { VXK_F32 = 0, VXK_F16 = 1, VXK_BF16 = 2 };

typedef struct vxk_ctx {
  /* 0 */ int32_t D, G, P, layer;
  /* 16 */ int32_t len;         /* tokens in the row, the new ones included */
  /* 20 */ int32_t npages;      /* pages in the row: ceil(len / P) */
  /* 24 */ int32_t prefill_len; /* tokens the row had when prefill ended */
  /* 28 */ int32_t kv_heads, head;
  /* 36 */ int32_t kv_dtype;
  /* 40 */ int32_t page_lo, page_hi; /* summarise: pages [page_lo, page_hi) */
  /* 48 */ int32_t per_head;         /* attend: selected is [G][npages*P], else [npages*P] */
  /* 52 */ int32_t token_lo;         /* summarise: token fields only of tokens >= token_lo */
  /* 56 */ const int32_t *page_ids;  /* the row's page table, npages entries */
  /* 64 */ const void *k;            /* this layer's key pool */
  /* 72 */ const void *v;            /* this layer's value pool */
  /* 80 */ const float *q;           /* [G][D], this KV head's query heads */
  /* 88 */ const double *params;     /* param values in manifest order */
  /* 96 */ void *const *tensors;     /* per VIR tensor id (see above); NULL for inputs */
  /* 104 */ const uint8_t *kept;     /* [npages*P]: 1 where the token is always kept */
  /* 112 */ const uint8_t *selected; /* attend: the selection, 1 = attend to the token */
  /* 120 */ const float *prob;       /* update: [G][npages*P] this step's attention weights */
  /* 128 */ float *out;              /* attend: [G][D] */
  /* 136 */ float *lse;              /* attend: [G], natural-log sum of exp of the logits */
} vxk_ctx;

typedef void (*vxk_kernel)(vxk_ctx *ctx);

#endif
