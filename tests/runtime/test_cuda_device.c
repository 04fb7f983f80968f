/* test_cuda_device.c - opening a CUDA device through the dlopen'ed driver, and loading PTX.
 *
 * Without a driver or GPU: checks the error is the documented one and exits 77 (CTest
 * SKIP_RETURN_CODE), so CI machines skip it cleanly. With a GPU: device info (name, sm
 * target, memory), a bad ordinal, two devices open at once, and policies whose code is PTX:
 * a hand-written kernel for an older sm loads (driver JIT) and its entry resolves, broken PTX
 * fails with the JIT log in the message, and host-only artifacts are refused for the GPU.
 */
#include <stdlib.h>

#include "rt_fixture.h"

/* A kernel in PTX ISA 8.0 for sm_80: x[threadIdx.x] = v. */
static const char good_ptx[] =
    ".version 8.0\n.target sm_80\n.address_size 64\n\n"
    ".visible .entry vxt_fill(.param .u64 p, .param .f32 v)\n{\n"
    "  .reg .b32 %r<2>;\n  .reg .b64 %rd<4>;\n  .reg .f32 %f<2>;\n"
    "  ld.param.u64 %rd1, [p];\n  ld.param.f32 %f1, [v];\n"
    "  cvta.to.global.u64 %rd2, %rd1;\n  mov.u32 %r1, %tid.x;\n"
    "  mul.wide.u32 %rd3, %r1, 4;\n  add.s64 %rd2, %rd2, %rd3;\n"
    "  st.global.f32 [%rd2], %f1;\n  ret;\n}\n";

static const char bad_ptx[] =
    ".version 8.0\n.target sm_80\n.address_size 64\n\n"
    ".visible .entry vxt_fill(.param .u64 p)\n{\n  frobnicate.u32 %r1;\n  ret;\n}\n";

static rt_blob ptx_artifact(const char *target, const char *ptx, const char *entry) {
  art_kernel ks[1] = {{"fill", ART_K_ATTEND, entry}};
  art_target t[1] = {{.name = target, .kind = ART_PTX, .data = (const unsigned char *)ptx,
                      .size = strlen(ptx)}};
  art_manifest m = rt_manifest(t, 1);
  m.kernels = ks;
  m.nkernels = 1;
  return rt_write(&m);
}

int main(void) {
  vxrt_device *dev = NULL;
  vxrt_status st = vxrt_device_open(VXRT_CUDA, 0, &dev);
  if (st == VXRT_ERR_NO_DEVICE) {
    RT_CHECK(dev == NULL, "no handle on failure");
    RT_CHECK(strstr(vxrt_last_error(), "no CUDA driver (libcuda.so.1 not found)") ||
                 strstr(vxrt_last_error(), "no CUDA device") ||
                 strstr(vxrt_last_error(), "CUDA driver"),
             "message: %s", vxrt_last_error());
    return rt_skip(vxrt_last_error());
  }
  if (!RT_EXPECT(st, VXRT_OK, NULL)) return rt_finish();
  vxrt_device_info di;
  RT_EXPECT(vxrt_device_get_info(dev, &di), VXRT_OK, NULL);
  printf("device: %s, %s, cc %d.%d, %.1f GiB, driver %d\n", di.name, di.target, di.cc_major,
         di.cc_minor, (double)di.total_memory / (1 << 30), di.driver_version);
  char want[64];
  snprintf(want, sizeof want, "sm_%d%d", di.cc_major, di.cc_minor);
  RT_CHECK(di.kind == VXRT_CUDA && di.name[0] && strcmp(di.target, want) == 0 &&
               di.cc_major >= 5 && di.total_memory > 0 && di.driver_version >= 11000,
           "device info");

  vxrt_device *other = NULL;
  RT_EXPECT(vxrt_device_open(VXRT_CUDA, 99, &other), VXRT_ERR_NO_DEVICE, "no CUDA device 99");
  RT_EXPECT(vxrt_device_open(VXRT_CUDA, 0, &other), VXRT_OK, NULL); /* a second context */
  RT_EXPECT(vxrt_device_close(other), VXRT_OK, NULL);

  /* PTX for sm_80 runs on any newer GPU through the driver's JIT. */
  rt_blob b = ptx_artifact("sm_80", good_ptx, "vxt_fill");
  vxrt_policy *pol = NULL;
  if (RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_OK, NULL)) {
    vxrt_policy_info info;
    vxrt_kernel_info k;
    vxrt_policy_get_info(pol, &info);
    RT_EXPECT(vxrt_policy_get_kernel(pol, 0, &k), VXRT_OK, NULL);
    RT_CHECK(strcmp(info.target, "sm_80") == 0 && k.handle != NULL, "PTX kernel resolved");
    RT_EXPECT(vxrt_device_close(dev), VXRT_ERR_STATE, "live");
    RT_EXPECT(vxrt_policy_free(pol), VXRT_OK, NULL);
  }
  free(b.data);
  /* An entry the module lacks. */
  b = ptx_artifact("sm_80", good_ptx, "vxt_missing");
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_ERR_LOAD,
            "has no kernel 'vxt_missing'");
  free(b.data);
  /* Broken PTX: the JIT's error log is part of the message. */
  b = ptx_artifact("sm_80", bad_ptx, "vxt_fill");
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_ERR_LOAD,
            "PTX of target sm_80 failed to load");
  printf("broken PTX message: %s\n", vxrt_last_error());
  RT_CHECK(strstr(vxrt_last_error(), "frobnicate") != NULL, "JIT log in the message");
  RT_CHECK(strstr(vxrt_last_error(), "cuModuleLoadDataEx failed: CUDA_ERROR_INVALID_PTX") != NULL,
           "driver error name in the message");
  free(b.data);
  /* PTX for a newer GPU than this one, and host code only: nothing to run. */
  b = ptx_artifact("sm_999", good_ptx, "vxt_fill");
  snprintf(want, sizeof want, "this device needs %s", di.target);
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_ERR_TARGET, want);
  free(b.data);
  b = rt_build(VXT_SO_A, "x86_64-linux", NULL);
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_ERR_TARGET,
            "artifact has targets [x86_64-linux]");
  free(b.data);
  RT_EXPECT(vxrt_device_close(dev), VXRT_OK, NULL);
  return rt_finish();
}
