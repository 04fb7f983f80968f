/* bench_compile.c - compile-time benchmark: compiles each stdlib policy (STDLIB_DIR/NAME.vx)
 * to host code in-process (read, front_compile, lower_policy + pass_run, cg_host_compile:
 * LLVM IR, O2, object, then `ld -shared`) several times and prints, per policy, the median
 * time of each stage and of the whole. The target (DESIGN.md section 8, docs/performance.md) is under 50 ms per policy;
 * it is enforced on the CPU time of a compile (the process and its ld), the wall-clock total
 * printed beside it (on a shared CI machine wall time also counts other tenants' work), unless
 * the build is instrumented (VX_SANITIZE) or VX_BENCH_NO_LIMIT is set. It also prints the
 * first compile of the process apart (it pays LLVM's one-time setup).
 * The "ptx" column is the GPU kernels for one shape (sm_90, D=128 G=4 P=16 bf16; "-" for
 * a policy the GPU path does not compile yet) and "+ptx" the whole compile with them, host
 * and GPU code generated at the same time as vxc does (compile.c): the GPU
 * target's aim is under 60 ms (docs/gpu.md); it is printed, not enforced.
 * Times only; it checks nothing about the code produced (tests/host does).
 *   usage: bench_compile STDLIB_DIR [RUNS]        (default 7 runs) */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "compile.h"

#define LIMIT_MS 50.0

enum { FRONT, MIDDLE, CODEGEN, LINK, TOTAL, CPU, PTX, WITH_PTX, NSTAGES, MAX_POLICIES = 64 };
static const char *const stage_names[NSTAGES] = {"front", "middle", "codegen+obj", "link", "total",
                                                 "cpu", "ptx", "+ptx"};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* CPU time of this process and of its finished children (ld): beside the wall-clock total it
 * shows whether a slow run was slow or only waited for a busy machine. */
static double cpu_ms(void) {
  struct rusage self, children;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  double us = 0;
  const struct rusage *r[2] = {&self, &children};
  for (int i = 0; i < 2; i++)
    us += (double)(r[i]->ru_utime.tv_sec + r[i]->ru_stime.tv_sec) * 1e6 +
          (double)(r[i]->ru_utime.tv_usec + r[i]->ru_stime.tv_usec);
  return us / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One compile of path; the stage times go to ms. False (with the reason printed) on error. */
static bool compile_once(const char *path, double ms[NSTAGES]) {
  double t0 = now_ms(), c0 = cpu_ms();
  char *text;
  int len;
  const char *error;
  if (!front_read_file(path, &text, &len, &error)) {
    fprintf(stderr, "bench_compile: cannot read %s: %s\n", path, error);
    return false;
  }
  Compilation c;
  int nerrors = front_compile(&c, path, text, len);
  free(text);
  double t1 = now_ms();
  bool ok = false;
  if (nerrors) {
    diag_render(&c.diags, stderr, DIAG_TEXT);
  } else {
    VirModule *m = compile_middle(&c);
    double t2 = now_ms();
    CompileOptions o;
    compile_options_init(&o);
    CompileCode code;
    if (!m)
      fprintf(stderr, "bench_compile: %s: invalid VIR\n", path);
    else if (!compile_code(&c, m, &o, &code))
      diag_render(&c.diags, stderr, DIAG_TEXT);
    else {
      double t3 = now_ms();
      ms[FRONT] = t1 - t0;
      ms[MIDDLE] = t2 - t1;
      ms[CODEGEN] = code.host.ms_codegen;
      ms[LINK] = code.host.ms_link;
      ms[TOTAL] = t3 - t0;
      ms[CPU] = cpu_ms() - c0;
      compile_code_free(&code);
      ok = true;
      /* host code and the GPU kernels for one shape, compiled together as vxc does; a
       * policy the GPU path refuses (E1006) gets -1 */
      static const char *const sm90[] = {"sm_90"};
      CgShape shape = {128, 4, 16, VXK_GPU_BF16};
      o.targets = sm90;
      o.ntargets = 1;
      o.shapes = &shape;
      o.nshapes = 1;
      Diags quiet = c.diags;
      bool gpu = compile_code(&c, m, &o, &code);
      ms[PTX] = gpu ? code.ptx[0].ms : -1;
      ms[WITH_PTX] = gpu ? ms[FRONT] + ms[MIDDLE] + code.ms : -1;
      compile_code_free(&code);
      c.diags = quiet;
    }
  }
  front_destroy(&c);
  return ok;
}

/* The stdlib's .vx files, sorted, so that the output reads the same every time. */
static int list_policies(const char *dir, char **names) {
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) && n < MAX_POLICIES;) {
    size_t len = strlen(e->d_name);
    if (len > 3 && !strcmp(e->d_name + len - 3, ".vx"))
      names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_name);
  return n;
}

int main(int argc, char **argv) {
  int runs = argc > 2 ? atoi(argv[2]) : 7;
  if (argc < 2 || argc > 3 || runs < 1) {
    fprintf(stderr, "usage: bench_compile STDLIB_DIR [RUNS>=1]\n");
    return 2;
  }
  char *names[MAX_POLICIES];
  int n = list_policies(argv[1], names);
  if (n <= 0) {
    fprintf(stderr, "bench_compile: no .vx files in '%s'\n", argv[1]);
    return 2;
  }
  printf("bench_compile: %d policies, median of %d runs each, ms\n", n, runs);
  printf("%-18s %8s %8s %12s %8s %8s %8s %8s %8s\n", "policy", stage_names[FRONT], stage_names[MIDDLE],
         stage_names[CODEGEN], stage_names[LINK], stage_names[TOTAL], stage_names[CPU], stage_names[PTX],
         stage_names[WITH_PTX]);
  double (*ms)[NSTAGES] = malloc(sizeof *ms * (size_t)runs);
  double *sorted = malloc(sizeof *sorted * (size_t)runs);
  double worst = 0, cold = 0;
  const char *worst_name = "";
  int rc = 0;
  for (int p = 0; p < n && !rc; p++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", argv[1], names[p]);
    for (int r = 0; r < runs && !rc; r++)
      if (!compile_once(path, ms[r]))
        rc = 1;
    if (rc)
      break;
    if (p == 0)
      cold = ms[0][TOTAL]; /* the process's first compile: LLVM's one-time setup */
    double median[NSTAGES];
    for (int s = 0; s < NSTAGES; s++) {
      for (int r = 0; r < runs; r++)
        sorted[r] = ms[r][s];
      qsort(sorted, (size_t)runs, sizeof *sorted, cmp_double);
      median[s] = sorted[runs / 2];
    }
    names[p][strlen(names[p]) - 3] = '\0';
    printf("%-18s %8.2f %8.2f %12.2f %8.2f %8.2f %8.2f", names[p], median[FRONT], median[MIDDLE],
           median[CODEGEN], median[LINK], median[TOTAL], median[CPU]);
    if (median[PTX] < 0)
      printf(" %8s %8s\n", "-", "-");
    else
      printf(" %8.2f %8.2f\n", median[PTX], median[WITH_PTX]);
    if (median[CPU] > worst) {
      worst = median[CPU];
      worst_name = names[p];
    }
  }
  if (!rc)
    printf("bench_compile: slowest %s %.2f ms of CPU (limit %.0f ms); first compile of the process "
           "(cold) %.2f ms\n",
           worst_name, worst, LIMIT_MS, cold);
  fflush(stdout);
#ifdef VX_BENCH_INSTRUMENTED
  printf("bench_compile: instrumented build (sanitizers): the %.0f ms limit is not enforced\n", LIMIT_MS);
#else
  if (!rc && getenv("VX_BENCH_NO_LIMIT"))
    printf("bench_compile: VX_BENCH_NO_LIMIT set: the %.0f ms limit is not enforced\n", LIMIT_MS);
  else if (!rc && worst > LIMIT_MS) {
    fprintf(stderr, "bench_compile: FAIL: %s takes %.2f ms of CPU, over the %.0f ms limit\n", worst_name,
            worst, LIMIT_MS);
    rc = 1;
  }
#endif
  for (int p = 0; p < n; p++)
    free(names[p]);
  free(sorted);
  free(ms);
  return rc;
}
