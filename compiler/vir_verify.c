/* vir_verify.c - checks VIR's invariants: operands defined before use and visible from the
 * user's block, domains equal to what the operands imply, loads and stores matching their
 * tensors' ranks, types that fit their operations, and hoisted values free of page and
 * token axes. A violation is a compiler bug, never a user error: it is printed to err with
 * the value's number so that a pass that broke the module can be found. */
#include <stdarg.h>

#include "vir.h"

typedef struct Verify {
  const VirModule *m;
  FILE *err;
  int problems;
  const char *where;
} Verify;

static void fail(Verify *V, const VirValue *v, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(V->err, "vir: %s: %%%d: ", V->where, v ? v->id : 0);
  vfprintf(V->err, fmt, ap);
  fputc('\n', V->err);
  va_end(ap);
  V->problems++;
}

static bool in_block(const VirBlock *b, const VirValue *v, const VirValue *before) {
  for (const VirValue *x = b ? b->first : NULL; x && x != before; x = x->next)
    if (x == v)
      return true;
  return false;
}

static void check_domain(Verify *V, const VirValue *v) {
  if (v->op == VI_AXIS && !vir_dom_has(v->dom, v->ndom, v->axis))
    fail(V, v, "axis value lacks its axis in its domain");
  for (int i = 0; i < v->nargs; i++)
    for (int j = 0; j < v->args[i]->ndom; j++) {
      const VirAxis *a = v->args[i]->dom[j];
      bool removed = v->op == VI_REDUCE && v->red != RED_SOFTMAX && vir_dom_has(v->axes, v->naxes, a);
      if (removed)
        continue;
      if (!vir_dom_has(v->dom, v->ndom, a))
        fail(V, v, "domain lacks axis %s.%d of operand %%%d", a->name, a->id, v->args[i]->id);
    }
  for (int i = 0; i < v->ndom; i++) {
    if (i && v->dom[i - 1]->id >= v->dom[i]->id)
      fail(V, v, "domain not sorted by axis id");
    bool from_operand = v->op == VI_AXIS && v->dom[i] == v->axis;
    for (int j = 0; j < v->nargs && !from_operand; j++)
      from_operand = vir_dom_has(v->args[j]->dom, v->args[j]->ndom, v->dom[i]);
    if (!from_operand)
      fail(V, v, "domain axis %s.%d comes from no operand", v->dom[i]->name, v->dom[i]->id);
    if (v->op == VI_REDUCE && v->red != RED_SOFTMAX && vir_dom_has(v->axes, v->naxes, v->dom[i]))
      fail(V, v, "reduced axis %s.%d is still in the domain", v->dom[i]->name, v->dom[i]->id);
  }
}

static void check_types(Verify *V, const VirValue *v) {
  switch (v->op) {
  case VI_LOAD:
    if (v->nargs != v->tensor->rank)
      fail(V, v, "load of %s with %d subscripts, rank %d", v->tensor->name, v->nargs, v->tensor->rank);
    for (int i = 0; i < v->nargs; i++)
      if (v->args[i]->type != TY_I32 && v->args[i]->type != TY_U32)
        fail(V, v, "subscript %d of %s is %s", i, v->tensor->name, ast_type_text(v->args[i]->type));
    break;
  case VI_BINARY:
    if (v->nargs != 2)
      fail(V, v, "binary with %d operands", v->nargs);
    else if ((v->opcode >= OP_EQ && v->opcode <= OP_OR) != (v->type == TY_BOOL))
      fail(V, v, "'%s' gives %s", ast_op_text(v->opcode), ast_type_text(v->type));
    break;
  case VI_SELECT:
    if (v->nargs != 3 || v->args[0]->type != TY_BOOL)
      fail(V, v, "select needs a condition and two values");
    break;
  case VI_REDUCE:
    if (v->naxes < 1 || v->nargs < 1 || v->nargs > 2)
      fail(V, v, "reduction needs axes and one operand (plus a filter)");
    else if (v->nargs == 2 && v->args[1]->type != TY_BOOL)
      fail(V, v, "reduction filter is %s", ast_type_text(v->args[1]->type));
    break;
  case VI_AXIS:
    if (!v->axis || v->type != TY_I32)
      fail(V, v, "axis value without an axis or not i32");
    break;
  default:
    break;
  }
  if (v->type == TY_ERROR)
    fail(V, v, "value has no type");
}

static void check_block(Verify *V, const VirBlock *b, const VirBlock *outer, bool hoisted) {
  for (const VirValue *v = b->first; v; v = v->next) {
    for (int i = 0; i < v->nargs; i++) {
      const VirValue *a = v->args[i];
      if (!in_block(b, a, v) && !in_block(outer, a, NULL) && !in_block(&V->m->scalars, a, NULL))
        fail(V, v, "operand %%%d is not defined before its use", a->id);
    }
    check_domain(V, v);
    check_types(V, v);
    if (hoisted)
      for (int i = 0; i < v->ndom; i++)
        if (v->dom[i]->role == AX_PAGE || v->dom[i]->role == AX_TOKEN)
          fail(V, v, "row-block value varies along %s.%d", v->dom[i]->name, v->dom[i]->id);
  }
}

static void check_store(Verify *V, const VirKernel *k, const VirStore *s) {
  if (!in_block(&k->row, s->value, NULL) && !in_block(&k->each, s->value, NULL) &&
      !in_block(&V->m->scalars, s->value, NULL))
    fail(V, s->value, "store to %s uses a value outside its kernel", s->dst->name);
  for (int i = 0; i < s->value->ndom; i++)
    if (!vir_dom_has(s->axes, s->dst->rank, s->value->dom[i]))
      fail(V, s->value, "store to %s: value varies along %s.%d, which is not stored", s->dst->name,
           s->value->dom[i]->name, s->value->dom[i]->id);
}

int vir_verify(const VirModule *m, FILE *err) {
  Verify V = {m, err, 0, "scalars"};
  check_block(&V, &m->scalars, NULL, false);
  for (const VirKernel *k = m->kernels; k; k = k->next) {
    V.where = vir_kernel_kind_text(k->kind);
    /* const and row kernels have no grid: their single block may range over pages */
    check_block(&V, &k->row, NULL, k->kind != VK_CONST && k->kind != VK_ROW);
    check_block(&V, &k->each, &k->row, false);
    for (const VirStore *s = k->stores; s; s = s->next)
      check_store(&V, k, s);
  }
  return V.problems;
}
