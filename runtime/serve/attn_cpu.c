/* attn_cpu.c - the CPU attention backend of vx-serve (attn.h) over libvxrt's public API
 * only: one paged KV cache, a state for the policy and one for the dense policy beside it,
 * and per (row, layer) vxrt_append / vxrt_summarise / vxrt_select / vxrt_attend calls.
 * Measurement (eval) attends the dense state on the same row and query: the relative error
 * of the outputs, and the mass kept as exp(lse_policy - lse_dense) (exact for policies
 * without logit modifiers). Sits under runtime/serve/; must not include libvxrt internals. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "vxrt.h"

enum { ATTN_CPU_MAX_POLICIES = 16 };

typedef struct attn_cpu {
  serve_attn base;
  vxrt_cache *cache;
  vxrt_state *pol[ATTN_CPU_MAX_POLICIES], *dense; /* pol[k - 1]: rows with sparse = k */
  int npol;
  int layers, kvh, G, D;
  uint8_t *dense_layer;
  float *ref, *lse, *lse_ref; /* one row's dense reference: [kvh][G][D], [kvh][G] x2 */
} attn_cpu;

static int vfail(serve_attn *a, vxrt_status s, const char *what) {
  snprintf(a->err, sizeof a->err, "%s: %s: %s", what, vxrt_status_name(s), vxrt_last_error());
  return -1;
}
#define VX(call, what)                       \
  do {                                       \
    vxrt_status s_ = (call);                 \
    if (s_ != VXRT_OK)                       \
      return vfail(&c->base, s_, what);      \
  } while (0)

static int cpu_row_open(serve_attn *a, int *row) {
  attn_cpu *c = (attn_cpu *)a;
  VX(vxrt_row_open(c->cache, row), "vxrt_row_open");
  return 0;
}

static int cpu_row_close(serve_attn *a, int row) {
  attn_cpu *c = (attn_cpu *)a;
  VX(vxrt_row_close(c->cache, row), "vxrt_row_close");
  return 0;
}

static int cpu_append(serve_attn *a, int row, int layer, const float *k, const float *v, int n) {
  attn_cpu *c = (attn_cpu *)a;
  VX(vxrt_append(c->cache, row, layer, k, v, n), "vxrt_append");
  return 0;
}

static int cpu_read(serve_attn *a, int row, int layer, int n, float *k, float *v) {
  attn_cpu *c = (attn_cpu *)a;
  VX(vxrt_read_kv(c->cache, row, layer, 0, n, k, v), "vxrt_read_kv");
  return 0;
}

static int cpu_prefill(serve_attn *a, int row, int sparse) {
  attn_cpu *c = (attn_cpu *)a;
  for (int l = 0; l < c->layers; l++) {
    VX(vxrt_prefill(c->dense, row, l), "vxrt_prefill (dense)");
    if (sparse > 0 && sparse <= c->npol && !c->dense_layer[l])
      VX(vxrt_prefill(c->pol[sparse - 1], row, l), "vxrt_prefill (policy)");
  }
  return 0;
}

static int cpu_decode(serve_attn *a, int layer, int nrows, const attn_row *rows, const float *k,
                      const float *v, const float *q, float *out, float *err, float *mass) {
  attn_cpu *c = (attn_cpu *)a;
  size_t kvd = (size_t)c->kvh * c->D, qd = kvd * c->G;
  for (int i = 0; i < nrows; i++) {
    int r = rows[i].row;
    int pk = rows[i].sparse;
    vxrt_state *pol = pk > 0 && pk <= c->npol && !c->dense_layer[layer] ? c->pol[pk - 1] : NULL;
    int use_pol = pol != NULL;
    const float *qi = q + i * qd;
    float *oi = out + i * qd;
    int64_t len;
    VX(vxrt_append(c->cache, r, layer, k + i * kvd, v + i * kvd, 1), "vxrt_append");
    VX(vxrt_row_length(c->cache, r, layer, &len), "vxrt_row_length");
    VX(vxrt_summarise(c->dense, r, layer, len - 1), "vxrt_summarise (dense)");
    if (use_pol) {
      VX(vxrt_summarise(pol, r, layer, len - 1), "vxrt_summarise (policy)");
      VX(vxrt_select(pol, r, layer, qi, NULL), "vxrt_select (policy)");
      VX(vxrt_attend(pol, r, layer, qi, oi, c->lse), "vxrt_attend (policy)");
    } else {
      VX(vxrt_select(c->dense, r, layer, qi, NULL), "vxrt_select (dense)");
      VX(vxrt_attend(c->dense, r, layer, qi, oi, c->lse), "vxrt_attend (dense)");
    }
    for (int h = 0; h < c->kvh; h++) {
      if (err)
        err[i * c->kvh + h] = NAN;
      if (mass)
        mass[i * c->kvh + h] = NAN;
    }
    if (!rows[i].measure || !rows[i].sparse)
      continue;
    if (use_pol) {
      VX(vxrt_select(c->dense, r, layer, qi, NULL), "vxrt_select (dense reference)");
      VX(vxrt_attend(c->dense, r, layer, qi, c->ref, c->lse_ref), "vxrt_attend (dense reference)");
    }
    for (int h = 0; h < c->kvh; h++) {
      double e = 0, ms = 0;
      for (int g = 0; g < c->G; g++) {
        int hg = h * c->G + g;
        double d2 = 0, r2 = 0;
        for (int j = 0; j < c->D; j++) {
          double x = use_pol ? c->ref[hg * c->D + j] : oi[hg * c->D + j];
          double y = oi[hg * c->D + j];
          d2 += (x - y) * (x - y);
          r2 += x * x;
        }
        e += sqrt(d2 / (r2 > 0 ? r2 : 1));
        ms += use_pol ? exp((double)c->lse[hg] - c->lse_ref[hg]) : 1.0;
      }
      if (err)
        err[i * c->kvh + h] = (float)(e / c->G);
      if (mass)
        mass[i * c->kvh + h] = (float)(ms / c->G);
    }
  }
  return 0;
}

static void cpu_destroy(serve_attn *a) {
  attn_cpu *c = (attn_cpu *)a;
  if (!c)
    return;
  for (int k = 0; k < c->npol; k++)
    vxrt_state_free(c->pol[k]);
  vxrt_state_free(c->dense);
  vxrt_cache_free(c->cache);
  free(c->dense_layer);
  free(c->ref);
  free(c->lse);
  free(c->lse_ref);
  free(c);
}

static int cpu_pages(serve_attn *a, int *used, int *total) {
  attn_cpu *c = (attn_cpu *)a;
  vxrt_cache_info ci;
  VX(vxrt_cache_get_info(c->cache, &ci), "vxrt_cache_get_info");
  *total = ci.desc.max_pages;
  *used = ci.desc.max_pages - ci.free_pages;
  return 0;
}

static int cpu_add_policy(serve_attn *a, vxrt_policy *policy, int *index) {
  attn_cpu *c = (attn_cpu *)a;
  if (c->npol == ATTN_CPU_MAX_POLICIES) {
    snprintf(a->err, sizeof a->err, "at most %d policies beside one cache", ATTN_CPU_MAX_POLICIES);
    return -1;
  }
  VX(vxrt_state_create(policy, c->cache, c->G, &c->pol[c->npol]), "vxrt_state_create (policy)");
  *index = ++c->npol;
  return 0;
}

static const serve_attn_ops cpu_ops = {.name = "cpu (libvxrt)",
                                       .row_open = cpu_row_open,
                                       .row_close = cpu_row_close,
                                       .append = cpu_append,
                                       .read = cpu_read,
                                       .prefill = cpu_prefill,
                                       .step_begin = NULL,
                                       .step_end = NULL,
                                       .decode = cpu_decode,
                                       .destroy = cpu_destroy,
                                       .pages = cpu_pages,
                                       .add_policy = cpu_add_policy};

int attn_cpu_create(vxrt_device *dev, vxrt_policy *policy, vxrt_policy *dense,
                    const model_config *mc, const attn_config *ac, serve_attn **out, char *err) {
  *out = NULL;
  attn_cpu *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, MODEL_ERR_LEN, "out of memory");
    return -1;
  }
  c->base.ops = &cpu_ops;
  c->layers = mc->layers;
  c->kvh = mc->kv_heads;
  c->G = mc->heads / mc->kv_heads;
  c->D = mc->head_dim;
  c->dense_layer = calloc((size_t)mc->layers, 1);
  c->ref = malloc((size_t)mc->heads * mc->head_dim * sizeof(float));
  c->lse = malloc((size_t)mc->heads * sizeof(float));
  c->lse_ref = malloc((size_t)mc->heads * sizeof(float));
  if (!c->dense_layer || !c->ref || !c->lse || !c->lse_ref) {
    cpu_destroy(&c->base);
    snprintf(err, MODEL_ERR_LEN, "out of memory");
    return -1;
  }
  memcpy(c->dense_layer, ac->dense_layer, (size_t)mc->layers);
  int row_pages = (ac->max_row_tokens + ac->page_size - 1) / ac->page_size;
  int pool = ac->max_pages > 0 ? ac->max_pages : row_pages * ac->max_rows;
  vxrt_cache_desc cd = {.layers = mc->layers, .kv_heads = mc->kv_heads, .head_dim = mc->head_dim,
                        .page_size = ac->page_size, .kv_dtype = (vxrt_dtype)ac->kv_dtype,
                        .max_pages = pool, .max_rows = ac->max_rows,
                        .max_row_pages = row_pages < pool ? row_pages : pool};
  vxrt_status s;
  const char *what = "vxrt_cache_create";
  if ((s = vxrt_cache_create(dev, &cd, &c->cache)) != VXRT_OK ||
      (what = "vxrt_state_create (dense policy)",
       (s = vxrt_state_create(dense, c->cache, c->G, &c->dense)) != VXRT_OK) ||
      (what = "vxrt_state_create (policy)",
       policy && (s = vxrt_state_create(policy, c->cache, c->G, &c->pol[c->npol++])) != VXRT_OK)) {
    snprintf(err, MODEL_ERR_LEN, "%s: %s: %s (model: %d KV heads, G = %d, D = %d; P = %d)", what,
             vxrt_status_name(s), vxrt_last_error(), mc->kv_heads, c->G, mc->head_dim,
             ac->page_size);
    cpu_destroy(&c->base);
    return -1;
  }
  *out = &c->base;
  return 0;
}
