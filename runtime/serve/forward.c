/* forward.c - the dense math of a Llama-architecture decoder layer for n tokens at a time:
 * RMSNorm, q/k/v projections with RoPE (interleaved or rotate-half) and optional per-head
 * q/k norm, dense causal attention for prefill, the output projection and the SwiGLU MLP,
 * the classifier. Sits under runtime/serve/ below engine.c; every matrix product goes
 * through OpenBLAS (cblas_sgemm / cblas_sgemv, multi-threaded by OpenBLAS itself). Knows
 * nothing of the KV cache or policies: decode attention is the engine's (through libvxrt).
 * Never allocates after forward_scratch_init, never prints. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int forward_scratch_init(forward_scratch *s, const model_config *c, int ntok, int nkeys) {
  memset(s, 0, sizeof *s);
  size_t n = (size_t)ntok, qd = (size_t)c->heads * c->head_dim;
  size_t kd = (size_t)c->kv_heads * c->head_dim;
  size_t wide = (size_t)c->dim > qd ? (size_t)c->dim : qd;
  s->xb = malloc(n * wide * sizeof(float));
  s->q = malloc(n * qd * sizeof(float));
  s->k = malloc(n * kd * sizeof(float));
  s->v = malloc(n * kd * sizeof(float));
  s->att = malloc(n * qd * sizeof(float));
  s->h1 = malloc(n * ((size_t)c->hidden > (size_t)c->vocab ? (size_t)c->hidden : (size_t)c->vocab) *
                 sizeof(float));
  s->h3 = malloc(n * (size_t)c->hidden * sizeof(float));
  s->scores = malloc(n * (size_t)nkeys * sizeof(float));
  s->cap_tokens = ntok;
  s->cap_keys = nkeys;
  if (!s->xb || !s->q || !s->k || !s->v || !s->att || !s->h1 || !s->h3 || !s->scores) {
    forward_scratch_free(s);
    return -1;
  }
  return 0;
}

void forward_scratch_free(forward_scratch *s) {
  free(s->xb);
  free(s->q);
  free(s->k);
  free(s->v);
  free(s->att);
  free(s->h1);
  free(s->h3);
  free(s->scores);
  memset(s, 0, sizeof *s);
}

void forward_matmul(const float *x, const float *w, float *y, int n, int in, int out) {
  if (n == 1)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, 0.0f, y, 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f, y,
                out);
}

/* y += x W^T */
static void matmul_add(const float *x, const float *w, float *y, int n, int in, int out) {
  if (n == 1)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, 1.0f, y, 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 1.0f, y,
                out);
}

static void rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
  double ss = 0;
  for (int i = 0; i < n; i++)
    ss += (double)x[i] * x[i];
  float r = 1.0f / sqrtf((float)(ss / n) + eps);
  for (int i = 0; i < n; i++)
    y[i] = x[i] * r * w[i];
}

static void rope(const model *m, float *v, int nheads, int pos) {
  const model_config *c = &m->cfg;
  int D = c->head_dim, half = D / 2;
  const float *cs = m->rope_cos + (size_t)pos * half, *sn = m->rope_sin + (size_t)pos * half;
  for (int h = 0; h < nheads; h++) {
    float *x = v + (size_t)h * D;
    for (int i = 0; i < half; i++) {
      int a = c->rope_half ? i : 2 * i, b = c->rope_half ? i + half : 2 * i + 1;
      float x1 = x[a], x2 = x[b];
      x[a] = x1 * cs[i] - x2 * sn[i];
      x[b] = x1 * sn[i] + x2 * cs[i];
    }
  }
}

void forward_embed(const model *m, const int *tokens, int n, float *x) {
  int d = m->cfg.dim;
  for (int i = 0; i < n; i++)
    memcpy(x + (size_t)i * d, m->emb + (size_t)tokens[i] * d, (size_t)d * sizeof(float));
}

void forward_qkv(const model *m, int l, const float *x, const int *pos, int n,
                 forward_scratch *s) {
  const model_config *c = &m->cfg;
  const model_layer *y = &m->layer[l];
  int d = c->dim, D = c->head_dim, qd = c->heads * D, kd = c->kv_heads * D;
  for (int i = 0; i < n; i++)
    rmsnorm(s->xb + (size_t)i * d, x + (size_t)i * d, y->attn_norm, d, c->norm_eps);
  forward_matmul(s->xb, y->wq, s->q, n, d, qd);
  forward_matmul(s->xb, y->wk, s->k, n, d, kd);
  forward_matmul(s->xb, y->wv, s->v, n, d, kd);
  for (int i = 0; i < n; i++) {
    float *q = s->q + (size_t)i * qd, *k = s->k + (size_t)i * kd;
    if (c->qk_norm) {
      for (int h = 0; h < c->heads; h++)
        rmsnorm(q + (size_t)h * D, q + (size_t)h * D, y->q_norm, D, c->norm_eps);
      for (int h = 0; h < c->kv_heads; h++)
        rmsnorm(k + (size_t)h * D, k + (size_t)h * D, y->k_norm, D, c->norm_eps);
    }
    rope(m, q, c->heads, pos[i]);
    rope(m, k, c->kv_heads, pos[i]);
  }
}

/* e^x for the softmax, for -87 <= x <= 0 (the caller clamps: a separate loop, so that both
 * vectorise): round(x / ln 2) split off Cody-Waite style, e^f by its degree-6 Taylor
 * polynomial on |f| <= ln(2) / 2; relative error below 3e-7 (libm's expf is a scalar call). */
static inline float exp_neg(float x) {
  float t = x * 1.44269504f + 0.5f;
  float fl = (float)(int)t;
  fl -= fl > t ? 1.0f : 0.0f; /* floor(t) */
  float f = x - fl * 0.693359375f + fl * 2.12194440e-4f;
  float p = 1.0f / 720;
  p = p * f + 1.0f / 120;
  p = p * f + 1.0f / 24;
  p = p * f + 1.0f / 6;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  uint32_t u = (uint32_t)((int)fl + 127) << 23;
  float sc;
  memcpy(&sc, &u, sizeof sc);
  return p * sc;
}

enum { LANES = 16 };

/* Softmax of r[0, valid) in place and zeros in r[valid, end). Partial maxima and sums per
 * lane keep the loops vectorisable without reassociating floating point; built for AVX-512,
 * AVX2 and baseline x86-64, picked at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void softmax_row(float *r, int valid, int end) {
  float m[LANES], sm[LANES];
  for (int k = 0; k < LANES; k++)
    m[k] = -INFINITY;
  int j = 0;
  for (; j + LANES <= valid; j += LANES)
    for (int k = 0; k < LANES; k++)
      m[k] = r[j + k] > m[k] ? r[j + k] : m[k];
  float mx = -INFINITY;
  for (; j < valid; j++)
    mx = r[j] > mx ? r[j] : mx;
  for (int k = 0; k < LANES; k++)
    mx = m[k] > mx ? m[k] : mx;
  for (j = 0; j < valid; j++) {
    float x = r[j] - mx;
    r[j] = x < -87.0f ? -87.0f : x;
  }
  for (j = 0; j < valid; j++)
    r[j] = exp_neg(r[j]);
  for (int k = 0; k < LANES; k++)
    sm[k] = 0;
  for (j = 0; j + LANES <= valid; j += LANES)
    for (int k = 0; k < LANES; k++)
      sm[k] += r[j + k];
  float sum = 0;
  for (; j < valid; j++)
    sum += r[j];
  for (int k = 0; k < LANES; k++)
    sum += sm[k];
  float inv = 1.0f / sum;
  for (j = 0; j < valid; j++)
    r[j] *= inv;
  for (; j < end; j++)
    r[j] = 0;
}

void forward_prefill_attention(const model *m, const float *K, const float *V, int start, int n,
                               forward_scratch *s) {
  const model_config *c = &m->cfg;
  int D = c->head_dim, H = c->heads, G = c->heads / c->kv_heads, kd = c->kv_heads * D;
  int end = start + n;
  float scale = 1.0f / sqrtf((float)D);
  for (int h = 0; h < H; h++) {
    int kh = h / G;
    /* scores[i][j] = q_i . k_j / sqrt(D) for j < end, then causal mask and softmax */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, end, D, scale, s->q + (size_t)h * D,
                H * D, K + (size_t)kh * D, kd, 0.0f, s->scores, end);
    for (int i = 0; i < n; i++)
      softmax_row(s->scores + (size_t)i * end, start + i + 1, end);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, end, 1.0f, s->scores, end,
                V + (size_t)kh * D, kd, 0.0f, s->att + (size_t)h * D, H * D);
  }
}

void forward_out_mlp(const model *m, int l, float *x, int n, forward_scratch *s) {
  const model_config *c = &m->cfg;
  const model_layer *y = &m->layer[l];
  int d = c->dim, qd = c->heads * c->head_dim, hd = c->hidden;
  matmul_add(s->att, y->wo, x, n, qd, d);
  for (int i = 0; i < n; i++)
    rmsnorm(s->xb + (size_t)i * d, x + (size_t)i * d, y->ffn_norm, d, c->norm_eps);
  forward_matmul(s->xb, y->w1, s->h1, n, d, hd);
  forward_matmul(s->xb, y->w3, s->h3, n, d, hd);
  for (size_t i = 0; i < (size_t)n * hd; i++) {
    float a = s->h1[i];
    s->h1[i] = a / (1.0f + expf(-a)) * s->h3[i];
  }
  matmul_add(s->h1, y->w2, x, n, hd, d);
}

void forward_logits(const model *m, const float *x, int n, float *logits, forward_scratch *s) {
  const model_config *c = &m->cfg;
  for (int i = 0; i < n; i++)
    rmsnorm(s->xb + (size_t)i * c->dim, x + (size_t)i * c->dim, m->final_norm, c->dim,
            c->norm_eps);
  forward_matmul(s->xb, m->cls, logits, n, c->dim, c->vocab);
}
