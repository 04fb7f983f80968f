/* dm_module.c - the test module of tests/devmath (see dm_module.h). */
#include "dm_module.h"

#include <stdio.h>

#include "cg_devmath.h"

LLVMModuleRef dm_module(LLVMContextRef ctx) {
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("devmath_test", ctx);
  LLVMTypeRef f32 = LLVMFloatTypeInContext(ctx);
  LLVMTypeRef params[2] = {f32, f32};
  LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
  for (int i = 0; i < CG_MATH_COUNT; i++) {
    char name[64];
    snprintf(name, sizeof name, "t_%s", cg_devmath_info[i].name);
    unsigned n = (unsigned)cg_devmath_info[i].arity;
    LLVMValueRef f = LLVMAddFunction(mod, name, LLVMFunctionType(f32, params, n, 0));
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, f, "entry"));
    LLVMValueRef args[2] = {LLVMGetParam(f, 0), n > 1 ? LLVMGetParam(f, 1) : NULL};
    LLVMValueRef r = cg_devmath_call(mod, b, (CgMathFn)i, args);
    if (i == CG_MATH_exp) /* a second call site, which must reuse the definition */
      r = LLVMBuildSelect(b, LLVMConstInt(LLVMInt1TypeInContext(ctx), 1, 0), r,
                          cg_devmath_call(mod, b, CG_MATH_exp, args), "");
    LLVMBuildRet(b, r);
  }
  LLVMDisposeBuilder(b);
  return mod;
}
