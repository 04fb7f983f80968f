/* test_cuda_device.c - opening a CUDA device through the dlopen'ed driver, loading PTX, and
 * the CUDA executor's plumbing with hand-written kernels.
 *
 * Without a driver or GPU: checks the error is the documented one and exits 77 (CTest
 * SKIP_RETURN_CODE), so CI machines skip it cleanly. With a GPU: device info (name, sm
 * target, memory), a bad ordinal, two devices open at once; policies whose GPU code is PTX
 * beside host code: a module for an older sm loads (driver JIT) and a second load takes the
 * cubin from the compiled-kernel cache (a corrupt entry is rebuilt), broken PTX fails with
 * the JIT log in the message, an artifact without host code or without PTX for this GPU is
 * refused, a cache shape without kernels is VXRT_ERR_UNSUPPORTED listing the shapes; then
 * states, a batched step, a captured graph and the per-row path launch the hand-written
 * entries (attend writes 1.0 at OUT[blockIdx.x]), and a batch too large for the device is
 * VXRT_ERR_OUT_OF_MEMORY with the sizes.
 */
#include <stdlib.h>
#include <unistd.h>

#include "kcache.h"
#include "rt_fixture.h"
#include "vxk_gpu.h"

/* Entries "vxg_append__<shape>" (does nothing) and "vxg_attend__<shape>" (thread 0 of each
 * CTA writes 1.0f to OUT[blockIdx.x]) for two shapes, in PTX ISA 8.0 for sm_80. */
static const char *good_ptx(void) {
  static char buf[8192];
  static const char *const shapes[] = {"d64g1p16_f32", "d1g1p1_f32"};
  int n = snprintf(buf, sizeof buf, ".version 8.0\n.target sm_80\n.address_size 64\n\n");
  for (int i = 0; i < 2; i++)
    n += snprintf(buf + n, sizeof buf - (size_t)n,
                  ".visible .entry vxg_append__%s(.param .align 8 .b8 a[%d])\n{\n  ret;\n}\n\n"
                  ".visible .entry vxg_attend__%s(.param .align 8 .b8 a[%d])\n{\n"
                  "  .reg .b32 %%r<3>;\n  .reg .b64 %%rd<5>;\n  .reg .pred %%p<2>;\n"
                  "  ld.param.u64 %%rd1, [a+%d];\n  mov.u32 %%r1, %%tid.x;\n"
                  "  setp.ne.u32 %%p1, %%r1, 0;\n  @%%p1 bra DONE;\n  mov.u32 %%r2, %%ctaid.x;\n"
                  "  cvta.to.global.u64 %%rd2, %%rd1;\n  mul.wide.u32 %%rd3, %%r2, 4;\n"
                  "  add.s64 %%rd4, %%rd2, %%rd3;\n  st.global.f32 [%%rd4], 0f3F800000;\n"
                  "DONE:\n  ret;\n}\n\n",
                  shapes[i], 8 * VXK_GPU_NARGS, shapes[i], 8 * VXK_GPU_NARGS, 8 * VXK_GPU_OUT);
  return buf;
}

static const char bad_ptx[] =
    ".version 8.0\n.target sm_80\n.address_size 64\n\n"
    ".visible .entry vxg_attend__d64g1p16_f32(.param .u64 p)\n{\n  frobnicate.u32 %r1;\n  ret;\n}\n";

static const char *const shapes[] = {"d64g1p16_f32", "d1g1p1_f32"};
static const char *const kinds[] = {"append", "attend"};

/* Host code (kernels_so.c, no manifest kernels) + PTX for `target` listing both shapes. */
static rt_blob gpu_artifact(const char *host, const char *target, const char *ptx) {
  rt_blob so = rt_read_file(VXT_SO_A);
  static const char *const axes[] = {"G", "D"};
  art_field fields[1] = {{"q", ART_INPUT, "f32", 2, axes, NULL, NULL}};
  art_target t[2];
  memset(t, 0, sizeof t);
  int n = 0;
  if (host) t[n++] = (art_target){.name = host, .kind = ART_HOST_SO, .data = so.data, .size = so.len};
  t[n++] = (art_target){.name = target, .kind = ART_PTX, .data = (const unsigned char *)ptx,
                        .size = strlen(ptx), .nshapes = 2, .shapes = shapes,
                        .ngpu_kernels = 2, .gpu_kernels = kinds};
  art_manifest m = rt_manifest(t, n);
  m.policy = "dense";
  m.nparams = 0;
  m.nfields = 1;
  m.fields = fields;
  m.nkernels = 0;
  rt_blob b = rt_write(&m);
  free(so.data);
  return b;
}

static void device_info(vxrt_device *dev, vxrt_device_info *di) {
  RT_EXPECT(vxrt_device_get_info(dev, di), VXRT_OK, NULL);
  printf("device: %s, %s, cc %d.%d, %.1f GiB, driver %d\n", di->name, di->target, di->cc_major,
         di->cc_minor, (double)di->total_memory / (1 << 30), di->driver_version);
  char want[64];
  snprintf(want, sizeof want, "sm_%d%d", di->cc_major, di->cc_minor);
  RT_CHECK(di->kind == VXRT_CUDA && di->name[0] && strcmp(di->target, want) == 0 &&
               di->cc_major >= 5 && di->total_memory > 0 && di->driver_version >= 11000,
           "device info");
  vxrt_device *other = NULL;
  RT_EXPECT(vxrt_device_open(VXRT_CUDA, 99, &other), VXRT_ERR_NO_DEVICE, "no CUDA device 99");
  RT_EXPECT(vxrt_device_open(VXRT_CUDA, 0, &other), VXRT_OK, NULL); /* a second context */
  RT_EXPECT(vxrt_device_close(other), VXRT_OK, NULL);
}

/* Loading: JIT, the kernel cache, refusals. */
static void loading(vxrt_device *dev, const vxrt_device_info *di, const char *host) {
  rt_blob b = gpu_artifact(host, "sm_80", good_ptx());
  vxrt_policy *pol = NULL;
  uint64_t key = vxrt_kcache_key(good_ptx(), strlen(good_ptx()), "logs", di->driver_version,
                                 di->name, di->cc_major, di->cc_minor);
  char path[4200];
  RT_CHECK(vxrt_kcache_path(key, path, sizeof path), "kernel cache path");
  if (RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_OK, NULL)) {
    vxrt_policy_info info;
    vxrt_policy_get_info(pol, &info);
    RT_CHECK(strcmp(info.target, "sm_80") == 0, "PTX target sm_80 chosen: %s", info.target);
    RT_CHECK(access(path, F_OK) == 0, "the cubin was stored at %s", path);
    RT_EXPECT(vxrt_device_close(dev), VXRT_ERR_STATE, "live");
    RT_EXPECT(vxrt_policy_free(pol), VXRT_OK, NULL);
  }
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_OK, NULL); /* a cache hit */
  vxrt_policy_free(pol);
  FILE *f = fopen(path, "r+b");
  if (f) {
    fseek(f, 40, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
  }
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_OK, NULL); /* rebuilt */
  void *cubin = NULL;
  size_t len;
  RT_CHECK(vxrt_kcache_load(key, &cubin, &len), "a corrupt entry was rebuilt");
  free(cubin);
  vxrt_policy_free(pol);
  free(b.data);
  /* Broken PTX: the JIT's error log is part of the message. */
  b = gpu_artifact(host, "sm_80", bad_ptx);
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_ERR_LOAD,
            "PTX of target sm_80 failed to load");
  printf("broken PTX message: %s\n", vxrt_last_error());
  RT_CHECK(strstr(vxrt_last_error(), "frobnicate") != NULL, "JIT log in the message");
  RT_CHECK(strstr(vxrt_last_error(), "CUDA_ERROR_INVALID_PTX") != NULL, "driver error name in the message");
  free(b.data);
  /* PTX for a newer GPU than this one; no host code; host code only. */
  char want[128];
  b = gpu_artifact(host, "sm_999", good_ptx());
  snprintf(want, sizeof want, "this device needs %s", di->target);
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_ERR_TARGET, want);
  free(b.data);
  b = gpu_artifact(NULL, "sm_80", good_ptx());
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_ERR_TARGET, "no host code for");
  free(b.data);
  b = rt_build(VXT_SO_A, host, NULL);
  snprintf(want, sizeof want, "artifact has targets [%s]", host);
  RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_ERR_TARGET, want);
  free(b.data);
}

/* States, a batched step, a graph, the per-row path, a batch too large. */
static void running(vxrt_device *dev, const char *host_target) {
  rt_blob b = gpu_artifact(host_target, "sm_80", good_ptx());
  vxrt_policy *pol = NULL;
  if (!RT_EXPECT(vxrt_policy_load(dev, b.data, b.len, NULL, 0, &pol), VXRT_OK, NULL)) {
    free(b.data);
    return;
  }
  vxrt_cache_desc wrong = {1, 2, 128, 16, VXRT_F32, 64, 4, 16};
  vxrt_cache *cache = NULL;
  vxrt_state *st = NULL;
  RT_EXPECT(vxrt_cache_create(dev, &wrong, &cache), VXRT_OK, NULL);
  RT_EXPECT(vxrt_state_create(pol, cache, 1, &st), VXRT_ERR_UNSUPPORTED,
            "no GPU kernels for the cache shape d128g1p16_f32");
  RT_CHECK(strstr(vxrt_last_error(), "[d64g1p16_f32, d1g1p1_f32]") != NULL, "shapes listed: %s", vxrt_last_error());
  vxrt_cache_free(cache);

  enum { H = 2, D = 64, P = 16, ROWS = 3 };
  vxrt_cache_desc cd = {2, H, D, P, VXRT_F32, 64, 4, 16};
  RT_EXPECT(vxrt_cache_create(dev, &cd, &cache), VXRT_OK, NULL);
  if (!RT_EXPECT(vxrt_state_create(pol, cache, 1, &st), VXRT_OK, NULL)) goto done;
  int rows[ROWS];
  float kv[40 * H * D];
  for (int i = 0; i < 40 * H * D; i++) kv[i] = (float)(i % 7) - 3.0f;
  for (int r = 0; r < ROWS; r++) {
    RT_EXPECT(vxrt_row_open(cache, &rows[r]), VXRT_OK, NULL);
    for (int l = 0; l < 2; l++) {
      RT_EXPECT(vxrt_append(cache, rows[r], l, kv, kv, 10 + 13 * r), VXRT_OK, NULL);
      RT_EXPECT(vxrt_prefill(st, rows[r], l), VXRT_OK, NULL);
    }
  }
  /* The per-row path: out[0] of the one row's scratch is what attend wrote. */
  float q[H * D] = {0}, out[H * D] = {0}, lse[H];
  RT_EXPECT(vxrt_select(st, rows[0], 1, q, NULL), VXRT_OK, NULL);
  RT_EXPECT(vxrt_attend(st, rows[0], 1, q, out, lse), VXRT_OK, NULL);
  RT_CHECK(out[0] == 1.0f && out[1] == 1.0f, "per-row attend ran (rows 0, 1): %g %g", out[0], out[1]);

  vxrt_stream *s = NULL;
  vxrt_batch *bt = NULL;
  RT_EXPECT(vxrt_stream_create(dev, &s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_create(st, ROWS, &bt), VXRT_OK, NULL);
  uint64_t dq = 0, dout = 0, dk = 0;
  size_t qbytes = sizeof(float) * ROWS * H * D;
  RT_EXPECT(vxrt_buffer_alloc(dev, qbytes, &dq), VXRT_OK, NULL);
  RT_EXPECT(vxrt_buffer_alloc(dev, qbytes, &dout), VXRT_OK, NULL);
  RT_EXPECT(vxrt_buffer_alloc(dev, qbytes, &dk), VXRT_OK, NULL);
  float *host = calloc(ROWS * H * D, sizeof(float));
  RT_EXPECT(vxrt_buffer_upload(dev, dout, host, qbytes), VXRT_OK, NULL);
  vxrt_dbuf Q = {dq, VXRT_F32}, O = {dout, VXRT_F32}, K = {dk, VXRT_F32}, none = {0, VXRT_F32};
  int closed = 3;
  RT_EXPECT(vxrt_batch_set_rows(bt, &closed, 1), VXRT_ERR_STATE, "row 3 is not open");
  RT_EXPECT(vxrt_batch_set_rows(bt, rows, ROWS), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_decode_attend(bt, 0, Q, O, none, s), VXRT_ERR_STATE, "vxrt_decode_select");
  for (int l = 0; l < 2; l++) {
    RT_EXPECT(vxrt_decode_append(bt, l, K, K, s), VXRT_OK, NULL);
    RT_EXPECT(vxrt_decode_select(bt, l, Q, s), VXRT_OK, NULL);
    RT_EXPECT(vxrt_decode_attend(bt, l, Q, O, none, s), VXRT_OK, NULL);
  }
  RT_EXPECT(vxrt_stream_sync(s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);
  RT_EXPECT(vxrt_buffer_download(dev, host, dout, qbytes), VXRT_OK, NULL);
  int ran = 1;
  for (int i = 0; i < ROWS * H; i++) ran &= host[i] == 1.0f;
  RT_CHECK(ran && host[ROWS * H] == 0.0f, "batched attend ran once per row");
  int64_t len;
  vxrt_row_length(cache, rows[2], 1, &len);
  RT_CHECK(len == 10 + 13 * 2 + 1, "commit added the token: %lld", (long long)len);

  /* A graph of the step's launches, replayed after a prepare. */
  memset(host, 0, qbytes);
  RT_EXPECT(vxrt_buffer_upload(dev, dout, host, qbytes), VXRT_OK, NULL);
  vxrt_graph *g = NULL;
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_graph_begin(s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_prepare(bt, 1, s), VXRT_ERR_STATE, "commit"); /* prepared already */
  for (int l = 0; l < 2; l++) {
    vxrt_decode_append(bt, l, K, K, s);
    vxrt_decode_select(bt, l, Q, s);
    vxrt_decode_attend(bt, l, Q, O, none, s);
  }
  RT_EXPECT(vxrt_graph_end(s, &g), VXRT_OK, NULL);
  RT_EXPECT(vxrt_buffer_download(dev, host, dout, qbytes), VXRT_OK, NULL);
  RT_CHECK(host[0] == 0.0f, "capturing launches nothing");
  RT_EXPECT(vxrt_graph_launch(g, s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_stream_sync(s), VXRT_OK, NULL);
  RT_EXPECT(vxrt_batch_commit(bt), VXRT_OK, NULL);
  RT_EXPECT(vxrt_buffer_download(dev, host, dout, qbytes), VXRT_OK, NULL);
  RT_CHECK(host[0] == 1.0f && host[ROWS * H - 1] == 1.0f, "the graph replayed the launches");
  RT_EXPECT(vxrt_graph_free(g), VXRT_OK, NULL);
  free(host);
  vxrt_buffer_free(dev, dq);
  vxrt_buffer_free(dev, dout);
  vxrt_buffer_free(dev, dk);
  vxrt_batch_free(bt);
  vxrt_stream_free(s);
  vxrt_state_free(st);
  vxrt_cache_free(cache);

  /* More device memory than there is: a batch over 2^20-page rows of 8 heads. */
  vxrt_cache_desc huge = {1, 8, 1, 1, VXRT_F32, 1 << 20, 4096, 0};
  if (RT_EXPECT(vxrt_cache_create(dev, &huge, &cache), VXRT_OK, NULL)) {
    if (RT_EXPECT(vxrt_state_create(pol, cache, 1, &st), VXRT_OK, NULL)) {
      RT_EXPECT(vxrt_batch_create(st, 4096, &bt), VXRT_ERR_OUT_OF_MEMORY, "4096 slots x 8 KV heads need");
      printf("OOM message: %s\n", vxrt_last_error());
      vxrt_state_free(st);
    }
    vxrt_cache_free(cache);
  }
done:
  vxrt_policy_free(pol);
  free(b.data);
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
  char dir[] = "/tmp/vx-cuda-kcache-XXXXXX";
  if (mkdtemp(dir)) setenv("XDG_CACHE_HOME", dir, 1);
  vxrt_device_info di;
  device_info(dev, &di);
  vxrt_device *cpu = NULL;
  vxrt_device_info ci;
  vxrt_device_open(VXRT_CPU, 0, &cpu);
  vxrt_device_get_info(cpu, &ci);
  vxrt_device_close(cpu);
  loading(dev, &di, ci.target);
  running(dev, ci.target);
  RT_EXPECT(vxrt_device_close(dev), VXRT_OK, NULL);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return rt_finish();
}
