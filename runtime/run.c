/* run.c - running a loaded policy over a KV cache: the vxrt_state_* / vxrt_prefill /
 * vxrt_summarise / vxrt_select / vxrt_attend calls of vxrt.h, one (row, layer) per call.
 * Turns the manifest into the executor's description (exec.h). On the CPU each call is an
 * exec_* call on the row's page table. On CUDA the state's fields live on the device
 * (gpu.c) and each call is a batch of one (batch.c) followed by a synchronisation, with q,
 * out and lse copied through device scratch: the reference and debugging path beside the
 * batched calls. A state's dense partner (vxrt_state_set_dense) runs select and attend of
 * its dense layers. Never prints or exits. */
#include <stdlib.h>
#include <string.h>

#include "state.h"

/* The executor's description, with the kernel handles the policy resolved at load. */
static int describe(vxrt_state *st) {
  const art_manifest *m = vxrt_policy_manifest(st->pol);
  if (!exec_describe(m, vxrt_policy_values(st->pol), vxrt_policy_dir(st->pol), &st->desc))
    return 0;
  exec_kernels *k = &st->desc.pol.k;
  k->kconst = (vxk_kernel)vxrt_policy_kernel(st->pol, ART_K_CONST);
  k->row = (vxk_kernel)vxrt_policy_kernel(st->pol, ART_K_ROW);
  k->summarise = (vxk_kernel)vxrt_policy_kernel(st->pol, ART_K_SUMMARISE);
  k->select = (vxk_kernel)vxrt_policy_kernel(st->pol, ART_K_SELECT);
  k->attend = (vxk_kernel)vxrt_policy_kernel(st->pol, ART_K_ATTEND);
  k->update = (vxk_kernel)vxrt_policy_kernel(st->pol, ART_K_UPDATE);
  k->scalars = (void (*)(vxk_ctx *, double *))vxrt_policy_kernel(st->pol, ART_K_SCALARS);
  k->require = (int (*)(vxk_ctx *))vxrt_policy_kernel(st->pol, ART_K_REQUIRE);
  return 1;
}

vxrt_status vxrt_state_free(vxrt_state *st) {
  if (!st)
    return VXRT_OK;
  int own = st->gpu && st->gpu->one ? 1 : 0;
  if (st->batches > own)
    return vxrt_fail(VXRT_ERR_STATE, "vxrt_state_free: %d batch(es) made on this state are alive; free them first",
                     st->batches - own);
  if (st->dense_users)
    return vxrt_fail(VXRT_ERR_STATE, "vxrt_state_free: the dense partner of %d state(s) (vxrt_state_set_dense); "
                     "free them or clear their partner first", st->dense_users);
  if (st->dense)
    st->dense->dense_users--;
  free(st->dense_mask);
  vxrt_gpu_free(st);
  exec_destroy(st->ex);
  exec_desc_free(&st->desc);
  free(st->pages);
  free(st->prefilled);
  free(st->prefill_gen);
  free(st);
  return VXRT_OK;
}

vxrt_status vxrt_state_create(vxrt_policy *pol, vxrt_cache *cache, int query_heads, vxrt_state **out) {
  if (!out)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_state_create: out is NULL");
  *out = NULL;
  if (!pol || !cache || query_heads < 1)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_state_create: NULL policy or cache, or query_heads < 1");
  vxrt_state *st = calloc(1, sizeof *st);
  if (!st)
    return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  st->pol = pol;
  st->dev = vxrt_policy_device(pol);
  st->cache = cache;
  st->G = query_heads;
  int cuda = st->dev->info.kind == VXRT_CUDA;
  vxrt_status s = vxrt_cache_get_info(cache, &st->info);
  if (!s && vxrt_cache_device(cache) != st->dev)
    s = vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_state_create: the policy and the cache were made on "
                                        "different devices");
  const vxrt_cache_desc *d = &st->info.desc;
  if (!s && !cuda && d->kv_dtype == VXRT_FP8E4M3)
    s = vxrt_fail(VXRT_ERR_UNSUPPORTED, "the CPU backend reads f32, f16 and bf16 caches, not fp8");
  if (!s && !describe(st))
    s = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  if (!s && !cuda && !st->desc.pol.k.attend)
    s = vxrt_fail(VXRT_ERR_LOAD, "the policy has no attend kernel");
  st->pages = calloc((size_t)d->max_row_pages + 1, sizeof(int32_t));
  st->prefilled = malloc(sizeof(int64_t) * (size_t)d->max_rows * (size_t)d->layers);
  st->prefill_gen = calloc((size_t)d->max_rows * (size_t)d->layers, sizeof(uint32_t));
  if (!s && (!st->pages || !st->prefilled || !st->prefill_gen))
    s = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  if (!s) {
    for (size_t i = 0; i < (size_t)d->max_rows * (size_t)d->layers; i++)
      st->prefilled[i] = -1;
    st->selected_row = -1;
    /* On CUDA the host-side executor only checks requires and makes consts and scalars:
     * one page, one row, one layer of it are enough. */
    exec_shape shape = {cuda ? 1 : d->layers, d->kv_heads, d->head_dim, query_heads, d->page_size,
                        cuda ? 1 : d->max_pages, cuda ? 1 : d->max_rows, cuda ? 1 : d->max_row_pages};
    char err[512];
    st->ex = exec_create(&st->desc.pol, &shape, err, sizeof err);
    if (!st->ex)
      s = vxrt_fail(VXRT_ERR_PARAM, "policy %s: %s", vxrt_policy_manifest(pol)->policy, err);
  }
  if (!s && cuda)
    s = vxrt_gpu_create(st);
  if (s) {
    vxrt_state_free(st);
    return s;
  }
  *out = st;
  return VXRT_OK;
}

/* ---- the dense partner (vxrt_state_set_dense) */

/* Whether a policy attends to every token with nothing to keep current: `select all`, no
 * keeps, no fields, rows or lets, no update (consts and logit modifiers are its attend's). */
static int attends_everything(const vxrt_state *d) {
  const exec_policy *p = &d->desc.pol;
  if (p->nkeeps || p->nselections != 1 || p->selections[0].kind != EXEC_SEL_ALL || p->k.update)
    return 0;
  for (int i = 0; i < p->ntensors; i++)
    if (p->tensors[i].kind != EXEC_INPUT && p->tensors[i].kind != EXEC_CONST)
      return 0;
  return !d->gpu || !d->gpu->fn[VXRT_GPU_select];
}

static vxrt_status check_dense(const vxrt_state *st, const vxrt_state *dense, int layers) {
  const char *fn = "vxrt_state_set_dense";
  if (dense == st)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: a state cannot be its own dense partner", fn);
  if (dense->cache != st->cache || dense->G != st->G)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: the dense state must be on the same cache with the same "
                     "query heads (G %d, the state's %d)", fn, dense->G, st->G);
  if (dense->dense)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: the dense state has a dense partner of its own", fn);
  if (!attends_everything(dense))
    return vxrt_fail(VXRT_ERR_UNSUPPORTED, "%s: policy %s does more than attend to every token (a dense "
                     "partner has `select all`, no keeps, fields, rows, lets or updates)",
                     fn, vxrt_policy_manifest(dense->pol)->policy);
  if (layers != st->info.desc.layers)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: the mask has %d layers; the cache has %d", fn, layers,
                     st->info.desc.layers);
  return VXRT_OK;
}

vxrt_status vxrt_state_set_dense(vxrt_state *st, vxrt_state *dense, const uint8_t *mask, int layers) {
  if (!st || (dense && !mask && layers))
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_state_set_dense: NULL state, or NULL mask with %d layers", layers);
  vxrt_status s = dense ? check_dense(st, dense, mask ? layers : st->info.desc.layers) : VXRT_OK;
  if (s)
    return s;
  size_t L = (size_t)st->info.desc.layers;
  if (dense && !st->dense_mask && !(st->dense_mask = malloc(L)))
    return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  if (st->dense)
    st->dense->dense_users--;
  st->dense = dense;
  if (!dense)
    return VXRT_OK;
  dense->dense_users++;
  for (size_t l = 0; l < L; l++)
    st->dense_mask[l] = mask && mask[l] ? 1 : 0;
  return VXRT_OK;
}

int vxrt_state_dense_layer(const vxrt_state *st, int layer) {
  return st->dense && st->dense_mask[layer];
}

/* The executor a decode step of `layer` runs on the CPU: the partner's on its dense layers. */
static exec_state *step_exec(const vxrt_state *st, int layer) {
  return vxrt_state_dense_layer(st, layer) ? st->dense->ex : st->ex;
}

/* The executor's view of (row, layer) now; fails if the row is not open. */
static vxrt_status row_view(vxrt_state *st, int row, int layer, exec_kv *kv, const char *fn) {
  int64_t len;
  int npages;
  vxrt_kv_pool pool;
  vxrt_status s = st ? VXRT_OK : vxrt_fail(VXRT_ERR_INVALID_ARG, "%s: state is NULL", fn);
  if (!s) s = vxrt_row_length(st->cache, row, layer, &len);
  if (!s) s = vxrt_row_pages(st->cache, row, st->pages, st->info.desc.max_row_pages, &npages);
  if (!s) s = vxrt_cache_get_pool(st->cache, layer, &pool);
  if (s)
    return s;
  if (len < 1)
    return vxrt_fail(VXRT_ERR_STATE, "%s: row %d has no tokens in layer %d", fn, row, layer);
  kv->k = pool.k;
  kv->v = pool.v;
  kv->kv_dtype = (int)st->info.desc.kv_dtype;
  kv->page_ids = st->pages;
  kv->len = (int)len;
  kv->prefill_len = (int)len;
  return VXRT_OK;
}

void vxrt_state_set_prefill(vxrt_state *st, int row, int layer, int64_t len) {
  size_t i = (size_t)row * (size_t)st->info.desc.layers + (size_t)layer;
  st->prefilled[i] = len;
  st->prefill_gen[i] = vxrt_cache_row_generation(st->cache, row);
}

int64_t vxrt_state_prefill(const vxrt_state *st, int row, int layer) {
  size_t i = (size_t)row * (size_t)st->info.desc.layers + (size_t)layer;
  return st->prefill_gen[i] == vxrt_cache_row_generation(st->cache, row) ? st->prefilled[i] : -1;
}

/* For calls after prefill: the row must have been prefilled and not be shorter since. */
static vxrt_status decode_view(vxrt_state *st, int row, int layer, exec_kv *kv, const char *fn) {
  vxrt_status s = row_view(st, row, layer, kv, fn);
  if (s)
    return s;
  int64_t p = vxrt_state_prefill(st, row, layer);
  if (p < 1 || p > kv->len)
    return vxrt_fail(VXRT_ERR_STATE, "%s: row %d layer %d was not prefilled (call vxrt_prefill after its prompt)",
                     fn, row, layer);
  kv->prefill_len = (int)p;
  return VXRT_OK;
}

static vxrt_status exec_result(int ok, const char *err) {
  return ok ? VXRT_OK : vxrt_fail(VXRT_ERR_INVALID_ARG, "%s", err);
}

/* ---- CUDA: each call a batch of one on the legacy default stream, then a synchronisation */

/* Waits for the device; asynchronous kernel errors surface here. */
static vxrt_status cuda_sync(vxrt_state *st) {
  vxrt_status s = vxrt_cuda_push(st->dev);
  if (s)
    return s;
  vxcu_result r = st->dev->cu.cuCtxSynchronize();
  vxrt_cuda_pop(st->dev);
  return r ? vxrt_cuda_fail(st->dev, VXRT_ERR_DEVICE, "cuCtxSynchronize (a kernel failed)", r) : VXRT_OK;
}

/* The batch of one at the row's length, and the launch arguments of `layer`. */
static vxrt_status cuda_stage(vxrt_state *st, int row, int layer, const exec_kv *kv, vxrt_stream *s0,
                              vxk_gpu_args *a) {
  *s0 = (vxrt_stream){st->dev, NULL, 0};
  vxrt_status s = vxrt_batch_stage_row(st->gpu->one, row, kv->len, kv->prefill_len, s0);
  if (!s)
    vxrt_batch_args(st->gpu->one, layer, a);
  return s;
}

/* Summarise kernel over tokens [first, len) of one row, then a sync. */
static vxrt_status cuda_summarise(vxrt_state *st, int row, int layer, const exec_kv *kv, int64_t first) {
  vxrt_stream s0;
  vxk_gpu_args a;
  vxrt_status s = cuda_stage(st, row, layer, kv, &s0, &a);
  if (s)
    return s;
  a.slot[VXK_GPU_FIRST_TOKEN] = (uint64_t)first;
  s = vxrt_gpu_launch(st, VXRT_GPU_summarise, (unsigned)st->info.desc.max_row_pages,
                      (unsigned)st->info.desc.kv_heads, VXK_GPU_SMALL_THREADS, &a, NULL);
  return s ? s : cuda_sync(st);
}

static vxrt_status cuda_select(vxrt_state *st, int row, int layer, const exec_kv *kv, const float *q,
                               uint8_t *selected) {
  vxrt_stream s0;
  vxk_gpu_args a;
  vxrt_gpu *g = st->gpu;
  size_t hgd = (size_t)st->info.desc.kv_heads * (size_t)st->G * (size_t)st->info.desc.head_dim;
  vxrt_status s = cuda_stage(st, row, layer, kv, &s0, &a);
  if (!s)
    s = vxrt_mem_write(st->dev, g->q, q, sizeof(float) * hgd);
  if (!s)
    s = vxrt_decode_select(g->one, layer, (vxrt_dbuf){g->q, VXRT_F32}, &s0);
  if (!s)
    s = selected ? vxrt_batch_read_selection(g->one, 0, selected) : cuda_sync(st);
  return s;
}

static vxrt_status cuda_attend(vxrt_state *st, int row, int layer, const exec_kv *kv, const float *q, float *out,
                               float *lse) {
  vxrt_stream s0;
  vxk_gpu_args a;
  vxrt_gpu *g = st->gpu;
  size_t hg = (size_t)st->info.desc.kv_heads * (size_t)st->G, hgd = hg * (size_t)st->info.desc.head_dim;
  vxrt_status s = cuda_stage(st, row, layer, kv, &s0, &a);
  if (!s)
    s = vxrt_mem_write(st->dev, g->q, q, sizeof(float) * hgd);
  if (!s)
    s = vxrt_decode_attend(g->one, layer, (vxrt_dbuf){g->q, VXRT_F32}, (vxrt_dbuf){g->out, VXRT_F32},
                           (vxrt_dbuf){g->lse, VXRT_F32}, &s0);
  if (!s)
    s = cuda_sync(st);
  if (!s)
    s = vxrt_mem_read(st->dev, out, g->out, sizeof(float) * hgd);
  if (!s)
    s = vxrt_mem_read(st->dev, lse, g->lse, sizeof(float) * hg);
  return s;
}

/* ---- the CPU: the executor */

static vxrt_status cpu_prefill(vxrt_state *st, int row, int layer, const exec_kv *kv) {
  char err[512];
  return exec_result(exec_prefill(st->ex, row, layer, kv, err, sizeof err), err);
}

static vxrt_status cpu_summarise(vxrt_state *st, int row, int layer, const exec_kv *kv, int64_t first) {
  char err[512];
  return exec_result(exec_append(st->ex, row, layer, kv, (int)first, err, sizeof err), err);
}

static vxrt_status cpu_select(vxrt_state *st, int row, int layer, const exec_kv *kv, const float *q,
                              uint8_t *selected) {
  char err[512];
  return exec_result(exec_select(step_exec(st, layer), row, layer, kv, q, selected, err, sizeof err), err);
}

static vxrt_status cpu_attend(vxrt_state *st, int row, int layer, const exec_kv *kv, const float *q, float *out,
                              float *lse) {
  char err[512];
  return exec_result(exec_attend(step_exec(st, layer), row, layer, kv, q, out, lse, err, sizeof err), err);
}

static vxrt_status cuda_prefill(vxrt_state *st, int row, int layer, const exec_kv *kv) {
  return cuda_summarise(st, row, layer, kv, 0);
}

/* How a state runs the per-row calls, one table per device; the public functions below
 * check their arguments and the row once, for both. */
typedef struct row_backend {
  vxrt_status (*prefill)(vxrt_state *st, int row, int layer, const exec_kv *kv);
  vxrt_status (*summarise)(vxrt_state *st, int row, int layer, const exec_kv *kv, int64_t first);
  vxrt_status (*select)(vxrt_state *st, int row, int layer, const exec_kv *kv, const float *q,
                        uint8_t *selected);
  vxrt_status (*attend)(vxrt_state *st, int row, int layer, const exec_kv *kv, const float *q, float *out,
                        float *lse);
} row_backend;

static const row_backend cpu_rows = {cpu_prefill, cpu_summarise, cpu_select, cpu_attend};
static const row_backend cuda_rows = {cuda_prefill, cuda_summarise, cuda_select, cuda_attend};

static const row_backend *rows_of(const vxrt_state *st) { return st->gpu ? &cuda_rows : &cpu_rows; }

vxrt_status vxrt_prefill(vxrt_state *st, int row, int layer) {
  exec_kv kv;
  vxrt_status s = row_view(st, row, layer, &kv, "vxrt_prefill");
  if (!s)
    s = rows_of(st)->prefill(st, row, layer, &kv);
  if (!s)
    vxrt_state_set_prefill(st, row, layer, kv.len);
  return s;
}

vxrt_status vxrt_summarise(vxrt_state *st, int row, int layer, int64_t first_token) {
  exec_kv kv;
  vxrt_status s = decode_view(st, row, layer, &kv, "vxrt_summarise");
  if (s)
    return s;
  if (first_token < 0 || first_token >= kv.len)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "first new token %lld is outside the row of %d tokens",
                     (long long)first_token, kv.len);
  return rows_of(st)->summarise(st, row, layer, &kv, first_token);
}

vxrt_status vxrt_select(vxrt_state *st, int row, int layer, const float *q, uint8_t *selected) {
  exec_kv kv;
  vxrt_status s = decode_view(st, row, layer, &kv, "vxrt_select");
  if (s)
    return s;
  if (!q)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_select: q is NULL");
  s = rows_of(st)->select(st, row, layer, &kv, q, selected);
  st->selected_row = s ? -1 : row;
  st->selected_layer = layer;
  st->selected_len = kv.len;
  return s;
}

vxrt_status vxrt_attend(vxrt_state *st, int row, int layer, const float *q, float *out, float *lse) {
  exec_kv kv;
  vxrt_status s = decode_view(st, row, layer, &kv, "vxrt_attend");
  if (s)
    return s;
  if (!q || !out || !lse)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_attend: NULL q, out or lse");
  /* the executor keeps one selection per state: attend must follow its own select */
  if (st->selected_row != row || st->selected_layer != layer || st->selected_len != kv.len)
    return vxrt_fail(VXRT_ERR_STATE,
                     "vxrt_attend: row %d layer %d (length %d) has no current selection; call "
                     "vxrt_select for it just before",
                     row, layer, kv.len);
  return rows_of(st)->attend(st, row, layer, &kv, q, out, lse);
}
