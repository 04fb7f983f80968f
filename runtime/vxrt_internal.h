/* vxrt_internal.h - what the files of libvxrt share and nobody outside it may use.
 *
 * The device structure and its memory primitives (one code path for host and CUDA memory),
 * the dlopen'ed CUDA driver table, error reporting, dtype conversion. Everything declared
 * here has hidden visibility in libvxrt.so (the library is built with -fvisibility=hidden),
 * so only VXRT_API functions of vxrt.h are exported. Never include this from tests or tools.
 */
#ifndef VXRT_INTERNAL_H
#define VXRT_INTERNAL_H

#include "artifact.h"
#include "cuda_api.h"
#include "vxrt.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Records a message for vxrt_last_error() and returns st, so failures read
 * `return vxrt_fail(VXRT_ERR_..., "...")`. */
vxrt_status vxrt_fail(vxrt_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct vxrt_device {
  vxrt_device_info info;
  atomic_int live;        /* caches and policies alive on this device */
  /* CUDA only. */
  void *libcuda;          /* dlopen handle */
  vxcu_api cu;            /* driver entry points */
  vxcu_context ctx;
};

/* Device memory as integer addresses: host pointers on the CPU, CUdeviceptr on CUDA, so the
 * cache has one code path. Each call makes the device's context current for its duration. */
vxrt_status vxrt_mem_alloc(vxrt_device *dev, size_t bytes, uint64_t *addr);
void vxrt_mem_free(vxrt_device *dev, uint64_t addr);
vxrt_status vxrt_mem_write(vxrt_device *dev, uint64_t dst, const void *src, size_t bytes);
vxrt_status vxrt_mem_read(vxrt_device *dev, void *dst, uint64_t src, size_t bytes);
vxrt_status vxrt_mem_zero(vxrt_device *dev, uint64_t dst, size_t bytes);

/* CUDA: make the device's context current on this thread / restore the previous one. */
vxrt_status vxrt_cuda_push(vxrt_device *dev);
void vxrt_cuda_pop(vxrt_device *dev);
/* A driver error as "cuFoo failed: CUDA_ERROR_X (text)" under status st. */
vxrt_status vxrt_cuda_fail(vxrt_device *dev, vxrt_status st, const char *call, vxcu_result r);

/* What run.c needs of a loaded policy: its manifest, its parameter values after overrides,
 * the handle of its kernel of a kind (NULL if it has none), the directory of the file it was
 * loaded from (NULL when loaded from memory) and its device. */
const art_manifest *vxrt_policy_manifest(const vxrt_policy *pol);
const double *vxrt_policy_values(const vxrt_policy *pol);
void *vxrt_policy_kernel(const vxrt_policy *pol, art_kernel_kind kind);
const char *vxrt_policy_dir(const vxrt_policy *pol);
vxrt_device *vxrt_policy_device(const vxrt_policy *pol);

/* CUDA devices: the PTX section loaded (NULL on the CPU), and the GPU entry
 * "vxg_<kind>__<shape>" of its module. *fn is NULL (and VXRT_OK) when the section does not
 * list the kind in gpu_kernels; VXRT_ERR_LOAD when it does but the module lacks the entry. */
const art_target *vxrt_policy_ptx(const vxrt_policy *pol);
vxrt_status vxrt_policy_gpu_function(const vxrt_policy *pol, const char *kind, const char *shape,
                                     vxcu_function *fn);

/* The cache, for batches (batch.c). A row's page table (npages entries); pages for `tokens`
 * tokens in the row (taking and zeroing pages as vxrt_append does, on CUDA with one memset
 * per page queued on s when s is not NULL; VXRT_ERR_POOL_FULL changes nothing); K/V of tokens [pos, pos + n) of one layer written from f32 within the
 * reserved pages without changing the length; every layer's length += n. */
vxrt_device *vxrt_cache_device(const vxrt_cache *c);
vxrt_status vxrt_cache_row_check(const vxrt_cache *c, int row, const char *fn);
const int32_t *vxrt_cache_table(const vxrt_cache *c, int row, int *npages);
/* Changes each time the row is opened: a batch re-sends the page table of a reopened row. */
uint32_t vxrt_cache_row_generation(const vxrt_cache *c, int row);
vxrt_status vxrt_cache_reserve(vxrt_cache *c, int row, int64_t tokens, const vxrt_stream *s);
vxrt_status vxrt_cache_write(vxrt_cache *c, int row, int layer, int64_t pos, const float *k,
                             const float *v, int ntokens);
void vxrt_cache_advance(vxrt_cache *c, int row, int ntokens);

/* A stream: on CUDA the CUstream (NULL = the legacy default stream) and whether libvxrt
 * created it; on the CPU nothing but its device. */
struct vxrt_stream {
  vxrt_device *dev;
  vxcu_stream s;
  int owned;
};

/* The code target of the machine the runtime runs on ("x86_64-linux"). */
const char *vxrt_host_target(void);

/* Scalar conversions with the rounding documented in vxrt.h. */
uint16_t vxrt_f32_to_f16(float f);
float vxrt_f16_to_f32(uint16_t h);
uint16_t vxrt_f32_to_bf16(float f);
float vxrt_bf16_to_f32(uint16_t h);
uint8_t vxrt_f32_to_e4m3(float f);
float vxrt_e4m3_to_f32(uint8_t x);

#endif /* VXRT_INTERNAL_H */
