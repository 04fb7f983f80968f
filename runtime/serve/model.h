/* model.h - vx-serve's model: the shape of a Llama-architecture decoder (RMSNorm, RoPE, GQA,
 * SwiGLU, optionally Qwen3's per-head q/k RMSNorm), its weights as f32 arrays, the loaders
 * (weights.c: llama2.c checkpoints, single-file safetensors, synthetic; hf.c: Hugging Face
 * model folders) and the dense math of
 * one layer (forward.c). Sits under runtime/serve/; knows nothing of policies or the KV cache
 * (engine.c joins them). Loaders and math never print and never exit: errors come back as a
 * message in the caller's buffer. */
#ifndef SERVE_MODEL_H
#define SERVE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum { MODEL_ERR_LEN = SERVE_ERR_LEN };

typedef struct model_config {
  int dim, hidden, layers, heads, kv_heads, head_dim, vocab, ctx;
  float rope_theta, norm_eps;
  /* Llama 3.1's RoPE frequency scaling (config.json rope_scaling, rope_type "llama3");
   * rope_factor 0: none */
  float rope_factor, rope_low, rope_high;
  int rope_orig_ctx;
  int rope_half;  /* 1: rotate-half pairs (c, c + D/2); 0: llama2.c's interleaved (2i, 2i+1) */
  int qk_norm;    /* Qwen3: RMSNorm over each head's q and k before RoPE */
  int bos;        /* token every sequence starts with */
  int eos;        /* token that ends a generation; -1 if none */
  char arch[32];  /* "llama2c", "vx-tiny", "synthetic:<preset>" */
  char tokenizer[16]; /* "bytes" (ids 0-255 are bytes), "llama2c" (needs tokenizer.bin) or
                       * "bpe" (a Hugging Face tokenizer.json: tokenizer_file by default) */
  char tokenizer_file[1024];
} model_config;

typedef struct model_layer {
  const float *attn_norm, *wq, *wk, *wv, *wo;   /* w* are [out][in] (y = W x) */
  const float *ffn_norm, *w1, *w2, *w3;
  const float *q_norm, *k_norm;                 /* [head_dim] when qk_norm */
} model_layer;

typedef struct model_map {
  void *p;
  size_t len;
} model_map;

typedef struct model {
  model_config cfg;
  const float *emb;        /* [vocab][dim] */
  const float *final_norm; /* [dim] */
  const float *cls;        /* [vocab][dim]; emb when tied */
  model_layer *layer;      /* [layers] */
  const float *rope_cos, *rope_sin; /* [ctx][head_dim / 2], computed at load */
  model_map *maps;         /* the files whose f32 tensors are used in place, memory-mapped
                            * read-only (none for synthetic) */
  int nmaps;
  float **owned;           /* arrays converted or made at load, freed with the model */
  int nowned, cap_owned;
} model;

/* Loads a model: a llama2.c checkpoint (.bin), a single-file safetensors whose metadata holds
 * the config (.safetensors), a Hugging Face model folder (config.json and model.safetensors
 * or its shards with model.safetensors.index.json; Llama and Qwen3), or
 * "synthetic:PRESET[:layers=N][:ctx=N][:qk_norm=0|1]" (seeded random weights; presets
 * qwen3-1.7b, llama-3.1-8b, tiny). Returns 0, or -1 with a message naming the file in err. */
int model_load(const char *path, uint64_t seed, model **out, char *err);
void model_free(model *m);
/* Parameters of the decoder's matrices per token (projections and MLP, all layers), i.e.
 * half the FLOPs of one token's dense matrix products; the classifier separately. */
double model_matrix_params(const model_config *c);

/* ---- forward.c: the dense math, n tokens at a time (rows of x are tokens) */

/* Scratch for n tokens; sized by forward_scratch_bytes. */
typedef struct forward_scratch {
  float *xb, *q, *k, *v, *att, *h1, *h3, *scores;
  int cap_tokens, cap_keys;
} forward_scratch;
int forward_scratch_init(forward_scratch *s, const model_config *c, int ntok, int nkeys);
void forward_scratch_free(forward_scratch *s);

/* x[n][dim] = embedding of tokens. */
void forward_embed(const model *m, const int *tokens, int n, float *x);
/* Attention inputs of layer l for n tokens at positions pos[n]: s->q [n][heads][D],
 * s->k, s->v [n][kv_heads][D], RoPE applied. */
void forward_qkv(const model *m, int l, const float *x, const int *pos, int n, forward_scratch *s);
/* Dense causal attention of n queries at positions start.. over keys [0, start + n) given
 * as K, V [start + n][kv_heads][D]; result in s->att [n][heads][D]. */
void forward_prefill_attention(const model *m, const float *K, const float *V, int start, int n,
                               forward_scratch *s);
/* The rest of layer l: x += Wo att (att = s->att), then x += W2 (silu(W1 h) * W3 h). */
void forward_out_mlp(const model *m, int l, float *x, int n, forward_scratch *s);
/* logits[n][vocab] of the final norm of x. */
void forward_logits(const model *m, const float *x, int n, float *logits, forward_scratch *s);
/* y[n][out] = x[n][in] W^T through BLAS. */
void forward_matmul(const float *x, const float *w, float *y, int n, int in, int out);

#endif
