/* host_policy.c - see host_policy.h. The mapping from VIR to exec_policy here is what the
 * artifact's manifest carries for libvxrt. */
#include "host_policy.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg.h"
#include "front.h"
#include "lower.h"
#include "pass.h"

static exec_unit unit_of(Unit u) {
  return u == UNIT_TOKENS ? EXEC_UNIT_TOKENS : u == UNIT_PAGES ? EXEC_UNIT_PAGES : EXEC_UNIT_NONE;
}

static void describe(const VirModule *m, host_policy *hp) {
  exec_policy *p = &hp->pol;
  p->nparams = m->nparams;
  hp->names = calloc((size_t)m->nparams + 1, sizeof(char *));
  hp->values = calloc((size_t)m->nparams + 1, sizeof(double));
  for (int i = 0; i < m->nparams; i++) {
    const Node *v = m->params[i]->lhs;
    hp->names[i] = m->params[i]->name;
    hp->values[i] = v->kind == ND_UNARY ? -v->lhs->num : v->num;
  }
  p->param_names = hp->names;
  p->param_values = hp->values;
  hp->tensors = calloc((size_t)m->ntensors + 1, sizeof(exec_tensor));
  for (int i = 0; i < m->ntensors; i++) {
    const VirTensor *t = m->tensors[i];
    exec_tensor *e = &hp->tensors[i];
    static const exec_tensor_kind kind[] = {EXEC_INPUT, EXEC_CONST, EXEC_ROW, EXEC_PAGE, EXEC_TOKEN, EXEC_STEP};
    e->name = t->name;
    e->kind = kind[t->kind];
    e->dtype = (exec_dtype)t->dtype;
    e->rank = t->rank;
    for (int d = 0; d < t->rank && d < EXEC_MAX_RANK; d++)
      e->extents[d] = t->extents[d];
    if (t->init) {
      e->init = t->init->name;
      const Node *a = t->init->list;
      e->init_arg = a->kind == ND_STR ? a->str : a->kind == ND_NAME ? a->name : a->str;
    }
  }
  p->ntensors = m->ntensors;
  p->tensors = hp->tensors;
  hp->keeps = calloc((size_t)m->nkeeps + 1, sizeof(exec_keep));
  for (int i = 0; i < m->nkeeps; i++) {
    hp->keeps[i].kind = (exec_keep_kind)m->keeps[i].kind;
    hp->keeps[i].unit = unit_of(m->keeps[i].unit);
    hp->keeps[i].at_prefill = m->keeps[i].at_prefill;
  }
  p->nkeeps = m->nkeeps;
  p->keeps = hp->keeps;
  hp->sels = calloc((size_t)m->nselections + 1, sizeof(exec_selection));
  for (int i = 0; i < m->nselections; i++) {
    const VirSelection *s = &m->selections[i];
    hp->sels[i].kind = s->kind == ND_TOP ? EXEC_SEL_TOP : s->kind == ND_WHERE ? EXEC_SEL_WHERE : EXEC_SEL_ALL;
    hp->sels[i].tensor = s->scores ? s->scores->id : -1;
    hp->sels[i].unit = unit_of(s->unit);
  }
  p->nselections = m->nselections;
  p->selections = hp->sels;
  p->per_head = m->per_head;
  p->token_granular = m->token_granular;
  p->nrequires = m->nrequires;
}

static void *sym(host_policy *hp, const char *name) { return dlsym(hp->dl, name); }

int host_policy_compile(const char *path, host_policy *hp) {
  memset(hp, 0, sizeof *hp);
  char *text;
  int len;
  const char *error;
  if (!front_read_file(path, &text, &len, &error)) {
    fprintf(stderr, "%s: %s\n", path, error);
    return -1;
  }
  Compilation *c = calloc(1, sizeof *c);
  hp->compilation = c;
  int nerrors = front_compile(c, path, text, len);
  free(text);
  if (nerrors) {
    diag_render(&c->diags, stderr, DIAG_TEXT);
    return -1;
  }
  VirModule *m = lower_policy(&c->arena, c->policy);
  if (pass_run(m, stderr))
    return -1;
  CgHostResult r;
  if (!cg_host_compile(m, &c->diags, c->policy->span, 1, false, &r)) {
    diag_render(&c->diags, stderr, DIAG_TEXT);
    return -1;
  }
  snprintf(hp->so_path, sizeof hp->so_path, "/tmp/vx-test-XXXXXX");
  int fd = mkstemp(hp->so_path);
  int ok = fd >= 0 && write(fd, r.so, r.so_len) == (ssize_t)r.so_len;
  if (fd >= 0)
    close(fd);
  cg_host_result_free(&r);
  hp->dl = ok ? dlopen(hp->so_path, RTLD_NOW | RTLD_LOCAL) : NULL;
  if (!hp->dl) {
    fprintf(stderr, "%s: cannot load host code: %s\n", path, dlerror());
    return -1;
  }
  describe(m, hp);
  exec_kernels *k = &hp->pol.k;
  k->kconst = (vxk_kernel)sym(hp, "vxk_const");
  k->row = (vxk_kernel)sym(hp, "vxk_row");
  k->summarise = (vxk_kernel)sym(hp, "vxk_summarise");
  k->select = (vxk_kernel)sym(hp, "vxk_select");
  k->attend = (vxk_kernel)sym(hp, "vxk_attend");
  k->update = (vxk_kernel)sym(hp, "vxk_update");
  k->scalars = (void (*)(vxk_ctx *, double *))sym(hp, "vxk_scalars");
  k->require = (int (*)(vxk_ctx *))sym(hp, "vxk_require");
  if (!k->attend || !k->scalars || !k->require) {
    fprintf(stderr, "%s: host code lacks a kernel\n", path);
    return -1;
  }
  return 0;
}

int host_policy_set(host_policy *hp, const char *name, double value) {
  for (int i = 0; i < hp->pol.nparams; i++)
    if (!strcmp(hp->names[i], name)) {
      hp->values[i] = value;
      return 0;
    }
  return -1;
}

void host_policy_free(host_policy *hp) {
  if (hp->dl)
    dlclose(hp->dl);
  if (hp->so_path[0])
    unlink(hp->so_path);
  free(hp->names);
  free(hp->values);
  free(hp->tensors);
  free(hp->keeps);
  free(hp->sels);
  if (hp->compilation) {
    front_destroy(hp->compilation);
    free(hp->compilation);
  }
  memset(hp, 0, sizeof *hp);
}
