/* cg_llvm.h - what cg_host.c hands cg_emit.c; the only header besides them that names LLVM
 * types. Include nowhere else. */
#ifndef VX_CG_LLVM_H
#define VX_CG_LLVM_H

#include <llvm-c/Core.h>
#include <llvm-c/Target.h>

#include "cg.h"

/* Builds the host module for m in ctx; NULL (with a diagnostic) when it cannot. */
LLVMModuleRef cg_host_module(LLVMContextRef ctx, const VirModule *m, Diags *diags, Span where);
/* Whether the generated code's view of vxk_ctx has runtime/vxk.h's offsets under layout;
 * false with the first difference in why. */
bool cg_host_check_abi(LLVMContextRef ctx, LLVMTargetDataRef layout, char *why, size_t len);

#endif
