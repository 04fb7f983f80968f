/* attn_batch.c - the batched attention backend of vx-serve (attn.h) over libvxrt's public
 * batched API: one decode step of a layer is one vxrt_decode_append, vxrt_decode_select and
 * vxrt_decode_attend per state for all its rows, with q, k, v, out and lse in device buffers
 * (f32). States: the dense one (st[0], rows with sparse = 0) and one per policy (st[k],
 * sparse = k), each with its own batch over disjoint rows; a policy state's dense layers and
 * the measurement of its rows (eval) run through the dense state as its partner
 * (vxrt_state_set_dense, vxrt_decode_attend_dense), so the results equal attn_cpu.c's. The
 * cache and its row operations are attn_cpu.c's (attn_vx_*). Sits under runtime/serve/;
 * must not include libvxrt internals; never prints. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "vxrt.h"

enum { ATTN_BATCH_MAX_STATES = 17 }; /* dense and 16 policies, as attn_cpu.c */

/* The step's rows of one state: positions [first, first + n) of the step's slot order. */
typedef struct attn_group {
  vxrt_state *st;
  vxrt_batch *b;
  int first, n;
  int *rows;  /* [max_rows]: the cache rows last given to vxrt_batch_set_rows ... */
  int nrows;  /* ... and their count */
} attn_group;

typedef struct attn_batch {
  attn_vx vx;
  vxrt_device *dev;
  vxrt_stream *s;
  attn_group g[ATTN_BATCH_MAX_STATES];
  int nst, max_rows;
  int nslots, measured; /* the step: rows, and whether any is measured */
  int *order;           /* [max_rows]: the engine's index of each slot position */
  int *slot_rows;       /* [max_rows]: the cache row of each position */
  uint64_t q, k, v, out, lse, ref, lse_ref; /* device, [max_rows][...] f32 */
  float *hq, *hk, *hv, *hout, *hlse, *href, *hlse_ref; /* host staging, slot order */
} attn_batch;

#define VX(call, what) ATTN_VX(&c->vx.base, call, what)

/* The state (group) a row uses: its policy, or dense (0) for sparse = 0 or out of range. */
static int group_of(const attn_batch *c, int sparse) {
  return sparse > 0 && sparse < c->nst ? sparse : 0;
}

static size_t hgd(const attn_batch *c) { return (size_t)c->vx.kvh * c->vx.G * c->vx.D; }
static size_t hd(const attn_batch *c) { return (size_t)c->vx.kvh * c->vx.D; }
static size_t hg(const attn_batch *c) { return (size_t)c->vx.kvh * c->vx.G; }

static int batch_prefill(serve_attn *a, int row, int sparse) {
  attn_batch *c = (attn_batch *)a;
  vxrt_state *st = c->g[group_of(c, sparse)].st;
  for (int l = 0; l < c->vx.layers; l++)
    VX(vxrt_prefill(st, row, l), "vxrt_prefill");
  return 0;
}

/* Gives group g's batch the step's rows (when they changed) and prepares one token. */
static int group_begin(attn_batch *c, attn_group *g) {
  const int *rows = c->slot_rows + g->first;
  if (g->n != g->nrows || memcmp(g->rows, rows, sizeof(int) * (size_t)g->n)) {
    VX(vxrt_batch_set_rows(g->b, rows, g->n), "vxrt_batch_set_rows");
    memcpy(g->rows, rows, sizeof(int) * (size_t)g->n);
    g->nrows = g->n;
  }
  VX(vxrt_batch_prepare(g->b, 1, c->s), "vxrt_batch_prepare");
  return 0;
}

/* The step's slot order: rows grouped by state, in the engine's order within a group. */
static int batch_step_begin(serve_attn *a, int nrows, const attn_row *rows) {
  attn_batch *c = (attn_batch *)a;
  if (nrows > c->max_rows) {
    snprintf(a->err, sizeof a->err, "a step of %d rows; the backend holds %d", nrows, c->max_rows);
    return -1;
  }
  int pos = 0;
  c->measured = 0;
  for (int k = 0; k < c->nst; k++) {
    attn_group *g = &c->g[k];
    g->first = pos;
    for (int i = 0; i < nrows; i++) {
      if (group_of(c, rows[i].sparse) != k)
        continue;
      c->order[pos] = i;
      c->slot_rows[pos++] = rows[i].row;
      c->measured |= k > 0 && rows[i].measure;
    }
    g->n = pos - g->first;
    if (g->n && group_begin(c, g) != 0)
      return -1;
  }
  c->nslots = nrows;
  return 0;
}

static int batch_step_end(serve_attn *a) {
  attn_batch *c = (attn_batch *)a;
  for (int k = 0; k < c->nst; k++)
    if (c->g[k].n)
      VX(vxrt_batch_commit(c->g[k].b), "vxrt_batch_commit");
  return 0;
}

/* A device buffer of f32 at slot position `first`, `per` floats a slot. */
static vxrt_dbuf at(uint64_t base, int first, size_t per) {
  return (vxrt_dbuf){base + sizeof(float) * per * (size_t)first, VXRT_F32};
}

/* One layer of group g: append, select, attend; the dense reference when measured. */
static int group_decode(attn_batch *c, attn_group *g, int k, int layer) {
  vxrt_dbuf q = at(c->q, g->first, hgd(c)), out = at(c->out, g->first, hgd(c));
  vxrt_dbuf lse = at(c->lse, g->first, hg(c));
  VX(vxrt_decode_append(g->b, layer, at(c->k, g->first, hd(c)), at(c->v, g->first, hd(c)), c->s),
     "vxrt_decode_append");
  VX(vxrt_decode_select(g->b, layer, q, c->s), "vxrt_decode_select");
  VX(vxrt_decode_attend(g->b, layer, q, out, lse, c->s), "vxrt_decode_attend");
  if (c->measured && k > 0 && !c->vx.dense_layer[layer])
    VX(vxrt_decode_attend_dense(g->b, layer, q, at(c->ref, g->first, hgd(c)),
                                at(c->lse_ref, g->first, hg(c)), c->s),
       "vxrt_decode_attend_dense");
  return 0;
}

/* n floats per row from the engine's order into slot order, and back. */
static void gather(const attn_batch *c, float *slots, const float *engine, size_t n) {
  for (int p = 0; p < c->nslots; p++)
    memcpy(slots + (size_t)p * n, engine + (size_t)c->order[p] * n, sizeof(float) * n);
}

static void scatter(const attn_batch *c, float *engine, const float *slots, size_t n) {
  for (int p = 0; p < c->nslots; p++)
    memcpy(engine + (size_t)c->order[p] * n, slots + (size_t)p * n, sizeof(float) * n);
}

static int upload(attn_batch *c, uint64_t dst, float *host, const float *src, size_t per) {
  gather(c, host, src, per);
  VX(vxrt_buffer_upload(c->dev, dst, host, sizeof(float) * per * (size_t)c->nslots),
     "vxrt_buffer_upload");
  return 0;
}

static int download(attn_batch *c, float *host, uint64_t src, size_t per) {
  VX(vxrt_buffer_download(c->dev, host, src, sizeof(float) * per * (size_t)c->nslots),
     "vxrt_buffer_download");
  return 0;
}

/* err and mass of the engine's row i at slot position p (NaN unless measured). */
static void measure(const attn_batch *c, int layer, const attn_row *r, int p, float *err,
                    float *mass) {
  if (!r->measure || !r->sparse) {
    attn_unmeasured(&c->vx, err, mass);
    return;
  }
  int dense = !group_of(c, r->sparse) || c->vx.dense_layer[layer];
  attn_measure(&c->vx, c->hout + (size_t)p * hgd(c), dense ? NULL : c->href + (size_t)p * hgd(c),
               c->hlse + (size_t)p * hg(c), c->hlse_ref + (size_t)p * hg(c), err, mass);
}

static int batch_decode(serve_attn *a, int layer, int nrows, const attn_row *rows, const float *k,
                        const float *v, const float *q, float *out, float *err, float *mass) {
  attn_batch *c = (attn_batch *)a;
  if (nrows != c->nslots) {
    snprintf(a->err, sizeof a->err, "decode of %d rows in a step begun with %d", nrows, c->nslots);
    return -1;
  }
  if (upload(c, c->q, c->hq, q, hgd(c)) || upload(c, c->k, c->hk, k, hd(c)) ||
      upload(c, c->v, c->hv, v, hd(c)))
    return -1;
  for (int g = 0; g < c->nst; g++)
    if (c->g[g].n && group_decode(c, &c->g[g], g, layer) != 0)
      return -1;
  if (download(c, c->hout, c->out, hgd(c)) ||
      (c->measured && (download(c, c->hlse, c->lse, hg(c)) || download(c, c->href, c->ref, hgd(c)) ||
                       download(c, c->hlse_ref, c->lse_ref, hg(c)))))
    return -1;
  scatter(c, out, c->hout, hgd(c));
  for (int p = 0; p < nrows; p++) {
    int i = c->order[p];
    measure(c, layer, &rows[i], p, err ? err + (size_t)i * c->vx.kvh : NULL,
            mass ? mass + (size_t)i * c->vx.kvh : NULL);
  }
  return 0;
}

/* Frees the last state with its batch. */
static void drop_state(attn_batch *c) {
  attn_group *g = &c->g[--c->nst];
  vxrt_batch_free(g->b);
  vxrt_state_free(g->st);
  free(g->rows);
  memset(g, 0, sizeof *g);
}

static void batch_destroy(serve_attn *a) {
  attn_batch *c = (attn_batch *)a;
  if (!c)
    return;
  while (c->nst > 0) /* policies first: they name the dense state */
    drop_state(c);
  uint64_t bufs[] = {c->q, c->k, c->v, c->out, c->lse, c->ref, c->lse_ref};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    vxrt_buffer_free(c->dev, bufs[i]);
  vxrt_stream_free(c->s);
  attn_vx_release(&c->vx);
  free(c->order);
  free(c->slot_rows);
  float *host[] = {c->hq, c->hk, c->hv, c->hout, c->hlse, c->href, c->hlse_ref};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
    free(host[i]);
  free(c);
}

/* A state for `policy` (the dense one when k = 0; a policy gets the dense state as its
 * partner for its dense layers and measurement) and its batch. */
static int add_state_at(attn_batch *c, vxrt_policy *policy, int k) {
  attn_group *g = &c->g[k];
  if (!(g->rows = malloc(sizeof(int) * (size_t)c->max_rows))) {
    snprintf(c->vx.base.err, sizeof c->vx.base.err, "out of memory");
    return -1;
  }
  VX(vxrt_state_create(policy, c->vx.cache, c->vx.G, &g->st), "vxrt_state_create");
  if (k > 0)
    VX(vxrt_state_set_dense(g->st, c->g[0].st, c->vx.dense_layer, c->vx.layers),
       "vxrt_state_set_dense");
  VX(vxrt_batch_create(g->st, c->max_rows, &g->b), "vxrt_batch_create");
  return 0;
}

/* The next state; on failure nothing of it is left. */
static int add_state(attn_batch *c, vxrt_policy *policy) {
  int k = c->nst++;
  if (add_state_at(c, policy, k) == 0)
    return 0;
  drop_state(c);
  return -1;
}

static int batch_add_policy(serve_attn *a, vxrt_policy *policy, int *index) {
  attn_batch *c = (attn_batch *)a;
  if (c->nst == ATTN_BATCH_MAX_STATES) {
    snprintf(a->err, sizeof a->err, "at most %d policies beside one cache", ATTN_BATCH_MAX_STATES - 1);
    return -1;
  }
  if (add_state(c, policy) != 0)
    return -1;
  *index = c->nst - 1;
  return 0;
}

static const serve_attn_ops batch_ops = {.name = "batch (libvxrt batched calls)",
                                         .row_open = attn_vx_row_open,
                                         .row_close = attn_vx_row_close,
                                         .append = attn_vx_append,
                                         .read = attn_vx_read,
                                         .prefill = batch_prefill,
                                         .step_begin = batch_step_begin,
                                         .step_end = batch_step_end,
                                         .decode = batch_decode,
                                         .destroy = batch_destroy,
                                         .pages = attn_vx_pages,
                                         .add_policy = batch_add_policy};

/* Device buffers and host staging for max_rows slots. */
static int alloc_buffers(attn_batch *c) {
  size_t n = (size_t)c->max_rows;
  struct {
    uint64_t *dev;
    float **host;
    size_t per;
  } b[] = {{&c->q, &c->hq, hgd(c)},   {&c->k, &c->hk, hd(c)},     {&c->v, &c->hv, hd(c)},
           {&c->out, &c->hout, hgd(c)}, {&c->lse, &c->hlse, hg(c)}, {&c->ref, &c->href, hgd(c)},
           {&c->lse_ref, &c->hlse_ref, hg(c)}};
  for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
    VX(vxrt_buffer_alloc(c->dev, sizeof(float) * n * b[i].per, b[i].dev), "vxrt_buffer_alloc");
    if (!(*b[i].host = malloc(sizeof(float) * n * b[i].per))) {
      snprintf(c->vx.base.err, sizeof c->vx.base.err, "out of memory");
      return -1;
    }
  }
  c->order = malloc(sizeof(int) * n);
  c->slot_rows = malloc(sizeof(int) * n);
  if (!c->order || !c->slot_rows) {
    snprintf(c->vx.base.err, sizeof c->vx.base.err, "out of memory");
    return -1;
  }
  VX(vxrt_stream_create(c->dev, &c->s), "vxrt_stream_create");
  return 0;
}

int attn_batch_create(vxrt_device *dev, vxrt_policy *policy, vxrt_policy *dense,
                      const model_config *mc, const attn_config *ac, serve_attn **out, char *err) {
  *out = NULL;
  attn_batch *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, MODEL_ERR_LEN, "out of memory");
    return -1;
  }
  c->vx.base.ops = &batch_ops;
  c->dev = dev;
  c->max_rows = ac->max_rows;
  if (attn_vx_init(&c->vx, dev, mc, ac, err) != 0) {
    batch_destroy(&c->vx.base);
    return -1;
  }
  if (alloc_buffers(c) != 0 || add_state(c, dense) != 0 || (policy && add_state(c, policy) != 0)) {
    snprintf(err, MODEL_ERR_LEN, "%.400s (model: %d KV heads, G = %d, D = %d; P = %d)", c->vx.base.err,
             mc->kv_heads, c->vx.G, mc->head_dim, ac->page_size);
    batch_destroy(&c->vx.base);
    return -1;
  }
  *out = &c->vx.base;
  return 0;
}
