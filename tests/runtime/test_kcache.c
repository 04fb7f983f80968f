/* test_kcache.c - the compiled-kernel cache's files (runtime/kcache.c), without a GPU.
 *
 * Under a private XDG_CACHE_HOME: the key changes with every input; an entry round-trips;
 * a corrupt, truncated, over-long or foreign entry is a miss and is deleted; HOME is the
 * fallback; VX_KERNEL_CACHE=0 turns the cache off; an unwritable directory is a skipped
 * store, not an error. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kcache.h"
#include "rt_check.h"

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* Rewrites the file at path with f applied to its bytes. */
static void edit_file(const char *path, void (*f)(unsigned char *, long *)) {
  FILE *fp = fopen(path, "rb");
  unsigned char buf[4096];
  long n = fp ? (long)fread(buf, 1, sizeof buf - 8, fp) : 0;
  if (fp) fclose(fp);
  f(buf, &n);
  fp = fopen(path, "wb");
  if (fp) {
    fwrite(buf, 1, (size_t)n, fp);
    fclose(fp);
  }
}
static void flip_payload(unsigned char *b, long *n) { b[*n - 1] ^= 1; }
static void truncate_one(unsigned char *b, long *n) { (void)b; (*n)--; }
static void append_one(unsigned char *b, long *n) { b[(*n)++] = 0; }
static void other_key(unsigned char *b, long *n) { (void)n; b[8] ^= 1; }

int main(void) {
  char dir[] = "/tmp/vx-kcache-XXXXXX";
  if (!mkdtemp(dir)) return rt_skip("cannot make a temporary directory");
  setenv("XDG_CACHE_HOME", dir, 1);
  unsetenv("VX_KERNEL_CACHE");
  const char ptx[] = ".version 8.0\n.target sm_90\n";
  uint64_t k = vxrt_kcache_key(ptx, sizeof ptx - 1, "logs", 13000, "NVIDIA H200", 9, 0);
  RT_CHECK(k != vxrt_kcache_key(ptx, sizeof ptx - 2, "logs", 13000, "NVIDIA H200", 9, 0), "PTX in the key");
  RT_CHECK(k != vxrt_kcache_key(ptx, sizeof ptx - 1, "-O2", 13000, "NVIDIA H200", 9, 0), "options in the key");
  RT_CHECK(k != vxrt_kcache_key(ptx, sizeof ptx - 1, "logs", 12080, "NVIDIA H200", 9, 0), "driver in the key");
  RT_CHECK(k != vxrt_kcache_key(ptx, sizeof ptx - 1, "logs", 13000, "NVIDIA H100", 9, 0), "device in the key");
  RT_CHECK(k != vxrt_kcache_key(ptx, sizeof ptx - 1, "logs", 13000, "NVIDIA H200", 8, 0), "cc in the key");

  char path[4200], want[4200];
  RT_CHECK(vxrt_kcache_path(k, path, sizeof path), "a path");
  snprintf(want, sizeof want, "%s/vx/kernels/", dir);
  RT_CHECK(strncmp(path, want, strlen(want)) == 0 && strstr(path, ".cubin"), "under XDG_CACHE_HOME: %s", path);

  void *got;
  size_t len;
  RT_CHECK(!vxrt_kcache_load(k, &got, &len), "a miss before any store");
  const char cubin[] = "\177ELF pretend cubin bytes";
  RT_CHECK(vxrt_kcache_store(k, cubin, sizeof cubin), "store");
  RT_CHECK(vxrt_kcache_load(k, &got, &len) && len == sizeof cubin && memcmp(got, cubin, len) == 0, "round trip");
  free(got);

  void (*edits[])(unsigned char *, long *) = {flip_payload, truncate_one, append_one, other_key};
  const char *names[] = {"corrupt payload", "truncated", "trailing byte", "another key's entry"};
  for (int i = 0; i < 4; i++) {
    vxrt_kcache_store(k, cubin, sizeof cubin);
    edit_file(path, edits[i]);
    RT_CHECK(!vxrt_kcache_load(k, &got, &len), "%s is a miss", names[i]);
    RT_CHECK(!exists(path), "%s is deleted", names[i]);
  }
  RT_CHECK(vxrt_kcache_store(k, cubin, sizeof cubin) && vxrt_kcache_load(k, &got, &len), "rebuilt after a bad entry");
  free(got);

  setenv("VX_KERNEL_CACHE", "0", 1);
  RT_CHECK(!vxrt_kcache_path(k, path, sizeof path) && !vxrt_kcache_load(k, &got, &len) &&
               !vxrt_kcache_store(k, cubin, sizeof cubin),
           "VX_KERNEL_CACHE=0 turns it off");
  unsetenv("VX_KERNEL_CACHE");

  unsetenv("XDG_CACHE_HOME");
  setenv("HOME", dir, 1);
  RT_CHECK(vxrt_kcache_path(k, path, sizeof path), "HOME fallback");
  snprintf(want, sizeof want, "%s/.cache/vx/kernels/", dir);
  RT_CHECK(strncmp(path, want, strlen(want)) == 0, "under ~/.cache: %s", path);

  /* A cache directory that cannot be made: the store is skipped. */
  char blocker[4200];
  snprintf(blocker, sizeof blocker, "%s/file", dir);
  FILE *f = fopen(blocker, "w");
  if (f) fclose(f);
  setenv("XDG_CACHE_HOME", blocker, 1);
  RT_CHECK(!vxrt_kcache_store(k, cubin, sizeof cubin) && !vxrt_kcache_load(k, &got, &len),
           "an unusable directory is a skipped store and a miss");

  char cmd[4300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  RT_CHECK(system(cmd) == 0, "clean up");
  return rt_finish();
}
