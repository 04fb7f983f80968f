/* rt_fixture.h - builds the artifacts the runtime tests load (tests/runtime only).
 *
 * rt_build() writes a valid artifact with a quest-like manifest (two params, three fields,
 * three kernels) around any set of code sections: real shared objects from kernels_so.c for
 * the host target, arbitrary bytes for others. rt_reseal() swaps in another manifest text
 * with a correct header, so tests can hand the JSON validator any text they like.
 */
#ifndef RT_FIXTURE_H
#define RT_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "artifact.h"
#include "rt_check.h"

typedef struct rt_blob {
  unsigned char *data;
  size_t len;
} rt_blob;

static inline rt_blob rt_read_file(const char *path) {
  rt_blob b = {NULL, 0};
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    return b;
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  b.data = malloc(n > 0 ? (size_t)n : 1);
  if (b.data && n > 0 && fread(b.data, 1, (size_t)n, f) == (size_t)n) b.len = (size_t)n;
  fclose(f);
  return b;
}

static const char *const rt_axes_c[] = {"D"};
static const char *const rt_axes_w[] = {"D", "L", "K"};

static art_param rt_params[] = {
    {"budget", ART_I32, "tokens", 2048},
    {"scale", ART_F32, "", 0.5},
};
static art_field rt_fields[] = {
    {"kmax", ART_PAGE, "f32", 1, rt_axes_c, NULL, NULL},
    {"kmin", ART_PAGE, "bf16", 1, rt_axes_c, NULL, NULL},
    {"W", ART_CONST, "f32", 3, rt_axes_w, "gaussian", "seed"},
};
static art_kernel rt_kernels[] = {
    {"add", ART_K_SELECT, "vxt_add"},
    {"name", ART_K_ROW, "vxt_name"},
    {"count", ART_K_UPDATE, "vxt_count"},
};

/* The fixture's manifest over `targets`; kernels may be replaced by the caller. */
static inline art_manifest rt_manifest(art_target *targets, int ntargets) {
  art_manifest m;
  memset(&m, 0, sizeof m);
  m.format = ART_FORMAT;
  m.vx_version = "0.1.0-test";
  m.source_hash = "0123456789abcdef";
  m.policy = "quest";
  m.nparams = 2;
  m.params = rt_params;
  m.nfields = 3;
  m.fields = rt_fields;
  m.nkernels = 3;
  m.kernels = rt_kernels;
  m.ntargets = ntargets;
  m.targets = targets;
  return m;
}

static inline rt_blob rt_write(const art_manifest *m) {
  rt_blob b = {NULL, 0};
  art_error err;
  if (art_write(m, &b.data, &b.len, &err) != ART_OK) fprintf(stderr, "art_write: %s\n", err.msg);
  return b;
}

static const char *const rt_shapes[] = {"d128g4p16_bf16", "d64g1p16_f32"};
static const char *const rt_gpu_kernels[] = {"append", "attend"};

/* An artifact with one host-so target (the shared object at so_path) named `host`, plus,
 * if ptx_name is given, a PTX section of dummy text listing rt_shapes and rt_gpu_kernels. */
static inline rt_blob rt_build(const char *so_path, const char *host, const char *ptx_name) {
  rt_blob so = rt_read_file(so_path);
  static const char ptx[] = ".version 8.0\n.target sm_90\n.address_size 64\n";
  art_target t[2];
  memset(t, 0, sizeof t);
  int n = 0;
  if (host) t[n++] = (art_target){.name = host, .kind = ART_HOST_SO, .data = so.data, .size = so.len};
  if (ptx_name)
    t[n++] = (art_target){.name = ptx_name, .kind = ART_PTX, .data = (const unsigned char *)ptx,
                          .size = sizeof ptx - 1, .nshapes = 2, .shapes = rt_shapes,
                          .ngpu_kernels = 2, .gpu_kernels = rt_gpu_kernels};
  art_manifest m = rt_manifest(t, n);
  rt_blob b = rt_write(&m);
  free(so.data);
  return b;
}

/* Little-endian header fields. */
static inline uint32_t rt_rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void rt_wr32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static inline void rt_wr64(unsigned char *p, uint64_t v) {
  rt_wr32(p, (uint32_t)v);
  rt_wr32(p + 4, (uint32_t)(v >> 32));
}

/* The manifest text of an artifact, NUL-terminated (malloc'ed). */
static inline char *rt_manifest_text(const rt_blob *a) {
  uint32_t mlen = rt_rd32(a->data + 12);
  char *s = malloc(mlen + 1);
  memcpy(s, a->data + ART_HEADER_LEN, mlen);
  s[mlen] = '\0';
  return s;
}

/* A copy of artifact `a` with its manifest replaced by `text` and the header fixed up
 * (length, checksum); the sections are kept byte for byte. */
static inline rt_blob rt_reseal(const rt_blob *a, const char *text) {
  uint32_t old = rt_rd32(a->data + 12);
  size_t tail = a->len - ART_HEADER_LEN - old, mlen = strlen(text);
  rt_blob b = {malloc(ART_HEADER_LEN + mlen + tail), ART_HEADER_LEN + mlen + tail};
  memcpy(b.data, a->data, ART_HEADER_LEN);
  rt_wr32(b.data + 12, (uint32_t)mlen);
  rt_wr64(b.data + 16, art_fnv1a64(text, mlen));
  memcpy(b.data + ART_HEADER_LEN, text, mlen);
  memcpy(b.data + ART_HEADER_LEN + mlen, a->data + ART_HEADER_LEN + old, tail);
  return b;
}

#endif /* RT_FIXTURE_H */
