/* cg_emit.c - from the host LLVM module to a shared object: optimise with the new pass
 * manager, emit an object for generic x86-64 (artifacts must not depend on the compiling
 * machine's CPU), and link it with `ld -shared`. The runtime dlopens the result, so it never
 * links LLVM. Level 1 (the default) is a short function pipeline and the fast instruction
 * selector: a few milliseconds per policy, because a compile-and-measure loop runs vxc
 * hundreds of times a day; level 2 is LLVM's O2 (vectorised loops, 20-100 ms). */
#include "cg_llvm.h"

#include <errno.h>
#include <pthread.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *cg_host_target(void) { return "x86_64-linux"; }

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void fail(Diags *d, Span where, const char *what, const char *detail) {
  Diagnostic *g = diag_error(d, where, "E1003", "code generation failed: %s", what);
  if (detail && *detail)
    diag_hint(d, g, "%s", detail);
}

/* The passes each level runs: promote the allocas cg_host.c uses for loop counters and
 * accumulators to registers, fold, and hoist loop-invariant loads (level 1); everything
 * (level 2). */
static const char *pipeline(int level) {
  return level >= 2 ? "default<O2>"
                    : "function(sroa,early-cse,instcombine<no-verify-fixpoint>,simplifycfg,loop-mssa(licm))";
}

static void init_targets(void) {
  LLVMInitializeX86TargetInfo();
  LLVMInitializeX86Target();
  LLVMInitializeX86TargetMC();
  LLVMInitializeX86AsmPrinter();
  LLVMInitializeNVPTXTargetInfo();
  LLVMInitializeNVPTXTarget();
  LLVMInitializeNVPTXTargetMC();
  LLVMInitializeNVPTXAsmPrinter();
}

void cg_init_targets(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_targets);
}

static LLVMTargetMachineRef host_machine(Diags *d, Span where, int level) {
  cg_init_targets();
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple("x86_64-pc-linux-gnu", &target, &err)) {
    fail(d, where, "no x86-64 target in this LLVM", err);
    LLVMDisposeMessage(err);
    return NULL;
  }
  return LLVMCreateTargetMachine(target, "x86_64-pc-linux-gnu", "x86-64", "",
                                 level >= 2 ? LLVMCodeGenLevelDefault : LLVMCodeGenLevelNone,
                                 LLVMRelocPIC, LLVMCodeModelDefault);
}

/* Links obj (a file) into a shared object and reads it back. */
static bool link_shared(const char *obj, CgHostResult *out, Diags *d, Span where) {
  char so[64];
  snprintf(so, sizeof so, "%s.so", obj);
  /* libm and libc as needed libraries: the kernels call expf, logf, ... and malloc */
  char *argv[] = {"ld", "-shared", "--hash-style=gnu", "-o", so, (char *)obj, "-l:libm.so.6", "-l:libc.so.6", NULL};
  pid_t pid;
  int rc = posix_spawnp(&pid, "ld", NULL, NULL, argv, environ);
  int status = 0;
  if (rc != 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fail(d, where, "linking the host shared object with 'ld' failed",
         rc ? strerror(rc) : "is binutils installed (apt-get install binutils)?");
    unlink(so);
    return false;
  }
  FILE *f = fopen(so, "rb");
  bool ok = false;
  if (f && fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    rewind(f);
    out->so = n > 0 ? malloc((size_t)n) : NULL;
    ok = out->so && fread(out->so, 1, (size_t)n, f) == (size_t)n;
    out->so_len = ok ? (size_t)n : 0;
  }
  if (f)
    fclose(f);
  unlink(so);
  if (!ok)
    fail(d, where, "cannot read the linked shared object", strerror(errno));
  return ok;
}

bool cg_host_compile(const VirModule *m, Diags *diags, Span where, int level, bool llvm_only,
                     CgHostResult *out) {
  memset(out, 0, sizeof *out);
  double t0 = now_ms();
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = cg_host_module(ctx, m, diags, where);
  LLVMTargetMachineRef tm = mod ? host_machine(diags, where, level) : NULL;
  bool ok = false;
  if (tm) {
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(tm);
    char *dl = LLVMCopyStringRepOfTargetData(layout);
    LLVMSetDataLayout(mod, dl);
    LLVMDisposeMessage(dl);
    char why[160];
    bool abi_ok = cg_host_check_abi(ctx, layout, why, sizeof why);
    LLVMDisposeTargetData(layout);
    LLVMErrorRef e = NULL;
    if (abi_ok) {
      LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
      e = LLVMRunPasses(mod, pipeline(level), tm, opts);
      LLVMDisposePassBuilderOptions(opts);
    }
    if (!abi_ok) {
      fail(diags, where, "internal error: the kernel ABI differs from runtime/vxk.h", why);
    } else if (e) {
      char *msg = LLVMGetErrorMessage(e);
      fail(diags, where, "the LLVM optimiser failed", msg);
      LLVMDisposeErrorMessage(msg);
    } else if (llvm_only) {
      char *text = LLVMPrintModuleToString(mod);
      out->llvm_ir = strdup(text);
      LLVMDisposeMessage(text);
      ok = out->llvm_ir != NULL;
    } else {
      char *err = NULL;
      LLVMMemoryBufferRef buf;
      if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &err, &buf)) {
        fail(diags, where, "emitting the object failed", err);
        LLVMDisposeMessage(err);
      } else {
        char obj[] = "/tmp/vxc-host-XXXXXX";
        int fd = mkstemp(obj);
        size_t n = LLVMGetBufferSize(buf);
        bool written = fd >= 0 && write(fd, LLVMGetBufferStart(buf), n) == (ssize_t)n;
        if (fd >= 0)
          close(fd);
        LLVMDisposeMemoryBuffer(buf);
        out->ms_codegen = now_ms() - t0;
        double t1 = now_ms();
        if (!written)
          fail(diags, where, "cannot write a temporary object file", strerror(errno));
        else
          ok = link_shared(obj, out, diags, where);
        if (fd >= 0)
          unlink(obj);
        out->ms_link = now_ms() - t1;
      }
    }
    LLVMDisposeTargetMachine(tm);
  }
  if (mod)
    LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  return ok;
}

void cg_host_result_free(CgHostResult *r) {
  free(r->llvm_ir);
  free(r->so);
  memset(r, 0, sizeof *r);
}
