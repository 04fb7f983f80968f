/* cg_devmath.h - vxc's device math library: f32 elementary functions emitted as LLVM IR,
 * for targets whose backend cannot select llvm.exp/log/pow/acos (LLVM 22's NVPTX aborts with
 * "Cannot select"). Each function is one internal, alwaysinline function per module, built only
 * from f32/i32 arithmetic and intrinsics every target selects (fma, fabs, rint, floor, sqrt,
 * copysign), so the same IR runs on x86-64 (the test oracle, tests/devmath) and on nvptx64.
 * Include only from code generators that already include LLVM (cg_llvm.h's users). */
#ifndef VX_CG_DEVMATH_H
#define VX_CG_DEVMATH_H

#include <llvm-c/Core.h>
#include <stdbool.h>

/* The library, one row per function: X(name, arity, max_ulp). max_ulp is the documented and
 * tested bound on the error against float64 libm (docs/devmath.md), over all of f32. */
#define CG_DEVMATH(X)                                                                            \
  X(exp, 1, 1.0)                                                                                 \
  X(exp2, 1, 1.0)                                                                                \
  X(log, 1, 0.75)                                                                                \
  X(log2, 1, 0.75)                                                                               \
  X(pow, 2, 1.0)                                                                                 \
  X(sqrt, 1, 0.5)                                                                                \
  X(rsqrt, 1, 0.75)                                                                              \
  X(sin, 1, 1.0)                                                                                 \
  X(cos, 1, 1.0)                                                                                 \
  X(tanh, 1, 1.0)                                                                                \
  X(sigmoid, 1, 1.0)                                                                             \
  X(acos, 1, 1.0)                                                                                \
  X(asin, 1, 1.0)                                                                                \
  X(atan, 1, 1.0)

typedef enum CgMathFn {
#define CG_DEVMATH_ENUM(name, arity, ulp) CG_MATH_##name,
  CG_DEVMATH(CG_DEVMATH_ENUM)
#undef CG_DEVMATH_ENUM
      CG_MATH_COUNT
} CgMathFn;

/* The row of fn: its name, its number of f32 arguments and its documented error bound. */
typedef struct CgMathInfo {
  const char *name;
  int arity;
  double max_ulp;
} CgMathInfo;
extern const CgMathInfo cg_devmath_info[CG_MATH_COUNT];

/* The function named name (the language's built-in names: "exp", "acos", ...), if any. */
bool cg_devmath_lookup(const char *name, CgMathFn *out);

/* Emits a call at b's position to fn on args (arity f32 values), defining fn in mod on first
 * use (as internal "vx_devmath_<name>"). Returns the f32 result. */
LLVMValueRef cg_devmath_call(LLVMModuleRef mod, LLVMBuilderRef b, CgMathFn fn, LLVMValueRef *args);

#endif
