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

/* The storage dtypes of tensors: X(TAG, name, bytes). The language's dtypes (compiler/ast.h
 * DType), the artifact's names and the executors' sizes are made from this list; the
 * generated code stores in them. */
#define VXK_DTYPES(X) X(F32, f32, 4) X(F16, f16, 2) X(BF16, bf16, 2) X(FP8, fp8, 1) X(INT8, int8, 1) X(U32, u32, 4)

/* The stages of a tensor: X(TAG, name). VIR's tensor kinds (compiler/vir.h, in this order)
 * and the artifact's stage names (runtime/artifact.c, by tag) are made from this list.
 *   INPUT  q, k, v, logit, prob and the tensor intrinsics pos, from_end, kept
 *   CONST  made at load time;  ROW  row state;  PAGE / TOKEN  page and token fields;
 *   STEP   let / score: per decode step */
#define VXK_STAGES(X) X(INPUT, input) X(CONST, const) X(ROW, row) X(PAGE, page) X(TOKEN, token) X(STEP, step)

/* The host kernels, in the order a compiled module holds them: X(TAG, name), entry point
 * vxk_<name>. VIR's kernel kinds (compiler/vir.h) and the artifact's (runtime/artifact.h)
 * are made from this one list. */
#define VXK_HOST_KERNELS(X) \
  X(CONST, const)           \
  X(ROW, row)               \
  X(SUMMARISE, summarise)   \
  X(SELECT, select)         \
  X(ATTEND, attend)         \
  X(UPDATE, update)

/* kv_dtype values */
enum { VXK_F32 = 0, VXK_F16 = 1, VXK_BF16 = 2 };

/* The fields of vxk_ctx, in order: X(C type, name, tag, I32 or PTR). The struct below and
 * the generated side's view of it (cg_host.c, which checks every offset against offsetof
 * when it compiles) both come from this one list. */
#define VXK_CTX_FIELDS(X)                                                                      \
  X(int32_t, D, D, I32)                                                                        \
  X(int32_t, G, G, I32)                                                                        \
  X(int32_t, P, P, I32)                                                                        \
  X(int32_t, layer, LAYER, I32)                                                                \
  X(int32_t, len, LEN, I32)                 /* tokens in the row, the new ones included */     \
  X(int32_t, npages, NPAGES, I32)           /* pages in the row: ceil(len / P) */              \
  X(int32_t, prefill_len, PREFILL_LEN, I32) /* tokens the row had when prefill ended */        \
  X(int32_t, kv_heads, KV_HEADS, I32)                                                          \
  X(int32_t, head, HEAD, I32)                                                                  \
  X(int32_t, kv_dtype, KV_DTYPE, I32)                                                          \
  X(int32_t, page_lo, PAGE_LO, I32)   /* summarise: pages [page_lo, page_hi) */                \
  X(int32_t, page_hi, PAGE_HI, I32)                                                            \
  X(int32_t, per_head, PER_HEAD, I32) /* attend: selected is [G][npages*P], else [npages*P] */ \
  X(int32_t, token_lo, TOKEN_LO, I32) /* summarise: token fields only of tokens >= token_lo */ \
  X(const int32_t *, page_ids, PAGE_IDS, PTR) /* the row's page table, npages entries */       \
  X(const void *, k, K, PTR)                  /* this layer's key pool */                      \
  X(const void *, v, V, PTR)                  /* this layer's value pool */                    \
  X(const float *, q, Q, PTR)                 /* [G][D], this KV head's query heads */         \
  X(const double *, params, PARAMS, PTR)      /* param values in manifest order */             \
  X(void *const *, tensors, TENSORS, PTR)     /* per VIR tensor id (above); NULL for inputs */ \
  X(const uint8_t *, kept, KEPT, PTR)         /* [npages*P]: 1 where the token is always kept */ \
  X(const uint8_t *, selected, SELECTED, PTR) /* attend: the selection, 1 = attend to it */    \
  X(const float *, prob, PROB, PTR)           /* update: [G][npages*P] this step's weights */  \
  X(float *, out, OUT, PTR)                   /* attend: [G][D] */                             \
  X(float *, lse, LSE, PTR)                   /* attend: [G], natural-log sum of exp(logits) */

typedef struct vxk_ctx {
#define VXK_CTX_MEMBER(type, name, tag, kind) type name;
  VXK_CTX_FIELDS(VXK_CTX_MEMBER)
#undef VXK_CTX_MEMBER
} vxk_ctx;

typedef void (*vxk_kernel)(vxk_ctx *ctx);

#endif
