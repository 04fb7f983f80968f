/* test_hostcode.c - host code embedded in an artifact, loaded for real and called.
 *
 * Two shared objects built from kernels_so.c at test time (VXT_SO_A, VXT_SO_B: same symbols,
 * different behaviour) are embedded with the artifact writer, loaded through
 * vxrt_policy_load (memfd + dlopen of /proc/self/fd/N), and their kernel entries are called.
 * Also: both loaded at once stay distinct (the loader must not hand back the first library
 * for the second), a freed policy's fd reuse does not confuse the loader, each loaded copy
 * has its own static state, and a missing entry / non-ELF / broken ELF section is an error.
 */
#include <elf.h>
#include <stdlib.h>

#include "rt_fixture.h"

typedef int (*add_fn)(int, int);
typedef const char *(*name_fn)(void);
typedef int (*count_fn)(void);

static vxrt_device *cpu;
static const char *host;

/* Kernel `index` of pol as a function pointer (POSIX: object and function pointers agree). */
static void *kernel(vxrt_policy *pol, int index) {
  vxrt_kernel_info k;
  if (vxrt_policy_get_kernel(pol, index, &k) != VXRT_OK) return NULL;
  return k.handle;
}

static vxrt_policy *load_so(const char *so_path, const vxrt_param_override *o, int n) {
  rt_blob b = rt_build(so_path, host, NULL);
  vxrt_policy *pol = NULL;
  if (!b.data) return NULL;
  RT_EXPECT(vxrt_policy_load(cpu, b.data, b.len, o, n, &pol), VXRT_OK, NULL);
  /* The artifact buffer may go right away: the policy must not point into it. */
  memset(b.data, 0xAB, b.len);
  free(b.data);
  return pol;
}

static void test_call(void) {
  vxrt_policy *a = load_so(VXT_SO_A, NULL, 0);
  if (!a) return;
  add_fn add;
  name_fn name;
  count_fn count;
  void *p = kernel(a, 0);
  memcpy(&add, &p, sizeof p);
  p = kernel(a, 1);
  memcpy(&name, &p, sizeof p);
  p = kernel(a, 2);
  memcpy(&count, &p, sizeof p);
  RT_CHECK(add && add(2, 3) == 5, "a: vxt_add(2, 3)");
  RT_CHECK(name && strcmp(name(), "a") == 0, "a: vxt_name()");
  RT_CHECK(count && count() == 1 && count() == 2, "a: vxt_count()");

  /* A second policy with the same symbol names, loaded while the first is alive. */
  vxrt_policy *b = load_so(VXT_SO_B, NULL, 0);
  if (b) {
    add_fn addb;
    name_fn nameb;
    count_fn countb;
    p = kernel(b, 0);
    memcpy(&addb, &p, sizeof p);
    p = kernel(b, 1);
    memcpy(&nameb, &p, sizeof p);
    p = kernel(b, 2);
    memcpy(&countb, &p, sizeof p);
    RT_CHECK(addb && addb(2, 3) == 1005, "b: vxt_add(2, 3) = %d", addb ? addb(2, 3) : -1);
    RT_CHECK(nameb && strcmp(nameb(), "b") == 0, "b: vxt_name()");
    RT_CHECK(addb != add, "two loaded policies share code");
    RT_CHECK(countb && countb() == 1, "b has its own state");
    RT_CHECK(add(2, 3) == 5 && count() == 3, "a unaffected by b");
  }

  /* The same library loaded twice gets two copies (two memfds), each with its own state. */
  vxrt_policy *a2 = load_so(VXT_SO_A, NULL, 0);
  if (a2) {
    count_fn count2;
    p = kernel(a2, 2);
    memcpy(&count2, &p, sizeof p);
    RT_CHECK(count2 && count2() == 1, "second copy of a has fresh state");
  }
  vxrt_policy_free(a);
  /* a's fd number is free again: the next load may get it and must still get its own code. */
  vxrt_policy *b2 = load_so(VXT_SO_B, NULL, 0);
  if (b2) {
    add_fn addb2;
    p = kernel(b2, 0);
    memcpy(&addb2, &p, sizeof p);
    RT_CHECK(addb2 && addb2(1, 1) == 1002, "b2: vxt_add(1, 1)");
  }
  vxrt_policy_free(b2);
  vxrt_policy_free(a2);
  vxrt_policy_free(b);
}

static void test_errors(void) {
  rt_blob so = rt_read_file(VXT_SO_A);
  if (!so.data) return;
  art_target t[1] = {{.name = host, .kind = ART_HOST_SO, .data = so.data, .size = so.len}};
  art_manifest m = rt_manifest(t, 1);
  vxrt_policy *pol = NULL;

  /* A kernel whose entry the library does not export. */
  art_kernel ks[2] = {{"add", ART_K_SELECT, "vxt_add"}, {"attend", ART_K_ATTEND, "vxt_attend"}};
  m.kernels = ks;
  m.nkernels = 2;
  rt_blob b = rt_write(&m);
  RT_EXPECT(vxrt_policy_load(cpu, b.data, b.len, NULL, 0, &pol), VXRT_ERR_LOAD,
            "has no symbol 'vxt_attend' (kernel attend)");
  free(b.data);
  m.kernels = rt_kernels;
  m.nkernels = 3;

  /* Not an ELF file at all. */
  static const unsigned char text[] = "this is not a shared object, it is text";
  t[0].data = text;
  t[0].size = sizeof text;
  b = rt_write(&m);
  RT_EXPECT(vxrt_policy_load(cpu, b.data, b.len, NULL, 0, &pol), VXRT_ERR_LOAD,
            "is not an ELF shared object");
  free(b.data);

  /* ELF magic, then garbage (with a valid checksum: the loader must still refuse). */
  unsigned char junk[4096];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 131 + 7);
  memcpy(junk, "\177ELF", 4);
  t[0].data = junk;
  t[0].size = sizeof junk;
  b = rt_write(&m);
  RT_EXPECT(vxrt_policy_load(cpu, b.data, b.len, NULL, 0, &pol), VXRT_ERR_LOAD,
            "not a 64-bit shared object for this machine");
  free(b.data);

  /* Cut-off copies of a real library (valid checksums): a cut inside a loadable segment
   * makes dlopen itself fault, a cut elsewhere makes tools that read the file fault; the
   * loader must refuse them all first. */
  const uint64_t cuts[] = {so.len - 1, so.len * 3 / 4, so.len / 2, so.len / 4, 200};
  for (int i = 0; i < 5; i++) {
    t[0].data = so.data;
    t[0].size = cuts[i];
    b = rt_write(&m);
    RT_EXPECT(vxrt_policy_load(cpu, b.data, b.len, NULL, 0, &pol), VXRT_ERR_LOAD,
              "truncated shared object?");
    free(b.data);
  }
  t[0].size = 30;
  b = rt_write(&m);
  RT_EXPECT(vxrt_policy_load(cpu, b.data, b.len, NULL, 0, &pol), VXRT_ERR_LOAD, "not an ELF");
  free(b.data);
  /* A shared object for another machine. */
  unsigned char *other = malloc(so.len);
  memcpy(other, so.data, so.len);
  other[18] = 0xb7; /* e_machine = EM_AARCH64 (or anything but ours) */
  other[19] = 0;
  if (((Elf64_Ehdr *)so.data)->e_machine == 0xb7) other[18] = 0x3e;
  t[0].data = other;
  t[0].size = so.len;
  b = rt_write(&m);
  RT_EXPECT(vxrt_policy_load(cpu, b.data, b.len, NULL, 0, &pol), VXRT_ERR_LOAD,
            "not a 64-bit shared object for this machine");
  free(b.data);
  free(other);
  free(so.data);
  RT_CHECK(pol == NULL, "no policy after failures");
}

static void test_device_busy(void) {
  vxrt_policy *a = load_so(VXT_SO_A, NULL, 0);
  RT_EXPECT(vxrt_device_close(cpu), VXRT_ERR_STATE, "1 live");
  RT_EXPECT(vxrt_policy_free(a), VXRT_OK, NULL);
  RT_EXPECT(vxrt_policy_free(NULL), VXRT_OK, NULL);
}

int main(void) {
  if (!RT_EXPECT(vxrt_device_open(VXRT_CPU, 0, &cpu), VXRT_OK, NULL)) return rt_finish();
  vxrt_device_info di;
  vxrt_device_get_info(cpu, &di);
  static char target[32];
  snprintf(target, sizeof target, "%s", di.target);
  host = target;
  RT_CHECK(di.kind == VXRT_CPU && strncmp(di.name, "cpu", 3) == 0, "CPU info: %s", di.name);
  vxrt_device *other = NULL;
  RT_EXPECT(vxrt_device_open(VXRT_CPU, 1, &other), VXRT_ERR_NO_DEVICE, "no CPU device 1");
  RT_EXPECT(vxrt_device_open((vxrt_device_kind)7, 0, &other), VXRT_ERR_INVALID_ARG, "unknown");
  RT_CHECK(other == NULL, "no device on failure");
  test_call();
  test_errors();
  test_device_busy();
  RT_EXPECT(vxrt_device_close(cpu), VXRT_OK, NULL);
  return rt_finish();
}
