/* gpu.c - the CUDA executor's state and launches: a policy's fields in device memory beside
 * a CUDA cache, and one launch of an artifact kernel (runtime/vxk_gpu.h) for a batch.
 *
 * At state creation the host side (a small exec_state made by run.c) has checked the
 * requires and computed the consts and load-time scalars with the artifact's host code;
 * this file resolves the GPU entries for the cache's shape ("vxg_<kind>__d128g4p16_bf16"),
 * allocates the page and token field pools per layer (laid out like the KV pools,
 * runtime/vxk.h), uploads the consts, the FIELDS table of every layer and the SCALARS
 * array. Must not contain GPU kernels of its own (every kernel comes from the artifact) and
 * never prints or exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

static const char *const kind_names[] = {
#define VXRT_GPU_KIND_NAME(kind) #kind,
    VXK_GPU_KERNELS(VXRT_GPU_KIND_NAME)
#undef VXRT_GPU_KIND_NAME
};

/* What the GPU path cannot run yet, by the policy's manifest. */
static vxrt_status check_supported(const vxrt_state *st) {
  const art_manifest *m = vxrt_policy_manifest(st->pol);
  if (vxrt_policy_kernel(st->pol, ART_K_UPDATE))
    return vxrt_fail(VXRT_ERR_UNSUPPORTED,
                     "policy %s has an update kernel; GPU update kernels are not part of the "
                     "kernel ABI yet (runtime/vxk_gpu.h), use the CPU device", m->policy);
  for (int i = 0; i < st->desc.pol.ntensors; i++) {
    int paged;
    if (st->desc.pol.tensors[i].kind == EXEC_ROW && (exec_tensor_block(st->ex, i, &paged), !paged))
      return vxrt_fail(VXRT_ERR_UNSUPPORTED,
                       "policy %s has row state '%s'; the GPU kernel ABI has no per-row state "
                       "yet (runtime/vxk_gpu.h), use the CPU device",
                       m->policy, st->desc.pol.tensors[i].name);
  }
  if (st->info.desc.kv_dtype == VXRT_FP8E4M3)
    return vxrt_fail(VXRT_ERR_UNSUPPORTED, "GPU kernels read f32, f16 and bf16 caches, not fp8");
  return VXRT_OK;
}

/* The entries for the cache's shape; VXRT_ERR_UNSUPPORTED lists the shapes the artifact has. */
static vxrt_status resolve(vxrt_state *st, vxrt_gpu *g) {
  const vxrt_cache_desc *d = &st->info.desc;
  const art_target *t = vxrt_policy_ptx(st->pol);
  snprintf(g->shape, sizeof g->shape, "d%dg%dp%d_%s", d->head_dim, st->G, d->page_size,
           vxrt_dtype_name(d->kv_dtype));
  int found = 0;
  for (int i = 0; i < t->nshapes; i++) found |= strcmp(t->shapes[i], g->shape) == 0;
  if (!found) {
    char have[512] = "";
    size_t n = 0;
    for (int i = 0; i < t->nshapes && n < sizeof have; i++)
      n += (size_t)snprintf(have + n, sizeof have - n, "%s%s", i ? ", " : "", t->shapes[i]);
    return vxrt_fail(VXRT_ERR_UNSUPPORTED,
                     "policy %s has no GPU kernels for the cache shape %s (D=%d, G=%d, P=%d, kv=%s); "
                     "the artifact's %s code has shapes [%s]: recompile with vxc --target %s "
                     "--shape D=%d,G=%d,P=%d,kv=%s",
                     vxrt_policy_manifest(st->pol)->policy, g->shape, d->head_dim, st->G,
                     d->page_size, vxrt_dtype_name(d->kv_dtype), t->name, have, t->name,
                     d->head_dim, st->G, d->page_size, vxrt_dtype_name(d->kv_dtype));
  }
  for (int k = 0; k < VXRT_GPU_NKINDS; k++) {
    vxrt_status s = vxrt_policy_gpu_function(st->pol, kind_names[k], g->shape, &g->fn[k]);
    if (s) return s;
  }
  int fields = 0;
  for (int i = 0; i < st->desc.pol.ntensors; i++) {
    exec_tensor_kind kd = st->desc.pol.tensors[i].kind;
    fields |= kd == EXEC_PAGE || kd == EXEC_TOKEN;
  }
  int selects = 0;
  for (int i = 0; i < st->desc.pol.nselections; i++)
    selects |= st->desc.pol.selections[i].kind != EXEC_SEL_ALL;
  const char *missing = !g->fn[VXRT_GPU_append] ? "append"
                        : !g->fn[VXRT_GPU_attend] ? "attend"
                        : fields && !g->fn[VXRT_GPU_summarise] ? "summarise"
                        : (selects || st->desc.pol.nkeeps) && !g->fn[VXRT_GPU_select] ? "select"
                                                                                       : NULL;
  if (missing)
    return vxrt_fail(VXRT_ERR_LOAD, "the %s code of policy %s lacks the GPU kernel '%s' it needs",
                     t->name, vxrt_policy_manifest(st->pol)->policy, missing);
  if (g->fn[VXRT_GPU_select] && d->page_size > 32)
    return vxrt_fail(VXRT_ERR_UNSUPPORTED,
                     "GPU selections mark the tokens of a page in 32 bits; P=%d is larger",
                     d->page_size);
  return VXRT_OK;
}

/* How many CTAs of a kernel run at once: SMs times the occupancy the driver computes from
 * the kernel's registers and shared memory (two per SM when the driver cannot say). */
static int kernel_slots(vxrt_device *dev, const vxrt_gpu *g, vxrt_gpu_kind kind, int threads) {
  int per_sm = 0;
  if (dev->cu.cuOccupancyMaxActiveBlocksPerMultiprocessor && g->fn[kind] && !vxrt_cuda_push(dev)) {
    if (dev->cu.cuOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, g->fn[kind], threads, 0))
      per_sm = 0;
    vxrt_cuda_pop(dev);
  }
  return g->sms * (per_sm > 0 ? per_sm : 2);
}

static vxrt_status device_sms(vxrt_device *dev, int *sms) {
  vxcu_device cd;
  vxrt_status s = vxrt_cuda_push(dev);
  if (s) return s;
  vxcu_result r = dev->cu.cuDeviceGet(&cd, dev->info.ordinal);
  if (!r) r = dev->cu.cuDeviceGetAttribute(sms, VXCU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, cd);
  vxrt_cuda_pop(dev);
  return r ? vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, "cuDeviceGetAttribute (SM count)", r) : VXRT_OK;
}

/* Field pools, consts, the FIELDS tables and SCALARS. */
static vxrt_status upload_state(vxrt_state *st, vxrt_gpu *g) {
  vxrt_device *dev = st->dev;
  const vxrt_cache_desc *d = &st->info.desc;
  int nt = st->desc.pol.ntensors, L = d->layers;
  size_t nfields = (size_t)(nt > 0 ? nt : 1);
  uint64_t *table = calloc(nfields * (size_t)L, sizeof(uint64_t));
  if (!table) return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  vxrt_status s = VXRT_OK;
  for (int i = 0; i < nt && !s; i++) {
    const exec_tensor *t = &st->desc.pol.tensors[i];
    int paged;
    long elems = exec_tensor_block(st->ex, i, &paged);
    size_t esz = exec_dtype_bytes(t->dtype);
    if (t->kind == EXEC_CONST) {
      size_t bytes = (size_t)(elems > 0 ? elems : 1) * esz;
      if (!(s = vxrt_mem_alloc(dev, bytes, &g->consts[i])))
        s = vxrt_mem_write(dev, g->consts[i], exec_const_data(st->ex, i), (size_t)(elems > 0 ? elems : 0) * esz);
      for (int l = 0; l < L; l++) table[(size_t)l * nfields + (size_t)i] = g->consts[i];
    } else if (paged) {
      size_t bytes = (size_t)d->max_pages * (size_t)d->kv_heads * (size_t)(elems > 0 ? elems : 1) * esz;
      for (int l = 0; l < L && !s; l++) {
        uint64_t *p = &g->pools[(size_t)i * (size_t)L + (size_t)l];
        if (!(s = vxrt_mem_alloc(dev, bytes, p))) s = vxrt_mem_zero(dev, *p, bytes);
        table[(size_t)l * nfields + (size_t)i] = *p;
      }
    }
  }
  if (!s) s = vxrt_mem_alloc(dev, sizeof(uint64_t) * nfields * (size_t)L, &g->fields);
  if (!s) s = vxrt_mem_write(dev, g->fields, table, sizeof(uint64_t) * nfields * (size_t)L);
  free(table);
  if (s) return s;
  int np = st->desc.pol.nparams;
  const double *values = vxrt_policy_values(st->pol);
  double *sc = calloc((size_t)(st->desc.pol.nkeeps + st->desc.pol.nselections) + 1, sizeof(double));
  float *f = calloc((size_t)(np + st->desc.pol.nkeeps + st->desc.pol.nselections) + 1, sizeof(float));
  if (!sc || !f) s = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  if (!s) {
    int ns = exec_load_scalars(st->ex, sc);
    for (int i = 0; i < np; i++) f[i] = (float)values[i];
    for (int i = 0; i < ns; i++) f[np + i] = (float)sc[i];
    size_t bytes = sizeof(float) * (size_t)(np + ns > 0 ? np + ns : 1);
    if (!(s = vxrt_mem_alloc(dev, bytes, &g->scalars)))
      s = vxrt_mem_write(dev, g->scalars, f, sizeof(float) * (size_t)(np + ns));
  }
  free(sc);
  free(f);
  return s;
}

void vxrt_gpu_free(vxrt_state *st) {
  vxrt_gpu *g = st->gpu;
  if (!g) return;
  vxrt_batch_free(g->one);
  int nt = st->desc.pol.ntensors, L = st->info.desc.layers;
  for (int i = 0; i < nt; i++) {
    if (g->consts) vxrt_mem_free(st->dev, g->consts[i]);
    for (int l = 0; g->pools && l < L; l++) vxrt_mem_free(st->dev, g->pools[(size_t)i * (size_t)L + (size_t)l]);
  }
  uint64_t bufs[] = {g->fields, g->scalars, g->q, g->out, g->lse};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) vxrt_mem_free(st->dev, bufs[i]);
  free(g->pools);
  free(g->consts);
  free(g);
  st->gpu = NULL;
}

vxrt_status vxrt_gpu_create(vxrt_state *st) {
  vxrt_status s = check_supported(st);
  if (s) return s;
  vxrt_gpu *g = calloc(1, sizeof *g);
  if (!g) return vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  st->gpu = g;
  size_t nt = (size_t)st->desc.pol.ntensors + 1, L = (size_t)st->info.desc.layers;
  g->pools = calloc(nt * L, sizeof(uint64_t));
  g->consts = calloc(nt, sizeof(uint64_t));
  if (!g->pools || !g->consts) s = vxrt_fail(VXRT_ERR_OUT_OF_MEMORY, "out of memory");
  if (!s) s = resolve(st, g);
  if (!s) s = device_sms(st->dev, &g->sms);
  if (!s) {
    g->attend_slots = kernel_slots(st->dev, g, VXRT_GPU_attend, VXK_GPU_ATTEND_THREADS);
    g->select_slots = kernel_slots(st->dev, g, VXRT_GPU_select, VXK_GPU_SELECT_THREADS);
  }
  if (!s) s = upload_state(st, g);
  size_t hg = (size_t)st->info.desc.kv_heads * (size_t)st->G, hgd = hg * (size_t)st->info.desc.head_dim;
  if (!s) s = vxrt_mem_alloc(st->dev, sizeof(float) * hgd, &g->q);
  if (!s) s = vxrt_mem_alloc(st->dev, sizeof(float) * hgd, &g->out);
  if (!s) s = vxrt_mem_alloc(st->dev, sizeof(float) * hg, &g->lse);
  if (!s) s = vxrt_batch_create(st, 1, &g->one);
  if (s) vxrt_gpu_free(st);
  return s;
}

vxrt_status vxrt_gpu_launch(vxrt_state *st, vxrt_gpu_kind kind, unsigned gx, unsigned gy,
                            unsigned block, const vxk_gpu_args *args, vxcu_stream s) {
  vxrt_device *dev = st->dev;
  vxcu_function fn = st->gpu->fn[kind];
  if (!fn) return VXRT_OK;
  vxk_gpu_args a = *args;
  void *params[] = {&a};
  vxrt_status r0 = vxrt_cuda_push(dev);
  if (r0) return r0;
  vxcu_result r = dev->cu.cuLaunchKernel(fn, gx, gy, 1, block, 1, 1, 0, s, params, NULL);
  vxrt_cuda_pop(dev);
  if (r) {
    char call[160];
    snprintf(call, sizeof call, "cuLaunchKernel (vxg_%s__%s, grid %ux%u)", kind_names[kind],
             st->gpu->shape, gx, gy);
    return vxrt_cuda_fail(dev, VXRT_ERR_DEVICE, call, r);
  }
  return VXRT_OK;
}
