/* pass_hoist.c - hoists row-invariant work: a value whose computation touches no page or
 * token axis (its domain and every axis reduced on the way to it) is the same for every
 * page and token of a row, so it moves from the kernel's per-element block to the row block
 * and is computed once per row. Query codes, group-mean queries and the query's norm are
 * the typical cases. Operands always move before their users because blocks are in
 * definition order and an operand is invariant whenever its user is. */
#include "pass.h"

static bool touches_grid(const VirAxis *a) { return a->role == AX_PAGE || a->role == AX_TOKEN; }

static bool is_invariant(const VirValue *v) {
  for (int i = 0; i < v->ndom; i++)
    if (touches_grid(v->dom[i]))
      return false;
  for (int i = 0; i < v->naxes; i++)
    if (touches_grid(v->axes[i]))
      return false;
  for (int i = 0; i < v->nargs; i++)
    if (!v->args[i]->invariant)
      return false;
  return true;
}

static void append(VirBlock *b, VirValue *v) {
  v->next = NULL;
  if (b->last)
    b->last->next = v;
  else
    b->first = v;
  b->last = v;
}

void pass_hoist(VirModule *m) {
  for (VirKernel *k = m->kernels; k; k = k->next) {
    for (VirValue *v = k->row.first; v; v = v->next)
      v->invariant = true;
    VirBlock kept = {0};
    VirValue *v = k->each.first;
    while (v) {
      VirValue *next = v->next;
      v->invariant = is_invariant(v);
      append(v->invariant ? &k->row : &kept, v);
      v = next;
    }
    k->each = kept;
  }
}
