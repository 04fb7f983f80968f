/* weights.c - vx-serve's model loaders: llama2.c checkpoints, single-file safetensors with
 * the config in their metadata, and synthetic models with seeded random weights. Sits under
 * runtime/serve/ below engine.c; produces a `model` (model.h); Hugging Face folders are
 * hf.c's, reached from model_load here. Files are memory-mapped and
 * f32 tensors used in place; f16/bf16 tensors (and f32 ones at an unaligned offset) are
 * converted once at load. Treats every file as hostile: sizes and offsets are checked before
 * any read, and a bad file gives a message naming it, never a crash. Never prints. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader.h"
#include "util.h"

float *loader_own(model *m, size_t n) {
  if (m->nowned == m->cap_owned) {
    int cap = m->cap_owned ? 2 * m->cap_owned : 32;
    float **p = realloc(m->owned, (size_t)cap * sizeof *p);
    if (!p)
      return NULL;
    m->owned = p;
    m->cap_owned = cap;
  }
  float *a = malloc((n ? n : 1) * sizeof(float));
  if (a)
    m->owned[m->nowned++] = a;
  return a;
}

int loader_map(const char *path, model_map *out, char *err) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return serve_errf(err, "cannot open model file '%s': %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return serve_errf(err, "model file '%s' is not a regular file", path);
  }
  if (sb.st_size == 0) {
    close(fd);
    return serve_errf(err, "model file '%s' is empty", path);
  }
  void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED)
    return serve_errf(err, "cannot map model file '%s': %s", path, strerror(errno));
  *out = (model_map){p, (size_t)sb.st_size};
  return 0;
}

int loader_keep_map(model *m, model_map mp, char *err) {
  model_map *a = realloc(m->maps, (size_t)(m->nmaps + 1) * sizeof *a);
  if (!a) {
    munmap(mp.p, mp.len);
    return serve_errf(err, "out of memory");
  }
  m->maps = a;
  m->maps[m->nmaps++] = mp;
  return 0;
}

int loader_check_config(const model_config *c, const char *path, char *err) {
  if (c->dim <= 0 || c->hidden <= 0 || c->layers <= 0 || c->heads <= 0 || c->kv_heads <= 0 ||
      c->head_dim <= 0 || c->vocab <= 0 || c->ctx <= 0 || c->heads % c->kv_heads != 0 ||
      c->head_dim % 2 != 0 || c->dim > (1 << 16) || c->hidden > (1 << 18) || c->layers > 1024 ||
      c->heads > 1024 || c->head_dim > 1024 || c->vocab > (1 << 22) || c->ctx > (1 << 22))
    return serve_errf(err,
                "model file '%s': implausible config (dim %d, hidden %d, layers %d, heads %d, "
                "kv_heads %d, head_dim %d, vocab %d, context %d): expected positive sizes with "
                "heads a multiple of kv_heads and an even head_dim",
                path, c->dim, c->hidden, c->layers, c->heads, c->kv_heads, c->head_dim, c->vocab,
                c->ctx);
  return 0;
}

/* Llama 3.1's scaling of one RoPE frequency (config.json rope_scaling, rope_type "llama3"):
 * long wavelengths slowed by the factor, short ones kept, a smooth blend between. */
static float rope_scale(const model_config *c, float freq) {
  float wavelen = 2.0f * 3.14159265358979f / freq;
  float lo_wl = (float)c->rope_orig_ctx / c->rope_low, hi_wl = (float)c->rope_orig_ctx / c->rope_high;
  if (wavelen < hi_wl)
    return freq;
  if (wavelen > lo_wl)
    return freq / c->rope_factor;
  float smooth = ((float)c->rope_orig_ctx / wavelen - c->rope_low) / (c->rope_high - c->rope_low);
  return (1.0f - smooth) * freq / c->rope_factor + smooth * freq;
}

static int make_rope(model *m, char *err) {
  const model_config *c = &m->cfg;
  int half = c->head_dim / 2;
  float *cs = loader_own(m, (size_t)c->ctx * half), *sn = loader_own(m, (size_t)c->ctx * half);
  if (!cs || !sn)
    return serve_errf(err, "out of memory for the RoPE tables");
  for (int i = 0; i < half; i++) {
    /* llama2.c's float arithmetic, so its checkpoints reproduce its outputs */
    float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
    if (c->rope_factor > 0)
      freq = rope_scale(c, freq);
    for (int p = 0; p < c->ctx; p++) {
      float a = (float)p * freq;
      cs[(size_t)p * half + i] = cosf(a);
      sn[(size_t)p * half + i] = sinf(a);
    }
  }
  m->rope_cos = cs;
  m->rope_sin = sn;
  return 0;
}

double model_matrix_params(const model_config *c) {
  double qd = (double)c->heads * c->head_dim, kd = (double)c->kv_heads * c->head_dim;
  double per = c->dim * (qd + 2 * kd) + qd * c->dim + 3.0 * c->dim * c->hidden;
  return per * c->layers;
}

/* ------------------------------------------------------------------ llama2.c */

static int load_llama2c(model *m, const char *path, char *err) {
  const model_map *mp = &m->maps[0];
  if (mp->len < 28)
    return serve_errf(err, "model file '%s' is truncated: %zu bytes, a llama2.c header needs 28", path,
                mp->len);
  int32_t h[7];
  memcpy(h, mp->p, sizeof h);
  model_config *c = &m->cfg;
  int shared = h[5] > 0;
  *c = (model_config){.dim = h[0], .hidden = h[1], .layers = h[2], .heads = h[3],
                      .kv_heads = h[4], .vocab = shared ? h[5] : -h[5], .ctx = h[6],
                      .rope_theta = 10000.0f, .norm_eps = 1e-5f, .rope_half = 0, .qk_norm = 0,
                      .bos = 1, .eos = 2};
  c->head_dim = c->heads > 0 ? c->dim / c->heads : 0;
  snprintf(c->arch, sizeof c->arch, "llama2c");
  snprintf(c->tokenizer, sizeof c->tokenizer, "llama2c");
  if (c->heads > 0 && c->dim % c->heads != 0)
    return serve_errf(err, "model file '%s': dim %d is not a multiple of n_heads %d (not a llama2.c "
                "checkpoint?)", path, c->dim, c->heads);
  if (loader_check_config(c, path, err))
    return -1;
  size_t d = (size_t)c->dim, L = (size_t)c->layers, hd = (size_t)c->hidden;
  size_t kvd = (size_t)c->kv_heads * c->head_dim, V = (size_t)c->vocab;
  size_t need = V * d + L * d + L * d * d + 2 * L * d * kvd + L * d * d + L * d + 3 * L * d * hd +
                d + (size_t)c->ctx * c->head_dim + (shared ? 0 : V * d);
  size_t have = (mp->len - 28) / sizeof(float);
  if (have < need)
    return serve_errf(err, "model file '%s' is truncated: %zu bytes, the llama2.c header (dim %d, "
                "layers %d, vocab %d, context %d) needs %zu", path, mp->len, c->dim, c->layers,
                c->vocab, c->ctx, 28 + need * sizeof(float));
  const float *p = (const float *)((const char *)mp->p + 28);
  m->layer = calloc(L, sizeof *m->layer);
  if (!m->layer)
    return serve_errf(err, "out of memory");
  m->emb = p;
  p += V * d;
  for (size_t l = 0; l < L; l++) m->layer[l].attn_norm = p + l * d;
  p += L * d;
  for (size_t l = 0; l < L; l++) m->layer[l].wq = p + l * d * d;
  p += L * d * d;
  for (size_t l = 0; l < L; l++) m->layer[l].wk = p + l * d * kvd;
  p += L * d * kvd;
  for (size_t l = 0; l < L; l++) m->layer[l].wv = p + l * d * kvd;
  p += L * d * kvd;
  for (size_t l = 0; l < L; l++) m->layer[l].wo = p + l * d * d;
  p += L * d * d;
  for (size_t l = 0; l < L; l++) m->layer[l].ffn_norm = p + l * d;
  p += L * d;
  for (size_t l = 0; l < L; l++) m->layer[l].w1 = p + l * d * hd;
  p += L * d * hd;
  for (size_t l = 0; l < L; l++) m->layer[l].w2 = p + l * d * hd;
  p += L * d * hd;
  for (size_t l = 0; l < L; l++) m->layer[l].w3 = p + l * d * hd;
  p += L * d * hd;
  m->final_norm = p;
  p += d;
  p += (size_t)c->ctx * c->head_dim; /* freq_cis_real and _imag: recomputed by make_rope */
  m->cls = shared ? m->emb : p;
  return 0;
}

/* ------------------------------------------------------------------ safetensors */

static float half_to_float(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, f = h & 1023, u;
  if (e == 0) {
    if (f == 0) {
      u = s;
    } else { /* subnormal: normalise */
      e = 127 - 15 + 1;
      while (!(f & 1024)) {
        f <<= 1;
        e--;
      }
      u = s | (e << 23) | ((f & 1023) << 13);
    }
  } else if (e == 31) {
    u = s | 0x7f800000u | (f << 13);
  } else {
    u = s | ((e + 127 - 15) << 23) | (f << 13);
  }
  float x;
  memcpy(&x, &u, 4);
  return x;
}

/* The tensor `name` as f32 with exactly `n` elements (shape checked against dims). */
const float *st_tensor(model *m, st_file *f, const char *name, int d0, int d1, char *err) {
  cJSON *t = cJSON_GetObjectItemCaseSensitive(f->hdr, name);
  if (!cJSON_IsObject(t)) {
    serve_errf(err, "model file '%s' has no tensor '%s'", f->path, name);
    return NULL;
  }
  cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
  cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
  cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
  int want_rank = d1 > 0 ? 2 : 1;
  if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) ||
      cJSON_GetArraySize(off) != 2 || cJSON_GetArraySize(sh) != want_rank) {
    serve_errf(err, "model file '%s': tensor '%s' has a malformed entry (dtype, shape of rank %d and "
         "data_offsets expected)", f->path, name, want_rank);
    return NULL;
  }
  double s0 = cJSON_GetArrayItem(sh, 0)->valuedouble;
  double s1 = want_rank == 2 ? cJSON_GetArrayItem(sh, 1)->valuedouble : -1;
  if (s0 != d0 || (want_rank == 2 && s1 != d1)) {
    serve_errf(err, "model file '%s': tensor '%s' has shape [%g%s%g], the config needs [%d%s%d]",
         f->path, name, s0, want_rank == 2 ? ", " : "", want_rank == 2 ? s1 : 0.0, d0,
         want_rank == 2 ? ", " : "", want_rank == 2 ? d1 : 0);
    return NULL;
  }
  size_t n = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
  const char *ty = dt->valuestring;
  size_t es = !strcmp(ty, "F32") ? 4 : (!strcmp(ty, "F16") || !strcmp(ty, "BF16")) ? 2 : 0;
  if (!es) {
    serve_errf(err, "model file '%s': tensor '%s' has dtype %s (F32, F16 or BF16 expected)", f->path,
         name, ty);
    return NULL;
  }
  double b = cJSON_GetArrayItem(off, 0)->valuedouble, e = cJSON_GetArrayItem(off, 1)->valuedouble;
  if (!(b >= 0 && e >= b && e <= (double)f->data_len && e - b == (double)(n * es))) {
    serve_errf(err, "model file '%s' is truncated or corrupt: tensor '%s' spans bytes [%.0f, %.0f) of "
         "%zu data bytes, and needs %zu", f->path, name, b, e, f->data_len, n * es);
    return NULL;
  }
  const unsigned char *src = f->data + (size_t)b;
  if (es == 4 && ((uintptr_t)src & 3) == 0) {
    f->in_place++;
    return (const float *)src;
  }
  float *dst = loader_own(m, n);
  if (!dst) {
    serve_errf(err, "out of memory converting tensor '%s'", name);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if (es == 4) {
      memcpy(dst + i, src + 4 * i, 4);
    } else {
      uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
      if (!strcmp(ty, "F16")) {
        dst[i] = half_to_float(h);
      } else {
        uint32_t u = (uint32_t)h << 16;
        memcpy(dst + i, &u, 4);
      }
    }
  }
  return dst;
}

static int json_int(cJSON *o, const char *key, int *out, int dflt) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v) {
    *out = dflt;
    return dflt >= 0 ? 0 : -1;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble)
    return -1;
  *out = (int)v->valuedouble;
  return 0;
}

int st_open(st_file *f, const model_map *mp, const char *path, char *err) {
  memset(f, 0, sizeof *f);
  if (mp->len < 8)
    return serve_errf(err, "model file '%s' is truncated: %zu bytes (a safetensors file starts with "
                "an 8-byte header length)", path, mp->len);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--)
    hl = hl << 8 | ((const unsigned char *)mp->p)[i];
  if (hl < 2 || hl > mp->len - 8)
    return serve_errf(err, "model file '%s' is truncated or not safetensors: header length %llu, file "
                "%zu bytes", path, (unsigned long long)hl, mp->len);
  *f = (st_file){.hdr = cJSON_ParseWithLength((const char *)mp->p + 8, (size_t)hl),
                 .data = (const unsigned char *)mp->p + 8 + hl,
                 .data_len = mp->len - 8 - (size_t)hl, .path = path};
  if (!cJSON_IsObject(f->hdr)) {
    st_close(f);
    return serve_errf(err, "model file '%s' is corrupt: its safetensors header is not a JSON object",
                path);
  }
  return 0;
}

void st_close(st_file *f) {
  cJSON_Delete(f->hdr);
  f->hdr = NULL;
}

static int load_safetensors(model *m, const char *path, char *err) {
  st_file f;
  if (st_open(&f, &m->maps[0], path, err) != 0)
    return -1;
  int rc = -1;
  cJSON *meta = cJSON_GetObjectItemCaseSensitive(f.hdr, "__metadata__");
  cJSON *cfgs = meta ? cJSON_GetObjectItemCaseSensitive(meta, "config") : NULL;
  cJSON *cfg = cJSON_IsString(cfgs) ? cJSON_Parse(cfgs->valuestring) : NULL;
  model_config *c = &m->cfg;
  if (!cJSON_IsObject(cfg)) {
    serve_errf(err, "model file '%s' has no config in its metadata (__metadata__.config, a JSON "
         "string, expected; a Hugging Face model is given as its folder)", path);
    goto out;
  }
  *c = (model_config){.norm_eps = 1e-5f, .rope_half = 1, .bos = 256, .eos = -1};
  int ctx;
  if (json_int(cfg, "d_model", &c->dim, -1) || json_int(cfg, "n_layers", &c->layers, -1) ||
      json_int(cfg, "n_heads", &c->heads, -1) || json_int(cfg, "n_kv", &c->kv_heads, -1) ||
      json_int(cfg, "head_dim", &c->head_dim, -1) || json_int(cfg, "ffn", &c->hidden, -1) ||
      json_int(cfg, "vocab", &c->vocab, -1) || json_int(cfg, "context", &ctx, 4096) ||
      json_int(cfg, "qk_norm", &c->qk_norm, 0)) {
    serve_errf(err, "model file '%s': its config lacks an integer d_model, n_layers, n_heads, n_kv, "
         "head_dim, ffn or vocab", path);
    goto out;
  }
  c->ctx = ctx;
  cJSON *th = cJSON_GetObjectItemCaseSensitive(cfg, "rope_theta");
  c->rope_theta = cJSON_IsNumber(th) ? (float)th->valuedouble : 10000.0f;
  snprintf(c->arch, sizeof c->arch, "vx-tiny");
  snprintf(c->tokenizer, sizeof c->tokenizer, "bytes");
  if (c->vocab < 257) {
    serve_errf(err, "model file '%s': vocab %d cannot hold the byte tokenizer (256 bytes + BOS)", path,
         c->vocab);
    goto out;
  }
  if (loader_check_config(c, path, err))
    goto out;
  int d = c->dim, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
  m->layer = calloc((size_t)c->layers, sizeof *m->layer);
  if (!m->layer) {
    serve_errf(err, "out of memory");
    goto out;
  }
  if (!(m->emb = st_tensor(m, &f, "emb.weight", c->vocab, d, err)) ||
      !(m->final_norm = st_tensor(m, &f, "norm.weight", d, 0, err)))
    goto out;
  m->cls = m->emb;
  for (int l = 0; l < c->layers; l++) {
    model_layer *y = &m->layer[l];
    char n[64];
#define T(field, name, a, b)                                   \
  snprintf(n, sizeof n, "blocks.%d.%s.weight", l, name);      \
  if (!(y->field = st_tensor(m, &f, n, a, b, err)))           \
    goto out;
    T(attn_norm, "n1", d, 0)
    T(wq, "wq", qd, d)
    T(wk, "wk", kd, d)
    T(wv, "wv", kd, d)
    T(wo, "wo", d, qd)
    T(ffn_norm, "n2", d, 0)
    T(w1, "w1", c->hidden, d)
    T(w3, "w3", c->hidden, d)
    T(w2, "w2", d, c->hidden)
    if (c->qk_norm) {
      T(q_norm, "qn", c->head_dim, 0)
      T(k_norm, "kn", c->head_dim, 0)
    }
#undef T
  }
  rc = 0;
out:
  cJSON_Delete(cfg);
  st_close(&f);
  return rc;
}

/* ------------------------------------------------------------------ synthetic */

static float *random_tensor(model *m, size_t n, float scale, uint64_t *s) {
  float *a = loader_own(m, n);
  if (a)
    for (size_t i = 0; i < n; i++) /* uniform in [-scale, scale) */
      a[i] = scale * (float)(2.0 * serve_rand_unit(s) - 1.0);
  return a;
}

static float *ones(model *m, size_t n) {
  float *a = loader_own(m, n);
  if (a)
    for (size_t i = 0; i < n; i++)
      a[i] = 1.0f;
  return a;
}

static int load_synthetic(model *m, const char *spec, uint64_t seed, char *err) {
  static const struct {
    const char *name;
    model_config c;
  } presets[] = {
      {"qwen3-1.7b", {.dim = 2048, .hidden = 6144, .layers = 28, .heads = 16, .kv_heads = 8,
                      .head_dim = 128, .vocab = 151936, .ctx = 40960, .rope_theta = 1000000.0f,
                      .norm_eps = 1e-6f, .rope_half = 1, .qk_norm = 1}},
      {"llama-3.1-8b", {.dim = 4096, .hidden = 14336, .layers = 32, .heads = 32, .kv_heads = 8,
                        .head_dim = 128, .vocab = 128256, .ctx = 131072, .rope_theta = 500000.0f,
                        .norm_eps = 1e-5f, .rope_half = 1}},
      {"tiny", {.dim = 128, .hidden = 256, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 32,
                .vocab = 264, .ctx = 1024, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                .rope_half = 1}},
  };
  const char *name = spec + strlen("synthetic:");
  size_t nl = strcspn(name, ":");
  int found = -1;
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
    if (strlen(presets[i].name) == nl && !strncmp(presets[i].name, name, nl))
      found = (int)i;
  if (found < 0)
    return serve_errf(err, "unknown synthetic model '%s' (presets: synthetic:qwen3-1.7b, "
                "synthetic:llama-3.1-8b, synthetic:tiny; append :layers=N, :ctx=N to resize, "
                "and :qk_norm=1 for Qwen3's q/k norm)",
                spec);
  model_config *c = &m->cfg;
  *c = presets[found].c;
  for (const char *o = name + nl; *o == ':'; o += 1 + strcspn(o + 1, ":")) {
    int v;
    if (sscanf(o, ":layers=%d", &v) == 1)
      c->layers = v;
    else if (sscanf(o, ":ctx=%d", &v) == 1)
      c->ctx = v;
    else if (sscanf(o, ":qk_norm=%d", &v) == 1)
      c->qk_norm = v != 0;
    else
      return serve_errf(err, "synthetic model '%s': unknown option '%s' (layers=N, ctx=N or "
                        "qk_norm=0/1)", spec, o);
  }
  c->bos = 256;
  c->eos = -1;
  snprintf(c->arch, sizeof c->arch, "synthetic:%.*s", (int)(nl < 20 ? nl : 20), name);
  snprintf(c->tokenizer, sizeof c->tokenizer, "bytes");
  if (loader_check_config(c, spec, err))
    return -1;
  uint64_t s = seed;
  size_t d = (size_t)c->dim, qd = (size_t)c->heads * c->head_dim;
  size_t kd = (size_t)c->kv_heads * c->head_dim, h = (size_t)c->hidden;
  float sd = 1.0f / sqrtf((float)d), sh = 1.0f / sqrtf((float)h);
  m->layer = calloc((size_t)c->layers, sizeof *m->layer);
  if (!m->layer || !(m->emb = random_tensor(m, (size_t)c->vocab * d, 1.0f, &s)) ||
      !(m->final_norm = ones(m, d)))
    return serve_errf(err, "out of memory for synthetic model '%s'", spec);
  m->cls = m->emb;
  for (int l = 0; l < c->layers; l++) {
    model_layer *y = &m->layer[l];
    if (!(y->attn_norm = ones(m, d)) || !(y->ffn_norm = ones(m, d)) ||
        !(y->wq = random_tensor(m, qd * d, sd, &s)) || !(y->wk = random_tensor(m, kd * d, sd, &s)) ||
        !(y->wv = random_tensor(m, kd * d, sd, &s)) ||
        !(y->wo = random_tensor(m, d * qd, 1.0f / sqrtf((float)qd), &s)) ||
        !(y->w1 = random_tensor(m, h * d, sd, &s)) || !(y->w3 = random_tensor(m, h * d, sd, &s)) ||
        !(y->w2 = random_tensor(m, d * h, sh, &s)) ||
        (c->qk_norm && (!(y->q_norm = ones(m, (size_t)c->head_dim)) ||
                        !(y->k_norm = ones(m, (size_t)c->head_dim)))))
      return serve_errf(err, "out of memory for synthetic model '%s' (%d layers of dim %d; try "
                  ":layers=N)", spec, c->layers, c->dim);
  }
  return 0;
}

/* ------------------------------------------------------------------ entry */

static int is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int model_load(const char *path, uint64_t seed, model **out, char *err) {
  *out = NULL;
  model *m = calloc(1, sizeof *m);
  if (!m)
    return serve_errf(err, "out of memory");
  int rc;
  model_map mp;
  if (!strncmp(path, "synthetic:", 10)) {
    rc = load_synthetic(m, path, seed, err);
  } else if (is_dir(path)) {
    rc = hf_load(m, path, err);
  } else if ((rc = loader_map(path, &mp, err)) == 0 && (rc = loader_keep_map(m, mp, err)) == 0) {
    if (serve_ends_with(path, ".safetensors"))
      rc = load_safetensors(m, path, err);
    else if (serve_ends_with(path, ".bin"))
      rc = load_llama2c(m, path, err);
    else
      rc = serve_errf(err, "model file '%s': unknown format (expected a llama2.c .bin checkpoint, a "
                ".safetensors file or a Hugging Face model folder)", path);
  }
  if (rc == 0)
    rc = make_rope(m, err);
  if (rc != 0) {
    model_free(m);
    return -1;
  }
  *out = m;
  return 0;
}

void model_free(model *m) {
  if (!m)
    return;
  for (int i = 0; i < m->nowned; i++)
    free(m->owned[i]);
  free(m->owned);
  free(m->layer);
  for (int i = 0; i < m->nmaps; i++)
    munmap(m->maps[i].p, m->maps[i].len);
  free(m->maps);
  free(m);
}
