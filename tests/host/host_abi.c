/* host_abi.c - the kernel ABI check of the host code generator (cg_host_check_abi): the
 * generated code's view of vxk_ctx, built from runtime/vxk.h's field list, must have the C
 * compiler's offsets under the x86-64 layout vxc compiles for, and the check must catch a
 * layout where they differ (32-bit pointers move every pointer field after page_ids). */
#include <stdio.h>
#include <string.h>

#include "cg_llvm.h"

int main(void) {
  int failed = 0;
  LLVMContextRef ctx = LLVMContextCreate();
  const char *x86_64 = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-i128:128-f80:128-n8:16:32:64-S128";
  LLVMTargetDataRef host = LLVMCreateTargetData(x86_64), narrow = LLVMCreateTargetData("e-p:32:32");
  char why[160] = "";
  if (!cg_host_check_abi(ctx, host, why, sizeof why)) {
    printf("FAIL: vxk_ctx under the x86-64 layout: %s\n", why);
    failed++;
  }
  if (cg_host_check_abi(ctx, narrow, why, sizeof why) || !strstr(why, "vxk_ctx.k is at offset 60")) {
    printf("FAIL: 32-bit pointers not caught (%s)\n", why);
    failed++;
  }
  LLVMDisposeTargetData(host);
  LLVMDisposeTargetData(narrow);
  LLVMContextDispose(ctx);
  printf("%d failed\n", failed);
  return failed != 0;
}
