/* testdriver.c - vx-testdriver: runs the front end in-process over directories of .vx files,
 * so that sanitizer builds cover the compiler itself. Modes:
 *
 *   vx-testdriver compile-fail DIR
 *       Each DIR/NAME.vx states the errors it must produce, one comment per error:
 *           // expect-error: LINE:COL: MESSAGE
 *       The set of (line, column, message) of the errors front_compile reports must equal the
 *       expected set exactly: a missing or an unexpected error fails the file. Two optional
 *       forms check attachments where a test cares about them (unstated ones are ignored):
 *           // expect-hint: LINE:COL: TEXT    the error at LINE:COL carries this hint
 *           // expect-note: LINE:COL: TEXT    some error carries a note at LINE:COL saying this
 *       With --require-codes FILE..., every error code ("E0xxx" string literal) that appears
 *       in the FILEs must be produced by at least one passing test (one more FAIL line each).
 *   vx-testdriver golden DIR [--update]
 *       Each DIR/NAME.vx must check cleanly; its typed --emit=ast output must equal
 *       DIR/NAME.ast, and where DIR/NAME.tokens exists, its --emit=tokens output must equal it.
 *       --update rewrites NAME.ast (and existing NAME.tokens) instead of comparing.
 *   vx-testdriver check DIR...
 *       Every .vx file in the directories must check with no diagnostic at all.
 *   vx-testdriver unknown-names N LIMIT_MS
 *       Generates a policy of N lets, each reading an unknown name one edit from a defined
 *       one, and checks it: all N errors must be counted, the first shown with its "did you
 *       mean", in under LIMIT_MS (not enforced in an instrumented build, VX_INSTRUMENTED).
 *
 * Every mode prints one PASS/FAIL line per file (with the details of a failure under it) and
 * a last line "N passed, M failed"; the exit status is 1 when anything failed, 2 on usage or
 * I/O errors. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "front.h"
#include "lex.h"

typedef struct Tally {
  int passed, failed;
} Tally;

/* Error codes produced by compile-fail tests, as expected (for --require-codes). */
enum { MAX_CODES = 1000 };
static bool code_seen[MAX_CODES];

static int code_number(const char *code) {
  if (!code || strlen(code) != 5 || code[0] != 'E')
    return -1;
  int n = 0;
  for (int i = 1; i < 5; i++) {
    if (code[i] < '0' || code[i] > '9')
      return -1;
    n = n * 10 + (code[i] - '0');
  }
  return n < MAX_CODES ? n : -1;
}

/* ---- small utilities ---- */

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fputs("vx-testdriver: out of memory\n", stderr);
    exit(2);
  }
  return p;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xmalloc(n), s, n);
}

static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = xmalloc(n);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* DIR/NAME.vx -> DIR/NAME.EXT */
static char *with_ext(const char *vx_path, const char *ext) {
  size_t stem = strlen(vx_path) - 3;
  size_t n = stem + strlen(ext) + 2;
  char *p = xmalloc(n);
  snprintf(p, n, "%.*s.%s", (int)stem, vx_path, ext);
  return p;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The .vx files of dir, sorted, as full paths; NULL (and a message) if dir cannot be read. */
static char **list_vx(const char *dir, int *count) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "vx-testdriver: cannot open directory '%s'\n", dir);
    return NULL;
  }
  int n = 0, cap = 16;
  char **files = xmalloc(sizeof *files * (size_t)cap);
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len <= 3 || strcmp(e->d_name + len - 3, ".vx") || e->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap *= 2;
      files = realloc(files, sizeof *files * (size_t)cap);
      if (!files) {
        fputs("vx-testdriver: out of memory\n", stderr);
        exit(2);
      }
    }
    files[n++] = path_join(dir, e->d_name);
  }
  closedir(d);
  qsort(files, (size_t)n, sizeof *files, cmp_str);
  *count = n;
  return files;
}

static void free_list(char **files, int n) {
  for (int i = 0; i < n; i++)
    free(files[i]);
  free(files);
}

/* Reads a whole file; NULL if it does not exist or cannot be read. */
static char *read_text(const char *path, int *len) {
  char *text;
  const char *error;
  if (!front_read_file(path, &text, len, &error))
    return NULL;
  return text;
}

static bool write_text(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return false;
  bool ok = fwrite(text, 1, len, f) == len;
  ok &= fclose(f) == 0;
  return ok;
}

/* A growing text buffer built with open_memstream. */
typedef struct Buf {
  FILE *f;
  char *data;
  size_t len;
} Buf;

static void buf_open(Buf *b) {
  b->data = NULL;
  b->len = 0;
  b->f = open_memstream(&b->data, &b->len);
  if (!b->f) {
    fputs("vx-testdriver: open_memstream failed\n", stderr);
    exit(2);
  }
}

static void buf_close(Buf *b) { fclose(b->f); }

/* Prints the diagnostics of c, indented, under a FAIL line. */
static void print_diags(const Compilation *c) {
  Buf b;
  buf_open(&b);
  diag_render(&c->diags, b.f, DIAG_TEXT);
  buf_close(&b);
  const char *line = b.data;
  while (line && *line) {
    const char *end = strchr(line, '\n');
    int n = end ? (int)(end - line) : (int)strlen(line);
    printf("    %.*s\n", n, line);
    line = end ? end + 1 : line + n;
  }
  free(b.data);
}

/* ---- line diff (for goldens) ---- */

typedef struct Lines {
  char **line;
  int n;
} Lines;

static Lines split_lines(const char *text, size_t len) {
  Lines l = {0};
  int cap = 16;
  l.line = xmalloc(sizeof *l.line * (size_t)cap);
  size_t i = 0;
  while (i < len) {
    size_t j = i;
    while (j < len && text[j] != '\n')
      j++;
    if (l.n == cap) {
      cap *= 2;
      l.line = realloc(l.line, sizeof *l.line * (size_t)cap);
      if (!l.line)
        exit(2);
    }
    char *s = xmalloc(j - i + 1);
    memcpy(s, text + i, j - i);
    s[j - i] = '\0';
    l.line[l.n++] = s;
    i = j + 1;
  }
  return l;
}

static void free_lines(Lines *l) {
  for (int i = 0; i < l->n; i++)
    free(l->line[i]);
  free(l->line);
}

/* Prints a minimal line diff (longest common subsequence) of expected vs actual: lines only
 * in expected with '-', lines only in actual with '+'. Golden files are small. */
static void print_diff(const char *expected, size_t elen, const char *actual, size_t alen) {
  Lines e = split_lines(expected, elen), a = split_lines(actual, alen);
  int *lcs = xmalloc(sizeof(int) * (size_t)(e.n + 1) * (size_t)(a.n + 1));
#define LCS(i, j) lcs[(size_t)(i) * (size_t)(a.n + 1) + (size_t)(j)]
  for (int i = e.n; i >= 0; i--)
    for (int j = a.n; j >= 0; j--)
      LCS(i, j) = i == e.n || j == a.n ? 0
                  : !strcmp(e.line[i], a.line[j]) ? LCS(i + 1, j + 1) + 1
                  : LCS(i + 1, j) > LCS(i, j + 1) ? LCS(i + 1, j)
                                                  : LCS(i, j + 1);
  int i = 0, j = 0;
  while (i < e.n || j < a.n) {
    if (i < e.n && j < a.n && !strcmp(e.line[i], a.line[j])) {
      i++, j++;
    } else if (i < e.n && (j == a.n || LCS(i + 1, j) >= LCS(i, j + 1))) {
      printf("    - %s\n", e.line[i++]);
    } else {
      printf("    + %s\n", a.line[j++]);
    }
  }
#undef LCS
  free(lcs);
  free_lines(&e);
  free_lines(&a);
}

/* ---- compile-fail ---- */

typedef enum ExpectKind { EX_ERROR, EX_HINT, EX_NOTE } ExpectKind;

typedef struct Expect {
  ExpectKind kind;
  int line, column;
  char *message;
  int src_line; /* where the expectation is written */
  bool matched;
} Expect;

typedef struct Expects {
  Expect *e;
  int n, cap;
} Expects;

static void expects_add(Expects *x, Expect e) {
  if (x->n == x->cap) {
    x->cap = x->cap ? x->cap * 2 : 8;
    x->e = realloc(x->e, sizeof *x->e * (size_t)x->cap);
    if (!x->e)
      exit(2);
  }
  x->e[x->n++] = e;
}

/* Parses the expect-* comments of text. Returns false (with a message in *why) on a comment
 * that starts like an expectation but is malformed, so that a typo never silently passes. */
static bool parse_expects(const char *text, int len, Expects *out, char **why) {
  static const struct {
    const char *tag;
    ExpectKind kind;
  } tags[] = {{"expect-error:", EX_ERROR}, {"expect-hint:", EX_HINT}, {"expect-note:", EX_NOTE}};
  int src_line = 1;
  for (int i = 0; i < len; src_line++) {
    int end = i;
    while (end < len && text[end] != '\n')
      end++;
    const char *line = text + i;
    int n = end - i;
    i = end + 1;
    const char *c = memmem(line, (size_t)n, "// expect-", 10);
    if (!c)
      continue;
    c += 3;
    int k = -1;
    for (int t = 0; t < 3; t++)
      if (!strncmp(c, tags[t].tag, strlen(tags[t].tag)))
        k = t;
    if (k < 0) {
      if (asprintf(why, "line %d: unknown expectation (expect-error:, expect-hint: or expect-note:)",
                   src_line) < 0)
        *why = NULL;
      return false;
    }
    c += strlen(tags[k].tag);
    const char *stop = line + n;
    while (stop > c && (stop[-1] == ' ' || stop[-1] == '\t' || stop[-1] == '\r'))
      stop--;
    char *spec = strndup(c, (size_t)(stop - c));
    int l, col, used = 0;
    if (sscanf(spec, " %d:%d: %n", &l, &col, &used) != 2 || used == 0 || !spec[used]) {
      if (asprintf(why, "line %d: malformed expectation, want 'LINE:COL: MESSAGE'", src_line) < 0)
        *why = NULL;
      free(spec);
      return false;
    }
    Expect e = {tags[k].kind, l, col, xstrdup(spec + used), src_line, false};
    free(spec);
    expects_add(out, e);
  }
  return true;
}

static const char *kind_text(ExpectKind k) {
  return k == EX_ERROR ? "error" : k == EX_HINT ? "hint" : "note";
}

static bool run_compile_fail_file(const char *path) {
  int len;
  char *text = read_text(path, &len);
  if (!text) {
    printf("FAIL %s\n    cannot read the file\n", path);
    return false;
  }
  Expects x = {0};
  char *why = NULL;
  bool ok = parse_expects(text, len, &x, &why);
  if (!ok) {
    printf("FAIL %s\n    %s\n", path, why ? why : "bad expectation");
    free(why);
  } else {
    int nerrors = 0;
    for (int i = 0; i < x.n; i++)
      nerrors += x.e[i].kind == EX_ERROR;
    if (nerrors == 0) {
      printf("FAIL %s\n    no '// expect-error: LINE:COL: MESSAGE' in the file\n", path);
      ok = false;
    }
  }
  if (!ok) {
    for (int i = 0; i < x.n; i++)
      free(x.e[i].message);
    free(x.e);
    free(text);
    return false;
  }

  Compilation c;
  front_compile(&c, path, text, len);
  /* Match errors against expected errors (a multiset: each expectation matches once). */
  Buf report;
  buf_open(&report);
  for (const Diagnostic *g = c.diags.first; g; g = g->next) {
    if (g->severity != SEV_ERROR)
      continue;
    bool found = false;
    for (int i = 0; i < x.n && !found; i++) {
      Expect *e = &x.e[i];
      if (e->kind == EX_ERROR && !e->matched && e->line == g->line && e->column == g->column &&
          !strcmp(e->message, g->message))
        e->matched = found = true;
    }
    if (found && code_number(g->code) >= 0)
      code_seen[code_number(g->code)] = true;
    if (!found) {
      fprintf(report.f, "    unexpected error %d:%d: %s [%s]\n", g->line, g->column, g->message,
              g->code);
      ok = false;
    }
  }
  for (int i = 0; i < x.n; i++) {
    Expect *e = &x.e[i];
    if (e->kind == EX_ERROR) {
      if (!e->matched) {
        fprintf(report.f, "    missing error %d:%d: %s (expected on line %d)\n", e->line,
                e->column, e->message, e->src_line);
        ok = false;
      }
      continue;
    }
    for (const Diagnostic *g = c.diags.first; g && !e->matched; g = g->next) {
      if (g->severity != SEV_ERROR)
        continue;
      if (e->kind == EX_HINT)
        e->matched = g->line == e->line && g->column == e->column && g->hint &&
                     !strcmp(g->hint, e->message);
      else
        for (const Diagnostic *nt = g->notes; nt && !e->matched; nt = nt->next)
          e->matched = nt->line == e->line && nt->column == e->column &&
                       !strcmp(nt->message, e->message);
    }
    if (!e->matched) {
      fprintf(report.f, "    missing %s %d:%d: %s (expected on line %d)\n", kind_text(e->kind),
              e->line, e->column, e->message, e->src_line);
      ok = false;
    }
  }
  buf_close(&report);
  printf("%s %s\n", ok ? "PASS" : "FAIL", path);
  if (!ok) {
    fputs(report.data, stdout);
    puts("    --- the compiler said:");
    print_diags(&c);
  }
  free(report.data);
  front_destroy(&c);
  for (int i = 0; i < x.n; i++)
    free(x.e[i].message);
  free(x.e);
  free(text);
  return ok;
}

/* Every "E0xxx" literal in the source files must have been seen; one FAIL line per code
 * that no compile-fail test produces. */
static void check_code_coverage(char **sources, int n, Tally *t) {
  bool wanted[MAX_CODES] = {false};
  for (int i = 0; i < n; i++) {
    int len;
    char *text = read_text(sources[i], &len);
    if (!text) {
      printf("FAIL coverage: cannot read %s\n", sources[i]);
      t->failed++;
      continue;
    }
    for (int j = 0; j + 7 <= len; j++) {
      if (text[j] != '"' || text[j + 6] != '"')
        continue;
      char code[6];
      memcpy(code, text + j + 1, 5);
      code[5] = '\0';
      int c = code_number(code);
      if (c >= 0)
        wanted[c] = true;
    }
    free(text);
  }
  int total = 0, missing = 0;
  for (int c = 0; c < MAX_CODES; c++) {
    if (!wanted[c])
      continue;
    total++;
    if (!code_seen[c]) {
      printf("FAIL coverage: no compile-fail test produces E%04d\n", c);
      missing++;
    }
  }
  if (missing)
    t->failed++;
  else {
    printf("PASS coverage: all %d error codes are tested\n", total);
    t->passed++;
  }
}

/* ---- golden ---- */

/* Compares (or with update, rewrites) one expectation file; returns false on a mismatch. */
static bool golden_compare(const char *path, const char *exp_path, const char *actual, size_t alen,
                           bool update, bool *changed) {
  int elen = 0;
  char *expected = read_text(exp_path, &elen);
  bool same = expected && (size_t)elen == alen && !memcmp(expected, actual, alen);
  if (update) {
    if (!same) {
      if (!write_text(exp_path, actual, alen)) {
        printf("FAIL %s\n    cannot write %s\n", path, exp_path);
        free(expected);
        return false;
      }
      *changed = true;
    }
    free(expected);
    return true;
  }
  if (!same) {
    printf("FAIL %s\n", path);
    if (!expected) {
      printf("    %s is missing; run: vx-testdriver golden DIR --update\n", exp_path);
    } else {
      printf("    %s differs (- expected, + actual):\n", exp_path);
      print_diff(expected, (size_t)elen, actual, alen);
    }
  }
  free(expected);
  return same;
}

static bool run_golden_file(const char *path, bool update) {
  int len;
  char *text = read_text(path, &len);
  if (!text) {
    printf("FAIL %s\n    cannot read the file\n", path);
    return false;
  }
  Compilation c;
  int nerrors = front_compile(&c, path, text, len);
  free(text);
  if (nerrors || !c.policy || c.diags.first) {
    printf("FAIL %s\n    does not check cleanly:\n", path);
    print_diags(&c);
    front_destroy(&c);
    return false;
  }
  bool ok = true, changed = false;
  Buf ast;
  buf_open(&ast);
  ast_print(ast.f, c.policy, true);
  buf_close(&ast);
  char *ast_path = with_ext(path, "ast");
  ok &= golden_compare(path, ast_path, ast.data, ast.len, update, &changed);
  free(ast_path);
  free(ast.data);

  char *tok_path = with_ext(path, "tokens");
  FILE *probe = fopen(tok_path, "rb");
  if (probe) {
    fclose(probe);
    Buf toks;
    buf_open(&toks);
    lex_dump(&c.src, toks.f);
    buf_close(&toks);
    if (ok)
      ok &= golden_compare(path, tok_path, toks.data, toks.len, update, &changed);
    free(toks.data);
  }
  free(tok_path);
  front_destroy(&c);
  if (ok)
    printf("%s %s\n", update && changed ? "UPDATED" : "PASS", path);
  return ok;
}

/* ---- check ---- */

static bool run_check_file(const char *path) {
  int len;
  char *text = read_text(path, &len);
  if (!text) {
    printf("FAIL %s\n    cannot read the file\n", path);
    return false;
  }
  Compilation c;
  front_compile(&c, path, text, len);
  free(text);
  bool ok = c.policy && c.checked && !c.diags.first;
  printf("%s %s\n", ok ? "PASS" : "FAIL", path);
  if (!ok)
    print_diags(&c);
  front_destroy(&c);
  return ok;
}

/* ---- unknown-names: checking stays near-linear whatever the input holds ---- */

static bool run_unknown_names(int n, double limit_ms) {
  size_t cap = (size_t)n * 40 + 256, len = 0;
  char *text = xmalloc(cap);
  len += (size_t)sprintf(text + len, "policy many {\n  param budget = 256 tokens;\n  let x0 = 1;\n");
  for (int i = 1; i <= n; i++) /* 'y<i-1>' is one edit from the let 'x<i-1>' before it */
    len += (size_t)sprintf(text + len, "  let x%d = y%d + 1;\n", i, i - 1);
  len += (size_t)sprintf(text + len, "  score[p] = sum[c] k[p, 0, c] * q[0, c];\n"
                                     "  select top(score, budget);\n}\n");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  Compilation c;
  int nerrors = front_compile(&c, "many.vx", text, (int)len);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  const Diagnostic *first = c.diags.first;
  bool ok = nerrors == n && first && first->hint && !strcmp(first->hint, "did you mean 'x0'?");
#ifndef VX_INSTRUMENTED
  ok = ok && ms < limit_ms;
#endif
  printf("%s unknown-names: %d names (%zu bytes), %d errors, first hint '%s', %.1f ms (limit %.0f ms)\n",
         ok ? "PASS" : "FAIL", n, len, nerrors, first && first->hint ? first->hint : "(none)", ms,
         limit_ms);
  front_destroy(&c);
  free(text);
  return ok;
}

/* ---- main ---- */

static int usage(void) {
  fputs("usage: vx-testdriver compile-fail DIR [--require-codes SOURCE...]\n"
        "       vx-testdriver golden DIR [--update]\n"
        "       vx-testdriver check DIR...\n"
        "       vx-testdriver unknown-names N LIMIT_MS\n",
        stderr);
  return 2;
}

static int finish(Tally t) {
  printf("%d passed, %d failed\n", t.passed, t.failed);
  return t.failed ? 1 : 0;
}

static void count(Tally *t, bool ok) {
  if (ok)
    t->passed++;
  else
    t->failed++;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 3)
    return usage();
  const char *mode = argv[1];
  Tally t = {0};
  if (!strcmp(mode, "compile-fail") || !strcmp(mode, "golden")) {
    bool golden = !strcmp(mode, "golden");
    bool update = false;
    const char *dir = NULL;
    char **sources = NULL;
    int nsources = 0;
    for (int i = 2; i < argc; i++) {
      if (golden && !strcmp(argv[i], "--update"))
        update = true;
      else if (!golden && !strcmp(argv[i], "--require-codes")) {
        sources = argv + i + 1;
        nsources = argc - i - 1;
        if (nsources == 0)
          return usage();
        break;
      } else if (!dir && argv[i][0] != '-')
        dir = argv[i];
      else
        return usage();
    }
    if (!dir)
      return usage();
    int n;
    char **files = list_vx(dir, &n);
    if (!files)
      return 2;
    if (n == 0) {
      fprintf(stderr, "vx-testdriver: no .vx files in '%s'\n", dir);
      free(files);
      return 2;
    }
    for (int i = 0; i < n; i++)
      count(&t, golden ? run_golden_file(files[i], update) : run_compile_fail_file(files[i]));
    free_list(files, n);
    if (sources)
      check_code_coverage(sources, nsources, &t);
    return finish(t);
  }
  if (!strcmp(mode, "unknown-names")) {
    if (argc != 4 || atoi(argv[2]) < 1 || atof(argv[3]) <= 0)
      return usage();
    count(&t, run_unknown_names(atoi(argv[2]), atof(argv[3])));
    return finish(t);
  }
  if (!strcmp(mode, "check")) {
    for (int d = 2; d < argc; d++) {
      int n;
      char **files = list_vx(argv[d], &n);
      if (!files)
        return 2;
      for (int i = 0; i < n; i++)
        count(&t, run_check_file(files[i]));
      free_list(files, n);
    }
    if (t.passed + t.failed == 0) {
      fputs("vx-testdriver: no .vx files to check\n", stderr);
      return 2;
    }
    return finish(t);
  }
  return usage();
}
