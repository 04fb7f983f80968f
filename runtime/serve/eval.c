/* eval.c - `vx-serve eval`: a policy and dense attention on the same retrieval prompts in one
 * run (each prompt prefilled once, its K/V shared by a dense row and a policy row), greedy.
 * Reports accuracy per task for both, greedy token agreement with dense, and per layer and KV
 * head the relative error of the attention output against dense and the attention mass the
 * selection kept (mean and worst), as one JSON object on stdout; progress on stderr.
 * `--sweep NAME=V1,V2,...` repeats the policy side for each value and plots accuracy against
 * it (gnuplot, run as a program). Sits under
 * runtime/serve/ beside main.c; the fixtures file is hostile input (checked, never trusted). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "filler.h"
#include "serve.h"
#include "util.h"

typedef struct fixture {
  char task[32];
  int ctx;
  char *prompt;   /* Latin-1 bytes */
  size_t plen;
  char answer[64];
  int *tok;
  int ntok;
} fixture;

/* UTF-8 (as JSON strings hold it) to Latin-1 bytes: the fixtures are Latin-1 text. */
static int to_latin1(const char *s, char *out, size_t *n) {
  size_t k = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    if (*p < 0x80) {
      out[k++] = (char)*p++;
    } else if ((*p & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80 && *p <= 0xC3) {
      out[k++] = (char)(((*p & 0x1F) << 6) | (p[1] & 0x3F));
      p += 2;
    } else {
      return -1;
    }
  }
  *n = k;
  return 0;
}

static int load_fixtures(const char *path, fixture **out, int *nout) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "vx-serve eval: cannot open fixtures '%s': %s\n", path, strerror(errno));
    return -1;
  }
  fixture *fx = NULL;
  int n = 0, cap = 0, lineno = 0, rc = -1;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  while ((len = getline(&line, &lcap, f)) > 0) {
    lineno++;
    if (len <= 1)
      continue;
    cJSON *j = cJSON_Parse(line);
    cJSON *task = cJSON_GetObjectItemCaseSensitive(j, "task");
    cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    cJSON *ans = cJSON_GetObjectItemCaseSensitive(j, "answer");
    cJSON *ctx = cJSON_GetObjectItemCaseSensitive(j, "ctx");
    if (!cJSON_IsString(task) || !cJSON_IsString(prompt) || !cJSON_IsString(ans) ||
        strlen(ans->valuestring) >= sizeof fx->answer || strlen(task->valuestring) >= 32) {
      fprintf(stderr, "vx-serve eval: %s:%d: not a fixture (a JSON object with string task, "
              "prompt and answer expected)\n", path, lineno);
      cJSON_Delete(j);
      goto out;
    }
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      fixture *nf = realloc(fx, (size_t)cap * sizeof *fx);
      if (!nf) {
        cJSON_Delete(j);
        goto out;
      }
      fx = nf;
    }
    fixture *x = &fx[n];
    memset(x, 0, sizeof *x);
    snprintf(x->task, sizeof x->task, "%s", task->valuestring);
    snprintf(x->answer, sizeof x->answer, "%s", ans->valuestring);
    x->ctx = cJSON_IsNumber(ctx) ? (int)ctx->valuedouble : 0;
    x->prompt = malloc(strlen(prompt->valuestring) + 1);
    n++;
    if (!x->prompt || to_latin1(prompt->valuestring, x->prompt, &x->plen) != 0) {
      fprintf(stderr, "vx-serve eval: %s:%d: the prompt is not Latin-1 text\n", path, lineno);
      cJSON_Delete(j);
      goto out;
    }
    cJSON_Delete(j);
  }
  if (n == 0) {
    fprintf(stderr, "vx-serve eval: fixtures '%s' hold no prompt\n", path);
    goto out;
  }
  rc = 0;
out:
  free(line);
  fclose(f);
  if (rc) {
    for (int i = 0; i < n; i++)
      free(fx[i].prompt);
    free(fx);
    return -1;
  }
  *out = fx;
  *nout = n;
  return 0;
}

/* ------------------------------------------------------------------ generated prompts */

static int gen_range(uint64_t *s, int lo, int hi) { /* uniform in [lo, hi] */
  return lo + (int)(serve_rand64(s) % (uint64_t)(hi - lo + 1));
}

/* The fallback filler: every whole line of the fixtures' prompts that filler_line_ok
 * accepts (no needle: the fixtures' generator inserted needles at any byte, mid-line too, so
 * a line that merely contains one would be a distractor; the first and last line of each
 * prompt are cut, so they are left out), as one buffer. */
static char *gen_filler(const fixture *fx, int n, size_t *len) {
  size_t cap = 0;
  for (int i = 0; i < n; i++)
    cap += fx[i].plen;
  char *buf = malloc(cap + 1);
  if (!buf)
    return NULL;
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    const char *p = fx[i].prompt, *end = p + fx[i].plen;
    const char *q = memchr(p, '\n', fx[i].plen);
    if (!q)
      continue;
    for (p = q + 1; p < end;) {
      const char *e = memchr(p, '\n', (size_t)(end - p));
      if (!e)
        break; /* the last, cut line ends in the question */
      size_t ln = (size_t)(e - p) + 1;
      if (e + 1 < end && filler_line_ok(p, ln)) {
        memcpy(buf + k, p, ln);
        k += ln;
      }
      p = e + 1;
    }
  }
  *len = k;
  return buf;
}

/* per_task passkey and key-value prompts of ctx - 9 bytes (the fixtures' lengths: BOS and
 * the answer fit the context) in the fixtures' format: filler from a seeded byte, needles
 * inserted at the next line start after seeded uniform depths, the question last. */
static int gen_fixtures(const char *filler, size_t flen, int per_task, int ctx, uint64_t seed,
                        fixture **out, int *nout) {
  int n = 2 * per_task, L = ctx - 9;
  fixture *fx = calloc((size_t)n, sizeof *fx);
  if (!fx || flen < 1000 || L < 200) {
    free(fx);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    fixture *f = &fx[i];
    uint64_t s = seed * 1000003u + (uint64_t)i;
    int kv = i >= per_task, keys[8], vals[8], nk = kv ? 8 : 1;
    char needle[8][80], q[96];
    size_t nlen = 0;
    if (!kv) {
      int code = gen_range(&s, 10000, 99999);
      snprintf(needle[0], sizeof needle[0], "The pass key is %d. Remember it. %d is the pass key.\n",
               code, code);
      snprintf(q, sizeof q, "\nWhat is the pass key? The pass key is ");
      snprintf(f->answer, sizeof f->answer, "%d", code);
    } else {
      for (int k = 0; k < 8; k++) {
        int dup;
        do { /* distinct keys */
          keys[k] = gen_range(&s, 1000, 9999);
          dup = 0;
          for (int j = 0; j < k; j++)
            dup |= keys[j] == keys[k];
        } while (dup);
        vals[k] = gen_range(&s, 1000, 9999);
        snprintf(needle[k], sizeof needle[k], "key %d holds %d.\n", keys[k], vals[k]);
      }
      int ask = gen_range(&s, 0, 7);
      snprintf(q, sizeof q, "\nWhat does key %d hold? key %d holds ", keys[ask], keys[ask]);
      snprintf(f->answer, sizeof f->answer, "%d", vals[ask]);
    }
    for (int k = 0; k < nk; k++)
      nlen += strlen(needle[k]);
    size_t body = (size_t)L - strlen(q), fill = body - nlen;
    f->prompt = malloc((size_t)L + 1);
    if (!f->prompt)
      goto fail;
    /* as the fixtures: filler from any byte (mid-line), wrapping around; each needle at
     * the first line start at or after its depth (so never before the first newline, never
     * right after BOS), or at the end of the filler when no line starts after it */
    size_t at = (size_t)gen_range(&s, 0, (int)flen - 1);
    char *tmp = malloc(fill + 1);
    if (!tmp)
      goto fail;
    for (size_t k = 0; k < fill; k++)
      tmp[k] = filler[(at + k) % flen];
    size_t pos[8];
    for (int k = 0; k < nk; k++) {
      size_t p = (size_t)(serve_rand_unit(&s) * (double)fill);
      while (p < fill && (p == 0 || tmp[p - 1] != '\n'))
        p++;
      pos[k] = p;
    }
    for (int a = 1; a < nk; a++) /* insertion order: by position */
      for (int b = a; b > 0 && pos[b] < pos[b - 1]; b--) {
        size_t t = pos[b];
        pos[b] = pos[b - 1];
        pos[b - 1] = t;
        char tn[80];
        memcpy(tn, needle[b], sizeof tn);
        memcpy(needle[b], needle[b - 1], sizeof tn);
        memcpy(needle[b - 1], tn, sizeof tn);
      }
    size_t w = 0, r = 0;
    for (int k = 0; k < nk; k++) {
      memcpy(f->prompt + w, tmp + r, pos[k] - r);
      w += pos[k] - r;
      r = pos[k];
      memcpy(f->prompt + w, needle[k], strlen(needle[k]));
      w += strlen(needle[k]);
    }
    memcpy(f->prompt + w, tmp + r, fill - r);
    w += fill - r;
    free(tmp);
    memcpy(f->prompt + w, q, strlen(q));
    f->plen = w + strlen(q);
    f->ctx = ctx;
    snprintf(f->task, sizeof f->task, "%s", kv ? "kv" : "passkey");
  }
  *out = fx;
  *nout = n;
  return 0;
fail:
  for (int i = 0; i < n; i++)
    free(fx[i].prompt);
  free(fx);
  return -1;
}

static cJSON *out_text(const engine_request *r);

/* The prompts as JSON lines in the fixtures' format (task, ctx, prompt, answer). */
static int write_prompts(const char *path, const fixture *fx, const int *pick, int n) {
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "vx-serve eval: cannot write '%s': %s\n", path, strerror(errno));
    return -1;
  }
  for (int i = 0; i < n; i++) {
    const fixture *x = &fx[pick[i]];
    engine_request r = {.nout = (int)x->plen};
    int *bytes = malloc((x->plen + 1) * sizeof(int));
    if (!bytes)
      break;
    for (size_t k = 0; k < x->plen; k++)
      bytes[k] = (unsigned char)x->prompt[k];
    r.out = bytes;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "task", x->task);
    cJSON_AddNumberToObject(o, "ctx", x->ctx);
    cJSON_AddItemToObject(o, "prompt", out_text(&r));
    cJSON_AddStringToObject(o, "answer", x->answer);
    char *line = cJSON_PrintUnformatted(o);
    if (line)
      fprintf(f, "%s\n", line);
    free(line);
    cJSON_Delete(o);
    free(bytes);
  }
  if (fclose(f) != 0) {
    fprintf(stderr, "vx-serve eval: writing '%s' failed\n", path);
    return -1;
  }
  return 0;
}

static int starts_with_answer(const engine_request *r, const char *answer) {
  size_t k = strlen(answer);
  if ((size_t)r->nout < k)
    return 0;
  for (size_t i = 0; i < k; i++)
    if (r->out[i] != (unsigned char)answer[i])
      return 0;
  return 1;
}

/* Accuracy per task (and per task@ctx) of one side as a JSON object. */
static cJSON *accuracy(const fixture *fx, const int *pick, int n, const int *ok) {
  cJSON *o = cJSON_CreateObject();
  char key[64];
  int all = 0;
  for (int i = 0; i < n; i++)
    all += ok[i];
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++) {
      const fixture *a = &fx[pick[i]];
      if (pass == 0)
        snprintf(key, sizeof key, "%s", a->task);
      else
        snprintf(key, sizeof key, "%s@%d", a->task, a->ctx);
      if (cJSON_GetObjectItemCaseSensitive(o, key))
        continue;
      int c = 0, t = 0;
      for (int j = 0; j < n; j++) {
        const fixture *b = &fx[pick[j]];
        if (strcmp(a->task, b->task) || (pass == 1 && a->ctx != b->ctx))
          continue;
        t++;
        c += ok[j];
      }
      cJSON_AddNumberToObject(o, key, (double)c / t);
    }
  cJSON_AddNumberToObject(o, "all", (double)all / n);
  cJSON_AddNumberToObject(o, "correct", all);
  cJSON_AddNumberToObject(o, "prompts", n);
  return o;
}

typedef struct trace_ctx {
  FILE *f;
  int pass, kvh;
  const engine_request *base; /* rq: prompt index = (r - base) / 2 */
} trace_ctx;

/* One --trace line: a decode step of one layer of one prompt's policy row. */
static void trace_step(void *user, const engine_request *r, int layer, const float *err,
                       const float *mass) {
  trace_ctx *t = user;
  fprintf(t->f, "{\"run\":%d,\"prompt\":%d,\"step\":%d,\"layer\":%d,\"rel_err\":[", t->pass,
          (int)(r - t->base) / 2, r->nout - 1, layer);
  for (int h = 0; h < t->kvh; h++)
    fprintf(t->f, "%s%.6g", h ? "," : "", isnan(err[h]) ? -1.0 : err[h]);
  fputs("],\"mass\":[", t->f);
  for (int h = 0; h < t->kvh; h++)
    fprintf(t->f, "%s%.6g", h ? "," : "", isnan(mass[h]) ? -1.0 : mass[h]);
  fputs("]}\n", t->f);
}

static double json_num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* A request's generated bytes (ids 0-255; others dropped) as a UTF-8 JSON string. */
static cJSON *out_text(const engine_request *r) {
  char *buf = malloc((size_t)r->nout * 2 + 1);
  size_t k = 0;
  if (!buf)
    return cJSON_CreateNull();
  for (int i = 0; i < r->nout; i++) {
    int b = r->out[i];
    if (b < 0x80 && b >= 0) {
      buf[k++] = (char)b;
    } else if (b < 0x100 && b >= 0) {
      buf[k++] = (char)(0xC0 | b >> 6);
      buf[k++] = (char)(0x80 | (b & 0x3F));
    }
  }
  buf[k] = '\0';
  cJSON *s = cJSON_CreateString(buf);
  free(buf);
  return s;
}

/* The sweep's accuracy against the swept parameter as a PNG, drawn by gnuplot (run as a
 * program; Debian's gnuplot-nox). The table and the JSON do not depend on it: without gnuplot
 * this says so and returns 0. Returns -1 when gnuplot ran and failed. */
static int sweep_plot(const char *png, const char *name, const char *policy, const double *val,
                      cJSON *runs, const cJSON *dense) {
  if (strchr(png, '\'') || strchr(png, '\n')) {
    fprintf(stderr, "vx-serve eval: --plot '%s': the path may not hold a quote or a newline\n", png);
    return -1;
  }
  FILE *g = popen("gnuplot 2>&1", "w");
  if (!g) {
    fprintf(stderr, "vx-serve eval: cannot run gnuplot: %s; no plot written\n", strerror(errno));
    return 0;
  }
  int logx = 1;
  for (int k = 0; k < cJSON_GetArraySize(runs); k++)
    logx &= val[k] > 0;
  fprintf(g, "set terminal pngcairo size 800,500\nset output '%s'\n"
             "set title \"%s: retrieval accuracy against %s (dense: %.3f)\" noenhanced\n"
             "set xlabel '%s' noenhanced\nset ylabel 'accuracy'\nset yrange [0:1.05]\n"
             "set key bottom right\nset grid\n%s\n$d << EOD\n",
          png, policy, name, json_num(dense, "all"), name, logx ? "set logscale x 2" : "");
  for (int k = 0; k < cJSON_GetArraySize(runs); k++) {
    const cJSON *ac = cJSON_GetObjectItem(cJSON_GetArrayItem(runs, k), "accuracy");
    fprintf(g, "%.17g %.6f %.6f %.6f\n", val[k], json_num(ac, "passkey"), json_num(ac, "kv"),
            json_num(ac, "all"));
  }
  fprintf(g, "EOD\nplot $d using 1:2 with linespoints title 'passkey', "
             "$d using 1:3 with linespoints title 'key-value', "
             "$d using 1:4 with linespoints lw 2 title 'all', "
             "%.6f with lines dashtype 2 title 'dense (all)'\n", json_num(dense, "all"));
  int st = pclose(g);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
    fprintf(stderr, "vx-serve eval: gnuplot not found (apt-get install gnuplot-nox): no plot "
            "written; the table and the JSON are complete\n");
    return 0;
  }
  if (st != 0) {
    fprintf(stderr, "vx-serve eval: gnuplot failed writing '%s' (its messages are above)\n", png);
    return -1;
  }
  fprintf(stderr, "plot: %s\n", png);
  return 0;
}

static void eval_usage(FILE *f) {
  fprintf(f,
          "usage: vx-serve eval --model PATH --policy P [options]\n"
          "  --fixtures PATH     retrieval prompts, JSON lines (default: beside the model,\n"
          "                      MODEL.retrieval.jsonl)\n"
          "  --limit N           N prompts spread evenly over the file (default: all)\n"
          "  --max-ctx N         only the prompts whose ctx field is at most N (bytes)\n"
          "  -n N                tokens generated per prompt, greedy (default 8)\n"
          "  --sweep NAME=V1,V2  run the policy once per value of its parameter NAME\n"
          "  --plot PATH         the sweep's accuracy plot, PNG by gnuplot (default\n"
          "                      sweep-POLICY-NAME.png; none: no plot)\n"
          "  --generate N        instead of the fixtures: N passkey and N key-value prompts made\n"
          "                      here (seeded by --seed) in the fixtures' format\n"
          "  --gen-bytes N       their length as the fixtures' ctx field (default 4096)\n"
          "  --filler SRC        their text (and --perplexity's): debian (default: Debian's\n"
          "                      fortunes and jargon-text, else the fixtures' lines) or fixtures\n"
          "  --perplexity N      also: perplexity of N bytes of filler text (its first quarter\n"
          "                      the prompt, the rest teacher-forced), policy and dense\n"
          "  --write-prompts PATH  the prompts run (generated or picked) as JSON lines\n"
          "  --trace PATH        per decode step, layer and KV head: error and mass, JSON lines\n"
          "  --quiet             no progress on stderr\n"
          "  and the options of generate: --param, --dense-layers, --page-size, --kv-dtype,\n"
          "  --batch (rows at once, 2 per prompt; default 4), --chunk, --vxc, --dense-policy\n");
}

int serve_eval(int argc, char **argv) {
  serve_ctx x;
  memset(&x, 0, sizeof x);
  serve_opts_defaults(&x.o);
  const char *fixtures = NULL, *sweep = NULL, *trace = NULL, *dump = NULL, *plot = NULL;
  const char *filler_src = "debian";
  char *filler = NULL;
  size_t flen = 0;
  long limit = 0, n_new = 8, max_ctx = 0, gen_n = 0, gen_ctx = 4096, ppl_bytes = 0;
  int *ppl_tok = NULL, ppl_n = 0;
  engine_request ppl[2];
  memset(ppl, 0, sizeof ppl);
  int quiet = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    int r = serve_common_option(&x.o, argc, argv, &i);
    if (r < 0)
      return 2;
    if (r > 0)
      continue;
    int has_v = i + 1 < argc;
    char *end;
    if (!strcmp(a, "--fixtures") && has_v) {
      fixtures = argv[++i];
    } else if (!strcmp(a, "--limit") && has_v) {
      limit = strtol(argv[++i], &end, 10);
      if (*end || limit < 1) {
        fprintf(stderr, "vx-serve eval: --limit expects a positive integer\n");
        return 2;
      }
    } else if (!strcmp(a, "--max-ctx") && has_v) {
      max_ctx = strtol(argv[++i], &end, 10);
      if (*end || max_ctx < 1) {
        fprintf(stderr, "vx-serve eval: --max-ctx expects a positive integer\n");
        return 2;
      }
    } else if (!strcmp(a, "-n") && has_v) {
      n_new = strtol(argv[++i], &end, 10);
      if (*end || n_new < 1 || n_new > 4096) {
        fprintf(stderr, "vx-serve eval: -n expects an integer in [1, 4096]\n");
        return 2;
      }
    } else if (!strcmp(a, "--sweep") && has_v) {
      sweep = argv[++i];
    } else if (!strcmp(a, "--plot") && has_v) {
      plot = argv[++i];
    } else if (!strcmp(a, "--filler") && has_v) {
      filler_src = argv[++i];
      if (strcmp(filler_src, "debian") && strcmp(filler_src, "fixtures")) {
        fprintf(stderr, "vx-serve eval: --filler expects debian or fixtures\n");
        return 2;
      }
    } else if (!strcmp(a, "--generate") && has_v) {
      gen_n = strtol(argv[++i], &end, 10);
      if (*end || gen_n < 1 || gen_n > 100000) {
        fprintf(stderr, "vx-serve eval: --generate expects a count in [1, 100000]\n");
        return 2;
      }
    } else if (!strcmp(a, "--gen-bytes") && has_v) {
      gen_ctx = strtol(argv[++i], &end, 10);
      if (*end || gen_ctx < 256 || gen_ctx > (1 << 24)) {
        fprintf(stderr, "vx-serve eval: --gen-bytes expects a length in [256, 16777216]\n");
        return 2;
      }
    } else if (!strcmp(a, "--perplexity") && has_v) {
      ppl_bytes = strtol(argv[++i], &end, 10);
      if (*end || ppl_bytes < 16) {
        fprintf(stderr, "vx-serve eval: --perplexity expects a length in bytes (at least 16)\n");
        return 2;
      }
    } else if (!strcmp(a, "--write-prompts") && has_v) {
      dump = argv[++i];
    } else if (!strcmp(a, "--trace") && has_v) {
      trace = argv[++i];
    } else if (!strcmp(a, "--quiet")) {
      quiet = 1;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      eval_usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "vx-serve eval: unknown option or missing value: '%s'\n", a);
      eval_usage(stderr);
      return 2;
    }
  }
  if (!x.o.policy) {
    fprintf(stderr, "vx-serve eval: --policy P is required (the policy compared with dense)\n");
    return 2;
  }
  /* the sweep: NAME=V1,V2,... */
  char sweep_name[64] = "";
  double sweep_val[64];
  int nsweep = 0;
  if (sweep) {
    const char *eq = strchr(sweep, '=');
    if (!eq || eq == sweep || (size_t)(eq - sweep) >= sizeof sweep_name) {
      fprintf(stderr, "vx-serve eval: --sweep expects NAME=V1,V2,..., got '%s'\n", sweep);
      return 2;
    }
    memcpy(sweep_name, sweep, (size_t)(eq - sweep));
    for (const char *p = eq + 1; *p && nsweep < 64;) {
      char *end;
      sweep_val[nsweep++] = strtod(p, &end);
      if (end == p || (*end && *end != ',')) {
        fprintf(stderr, "vx-serve eval: --sweep: bad value list '%s'\n", eq + 1);
        return 2;
      }
      p = *end ? end + 1 : end;
    }
  }
  if (x.o.batch < 2)
    x.o.batch = 2;
  double t_start = serve_now();
  trace_ctx tc = {0};
  int rc = 1, nfx = 0, n = 0;
  fixture *fx = NULL;
  int *pick = NULL, *ok_d = NULL, *ok_p = NULL;
  engine_request *rq = NULL;
  engine_acc *acc = NULL, *tot = NULL;
  cJSON *root = cJSON_CreateObject(), *runs = cJSON_CreateArray();
  char err[MODEL_ERR_LEN], fx_default[4096];
  if (trace && !(tc.f = fopen(trace, "w"))) {
    fprintf(stderr, "vx-serve eval: cannot write the trace '%s': %s\n", trace, strerror(errno));
    goto out;
  }
  if (serve_setup(&x, "eval") != 0)
    goto out;
  const model_config *c = &x.m->cfg;
  if (!fixtures) {
    const char *dot = strrchr(x.o.model, '.');
    size_t base = dot && !strchr(dot, '/') ? (size_t)(dot - x.o.model) : strlen(x.o.model);
    snprintf(fx_default, sizeof fx_default, "%.*s.retrieval.jsonl", (int)base, x.o.model);
    fixtures = fx_default;
  }
  if (load_fixtures(fixtures, &fx, &nfx) != 0)
    goto out;
  if (ppl_bytes || gen_n) { /* filler: Debian's texts, else the fixtures' lines */
    char what[512];
    filler = strcmp(filler_src, "fixtures") ? filler_debian(&flen, what, sizeof what) : NULL;
    if (!filler) {
      if (strcmp(filler_src, "fixtures"))
        fprintf(stderr, "vx-serve eval: filler: %s; using the fixtures' own lines instead "
                "(apt-get install fortunes jargon-text)\n", what);
      snprintf(what, sizeof what, "the lines of %.400s", fixtures);
      filler = gen_filler(fx, nfx, &flen);
    }
    if (!filler || flen < 16) {
      fprintf(stderr, "vx-serve eval: no filler text in %s\n", what);
      goto out;
    }
    cJSON_AddStringToObject(root, "filler", what);
  }
  if (ppl_bytes) { /* the text: filler lines from a seeded start, as many bytes as fit */
    if (ppl_bytes > c->ctx - 1)
      ppl_bytes = c->ctx - 1;
    ppl_tok = malloc(((size_t)ppl_bytes + 2) * sizeof(int));
    uint64_t s = x.o.seed ^ 0x9e3779b97f4a7c15ull;
    size_t at = (size_t)(serve_rand64(&s) % flen);
    while (at > 0 && filler[at - 1] != '\n')
      at--;
    char *text = malloc((size_t)ppl_bytes);
    if (!text || !ppl_tok) {
      free(text);
      goto out;
    }
    for (long k = 0; k < ppl_bytes; k++)
      text[k] = filler[(at + (size_t)k) % flen];
    ppl_n = tokenizer_encode(x.tok, text, (size_t)ppl_bytes, ppl_tok, (int)ppl_bytes + 2);
    free(text);
  }
  if (gen_n) {
    fixture *g;
    int ng;
    if (gen_fixtures(filler, flen, (int)gen_n, (int)gen_ctx, x.o.seed, &g, &ng) != 0) {
      fprintf(stderr, "vx-serve eval: cannot make prompts from the filler (out of memory, or "
              "too little text)\n");
      goto out;
    }
    for (int i = 0; i < nfx; i++)
      free(fx[i].prompt);
    free(fx);
    fx = g;
    nfx = ng;
    cJSON_AddNumberToObject(root, "generated_per_task", (double)gen_n);
    cJSON_AddNumberToObject(root, "generated_bytes", (double)gen_ctx);
    cJSON_AddNumberToObject(root, "seed", (double)x.o.seed);
  }
  int *eligible = malloc((size_t)nfx * sizeof(int)), ne = 0;
  if (!eligible)
    goto out;
  for (int i = 0; i < nfx; i++)
    if (!max_ctx || fx[i].ctx <= max_ctx)
      eligible[ne++] = i;
  if (ne == 0) {
    fprintf(stderr, "vx-serve eval: no prompt of '%s' has ctx <= %ld\n", fixtures, max_ctx);
    free(eligible);
    goto out;
  }
  n = limit && limit < ne ? (int)limit : ne;
  pick = malloc((size_t)n * sizeof(int));
  ok_d = calloc((size_t)n, sizeof(int));
  ok_p = calloc((size_t)n, sizeof(int));
  rq = calloc((size_t)2 * n, sizeof *rq);
  int LH = c->layers * c->kv_heads;
  acc = calloc((size_t)n * LH, sizeof *acc);
  tot = calloc((size_t)LH, sizeof *tot);
  if (!pick || !ok_d || !ok_p || !rq || !acc || !tot || !root || !runs) {
    free(eligible);
    goto out;
  }
  for (int i = 0; i < n; i++)
    pick[i] = eligible[(long)i * ne / n]; /* spread over the file: every task and length */
  free(eligible);
  if (dump && write_prompts(dump, fx, pick, n) != 0)
    goto out;
  for (int i = 0; i < n; i++) {
    fixture *f = &fx[pick[i]];
    f->tok = malloc((f->plen + 2) * sizeof(int));
    if (!f->tok)
      goto out;
    f->ntok = tokenizer_encode(x.tok, f->prompt, f->plen, f->tok, (int)f->plen + 2);
  }
  cJSON_AddStringToObject(root, "model", x.o.model);
  cJSON_AddStringToObject(root, "fixtures", fixtures);
  cJSON_AddStringToObject(root, "policy", x.policy_name);
  cJSON_AddStringToObject(root, "dense_layers", x.o.dense_layers);
  cJSON_AddNumberToObject(root, "page_size", x.o.page_size);
  cJSON_AddStringToObject(root, "kv_dtype", vxrt_dtype_name((vxrt_dtype)x.o.kv_dtype));
  cJSON_AddNumberToObject(root, "prompts", n);
  cJSON_AddNumberToObject(root, "new_tokens", (double)n_new);
  cJSON_AddStringToObject(root, "device", x.o.device == VXRT_CUDA ? "cuda" : "cpu");
  int npass = nsweep ? nsweep : 1;
  for (int pass = 0; pass < npass; pass++) {
    if (nsweep) {
      vxrt_param_override ov[SERVE_MAX_PARAMS + 1];
      int no = 0;
      for (int k = 0; k < x.o.nparams; k++)
        if (strcmp(x.o.params[k].name, sweep_name))
          ov[no++] = x.o.params[k];
      ov[no++] = (vxrt_param_override){sweep_name, sweep_val[pass]};
      vxrt_policy *p;
      if (serve_load_policy(&x, x.o.policy, ov, no, &p) != 0)
        goto out;
      if (serve_rebuild(&x, p) != 0) {
        vxrt_policy_free(p);
        goto out;
      }
      vxrt_policy_free(x.policy);
      x.policy = p;
    }
    double t_pass = serve_now();
    tc = (trace_ctx){tc.f, pass, c->kv_heads, rq};
    for (int i = 0; i < n; i++) {
      fixture *f = &fx[pick[i]];
      engine_request *d = &rq[2 * i], *p = &rq[2 * i + 1];
      *d = (engine_request){.prompt = f->tok, .nprompt = f->ntok, .max_new = (int)n_new,
                            .sparse = 0, .twin = p};
      *p = (engine_request){.prompt = f->tok, .nprompt = f->ntok, .max_new = (int)n_new,
                            .sparse = 1, .measure = 1, .acc = acc + (size_t)i * LH,
                            .on_measure = tc.f ? trace_step : NULL, .user = &tc};
      if (engine_submit(x.eng, d, err) != 0 || engine_submit(x.eng, p, err) != 0) {
        fprintf(stderr, "vx-serve eval: %s: prompt %d: %s\n", fixtures, pick[i] + 1, err);
        goto out;
      }
    }
    if (ppl_tok) {
      int pre = ppl_n / 4 > 1 ? ppl_n / 4 : 1;
      ppl[0] = (engine_request){.prompt = ppl_tok, .nprompt = pre, .force = ppl_tok + pre,
                                .nforce = ppl_n - pre, .max_new = ppl_n - pre, .twin = &ppl[1]};
      ppl[1] = (engine_request){.prompt = ppl_tok, .nprompt = pre, .force = ppl_tok + pre,
                                .nforce = ppl_n - pre, .max_new = ppl_n - pre, .sparse = 1};
      if (engine_submit(x.eng, &ppl[0], err) != 0 || engine_submit(x.eng, &ppl[1], err) != 0) {
        fprintf(stderr, "vx-serve eval: --perplexity: %s\n", err);
        goto out;
      }
    }
    int reported = 0, left;
    while ((left = engine_step(x.eng, err)) > 0 || (left == 0 && reported < n)) {
      while (reported < n && rq[2 * reported].done && rq[2 * reported + 1].done) {
        int i = reported++;
        fixture *f = &fx[pick[i]];
        ok_d[i] = starts_with_answer(&rq[2 * i], f->answer);
        ok_p[i] = starts_with_answer(&rq[2 * i + 1], f->answer);
        if (!quiet)
          fprintf(stderr, "[%d/%d] %-8s %5d bytes  dense %s  %s %s  (%.1f s)\n", i + 1, n,
                  f->task, f->ctx, ok_d[i] ? "ok  " : "MISS", x.policy_name,
                  ok_p[i] ? "ok  " : "MISS", serve_now() - t_pass);
      }
      if (left == 0)
        break;
    }
    if (left < 0) {
      fprintf(stderr, "vx-serve eval: %s\n", err);
      goto out;
    }
    /* the pass's numbers */
    cJSON *run = cJSON_CreateObject();
    cJSON *params = cJSON_AddObjectToObject(run, "params");
    vxrt_policy_info pi;
    vxrt_policy_get_info(x.policy, &pi);
    for (int k = 0; k < pi.nparams; k++) {
      vxrt_param_info pa;
      if (vxrt_policy_get_param(x.policy, k, &pa) == VXRT_OK)
        cJSON_AddNumberToObject(params, pa.name, pa.value);
    }
    if (pass == 0)
      cJSON_AddItemToObject(root, "dense", accuracy(fx, pick, n, ok_d));
    cJSON_AddItemToObject(run, "accuracy", accuracy(fx, pick, n, ok_p));
    long same = 0, total = 0;
    for (int i = 0; i < n; i++) {
      const engine_request *d = &rq[2 * i], *p = &rq[2 * i + 1];
      int m = d->nout > p->nout ? d->nout : p->nout;
      for (int t = 0; t < m; t++)
        same += t < d->nout && t < p->nout && d->out[t] == p->out[t];
      total += m;
    }
    cJSON_AddNumberToObject(run, "token_agreement", total ? (double)same / total : 1.0);
    for (int k = 0; k < LH; k++)
      tot[k] = (engine_acc){0, 0, 0, INFINITY, 0};
    for (int i = 0; i < n; i++)
      for (int k = 0; k < LH; k++) {
        const engine_acc *a = &acc[(size_t)i * LH + k];
        tot[k].err_sum += a->err_sum;
        tot[k].mass_sum += a->mass_sum;
        tot[k].n += a->n;
        if (a->n) {
          tot[k].err_max = a->err_max > tot[k].err_max ? a->err_max : tot[k].err_max;
          tot[k].mass_min = a->mass_min < tot[k].mass_min ? a->mass_min : tot[k].mass_min;
        }
      }
    cJSON *att = cJSON_AddObjectToObject(run, "attention");
    cJSON *heads = cJSON_AddArrayToObject(att, "heads");
    double es = 0, ms = 0, worst_e = -1, worst_m = INFINITY;
    int we = -1, wm = -1, nh = 0;
    for (int k = 0; k < LH; k++) {
      if (!tot[k].n || x.dense_layer[k / c->kv_heads])
        continue;
      double me = tot[k].err_sum / tot[k].n, mm = tot[k].mass_sum / tot[k].n;
      cJSON *h = cJSON_CreateObject();
      cJSON_AddNumberToObject(h, "layer", k / c->kv_heads);
      cJSON_AddNumberToObject(h, "kv_head", k % c->kv_heads);
      cJSON_AddNumberToObject(h, "mean_rel_err", me);
      cJSON_AddNumberToObject(h, "worst_rel_err", tot[k].err_max);
      cJSON_AddNumberToObject(h, "mean_mass", mm);
      cJSON_AddNumberToObject(h, "worst_mass", tot[k].mass_min);
      cJSON_AddItemToArray(heads, h);
      es += me;
      ms += mm;
      nh++;
      if (me > worst_e) {
        worst_e = me;
        we = k;
      }
      if (mm < worst_m) {
        worst_m = mm;
        wm = k;
      }
    }
    cJSON_AddNumberToObject(att, "steps", nh ? (double)tot[we].n : 0);
    if (nh) {
      cJSON_AddNumberToObject(att, "mean_rel_err", es / nh);
      cJSON_AddNumberToObject(att, "mean_mass", ms / nh);
      cJSON *w = cJSON_AddObjectToObject(att, "worst_head_rel_err");
      cJSON_AddNumberToObject(w, "layer", we / c->kv_heads);
      cJSON_AddNumberToObject(w, "kv_head", we % c->kv_heads);
      cJSON_AddNumberToObject(w, "mean_rel_err", worst_e);
      w = cJSON_AddObjectToObject(att, "worst_head_mass");
      cJSON_AddNumberToObject(w, "layer", wm / c->kv_heads);
      cJSON_AddNumberToObject(w, "kv_head", wm % c->kv_heads);
      cJSON_AddNumberToObject(w, "mean_mass", worst_m);
    }
    if (ppl_tok) {
      cJSON *pp = cJSON_AddObjectToObject(run, "perplexity");
      double nd = ppl[0].nnll ? ppl[0].nll / ppl[0].nnll : NAN;
      double np = ppl[1].nnll ? ppl[1].nll / ppl[1].nnll : NAN;
      cJSON_AddNumberToObject(pp, "prompt_tokens", ppl[0].nprompt);
      cJSON_AddNumberToObject(pp, "scored_tokens", (double)ppl[1].nnll);
      cJSON_AddNumberToObject(pp, "dense", exp(nd));
      cJSON_AddNumberToObject(pp, "policy", exp(np));
      cJSON_AddNumberToObject(pp, "ratio", exp(np - nd));
      cJSON_AddNumberToObject(pp, "dense_top1", ppl[0].nnll ? (double)ppl[0].agree / ppl[0].nnll : 0);
      cJSON_AddNumberToObject(pp, "policy_top1", ppl[1].nnll ? (double)ppl[1].agree / ppl[1].nnll : 0);
      engine_request_release(&ppl[0]);
      engine_request_release(&ppl[1]);
      if (!quiet)
        fprintf(stderr, "perplexity over %ld tokens: dense %.4f, %s %.4f\n", ppl[1].nnll, exp(nd),
                x.policy_name, exp(np));
    }
    cJSON *outs = cJSON_AddArrayToObject(run, "outputs");
    for (int i = 0; i < n; i++) {
      const fixture *f = &fx[pick[i]];
      cJSON *o = cJSON_CreateObject();
      cJSON_AddNumberToObject(o, "line", pick[i] + 1);
      cJSON_AddStringToObject(o, "task", f->task);
      cJSON_AddNumberToObject(o, "ctx", f->ctx);
      cJSON_AddStringToObject(o, "answer", f->answer);
      cJSON_AddItemToObject(o, "dense", out_text(&rq[2 * i]));
      cJSON_AddItemToObject(o, "policy", out_text(&rq[2 * i + 1]));
      cJSON_AddBoolToObject(o, "dense_ok", ok_d[i]);
      cJSON_AddBoolToObject(o, "policy_ok", ok_p[i]);
      cJSON_AddItemToArray(outs, o);
    }
    cJSON_AddNumberToObject(run, "wall_s", serve_now() - t_pass);
    cJSON_AddItemToArray(runs, run);
    for (int i = 0; i < 2 * n; i++)
      engine_request_release(&rq[i]);
  }
  if (nsweep && !quiet) { /* the grid as a table on stderr */
    fprintf(stderr, "%-10s %8s %8s %8s %10s %12s %10s\n", sweep_name, "passkey", "kv", "all",
            "agreement", "mean_rel_err", "mean_mass");
    for (int k = 0; k < cJSON_GetArraySize(runs); k++) {
      cJSON *run = cJSON_GetArrayItem(runs, k), *ac = cJSON_GetObjectItem(run, "accuracy");
      cJSON *at = cJSON_GetObjectItem(run, "attention");
      fprintf(stderr, "%-10g %8.3f %8.3f %8.3f %10.3f %12.4g %10.4g\n", sweep_val[k],
              json_num(ac, "passkey"), json_num(ac, "kv"), json_num(ac, "all"), json_num(run, "token_agreement"),
              json_num(at, "mean_rel_err"), json_num(at, "mean_mass"));
    }
  }
  char png[256];
  if (nsweep && !plot) {
    snprintf(png, sizeof png, "sweep-%s-%s.png", x.policy_name, sweep_name);
    plot = png;
  }
  if (nsweep && strcmp(plot, "none") &&
      sweep_plot(plot, sweep_name, x.policy_name, sweep_val, runs,
                 cJSON_GetObjectItem(root, "dense")) != 0)
    goto out;
  cJSON_AddItemToObject(root, "runs", runs);
  runs = NULL;
  const engine_stats *st = engine_get_stats(x.eng);
  cJSON_AddNumberToObject(root, "prefill_tokens_per_s",
                          st->prefill_s > 0 ? st->prefill_tokens / st->prefill_s : 0);
  cJSON_AddNumberToObject(root, "wall_s", serve_now() - t_start);
  char *s = cJSON_Print(root);
  if (s) {
    puts(s);
    free(s);
  }
  rc = 0;
out:
  if (tc.f && fclose(tc.f) != 0 && rc == 0) {
    fprintf(stderr, "vx-serve eval: writing the trace '%s' failed\n", trace);
    rc = 1;
  }
  cJSON_Delete(runs);
  cJSON_Delete(root);
  if (rq)
    for (int i = 0; i < 2 * n; i++)
      engine_request_release(&rq[i]);
  for (int i = 0; i < nfx; i++) {
    free(fx[i].prompt);
    free(fx[i].tok);
  }
  free(fx);
  free(filler);
  free(ppl_tok);
  engine_request_release(&ppl[0]);
  engine_request_release(&ppl[1]);
  free(pick);
  free(ok_d);
  free(ok_p);
  free(rq);
  free(acc);
  free(tot);
  serve_teardown(&x);
  return rc;
}
