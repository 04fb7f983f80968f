/* mock_cuda.c - a stand-in CUDA driver for testing libvxrt's CUDA executor without a GPU.
 *
 * Built as tests/runtime/mockcuda/libcuda.so.1 and found by libvxrt's dlopen through
 * LD_LIBRARY_PATH (test_cuda_mock only). It exports every entry point of runtime/cuda_api.h:
 * "device memory" is host memory (so a test reads device addresses directly), copies and
 * memsets happen at once, the JIT linker turns PTX into a "cubin" that is the PTX text behind
 * a marker (text containing "frobnicate" fails with a log), functions are found by ".entry
 * NAME(" in the module text, and a kernel launch runs nothing: it is recorded (entry name,
 * grid, block, its by-value argument table) in mock_log, or into the graph a stream is
 * capturing, which cuGraphLaunch appends to mock_log. Allocations above mock_mem_limit fail
 * with CUDA_ERROR_OUT_OF_MEMORY. Test code only; not part of libvxrt. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef unsigned int res;
enum { OK = 0, E_INVALID_VALUE = 1, E_OOM = 2, E_INVALID_PTX = 218, E_NOT_FOUND = 500, E_CAPTURE = 900 };

/* What a test reads back (dlsym on the library). */
typedef struct mock_launch {
  char name[128];
  unsigned grid[2], block;
  uint64_t args[64];
} mock_launch;
enum { MOCK_LOG = 4096, MOCK_ARGS_BYTES = 8 * 28 };
mock_launch mock_log[MOCK_LOG];
int mock_nlog, mock_njit, mock_nmemset2d;
size_t mock_mem_limit = (size_t)1 << 34;

typedef struct fn_st { char name[128]; } fn_st;
typedef struct mod_st { char *text; fn_st *fns[64]; int nfns; } mod_st; /* functions belong to the module */
typedef struct graph_st { mock_launch *l; int n, cap; } graph_st;
typedef struct stream_st { int capturing; graph_st *g; } stream_st;
typedef struct event_st { double ms; } event_st;
typedef struct link_st { char *ptx; char *out; char *elog; size_t elog_size; } link_st;

static const char CUBIN[] = "MOCKCUBIN\n";

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

res cuInit(unsigned f) { (void)f; return OK; }
res cuDriverGetVersion(int *v) { *v = 13000; return OK; }
res cuDeviceGetCount(int *n) { *n = 1; return OK; }
res cuDeviceGet(int *d, int o) { *d = o; return o == 0 ? OK : 101; }
res cuDeviceGetName(char *name, int len, int d) {
  (void)d;
  strncpy(name, "Mock GPU", (size_t)len);
  return OK;
}
res cuDeviceGetAttribute(int *v, unsigned a, int d) {
  (void)d;
  *v = a == 75 ? 9 : a == 76 ? 0 : a == 16 ? 132 : 0;
  return OK;
}
res cuDeviceTotalMem_v2(size_t *b, int d) { (void)d; *b = (size_t)80 << 30; return OK; }
static int ctx_token;
res cuCtxCreate_v4(void **ctx, void *p, unsigned f, int d) { (void)p, (void)f, (void)d; *ctx = &ctx_token; return OK; }
res cuCtxDestroy_v2(void *ctx) { (void)ctx; return OK; }
res cuCtxPushCurrent_v2(void *ctx) { (void)ctx; return OK; }
res cuCtxPopCurrent_v2(void **ctx) { if (ctx) *ctx = &ctx_token; return OK; }
res cuCtxSynchronize(void) { return OK; }
res cuGetErrorName(res r, const char **s) {
  *s = r == E_OOM ? "CUDA_ERROR_OUT_OF_MEMORY" : r == E_INVALID_PTX ? "CUDA_ERROR_INVALID_PTX"
     : r == E_NOT_FOUND ? "CUDA_ERROR_NOT_FOUND" : r == E_CAPTURE ? "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"
     : "CUDA_ERROR_INVALID_VALUE";
  return OK;
}
res cuGetErrorString(res r, const char **s) { (void)r; *s = "mock driver error"; return OK; }

res cuMemAlloc_v2(uint64_t *p, size_t bytes) {
  if (bytes > mock_mem_limit) return E_OOM;
  void *x = calloc(1, bytes ? bytes : 1); /* zeroed: nothing runs to write the outputs */
  if (!x) return E_OOM;
  *p = (uint64_t)(uintptr_t)x;
  return OK;
}
res cuMemFree_v2(uint64_t p) { free((void *)(uintptr_t)p); return OK; }
res cuMemcpyHtoD_v2(uint64_t d, const void *s, size_t n) { memcpy((void *)(uintptr_t)d, s, n); return OK; }
res cuMemcpyDtoH_v2(void *d, uint64_t s, size_t n) { memcpy(d, (const void *)(uintptr_t)s, n); return OK; }
res cuMemsetD8_v2(uint64_t d, unsigned char v, size_t n) { memset((void *)(uintptr_t)d, v, n); return OK; }
res cuMemcpyHtoDAsync_v2(uint64_t d, const void *s, size_t n, stream_st *st) {
  if (st && st->capturing) return E_CAPTURE;
  memcpy((void *)(uintptr_t)d, s, n);
  return OK;
}
res cuMemcpyDtoHAsync_v2(void *d, uint64_t s, size_t n, stream_st *st) {
  (void)st;
  memcpy(d, (const void *)(uintptr_t)s, n);
  return OK;
}
res cuMemcpyDtoDAsync_v2(uint64_t d, uint64_t s, size_t n, stream_st *st) {
  (void)st;
  memmove((void *)(uintptr_t)d, (const void *)(uintptr_t)s, n);
  return OK;
}
res cuMemsetD32Async(uint64_t d, unsigned v, size_t n, stream_st *st) {
  (void)st;
  for (size_t i = 0; i < n; i++) ((uint32_t *)(uintptr_t)d)[i] = v;
  return OK;
}
res cuMemsetD2D32Async(uint64_t d, size_t pitch, unsigned v, size_t w, size_t h, stream_st *st) {
  (void)st;
  mock_nmemset2d++;
  for (size_t y = 0; y < h; y++)
    for (size_t x = 0; x < w; x++) ((uint32_t *)(uintptr_t)(d + y * pitch))[x] = v;
  return OK;
}
res cuMemHostAlloc(void **p, size_t n, unsigned f) {
  (void)f;
  if (n > mock_mem_limit) return E_OOM;
  *p = malloc(n ? n : 1);
  return *p ? OK : E_OOM;
}
res cuMemFreeHost(void *p) { free(p); return OK; }

/* Modules: the "cubin" is CUBIN + PTX text; plain PTX loads too. */
static res load_text(mod_st **m, const void *image) {
  const char *t = image;
  if (!strncmp(t, CUBIN, sizeof CUBIN - 1)) t += sizeof CUBIN - 1;
  if (!strstr(t, ".entry")) return E_INVALID_PTX;
  *m = calloc(1, sizeof **m);
  (*m)->text = strdup(t);
  return OK;
}
res cuModuleLoadData(mod_st **m, const void *image) { return load_text(m, image); }
res cuModuleLoadDataEx(mod_st **m, const void *image, unsigned n, unsigned *o, void **v) {
  (void)n, (void)o, (void)v;
  return load_text(m, image);
}
res cuModuleUnload(mod_st *m) {
  for (int i = 0; i < m->nfns; i++) free(m->fns[i]);
  free(m->text);
  free(m);
  return OK;
}
res cuModuleGetFunction(fn_st **f, mod_st *m, const char *name) {
  char want[160];
  snprintf(want, sizeof want, ".entry %s(", name);
  if (!strstr(m->text, want) || m->nfns == 64) return E_NOT_FOUND;
  *f = m->fns[m->nfns++] = calloc(1, sizeof **f);
  snprintf((*f)->name, sizeof (*f)->name, "%s", name);
  return OK;
}
res cuFuncSetAttribute(fn_st *f, unsigned a, int v) { (void)f, (void)a, (void)v; return OK; }

static void record(graph_st *g, const mock_launch *l) {
  if (g) {
    if (g->n == g->cap) {
      g->cap = g->cap ? 2 * g->cap : 16;
      g->l = realloc(g->l, sizeof *g->l * (size_t)g->cap);
    }
    g->l[g->n++] = *l;
  } else if (mock_nlog < MOCK_LOG) {
    mock_log[mock_nlog++] = *l;
  }
}

res cuLaunchKernel(fn_st *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shm, stream_st *s, void **params, void **extra) {
  (void)gz, (void)by, (void)bz, (void)shm, (void)extra;
  if (!f || !params || !gx || !gy || !bx) return E_INVALID_VALUE;
  mock_launch l;
  memset(&l, 0, sizeof l);
  snprintf(l.name, sizeof l.name, "%s", f->name);
  l.grid[0] = gx;
  l.grid[1] = gy;
  l.block = bx;
  memcpy(l.args, params[0], MOCK_ARGS_BYTES);
  record(s && s->capturing ? s->g : NULL, &l);
  return OK;
}

res cuStreamCreate(stream_st **s, unsigned f) { (void)f; *s = calloc(1, sizeof **s); return OK; }
res cuStreamDestroy_v2(stream_st *s) { free(s); return OK; }
res cuStreamSynchronize(stream_st *s) { return s && s->capturing ? E_CAPTURE : OK; }
res cuStreamIsCapturing(stream_st *s, unsigned *status) { *status = s && s->capturing; return OK; }
res cuStreamBeginCapture_v2(stream_st *s, unsigned mode) {
  (void)mode;
  if (!s || s->capturing) return E_INVALID_VALUE;
  s->capturing = 1;
  s->g = calloc(1, sizeof *s->g);
  return OK;
}
res cuStreamEndCapture(stream_st *s, graph_st **g) {
  if (!s || !s->capturing) return E_INVALID_VALUE;
  s->capturing = 0;
  *g = s->g;
  s->g = NULL;
  return OK;
}
res cuGraphInstantiateWithFlags(graph_st **e, graph_st *g, unsigned long long f) {
  (void)f;
  *e = calloc(1, sizeof **e);
  (*e)->n = (*e)->cap = g->n;
  (*e)->l = malloc(sizeof *g->l * (size_t)(g->n ? g->n : 1));
  if (g->n)
    memcpy((*e)->l, g->l, sizeof *g->l * (size_t)g->n);
  return OK;
}
res cuGraphLaunch(graph_st *e, stream_st *s) {
  if (s && s->capturing) return E_CAPTURE;
  for (int i = 0; i < e->n; i++) record(NULL, &e->l[i]);
  return OK;
}
static res graph_free(graph_st *g) {
  free(g->l);
  free(g);
  return OK;
}
res cuGraphExecDestroy(graph_st *e) { return graph_free(e); }
res cuGraphDestroy(graph_st *g) { return graph_free(g); }

res cuEventCreate(event_st **e, unsigned f) { (void)f; *e = calloc(1, sizeof **e); return OK; }
res cuEventRecord(event_st *e, stream_st *s) { (void)s; e->ms = now_ms(); return OK; }
res cuEventSynchronize(event_st *e) { (void)e; return OK; }
res cuEventElapsedTime_v2(float *ms, event_st *a, event_st *b) { *ms = (float)(b->ms - a->ms); return OK; }
res cuEventDestroy_v2(event_st *e) { free(e); return OK; }

/* The JIT linker: options 5/6 are the error log buffer and its size. */
res cuLinkCreate_v2(unsigned n, unsigned *opts, void **vals, link_st **l) {
  *l = calloc(1, sizeof **l);
  for (unsigned i = 0; i < n; i++) {
    if (opts[i] == 5) (*l)->elog = vals[i];
    if (opts[i] == 6) (*l)->elog_size = (size_t)(uintptr_t)vals[i];
  }
  return OK;
}
res cuLinkAddData_v2(link_st *l, unsigned type, void *data, size_t size, const char *name, unsigned n,
                     unsigned *o, void **v) {
  (void)name, (void)n, (void)o, (void)v;
  if (type != 1) return E_INVALID_VALUE;
  if (strstr(data, "frobnicate")) {
    if (l->elog && l->elog_size)
      snprintf(l->elog, l->elog_size, "ptxas application ptx input, line 6; error   : Not a name of any known "
                                      "instruction: 'frobnicate'");
    return E_INVALID_PTX;
  }
  l->ptx = malloc(size + 1);
  memcpy(l->ptx, data, size);
  l->ptx[size] = '\0';
  return OK;
}
res cuLinkComplete(link_st *l, void **cubin, size_t *size) {
  if (!l->ptx) return E_INVALID_VALUE;
  size_t n = strlen(l->ptx);
  l->out = malloc(sizeof CUBIN + n);
  memcpy(l->out, CUBIN, sizeof CUBIN - 1);
  memcpy(l->out + sizeof CUBIN - 1, l->ptx, n + 1);
  *cubin = l->out;
  *size = sizeof CUBIN + n;
  mock_njit++;
  return OK;
}
res cuLinkDestroy(link_st *l) {
  free(l->ptx);
  free(l->out);
  free(l);
  return OK;
}
