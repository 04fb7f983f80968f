/* exec_cpu.c - the CPU backend's executor (see exec.h). Host kernels compute the policy's
 * tensors; this file owns their memory, builds each kernel's vxk_ctx, and turns scores into
 * a selection: always-kept ranges first, then top() over what is left of the budget (ties to
 * the lower index), where() conditions, and their union. Budgets count tokens and include
 * the always-kept ones (docs/language.md, docs/runtime.md section 6); a budget of at least
 * the row length selects every token. Extents, consts and element conversions come from
 * exec_plan.c. */
#include "exec.h"
#include "vxrt_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct exec_state {
  exec_policy pol;
  exec_shape sh;
  void **consts;   /* [tensor] */
  void **pools;    /* [tensor * layers + layer]: paged tensors */
  void **rows;     /* [tensor]: non-paged row state, max_rows * layers * kv_heads copies */
  size_t *row_elems; /* [tensor]: elements of one copy of a row or step tensor */
  void **step;     /* [tensor]: step scratch */
  void **ptrs;     /* the vxk_ctx tensors array */
  double *scalars; /* keep counts, then budgets */
  int nscalars;
  uint8_t *kept;   /* [max_row_pages * P] */
  uint8_t *sel;    /* per KV head [G][npages * P]: the selection, from select to attend */
  float *prob;     /* [G][max_row_pages * P] */
  int *order, *order_tmp; /* candidates for top-k */
  float *keys;
};

/* ---- state ---- */

static size_t row_slot(const exec_state *st, int row, int layer, int head) {
  return ((size_t)row * (size_t)st->sh.layers + (size_t)layer) * (size_t)st->sh.kv_heads + (size_t)head;
}

/* KV head h's selection, [G][npages * P] (or one [npages * P] shared by the group). */
static uint8_t *head_sel(const exec_state *st, int h) {
  return st->sel + (size_t)h * (size_t)st->sh.G * (size_t)st->sh.max_row_pages * (size_t)st->sh.P;
}

/* Points ctx->tensors at this (row, layer, head)'s storage. */
static void bind_tensors(exec_state *st, int row, int layer, int head) {
  for (int i = 0; i < st->pol.ntensors; i++) {
    const exec_tensor *t = &st->pol.tensors[i];
    void *p = NULL;
    if (t->kind == EXEC_CONST)
      p = st->consts[i];
    else if (exec_is_paged(t))
      p = st->pools[(size_t)i * (size_t)st->sh.layers + (size_t)layer];
    else if (t->kind == EXEC_ROW)
      p = (char *)st->rows[i] + row_slot(st, row, layer, head) * st->row_elems[i] * exec_dtype_bytes(t->dtype);
    else if (t->kind == EXEC_STEP) /* one copy per KV head: select fills them, attend reads them */
      p = (char *)st->step[i] + (size_t)head * st->row_elems[i] * exec_dtype_bytes(t->dtype);
    st->ptrs[i] = p;
  }
}

static void base_ctx(const exec_state *st, vxk_ctx *c) {
  memset(c, 0, sizeof *c);
  c->D = st->sh.D;
  c->G = st->sh.G;
  c->P = st->sh.P;
  c->kv_heads = st->sh.kv_heads;
  c->params = st->pol.param_values;
  c->tensors = st->ptrs;
}

void exec_destroy(exec_state *st) {
  if (!st)
    return;
  for (int i = 0; i < st->pol.ntensors; i++) {
    free(st->consts ? st->consts[i] : NULL);
    free(st->rows ? st->rows[i] : NULL);
    free(st->step ? st->step[i] : NULL);
    for (int l = 0; st->pools && l < st->sh.layers; l++)
      free(st->pools[(size_t)i * (size_t)st->sh.layers + (size_t)l]);
  }
  free(st->consts);
  free(st->rows);
  free(st->row_elems);
  free(st->step);
  free(st->pools);
  free(st->ptrs);
  free(st->scalars);
  free(st->kept);
  free(st->sel);
  free(st->prob);
  free(st->order);
  free(st->order_tmp);
  free(st->keys);
  free(st);
}

static int alloc_tensor_state(exec_state *st, int i, char *err, size_t errlen) {
  const exec_tensor *t = &st->pol.tensors[i];
  const exec_shape *sh = &st->sh;
  if (t->kind == EXEC_INPUT)
    return 1;
  if (t->rank > EXEC_MAX_RANK) {
    exec_set_err(err, errlen, "tensor '%s': rank %d is more than the CPU backend addresses", t->name, t->rank);
    return 0;
  }
  if (t->kind == EXEC_CONST)
    return (st->consts[i] = exec_make_const(&st->pol, &st->sh, i, err, errlen)) != NULL;
  if (!exec_extents_ok(&st->pol, &st->sh, t, sh->max_row_pages, err, errlen))
    return 0;
  long n = exec_tensor_elems(&st->pol, &st->sh, t, sh->max_row_pages);
  size_t bytes = (size_t)(n ? n : 1) * exec_dtype_bytes(t->dtype);
  if (exec_is_paged(t)) {
    for (int l = 0; l < sh->layers; l++) {
      void **p = &st->pools[(size_t)i * (size_t)sh->layers + (size_t)l];
      *p = calloc((size_t)sh->max_pages * (size_t)sh->kv_heads, bytes);
      if (!*p)
        goto oom;
    }
  } else if (t->kind == EXEC_ROW) {
    st->row_elems[i] = (size_t)n;
    st->rows[i] = calloc((size_t)sh->max_rows * (size_t)sh->layers * (size_t)sh->kv_heads, bytes);
    if (!st->rows[i])
      goto oom;
  } else {
    st->row_elems[i] = (size_t)(n ? n : 1);
    st->step[i] = calloc((size_t)sh->kv_heads, bytes);
    if (!st->step[i])
      goto oom;
  }
  return 1;
oom:
  exec_set_err(err, errlen, "out of memory for the state of '%s'", t->name);
  return 0;
}

exec_state *exec_create(const exec_policy *pol, const exec_shape *shape, char *err, size_t errlen) {
  const exec_shape *sh = shape;
  if (sh->layers < 1 || sh->kv_heads < 1 || sh->D < 1 || sh->G < 1 || sh->P < 1 || sh->max_pages < 1 ||
      sh->max_rows < 1 || sh->max_row_pages < 1) {
    exec_set_err(err, errlen, "invalid shape: every size must be at least 1");
    return NULL;
  }
  exec_state *st = calloc(1, sizeof *st);
  if (!st)
    return NULL;
  st->pol = *pol;
  st->sh = *sh;
  int nt = pol->ntensors;
  size_t tokens = (size_t)sh->max_row_pages * (size_t)sh->P;
  st->consts = calloc((size_t)nt + 1, sizeof(void *));
  st->rows = calloc((size_t)nt + 1, sizeof(void *));
  st->row_elems = calloc((size_t)nt + 1, sizeof(size_t));
  st->step = calloc((size_t)nt + 1, sizeof(void *));
  st->pools = calloc((size_t)(nt + 1) * (size_t)sh->layers, sizeof(void *));
  st->ptrs = calloc((size_t)nt + 1, sizeof(void *));
  st->nscalars = pol->nkeeps + pol->nselections;
  st->scalars = calloc((size_t)st->nscalars + 1, sizeof(double));
  st->kept = calloc(tokens, 1);
  st->sel = calloc(tokens * (size_t)sh->G * (size_t)sh->kv_heads, 1);
  st->prob = calloc(tokens * (size_t)sh->G, sizeof(float));
  st->order = calloc(tokens, sizeof(int));
  st->order_tmp = calloc(tokens, sizeof(int));
  st->keys = calloc(tokens, sizeof(float));
  if (!st->consts || !st->rows || !st->row_elems || !st->step || !st->pools || !st->ptrs || !st->scalars ||
      !st->kept || !st->sel || !st->prob || !st->order || !st->order_tmp || !st->keys) {
    exec_set_err(err, errlen, "out of memory");
    exec_destroy(st);
    return NULL;
  }
  vxk_ctx c;
  base_ctx(st, &c);
  if (pol->k.require) {
    int bad = pol->k.require(&c);
    int named = pol->require_texts && bad >= 1 && bad <= pol->nrequires;
    if (bad) {
      exec_set_err(err, errlen, "the policy's require #%d%s%s%s does not hold for D=%d, G=%d, P=%d and its params", bad,
              named ? " (" : "", named ? pol->require_texts[bad - 1] : "", named ? ")" : "", sh->D, sh->G, sh->P);
      exec_destroy(st);
      return NULL;
    }
  }
  for (int i = 0; i < nt; i++)
    if (!alloc_tensor_state(st, i, err, errlen)) {
      exec_destroy(st);
      return NULL;
    }
  if (pol->k.kconst) {
    bind_tensors(st, 0, 0, 0);
    pol->k.kconst(&c);
  }
  return st;
}

void exec_row_reset(exec_state *st, int row) {
  if (row < 0 || row >= st->sh.max_rows)
    return;
  for (int i = 0; i < st->pol.ntensors; i++) {
    const exec_tensor *t = &st->pol.tensors[i];
    if (t->kind != EXEC_ROW || exec_is_paged(t))
      continue;
    size_t bytes = st->row_elems[i] * exec_dtype_bytes(t->dtype);
    for (int l = 0; l < st->sh.layers; l++)
      for (int h = 0; h < st->sh.kv_heads; h++)
        memset((char *)st->rows[i] + row_slot(st, row, l, h) * bytes, 0, bytes);
  }
}

/* ---- per (row, layer, head) ---- */

static int check_call(exec_state *st, int row, int layer, const exec_kv *kv, char *err, size_t errlen) {
  int npages = (kv->len + st->sh.P - 1) / st->sh.P;
  if (row < 0 || row >= st->sh.max_rows || layer < 0 || layer >= st->sh.layers) {
    exec_set_err(err, errlen, "row %d or layer %d out of range", row, layer);
    return 0;
  }
  if (kv->len < 1 || npages > st->sh.max_row_pages || kv->prefill_len < 0 || kv->prefill_len > kv->len) {
    exec_set_err(err, errlen, "row length %d (prefill %d) does not fit %d pages of %d tokens", kv->len,
            kv->prefill_len, st->sh.max_row_pages, st->sh.P);
    return 0;
  }
  for (int p = 0; p < npages; p++)
    if (kv->page_ids[p] < 0 || kv->page_ids[p] >= st->sh.max_pages) {
      exec_set_err(err, errlen, "page table entry %d is %d, outside the pool of %d pages", p, kv->page_ids[p], st->sh.max_pages);
      return 0;
    }
  return 1;
}

static void row_ctx(exec_state *st, vxk_ctx *c, int layer, int head, const exec_kv *kv) {
  base_ctx(st, c);
  c->layer = layer;
  c->head = head;
  c->len = kv->len;
  c->npages = (kv->len + st->sh.P - 1) / st->sh.P;
  c->prefill_len = kv->prefill_len;
  c->kv_dtype = kv->kv_dtype;
  c->page_ids = kv->page_ids;
  c->k = kv->k;
  c->v = kv->v;
  c->kept = st->kept;
  c->selected = head_sel(st, head);
  c->prob = st->prob;
}

static void mark(uint8_t *m, long from, long to, long len) {
  if (from < 0)
    from = 0;
  if (to > len)
    to = len;
  for (long i = from; i < to; i++)
    m[i] = 1;
}

/* The always-kept tokens; the keep counts come from vxk_scalars (st->scalars). */
static void compute_kept(exec_state *st, const vxk_ctx *c) {
  long len = c->len, P = c->P;
  memset(st->kept, 0, (size_t)c->npages * (size_t)P);
  int j = 0;
  for (int i = 0; i < st->pol.nkeeps; i++) {
    const exec_keep *k = &st->pol.keeps[i];
    if (k->kind == EXEC_KEEP_GENERATED) {
      mark(st->kept, c->prefill_len, len, len);
      continue;
    }
    long n = (long)st->scalars[j++];
    if (k->kind == EXEC_KEEP_FIRST) {
      mark(st->kept, 0, k->unit == EXEC_UNIT_PAGES ? n * P : n, len);
    } else {
      long end = k->at_prefill ? c->prefill_len : len;
      long start = k->unit == EXEC_UNIT_PAGES ? ((end + P - 1) / P - n) * P : end - n;
      mark(st->kept, start, end, len);
    }
  }
}

static float tensor_value(const exec_state *st, int id, size_t i) {
  const exec_tensor *t = &st->pol.tensors[id];
  float v = exec_load_f32(st->ptrs[id], t->dtype, i);
  return isnan(v) ? -INFINITY : v;
}

/* Whether unit i ranks before unit j: higher score first, then the lower index. */
static int ranks_before(const float *keys, int i, int j) {
  return keys[i] != keys[j] ? keys[i] > keys[j] : i < j;
}

/* Sorts order[0..n) by rank; a merge sort, so it needs no global comparison context. */
static void sort_by_rank(int *order, int *tmp, long n, const float *keys) {
  for (long width = 1; width < n; width *= 2) {
    for (long lo = 0; lo < n; lo += 2 * width) {
      long mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
      long a = lo, b = mid, o = lo;
      while (a < mid && b < hi)
        tmp[o++] = ranks_before(keys, order[b], order[a]) ? order[b++] : order[a++];
      while (a < mid)
        tmp[o++] = order[a++];
      while (b < hi)
        tmp[o++] = order[b++];
    }
    memcpy(order, tmp, sizeof(int) * (size_t)n);
  }
}

/* Selects into sel (one head's [npages*P]) the best `want` units among candidates whose
 * kept flag is clear; a unit is a page (page-granular) or a token. */
static void select_top(exec_state *st, const vxk_ctx *c, int id, int head, long budget_tokens, uint8_t *sel) {
  long P = c->P, len = c->len, npages = c->npages;
  int pages = !st->pol.token_granular;
  long units = pages ? npages : len;
  long per_head_off = head * (pages ? npages : npages * P);
  if (budget_tokens >= len) {
    mark(sel, 0, len, len);
    return;
  }
  long budget = pages ? budget_tokens / P : budget_tokens;
  long kept = 0, n = 0;
  for (long u = 0; u < units; u++) {
    int is_kept = 0;
    if (pages) {
      for (long t = u * P; t < (u + 1) * P && t < len; t++)
        is_kept |= st->kept[t];
    } else {
      is_kept = st->kept[u];
    }
    if (is_kept) {
      kept++;
      continue;
    }
    st->order[n++] = (int)u;
    st->keys[u] = tensor_value(st, id, (size_t)(per_head_off + u));
  }
  long want = budget - kept;
  if (want <= 0)
    return;
  sort_by_rank(st->order, st->order_tmp, n, st->keys);
  for (long i = 0; i < want && i < n; i++) {
    long u = st->order[i];
    if (pages)
      mark(sel, u * P, (u + 1) * P, len);
    else
      sel[u] = 1;
  }
}

static void select_where(exec_state *st, const vxk_ctx *c, int id, int head, uint8_t *sel) {
  long P = c->P, len = c->len, npages = c->npages;
  if (st->pol.token_granular) {
    for (long i = 0; i < len; i++)
      if (tensor_value(st, id, (size_t)(head * npages * P + i)) != 0)
        sel[i] = 1;
  } else {
    for (long p = 0; p < npages; p++)
      if (tensor_value(st, id, (size_t)(head * npages + p)) != 0)
        mark(sel, p * P, (p + 1) * P, len);
  }
}

/* The selection of every head (or of the group) into st->sel. */
static void compute_selection(exec_state *st, const vxk_ctx *c) {
  long tokens = (long)c->npages * c->P;
  int heads = st->pol.per_head ? c->G : 1;
  for (int g = 0; g < heads; g++) {
    uint8_t *sel = (uint8_t *)c->selected + (size_t)g * (size_t)tokens;
    memcpy(sel, st->kept, (size_t)tokens);
    int j = 0;
    for (int i = 0; i < st->pol.nkeeps; i++)
      j += st->pol.keeps[i].kind != EXEC_KEEP_GENERATED;
    for (int s = 0; s < st->pol.nselections; s++) {
      const exec_selection *x = &st->pol.selections[s];
      if (x->kind == EXEC_SEL_ALL) {
        mark(sel, 0, c->len, c->len);
      } else if (x->kind == EXEC_SEL_WHERE) {
        select_where(st, c, x->tensor, st->pol.per_head ? g : 0, sel);
      } else {
        double b = st->scalars[j++];
        long budget = (long)(x->unit == EXEC_UNIT_PAGES ? b * c->P : b);
        select_top(st, c, x->tensor, st->pol.per_head ? g : 0, budget, sel);
      }
    }
  }
}

/* This step's attention weights (0 where not attended), for update kernels. */
static void compute_prob(exec_state *st, const vxk_ctx *c, const float *lse) {
  long tokens = (long)c->npages * c->P;
  for (int g = 0; g < c->G; g++) {
    const uint8_t *sel = c->selected + (st->pol.per_head ? (size_t)g * (size_t)tokens : 0);
    float *prob = st->prob + (size_t)g * (size_t)tokens;
    for (long i = 0; i < tokens; i++) {
      prob[i] = 0;
      if (i >= c->len || !sel[i])
        continue;
      long p = i / c->P, t = i % c->P;
      size_t base = (((size_t)c->page_ids[p] * (size_t)c->kv_heads + (size_t)c->head) * (size_t)c->P + (size_t)t) * (size_t)c->D;
      double dot = 0;
      for (int d = 0; d < c->D; d++)
        dot += (double)c->q[(size_t)g * (size_t)c->D + (size_t)d] *
               exec_load_f32(c->k, c->kv_dtype == VXK_F16 ? EXEC_F16 : c->kv_dtype == VXK_BF16 ? EXEC_BF16 : EXEC_F32, base + (size_t)d);
      prob[i] = (float)exp(dot / sqrt((double)c->D) - lse[g]);
    }
  }
}

/* Page fields of the pages holding tokens [first, len), token fields of those tokens only. */
static void run_summarise(exec_state *st, int row, int layer, const exec_kv *kv, int first) {
  for (int h = 0; h < st->sh.kv_heads; h++) {
    vxk_ctx c;
    bind_tensors(st, row, layer, h);
    row_ctx(st, &c, layer, h, kv);
    c.page_lo = first / st->sh.P;
    c.page_hi = c.npages;
    c.token_lo = first;
    if (st->pol.k.summarise)
      st->pol.k.summarise(&c);
  }
}

int exec_prefill(exec_state *st, int row, int layer, const exec_kv *kv, char *err, size_t errlen) {
  if (!check_call(st, row, layer, kv, err, errlen))
    return 0;
  for (int h = 0; h < st->sh.kv_heads && st->pol.k.row; h++) {
    vxk_ctx c;
    bind_tensors(st, row, layer, h);
    row_ctx(st, &c, layer, h, kv);
    st->pol.k.scalars(&c, st->scalars);
    compute_kept(st, &c);
    st->pol.k.row(&c);
  }
  run_summarise(st, row, layer, kv, 0);
  return 1;
}

int exec_append(exec_state *st, int row, int layer, const exec_kv *kv, int first, char *err, size_t errlen) {
  if (!check_call(st, row, layer, kv, err, errlen))
    return 0;
  if (first < 0 || first >= kv->len) {
    exec_set_err(err, errlen, "first new token %d is outside the row of %d tokens", first, kv->len);
    return 0;
  }
  run_summarise(st, row, layer, kv, first);
  return 1;
}

/* The ctx of KV head h for a decode step, with the keep counts and kept mask current. */
static void step_ctx(exec_state *st, vxk_ctx *c, int row, int layer, int h, const exec_kv *kv, const float *q) {
  bind_tensors(st, row, layer, h);
  row_ctx(st, c, layer, h, kv);
  c->q = q + (size_t)h * (size_t)st->sh.G * (size_t)st->sh.D;
  c->per_head = st->pol.per_head;
  st->pol.k.scalars(c, st->scalars);
  compute_kept(st, c);
}

int exec_select(exec_state *st, int row, int layer, const exec_kv *kv, const float *q, uint8_t *selected,
                char *err, size_t errlen) {
  if (!check_call(st, row, layer, kv, err, errlen))
    return 0;
  for (int h = 0; h < st->sh.kv_heads; h++) {
    vxk_ctx c;
    step_ctx(st, &c, row, layer, h, kv, q);
    if (st->pol.k.select)
      st->pol.k.select(&c);
    compute_selection(st, &c);
    if (!selected)
      continue;
    size_t tokens = (size_t)st->sh.max_row_pages * (size_t)st->sh.P;
    size_t used = (size_t)c.npages * (size_t)st->sh.P;
    for (int g = 0; g < st->sh.G; g++) {
      uint8_t *dst = selected + ((size_t)h * (size_t)st->sh.G + (size_t)g) * tokens;
      const uint8_t *src = c.selected + (st->pol.per_head ? (size_t)g * used : 0);
      memset(dst, 0, tokens);
      for (size_t i = 0; i < used && i < (size_t)kv->len; i++)
        dst[i] = src[i];
    }
  }
  return 1;
}

int exec_attend(exec_state *st, int row, int layer, const exec_kv *kv, const float *q, float *out, float *lse,
                char *err, size_t errlen) {
  if (!check_call(st, row, layer, kv, err, errlen))
    return 0;
  for (int h = 0; h < st->sh.kv_heads; h++) {
    vxk_ctx c;
    step_ctx(st, &c, row, layer, h, kv, q);
    c.out = out + (size_t)h * (size_t)st->sh.G * (size_t)st->sh.D;
    c.lse = lse + (size_t)h * (size_t)st->sh.G;
    st->pol.k.attend(&c);
    if (st->pol.k.update) {
      compute_prob(st, &c, c.lse);
      st->pol.k.update(&c);
    }
  }
  return 1;
}

int exec_step(exec_state *st, int row, int layer, const exec_kv *kv, const float *q, float *out, float *lse,
              uint8_t *selected, char *err, size_t errlen) {
  return exec_select(st, row, layer, kv, q, selected, err, errlen) &&
         exec_attend(st, row, layer, kv, q, out, lse, err, errlen);
}

int exec_read_tensor(exec_state *st, int row, int layer, int head, const exec_kv *kv, int tensor, const int *idx,
                     float *out) {
  if (tensor < 0 || tensor >= st->pol.ntensors)
    return 0;
  const exec_tensor *t = &st->pol.tensors[tensor];
  if (t->kind == EXEC_INPUT)
    return 0;
  bind_tensors(st, row, layer, head);
  int npages = (kv->len + st->sh.P - 1) / st->sh.P;
  size_t i = 0;
  int paged = exec_is_paged(t);
  if (paged) {
    if (idx[0] < 0 || idx[0] >= npages)
      return 0;
    i = (size_t)kv->page_ids[idx[0]] * (size_t)st->sh.kv_heads + (size_t)head;
  }
  for (int d = paged; d < t->rank; d++) {
    long e = exec_extent(&st->pol, &st->sh, t->extents[d], npages);
    if (e < 0 || idx[d] < 0 || idx[d] >= e)
      return 0;
    i = i * (size_t)e + (size_t)idx[d];
  }
  *out = exec_load_f32(st->ptrs[tensor], t->dtype, i);
  return 1;
}

/* ---- for the GPU executor ---- */

long exec_tensor_block(const exec_state *st, int tensor, int *paged) {
  const exec_tensor *t = &st->pol.tensors[tensor];
  *paged = exec_is_paged(t);
  return exec_tensor_elems(&st->pol, &st->sh, t, 1);
}


const void *exec_const_data(const exec_state *st, int tensor) {
  return st->pol.tensors[tensor].kind == EXEC_CONST ? st->consts[tensor] : NULL;
}

int exec_load_scalars(exec_state *st, double *out) {
  vxk_ctx c;
  base_ctx(st, &c);
  if (st->pol.k.scalars)
    st->pol.k.scalars(&c, st->scalars);
  memcpy(out, st->scalars, sizeof(double) * (size_t)st->nscalars);
  return st->nscalars;
}
