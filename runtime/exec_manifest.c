/* exec_manifest.c - see exec_manifest.h. */
#include "exec_manifest.h"

#include <stdlib.h>
#include <string.h>

static exec_dtype dtype_of(const char *name) {
#define EXEC_DTYPE_NAME(tag, dtype_name, bytes) #dtype_name,
  static const char *const names[] = {VXK_DTYPES(EXEC_DTYPE_NAME)};
#undef EXEC_DTYPE_NAME
  for (int i = 0; i < EXEC_DTYPE_COUNT; i++)
    if (!strcmp(name, names[i]))
      return (exec_dtype)i;
  return EXEC_F32; /* art_parse admits no other name */
}

static exec_unit unit_of(const char *unit) {
  return !unit ? EXEC_UNIT_NONE : !strcmp(unit, "pages") ? EXEC_UNIT_PAGES
                                : !strcmp(unit, "tokens") ? EXEC_UNIT_TOKENS : EXEC_UNIT_NONE;
}

void exec_desc_free(exec_desc *d) {
  free(d->names);
  free(d->tensors);
  free(d->keeps);
  free(d->selects);
  memset(d, 0, sizeof *d);
}

int exec_describe(const art_manifest *m, const double *param_values, const char *base_dir, exec_desc *d) {
  memset(d, 0, sizeof *d);
  d->names = calloc((size_t)m->nparams + 1, sizeof(char *));
  d->tensors = calloc((size_t)m->nfields + 1, sizeof(exec_tensor));
  d->keeps = calloc((size_t)m->nkeeps + 1, sizeof(exec_keep));
  d->selects = calloc((size_t)m->nselects + 1, sizeof(exec_selection));
  if (!d->names || !d->tensors || !d->keeps || !d->selects) {
    exec_desc_free(d);
    return 0;
  }
  for (int i = 0; i < m->nparams; i++)
    d->names[i] = m->params[i].name;
  static const exec_tensor_kind kind[] = {[ART_PAGE] = EXEC_PAGE, [ART_TOKEN] = EXEC_TOKEN, [ART_ROW] = EXEC_ROW,
                                          [ART_CONST] = EXEC_CONST, [ART_STEP] = EXEC_STEP, [ART_INPUT] = EXEC_INPUT};
  for (int i = 0; i < m->nfields; i++) {
    const art_field *f = &m->fields[i];
    exec_tensor *t = &d->tensors[i];
    t->name = f->name;
    t->kind = kind[f->stage];
    t->dtype = dtype_of(f->dtype);
    t->rank = f->naxes;
    for (int j = 0; j < f->naxes && j < EXEC_MAX_RANK; j++)
      t->extents[j] = f->axes[j];
    t->init = f->init;
    t->init_arg = f->init_arg;
  }
  for (int i = 0; i < m->nkeeps; i++) {
    d->keeps[i].kind = (exec_keep_kind)m->keeps[i].kind;
    d->keeps[i].unit = unit_of(m->keeps[i].unit);
    d->keeps[i].at_prefill = m->keeps[i].at_prefill;
  }
  for (int i = 0; i < m->nselects; i++) {
    d->selects[i].kind = (exec_sel_kind)m->selects[i].kind;
    d->selects[i].tensor = m->selects[i].field;
    d->selects[i].unit = unit_of(m->selects[i].unit);
  }
  exec_policy *e = &d->pol;
  e->nparams = m->nparams;
  e->param_names = d->names;
  e->param_values = param_values;
  e->ntensors = m->nfields;
  e->tensors = d->tensors;
  e->nkeeps = m->nkeeps;
  e->keeps = d->keeps;
  e->nselections = m->nselects;
  e->selections = d->selects;
  e->per_head = m->per_head;
  e->token_granular = m->token_granular;
  e->nrequires = m->nrequires;
  e->require_texts = m->require_texts;
  e->base_dir = base_dir;
  return 1;
}

const char *exec_kernel_entry(const art_manifest *m, art_kernel_kind kind) {
  for (int i = 0; i < m->nkernels; i++)
    if (m->kernels[i].kind == kind)
      return m->kernels[i].entry;
  return NULL;
}
