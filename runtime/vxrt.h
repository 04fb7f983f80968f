/* vxrt.h - the public C API of libvxrt, the vx runtime.
 *
 * Sits between a serving engine (vx-serve, or anyone's engine through the C ABI) and the
 * compiled policies that vxc writes. It opens devices (CPU, CUDA through a dlopen'ed
 * driver), loads and validates compiled-policy artifacts, owns the paged KV cache, and runs
 * policies over it: per row (prefill, summarise, select, attend) and batched (a batch of
 * rows decoded together per layer on a stream, capturable in a CUDA graph), on the CPU and
 * on CUDA GPUs with the kernels the artifact carries.
 *
 * Rules every function here follows: it returns a vxrt_status (VXRT_OK = 0) and, on failure,
 * leaves a message for vxrt_last_error() in the calling thread; it never prints and never
 * exits; every handle it creates has an explicit free/close. Full reference: docs/runtime.md.
 */
#ifndef VXRT_H
#define VXRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define VXRT_API __attribute__((visibility("default")))
#else
#define VXRT_API
#endif

/* The artifact format version this runtime reads (see docs/runtime.md, "Artifact format"). */
#define VXRT_ARTIFACT_FORMAT 1

/* ---------------------------------------------------------------- status and errors */

typedef enum vxrt_status {
  VXRT_OK = 0,
  VXRT_ERR_INVALID_ARG,   /* a NULL pointer, a bad count, an index or row out of range */
  VXRT_ERR_NO_DEVICE,     /* no driver, or no device with that ordinal */
  VXRT_ERR_DEVICE,        /* the device driver reported an error */
  VXRT_ERR_OUT_OF_MEMORY, /* host or device allocation failed */
  VXRT_ERR_IO,            /* a file could not be read */
  VXRT_ERR_FORMAT,        /* artifact malformed: truncated, bad magic, bad manifest, bounds */
  VXRT_ERR_VERSION,       /* artifact format version this runtime does not read */
  VXRT_ERR_CORRUPT,       /* artifact checksum mismatch */
  VXRT_ERR_TARGET,        /* artifact has no code for this device */
  VXRT_ERR_LOAD,          /* a code section failed to load, or lacks a kernel entry */
  VXRT_ERR_PARAM,         /* bad parameter override: unknown name, wrong type, duplicate */
  VXRT_ERR_POOL_FULL,     /* the KV page pool (or a row's page table) has no room */
  VXRT_ERR_STATE,         /* the object is in the wrong state: row not open, device busy */
  VXRT_ERR_UNSUPPORTED    /* a valid request this build does not support */
} vxrt_status;

/* The message of the last failed call on this thread ("" if none). Valid until the next
 * failing call on the same thread. Successful calls leave it alone. */
VXRT_API const char *vxrt_last_error(void);

/* A short constant name for a status ("VXRT_ERR_FORMAT"); never NULL. */
VXRT_API const char *vxrt_status_name(vxrt_status st);

/* ---------------------------------------------------------------- devices */

typedef struct vxrt_device vxrt_device;

typedef enum vxrt_device_kind { VXRT_CPU = 0, VXRT_CUDA = 1 } vxrt_device_kind;

typedef struct vxrt_device_info {
  vxrt_device_kind kind;
  int ordinal;
  char name[128];       /* "cpu (x86_64)" or the GPU's name */
  char target[32];      /* code target it runs: "x86_64-linux", "sm_90" */
  int cc_major;         /* CUDA compute capability; 0 on the CPU */
  int cc_minor;
  int driver_version;   /* CUDA driver version (13000 = 13.0); 0 on the CPU */
  uint64_t total_memory;/* device memory in bytes; 0 on the CPU */
} vxrt_device_info;

/* Opens a device. VXRT_CPU accepts ordinal 0 only. VXRT_CUDA loads libcuda.so.1 at run time
 * (never linked), initialises the driver and creates a context on device `ordinal`; without
 * a driver it fails with VXRT_ERR_NO_DEVICE and "no CUDA driver (libcuda.so.1 not found)". */
VXRT_API vxrt_status vxrt_device_open(vxrt_device_kind kind, int ordinal, vxrt_device **out);

/* Closes a device. Fails with VXRT_ERR_STATE (and closes nothing) while caches or policies
 * created on it are alive. NULL is accepted and does nothing. */
VXRT_API vxrt_status vxrt_device_close(vxrt_device *dev);

VXRT_API vxrt_status vxrt_device_get_info(const vxrt_device *dev, vxrt_device_info *out);

/* The CUcontext libvxrt created for a CUDA device (NULL on the CPU), for an engine that
 * launches its own work beside libvxrt's on the same context (its kernels, cuBLAS) and hands
 * its stream to vxrt_stream_wrap. libvxrt keeps ownership: never destroy it; push it
 * (cuCtxPushCurrent) around the engine's own driver calls, as libvxrt does around its own. */
VXRT_API vxrt_status vxrt_device_cuda_context(const vxrt_device *dev, void **ctx);

/* ---------------------------------------------------------------- compiled policies */

typedef struct vxrt_policy vxrt_policy;

typedef enum vxrt_param_type { VXRT_PARAM_I32 = 0, VXRT_PARAM_F32 = 1 } vxrt_param_type;

/* A load-time parameter override: `value` must be integral and in range for i32 params,
 * finite for f32 params. Each name at most once per load. */
typedef struct vxrt_param_override {
  const char *name;
  double value;
} vxrt_param_override;

typedef struct vxrt_policy_info {
  const char *name;        /* the policy's name in its source */
  const char *vx_version;  /* version of the vxc that compiled it */
  const char *source_hash; /* 16 hex digits: FNV-1a 64 of the source text */
  const char *target;      /* the artifact target loaded for this device */
  int format;              /* artifact format version */
  int nparams, nfields, nkernels;
} vxrt_policy_info;

typedef struct vxrt_param_info {
  const char *name;
  vxrt_param_type type;
  const char *unit;        /* "tokens", "pages" or "" */
  double default_value;    /* as written in the source */
  double value;            /* after overrides */
} vxrt_param_info;

typedef enum vxrt_field_stage {
  VXRT_STAGE_PAGE = 0, VXRT_STAGE_TOKEN, VXRT_STAGE_ROW, VXRT_STAGE_CONST, VXRT_STAGE_STEP,
  VXRT_STAGE_INPUT /* q, k, v and the other inputs, listed so field indices match the kernels */
} vxrt_field_stage;

typedef struct vxrt_field_info {
  const char *name;
  vxrt_field_stage stage;
  const char *dtype;          /* "f32", "f16", "bf16", "fp8" (e4m3), "int8", "u32" */
  int naxes;
  const char *const *axes;    /* naxes extent strings ("D", "L", "8") */
} vxrt_field_info;

typedef enum vxrt_kernel_kind {
  VXRT_KERNEL_APPEND = 0, VXRT_KERNEL_SUMMARISE, VXRT_KERNEL_ROW, VXRT_KERNEL_SELECT,
  VXRT_KERNEL_ATTEND, VXRT_KERNEL_UPDATE, VXRT_KERNEL_CONST, VXRT_KERNEL_SCALARS,
  VXRT_KERNEL_REQUIRE
} vxrt_kernel_kind;

typedef struct vxrt_kernel_info {
  const char *name;
  vxrt_kernel_kind kind;
  const char *entry;   /* symbol name in the host code section */
  void *handle;        /* the host function's address (on CUDA devices too: the manifest's
                          kernels are host code; GPU kernels are resolved per cache shape) */
} vxrt_kernel_info;

/* Loads a compiled policy from memory (the bytes are copied; the caller keeps ownership).
 * Validates the whole artifact (magic, version, manifest, bounds, checksums), picks the code
 * sections for `dev` and loads them, resolves every kernel's entry, and applies the `novr`
 * overrides (ovr may be NULL when novr is 0). The CPU loads the host-so for this machine. A
 * CUDA device loads the PTX for its sm (or the newest older one; compiled by the driver, or
 * taken from the compiled-kernel cache, docs/runtime.md section 8) and also the host-so,
 * whose const, scalars and require kernels run on the host. */
VXRT_API vxrt_status vxrt_policy_load(vxrt_device *dev, const void *bytes, size_t len,
                                      const vxrt_param_override *ovr, int novr,
                                      vxrt_policy **out);
VXRT_API vxrt_status vxrt_policy_load_file(vxrt_device *dev, const char *path,
                                           const vxrt_param_override *ovr, int novr,
                                           vxrt_policy **out);
/* NULL is accepted and does nothing. */
VXRT_API vxrt_status vxrt_policy_free(vxrt_policy *pol);

/* Getters. Strings and arrays they return live as long as the policy. */
VXRT_API vxrt_status vxrt_policy_get_info(const vxrt_policy *pol, vxrt_policy_info *out);
VXRT_API vxrt_status vxrt_policy_get_param(const vxrt_policy *pol, int index,
                                           vxrt_param_info *out);
/* Index of the parameter called `name`; VXRT_ERR_INVALID_ARG if there is none. */
VXRT_API vxrt_status vxrt_policy_find_param(const vxrt_policy *pol, const char *name,
                                            int *index);
VXRT_API vxrt_status vxrt_policy_get_field(const vxrt_policy *pol, int index,
                                           vxrt_field_info *out);
VXRT_API vxrt_status vxrt_policy_get_kernel(const vxrt_policy *pol, int index,
                                            vxrt_kernel_info *out);

/* ---------------------------------------------------------------- the paged KV cache */

typedef struct vxrt_cache vxrt_cache;

typedef enum vxrt_dtype {
  VXRT_F32 = 0,
  VXRT_F16 = 1,     /* IEEE binary16, round to nearest even, overflow to inf */
  VXRT_BF16 = 2,    /* bfloat16, round to nearest even */
  VXRT_FP8E4M3 = 3  /* OCP E4M3 (no inf; max 448), round to nearest even, saturating */
} vxrt_dtype;

typedef struct vxrt_cache_desc {
  int layers;        /* transformer layers, each with its own K and V pools */
  int kv_heads;      /* KV heads per layer */
  int head_dim;      /* D */
  int page_size;     /* P: tokens per page */
  vxrt_dtype kv_dtype;
  int max_pages;     /* pages in the pool; a page holds P tokens of every head, every layer */
  int max_rows;      /* rows (requests) open at once */
  int max_row_pages; /* page-table capacity of one row; 0 means max_pages */
} vxrt_cache_desc;

typedef struct vxrt_cache_info {
  vxrt_cache_desc desc;     /* as created (max_row_pages resolved) */
  int free_pages;           /* pages not owned by any row */
  int open_rows;
  size_t elem_bytes;        /* bytes of one K or V element in kv_dtype */
  size_t block_bytes;       /* one (page, KV head) block of K (or of V): P * D elements */
  size_t pool_bytes;        /* one layer's K pool (or V pool): max_pages * kv_heads blocks */
} vxrt_cache_info;

/* One layer's pools, for kernels: the (page p, head h) block of K starts at
 * k + (p * kv_heads + h) * block_bytes and holds P x D elements, token-major ([t][c]).
 * Host pointers on the CPU; device addresses (CUdeviceptr values) on CUDA. */
typedef struct vxrt_kv_pool {
  void *k;
  void *v;
} vxrt_kv_pool;

/* Creates a cache and preallocates everything it will ever use (pools, page tables, free
 * list, staging), so that appends never allocate. Unused slots of a row's pages read as 0. */
VXRT_API vxrt_status vxrt_cache_create(vxrt_device *dev, const vxrt_cache_desc *desc,
                                       vxrt_cache **out);
/* NULL is accepted and does nothing. Open rows are released with the cache. */
VXRT_API vxrt_status vxrt_cache_free(vxrt_cache *cache);
VXRT_API vxrt_status vxrt_cache_get_info(const vxrt_cache *cache, vxrt_cache_info *out);
VXRT_API vxrt_status vxrt_cache_get_pool(const vxrt_cache *cache, int layer,
                                         vxrt_kv_pool *out);

/* Rows: one request's tokens in every layer and KV head (a policy's "row" is a (row, KV
 * head) pair of this cache). All layers of a row share one page table; each layer has its
 * own length, so layers may be appended one after another. */
VXRT_API vxrt_status vxrt_row_open(vxrt_cache *cache, int *row);
/* Returns the row's pages to the pool; the row id may be handed out again. */
VXRT_API vxrt_status vxrt_row_close(vxrt_cache *cache, int row);

/* Appends `ntokens` tokens to `layer` of `row`. k and v are f32, laid out
 * [ntokens][kv_heads][head_dim] (each token's heads together, as a model produces them),
 * converted to the cache dtype. Pages are taken from the pool as needed; when the pool or
 * the row's page table cannot hold them the call fails with VXRT_ERR_POOL_FULL and changes
 * nothing. ntokens = 0 is a no-op. */
VXRT_API vxrt_status vxrt_append(vxrt_cache *cache, int row, int layer, const float *k,
                                 const float *v, int ntokens);
VXRT_API vxrt_status vxrt_row_length(const vxrt_cache *cache, int row, int layer,
                                     int64_t *len);
/* Copies the row's page table (page ids in token order) into pages[0..cap); *npages gets the
 * row's page count. Fails with VXRT_ERR_INVALID_ARG if cap is too small (then *npages still
 * tells the size needed). pages may be NULL when cap is 0. */
VXRT_API vxrt_status vxrt_row_pages(const vxrt_cache *cache, int row, int32_t *pages,
                                    int cap, int *npages);
/* Reads tokens [start, start + ntokens) of `layer` of `row` back as f32, in the layout
 * vxrt_append takes. Either k or v may be NULL to skip it. */
VXRT_API vxrt_status vxrt_read_kv(const vxrt_cache *cache, int row, int layer, int64_t start,
                                  int ntokens, float *k, float *v);

/* ---------------------------------------------------------------- running a policy */

/* A policy's state beside one cache: its page and token fields (pools shaped like the KV
 * pools), row state, consts and scratch, all allocated here, on the cache's device. query_heads
 * is G, the query heads that share a KV head. The policy's `require`s are checked against the
 * cache's shape (VXRT_ERR_PARAM with the reason). On CUDA the consts and load-time scalars are
 * computed on the host and uploaded, and the artifact must have GPU kernels for the cache's
 * shape (D, G, P, kv dtype): VXRT_ERR_UNSUPPORTED names the shape and lists the artifact's.
 * The policy and the cache must outlive the state. */
typedef struct vxrt_state vxrt_state;
VXRT_API vxrt_status vxrt_state_create(vxrt_policy *pol, vxrt_cache *cache, int query_heads,
                                       vxrt_state **out);
/* NULL is accepted and does nothing. Fails with VXRT_ERR_STATE (and frees nothing) while
 * batches made on the state are alive. */
VXRT_API vxrt_status vxrt_state_free(vxrt_state *st);

/* Dense attention beside a policy, for engines that keep some layers dense and measure a
 * policy against dense attention on its own rows. `dense` is a state on the same cache with
 * the same query heads whose policy only attends to every token (`select all`; no keeps,
 * fields, rows, lets or updates; consts and logit modifiers allowed), else
 * VXRT_ERR_UNSUPPORTED. On the layers where mask[layer] is 1 (layers = the cache's layers;
 * mask NULL: none), st's select and attend, per row and batched, are dense's: every token,
 * dense's attend (its modifiers, not st's), equal to calling them on dense. Appends and
 * prefill still run st's kernels in every layer (its fields stay current, so the mask may
 * change between steps; a captured graph keeps the mask of its capture).
 * vxrt_decode_attend_dense needs a partner. dense NULL clears both. While a state names it,
 * vxrt_state_free(dense) fails with VXRT_ERR_STATE. Not between a batch's prepare and
 * commit. */
VXRT_API vxrt_status vxrt_state_set_dense(vxrt_state *st, vxrt_state *dense, const uint8_t *mask,
                                          int layers);

/* After a row's prompt was appended to `layer` (vxrt_append): computes the row state and
 * the fields of every page, and marks the end of the prompt (keep ranges `at prefill` and
 * `generated` count from here). Call it again after a row is reopened. */
VXRT_API vxrt_status vxrt_prefill(vxrt_state *st, int row, int layer);
/* After decode tokens [first_token, length) were appended to `layer`: brings the fields of
 * the pages they landed in up to date. */
VXRT_API vxrt_status vxrt_summarise(vxrt_state *st, int row, int layer, int64_t first_token);
/* Scores and selects for one decode step of `layer`: q is [kv_heads][G][D] f32. When
 * `selected` is not NULL it receives [kv_heads][G][max_row_pages * P] bytes, 1 where the
 * query head attends to the token. The selection stays for vxrt_attend. */
VXRT_API vxrt_status vxrt_select(vxrt_state *st, int row, int layer, const float *q,
                                 uint8_t *selected);
/* Attention over the last selection with the policy's logit modifiers, then its state
 * updates: out is [kv_heads][G][D], lse [kv_heads][G] (natural log).
 * On CUDA these per-row calls run as a batch of one followed by a synchronisation, with q,
 * out, lse and the selection copied through host memory: the reference and debugging path. */
VXRT_API vxrt_status vxrt_attend(vxrt_state *st, int row, int layer, const float *q,
                                 float *out, float *lse);

/* ---------------------------------------------------------------- streams and buffers */

/* An ordered queue of device work. On CUDA a CUstream (libvxrt's own, or an engine's that it
 * wraps, so the whole model shares one); on the CPU every call runs to completion before it
 * returns and a stream only keeps the code path the same. Errors of asynchronous work
 * surface at vxrt_stream_sync (VXRT_ERR_DEVICE with the driver's error). */
typedef struct vxrt_stream vxrt_stream;
VXRT_API vxrt_status vxrt_stream_create(vxrt_device *dev, vxrt_stream **out);
/* custream is a CUstream of the device's context (NULL = the legacy default stream); it is
 * not destroyed by vxrt_stream_free. The CPU accepts only NULL. */
VXRT_API vxrt_status vxrt_stream_wrap(vxrt_device *dev, void *custream, vxrt_stream **out);
VXRT_API vxrt_status vxrt_stream_sync(vxrt_stream *s);
/* NULL is accepted and does nothing. */
VXRT_API vxrt_status vxrt_stream_free(vxrt_stream *s);

/* Timing marks on a stream, for benchmarks and engines: CUDA events, or the host's monotonic
 * clock on the CPU. vxrt_event_elapsed waits for `end` and gives the milliseconds between
 * the two marks (VXRT_ERR_UNSUPPORTED on a CUDA driver older than 12.8). */
typedef struct vxrt_event vxrt_event;
VXRT_API vxrt_status vxrt_event_create(vxrt_device *dev, vxrt_event **out);
VXRT_API vxrt_status vxrt_event_record(vxrt_event *e, vxrt_stream *s);
VXRT_API vxrt_status vxrt_event_elapsed(vxrt_event *start, vxrt_event *end, float *ms);
/* NULL is accepted and does nothing. */
VXRT_API vxrt_status vxrt_event_free(vxrt_event *e);

/* A buffer in device memory as the batched calls take it: a device address (CUdeviceptr on
 * CUDA; on the CPU, a host pointer's value) and its element type (VXRT_F32 or VXRT_BF16;
 * lse is always f32). addr 0 is "none" where a buffer is optional. */
typedef struct vxrt_dbuf {
  uint64_t addr;
  vxrt_dtype dtype;
} vxrt_dbuf;

/* Device memory for tests and engines without an allocator of their own: cuMemAlloc on CUDA,
 * 64-byte aligned host memory on the CPU. Freed with vxrt_buffer_free (addr 0 does nothing);
 * a live buffer keeps its device open. Copies are synchronous with the host and ordered after
 * work already queued on blocking streams (libvxrt's own streams are blocking). */
VXRT_API vxrt_status vxrt_buffer_alloc(vxrt_device *dev, size_t bytes, uint64_t *addr);
VXRT_API vxrt_status vxrt_buffer_free(vxrt_device *dev, uint64_t addr);
VXRT_API vxrt_status vxrt_buffer_upload(vxrt_device *dev, uint64_t dst, const void *src,
                                        size_t bytes);
VXRT_API vxrt_status vxrt_buffer_download(vxrt_device *dev, void *dst, uint64_t src,
                                          size_t bytes);

/* ---------------------------------------------------------------- batched decode */

/* A batch: up to max_slots cache rows (requests) decoded together, one call per layer for
 * all of them. Everything a step needs is preallocated here (device page-table mirror,
 * lengths, selections, split-KV partials, counters, pinned staging), so the calls between
 * vxrt_batch_prepare and vxrt_batch_commit never allocate and can be captured in a CUDA
 * graph. A step of a decoder with L layers:
 *
 *   vxrt_batch_prepare(b, 1, s);                       host: pages, lengths, upload
 *   for layer in 0..L-1:
 *     vxrt_decode_append(b, layer, k, v, s);           the new token's K/V and fields
 *     vxrt_decode_select(b, layer, q, s);              scores, keeps, top-k
 *     vxrt_decode_attend(b, layer, q, out, lse, s);    attention over the selection
 *   vxrt_batch_commit(b);                              host: lengths += 1
 *
 * Layouts, with nslots rows set by vxrt_batch_set_rows: q and out [nslots][kv_heads][G][D],
 * k and v [nslots][kv_heads][D], lse f32 [nslots][kv_heads][G]. Slot i is cache_rows[i].
 * Rows of a batch must have been prefilled (vxrt_prefill) in every layer, with every layer
 * at the same length. Between prepare and commit the batch's rows belong to it: no per-row
 * append on them. On the CPU the same calls run the per-row executor for each slot, with
 * results equal to the per-row calls. The state must outlive its batches. */
typedef struct vxrt_batch vxrt_batch;
/* VXRT_ERR_OUT_OF_MEMORY names the sizes asked for. */
VXRT_API vxrt_status vxrt_batch_create(vxrt_state *st, int max_slots, vxrt_batch **out);
/* NULL is accepted and does nothing. */
VXRT_API vxrt_status vxrt_batch_free(vxrt_batch *b);
/* Host: the rows of the next steps (n <= max_slots, each open and at most once).
 * VXRT_ERR_STATE names a row that is not open. Not between prepare and commit. */
VXRT_API vxrt_status vxrt_batch_set_rows(vxrt_batch *b, const int *cache_rows, int n);
/* After the rows' prompts were appended to every layer (vxrt_append; every layer of a row at
 * one length): what vxrt_prefill does for each row and layer, for the whole batch (on CUDA
 * one summarise launch per layer, queued on s). Not between prepare and commit. */
VXRT_API vxrt_status vxrt_batch_prefill(vxrt_batch *b, vxrt_stream *s);
/* Host, once per step, before the step's launches (and outside any capture): reserves pages
 * in the cache for `ntokens` more tokens per row (all layers share a page table), writes the
 * lengths (with the new tokens) and the page-table entries that changed to pinned staging,
 * and queues their upload on s. Waits until the previous step's upload has left staging.
 * ntokens may be 0 (a step over the current tokens); vxrt_decode_append needs 1. */
VXRT_API vxrt_status vxrt_batch_prepare(vxrt_batch *b, int ntokens, vxrt_stream *s);
/* Device: writes each row's new K and V (the step's token) into the cache and updates the
 * policy's fields of that token and page. Needed for every policy, dense included. */
VXRT_API vxrt_status vxrt_decode_append(vxrt_batch *b, int layer, vxrt_dbuf k, vxrt_dbuf v,
                                        vxrt_stream *s);
/* Device: the selection of this step for `layer` (keeps, scores, top-k / where). Policies
 * that attend to everything launch nothing. Must precede vxrt_decode_attend of the layer. */
VXRT_API vxrt_status vxrt_decode_select(vxrt_batch *b, int layer, vxrt_dbuf q,
                                        vxrt_stream *s);
/* Device: attention over the selection with the policy's logit modifiers; out in f32 or
 * bf16, lse f32 (addr 0: not wanted). VXRT_ERR_STATE if the layer's select of this step
 * has not been queued. */
VXRT_API vxrt_status vxrt_decode_attend(vxrt_batch *b, int layer, vxrt_dbuf q, vxrt_dbuf out,
                                        vxrt_dbuf lse, vxrt_stream *s);
/* Device: dense attention over every token of each row of the step (the state's dense
 * partner, vxrt_state_set_dense; VXRT_ERR_STATE without one), as vxrt_decode_attend takes
 * its buffers: what a dense state gives on these rows, to measure the policy against. Needs
 * no select and leaves the layer's selection alone (on CUDA it shares the batch's split-KV
 * scratch: queue it on the stream of the batch's other calls). */
VXRT_API vxrt_status vxrt_decode_attend_dense(vxrt_batch *b, int layer, vxrt_dbuf q,
                                              vxrt_dbuf out, vxrt_dbuf lse, vxrt_stream *s);
/* Host: the step's tokens become part of the rows (lengths += ntokens in every layer). */
VXRT_API vxrt_status vxrt_batch_commit(vxrt_batch *b);
/* Debugging: the selection of one slot from the layer's last vxrt_decode_select, as
 * vxrt_select writes it ([kv_heads][G][max_row_pages * P] bytes, 1 = attended); waits for
 * the device. */
VXRT_API vxrt_status vxrt_batch_read_selection(vxrt_batch *b, int slot, uint8_t *selected);

/* ---------------------------------------------------------------- CUDA graphs */

/* One captured sequence of batched calls (typically a decode step's launches for every
 * layer), replayed with one launch. Capture the calls between vxrt_batch_prepare and
 * vxrt_batch_commit; each replay reads the lengths and page tables that the latest
 * prepare uploaded, so the step is: prepare, vxrt_graph_launch, commit. Kernel launch
 * shapes (the split-KV chunk count) are fixed at capture: capture again when the batch's
 * rows change. CUDA only (VXRT_ERR_UNSUPPORTED on the CPU). */
typedef struct vxrt_graph vxrt_graph;
VXRT_API vxrt_status vxrt_graph_begin(vxrt_stream *s);
VXRT_API vxrt_status vxrt_graph_end(vxrt_stream *s, vxrt_graph **out);
VXRT_API vxrt_status vxrt_graph_launch(vxrt_graph *g, vxrt_stream *s);
/* NULL is accepted and does nothing. */
VXRT_API vxrt_status vxrt_graph_free(vxrt_graph *g);

/* ---------------------------------------------------------------- element types */

/* Bytes per element of a KV dtype, its name ("bf16", "fp8"), or 0 / "?" for an invalid value. */
VXRT_API size_t vxrt_dtype_size(vxrt_dtype t);
VXRT_API const char *vxrt_dtype_name(vxrt_dtype t);

/* Converts n floats to/from a KV dtype with the rounding vxrt_append uses. For tests and for
 * engines that fill pools themselves. VXRT_ERR_INVALID_ARG on a bad dtype or NULL pointer. */
VXRT_API vxrt_status vxrt_convert_from_f32(vxrt_dtype t, const float *src, void *dst, size_t n);
VXRT_API vxrt_status vxrt_convert_to_f32(vxrt_dtype t, const void *src, float *dst, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* VXRT_H */
