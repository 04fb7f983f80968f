/* bench.c - vx-serve bench: decode throughput of a policy against dense attention in one run,
 * end to end through the engine (docs/serving.md, "vx-serve bench"). B requests of N prompt
 * tokens (seeded random ids) are prefilled for real and then decoded S steps, greedy, first
 * with the policy and then with dense attention on every layer; for each: decode tokens/s,
 * step latency (p50, p99), prefill tokens/s, the process's CPU time per step, and the bytes a
 * step reads (the weights plus the KV cache each layer attends) with the TB/s they make. A
 * progress line per step on stderr, a table and one JSON line on stdout. Sits under
 * runtime/serve/ beside eval.c; uses only the engine and serve_setup.
 *
 * With --device cuda the whole decode step runs on the GPU instead (forward_cuda.c, docs/
 * serving.md "The GPU decode step"): weights bf16 on the device, the KV pool filled with
 * synthetic values on the device and summarised for each policy (vxrt_batch_prefill), one
 * CUDA graph per run replayed per step while the host prepares the next; several --policy
 * and dense in one run. --check N compares that step with the CPU forward instead. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward_cuda.h"
#include "serve.h"
#include "util.h"

enum { BENCH_MAX_BATCH = 256 };

enum { BENCH_MAX_POLICIES = 8, BENCH_WARMUP = 2 };

typedef struct bench_opts {
  long context, steps;
  const char *policies[BENCH_MAX_POLICIES]; /* every --policy, in order (the GPU runs them all) */
  int npolicies;
  int kv_given;             /* --kv-dtype was given (else bf16 on the GPU) */
  long check;               /* --check N: the GPU step against the CPU forward over N tokens */
  int auto_batch;           /* --batch auto: as many rows as --kv-memory holds */
  double kv_gib;            /* --kv-memory: the KV cache budget --batch auto fills */
  int quiet;
} bench_opts;

typedef struct bench_run {
  const char *name;
  double prefill_tps, decode_tps, p50_ms, p99_ms, cpu_ms, bytes, tbps;
  long attended;            /* KV tokens a sparse layer attends per row at the last step */
  long context;             /* tokens per row at the first timed step (GPU runs) */
  long allocs;              /* allocations during the timed steps (GPU: fwdgpu's counter) */
  double mem_delta;         /* device memory taken during the timed steps, bytes (GPU) */
} bench_run;

static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void usage(FILE *f) {
  fprintf(f, "usage: vx-serve bench --model PATH [--policy P] [options]\n"
             "  --context N       prompt tokens per request (default 1024, at most the context)\n"
             "  --steps S         decode steps timed (default 32)\n"
             "  --batch N|auto    requests decoded together (default 4); auto: as many as\n"
             "                    --kv-memory GiB of KV cache holds at N + S tokens each (<= 256)\n"
             "  --kv-memory G     the KV budget of --batch auto (default 4)\n"
             "  --quiet           no progress line\n"
             "  --device cuda     the whole decode step on the GPU (bf16 weights, cuBLAS, a CUDA\n"
             "                    graph per run; KV filled with synthetic values); --policy may\n"
             "                    be repeated; --batch auto fills the free device memory\n"
             "  --check N         with --device cuda: the GPU step's logits against the CPU\n"
             "                    forward over N tokens of two rows, and the kernels' self-test\n"
             "  and the options of generate: --param, --dense-layers, --page-size, --kv-dtype,\n"
             "  --chunk, --device, --seed, --vxc, --dense-policy\n"
             "Models: any loaded one, or synthetic:qwen3-1.7b / synthetic:llama-3.1-8b\n"
             "(:layers=N, :ctx=N to resize; docs/serving.md).\n");
}

/* Bytes of one decode step for B rows at `len` tokens: the matrices (f32, as vx-serve holds
 * them) and each layer's K and V: dense layers all `len` tokens, policy layers `attended`. */
static double step_bytes(const serve_ctx *x, int B, long len, long attended, int sparse) {
  const model_config *c = &x->m->cfg;
  double weights = (model_matrix_params(c) + (double)c->vocab * c->dim) * 4;
  double kv_token = (double)c->kv_heads * c->head_dim * 2 * (double)vxrt_dtype_size((vxrt_dtype)x->o.kv_dtype);
  double kv = 0;
  for (int l = 0; l < c->layers; l++)
    kv += (sparse && !x->dense_layer[l] ? (double)attended : (double)len) * kv_token;
  return weights + (double)B * kv;
}

/* The tokens a policy layer attends: its 'budget' param (tokens) when it has one, else all. */
static long attended_tokens(const serve_ctx *x, long len) {
  int i;
  vxrt_param_info pi;
  if (x->policy && vxrt_policy_find_param(x->policy, "budget", &i) == VXRT_OK &&
      vxrt_policy_get_param(x->policy, i, &pi) == VXRT_OK && !strcmp(pi.unit, "tokens") && pi.value < len)
    return (long)pi.value;
  return len;
}

static int run_one(serve_ctx *x, const bench_opts *bo, int B, const int *prompt, int sparse, bench_run *r,
                   char *err) {
  engine_request rq[BENCH_MAX_BATCH];
  memset(rq, 0, sizeof rq);
  for (int i = 0; i < B; i++) {
    rq[i].prompt = prompt + (size_t)i * (size_t)bo->context;
    rq[i].nprompt = (int)bo->context;
    /* the first engine step prefills, takes the first token from the prompt's logits and
     * decodes a second one: then `steps` timed steps */
    rq[i].max_new = (int)bo->steps + 2;
    rq[i].sparse = sparse;
    if (engine_submit(x->eng, &rq[i], err) != 0)
      return -1;
  }
  double *lat = calloc((size_t)bo->steps + 1, sizeof(double)), cpu = 0;
  int n = 0, left = 1, rc = 0;
  while (lat && left > 0) {
    double ts = serve_now(), cs = cpu_seconds();
    left = engine_step(x->eng, err);
    if (left < 0) {
      rc = -1;
      break;
    }
    if (n > 0 && n <= bo->steps) { /* step 0 prefills every request */
      lat[n - 1] = serve_now() - ts;
      cpu += cpu_seconds() - cs;
    }
    n++;
    if (!bo->quiet)
      fprintf(stderr, "\r%s: step %d/%ld", r->name, n - 1, bo->steps);
  }
  if (!bo->quiet)
    fputc('\n', stderr);
  const engine_stats *st = engine_get_stats(x->eng);
  int timed = n - 1 < bo->steps ? n - 1 : (int)bo->steps;
  if (!rc && timed > 0) {
    double total = 0;
    for (int i = 0; i < timed; i++)
      total += lat[i];
    qsort(lat, (size_t)timed, sizeof *lat, cmp_double);
    r->p50_ms = 1e3 * lat[timed / 2];
    r->p99_ms = 1e3 * lat[(int)ceil(0.99 * timed) - 1];
    r->decode_tps = B * timed / total;
    r->cpu_ms = 1e3 * cpu / timed;
    r->prefill_tps = st->prefill_s > 0 ? (double)st->prefill_tokens / st->prefill_s : 0;
    long len = bo->context + bo->steps;
    r->attended = sparse ? attended_tokens(x, len) : len;
    r->bytes = step_bytes(x, B, len, r->attended, sparse);
    r->tbps = r->bytes / (total / timed) / 1e12;
  }
  for (int i = 0; i < B; i++)
    engine_request_release(&rq[i]);
  free(lat);
  return rc;
}

static int parse_bench_option(bench_opts *bo, serve_opts *o, int argc, char **argv, int *i) {
  const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
  char *end = NULL;
  if (!strcmp(a, "--quiet")) {
    bo->quiet = 1;
    return 1;
  }
  if (!v)
    return 0;
  if (!strcmp(a, "--policy")) {
    if (bo->npolicies == BENCH_MAX_POLICIES)
      return 0;
    bo->policies[bo->npolicies++] = v;
    o->policy = bo->policies[0];
    ++*i;
    return 1;
  }
  if (!strcmp(a, "--kv-dtype"))
    bo->kv_given = 1; /* and parsed by serve_common_option */
  if (!strcmp(a, "--check") && (bo->check = strtol(v, &end, 10)) >= 2 && !*end) {
    ++*i;
    return 1;
  }
  if (!strcmp(a, "--context") && (bo->context = strtol(v, &end, 10)) >= 2 && !*end) {
  } else if (!strcmp(a, "--steps") && (bo->steps = strtol(v, &end, 10)) >= 1 && !*end) {
  } else if (!strcmp(a, "--kv-memory") && (bo->kv_gib = strtod(v, &end)) > 0 && !*end) {
  } else if (!strcmp(a, "--batch") && !strcmp(v, "auto")) {
    bo->auto_batch = 1;
  } else if (!strcmp(a, "--batch") && (o->batch = (int)strtol(v, &end, 10)) >= 1 && o->batch <= BENCH_MAX_BATCH &&
             !*end) {
  } else {
    return 0;
  }
  ++*i;
  return 1;
}

/* --batch auto: the rows --kv-memory holds at context + steps tokens each. */
static int auto_batch(const serve_ctx *x, const bench_opts *bo) {
  const model_config *c = &x->m->cfg;
  double row = (double)(bo->context + bo->steps) * c->layers * c->kv_heads * c->head_dim * 2 *
               (double)vxrt_dtype_size((vxrt_dtype)x->o.kv_dtype);
  double b = floor(bo->kv_gib * 1073741824.0 / row);
  return b < 1 ? 1 : b > BENCH_MAX_BATCH ? BENCH_MAX_BATCH : (int)b;
}

static void print_run(const bench_run *r) {
  printf("%-10s decode %9.1f tokens/s  step p50 %8.3f ms p99 %8.3f ms  cpu %8.3f ms/step  prefill %9.1f tokens/s"
         "  %8.3f GB/step %6.3f TB/s\n",
         r->name, r->decode_tps, r->p50_ms, r->p99_ms, r->cpu_ms, r->prefill_tps, r->bytes / 1e9, r->tbps);
}

static cJSON *run_json(const bench_run *r) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "attention", r->name);
  cJSON_AddNumberToObject(j, "decode_tokens_per_s", r->decode_tps);
  cJSON_AddNumberToObject(j, "step_p50_ms", r->p50_ms);
  cJSON_AddNumberToObject(j, "step_p99_ms", r->p99_ms);
  cJSON_AddNumberToObject(j, "cpu_ms_per_step", r->cpu_ms);
  cJSON_AddNumberToObject(j, "prefill_tokens_per_s", r->prefill_tps);
  cJSON_AddNumberToObject(j, "bytes_per_step", r->bytes);
  cJSON_AddNumberToObject(j, "tbps", r->tbps);
  cJSON_AddNumberToObject(j, "kv_tokens_per_sparse_layer", (double)r->attended);
  return j;
}

/* ------------------------------------------------------------------ the GPU decode step */

/* One GPU bench's device objects (torn down by gpu_teardown). */
typedef struct gpu_bench {
  serve_ctx *x;
  const bench_opts *bo;
  fwdgpu *g;
  vxrt_cache *cache;
  vxrt_state *dense_st;
  vxrt_batch *dense_b;
  vxrt_policy *pol[BENCH_MAX_POLICIES];
  vxrt_event *ev[2];
  int rows[BENCH_MAX_BATCH];
  int B, G;
} gpu_bench;

static int vxfail(vxrt_status st, const char *what) {
  if (st)
    fprintf(stderr, "vx-serve bench: %s: %s: %s\n", what, vxrt_status_name(st), vxrt_last_error());
  return st ? -1 : 0;
}

/* An extent of a field's axis within one (page, KV head): a number, or D, G, P; the page and
 * token axes themselves (npages, L) count 1. */
static double axis_extent(const char *a, int D, int G, int P) {
  char *end;
  double v = strtod(a, &end);
  if (end != a && !*end)
    return v;
  return !strcmp(a, "D") ? D : !strcmp(a, "G") ? G : !strcmp(a, "P") ? P : 1;
}

/* Bytes of a policy's page and token fields per (page, KV head) of one layer. */
static double field_bytes_per_page(const vxrt_policy *pol, int D, int G, int P) {
  vxrt_policy_info pi;
  double total = 0;
  if (!pol || vxrt_policy_get_info(pol, &pi))
    return 0;
  for (int i = 0; i < pi.nfields; i++) {
    vxrt_field_info f;
    if (vxrt_policy_get_field(pol, i, &f) || (f.stage != VXRT_STAGE_PAGE && f.stage != VXRT_STAGE_TOKEN))
      continue;
    double n = f.stage == VXRT_STAGE_TOKEN ? P : 1,
           es = !strcmp(f.dtype, "f32") || !strcmp(f.dtype, "u32") ? 4 : !strcmp(f.dtype, "f16") || !strcmp(f.dtype, "bf16") ? 2 : 1;
    for (int a = 0; a < f.naxes; a++)
      n *= axis_extent(f.axes[a], D, G, P);
    total += n * es;
  }
  return total;
}

static void gpu_teardown(gpu_bench *gb) {
  for (int i = 0; i < 2; i++)
    vxrt_event_free(gb->ev[i]);
  vxrt_batch_free(gb->dense_b);
  vxrt_state_free(gb->dense_st);
  vxrt_cache_free(gb->cache);
  fwdgpu_destroy(gb->g);
  for (int i = 0; i < BENCH_MAX_POLICIES; i++)
    vxrt_policy_free(gb->pol[i]);
}

/* The rows' tokens and positions for the first step of a run: seeded ids, the rows' length. */
static int gpu_start_rows(gpu_bench *gb, uint64_t seed, char *err) {
  int32_t tok[BENCH_MAX_BATCH], pos[BENCH_MAX_BATCH];
  int64_t len;
  if (vxfail(vxrt_row_length(gb->cache, gb->rows[0], 0, &len), "row length"))
    return -1;
  uint64_t s = seed;
  for (int i = 0; i < gb->B; i++) {
    tok[i] = (int32_t)(serve_rand64(&s) % (uint64_t)gb->x->m->cfg.vocab);
    pos[i] = (int32_t)len;
  }
  return fwdgpu_set_rows(gb->g, tok, pos, gb->B, err);
}

/* One step queued through the batch: direct launches, or the graph's replay. */
static int gpu_step(gpu_bench *gb, vxrt_batch *b, vxrt_graph *graph, vxrt_event *mark, char *err) {
  vxrt_stream *s = fwdgpu_stream(gb->g);
  if (vxfail(vxrt_batch_prepare(b, 1, s), "vxrt_batch_prepare"))
    return -1;
  if (graph ? vxfail(vxrt_graph_launch(graph, s), "vxrt_graph_launch") : fwdgpu_step(gb->g, b, gb->B, err))
    return -1;
  if (mark && vxfail(vxrt_event_record(mark, s), "vxrt_event_record"))
    return -1;
  return vxfail(vxrt_batch_commit(b), "vxrt_batch_commit") || fwdgpu_pace(gb->g, err) ? -1 : 0;
}

/* Warm-up steps, the capture, then `steps` timed replays of the graph. */
static int gpu_run(gpu_bench *gb, vxrt_batch *b, const vxrt_policy *pol, bench_run *r, char *err) {
  const bench_opts *bo = gb->bo;
  vxrt_stream *s = fwdgpu_stream(gb->g);
  vxrt_graph *graph = NULL;
  double *lat = calloc((size_t)bo->steps, sizeof(double));
  vxrt_event **ev = calloc((size_t)bo->steps + 1, sizeof *ev);
  int rc = -1;
  int64_t len0 = 0;
  if (!lat || !ev || gpu_start_rows(gb, gb->x->o.seed, err))
    goto out;
  for (long i = 0; i <= bo->steps; i++)
    if (vxfail(vxrt_event_create(gb->x->dev, &ev[i]), "vxrt_event_create"))
      goto out;
  for (int w = 0; w < BENCH_WARMUP; w++) /* also lets cuBLAS settle before the capture */
    if (gpu_step(gb, b, NULL, NULL, err))
      goto out;
  /* the capture: one step's launches of every layer, replayed from here on */
  if (vxfail(vxrt_batch_prepare(b, 1, s), "vxrt_batch_prepare") || vxfail(vxrt_graph_begin(s), "vxrt_graph_begin"))
    goto out;
  int cap = fwdgpu_step(gb->g, b, gb->B, err);
  vxrt_status ge = vxrt_graph_end(s, &graph);
  if (cap || vxfail(ge, "vxrt_graph_end") || vxfail(vxrt_graph_launch(graph, s), "vxrt_graph_launch") ||
      vxfail(vxrt_batch_commit(b), "vxrt_batch_commit") || vxfail(vxrt_stream_sync(s), "the warm-up steps"))
    goto out;
  vxrt_row_length(gb->cache, gb->rows[0], 0, &len0);
  size_t free0, free1, total;
  long allocs0 = fwdgpu_allocations(gb->g);
  if (fwdgpu_mem_info(gb->g, &free0, &total, err) || vxfail(vxrt_event_record(ev[0], s), "vxrt_event_record"))
    goto out;
  double t0 = serve_now(), c0 = cpu_seconds();
  for (long i = 0; i < bo->steps; i++) {
    if (gpu_step(gb, b, graph, ev[i + 1], err))
      goto out;
    if (!bo->quiet && (i + 1) % 8 == 0)
      fprintf(stderr, "\r%s: step %ld/%ld", r->name, i + 1, bo->steps);
  }
  if (vxfail(vxrt_stream_sync(s), "the timed steps"))
    goto out;
  double wall = serve_now() - t0, cpu = cpu_seconds() - c0;
  if (!bo->quiet)
    fputc('\n', stderr);
  if (fwdgpu_mem_info(gb->g, &free1, &total, err))
    goto out;
  for (long i = 0; i < bo->steps; i++) {
    float ms = 0;
    if (vxfail(vxrt_event_elapsed(ev[i], ev[i + 1], &ms), "vxrt_event_elapsed"))
      goto out;
    lat[i] = ms / 1e3;
  }
  qsort(lat, (size_t)bo->steps, sizeof *lat, cmp_double);
  const model_config *c = &gb->x->m->cfg;
  long len = (long)len0 + bo->steps;
  r->context = (long)len0;
  r->p50_ms = 1e3 * lat[bo->steps / 2];
  r->p99_ms = 1e3 * lat[(int)ceil(0.99 * (double)bo->steps) - 1];
  r->decode_tps = gb->B * (double)bo->steps / wall;
  r->cpu_ms = 1e3 * cpu / (double)bo->steps;
  r->allocs = fwdgpu_allocations(gb->g) - allocs0;
  r->mem_delta = (double)free0 - (double)free1;
  /* bytes: the weights (bf16) once, then per row and layer the K and V attended (the
   * budget on the policy's layers) and, on those layers, the policy's fields of every page */
  long att = len;
  int idx;
  vxrt_param_info pi;
  if (pol && vxrt_policy_find_param(pol, "budget", &idx) == VXRT_OK && vxrt_policy_get_param(pol, idx, &pi) == VXRT_OK &&
      !strcmp(pi.unit, "tokens") && pi.value < len)
    att = (long)pi.value;
  r->attended = att;
  double kv_token = (double)c->kv_heads * c->head_dim * 2 * (double)vxrt_dtype_size((vxrt_dtype)gb->x->o.kv_dtype);
  double fields = field_bytes_per_page(pol, c->head_dim, gb->G, gb->x->o.page_size) * c->kv_heads *
                  ceil((double)len / gb->x->o.page_size);
  double kv = 0;
  for (int l = 0; l < c->layers; l++)
    kv += pol && !gb->x->dense_layer[l] ? (double)att * kv_token + fields : (double)len * kv_token;
  r->bytes = fwdgpu_weight_bytes(gb->g) + gb->B * kv;
  r->tbps = r->bytes / (wall / (double)bo->steps) / 1e12;
  rc = 0;
out:
  vxrt_graph_free(graph);
  for (long i = 0; ev && i <= bo->steps; i++)
    vxrt_event_free(ev[i]);
  free(ev);
  free(lat);
  return rc;
}

/* Rows of `context` tokens: one zero token appended to every layer and prefilled, the rest
 * grown without writing (vxrt_batch_prepare + commit), then every pool filled with seeded
 * values on the device. */
static int gpu_make_rows(gpu_bench *gb, char *err) {
  const model_config *c = &gb->x->m->cfg;
  float *zero = calloc((size_t)c->kv_heads * c->head_dim, sizeof(float));
  if (!zero)
    return -1;
  int ok = 1;
  for (int i = 0; ok && i < gb->B; i++) {
    ok = !vxfail(vxrt_row_open(gb->cache, &gb->rows[i]), "vxrt_row_open");
    for (int l = 0; ok && l < c->layers; l++)
      ok = !vxfail(vxrt_append(gb->cache, gb->rows[i], l, zero, zero, 1), "vxrt_append");
  }
  free(zero);
  vxrt_stream *s = fwdgpu_stream(gb->g);
  if (!ok || vxfail(vxrt_batch_set_rows(gb->dense_b, gb->rows, gb->B), "vxrt_batch_set_rows") ||
      vxfail(vxrt_batch_prefill(gb->dense_b, s), "vxrt_batch_prefill") ||
      vxfail(vxrt_batch_prepare(gb->dense_b, (int)gb->bo->context - 1, s), "growing the rows") ||
      vxfail(vxrt_batch_commit(gb->dense_b), "vxrt_batch_commit"))
    return -1;
  vxrt_cache_info ci;
  if (vxfail(vxrt_cache_get_info(gb->cache, &ci), "vxrt_cache_get_info"))
    return -1;
  for (int l = 0; l < c->layers; l++) {
    vxrt_kv_pool pool;
    if (vxfail(vxrt_cache_get_pool(gb->cache, l, &pool), "vxrt_cache_get_pool"))
      return -1;
    size_t n = ci.pool_bytes / ci.elem_bytes;
    vxrt_dtype t = (vxrt_dtype)gb->x->o.kv_dtype;
    if (fwdgpu_fill(gb->g, (uint64_t)(uintptr_t)pool.k, n, t, 1.0f, gb->x->o.seed * 1000 + 2 * (uint64_t)l, err) ||
        fwdgpu_fill(gb->g, (uint64_t)(uintptr_t)pool.v, n, t, 1.0f, gb->x->o.seed * 1000 + 2 * (uint64_t)l + 1, err))
      return -1;
  }
  return vxfail(vxrt_stream_sync(s), "filling the KV pools");
}

static void print_gpu_run(const bench_run *r) {
  printf("%-12s decode %9.1f tokens/s  step p50 %8.3f ms p99 %8.3f ms  cpu %7.3f ms/step (%.1f%%)  %8.3f GB/step "
         "%6.3f TB/s  kv tokens/layer %ld  allocations %ld\n",
         r->name, r->decode_tps, r->p50_ms, r->p99_ms, r->cpu_ms, 100 * r->cpu_ms / r->p50_ms, r->bytes / 1e9, r->tbps,
         r->attended, r->allocs);
}

/* The loaded policies' states, one at a time beside the dense one, then dense. */
static int gpu_bench_runs(gpu_bench *gb, bench_run *runs, int *nruns, char *err) {
  serve_ctx *x = gb->x;
  const bench_opts *bo = gb->bo;
  vxrt_stream *s = fwdgpu_stream(gb->g);
  *nruns = 0;
  for (int p = 0; p <= bo->npolicies; p++) {
    bench_run *r = &runs[(*nruns)++];
    vxrt_state *st = NULL;
    vxrt_batch *b = gb->dense_b;
    const vxrt_policy *pol = p < bo->npolicies ? gb->pol[p] : NULL;
    vxrt_policy_info pi;
    r->name = "dense";
    if (pol && !vxrt_policy_get_info(pol, &pi))
      r->name = pi.name;
    if (!bo->quiet)
      fprintf(stderr, "vx-serve bench: %s: summarising the rows, capturing the step\n", r->name);
    int rc = -1;
    if (pol && (vxfail(vxrt_state_create(gb->pol[p], gb->cache, gb->G, &st), "vxrt_state_create") ||
                vxfail(vxrt_state_set_dense(st, gb->dense_st, x->dense_layer, x->m->cfg.layers), "vxrt_state_set_dense") ||
                vxfail(vxrt_batch_create(st, gb->B, &b), "vxrt_batch_create") ||
                vxfail(vxrt_batch_set_rows(b, gb->rows, gb->B), "vxrt_batch_set_rows") ||
                vxfail(vxrt_batch_prefill(b, s), "vxrt_batch_prefill")))
      goto next;
    rc = gpu_run(gb, b, pol, r, err);
  next:
    if (pol) {
      vxrt_batch_free(b == gb->dense_b ? NULL : b);
      vxrt_state_set_dense(st, NULL, NULL, 0);
      vxrt_state_free(st);
    }
    if (rc)
      return -1;
  }
  return 0;
}

/* --check N: two rows of N + 1 tokens (row 0 the CPU's greedy tokens when the model is small,
 * else seeded ids; row 1 seeded ids), the CPU forward's logits at every position (forward.c,
 * f32) against the GPU step's, teacher-forced: direct launches for the first half, a
 * captured graph replayed for the rest. */
static int cpu_forward_all(const model *m, const int *tok, int T, float *logits, vxrt_cache *cache, int row) {
  const model_config *c = &m->cfg;
  forward_scratch s;
  float *x = malloc(sizeof(float) * (size_t)T * c->dim);
  int *pos = malloc(sizeof(int) * (size_t)T), rc = 0;
  if (!x || !pos || forward_scratch_init(&s, c, T, T)) {
    free(x);
    free(pos);
    return -1;
  }
  for (int i = 0; i < T; i++)
    pos[i] = i;
  forward_embed(m, tok, T, x);
  for (int l = 0; l < c->layers && !rc; l++) {
    forward_qkv(m, l, x, pos, T, &s);
    if (cache)
      rc = vxfail(vxrt_append(cache, row, l, s.k, s.v, T), "vxrt_append");
    forward_prefill_attention(m, s.k, s.v, 0, T, &s);
    forward_out_mlp(m, l, x, T, &s);
  }
  if (logits)
    forward_logits(m, x, T, logits, &s);
  forward_scratch_free(&s);
  free(x);
  free(pos);
  return rc;
}

static int argmax_row(const float *l, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (l[i] > l[best])
      best = i;
  return best;
}

static int gpu_check(gpu_bench *gb, char *err) {
  const model *m = gb->x->m;
  const model_config *c = &m->cfg;
  int N = (int)gb->bo->check, V = c->vocab, R = 2;
  int *seq = malloc(sizeof(int) * (size_t)R * (N + 1));
  float *ref = malloc(sizeof(float) * (size_t)R * (N + 1) * V), *got = malloc(sizeof(float) * (size_t)R * V);
  int rc = -1;
  if (!seq || !ref || !got)
    goto out;
  uint64_t s = gb->x->o.seed;
  int greedy = model_matrix_params(c) < 2e7;
  for (int r = 0; r < R; r++) {
    seq[r * (N + 1)] = c->bos;
    for (int t = 1; t <= N; t++)
      seq[r * (N + 1) + t] = (int)(serve_rand64(&s) % (uint64_t)V);
  }
  for (int t = 1; greedy && t <= N; t++) { /* row 0: the CPU's greedy tokens, recomputed */
    if (cpu_forward_all(m, seq, t, ref, NULL, 0))
      goto out;
    seq[t] = argmax_row(ref + (size_t)(t - 1) * V, V);
  }
  for (int r = 0; r < R; r++)
    if (cpu_forward_all(m, seq + r * (N + 1), N + 1, ref + (size_t)r * (N + 1) * V, NULL, 0) ||
        vxfail(vxrt_row_open(gb->cache, &gb->rows[r]), "vxrt_row_open") ||
        cpu_forward_all(m, seq + r * (N + 1), 1, NULL, gb->cache, gb->rows[r]))
      goto out;
  vxrt_stream *st = fwdgpu_stream(gb->g);
  vxrt_state *pst = NULL;
  vxrt_batch *b = gb->dense_b;
  if (gb->bo->npolicies &&
      (vxfail(vxrt_state_create(gb->pol[0], gb->cache, gb->G, &pst), "vxrt_state_create") ||
       vxfail(vxrt_state_set_dense(pst, gb->dense_st, gb->x->dense_layer, c->layers), "vxrt_state_set_dense") ||
       vxfail(vxrt_batch_create(pst, R, &b), "vxrt_batch_create")))
    goto out;
  vxrt_graph *graph = NULL;
  double worst = 0, sum = 0;
  int agree[2] = {0, 0}, tokens_ok = 1;
  gb->B = R;
  if (vxfail(vxrt_batch_set_rows(b, gb->rows, R), "vxrt_batch_set_rows") || vxfail(vxrt_batch_prefill(b, st), "vxrt_batch_prefill"))
    goto done;
  for (int t = 1; t <= N; t++) {
    int32_t tok[2] = {seq[t], seq[N + 1 + t]}, pos[2] = {t, t};
    if (fwdgpu_set_rows(gb->g, tok, pos, R, err))
      goto done;
    if (t == N / 2 + 1) { /* the capture, then replays */
      if (vxfail(vxrt_batch_prepare(b, 1, st), "vxrt_batch_prepare") || vxfail(vxrt_graph_begin(st), "vxrt_graph_begin"))
        goto done;
      int cr = fwdgpu_step(gb->g, b, R, err);
      vxrt_status ge = vxrt_graph_end(st, &graph);
      if (cr || vxfail(ge, "vxrt_graph_end") || vxfail(vxrt_graph_launch(graph, st), "vxrt_graph_launch") ||
          vxfail(vxrt_batch_commit(b), "vxrt_batch_commit"))
        goto done;
    } else if (gpu_step(gb, b, graph, NULL, err)) {
      goto done;
    }
    int32_t gt[2];
    if (fwdgpu_read_logits(gb->g, got, R, err) || fwdgpu_read_tokens(gb->g, gt, R, err))
      goto done;
    for (int r = 0; r < R; r++) {
      const float *want = ref + ((size_t)r * (N + 1) + (size_t)t) * V, *have = got + (size_t)r * V;
      double num = 0, den = 0;
      for (int i = 0; i < V; i++) {
        num += ((double)have[i] - want[i]) * ((double)have[i] - want[i]);
        den += (double)want[i] * want[i];
      }
      double e = sqrt(num / (den > 0 ? den : 1));
      worst = e > worst ? e : worst;
      sum += e;
      agree[r] += argmax_row(have, V) == argmax_row(want, V);
      tokens_ok &= gt[r] == argmax_row(have, V);
    }
  }
  printf("check: %s, %d layers, %s KV, policy %s: %d steps x 2 rows (row 0 %s), steps 1-%d direct, %d-%d a replayed "
         "graph\n",
         gb->x->o.model, c->layers, vxrt_dtype_name((vxrt_dtype)gb->x->o.kv_dtype),
         gb->bo->npolicies ? gb->bo->policies[0] : "dense", N, greedy ? "the CPU's greedy tokens" : "seeded ids", N / 2,
         N / 2 + 1, N);
  printf("check: logits rel. L2 error against the CPU (f32): mean %.4f, worst %.4f; top-1 equal %d/%d (row 0), "
         "%d/%d (row 1); device argmax = host argmax of its logits: %s\n",
         sum / (2.0 * N), worst, agree[0], N, agree[1], N, tokens_ok ? "yes" : "no");
  rc = worst <= 0.05 && tokens_ok && agree[0] >= N * 9 / 10 && agree[1] >= N * 9 / 10 ? 0 : 1;
  printf("check: %s (worst error <= 0.05, top-1 agreement >= 90%%)\n", rc ? "FAIL" : "PASS");
done:
  vxrt_graph_free(graph);
  if (pst) {
    vxrt_batch_free(b);
    vxrt_state_set_dense(pst, NULL, NULL, 0);
    vxrt_state_free(pst);
  }
out:
  free(seq);
  free(ref);
  free(got);
  return rc;
}

static int bench_gpu(serve_ctx *x, bench_opts *bo) {
  char err[MODEL_ERR_LEN];
  gpu_bench gb = {.x = x, .bo = bo};
  bench_run runs[BENCH_MAX_POLICIES + 1];
  memset(runs, 0, sizeof runs);
  int nruns = 0, rc = 1;
  double t_start = serve_now();
  if (!bo->kv_given)
    x->o.kv_dtype = VXRT_BF16;
  if (!x->o.model) {
    fprintf(stderr, "vx-serve bench: --model PATH is required\n");
    return 2;
  }
  int synthetic = !strncmp(x->o.model, "synthetic:", 10);
  if (model_load(x->o.model, x->o.seed, &x->m, err)) {
    fprintf(stderr, "vx-serve: %s\n", err);
    goto out;
  }
  const model_config *c = &x->m->cfg;
  gb.G = c->heads / c->kv_heads;
  if (serve_parse_dense_layers(x) || vxfail(vxrt_device_open(VXRT_CUDA, 0, &x->dev), "cannot open the CUDA device") ||
      serve_load_policy(x, x->o.dense_policy ? x->o.dense_policy : "dense", NULL, 0, &x->dense))
    goto out;
  for (int p = 0; p < bo->npolicies; p++)
    if (serve_load_policy(x, bo->policies[p], x->o.params, x->o.nparams, &gb.pol[p]))
      goto out;
  int max_batch = bo->check ? 2 : bo->auto_batch ? BENCH_MAX_BATCH : x->o.batch;
  fprintf(stderr, "vx-serve bench: model %s loaded on the host (%.1f s); weights to the GPU (%s)\n", x->o.model,
          serve_now() - t_start, synthetic ? "seeded random bf16 made on the device" : "the model's, as bf16");
  if (fwdgpu_create(x->dev, x->m, max_batch, synthetic && !bo->check ? FWDGPU_WEIGHTS_RANDOM : FWDGPU_WEIGHTS_HOST,
                    x->o.seed, &gb.g, err)) {
    fprintf(stderr, "vx-serve bench: %s\n", err);
    goto out;
  }
  if (bo->check) {
    char report[4096];
    int failed = fwdgpu_selftest(gb.g, report, sizeof report);
    printf("%sselftest: %d failed\n", report, failed);
    vxrt_cache_desc cd = {c->layers, c->kv_heads, c->head_dim, x->o.page_size, (vxrt_dtype)x->o.kv_dtype,
                          2 * ((int)bo->check / x->o.page_size + 2), 2, 0};
    if (vxfail(vxrt_cache_create(x->dev, &cd, &gb.cache), "vxrt_cache_create") ||
        vxfail(vxrt_state_create(x->dense, gb.cache, gb.G, &gb.dense_st), "vxrt_state_create (dense)") ||
        vxfail(vxrt_batch_create(gb.dense_st, 2, &gb.dense_b), "vxrt_batch_create"))
      goto out;
    int cr = gpu_check(&gb, err);
    if (cr < 0)
      fprintf(stderr, "vx-serve bench: check: %s\n", err);
    rc = cr || failed ? 1 : 0;
    goto out;
  }
  /* the KV pool: every row context + the runs' steps, sized by the free memory for auto */
  int P = x->o.page_size, nruns_planned = bo->npolicies + 1;
  long row_tokens = bo->context + (long)nruns_planned * (bo->steps + BENCH_WARMUP + 1) + 1;
  int row_pages = (int)((row_tokens + P - 1) / P);
  double esize = (double)vxrt_dtype_size((vxrt_dtype)x->o.kv_dtype);
  double fields = 0;
  for (int p = 0; p < bo->npolicies; p++) {
    double f = field_bytes_per_page(gb.pol[p], c->head_dim, gb.G, P);
    fields = f > fields ? f : fields;
  }
  double page_bytes = (double)c->layers * c->kv_heads * (2.0 * P * c->head_dim * esize + fields);
  size_t free_b, total_b;
  if (fwdgpu_mem_info(gb.g, &free_b, &total_b, err)) {
    fprintf(stderr, "vx-serve bench: %s\n", err);
    goto out;
  }
  /* kept free: the states' and batches' scratch, cuBLAS, the graph: 2 GiB and 2% */
  double room = (double)free_b - 2.0 * 1073741824.0 - 0.02 * (double)total_b;
  int B = x->o.batch;
  if (bo->auto_batch) {
    double fit = floor(room / (page_bytes * row_pages));
    B = fit < 1 ? 1 : fit > BENCH_MAX_BATCH ? BENCH_MAX_BATCH : (int)fit;
  }
  gb.B = B;
  vxrt_cache_desc cd = {c->layers, c->kv_heads, c->head_dim, P, (vxrt_dtype)x->o.kv_dtype, B * row_pages, B, row_pages};
  fprintf(stderr,
          "vx-serve bench: %s (%d layers, %d/%d heads, head dim %d), B = %d%s, N = %ld tokens + %ld steps per run, "
          "KV %s %.1f GB (%d pages of %d), %.1f GB weights; %.1f of %.1f GB free\n",
          x->o.model, c->layers, c->heads, c->kv_heads, c->head_dim, B, bo->auto_batch ? " (auto)" : "", bo->context,
          bo->steps, vxrt_dtype_name(cd.kv_dtype), page_bytes * B * row_pages / 1e9, cd.max_pages, P,
          fwdgpu_weight_bytes(gb.g) / 1e9, free_b / 1e9, total_b / 1e9);
  if (vxfail(vxrt_cache_create(x->dev, &cd, &gb.cache), "vxrt_cache_create") ||
      vxfail(vxrt_state_create(x->dense, gb.cache, gb.G, &gb.dense_st), "vxrt_state_create (dense)") ||
      vxfail(vxrt_batch_create(gb.dense_st, B, &gb.dense_b), "vxrt_batch_create"))
    goto out;
  fprintf(stderr, "vx-serve bench: filling the KV cache with synthetic values on the device (no prefill)\n");
  if (gpu_make_rows(&gb, err) || gpu_bench_runs(&gb, runs, &nruns, err)) {
    if (*err)
      fprintf(stderr, "vx-serve bench: %s\n", err);
    goto out;
  }
  vxrt_device_info di;
  vxrt_device_get_info(x->dev, &di);
  printf("vx-serve bench on %s: %s, B = %d, context %ld (+%ld steps per run), KV %s, P = %d, dense layers %s; "
         "weights seeded, KV synthetic (filled on the device, no prefill); %s\n",
         di.name, x->o.model, B, bo->context, bo->steps, vxrt_dtype_name(cd.kv_dtype), P, x->o.dense_layers,
         fwdgpu_blas_name(gb.g));
  const bench_run *dense = &runs[nruns - 1];
  for (int i = 0; i < nruns; i++)
    print_gpu_run(&runs[i]);
  for (int i = 0; i + 1 < nruns; i++)
    printf("%s / dense: %.2fx decode tokens/s\n", runs[i].name, runs[i].decode_tps / dense->decode_tps);
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "bench", "vx-serve bench");
  cJSON_AddStringToObject(root, "model", x->o.model);
  cJSON_AddStringToObject(root, "device", "cuda");
  cJSON_AddStringToObject(root, "gpu", di.name);
  cJSON_AddStringToObject(root, "step", "gpu: bf16 weights, cuBLAS, CUDA graph per run");
  cJSON_AddNumberToObject(root, "batch", B);
  cJSON_AddBoolToObject(root, "batch_auto", bo->auto_batch);
  cJSON_AddNumberToObject(root, "context", (double)bo->context);
  cJSON_AddNumberToObject(root, "steps", (double)bo->steps);
  cJSON_AddStringToObject(root, "kv_dtype", vxrt_dtype_name(cd.kv_dtype));
  cJSON_AddStringToObject(root, "prefill", "none: KV synthetic, filled on the device");
  cJSON_AddNumberToObject(root, "weight_bytes", fwdgpu_weight_bytes(gb.g));
  cJSON *arr = cJSON_AddArrayToObject(root, "runs");
  for (int i = 0; i < nruns; i++) {
    cJSON *j = run_json(&runs[i]);
    cJSON_AddNumberToObject(j, "context_at_start", (double)runs[i].context);
    cJSON_AddNumberToObject(j, "allocations_in_timed_steps", (double)runs[i].allocs);
    cJSON_AddNumberToObject(j, "device_memory_taken_in_timed_steps", runs[i].mem_delta);
    cJSON_AddNumberToObject(j, "speedup_vs_dense", runs[i].decode_tps / dense->decode_tps);
    cJSON_AddItemToArray(arr, j);
  }
  char *text = cJSON_PrintUnformatted(root);
  if (text)
    printf("%s\n", text);
  free(text);
  cJSON_Delete(root);
  rc = 0;
out:
  gpu_teardown(&gb);
  vxrt_policy_free(x->dense);
  if (x->dev)
    vxrt_device_close(x->dev);
  model_free(x->m);
  free(x->dense_layer);
  return rc;
}

int serve_bench(int argc, char **argv) {
  serve_ctx x;
  memset(&x, 0, sizeof x);
  serve_opts_defaults(&x.o);
  bench_opts bo = {.context = 1024, .steps = 32, .kv_gib = 4};
  for (int i = 2; i < argc; i++) {
    if (parse_bench_option(&bo, &x.o, argc, argv, &i))
      continue;
    int r = serve_common_option(&x.o, argc, argv, &i);
    if (r < 0)
      return 2;
    if (r > 0)
      continue;
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    }
    fprintf(stderr, "vx-serve bench: bad argument '%s'\n", argv[i]);
    usage(stderr);
    return 2;
  }
  if (x.o.device == VXRT_CUDA)
    return bench_gpu(&x, &bo);
  if (bo.npolicies > 1 || bo.check) {
    fprintf(stderr, "vx-serve bench: several --policy, and --check, need --device cuda\n");
    return 2;
  }
  int batch = x.o.batch, rc = 1;
  int *prompt = NULL;
  char err[MODEL_ERR_LEN];
  bench_run runs[2] = {{.name = "policy"}, {.name = "dense"}};
  if (serve_setup(&x, "bench") != 0)
    goto out;
  const model_config *c = &x.m->cfg;
  if (bo.context + bo.steps + 2 > c->ctx) {
    fprintf(stderr, "vx-serve bench: --context %ld + --steps %ld does not fit the model's context of %d\n",
            bo.context, bo.steps, c->ctx);
    goto out;
  }
  if (bo.auto_batch || batch > x.o.batch) {
    batch = bo.auto_batch ? auto_batch(&x, &bo) : batch;
    x.o.batch = batch;
    if (serve_rebuild(&x, x.policy) != 0)
      goto out;
  }
  prompt = malloc(sizeof(int) * (size_t)batch * (size_t)bo.context);
  if (!prompt)
    goto out;
  uint64_t s = x.o.seed;
  for (long i = 0; i < (long)batch * bo.context; i++)
    prompt[i] = i % bo.context == 0 ? c->bos : (int)(serve_rand64(&s) % (uint64_t)c->vocab);
  fprintf(stderr, "vx-serve bench: %s (%d layers, %d/%d heads, head dim %d), policy %s, dense layers %s, B = %d, "
          "N = %ld prompt tokens + %ld steps, attention on the %s; the prompts are prefilled for real\n",
          x.o.model, c->layers, c->heads, c->kv_heads, c->head_dim, x.policy_name, x.o.dense_layers, batch,
          bo.context, bo.steps, x.o.device == VXRT_CUDA ? "GPU" : "CPU");
  runs[0].name = x.policy_name;
  if (run_one(&x, &bo, batch, prompt, x.policy != NULL, &runs[0], err) != 0 || serve_rebuild(&x, x.policy) != 0 ||
      run_one(&x, &bo, batch, prompt, 0, &runs[1], err) != 0) {
    fprintf(stderr, "vx-serve bench: %s\n", err);
    goto out;
  }
  for (int i = 0; i < 2; i++)
    print_run(&runs[i]);
  printf("%s / dense: %.2fx decode tokens/s\n", runs[0].name, runs[0].decode_tps / runs[1].decode_tps);
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "bench", "vx-serve bench");
  cJSON_AddStringToObject(root, "model", x.o.model);
  cJSON_AddStringToObject(root, "device", x.o.device == VXRT_CUDA ? "cuda" : "cpu");
  cJSON_AddNumberToObject(root, "batch", batch);
  cJSON_AddNumberToObject(root, "context", (double)bo.context);
  cJSON_AddNumberToObject(root, "steps", (double)bo.steps);
  cJSON_AddStringToObject(root, "prefill", "real");
  cJSON *arr = cJSON_AddArrayToObject(root, "runs");
  for (int i = 0; i < 2; i++)
    cJSON_AddItemToArray(arr, run_json(&runs[i]));
  cJSON_AddNumberToObject(root, "speedup", runs[0].decode_tps / runs[1].decode_tps);
  char *text = cJSON_PrintUnformatted(root);
  if (text)
    printf("%s\n", text);
  free(text);
  cJSON_Delete(root);
  rc = 0;
out:
  free(prompt);
  serve_teardown(&x);
  return rc;
}
