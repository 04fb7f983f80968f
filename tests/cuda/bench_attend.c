/* bench_attend.c - batched decode attention on the GPU at Llama-3.1-8B shapes, through
 * libvxrt's public batched API.
 *
 *   bench_attend ARTIFACT [--iters N] [--policy] [--only B N]
 *   bench_attend --vxc VXC --source FILE.vx --out ARTIFACT [--iters N] [--policy]
 *
 * The artifact needs GPU kernels for d128g4p16_bf16 (vxc --target sm_90 --shape
 * D=128,G=4,P=16,kv=bf16). For B in {1, 8, 32} requests and N in {4096, 32768} tokens per
 * request: one layer of 8 KV heads, rows of N tokens whose K and V pools are filled with
 * random bf16 by plain uploads (not timed), one vxrt_batch_prepare, then vxrt_decode_attend
 * timed with CUDA events over --iters launches (default 100, at least 50) after 10 warm-up
 * launches, directly and as a replayed CUDA graph of one attend. Prints microseconds per call
 * and TB/s on the K+V bytes read (B * 8 * T * 128 * 2 * 2, T = N, or the policy's budget
 * param in tokens when smaller), one line per configuration, then
 * one JSON line. --policy (a policy with a select kernel, e.g. quest): also rebuilds the
 * fields after the fill and times select alone and the whole step (append, select, attend).
 * Exits 77 without a GPU, 1 on an error. */
#include <time.h>

#include "gpu_common.h"

enum { HKV = 8, G = 4, D = 128, P = 16, WARMUP = 10 };

typedef struct Result {
  int B, N;
  double attended; /* tokens per row the attend reads: N, or the policy's budget when smaller */
  double direct_us, graph_us, select_us, step_us;
} Result;

/* The tokens per row the attend reads: a budget param (in tokens, whole pages) caps N. */
static int attended_tokens(const vxrt_policy *pol, int N, Result *r) {
  int i;
  vxrt_param_info pi;
  r->attended = N;
  if (vxrt_policy_find_param(pol, "budget", &i) == VXRT_OK && vxrt_policy_get_param(pol, i, &pi) == VXRT_OK &&
      !strcmp(pi.unit, "tokens") && pi.value < N)
    r->attended = (double)((long)pi.value / P * P);
  return 1;
}

static int fail(const char *what) {
  printf("FAIL: %s: %s\n", what, vxrt_last_error());
  return 0;
}

#define TRY(call, what) \
  if ((call) != VXRT_OK) return fail(what)

/* Fills a pool of `bytes` with random bf16 from a reused host block. */
static int fill_pool(vxrt_device *dev, uint64_t pool, size_t bytes, uint64_t *seed) {
  enum { BLOCK = 32 << 20 };
  static uint16_t *host;
  if (!host) {
    host = malloc(BLOCK);
    float x;
    for (size_t i = 0; i < BLOCK / 2; i++) {
      x = gpu_value(seed);
      vxrt_convert_from_f32(VXRT_BF16, &x, &host[i], 1);
    }
  }
  for (size_t at = 0; at < bytes; at += BLOCK) {
    size_t n = bytes - at < BLOCK ? bytes - at : BLOCK;
    TRY(vxrt_buffer_upload(dev, pool + at, host, n), "filling the KV pool");
  }
  return 1;
}

/* Mean microseconds of `iters` runs of what() between two events. */
typedef vxrt_status (*step_fn)(void *ctx);
static int time_it(vxrt_stream *s, vxrt_event *e0, vxrt_event *e1, step_fn fn, void *ctx, int iters, double *us) {
  for (int i = 0; i < WARMUP; i++) TRY(fn(ctx), "warm-up launch");
  TRY(vxrt_event_record(e0, s), "event");
  for (int i = 0; i < iters; i++) TRY(fn(ctx), "timed launch");
  TRY(vxrt_event_record(e1, s), "event");
  float ms;
  TRY(vxrt_event_elapsed(e0, e1, &ms), "event timing");
  TRY(vxrt_stream_sync(s), "stream sync (a launch failed)");
  *us = 1e3 * ms / iters;
  return 1;
}

typedef struct Ctx {
  vxrt_batch *b;
  vxrt_stream *s;
  vxrt_graph *g;
  vxrt_dbuf q, out, lse, k, v;
} Ctx;

static vxrt_status do_attend(void *p) {
  Ctx *c = p;
  return vxrt_decode_attend(c->b, 0, c->q, c->out, c->lse, c->s);
}
static vxrt_status do_graph(void *p) {
  Ctx *c = p;
  return vxrt_graph_launch(c->g, c->s);
}
static vxrt_status do_select(void *p) {
  Ctx *c = p;
  return vxrt_decode_select(c->b, 0, c->q, c->s);
}
static vxrt_status do_step(void *p) {
  Ctx *c = p;
  vxrt_status st = vxrt_decode_append(c->b, 0, c->k, c->v, c->s);
  if (!st) st = vxrt_decode_select(c->b, 0, c->q, c->s);
  return st ? st : vxrt_decode_attend(c->b, 0, c->q, c->out, c->lse, c->s);
}

static int run_config(vxrt_device *dev, const char *artifact, int B, int N, int iters, int policy, Result *r) {
  r->B = B;
  r->N = N;
  int row_pages = N / P + 2;
  vxrt_cache_desc cd = {1, HKV, D, P, VXRT_BF16, B * row_pages, B, row_pages};
  vxrt_policy *pol = NULL;
  vxrt_cache *cache = NULL;
  vxrt_state *st = NULL;
  vxrt_batch *b = NULL;
  vxrt_stream *s = NULL;
  vxrt_event *e0 = NULL, *e1 = NULL;
  Ctx c = {0};
  uint64_t bufs[5] = {0};
  int ok = 0, rows[64];
  uint64_t seed = 42;
  do {
    if (vxrt_policy_load_file(dev, artifact, NULL, 0, &pol) || !attended_tokens(pol, N, r) ||
        vxrt_cache_create(dev, &cd, &cache) ||
        vxrt_state_create(pol, cache, G, &st) || vxrt_batch_create(st, B, &b) || vxrt_stream_create(dev, &s) ||
        vxrt_event_create(dev, &e0) || vxrt_event_create(dev, &e1)) {
      fail("setting up");
      break;
    }
    /* Rows of one token, prefilled, then grown to N - 1 tokens without writing them. */
    float zero[HKV * D] = {0};
    int bad = 0;
    for (int i = 0; i < B && !bad; i++)
      bad = vxrt_row_open(cache, &rows[i]) || vxrt_append(cache, rows[i], 0, zero, zero, 1) ||
            vxrt_prefill(st, rows[i], 0);
    if (bad || vxrt_batch_set_rows(b, rows, B) || vxrt_batch_prepare(b, N - 2, s) || vxrt_batch_commit(b)) {
      fail("making the rows");
      break;
    }
    vxrt_kv_pool pool;
    vxrt_cache_info ci;
    vxrt_cache_get_pool(cache, 0, &pool);
    vxrt_cache_get_info(cache, &ci);
    if (!fill_pool(dev, (uint64_t)(uintptr_t)pool.k, ci.pool_bytes, &seed) ||
        !fill_pool(dev, (uint64_t)(uintptr_t)pool.v, ci.pool_bytes, &seed))
      break;
    for (int i = 0; policy && i < B && !bad; i++) bad = vxrt_summarise(st, rows[i], 0, 0);
    if (bad) {
      fail("rebuilding the fields");
      break;
    }
    size_t sizes[5] = {sizeof(uint16_t) * B * HKV * G * D, sizeof(uint16_t) * B * HKV * G * D,
                       sizeof(float) * B * HKV * G, sizeof(uint16_t) * B * HKV * D, sizeof(uint16_t) * B * HKV * D};
    for (int i = 0; i < 5 && !bad; i++) bad = vxrt_buffer_alloc(dev, sizes[i], &bufs[i]);
    if (bad) {
      fail("buffers");
      break;
    }
    uint16_t *h = malloc(sizes[0]);
    for (size_t i = 0; i < sizes[0] / 2; i++) {
      float x = gpu_value(&seed);
      vxrt_convert_from_f32(VXRT_BF16, &x, &h[i], 1);
    }
    vxrt_buffer_upload(dev, bufs[0], h, sizes[0]);
    vxrt_buffer_upload(dev, bufs[3], h, sizes[3]);
    vxrt_buffer_upload(dev, bufs[4], h, sizes[4]);
    free(h);
    c = (Ctx){b, s, NULL, {bufs[0], VXRT_BF16}, {bufs[1], VXRT_BF16}, {bufs[2], VXRT_F32},
              {bufs[3], VXRT_BF16}, {bufs[4], VXRT_BF16}};
    /* The timed step: N tokens, the last one new. */
    if (vxrt_batch_prepare(b, 1, s) || vxrt_decode_select(b, 0, c.q, s) ||
        !time_it(s, e0, e1, do_attend, &c, iters, &r->direct_us)) {
      fail("direct attend");
      break;
    }
    if (vxrt_graph_begin(s) || do_attend(&c) || vxrt_graph_end(s, &c.g) ||
        !time_it(s, e0, e1, do_graph, &c, iters, &r->graph_us)) {
      fail("graph attend");
      break;
    }
    if (policy && (!time_it(s, e0, e1, do_select, &c, iters, &r->select_us) ||
                   !time_it(s, e0, e1, do_step, &c, iters, &r->step_us)))
      break;
    ok = vxrt_batch_commit(b) == VXRT_OK;
  } while (0);
  vxrt_graph_free(c.g);
  for (int i = 0; i < 5; i++) vxrt_buffer_free(dev, bufs[i]);
  vxrt_event_free(e0);
  vxrt_event_free(e1);
  vxrt_batch_free(b);
  vxrt_stream_free(s);
  vxrt_state_free(st);
  vxrt_cache_free(cache);
  vxrt_policy_free(pol);
  return ok;
}

int main(int argc, char **argv) {
  const char *artifact = NULL, *vxc = NULL, *source = NULL;
  int iters = 100, policy = 0, only_b = 0, only_n = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "--iters") && more) iters = atoi(argv[++i]);
    else if (!strcmp(a, "--vxc") && more) vxc = argv[++i];
    else if (!strcmp(a, "--source") && more) source = argv[++i];
    else if (!strcmp(a, "--out") && more) artifact = argv[++i];
    else if (!strcmp(a, "--policy")) policy = 1;
    else if (!strcmp(a, "--only") && i + 2 < argc) {
      only_b = atoi(argv[++i]);
      only_n = atoi(argv[++i]);
    }
    else if (a[0] != '-' && !artifact) artifact = a;
    else {
      fprintf(stderr, "usage: bench_attend ARTIFACT [--iters N] [--policy] [--only B N]\n"
                      "       bench_attend --vxc VXC --source FILE.vx --out ARTIFACT [--iters N] [--policy]\n");
      return 2;
    }
  }
  if (!artifact || iters < 50 || (vxc && !source)) {
    fprintf(stderr, "bench_attend: need an artifact (or --vxc, --source and --out) and --iters >= 50\n");
    return 2;
  }
  vxrt_device *dev = gpu_open();
  if (!dev) return GPU_SKIP;
  static const char *const shape[] = {"D=128,G=4,P=16,kv=bf16"};
  if (vxc && gpu_compile(vxc, source, shape, 1, artifact) != 0) {
    printf("FAIL: vxc could not compile %s\n", source);
    return 1;
  }
  vxrt_device_info di;
  vxrt_device_get_info(dev, &di);
  static const int Bs[] = {1, 8, 32}, Ns[] = {4096, 32768};
  Result res[6];
  int n = 0, failed = 0;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 2; j++) {
      if (only_b && (Bs[i] != only_b || Ns[j] != only_n))
        continue; /* --only B N: one configuration (for profilers) */
      Result *r = &res[n];
      memset(r, 0, sizeof *r);
      if (!run_config(dev, artifact, Bs[i], Ns[j], iters, policy, r)) {
        failed++;
        continue;
      }
      double bytes = (double)Bs[i] * HKV * r->attended * D * 2 * 2; /* K and V of the tokens attended */
      printf("B=%-2d N=%-5d  attend %8.2f us %5.2f TB/s   graph %8.2f us %5.2f TB/s", r->B, r->N, r->direct_us,
             bytes / (r->direct_us * 1e-6) / 1e12, r->graph_us, bytes / (r->graph_us * 1e-6) / 1e12);
      if (policy) printf("   select %8.2f us   step %8.2f us", r->select_us, r->step_us);
      putchar('\n');
      n++;
    }
  time_t now = time(NULL);
  char date[32];
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  printf("{\"bench\": \"bench_attend\", \"date\": \"%s\", \"device\": \"%s\", \"artifact\": \"%s\", \"iters\": %d, "
         "\"Hkv\": %d, \"G\": %d, \"D\": %d, \"P\": %d, \"kv\": \"bf16\", \"results\": [",
         date, di.name, artifact, iters, HKV, G, D, P);
  for (int i = 0; i < n; i++) {
    double bytes = (double)res[i].B * HKV * res[i].attended * D * 2 * 2;
    printf("%s{\"B\": %d, \"N\": %d, \"attended_tokens\": %.0f, \"attend_us\": %.3f, \"attend_tbs\": %.3f, \"graph_us\": %.3f, \"graph_tbs\": %.3f",
           i ? ", " : "", res[i].B, res[i].N, res[i].attended, res[i].direct_us, bytes / (res[i].direct_us * 1e-6) / 1e12,
           res[i].graph_us, bytes / (res[i].graph_us * 1e-6) / 1e12);
    if (policy) printf(", \"select_us\": %.3f, \"step_us\": %.3f", res[i].select_us, res[i].step_us);
    putchar('}');
  }
  printf("]}\n");
  vxrt_device_close(dev);
  return failed ? 1 : 0;
}
