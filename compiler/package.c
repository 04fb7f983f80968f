/* package.c - VIR plus host code to an artifact (see package.h). The manifest lists every
 * VIR tensor in id order, so that a field's index is the kernels' tensor index and the
 * selection can name its score by it. */
#include "package.h"

#include <stdlib.h>
#include <string.h>

#include "artifact.h"

typedef struct Pack {
  art_manifest m;
  art_param *params;
  art_field *fields;
  art_kernel kernels[9];
  art_keep *keeps;
  art_select *selects;
  char **require_texts;
  art_target targets[1 + 8];
  const char *gpu_kernels[CG_GPU_NKERNELS];
  char hash[17];
} Pack;

static const char *unit_name(Unit u) { return u == UNIT_PAGES ? "pages" : u == UNIT_TOKENS ? "tokens" : ""; }

static void pack_params(Pack *p, const VirModule *m) {
  for (int i = 0; i < m->nparams; i++) {
    const VirParam *n = m->params[i];
    art_param *a = &p->params[i];
    a->name = n->name;
    a->type = n->type == TY_F32 ? ART_F32 : ART_I32;
    a->unit = unit_name(n->unit);
    a->def = n->def;
  }
}

static void pack_fields(Pack *p, const VirModule *m) {
#define PKG_STAGE(tag, name) [VT_##tag] = ART_##tag,
  static const art_stage stage[] = {VXK_STAGES(PKG_STAGE)};
#undef PKG_STAGE
  for (int i = 0; i < m->ntensors; i++) {
    const VirTensor *t = m->tensors[i];
    art_field *f = &p->fields[i];
    f->name = t->name;
    f->stage = stage[t->kind];
    f->dtype = ast_dtype_text(t->dtype);
    f->naxes = t->rank;
    f->axes = t->extents;
    if (t->init) {
      f->init = t->init->fn;
      f->init_arg = t->init->arg;
    }
  }
}

/* Every function cg_host.c emits: the kernels VIR has, then scalars and require. */
static void pack_kernels(Pack *p, const VirModule *m) {
#define PKG_KERNEL(tag, name) {ART_K_##tag, "vxk_" #name},
  static const struct {
    art_kernel_kind kind;
    const char *entry;
  } host[] = {VXK_HOST_KERNELS(PKG_KERNEL)};
#undef PKG_KERNEL
  int n = 0;
  for (const VirKernel *k = m->kernels; k; k = k->next) {
    p->kernels[n].name = vir_kernel_kind_text(k->kind);
    p->kernels[n].kind = host[k->kind].kind;
    p->kernels[n++].entry = host[k->kind].entry;
  }
  p->kernels[n++] = (art_kernel){"scalars", ART_K_SCALARS, "vxk_scalars"};
  p->kernels[n++] = (art_kernel){"require", ART_K_REQUIRE, "vxk_require"};
  p->m.nkernels = n;
}

static void pack_selection(Pack *p, const VirModule *m) {
  for (int i = 0; i < m->nkeeps; i++) {
    const VirKeep *k = &m->keeps[i];
    p->keeps[i].kind = k->kind == KEEP_FIRST ? ART_KEEP_FIRST : k->kind == KEEP_LAST ? ART_KEEP_LAST : ART_KEEP_GENERATED;
    p->keeps[i].unit = k->unit == UNIT_PAGES ? "pages" : "tokens";
    p->keeps[i].at_prefill = k->at_prefill;
  }
  for (int i = 0; i < m->nselections; i++) {
    const VirSelection *s = &m->selections[i];
    art_select *a = &p->selects[i];
    a->kind = s->kind == VS_TOP ? ART_SELECT_TOP : s->kind == VS_WHERE ? ART_SELECT_WHERE : ART_SELECT_ALL;
    a->field = s->scores ? s->scores->id : -1;
    a->unit = s->kind == VS_TOP ? unit_name(s->unit) : "";
  }
  p->m.nkeeps = m->nkeeps;
  p->m.nselects = m->nselections;
  p->m.per_head = m->per_head;
  p->m.token_granular = m->token_granular;
  p->m.nrequires = m->nrequires;
}

/* One PTX section per sm; every section lists the same kernel kinds for each of its shapes. */
static void pack_ptx(Pack *p, const PkgPtx *ptx, int nptx) {
  for (int i = 0; i < nptx && p->m.ntargets < (int)(sizeof p->targets / sizeof p->targets[0]); i++) {
    int nk = 0;
    for (int k = 0; k < CG_GPU_NKERNELS; k++)
      if (ptx[i].ptx->kernels & (1u << k))
        p->gpu_kernels[nk++] = cg_nvptx_kernel_name(k);
    p->targets[p->m.ntargets++] = (art_target){.name = ptx[i].sm, .kind = ART_PTX, .size = ptx[i].ptx->len,
                                               .data = (const unsigned char *)ptx[i].ptx->ptx,
                                               .nshapes = ptx[i].nshapes, .shapes = ptx[i].shapes,
                                               .ngpu_kernels = nk, .gpu_kernels = p->gpu_kernels};
  }
}

/* Each require's condition as written (whitespace runs folded, cut to the artifact's string
 * limit), so that a failing require can be named by its text at load. */
static bool pack_requires(Pack *p, const VirModule *m, const Source *src) {
  p->require_texts = calloc((size_t)m->nrequires + 1, sizeof(char *));
  if (!p->require_texts)
    return false;
  for (int i = 0; i < m->nrequires; i++) {
    Span sp = m->require_spans[i];
    char *t = malloc(ART_MAX_STRING);
    if (!t)
      return false;
    int n = 0;
    for (int k = 0; k < sp.len && n < ART_MAX_STRING - 4; k++) {
      char c = src->text[sp.off + k];
      bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r';
      if (space && (n == 0 || t[n - 1] == ' '))
        continue;
      t[n++] = space ? ' ' : (c >= 32 && c < 127 ? c : '?');
    }
    while (n > 0 && t[n - 1] == ' ')
      n--;
    t[n] = '\0';
    p->require_texts[i] = t;
  }
  p->m.require_texts = (const char *const *)p->require_texts;
  return true;
}

static bool pack(Pack *p, const VirModule *m, const Source *src, const CgHostResult *host) {
  memset(p, 0, sizeof *p);
  p->params = calloc((size_t)m->nparams + 1, sizeof *p->params);
  p->fields = calloc((size_t)m->ntensors + 1, sizeof *p->fields);
  p->keeps = calloc((size_t)m->nkeeps + 1, sizeof *p->keeps);
  p->selects = calloc((size_t)m->nselections + 1, sizeof *p->selects);
  if (!p->params || !p->fields || !p->keeps || !p->selects)
    return false;
  art_hex64(art_fnv1a64(src->text, (size_t)src->len), p->hash);
  p->m.vx_version = VX_VERSION;
  p->m.source_hash = p->hash;
  p->m.policy = m->name;
  p->m.nparams = m->nparams;
  p->m.params = p->params;
  p->m.nfields = m->ntensors;
  p->m.fields = p->fields;
  p->m.kernels = p->kernels;
  pack_params(p, m);
  pack_fields(p, m);
  pack_kernels(p, m);
  pack_selection(p, m);
  if (!pack_requires(p, m, src))
    return false;
  p->m.keeps = p->keeps;
  p->m.selects = p->selects;
  p->targets[0] = (art_target){.name = cg_host_target(), .kind = ART_HOST_SO, .size = host->so_len, .data = host->so};
  p->m.ntargets = 1;
  p->m.targets = p->targets;
  return true;
}

static void unpack(Pack *p) {
  for (int i = 0; p->require_texts && p->require_texts[i]; i++)
    free(p->require_texts[i]);
  free(p->require_texts);
  free(p->params);
  free(p->fields);
  free(p->keeps);
  free(p->selects);
}

static bool report(art_code c, const art_error *e, Diags *diags, Span where) {
  if (c == ART_OK)
    return true;
  Diagnostic *d = diag_error(diags, where, "E1004", "cannot write the artifact: %s", e->msg);
  diag_hint(diags, d, "this is a compiler bug unless the disk is full or the path unwritable");
  return false;
}

/* The artifact format bounds its lists (ART_MAX_ITEMS): say so instead of failing inside. */
bool pkg_fits(const VirModule *m, Diags *diags, Span where) {
  const char *what = m->nparams > ART_MAX_ITEMS ? "params" : m->ntensors > ART_MAX_ITEMS ? "tensors" : NULL;
  if (!what)
    return true;
  Diagnostic *d = diag_error(diags, where, "E1005", "policy '%s' has %d %s; an artifact holds at most %d",
                             m->name, m->nparams > ART_MAX_ITEMS ? m->nparams : m->ntensors, what, ART_MAX_ITEMS);
  diag_hint(diags, d, "every const, field, row state, let and score is a tensor");
  return false;
}

bool pkg_emit(const VirModule *m, const Source *src, const CgHostResult *host, const PkgPtx *ptx, int nptx,
              const char *path, unsigned char **out, size_t *outlen, Diags *diags, Span where) {
  if (!pkg_fits(m, diags, where))
    return false;
  Pack p;
  art_error e = {0};
  art_code c = ART_ENOMEM;
  bool packed = pack(&p, m, src, host);
  if (packed)
    pack_ptx(&p, ptx, nptx);
  if (packed)
    c = path ? art_write_file(&p.m, path, &e) : art_write(&p.m, out, outlen, &e);
  if (c == ART_ENOMEM && !e.msg[0])
    strcpy(e.msg, "out of memory");
  unpack(&p);
  return report(c, &e, diags, where);
}

bool pkg_build(const VirModule *m, const Source *src, const CgHostResult *host, unsigned char **out,
               size_t *outlen, Diags *diags, Span where) {
  return pkg_emit(m, src, host, NULL, 0, NULL, out, outlen, diags, where);
}

bool pkg_write(const VirModule *m, const Source *src, const CgHostResult *host, const char *path,
               Diags *diags, Span where) {
  return pkg_emit(m, src, host, NULL, 0, path, NULL, NULL, diags, where);
}
