/* vxk_gpu.h - the ABI between the GPU kernels vxc writes as PTX (compiler/cg_nvptx.c) and
 * the CUDA executor of libvxrt that launches them. Shared by both sides and nothing else;
 * plain C, fixed-width, no CUDA header.
 *
 * Every GPU kernel takes one by-value parameter, vxk_gpu_args: VXK_GPU_NARGS 64-bit slots
 * indexed by the VXK_GPU_ARGS table below (addresses are CUdeviceptr values, counts are
 * plain integers). One layout for every kernel kind keeps the launcher to one function and
 * makes the compiler's side a GEP into an i64 array; a kernel ignores the slots it does not
 * read. Everything that changes from step to step (lengths, page tables, selections) is in
 * device memory the slots point to, never in a slot, so a captured CUDA graph replays with
 * the current values.
 *
 * Words: a slot is a batch row (one request); a row is (slot, KV head), numbered
 * slot * kv_heads + head; G query heads share a row. Logical page i of a slot is physical
 * page PAGE_TABLE[slot * MAX_ROW_PAGES + i]; the (page, head) block of K is P x D elements,
 * token-major, at K_POOL + ((page * kv_heads + head) * P * D) * elem_size (runtime/vxk.h).
 * Paged fields use the same block rule with their own block size (vxk.h). */
#ifndef VX_VXK_GPU_H
#define VX_VXK_GPU_H

#include <stdint.h>

enum { VXK_GPU_ABI_VERSION = 1 };

/* slot name, what it holds */
#define VXK_GPU_ARGS(X)                                                                        \
  X(K_POOL, "this layer's K pool (kv dtype)")                                                \
  X(V_POOL, "this layer's V pool")                                                           \
  X(PAGE_TABLE, "int32 [nslots][MAX_ROW_PAGES]: physical page of each logical page")          \
  X(LENGTHS, "int32 [nslots]: tokens in the slot's row, this step's new token included")      \
  X(PREFILL_LENGTHS, "int32 [nslots]: tokens the row had when its prefill ended")             \
  X(NSLOTS, "value: slots in this launch")                                                   \
  X(KV_HEADS, "value: KV heads per layer")                                                    \
  X(MAX_ROW_PAGES, "value: row stride of PAGE_TABLE")                                         \
  X(Q, "[nslots][kv_heads][G][D] in Q_DTYPE: this step's queries")                            \
  X(Q_DTYPE, "value: VXK_GPU_F32 or VXK_GPU_BF16")                                            \
  X(OUT, "[nslots][kv_heads][G][D] in OUT_DTYPE: attention output")                          \
  X(OUT_DTYPE, "value: VXK_GPU_F32 or VXK_GPU_BF16")                                          \
  X(LSE, "f32 [nslots][kv_heads][G]: natural-log sum of exp of the logits; 0 = not wanted")   \
  X(NEW_K, "[nslots][kv_heads][D] in NEW_DTYPE: append's new key per row")                   \
  X(NEW_V, "[nslots][kv_heads][D] in NEW_DTYPE: append's new value per row")                 \
  X(NEW_DTYPE, "value: VXK_GPU_F32 or VXK_GPU_BF16")                                          \
  X(FIELDS, "u64 [ntensors]: device address of each manifest field for this layer, or 0")    \
  X(SCALARS, "f32 []: param values in manifest order, then vxk_scalars' outputs")             \
  X(SEL_N, "int32 [rows]: entries in each row's selection; 0 address = every page (dense)")  \
  X(SEL_IDX, "int32 [rows][SEL_CAP]: selected logical pages, ascending")                     \
  X(SEL_MASK, "u32 [rows][SEL_CAP]: tokens of each selected page (bit t = token t)")          \
  X(SEL_CAP, "value: entries a row's selection can hold")                                     \
  X(KEYS, "u32 scratch [rows][P + 1][MAX_ROW_PAGES]: select's keys per unit, where() masks")  \
  X(PARTIALS, "f32 scratch [rows][NCHUNKS][G][D + 2]: attend's split-KV partials")           \
  X(COUNTERS, "u32 [2][rows]: zero before the first launch; every kernel leaves them zero")  \
  X(NCHUNKS, "value: attend's splits per row (grid.y)")                                       \
  X(LAYER, "value: the layer index")                                                          \
  X(FIRST_TOKEN, "summarise: page fields of pages holding tokens >= this are recomputed")

typedef enum vxk_gpu_arg {
#define VXK_GPU_ARG_ENUM(name, doc) VXK_GPU_##name,
  VXK_GPU_ARGS(VXK_GPU_ARG_ENUM)
#undef VXK_GPU_ARG_ENUM
  VXK_GPU_NARGS
} vxk_gpu_arg;

typedef struct vxk_gpu_args {
  uint64_t slot[VXK_GPU_NARGS];
} vxk_gpu_args;

/* Element types of Q, OUT, NEW_K/NEW_V: vxrt_dtype's numbering. */
enum { VXK_GPU_F32 = 0, VXK_GPU_F16 = 1, VXK_GPU_BF16 = 2 };

/* Kernel kinds a PTX module may export, entry "vxg_<kind>__<shape>", e.g.
 * "vxg_attend__d128g4p16_bf16" (shape: D, G, P, kv dtype). Launch shapes:
 *   append:    grid (rows), block 128. Writes NEW_K/NEW_V at position LENGTHS[slot] - 1 (the
 *              page is already in PAGE_TABLE), then recomputes the page fields of that page
 *              and the token fields of that token.
 *   summarise: grid (MAX_ROW_PAGES, rows), block 128. Page fields of every page holding a
 *              token in [FIRST_TOKEN, LENGTHS[slot]), token fields of those tokens.
 *   select:    grid (rows, S), block VXK_GPU_SELECT_THREADS: S slices of the row's pages; the
 *              last slice to finish (the row's second counter) ranks. Scores, keeps, top-k; writes
 *              SEL_N, SEL_IDX, SEL_MASK.
 *   attend:    grid (rows, NCHUNKS), block VXK_GPU_ATTEND_THREADS. Split-KV attention
 *              over the selection (or every page when SEL_N is 0); the last CTA of a row
 *              merges the partials in chunk order and writes OUT and LSE. */
#define VXK_GPU_KERNELS(X) X(append) X(summarise) X(select) X(attend)

enum { VXK_GPU_ATTEND_THREADS = 128, VXK_GPU_SELECT_THREADS = 512, VXK_GPU_SMALL_THREADS = 128 };

#endif
