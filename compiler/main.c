/* main.c - the vxc command line: parses options, runs the front end, prints diagnostics and
 * whatever was asked for. Exit codes: 0 success, 1 errors in the input, 2 usage or I/O. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front.h"
#include "lex.h"
#include "cg.h"
#include "lower.h"
#include "package.h"
#include "pass.h"
#include "report.h"

#ifndef VX_VERSION
#define VX_VERSION "0.0.0-dev"
#endif

/* EMIT_ARTIFACT, the default, compiles FILE to a loadable artifact. */
typedef enum Emit { EMIT_ARTIFACT, EMIT_TOKENS, EMIT_AST, EMIT_IR, EMIT_LLVM } Emit;

typedef struct Options {
  const char *input;
  Emit emit;
  DiagFormat format;
  bool check;
  const char *output; /* -o */
  int opt_level;      /* -O1 (default) or -O2 */
  ReportOptions report;
} Options;

static void usage(FILE *out) {
  fputs("usage: vxc [options] FILE.vx\n"
        "\n"
        "Compiles a sparse-attention policy written in .vx into an artifact that libvxrt loads\n"
        "(NAME.vxp in the current directory unless -o says otherwise).\n"
        "\n"
        "options:\n"
        "  -o OUT                write the compiled policy to OUT\n"
        "  -O1, -O2              host code optimisation: -O1 compiles in milliseconds (default),\n"
        "                        -O2 runs LLVM's full pipeline (faster CPU kernels, slower compile)\n"
        "  --check               parse and check FILE, print diagnostics only\n"
        "  --emit=tokens         print the tokens of FILE (line:col kind text)\n"
        "  --emit=ast            print the checked syntax tree of FILE\n"
        "  --emit=ir             print FILE's VIR after the passes (docs/ir.md)\n"
        "  --emit=llvm           print the optimised LLVM IR of FILE's host code\n"
        "  --report[=text|json]  print bytes read and FLOPs per decode step and row, and the\n"
        "                        predicted speedup over dense (docs/report.md); needs:\n"
        "    --context N           tokens in the row\n"
        "    --budget B            top() budget in tokens (default: the policy's own)\n"
        "    --kv-dtype T          f32, f16 or bf16 (default bf16)\n"
        "    --G g --D d --P p     query heads per KV head, head dim, page size (4, 128, 16)\n"
        "    --expected-density X  fraction where() selects, an estimate (default 0.05)\n"
        "    --format=json         the report as one JSON object (as --report=json)\n"
        "  --diagnostics=text    diagnostics as file:line:col: error: message (default)\n"
        "  --diagnostics=json    one JSON object per diagnostic on stderr\n"
        "  --help                show this help\n"
        "  --version             show the version\n"
        "\n"
        "exit status: 0 success, 1 errors in the input, 2 usage or I/O errors,\n"
        "             3 internal compiler error\n",
        out);
}

static int usage_error(const char *fmt, const char *arg) {
  fputs("vxc: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\nTry 'vxc --help'.\n", stderr);
  return 2;
}

/* Returns -1 when the options are good, else the exit code. */
static int parse_options(int argc, char **argv, Options *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int taken = report_parse_option(&o->report, argc, argv, &i);
    if (taken < 0)
      return 2;
    if (taken)
      continue;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--version")) {
      printf("vxc %s\n", VX_VERSION);
      return 0;
    } else if (!strcmp(a, "-o")) {
      if (i + 1 >= argc)
        return usage_error("%s", "-o needs a file name");
      o->output = argv[++i];
    } else if (!strcmp(a, "-O1") || !strcmp(a, "-O2")) {
      o->opt_level = a[2] - '0';
    } else if (!strcmp(a, "--check")) {
      o->check = true;
    } else if (!strcmp(a, "--emit=tokens")) {
      o->emit = EMIT_TOKENS;
    } else if (!strcmp(a, "--emit=ast")) {
      o->emit = EMIT_AST;
    } else if (!strcmp(a, "--emit=ir")) {
      o->emit = EMIT_IR;
    } else if (!strcmp(a, "--emit=llvm")) {
      o->emit = EMIT_LLVM;
    } else if (!strncmp(a, "--emit=", 7)) {
      return usage_error("unknown --emit kind '%s' (expected tokens, ast, ir or llvm)", a + 7);
    } else if (!strcmp(a, "--diagnostics=json")) {
      o->format = DIAG_JSON;
    } else if (!strcmp(a, "--diagnostics=text")) {
      o->format = DIAG_TEXT;
    } else if (!strncmp(a, "--diagnostics=", 14)) {
      return usage_error("unknown diagnostics format '%s' (expected text or json)", a + 14);
    } else if (a[0] == '-' && a[1] != '\0') {
      return usage_error("unknown option '%s'", a);
    } else if (o->input) {
      return usage_error("more than one input file ('%s')", a);
    } else {
      o->input = a;
    }
  }
  if (!o->input)
    return usage_error("%s", "no input file");
  if (o->check && o->emit != EMIT_ARTIFACT)
    return usage_error("%s", "--check and --emit exclude each other");
  if (o->report.enabled && (o->check || o->emit != EMIT_ARTIFACT))
    return usage_error("%s", "--report excludes --check and --emit");
  if (o->output && (o->check || o->report.enabled || o->emit != EMIT_ARTIFACT))
    return usage_error("%s", "-o goes with compiling to an artifact, not with --check, --emit or --report");
  if (!report_check_options(&o->report))
    return 2;
  return -1;
}

/* Lowers and optimises; NULL when the verifier caught a compiler bug. */
static VirModule *middle_end(Compilation *c) {
  VirModule *m = lower_policy(&c->arena, c->policy);
  if (pass_run(m, stderr)) {
    fputs("vxc: internal error: invalid VIR (a compiler bug; please report it)\n", stderr);
    return NULL;
  }
  return m;
}

/* NAME.vxp in the current directory for input .../NAME.vx. */
static char *default_output(const char *input) {
  const char *base = strrchr(input, '/');
  base = base ? base + 1 : input;
  size_t n = strlen(base);
  if (n > 3 && !strcmp(base + n - 3, ".vx"))
    n -= 3;
  char *out = malloc(n + 5);
  if (out) {
    memcpy(out, base, n);
    strcpy(out + n, ".vxp");
  }
  return out;
}

/* --emit=ir, --emit=llvm and the artifact; returns the exit code. */
static int back_end(Compilation *c, const Options *o) {
  VirModule *m = middle_end(c);
  if (!m)
    return 3;
  if (o->emit == EMIT_IR) {
    vir_print(stdout, m);
    return 0;
  }
  CgHostResult r = {0};
  bool ok = (o->emit == EMIT_LLVM || pkg_fits(m, &c->diags, c->policy->span)) &&
            cg_host_compile(m, &c->diags, c->policy->span, o->opt_level, o->emit == EMIT_LLVM, &r);
  if (ok && o->emit == EMIT_LLVM) {
    fputs(r.llvm_ir, stdout);
  } else if (ok) {
    char *fallback = o->output ? NULL : default_output(o->input);
    const char *path = o->output ? o->output : fallback;
    ok = path && pkg_write(m, &c->src, &r, path, &c->diags, c->policy->span);
    free(fallback);
  }
  cg_host_result_free(&r);
  if (!ok) {
    diag_render(&c->diags, stderr, o->format);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  Options o = {0};
  o.opt_level = 1;
  report_options_init(&o.report);
  int rc = parse_options(argc, argv, &o);
  if (rc >= 0)
    return rc;
  char *text;
  int len;
  const char *error;
  if (!front_read_file(o.input, &text, &len, &error)) {
    fprintf(stderr, "vxc: cannot read '%s': %s\n", o.input, error);
    return 2;
  }
  Compilation c;
  int nerrors = front_compile(&c, o.input, text, len);
  free(text);
  diag_render(&c.diags, stderr, o.format);
  if (o.emit == EMIT_TOKENS)
    lex_dump(&c.src, stdout);
  else if (o.emit == EMIT_AST && c.policy && nerrors == 0)
    ast_print(stdout, c.policy, true);
  rc = nerrors ? 1 : 0;
  if (nerrors == 0 && o.report.enabled) {
    VirModule *m = middle_end(&c);
    rc = m ? report_run(m, &o.report, stdout, stderr) : 3;
  } else if (nerrors == 0 && !o.check && (o.emit == EMIT_ARTIFACT || o.emit == EMIT_IR || o.emit == EMIT_LLVM)) {
    rc = back_end(&c, &o);
  }
  front_destroy(&c);
  return rc;
}
