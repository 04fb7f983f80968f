/* vir_verify.c - checks VIR's invariants: operands defined before use and visible from the
 * user's block, domains equal to what the operands imply, loads and stores matching their
 * tensors' ranks, types that fit their operations, and hoisted values free of page and
 * token axes. A violation is a compiler bug, never a user error: it is printed to err with
 * the value's number so that a pass that broke the module can be found. */
#include <stdarg.h>
#include <stdlib.h>

#include "vir.h"

/* Where each value was defined, by value id: 0 nowhere yet, SCALARS, or a block's own mark
 * (2 + 2k for kernel k's row block, 3 + 2k for its per-element block). Filled in block order,
 * so "defined before its use" is one lookup, not a walk of the block. */
enum { UNSEEN = 0, SCALARS = 1 };

typedef struct Verify {
  const VirModule *m;
  FILE *err;
  int problems;
  const char *where;
  int *defined_in;
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

static bool visible(const Verify *V, const VirValue *a, int own, int outer) {
  int d = a->id > 0 && a->id < V->m->next_value_id ? V->defined_in[a->id] : UNSEEN;
  return d != UNSEEN && (d == SCALARS || d == own || d == outer);
}

/* own: this block's mark; outer: the mark of the block it may also read (or UNSEEN). */
static void check_block(Verify *V, const VirBlock *b, int own, int outer, bool hoisted) {
  for (const VirValue *v = b->first; v; v = v->next) {
    for (int i = 0; i < v->nargs; i++) {
      const VirValue *a = v->args[i];
      if (!visible(V, a, own, outer))
        fail(V, v, "operand %%%d is not defined before its use", a->id);
    }
    if (v->id > 0 && v->id < V->m->next_value_id)
      V->defined_in[v->id] = own;
    check_domain(V, v);
    check_types(V, v);
    if (hoisted)
      for (int i = 0; i < v->ndom; i++)
        if (v->dom[i]->role == AX_PAGE || v->dom[i]->role == AX_TOKEN)
          fail(V, v, "row-block value varies along %s.%d", v->dom[i]->name, v->dom[i]->id);
  }
}

static void check_store(Verify *V, const VirStore *s, int row, int each) {
  if (!visible(V, s->value, row, each))
    fail(V, s->value, "store to %s uses a value outside its kernel", s->dst->name);
  for (int i = 0; i < s->value->ndom; i++)
    if (!vir_dom_has(s->axes, s->dst->rank, s->value->dom[i]))
      fail(V, s->value, "store to %s: value varies along %s.%d, which is not stored", s->dst->name,
           s->value->dom[i]->name, s->value->dom[i]->id);
}

int vir_verify(const VirModule *m, FILE *err) {
  Verify V = {m, err, 0, "scalars", calloc((size_t)m->next_value_id + 1, sizeof(int))};
  if (!V.defined_in) {
    fputs("vir: out of memory verifying\n", err);
    return 1;
  }
  check_block(&V, &m->scalars, SCALARS, UNSEEN, false);
  int mark = 2;
  for (const VirKernel *k = m->kernels; k; k = k->next, mark += 2) {
    V.where = vir_kernel_kind_text(k->kind);
    /* const and row kernels have no grid: their single block may range over pages */
    check_block(&V, &k->row, mark, UNSEEN, k->kind != VK_CONST && k->kind != VK_ROW);
    check_block(&V, &k->each, mark + 1, mark, false);
    for (const VirStore *s = k->stores; s; s = s->next)
      check_store(&V, s, mark, mark + 1);
  }
  free(V.defined_in);
  return V.problems;
}
