/* exec_plan.c - what the executors share before running anything (exec.h, "planning"):
 * extents evaluated for a shape (through the runtime's one extent reader, extent.c), which
 * tensors are paged, their sizes and the check that every extent is a positive integer,
 * consts made from their definition (zeros, gaussian(seed), load("file")), and element
 * conversions between f32 and the storage dtypes. The CPU executor (exec_cpu.c) and, through
 * it, the CUDA one (gpu.c) use these; nothing here touches a state. */
#include "exec.h"
#include "extent.h"
#include "vxrt_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void exec_set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

size_t exec_dtype_bytes(exec_dtype d) {
#define EXEC_DTYPE_BYTES(tag, name, bytes) bytes,
  static const size_t size[] = {VXK_DTYPES(EXEC_DTYPE_BYTES)};
#undef EXEC_DTYPE_BYTES
  return size[d];
}

/* ---- extents ---- */

typedef struct ExtentNames {
  const exec_policy *pol;
  const exec_shape *sh;
  int npages;
} ExtentNames;

/* D, G, P, npages and the params' values, for vxrt_extent_eval. */
static long extent_name(void *user, const char *name, size_t n, int *ok) {
  const ExtentNames *e = user;
  if (n == 1 && (*name == 'D' || *name == 'G' || *name == 'P'))
    return *name == 'D' ? e->sh->D : *name == 'G' ? e->sh->G : e->sh->P;
  if (n == 6 && !strncmp(name, "npages", 6))
    return e->npages;
  for (int i = 0; i < e->pol->nparams; i++)
    if (strlen(e->pol->param_names[i]) == n && !strncmp(name, e->pol->param_names[i], n))
      return (long)e->pol->param_values[i];
  *ok = 0;
  return 0;
}

long exec_extent(const exec_policy *pol, const exec_shape *shape, const char *text, int npages) {
  ExtentNames e = {pol, shape, npages};
  return vxrt_extent_eval(text, extent_name, &e);
}

int exec_is_paged(const exec_tensor *t) {
  return (t->kind == EXEC_PAGE || t->kind == EXEC_TOKEN || t->kind == EXEC_ROW) && t->rank > 0 &&
         !strcmp(t->extents[0], "npages");
}

/* Elements of t with npages pages; for a paged tensor, one page's block. */
long exec_tensor_elems(const exec_policy *pol, const exec_shape *sh, const exec_tensor *t, int npages) {
  long n = 1;
  for (int i = exec_is_paged(t); i < t->rank; i++) {
    long e = exec_extent(pol, sh, t->extents[i], npages);
    if (e < 0)
      return -1;
    n *= e;
  }
  return n;
}

/* Whether every extent of t (a page axis counts npages) is a positive integer; if not, a
 * message naming the axis, its text, its value and the params the text reads. */
int exec_extents_ok(const exec_policy *pol, const exec_shape *sh, const exec_tensor *t, int npages, char *err,
                    size_t errlen) {
  for (int i = exec_is_paged(t); i < t->rank; i++) {
    long e = exec_extent(pol, sh, t->extents[i], npages);
    if (e >= 1)
      continue;
    char params[256] = "";
    size_t used = 0;
    for (int k = 0; k < pol->nparams && used < sizeof params - 64; k++)
      if (vxrt_extent_names(t->extents[i], pol->param_names[k]))
        used += (size_t)snprintf(params + used, sizeof params - used, "%s%s = %g", used ? ", " : " with ",
                                 pol->param_names[k], pol->param_values[k]);
    char value[32] = "negative or not computable";
    if (e == 0)
      snprintf(value, sizeof value, "0");
    exec_set_err(err, errlen, "%s '%s': axis %d's extent '%s' is %s%s; an extent must be a positive integer",
            t->kind == EXEC_CONST ? "const" : "tensor", t->name, i + 1, t->extents[i], value, params);
    return 0;
  }
  return 1;
}

/* ---- constants ---- */

/* splitmix64 and Box-Muller, exactly as tests/ref/ref.h spells them, so that gaussian(seed)
 * constants equal the references'. */
typedef struct Rng {
  uint64_t state;
  int has_spare;
  double spare;
} Rng;

static uint64_t rng_u64(Rng *g) {
  uint64_t z = (g->state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double rng_uniform(Rng *g) { return ((double)(rng_u64(g) >> 11) + 0.5) * 0x1.0p-53; }

static double rng_gauss(Rng *g) {
  if (g->has_spare) {
    g->has_spare = 0;
    return g->spare;
  }
  double u1 = rng_uniform(g), u2 = rng_uniform(g);
  double r = sqrt(-2.0 * log(u1)), a = 2.0 * 3.14159265358979323846 * u2;
  g->spare = r * sin(a);
  g->has_spare = 1;
  return r * cos(a);
}


/* load("file"): exactly `want` bytes, the file resolved beside the artifact. */
static int load_const(const exec_policy *pol, const exec_tensor *t, void *data, size_t want, long n, char *err,
                      size_t errlen) {
  char path[4096];
  const char *file = t->init_arg ? t->init_arg : "";
  if (file[0] != '/' && pol->base_dir)
    snprintf(path, sizeof path, "%s/%s", pol->base_dir, file);
  else
    snprintf(path, sizeof path, "%s", file);
  FILE *f = fopen(path, "rb");
  if (!f) {
    exec_set_err(err, errlen, "const '%s': cannot open '%s' for load()", t->name, path);
    return 0;
  }
  size_t got = fread(data, 1, want, f);
  int extra = fgetc(f) != EOF;
  fclose(f);
  if (got != want || extra) {
    exec_set_err(err, errlen, "const '%s': '%s' must hold exactly %zu bytes (%ld %s values), it %s", t->name,
                 path, want, n, t->dtype == EXEC_U32 ? "u32" : "f32", extra ? "is longer" : "is shorter");
    return 0;
  }
  return 1;
}

static double param_or_literal(const exec_policy *pol, const char *text, int *ok) {
  for (int i = 0; i < pol->nparams; i++)
    if (!strcmp(pol->param_names[i], text))
      return pol->param_values[i];
  char *end;
  double v = strtod(text, &end);
  *ok = *text && !*end;
  return v;
}

/* A const's data as the policy defines it: zeros, gaussian(seed), or a file's bytes. */
void *exec_make_const(const exec_policy *pol, const exec_shape *sh, int id, char *err, size_t errlen) {
  const exec_tensor *t = &pol->tensors[id];
  if (!exec_extents_ok(pol, sh, t, 1, err, errlen))
    return NULL;
  long n = exec_tensor_elems(pol, sh, t, 1);
  void *data = calloc((size_t)(n ? n : 1), exec_dtype_bytes(t->dtype));
  if (!data) {
    exec_set_err(err, errlen, "out of memory for const '%s'", t->name);
    return NULL;
  }
  if (t->init && !strcmp(t->init, "gaussian")) {
    int ok = 1;
    double seed = param_or_literal(pol, t->init_arg ? t->init_arg : "", &ok);
    if (!ok) {
      exec_set_err(err, errlen, "const '%s': gaussian() seed '%s' is not a param or a number", t->name,
                   t->init_arg);
      free(data);
      return NULL;
    }
    Rng g = {(uint64_t)(int64_t)seed, 0, 0};
    for (long i = 0; i < n; i++)
      exec_store_f32(data, t->dtype, (size_t)i, (float)rng_gauss(&g));
  } else if (t->init && !load_const(pol, t, data, (size_t)n * exec_dtype_bytes(t->dtype), n, err, errlen)) {
    free(data);
    return NULL;
  }
  return data;
}

/* ---- element access ---- */

/* Element conversions are libvxrt's own (convert.c), the ones the cache uses. */
float exec_load_f32(const void *base, exec_dtype d, size_t i) {
  switch (d) {
  case EXEC_F16:
    return vxrt_f16_to_f32(((const uint16_t *)base)[i]);
  case EXEC_BF16:
    return vxrt_bf16_to_f32(((const uint16_t *)base)[i]);
  case EXEC_FP8:
    return vxrt_e4m3_to_f32(((const uint8_t *)base)[i]);
  case EXEC_INT8:
    return (float)((const int8_t *)base)[i];
  case EXEC_U32:
    return (float)((const uint32_t *)base)[i];
  default:
    return ((const float *)base)[i];
  }
}

void exec_store_f32(void *base, exec_dtype d, size_t i, float x) {
  switch (d) {
  case EXEC_F16:
    ((uint16_t *)base)[i] = vxrt_f32_to_f16(x);
    break;
  case EXEC_BF16:
    ((uint16_t *)base)[i] = vxrt_f32_to_bf16(x);
    break;
  case EXEC_FP8:
    ((uint8_t *)base)[i] = vxrt_f32_to_e4m3(x);
    break;
  case EXEC_INT8: {
    float r = roundf(x);
    ((int8_t *)base)[i] = (int8_t)(r < -128 ? -128 : r > 127 ? 127 : r);
    break;
  }
  case EXEC_U32:
    ((uint32_t *)base)[i] = (uint32_t)x;
    break;
  default:
    ((float *)base)[i] = x;
    break;
  }
}

