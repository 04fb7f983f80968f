/* device.c - devices of libvxrt: the CPU, and CUDA GPUs through a dlopen'ed driver.
 *
 * Opening a CUDA device loads libcuda.so.1 at run time (never linked, so a binary that uses
 * libvxrt starts on a machine without a GPU and gets a clear error instead), resolves the
 * driver entry points of cuda_api.h, and creates one context per device. The context is
 * never left current on the caller's thread: each call that needs it pushes and pops it.
 * Also holds the memory primitives the cache is written against (vxrt_mem_*), which treat
 * host and device memory alike as 64-bit addresses. Never prints, never exits.
 */
#define _GNU_SOURCE
#include "vxrt_internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *vxrt_host_target(void) {
#if defined(__x86_64__) && defined(__linux__)
  return "x86_64-linux";
#elif defined(__aarch64__) && defined(__linux__)
  return "aarch64-linux";
#else
  return "unknown-host";
#endif
}

/* ------------------------------------------------------------------ CUDA helpers */

vxrt_status vxrt_cuda_fail(vxrt_device *dev, vxrt_status st, const char *call, vxcu_result r) {
  const char *name = NULL, *text = NULL;
  if (dev && dev->cu.cuGetErrorName) dev->cu.cuGetErrorName(r, &name);
  if (dev && dev->cu.cuGetErrorString) dev->cu.cuGetErrorString(r, &text);
  return vxrt_fail(st, "%s failed: %s (%s)", call, name ? name : "unknown CUDA error",
                   text ? text : "no description");
}

vxrt_status vxrt_cuda_push(vxrt_device *dev) {
  vxcu_result r = dev->cu.cuCtxPushCurrent(dev->ctx);
  return r ? vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuCtxPushCurrent", r) : VXRT_OK;
}

void vxrt_cuda_pop(vxrt_device *dev) {
  vxcu_context prev;
  dev->cu.cuCtxPopCurrent(&prev);
}

/* Resolves every entry point of VXCU_SYMBOLS; NULL on success, else the missing name. */
static const char *cuda_resolve(void *lib, vxcu_api *api) {
  /* memcpy: ISO C has no cast from void * to a function pointer; POSIX guarantees the
   * representations agree. */
#define VXCU_LOAD(field, sym, required)                        \
  {                                                            \
    void *p_ = dlsym(lib, sym);                                \
    memcpy(&api->field, &p_, sizeof p_);                       \
    if ((required) && !p_) return sym;                         \
  }
  VXCU_SYMBOLS(VXCU_LOAD)
#undef VXCU_LOAD
  if (!api->cuCtxCreate_v4 && !api->cuCtxCreate_v2) return "cuCtxCreate_v4";
  return NULL;
}

static void cuda_teardown(vxrt_device *dev) {
  if (dev->ctx) dev->cu.cuCtxDestroy(dev->ctx);
  dev->ctx = NULL;
  if (dev->libcuda) dlclose(dev->libcuda);
  dev->libcuda = NULL;
}

static vxrt_status cuda_open(vxrt_device *dev, int ordinal) {
  dev->libcuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!dev->libcuda) {
    const char *why = dlerror();
    return vxrt_fail(VXRT_ERR_NO_DEVICE, "no CUDA driver (libcuda.so.1 not found): %s",
                     why ? why : "dlopen failed");
  }
  const char *missing = cuda_resolve(dev->libcuda, &dev->cu);
  if (missing)
    return vxrt_fail(VXRT_ERR_NO_DEVICE, "CUDA driver too old: libcuda.so.1 lacks %s", missing);
  vxcu_result r = dev->cu.cuInit(0);
  if (r == VXCU_ERROR_NO_DEVICE)
    return vxrt_fail(VXRT_ERR_NO_DEVICE, "CUDA driver found but no CUDA device is visible");
  if (r) return vxrt_cuda_fail(dev, VXRT_ERR_NO_DEVICE, "cuInit", r);
  int count = 0;
  if ((r = dev->cu.cuDeviceGetCount(&count)))
    return vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuDeviceGetCount", r);
  if (ordinal >= count)
    return vxrt_fail(VXRT_ERR_NO_DEVICE, "no CUDA device %d (this machine has %d)", ordinal,
                     count);
  vxcu_device cd;
  if ((r = dev->cu.cuDeviceGet(&cd, ordinal)))
    return vxrt_cuda_fail(dev, VXRT_ERR_NO_DEVICE, "cuDeviceGet", r);
  vxrt_device_info *in = &dev->info;
  size_t mem = 0;
  if ((r = dev->cu.cuDeviceGetName(in->name, (int)sizeof in->name, cd)) ||
      (r = dev->cu.cuDeviceGetAttribute(&in->cc_major,
                                        VXCU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, cd)) ||
      (r = dev->cu.cuDeviceGetAttribute(&in->cc_minor,
                                        VXCU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, cd)) ||
      (r = dev->cu.cuDeviceTotalMem(&mem, cd)) ||
      (r = dev->cu.cuDriverGetVersion(&in->driver_version)))
    return vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "querying the CUDA device", r);
  in->name[sizeof in->name - 1] = '\0';
  in->total_memory = mem;
  snprintf(in->target, sizeof in->target, "sm_%d%d", in->cc_major, in->cc_minor);
  /* Flags 0 = CU_CTX_SCHED_AUTO. The new context is current after creation; pop it so that
   * the caller's thread is left as we found it. */
  if (dev->cu.cuCtxCreate_v4)
    r = dev->cu.cuCtxCreate_v4(&dev->ctx, NULL, 0, cd);
  else
    r = dev->cu.cuCtxCreate_v2(&dev->ctx, 0, cd);
  if (r) {
    dev->ctx = NULL;
    return vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuCtxCreate", r);
  }
  vxrt_cuda_pop(dev);
  return VXRT_OK;
}

/* ------------------------------------------------------------------ public device API */

vxrt_status vxrt_device_open(vxrt_device_kind kind, int ordinal, vxrt_device **out) {
  if (!out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_device_open: out is NULL");
  *out = NULL;
  if (kind != VXRT_CPU && kind != VXRT_CUDA)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_device_open: unknown device kind %d",
                     (int)kind);
  if (ordinal < 0 || (kind == VXRT_CPU && ordinal != 0))
    return vxrt_fail(VXRT_ERR_NO_DEVICE, "no %s device %d", kind == VXRT_CPU ? "CPU" : "CUDA",
                     ordinal);
  vxrt_device *dev = calloc(1, sizeof *dev);
  if (!dev) return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory opening a device");
  dev->info.kind = kind;
  dev->info.ordinal = ordinal;
  atomic_init(&dev->live, 0);
  if (kind == VXRT_CPU) {
    const char *t = vxrt_host_target();
    size_t arch = strcspn(t, "-");
    snprintf(dev->info.name, sizeof dev->info.name, "cpu (%.*s)", (int)arch, t);
    snprintf(dev->info.target, sizeof dev->info.target, "%s", t);
  } else {
    vxrt_status st = cuda_open(dev, ordinal);
    if (st) {
      cuda_teardown(dev);
      free(dev);
      return st;
    }
  }
  *out = dev;
  return VXRT_OK;
}

vxrt_status vxrt_device_close(vxrt_device *dev) {
  if (!dev) return VXRT_OK;
  int live = atomic_load(&dev->live);
  if (live)
    return vxrt_fail(VXRT_ERR_STATE,
                     "device still has %d live cache(s)/policies; free them before closing it",
                     live);
  if (dev->info.kind == VXRT_CUDA) cuda_teardown(dev);
  free(dev);
  return VXRT_OK;
}

vxrt_status vxrt_device_get_info(const vxrt_device *dev, vxrt_device_info *out) {
  if (!dev || !out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_device_get_info: NULL argument");
  *out = dev->info;
  return VXRT_OK;
}

vxrt_status vxrt_device_cuda_context(const vxrt_device *dev, void **ctx) {
  if (!dev || !ctx) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_device_cuda_context: NULL argument");
  *ctx = dev->info.kind == VXRT_CUDA ? (void *)dev->ctx : NULL;
  return VXRT_OK;
}

/* ------------------------------------------------------------------ memory */

vxrt_status vxrt_mem_alloc(vxrt_device *dev, size_t bytes, uint64_t *addr) {
  *addr = 0;
  if (dev->info.kind == VXRT_CPU) {
    /* 64-byte aligned (a cache line; also what vector loads of host kernels like). The
     * memory is not touched here, so untouched pool pages cost nothing. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) rounded = 0;
    void *p = rounded ? aligned_alloc(64, rounded) : NULL;
    if (!p)
      return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of host memory allocating %zu bytes", bytes);
    *addr = (uint64_t)(uintptr_t)p;
    return VXRT_OK;
  }
  vxrt_status st = vxrt_cuda_push(dev);
  if (st) return st;
  vxcu_deviceptr p = 0;
  vxcu_result r = dev->cu.cuMemAlloc(&p, bytes);
  vxrt_cuda_pop(dev);
  if (r) {
    vxrt_cuda_fail(dev, VXRT_ERR_OUT_OF_MEMORY, "cuMemAlloc", r);
    return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of device memory allocating %zu bytes: %s",
                     bytes, vxrt_last_error());
  }
  *addr = p;
  return VXRT_OK;
}

void vxrt_mem_free(vxrt_device *dev, uint64_t addr) {
  if (!addr) return;
  if (dev->info.kind == VXRT_CPU) {
    free((void *)(uintptr_t)addr);
    return;
  }
  if (vxrt_cuda_push(dev) == VXRT_OK) {
    dev->cu.cuMemFree(addr);
    vxrt_cuda_pop(dev);
  }
}

vxrt_status vxrt_mem_write(vxrt_device *dev, uint64_t dst, const void *src, size_t bytes) {
  if (!bytes) return VXRT_OK;
  if (dev->info.kind == VXRT_CPU) {
    memcpy((void *)(uintptr_t)dst, src, bytes);
    return VXRT_OK;
  }
  vxrt_status st = vxrt_cuda_push(dev);
  if (st) return st;
  vxcu_result r = dev->cu.cuMemcpyHtoD(dst, src, bytes);
  vxrt_cuda_pop(dev);
  return r ? vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuMemcpyHtoD", r) : VXRT_OK;
}

vxrt_status vxrt_mem_read(vxrt_device *dev, void *dst, uint64_t src, size_t bytes) {
  if (!bytes) return VXRT_OK;
  if (dev->info.kind == VXRT_CPU) {
    memcpy(dst, (const void *)(uintptr_t)src, bytes);
    return VXRT_OK;
  }
  vxrt_status st = vxrt_cuda_push(dev);
  if (st) return st;
  vxcu_result r = dev->cu.cuMemcpyDtoH(dst, src, bytes);
  vxrt_cuda_pop(dev);
  return r ? vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuMemcpyDtoH", r) : VXRT_OK;
}

vxrt_status vxrt_mem_zero(vxrt_device *dev, uint64_t dst, size_t bytes) {
  if (!bytes) return VXRT_OK;
  if (dev->info.kind == VXRT_CPU) {
    memset((void *)(uintptr_t)dst, 0, bytes);
    return VXRT_OK;
  }
  vxrt_status st = vxrt_cuda_push(dev);
  if (st) return st;
  vxcu_result r = dev->cu.cuMemsetD8(dst, 0, bytes);
  vxrt_cuda_pop(dev);
  return r ? vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuMemsetD8", r) : VXRT_OK;
}
