/* attn_cpu.c - the per-row attention backend of vx-serve (attn.h) over libvxrt's public API
 * only: one paged KV cache, a state for the policy and one for the dense policy beside it,
 * and per (row, layer) vxrt_append / vxrt_summarise / vxrt_select / vxrt_attend calls (on
 * the CPU, or on CUDA as batches of one). Also what attn_batch.c shares with it (attn_vx_*:
 * the cache and its row operations; attn_measure).
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

/* ------------------------------------------------------------------ shared with attn_batch.c */

int attn_vx_fail(serve_attn *a, int status, const char *what) {
  snprintf(a->err, sizeof a->err, "%s: %s: %s", what, vxrt_status_name((vxrt_status)status),
           vxrt_last_error());
  return -1;
}

int attn_vx_row_open(serve_attn *a, int *row) {
  ATTN_VX(a, vxrt_row_open(((attn_vx *)a)->cache, row), "vxrt_row_open");
  return 0;
}

int attn_vx_row_close(serve_attn *a, int row) {
  ATTN_VX(a, vxrt_row_close(((attn_vx *)a)->cache, row), "vxrt_row_close");
  return 0;
}

int attn_vx_append(serve_attn *a, int row, int layer, const float *k, const float *v, int n) {
  ATTN_VX(a, vxrt_append(((attn_vx *)a)->cache, row, layer, k, v, n), "vxrt_append");
  return 0;
}

int attn_vx_read(serve_attn *a, int row, int layer, int n, float *k, float *v) {
  ATTN_VX(a, vxrt_read_kv(((attn_vx *)a)->cache, row, layer, 0, n, k, v), "vxrt_read_kv");
  return 0;
}

int attn_vx_pages(serve_attn *a, int *used, int *total) {
  vxrt_cache_info ci;
  ATTN_VX(a, vxrt_cache_get_info(((attn_vx *)a)->cache, &ci), "vxrt_cache_get_info");
  *total = ci.desc.max_pages;
  *used = ci.desc.max_pages - ci.free_pages;
  return 0;
}

void attn_measure(const attn_vx *a, const float *out, const float *ref, const float *lse,
                  const float *lse_ref, float *err, float *mass) {
  for (int h = 0; h < a->kvh; h++) {
    double e = 0, ms = 0;
    for (int g = 0; g < a->G; g++) {
      int hg = h * a->G + g;
      double d2 = 0, r2 = 0;
      for (int j = 0; j < a->D; j++) {
        double x = ref ? ref[hg * a->D + j] : out[hg * a->D + j];
        double y = out[hg * a->D + j];
        d2 += (x - y) * (x - y);
        r2 += x * x;
      }
      e += sqrt(d2 / (r2 > 0 ? r2 : 1));
      ms += ref ? exp((double)lse[hg] - lse_ref[hg]) : 1.0;
    }
    if (err)
      err[h] = (float)(e / a->G);
    if (mass)
      mass[h] = (float)(ms / a->G);
  }
}

void attn_unmeasured(const attn_vx *a, float *err, float *mass) {
  for (int h = 0; h < a->kvh; h++) {
    if (err)
      err[h] = NAN;
    if (mass)
      mass[h] = NAN;
  }
}

int attn_vx_init(attn_vx *a, vxrt_device *dev, const model_config *mc, const attn_config *ac,
                 char *err) {
  a->layers = mc->layers;
  a->kvh = mc->kv_heads;
  a->G = mc->heads / mc->kv_heads;
  a->D = mc->head_dim;
  a->dense_layer = malloc((size_t)mc->layers);
  if (!a->dense_layer) {
    snprintf(err, MODEL_ERR_LEN, "out of memory");
    return -1;
  }
  memcpy(a->dense_layer, ac->dense_layer, (size_t)mc->layers);
  int row_pages = (ac->max_row_tokens + ac->page_size - 1) / ac->page_size;
  int pool = ac->max_pages > 0 ? ac->max_pages : row_pages * ac->max_rows;
  vxrt_cache_desc cd = {.layers = mc->layers, .kv_heads = mc->kv_heads, .head_dim = mc->head_dim,
                        .page_size = ac->page_size, .kv_dtype = (vxrt_dtype)ac->kv_dtype,
                        .max_pages = pool, .max_rows = ac->max_rows,
                        .max_row_pages = row_pages < pool ? row_pages : pool};
  vxrt_status s = vxrt_cache_create(dev, &cd, &a->cache);
  if (s != VXRT_OK) {
    snprintf(err, MODEL_ERR_LEN, "vxrt_cache_create: %s: %s", vxrt_status_name(s), vxrt_last_error());
    return -1;
  }
  return 0;
}

void attn_vx_release(attn_vx *a) {
  vxrt_cache_free(a->cache);
  free(a->dense_layer);
}

/* ------------------------------------------------------------------ the per-row backend */

typedef struct attn_cpu {
  attn_vx vx;
  vxrt_state *pol[ATTN_CPU_MAX_POLICIES], *dense; /* pol[k - 1]: rows with sparse = k */
  int npol;
  float *ref, *lse, *lse_ref; /* one row's dense reference: [kvh][G][D], [kvh][G] x2 */
} attn_cpu;

#define VX(call, what) ATTN_VX(&c->vx.base, call, what)

static int cpu_prefill(serve_attn *a, int row, int sparse) {
  attn_cpu *c = (attn_cpu *)a;
  for (int l = 0; l < c->vx.layers; l++) {
    VX(vxrt_prefill(c->dense, row, l), "vxrt_prefill (dense)");
    if (sparse > 0 && sparse <= c->npol && !c->vx.dense_layer[l])
      VX(vxrt_prefill(c->pol[sparse - 1], row, l), "vxrt_prefill (policy)");
  }
  return 0;
}

static int cpu_decode(serve_attn *a, int layer, int nrows, const attn_row *rows, const float *k,
                      const float *v, const float *q, float *out, float *err, float *mass) {
  attn_cpu *c = (attn_cpu *)a;
  int kvh = c->vx.kvh;
  size_t kvd = (size_t)kvh * c->vx.D, qd = kvd * c->vx.G;
  for (int i = 0; i < nrows; i++) {
    int r = rows[i].row;
    int pk = rows[i].sparse;
    vxrt_state *pol = pk > 0 && pk <= c->npol && !c->vx.dense_layer[layer] ? c->pol[pk - 1] : NULL;
    const float *qi = q + i * qd;
    float *oi = out + i * qd;
    int64_t len;
    VX(vxrt_append(c->vx.cache, r, layer, k + i * kvd, v + i * kvd, 1), "vxrt_append");
    VX(vxrt_row_length(c->vx.cache, r, layer, &len), "vxrt_row_length");
    VX(vxrt_summarise(c->dense, r, layer, len - 1), "vxrt_summarise (dense)");
    if (pol) {
      VX(vxrt_summarise(pol, r, layer, len - 1), "vxrt_summarise (policy)");
      VX(vxrt_select(pol, r, layer, qi, NULL), "vxrt_select (policy)");
      VX(vxrt_attend(pol, r, layer, qi, oi, c->lse), "vxrt_attend (policy)");
    } else {
      VX(vxrt_select(c->dense, r, layer, qi, NULL), "vxrt_select (dense)");
      VX(vxrt_attend(c->dense, r, layer, qi, oi, c->lse), "vxrt_attend (dense)");
    }
    float *ei = err ? err + i * kvh : NULL, *mi = mass ? mass + i * kvh : NULL;
    if (!rows[i].measure || !rows[i].sparse) {
      attn_unmeasured(&c->vx, ei, mi);
      continue;
    }
    if (pol) {
      VX(vxrt_select(c->dense, r, layer, qi, NULL), "vxrt_select (dense reference)");
      VX(vxrt_attend(c->dense, r, layer, qi, c->ref, c->lse_ref), "vxrt_attend (dense reference)");
    }
    attn_measure(&c->vx, oi, pol ? c->ref : NULL, c->lse, c->lse_ref, ei, mi);
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
  attn_vx_release(&c->vx);
  free(c->ref);
  free(c->lse);
  free(c->lse_ref);
  free(c);
}

static int cpu_add_policy(serve_attn *a, vxrt_policy *policy, int *index) {
  attn_cpu *c = (attn_cpu *)a;
  if (c->npol == ATTN_CPU_MAX_POLICIES) {
    snprintf(a->err, sizeof a->err, "at most %d policies beside one cache", ATTN_CPU_MAX_POLICIES);
    return -1;
  }
  VX(vxrt_state_create(policy, c->vx.cache, c->vx.G, &c->pol[c->npol]), "vxrt_state_create (policy)");
  *index = ++c->npol;
  return 0;
}

static const serve_attn_ops cpu_ops = {.name = "rows (libvxrt per-row calls)",
                                       .row_open = attn_vx_row_open,
                                       .row_close = attn_vx_row_close,
                                       .append = attn_vx_append,
                                       .read = attn_vx_read,
                                       .prefill = cpu_prefill,
                                       .step_begin = NULL,
                                       .step_end = NULL,
                                       .decode = cpu_decode,
                                       .destroy = cpu_destroy,
                                       .pages = attn_vx_pages,
                                       .add_policy = cpu_add_policy};

int attn_cpu_create(vxrt_device *dev, vxrt_policy *policy, vxrt_policy *dense,
                    const model_config *mc, const attn_config *ac, serve_attn **out, char *err) {
  *out = NULL;
  attn_cpu *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, MODEL_ERR_LEN, "out of memory");
    return -1;
  }
  c->vx.base.ops = &cpu_ops;
  if (attn_vx_init(&c->vx, dev, mc, ac, err) != 0) {
    cpu_destroy(&c->vx.base);
    return -1;
  }
  c->ref = malloc((size_t)mc->heads * mc->head_dim * sizeof(float));
  c->lse = malloc((size_t)mc->heads * sizeof(float));
  c->lse_ref = malloc((size_t)mc->heads * sizeof(float));
  if (!c->ref || !c->lse || !c->lse_ref) {
    cpu_destroy(&c->vx.base);
    snprintf(err, MODEL_ERR_LEN, "out of memory");
    return -1;
  }
  vxrt_status s;
  const char *what = "vxrt_state_create (dense policy)";
  if ((s = vxrt_state_create(dense, c->vx.cache, c->vx.G, &c->dense)) != VXRT_OK ||
      (what = "vxrt_state_create (policy)",
       policy && (s = vxrt_state_create(policy, c->vx.cache, c->vx.G, &c->pol[c->npol++])) != VXRT_OK)) {
    snprintf(err, MODEL_ERR_LEN, "%s: %s: %s (model: %d KV heads, G = %d, D = %d; P = %d)", what,
             vxrt_status_name(s), vxrt_last_error(), mc->kv_heads, c->vx.G, mc->head_dim,
             ac->page_size);
    cpu_destroy(&c->vx.base);
    return -1;
  }
  *out = &c->vx.base;
  return 0;
}
