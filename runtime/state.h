/* state.h - a policy's state beside a cache (vxrt_state), shared by the files that run
 * policies: run.c (state creation, per-row calls), batch.c (batched calls) and gpu.c (the
 * CUDA executor: device-side fields, kernel launches). Internal to libvxrt. */
#ifndef VX_STATE_H
#define VX_STATE_H

#include "exec_manifest.h"
#include "vxk_gpu.h"
#include "vxrt_internal.h"

/* GPU kernel kinds, in vxk_gpu.h's order. */
typedef enum vxrt_gpu_kind {
#define VXRT_GPU_KIND_ENUM(kind) VXRT_GPU_##kind,
  VXK_GPU_KERNELS(VXRT_GPU_KIND_ENUM)
#undef VXRT_GPU_KIND_ENUM
  VXRT_GPU_NKINDS
} vxrt_gpu_kind;

/* CUDA only: the policy's state in device memory (gpu.c). */
typedef struct vxrt_gpu {
  vxcu_function fn[VXRT_GPU_NKINDS]; /* NULL where the policy has no such kernel */
  char shape[64];                    /* "d128g4p16_bf16" */
  int sms;                           /* streaming multiprocessors */
  int attend_slots;                  /* attend CTAs resident at once (SMs x occupancy): the
                                        split-KV plan fills one wave of them */
  int select_slots;                  /* the same for select: its slices per row fill one wave */
  uint64_t *pools;                   /* [field * layers + layer]: paged fields */
  uint64_t *consts;                  /* [field]: uploaded consts */
  uint64_t fields;                   /* u64 [layers][nfields]: the FIELDS tables */
  uint64_t scalars;                  /* f32 [nparams + nscalars] */
  vxrt_batch *one;                   /* the batch of one behind the per-row calls */
  uint64_t q, out, lse;              /* device scratch of the per-row calls: one row's */
} vxrt_gpu;

struct vxrt_state {
  vxrt_policy *pol;
  vxrt_device *dev;
  vxrt_cache *cache;
  vxrt_cache_info info;
  int G;
  exec_desc desc;
  exec_state *ex;      /* CPU: the executor; CUDA: a host-side one for consts and scalars */
  int32_t *pages;      /* one row's page table, refreshed per call */
  int selected_row, selected_layer, selected_len; /* what the last vxrt_select was for */
  int64_t *prefilled;  /* [row][layer]: prefill length, -1 before vxrt_prefill ... */
  uint32_t *prefill_gen; /* ... of the row opened this many times (a reopened row: -1) */
  vxrt_gpu *gpu;       /* CUDA only */
  int batches;         /* live batches made on this state (the per-row one included) */
  vxrt_state *dense;   /* vxrt_state_set_dense: the dense partner (NULL: none) ... */
  uint8_t *dense_mask; /* ... and [layers], 1 where it replaces select and attend */
  int dense_users;     /* states whose dense partner this one is */
};

/* run.c: whether `layer` of st attends through its dense partner (vxrt_state_set_dense). */
int vxrt_state_dense_layer(const vxrt_state *st, int layer);

/* run.c: the prefill length of (row, layer) of the row as now opened; -1 if not prefilled.
 * The setter records one. */
int64_t vxrt_state_prefill(const vxrt_state *st, int row, int layer);
void vxrt_state_set_prefill(vxrt_state *st, int row, int layer, int64_t len);

/* gpu.c: the device-side state of a CUDA state (st->ex made, st->gpu NULL on entry), and
 * its release. */
vxrt_status vxrt_gpu_create(vxrt_state *st);
void vxrt_gpu_free(vxrt_state *st);

/* One launch of a GPU kernel of the state's policy for a batch: `args` is sent by value. */
vxrt_status vxrt_gpu_launch(vxrt_state *st, vxrt_gpu_kind kind, unsigned gx, unsigned gy,
                            unsigned block, const vxk_gpu_args *args, vxcu_stream s);

/* Split-KV chunks per row for attend (documented in docs/runtime.md, "Batched decode"). */
int vxrt_attend_chunks(int rows, int max_pages, int slots);
int vxrt_select_slices(int rows, int max_pages, int slots);

/* batch.c, for the per-row calls on CUDA (run.c): makes `row` the only slot of a batch of
 * one at the given length and prefill length (no checks across layers), queues the upload
 * on s, and fills the launch arguments common to every kernel for `layer`. */
vxrt_status vxrt_batch_stage_row(vxrt_batch *b, int row, int64_t len, int64_t prefill,
                                 vxrt_stream *s);
void vxrt_batch_args(const vxrt_batch *b, int layer, vxk_gpu_args *a);
/* The split-KV chunk count for the batch's current rows and lengths. */
int vxrt_batch_chunks(const vxrt_batch *b);

#endif
