/* attn.h - the one interface between vx-serve's engine and attention over the paged KV
 * cache: open and close rows, append a prompt's K/V, read it back for dense prefill, let the
 * policies summarise a prompt, and run one decode step of one layer for a batch of rows
 * (append, summarise, select, attend). The engine calls only these; attn_cpu.c implements
 * them over libvxrt's per-(row, layer) calls, attn_batch.c over its batched calls (one
 * append, select and attend per layer for all rows). Sits under runtime/serve/ between
 * engine.c and vxrt.h; never prints. */
#ifndef SERVE_ATTN_H
#define SERVE_ATTN_H

#include <stdint.h>

#include "model.h"

typedef struct serve_attn serve_attn;
struct vxrt_policy;

/* One row of a decode batch. */
typedef struct attn_row {
  int row;
  int sparse;  /* k >= 1: policy k - 1 (attn_add_policy; 1 is the one the backend was created
                * with) on layers not kept dense; 0: dense attention everywhere */
  int measure; /* 1 (sparse rows): also attend densely and report error and mass kept */
} attn_row;

typedef struct serve_attn_ops {
  const char *name;
  int (*row_open)(serve_attn *a, int *row);
  int (*row_close)(serve_attn *a, int row);
  /* n tokens of k, v [n][kv_heads][D] appended to `layer` of `row`. */
  int (*append)(serve_attn *a, int row, int layer, const float *k, const float *v, int n);
  /* tokens [0, n) of `layer` back as f32, same layout (for dense prefill attention). */
  int (*read)(serve_attn *a, int row, int layer, int n, float *k, float *v);
  /* The prompt is in every layer: summarise it for the policies the row will use (sparse as
   * in attn_row). */
  int (*prefill)(serve_attn *a, int row, int sparse);
  /* Bracket one decode step over all layers (a batched backend sets its rows and uploads
   * page tables in begin, advances lengths in end); NULL when not needed (the CPU). */
  int (*step_begin)(serve_attn *a, int nrows, const attn_row *rows);
  int (*step_end)(serve_attn *a);
  /* One decode step of `layer` for nrows rows: appends k, v [nrows][kv_heads][D] (one token
   * each), then attends q [nrows][heads][D] into out [nrows][heads][D] (query head h reads KV
   * head h / G). For measured rows err and mass [nrows][kv_heads] get the relative error of
   * the output against dense attention and the dense attention mass the selection kept
   * (means over the KV head's G query heads); NaN for rows not measured. */
  int (*decode)(serve_attn *a, int layer, int nrows, const attn_row *rows, const float *k,
                const float *v, const float *q, float *out, float *err, float *mass);
  void (*destroy)(serve_attn *a);
  /* The KV page pool: pages owned by rows and pages in all (NULL when not known). */
  int (*pages)(serve_attn *a, int *used, int *total);
  /* Adds another policy (the same artifact with other parameter values, say) beside the
   * cache: rows with sparse = *index use it. NULL when the backend has one policy only. */
  int (*add_policy)(serve_attn *a, struct vxrt_policy *policy, int *index);
} serve_attn_ops;

struct serve_attn {
  const serve_attn_ops *ops;
  char err[MODEL_ERR_LEN];   /* the message of the last failed call */
};

/* The cache and policies an attention backend is created with. */
typedef struct attn_config {
  int page_size;
  int kv_dtype;              /* a vxrt_dtype */
  int max_rows;              /* rows open at once */
  int max_pages;             /* pages in the pool; 0: enough for max_rows full rows */
  int max_row_tokens;        /* the model's context */
  const uint8_t *dense_layer;/* [layers]: 1 where the policy is not used */
} attn_config;

/* What both backends over libvxrt share (attn_cpu.c): the paged KV cache made from
 * attn_config, the model's attention shape, the dense layers, and the operations that only
 * touch the cache (row_open, row_close, append, read, pages). A backend's struct starts with
 * it. */
struct vxrt_device;
struct vxrt_cache;
typedef struct attn_vx {
  serve_attn base;
  struct vxrt_cache *cache;
  int layers, kvh, G, D;
  uint8_t *dense_layer;      /* [layers] */
} attn_vx;
int attn_vx_init(attn_vx *a, struct vxrt_device *dev, const model_config *mc, const attn_config *ac,
                 char *err);
void attn_vx_release(attn_vx *a);
int attn_vx_row_open(serve_attn *a, int *row);
int attn_vx_row_close(serve_attn *a, int row);
int attn_vx_append(serve_attn *a, int row, int layer, const float *k, const float *v, int n);
int attn_vx_read(serve_attn *a, int row, int layer, int n, float *k, float *v);
int attn_vx_pages(serve_attn *a, int *used, int *total);
/* Records a failed libvxrt call (a vxrt_status) in a->err; returns -1. */
int attn_vx_fail(serve_attn *a, int status, const char *what);
#define ATTN_VX(a, call, what)                                                                     \
  do {                                                                                             \
    int s_ = (int)(call);                                                                          \
    if (s_ != 0)                                                                                   \
      return attn_vx_fail((a), s_, (what));                                                        \
  } while (0)
/* One measured row: err and mass [kvh] of the policy's out, lse against dense ref, lse_ref
 * ([kvh][G][D], [kvh][G]); ref NULL when the row attended densely (error 0, mass 1). */
void attn_measure(const attn_vx *a, const float *out, const float *ref, const float *lse,
                  const float *lse_ref, float *err, float *mass);
/* A row not measured: err and mass NaN (either may be NULL). */
void attn_unmeasured(const attn_vx *a, float *err, float *mass);

/* The per-row backend: libvxrt's per-(row, layer) calls. `policy` and `dense` are vxrt_policy
 * handles loaded on `dev` (policy may be NULL: dense rows only); they must outlive the
 * backend. */
int attn_cpu_create(struct vxrt_device *dev, struct vxrt_policy *policy, struct vxrt_policy *dense,
                    const model_config *c, const attn_config *ac, serve_attn **out, char *err);

/* The batched backend: libvxrt's batched calls (vxrt_batch_*, vxrt_decode_*) with device
 * buffers, one batch per policy state and one for dense rows; the policy states run their
 * dense layers and the measurement through the dense state (vxrt_state_set_dense). Same
 * arguments and results as attn_cpu_create's. */
int attn_batch_create(struct vxrt_device *dev, struct vxrt_policy *policy,
                      struct vxrt_policy *dense, const model_config *c, const attn_config *ac,
                      serve_attn **out, char *err);

#endif
