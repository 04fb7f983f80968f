/* devmath_ptx.c - the device math library (compiler/cg_devmath.c) through LLVM 22's NVPTX
 * backend: the test module (every function) for nvptx64 sm_90 +ptx80, unoptimised and at
 * default<O3>. Checks that code generation succeeds (it aborts on an unselectable intrinsic),
 * that the PTX has no .extern .func, calls nothing but the library's own functions (O0) and uses no
 * .approx instruction; then assembles it with ptxas -arch=sm_90. Exit 77 (skip) when
 * /usr/local/cuda/bin/ptxas is absent, after the checks. Argument: a directory for the .ptx. */
#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dm_module.h"

static const char *PTXAS = "/usr/local/cuda/bin/ptxas";

/* The PTX text of the test module, optimised or not; NULL after a message on failure. */
static char *ptx(LLVMTargetMachineRef tm, bool optimise) {
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = dm_module(ctx);
  LLVMSetTarget(mod, "nvptx64-nvidia-cuda");
  LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(tm);
  char *dl = LLVMCopyStringRepOfTargetData(layout);
  LLVMSetDataLayout(mod, dl);
  LLVMDisposeMessage(dl);
  LLVMDisposeTargetData(layout);
  if (optimise) {
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMErrorRef err = LLVMRunPasses(mod, "default<O3>", tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    if (err) {
      char *m = LLVMGetErrorMessage(err);
      fprintf(stderr, "devmath_ptx: passes: %s\n", m);
      LLVMDisposeErrorMessage(m);
      return NULL;
    }
  }
  char *msg = NULL;
  LLVMMemoryBufferRef buf;
  if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &msg, &buf)) {
    fprintf(stderr, "devmath_ptx: emit: %s\n", msg);
    LLVMDisposeMessage(msg);
    return NULL;
  }
  size_t n = LLVMGetBufferSize(buf);
  char *text = malloc(n + 1);
  memcpy(text, LLVMGetBufferStart(buf), n);
  text[n] = 0;
  LLVMDisposeMemoryBuffer(buf);
  LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  return text;
}

/* The textual checks; prints each violation. */
static bool check(const char *text, const char *what) {
  bool ok = true;
  if (!strstr(text, ".version 8.0")) {
    fprintf(stderr, "devmath_ptx (%s): not PTX ISA 8.0\n", what);
    ok = false;
  }
  for (const char *line = text; *line;) {
    size_t len = strcspn(line, "\n");
    char l[512];
    snprintf(l, sizeof l, "%.*s", (int)(len < sizeof l ? len : sizeof l - 1), line);
    line += len + (line[len] == '\n');
    char *comment = strstr(l, "//");
    if (comment)
      *comment = 0;
    const char *op = l + strspn(l, " \t");
    if (strstr(l, ".extern") || strstr(l, ".approx") || (!strncmp(op, "call", 4) && !strstr(op, "vx_devmath_"))) {
      fprintf(stderr, "devmath_ptx (%s): %s\n", what, l);
      ok = false;
    }
  }
  return ok;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: devmath_ptx OUTDIR\n");
    return 2;
  }
  LLVMInitializeNVPTXTargetInfo();
  LLVMInitializeNVPTXTarget();
  LLVMInitializeNVPTXTargetMC();
  LLVMInitializeNVPTXAsmPrinter();
  LLVMTargetRef target;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple("nvptx64-nvidia-cuda", &target, &msg)) {
    fprintf(stderr, "devmath_ptx: %s\n", msg);
    return 1;
  }
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, "nvptx64-nvidia-cuda", "sm_90", "+ptx80",
                                                    LLVMCodeGenLevelAggressive, LLVMRelocDefault,
                                                    LLVMCodeModelDefault);
  bool ok = true, have_ptxas = access(PTXAS, X_OK) == 0;
  for (int opt = 0; opt < 2; opt++) {
    const char *what = opt ? "O3" : "O0";
    char *text = ptx(tm, opt);
    if (!text)
      return 1;
    ok &= check(text, what);
    char path[4096];
    snprintf(path, sizeof path, "%s/devmath_%s.ptx", argv[1], what);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
      fprintf(stderr, "devmath_ptx: cannot write %s\n", path);
      return 1;
    }
    free(text);
    if (have_ptxas) {
      char cmd[8300];
      snprintf(cmd, sizeof cmd, "'%s' -arch=sm_90 '%s' -o /dev/null", PTXAS, path);
      if (system(cmd)) {
        fprintf(stderr, "devmath_ptx: ptxas rejected %s\n", path);
        ok = false;
      }
    }
    printf("devmath_ptx: %s PTX %s\n", what, ok ? "ok" : "FAILED");
  }
  LLVMDisposeTargetMachine(tm);
  if (ok && !have_ptxas) {
    printf("devmath_ptx: %s absent, PTX not assembled (skip)\n", PTXAS);
    return 77;
  }
  return ok ? 0 : 1;
}
