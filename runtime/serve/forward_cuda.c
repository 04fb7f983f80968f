/* forward_cuda.c - the decode step of a Llama-architecture decoder on the GPU (forward_cuda.h):
 * bf16 weights resident on the device, cuBLAS for the matrix products, the hand-written PTX
 * of forward_cuda.ptx for the elementwise work, libvxrt's batched calls for attention.
 *
 * How it reaches the GPU, and why: vx-serve is an engine over vxrt.h like any other, so it
 * never includes libvxrt's internal driver table (runtime/cuda_api.h). It dlopens libcuda.so.1
 * itself for the dozen entry points it needs (the table below), works on the context libvxrt
 * created (vxrt_device_cuda_context, the one accessor vxrt.h gained for engines: device
 * memory and streams are per context, and libvxrt's kernels must run on the engine's stream)
 * and hands its own stream to libvxrt with vxrt_stream_wrap, so cuBLAS, these kernels and
 * the policy's kernels are one ordered stream that a CUDA graph can capture. cuBLAS is
 * dlopened too (libcublas.so.13, else .12), never linked: vx-serve builds and runs without
 * a GPU, a driver or the CUDA toolkit, and fails here with a message instead.
 *
 * Numerics: weights and the activations that enter a matrix product are bf16, products
 * accumulate in f32 (CUBLAS_COMPUTE_32F), the residual stream, norms, RoPE tables, q, k and
 * v stay f32; the output and down projections add into the residual (beta = 1). Never
 * prints, never exits; allocates only in fwdgpu_create and fwdgpu_selftest.
 */
#define _GNU_SOURCE
#include "forward_cuda.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ the driver and cuBLAS */

typedef unsigned int fg_cures;            /* CUresult */
typedef struct CUctx_st *fg_ctx;          /* CUcontext */
typedef struct CUstream_st *fg_stream;    /* CUstream */
typedef struct CUmod_st *fg_module;       /* CUmodule */
typedef struct CUfunc_st *fg_func;        /* CUfunction */
typedef struct CUevent_st *fg_event;      /* CUevent */
typedef unsigned long long fg_dptr;       /* CUdeviceptr */
typedef struct cublasContext *fg_blas;    /* cublasHandle_t */
typedef int fg_blasres;                   /* cublasStatus_t */

enum {
  FG_STREAM_NON_BLOCKING = 1,     /* CU_STREAM_NON_BLOCKING */
  FG_CTX_SCHED_BLOCKING_SYNC = 4, /* CU_CTX_SCHED_BLOCKING_SYNC */
  FG_EVENT_PACE = 1 | 2,          /* CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING */
  FG_OP_N = 0, FG_OP_T = 1,       /* cublasOperation_t */
  FG_R_32F = 0, FG_R_16BF = 14,   /* cudaDataType */
  FG_COMPUTE_32F = 68,            /* cublasComputeType_t */
  FG_GEMM_DEFAULT = -1            /* cublasGemmAlgo_t */
};

/* (field, exported symbol, required, parameters): one row per driver entry point. */
#define FG_DRIVER(X)                                                                              \
  X(cuCtxPushCurrent, "cuCtxPushCurrent_v2", 1, (fg_ctx))                                          \
  X(cuCtxPopCurrent, "cuCtxPopCurrent_v2", 1, (fg_ctx *))                                          \
  X(cuCtxSetFlags, "cuCtxSetFlags", 0, (unsigned))                                                 \
  X(cuGetErrorName, "cuGetErrorName", 1, (fg_cures, const char **))                                \
  X(cuStreamCreate, "cuStreamCreate", 1, (fg_stream *, unsigned))                                  \
  X(cuStreamDestroy, "cuStreamDestroy_v2", 1, (fg_stream))                                         \
  X(cuStreamSynchronize, "cuStreamSynchronize", 1, (fg_stream))                                    \
  X(cuMemAlloc, "cuMemAlloc_v2", 1, (fg_dptr *, size_t))                                           \
  X(cuMemFree, "cuMemFree_v2", 1, (fg_dptr))                                                       \
  X(cuMemGetInfo, "cuMemGetInfo_v2", 1, (size_t *, size_t *))                                      \
  X(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", 1, (fg_dptr, const void *, size_t, fg_stream))      \
  X(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", 1, (void *, fg_dptr, size_t, fg_stream))            \
  X(cuModuleLoadData, "cuModuleLoadData", 1, (fg_module *, const void *))                          \
  X(cuModuleUnload, "cuModuleUnload", 1, (fg_module))                                              \
  X(cuModuleGetFunction, "cuModuleGetFunction", 1, (fg_func *, fg_module, const char *))           \
  X(cuEventCreate, "cuEventCreate", 1, (fg_event *, unsigned))                                   \
  X(cuEventRecord, "cuEventRecord", 1, (fg_event, fg_stream))                                      \
  X(cuEventSynchronize, "cuEventSynchronize", 1, (fg_event))                                       \
  X(cuEventDestroy, "cuEventDestroy_v2", 1, (fg_event))                                            \
  X(cuLaunchKernel, "cuLaunchKernel", 1,                                                           \
    (fg_func, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, fg_stream,     \
     void **, void **))

/* (field, required, parameters): cuBLAS's v2 API under its exported names. */
#define FG_BLAS(X)                                                                                \
  X(cublasCreate_v2, 1, (fg_blas *))                                                               \
  X(cublasDestroy_v2, 1, (fg_blas))                                                                \
  X(cublasSetStream_v2, 1, (fg_blas, fg_stream))                                                   \
  X(cublasSetWorkspace_v2, 1, (fg_blas, void *, size_t))                                           \
  X(cublasGemmEx, 1,                                                                               \
    (fg_blas, int, int, int, int, int, const void *, const void *, int, int, const void *, int,    \
     int, const void *, void *, int, int, int, int))

/* (field, entry): the kernels of forward_cuda.ptx. */
#define FG_KERNELS(X)                                                                             \
  X(embed, "vxs_embed")                                                                            \
  X(rmsnorm, "vxs_rmsnorm")                                                                        \
  X(qkv_post, "vxs_qkv_post")                                                                      \
  X(swiglu, "vxs_swiglu")                                                                          \
  X(argmax, "vxs_argmax")                                                                          \
  X(pos_inc, "vxs_pos_inc")                                                                        \
  X(f32_to_bf16, "vxs_f32_to_bf16")                                                                \
  X(bf16_to_f32, "vxs_bf16_to_f32")                                                                \
  X(fill, "vxs_fill")

typedef struct fg_driver {
#define FG_FIELD(name, sym, req, args) fg_cures(*name) args;
  FG_DRIVER(FG_FIELD)
#undef FG_FIELD
} fg_driver;

typedef struct fg_blasapi {
#define FG_BFIELD(name, req, args) fg_blasres(*name) args;
  FG_BLAS(FG_BFIELD)
#undef FG_BFIELD
} fg_blasapi;

typedef struct fg_kernels {
#define FG_KFIELD(name, entry) fg_func name;
  FG_KERNELS(FG_KFIELD)
#undef FG_KFIELD
} fg_kernels;

/* forward_cuda_ptx.c, written by CMake from forward_cuda.ptx (NUL-terminated). */
extern const char fwdgpu_ptx[];

/* One layer's device weights: matrices bf16 [out][in] (q, k, v fused; gate and up fused),
 * norms f32. */
typedef struct fg_layer {
  fg_dptr wqkv, wo, w13, w2;
  fg_dptr attn_norm, ffn_norm, q_norm, k_norm;
} fg_layer;

enum { FG_MAX_ALLOCS = 64, FG_WORKSPACE = 32 << 20, FG_STAGING = 16 << 20 /* floats */ };

struct fwdgpu {
  vxrt_device *dev;
  const model *m;
  model_config c;
  int max_batch;
  void *libcuda, *libblas;
  char blas_name[64];
  fg_driver cu;
  fg_blasapi bl;
  fg_kernels k;
  fg_ctx ctx;
  fg_stream cs;
  vxrt_stream *vs;
  fg_blas blas;
  fg_module mod;
  fg_event pace;    /* fwdgpu_pace's mark: blocking, no timing */
  int paced;
  fg_dptr allocs[FG_MAX_ALLOCS];
  int nallocs;
  long allocations; /* host and device allocations made, for the per-step counter */
  double weight_bytes;
  fg_layer *layer;
  fg_dptr emb, cls, final_norm, rope_cos, rope_sin, workspace;
  /* activations of up to max_batch rows */
  fg_dptr tok, pos, x, xb, qkv, q, kk, vv, att, h, hb, logits;
};

static int cu_fail(fwdgpu *g, fg_cures r, const char *call, char *err) {
  const char *name = NULL;
  if (g->cu.cuGetErrorName)
    g->cu.cuGetErrorName(r, &name);
  return serve_errf(err, "%s failed: %s", call, name ? name : "unknown CUDA error");
}

#define CU(call, err)                                                                             \
  do {                                                                                             \
    fg_cures r_ = g->cu.call;                                                                      \
    if (r_)                                                                                        \
      return cu_fail(g, r_, #call, err);                                                           \
  } while (0)

static int load_driver(fwdgpu *g, char *err) {
  g->libcuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!g->libcuda)
    return serve_errf(err, "no CUDA driver (libcuda.so.1 not found)");
#define FG_SYM(name, sym, req, args)                                                              \
  *(void **)&g->cu.name = dlsym(g->libcuda, sym);                                                  \
  if (!g->cu.name && req)                                                                          \
    return serve_errf(err, "the CUDA driver lacks %s", sym);
  FG_DRIVER(FG_SYM)
#undef FG_SYM
  return 0;
}

static int load_blas(fwdgpu *g, char *err) {
  const char *env = getenv("VX_CUBLAS");
  const char *names[] = {env && *env ? env : NULL, "libcublas.so.13", "libcublas.so.12",
                         "/usr/local/cuda/lib64/libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.12"};
  for (size_t i = 0; i < sizeof names / sizeof names[0] && !g->libblas; i++)
    if (names[i] && (g->libblas = dlopen(names[i], RTLD_NOW | RTLD_LOCAL)))
      snprintf(g->blas_name, sizeof g->blas_name, "%s", names[i]);
  if (!g->libblas)
    return serve_errf(err, "cuBLAS not found (libcublas.so.13 or .12; set VX_CUBLAS=PATH or add "
                      "/usr/local/cuda/lib64 to LD_LIBRARY_PATH)");
#define FG_BSYM(name, req, args)                                                                  \
  *(void **)&g->bl.name = dlsym(g->libblas, #name);                                                \
  if (!g->bl.name && req)                                                                          \
    return serve_errf(err, "%s lacks %s", g->blas_name, #name);
  FG_BLAS(FG_BSYM)
#undef FG_BSYM
  return 0;
}

static int dalloc(fwdgpu *g, size_t bytes, fg_dptr *p, char *err) {
  *p = 0;
  if (g->nallocs == FG_MAX_ALLOCS)
    return serve_errf(err, "fwdgpu: too many device buffers");
  fg_cures r = g->cu.cuMemAlloc(p, bytes ? bytes : 16);
  if (r)
    return serve_errf(err, "out of device memory for %zu bytes of the model's buffers", bytes);
  g->allocs[g->nallocs++] = *p;
  g->allocations++;
  return 0;
}

/* Grid-stride launches: enough CTAs to fill the device a few times over. */
enum { FG_STRIDE_CTAS = 2048 };

static int launch(fwdgpu *g, fg_func f, unsigned gx, unsigned gy, unsigned bx, void **args, char *err) {
  fg_cures r = g->cu.cuLaunchKernel(f, gx, gy, 1, bx, 1, 1, 0, g->cs, args, NULL);
  return r ? cu_fail(g, r, "cuLaunchKernel", err) : 0;
}

static int to_bf16(fwdgpu *g, fg_dptr src, fg_dptr dst, uint64_t n, char *err) {
  void *a[] = {&src, &dst, &n};
  unsigned ctas = n / 256 + 1 < FG_STRIDE_CTAS ? (unsigned)(n / 256 + 1) : FG_STRIDE_CTAS;
  return launch(g, g->k.f32_to_bf16, ctas, 1, 256, a, err);
}

/* Host f32 -> device bf16 through the staging buffer (load time only). */
static int upload_bf16(fwdgpu *g, fg_dptr staging, const float *src, size_t n, fg_dptr dst, char *err) {
  for (size_t at = 0; at < n; at += FG_STAGING) {
    size_t k = n - at < FG_STAGING ? n - at : FG_STAGING;
    CU(cuMemcpyHtoDAsync(staging, src + at, k * sizeof(float), g->cs), err);
    if (to_bf16(g, staging, dst + at * 2, k, err))
      return -1;
    CU(cuStreamSynchronize(g->cs), err); /* the staging buffer is reused */
  }
  return 0;
}

/* Host f32 -> the next n floats at *at (the block of norms and RoPE tables); *dst gets it. */
static int upload_f32(fwdgpu *g, const float *src, size_t n, fg_dptr *at, fg_dptr *dst, char *err) {
  *dst = *at;
  *at += n * sizeof(float);
  CU(cuMemcpyHtoDAsync(*dst, src, n * sizeof(float), g->cs), err);
  return 0;
}

int fwdgpu_fill(fwdgpu *g, uint64_t addr, size_t n, vxrt_dtype t, float scale, uint64_t seed, char *err) {
  unsigned dt = t == VXRT_F32 ? 0 : t == VXRT_F16 ? 1 : t == VXRT_BF16 ? 2 : 3;
  if (dt == 3)
    return serve_errf(err, "fwdgpu_fill: dtype %s is not filled (f32, f16, bf16)", vxrt_dtype_name(t));
  uint64_t nn = n;
  void *a[] = {&addr, &nn, &dt, &scale, &seed};
  unsigned ctas = n / 256 + 1 < FG_STRIDE_CTAS ? (unsigned)(n / 256 + 1) : FG_STRIDE_CTAS;
  return launch(g, g->k.fill, ctas, 1, 256, a, err);
}

float fwdgpu_fill_value(uint64_t seed, uint64_t i, float scale) {
  uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull + seed;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  float u = (float)(z >> 40) * (1.0f / 16777216.0f);
  return (u * 2.0f - 1.0f) * scale;
}

/* A matrix [out][in] of the model into bf16 at dst: the host's values, or seeded random
 * ones of the synthetic loader's scale (uniform in +-1/sqrt(in)). */
static int put_matrix(fwdgpu *g, fwdgpu_weights w, fg_dptr staging, const float *src, size_t out, size_t in,
                      fg_dptr dst, uint64_t *seed, char *err) {
  if (w == FWDGPU_WEIGHTS_HOST)
    return upload_bf16(g, staging, src, out * in, dst, err);
  *seed += 0x632BE59BD9B4E019ull;
  return fwdgpu_fill(g, dst, out * in, VXRT_BF16, 1.0f / sqrtf((float)in), *seed, err);
}

static int put_norm(fwdgpu *g, fwdgpu_weights w, const float *src, size_t n, fg_dptr *at, fg_dptr *dst,
                    const float *ones, char *err) {
  return upload_f32(g, w == FWDGPU_WEIGHTS_HOST ? src : ones, n, at, dst, err);
}

static int setup_weights(fwdgpu *g, fwdgpu_weights w, uint64_t seed, char *err) {
  const model_config *c = &g->c;
  const model *m = g->m;
  size_t d = (size_t)c->dim, D = (size_t)c->head_dim, qd = (size_t)c->heads * D;
  size_t kd = (size_t)c->kv_heads * D, I = (size_t)c->hidden, V = (size_t)c->vocab;
  size_t per_layer = (qd + 2 * kd) * d + d * qd + 2 * I * d + d * I;
  int tied = w == FWDGPU_WEIGHTS_RANDOM || m->cls == m->emb;
  size_t total = per_layer * (size_t)c->layers + V * d * (tied ? 1 : 2);
  g->weight_bytes = 2.0 * ((double)per_layer * c->layers + (double)V * d);
  size_t small = (size_t)c->layers * (2 * d + (c->qk_norm ? 2 * D : 0)) + d + (size_t)c->ctx * D;
  fg_dptr all, f32s, staging = 0;
  float *ones = malloc(sizeof(float) * (d > I ? d : I));
  g->allocations++;
  if (!ones)
    return serve_errf(err, "out of memory");
  for (size_t i = 0; i < (d > I ? d : I); i++)
    ones[i] = 1.0f;
  int rc = -1;
  if (dalloc(g, total * 2, &all, err) || dalloc(g, small * sizeof(float), &f32s, err) ||
      (w == FWDGPU_WEIGHTS_HOST && dalloc(g, FG_STAGING * sizeof(float), &staging, err)))
    goto out;
  fg_dptr at = all;
  uint64_t s = seed;
  g->emb = at;
  at += V * d * 2;
  if (w == FWDGPU_WEIGHTS_HOST ? upload_bf16(g, staging, m->emb, V * d, g->emb, err)
                               : fwdgpu_fill(g, g->emb, V * d, VXRT_BF16, 1.0f, s, err))
    goto out;
  g->cls = g->emb;
  if (!tied) {
    g->cls = at;
    at += V * d * 2;
    if (upload_bf16(g, staging, m->cls, V * d, g->cls, err))
      goto out;
  }
  for (int l = 0; l < c->layers; l++) {
    const model_layer *y = w == FWDGPU_WEIGHTS_HOST ? &m->layer[l] : &(model_layer){0};
    fg_layer *L = &g->layer[l];
    L->wqkv = at;
    L->wo = L->wqkv + (qd + 2 * kd) * d * 2;
    L->w13 = L->wo + d * qd * 2;
    L->w2 = L->w13 + 2 * I * d * 2;
    at = L->w2 + d * I * 2;
    if (put_matrix(g, w, staging, y->wq, qd, d, L->wqkv, &s, err) ||
        put_matrix(g, w, staging, y->wk, kd, d, L->wqkv + qd * d * 2, &s, err) ||
        put_matrix(g, w, staging, y->wv, kd, d, L->wqkv + (qd + kd) * d * 2, &s, err) ||
        put_matrix(g, w, staging, y->wo, d, qd, L->wo, &s, err) ||
        put_matrix(g, w, staging, y->w1, I, d, L->w13, &s, err) ||
        put_matrix(g, w, staging, y->w3, I, d, L->w13 + I * d * 2, &s, err) ||
        put_matrix(g, w, staging, y->w2, d, I, L->w2, &s, err))
      goto out;
    if (put_norm(g, w, y->attn_norm, d, &f32s, &L->attn_norm, ones, err) ||
        put_norm(g, w, y->ffn_norm, d, &f32s, &L->ffn_norm, ones, err))
      goto out;
    if (c->qk_norm && (put_norm(g, w, y->q_norm, D, &f32s, &L->q_norm, ones, err) ||
                       put_norm(g, w, y->k_norm, D, &f32s, &L->k_norm, ones, err)))
      goto out;
  }
  if (put_norm(g, w, m->final_norm, d, &f32s, &g->final_norm, ones, err) ||
      upload_f32(g, m->rope_cos, (size_t)c->ctx * (D / 2), &f32s, &g->rope_cos, err) ||
      upload_f32(g, m->rope_sin, (size_t)c->ctx * (D / 2), &f32s, &g->rope_sin, err))
    goto out;
  fg_cures r = g->cu.cuStreamSynchronize(g->cs);
  rc = r ? cu_fail(g, r, "filling the weights", err) : 0;
out:
  free(ones);
  return rc;
}

static int setup_buffers(fwdgpu *g, char *err) {
  const model_config *c = &g->c;
  size_t B = (size_t)g->max_batch, d = (size_t)c->dim, D = (size_t)c->head_dim;
  size_t qd = (size_t)c->heads * D, kd = (size_t)c->kv_heads * D, I = (size_t)c->hidden;
  size_t wide = d > qd ? d : qd;
  struct {
    fg_dptr *p;
    size_t bytes;
  } bufs[] = {
      {&g->tok, B * 4},           {&g->pos, B * 4},          {&g->x, B * d * 4},
      {&g->xb, B * wide * 2},     {&g->qkv, B * (qd + 2 * kd) * 4},
      {&g->q, B * qd * 4},        {&g->kk, B * kd * 4},      {&g->vv, B * kd * 4},
      {&g->att, B * qd * 2},      {&g->h, B * 2 * I * 4},    {&g->hb, B * I * 2},
      {&g->logits, B * (size_t)c->vocab * 4},                {&g->workspace, FG_WORKSPACE},
  };
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    if (dalloc(g, bufs[i].bytes, bufs[i].p, err))
      return -1;
  return 0;
}

int fwdgpu_create(vxrt_device *dev, const model *m, int max_batch, fwdgpu_weights w, uint64_t seed,
                  fwdgpu **out, char *err) {
  *out = NULL;
  vxrt_device_info di;
  void *ctx = NULL;
  if (vxrt_device_get_info(dev, &di) != VXRT_OK || di.kind != VXRT_CUDA ||
      vxrt_device_cuda_context(dev, &ctx) != VXRT_OK || !ctx)
    return serve_errf(err, "the GPU decode step needs a CUDA device");
  if (m->cfg.heads % m->cfg.kv_heads || m->cfg.head_dim % 2 || max_batch < 1)
    return serve_errf(err, "the GPU decode step: unsupported shapes");
  fwdgpu *g = calloc(1, sizeof *g);
  if (!g)
    return serve_errf(err, "out of memory");
  g->allocations = 1;
  g->dev = dev;
  g->m = m;
  g->c = m->cfg;
  g->max_batch = max_batch;
  g->ctx = ctx;
  g->layer = calloc((size_t)m->cfg.layers, sizeof *g->layer);
  g->allocations++;
  if (!g->layer || load_driver(g, err) || load_blas(g, err))
    goto fail;
  fg_cures r = g->cu.cuCtxPushCurrent(g->ctx);
  if (r) {
    cu_fail(g, r, "cuCtxPushCurrent", err);
    goto fail;
  }
  /* Block in waits instead of spinning, so the host's CPU time per step is its work (the
   * host runs a step ahead of the GPU and waits for it in vxrt_batch_prepare). Optional:
   * drivers before CUDA 12.1 lack it, and then waits spin. */
  if (g->cu.cuCtxSetFlags)
    g->cu.cuCtxSetFlags(FG_CTX_SCHED_BLOCKING_SYNC);
  if ((r = g->cu.cuStreamCreate(&g->cs, FG_STREAM_NON_BLOCKING))) {
    cu_fail(g, r, "cuStreamCreate", err);
    goto fail;
  }
  if ((r = g->cu.cuModuleLoadData(&g->mod, fwdgpu_ptx))) {
    cu_fail(g, r, "cuModuleLoadData (forward_cuda.ptx)", err);
    goto fail;
  }
#define FG_GETK(name, entry)                                                                      \
  if ((r = g->cu.cuModuleGetFunction(&g->k.name, g->mod, entry))) {                                \
    cu_fail(g, r, "cuModuleGetFunction " entry, err);                                              \
    goto fail;                                                                                     \
  }
  FG_KERNELS(FG_GETK)
#undef FG_GETK
  if ((r = g->cu.cuEventCreate(&g->pace, FG_EVENT_PACE))) {
    cu_fail(g, r, "cuEventCreate", err);
    goto fail;
  }
  if (vxrt_stream_wrap(dev, g->cs, &g->vs) != VXRT_OK) {
    serve_errf(err, "vxrt_stream_wrap: %s", vxrt_last_error());
    goto fail;
  }
  if (setup_buffers(g, err) || setup_weights(g, w, seed, err))
    goto fail;
  /* cuBLAS on the stream with a fixed workspace: what graph capture of its calls needs */
  fg_blasres br;
  if ((br = g->bl.cublasCreate_v2(&g->blas)) || (br = g->bl.cublasSetStream_v2(g->blas, g->cs)) ||
      (br = g->bl.cublasSetWorkspace_v2(g->blas, (void *)(uintptr_t)g->workspace, FG_WORKSPACE))) {
    serve_errf(err, "cuBLAS setup failed (status %d)", br);
    goto fail;
  }
  *out = g;
  return 0;
fail:
  fwdgpu_destroy(g);
  return -1;
}

void fwdgpu_destroy(fwdgpu *g) {
  if (!g)
    return;
  if (g->cs)
    g->cu.cuStreamSynchronize(g->cs);
  if (g->blas)
    g->bl.cublasDestroy_v2(g->blas);
  vxrt_stream_free(g->vs);
  for (int i = 0; i < g->nallocs; i++)
    g->cu.cuMemFree(g->allocs[i]);
  if (g->pace)
    g->cu.cuEventDestroy(g->pace);
  if (g->mod)
    g->cu.cuModuleUnload(g->mod);
  if (g->cs)
    g->cu.cuStreamDestroy(g->cs);
  if (g->ctx && g->cu.cuCtxPopCurrent) {
    fg_ctx prev;
    g->cu.cuCtxPopCurrent(&prev);
  }
  /* libcublas stays loaded: unloading it under a live CUDA runtime is not safe */
  if (g->libcuda)
    dlclose(g->libcuda);
  free(g->layer);
  free(g);
}

vxrt_stream *fwdgpu_stream(fwdgpu *g) { return g->vs; }
const char *fwdgpu_blas_name(const fwdgpu *g) { return g->blas_name; }
double fwdgpu_weight_bytes(const fwdgpu *g) { return g->weight_bytes; }
long fwdgpu_allocations(const fwdgpu *g) { return g->allocations; }

int fwdgpu_mem_info(fwdgpu *g, size_t *free_bytes, size_t *total_bytes, char *err) {
  CU(cuMemGetInfo(free_bytes, total_bytes), err);
  return 0;
}

int fwdgpu_set_rows(fwdgpu *g, const int32_t *tokens, const int32_t *pos, int n, char *err) {
  if (n < 1 || n > g->max_batch)
    return serve_errf(err, "fwdgpu_set_rows: %d rows (at most %d)", n, g->max_batch);
  for (int i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= g->c.vocab || pos[i] < 0 || pos[i] >= g->c.ctx)
      return serve_errf(err, "fwdgpu_set_rows: row %d: token %d or position %d out of range", i, tokens[i],
                        pos[i]);
  CU(cuMemcpyHtoDAsync(g->tok, tokens, sizeof(int32_t) * (size_t)n, g->cs), err);
  CU(cuMemcpyHtoDAsync(g->pos, pos, sizeof(int32_t) * (size_t)n, g->cs), err);
  /* pageable sources: wait, so the caller may reuse them (never inside a timed step) */
  CU(cuStreamSynchronize(g->cs), err);
  return 0;
}

/* y[n][out] (f32) = x[n][in] (bf16) W^T (W bf16 [out][in]) + beta y. Column-major, that is
 * y^T = W x^T: W as stored is the transposed operand (lda = in), x^T needs none. */
static int gemm(fwdgpu *g, fg_dptr w, fg_dptr x, fg_dptr y, int n, int in, int out, float beta, char *err) {
  const float one = 1.0f;
  fg_blasres r = g->bl.cublasGemmEx(g->blas, FG_OP_T, FG_OP_N, out, n, in, &one, (const void *)(uintptr_t)w,
                                    FG_R_16BF, in, (const void *)(uintptr_t)x, FG_R_16BF, in, &beta,
                                    (void *)(uintptr_t)y, FG_R_32F, out, FG_COMPUTE_32F, FG_GEMM_DEFAULT);
  return r ? serve_errf(err, "cublasGemmEx (%d x %d x %d) failed with status %d", n, out, in, r) : 0;
}

static int rmsnorm(fwdgpu *g, fg_dptr x, fg_dptr wt, fg_dptr y, int n, char *err) {
  unsigned dim = (unsigned)g->c.dim;
  float eps = g->c.norm_eps;
  void *a[] = {&x, &wt, &y, &dim, &eps};
  return launch(g, g->k.rmsnorm, (unsigned)n, 1, 256, a, err);
}

static int vx(vxrt_status st, const char *call, char *err) {
  return st ? serve_errf(err, "%s: %s", call, vxrt_last_error()) : 0;
}

static int layer_step(fwdgpu *g, vxrt_batch *b, int l, int n, char *err) {
  const model_config *c = &g->c;
  const fg_layer *L = &g->layer[l];
  int d = c->dim, D = c->head_dim, qd = c->heads * D, kd = c->kv_heads * D, I = c->hidden;
  if (rmsnorm(g, g->x, L->attn_norm, g->xb, n, err) || gemm(g, L->wqkv, g->xb, g->qkv, n, d, qd + 2 * kd, 0, err))
    return -1;
  unsigned hq = (unsigned)c->heads, hkv = (unsigned)c->kv_heads, hd = (unsigned)D, half = (unsigned)c->rope_half;
  float eps = c->norm_eps;
  fg_dptr qn = L->q_norm, kn = L->k_norm;
  void *a[] = {&g->qkv, &g->q, &g->kk, &g->vv, &qn, &kn, &g->rope_cos, &g->rope_sin, &g->pos, &hq, &hkv, &hd, &half, &eps};
  if (launch(g, g->k.qkv_post, hq + 2 * hkv, (unsigned)n, 32, a, err))
    return -1;
  vxrt_dbuf q = {g->q, VXRT_F32}, k = {g->kk, VXRT_F32}, v = {g->vv, VXRT_F32};
  vxrt_dbuf out = {g->att, VXRT_BF16}, lse = {0, VXRT_F32};
  if (vx(vxrt_decode_append(b, l, k, v, g->vs), "vxrt_decode_append", err) ||
      vx(vxrt_decode_select(b, l, q, g->vs), "vxrt_decode_select", err) ||
      vx(vxrt_decode_attend(b, l, q, out, lse, g->vs), "vxrt_decode_attend", err))
    return -1;
  if (gemm(g, L->wo, g->att, g->x, n, qd, d, 1.0f, err) || rmsnorm(g, g->x, L->ffn_norm, g->xb, n, err) ||
      gemm(g, L->w13, g->xb, g->h, n, d, 2 * I, 0, err))
    return -1;
  unsigned ui = (unsigned)I;
  void *s[] = {&g->h, &g->hb, &ui};
  if (launch(g, g->k.swiglu, (ui + 255) / 256, (unsigned)n, 256, s, err))
    return -1;
  return gemm(g, L->w2, g->hb, g->x, n, I, d, 1.0f, err);
}

int fwdgpu_step(fwdgpu *g, vxrt_batch *b, int n, char *err) {
  if (n < 1 || n > g->max_batch)
    return serve_errf(err, "fwdgpu_step: %d rows (at most %d)", n, g->max_batch);
  unsigned dim = (unsigned)g->c.dim, V = (unsigned)g->c.vocab, un = (unsigned)n;
  void *e[] = {&g->emb, &g->tok, &g->x, &dim};
  if (launch(g, g->k.embed, un, 1, 256, e, err))
    return -1;
  for (int l = 0; l < g->c.layers; l++)
    if (layer_step(g, b, l, n, err))
      return -1;
  if (rmsnorm(g, g->x, g->final_norm, g->xb, n, err) || gemm(g, g->cls, g->xb, g->logits, n, g->c.dim, g->c.vocab, 0, err))
    return -1;
  void *am[] = {&g->logits, &g->tok, &V};
  void *pi[] = {&g->pos, &un};
  return launch(g, g->k.argmax, un, 1, 256, am, err) || launch(g, g->k.pos_inc, 1, 1, 256, pi, err) ? -1 : 0;
}

int fwdgpu_pace(fwdgpu *g, char *err) {
  if (g->paced)
    CU(cuEventSynchronize(g->pace), err);
  CU(cuEventRecord(g->pace, g->cs), err);
  g->paced = 1;
  return 0;
}

static int download(fwdgpu *g, void *dst, fg_dptr src, size_t bytes, char *err) {
  CU(cuMemcpyDtoHAsync(dst, src, bytes, g->cs), err);
  CU(cuStreamSynchronize(g->cs), err);
  return 0;
}

int fwdgpu_read_logits(fwdgpu *g, float *dst, int n, char *err) {
  return download(g, dst, g->logits, sizeof(float) * (size_t)n * (size_t)g->c.vocab, err);
}

int fwdgpu_read_tokens(fwdgpu *g, int32_t *dst, int n, char *err) {
  return download(g, dst, g->tok, sizeof(int32_t) * (size_t)n, err);
}

/* ------------------------------------------------------------------ self-test */

static float bf16_round(float f) {
  uint16_t h;
  float r;
  vxrt_convert_from_f32(VXRT_BF16, &f, &h, 1);
  vxrt_convert_to_f32(VXRT_BF16, &h, &r, 1);
  return r;
}

static double max_rel(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

typedef struct fg_report {
  char *p;
  size_t cap, len;
  int failed;
} fg_report;

static void check(fg_report *r, const char *what, double err, double tol) {
  int ok = err <= tol && !isnan(err);
  r->failed += !ok;
  if (r->len < r->cap) {
    int k = snprintf(r->p + r->len, r->cap - r->len, "%s %-34s rel. error %.3g (tolerance %.3g)\n",
                     ok ? "PASS" : "FAIL", what, err, tol);
    r->len = k < 0 ? r->len : (size_t)k >= r->cap - r->len ? r->cap - 1 : r->len + (size_t)k;
  }
}

int fwdgpu_selftest(fwdgpu *g, char *report, size_t cap) {
  char err[SERVE_ERR_LEN];
  enum { N = 4096, R = 3, DIM = 320, HD = 16, HQ = 4, HKV = 2, VOC = 1000, CTX = 64 };
  fg_report rep = {report, cap, 0, 0};
  if (cap)
    report[0] = '\0';
  float *h = malloc(sizeof(float) * N * 8), *ref = h + N * 2, *got = h + N * 4, *w = h + N * 6;
  fg_dptr a = 0, bb = 0, c = 0, wt = 0, tabs = 0, ints = 0;
  int rc = -1;
  if (!h || dalloc(g, N * 16, &a, err) || dalloc(g, N * 16, &bb, err) || dalloc(g, N * 16, &c, err) ||
      dalloc(g, N * 16, &wt, err) || dalloc(g, CTX * HD * 4, &tabs, err) || dalloc(g, 64, &ints, err))
    goto out;
  /* fill, f32 and bf16, against the host twin */
  if (fwdgpu_fill(g, a, N, VXRT_F32, 0.5f, 7, err) || download(g, got, a, N * 4, err))
    goto out;
  for (int i = 0; i < N; i++)
    ref[i] = fwdgpu_fill_value(7, (uint64_t)i, 0.5f);
  check(&rep, "vxs_fill f32", max_rel(got, ref, N), 1e-6);
  /* f32 -> bf16 -> f32 against vxrt_convert's rounding */
  if (to_bf16(g, a, bb, N, err))
    goto out;
  uint64_t nn = N;
  void *cv[] = {&bb, &c, &nn};
  if (launch(g, g->k.bf16_to_f32, 8, 1, 256, cv, err) || download(g, got, c, N * 4, err))
    goto out;
  for (int i = 0; i < N; i++)
    ref[i] = bf16_round(ref[i]);
  check(&rep, "vxs_f32_to_bf16, vxs_bf16_to_f32", max_rel(got, ref, N), 0);
  if (fwdgpu_fill(g, bb, N, VXRT_BF16, 0.5f, 7, err) || launch(g, g->k.bf16_to_f32, 8, 1, 256, cv, err) ||
      download(g, got, c, N * 4, err))
    goto out;
  check(&rep, "vxs_fill bf16", max_rel(got, ref, N), 0);
  /* embedding gather: rows of the bf16 table at bb (VOC' = N / DIM rows) */
  int32_t toks[R] = {3, 0, 11};
  unsigned dim = DIM;
  CU(cuMemcpyHtoDAsync(ints, toks, sizeof toks, g->cs), err);
  void *ea[] = {&bb, &ints, &c, &dim};
  if (launch(g, g->k.embed, R, 1, 256, ea, err) || download(g, got, c, R * DIM * 4, err))
    goto out;
  for (int r = 0; r < R; r++)
    memcpy(w + r * DIM, ref + toks[r] * DIM, DIM * 4);
  check(&rep, "vxs_embed", max_rel(got, w, R * DIM), 0);
  /* RMSNorm of those rows with weights at wt (f32) */
  for (int i = 0; i < DIM; i++)
    w[R * DIM + i] = 0.5f + (float)i / DIM;
  CU(cuMemcpyHtoDAsync(wt, w + R * DIM, DIM * 4, g->cs), err);
  float eps = 1e-5f;
  void *ra[] = {&c, &wt, &a, &dim, &eps};
  if (launch(g, g->k.rmsnorm, R, 1, 256, ra, err))
    goto out;
  void *ca[] = {&a, &c, &nn};
  if (launch(g, g->k.bf16_to_f32, 8, 1, 256, ca, err) || download(g, got, c, R * DIM * 4, err))
    goto out;
  for (int r = 0; r < R; r++) {
    double ss = 0;
    for (int i = 0; i < DIM; i++)
      ss += (double)w[r * DIM + i] * w[r * DIM + i];
    float s = 1.0f / sqrtf((float)(ss / DIM) + eps);
    for (int i = 0; i < DIM; i++)
      ref[r * DIM + i] = bf16_round(w[r * DIM + i] * s * w[R * DIM + i]);
  }
  check(&rep, "vxs_rmsnorm", max_rel(got, ref, R * DIM), 1e-2);
  /* q/k norm and RoPE, both pair conventions: fused rows [R][(HQ + 2 HKV) HD] */
  int fused = (HQ + 2 * HKV) * HD;
  for (int i = 0; i < R * fused; i++)
    w[i] = fwdgpu_fill_value(3, (uint64_t)i, 1.0f);
  float *cs = w + N, *sn = cs + CTX * HD / 2, *nw = sn + CTX * HD / 2;
  for (int p = 0; p < CTX; p++)
    for (int i = 0; i < HD / 2; i++) {
      cs[p * HD / 2 + i] = cosf(p * (i + 1) * 0.1f);
      sn[p * HD / 2 + i] = sinf(p * (i + 1) * 0.1f);
    }
  for (int i = 0; i < HD; i++)
    nw[i] = 1.0f + 0.01f * i;
  int32_t pos[R] = {0, 5, 63};
  CU(cuMemcpyHtoDAsync(a, w, (size_t)R * fused * 4, g->cs), err);
  CU(cuMemcpyHtoDAsync(tabs, cs, CTX * HD * 4, g->cs), err);
  CU(cuMemcpyHtoDAsync(wt, nw, HD * 4, g->cs), err);
  CU(cuMemcpyHtoDAsync(ints + 16, pos, sizeof pos, g->cs), err);
  for (unsigned half = 0; half < 2; half++) {
    unsigned hq = HQ, hkv = HKV, hd = HD;
    fg_dptr qo = bb, ko = bb + R * HQ * HD * 4, vo = ko + R * HKV * HD * 4, sinp = tabs + CTX * HD / 2 * 4;
    fg_dptr posp = ints + 16, none = 0;
    void *qa[] = {&a, &qo, &ko, &vo, half ? &wt : &none, &wt, &tabs, &sinp, &posp, &hq, &hkv, &hd, &half, &eps};
    if (launch(g, g->k.qkv_post, HQ + 2 * HKV, R, 32, qa, err) || download(g, got, bb, (size_t)R * fused * 4, err))
      goto out;
    for (int r = 0; r < R; r++)
      for (int j = 0; j < HQ + 2 * HKV; j++) {
        const float *src = w + r * fused + j * HD;
        int kind = j < HQ ? 0 : j < HQ + HKV ? 1 : 2;
        float *dst = ref + (kind == 0 ? (r * HQ + j) * HD
                                      : kind == 1 ? R * HQ * HD + (r * HKV + j - HQ) * HD
                                                  : R * (HQ + HKV) * HD + (r * HKV + j - HQ - HKV) * HD);
        float t[HD];
        int norm = kind == 1 || (kind == 0 && half);
        double ss = 0;
        for (int i = 0; i < HD; i++)
          ss += (double)src[i] * src[i];
        float s = norm ? 1.0f / sqrtf((float)(ss / HD) + eps) : 1.0f;
        for (int i = 0; i < HD; i++)
          t[i] = kind == 2 ? src[i] : norm ? src[i] * s * nw[i] : src[i];
        for (int i = 0; kind != 2 && i < HD / 2; i++) {
          int x1 = half ? i : 2 * i, x2 = half ? i + HD / 2 : 2 * i + 1;
          float c0 = cs[pos[r] * HD / 2 + i], s0 = sn[pos[r] * HD / 2 + i], u = t[x1], v = t[x2];
          t[x1] = u * c0 - v * s0;
          t[x2] = u * s0 + v * c0;
        }
        memcpy(dst, t, sizeof t);
      }
    check(&rep, half ? "vxs_qkv_post (q/k norm, rotate-half)" : "vxs_qkv_post (k norm, interleaved)",
          max_rel(got, ref, (size_t)R * fused), 1e-5);
  }
  /* SwiGLU: [R][2I] f32 -> bf16 */
  unsigned I = 700;
  for (unsigned i = 0; i < R * 2 * I; i++)
    w[i] = fwdgpu_fill_value(5, i, 4.0f);
  CU(cuMemcpyHtoDAsync(a, w, R * 2 * I * 4, g->cs), err);
  void *sa[] = {&a, &bb, &I};
  if (launch(g, g->k.swiglu, (I + 255) / 256, R, 256, sa, err) || launch(g, g->k.bf16_to_f32, 8, 1, 256, (void *[]){&bb, &c, &nn}, err) ||
      download(g, got, c, R * I * 4, err))
    goto out;
  for (unsigned r = 0; r < R; r++)
    for (unsigned i = 0; i < I; i++) {
      float x = w[r * 2 * I + i], u = w[r * 2 * I + I + i];
      ref[r * I + i] = bf16_round(x / (1.0f + expf(-x)) * u);
    }
  check(&rep, "vxs_swiglu", max_rel(got, ref, R * I), 1e-2);
  /* argmax with ties (the lower id wins) and a position increment */
  unsigned voc = VOC;
  for (int i = 0; i < R * VOC; i++)
    w[i] = fwdgpu_fill_value(9, (uint64_t)i, 1.0f);
  w[0 * VOC + 517] = 5.0f;
  w[0 * VOC + 900] = 5.0f;
  w[1 * VOC + 999] = 7.0f;
  w[2 * VOC + 0] = 3.0f;
  CU(cuMemcpyHtoDAsync(a, w, R * VOC * 4, g->cs), err);
  unsigned r3 = R;
  fg_dptr posp = ints + 16;
  void *aa[] = {&a, &ints, &voc}, *pa[] = {&posp, &r3};
  int32_t am[R + R];
  if (launch(g, g->k.argmax, R, 1, 256, aa, err) || launch(g, g->k.pos_inc, 1, 1, 256, pa, err) ||
      download(g, am, ints, sizeof(int32_t) * R, err) || download(g, am + R, ints + 16, sizeof(int32_t) * R, err))
    goto out;
  check(&rep, "vxs_argmax", (am[0] != 517) + (am[1] != 999) + (am[2] != 0), 0);
  check(&rep, "vxs_pos_inc", (am[3] != 1) + (am[4] != 6) + (am[5] != 64), 0);
  /* one cuBLAS product: y[R][40] = x[R][KG] W^T + y, with y = 1 before (beta = 1) */
  enum { KG = 64 };
  int out = 40;
  for (int i = 0; i < out * KG + R * KG; i++)
    w[i] = bf16_round(fwdgpu_fill_value(11, (uint64_t)i, 1.0f));
  for (int i = 0; i < R * out; i++)
    got[i] = 1.0f;
  if (upload_bf16(g, c, w, (size_t)out * KG, a, err) || upload_bf16(g, c, w + out * KG, (size_t)R * KG, bb, err))
    goto out;
  CU(cuMemcpyHtoDAsync(c, got, R * out * 4, g->cs), err);
  if (gemm(g, a, bb, c, R, KG, out, 1.0f, err) || download(g, got, c, R * out * 4, err))
    goto out;
  for (int r = 0; r < R; r++)
    for (int o = 0; o < out; o++) {
      double s = 1;
      for (int i = 0; i < KG; i++)
        s += (double)w[o * KG + i] * w[out * KG + r * KG + i];
      ref[r * out + o] = (float)s;
    }
  check(&rep, "cublasGemmEx bf16 x bf16 -> f32, beta 1", max_rel(got, ref, R * out), 1e-5);
  rc = rep.failed;
out:
  if (rc < 0 && cap && rep.len + 1 < cap)
    snprintf(report + rep.len, cap - rep.len, "ERROR %s\n", err);
  fg_dptr bufs[] = {a, bb, c, wt, tabs, ints};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    for (int j = 0; j < g->nallocs; j++)
      if (bufs[i] && g->allocs[j] == bufs[i]) {
        g->cu.cuMemFree(bufs[i]);
        g->allocs[j] = g->allocs[--g->nallocs];
        break;
      }
  free(h);
  return rc;
}
