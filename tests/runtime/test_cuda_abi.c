/* test_cuda_abi.c - libvxrt's hand-written CUDA declarations against the real cuda.h.
 *
 * The runtime never includes cuda.h (CI may not have it); runtime/cuda_api.h declares the
 * entry points it dlsyms by hand. Built only where cuda.h is found, this test checks at
 * compile time that every function-pointer type there is compatible with cuda.h's prototype,
 * and at run time that every exported name we dlsym is the one cuda.h's macros map the API
 * name to (cuMemAlloc -> cuMemAlloc_v2, cuCtxCreate -> cuCtxCreate_v4, ...).
 */
#include <cuda.h>

#include "cuda_api.h"
#include "rt_check.h"

/* cuda.h declares the pre-12.5 context creation only in its legacy section. */
CUresult CUDAAPI cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev);

#define STR(x) #x
#define XSTR(x) STR(x)

/* Compile time: the type of our table field is the type of &<the API function>. */
#define CHECK_TYPE(field, sym, required)                                                   \
  _Static_assert(__builtin_types_compatible_p(__typeof__(&field),                          \
                                              __typeof__(((vxcu_api *)0)->field)),         \
                 "cuda_api.h: " #field " does not match cuda.h");
VXCU_SYMBOLS(CHECK_TYPE)

int main(void) {
  /* Run time: the symbol we dlsym is what cuda.h's macro expands the API name to. */
#define CHECK_NAME(field, sym, required)                                                  \
  RT_CHECK(strcmp(XSTR(field), sym) == 0, "%s maps to %s in cuda.h, we load %s", #field,   \
           XSTR(field), sym);
  VXCU_SYMBOLS(CHECK_NAME)
  RT_CHECK(strcmp(XSTR(cuCtxCreate), "cuCtxCreate_v4") == 0,
           "cuCtxCreate maps to %s; device.c prefers cuCtxCreate_v4", XSTR(cuCtxCreate));
  RT_CHECK(CUDA_SUCCESS == VXCU_SUCCESS && CUDA_ERROR_NO_DEVICE == VXCU_ERROR_NO_DEVICE &&
               CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR ==
                   VXCU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR &&
               CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR ==
                   VXCU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR &&
               CU_JIT_ERROR_LOG_BUFFER == VXCU_JIT_ERROR_LOG_BUFFER &&
               CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES == VXCU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES &&
               CU_JIT_INFO_LOG_BUFFER == VXCU_JIT_INFO_LOG_BUFFER &&
               CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES == VXCU_JIT_INFO_LOG_BUFFER_SIZE_BYTES &&
               CU_JIT_OPTIMIZATION_LEVEL == VXCU_JIT_OPTIMIZATION_LEVEL &&
               CU_JIT_INPUT_PTX == VXCU_JIT_INPUT_PTX &&
               CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT ==
                   VXCU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT &&
               CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES ==
                   VXCU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES &&
               CU_STREAM_NON_BLOCKING == VXCU_STREAM_NON_BLOCKING &&
               CU_EVENT_DEFAULT == VXCU_EVENT_DEFAULT &&
               CU_MEMHOSTALLOC_PORTABLE == VXCU_MEMHOSTALLOC_PORTABLE &&
               CU_STREAM_CAPTURE_MODE_THREAD_LOCAL == VXCU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
               CU_STREAM_CAPTURE_STATUS_NONE == VXCU_STREAM_CAPTURE_STATUS_NONE &&
               sizeof(CUdeviceptr) == sizeof(vxcu_deviceptr),
           "constants and sizes agree with cuda.h");
  return rt_finish();
}
