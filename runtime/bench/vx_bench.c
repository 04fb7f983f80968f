/* vx_bench.c - vx-bench: the decode-step kernels of compiled policies at one attention shape
 * (Llama-3.1-8B's by default: 8 KV heads, G = 4, D = 128, P = 16, bf16 KV), timed through
 * libvxrt's public batched API, for every policy x batch size B x context N asked for:
 * select alone, attend alone, and the whole step (append, select, attend with its updates),
 * each replayed from a CUDA graph (timed directly on the CPU, where graphs do not exist),
 * with microseconds and the TB/s achieved on the bytes each must read. With --peers (the
 * JSON ../shared/bench/peers.py writes in the same device call) it prints the peers' figures
 * beside ours, the ratio, and every bandwidth as a fraction of the best any method reached in
 * that run. One progress line per configuration on stderr, a table and one JSON line on
 * stdout (docs/performance.md, "vx-bench").
 *
 * The bytes a kernel must read: attend, the K and V of the tokens the selection attends
 * (counted from the batch's selection of the first row, the union over the query heads);
 * select, the policy's page and token fields of every page (their extents evaluated for the
 * shape; a field whose extent it cannot evaluate makes the figure unknown) plus, for policies
 * whose scoring reads k or v, nothing more than the fields say (the cost report, vxc
 * --report, gives the exact count). Rows are filled with random K and V by uploads (not
 * timed), and the fields rebuilt from them. Never writes files but --json's. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vxrt.h"

enum { MAX_POLICIES = 16, MAX_LIST = 8, MAX_ROWS = 1024, WARMUP = 5, EXIT_NO_GPU = 77 };

typedef struct Options {
  vxrt_device_kind device;
  char names[MAX_POLICIES][64]; /* labels: NAME= or the policy's own name */
  const char *paths[MAX_POLICIES];
  int npolicies;
  int B[MAX_LIST], nB, N[MAX_LIST], nN;
  int Hkv, G, D, P;
  vxrt_dtype kv;
  double budget; /* sets a policy's param "budget" (tokens); < 0: the policy's own */
  int iters;
  const char *peers, *json;
} Options;

typedef struct Result {
  const char *policy;
  int B, N;
  double attended;            /* tokens of K and V the attend reads per (row, KV head) */
  double select_bytes;        /* the fields select reads; < 0 unknown; 0 without a select */
  double select_us, attend_us, step_us; /* < 0: not measured */
} Result;

typedef struct Run {
  const Options *o;
  vxrt_device *dev;
  vxrt_batch *b;
  vxrt_stream *s;
  vxrt_event *e0, *e1;
  vxrt_dbuf q, out, lse, k, v;
  bool selects;               /* the policy has a select kernel */
} Run;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float random_value(void) { /* xorshift64*, uniform in [-1, 1) */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (float)((rng * 0x2545F4914F6CDD1Dull) >> 40) / (float)(1 << 23) - 1.0f;
}

static int fail(const char *what) {
  fprintf(stderr, "vx-bench: %s: %s\n", what, vxrt_last_error());
  return 0;
}
#define TRY(call, what) \
  if ((call) != VXRT_OK) return fail(what)

/* ---- options ---- */

static int parse_list(const char *s, int *out, int cap) {
  int n = 0;
  while (*s && n < cap) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno || v < 1 || v > (1 << 24) || (*end && *end != ','))
      return 0;
    out[n++] = (int)v;
    s = *end ? end + 1 : end;
  }
  return *s ? 0 : n;
}

static int parse_shape(const char *s, Options *o) {
  char kv[8] = "";
  if (sscanf(s, "Hkv=%d,G=%d,D=%d,P=%d,kv=%7s", &o->Hkv, &o->G, &o->D, &o->P, kv) != 5)
    return 0;
  o->kv = !strcmp(kv, "bf16") ? VXRT_BF16 : !strcmp(kv, "f16") ? VXRT_F16 : !strcmp(kv, "f32") ? VXRT_F32 : -1;
  return (int)o->kv >= 0 && o->Hkv > 0 && o->G > 0 && o->D > 0 && o->P > 0;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: vx-bench [options] [NAME=]ARTIFACT...\n"
          "  ARTIFACT           a policy compiled with GPU kernels for the shape (vxc --target sm_90\n"
          "                     --shape D=128,G=4,P=16,kv=bf16); NAME labels it (default: its policy)\n"
          "  --device cuda|cpu  where to run (default cuda; exit 77 without a GPU)\n"
          "  --B 1,8,32,64      batch sizes (default 1,8,32)\n"
          "  --N 4096,32768     tokens per row (default 4096,32768)\n"
          "  --budget T         sets each policy's param 'budget' (tokens; default 2048)\n"
          "  --shape Hkv=8,G=4,D=128,P=16,kv=bf16   the attention shape (that default)\n"
          "  --iters N          timed replays per figure (default 100)\n"
          "  --peers FILE       peers.py's JSON from the same run: side by side, ratios, fractions\n"
          "  --json FILE        also write the JSON result there\n");
}

static int parse_options(int argc, char **argv, Options *o) {
  *o = (Options){.device = VXRT_CUDA, .B = {1, 8, 32}, .nB = 3, .N = {4096, 32768}, .nN = 2,
                 .Hkv = 8, .G = 4, .D = 128, .P = 16, .kv = VXRT_BF16, .budget = 2048, .iters = 100};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool valued = !strcmp(a, "--device") || !strcmp(a, "--B") || !strcmp(a, "--N") || !strcmp(a, "--budget") ||
                  !strcmp(a, "--shape") || !strcmp(a, "--iters") || !strcmp(a, "--peers") || !strcmp(a, "--json");
    if (valued && !v) {
      fprintf(stderr, "vx-bench: %s needs a value\n", a);
      return 0;
    }
    char *end = NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      exit(0);
    } else if (!strcmp(a, "--device") && (!strcmp(v, "cuda") || !strcmp(v, "cpu"))) {
      o->device = !strcmp(v, "cuda") ? VXRT_CUDA : VXRT_CPU;
    } else if (!strcmp(a, "--B") && (o->nB = parse_list(v, o->B, MAX_LIST))) {
    } else if (!strcmp(a, "--N") && (o->nN = parse_list(v, o->N, MAX_LIST))) {
    } else if (!strcmp(a, "--budget") && (o->budget = strtod(v, &end), *end == '\0' && end != v)) {
    } else if (!strcmp(a, "--shape") && parse_shape(v, o)) {
    } else if (!strcmp(a, "--iters") && (o->iters = atoi(v)) >= 1) {
    } else if (!strcmp(a, "--peers")) {
      o->peers = v;
    } else if (!strcmp(a, "--json")) {
      o->json = v;
    } else if (a[0] != '-' && o->npolicies < MAX_POLICIES) {
      const char *eq = strchr(a, '=');
      snprintf(o->names[o->npolicies], sizeof o->names[0], "%.*s", eq ? (int)(eq - a) : 0, a);
      o->paths[o->npolicies++] = eq ? eq + 1 : a;
      continue;
    } else {
      fprintf(stderr, "vx-bench: bad argument '%s'%s%s\n", a, valued ? " " : "", valued ? v : "");
      usage(stderr);
      return 0;
    }
    i++;
  }
  for (int i = 0; i < o->nB; i++)
    if (o->B[i] > MAX_ROWS) {
      fprintf(stderr, "vx-bench: --B %d: at most %d rows\n", o->B[i], MAX_ROWS);
      return 0;
    }
  if (!o->npolicies) {
    fprintf(stderr, "vx-bench: no artifact given\n");
    usage(stderr);
    return 0;
  }
  return 1;
}

/* ---- the bytes select must read: the policy's page and token fields ---- */

/* An extent of the benchmark's shape: an integer, D, G, P, or a product of them; -1 else. */
static double extent_value(const Options *o, const char *e) {
  double v = 1;
  for (const char *p = e; *p;) {
    char *end;
    long n = strtol(p, &end, 10);
    double f = end != p ? (double)n : *p == 'D' ? o->D : *p == 'G' ? o->G : *p == 'P' ? o->P : -1;
    if (f < 0)
      return -1;
    p = end != p ? end : p + 1;
    v *= f;
    if (*p == '*')
      p++;
    else if (*p)
      return -1;
  }
  return v;
}

static double dtype_bytes(const char *d) {
  return !strcmp(d, "f32") || !strcmp(d, "u32") ? 4 : !strcmp(d, "f16") || !strcmp(d, "bf16") ? 2 : 1;
}

/* Bytes per page of every page and token field (their first axis is the page); -1 when an
 * extent is not the shape's. */
static double field_bytes_per_page(const vxrt_policy *pol, const Options *o) {
  vxrt_policy_info pi;
  if (vxrt_policy_get_info(pol, &pi))
    return -1;
  double total = 0;
  for (int i = 0; i < pi.nfields; i++) {
    vxrt_field_info f;
    if (vxrt_policy_get_field(pol, i, &f) || (f.stage != VXRT_STAGE_PAGE && f.stage != VXRT_STAGE_TOKEN))
      continue;
    double elems = 1;
    for (int a = 1; a < f.naxes; a++) {
      double e = extent_value(o, f.axes[a]);
      if (e < 0)
        return -1;
      elems *= e;
    }
    total += elems * dtype_bytes(f.dtype);
  }
  return total;
}

/* ---- one configuration ---- */

typedef vxrt_status (*step_fn)(Run *r);

static vxrt_status do_select(Run *r) { return vxrt_decode_select(r->b, 0, r->q, r->s); }
static vxrt_status do_attend(Run *r) { return vxrt_decode_attend(r->b, 0, r->q, r->out, r->lse, r->s); }
static vxrt_status do_step(Run *r) {
  vxrt_status st = vxrt_decode_append(r->b, 0, r->k, r->v, r->s);
  if (!st)
    st = do_select(r);
  return st ? st : do_attend(r);
}

/* Mean microseconds of fn, replayed from a graph on CUDA, called directly on the CPU. */
static int time_fn(Run *r, step_fn fn, double *us) {
  vxrt_graph *g = NULL;
  if (r->o->device == VXRT_CUDA) {
    TRY(vxrt_graph_begin(r->s), "graph capture");
    vxrt_status st = fn(r);
    TRY(vxrt_graph_end(r->s, &g), "graph capture");
    TRY(st, "a captured launch");
  }
  int ok = 0;
  for (int i = 0; i < WARMUP + r->o->iters; i++) {
    if (i == WARMUP && vxrt_event_record(r->e0, r->s))
      break;
    if (g ? vxrt_graph_launch(g, r->s) : fn(r))
      break;
    ok = i == WARMUP + r->o->iters - 1;
  }
  float ms = 0;
  if (!ok || vxrt_event_record(r->e1, r->s) || vxrt_event_elapsed(r->e0, r->e1, &ms) || vxrt_stream_sync(r->s))
    ok = fail("timed launches");
  vxrt_graph_free(g);
  *us = 1e3 * ms / r->o->iters;
  return ok;
}

/* Fills one layer's K and V pools with random values: one block made once and uploaded over
 * and over (timing does not depend on the values; making 30 GB of them would take minutes). */
static int fill_pools(Run *r, vxrt_cache *cache) {
  enum { BLOCK = 16 << 20 };
  vxrt_kv_pool pool;
  vxrt_cache_info ci;
  TRY(vxrt_cache_get_pool(cache, 0, &pool), "pool");
  TRY(vxrt_cache_get_info(cache, &ci), "cache info");
  size_t esize = vxrt_dtype_size(r->o->kv), n = BLOCK / esize;
  float *f = malloc(sizeof(float) * n);
  void *h = malloc(BLOCK);
  int ok = f && h;
  for (size_t i = 0; ok && i < n; i++)
    f[i] = random_value();
  ok = ok && !vxrt_convert_from_f32(r->o->kv, f, h, n);
  for (int w = 0; ok && w < 2; w++)
    for (size_t at = 0; ok && at < ci.pool_bytes; at += BLOCK) {
      size_t bytes = ci.pool_bytes - at < BLOCK ? ci.pool_bytes - at : BLOCK;
      ok = !vxrt_buffer_upload(r->dev, (uint64_t)(uintptr_t)(w ? pool.v : pool.k) + at, h, bytes);
    }
  free(f);
  free(h);
  return ok ? 1 : fail("filling the KV pools");
}

static int make_buffers(Run *r, int B, uint64_t *bufs) {
  const Options *o = r->o;
  size_t qd = (size_t)B * o->Hkv * o->G * o->D, kd = (size_t)B * o->Hkv * o->D;
  size_t sizes[5] = {4 * qd, 4 * qd, 4 * (size_t)B * o->Hkv * o->G, 4 * kd, 4 * kd};
  for (int i = 0; i < 5; i++)
    TRY(vxrt_buffer_alloc(r->dev, sizes[i], &bufs[i]), "device buffers");
  float *h = malloc(sizes[0]);
  if (!h)
    return 0;
  for (size_t i = 0; i < qd; i++)
    h[i] = random_value();
  int ok = !vxrt_buffer_upload(r->dev, bufs[0], h, sizes[0]) && !vxrt_buffer_upload(r->dev, bufs[3], h, sizes[3]) &&
           !vxrt_buffer_upload(r->dev, bufs[4], h, sizes[4]);
  free(h);
  r->q = (vxrt_dbuf){bufs[0], VXRT_F32};
  r->out = (vxrt_dbuf){bufs[1], VXRT_F32};
  r->lse = (vxrt_dbuf){bufs[2], VXRT_F32};
  r->k = (vxrt_dbuf){bufs[3], VXRT_F32};
  r->v = (vxrt_dbuf){bufs[4], VXRT_F32};
  return ok ? 1 : fail("uploading q, k, v");
}

/* Tokens the first row's first KV head attends: the union of its query heads' selections. */
static int attended_tokens(Run *r, int N, double *out) {
  const Options *o = r->o;
  size_t per_head = (size_t)(N / o->P + 2) * o->P;
  uint8_t *sel = malloc((size_t)o->Hkv * o->G * per_head);
  if (!sel)
    return 0;
  vxrt_status st = vxrt_batch_read_selection(r->b, 0, sel);
  long n = 0;
  for (size_t t = 0; !st && t < per_head; t++) {
    bool any = false;
    for (int g = 0; g < o->G; g++)
      any |= sel[g * per_head + t] != 0;
    n += any;
  }
  free(sel);
  *out = (double)n;
  return st ? fail("reading the selection") : 1;
}

/* Rows of N - 1 tokens (one appended and prefilled, the rest grown without writing), pools
 * filled at random, fields rebuilt; then the step's token prepared. */
static int make_rows(Run *r, vxrt_cache *cache, vxrt_state *st, int B, int N) {
  float *zero = calloc((size_t)r->o->Hkv * r->o->D, sizeof(float));
  int rows[MAX_ROWS], ok = zero != NULL;
  for (int i = 0; ok && i < B; i++)
    ok = !vxrt_row_open(cache, &rows[i]) && !vxrt_append(cache, rows[i], 0, zero, zero, 1) &&
         !vxrt_prefill(st, rows[i], 0);
  free(zero);
  if (!ok || vxrt_batch_set_rows(r->b, rows, B) || vxrt_batch_prepare(r->b, N - 2, r->s) || vxrt_batch_commit(r->b))
    return fail("making the rows");
  if (!fill_pools(r, cache))
    return 0;
  for (int i = 0; i < B; i++)
    TRY(vxrt_summarise(st, rows[i], 0, 0), "rebuilding the fields");
  TRY(vxrt_batch_prepare(r->b, 1, r->s), "preparing the step");
  return 1;
}

static int policy_selects(const vxrt_policy *pol) {
  vxrt_policy_info pi;
  if (vxrt_policy_get_info(pol, &pi))
    return 0;
  int any = 0;
  for (int i = 0; i < pi.nkernels; i++) {
    vxrt_kernel_info k;
    any |= !vxrt_policy_get_kernel(pol, i, &k) && k.kind == VXRT_KERNEL_SELECT;
  }
  return any;
}

static int run_config(vxrt_device *dev, const Options *o, int p, int B, int N, Result *res) {
  *res = (Result){.policy = o->names[p], .B = B, .N = N, .select_us = -1, .attend_us = -1, .step_us = -1};
  int row_pages = N / o->P + 2;
  vxrt_cache_desc cd = {1, o->Hkv, o->D, o->P, o->kv, B * row_pages, B, row_pages};
  vxrt_param_override budget = {"budget", o->budget};
  vxrt_policy *pol = NULL;
  vxrt_cache *cache = NULL;
  vxrt_state *st = NULL;
  Run r = {.o = o, .dev = dev};
  uint64_t bufs[5] = {0};
  int ok = 0, idx;
  do {
    if (vxrt_policy_load_file(dev, o->paths[p], NULL, 0, &pol)) {
      fail(o->paths[p]);
      break;
    }
    bool has_budget = o->budget >= 0 && vxrt_policy_find_param(pol, "budget", &idx) == VXRT_OK;
    vxrt_policy_free(pol);
    pol = NULL;
    if (vxrt_policy_load_file(dev, o->paths[p], &budget, has_budget, &pol) || vxrt_cache_create(dev, &cd, &cache) ||
        vxrt_state_create(pol, cache, o->G, &st) || vxrt_batch_create(st, B, &r.b) ||
        vxrt_stream_create(dev, &r.s) || vxrt_event_create(dev, &r.e0) || vxrt_event_create(dev, &r.e1)) {
      fail("setting up");
      break;
    }
    double per_page = field_bytes_per_page(pol, o);
    res->select_bytes = per_page < 0 ? -1 : per_page * (N / o->P) * B * o->Hkv;
    /* a select kernel that reads no field (select all, keep ranges only) launches nothing */
    r.selects = policy_selects(pol) && res->select_bytes != 0;
    if (!make_rows(&r, cache, st, B, N) || !make_buffers(&r, B, bufs))
      break;
    /* select (timed where it does work), the selection's size, attend over it, the step */
    if ((r.selects && !time_fn(&r, do_select, &res->select_us)) || do_select(&r) || vxrt_stream_sync(r.s) ||
        !attended_tokens(&r, N, &res->attended) || !time_fn(&r, do_attend, &res->attend_us) ||
        !time_fn(&r, do_step, &res->step_us)) {
      fail("timing");
      break;
    }
    ok = vxrt_batch_commit(r.b) == VXRT_OK;
  } while (0);
  for (int i = 0; i < 5; i++)
    vxrt_buffer_free(dev, bufs[i]);
  vxrt_event_free(r.e0);
  vxrt_event_free(r.e1);
  vxrt_batch_free(r.b);
  vxrt_stream_free(r.s);
  vxrt_state_free(st);
  vxrt_cache_free(cache);
  vxrt_policy_free(pol);
  return ok;
}

/* ---- peers (peers.py's JSON) ---- */

typedef struct Peers {
  cJSON *rows;
  double best; /* the best TB/s any method reached */
  const char *best_name;
} Peers;

static int load_peers(const char *path, Peers *p) {
  memset(p, 0, sizeof *p);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "vx-bench: cannot open the peers' JSON '%s': %s\n", path, strerror(errno));
    return 0;
  }
  char *text = NULL;
  size_t len = 0, cap = 0;
  for (int c; (c = fgetc(f)) != EOF;) {
    if (len + 1 >= cap && !(text = realloc(text, cap = cap ? 2 * cap : 1 << 16)))
      break;
    text[len++] = (char)c;
  }
  fclose(f);
  if (text)
    text[len] = '\0';
  p->rows = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (!cJSON_IsArray(p->rows)) {
    fprintf(stderr, "vx-bench: '%s' is not peers.py's JSON (an array of rows)\n", path);
    return 0;
  }
  const cJSON *row;
  cJSON_ArrayForEach(row, p->rows) {
    double bw = cJSON_GetNumberValue(cJSON_GetObjectItem(row, "TBps"));
    if (bw > p->best) {
      p->best = bw;
      p->best_name = cJSON_GetStringValue(cJSON_GetObjectItem(row, "name"));
    }
  }
  return 1;
}

/* The microseconds of the peer row whose name starts with prefix at (B, N); < 0 if none. */
static double peer_us(const Peers *p, const char *prefix, int B, int N) {
  const cJSON *row;
  cJSON_ArrayForEach(row, p->rows) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(row, "name"));
    if (name && !strncmp(name, prefix, strlen(prefix)) &&
        cJSON_GetNumberValue(cJSON_GetObjectItem(row, "B")) == B &&
        cJSON_GetNumberValue(cJSON_GetObjectItem(row, "N")) == N)
      return cJSON_GetNumberValue(cJSON_GetObjectItem(row, "us"));
  }
  return -1;
}

/* ---- output ---- */

static double tbps(double bytes, double us) { return bytes > 0 && us > 0 ? bytes / (us * 1e-6) / 1e12 : -1; }

static double attend_bytes(const Options *o, const Result *r) {
  return (double)r->B * o->Hkv * r->attended * o->D * 2 * (double)vxrt_dtype_size(o->kv);
}

static void print_row(const Options *o, const Result *r, const Peers *peers) {
  double ab = attend_bytes(o, r), sb = r->select_bytes, step_b = ab + (sb > 0 ? sb : 0);
  printf("%-12s B=%-3d N=%-6d", r->policy, r->B, r->N);
  /* tokens attended per row and KV head */
  printf(" %6.0f tok", r->attended);
  if (r->select_us >= 0)
    printf("  select %9.2f us %5.2f TB/s", r->select_us, tbps(sb, r->select_us));
  else
    printf("  select %9s    %5s     ", "-", "-");
  printf("  attend %9.2f us %5.2f TB/s  step %9.2f us %5.2f TB/s", r->attend_us, tbps(ab, r->attend_us),
         r->step_us, tbps(step_b, r->step_us));
  if (peers && peers->best > 0)
    printf("  (%.2f of best)", tbps(step_b, r->step_us) / peers->best);
  if (peers) {
    double sdpa = peer_us(peers, "torch SDPA", r->B, r->N);
    if (sdpa > 0)
      printf("  SDPA dense %.2f us: %.2fx", sdpa, sdpa / r->step_us);
  }
  putchar('\n');
}

static cJSON *result_json(const Options *o, const Result *r, const Peers *peers) {
  cJSON *j = cJSON_CreateObject();
  double ab = attend_bytes(o, r), sb = r->select_bytes, step_b = ab + (sb > 0 ? sb : 0);
  cJSON_AddStringToObject(j, "policy", r->policy);
  cJSON_AddNumberToObject(j, "B", r->B);
  cJSON_AddNumberToObject(j, "N", r->N);
  cJSON_AddNumberToObject(j, "attended_tokens", r->attended);
  const struct { const char *name; double us, bytes; } parts[] = {
      {"select", r->select_us, sb}, {"attend", r->attend_us, ab}, {"step", r->step_us, step_b}};
  for (size_t i = 0; i < 3; i++) {
    if (parts[i].us < 0)
      continue;
    cJSON *p = cJSON_AddObjectToObject(j, parts[i].name);
    cJSON_AddNumberToObject(p, "us", parts[i].us);
    if (parts[i].bytes >= 0) {
      cJSON_AddNumberToObject(p, "bytes", parts[i].bytes);
      cJSON_AddNumberToObject(p, "tbps", tbps(parts[i].bytes, parts[i].us));
      if (peers && peers->best > 0)
        cJSON_AddNumberToObject(p, "of_best", tbps(parts[i].bytes, parts[i].us) / peers->best);
    }
  }
  if (peers) {
    double sdpa = peer_us(peers, "torch SDPA", r->B, r->N);
    if (sdpa > 0)
      cJSON_AddNumberToObject(j, "sdpa_dense_us", sdpa);
  }
  return j;
}

static void print_json(const Options *o, const vxrt_device_info *di, const Result *res, int n, const Peers *peers) {
  cJSON *root = cJSON_CreateObject();
  time_t now = time(NULL);
  char date[32];
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  cJSON_AddStringToObject(root, "bench", "vx-bench");
  cJSON_AddStringToObject(root, "date", date);
  cJSON_AddStringToObject(root, "device", di->name);
  cJSON_AddNumberToObject(root, "Hkv", o->Hkv);
  cJSON_AddNumberToObject(root, "G", o->G);
  cJSON_AddNumberToObject(root, "D", o->D);
  cJSON_AddNumberToObject(root, "P", o->P);
  cJSON_AddStringToObject(root, "kv", vxrt_dtype_name(o->kv));
  cJSON_AddNumberToObject(root, "budget", o->budget);
  cJSON_AddNumberToObject(root, "iters", o->iters);
  if (peers && peers->best > 0) {
    cJSON_AddNumberToObject(root, "best_tbps", peers->best);
    cJSON_AddStringToObject(root, "best_method", peers->best_name ? peers->best_name : "?");
  }
  cJSON *arr = cJSON_AddArrayToObject(root, "results");
  for (int i = 0; i < n; i++)
    cJSON_AddItemToArray(arr, result_json(o, &res[i], peers));
  char *text = cJSON_PrintUnformatted(root);
  if (text) {
    printf("%s\n", text);
    FILE *f = o->json ? fopen(o->json, "w") : NULL;
    if (f) {
      fprintf(f, "%s\n", text);
      fclose(f);
    } else if (o->json) {
      fprintf(stderr, "vx-bench: cannot write '%s': %s\n", o->json, strerror(errno));
    }
  }
  free(text);
  cJSON_Delete(root);
}

int main(int argc, char **argv) {
  Options o;
  if (!parse_options(argc, argv, &o))
    return 2;
  Peers peers, *pp = NULL;
  if (o.peers) {
    if (!load_peers(o.peers, &peers))
      return 2;
    pp = &peers;
  }
  vxrt_device *dev = NULL;
  if (vxrt_device_open(o.device, 0, &dev)) {
    fprintf(stderr, "vx-bench: no %s device: %s\n", o.device == VXRT_CUDA ? "CUDA" : "CPU", vxrt_last_error());
    return o.device == VXRT_CUDA ? EXIT_NO_GPU : 1;
  }
  vxrt_device_info di;
  vxrt_device_get_info(dev, &di);
  for (int p = 0; p < o.npolicies; p++) {
    vxrt_policy *pol;
    vxrt_policy_info pi;
    if (!o.names[p][0] && !vxrt_policy_load_file(dev, o.paths[p], NULL, 0, &pol)) {
      if (!vxrt_policy_get_info(pol, &pi))
        snprintf(o.names[p], sizeof o.names[p], "%s", pi.name);
      vxrt_policy_free(pol);
    }
    if (!o.names[p][0])
      snprintf(o.names[p], sizeof o.names[p], "%s", o.paths[p]);
  }
  int total = o.npolicies * o.nB * o.nN, n = 0, failed = 0;
  Result *res = calloc((size_t)total, sizeof *res);
  if (pp)
    printf("peers: best %.2f TB/s (%s)\n", peers.best, peers.best_name ? peers.best_name : "?");
  for (int p = 0; p < o.npolicies; p++)
    for (int i = 0; i < o.nB; i++)
      for (int j = 0; j < o.nN; j++) {
        fprintf(stderr, "[%d/%d] %s B=%d N=%d\n", n + failed + 1, total, o.names[p], o.B[i], o.N[j]);
        if (!run_config(dev, &o, p, o.B[i], o.N[j], &res[n])) {
          failed++;
          continue;
        }
        print_row(&o, &res[n], pp);
        fflush(stdout);
        n++;
      }
  print_json(&o, &di, res, n, pp);
  free(res);
  if (pp)
    cJSON_Delete(peers.rows);
  vxrt_device_close(dev);
  return failed ? 1 : 0;
}
