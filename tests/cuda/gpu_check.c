/* gpu_check.c - the GPU backend against the CPU backend, for any artifact with GPU kernels.
 *
 *   gpu_check ARTIFACT [--max-len N] [--steps N] [NAME=VALUE ...]
 *   gpu_check --vxc VXC --policy FILE.vx --out ARTIFACT --shape D=64,G=1,P=16,kv=f32
 *             [--shape ...] [--max-len N] [--steps N] [NAME=VALUE ...]
 *
 * For every shape the artifact has GPU kernels for (d128g4p16_bf16, ...): a cache of two
 * layers and two KV heads on each side, rows with lengths 1, P - 1, 3P + 5, 1003 and the
 * longest, max-len - P + 1 (default max-len 32768: partial last pages, a one-token row, a
 * long row that the steps, fewer than P, keep within one page count, so that the split-KV
 * plan of a captured graph stays that of the direct launches), prompts
 * appended from the host and prefilled (GPU: the summarise kernel), then decode steps with
 * new K/V and queries per layer:
 *   - CPU reference: vxrt_append, vxrt_summarise, vxrt_select, vxrt_attend per row and layer;
 *   - GPU "A": vxrt_batch_prepare, per layer vxrt_decode_append/select/attend, commit;
 *   - GPU "B": the same calls again on an identical state: must equal A bit for bit;
 *   - GPU "C": prefilled with vxrt_batch_prefill (A and B per row), the step's launches of
 *     both layers captured once in a CUDA graph (step 0) and replayed every step: must equal
 *     A bit for bit.
 * A's outputs must be within 1e-4 (relative L2 per row, f32 buffers) or 2e-2 (bf16 output
 * buffers, odd steps of f16/bf16 caches) of the CPU's, lse within ten times that (absolute);
 * selections must equal the CPU's except near-ties. The near-tie rule: the GPU sums scores
 * in another order than the CPU, so two pages whose scores differ by f32 rounding can trade
 * places at the budget boundary; a row's selection may therefore differ from the CPU's by
 * pages swapped one for one (the same number of tokens selected), at most
 * max(1, selected pages / 64) of them, and every such swap is printed. Finally the per-row
 * vxrt_select/vxrt_attend on CUDA (a batch of one) against the CPU's.
 * NAME=VALUE are parameter overrides for both sides (budget=256 makes quest sparse).
 * Prints PASS/FAIL lines and a summary; exit 0 = all passed, 1 = a failure, 77 = no GPU.
 */
#include <stdarg.h>

#include "gpu_common.h"

enum { L = 2, H = 2, NROWS = 5, MAX_OVR = 16 };

typedef struct Side {
  vxrt_device *dev;
  vxrt_policy *pol;
  vxrt_cache *cache;
  vxrt_state *st;
  vxrt_batch *batch;
  int rows[NROWS];
  uint64_t out[L], lse[L]; /* device outputs (GPU sides) */
} Side;

static int failures, checks;

static void report(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s ", ok ? "PASS" : "FAIL");
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
  checks++;
  failures += !ok;
}

static int ok_call(vxrt_status s, const char *what) {
  if (s) report(0, "%s: %s: %s", what, vxrt_status_name(s), vxrt_last_error());
  return s == VXRT_OK;
}

typedef struct Config {
  const char *artifact;
  int max_len, steps, novr;
  vxrt_param_override ovr[MAX_OVR];
} Config;

static void free_side(Side *s) {
  for (int l = 0; l < L; l++) {
    if (s->out[l]) vxrt_buffer_free(s->dev, s->out[l]);
    if (s->lse[l]) vxrt_buffer_free(s->dev, s->lse[l]);
  }
  vxrt_batch_free(s->batch);
  vxrt_state_free(s->st);
  vxrt_cache_free(s->cache);
  vxrt_policy_free(s->pol);
  memset(s, 0, sizeof *s);
}

/* A policy, cache, state and batch on dev with the rows' prompts appended and prefilled (per
 * row and layer, or with vxrt_batch_prefill when `batched`). */
static int make_side(vxrt_device *dev, const Config *c, const gpu_shape *sh, const int *lens, float *const *kv,
                     int batched, Side *s) {
  memset(s, 0, sizeof *s);
  s->dev = dev;
  int max_pages = NROWS, max_row = 0;
  for (int r = 0; r < NROWS; r++) {
    int pages = (lens[r] + c->steps + sh->P - 1) / sh->P;
    max_pages += pages;
    max_row = pages > max_row ? pages : max_row;
  }
  vxrt_cache_desc cd = {L, H, sh->D, sh->P, sh->kv, max_pages, NROWS, max_row};
  size_t hgd = (size_t)H * (size_t)sh->G * (size_t)sh->D;
  if (!ok_call(vxrt_policy_load_file(dev, c->artifact, c->ovr, c->novr, &s->pol), "policy load") ||
      !ok_call(vxrt_cache_create(dev, &cd, &s->cache), "cache") ||
      !ok_call(vxrt_state_create(s->pol, s->cache, sh->G, &s->st), "state") ||
      !ok_call(vxrt_batch_create(s->st, NROWS, &s->batch), "batch"))
    return 0;
  for (int r = 0; r < NROWS; r++) {
    if (!ok_call(vxrt_row_open(s->cache, &s->rows[r]), "row open")) return 0;
    for (int l = 0; l < L; l++)
      if (!ok_call(vxrt_append(s->cache, s->rows[r], l, kv[r], kv[r] + (size_t)lens[r] * H * sh->D, lens[r]), "prompt append") ||
          (!batched && !ok_call(vxrt_prefill(s->st, s->rows[r], l), "prefill")))
        return 0;
  }
  if (batched) {
    vxrt_stream *st = NULL;
    int ok = ok_call(vxrt_stream_create(dev, &st), "stream") && ok_call(vxrt_batch_set_rows(s->batch, s->rows, NROWS), "set rows") &&
             ok_call(vxrt_batch_prefill(s->batch, st), "batch prefill") && ok_call(vxrt_stream_sync(st), "sync");
    vxrt_stream_free(st);
    if (!ok) return 0;
  }
  for (int l = 0; l < L && dev != NULL; l++) {
    vxrt_device_info di;
    vxrt_device_get_info(dev, &di);
    if (di.kind != VXRT_CUDA) break;
    if (!ok_call(vxrt_buffer_alloc(dev, sizeof(float) * NROWS * hgd, &s->out[l]), "out buffer") ||
        !ok_call(vxrt_buffer_alloc(dev, sizeof(float) * NROWS * H * (size_t)sh->G, &s->lse[l]), "lse buffer"))
      return 0;
  }
  return ok_call(vxrt_batch_set_rows(s->batch, s->rows, NROWS), "set rows");
}

/* One step of both layers on a GPU side, with q/k/v in device buffers of dtype io. */
static int gpu_calls(Side *s, const uint64_t *q, const uint64_t *k, const uint64_t *v, vxrt_dtype io,
                     vxrt_stream *st, uint8_t **sel, size_t sel_bytes) {
  for (int l = 0; l < L; l++) {
    if (!ok_call(vxrt_decode_append(s->batch, l, (vxrt_dbuf){k[l], io}, (vxrt_dbuf){v[l], io}, st), "decode_append") ||
        !ok_call(vxrt_decode_select(s->batch, l, (vxrt_dbuf){q[l], io}, st), "decode_select"))
      return 0;
    for (int r = 0; sel && r < NROWS; r++)
      if (!ok_call(vxrt_batch_read_selection(s->batch, r, sel[l] + (size_t)r * sel_bytes), "read_selection")) return 0;
    if (!ok_call(vxrt_decode_attend(s->batch, l, (vxrt_dbuf){q[l], io}, (vxrt_dbuf){s->out[l], io},
                                    (vxrt_dbuf){s->lse[l], VXRT_F32}, st),
                 "decode_attend"))
      return 0;
  }
  return 1;
}

/* Relative L2 error of a against the reference b over n values. */
static double rel_err(const float *a, const float *b, size_t n) {
  double e = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    s += (double)b[i] * b[i];
  }
  return sqrt(e / (s > 0 ? s : 1e-30));
}

/* Downloads an output buffer of dtype io as f32. */
static void download_f32(vxrt_device *dev, uint64_t src, vxrt_dtype io, float *dst, size_t n) {
  if (io == VXRT_F32) {
    vxrt_buffer_download(dev, dst, src, sizeof(float) * n);
    return;
  }
  uint16_t *tmp = malloc(sizeof(uint16_t) * n);
  vxrt_buffer_download(dev, tmp, src, sizeof(uint16_t) * n);
  vxrt_convert_to_f32(io, tmp, dst, n);
  free(tmp);
}

/* The near-tie rule on one row's selection (bytes [H][G][tokens]): pages swapped one for one,
 * at most max(1, selected pages / 64). Returns 1 if acceptable; *swapped gets the count. */
static int selection_ok(const uint8_t *gpu, const uint8_t *cpu, size_t tokens, int P, int G, int *swapped,
                        int *differ) {
  int worst = 0, ok = 1;
  *differ = 0;
  for (int h = 0; h < H * G; h++) {
    const uint8_t *a = gpu + (size_t)h * tokens, *b = cpu + (size_t)h * tokens;
    int only_gpu = 0, only_cpu = 0, pages = 0;
    long na = 0, nb = 0;
    for (size_t p = 0; p * (size_t)P < tokens; p++) {
      int ia = 0, ib = 0;
      for (int t = 0; t < P; t++) {
        ia |= a[p * (size_t)P + (size_t)t];
        ib |= b[p * (size_t)P + (size_t)t];
        na += a[p * (size_t)P + (size_t)t];
        nb += b[p * (size_t)P + (size_t)t];
      }
      pages += ib;
      only_gpu += ia && !ib;
      only_cpu += ib && !ia;
    }
    *differ += only_gpu + only_cpu;
    int allowed = pages / 64 > 1 ? pages / 64 : 1;
    if (only_gpu || only_cpu) ok &= only_gpu == only_cpu && na == nb && only_gpu <= allowed;
    if (only_gpu > worst) worst = only_gpu;
    if (!only_gpu && !only_cpu && memcmp(a, b, tokens)) ok = 0; /* same pages, other tokens */
  }
  *swapped = worst;
  return ok;
}

static void run_shape(vxrt_device *gpu, vxrt_device *cpu, const Config *c, const gpu_shape *sh) {
  printf("== shape %s\n", sh->name);
  int longest = (c->max_len / sh->P - 1) * sh->P + 1;
  int cand[NROWS] = {1, sh->P - 1 > 0 ? sh->P - 1 : 2, 3 * sh->P + 5, 1003, longest};
  int lens[NROWS];
  for (int r = 0; r < NROWS; r++) lens[r] = cand[r] <= longest ? cand[r] : longest - r;
  size_t D = (size_t)sh->D, G = (size_t)sh->G, hd = H * D, hgd = H * G * D, hg = H * G;
  uint64_t seed = 1234;
  float *prompt[NROWS];
  for (int r = 0; r < NROWS; r++) {
    prompt[r] = malloc(sizeof(float) * 2 * (size_t)lens[r] * hd);
    gpu_fill(prompt[r], 2 * (size_t)lens[r] * hd, &seed);
  }
  Side ref, A, B, C;
  memset(&B, 0, sizeof B);
  memset(&C, 0, sizeof C);
  vxrt_stream *st = NULL;
  vxrt_graph *graphs[2] = {NULL, NULL}; /* by the io dtype baked into the launches */
  int ready = make_side(cpu, c, sh, lens, prompt, 0, &ref) && make_side(gpu, c, sh, lens, prompt, 0, &A) &&
              make_side(gpu, c, sh, lens, prompt, 0, &B) && make_side(gpu, c, sh, lens, prompt, 1, &C) &&
              ok_call(vxrt_stream_create(gpu, &st), "stream");
  for (int r = 0; r < NROWS; r++) free(prompt[r]);
  size_t tokens = 0;
  vxrt_cache_info ci;
  if (ready) {
    vxrt_cache_get_info(ref.cache, &ci);
    tokens = (size_t)ci.desc.max_row_pages * (size_t)sh->P;
  }
  size_t sel_bytes = hg * tokens;
  uint64_t q[L] = {0}, k[L] = {0}, v[L] = {0};
  for (int l = 0; l < L && ready; l++)
    ready = ok_call(vxrt_buffer_alloc(gpu, sizeof(float) * NROWS * hgd, &q[l]), "q buffer") &&
            ok_call(vxrt_buffer_alloc(gpu, sizeof(float) * NROWS * hd, &k[l]), "k buffer") &&
            ok_call(vxrt_buffer_alloc(gpu, sizeof(float) * NROWS * hd, &v[l]), "v buffer");
  float *qf = malloc(sizeof(float) * L * NROWS * hgd), *kf = malloc(sizeof(float) * L * NROWS * hd);
  float *vf = malloc(sizeof(float) * L * NROWS * hd), *ro = malloc(sizeof(float) * L * NROWS * hgd);
  float *rl = malloc(sizeof(float) * L * NROWS * hg), *go = malloc(sizeof(float) * NROWS * hgd);
  float *gl = malloc(sizeof(float) * NROWS * hg);
  uint8_t *ref_sel = malloc(sel_bytes ? L * NROWS * sel_bytes : 1), *gpu_sel[L];
  for (int l = 0; l < L; l++) gpu_sel[l] = malloc(sel_bytes ? NROWS * sel_bytes : 1);
  for (int step = 0; step < c->steps && ready; step++) {
    vxrt_dtype io = sh->kv != VXRT_F32 && step % 2 ? VXRT_BF16 : VXRT_F32;
    double tol = io == VXRT_BF16 ? 2e-2 : 1e-4;
    gpu_fill(qf, L * NROWS * hgd, &seed);
    gpu_fill(kf, L * NROWS * hd, &seed);
    gpu_fill(vf, L * NROWS * hd, &seed);
    for (int l = 0; l < L; l++) {
      /* the device copies, in io */
      size_t es = vxrt_dtype_size(io);
      unsigned char *tmp = malloc(es * NROWS * hgd);
      const float *src[3] = {qf + l * NROWS * hgd, kf + l * NROWS * hd, vf + l * NROWS * hd};
      size_t n[3] = {NROWS * hgd, NROWS * hd, NROWS * hd};
      uint64_t dst[3] = {q[l], k[l], v[l]};
      for (int i = 0; i < 3; i++) {
        vxrt_convert_from_f32(io, src[i], tmp, n[i]);
        vxrt_buffer_upload(gpu, dst[i], tmp, es * n[i]);
      }
      free(tmp);
    }
    /* CPU reference, per row and layer. */
    for (int l = 0; l < L && ready; l++)
      for (int r = 0; r < NROWS && ready; r++) {
        int64_t len;
        vxrt_row_length(ref.cache, ref.rows[r], l, &len);
        size_t at = (size_t)l * NROWS + (size_t)r;
        ready = ok_call(vxrt_append(ref.cache, ref.rows[r], l, kf + at * hd, vf + at * hd, 1), "cpu append") &&
                ok_call(vxrt_summarise(ref.st, ref.rows[r], l, len), "cpu summarise") &&
                ok_call(vxrt_select(ref.st, ref.rows[r], l, qf + at * hgd, ref_sel + at * sel_bytes), "cpu select") &&
                ok_call(vxrt_attend(ref.st, ref.rows[r], l, qf + at * hgd, ro + at * hgd, rl + at * hg), "cpu attend");
      }
    /* GPU A (with selections read back), B, and C through the graph. */
    ready = ready && ok_call(vxrt_batch_prepare(A.batch, 1, st), "prepare A") &&
            gpu_calls(&A, q, k, v, io, st, gpu_sel, sel_bytes) && ok_call(vxrt_stream_sync(st), "sync A") &&
            ok_call(vxrt_batch_commit(A.batch), "commit A");
    ready = ready && ok_call(vxrt_batch_prepare(B.batch, 1, st), "prepare B") &&
            gpu_calls(&B, q, k, v, io, st, NULL, 0) && ok_call(vxrt_batch_commit(B.batch), "commit B");
    /* C: captured the first time a buffer dtype is used, replayed at every later step. */
    vxrt_graph **graph = &graphs[io == VXRT_BF16];
    ready = ready && ok_call(vxrt_batch_prepare(C.batch, 1, st), "prepare C");
    if (ready && !*graph)
      ready = ok_call(vxrt_graph_begin(st), "graph begin") && gpu_calls(&C, q, k, v, io, st, NULL, 0) &&
              ok_call(vxrt_graph_end(st, graph), "graph end");
    ready = ready && ok_call(vxrt_graph_launch(*graph, st), "graph launch") && ok_call(vxrt_stream_sync(st), "sync C") &&
            ok_call(vxrt_batch_commit(C.batch), "commit C");
    if (!ready) break;
    for (int l = 0; l < L; l++) {
      double worst = 0, worst_lse = 0;
      int swaps = 0, sel_ok = 1, ab = 1, ac = 1, differ = 0;
      download_f32(gpu, A.out[l], io, go, NROWS * hgd);
      vxrt_buffer_download(gpu, gl, A.lse[l], sizeof(float) * NROWS * hg);
      for (int r = 0; r < NROWS; r++) {
        size_t at = (size_t)l * NROWS + (size_t)r;
        double e = rel_err(go + r * hgd, ro + at * hgd, hgd);
        worst = e > worst ? e : worst;
        for (size_t i = 0; i < hg; i++) {
          double d = fabs((double)gl[r * hg + i] - rl[at * hg + i]);
          worst_lse = d > worst_lse ? d : worst_lse;
        }
        int sw, d;
        int ok = selection_ok(gpu_sel[l] + r * sel_bytes, ref_sel + at * sel_bytes, tokens, sh->P, sh->G, &sw, &d);
        differ += d;
        if (sw) printf("  near-tie: step %d layer %d row %d: %d page(s) swapped against the CPU\n", step, l, r, sw);
        sel_ok &= ok;
        swaps += sw;
      }
      size_t ob = NROWS * hgd * vxrt_dtype_size(io), lb = NROWS * hg * sizeof(float);
      unsigned char *x = malloc(ob), *y = malloc(ob);
      Side *other[2] = {&B, &C};
      int *same[2] = {&ab, &ac};
      for (int i = 0; i < 2; i++) {
        vxrt_buffer_download(gpu, x, A.out[l], ob);
        vxrt_buffer_download(gpu, y, other[i]->out[l], ob);
        *same[i] = memcmp(x, y, ob) == 0;
        vxrt_buffer_download(gpu, x, A.lse[l], lb);
        vxrt_buffer_download(gpu, y, other[i]->lse[l], lb);
        *same[i] &= memcmp(x, y, lb) == 0;
      }
      free(x);
      free(y);
      report(worst <= tol && worst_lse <= tol * 10, "%s step %d layer %d (%s buffers): output rel err %.2e, lse abs err %.2e (tol %.0e)",
             sh->name, step, l, vxrt_dtype_name(io), worst, worst_lse, tol);
      report(sel_ok, "%s step %d layer %d: selections equal the CPU's (%d near-tie swaps; %d (head, page) pairs differ)",
             sh->name, step, l, swaps, differ);
      report(ab, "%s step %d layer %d: two runs bit-identical", sh->name, step, l);
      report(ac, "%s step %d layer %d: graph replay (of a state prefilled by vxrt_batch_prefill) equals direct launches bit for bit",
             sh->name, step, l);
    }
  }
  /* The per-row calls on CUDA (a batch of one) against the CPU's, on the last row. */
  if (ready) {
    int r = NROWS - 1;
    float *o1 = malloc(sizeof(float) * hgd), *o2 = malloc(sizeof(float) * hgd);
    float *l1 = malloc(sizeof(float) * hg), *l2 = malloc(sizeof(float) * hg);
    uint8_t *s1 = malloc(sel_bytes), *s2 = malloc(sel_bytes);
    int sw = 0, d = 0;
    if (ok_call(vxrt_select(A.st, A.rows[r], 0, qf, s1), "per-row gpu select") &&
        ok_call(vxrt_attend(A.st, A.rows[r], 0, qf, o1, l1), "per-row gpu attend") &&
        ok_call(vxrt_select(ref.st, ref.rows[r], 0, qf, s2), "per-row cpu select") &&
        ok_call(vxrt_attend(ref.st, ref.rows[r], 0, qf, o2, l2), "per-row cpu attend")) {
      report(rel_err(o1, o2, hgd) <= 1e-4 && selection_ok(s1, s2, tokens, sh->P, sh->G, &sw, &d),
             "%s per-row vxrt_select/vxrt_attend on CUDA: rel err %.2e, %d near-tie swaps", sh->name,
             rel_err(o1, o2, hgd), sw);
    }
    free(o1), free(o2), free(l1), free(l2), free(s1), free(s2);
  }
  vxrt_graph_free(graphs[0]);
  vxrt_graph_free(graphs[1]);
  vxrt_stream_free(st);
  for (int l = 0; l < L; l++) {
    if (q[l]) vxrt_buffer_free(gpu, q[l]);
    if (k[l]) vxrt_buffer_free(gpu, k[l]);
    if (v[l]) vxrt_buffer_free(gpu, v[l]);
    free(gpu_sel[l]);
  }
  free(qf), free(kf), free(vf), free(ro), free(rl), free(go), free(gl), free(ref_sel);
  free_side(&ref);
  free_side(&A);
  free_side(&B);
  free_side(&C);
}

int main(int argc, char **argv) {
  Config c = {NULL, 32768, 4, 0, {{0}}};
  const char *vxc = NULL, *policy = NULL, *shapes[GPU_MAX_SHAPES];
  int nshapes = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--max-len") && next) c.max_len = atoi(argv[++i]);
    else if (!strcmp(a, "--steps") && next) c.steps = atoi(argv[++i]);
    else if (!strcmp(a, "--vxc") && next) vxc = argv[++i];
    else if (!strcmp(a, "--policy") && next) policy = argv[++i];
    else if (!strcmp(a, "--out") && next) c.artifact = argv[++i];
    else if (!strcmp(a, "--shape") && next && nshapes < GPU_MAX_SHAPES) shapes[nshapes++] = argv[++i];
    else if (strchr(a, '=') && a[0] != '-' && c.novr < MAX_OVR) {
      char *eq = strchr(a, '=');
      *eq = '\0';
      c.ovr[c.novr++] = (vxrt_param_override){a, atof(eq + 1)};
    } else if (a[0] != '-' && !c.artifact) c.artifact = a;
    else {
      fprintf(stderr, "usage: gpu_check ARTIFACT [--max-len N] [--steps N] [NAME=VALUE ...]\n"
                      "       gpu_check --vxc VXC --policy FILE.vx --out ARTIFACT --shape D=..,G=..,P=..,kv=.. ...\n");
      return 2;
    }
  }
  if (!c.artifact || c.max_len < 64 || c.steps < 1 || c.steps > 15 || (vxc && (!policy || !nshapes))) {
    fprintf(stderr, "gpu_check: need an artifact (or --vxc, --policy, --out and --shape), --max-len >= 64, "
                    "--steps 1..15\n");
    return 2;
  }
  vxrt_device *gpu = gpu_open();
  if (!gpu) return GPU_SKIP;
  vxrt_device *cpu = NULL;
  vxrt_device_open(VXRT_CPU, 0, &cpu);
  if (vxc && gpu_compile(vxc, policy, shapes, nshapes, c.artifact) != 0) {
    printf("FAIL: vxc could not compile %s\n", policy);
    return 1;
  }
  gpu_shape sh[GPU_MAX_SHAPES];
  int n = gpu_artifact_shapes(c.artifact, sh, GPU_MAX_SHAPES);
  if (!n) return 1;
  for (int i = 0; i < n; i++) run_shape(gpu, cpu, &c, &sh[i]);
  vxrt_device_close(cpu);
  vxrt_device_close(gpu);
  printf("%s: %d checks, %d failed (%s, max-len %d, %d steps)\n", failures ? "FAIL" : "PASS", checks, failures,
         c.artifact, c.max_len, c.steps);
  return failures != 0;
}
