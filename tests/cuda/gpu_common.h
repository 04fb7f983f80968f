/* gpu_common.h - what the GPU test programs of tests/cuda share: opening the CUDA device
 * (exit 77, CTest's skip code, without a driver or GPU), reading the shapes an artifact has
 * GPU kernels for, compiling a policy with vxc, and test data that bf16 represents exactly.
 * Header-only, for tests/cuda only; not part of libvxrt. */
#ifndef GPU_COMMON_H
#define GPU_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifact.h"
#include "vxrt.h"

enum { GPU_SKIP = 77, GPU_MAX_SHAPES = 64 };

/* The CUDA device, or NULL after printing why there is none (then exit GPU_SKIP). */
static inline vxrt_device *gpu_open(void) {
  vxrt_device *dev = NULL;
  vxrt_status st = vxrt_device_open(VXRT_CUDA, 0, &dev);
  if (st) {
    printf("SKIP: %s\n", vxrt_last_error());
    return NULL;
  }
  vxrt_device_info di;
  vxrt_device_get_info(dev, &di);
  printf("device: %s (%s), driver %d\n", di.name, di.target, di.driver_version);
  return dev;
}

typedef struct gpu_shape {
  int D, G, P;
  vxrt_dtype kv;
  char name[64];
} gpu_shape;

/* "d128g4p16_bf16" -> shape; 0 if it is not one. */
static inline int gpu_parse_shape(const char *s, gpu_shape *out) {
  char dt[16];
  if (sscanf(s, "d%dg%dp%d_%15s", &out->D, &out->G, &out->P, dt) != 4) return 0;
  out->kv = !strcmp(dt, "f32") ? VXRT_F32 : !strcmp(dt, "f16") ? VXRT_F16 : !strcmp(dt, "bf16") ? VXRT_BF16 : (vxrt_dtype)-1;
  snprintf(out->name, sizeof out->name, "%s", s);
  return (int)out->kv >= 0;
}

/* The shapes of the artifact's first PTX target; returns how many (0 with a message if it
 * cannot be read or has none). */
static inline int gpu_artifact_shapes(const char *path, gpu_shape *shapes, int cap) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    printf("FAIL: cannot open %s\n", path);
    return 0;
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
  size_t got = buf ? fread(buf, 1, (size_t)(n > 0 ? n : 0), f) : 0;
  fclose(f);
  art_manifest *m = NULL;
  art_error err;
  int count = 0;
  if (art_parse(buf, got, &m, &err) != ART_OK) {
    printf("FAIL: %s: %s\n", path, err.msg);
  } else {
    for (int i = 0; i < m->ntargets && !count; i++)
      for (int j = 0; m->targets[i].kind == ART_PTX && j < m->targets[i].nshapes && count < cap; j++)
        count += gpu_parse_shape(m->targets[i].shapes[j], &shapes[count]);
    if (!count) printf("FAIL: %s has no PTX target with shapes (compile with vxc --target sm_90 --shape ...)\n", path);
    art_manifest_free(m);
  }
  free(buf);
  return count;
}

/* vxc POLICY --target sm_90 --shape S... -o OUT; returns 0 on success. */
static inline int gpu_compile(const char *vxc, const char *policy, const char *const *shapes, int nshapes,
                              const char *out) {
  char cmd[8192];
  int n = snprintf(cmd, sizeof cmd, "'%s' '%s' --target sm_90", vxc, policy);
  for (int i = 0; i < nshapes && n < (int)sizeof cmd; i++)
    n += snprintf(cmd + n, sizeof cmd - (size_t)n, " --shape %s", shapes[i]);
  snprintf(cmd + n, sizeof cmd - (size_t)n, " -o '%s'", out);
  printf("compiling: %s\n", cmd);
  return system(cmd);
}

/* Deterministic values (about N(0, 1)) rounded to bf16, so f32 and bf16 copies agree. */
static inline float gpu_value(uint64_t *s) {
  float sum = 0;
  for (int i = 0; i < 4; i++) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    sum += (float)(*s >> 40) / (float)(1ull << 24) - 0.5f;
  }
  float x = sum * 1.7320508f;
  uint16_t h;
  vxrt_convert_from_f32(VXRT_BF16, &x, &h, 1);
  vxrt_convert_to_f32(VXRT_BF16, &h, &x, 1);
  return x;
}

static inline void gpu_fill(float *x, size_t n, uint64_t *s) {
  for (size_t i = 0; i < n; i++) x[i] = gpu_value(s);
}

#endif
