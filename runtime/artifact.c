/* artifact.c - writer and validating reader of compiled-policy artifacts (see artifact.h).
 *
 * The reader is the runtime's first line of defence against a bad file: it is handed
 * arbitrary bytes and must report what is wrong in words a user can act on ("truncated",
 * "wrong version", "checksum mismatch", which manifest key is missing) and never read out of
 * bounds. The writer builds the JSON manifest and lays the sections out, then runs the reader
 * over its own output, so both sides enforce one set of rules.
 * Must not print, exit, or depend on the runtime's device code: vxc links this file alone.
 */
#include "artifact.h"
#include "vxk.h"
#include "vxk_gpu.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ small helpers */

static art_code fail(art_error *err, art_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static art_code fail(art_error *err, art_code code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

uint64_t art_fnv1a64(const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void art_hex64(uint64_t h, char buf[17]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--) {
    buf[i] = digits[h & 15];
    h >>= 4;
  }
  buf[16] = '\0';
}

/* Little-endian integer access: the format is little-endian whatever the host is. */
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void wr64(unsigned char *p, uint64_t v) {
  wr32(p, (uint32_t)v);
  wr32(p + 4, (uint32_t)(v >> 32));
}

static const char *const type_names[] = {"i32", "f32", NULL};
#define ART_STAGE_NAME(tag, name) [ART_##tag] = #name,
static const char *const stage_names[ART_STAGE_COUNT + 1] = {VXK_STAGES(ART_STAGE_NAME)};
#undef ART_STAGE_NAME
static const char *const init_names[] = {"gaussian", "load", NULL};
static const char *const keep_kind_names[] = {"first", "last", "generated", NULL};
static const char *const select_kind_names[] = {"top", "where", "all", NULL};
#define ART_GPU_KERNEL_NAME(kind) #kind,
static const char *const gpu_kernel_names[] = {VXK_GPU_KERNELS(ART_GPU_KERNEL_NAME) NULL};
#undef ART_GPU_KERNEL_NAME
#define ART_KERNEL_NAME(tag, name) [ART_K_##tag] = #name,
static const char *const kernel_kind_names[ART_K_COUNT + 1] = {
    VXK_HOST_KERNELS(ART_KERNEL_NAME)[ART_K_APPEND] = "append", [ART_K_SCALARS] = "scalars",
    [ART_K_REQUIRE] = "require", [ART_K_COUNT] = NULL};
#undef ART_KERNEL_NAME
static const char *const target_kind_names[] = {"host-so", "ptx", NULL};
static const char *const unit_names[] = {"tokens", "pages", "", NULL};
/* The language's storage dtypes (compiler/ast.c), fp8 being e4m3. */
#define ART_DTYPE_NAME(tag, name, bytes) #name,
const char *const art_dtype_names[] = {VXK_DTYPES(ART_DTYPE_NAME) NULL};
#undef ART_DTYPE_NAME

static const char *enum_name(const char *const *names, int n, int v) {
  return v >= 0 && v < n ? names[v] : "?";
}
const char *art_type_name(art_type t) { return enum_name(type_names, 2, (int)t); }
const char *art_stage_name(art_stage s) { return enum_name(stage_names, ART_STAGE_COUNT, (int)s); }
const char *art_kernel_kind_name(art_kernel_kind k) {
  return enum_name(kernel_kind_names, ART_K_COUNT, (int)k);
}
const char *art_target_kind_name(art_target_kind k) {
  return enum_name(target_kind_names, 2, (int)k);
}

static int lookup(const char *const *names, const char *s) {
  for (int i = 0; names[i]; i++)
    if (strcmp(names[i], s) == 0) return i;
  return -1;
}

/* "a", "b" or "c": the choices of an enumeration, for error messages. */
static void choices(const char *const *names, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (int i = 0; names[i] && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\"", i ? ", " : "", names[i]);
}

static int is_ident(const char *s) {
  if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return 0;
  for (s++; *s; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
          *s == '_'))
      return 0;
  return 1;
}

/* Target names: "x86_64-linux", "sm_90", "sm_90a". */
static int is_target_name(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == '-' || *s == '.'))
      return 0;
  return 1;
}

static int is_printable(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) return 0;
  return 1;
}

/* A PTX shape name, "d128g4p16_bf16": D, G and P as positive decimals without leading
 * zeros (at most 5 digits each), then a KV dtype the GPU kernels read. */
static int is_shape_name(const char *s) {
  static const char *const dtypes[] = {"f32", "f16", "bf16", NULL};
  static const char letters[] = "dgp";
  for (int i = 0; i < 3; i++) {
    if (*s++ != letters[i] || *s < '1' || *s > '9') return 0;
    int digits = 0;
    for (; *s >= '0' && *s <= '9'; s++)
      if (++digits > 5) return 0;
  }
  if (*s++ != '_') return 0;
  for (int i = 0; dtypes[i]; i++)
    if (strcmp(s, dtypes[i]) == 0) return 1;
  return 0;
}

static int is_hex16(const char *s) {
  int n = 0;
  for (; *s; s++, n++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return 0;
  return n == 16;
}

/* ------------------------------------------------------------------ parse arena */

/* Everything a parsed manifest owns lives in one chain of blocks, freed at once. */
typedef struct art_block {
  struct art_block *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
} art_block;

typedef struct art_owned {
  art_manifest m;   /* first, so art_manifest_free can find the arena from the manifest */
  art_block *blocks;
} art_owned;

static void *owned_alloc(art_owned *o, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (!n) n = 16;
  art_block *b = o->blocks;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > 4096 ? n : 4096;
    b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->next = o->blocks;
    b->used = 0;
    b->cap = cap;
    o->blocks = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  memset(p, 0, n);
  return p;
}

static char *owned_strdup(art_owned *o, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = owned_alloc(o, n);
  if (p) memcpy(p, s, n);
  return p;
}

void art_manifest_free(art_manifest *m) {
  if (!m || !m->owned_) return;
  art_owned *o = m->owned_;
  art_block *b = o->blocks;
  while (b) {
    art_block *next = b->next;
    free(b);
    b = next;
  }
  free(o);
}

/* ------------------------------------------------------------------ manifest reading */

/* State of one manifest walk: the arena to copy into and where errors go. `path` names the
 * object being read ("params[2]") so that every message says where the problem is. */
typedef struct art_reader {
  art_owned *o;
  art_error *err;
  char path[64];
} art_reader;

static art_code need(art_reader *r, const cJSON *obj, const char *key, const cJSON **out) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
  *out = it;
  if (!it)
    return fail(r->err, ART_EFORMAT, "manifest: %s%smissing key '%s'", r->path,
                r->path[0] ? ": " : "", key);
  return ART_OK;
}

static art_code get_string(art_reader *r, const cJSON *obj, const char *key, const char **out) {
  const cJSON *it;
  art_code c = need(r, obj, key, &it);
  if (c) return c;
  if (!cJSON_IsString(it) || !it->valuestring)
    return fail(r->err, ART_EFORMAT, "manifest: %s%s'%s' must be a string", r->path,
                r->path[0] ? ": " : "", key);
  if (strlen(it->valuestring) >= ART_MAX_STRING)
    return fail(r->err, ART_EFORMAT, "manifest: %s%s'%s' is longer than %d bytes", r->path,
                r->path[0] ? ": " : "", key, ART_MAX_STRING - 1);
  if (!is_printable(it->valuestring))
    return fail(r->err, ART_EFORMAT, "manifest: %s%s'%s' holds a non-printable character",
                r->path, r->path[0] ? ": " : "", key);
  char *s = owned_strdup(r->o, it->valuestring);
  if (!s) return fail(r->err, ART_ENOMEM, "out of memory reading the manifest");
  *out = s;
  return ART_OK;
}

static art_code get_number(art_reader *r, const cJSON *obj, const char *key, double *out) {
  const cJSON *it;
  art_code c = need(r, obj, key, &it);
  if (c) return c;
  if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
    return fail(r->err, ART_EFORMAT, "manifest: %s%s'%s' must be a finite number", r->path,
                r->path[0] ? ": " : "", key);
  *out = it->valuedouble;
  return ART_OK;
}

/* A non-negative integer below 2^53 (exact in a JSON double). */
static art_code get_u64(art_reader *r, const cJSON *obj, const char *key, uint64_t *out) {
  double d = 0; /* set by get_number on success; GCC -O3 cannot tell */
  art_code c = get_number(r, obj, key, &d);
  if (c) return c;
  if (d < 0 || d != floor(d) || d >= 9007199254740992.0)
    return fail(r->err, ART_EFORMAT, "manifest: %s%s'%s' must be a non-negative integer",
                r->path, r->path[0] ? ": " : "", key);
  *out = (uint64_t)d;
  return ART_OK;
}

static art_code get_enum(art_reader *r, const cJSON *obj, const char *key,
                         const char *const *names, int *out) {
  const char *s;
  art_code c = get_string(r, obj, key, &s);
  if (c) return c;
  int v = lookup(names, s);
  if (v < 0) {
    char list[160];
    choices(names, list, sizeof list);
    return fail(r->err, ART_EFORMAT, "manifest: %s%s'%s' is \"%s\"; expected one of %s",
                r->path, r->path[0] ? ": " : "", key, s, list);
  }
  *out = v;
  return ART_OK;
}

static art_code get_ident(art_reader *r, const cJSON *obj, const char *key, const char **out) {
  art_code c = get_string(r, obj, key, out);
  if (c) return c;
  if (!is_ident(*out))
    return fail(r->err, ART_EFORMAT, "manifest: %s%s'%s' is \"%s\", not an identifier",
                r->path, r->path[0] ? ": " : "", key, *out);
  return ART_OK;
}

/* An array of objects under `key`: count, and room for n items of `size` bytes. */
static art_code get_array(art_reader *r, const cJSON *root, const char *key, size_t size,
                          const cJSON **arr, int *n, void **items) {
  art_code c = need(r, root, key, arr);
  if (c) return c;
  if (!cJSON_IsArray(*arr))
    return fail(r->err, ART_EFORMAT, "manifest: '%s' must be an array", key);
  int count = cJSON_GetArraySize(*arr);
  if (count > ART_MAX_ITEMS)
    return fail(r->err, ART_EFORMAT, "manifest: '%s' has %d entries; the limit is %d", key,
                count, ART_MAX_ITEMS);
  *n = count;
  *items = owned_alloc(r->o, (size_t)count * size);
  if (!*items) return fail(r->err, ART_ENOMEM, "out of memory reading the manifest");
  return ART_OK;
}

static art_code enter(art_reader *r, const cJSON *item, const char *key, int i) {
  snprintf(r->path, sizeof r->path, "%s[%d]", key, i);
  if (!cJSON_IsObject(item))
    return fail(r->err, ART_EFORMAT, "manifest: %s must be an object", r->path);
  return ART_OK;
}

/* Names within one list must be unique: later stages look things up by name. */
static art_code check_unique(art_reader *r, const char *list, const char *const *names,
                             size_t stride, int n) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++) {
      const char *a = *(const char *const *)((const char *)names + stride * (size_t)i);
      const char *b = *(const char *const *)((const char *)names + stride * (size_t)j);
      if (strcmp(a, b) == 0)
        return fail(r->err, ART_EFORMAT, "manifest: %s[%d] and %s[%d] are both named \"%s\"",
                    list, j, list, i, a);
    }
  return ART_OK;
}

static art_code read_params(art_reader *r, const cJSON *root, art_manifest *m) {
  const cJSON *arr, *it;
  void *items;
  art_code c = get_array(r, root, "params", sizeof(art_param), &arr, &m->nparams, &items);
  if (c) return c;
  m->params = items;
  int i = 0;
  cJSON_ArrayForEach(it, arr) {
    art_param *p = &m->params[i];
    int type, unit;
    if ((c = enter(r, it, "params", i)) || (c = get_ident(r, it, "name", &p->name)) ||
        (c = get_enum(r, it, "type", type_names, &type)) ||
        (c = get_enum(r, it, "unit", unit_names, &unit)) ||
        (c = get_number(r, it, "default", &p->def)))
      return c;
    p->type = (art_type)type;
    p->unit = unit_names[unit];
    if (p->type == ART_I32 && (p->def != floor(p->def) || p->def < -2147483648.0 ||
                               p->def > 2147483647.0))
      return fail(r->err, ART_EFORMAT, "manifest: %s: default %g is not an i32", r->path,
                  p->def);
    if (p->type == ART_F32 && fabs(p->def) > 3.4028234663852886e38)
      return fail(r->err, ART_EFORMAT, "manifest: %s: default %g overflows f32", r->path,
                  p->def);
    i++;
  }
  return check_unique(r, "params", &m->params[0].name, sizeof(art_param), m->nparams);
}

static art_code read_fields(art_reader *r, const cJSON *root, art_manifest *m) {
  const cJSON *arr, *it;
  void *items;
  art_code c = get_array(r, root, "fields", sizeof(art_field), &arr, &m->nfields, &items);
  if (c) return c;
  m->fields = items;
  int i = 0;
  cJSON_ArrayForEach(it, arr) {
    art_field *f = &m->fields[i];
    int stage, dtype;
    const cJSON *axes, *ax;
    if ((c = enter(r, it, "fields", i)) || (c = get_ident(r, it, "name", &f->name)) ||
        (c = get_enum(r, it, "stage", stage_names, &stage)) ||
        (c = get_enum(r, it, "dtype", art_dtype_names, &dtype)) ||
        (c = need(r, it, "axes", &axes)))
      return c;
    f->stage = (art_stage)stage;
    f->dtype = art_dtype_names[dtype];
    if (!cJSON_IsArray(axes))
      return fail(r->err, ART_EFORMAT, "manifest: %s: 'axes' must be an array", r->path);
    int n = cJSON_GetArraySize(axes);
    if (n > ART_MAX_AXES)
      return fail(r->err, ART_EFORMAT, "manifest: %s has %d axes; the limit is %d", r->path, n,
                  ART_MAX_AXES);
    const char **list = owned_alloc(r->o, sizeof(char *) * (size_t)(n ? n : 1));
    if (!list) return fail(r->err, ART_ENOMEM, "out of memory reading the manifest");
    int j = 0;
    cJSON_ArrayForEach(ax, axes) {
      if (!cJSON_IsString(ax) || !ax->valuestring || !ax->valuestring[0] ||
          strlen(ax->valuestring) >= ART_MAX_STRING || !is_printable(ax->valuestring))
        return fail(r->err, ART_EFORMAT,
                    "manifest: %s: axes[%d] must be a non-empty printable string", r->path, j);
      if (!(list[j] = owned_strdup(r->o, ax->valuestring)))
        return fail(r->err, ART_ENOMEM, "out of memory reading the manifest");
      j++;
    }
    f->naxes = n;
    f->axes = list;
    if (cJSON_GetObjectItemCaseSensitive(it, "init")) {
      int init;
      if ((c = get_enum(r, it, "init", init_names, &init)) ||
          (c = get_string(r, it, "init_arg", &f->init_arg)))
        return c;
      if (f->stage != ART_CONST)
        return fail(r->err, ART_EFORMAT, "manifest: %s: only a const has an 'init'", r->path);
      f->init = init_names[init];
    }
    i++;
  }
  return check_unique(r, "fields", &m->fields[0].name, sizeof(art_field), m->nfields);
}

static art_code read_kernels(art_reader *r, const cJSON *root, art_manifest *m) {
  const cJSON *arr, *it;
  void *items;
  art_code c = get_array(r, root, "kernels", sizeof(art_kernel), &arr, &m->nkernels, &items);
  if (c) return c;
  m->kernels = items;
  int i = 0;
  cJSON_ArrayForEach(it, arr) {
    art_kernel *k = &m->kernels[i];
    int kind;
    if ((c = enter(r, it, "kernels", i)) || (c = get_ident(r, it, "name", &k->name)) ||
        (c = get_enum(r, it, "kind", kernel_kind_names, &kind)) ||
        (c = get_ident(r, it, "entry", &k->entry)))
      return c;
    k->kind = (art_kernel_kind)kind;
    i++;
  }
  c = check_unique(r, "kernels", &m->kernels[0].name, sizeof(art_kernel), m->nkernels);
  if (c) return c;
  return check_unique(r, "kernels' entries", &m->kernels[0].entry, sizeof(art_kernel),
                      m->nkernels);
}

/* An optional array of unique strings under `key` of the object being read (r->path);
 * absent means none. Each must satisfy ok(); `what` says what they should be. */
static art_code get_opt_names(art_reader *r, const cJSON *obj, const char *key,
                              int (*ok)(const char *), const char *what, int unique, int *n,
                              const char *const **out) {
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key), *it;
  *n = 0;
  *out = NULL;
  if (!arr) return ART_OK;
  if (!cJSON_IsArray(arr))
    return fail(r->err, ART_EFORMAT, "manifest: %s: '%s' must be an array", r->path, key);
  int count = cJSON_GetArraySize(arr);
  if (count > ART_MAX_ITEMS)
    return fail(r->err, ART_EFORMAT, "manifest: %s: '%s' has %d entries; the limit is %d",
                r->path, key, count, ART_MAX_ITEMS);
  const char **list = owned_alloc(r->o, sizeof(char *) * (size_t)(count ? count : 1));
  if (!list) return fail(r->err, ART_ENOMEM, "out of memory reading the manifest");
  int j = 0;
  cJSON_ArrayForEach(it, arr) {
    if (!cJSON_IsString(it) || !it->valuestring || strlen(it->valuestring) >= ART_MAX_STRING ||
        !is_printable(it->valuestring) || !ok(it->valuestring))
      return fail(r->err, ART_EFORMAT, "manifest: %s: %s[%d] must be %s", r->path, key, j,
                  what);
    for (int k = 0; unique && k < j; k++)
      if (strcmp(list[k], it->valuestring) == 0)
        return fail(r->err, ART_EFORMAT, "manifest: %s: %s[%d] and %s[%d] are both \"%s\"",
                    r->path, key, k, key, j, list[k]);
    if (!(list[j] = owned_strdup(r->o, it->valuestring)))
      return fail(r->err, ART_ENOMEM, "out of memory reading the manifest");
    j++;
  }
  *n = count;
  *out = list;
  return ART_OK;
}

static int any_text(const char *s) { return s != NULL; }

static int is_gpu_kernel_name(const char *s) {
  for (int i = 0; gpu_kernel_names[i]; i++)
    if (strcmp(s, gpu_kernel_names[i]) == 0) return 1;
  return 0;
}

static art_code read_targets(art_reader *r, const cJSON *root, art_manifest *m) {
  const cJSON *arr, *it;
  void *items;
  art_code c = get_array(r, root, "targets", sizeof(art_target), &arr, &m->ntargets, &items);
  if (c) return c;
  m->targets = items;
  int i = 0;
  cJSON_ArrayForEach(it, arr) {
    art_target *t = &m->targets[i];
    int kind;
    const char *sum;
    if ((c = enter(r, it, "targets", i)) || (c = get_string(r, it, "name", &t->name)) ||
        (c = get_enum(r, it, "kind", target_kind_names, &kind)) ||
        (c = get_u64(r, it, "offset", &t->offset)) || (c = get_u64(r, it, "size", &t->size)) ||
        (c = get_string(r, it, "checksum", &sum)))
      return c;
    if (!is_target_name(t->name))
      return fail(r->err, ART_EFORMAT, "manifest: %s: 'name' is \"%s\", not a target name",
                  r->path, t->name);
    if (!is_hex16(sum))
      return fail(r->err, ART_EFORMAT,
                  "manifest: %s: 'checksum' must be 16 lowercase hex digits", r->path);
    t->kind = (art_target_kind)kind;
    t->checksum = strtoull(sum, NULL, 16);
    if ((c = get_opt_names(r, it, "shapes", is_shape_name,
                           "a shape name like \"d128g4p16_bf16\"", 1, &t->nshapes, &t->shapes)) ||
        (c = get_opt_names(r, it, "gpu_kernels", is_gpu_kernel_name,
                           "a GPU kernel kind (append, summarise, select, attend)", 1,
                           &t->ngpu_kernels, &t->gpu_kernels)))
      return c;
    if (t->kind != ART_PTX && (t->nshapes || t->ngpu_kernels))
      return fail(r->err, ART_EFORMAT,
                  "manifest: %s: only a ptx target may list 'shapes' or 'gpu_kernels'", r->path);
    i++;
  }
  return check_unique(r, "targets", &m->targets[0].name, sizeof(art_target), m->ntargets);
}

static art_code get_opt_int(art_reader *r, const cJSON *root, const char *key, int max, int *out) {
  if (!cJSON_GetObjectItemCaseSensitive(root, key))
    return ART_OK;
  uint64_t v = 0; /* likewise */
  art_code c = get_u64(r, root, key, &v);
  if (c) return c;
  if (v > (uint64_t)max)
    return fail(r->err, ART_EFORMAT, "manifest: '%s' is %llu; at most %d", key,
                (unsigned long long)v, max);
  *out = (int)v;
  return ART_OK;
}

static art_code read_keeps(art_reader *r, const cJSON *root, art_manifest *m) {
  const cJSON *arr, *it;
  void *items;
  if (!cJSON_GetObjectItemCaseSensitive(root, "keeps"))
    return ART_OK;
  art_code c = get_array(r, root, "keeps", sizeof(art_keep), &arr, &m->nkeeps, &items);
  if (c) return c;
  m->keeps = items;
  int i = 0;
  cJSON_ArrayForEach(it, arr) {
    art_keep *k = &m->keeps[i];
    int kind, unit, at_prefill = 0;
    if ((c = enter(r, it, "keeps", i)) || (c = get_enum(r, it, "kind", keep_kind_names, &kind)) ||
        (c = get_enum(r, it, "unit", unit_names, &unit)) ||
        (c = get_opt_int(r, it, "at_prefill", 1, &at_prefill)))
      return c;
    if (unit_names[unit][0] == '\0')
      return fail(r->err, ART_EFORMAT, "manifest: %s: 'unit' must be tokens or pages", r->path);
    k->kind = (art_keep_kind)kind;
    k->unit = unit_names[unit];
    k->at_prefill = at_prefill;
    i++;
  }
  return ART_OK;
}

static art_code read_selects(art_reader *r, const cJSON *root, art_manifest *m) {
  const cJSON *arr, *it;
  void *items;
  if (!cJSON_GetObjectItemCaseSensitive(root, "selects"))
    return ART_OK;
  art_code c = get_array(r, root, "selects", sizeof(art_select), &arr, &m->nselects, &items);
  if (c) return c;
  m->selects = items;
  int i = 0;
  cJSON_ArrayForEach(it, arr) {
    art_select *s = &m->selects[i];
    int kind, unit = 2, field = 0;
    if ((c = enter(r, it, "selects", i)) || (c = get_enum(r, it, "kind", select_kind_names, &kind)))
      return c;
    s->kind = (art_select_kind)kind;
    s->field = -1;
    if (s->kind != ART_SELECT_ALL) {
      const cJSON *f;
      if ((c = need(r, it, "field", &f)) || (c = get_opt_int(r, it, "field", ART_MAX_ITEMS, &field)))
        return c;
      if (field >= m->nfields || m->fields[field].stage != ART_STEP)
        return fail(r->err, ART_EFORMAT, "manifest: %s: 'field' %d is not a step field", r->path,
                    field);
      s->field = field;
    }
    if (s->kind == ART_SELECT_TOP) {
      if ((c = get_enum(r, it, "unit", unit_names, &unit)))
        return c;
      if (unit_names[unit][0] == '\0')
        return fail(r->err, ART_EFORMAT, "manifest: %s: a top() budget needs a unit", r->path);
    }
    s->unit = unit_names[unit];
    i++;
  }
  return ART_OK;
}

/* The kernel ABI an artifact was compiled against: its code calls this libvxrt's kernels
 * through structs whose layout that version fixes, so any other is refused with a version
 * error, before a kernel could read a field at the wrong offset. */
static art_code check_abi(art_reader *r, const cJSON *root, const char *key, int expected, const char *what) {
  double v;
  art_code c = get_number(r, root, key, &v);
  if (c)
    return c;
  if (v != expected)
    return fail(r->err, ART_EVERSION,
                "the artifact's %s use ABI version %g; this runtime calls version %d (recompile the "
                "policy with a vxc of this release)",
                what, v, expected);
  return ART_OK;
}

static art_code read_manifest(art_reader *r, const cJSON *root, art_manifest *m) {
  art_code c;
  double fmt;
  r->path[0] = '\0';
  if (!cJSON_IsObject(root))
    return fail(r->err, ART_EFORMAT, "manifest: the top level must be a JSON object");
  if ((c = get_number(r, root, "format", &fmt))) return c;
  if (fmt != floor(fmt) || fmt < 0 || fmt > 1e9)
    return fail(r->err, ART_EFORMAT, "manifest: 'format' must be a small integer");
  m->format = (int)fmt;
  if ((c = check_abi(r, root, "kernel_abi", VXK_ABI_VERSION, "host kernels (runtime/vxk.h)")) ||
      (c = check_abi(r, root, "gpu_abi", VXK_GPU_ABI_VERSION, "GPU kernels (runtime/vxk_gpu.h)")))
    return c;
  if ((c = get_string(r, root, "vx_version", &m->vx_version)) ||
      (c = get_string(r, root, "source_hash", &m->source_hash)) ||
      (c = get_ident(r, root, "policy", &m->policy)))
    return c;
  if (!m->vx_version[0])
    return fail(r->err, ART_EFORMAT, "manifest: 'vx_version' is empty");
  if (!is_hex16(m->source_hash))
    return fail(r->err, ART_EFORMAT, "manifest: 'source_hash' must be 16 lowercase hex digits");
  if ((c = read_params(r, root, m)) || (c = read_fields(r, root, m)) ||
      (c = read_kernels(r, root, m)) || (c = read_targets(r, root, m)) ||
      (c = read_keeps(r, root, m)) || (c = read_selects(r, root, m)))
    return c;
  r->path[0] = '\0';
  if ((c = get_opt_int(r, root, "per_head", 1, &m->per_head)) ||
      (c = get_opt_int(r, root, "token_granular", 1, &m->token_granular)) ||
      (c = get_opt_int(r, root, "requires", ART_MAX_ITEMS, &m->nrequires)))
    return c;
  int ntexts;
  if ((c = get_opt_names(r, root, "require_texts", any_text, "a printable string", 0, &ntexts, &m->require_texts)))
    return c;
  if (m->require_texts && ntexts != m->nrequires)
    return fail(r->err, ART_EFORMAT, "manifest: 'require_texts' has %d entries for %d requires", ntexts,
                m->nrequires);
  return ART_OK;
}

/* ------------------------------------------------------------------ artifact reading */

static int cmp_by_offset(const void *a, const void *b) {
  const art_target *x = *(const art_target *const *)a, *y = *(const art_target *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The sections must tile the data area exactly: no gaps, no overlap, nothing after the last.
 * Anything looser would let damaged or padded files through unnoticed. */
static art_code check_sections(art_manifest *m, const unsigned char *data, uint64_t dlen,
                               art_error *err, art_owned *o) {
  for (int i = 0; i < m->ntargets; i++) {
    art_target *t = &m->targets[i];
    if (t->size == 0)
      return fail(err, ART_EFORMAT, "section of target %s is empty", t->name);
    if (t->offset > dlen || t->size > dlen - t->offset)
      return fail(err, ART_EFORMAT,
                  "section of target %s (offset %llu, size %llu) lies outside the %llu bytes "
                  "after the manifest (truncated artifact?)",
                  t->name, (unsigned long long)t->offset, (unsigned long long)t->size,
                  (unsigned long long)dlen);
  }
  art_target **order = owned_alloc(o, sizeof(art_target *) * (size_t)(m->ntargets + 1));
  if (!order) return fail(err, ART_ENOMEM, "out of memory reading the artifact");
  for (int i = 0; i < m->ntargets; i++) order[i] = &m->targets[i];
  qsort(order, (size_t)m->ntargets, sizeof *order, cmp_by_offset);
  uint64_t end = 0;
  for (int i = 0; i < m->ntargets; i++) {
    if (order[i]->offset < end)
      return fail(err, ART_EFORMAT, "sections of targets %s and %s overlap", order[i - 1]->name,
                  order[i]->name);
    if (order[i]->offset > end)
      return fail(err, ART_EFORMAT, "%llu unaccounted bytes before the section of target %s",
                  (unsigned long long)(order[i]->offset - end), order[i]->name);
    end = order[i]->offset + order[i]->size;
  }
  if (end != dlen)
    return fail(err, ART_EFORMAT, "%llu trailing bytes after the last section",
                (unsigned long long)(dlen - end));
  for (int i = 0; i < m->ntargets; i++) {
    art_target *t = &m->targets[i];
    t->data = data + t->offset;
    uint64_t h = art_fnv1a64(t->data, (size_t)t->size);
    if (h != t->checksum) {
      char want[17], got[17];
      art_hex64(t->checksum, want);
      art_hex64(h, got);
      return fail(err, ART_ECORRUPT,
                  "section of target %s is corrupted: checksum %s, manifest says %s", t->name,
                  got, want);
    }
  }
  return ART_OK;
}

art_code art_parse(const void *bytes, size_t len, art_manifest **out, art_error *err) {
  const unsigned char *b = bytes;
  if (err) {
    err->code = ART_OK;
    err->msg[0] = '\0';
  }
  if (!out || (!b && len)) return fail(err, ART_EARG, "art_parse: NULL argument");
  *out = NULL;
  if (len == 0) return fail(err, ART_EFORMAT, "truncated artifact: 0 bytes");
  /* A prefix of the magic is a truncated artifact; anything else is not an artifact. */
  size_t mcmp = len < ART_MAGIC_LEN ? len : ART_MAGIC_LEN;
  if (memcmp(b, ART_MAGIC, mcmp) != 0)
    return fail(err, ART_EFORMAT, "not a vx policy artifact (bad magic; expected \"%s\")",
                ART_MAGIC);
  if (len < ART_MAGIC_LEN)
    return fail(err, ART_EFORMAT, "truncated artifact: %zu bytes, the magic alone needs %d",
                len, ART_MAGIC_LEN);
  if (len < ART_MAGIC_LEN + 4)
    return fail(err, ART_EFORMAT,
                "truncated artifact: %zu bytes, the header needs %d (format version missing)",
                len, ART_HEADER_LEN);
  /* The version comes before the rest of the header so that a file of another version,
   * whose header may differ, still gets the version message. */
  uint32_t version = rd32(b + 8);
  if (version != ART_FORMAT)
    return fail(err, ART_EVERSION,
                "artifact format version %u; this runtime reads version %d (recompile the "
                "policy with a matching vxc)",
                version, ART_FORMAT);
  if (len < ART_HEADER_LEN)
    return fail(err, ART_EFORMAT, "truncated artifact: %zu bytes, the header needs %d", len,
                ART_HEADER_LEN);
  uint32_t mlen = rd32(b + 12);
  uint64_t mhash = rd64(b + 16);
  if (mlen > ART_MAX_MANIFEST)
    return fail(err, ART_EFORMAT, "manifest length %u exceeds the limit of %u bytes", mlen,
                ART_MAX_MANIFEST);
  if (len - ART_HEADER_LEN < mlen)
    return fail(err, ART_EFORMAT,
                "truncated artifact: the manifest needs %u bytes, only %zu follow the header",
                mlen, len - ART_HEADER_LEN);
  const char *mtext = (const char *)b + ART_HEADER_LEN;
  if (art_fnv1a64(mtext, mlen) != mhash)
    return fail(err, ART_ECORRUPT, "manifest is corrupted (checksum mismatch)");

  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(mtext, mlen, &end, 0);
  if (!root) {
    size_t at = end && end >= mtext && end <= mtext + mlen ? (size_t)(end - mtext) : 0;
    return fail(err, ART_EFORMAT, "manifest is not valid JSON (error near byte %zu)", at);
  }
  for (; end && end < mtext + mlen; end++)
    if (*end != ' ' && *end != '\n' && *end != '\r' && *end != '\t') {
      cJSON_Delete(root);
      return fail(err, ART_EFORMAT, "manifest has text after the JSON value (byte %zu)",
                  (size_t)(end - mtext));
    }

  art_owned *o = calloc(1, sizeof *o);
  if (!o) {
    cJSON_Delete(root);
    return fail(err, ART_ENOMEM, "out of memory reading the artifact");
  }
  o->m.owned_ = o;
  art_reader r = {.o = o, .err = err};
  art_code c = read_manifest(&r, root, &o->m);
  cJSON_Delete(root);
  if (!c && o->m.format != (int)version)
    c = fail(err, ART_EFORMAT, "manifest says format %d but the header says %u", o->m.format,
             version);
  if (!c)
    c = check_sections(&o->m, b + ART_HEADER_LEN + mlen,
                       (uint64_t)(len - ART_HEADER_LEN - mlen), err, o);
  if (c) {
    art_manifest_free(&o->m);
    return c;
  }
  *out = &o->m;
  return ART_OK;
}

/* ------------------------------------------------------------------ writing */

static int add_str(cJSON *obj, const char *key, const char *s) {
  return s && cJSON_AddStringToObject(obj, key, s) != NULL;
}
static int add_num(cJSON *obj, const char *key, double v) {
  return cJSON_AddNumberToObject(obj, key, v) != NULL;
}
/* An array of n strings; 0 when a pointer is missing, n is negative or memory runs out. */
static int add_names(cJSON *obj, const char *key, const char *const *names, int n) {
  cJSON *arr;
  if (n < 0 || !names || !(arr = cJSON_AddArrayToObject(obj, key))) return 0;
  for (int i = 0; i < n; i++) {
    cJSON *s = names[i] ? cJSON_CreateString(names[i]) : NULL;
    if (!s || !cJSON_AddItemToArray(arr, s)) {
      cJSON_Delete(s);
      return 0;
    }
  }
  return 1;
}

/* The JSON manifest of m; NULL (with err set) if a pointer is missing or memory runs out.
 * Content rules are checked afterwards by parsing the result. */
static cJSON *build_manifest(const art_manifest *m, const uint64_t *offsets, art_error *err) {
  cJSON *root = cJSON_CreateObject(), *arr, *it;
  const char *bad = NULL;
  if (!root) goto oom;
  if (!add_num(root, "format", ART_FORMAT)) goto oom;
  if (!add_num(root, "kernel_abi", VXK_ABI_VERSION)) goto oom;
  if (!add_num(root, "gpu_abi", VXK_GPU_ABI_VERSION)) goto oom;
  if (!add_str(root, "vx_version", m->vx_version)) { bad = "vx_version"; goto fail; }
  if (!add_str(root, "source_hash", m->source_hash)) { bad = "source_hash"; goto fail; }
  if (!add_str(root, "policy", m->policy)) { bad = "policy"; goto fail; }

  if (!(arr = cJSON_AddArrayToObject(root, "params"))) goto oom;
  for (int i = 0; i < m->nparams; i++) {
    const art_param *p = &m->params[i];
    if (!(it = cJSON_CreateObject()) || !cJSON_AddItemToArray(arr, it)) goto oom;
    if (!add_str(it, "name", p->name) || !add_str(it, "type", art_type_name(p->type)) ||
        !add_str(it, "unit", p->unit ? p->unit : "") || !add_num(it, "default", p->def)) {
      bad = "params";
      goto fail;
    }
  }
  if (!(arr = cJSON_AddArrayToObject(root, "fields"))) goto oom;
  for (int i = 0; i < m->nfields; i++) {
    const art_field *f = &m->fields[i];
    cJSON *axes;
    if (!(it = cJSON_CreateObject()) || !cJSON_AddItemToArray(arr, it)) goto oom;
    if (!add_str(it, "name", f->name) || !add_str(it, "stage", art_stage_name(f->stage)) ||
        !add_str(it, "dtype", f->dtype) || !(axes = cJSON_AddArrayToObject(it, "axes")) ||
        f->naxes < 0 || (f->naxes && !f->axes)) {
      bad = "fields";
      goto fail;
    }
    for (int j = 0; j < f->naxes; j++) {
      cJSON *s = f->axes[j] ? cJSON_CreateString(f->axes[j]) : NULL;
      if (!s || !cJSON_AddItemToArray(axes, s)) {
        cJSON_Delete(s);
        bad = "fields' axes";
        goto fail;
      }
    }
    if (f->init && (!add_str(it, "init", f->init) || !add_str(it, "init_arg", f->init_arg))) {
      bad = "fields' init";
      goto fail;
    }
  }
  if (m->nkeeps && !(arr = cJSON_AddArrayToObject(root, "keeps"))) goto oom;
  for (int i = 0; i < m->nkeeps; i++) {
    const art_keep *k = &m->keeps[i];
    if (!(it = cJSON_CreateObject()) || !cJSON_AddItemToArray(arr, it)) goto oom;
    if (!add_str(it, "kind", enum_name(keep_kind_names, 3, (int)k->kind)) ||
        !add_str(it, "unit", k->unit) || !add_num(it, "at_prefill", k->at_prefill != 0)) {
      bad = "keeps";
      goto fail;
    }
  }
  if (m->nselects && !(arr = cJSON_AddArrayToObject(root, "selects"))) goto oom;
  for (int i = 0; i < m->nselects; i++) {
    const art_select *x = &m->selects[i];
    if (!(it = cJSON_CreateObject()) || !cJSON_AddItemToArray(arr, it)) goto oom;
    if (!add_str(it, "kind", enum_name(select_kind_names, 3, (int)x->kind)) ||
        (x->kind != ART_SELECT_ALL && !add_num(it, "field", x->field)) ||
        (x->kind == ART_SELECT_TOP && !add_str(it, "unit", x->unit))) {
      bad = "selects";
      goto fail;
    }
  }
  if (!add_num(root, "per_head", m->per_head != 0) ||
      !add_num(root, "token_granular", m->token_granular != 0) ||
      !add_num(root, "requires", m->nrequires) ||
      (m->require_texts && !add_names(root, "require_texts", m->require_texts, m->nrequires)))
    goto oom;
  if (!(arr = cJSON_AddArrayToObject(root, "kernels"))) goto oom;
  for (int i = 0; i < m->nkernels; i++) {
    const art_kernel *k = &m->kernels[i];
    if (!(it = cJSON_CreateObject()) || !cJSON_AddItemToArray(arr, it)) goto oom;
    if (!add_str(it, "name", k->name) || !add_str(it, "kind", art_kernel_kind_name(k->kind)) ||
        !add_str(it, "entry", k->entry)) {
      bad = "kernels";
      goto fail;
    }
  }
  if (!(arr = cJSON_AddArrayToObject(root, "targets"))) goto oom;
  for (int i = 0; i < m->ntargets; i++) {
    const art_target *t = &m->targets[i];
    char sum[17];
    if (!(it = cJSON_CreateObject()) || !cJSON_AddItemToArray(arr, it)) goto oom;
    art_hex64(art_fnv1a64(t->data, (size_t)t->size), sum);
    if (!add_str(it, "name", t->name) || !add_str(it, "kind", art_target_kind_name(t->kind)) ||
        !add_num(it, "offset", (double)offsets[i]) || !add_num(it, "size", (double)t->size) ||
        !add_str(it, "checksum", sum) ||
        (t->nshapes && !add_names(it, "shapes", t->shapes, t->nshapes)) ||
        (t->ngpu_kernels && !add_names(it, "gpu_kernels", t->gpu_kernels, t->ngpu_kernels))) {
      bad = "targets";
      goto fail;
    }
  }
  return root;
oom:
  cJSON_Delete(root);
  fail(err, ART_ENOMEM, "art_write: out of memory");
  return NULL;
fail:
  cJSON_Delete(root);
  fail(err, ART_EARG, "art_write: invalid manifest: %s has a NULL or invalid entry", bad);
  return NULL;
}

art_code art_write(const art_manifest *m, unsigned char **out, size_t *outlen, art_error *err) {
  if (err) {
    err->code = ART_OK;
    err->msg[0] = '\0';
  }
  if (!m || !out || !outlen) return fail(err, ART_EARG, "art_write: NULL argument");
  *out = NULL;
  *outlen = 0;
  if (m->nparams < 0 || m->nfields < 0 || m->nkernels < 0 || m->ntargets < 0 ||
      m->nparams > ART_MAX_ITEMS || m->nfields > ART_MAX_ITEMS ||
      m->nkernels > ART_MAX_ITEMS || m->ntargets > ART_MAX_ITEMS ||
      (m->nparams && !m->params) || (m->nfields && !m->fields) ||
      (m->nkernels && !m->kernels) || (m->ntargets && !m->targets))
    return fail(err, ART_EARG, "art_write: invalid manifest: bad list count or NULL list");

  uint64_t *offsets = calloc((size_t)m->ntargets + 1, sizeof *offsets);
  if (!offsets) return fail(err, ART_ENOMEM, "art_write: out of memory");
  uint64_t total = 0;
  for (int i = 0; i < m->ntargets; i++) {
    if (!m->targets[i].data && m->targets[i].size) {
      free(offsets);
      return fail(err, ART_EARG, "art_write: target %d has no data", i);
    }
    offsets[i] = total;
    total += m->targets[i].size;
  }
  cJSON *root = build_manifest(m, offsets, err);
  free(offsets);
  if (!root) return err ? err->code : ART_EARG;
  char *json = cJSON_Print(root);
  cJSON_Delete(root);
  if (!json) return fail(err, ART_ENOMEM, "art_write: out of memory");
  size_t mlen = strlen(json);
  if (mlen > ART_MAX_MANIFEST || total > SIZE_MAX - ART_HEADER_LEN - mlen) {
    free(json);
    return fail(err, ART_EARG, "art_write: artifact too large");
  }
  size_t len = ART_HEADER_LEN + mlen + (size_t)total;
  unsigned char *buf = malloc(len);
  if (!buf) {
    free(json);
    return fail(err, ART_ENOMEM, "art_write: out of memory (%zu bytes)", len);
  }
  memcpy(buf, ART_MAGIC, ART_MAGIC_LEN);
  wr32(buf + 8, ART_FORMAT);
  wr32(buf + 12, (uint32_t)mlen);
  wr64(buf + 16, art_fnv1a64(json, mlen));
  memcpy(buf + ART_HEADER_LEN, json, mlen);
  free(json);
  size_t at = ART_HEADER_LEN + mlen;
  for (int i = 0; i < m->ntargets; i++) {
    if (m->targets[i].size) memcpy(buf + at, m->targets[i].data, (size_t)m->targets[i].size);
    at += (size_t)m->targets[i].size;
  }

  /* The reader's rules are the format's rules: check our own output with them. */
  art_manifest *check = NULL;
  art_error perr;
  if (art_parse(buf, len, &check, &perr) != ART_OK) {
    free(buf);
    return fail(err, perr.code == ART_ENOMEM ? ART_ENOMEM : ART_EARG,
                "art_write: invalid manifest: %s", perr.msg);
  }
  art_manifest_free(check);
  *out = buf;
  *outlen = len;
  return ART_OK;
}

art_code art_write_file(const art_manifest *m, const char *path, art_error *err) {
  unsigned char *buf;
  size_t len;
  art_code c = art_write(m, &buf, &len, err);
  if (c) return c;
  if (!path) {
    free(buf);
    return fail(err, ART_EARG, "art_write_file: NULL path");
  }
  /* Write beside the destination and rename, so a reader never sees half a file. */
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 5);
  if (!tmp) {
    free(buf);
    return fail(err, ART_ENOMEM, "art_write_file: out of memory");
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  FILE *f = fopen(tmp, "wb");
  int ok = f && fwrite(buf, 1, len, f) == len;
  int saved = errno;
  if (f && fclose(f) != 0 && ok) {
    ok = 0;
    saved = errno;
  }
  if (ok && rename(tmp, path) != 0) {
    ok = 0;
    saved = errno;
  }
  free(buf);
  if (!ok) {
    remove(tmp);
    free(tmp);
    return fail(err, ART_EIO, "cannot write '%s': %s", path, strerror(saved));
  }
  free(tmp);
  return ART_OK;
}
