/* hf.c - vx-serve's loader of Hugging Face model folders: config.json (LlamaForCausalLM,
 * Qwen3ForCausalLM), weights in model.safetensors or in the shards model.safetensors.index.json
 * names (F32, F16, BF16), tokenizer.json beside them (read by bpe.c). Sits under
 * runtime/serve/ beside weights.c, whose safetensors reader (loader.h) it uses. Each shard is
 * mapped once; f32 tensors are used in place, f16/bf16 ones converted once to f32 (what the
 * BLAS products need), and a shard left with no tensor in place is unmapped at once. Treats
 * every file as hostile; never prints, never exits. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loader.h"
#include "util.h"

enum { HF_MAX_SHARDS = 256, HF_PATH = 1024 };

typedef struct hf_shard {
  char file[HF_PATH];
  model_map map;
  st_file st;
} hf_shard;

typedef struct hf_ctx {
  const char *dir;
  cJSON *cfg, *index;   /* config.json; the index (NULL for one model.safetensors) */
  hf_shard *shard;
  int nshard;
} hf_ctx;

cJSON *loader_read_json(const char *path, int *missing, char *err) {
  FILE *f = fopen(path, "rb");
  *missing = !f && errno == ENOENT;
  if (!f) {
    serve_errf(err, "cannot open '%s': %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0, k;
  char *buf = malloc(cap + 1);
  while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0)
    if ((n += k) == cap) {
      char *nb = realloc(buf, (cap *= 2) + 1);
      if (!nb)
        free(buf);
      buf = nb;
    }
  fclose(f);
  cJSON *j = buf ? cJSON_ParseWithLength(buf, n) : NULL;
  free(buf);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    serve_errf(err, "'%s' is not a JSON object (truncated or corrupt?)", path);
    return NULL;
  }
  return j;
}

/* An integer field: the value, dflt when absent (dflt < 0: required), INT_MIN when bad. */
static int cfg_int(const cJSON *o, const char *key, int dflt, int *bad) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) {
    *bad |= dflt < 0;
    return dflt;
  }
  if (cJSON_IsArray(v)) /* eos_token_id may be a list: its first */
    v = cJSON_GetArrayItem(v, 0);
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9) {
    *bad = 1;
    return 0;
  }
  return (int)v->valuedouble;
}

static double cfg_num(const cJSON *o, const char *key, double dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static int cfg_true(const cJSON *o, const char *key) {
  return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* The architecture config.json names: 0 Llama, 1 Qwen3, -1 unknown (message in err). */
static int hf_arch(const hf_ctx *h, const char *path, char *err) {
  const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h->cfg, "architectures"), 0);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(h->cfg, "model_type");
  const char *name = cJSON_IsString(a) ? a->valuestring : cJSON_IsString(t) ? t->valuestring : NULL;
  if (name && (!strcmp(name, "LlamaForCausalLM") || !strcmp(name, "llama")))
    return 0;
  if (name && (!strcmp(name, "Qwen3ForCausalLM") || !strcmp(name, "qwen3")))
    return 1;
  return serve_errf(err, "'%s' names the architecture '%s', which vx-serve does not load (known: "
                    "LlamaForCausalLM, Qwen3ForCausalLM)", path, name ? name : "(none)");
}

/* What Llama and Qwen3 share and vx-serve does not implement: refused by name. */
static int hf_unsupported(const cJSON *cfg, const char *path, char *err) {
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, "hidden_act");
  if (cJSON_IsString(act) && strcmp(act->valuestring, "silu"))
    return serve_errf(err, "'%s': hidden_act '%s' is not supported (silu expected)", path,
                      act->valuestring);
  if (cfg_true(cfg, "attention_bias") || cfg_true(cfg, "mlp_bias"))
    return serve_errf(err, "'%s': attention or MLP biases are not supported", path);
  if (cfg_true(cfg, "use_sliding_window"))
    return serve_errf(err, "'%s': use_sliding_window is not supported", path);
  return 0;
}

static int hf_rope_scaling(model_config *c, const cJSON *cfg, const char *path, char *err) {
  const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
  if (!rs || cJSON_IsNull(rs))
    return 0;
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
  if (!ty)
    ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
  int bad = 0;
  if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "llama3"))
    return serve_errf(err, "'%s': rope_scaling of type '%s' is not supported (llama3 or none)",
                      path, cJSON_IsString(ty) ? ty->valuestring : "?");
  c->rope_factor = (float)cfg_num(rs, "factor", 0);
  c->rope_low = (float)cfg_num(rs, "low_freq_factor", 0);
  c->rope_high = (float)cfg_num(rs, "high_freq_factor", 0);
  c->rope_orig_ctx = cfg_int(rs, "original_max_position_embeddings", -1, &bad);
  if (bad || !(c->rope_factor > 0) || !(c->rope_low > 0) || !(c->rope_high > c->rope_low) ||
      c->rope_orig_ctx <= 0)
    return serve_errf(err, "'%s': rope_scaling needs factor > 0, 0 < low_freq_factor < "
                      "high_freq_factor and original_max_position_embeddings", path);
  return 0;
}

static int hf_config(model *m, hf_ctx *h, char *err) {
  char path[HF_PATH + 32];
  snprintf(path, sizeof path, "%s/config.json", h->dir);
  int missing, bad = 0;
  if (!(h->cfg = loader_read_json(path, &missing, err))) {
    if (missing)
      serve_errf(err, "model folder '%s' has no config.json (a Hugging Face model folder holds "
                 "config.json, model.safetensors or its shards, and tokenizer.json)", h->dir);
    return -1;
  }
  int qwen = hf_arch(h, path, err);
  if (qwen < 0 || hf_unsupported(h->cfg, path, err))
    return -1;
  const cJSON *j = h->cfg;
  model_config *c = &m->cfg;
  *c = (model_config){.dim = cfg_int(j, "hidden_size", -1, &bad),
                      .hidden = cfg_int(j, "intermediate_size", -1, &bad),
                      .layers = cfg_int(j, "num_hidden_layers", -1, &bad),
                      .heads = cfg_int(j, "num_attention_heads", -1, &bad),
                      .vocab = cfg_int(j, "vocab_size", -1, &bad),
                      .ctx = cfg_int(j, "max_position_embeddings", -1, &bad),
                      .rope_theta = (float)cfg_num(j, "rope_theta", 10000.0),
                      .norm_eps = (float)cfg_num(j, "rms_norm_eps", 1e-6),
                      .rope_half = 1, .qk_norm = qwen, .eos = -1, .bos = -1};
  c->kv_heads = cfg_int(j, "num_key_value_heads", c->heads, &bad);
  c->head_dim = cfg_int(j, "head_dim", c->heads > 0 ? c->dim / c->heads : 0, &bad);
  c->eos = cfg_int(j, "eos_token_id", 0x7fffffff, &bad);
  c->eos = c->eos == 0x7fffffff ? -1 : c->eos;
  if (bad)
    return serve_errf(err, "'%s' lacks an integer hidden_size, intermediate_size, "
                      "num_hidden_layers, num_attention_heads, vocab_size or "
                      "max_position_embeddings (or has a malformed head_dim, "
                      "num_key_value_heads or eos_token_id)", path);
  snprintf(c->arch, sizeof c->arch, "%s", qwen ? "hf:qwen3" : "hf:llama");
  snprintf(c->tokenizer, sizeof c->tokenizer, "bpe");
  snprintf(c->tokenizer_file, sizeof c->tokenizer_file, "%s/tokenizer.json", h->dir);
  if (c->eos >= c->vocab)
    return serve_errf(err, "'%s': eos_token_id %d is outside the vocabulary (%d)", path, c->eos,
                      c->vocab);
  return hf_rope_scaling(c, j, path, err) || loader_check_config(c, path, err) ? -1 : 0;
}

static int hf_add_shard(hf_ctx *h, const char *file, char *err) {
  for (int i = 0; i < h->nshard; i++)
    if (!strcmp(h->shard[i].file, file))
      return 0;
  if (h->nshard == HF_MAX_SHARDS || strchr(file, '/') || strlen(file) >= HF_PATH - 1)
    return serve_errf(err, "model folder '%s': the index names too many shards or a bad file name "
                      "'%s'", h->dir, file);
  hf_shard *s = &h->shard[h->nshard];
  memset(s, 0, sizeof *s);
  snprintf(s->file, sizeof s->file, "%s", file);
  char path[2 * HF_PATH + 2];
  snprintf(path, sizeof path, "%s/%s", h->dir, file);
  if (loader_map(path, &s->map, err) != 0)
    return -1;
  h->nshard++;
  if (st_open(&s->st, &s->map, path, err) != 0)
    return -1;
  s->st.path = s->file; /* messages name the shard; the folder is named by the caller */
  return 0;
}

/* Maps model.safetensors, or every shard the index's weight_map names. */
static int hf_shards(hf_ctx *h, char *err) {
  char path[HF_PATH + 48];
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", h->dir);
  int missing;
  h->index = loader_read_json(path, &missing, err);
  if (!h->index && !missing)
    return -1;
  if (!h->index) {
    snprintf(path, sizeof path, "%s/model.safetensors", h->dir);
    if (access(path, F_OK) == 0)
      return hf_add_shard(h, "model.safetensors", err);
    return serve_errf(err, "model folder '%s' has neither model.safetensors nor "
                      "model.safetensors.index.json", h->dir);
  }
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(h->index, "weight_map"), *e;
  if (!cJSON_IsObject(wm))
    return serve_errf(err, "'%s' has no weight_map object", path);
  cJSON_ArrayForEach(e, wm) {
    if (!cJSON_IsString(e))
      return serve_errf(err, "'%s': weight_map['%s'] is not a file name", path, e->string);
    if (hf_add_shard(h, e->valuestring, err) != 0)
      return -1;
  }
  return 0;
}

/* The tensor `name` from the shard the index names (or the one file), as f32. */
static const float *hf_tensor(model *m, hf_ctx *h, const char *name, int d0, int d1, char *err) {
  hf_shard *s = &h->shard[0];
  if (h->index) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(h->index, "weight_map"), name);
    s = NULL;
    for (int i = 0; cJSON_IsString(f) && i < h->nshard; i++)
      if (!strcmp(h->shard[i].file, f->valuestring))
        s = &h->shard[i];
    if (!s) {
      serve_errf(err, "model folder '%s': model.safetensors.index.json names no shard for "
                 "tensor '%s'", h->dir, name);
      return NULL;
    }
  }
  const float *t = st_tensor(m, &s->st, name, d0, d1, err);
  if (!t) { /* st_tensor named the shard alone: add the folder */
    char msg[SERVE_ERR_LEN];
    snprintf(msg, sizeof msg, "%s", err);
    serve_errf(err, "model folder '%s': %s", h->dir, msg);
  }
  return t;
}

static int hf_weights(model *m, hf_ctx *h, char *err) {
  const model_config *c = &m->cfg;
  int d = c->dim, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
  m->layer = calloc((size_t)c->layers, sizeof *m->layer);
  if (!m->layer)
    return serve_errf(err, "out of memory");
  if (!(m->emb = hf_tensor(m, h, "model.embed_tokens.weight", c->vocab, d, err)) ||
      !(m->final_norm = hf_tensor(m, h, "model.norm.weight", d, 0, err)))
    return -1;
  int tied = cfg_true(h->cfg, "tie_word_embeddings");
  if (!(m->cls = tied ? m->emb : hf_tensor(m, h, "lm_head.weight", c->vocab, d, err)))
    return -1;
  for (int l = 0; l < c->layers; l++) {
    model_layer *y = &m->layer[l];
    const struct {
      const float **dst;
      const char *name;
      int d0, d1;
    } t[] = {{&y->attn_norm, "input_layernorm", d, 0},
             {&y->wq, "self_attn.q_proj", qd, d},
             {&y->wk, "self_attn.k_proj", kd, d},
             {&y->wv, "self_attn.v_proj", kd, d},
             {&y->wo, "self_attn.o_proj", d, qd},
             {&y->ffn_norm, "post_attention_layernorm", d, 0},
             {&y->w1, "mlp.gate_proj", c->hidden, d},
             {&y->w3, "mlp.up_proj", c->hidden, d},
             {&y->w2, "mlp.down_proj", d, c->hidden},
             {&y->q_norm, "self_attn.q_norm", c->head_dim, 0},
             {&y->k_norm, "self_attn.k_norm", c->head_dim, 0}};
    int nt = c->qk_norm ? 11 : 9;
    for (int i = 0; i < nt; i++) {
      char name[128];
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, t[i].name);
      if (!(*t[i].dst = hf_tensor(m, h, name, t[i].d0, t[i].d1, err)))
        return -1;
    }
  }
  return 0;
}

int hf_load(model *m, const char *dir, char *err) {
  hf_ctx h = {.dir = dir, .shard = calloc(HF_MAX_SHARDS, sizeof(hf_shard))};
  int rc = !h.shard ? serve_errf(err, "out of memory")
                    : hf_config(m, &h, err) || hf_shards(&h, err) || hf_weights(m, &h, err);
  for (int i = 0; i < h.nshard; i++) { /* keep only the shards with tensors in place */
    st_close(&h.shard[i].st);
    if (rc == 0 && h.shard[i].st.in_place > 0)
      rc = loader_keep_map(m, h.shard[i].map, err);
    else
      munmap(h.shard[i].map.p, h.shard[i].map.len);
  }
  cJSON_Delete(h.cfg);
  cJSON_Delete(h.index);
  free(h.shard);
  return rc ? -1 : 0;
}
