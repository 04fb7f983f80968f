/* main.c - the vxc command line: parses options, runs the front end, prints diagnostics and
 * whatever was asked for. Exit codes: 0 success, 1 errors in the input, 2 usage or I/O. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compile.h"
#include "lex.h"
#include "report.h"

#ifndef VX_VERSION
#define VX_VERSION "0.0.0-dev"
#endif

/* EMIT_ARTIFACT, the default, compiles FILE to a loadable artifact. */
typedef enum Emit { EMIT_ARTIFACT, EMIT_TOKENS, EMIT_AST, EMIT_IR, EMIT_LLVM, EMIT_PTX } Emit;

typedef struct Options {
  const char *input;
  Emit emit;
  DiagFormat format;
  bool format_given;  /* --diagnostics=...; else --report=json makes them JSON */
  bool check;
  const char *output; /* -o */
  int opt_level;      /* -O1 (default) or -O2 */
  ReportOptions report;
  const char *targets[COMPILE_MAX_TARGETS]; /* --target sm_90 ... */
  int ntargets;
  CgShape shapes[COMPILE_MAX_SHAPES];       /* --shape D=..,G=..,P=..,kv=.. */
  int nshapes;
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
        "  --target sm_90        also compile GPU kernels (PTX) for sm_90 or sm_80; repeatable\n"
        "  --shape D=128,G=4,P=16,kv=bf16\n"
        "                        a shape the GPU kernels are specialised on (kv: f32, f16, bf16);\n"
        "                        repeatable; default: D 64 and 128 x G 1, 4 and 8 x P 16 x bf16\n"
        "                        and f32\n"
        "  --emit=ptx            print the PTX of the first --target (sm_90 if none)\n"
        "  --report[=text|json]  print bytes read and FLOPs per decode step and row, and the\n"
        "                        predicted speedup over dense (docs/report.md); needs:\n"
        "    --context N           tokens in the row\n"
        "    --budget B            sets the policy's param 'budget' (tokens) for the report\n"
        "    --kv-dtype T          f32, f16 or bf16 (default bf16)\n"
        "    --G g --D d --P p     query heads per KV head, head dim, page size (4, 128, 16)\n"
        "    --expected-density X  fraction where() selects, an estimate (default 0.05)\n"
        "    --layers L            decoder layers: figures per layer for a selection that\n"
        "                          reads 'layer' (the headline is then their mean)\n"
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
    } else if (!strcmp(a, "--emit=ptx")) {
      o->emit = EMIT_PTX;
    } else if (!strcmp(a, "--target")) {
      if (i + 1 >= argc)
        return usage_error("%s", "--target needs an sm (sm_90 or sm_80)");
      const char *t = argv[++i];
      if (strcmp(t, "sm_90") && strcmp(t, "sm_80"))
        return usage_error("unknown --target '%s' (expected sm_90 or sm_80)", t);
      if (o->ntargets == COMPILE_MAX_TARGETS)
        return usage_error("%s", "too many --target options");
      o->targets[o->ntargets++] = t;
    } else if (!strcmp(a, "--shape")) {
      if (i + 1 >= argc)
        return usage_error("%s", "--shape needs D=..,G=..,P=..,kv=..");
      char err[160];
      if (o->nshapes == COMPILE_MAX_SHAPES)
        return usage_error("%s", "too many --shape options");
      if (!cg_shape_parse(argv[++i], &o->shapes[o->nshapes], err, sizeof err))
        return usage_error("%s", err);
      o->nshapes++;
    } else if (!strncmp(a, "--emit=", 7)) {
      return usage_error("unknown --emit kind '%s' (expected tokens, ast, ir, llvm or ptx)", a + 7);
    } else if (!strcmp(a, "--diagnostics=json") || !strcmp(a, "--diagnostics=text")) {
      o->format = a[14] == 'j' ? DIAG_JSON : DIAG_TEXT;
      o->format_given = true;
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
  if ((o->ntargets || o->nshapes) && o->emit != EMIT_ARTIFACT && o->emit != EMIT_PTX)
    return usage_error("%s", "--target and --shape go with compiling to an artifact or --emit=ptx");
  if (o->emit == EMIT_PTX && !o->ntargets)
    o->targets[o->ntargets++] = "sm_90";
  if (o->ntargets && !o->nshapes)
    o->nshapes = cg_default_shapes(o->shapes, COMPILE_MAX_SHAPES);
  if (!report_check_options(&o->report))
    return 2;
  if (o->report.enabled && o->report.json && !o->format_given)
    o->format = DIAG_JSON; /* --report=json: every failure is JSON */
  return -1;
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

/* What an existing non-regular file is, for refusing it as an output. */
static const char *output_kind(mode_t mode) {
  return S_ISDIR(mode) ? "a directory" : S_ISCHR(mode) || S_ISBLK(mode) ? "a device" :
         S_ISFIFO(mode) ? "a FIFO" : S_ISSOCK(mode) ? "a socket" : "not a regular file";
}

/* The directory part of path ("." when it has none), malloc'd. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return strdup(".");
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, path, n);
    d[n] = '\0';
  }
  return d;
}

/* Follows symbolic links from path (as cc -o does, a dangling one included) to the file the
 * artifact will replace; that must be a regular file or a new name in a writable directory.
 * Returns the resolved path (malloc'd), or NULL after saying why on stderr: the artifact is
 * written beside its destination and renamed over it, which would replace a device, FIFO or
 * socket with a regular file. */
static char *resolve_output(const char *path) {
  char *cur = strdup(path);
  const char *why = NULL;
  struct stat st;
  for (int hops = 0; cur && !why; hops++) {
    if (lstat(cur, &st) != 0) {
      if (errno != ENOENT)
        why = strerror(errno);
      break;
    }
    if (!S_ISLNK(st.st_mode)) {
      if (!S_ISREG(st.st_mode))
        why = output_kind(st.st_mode);
      else
        return cur;
      break;
    }
    char target[4096];
    ssize_t n = hops < 40 ? readlink(cur, target, sizeof target - 1) : -1;
    if (n < 0) {
      why = hops < 40 ? strerror(errno) : "too many levels of symbolic links";
      break;
    }
    target[n] = '\0';
    char *dir = target[0] == '/' ? NULL : dir_of(cur);
    char *next = malloc((dir ? strlen(dir) + 1 : 0) + (size_t)n + 1);
    if (next)
      sprintf(next, "%s%s%s", dir ? dir : "", dir ? "/" : "", target);
    free(dir);
    free(cur);
    cur = next;
  }
  if (!cur) {
    fputs("vxc: out of memory\n", stderr);
    return NULL;
  }
  if (!why) {  /* a new file: its directory must exist and take it */
    char *dir = dir_of(cur);
    if (!dir || stat(dir, &st) != 0)
      why = dir ? "no such directory" : "out of memory";
    else if (!S_ISDIR(st.st_mode))
      why = "its directory is not a directory";
    else if (access(dir, W_OK | X_OK) != 0)
      why = strerror(errno);
    free(dir);
  }
  if (!why)
    return cur;
  if (strcmp(cur, path))
    fprintf(stderr, "vxc: cannot write '%s' (a link to '%s'): %s\n", path, cur, why);
  else
    fprintf(stderr, "vxc: cannot write '%s': %s\n", path, why);
  free(cur);
  return NULL;
}

/* An E1004 that the writer raised for the file itself (disk full, permissions): an I/O error,
 * exit 2, rather than a diagnostic of the input. Prints it and returns true. */
static bool output_io_error(const Diags *d) {
  static const char prefix[] = "cannot write the artifact: ";
  for (const Diagnostic *e = d->first; e; e = e->next)
    if (!strcmp(e->code, "E1004") && !strncmp(e->message, prefix, sizeof prefix - 1) &&
        !strncmp(e->message + sizeof prefix - 1, "cannot write '", 14)) {
      fprintf(stderr, "vxc: %s\n", e->message + sizeof prefix - 1);
      return true;
    }
  return false;
}

/* --emit=ir, --emit=llvm and the artifact; returns the exit code. */
static int back_end(Compilation *c, const Options *o) {
  char *path = NULL;
  if (o->emit == EMIT_ARTIFACT) {
    char *fallback = o->output ? NULL : default_output(o->input);
    path = o->output || fallback ? resolve_output(o->output ? o->output : fallback) : NULL;
    free(fallback);
    if (!path)
      return 2;
  }
  VirModule *m = compile_middle(c);
  if (!m) {
    free(path);
    return 3;
  }
  if (o->emit == EMIT_IR) {
    vir_print(stdout, m);
    return 0;
  }
  CompileOptions co;
  compile_options_init(&co);
  co.opt_level = o->opt_level;
  co.llvm_ir_only = o->emit == EMIT_LLVM;
  co.targets = o->targets;
  co.ntargets = o->emit == EMIT_LLVM ? 0 : o->emit == EMIT_PTX ? 1 : o->ntargets;
  co.shapes = o->shapes;
  co.nshapes = o->nshapes;
  CompileCode code;
  bool ok = compile_code(c, m, &co, &code);
  if (ok && o->emit == EMIT_LLVM)
    fputs(code.host.llvm_ir, stdout);
  else if (ok && o->emit == EMIT_PTX)
    fputs(code.ptx[0].ptx, stdout);
  else if (ok)
    ok = compile_package(c, m, &code, &co, path, NULL, NULL);
  compile_code_free(&code);
  free(path);
  if (!ok && output_io_error(&c->diags))
    return 2;
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
    VirModule *m = compile_middle(&c);
    rc = m ? report_run(m, &o.report, stdout, stderr) : 3;
  } else if (nerrors == 0 && !o.check && (o.emit == EMIT_ARTIFACT || o.emit == EMIT_IR || o.emit == EMIT_LLVM || o.emit == EMIT_PTX)) {
    rc = back_end(&c, &o);
  }
  front_destroy(&c);
  return rc;
}
