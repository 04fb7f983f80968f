/* kcache.c - the compiled-kernel cache of libvxrt (see kcache.h): file naming, the entry
 * format and its checks. Knows nothing of CUDA; policy.c decides what to compile and store.
 * Never prints, never exits; any file-system failure is a miss. */
#define _GNU_SOURCE
#include "kcache.h"

#include "artifact.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KC_MAGIC "VXCUBIN1"
enum { KC_HEADER = 32, KC_MAX_ENTRY = 1 << 30 };

static uint64_t fnv_more(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t vxrt_kcache_key(const void *ptx, size_t ptx_len, const char *jit_options,
                         int driver_version, const char *device_name, int cc_major,
                         int cc_minor) {
  char meta[512];
  /* The separators keep ("ab", "c") and ("a", "bc") apart. */
  int n = snprintf(meta, sizeof meta, "\n%s\n%d\n%s\n%d.%d\n", jit_options ? jit_options : "",
                   driver_version, device_name ? device_name : "", cc_major, cc_minor);
  uint64_t h = art_fnv1a64(ptx, ptx_len);
  return fnv_more(h, meta, n > 0 ? (size_t)n < sizeof meta ? (size_t)n : sizeof meta - 1 : 0);
}

static int cache_dir(char *buf, size_t cap) {
  const char *off = getenv("VX_KERNEL_CACHE");
  if (off && strcmp(off, "0") == 0) return 0;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n;
  if (xdg && xdg[0] == '/')
    n = snprintf(buf, cap, "%s/vx/kernels", xdg);
  else if (home && home[0])
    n = snprintf(buf, cap, "%s/.cache/vx/kernels", home);
  else
    return 0;
  return n > 0 && (size_t)n < cap;
}

int vxrt_kcache_path(uint64_t key, char *buf, size_t cap) {
  char dir[4096], hex[17];
  if (!cache_dir(dir, sizeof dir)) return 0;
  art_hex64(key, hex);
  int n = snprintf(buf, cap, "%s/%s.cubin", dir, hex);
  return n > 0 && (size_t)n < cap;
}

static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

int vxrt_kcache_load(uint64_t key, void **bytes, size_t *len) {
  char path[4200];
  *bytes = NULL;
  *len = 0;
  if (!vxrt_kcache_path(key, path, sizeof path)) return 0;
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  unsigned char h[KC_HEADER];
  unsigned char *data = NULL;
  int ok = fread(h, 1, KC_HEADER, f) == KC_HEADER && memcmp(h, KC_MAGIC, 8) == 0 &&
           get64(h + 8) == key;
  uint64_t n = ok ? get64(h + 16) : 0;
  ok = ok && n > 0 && n <= KC_MAX_ENTRY && (data = malloc((size_t)n));
  ok = ok && fread(data, 1, (size_t)n, f) == (size_t)n && fgetc(f) == EOF &&
       art_fnv1a64(data, (size_t)n) == get64(h + 24);
  fclose(f);
  if (!ok) {
    free(data);
    unlink(path); /* a bad entry is rebuilt by the caller's JIT and store */
    return 0;
  }
  *bytes = data;
  *len = (size_t)n;
  return 1;
}

/* mkdir -p for the cache directory (0700: compiled code is the user's own). */
static int make_dirs(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    int bad = mkdir(path, 0700) != 0 && errno != EEXIST;
    *p = '/';
    if (bad) return 0;
  }
  return mkdir(path, 0700) == 0 || errno == EEXIST;
}

int vxrt_kcache_store(uint64_t key, const void *bytes, size_t len) {
  char dir[4096], path[4200], tmp[4300];
  if (!bytes || !len || len > KC_MAX_ENTRY || !cache_dir(dir, sizeof dir) ||
      !vxrt_kcache_path(key, path, sizeof path) || !make_dirs(dir))
    return 0;
  /* pid and a per-process counter: two threads storing the same key use two files */
  static atomic_uint serial;
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&serial, 1));
  FILE *f = fopen(tmp, "wb");
  if (!f) return 0;
  unsigned char h[KC_HEADER];
  memcpy(h, KC_MAGIC, 8);
  put64(h + 8, key);
  put64(h + 16, len);
  put64(h + 24, art_fnv1a64(bytes, len));
  int ok = fwrite(h, 1, KC_HEADER, f) == KC_HEADER && fwrite(bytes, 1, len, f) == len;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return 0;
  }
  return 1;
}
