/* run_policy.c - a first program against libvxrt: run a compiled sparse-attention policy on
 * the CPU over a synthetic request, and measure how far its output is from dense attention.
 *
 * Sits in examples/ for newcomers; it uses only the public API (runtime/vxrt.h) and plain C,
 * exactly as an engine would. It is a demonstration, not a benchmark or a test oracle: the
 * data are synthetic and the numbers say how a policy behaves on them, nothing more. It must
 * not reach into libvxrt's internals (exec.h, vxk.h): if something here needs them, the
 * public API is missing a call.
 *
 *   vxc stdlib/quest.vx -o quest.vxp            # compile a policy to an artifact
 *   run_policy quest.vxp budget=512             # run it; name=value overrides a param
 *   run_policy quest.vxp --prompt=16384 --steps=32 --seed=7
 *
 * Output: one line per decode step (tokens selected, density, relative error against dense
 * attention), then one JSON line:
 *   {"policy":"quest","T":8208,"budget":2048,"params":{"budget":2048},"steps":16,
 *    "mean_density":0.25,"mean_rel_err":...,"worst_rel_err":...}
 * "budget" is the policy's `budget` param when it has one, else null. Reading the error:
 * ||sparse - dense|| / ||dense|| over all query heads; a few percent means the selection
 * kept the tokens that carry the attention, about 1 or more means it missed them, or kept
 * only some (the synthetic needles below make the difference visible). Exit status 0 when every call
 * succeeded, 1 on a runtime error (its message on stderr), 2 on bad usage. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vxrt.h"

/* The shape of the synthetic model: one layer, 2 KV heads with G = 4 query heads each
 * (grouped-query attention), head dimension 64, pages of 16 tokens. Small enough to run in
 * well under a second, large enough that a policy has something to choose from. */
enum { LAYERS = 1, KV_HEADS = 2, G = 4, D = 64, P = 16, NEEDLES = 8 };

/* ------------------------------------------------------------------ synthetic data */

/* A seeded generator (splitmix64 and Box-Muller), so every run with the same seed sees the
 * same numbers on every machine: results can be compared between runs and policies. */
typedef struct Rng {
  uint64_t s;
  int have;     /* Box-Muller makes two normals at a time; the second waits here */
  double spare;
} Rng;

static uint64_t rng_u64(Rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in (0, 1): never 0, so log() below is finite. */
static double rng_unit(Rng *r) { return ((double)(rng_u64(r) >> 11) + 0.5) / 9007199254740992.0; }

static double rng_gauss(Rng *r) {
  if (r->have) {
    r->have = 0;
    return r->spare;
  }
  double a = sqrt(-2.0 * log(rng_unit(r))), b = 6.283185307179586 * rng_unit(r);
  r->spare = a * sin(b);
  r->have = 1;
  return a * cos(b);
}

/* The request: keys and values of every token, [T][KV_HEADS][D] f32 (the layout vxrt_append
 * takes), plus a "needle direction" per KV head that queries lean towards.
 *
 * Random keys alone make a poor demonstration: every token then scores about the same, dense
 * attention is a near-uniform average, and any selection looks equally (and uselessly)
 * wrong. Real attention is peaked, so a few needle tokens spread over the prompt get keys
 * along the needle direction: they dominate each query's attention. A good policy finds
 * them; a position-only policy (streaming) finds only those that fall in its window. */
typedef struct Data {
  int T;            /* tokens: prompt + decode steps */
  float *k, *v;     /* [T][KV_HEADS][D] */
  float dir[KV_HEADS][D];
} Data;

static void make_data(Data *d, int prompt, int steps, uint64_t seed) {
  Rng r = {seed, 0, 0};
  d->T = prompt + steps;
  size_t n = (size_t)d->T * KV_HEADS * D;
  d->k = malloc(n * sizeof(float));
  d->v = malloc(n * sizeof(float));
  if (!d->k || !d->v) {
    fprintf(stderr, "run_policy: out of memory\n");
    exit(1);
  }
  for (int h = 0; h < KV_HEADS; h++)   /* entries +-1: a direction of norm sqrt(D) */
    for (int c = 0; c < D; c++)
      d->dir[h][c] = rng_u64(&r) & 1 ? 1.0f : -1.0f;
  for (size_t i = 0; i < n; i++) {
    d->k[i] = (float)rng_gauss(&r);
    d->v[i] = (float)rng_gauss(&r);
  }
  /* Needles evenly spaced over the prompt: key = 1.5 * dir + noise. With queries near dir,
   * a needle's logit is about 1.5 * sqrt(D) = 12 against about 0 +- 1.4 for the others. */
  for (int j = 1; j <= NEEDLES; j++) {
    int t = (int)((long)prompt * j / (NEEDLES + 1));
    for (int h = 0; h < KV_HEADS; h++)
      for (int c = 0; c < D; c++)
        d->k[((size_t)t * KV_HEADS + h) * D + c] += 1.5f * d->dir[h][c];
  }
}

/* One decode step's queries, [KV_HEADS][G][D] (the layout vxrt_select and vxrt_attend take):
 * the needle direction plus independent noise for every query head. */
static void make_query(const Data *d, Rng *r, float *q) {
  for (int h = 0; h < KV_HEADS; h++)
    for (int g = 0; g < G; g++)
      for (int c = 0; c < D; c++)
        q[(h * G + g) * D + c] = d->dir[h][c] + (float)rng_gauss(r);
}

/* ------------------------------------------------------------------ dense reference */

/* Dense attention over tokens [0, T) in double precision, [KV_HEADS][G][D]: what the sparse
 * output is compared with. Logits are q . k / sqrt(D), as in the policies' attend kernels
 * (a policy with logit modifiers, such as examples/alibi.vx, differs from dense by design). */
static void dense_attention(const Data *d, int T, const float *q, double *out) {
  double *w = malloc((size_t)T * sizeof(double));
  if (!w) {
    fprintf(stderr, "run_policy: out of memory\n");
    exit(1);
  }
  for (int h = 0; h < KV_HEADS; h++)
    for (int g = 0; g < G; g++) {
      const float *qg = q + (h * G + g) * D;
      double mx = -INFINITY, sum = 0;
      for (int t = 0; t < T; t++) {
        const float *kt = d->k + ((size_t)t * KV_HEADS + h) * D;
        double dot = 0;
        for (int c = 0; c < D; c++)
          dot += (double)qg[c] * kt[c];
        w[t] = dot / sqrt((double)D);
        mx = w[t] > mx ? w[t] : mx;
      }
      for (int t = 0; t < T; t++)   /* subtract the maximum so exp() cannot overflow */
        sum += (w[t] = exp(w[t] - mx));
      double *o = out + (h * G + g) * D;
      memset(o, 0, D * sizeof(double));
      for (int t = 0; t < T; t++) {
        const float *vt = d->v + ((size_t)t * KV_HEADS + h) * D;
        for (int c = 0; c < D; c++)
          o[c] += w[t] / sum * vt[c];
      }
    }
  free(w);
}

/* ||a - b|| / ||b|| over n values. */
static double rel_err(const float *a, const double *b, int n) {
  double e = 0, s = 0;
  for (int i = 0; i < n; i++) {
    e += (a[i] - b[i]) * (a[i] - b[i]);
    s += b[i] * b[i];
  }
  return sqrt(e / (s > 0 ? s : 1));
}

/* ------------------------------------------------------------------ the program */

/* Every vxrt call returns a status; on failure vxrt_last_error() says what went wrong
 * ("policy quest has no parameter 'budgt' (it has: budget)"). An example may simply stop. */
static void check(vxrt_status s, const char *what) {
  if (s != VXRT_OK) {
    fprintf(stderr, "run_policy: %s: %s: %s\n", what, vxrt_status_name(s), vxrt_last_error());
    exit(1);
  }
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: run_policy POLICY.vxp [NAME=VALUE ...] [--prompt=N] [--steps=N] [--seed=N]\n"
          "  POLICY.vxp   a policy compiled by vxc (vxc stdlib/quest.vx -o quest.vxp)\n"
          "  NAME=VALUE   override a param of the policy at load time (budget=512)\n"
          "  --prompt=N   prompt tokens (default 8192); --steps=N decode steps (default 16)\n"
          "  --seed=N     seed of the synthetic data (default 1)\n"
          "  --help       show this help\n");
}

/* A bad argument: says which and why, then the usage; exit 2. */
static void bad_argument(const char *arg, const char *why) {
  fprintf(stderr, "run_policy: %s: '%s'\n", why, arg);
  usage(stderr);
  exit(2);
}

/* Parses a positive integer option value (arg is the whole argument, for the message). */
static long positive(const char *arg, const char *text) {
  char *end;
  long x = strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || x < 1 || x > (1L << 24))
    bad_argument(arg, "expected an integer from 1 to 16777216");
  return x;
}

/* A param's value: integers as integers (2000000000, not 2e+09), others to 9 digits. */
static void print_value(double v) {
  if (v == floor(v) && fabs(v) < 9007199254740992.0)
    printf("%.0f", v);
  else
    printf("%.9g", v);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
  if (argc < 2) {
    fputs("run_policy: no policy file given\n", stderr);
    usage(stderr);
    return 2;
  }
  if (argv[1][0] == '-')
    bad_argument(argv[1], "the first argument must be the policy file, not an option");
  const char *path = argv[1];
  int prompt = 8192, steps = 16;
  uint64_t seed = 1;

  /* Overrides are name/value pairs; the names point into argv, which outlives the load. */
  vxrt_param_override *ovr = calloc((size_t)argc, sizeof *ovr);
  int novr = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *eq = strchr(a, '=');
    if (!strncmp(a, "--prompt=", 9)) {
      prompt = (int)positive(a, a + 9);
    } else if (!strncmp(a, "--steps=", 8)) {
      steps = (int)positive(a, a + 8);
    } else if (!strncmp(a, "--seed=", 7)) {
      seed = (uint64_t)positive(a, a + 7);
    } else if (eq && eq != a && a[0] != '-') {
      char *end;
      double value = strtod(eq + 1, &end);
      if (eq[1] == '\0' || *end != '\0')
        bad_argument(a, "a param override is NAME=NUMBER");
      argv[i][eq - a] = '\0';                 /* split NAME=VALUE in place */
      ovr[novr].name = a;
      ovr[novr].value = value;
      novr++;
    } else if (a[0] == '-') {
      bad_argument(a, "unknown option");
    } else {
      bad_argument(a, "expected NAME=VALUE, --prompt=N, --steps=N or --seed=N");
    }
  }

  /* 1. A device. VXRT_CPU runs the artifact's host code (x86-64 shared object); the CUDA
   *    device opens and loads PTX, but running policies on it is not implemented yet. */
  vxrt_device *dev;
  check(vxrt_device_open(VXRT_CPU, 0, &dev), "vxrt_device_open");

  /* 2. The policy: validated, its host code loaded, the overrides applied. Parameters are
   *    load-time values; changing one needs no recompile, only another load. */
  vxrt_policy *pol;
  check(vxrt_policy_load_file(dev, path, ovr, novr, &pol), "vxrt_policy_load_file");
  vxrt_policy_info info;
  check(vxrt_policy_get_info(pol, &info), "vxrt_policy_get_info");

  /* 3. The paged KV cache, sized for one request of T tokens. Everything is allocated here,
   *    so appends never allocate. f32 keeps the comparison with dense exact; f16 or bf16
   *    would halve the memory and add rounding to the error printed below. */
  Data d;
  make_data(&d, prompt, steps, seed);
  int row_pages = (d.T + P - 1) / P;
  vxrt_cache_desc cd = {
      .layers = LAYERS, .kv_heads = KV_HEADS, .head_dim = D, .page_size = P,
      .kv_dtype = VXRT_F32, .max_pages = row_pages, .max_rows = 1, .max_row_pages = row_pages};
  vxrt_cache *cache;
  check(vxrt_cache_create(dev, &cd, &cache), "vxrt_cache_create");

  /* 4. The policy's state beside the cache: its page and token fields (pools shaped like
   *    the KV pools), row state, consts. This is where the policy's `require`s are checked
   *    against the cache's shape (lserve, for one, needs P to be a multiple of 16). */
  vxrt_state *st;
  check(vxrt_state_create(pol, cache, G, &st), "vxrt_state_create");

  /* 5. A row (one request), its prompt appended, then prefill: the policy summarises every
   *    page (Quest's key envelopes, ...) and computes its row state once. */
  int row;
  check(vxrt_row_open(cache, &row), "vxrt_row_open");
  check(vxrt_append(cache, row, 0, d.k, d.v, prompt), "vxrt_append (prompt)");
  check(vxrt_prefill(st, row, 0), "vxrt_prefill");

  /* 6. Decode. Per step and layer: append the new token's K/V, bring the policy's fields of
   *    its page up to date (summarise), select (scores and always-kept ranges), attend. */
  size_t sel_len = (size_t)KV_HEADS * G * row_pages * P;
  uint8_t *sel = malloc(sel_len);
  float q[KV_HEADS * G * D], out[KV_HEADS * G * D], lse[KV_HEADS * G];
  double ref[KV_HEADS * G * D];
  double sum_density = 0, sum_err = 0, worst_err = 0;
  Rng qrng = {seed ^ 0x5eedull, 0, 0};   /* queries: a stream of their own */
  if (!sel) {
    fprintf(stderr, "run_policy: out of memory\n");
    return 1;
  }
  printf("policy %s (%s), T = %d + %d steps, %d KV heads x G = %d, D = %d, P = %d\n", info.name,
         path, prompt, steps, KV_HEADS, G, D, P);
  for (int s = 0; s < steps; s++) {
    int T = prompt + s + 1;           /* tokens after this step's append */
    size_t at = (size_t)(T - 1) * KV_HEADS * D;
    make_query(&d, &qrng, q);
    check(vxrt_append(cache, row, 0, d.k + at, d.v + at, 1), "vxrt_append (decode)");
    check(vxrt_summarise(st, row, 0, T - 1), "vxrt_summarise");
    /* `sel` gets [KV_HEADS][G][row_pages * P] bytes, 1 where a query head attends to a token;
     * it is optional (NULL), the selection stays inside the state for vxrt_attend. */
    check(vxrt_select(st, row, 0, q, sel), "vxrt_select");
    check(vxrt_attend(st, row, 0, q, out, lse), "vxrt_attend");

    /* Density: tokens selected / tokens in the row, averaged over the query heads. A
     * policy that shares its selection across the group selects the same for each g. */
    long selected = 0;
    for (int hg = 0; hg < KV_HEADS * G; hg++)
      for (int t = 0; t < T; t++)
        selected += sel[(size_t)hg * row_pages * P + t];
    double per_head = (double)selected / (KV_HEADS * G), density = per_head / T;

    dense_attention(&d, T, q, ref);
    double err = rel_err(out, ref, KV_HEADS * G * D);
    printf("step %2d  T %6d  selected %8.1f tokens  density %.4f  rel err %.3e\n", s, T, per_head,
           density, err);
    sum_density += density;
    sum_err += err;
    worst_err = err > worst_err ? err : worst_err;
  }

  /* 7. The summary, one JSON line for scripts: the policy, the final row length, its budget
   *    and every param's value after overrides, and the step statistics. */
  printf("{\"policy\":\"%s\",\"T\":%d,\"budget\":", info.name, d.T);
  int ib;
  if (vxrt_policy_find_param(pol, "budget", &ib) == VXRT_OK) {
    vxrt_param_info pi;
    check(vxrt_policy_get_param(pol, ib, &pi), "vxrt_policy_get_param");
    print_value(pi.value);
  } else {
    printf("null");
  }
  printf(",\"params\":{");
  for (int i = 0; i < info.nparams; i++) {
    vxrt_param_info pi;
    check(vxrt_policy_get_param(pol, i, &pi), "vxrt_policy_get_param");
    printf("%s\"%s\":", i ? "," : "", pi.name);
    print_value(pi.value);
  }
  printf("},\"steps\":%d,\"mean_density\":%.6f,\"mean_rel_err\":%.6e,\"worst_rel_err\":%.6e}\n",
         steps, sum_density / steps, sum_err / steps, worst_err);

  /* 8. Teardown, children before parents: the state needs the policy and the cache, and a
   *    device closes only when nothing created on it is alive. */
  free(sel);
  free(d.k);
  free(d.v);
  vxrt_state_free(st);
  check(vxrt_row_close(cache, row), "vxrt_row_close");
  vxrt_cache_free(cache);
  vxrt_policy_free(pol);
  check(vxrt_device_close(dev), "vxrt_device_close");
  free(ovr);
  return 0;
}
