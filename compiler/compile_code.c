/* compile_code.c - the one pipeline (compile.h), its half with LLVM: code generation for
 * the host and every GPU target at once, packaging, and the whole pipeline from source.
 * Host code runs on a thread of its own beside the GPU targets (whose kernel kinds have
 * threads of their own, cg_nvptx.c): LLVM's optimiser and instruction selection are the
 * time, and each target has its own LLVM context. Only host code generation writes to the
 * Diags while the threads run; GPU errors come back as text and are reported after the
 * join. */
#include "compile.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "package.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct HostJob {
  Compilation *c;
  const VirModule *m;
  const CompileOptions *o;
  CgHostResult *out;
  bool ok;
} HostJob;

static void *host_job(void *arg) {
  HostJob *j = arg;
  j->ok = cg_host_compile(j->m, &j->c->diags, j->c->policy->span, j->o->opt_level, j->o->llvm_ir_only, j->out);
  return NULL;
}

/* The shapes o asks for, or the defaults. */
static int shapes_of(const CompileOptions *o, CgShape *buf, const CgShape **shapes) {
  if (o->nshapes) {
    *shapes = o->shapes;
    return o->nshapes;
  }
  *shapes = buf;
  return cg_default_shapes(buf, COMPILE_MAX_SHAPES);
}

bool compile_code(Compilation *c, const VirModule *m, const CompileOptions *o, CompileCode *out) {
  memset(out, 0, sizeof *out);
  double t0 = now_ms();
  if (!o->llvm_ir_only && !pkg_fits(m, &c->diags, c->policy->span))
    return false;
  HostJob host = {c, m, o, &out->host, false};
  pthread_t thread;
  bool threaded = !pthread_create(&thread, NULL, host_job, &host);
  CgShape buf[COMPILE_MAX_SHAPES];
  const CgShape *shapes;
  int nshapes = shapes_of(o, buf, &shapes);
  CgError errors[COMPILE_MAX_TARGETS];
  bool ptx_ok[COMPILE_MAX_TARGETS];
  out->ntargets = o->ntargets < COMPILE_MAX_TARGETS ? o->ntargets : COMPILE_MAX_TARGETS;
  for (int i = 0; i < out->ntargets; i++)
    ptx_ok[i] = cg_nvptx_compile(m, o->targets[i], shapes, nshapes, &out->ptx[i], &errors[i]);
  if (threaded)
    pthread_join(thread, NULL);
  else
    host_job(&host);
  bool ok = host.ok;
  for (int i = 0; i < out->ntargets && ok; i++)
    if (!ptx_ok[i]) {
      Diagnostic *d = diag_error(&c->diags, c->policy->span, errors[i].code, "%s", errors[i].message);
      if (errors[i].hint[0])
        diag_hint(&c->diags, d, "%s", errors[i].hint);
      ok = false;
    }
  out->ms = now_ms() - t0;
  return ok;
}

void compile_code_free(CompileCode *code) {
  for (int i = 0; i < code->ntargets; i++)
    cg_ptx_result_free(&code->ptx[i]);
  cg_host_result_free(&code->host);
  memset(code, 0, sizeof *code);
}

bool compile_package(Compilation *c, const VirModule *m, const CompileCode *code, const CompileOptions *o,
                     const char *path, unsigned char **bytes, size_t *len) {
  CgShape buf[COMPILE_MAX_SHAPES];
  const CgShape *shapes;
  int nshapes = shapes_of(o, buf, &shapes);
  char names[COMPILE_MAX_SHAPES][32];
  const char *shape_names[COMPILE_MAX_SHAPES];
  for (int i = 0; i < nshapes; i++) {
    cg_shape_name(&shapes[i], names[i], sizeof names[i]);
    shape_names[i] = names[i];
  }
  PkgPtx sections[COMPILE_MAX_TARGETS];
  for (int i = 0; i < code->ntargets; i++)
    sections[i] = (PkgPtx){o->targets[i], &code->ptx[i], shape_names, nshapes};
  return pkg_emit(m, &c->src, &code->host, sections, code->ntargets, path, bytes, len, &c->diags,
                  c->policy->span);
}

bool compile_source(Compilation *c, const char *path, const char *text, int len, const CompileOptions *o,
                    unsigned char **bytes, size_t *nbytes) {
  if (front_compile(c, path, text, len))
    return false;
  VirModule *m = compile_middle(c);
  if (!m)
    return false;
  CompileCode code;
  bool ok = compile_code(c, m, o, &code) && compile_package(c, m, &code, o, NULL, bytes, nbytes);
  compile_code_free(&code);
  return ok;
}
