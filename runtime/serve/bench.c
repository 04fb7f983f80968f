/* bench.c - vx-serve bench: decode throughput of a policy against dense attention in one run,
 * end to end through the engine (docs/serving.md, "vx-serve bench"). B requests of N prompt
 * tokens (seeded random ids) are prefilled for real and then decoded S steps, greedy, first
 * with the policy and then with dense attention on every layer; for each: decode tokens/s,
 * step latency (p50, p99), prefill tokens/s, the process's CPU time per step, and the bytes a
 * step reads (the weights plus the KV cache each layer attends) with the TB/s they make. A
 * progress line per step on stderr, a table and one JSON line on stdout. Sits under
 * runtime/serve/ beside eval.c; uses only the engine and serve_setup. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"
#include "util.h"

enum { BENCH_MAX_BATCH = 256 };

typedef struct bench_opts {
  long context, steps;
  int auto_batch;           /* --batch auto: as many rows as --kv-memory holds */
  double kv_gib;            /* --kv-memory: the KV cache budget --batch auto fills */
  int quiet;
} bench_opts;

typedef struct bench_run {
  const char *name;
  double prefill_tps, decode_tps, p50_ms, p99_ms, cpu_ms, bytes, tbps;
  long attended;            /* KV tokens a sparse layer attends per row at the last step */
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
