/* exec.h - the CPU backend's executor: runs a compiled policy's host kernels (runtime/vxk.h)
 * over a paged KV cache, and does the policy-independent part of a decode step in C: the
 * always-kept ranges, top-k and threshold selection, and the attention weights an update
 * reads. It owns the policy's state beside the cache (field pools, row state, consts) and
 * knows nothing of artifacts or the public API: libvxrt fills an exec_policy from a
 * manifest, tests may fill one from the compiler directly. Never prints or exits. */
#ifndef VX_EXEC_H
#define VX_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "vxk.h"

enum { EXEC_MAX_RANK = 8 };

typedef enum exec_tensor_kind {
  EXEC_INPUT, EXEC_CONST, EXEC_ROW, EXEC_PAGE, EXEC_TOKEN, EXEC_STEP
} exec_tensor_kind;

/* Storage dtypes: vxk.h's VXK_DTYPES (EXEC_F32, EXEC_F16, EXEC_BF16, EXEC_FP8, EXEC_INT8,
 * EXEC_U32). */
typedef enum exec_dtype {
#define EXEC_DTYPE(tag, name, bytes) EXEC_##tag,
  VXK_DTYPES(EXEC_DTYPE)
#undef EXEC_DTYPE
  EXEC_DTYPE_COUNT
} exec_dtype;

typedef struct exec_tensor {
  const char *name;
  exec_tensor_kind kind;
  exec_dtype dtype;
  int rank;
  const char *extents[EXEC_MAX_RANK]; /* "D", "npages", "L", "P/16", ... */
  const char *init;     /* consts: "gaussian" or "load", else NULL */
  const char *init_arg; /* gaussian: the seed param's name or a literal; load: the file */
} exec_tensor;

typedef enum exec_keep_kind { EXEC_KEEP_FIRST, EXEC_KEEP_LAST, EXEC_KEEP_GENERATED } exec_keep_kind;
typedef enum exec_unit { EXEC_UNIT_NONE, EXEC_UNIT_TOKENS, EXEC_UNIT_PAGES } exec_unit;

typedef struct exec_keep {
  exec_keep_kind kind;
  exec_unit unit;
  int at_prefill;
} exec_keep;

typedef enum exec_sel_kind { EXEC_SEL_TOP, EXEC_SEL_WHERE, EXEC_SEL_ALL } exec_sel_kind;

typedef struct exec_selection {
  exec_sel_kind kind;
  int tensor;     /* TOP: the score; WHERE: the 0/1 condition; ALL: -1 */
  exec_unit unit; /* TOP: the budget's unit */
} exec_selection;

typedef struct exec_kernels {
  vxk_kernel kconst, row, summarise, select, attend, update; /* NULL when absent */
  void (*scalars)(vxk_ctx *ctx, double *out);
  int (*require)(vxk_ctx *ctx);
} exec_kernels;

typedef struct exec_policy {
  int nparams;
  const char *const *param_names;
  const double *param_values; /* after overrides */
  int ntensors;
  const exec_tensor *tensors; /* by VIR tensor id */
  int nkeeps;
  const exec_keep *keeps;
  int nselections;
  const exec_selection *selections;
  int per_head;       /* the selection keeps the head axis */
  int token_granular; /* the selection picks tokens, not pages */
  int nrequires;
  const char *const *require_texts; /* each require as written, or NULL */
  exec_kernels k;
  const char *base_dir; /* where load("file") paths are resolved; NULL = cwd */
} exec_policy;

typedef struct exec_shape {
  int layers, kv_heads, D, G, P;
  int max_pages;    /* physical pages in each layer's pool */
  int max_rows;     /* rows (requests) with state at once */
  int max_row_pages;/* pages one row may hold */
} exec_shape;

/* One (row, layer) of the KV cache as the executor sees it. */
typedef struct exec_kv {
  const void *k, *v;        /* the layer's pools: [page][kv_head][P][D] */
  int kv_dtype;             /* VXK_F32, VXK_F16, VXK_BF16 */
  const int32_t *page_ids;  /* the row's page table */
  int len;                  /* tokens in the row */
  int prefill_len;          /* tokens when prefill ended (= len during prefill) */
} exec_kv;

typedef struct exec_state exec_state;

/* Validates the policy against the shape (requires, extents), allocates its state and makes
 * its consts. On failure returns NULL and writes a message to err (errlen bytes). */
exec_state *exec_create(const exec_policy *pol, const exec_shape *shape, char *err, size_t errlen);
void exec_destroy(exec_state *st);

/* Forgets row's state (its pages' fields are rewritten when the pages are reused). */
void exec_row_reset(exec_state *st, int row);

/* After a prefill wrote the row's first kv->len tokens of one layer: row state, then the
 * fields of every page. */
int exec_prefill(exec_state *st, int row, int layer, const exec_kv *kv, char *err, size_t errlen);

/* After tokens [first, kv->len) were appended to one layer: the page fields of their pages
 * and the token fields of those tokens (older tokens' token fields are state to keep). */
int exec_append(exec_state *st, int row, int layer, const exec_kv *kv, int first, char *err, size_t errlen);

/* The selection of one decode step of one layer, for all KV heads: q is [kv_heads][G][D].
 * When selected is not NULL it receives the selection per query head:
 * [kv_heads][G][max_row_pages * P], 1 = attended. It stays for exec_attend. */
int exec_select(exec_state *st, int row, int layer, const exec_kv *kv, const float *q, uint8_t *selected,
                char *err, size_t errlen);
/* Attention over the last selection of this row and layer, then the policy's updates:
 * out is [kv_heads][G][D], lse [kv_heads][G]. */
int exec_attend(exec_state *st, int row, int layer, const exec_kv *kv, const float *q, float *out, float *lse,
                char *err, size_t errlen);
/* exec_select then exec_attend. */
int exec_step(exec_state *st, int row, int layer, const exec_kv *kv, const float *q, float *out,
              float *lse, uint8_t *selected, char *err, size_t errlen);

/* The f32 value of element idx (row-major over its extents, page axis by logical page) of
 * a tensor, for tests; returns 0 when it cannot be read. */
int exec_read_tensor(exec_state *st, int row, int layer, int head, const exec_kv *kv, int tensor,
                     const int *idx, float *out);

/* What the GPU executor (gpu.c) takes from a host-side state made for its consts, requires
 * and scalars. Whether a tensor is paged (first axis npages: stored per page like the KV
 * cache), and the elements of one page's block (paged) or of the whole tensor (a const, or
 * one (row, layer, head) copy of row state) for D, G, P of the state's shape; -1 if its
 * extents cannot be evaluated. */
long exec_tensor_block(const exec_state *st, int tensor, int *paged);
/* ---- planning (exec_plan.c): shared by the executors, touching no state ---- */

/* Bytes per element of a storage dtype. */
size_t exec_dtype_bytes(exec_dtype d);
void exec_set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Whether t is stored per page like the KV cache (its first axis is npages). */
int exec_is_paged(const exec_tensor *t);
/* Elements of t with npages pages; for a paged tensor, one page's block; -1 if an extent
 * cannot be evaluated. */
long exec_tensor_elems(const exec_policy *pol, const exec_shape *sh, const exec_tensor *t, int npages);
/* Whether every extent of t is a positive integer; else a message naming the axis, its text,
 * its value and the params it reads. */
int exec_extents_ok(const exec_policy *pol, const exec_shape *sh, const exec_tensor *t, int npages, char *err,
                    size_t errlen);
/* A const's data (malloc'd), or NULL with the reason. */
void *exec_make_const(const exec_policy *pol, const exec_shape *sh, int id, char *err, size_t errlen);
/* Element i of a tensor of dtype d, as f32, and back (with the cache's rounding). */
float exec_load_f32(const void *base, exec_dtype d, size_t i);
void exec_store_f32(void *base, exec_dtype d, size_t i, float x);
/* A const's host data, as exec_create made it (NULL for other tensors). */
const void *exec_const_data(const exec_state *st, int tensor);
/* Runs vxk_scalars once with the shape and params alone (they are load-time values) into
 * out[0..n), n = keeps with a count + top() selections; returns n. */
int exec_load_scalars(exec_state *st, double *out);

/* Evaluates an extent ("P/16", "L", "npages") for a row of npages pages; -1 if unknown. */
long exec_extent(const exec_policy *pol, const exec_shape *shape, const char *text, int npages);

#endif
