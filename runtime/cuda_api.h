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
typedef unsigned int vxcu_func_attribute;    /* CUfunction_attribute */
typedef unsigned int vxcu_jit_input;         /* CUjitInputType */
typedef unsigned int vxcu_capture_mode;      /* CUstreamCaptureMode */
typedef unsigned int vxcu_capture_status;    /* CUstreamCaptureStatus */
typedef struct CUstream_st *vxcu_stream;     /* CUstream */
typedef struct CUevent_st *vxcu_event;       /* CUevent */
typedef struct CUgraph_st *vxcu_graph;       /* CUgraph */
typedef struct CUgraphExec_st *vxcu_graph_exec; /* CUgraphExec */
typedef struct CUlinkState_st *vxcu_link;    /* CUlinkState */
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
#define VXCU_JIT_OPTIMIZATION_LEVEL 7
#define VXCU_JIT_INPUT_PTX 1
#define VXCU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define VXCU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES 8
#define VXCU_STREAM_NON_BLOCKING 1
#define VXCU_EVENT_DEFAULT 0
#define VXCU_MEMHOSTALLOC_PORTABLE 1
#define VXCU_STREAM_CAPTURE_MODE_THREAD_LOCAL 1
#define VXCU_STREAM_CAPTURE_STATUS_NONE 0

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
  vxcu_result (*cuModuleLoadData)(vxcu_module *mod, const void *image);    /* cuModuleLoadData */
  vxcu_result (*cuFuncSetAttribute)(vxcu_function fn, vxcu_func_attribute a, int value);
                                                                     /* cuFuncSetAttribute */
  vxcu_result (*cuOccupancyMaxActiveBlocksPerMultiprocessor)(int *blocks, vxcu_function fn,
                                                            int block_size, size_t dyn_smem);
                                                /* cuOccupancyMaxActiveBlocksPerMultiprocessor */
  vxcu_result (*cuLaunchKernel)(vxcu_function fn, unsigned int gx, unsigned int gy,
                                unsigned int gz, unsigned int bx, unsigned int by,
                                unsigned int bz, unsigned int shared, vxcu_stream s,
                                void **params, void **extra);                /* cuLaunchKernel */
  vxcu_result (*cuStreamCreate)(vxcu_stream *s, unsigned int flags);         /* cuStreamCreate */
  vxcu_result (*cuStreamDestroy)(vxcu_stream s);                       /* cuStreamDestroy_v2 */
  vxcu_result (*cuStreamSynchronize)(vxcu_stream s);                    /* cuStreamSynchronize */
  vxcu_result (*cuStreamIsCapturing)(vxcu_stream s, vxcu_capture_status *status);
                                                                    /* cuStreamIsCapturing */
  vxcu_result (*cuStreamBeginCapture)(vxcu_stream s, vxcu_capture_mode mode);
                                                                /* cuStreamBeginCapture_v2 */
  vxcu_result (*cuStreamEndCapture)(vxcu_stream s, vxcu_graph *g);       /* cuStreamEndCapture */
  vxcu_result (*cuGraphInstantiate)(vxcu_graph_exec *e, vxcu_graph g,
                                    unsigned long long flags);  /* cuGraphInstantiateWithFlags */
  vxcu_result (*cuGraphLaunch)(vxcu_graph_exec e, vxcu_stream s);             /* cuGraphLaunch */
  vxcu_result (*cuGraphExecDestroy)(vxcu_graph_exec e);                  /* cuGraphExecDestroy */
  vxcu_result (*cuGraphDestroy)(vxcu_graph g);                               /* cuGraphDestroy */
  vxcu_result (*cuEventCreate)(vxcu_event *e, unsigned int flags);            /* cuEventCreate */
  vxcu_result (*cuEventRecord)(vxcu_event e, vxcu_stream s);                  /* cuEventRecord */
  vxcu_result (*cuEventSynchronize)(vxcu_event e);                       /* cuEventSynchronize */
  /* CUDA >= 12.8; optional (NULL on older drivers). */
  vxcu_result (*cuEventElapsedTime)(float *ms, vxcu_event a, vxcu_event b);
                                                                  /* cuEventElapsedTime_v2 */
  vxcu_result (*cuEventDestroy)(vxcu_event e);                          /* cuEventDestroy_v2 */
  vxcu_result (*cuMemcpyHtoDAsync)(vxcu_deviceptr dst, const void *src, size_t bytes,
                                   vxcu_stream s);                   /* cuMemcpyHtoDAsync_v2 */
  vxcu_result (*cuMemcpyDtoHAsync)(void *dst, vxcu_deviceptr src, size_t bytes,
                                   vxcu_stream s);                   /* cuMemcpyDtoHAsync_v2 */
  vxcu_result (*cuMemcpyDtoDAsync)(vxcu_deviceptr dst, vxcu_deviceptr src, size_t bytes,
                                   vxcu_stream s);                   /* cuMemcpyDtoDAsync_v2 */
  vxcu_result (*cuMemsetD32Async)(vxcu_deviceptr dst, unsigned int v, size_t n,
                                  vxcu_stream s);                          /* cuMemsetD32Async */
  vxcu_result (*cuMemsetD2D32Async)(vxcu_deviceptr dst, size_t pitch, unsigned int v,
                                    size_t width, size_t height,
                                    vxcu_stream s);                      /* cuMemsetD2D32Async */
  vxcu_result (*cuMemHostAlloc)(void **p, size_t bytes, unsigned int flags); /* cuMemHostAlloc */
  vxcu_result (*cuMemFreeHost)(void *p);                                      /* cuMemFreeHost */
  vxcu_result (*cuLinkCreate)(unsigned int nopts, vxcu_jit_option *opts, void **values,
                              vxcu_link *link);                             /* cuLinkCreate_v2 */
  vxcu_result (*cuLinkAddData)(vxcu_link link, vxcu_jit_input type, void *data, size_t size,
                               const char *name, unsigned int nopts, vxcu_jit_option *opts,
                               void **values);                             /* cuLinkAddData_v2 */
  vxcu_result (*cuLinkComplete)(vxcu_link link, void **cubin, size_t *size); /* cuLinkComplete */
  vxcu_result (*cuLinkDestroy)(vxcu_link link);                               /* cuLinkDestroy */
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
  X(cuModuleGetFunction, "cuModuleGetFunction", 1)         \
  X(cuModuleLoadData, "cuModuleLoadData", 1)               \
  X(cuFuncSetAttribute, "cuFuncSetAttribute", 1)           \
  X(cuOccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor", 0) \
  X(cuLaunchKernel, "cuLaunchKernel", 1)                   \
  X(cuStreamCreate, "cuStreamCreate", 1)                   \
  X(cuStreamDestroy, "cuStreamDestroy_v2", 1)              \
  X(cuStreamSynchronize, "cuStreamSynchronize", 1)         \
  X(cuStreamIsCapturing, "cuStreamIsCapturing", 1)         \
  X(cuStreamBeginCapture, "cuStreamBeginCapture_v2", 1)    \
  X(cuStreamEndCapture, "cuStreamEndCapture", 1)           \
  X(cuGraphInstantiate, "cuGraphInstantiateWithFlags", 1)  \
  X(cuGraphLaunch, "cuGraphLaunch", 1)                     \
  X(cuGraphExecDestroy, "cuGraphExecDestroy", 1)           \
  X(cuGraphDestroy, "cuGraphDestroy", 1)                   \
  X(cuEventCreate, "cuEventCreate", 1)                     \
  X(cuEventRecord, "cuEventRecord", 1)                     \
  X(cuEventSynchronize, "cuEventSynchronize", 1)           \
  X(cuEventElapsedTime, "cuEventElapsedTime_v2", 0)        \
  X(cuEventDestroy, "cuEventDestroy_v2", 1)                \
  X(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", 1)          \
  X(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", 1)          \
  X(cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", 1)          \
  X(cuMemsetD32Async, "cuMemsetD32Async", 1)               \
  X(cuMemsetD2D32Async, "cuMemsetD2D32Async", 1)           \
  X(cuMemHostAlloc, "cuMemHostAlloc", 1)                   \
  X(cuMemFreeHost, "cuMemFreeHost", 1)                     \
  X(cuLinkCreate, "cuLinkCreate_v2", 1)                    \
  X(cuLinkAddData, "cuLinkAddData_v2", 1)                  \
  X(cuLinkComplete, "cuLinkComplete", 1)                   \
  X(cuLinkDestroy, "cuLinkDestroy", 1)

#endif /* VXRT_CUDA_API_H */
