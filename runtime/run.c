/* run.c - running a loaded policy over a KV cache (the vxrt_state_* / vxrt_prefill /
 * vxrt_summarise / vxrt_select / vxrt_attend calls of vxrt.h). Turns the manifest into the
 * executor's description (exec.h) and each call into an exec_* call on the row's page table.
 * CPU devices only: the GPU path launches PTX kernels and comes with the NVPTX backend. */
#include <stdlib.h>
#include <string.h>

#include "exec_manifest.h"
#include "vxrt_internal.h"

struct vxrt_state {
  vxrt_policy *pol;
  vxrt_cache *cache;
  vxrt_cache_info info;
  exec_desc desc;
  exec_state *ex;
  int32_t *pages;      /* one row's page table, refreshed per call */
  int selected_row, selected_layer, selected_len; /* what the last vxrt_select was for */
  int64_t *prefilled;  /* [row][layer]: prefill length, -1 before vxrt_prefill */
};

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
  exec_destroy(st->ex);
  exec_desc_free(&st->desc);
  free(st->pages);
  free(st->prefilled);
  free(st);
  return VXRT_OK;
}

vxrt_status vxrt_state_create(vxrt_policy *pol, vxrt_cache *cache, int query_heads, vxrt_state **out) {
  if (!out)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_state_create: out is NULL");
  *out = NULL;
  if (!pol || !cache || query_heads < 1)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_state_create: NULL policy or cache, or query_heads < 1");
  vxrt_device_info dev;
  vxrt_device_get_info(vxrt_policy_device(pol), &dev);
  if (dev.kind != VXRT_CPU)
    return vxrt_fail(VXRT_ERR_UNSUPPORTED, "running policies on %s is not implemented yet; use the CPU device",
                     dev.name);
  vxrt_state *st = calloc(1, sizeof *st);
  if (!st)
    return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  st->pol = pol;
  st->cache = cache;
  vxrt_status s = vxrt_cache_get_info(cache, &st->info);
  const vxrt_cache_desc *d = &st->info.desc;
  if (!s && d->kv_dtype == VXRT_FP8E4M3)
    s = vxrt_fail(VXRT_ERR_UNSUPPORTED, "the CPU backend reads f32, f16 and bf16 caches, not fp8");
  if (!s && !describe(st))
    s = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  if (!s && !st->desc.pol.k.attend)
    s = vxrt_fail(VXRT_ERR_LOAD, "the policy has no attend kernel");
  st->pages = calloc((size_t)d->max_row_pages + 1, sizeof(int32_t));
  st->prefilled = malloc(sizeof(int64_t) * (size_t)d->max_rows * (size_t)d->layers);
  if (!s && (!st->pages || !st->prefilled))
    s = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  if (!s) {
    for (size_t i = 0; i < (size_t)d->max_rows * (size_t)d->layers; i++)
      st->prefilled[i] = -1;
    st->selected_row = -1;
    exec_shape shape = {d->layers, d->kv_heads, d->head_dim, query_heads, d->page_size,
                        d->max_pages, d->max_rows, d->max_row_pages};
    char err[512];
    st->ex = exec_create(&st->desc.pol, &shape, err, sizeof err);
    if (!st->ex)
      s = vxrt_fail(VXRT_ERR_PARAM, "policy %s: %s", vxrt_policy_manifest(pol)->policy, err);
  }
  if (s) {
    vxrt_state_free(st);
    return s;
  }
  *out = st;
  return VXRT_OK;
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

static int64_t *prefill_of(vxrt_state *st, int row, int layer) {
  return &st->prefilled[(size_t)row * (size_t)st->info.desc.layers + (size_t)layer];
}

/* For calls after prefill: the row must have been prefilled and not be shorter since. */
static vxrt_status decode_view(vxrt_state *st, int row, int layer, exec_kv *kv, const char *fn) {
  vxrt_status s = row_view(st, row, layer, kv, fn);
  if (s)
    return s;
  int64_t p = *prefill_of(st, row, layer);
  if (p < 1 || p > kv->len)
    return vxrt_fail(VXRT_ERR_STATE, "%s: row %d layer %d was not prefilled (call vxrt_prefill after its prompt)",
                     fn, row, layer);
  kv->prefill_len = (int)p;
  return VXRT_OK;
}

static vxrt_status exec_result(int ok, const char *err) {
  return ok ? VXRT_OK : vxrt_fail(VXRT_ERR_INVALID_ARG, "%s", err);
}

vxrt_status vxrt_prefill(vxrt_state *st, int row, int layer) {
  exec_kv kv;
  vxrt_status s = row_view(st, row, layer, &kv, "vxrt_prefill");
  if (s)
    return s;
  char err[512];
  s = exec_result(exec_prefill(st->ex, row, layer, &kv, err, sizeof err), err);
  if (!s)
    *prefill_of(st, row, layer) = kv.len;
  return s;
}

vxrt_status vxrt_summarise(vxrt_state *st, int row, int layer, int64_t first_token) {
  exec_kv kv;
  vxrt_status s = decode_view(st, row, layer, &kv, "vxrt_summarise");
  if (s)
    return s;
  char err[512];
  return exec_result(exec_append(st->ex, row, layer, &kv, (int)first_token, err, sizeof err), err);
}

vxrt_status vxrt_select(vxrt_state *st, int row, int layer, const float *q, uint8_t *selected) {
  exec_kv kv;
  vxrt_status s = decode_view(st, row, layer, &kv, "vxrt_select");
  if (s)
    return s;
  if (!q)
    return vxrt_fail(VXRT_ERR_INVALID_ARG, "vxrt_select: q is NULL");
  char err[512];
  s = exec_result(exec_select(st->ex, row, layer, &kv, q, selected, err, sizeof err), err);
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
  char err[512];
  return exec_result(exec_attend(st->ex, row, layer, &kv, q, out, lse, err, sizeof err), err);
}
