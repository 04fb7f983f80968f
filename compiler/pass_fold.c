/* pass_fold.c - constant folding: arithmetic, comparisons and math calls whose operands are
 * all literals become literals. Values are rewritten in place, so every use sees the
 * folded value without a substitution map. Only literals fold: params, D, G and P are known
 * only when a policy is loaded or specialised. */
#include <math.h>
#include <string.h>

#include "builtins.h"
#include "pass.h"

static bool fold_binary(Op op, double a, double b, bool ints, double *out) {
  switch (op) {
  case OP_ADD: *out = a + b; return true;
  case OP_SUB: *out = a - b; return true;
  case OP_MUL: *out = a * b; return true;
  case OP_DIV:
    if (b == 0)
      return false; /* left for the target's own rules at run time */
    *out = ints ? (double)((long long)a / (long long)b) : a / b;
    return true;
  case OP_MOD:
    if (!ints || b == 0)
      return false;
    *out = (double)((long long)a % (long long)b);
    return true;
  default:
    return false;
  }
}

/* A call of constants through the libm function builtins.h names for it; false when there
 * is none or the result is not finite (left for run time, where it is reported). */
static bool fold_call(const char *name, const VirValue *const *args, int nargs, double *out) {
  static const struct {
    double (*fold1)(double);
    double (*fold2)(double, double);
  } folds[BI_COUNT] = {
#define FOLD(name, cls, n, ops, intrinsic, fold1, fold2) [BI_##name] = {fold1, fold2},
      VX_BUILTINS(FOLD)
#undef FOLD
  };
  Builtin k = builtin_find(name);
  if (k == BI_COUNT)
    return false;
  if (nargs == 1 && folds[k].fold1)
    *out = folds[k].fold1(args[0]->num);
  else if (nargs == 2 && folds[k].fold2)
    *out = folds[k].fold2(args[0]->num, args[1]->num);
  else
    return false;
  return isfinite(*out);
}

static void fold_value(VirValue *v) {
  if (v->op != VI_BINARY && v->op != VI_UNARY && v->op != VI_CALL)
    return;
  for (int i = 0; i < v->nargs; i++)
    if (v->args[i]->op != VI_NUM)
      return;
  if (v->type != TY_F32 && v->type != TY_I32)
    return;
  double r;
  bool ok;
  if (v->op == VI_UNARY) {
    ok = v->opcode == OP_NEG;
    r = -v->args[0]->num;
  } else if (v->op == VI_BINARY) {
    ok = fold_binary(v->opcode, v->args[0]->num, v->args[1]->num, v->type == TY_I32, &r);
  } else {
    ok = fold_call(v->name, (const VirValue *const *)v->args, v->nargs, &r);
  }
  if (!ok)
    return;
  if (v->type == TY_F32)
    r = (double)(float)r; /* computation is f32: fold to what the target would compute */
  v->op = VI_NUM;
  v->num = r;
  v->is_int = v->type == TY_I32;
  v->nargs = 0;
}

static void fold_block(VirBlock *b) {
  for (VirValue *v = b->first; v; v = v->next)
    fold_value(v);
}

void pass_fold(VirModule *m) {
  fold_block(&m->scalars);
  for (VirKernel *k = m->kernels; k; k = k->next) {
    fold_block(&k->row);
    fold_block(&k->each);
  }
}
