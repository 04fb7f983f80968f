/* report.c - the cost report of vxc --report (report.h): counts, from the VIR after the
 * passes, the bytes each decode step reads from memory and the FLOPs it performs, per row,
 * for scoring (the select kernel), attention (the attend kernel) and the state update, and
 * predicts the speedup over dense attention. The counting rule is docs/report.md; this
 * file implements it and nothing else: it does not run, time or second-guess the kernels,
 * and it reports what the VIR computes even where a smarter kernel would do less. Also
 * parses the report's command-line options, so that main.c needs only a hook. */
#include "report.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds of the options: far beyond any real shape, small enough that every count
 * stays an exact integer in a double (2^53). */
#define MAX_CONTEXT (1LL << 40)
#define MAX_SHAPE (1LL << 20)

/* ---- options ---- */

void report_options_init(ReportOptions *o) {
  memset(o, 0, sizeof *o);
  o->budget = -1;
  o->kv_dtype = DT_BF16;
  o->G = 4;
  o->D = 128;
  o->P = 16;
  o->density = 0.05;
}

/* One failure of the report as a JSON object on a line of err: {"error": KIND, "message":
 * TEXT} plus "policy" when known; what --report=json prints instead of text. */
static void print_json_error(FILE *err, const char *kind, const char *policy, const char *msg) {
  cJSON *o = cJSON_CreateObject();
  if (policy)
    cJSON_AddStringToObject(o, "policy", policy);
  cJSON_AddStringToObject(o, "error", kind);
  cJSON_AddStringToObject(o, "message", msg);
  char *text = cJSON_PrintUnformatted(o);
  if (text)
    fprintf(err, "%s\n", text);
  else
    fprintf(err, "vxc: %s\n", msg);
  free(text);
  cJSON_Delete(o);
}

static int usage_error(const ReportOptions *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const ReportOptions *o, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (o->json_errors)
    print_json_error(stderr, "usage", NULL, msg);
  else
    fprintf(stderr, "vxc: %s\nTry 'vxc --help'.\n", msg);
  return -1;
}

/* Whether the command line asks for the JSON report anywhere (so that an error in an option
 * before it is JSON too). */
static bool wants_json(int argc, char **argv) {
  bool report = false, json = false;
  for (int i = 1; i < argc; i++) {
    report |= !strncmp(argv[i], "--report", 8) && (argv[i][8] == '\0' || argv[i][8] == '=');
    if (!strcmp(argv[i], "--report=json") || !strcmp(argv[i], "--format=json"))
      json = true;
    else if (!strcmp(argv[i], "--report=text") || !strcmp(argv[i], "--format=text"))
      json = false;
  }
  return report && json;
}

/* An integer option's value: digits only (a sign is an error), lo <= value <= hi. */
static int parse_int(const ReportOptions *o, const char *name, const char *s, long long lo, long long hi, long long *out) {
  if (*s == '-' && isdigit((unsigned char)s[1]))
    return usage_error(o, "'%s' must not be negative (got '%s')", name, s);
  char *end;
  errno = 0;
  long long v = isdigit((unsigned char)*s) ? strtoll(s, &end, 10) : 0;
  if (!isdigit((unsigned char)*s) || *end || errno)
    return usage_error(o, "'%s' expects an integer, not '%s'", name, s);
  if (v < lo || v > hi)
    return usage_error(o, "'%s' must be between %lld and %lld (got %lld)", name, lo, hi, v);
  *out = v;
  return 1;
}

static int parse_dtype(const ReportOptions *o, const char *s, DType *out) {
  static const DType kinds[] = {DT_F32, DT_F16, DT_BF16};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (!strcmp(s, ast_dtype_text(kinds[i]))) {
      *out = kinds[i];
      return 1;
    }
  return usage_error(o, "unknown --kv-dtype '%s' (expected f32, f16 or bf16)", s);
}

static int parse_density(const ReportOptions *o, const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno || !isfinite(v))
    return usage_error(o, "'--expected-density' expects a number, not '%s'", s);
  if (v < 0 || v > 1)
    return usage_error(o, "'--expected-density' must be between 0 and 1 (got '%s')", s);
  *out = v;
  return 1;
}

/* The options that take a value, as "--name VALUE" or "--name=VALUE". */
typedef enum Valued { V_CONTEXT, V_BUDGET, V_KV, V_G, V_D, V_P, V_DENSITY, V_LAYERS, V_COUNT } Valued;
static const char *const valued_names[V_COUNT] = {
    "--context", "--budget", "--kv-dtype", "--G", "--D", "--P", "--expected-density", "--layers"};

int report_parse_option(ReportOptions *o, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  if (!o->argv_seen) {
    o->argv_seen = true;
    o->json_errors = wants_json(argc, argv);
  }
  if (!strcmp(a, "--report") || !strcmp(a, "--report=text") || !strcmp(a, "--report=json")) {
    o->enabled = true;
    if (a[8] == '=') /* a bare --report keeps what --format said */
      o->json = !strcmp(a + 9, "json");
    return 1;
  }
  if (!strncmp(a, "--report=", 9))
    return usage_error(o, "unknown --report format '%s' (expected text or json)", a + 9);
  if (!strcmp(a, "--format=json") || !strcmp(a, "--format=text")) {
    o->json = !strcmp(a, "--format=json");
    o->format_given = true;
    return 1;
  }
  if (!strncmp(a, "--format=", 9))
    return usage_error(o, "unknown --format '%s' (expected text or json)", a + 9);
  for (int k = 0; k < V_COUNT; k++) {
    const char *name = valued_names[k];
    size_t len = strlen(name);
    if (strncmp(a, name, len) || (a[len] != '\0' && a[len] != '='))
      continue;
    const char *value = a[len] == '=' ? a + len + 1 : NULL;
    if (!value) {
      if (*i + 1 >= argc)
        return usage_error(o, "'%s' needs a value", name);
      value = argv[++*i];
    }
    if (!*value)
      return usage_error(o, "'%s' needs a value", name);
    o->other_given = true;
    switch ((Valued)k) {
    case V_CONTEXT: return parse_int(o, name, value, 1, MAX_CONTEXT, &o->context);
    case V_BUDGET: return parse_int(o, name, value, 0, MAX_CONTEXT, &o->budget);
    case V_KV: return parse_dtype(o, value, &o->kv_dtype);
    case V_G: return parse_int(o, name, value, 1, MAX_SHAPE, &o->G);
    case V_D: return parse_int(o, name, value, 1, MAX_SHAPE, &o->D);
    case V_P: return parse_int(o, name, value, 1, MAX_SHAPE, &o->P);
    case V_DENSITY: return parse_density(o, value, &o->density);
    case V_LAYERS: return parse_int(o, name, value, 1, REPORT_MAX_LAYERS, &o->layers);
    case V_COUNT: break;
    }
  }
  return 0;
}

bool report_check_options(const ReportOptions *o) {
  const char *problem = NULL;
  if (!o->enabled && (o->format_given || o->other_given))
    problem = "--format, --context, --budget, --kv-dtype, --G, --D, --P, --expected-density and "
              "--layers need --report";
  else if (o->enabled && !o->context)
    problem = "--report needs the context length: --context N (tokens)";
  if (problem)
    usage_error(o, "%s", problem);
  return !problem;
}

/* ---- evaluation of extents and load-time scalars ---- */

typedef struct Ctx {
  const VirModule *m;
  const ReportOptions *o;
  double npages;
  long long layer; /* the layer the figures are for; -1: any (the intrinsic is unknown) */
  char *err;
  size_t errlen;
  bool failed;
} Ctx;

static void fail(Ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(Ctx *x, const char *fmt, ...) {
  if (x->failed)
    return; /* the first problem is the one worth reading */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->err, x->errlen, fmt, ap);
  va_end(ap);
  x->failed = true;
}

/* A param's value: --budget B sets the param named budget, the others keep their defaults. */
static bool param_value(Ctx *x, const VirParam *param, double *out) {
  *out = x->o->budget >= 0 && !strcmp(param->name, "budget") ? (double)x->o->budget : param->def;
  return true;
}

/* The value of a name in an extent or scalar: D, G, P, npages, len (the context), the layer
 * when the figures are for one, or a param's value. */
static bool name_value(Ctx *x, const char *name, size_t len, double *out) {
  const struct { const char *name; double value; bool known; } known[] = {
      {"D", (double)x->o->D, true}, {"G", (double)x->o->G, true}, {"P", (double)x->o->P, true},
      {"npages", x->npages, true}, {"pi", M_PI, true}, {"len", (double)x->o->context, true},
      {"layer", (double)x->layer, x->layer >= 0}};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strlen(known[i].name) == len && !strncmp(known[i].name, name, len)) {
      *out = known[i].value;
      return known[i].known;
    }
  for (int i = 0; i < x->m->nparams; i++) {
    const VirParam *p = x->m->params[i];
    if (strlen(p->name) == len && !strncmp(p->name, name, len))
      return param_value(x, p, out);
  }
  return false;
}

static bool extent_name(void *user, const char *name, long long *out) {
  double v;
  if (!name_value(user, name, strlen(name), &v))
    return false;
  *out = (long long)v;
  return true;
}

static double axis_extent(Ctx *x, const VirAxis *a) {
  long long v;
  if (!vir_extent_eval(a->ext, extent_name, x, &v) || v < 0) {
    fail(x, "cannot evaluate the extent '%s' of axis '%s'", a->extent, a->name);
    return 0;
  }
  return (double)v;
}

/* A load-time scalar (budget, keep count, require) from the options and the params'
 * defaults; false when it needs something only the runtime knows. */
static bool eval_scalar(Ctx *x, const VirValue *v, double *out) {
  double a, b, c;
  switch (v->op) {
  case VI_NUM:
    *out = v->num;
    return true;
  case VI_PARAM:
    return param_value(x, v->param, out);
  case VI_SCALAR:
    return name_value(x, v->name, strlen(v->name), out);
  case VI_UNARY:
    if (!eval_scalar(x, v->args[0], &a))
      return false;
    *out = v->opcode == OP_NEG ? -a : v->opcode == OP_NOT ? !a : ~(long long)a;
    return true;
  case VI_SELECT:
    if (!eval_scalar(x, v->args[0], &c) || !eval_scalar(x, v->args[1], &a) ||
        !eval_scalar(x, v->args[2], &b))
      return false;
    *out = c ? a : b;
    return true;
  case VI_CALL:
    if (v->nargs != 2 || (strcmp(v->name, "min") && strcmp(v->name, "max")) ||
        !eval_scalar(x, v->args[0], &a) || !eval_scalar(x, v->args[1], &b))
      return false;
    *out = !strcmp(v->name, "min") ? fmin(a, b) : fmax(a, b);
    return true;
  case VI_BINARY: {
    if (!eval_scalar(x, v->args[0], &a) || !eval_scalar(x, v->args[1], &b))
      return false;
    bool integer = v->type == TY_I32 || v->type == TY_U32;
    long long ia = (long long)a, ib = (long long)b;
    switch (v->opcode) {
    case OP_ADD: *out = a + b; return true;
    case OP_SUB: *out = a - b; return true;
    case OP_MUL: *out = a * b; return true;
    case OP_DIV:
      if (b == 0)
        return false;
      *out = integer ? (double)(ia / ib) : a / b;
      return true;
    case OP_MOD:
      if (ib == 0)
        return false;
      *out = (double)(ia % ib);
      return true;
    case OP_EQ: *out = a == b; return true;
    case OP_NE: *out = a != b; return true;
    case OP_LT: *out = a < b; return true;
    case OP_LE: *out = a <= b; return true;
    case OP_GT: *out = a > b; return true;
    case OP_GE: *out = a >= b; return true;
    case OP_AND: *out = a && b; return true;
    case OP_OR: *out = a || b; return true;
    default: return false; /* bit operations never make a budget or a keep count */
    }
  }
  default:
    return false;
  }
}

/* A where() condition in the figures' layer: true when it holds for every element whatever
 * the data (`layer < 2 || score[p] > t` in layer 0), false when it fails for every one;
 * returns false when it depends on the data. Follows loads of the tensors the select kernel
 * itself stores. */
static bool eval_condition(Ctx *x, const VirKernel *sel, const VirValue *v, int depth, double *out) {
  if (depth > 64)
    return false;
  if (v->op == VI_LOAD) {
    for (const VirStore *st = sel->stores; st; st = st->next)
      if (st->dst == v->tensor && st->op == OP_ASSIGN)
        return eval_condition(x, sel, st->value, depth + 1, out);
    return false;
  }
  if (v->op == VI_UNARY && v->opcode == OP_NOT) {
    double a;
    if (!eval_condition(x, sel, v->args[0], depth + 1, &a))
      return false;
    *out = !a;
    return true;
  }
  if (v->op == VI_BINARY && (v->opcode == OP_AND || v->opcode == OP_OR)) {
    bool decides = v->opcode == OP_OR; /* the operand value that decides alone */
    double a, b;
    bool ka = eval_condition(x, sel, v->args[0], depth + 1, &a);
    bool kb = eval_condition(x, sel, v->args[1], depth + 1, &b);
    if ((ka && (a != 0) == decides) || (kb && (b != 0) == decides))
      *out = decides;
    else if (ka && kb)
      *out = !decides;
    else
      return false;
    return true;
  }
  return eval_scalar(x, v, out);
}

/* ---- counting (docs/report.md) ---- */

/* What the page and token axes of a kernel's grid range over: the row's pages and tokens
 * for select and update, the selected ones for attend. */
typedef struct Grid {
  double tokens, pages;
} Grid;

/* Elements of the index space spanned by the union of two axis lists. A page axis ranges
 * over grid.pages, a token axis over P, except that a page axis paired with a token axis
 * ranges with it over grid.tokens (the row's last page may be partial). */
static double elements(Ctx *x, VirAxis *const *a, int na, VirAxis *const *b, int nb, Grid grid) {
  const VirAxis *seen[512];
  int n = 0, npage = 0, ntoken = 0;
  double product = 1;
  for (int i = 0; i < na + nb; i++) {
    const VirAxis *ax = i < na ? a[i] : b[i - na];
    bool dup = false;
    for (int j = 0; j < n && !dup; j++)
      dup = seen[j] == ax;
    if (dup || n == 512)
      continue;
    seen[n++] = ax;
    if (ax->role == AX_PAGE)
      npage++;
    else if (ax->role == AX_TOKEN)
      ntoken++;
    else
      product *= axis_extent(x, ax);
  }
  int pairs = npage < ntoken ? npage : ntoken;
  return product * pow(grid.tokens, pairs) * pow(grid.pages, npage - pairs) *
         pow((double)x->o->P, ntoken - pairs);
}

/* FLOPs of one value: one per element of an elementwise operation, comparison or call;
 * a reduction one per element it reads (plus the division of mean, and for norm the square
 * and the square root); softmax three per element (exp, sum, divide). */
static double value_flops(Ctx *x, const VirValue *v, Grid grid) {
  double out = elements(x, v->dom, v->ndom, NULL, 0, grid);
  switch (v->op) {
  case VI_UNARY:
  case VI_BINARY:
  case VI_SELECT:
  case VI_CALL:
    return out;
  case VI_REDUCE: {
    if (v->red == RED_SOFTMAX)
      return 3 * out;
    double in = elements(x, v->dom, v->ndom, v->axes, v->naxes, grid);
    return v->red == RED_MEAN ? in + out : v->red == RED_NORM ? 2 * in + out : in;
  }
  default:
    return 0; /* literals, params, intrinsics, axis indices and loads compute nothing */
  }
}

static double dtype_bytes(DType d) {
#define REPORT_DTYPE_BYTES(tag, name, bytes) bytes,
  static const double size[] = {VXK_DTYPES(REPORT_DTYPE_BYTES)};
#undef REPORT_DTYPE_BYTES
  return size[d];
}

static bool stores_to(const VirKernel *k, const VirTensor *t) {
  for (const VirStore *s = k->stores; s; s = s->next)
    if (s->dst == t)
      return true;
  return false;
}

static bool is_kv(const VirTensor *t) {
  return t->kind == VT_INPUT && (!strcmp(t->name, "k") || !strcmp(t->name, "v"));
}

/* Bytes per element of a tensor that kernel k reads from memory; 0 for what it does not:
 * q (read in the row block), logit (a register of the attend kernel), pos, from_end and
 * kept (computed from the indices and the keep ranges) and step tensors the kernel itself
 * stores (fused: they never leave the chip). */
static double read_bytes(const ReportOptions *o, const VirTensor *t, const VirKernel *k) {
  switch (t->kind) {
  case VT_INPUT:
    if (is_kv(t))
      return dtype_bytes(o->kv_dtype);
    return !strcmp(t->name, "prob") ? 4 : 0; /* prob: f32, written by the attention */
  case VT_STEP:
    return stores_to(k, t) ? 0 : dtype_bytes(t->dtype);
  default:
    return dtype_bytes(t->dtype);
  }
}

static const VirKernel *find_kernel(const VirModule *m, VirKernelKind kind) {
  for (const VirKernel *k = m->kernels; k; k = k->next)
    if (k->kind == kind)
      return k;
  return NULL;
}

/* A kernel's cost per row and step. Row-block values count once (their domain has no page
 * or token axis); per-element values over the grid; loads in the per-element block once
 * per distinct tensor (the largest of its loads). With skip_kv, k and v are not counted:
 * the attention reads them anyway. r, when given, receives the tensors read. */
static ReportCost kernel_cost(Ctx *x, const VirKernel *k, Grid grid, bool skip_kv, Report *r) {
  ReportCost c = {0, 0};
  if (!k)
    return c;
  for (const VirValue *v = k->row.first; v; v = v->next)
    c.flops += value_flops(x, v, grid);
  const VirTensor *tensor[REPORT_MAX_READS];
  double bytes[REPORT_MAX_READS];
  bool per_token[REPORT_MAX_READS];
  int n = 0;
  for (const VirValue *v = k->each.first; v; v = v->next) {
    c.flops += value_flops(x, v, grid);
    if (v->op != VI_LOAD || (skip_kv && is_kv(v->tensor)))
      continue;
    double b = elements(x, v->dom, v->ndom, NULL, 0, grid) * read_bytes(x->o, v->tensor, k);
    if (b == 0)
      continue;
    int i = 0;
    while (i < n && tensor[i] != v->tensor)
      i++;
    if (i == n && n == REPORT_MAX_READS) {
      fail(x, "the %s kernel reads more than %d tensors", vir_kernel_kind_text(k->kind),
           REPORT_MAX_READS);
      break;
    }
    if (i == n) {
      tensor[n] = v->tensor;
      bytes[n++] = 0;
    }
    if (b > bytes[i]) {
      bytes[i] = b;
      per_token[i] = false;
      for (int d = 0; d < v->ndom; d++)
        per_token[i] |= v->dom[d]->role == AX_TOKEN;
    }
  }
  for (int i = 0; i < n; i++) {
    c.bytes += bytes[i];
    if (!r)
      continue;
    ReportRead *rd = &r->reads[r->nreads++];
    rd->tensor = tensor[i]->name;
    rd->dtype = is_kv(tensor[i]) ? x->o->kv_dtype : tensor[i]->dtype;
    rd->per_token = per_token[i];
    rd->per_elem = bytes[i] / (rd->per_token ? grid.tokens : grid.pages);
    rd->bytes = bytes[i];
  }
  return c;
}

static void note(Report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(Report *r, const char *fmt, ...) {
  if (r->nnotes == REPORT_MAX_NOTES)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->notes[r->nnotes++], REPORT_NOTE_LEN, fmt, ap);
  va_end(ap);
}

/* Does a kernel other than select read a step tensor that select stores? Then scoring
 * cannot be skipped even when the budget covers the row. */
static bool select_feeds_others(const VirModule *m, const VirKernel *sel) {
  for (const VirKernel *k = m->kernels; k; k = k->next) {
    if (k == sel)
      continue;
    for (int b = 0; b < 2; b++)
      for (const VirValue *v = b ? k->each.first : k->row.first; v; v = v->next)
        if (v->op == VI_LOAD && v->tensor->kind == VT_STEP && stores_to(sel, v->tensor))
          return true;
  }
  return false;
}

/* Whether kernel k reads the layer index: its selection may differ from layer to layer. */
static bool reads_layer(const VirKernel *k) {
  for (int b = 0; k && b < 2; b++)
    for (const VirValue *v = b ? k->each.first : k->row.first; v; v = v->next)
      if (v->op == VI_SCALAR && !strcmp(v->name, "layer"))
        return true;
  return false;
}

/* The selection: always-kept tokens, budgets, and the tokens attended per step. */
static void count_selection(Ctx *x, Report *r) {
  const VirModule *m = x->m;
  double N = (double)x->o->context, P = (double)x->o->P;
  bool generated = false;
  for (int i = 0; i < m->nkeeps; i++) {
    const VirKeep *k = &m->keeps[i];
    double n;
    if (k->kind == KEEP_GENERATED)
      generated = true;
    else if (eval_scalar(x, k->count, &n))
      r->keep += n * (k->unit == UNIT_PAGES ? P : 1);
    else
      fail(x, "cannot evaluate keep range %d from the params' defaults", i + 1);
  }
  r->keep = fmin(r->keep, N);
  double top_pages = 0, top_tokens = 0;
  int ntop = 0;
  bool where = false;
  r->budget = -1;
  r->budget_from_source = x->o->budget < 0;
  const VirKernel *sel = find_kernel(m, VK_SELECT);
  for (int i = 0; i < m->nselections; i++) {
    const VirSelection *s = &m->selections[i];
    r->select_all |= s->kind == VS_ALL;
    if (s->kind == VS_WHERE) {
      /* in a layer where the condition is decided by the layer alone, the where() selects
       * all tokens or none: no estimate */
      const VirStore *st = sel ? sel->stores : NULL;
      while (st && st->dst != s->scores)
        st = st->next;
      double holds;
      if (st && eval_condition(x, sel, st->value, 0, &holds))
        r->select_all |= holds != 0;
      else
        where = true;
    }
    if (s->kind != VS_TOP)
      continue;
    double b = 0;
    if (eval_scalar(x, s->count, &b))
      b = fmax(b, 0) * (s->unit == UNIT_PAGES ? P : 1);
    else
      fail(x, "cannot evaluate the budget of top() %d from the params, the shapes and --context", i + 1);
    r->budget = (r->budget < 0 ? 0 : r->budget) + b;
    top_pages += floor(b / P);
    top_tokens += b;
    ntop++;
  }
  double base;
  if (ntop && !m->token_granular) /* whole pages: budget/P of them, at least the kept ones */
    base = fmax(top_pages, ceil(r->keep / P)) * P;
  else
    base = fmax(top_tokens, r->keep);
  base = fmin(base, N);
  r->estimate = where && !r->select_all;
  r->selected = r->select_all ? N : where ? base + x->o->density * (N - base) : base;
  /* per head: G selections, kept tokens shared, the rest at worst disjoint */
  double shared = fmin(r->keep, r->selected);
  r->union_tokens = r->per_head && !r->select_all
                        ? fmin(N, shared + (double)x->o->G * (r->selected - shared))
                        : r->selected;
  r->scoring_skipped = ntop && !where && !r->select_all && base >= N && sel &&
                       !select_feeds_others(m, sel);

  if (r->estimate)
    note(r, "ESTIMATE: where() selects a data-dependent set; assumed %g of the %.0f tokens "
            "outside the top()/kept ones (--expected-density)%s",
         x->o->density, N - base, r->per_head ? ", read by any head of the group" : "");
  if (generated)
    note(r, "'keep generated' adds the tokens generated in decode; counted as 0 here");
  if (ntop && r->budget > N)
    note(r, "the budget (%.0f tokens) exceeds the context: clamped to %.0f", r->budget, N);
  if (r->scoring_skipped)
    note(r, "the budget covers the whole row: scoring is skipped (every token is attended)");
  bool has_budget = false;
  for (int i = 0; i < m->nparams; i++)
    has_budget |= !strcmp(m->params[i]->name, "budget");
  if (x->o->budget >= 0 && !has_budget)
    note(r, "--budget is not used: the policy has no param 'budget'");
  r->layer_dependent = reads_layer(sel);
  if (r->layer_dependent && x->layer < 0 && !r->select_all)
    note(r, "the selection depends on the layer (the select kernel reads 'layer'): these "
            "figures assume every layer selects as the budget says, where one may attend more, "
            "up to the dense row; --layers L reports each layer");
  if (r->per_head && !r->select_all)
    note(r, "select per head: each query head attends its own %.0f tokens; the group reads "
            "the union of their selections, counted as up to %.0f tokens of K and V (disjoint "
            "selections beside the shared kept ones)", r->selected, r->union_tokens);
}

static void check_requires(Ctx *x) {
  for (int i = 0; i < x->m->nrequires; i++) {
    double ok;
    if (eval_scalar(x, x->m->requires[i], &ok) && !ok)
      fail(x, "require %d of the policy does not hold for D = %lld, G = %lld, P = %lld", i + 1,
           x->o->D, x->o->G, x->o->P);
  }
}

/* The totals and the predicted speedups from the parts. */
static void finish(Report *r) {
  r->total.bytes = r->scoring.bytes + r->attention.bytes + r->update.bytes;
  r->total.flops = r->scoring.flops + r->attention.flops + r->update.flops;
  r->speedup_bytes = r->dense.bytes / r->total.bytes;
  r->speedup_flops = r->dense.flops / r->total.flops;
  /* roofline: a step takes max(bytes / bandwidth, FLOPs / peak); in units of bytes */
  double t_sparse = fmax(r->total.bytes, r->total.flops / REPORT_BALANCE);
  double t_dense = fmax(r->dense.bytes, r->dense.flops / REPORT_BALANCE);
  r->flops_bound = r->total.flops / REPORT_BALANCE > r->total.bytes;
  r->speedup = t_dense / t_sparse;
}

/* The report for one layer (layer >= 0) or for any (-1: 'layer' unknown). */
static bool compute_layer(const VirModule *m, const ReportOptions *o, long long layer, Report *r,
                          char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  r->policy = m->name;
  r->opt = *o;
  /* a policy that only keeps ranges selects at the granularity of their units */
  r->token_granular = m->token_granular;
  for (int i = 0; i < m->nkeeps && !m->nselections; i++)
    r->token_granular |= m->keeps[i].unit == UNIT_TOKENS;
  r->per_head = m->per_head;
  double N = (double)o->context, P = (double)o->P;
  Ctx x = {m, o, ceil(N / P), layer, err, errlen, false};
  r->npages = (long long)x.npages;
  check_requires(&x);
  count_selection(&x, r);

  double kv = dtype_bytes(o->kv_dtype), G = (double)o->G, D = (double)o->D;
  Grid row = {N, x.npages};
  const VirKernel *sel = find_kernel(m, VK_SELECT);
  if (!r->scoring_skipped)
    r->scoring = kernel_cost(&x, sel, row, false, r);
  for (int i = 0; i < r->nreads; i++)
    if (!strcmp(r->reads[i].tensor, "k") || !strcmp(r->reads[i].tensor, "v"))
      note(r, "scoring reads the KV cache itself (%s of every token, every step): as many "
              "bytes as dense attention spends on %s", r->reads[i].tensor, r->reads[i].tensor);
  Grid chosen = {r->selected, ceil(r->selected / P)};
  ReportCost mod = kernel_cost(&x, find_kernel(m, VK_ATTEND), chosen, true, NULL);
  r->modifier_flops = mod.flops;
  r->attention.bytes = r->union_tokens * 2 * D * kv + mod.bytes;
  r->attention.flops = r->selected * 4 * G * D + mod.flops;
  r->update = kernel_cost(&x, find_kernel(m, VK_UPDATE), row, false, NULL);
  r->dense.bytes = N * 2 * D * kv;
  r->dense.flops = N * 4 * G * D;
  finish(r);
  return !x.failed;
}

static void add_cost(ReportCost *sum, const ReportCost *c) {
  sum->bytes += c->bytes;
  sum->flops += c->flops;
}

static void scale_cost(ReportCost *c, double f) {
  c->bytes *= f;
  c->flops *= f;
}

/* Adds one layer's figures to r's sums and to its table of layer ranges. */
static bool add_layer(Report *r, const Report *one, int layer) {
  add_cost(&r->scoring, &one->scoring);
  add_cost(&r->attention, &one->attention);
  add_cost(&r->update, &one->update);
  r->selected += one->selected;
  r->union_tokens += one->union_tokens;
  r->modifier_flops += one->modifier_flops;
  r->estimate |= one->estimate;
  for (int i = 0; i < one->nnotes; i++) {
    int k = 0;
    while (k < r->nnotes && strcmp(r->notes[k], one->notes[i]))
      k++;
    if (k == r->nnotes && r->nnotes < REPORT_MAX_NOTES)
      memcpy(r->notes[r->nnotes++], one->notes[i], REPORT_NOTE_LEN);
  }
  ReportLayers *g = r->nlayer_ranges ? &r->layer_ranges[r->nlayer_ranges - 1] : NULL;
  if (g && g->selected == one->selected && g->total.bytes == one->total.bytes &&
      g->total.flops == one->total.flops) {
    g->last = layer;
    return true;
  }
  if (r->nlayer_ranges == REPORT_MAX_LAYER_RANGES)
    return false;
  r->layer_ranges[r->nlayer_ranges++] =
      (ReportLayers){layer, layer, one->selected, one->estimate, one->total, one->speedup};
  return true;
}

bool report_compute(const VirModule *m, const ReportOptions *o, Report *r, char *err, size_t errlen) {
  if (!compute_layer(m, o, -1, r, err, errlen))
    return false;
  if (!o->layers || !r->layer_dependent)
    return true;
  /* per layer: the headline figures become the mean over the layers */
  Report one;
  r->scoring = r->attention = r->update = (ReportCost){0, 0};
  r->selected = r->union_tokens = r->modifier_flops = 0;
  r->estimate = false;
  r->nnotes = 0;
  for (int l = 0; l < o->layers; l++) {
    if (!compute_layer(m, o, l, &one, err, errlen))
      return false;
    if (!add_layer(r, &one, l)) {
      snprintf(err, errlen, "more than %d runs of layers with different costs: report fewer layers",
               REPORT_MAX_LAYER_RANGES);
      return false;
    }
  }
  double mean = 1.0 / (double)o->layers;
  scale_cost(&r->scoring, mean);
  scale_cost(&r->attention, mean);
  scale_cost(&r->update, mean);
  r->selected *= mean;
  r->union_tokens *= mean;
  r->modifier_flops *= mean;
  r->select_all = false;
  finish(r);
  return true;
}

/* ---- output ---- */

static const char *granularity(const Report *r) { return r->token_granular ? "token" : "page"; }

static void print_json(FILE *out, const Report *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "policy", r->policy);
  cJSON_AddNumberToObject(o, "context", (double)r->opt.context);
  cJSON_AddNumberToObject(o, "pages", (double)r->npages);
  cJSON_AddStringToObject(o, "kv_dtype", ast_dtype_text(r->opt.kv_dtype));
  cJSON_AddNumberToObject(o, "G", (double)r->opt.G);
  cJSON_AddNumberToObject(o, "D", (double)r->opt.D);
  cJSON_AddNumberToObject(o, "P", (double)r->opt.P);
  if (r->budget >= 0)
    cJSON_AddNumberToObject(o, "budget", r->budget);
  else
    cJSON_AddNullToObject(o, "budget");
  cJSON_AddNumberToObject(o, "kept_tokens", r->keep);
  cJSON_AddStringToObject(o, "granularity", granularity(r));
  cJSON_AddStringToObject(o, "scope", r->per_head ? "per-head" : "group");
  cJSON_AddNumberToObject(o, "selected_tokens", r->selected);
  cJSON_AddBoolToObject(o, "selected_is_estimate", r->estimate);
  if (r->estimate)
    cJSON_AddNumberToObject(o, "expected_density", r->opt.density);
  const struct { const char *name; const ReportCost *c; } parts[] = {
      {"scoring", &r->scoring}, {"attention", &r->attention}, {"update", &r->update},
      {"total", &r->total}, {"dense", &r->dense}};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    cJSON *p = cJSON_AddObjectToObject(o, parts[i].name);
    cJSON_AddNumberToObject(p, "bytes", parts[i].c->bytes);
    cJSON_AddNumberToObject(p, "flops", parts[i].c->flops);
    if (parts[i].c == &r->scoring) {
      cJSON_AddBoolToObject(p, "skipped", r->scoring_skipped);
      cJSON *reads = cJSON_AddArrayToObject(p, "reads");
      for (int k = 0; k < r->nreads; k++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "tensor", r->reads[k].tensor);
        cJSON_AddStringToObject(t, "dtype", ast_dtype_text(r->reads[k].dtype));
        cJSON_AddNumberToObject(t, r->reads[k].per_token ? "bytes_per_token" : "bytes_per_page",
                                r->reads[k].per_elem);
        cJSON_AddNumberToObject(t, "bytes", r->reads[k].bytes);
        cJSON_AddItemToArray(reads, t);
      }
    }
    if (parts[i].c == &r->attention)
      cJSON_AddNumberToObject(p, "modifier_flops", r->modifier_flops);
  }
  cJSON *s = cJSON_AddObjectToObject(o, "speedup");
  cJSON_AddNumberToObject(s, "bytes", r->speedup_bytes);
  cJSON_AddNumberToObject(s, "flops", r->speedup_flops);
  cJSON_AddNumberToObject(s, "predicted", r->speedup);
  cJSON_AddStringToObject(s, "bound", r->flops_bound ? "flops" : "bytes");
  cJSON_AddNumberToObject(s, "machine_balance", REPORT_BALANCE);
  cJSON_AddNumberToObject(s, "flops_per_byte", r->total.bytes ? r->total.flops / r->total.bytes : 0);
  if (r->per_head && !r->select_all)
    cJSON_AddNumberToObject(o, "union_tokens", r->union_tokens);
  cJSON_AddBoolToObject(o, "layer_dependent", r->layer_dependent);
  if (r->nlayer_ranges) {
    cJSON_AddNumberToObject(o, "layers", (double)r->opt.layers);
    cJSON *ranges = cJSON_AddArrayToObject(o, "per_layer");
    for (int i = 0; i < r->nlayer_ranges; i++) {
      const ReportLayers *g = &r->layer_ranges[i];
      cJSON *t = cJSON_CreateObject();
      cJSON_AddNumberToObject(t, "first", g->first);
      cJSON_AddNumberToObject(t, "last", g->last);
      cJSON_AddNumberToObject(t, "selected_tokens", g->selected);
      cJSON_AddBoolToObject(t, "selected_is_estimate", g->estimate);
      cJSON_AddNumberToObject(t, "bytes", g->total.bytes);
      cJSON_AddNumberToObject(t, "flops", g->total.flops);
      cJSON_AddNumberToObject(t, "predicted_speedup", g->speedup);
      cJSON_AddItemToArray(ranges, t);
    }
  }
  cJSON *notes = cJSON_AddArrayToObject(o, "notes");
  for (int i = 0; i < r->nnotes; i++)
    cJSON_AddItemToArray(notes, cJSON_CreateString(r->notes[i]));
  char *text = cJSON_PrintUnformatted(o);
  if (text)
    fprintf(out, "%s\n", text);
  cJSON_free(text);
  cJSON_Delete(o);
}

/* "2.00 MiB": bytes for a reader; the exact count is printed beside it. */
static const char *human(double bytes, char *buf, size_t len) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    u++;
  }
  snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", bytes, unit[u]);
  return buf;
}

static void print_row(FILE *out, const char *name, const ReportCost *c) {
  char h[32];
  fprintf(out, "  %-10s %16.0f  %-11s %16.0f\n", name, c->bytes, human(c->bytes, h, sizeof h),
          c->flops);
}

/* With --layers: the runs of layers whose figures differ. */
static void print_layers(FILE *out, const Report *r) {
  if (!r->nlayer_ranges)
    return;
  fprintf(out, "per layer (%lld layers; the figures above are their mean):\n", r->opt.layers);
  for (int i = 0; i < r->nlayer_ranges; i++) {
    const ReportLayers *g = &r->layer_ranges[i];
    char range[32], h[32];
    snprintf(range, sizeof range, g->first == g->last ? "%d" : "%d-%d", g->first, g->last);
    fprintf(out, "  layers %-9s %8.0f tokens  %16.0f bytes (%s)  %16.0f FLOPs  %.2fx%s\n", range,
            g->selected, g->total.bytes, human(g->total.bytes, h, sizeof h), g->total.flops,
            g->speedup, g->estimate ? "  (tokens: ESTIMATE)" : "");
  }
}

static void print_text(FILE *out, const Report *r) {
  const ReportOptions *o = &r->opt;
  fprintf(out, "cost report: policy %s\n", r->policy);
  fprintf(out, "  context N = %lld tokens (%lld pages of P = %lld), D = %lld, G = %lld, kv %s\n",
          o->context, r->npages, o->P, o->D, o->G, ast_dtype_text(o->kv_dtype));
  fprintf(out, "  selection: ");
  if (r->select_all)
    fprintf(out, "all tokens (dense)");
  else if (r->budget >= 0)
    fprintf(out, "top() budget %.0f tokens%s", r->budget, r->budget_from_source ? " (the policy's default)" : "");
  else if (r->estimate)
    fprintf(out, "where() threshold");
  else
    fprintf(out, "the always-kept ranges");
  fprintf(out, ", %.0f always kept; %s granularity, %s\n", r->keep, granularity(r),
          r->per_head ? "per query head" : "shared by the query group");
  fprintf(out, "  attended per step: %.0f tokens%s\n", r->selected,
          r->estimate ? " (ESTIMATE: data-dependent, see the note)" : "");
  fprintf(out, "per decode step and row (one request, one KV head):\n");
  fprintf(out, "  %-10s %16s  %-11s %16s\n", "", "bytes read", "", "FLOPs");
  print_row(out, "scoring", &r->scoring);
  print_row(out, "attention", &r->attention);
  if (r->update.bytes || r->update.flops)
    print_row(out, "update", &r->update);
  print_row(out, "total", &r->total);
  print_row(out, "dense", &r->dense);
  if (r->modifier_flops)
    fprintf(out, "  (attention includes %.0f FLOPs of logit modifiers)\n", r->modifier_flops);
  for (int i = 0; i < r->nreads; i++)
    fprintf(out, "%s %s %s %.0f B/%s", i ? "," : "  scoring reads:", r->reads[i].tensor,
            ast_dtype_text(r->reads[i].dtype), r->reads[i].per_elem,
            r->reads[i].per_token ? "token" : "page");
  if (r->nreads)
    fputc('\n', out);
  fprintf(out, "predicted speedup over dense: %.2fx, %s bound (%.1f FLOPs per byte read; "
               "machine balance assumed %.0f FLOPs/byte); %.2fx by bytes, %.2fx by FLOPs\n",
          r->speedup, r->flops_bound ? "compute" : "memory",
          r->total.bytes ? r->total.flops / r->total.bytes : 0.0, (double)REPORT_BALANCE,
          r->speedup_bytes, r->speedup_flops);
  print_layers(out, r);
  for (int i = 0; i < r->nnotes; i++)
    fprintf(out, "note: %s\n", r->notes[i]);
}

void report_print(FILE *out, const Report *r, bool json) {
  if (json)
    print_json(out, r);
  else
    print_text(out, r);
}

int report_run(const VirModule *m, const ReportOptions *o, FILE *out, FILE *err) {
  Report r;
  char msg[256];
  if (!report_compute(m, o, &r, msg, sizeof msg)) {
    if (o->json)
      print_json_error(err, "report", m->name, msg);
    else
      fprintf(err, "vxc: cannot report on policy '%s': %s\n", m->name, msg);
    return 1;
  }
  report_print(out, &r, o->json);
  return 0;
}
