/* main.c - vx-serve's command line: `generate` (prompt in, text and tokens/s out) and `eval`
 * (eval.c), the options they share, and the setup behind them (model, tokenizer, policies,
 * attention backend, engine). The only file of runtime/serve/ besides eval.c that prints
 * or chooses exit codes: 0 ok, 1 a runtime or input error, 2 bad usage. Policies given as
 * .vx sources are compiled by running the vxc binary (the compiler's one pipeline), found
 * next to vx-serve in the build tree, through $VXC or --vxc; vx-serve itself links libvxrt
 * only, never the compiler or LLVM. */
#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http.h"
#include "serve.h"
#include "util.h"

extern char **environ;

#ifndef VX_STDLIB_DIR
#define VX_STDLIB_DIR "stdlib"
#endif

void serve_opts_defaults(serve_opts *o) {
  memset(o, 0, sizeof *o);
  o->dense_layers = "0";
  o->page_size = 16;
  o->kv_dtype = VXRT_F32;
  o->batch = 4;
  o->chunk = 512;
  o->seed = 1;
}

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > hi) {
    fprintf(stderr, "vx-serve: %s expects an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, s);
    return -1;
  }
  *out = v;
  return 0;
}

int serve_common_option(serve_opts *o, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  static const char *const with_value[] = {"--model", "--tokenizer", "--policy", "--dense-policy",
                                           "--vxc", "--dense-layers", "--param", "--page-size",
                                           "--kv-dtype", "--batch", "--chunk", "--seed",
                                           "--device", "--attn"};
  int known = 0;
  for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
    known |= !strcmp(a, with_value[k]);
  if (!known)
    return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "vx-serve: %s needs a value\n", a);
    return -1;
  }
  const char *v = argv[++*i];
  long n;
  if (!strcmp(a, "--model")) {
    o->model = v;
  } else if (!strcmp(a, "--tokenizer")) {
    o->tokenizer = v;
  } else if (!strcmp(a, "--policy")) {
    o->policy = v;
  } else if (!strcmp(a, "--dense-policy")) {
    o->dense_policy = v;
  } else if (!strcmp(a, "--vxc")) {
    o->vxc = v;
  } else if (!strcmp(a, "--dense-layers")) {
    o->dense_layers = v;
  } else if (!strcmp(a, "--param")) {
    const char *eq = strchr(v, '=');
    char *end;
    if (!eq || eq == v || o->nparams == SERVE_MAX_PARAMS) {
      fprintf(stderr, "vx-serve: --param expects NAME=VALUE, got '%s'\n", v);
      return -1;
    }
    argv[*i][eq - v] = '\0'; /* NAME=VALUE split in place; argv outlives the run */
    o->params[o->nparams].name = v;
    o->params[o->nparams].value = strtod(eq + 1, &end);
    if (!eq[1] || *end) {
      fprintf(stderr, "vx-serve: --param %s: '%s' is not a number\n", v, eq + 1);
      return -1;
    }
    o->nparams++;
  } else if (!strcmp(a, "--page-size")) {
    if (parse_int(a, v, 1, 4096, &n))
      return -1;
    o->page_size = (int)n;
  } else if (!strcmp(a, "--kv-dtype")) {
    if (!strcmp(v, "f32"))
      o->kv_dtype = VXRT_F32;
    else if (!strcmp(v, "f16"))
      o->kv_dtype = VXRT_F16;
    else if (!strcmp(v, "bf16"))
      o->kv_dtype = VXRT_BF16;
    else {
      fprintf(stderr, "vx-serve: --kv-dtype expects f32, f16 or bf16, got '%s'\n", v);
      return -1;
    }
  } else if (!strcmp(a, "--device")) {
    if (!strcmp(v, "cpu"))
      o->device = VXRT_CPU;
    else if (!strcmp(v, "cuda"))
      o->device = VXRT_CUDA;
    else {
      fprintf(stderr, "vx-serve: --device expects cpu or cuda, got '%s'\n", v);
      return -1;
    }
  } else if (!strcmp(a, "--attn")) {
    if (!strcmp(v, "batch"))
      o->attn = SERVE_ATTN_BATCH;
    else if (!strcmp(v, "rows"))
      o->attn = SERVE_ATTN_ROWS;
    else {
      fprintf(stderr, "vx-serve: --attn expects rows or batch, got '%s'\n", v);
      return -1;
    }
  } else if (!strcmp(a, "--batch")) {
    if (parse_int(a, v, 1, 1024, &n))
      return -1;
    o->batch = (int)n;
  } else if (!strcmp(a, "--chunk")) {
    if (parse_int(a, v, 1, 65536, &n))
      return -1;
    o->chunk = (int)n;
  } else if (!strcmp(a, "--seed")) {
    if (parse_int(a, v, 0, LONG_MAX, &n))
      return -1;
    o->seed = (uint64_t)n;
  }
  return 1;
}

/* ------------------------------------------------------------------ policies */

static int is_file(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The vxc to run: --vxc, $VXC, vxc beside vx-serve or at the build tree's top, then $PATH. */
static const char *find_vxc(const serve_opts *o, char *buf, size_t cap) {
  if (o->vxc)
    return o->vxc;
  const char *env = getenv("VXC");
  if (env && *env)
    return env;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      static const char *const rel[] = {"vxc", "../vxc", "../../vxc"};
      for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        int k = snprintf(buf, cap, "%s/%s", exe, rel[i]);
        if (k > 0 && (size_t)k < cap && access(buf, X_OK) == 0)
          return buf;
      }
    }
  }
  return "vxc";
}

/* vxc's arguments for src: -O2 (fast host kernels), and on a GPU its kernels for the target
 * and the model's shape (head dim, query heads per KV head, page size, KV dtype). */
static void compiler_args(const serve_ctx *x, const char *vxc, const char *src, const char *out,
                          char *shape, size_t cap, char **args) {
  int n = 0;
  args[n++] = (char *)vxc;
  args[n++] = "-O2";
  if (x->o.device == VXRT_CUDA) {
    vxrt_device_info di;
    bool sm90 = vxrt_device_get_info(x->dev, &di) != VXRT_OK || di.cc_major >= 9;
    const model_config *c = &x->m->cfg;
    snprintf(shape, cap, "D=%d,G=%d,P=%d,kv=%s", c->head_dim, c->heads / c->kv_heads,
             x->o.page_size, vxrt_dtype_name((vxrt_dtype)x->o.kv_dtype));
    args[n++] = "--target";
    args[n++] = sm90 ? "sm_90" : "sm_80";
    args[n++] = "--shape";
    args[n++] = shape;
  }
  args[n++] = (char *)src;
  args[n++] = "-o";
  args[n++] = (char *)out;
  args[n] = NULL;
}

static int compile_vx(const serve_ctx *x, const char *src, char *out_path, size_t cap) {
  const serve_opts *o = &x->o;
  char vbuf[PATH_MAX];
  const char *vxc = find_vxc(o, vbuf, sizeof vbuf);
  const char *tmp = getenv("TMPDIR");
  snprintf(out_path, cap, "%s/vx-serve-XXXXXX.vxp", tmp && *tmp ? tmp : "/tmp");
  int fd = mkstemps(out_path, 4);
  if (fd < 0) {
    fprintf(stderr, "vx-serve: cannot make a temporary file for the compiled policy: %s\n",
            strerror(errno));
    return -1;
  }
  close(fd);
  char shape[96], *args[12];
  compiler_args(x, vxc, src, out_path, shape, sizeof shape, args);
  pid_t pid;
  int rc = posix_spawnp(&pid, vxc, NULL, NULL, args, environ), status = 0;
  if (rc != 0) {
    fprintf(stderr, "vx-serve: cannot run the compiler '%s' for %s: %s (build vxc, or pass "
            "--vxc PATH or a compiled .vxp)\n", vxc, src, strerror(rc));
    unlink(out_path);
    return -1;
  }
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "vx-serve: %s failed to compile %s (exit status %d; its messages are above)\n",
            vxc, src, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    unlink(out_path);
    return -1;
  }
  return 0;
}

int serve_load_policy(serve_ctx *x, const char *spec, const vxrt_param_override *ovr, int novr,
                      vxrt_policy **out) {
  char path[PATH_MAX], tmp[PATH_MAX];
  const char *file = spec;
  if (!strchr(spec, '/') && !strchr(spec, '.')) { /* a stdlib name: quest, dense, ... */
    const char *dir = getenv("VX_STDLIB");
    snprintf(path, sizeof path, "%s/%s.vx", dir && *dir ? dir : VX_STDLIB_DIR, spec);
    if (!is_file(path)) {
      fprintf(stderr, "vx-serve: policy '%s': no file %s (give a .vx or .vxp path)\n", spec,
              path);
      return -1;
    }
    file = path;
  }
  if (!is_file(file)) {
    fprintf(stderr, "vx-serve: policy file '%s' not found\n", file);
    return -1;
  }
  int compiled = serve_ends_with(file, ".vx");
  if (compiled && compile_vx(x, file, tmp, sizeof tmp) != 0)
    return -1;
  vxrt_status s = vxrt_policy_load_file(x->dev, compiled ? tmp : file, ovr, novr, out);
  if (compiled)
    unlink(tmp);
  if (s != VXRT_OK) {
    fprintf(stderr, "vx-serve: policy '%s': %s: %s\n", spec, vxrt_status_name(s),
            vxrt_last_error());
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ setup */

int serve_parse_dense_layers(serve_ctx *x) {
  int L = x->m->cfg.layers;
  const char *s = x->o.dense_layers;
  x->dense_layer = calloc((size_t)L, 1);
  if (!x->dense_layer)
    return -1;
  if (!strcmp(s, "none") || !*s)
    return 0;
  if (!strcmp(s, "all")) {
    memset(x->dense_layer, 1, (size_t)L);
    return 0;
  }
  for (const char *p = s; *p;) {
    char *end;
    long a = strtol(p, &end, 10), b = a;
    if (end == p)
      goto bad;
    if (*end == '-') {
      p = end + 1;
      b = strtol(p, &end, 10);
      if (end == p)
        goto bad;
    }
    if (a < 0 || b >= L || a > b) {
      fprintf(stderr, "vx-serve: --dense-layers '%s': layer out of range (the model has layers "
              "0-%d)\n", s, L - 1);
      return -1;
    }
    for (long i = a; i <= b; i++)
      x->dense_layer[i] = 1;
    if (*end == ',')
      end++;
    else if (*end)
      goto bad;
    p = end;
  }
  return 0;
bad:
  fprintf(stderr, "vx-serve: --dense-layers expects a list like 0,1 or 0-2, 'none' or 'all'; "
          "got '%s'\n", s);
  return -1;
}

int serve_rebuild(serve_ctx *x, vxrt_policy *policy) {
  char err[MODEL_ERR_LEN];
  engine_free(x->eng);
  x->eng = NULL;
  if (x->attn)
    x->attn->ops->destroy(x->attn);
  x->attn = NULL;
  attn_config ac = {.page_size = x->o.page_size, .kv_dtype = x->o.kv_dtype,
                    .max_rows = x->o.batch, .max_row_tokens = x->m->cfg.ctx,
                    .max_pages = x->o.kv_pages, .dense_layer = x->dense_layer};
  int rc;
  /* on a GPU the per-row path is the one validated on the H200 (docs/serving.md); the
   * batched one runs there only when asked for, until it has been */
  bool rows = x->o.attn == SERVE_ATTN_ROWS || (x->o.attn == SERVE_ATTN_AUTO && x->o.device == VXRT_CUDA);
  if (rows) {
    rc = attn_cpu_create(x->dev, policy, x->dense, &x->m->cfg, &ac, &x->attn, err);
  } else {
    rc = attn_batch_create(x->dev, policy, x->dense, &x->m->cfg, &ac, &x->attn, err);
    if (rc != 0 && x->o.attn == SERVE_ATTN_AUTO) {
      fprintf(stderr, "vx-serve: attention per row (the batched backend: %s)\n", err);
      rc = attn_cpu_create(x->dev, policy, x->dense, &x->m->cfg, &ac, &x->attn, err);
    }
  }
  if (rc != 0 || engine_create(x->m, x->attn, x->o.batch, x->o.chunk, &x->eng, err) != 0) {
    fprintf(stderr, "vx-serve: %s\n", err);
    return -1;
  }
  return 0;
}

int serve_setup(serve_ctx *x, const char *cmd) {
  char err[MODEL_ERR_LEN];
  if (!x->o.model) {
    fprintf(stderr, "vx-serve %s: --model PATH is required\n", cmd);
    return -1;
  }
  if (model_load(x->o.model, x->o.seed, &x->m, err) != 0 ||
      tokenizer_load(x->o.tokenizer, &x->m->cfg, &x->tok, err) != 0) {
    fprintf(stderr, "vx-serve: %s\n", err);
    return -1;
  }
  if (serve_parse_dense_layers(x) != 0)
    return -1;
  vxrt_status s = vxrt_device_open((vxrt_device_kind)x->o.device, 0, &x->dev);
  if (s != VXRT_OK) {
    fprintf(stderr, "vx-serve: cannot open the %s device: %s\n",
            x->o.device == VXRT_CUDA ? "CUDA" : "CPU", vxrt_last_error());
    return -1;
  }
  if (serve_load_policy(x, x->o.dense_policy ? x->o.dense_policy : "dense", NULL, 0, &x->dense))
    return -1;
  if (x->o.policy &&
      serve_load_policy(x, x->o.policy, x->o.params, x->o.nparams, &x->policy) != 0)
    return -1;
  if (!x->o.policy && x->o.nparams) {
    fprintf(stderr, "vx-serve: --param needs a --policy\n");
    return -1;
  }
  vxrt_policy_info pi;
  if (x->policy && vxrt_policy_get_info(x->policy, &pi) == VXRT_OK)
    snprintf(x->policy_name, sizeof x->policy_name, "%s", pi.name);
  else
    snprintf(x->policy_name, sizeof x->policy_name, "dense");
  return serve_rebuild(x, x->policy);
}

void serve_teardown(serve_ctx *x) {
  engine_free(x->eng);
  if (x->attn)
    x->attn->ops->destroy(x->attn);
  vxrt_policy_free(x->policy);
  vxrt_policy_free(x->dense);
  if (x->dev)
    vxrt_device_close(x->dev);
  tokenizer_free(x->tok);
  model_free(x->m);
  free(x->dense_layer);
}

/* ------------------------------------------------------------------ generate */

/* OpenBLAS's sgemm at the shapes of one prefill chunk's matrix products (M = chunk rows
 * against each weight matrix): the reference rate prefill is measured against. */
static double gemm_reference(const model_config *c, int M) {
  int qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
  int shapes[][2] = {{qd, c->dim}, {kd, c->dim}, {kd, c->dim}, {c->dim, qd},
                     {c->hidden, c->dim}, {c->hidden, c->dim}, {c->dim, c->hidden}};
  int maxn = c->hidden > qd ? c->hidden : qd, maxk = maxn > c->dim ? maxn : c->dim;
  float *a = calloc((size_t)M * maxk, sizeof(float));
  float *b = calloc((size_t)maxn * maxk, sizeof(float));
  float *y = calloc((size_t)M * maxn, sizeof(float));
  if (!a || !b || !y) {
    free(a);
    free(b);
    free(y);
    return 0;
  }
  for (size_t i = 0; i < (size_t)M * maxk; i++)
    a[i] = (float)((i * 7919) % 1000) * 1e-3f;
  for (size_t i = 0; i < (size_t)maxn * maxk; i++)
    b[i] = (float)((i * 104729) % 1000) * 1e-3f;
  double flops = 0, t0 = serve_now();
  int reps = 0;
  do {
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      int n = shapes[s][0], k = shapes[s][1];
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, n, k, 1.0f, a, k, b, k, 0.0f, y, n);
      flops += 2.0 * M * n * k;
    }
    reps++;
  } while (serve_now() - t0 < 1.0 || reps < 3);
  double rate = flops / (serve_now() - t0);
  free(a);
  free(b);
  free(y);
  return rate;
}

static char *read_text_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "vx-serve: cannot open prompt file '%s': %s\n", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  size_t k;
  while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
    n += k;
    if (n == cap) {
      char *nb = realloc(buf, cap *= 2);
      if (!nb)
        free(buf);
      buf = nb;
    }
  }
  fclose(f);
  *len = n;
  return buf;
}

static void generate_usage(FILE *f) {
  fprintf(f,
          "usage: vx-serve generate --model PATH [--tokenizer PATH] [--policy P] [options]\n"
          "  --prompt TEXT | --prompt-file PATH   (repeatable: the prompts share decode steps,\n"
          "                                        --batch at a time; none: from BOS alone)\n"
          "  -n N                tokens to generate per prompt (default 64)\n"
          "  --temperature T     0 = greedy (default); --top-k K; --top-p P; --seed N\n"
          "  --stop ID           a token id that ends generation (repeatable; default: the\n"
          "                      model's EOS/BOS where it has them); --ignore-eos: none\n"
          "  --show-tokens       print the generated token ids after the text\n"
          "  --gemm-ref          also measure OpenBLAS sgemm at the model's shapes (FLOP rate)\n"
          "  --policy P          a .vxp artifact, a .vx file (compiled by vxc) or a stdlib name;\n"
          "                      absent: dense attention everywhere\n"
          "  --param NAME=VALUE  override a policy parameter (repeatable)\n"
          "  --dense-layers L    layers kept dense: list (0,1), ranges (0-2), none, all\n"
          "                      (default 0)\n"
          "  --page-size N (16)  --kv-dtype f32|f16|bf16 (f32)  --batch N (4)  --chunk N (512)\n"
          "  --dense-policy P    the dense policy (default: stdlib dense)  --vxc PATH\n"
          "  --device cpu|cuda   where attention runs (default cpu); cuda compiles the policies'\n"
          "                      GPU kernels for the model's shape\n"
          "  --attn rows|batch   libvxrt's batched calls (default on the CPU) or its per-row\n"
          "                      calls (default with --device cuda, where batched is untested)\n");
}

static int cmd_generate(int argc, char **argv) {
  serve_ctx x;
  memset(&x, 0, sizeof x);
  serve_opts_defaults(&x.o);
  const char *prompts[64];
  int is_file_prompt[64], nprompts = 0, show_tokens = 0, gemm_ref = 0, ignore_eos = 0;
  int stops[64], nstops = 0;
  long n_new = 64;
  sample_opts so = {.temperature = 0, .top_k = 0, .top_p = 1.0f};
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    int r = serve_common_option(&x.o, argc, argv, &i);
    if (r < 0)
      return 2;
    if (r > 0)
      continue;
    int has_v = i + 1 < argc;
    long v;
    if ((!strcmp(a, "--prompt") || !strcmp(a, "--prompt-file")) && has_v) {
      if (nprompts == 64) {
        fprintf(stderr, "vx-serve generate: at most 64 prompts\n");
        return 2;
      }
      is_file_prompt[nprompts] = !strcmp(a, "--prompt-file");
      prompts[nprompts++] = argv[++i];
    } else if ((!strcmp(a, "-n") || !strcmp(a, "--tokens")) && has_v) {
      if (parse_int(a, argv[++i], 1, 1 << 24, &n_new))
        return 2;
    } else if (!strcmp(a, "--temperature") && has_v) {
      char *end;
      so.temperature = strtof(argv[++i], &end);
      if (*end || !(so.temperature >= 0)) {
        fprintf(stderr, "vx-serve: --temperature expects a number >= 0\n");
        return 2;
      }
    } else if (!strcmp(a, "--top-k") && has_v) {
      if (parse_int(a, argv[++i], 0, 1 << 24, &v))
        return 2;
      so.top_k = (int)v;
    } else if (!strcmp(a, "--top-p") && has_v) {
      char *end;
      so.top_p = strtof(argv[++i], &end);
      if (*end || !(so.top_p > 0 && so.top_p <= 1)) {
        fprintf(stderr, "vx-serve: --top-p expects a number in (0, 1]\n");
        return 2;
      }
    } else if (!strcmp(a, "--stop") && has_v) {
      if (parse_int(a, argv[++i], 0, 1 << 24, &v) || nstops == 64)
        return 2;
      stops[nstops++] = (int)v;
    } else if (!strcmp(a, "--ignore-eos")) {
      ignore_eos = 1;
    } else if (!strcmp(a, "--show-tokens")) {
      show_tokens = 1;
    } else if (!strcmp(a, "--gemm-ref")) {
      gemm_ref = 1;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      generate_usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "vx-serve generate: unknown option or missing value: '%s'\n", a);
      generate_usage(stderr);
      return 2;
    }
  }
  if (nprompts == 0) {
    prompts[0] = "";
    is_file_prompt[0] = 0;
    nprompts = 1;
  }
  int rc = 1;
  char err[MODEL_ERR_LEN];
  engine_request *req = calloc((size_t)nprompts, sizeof *req);
  int **toks = calloc((size_t)nprompts, sizeof *toks);
  char **texts = calloc((size_t)nprompts, sizeof *texts);
  size_t *tlen = calloc((size_t)nprompts, sizeof *tlen);
  if (!req || !toks || !texts || !tlen || serve_setup(&x, "generate") != 0)
    goto out;
  const model_config *c = &x.m->cfg;
  if (!nstops && !ignore_eos) {
    if (c->eos >= 0)
      stops[nstops++] = c->eos;
    if (!strcmp(c->tokenizer, "llama2c"))
      stops[nstops++] = c->bos; /* llama2.c: BOS delimits stories */
  }
  for (int p = 0; p < nprompts; p++) {
    if (is_file_prompt[p]) {
      if (!(texts[p] = read_text_file(prompts[p], &tlen[p])))
        goto out;
    } else {
      tlen[p] = strlen(prompts[p]);
      texts[p] = malloc(tlen[p] + 1);
      if (!texts[p])
        goto out;
      memcpy(texts[p], prompts[p], tlen[p] + 1);
    }
    int cap = (int)tlen[p] + 8;
    toks[p] = malloc((size_t)cap * sizeof(int));
    int n = toks[p] ? tokenizer_encode(x.tok, texts[p], tlen[p], toks[p], cap) : -1;
    if (n < 0 || n > cap) {
      fprintf(stderr, "vx-serve: out of memory encoding the prompt\n");
      goto out;
    }
    so.seed = x.o.seed + (uint64_t)p;
    req[p] = (engine_request){.prompt = toks[p], .nprompt = n, .max_new = (int)n_new,
                              .sample = so, .stop = stops, .nstop = nstops,
                              .sparse = x.policy != NULL};
    if (engine_submit(x.eng, &req[p], err) != 0) {
      fprintf(stderr, "vx-serve: prompt %d%s%s: %s\n", p + 1, is_file_prompt[p] ? " (" : "",
              is_file_prompt[p] ? prompts[p] : "", err);
      if (is_file_prompt[p])
        fputs(")\n", stderr);
      goto out;
    }
  }
  if (engine_run(x.eng, err) != 0) {
    fprintf(stderr, "vx-serve: %s\n", err);
    goto out;
  }
  for (int p = 0; p < nprompts; p++) {
    if (nprompts > 1)
      printf("%s--- prompt %d ---\n", p ? "\n" : "", p + 1);
    fwrite(texts[p], 1, tlen[p], stdout);
    int prev = req[p].prompt[req[p].nprompt - 1];
    for (int i = 0; i < req[p].nout; i++) {
      size_t len;
      const char *s = tokenizer_piece(x.tok, prev, req[p].out[i], &len);
      fwrite(s, 1, len, stdout);
      prev = req[p].out[i];
    }
    putchar('\n');
    if (show_tokens) {
      printf("tokens:");
      for (int i = 0; i < req[p].nout; i++)
        printf(" %d", req[p].out[i]);
      putchar('\n');
    }
  }
  fflush(stdout);
  const engine_stats *st = engine_get_stats(x.eng);
  fprintf(stderr, "model %s (%s, %d layers, dim %d, %d/%d heads, context %d); policy %s; "
          "dense layers %s; %d prompt(s); attention on the %s\n", x.o.model, c->arch, c->layers,
          c->dim, c->heads, c->kv_heads, c->ctx, x.policy_name, x.policy ? x.o.dense_layers : "all",
          nprompts, x.o.device == VXRT_CUDA ? "GPU" : "CPU");
  fprintf(stderr, "prefill: %ld tokens in %.3f s: %.1f tokens/s, %.2f GFLOP/s (projections, MLP, "
          "causal attention)\n", st->prefill_tokens, st->prefill_s,
          st->prefill_s > 0 ? st->prefill_tokens / st->prefill_s : 0.0,
          st->prefill_s > 0 ? st->prefill_flops / st->prefill_s * 1e-9 : 0.0);
  fprintf(stderr, "decode: %ld tokens in %.3f s: %.1f tokens/s\n", st->decode_tokens,
          st->decode_s, st->decode_s > 0 ? st->decode_tokens / st->decode_s : 0.0);
  if (gemm_ref) {
    int M = x.o.chunk;
    double g = gemm_reference(c, M);
    double p = st->prefill_s > 0 ? st->prefill_flops / st->prefill_s : 0;
    fprintf(stderr, "OpenBLAS sgemm at the model's shapes (M = %d rows x each weight matrix, %d "
            "threads): %.2f GFLOP/s; prefill reached %.0f%% of it\n", M,
            openblas_get_num_threads(), g * 1e-9, g > 0 ? 100.0 * p / g : 0.0);
  }
  rc = 0;
out:
  for (int p = 0; p < nprompts && req && toks && texts; p++) {
    engine_request_release(&req[p]);
    free(toks[p]);
    free(texts[p]);
  }
  free(req);
  free(toks);
  free(texts);
  free(tlen);
  serve_teardown(&x);
  return rc;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
  fprintf(f, "usage: vx-serve COMMAND [options]\n"
             "  generate   prompt in, text and tokens/s out (vx-serve generate --help)\n"
             "  eval       a policy against dense attention on retrieval prompts, JSON out\n"
             "             (vx-serve eval --help)\n"
             "  serve      an OpenAI-compatible HTTP server (vx-serve serve --help)\n"
             "  bench      decode throughput of a policy against dense, JSON out\n"
             "             (vx-serve bench --help)\n"
             "Reference: docs/serving.md\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "generate"))
    return cmd_generate(argc, argv);
  if (!strcmp(argv[1], "eval"))
    return serve_eval(argc, argv);
  if (!strcmp(argv[1], "serve"))
    return http_serve_main(argc, argv);
  if (!strcmp(argv[1], "bench"))
    return serve_bench(argc, argv);
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "vx-serve: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
