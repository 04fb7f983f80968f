/* dm_module.h - the module both devmath tests compile: one external wrapper t_<name> per
 * library function (float t_exp(float), float t_pow(float, float), ...). */
#ifndef VX_DM_MODULE_H
#define VX_DM_MODULE_H

#include <llvm-c/Core.h>

/* Builds the module in ctx; every wrapper calls cg_devmath_call, t_exp twice (the library
 * must still define vx_devmath_exp once). */
LLVMModuleRef dm_module(LLVMContextRef ctx);

#endif
