/* cuda_api.h - the few CUDA Driver API entry points libvxrt uses, declared by hand.
 *
 * libvxrt never links libcuda and never needs cuda.h to build: it dlopens libcuda.so.1 and
 * looks these up by their exported (versioned) names, so every binary starts on a machine
 * without a GPU. The types below mirror cuda.h (CUDA 13) under our own names; the
 * exported-symbol names are the ones cuda.h's macros map to (cuCtxCreate -> cuCtxCreate_v4,
 * cuMemAlloc -> cuMemAlloc_v2, ...). tests/runtime/test_cuda_abi.c checks these prototypes
 * against the real cuda.h wherever it is installed. Internal to the runtime.
 */
#ifndef VXRT_CUDA_API_H
#define VXRT_CUDA_API_H

#include <stddef.h>

/* Struct tags are cuda.h's own, so the handle types are identical to CUcontext etc.; the
 * enums (CUresult, CUjit_option, CUdevice_attribute) have no negative values, so their
 * compatible type is unsigned int with GCC and Clang. */
typedef unsigned int vxcu_result;            /* CUresult; 0 = CUDA_SUCCESS */
typedef int vxcu_device;                     /* CUdevice */
typedef struct CUctx_st *vxcu_context;       /* CUcontext */
typedef struct CUmod_st *vxcu_module;        /* CUmodule */
typedef struct CUfunc_st *vxcu_function;     /* CUfunction */
typedef unsigned long long vxcu_deviceptr;   /* CUdeviceptr (64-bit builds) */
typedef unsigned int vxcu_jit_option;        /* CUjit_option */
typedef unsigned int vxcu_attribute;         /* CUdevice_attribute */
struct CUctxCreateParams_st;                 /* CUctxCreateParams: we always pass NULL */

#define VXCU_SUCCESS 0
#define VXCU_ERROR_NO_DEVICE 100
#define VXCU_ERROR_INVALID_DEVICE 101
#define VXCU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define VXCU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define VXCU_JIT_INFO_LOG_BUFFER 3
#define VXCU_JIT_INFO_LOG_BUFFER_SIZE_BYTES 4
#define VXCU_JIT_ERROR_LOG_BUFFER 5
#define VXCU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES 6

/* One field per entry point: the name is cuda.h's, the comment the exported symbol. */
typedef struct vxcu_api {
  vxcu_result (*cuInit)(unsigned int flags);                                    /* cuInit */
  vxcu_result (*cuDriverGetVersion)(int *version);                  /* cuDriverGetVersion */
  vxcu_result (*cuDeviceGetCount)(int *count);                        /* cuDeviceGetCount */
  vxcu_result (*cuDeviceGet)(vxcu_device *dev, int ordinal);               /* cuDeviceGet */
  vxcu_result (*cuDeviceGetName)(char *name, int len, vxcu_device dev); /* cuDeviceGetName */
  vxcu_result (*cuDeviceGetAttribute)(int *v, vxcu_attribute a, vxcu_device dev);
                                                                  /* cuDeviceGetAttribute */
  vxcu_result (*cuDeviceTotalMem)(size_t *bytes, vxcu_device dev);  /* cuDeviceTotalMem_v2 */
  /* cuCtxCreate_v4 (CUDA >= 12.5) takes a CUctxCreateParams pointer, which may be NULL;
   * older drivers only have cuCtxCreate_v2 without it. One of the two is set. */
  vxcu_result (*cuCtxCreate_v4)(vxcu_context *ctx, struct CUctxCreateParams_st *params,
                                unsigned int flags,
                                vxcu_device dev);                        /* cuCtxCreate_v4 */
  vxcu_result (*cuCtxCreate_v2)(vxcu_context *ctx, unsigned int flags,
                                vxcu_device dev);                        /* cuCtxCreate_v2 */
  vxcu_result (*cuCtxDestroy)(vxcu_context ctx);                         /* cuCtxDestroy_v2 */
  vxcu_result (*cuCtxPushCurrent)(vxcu_context ctx);                 /* cuCtxPushCurrent_v2 */
  vxcu_result (*cuCtxPopCurrent)(vxcu_context *ctx);                  /* cuCtxPopCurrent_v2 */
  vxcu_result (*cuCtxSynchronize)(void);                               /* cuCtxSynchronize */
  vxcu_result (*cuGetErrorName)(vxcu_result r, const char **s);          /* cuGetErrorName */
  vxcu_result (*cuGetErrorString)(vxcu_result r, const char **s);      /* cuGetErrorString */
  vxcu_result (*cuMemAlloc)(vxcu_deviceptr *p, size_t bytes);              /* cuMemAlloc_v2 */
  vxcu_result (*cuMemFree)(vxcu_deviceptr p);                               /* cuMemFree_v2 */
  vxcu_result (*cuMemcpyHtoD)(vxcu_deviceptr dst, const void *src, size_t bytes);
                                                                        /* cuMemcpyHtoD_v2 */
  vxcu_result (*cuMemcpyDtoH)(void *dst, vxcu_deviceptr src, size_t bytes);
                                                                        /* cuMemcpyDtoH_v2 */
  vxcu_result (*cuMemsetD8)(vxcu_deviceptr dst, unsigned char v, size_t n); /* cuMemsetD8_v2 */
  vxcu_result (*cuModuleLoadDataEx)(vxcu_module *mod, const void *image, unsigned int nopts,
                                    vxcu_jit_option *opts, void **values);
                                                                     /* cuModuleLoadDataEx */
  vxcu_result (*cuModuleUnload)(vxcu_module mod);                        /* cuModuleUnload */
  vxcu_result (*cuModuleGetFunction)(vxcu_function *fn, vxcu_module mod, const char *name);
                                                                    /* cuModuleGetFunction */
} vxcu_api;

/* (field, exported symbol, required): the dlsym table of device.c, and what
 * tests/runtime/test_cuda_abi.c checks against cuda.h's macros. */
#define VXCU_SYMBOLS(X)                                  \
  X(cuInit, "cuInit", 1)                                 \
  X(cuDriverGetVersion, "cuDriverGetVersion", 1)         \
  X(cuDeviceGetCount, "cuDeviceGetCount", 1)             \
  X(cuDeviceGet, "cuDeviceGet", 1)                       \
  X(cuDeviceGetName, "cuDeviceGetName", 1)               \
  X(cuDeviceGetAttribute, "cuDeviceGetAttribute", 1)     \
  X(cuDeviceTotalMem, "cuDeviceTotalMem_v2", 1)          \
  X(cuCtxCreate_v4, "cuCtxCreate_v4", 0)                 \
  X(cuCtxCreate_v2, "cuCtxCreate_v2", 0)                 \
  X(cuCtxDestroy, "cuCtxDestroy_v2", 1)                  \
  X(cuCtxPushCurrent, "cuCtxPushCurrent_v2", 1)          \
  X(cuCtxPopCurrent, "cuCtxPopCurrent_v2", 1)            \
  X(cuCtxSynchronize, "cuCtxSynchronize", 1)             \
  X(cuGetErrorName, "cuGetErrorName", 1)                 \
  X(cuGetErrorString, "cuGetErrorString", 1)             \
  X(cuMemAlloc, "cuMemAlloc_v2", 1)                      \
  X(cuMemFree, "cuMemFree_v2", 1)                        \
  X(cuMemcpyHtoD, "cuMemcpyHtoD_v2", 1)                  \
  X(cuMemcpyDtoH, "cuMemcpyDtoH_v2", 1)                  \
  X(cuMemsetD8, "cuMemsetD8_v2", 1)                      \
  X(cuModuleLoadDataEx, "cuModuleLoadDataEx", 1)         \
  X(cuModuleUnload, "cuModuleUnload", 1)                 \
  X(cuModuleGetFunction, "cuModuleGetFunction", 1)

#endif /* VXRT_CUDA_API_H */
