/* vir_extent.c - extents as VIR keeps them: sema's canonical text ("P/16", "(P/16)*2",
 * "npages") parsed once, when lowering creates the axis or the tensor, into a small tree
 * that every later stage walks: the host code generator emits it as IR, the GPU generator
 * and the cost report evaluate it. The text stays beside it for vir_print and the manifest.
 * Integer arithmetic as in C. Knows nothing of LLVM, the AST or the checker. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "vir.h"

typedef struct Parser {
  Arena *arena;
  const char *s;
  bool ok;
} Parser;

static VirExtent *leaf(Parser *p, long long num, const char *name) {
  VirExtent *e = arena_alloc(p->arena, sizeof *e);
  e->num = num;
  e->name = name;
  return e;
}

static VirExtent *parse_sum(Parser *p);

static void skip_spaces(Parser *p) {
  while (*p->s == ' ')
    p->s++;
}

static VirExtent *parse_atom(Parser *p) {
  skip_spaces(p);
  if (*p->s == '(') {
    p->s++;
    VirExtent *e = parse_sum(p);
    skip_spaces(p);
    p->ok &= *p->s == ')';
    p->s += *p->s == ')';
    return e;
  }
  if (isdigit((unsigned char)*p->s))
    return leaf(p, strtoll(p->s, (char **)&p->s, 10), NULL);
  const char *start = p->s;
  while (isalnum((unsigned char)*p->s) || *p->s == '_')
    p->s++;
  p->ok &= p->s > start;
  return leaf(p, 0, arena_strndup(p->arena, start, (size_t)(p->s - start)));
}

static VirExtent *binary(Parser *p, char op, VirExtent *lhs, VirExtent *rhs) {
  VirExtent *e = leaf(p, 0, NULL);
  e->op = op;
  e->lhs = lhs;
  e->rhs = rhs;
  return e;
}

static VirExtent *parse_product(Parser *p) {
  VirExtent *e = parse_atom(p);
  for (;;) {
    skip_spaces(p);
    char op = *p->s;
    if (op != '*' && op != '/' && op != '%')
      return e;
    p->s++;
    e = binary(p, op, e, parse_atom(p));
  }
}

static VirExtent *parse_sum(Parser *p) {
  VirExtent *e = parse_product(p);
  for (;;) {
    skip_spaces(p);
    char op = *p->s;
    if (op != '+' && op != '-')
      return e;
    p->s++;
    e = binary(p, op, e, parse_product(p));
  }
}

VirExtent *vir_extent_parse(Arena *arena, const char *text) {
  Parser p = {arena, text, true};
  VirExtent *e = parse_sum(&p);
  skip_spaces(&p);
  if (!p.ok || *p.s) /* not sema's text: a name no evaluator knows, so using it fails */
    return leaf(&p, 0, arena_strndup(arena, text, strlen(text)));
  return e;
}

bool vir_extent_eval(const VirExtent *e, VirNameValue value, void *user, long long *out) {
  if (!e->op) {
    if (e->name)
      return value(user, e->name, out);
    *out = e->num;
    return true;
  }
  long long a, b;
  if (!vir_extent_eval(e->lhs, value, user, &a) || !vir_extent_eval(e->rhs, value, user, &b))
    return false;
  switch (e->op) {
  case '+': *out = a + b; return true;
  case '-': *out = a - b; return true;
  case '*': *out = a * b; return true;
  case '/': *out = b ? a / b : 0; return b != 0;
  default: *out = b ? a % b : 0; return b != 0;
  }
}

bool vir_extent_is(const VirExtent *e, const char *name) {
  return !e->op && e->name && !strcmp(e->name, name);
}
