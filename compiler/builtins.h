/* builtins.h - the language's built-in functions, one table for every stage that needs
 * them: the checker (arity and typing class), constant folding (the libm function that
 * folds a call of constants) and code generation (how operands are typed, and the LLVM
 * intrinsic a float function lowers through, which each target's math hook maps). Each user
 * instantiates the columns it needs from VX_BUILTINS; nothing dispatches on a name but
 * builtin_find. Header only; no LLVM, no AST.
 *
 * X(name, class, nargs, operands, intrinsic, fold1, fold2):
 *   class     the checker's typing rule (FnClass)
 *   operands  what code generation converts the operands to (BuiltinOperands)
 *   intrinsic the LLVM intrinsic of a float function, or NULL (lowered by hand)
 *   fold1/2   the libm function folding one/two constant operands, or NULL */
#ifndef VX_BUILTINS_H
#define VX_BUILTINS_H

#include <string.h>

typedef enum FnClass {
  FN_FLOAT1, FN_FLOAT2, FN_MINMAX, FN_CLAMP, FN_SAME1, FN_POPCOUNT, FN_TO_F32, FN_TO_I32,
  FN_TO_U32, FN_GAUSSIAN, FN_LOAD,
} FnClass;

/* F32: operands become f32; SAME: the call's own type; OWN: kept as they are (the function
 * converts); NONE: a const generator, never code-generated. */
typedef enum BuiltinOperands { OPS_F32, OPS_SAME, OPS_OWN, OPS_NONE } BuiltinOperands;

#define VX_BUILTINS(X)                                                  \
  X(exp, FN_FLOAT1, 1, OPS_F32, "llvm.exp", exp, NULL)                  \
  X(log, FN_FLOAT1, 1, OPS_F32, "llvm.log", log, NULL)                  \
  X(sqrt, FN_FLOAT1, 1, OPS_F32, "llvm.sqrt", sqrt, NULL)               \
  X(rsqrt, FN_FLOAT1, 1, OPS_F32, NULL, NULL, NULL)                     \
  X(tanh, FN_FLOAT1, 1, OPS_F32, "llvm.tanh", tanh, NULL)               \
  X(sigmoid, FN_FLOAT1, 1, OPS_F32, NULL, NULL, NULL)                   \
  X(floor, FN_FLOAT1, 1, OPS_F32, "llvm.floor", floor, NULL)            \
  X(ceil, FN_FLOAT1, 1, OPS_F32, "llvm.ceil", ceil, NULL)               \
  X(round, FN_FLOAT1, 1, OPS_F32, "llvm.round", round, NULL)            \
  X(acos, FN_FLOAT1, 1, OPS_F32, "llvm.acos", acos, NULL)               \
  X(cos, FN_FLOAT1, 1, OPS_F32, "llvm.cos", cos, NULL)                  \
  X(sin, FN_FLOAT1, 1, OPS_F32, "llvm.sin", sin, NULL)                  \
  X(pow, FN_FLOAT2, 2, OPS_F32, "llvm.pow", NULL, pow)                  \
  X(max, FN_MINMAX, 2, OPS_SAME, NULL, NULL, fmax)                      \
  X(min, FN_MINMAX, 2, OPS_SAME, NULL, NULL, fmin)                      \
  X(clamp, FN_CLAMP, 3, OPS_SAME, NULL, NULL, NULL)                     \
  X(abs, FN_SAME1, 1, OPS_SAME, NULL, fabs, NULL)                       \
  X(sign, FN_SAME1, 1, OPS_SAME, NULL, NULL, NULL)                      \
  X(popcount, FN_POPCOUNT, 1, OPS_OWN, NULL, NULL, NULL)                \
  X(float, FN_TO_F32, 1, OPS_OWN, NULL, NULL, NULL)                     \
  X(f32, FN_TO_F32, 1, OPS_OWN, NULL, NULL, NULL)                       \
  X(int, FN_TO_I32, 1, OPS_OWN, NULL, NULL, NULL)                       \
  X(u32, FN_TO_U32, 1, OPS_OWN, NULL, NULL, NULL)                       \
  X(gaussian, FN_GAUSSIAN, 1, OPS_NONE, NULL, NULL, NULL)               \
  X(load, FN_LOAD, 1, OPS_NONE, NULL, NULL, NULL)

typedef enum Builtin {
#define VX_BUILTIN_ID(name, cls, nargs, ops, intrinsic, fold1, fold2) BI_##name,
  VX_BUILTINS(VX_BUILTIN_ID)
#undef VX_BUILTIN_ID
  BI_COUNT
} Builtin;

static const char *const builtin_names[BI_COUNT] = {
#define VX_BUILTIN_NAME(name, cls, nargs, ops, intrinsic, fold1, fold2) #name,
    VX_BUILTINS(VX_BUILTIN_NAME)
#undef VX_BUILTIN_NAME
};

/* The built-in called name, or BI_COUNT. */
static inline Builtin builtin_find(const char *name) {
  int i = 0;
  while (i < BI_COUNT && strcmp(builtin_names[i], name))
    i++;
  return (Builtin)i;
}

#endif
