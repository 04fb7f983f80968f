/* policy.c - loading compiled policies into libvxrt: validation, target choice, parameter
 * overrides, and loading the code sections for the device.
 *
 * The artifact is validated by artifact.c; this file picks the sections this device runs
 * (a host shared object for the CPU; PTX and the host shared object for CUDA, whose const,
 * scalars and require kernels run on the host), loads them, and resolves every manifest
 * kernel's entry so that a policy that loads is a policy whose kernels all exist. PTX is
 * compiled by the driver's JIT linker into a cubin, or the cubin is taken from the
 * compiled-kernel cache (kcache.c); GPU entries are resolved per cache shape by
 * vxrt_policy_gpu_function. Host code is loaded
 * without touching the file system: the section goes into an anonymous memfd that is
 * dlopen'ed through /proc/self/fd (with a private temporary file as the fallback where
 * memfds are unavailable). Never prints, never exits; a bad artifact is an error code.
 */
#define _GNU_SOURCE
#include "artifact.h"
#include "kcache.h"
#include "params.h"
#include "vxrt_internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The manifest's enumerations are handed out as the public ones, value for value. */
_Static_assert((int)ART_PAGE == VXRT_STAGE_PAGE && (int)ART_TOKEN == VXRT_STAGE_TOKEN &&
                   (int)ART_ROW == VXRT_STAGE_ROW && (int)ART_CONST == VXRT_STAGE_CONST &&
                   (int)ART_STEP == VXRT_STAGE_STEP && (int)ART_INPUT == VXRT_STAGE_INPUT,
               "art_stage and vxrt_field_stage disagree");
_Static_assert((int)ART_K_APPEND == VXRT_KERNEL_APPEND &&
                   (int)ART_K_SUMMARISE == VXRT_KERNEL_SUMMARISE &&
                   (int)ART_K_ROW == VXRT_KERNEL_ROW && (int)ART_K_SELECT == VXRT_KERNEL_SELECT &&
                   (int)ART_K_ATTEND == VXRT_KERNEL_ATTEND &&
                   (int)ART_K_UPDATE == VXRT_KERNEL_UPDATE &&
                   (int)ART_K_CONST == VXRT_KERNEL_CONST &&
                   (int)ART_K_SCALARS == VXRT_KERNEL_SCALARS &&
                   (int)ART_K_REQUIRE == VXRT_KERNEL_REQUIRE,
               "art_kernel_kind and vxrt_kernel_kind disagree");

struct vxrt_policy {
  vxrt_device *dev;
  art_manifest *man;      /* strings and tables; its targets' data pointers are stale */
  const art_target *target; /* the section for the device: host-so (CPU) or PTX (CUDA) */
  const art_target *host;   /* the host-so whose kernels run (on CUDA too) */
  double *values;         /* parameter values after overrides */
  void **handles;         /* per kernel: host function or CUfunction */
  void *dl;               /* host code: dlopen handle */
  int fd;                 /* host code: the memfd it was loaded from (-1 if none) */
  vxcu_module mod;        /* PTX: the CUDA module */
  char *dir;              /* the artifact's directory (load_file), for load("file") consts */
};

static vxrt_status from_art(art_code c, const char *msg) {
  vxrt_status st;
  switch (c) {
  case ART_OK: return VXRT_OK;
  case ART_EFORMAT: st = VXRT_ERR_FORMAT; break;
  case ART_EVERSION: st = VXRT_ERR_VERSION; break;
  case ART_ECORRUPT: st = VXRT_ERR_CORRUPT; break;
  case ART_ENOMEM: st = VXRT_ERR_OUT_OF_MEMORY; break;
  case ART_EIO: st = VXRT_ERR_IO; break;
  default: st = VXRT_ERR_INVALID_ARG; break;
  }
  return vxrt_fail(st, "%s", msg);
}

/* ------------------------------------------------------------------ target choice */

/* "sm_90" -> 90; -1 for anything else (suffixed names like "sm_90a" are not portable
 * forward, so they only ever match exactly). */
static int sm_number(const char *name) {
  if (strncmp(name, "sm_", 3) != 0) return -1;
  int n = 0, digits = 0;
  for (const char *p = name + 3; *p; p++, digits++) {
    if (*p < '0' || *p > '9' || digits >= 4) return -1;
    n = n * 10 + (*p - '0');
  }
  return digits ? n : -1;
}

/* The CPU runs the host-so named like the host. A GPU runs the PTX for its own sm, or else
 * the newest PTX for an older sm (the driver JIT-compiles PTX forward). */
static vxrt_status choose_target(const vxrt_device *dev, const art_manifest *m,
                                 const art_target **out) {
  const art_target *best = NULL;
  int best_sm = -1;
  int dev_sm = dev->info.cc_major * 10 + dev->info.cc_minor;
  for (int i = 0; i < m->ntargets; i++) {
    const art_target *t = &m->targets[i];
    if (dev->info.kind == VXRT_CPU) {
      if (t->kind == ART_HOST_SO && strcmp(t->name, dev->info.target) == 0) best = t;
      continue;
    }
    if (t->kind != ART_PTX) continue;
    if (strcmp(t->name, dev->info.target) == 0) {
      best = t;
      break;
    }
    int sm = sm_number(t->name);
    if (sm >= 0 && sm <= dev_sm && sm > best_sm) {
      best = t;
      best_sm = sm;
    }
  }
  if (best) {
    *out = best;
    return VXRT_OK;
  }
  char have[256] = "";
  size_t n = 0;
  for (int i = 0; i < m->ntargets && n < sizeof have; i++)
    n += (size_t)snprintf(have + n, sizeof have - n, "%s%s", i ? ", " : "", m->targets[i].name);
  return vxrt_fail(VXRT_ERR_TARGET, "artifact has targets [%s]; this device needs %s%s", have,
                   dev->info.target,
                   dev->info.kind == VXRT_CUDA ? " (PTX for it or an older sm)" : "");
}

/* A CUDA device also runs the host-so for this machine (consts, scalars, requires). */
static vxrt_status choose_host(const vxrt_device *dev, const art_manifest *m,
                               const art_target **out) {
  const char *host = vxrt_host_target();
  for (int i = 0; i < m->ntargets; i++)
    if (m->targets[i].kind == ART_HOST_SO && strcmp(m->targets[i].name, host) == 0) {
      *out = &m->targets[i];
      return VXRT_OK;
    }
  return vxrt_fail(VXRT_ERR_TARGET,
                   "artifact has PTX for %s but no host code for %s, which a CUDA device also "
                   "needs (its const, scalars and require kernels run on the host)",
                   dev->info.target, host);
}

/* ------------------------------------------------------------------ parameters */

static vxrt_status apply_overrides(vxrt_policy *pol, const vxrt_param_override *ovr, int novr) {
  const art_manifest *m = pol->man;
  for (int i = 0; i < m->nparams; i++) pol->values[i] = m->params[i].def;
  for (int i = 0; i < novr; i++) {
    const char *name = ovr[i].name;
    if (!name) return vxrt_fail(VXRT_ERR_INVALID_ARG, "parameter override %d has no name", i);
    for (int j = 0; j < i; j++)
      if (ovr[j].name && strcmp(ovr[j].name, name) == 0)
        return vxrt_fail(VXRT_ERR_PARAM, "parameter '%s' is overridden twice", name);
    int p = -1;
    for (int j = 0; j < m->nparams && p < 0; j++)
      if (strcmp(m->params[j].name, name) == 0) p = j;
    if (p < 0) {
      char list[256] = "";
      size_t n = 0;
      for (int j = 0; j < m->nparams && n < sizeof list; j++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", j ? ", " : "", m->params[j].name);
      return vxrt_fail(VXRT_ERR_PARAM, "policy %s has no parameter '%s' (it has: %s)", m->policy,
                       name, m->nparams ? list : "none");
    }
    double v = ovr[i].value;
    if (m->params[p].type == ART_I32 &&
        (!isfinite(v) || v != floor(v) || v < -2147483648.0 || v > 2147483647.0))
      return vxrt_fail(VXRT_ERR_PARAM, "parameter '%s' is an i32; %g is not", name, v);
    if (m->params[p].type == ART_F32 && (!isfinite(v) || fabs(v) > 3.4028234663852886e38))
      return vxrt_fail(VXRT_ERR_PARAM, "parameter '%s' is an f32; %g is not a finite f32", name,
                       v);
    pol->values[p] = m->params[p].type == ART_F32 ? (double)(float)v : v;
  }
  return VXRT_OK;
}

/* ------------------------------------------------------------------ host code */

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The dynamic loader trusts the file it maps: a segment that claims bytes past the end of
 * the file faults (SIGBUS) inside dlopen instead of failing. So before dlopen, check that the
 * section is a 64-bit little-endian shared object for this machine whose headers, loadable
 * segments and sections all lie inside it. */
static vxrt_status check_elf(const art_target *t) {
  const unsigned char *d = t->data;
  uint64_t n = t->size;
  Elf64_Ehdr eh;
  if (n < sizeof eh || memcmp(d, ELFMAG, SELFMAG) != 0)
    return vxrt_fail(VXRT_ERR_LOAD, "host code of target %s is not an ELF shared object",
                     t->name);
  memcpy(&eh, d, sizeof eh);
#if defined(__x86_64__)
  const int machine = EM_X86_64;
#elif defined(__aarch64__)
  const int machine = EM_AARCH64;
#else
  const int machine = -1;
#endif
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
      eh.e_type != ET_DYN || (machine >= 0 && eh.e_machine != machine))
    return vxrt_fail(VXRT_ERR_LOAD,
                     "host code of target %s is not a 64-bit shared object for this machine "
                     "(ELF class %d, type %d, machine %d)",
                     t->name, eh.e_ident[EI_CLASS], eh.e_type, eh.e_machine);
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > n ||
      (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > n - eh.e_phoff)
    return vxrt_fail(VXRT_ERR_LOAD, "host code of target %s: program headers out of bounds "
                     "(truncated shared object?)", t->name);
  for (int i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr ph;
    memcpy(&ph, d + eh.e_phoff + (uint64_t)i * sizeof ph, sizeof ph);
    if (ph.p_type == PT_LOAD && (ph.p_offset > n || ph.p_filesz > n - ph.p_offset))
      return vxrt_fail(VXRT_ERR_LOAD,
                       "host code of target %s: segment %d lies outside its %llu bytes "
                       "(truncated shared object?)",
                       t->name, i, (unsigned long long)n);
  }
  /* Section headers and section contents too: the loader ignores them, but debuggers,
   * profilers and sanitizers map the file and read them, and would fault just the same. */
  if (eh.e_shoff || eh.e_shnum) {
    if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shoff > n ||
        (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr) > n - eh.e_shoff)
      return vxrt_fail(VXRT_ERR_LOAD, "host code of target %s: section headers out of bounds "
                       "(truncated shared object?)", t->name);
    for (int i = 0; i < eh.e_shnum; i++) {
      Elf64_Shdr sh;
      memcpy(&sh, d + eh.e_shoff + (uint64_t)i * sizeof sh, sizeof sh);
      if (sh.sh_type != SHT_NOBITS && (sh.sh_offset > n || sh.sh_size > n - sh.sh_offset))
        return vxrt_fail(VXRT_ERR_LOAD,
                         "host code of target %s: section %d lies outside its %llu bytes "
                         "(truncated shared object?)",
                         t->name, i, (unsigned long long)n);
    }
  }
  return VXRT_OK;
}

/* Loads the shared object in t's section. Why the memfd stays open until the policy is
 * freed: the dynamic loader recognises loaded objects by path, and /proc/self/fd/N of a
 * closed fd could be reused for the next policy, which would then get this one's library. */
static vxrt_status load_host(vxrt_policy *pol, const art_target *t) {
  const unsigned char *d = t->data;
  vxrt_status st = check_elf(t);
  if (st) return st;
  char path[64];
  int fd = memfd_create("vxpolicy", MFD_CLOEXEC);
  int tmpfile = 0;
  if (fd >= 0 && access("/proc/self/fd", F_OK) != 0) {
    close(fd);
    fd = -1;
  }
  if (fd >= 0) {
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  } else {
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/vxpolicy-XXXXXX", dir && strlen(dir) < 40 ? dir : "/tmp");
    fd = mkstemp(path);
    if (fd < 0)
      return vxrt_fail(VXRT_ERR_LOAD, "cannot stage host code (memfd_create and mkstemp: %s)",
                       strerror(errno));
    tmpfile = 1;
  }
  if (write_all(fd, d, (size_t)t->size) != 0) {
    int e = errno;
    if (tmpfile) unlink(path);
    close(fd);
    return vxrt_fail(VXRT_ERR_LOAD, "cannot stage host code: %s", strerror(e));
  }
  dlerror();
  pol->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  const char *why = pol->dl ? NULL : dlerror();
  if (tmpfile) {
    unlink(path); /* the mapping survives; nothing is left behind on disk */
    close(fd);
    fd = -1;
  }
  if (!pol->dl) {
    if (fd >= 0) close(fd);
    return vxrt_fail(VXRT_ERR_LOAD, "cannot load host code of policy %s: %s", pol->man->policy,
                     why ? why : "dlopen failed");
  }
  pol->fd = fd;
  for (int i = 0; i < pol->man->nkernels; i++) {
    const art_kernel *k = &pol->man->kernels[i];
    dlerror();
    pol->handles[i] = dlsym(pol->dl, k->entry);
    if (!pol->handles[i])
      return vxrt_fail(VXRT_ERR_LOAD, "host code of policy %s has no symbol '%s' (kernel %s)",
                       pol->man->policy, k->entry, k->name);
  }
  return VXRT_OK;
}

/* ------------------------------------------------------------------ PTX */

/* JIT options: only the logs, so the cubin depends on the PTX, driver and device alone.
 * The cache key includes this text; change both together. */
static const char jit_options[] = "logs";

/* Loads the cubin the compiled-kernel cache holds for `key`; 0 on a miss or if the driver
 * refuses it (then the JIT runs and the entry is rewritten). */
static int load_cached(vxrt_policy *pol, uint64_t key) {
  void *cubin;
  size_t len;
  if (!vxrt_kcache_load(key, &cubin, &len)) return 0;
  vxcu_result r = pol->dev->cu.cuModuleLoadData(&pol->mod, cubin);
  free(cubin);
  if (r) pol->mod = NULL;
  return r == 0;
}

/* PTX -> cubin through the driver's JIT linker, stored in the cache, then loaded. The
 * caller has the context pushed. */
static vxrt_status jit_ptx(vxrt_policy *pol, const art_target *t, char *image, uint64_t key) {
  vxrt_device *dev = pol->dev;
  static _Thread_local char elog[8192], ilog[4096];
  elog[0] = ilog[0] = '\0';
  vxcu_jit_option opts[4] = {VXCU_JIT_ERROR_LOG_BUFFER, VXCU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                             VXCU_JIT_INFO_LOG_BUFFER, VXCU_JIT_INFO_LOG_BUFFER_SIZE_BYTES};
  void *vals[4] = {elog, (void *)(uintptr_t)sizeof elog, ilog, (void *)(uintptr_t)sizeof ilog};
  vxcu_link link = NULL;
  const char *call = "cuLinkCreate";
  vxcu_result r = dev->cu.cuLinkCreate(4, opts, vals, &link);
  void *cubin = NULL;
  size_t len = 0;
  if (!r) {
    call = "cuLinkAddData";
    r = dev->cu.cuLinkAddData(link, VXCU_JIT_INPUT_PTX, image, (size_t)t->size + 1, "policy.ptx",
                              0, NULL, NULL);
  }
  if (!r) {
    call = "cuLinkComplete";
    r = dev->cu.cuLinkComplete(link, &cubin, &len);
  }
  if (!r) {
    call = "cuModuleLoadData";
    r = dev->cu.cuModuleLoadData(&pol->mod, cubin);
    if (!r) vxrt_kcache_store(key, cubin, len);
  }
  if (link) dev->cu.cuLinkDestroy(link); /* the cubin belongs to the link state */
  if (!r) return VXRT_OK;
  pol->mod = NULL;
  vxrt_cuda_fail(dev, VXRT_ERR_LOAD, call, r);
  elog[sizeof elog - 1] = '\0';
  return vxrt_fail(VXRT_ERR_LOAD, "PTX of target %s failed to load: %s%s%.3000s", t->name,
                   vxrt_last_error(), elog[0] ? "\n" : "", elog);
}

static vxrt_status load_ptx(vxrt_policy *pol, const art_target *t) {
  vxrt_device *dev = pol->dev;
  /* The driver wants a NUL-terminated image. */
  char *image = malloc((size_t)t->size + 1);
  if (!image) return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory loading PTX");
  memcpy(image, t->data, (size_t)t->size);
  image[t->size] = '\0';
  const vxrt_device_info *in = &dev->info;
  uint64_t key = vxrt_kcache_key(image, (size_t)t->size, jit_options, in->driver_version,
                                 in->name, in->cc_major, in->cc_minor);
  vxrt_status st = vxrt_cuda_push(dev);
  if (!st) {
    if (!load_cached(pol, key)) st = jit_ptx(pol, t, image, key);
    vxrt_cuda_pop(dev);
  }
  free(image);
  return st;
}

/* ------------------------------------------------------------------ public API */

static void policy_release(vxrt_policy *pol) {
  if (pol->dl) dlclose(pol->dl);
  if (pol->fd >= 0) close(pol->fd);
  if (pol->mod && vxrt_cuda_push(pol->dev) == VXRT_OK) {
    pol->dev->cu.cuModuleUnload(pol->mod);
    vxrt_cuda_pop(pol->dev);
  }
  art_manifest_free(pol->man);
  free(pol->dir);
  free(pol->values);
  free(pol->handles);
  free(pol);
}

vxrt_status vxrt_policy_load(vxrt_device *dev, const void *bytes, size_t len,
                             const vxrt_param_override *ovr, int novr, vxrt_policy **out) {
  if (!out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_policy_load: out is NULL");
  *out = NULL;
  if (!dev || (!bytes && len) || novr < 0 || (novr && !ovr))
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_policy_load: NULL or invalid argument");
  art_manifest *m = NULL;
  art_error err;
  art_code c = art_parse(bytes, len, &m, &err);
  if (c) return from_art(c, err.msg);
  vxrt_policy *pol = calloc(1, sizeof *pol);
  if (!pol) {
    art_manifest_free(m);
    return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory loading a policy");
  }
  pol->dev = dev;
  pol->man = m;
  pol->fd = -1;
  pol->values = calloc((size_t)m->nparams + 1, sizeof(double));
  pol->handles = calloc((size_t)m->nkernels + 1, sizeof(void *));
  vxrt_status st = VXRT_OK;
  if (!pol->values || !pol->handles)
    st = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory loading a policy");
  if (!st) st = choose_target(dev, m, &pol->target);
  if (!st) pol->host = pol->target;
  if (!st && pol->target->kind == ART_PTX) st = choose_host(dev, m, &pol->host);
  if (!st) st = apply_overrides(pol, ovr, novr);
  if (!st) st = vxrt_params_check(m, pol->values);
  if (!st) st = load_host(pol, pol->host);
  if (!st && pol->target->kind == ART_PTX) st = load_ptx(pol, pol->target);
  if (st) {
    policy_release(pol);
    return st;
  }
  /* The section bytes belong to the caller; nothing may point at them after we return. */
  for (int i = 0; i < m->ntargets; i++) m->targets[i].data = NULL;
  atomic_fetch_add(&dev->live, 1);
  *out = pol;
  return VXRT_OK;
}

vxrt_status vxrt_policy_load_file(vxrt_device *dev, const char *path,
                                  const vxrt_param_override *ovr, int novr, vxrt_policy **out) {
  if (!out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_policy_load_file: out is NULL");
  *out = NULL;
  if (!path) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_policy_load_file: path is NULL");
  FILE *f = fopen(path, "rb");
  if (!f) return vxrt_fail(VXRT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  size_t cap = 1 << 16, len = 0;
  unsigned char *buf = malloc(cap);
  const size_t limit = (size_t)1 << 30;
  vxrt_status st = buf ? VXRT_OK : vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  while (!st) {
    if (len == cap) {
      if (cap >= limit) {
        st = vxrt_fail(VXRT_ERR_IO, "'%s' is larger than 1 GiB; not a policy artifact", path);
        break;
      }
      unsigned char *nb = realloc(buf, cap * 2);
      if (!nb) {
        st = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory reading '%s'", path);
        break;
      }
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) {
      if (ferror(f)) st = vxrt_fail(VXRT_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
      break;
    }
  }
  fclose(f);
  if (!st) st = vxrt_policy_load(dev, buf, len, ovr, novr, out);
  free(buf);
  if (!st) {
    const char *slash = strrchr(path, '/');
    (*out)->dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!(*out)->dir) {
      vxrt_policy_free(*out);
      *out = NULL;
      st = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
    }
  }
  return st;
}

const art_manifest *vxrt_policy_manifest(const vxrt_policy *pol) { return pol->man; }
const art_target *vxrt_policy_ptx(const vxrt_policy *pol) {
  return pol->target->kind == ART_PTX ? pol->target : NULL;
}

vxrt_status vxrt_policy_gpu_function(const vxrt_policy *pol, const char *kind, const char *shape,
                                     vxcu_function *fn) {
  const art_target *t = vxrt_policy_ptx(pol);
  *fn = NULL;
  int listed = 0;
  for (int i = 0; t && i < t->ngpu_kernels; i++) listed |= strcmp(t->gpu_kernels[i], kind) == 0;
  if (!listed) return VXRT_OK;
  char entry[128];
  snprintf(entry, sizeof entry, "vxg_%s__%s", kind, shape);
  vxrt_status st = vxrt_cuda_push(pol->dev);
  if (st) return st;
  vxcu_result r = pol->dev->cu.cuModuleGetFunction(fn, pol->mod, entry);
  vxrt_cuda_pop(pol->dev);
  if (r) {
    *fn = NULL;
    return vxrt_fail(VXRT_ERR_LOAD,
                     "PTX of target %s lists GPU kernel '%s' and shape %s but has no entry '%s'",
                     t->name, kind, shape, entry);
  }
  return VXRT_OK;
}
const double *vxrt_policy_values(const vxrt_policy *pol) { return pol->values; }
const char *vxrt_policy_dir(const vxrt_policy *pol) { return pol->dir; }
vxrt_device *vxrt_policy_device(const vxrt_policy *pol) { return pol->dev; }

void *vxrt_policy_kernel(const vxrt_policy *pol, art_kernel_kind kind) {
  for (int i = 0; i < pol->man->nkernels; i++)
    if (pol->man->kernels[i].kind == kind)
      return pol->handles[i];
  return NULL;
}

vxrt_status vxrt_policy_free(vxrt_policy *pol) {
  if (!pol) return VXRT_OK;
  atomic_fetch_sub(&pol->dev->live, 1);
  policy_release(pol);
  return VXRT_OK;
}

vxrt_status vxrt_policy_get_info(const vxrt_policy *pol, vxrt_policy_info *out) {
  if (!pol || !out) return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_policy_get_info: NULL argument");
  const art_manifest *m = pol->man;
  out->name = m->policy;
  out->vx_version = m->vx_version;
  out->source_hash = m->source_hash;
  out->target = pol->target->name;
  out->format = m->format;
  out->nparams = m->nparams;
  out->nfields = m->nfields;
  out->nkernels = m->nkernels;
  return VXRT_OK;
}

static vxrt_status check_index(const vxrt_policy *pol, const void *out, int index, int n,
                               const char *what) {
  if (!pol || !out)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_policy_get_%s: NULL argument", what);
  if (index < 0 || index >= n)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s index %d out of range (policy %s has %d)", what,
                     index, pol->man->policy, n);
  return VXRT_OK;
}

vxrt_status vxrt_policy_get_param(const vxrt_policy *pol, int index, vxrt_param_info *out) {
  vxrt_status st = check_index(pol, out, index, pol ? pol->man->nparams : 0, "param");
  if (st) return st;
  const art_param *p = &pol->man->params[index];
  out->name = p->name;
  out->type = p->type == ART_I32 ? VXRT_PARAM_I32 : VXRT_PARAM_F32;
  out->unit = p->unit;
  out->default_value = p->def;
  out->value = pol->values[index];
  return VXRT_OK;
}

vxrt_status vxrt_policy_find_param(const vxrt_policy *pol, const char *name, int *index) {
  if (!pol || !name || !index)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_policy_find_param: NULL argument");
  for (int i = 0; i < pol->man->nparams; i++)
    if (strcmp(pol->man->params[i].name, name) == 0) {
      *index = i;
      return VXRT_OK;
    }
  return vxrt_fail(VXRT_ERR_INVALID_ARG, "policy %s has no parameter '%s'", pol->man->policy,
                   name);
}

vxrt_status vxrt_policy_get_field(const vxrt_policy *pol, int index, vxrt_field_info *out) {
  vxrt_status st = check_index(pol, out, index, pol ? pol->man->nfields : 0, "field");
  if (st) return st;
  const art_field *f = &pol->man->fields[index];
  out->name = f->name;
  out->stage = (vxrt_field_stage)f->stage;
  out->dtype = f->dtype;
  out->naxes = f->naxes;
  out->axes = f->axes;
  return VXRT_OK;
}

vxrt_status vxrt_policy_get_kernel(const vxrt_policy *pol, int index, vxrt_kernel_info *out) {
  vxrt_status st = check_index(pol, out, index, pol ? pol->man->nkernels : 0, "kernel");
  if (st) return st;
  const art_kernel *k = &pol->man->kernels[index];
  out->name = k->name;
  out->kind = (vxrt_kernel_kind)k->kind;
  out->entry = k->entry;
  out->handle = pol->handles[index];
  return VXRT_OK;
}
