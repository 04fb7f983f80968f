/* lower.c - turns a checked AST into VIR (see vir.h). Each definition becomes a store in the
 * kernel of its stage; expressions become values in that kernel's per-element block (the
 * hoisting pass later moves row-invariant ones out). Runs only on trees sema accepted, so
 * it reports nothing: every name, axis and type here is already known to be right. */
#include "lower.h"

#include <string.h>

#include "sema.h"

enum { MAX_AXES = 256 };

typedef struct Lower {
  VirModule *m;
  VirTensor **by_name; /* open addressing over tensor names, power-of-two capacity */
  int cap;
  Axis *ast_axes[MAX_AXES]; /* this statement's axes and their VIR counterparts */
  VirAxis *vir_axes[MAX_AXES];
  int naxes;
} Lower;

static VirAxis *map_axis(Lower *L, Axis *a) {
  for (int i = 0; i < L->naxes; i++)
    if (L->ast_axes[i] == a)
      return L->vir_axes[i];
  VirAxis *v = vir_axis_new(L->m, a->name, a->extent ? a->extent : "?", a->role);
  if (L->naxes < MAX_AXES) {
    L->ast_axes[L->naxes] = a;
    L->vir_axes[L->naxes++] = v;
  }
  return v;
}

static unsigned name_hash(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* The slot of name in the table: its tensor, or the empty slot where it would go. */
static VirTensor **tensor_slot(Lower *L, const char *name) {
  unsigned i = name_hash(name) & (unsigned)(L->cap - 1);
  while (L->by_name[i] && strcmp(L->by_name[i]->name, name))
    i = (i + 1) & (unsigned)(L->cap - 1);
  return &L->by_name[i];
}

static VirTensor *find_tensor(Lower *L, const char *name) { return L->cap ? *tensor_slot(L, name) : NULL; }

/* A new tensor, also entered in the name table (grown to stay at most half full). */
static VirTensor *new_tensor(Lower *L, const char *name, VirTensorKind kind, int rank) {
  if (2 * (L->m->ntensors + 1) > L->cap) {
    L->cap = L->cap ? 2 * L->cap : 64;
    L->by_name = arena_alloc(L->m->arena, sizeof(VirTensor *) * (size_t)L->cap);
    for (int i = 0; i < L->m->ntensors; i++)
      *tensor_slot(L, L->m->tensors[i]->name) = L->m->tensors[i];
  }
  VirTensor *t = vir_tensor_new(L->m, name, kind, rank);
  *tensor_slot(L, name) = t;
  return t;
}

/* The VIR tensor a tensor symbol stands for; intrinsic tensors are made on first use. */
static VirTensor *tensor_of(Lower *L, Symbol *sym) {
  VirTensor *t = find_tensor(L, sym->name);
  if (t)
    return t;
  t = new_tensor(L, sym->name, VT_INPUT, sym->rank);
  for (int i = 0; i < sym->rank; i++)
    vir_tensor_set_extent(L->m, t, i, sym->axes[i]->extent);
  t->type = sym->type;
  t->dtype = DT_F32;
  return t;
}

static VirValue *emit(Lower *L, VirBlock *b, VirValue *proto) { return vir_emit(L->m, b, proto); }

static VirValue **args_array(Lower *L, int n) {
  return arena_alloc(L->m->arena, sizeof(VirValue *) * (size_t)(n ? n : 1));
}

static VirValue *lower_expr(Lower *L, VirBlock *b, Node *n);

static VirParam *find_param(const VirModule *m, const char *name) {
  for (int i = 0; i < m->nparams; i++)
    if (!strcmp(m->params[i]->name, name))
      return m->params[i];
  return NULL;
}

/* gaussian(seed) or load("file"): the generator's name and its one argument as text. */
static VirInit *lower_init(Lower *L, const Node *call) {
  VirInit *init = arena_alloc(L->m->arena, sizeof *init);
  const Node *arg = call->list;
  init->fn = call->name;
  init->arg = arg->kind == ND_NAME ? arg->name : arg->str;
  return init;
}

static VirValue *lower_load(Lower *L, VirBlock *b, Symbol *sym, Node *subscripts) {
  VirValue v = {0};
  v.op = VI_LOAD;
  v.tensor = tensor_of(L, sym);
  v.type = v.tensor->type;
  v.nargs = sym->rank;
  v.args = args_array(L, v.nargs);
  int i = 0;
  for (Node *s = subscripts; s && i < v.nargs; s = s->next)
    v.args[i++] = lower_expr(L, b, s);
  return emit(L, b, &v);
}

static VirValue *lower_name(Lower *L, VirBlock *b, Node *n) {
  VirValue v = {0};
  v.type = n->type;
  if (n->axis) {
    v.op = VI_AXIS;
    v.axis = map_axis(L, n->axis);
    v.type = TY_I32;
    return emit(L, b, &v);
  }
  Symbol *sym = n->sym;
  if (sym->kind == SYM_PARAM) {
    v.op = VI_PARAM;
    v.param = find_param(L->m, sym->name);
    return emit(L, b, &v);
  }
  if (sym->kind == SYM_INTRINSIC && sym->rank == 0) {
    v.op = VI_SCALAR;
    v.name = sym->name;
    return emit(L, b, &v);
  }
  return lower_load(L, b, sym, NULL);
}

static VirValue *lower_reduce(Lower *L, VirBlock *b, Node *n) {
  VirValue v = {0};
  v.op = VI_REDUCE;
  v.red = n->red;
  v.type = n->type;
  for (Node *x = n->binders; x; x = x->next)
    v.naxes++;
  v.axes = arena_alloc(L->m->arena, sizeof(VirAxis *) * (size_t)v.naxes);
  int i = 0;
  for (Node *x = n->binders; x; x = x->next)
    v.axes[i++] = map_axis(L, x->axis);
  v.nargs = n->cond ? 2 : 1;
  v.args = args_array(L, v.nargs);
  v.args[0] = lower_expr(L, b, n->lhs);
  if (n->cond)
    v.args[1] = lower_expr(L, b, n->cond);
  return emit(L, b, &v);
}

static VirValue *lower_expr(Lower *L, VirBlock *b, Node *n) {
  VirValue v = {0};
  v.type = n->type;
  switch (n->kind) {
  case ND_NUM:
    v.op = VI_NUM;
    v.num = n->num;
    v.is_int = n->is_int;
    return emit(L, b, &v);
  case ND_NAME:
    return lower_name(L, b, n);
  case ND_INDEX:
    return lower_load(L, b, n->sym, n->list);
  case ND_REDUCE:
    return lower_reduce(L, b, n);
  case ND_UNARY:
    v.op = VI_UNARY;
    v.opcode = n->op;
    v.nargs = 1;
    v.args = args_array(L, 1);
    v.args[0] = lower_expr(L, b, n->lhs);
    return emit(L, b, &v);
  case ND_BINARY:
    v.op = VI_BINARY;
    v.opcode = n->op;
    v.nargs = 2;
    v.args = args_array(L, 2);
    v.args[0] = lower_expr(L, b, n->lhs);
    v.args[1] = lower_expr(L, b, n->rhs);
    return emit(L, b, &v);
  case ND_COND:
    v.op = VI_SELECT;
    v.nargs = 3;
    v.args = args_array(L, 3);
    v.args[0] = lower_expr(L, b, n->cond);
    v.args[1] = lower_expr(L, b, n->lhs);
    v.args[2] = lower_expr(L, b, n->rhs);
    return emit(L, b, &v);
  case ND_CALL: {
    v.op = VI_CALL;
    v.name = n->name;
    for (Node *a = n->list; a; a = a->next)
      v.nargs++;
    v.args = args_array(L, v.nargs);
    int i = 0;
    for (Node *a = n->list; a; a = a->next)
      v.args[i++] = lower_expr(L, b, a);
    return emit(L, b, &v);
  }
  default:
    /* sema admits no other expression; a string only ever appears inside load() */
    v.op = VI_NUM;
    return emit(L, b, &v);
  }
}

static VirKernelKind kernel_of(Stage st) {
  static const VirKernelKind kind[] = {VK_CONST, VK_ROW, VK_SUMMARISE, VK_SUMMARISE, VK_SELECT,
                                       VK_UPDATE};
  return kind[st];
}

static VirTensorKind tensor_kind_of(Stage st) {
  static const VirTensorKind kind[] = {VT_CONST, VT_ROW, VT_PAGE, VT_TOKEN, VT_STEP, VT_STEP};
  return kind[st];
}

static VirAxis **bind_axes(Lower *L, Node *binders, int rank) {
  VirAxis **axes = arena_alloc(L->m->arena, sizeof(VirAxis *) * (size_t)(rank ? rank : 1));
  int i = 0;
  for (Node *b = binders; b && i < rank; b = b->next)
    axes[i++] = map_axis(L, b->axis);
  return axes;
}

/* Kernels without a grid (const, row) evaluate everything once: their values go to the
 * row block. The others start in the per-element block. */
static VirBlock *block_for(VirKernel *k) {
  return k->kind == VK_CONST || k->kind == VK_ROW ? &k->row : &k->each;
}

static void lower_def(Lower *L, Node *n) {
  Symbol *sym = n->sym;
  if (n->stage == ST_UPDATE) {
    VirTensor *t = find_tensor(L, sym->name);
    VirKernel *k = vir_kernel_get(L->m, VK_UPDATE);
    VirAxis **axes = bind_axes(L, n->binders, t->rank);
    vir_store_add(L->m, k, t, axes, OP_ASSIGN, lower_expr(L, block_for(k), n->lhs));
    return;
  }
  VirTensor *t = new_tensor(L, n->name, tensor_kind_of(n->stage), sym->rank);
  for (int i = 0; i < sym->rank; i++)
    vir_tensor_set_extent(L->m, t, i, sym->axes[i]->extent);
  t->dtype = n->dtype;
  t->type = sym->type;
  t->updated = sym->updated;
  Node *body = n->lhs;
  if (n->stage == ST_CONST && body->kind == ND_CALL &&
      (!strcmp(body->name, "gaussian") || !strcmp(body->name, "load"))) {
    t->init = lower_init(L, body);
    return;
  }
  VirKernel *k = vir_kernel_get(L->m, kernel_of(n->stage));
  VirAxis **axes = bind_axes(L, n->binders, sym->rank);
  vir_store_add(L->m, k, t, axes, OP_ASSIGN, lower_expr(L, block_for(k), body));
}

static void lower_keep(Lower *L, Node *n) {
  int count = 0;
  for (Node *r = n->list; r; r = r->next)
    count++;
  L->m->keeps = arena_alloc(L->m->arena, sizeof(VirKeep) * (size_t)count);
  for (Node *r = n->list; r; r = r->next) {
    VirKeep *k = &L->m->keeps[L->m->nkeeps++];
    k->kind = r->keep;
    k->unit = r->unit;
    k->at_prefill = r->at_prefill;
    if (r->lhs)
      k->count = lower_expr(L, &L->m->scalars, r->lhs);
  }
}

/* Where a selection reads a tensor by its bare name it means every element: the read gets
 * the score's axes, so that the condition is an ordinary per-element value. */
static VirValue *lower_selection_expr(Lower *L, VirBlock *b, Node *e, VirAxis **axes) {
  if (e->kind == ND_NAME && e->sym && e->sym->rank > 0) {
    VirValue v = {0};
    v.op = VI_LOAD;
    v.tensor = tensor_of(L, e->sym);
    v.type = v.tensor->type;
    v.nargs = e->sym->rank;
    v.args = args_array(L, v.nargs);
    for (int i = 0; i < v.nargs; i++) {
      VirValue a = {0};
      a.op = VI_AXIS;
      a.axis = axes[i];
      a.type = TY_I32;
      v.args[i] = emit(L, b, &a);
    }
    return emit(L, b, &v);
  }
  if (e->kind == ND_BINARY || e->kind == ND_UNARY || e->kind == ND_COND || e->kind == ND_CALL) {
    VirValue v = {0};
    v.type = e->type;
    Node *ops[3] = {e->kind == ND_COND ? e->cond : e->lhs, e->kind == ND_COND ? e->lhs : e->rhs,
                    e->kind == ND_COND ? e->rhs : NULL};
    v.op = e->kind == ND_BINARY ? VI_BINARY : e->kind == ND_UNARY ? VI_UNARY
           : e->kind == ND_COND ? VI_SELECT : VI_CALL;
    v.opcode = e->op;
    v.name = e->kind == ND_CALL ? e->name : NULL;
    if (e->kind == ND_CALL) {
      for (Node *a = e->list; a; a = a->next)
        v.nargs++;
      v.args = args_array(L, v.nargs);
      int i = 0;
      for (Node *a = e->list; a; a = a->next)
        v.args[i++] = lower_selection_expr(L, b, a, axes);
    } else {
      v.nargs = e->kind == ND_BINARY ? 2 : e->kind == ND_UNARY ? 1 : 3;
      v.args = args_array(L, v.nargs);
      for (int i = 0; i < v.nargs; i++)
        v.args[i] = lower_selection_expr(L, b, ops[i], axes);
    }
    return emit(L, b, &v);
  }
  return lower_expr(L, b, e);
}

/* The first tensor a selection expression reads fixes the selection's axes. */
static Symbol *selection_tensor(Node *e) {
  if (!e)
    return NULL;
  if (e->kind == ND_NAME && e->sym && e->sym->rank > 0)
    return e->sym;
  Symbol *s = selection_tensor(e->cond);
  if (!s)
    s = selection_tensor(e->lhs);
  if (!s)
    s = selection_tensor(e->rhs);
  for (Node *a = e->kind == ND_CALL ? e->list : NULL; a && !s; a = a->next)
    s = selection_tensor(a);
  return s;
}

static void lower_select(Lower *L, Node *n) {
  VirModule *m = L->m;
  int count = 0;
  for (Node *s = n->list; s; s = s->next)
    count++;
  m->selections = arena_alloc(m->arena, sizeof(VirSelection) * (size_t)count);
  m->per_head = n->per_head;
  VirKernel *k = vir_kernel_get(m, VK_SELECT);
  for (Node *s = n->list; s; s = s->next) {
    VirSelection *sel = &m->selections[m->nselections++];
    sel->kind = s->kind == ND_TOP ? VS_TOP : s->kind == ND_WHERE ? VS_WHERE : VS_ALL;
    if (s->kind == ND_ALL)
      continue;
    Symbol *shape = selection_tensor(s->lhs);
    for (int i = 0; i < shape->rank; i++)
      m->token_granular |= shape->axes[i]->role == AX_TOKEN;
    if (s->kind == ND_TOP) {
      sel->scores = tensor_of(L, shape);
      sel->count = lower_expr(L, &m->scalars, s->rhs);
      sel->unit = s->unit != UNIT_NONE ? s->unit : s->rhs->vunit; /* top(s, 64 tokens) or a param's */
      continue;
    }
    /* the condition becomes a step tensor (0/1), so every backend reads it the same way */
    VirAxis **axes = arena_alloc(m->arena, sizeof(VirAxis *) * (size_t)shape->rank);
    VirTensor *mask = new_tensor(L, arena_printf(m->arena, "where%d", m->nselections - 1),
                                     VT_STEP, shape->rank);
    for (int i = 0; i < shape->rank; i++) {
      const Axis *a = shape->axes[i];
      axes[i] = vir_axis_new(m, a->role == AX_HEAD ? "g" : a->role == AX_PAGE ? "p" : "t",
                             a->extent, a->role);
      vir_tensor_set_extent(m, mask, i, a->extent);
    }
    mask->type = TY_BOOL;
    mask->dtype = DT_U32;
    vir_store_add(m, k, mask, axes, OP_ASSIGN, lower_selection_expr(L, &k->each, s->lhs, axes));
    sel->scores = mask;
  }
}

static void lower_attend(Lower *L, Node *n) {
  VirKernel *k = vir_kernel_get(L->m, VK_ATTEND);
  VirTensor *t = find_tensor(L, "logit");
  if (!t) {
    t = new_tensor(L, "logit", VT_INPUT, 3);
    vir_tensor_set_extent(L->m, t, 0, "G");
    vir_tensor_set_extent(L->m, t, 1, "npages");
    vir_tensor_set_extent(L->m, t, 2, "P");
    t->type = TY_F32;
  }
  VirAxis **axes = bind_axes(L, n->binders, 3);
  vir_store_add(L->m, k, t, axes, n->op, lower_expr(L, &k->each, n->lhs));
}

/* A param as VIR keeps it: sema admits only a literal default, possibly negated. */
static VirParam *lower_param(Arena *arena, const Node *n, int index) {
  VirParam *p = arena_alloc(arena, sizeof *p);
  const Node *v = n->lhs;
  bool neg = v->kind == ND_UNARY;
  const Node *lit = neg ? v->lhs : v;
  p->index = index;
  p->name = n->name;
  p->type = n->sym ? n->sym->type : TY_ERROR;
  p->unit = n->unit;
  p->def = neg ? -lit->num : lit->num;
  p->def_text = arena_printf(arena, "%s%s", neg ? "-" : "", lit->str);
  return p;
}

VirModule *lower_policy(Arena *arena, Node *policy) {
  Lower L = {0};
  L.m = vir_module_new(arena, policy->name);
  VirModule *m = L.m;
  for (Node *n = policy->list; n; n = n->next)
    m->nparams += n->kind == ND_PARAM;
  m->params = arena_alloc(arena, sizeof(VirParam *) * (size_t)(m->nparams ? m->nparams : 1));
  int nrequire = 0;
  for (Node *n = policy->list; n; n = n->next)
    nrequire += n->kind == ND_REQUIRE;
  m->requires = arena_alloc(arena, sizeof(VirValue *) * (size_t)(nrequire ? nrequire : 1));
  m->require_spans = arena_alloc(arena, sizeof(Span) * (size_t)(nrequire ? nrequire : 1));
  /* params first: any item may read one */
  int np = 0;
  for (Node *n = policy->list; n; n = n->next)
    if (n->kind == ND_PARAM) {
      m->params[np] = lower_param(arena, n, np);
      np++;
    }
  for (Node *n = policy->list; n; n = n->next) {
    L.naxes = 0;
    switch (n->kind) {
    case ND_PARAM:
      break;
    case ND_KEEP:
      lower_keep(&L, n);
      break;
    case ND_REQUIRE:
      m->require_spans[m->nrequires] = n->lhs->span;
      m->requires[m->nrequires++] = lower_expr(&L, &m->scalars, n->lhs);
      break;
    case ND_DEF:
      lower_def(&L, n);
      break;
    case ND_SELECT:
      lower_select(&L, n);
      break;
    case ND_ATTEND:
      lower_attend(&L, n);
      break;
    default:
      break;
    }
  }
  vir_kernel_get(m, VK_ATTEND); /* every policy attends, dense or not */
  return m;
}
