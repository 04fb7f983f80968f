/* ast.c - AST builders (called only from grammar/parser.y), name tables, and the
 * --emit=ast printer. Builders copy names out of the source so nodes outlive nothing but
 * the arena; they never report errors. */
#include "ast.h"

#include <stdlib.h>
#include <string.h>

Span ast_join(Span a, Span b) {
  Span s;
  s.off = a.off;
  s.len = b.off + b.len - a.off;
  if (s.len < a.len)
    s.len = a.len;
  return s;
}

Node *ast_new(AstBuilder *b, NodeKind kind, Span span) {
  Node *n = arena_alloc(b->arena, sizeof *n);
  n->kind = kind;
  n->span = span;
  n->depth = 1;
  return n;
}

/* Keeps n->depth one more than its deepest child (child may be NULL or a list). */
static void grow(Node *n, const Node *child) {
  for (; child; child = child->next)
    if (child->depth + 1 > n->depth)
      n->depth = child->depth + 1;
}

Node *ast_name(AstBuilder *b, NodeKind kind, Span name) {
  Node *n = ast_new(b, kind, name);
  n->name = arena_strndup(b->arena, b->text + name.off, (size_t)name.len);
  n->name_span = name;
  return n;
}

Node *ast_number(AstBuilder *b, Span span) {
  Node *n = ast_new(b, ND_NUM, span);
  const char *text = arena_strndup(b->arena, b->text + span.off, (size_t)span.len);
  n->is_int = strpbrk(text, ".eE") == NULL || (text[0] == '0' && (text[1] == 'x' || text[1] == 'X'));
  n->num = n->is_int ? (double)strtoull(text, NULL, 0) : strtod(text, NULL);
  n->str = text;
  return n;
}

Node *ast_string(AstBuilder *b, Span span) {
  Node *n = ast_new(b, ND_STR, span);
  /* Strip the quotes and resolve \" and \\; other escapes keep their character. */
  const char *s = b->text + span.off + 1;
  int len = span.len - 1;
  if (len > 0 && s[len - 1] == '"')
    len--;
  char *out = arena_alloc(b->arena, (size_t)len + 1);
  int j = 0;
  for (int i = 0; i < len; i++) {
    if (s[i] == '\\' && i + 1 < len)
      i++;
    out[j++] = s[i];
  }
  out[j] = '\0';
  n->str = out;
  return n;
}

Node *ast_unary(AstBuilder *b, Op op, Span op_span, Node *operand) {
  Node *n = ast_new(b, ND_UNARY, ast_join(op_span, operand->span));
  n->op = op;
  n->lhs = operand;
  n->depth = operand->depth + 1;
  return n;
}

Node *ast_binary(AstBuilder *b, Op op, Node *lhs, Node *rhs) {
  Node *n = ast_new(b, ND_BINARY, ast_join(lhs->span, rhs->span));
  n->op = op;
  n->lhs = lhs;
  n->rhs = rhs;
  n->depth = (lhs->depth > rhs->depth ? lhs->depth : rhs->depth) + 1;
  return n;
}

Node *ast_cond(AstBuilder *b, Node *cond, Node *then, Node *otherwise) {
  Node *n = ast_new(b, ND_COND, ast_join(cond->span, otherwise->span));
  n->cond = cond;
  n->lhs = then;
  n->rhs = otherwise;
  n->depth = cond->depth + 1;
  grow(n, then->depth > otherwise->depth ? then : otherwise);
  return n;
}

static Node *named_list(AstBuilder *b, NodeKind kind, Span name, Node *list, Span close) {
  Node *n = ast_name(b, kind, name);
  n->span = ast_join(name, close);
  n->list = list;
  grow(n, list);
  return n;
}

Node *ast_index(AstBuilder *b, Span name, Node *subscripts, Span close) {
  return named_list(b, ND_INDEX, name, subscripts, close);
}

Node *ast_call(AstBuilder *b, Span name, Node *args, Span close) {
  return named_list(b, ND_CALL, name, args, close);
}

Node *ast_reduce(AstBuilder *b, Reduction red, Span kw, Node *binders, Node *filter,
                 Node *operand) {
  Node *n = ast_new(b, ND_REDUCE, ast_join(kw, operand->span));
  n->red = red;
  n->binders = binders;
  n->cond = filter;
  n->lhs = operand;
  n->depth = operand->depth + 1;
  grow(n, binders);
  if (filter)
    grow(n, filter);
  return n;
}

Node *ast_binder(AstBuilder *b, Span name, Node *extent) {
  Node *n = ast_name(b, ND_BINDER, name);
  n->lhs = extent;
  if (extent)
    n->span = ast_join(name, extent->span);
  grow(n, extent);
  return n;
}

Node *ast_param(AstBuilder *b, Span name, Node *value, Unit unit, Span end) {
  Node *n = ast_name(b, ND_PARAM, name);
  n->span = ast_join(name, unit != UNIT_NONE ? end : value->span);
  n->lhs = value;
  n->unit = unit;
  grow(n, value);
  return n;
}

Node *ast_keep_range(AstBuilder *b, KeepKind keep, Span kw, Node *count, Unit unit,
                     bool at_prefill, Span end) {
  Span last = count ? count->span : kw;
  if (end.off >= 0 && end.len > 0)
    last = end;
  Node *n = ast_new(b, ND_KEEP_RANGE, ast_join(kw, last));
  n->keep = keep;
  n->lhs = count;
  n->unit = unit;
  n->at_prefill = at_prefill;
  grow(n, count);
  return n;
}

Node *ast_def(AstBuilder *b, Stage stage, Span kw, Span name, Node *binders, Node *dtype,
              Node *body) {
  Node *n = ast_name(b, ND_DEF, name);
  n->span = ast_join(kw, body->span);
  n->stage = stage;
  n->binders = binders;
  n->dtype_name = dtype;
  n->lhs = body;
  grow(n, body);
  grow(n, binders);
  return n;
}

Node *ast_select(AstBuilder *b, Span kw, bool per_head, Node *selections) {
  Node *last = selections;
  while (last->next)
    last = last->next;
  Node *n = ast_new(b, ND_SELECT, ast_join(kw, last->span));
  n->per_head = per_head;
  n->list = selections;
  /* the grammar builds top()/where() nodes itself: their depth is learned here */
  for (Node *sel = selections; sel; sel = sel->next) {
    if (sel->lhs)
      grow(sel, sel->lhs);
    if (sel->rhs)
      grow(sel, sel->rhs);
  }
  grow(n, selections);
  return n;
}

Node *ast_attend(AstBuilder *b, Span kw, Span name, Node *binders, Op op, Node *body) {
  Node *n = ast_name(b, ND_ATTEND, name);
  n->span = ast_join(kw, body->span);
  n->binders = binders;
  n->op = op;
  n->lhs = body;
  grow(n, body);
  grow(n, binders);
  return n;
}

Node *ast_item(AstBuilder *b, NodeKind kind, Span kw, Node *list_or_expr) {
  Node *n = ast_new(b, kind, kw);
  if (kind == ND_KEEP) {
    Node *last = list_or_expr;
    while (last->next)
      last = last->next;
    n->span = ast_join(kw, last->span);
    n->list = list_or_expr;
  } else {
    n->span = ast_join(kw, list_or_expr->span);
    n->lhs = list_or_expr;
  }
  grow(n, list_or_expr);
  return n;
}

Node *ast_policy(AstBuilder *b, Span kw, Span name, Node *items) {
  Node *n = ast_name(b, ND_POLICY, name);
  n->span = ast_join(kw, name);
  n->list = items;
  return n;
}

static Node *last_of(Node *n) {
  while (n->next)
    n = n->next;
  return n;
}

Node *ast_append(Node *list, Node *item) {
  if (!list) {
    if (item && !item->tail)
      item->tail = last_of(item);
    return item;
  }
  if (!item)
    return list;
  Node *last = list->tail ? list->tail : last_of(list);
  last->next = item;
  list->tail = item->tail ? item->tail : last_of(item);
  return list;
}

const char *ast_op_text(Op op) {
  static const char *const text[] = {
      [OP_NONE] = "?",   [OP_ADD] = "+",     [OP_SUB] = "-",     [OP_MUL] = "*",
      [OP_DIV] = "/",    [OP_MOD] = "%",     [OP_EQ] = "==",     [OP_NE] = "!=",
      [OP_LT] = "<",     [OP_LE] = "<=",     [OP_GT] = ">",      [OP_GE] = ">=",
      [OP_AND] = "&&",   [OP_OR] = "||",     [OP_BITAND] = "&",  [OP_BITOR] = "|",
      [OP_BITXOR] = "^", [OP_SHL] = "<<",    [OP_SHR] = ">>",    [OP_NEG] = "-",
      [OP_NOT] = "!",    [OP_BITNOT] = "~",  [OP_ASSIGN] = "=",
  };
  return text[op];
}

const char *ast_reduction_text(Reduction red) {
  static const char *const text[] = {"sum", "mean", "max", "min", "count",
                                     "norm", "bits", "any", "all", "softmax"};
  return text[red];
}

const char *ast_stage_text(Stage stage) {
  static const char *const text[] = {"const", "row", "page", "token", "let", "update"};
  return text[stage];
}

const char *ast_dtype_text(DType dtype) {
#define AST_DTYPE_NAME(tag, name, bytes) #name,
  static const char *const text[] = {VXK_DTYPES(AST_DTYPE_NAME)};
#undef AST_DTYPE_NAME
  return text[dtype];
}

const char *ast_unit_text(Unit unit) {
  static const char *const text[] = {"", "tokens", "pages"};
  return text[unit];
}

const char *ast_type_text(Type type) {
  static const char *const text[] = {"error", "f32", "i32", "u32", "bool", "str"};
  return text[type];
}

bool ast_is_expr(const Node *n) { return n->kind >= ND_NUM; }

/* ---- printer ---- */

static void print_expr(FILE *out, const Node *n, bool typed);

static void print_binders(FILE *out, const Node *b, bool typed) {
  fputc('[', out);
  for (; b; b = b->next) {
    fputs(b->name, out);
    if (typed && b->axis && b->axis->extent)
      fprintf(out, ":%s", b->axis->extent);
    else if (!typed && b->lhs) {
      fputc(':', out);
      print_expr(out, b->lhs, false);
    }
    if (b->next)
      fputc(' ', out);
  }
  fputc(']', out);
}

static void print_list(FILE *out, const Node *n, bool typed) {
  for (; n; n = n->next) {
    fputc(' ', out);
    print_expr(out, n, typed);
  }
}

static void print_expr(FILE *out, const Node *n, bool typed) {
  switch (n->kind) {
  case ND_NUM:
    fputs(n->str, out);
    break;
  case ND_STR:
    fprintf(out, "\"%s\"", n->str);
    break;
  case ND_NAME:
    fputs(n->name, out);
    break;
  case ND_INDEX:
    fprintf(out, "(%s", n->name);
    print_list(out, n->list, typed);
    fputc(')', out);
    break;
  case ND_CALL:
    fprintf(out, "(call %s", n->name);
    print_list(out, n->list, typed);
    fputc(')', out);
    break;
  case ND_UNARY:
    fprintf(out, "(%s ", ast_op_text(n->op));
    print_expr(out, n->lhs, typed);
    fputc(')', out);
    break;
  case ND_BINARY:
    fprintf(out, "(%s ", ast_op_text(n->op));
    print_expr(out, n->lhs, typed);
    fputc(' ', out);
    print_expr(out, n->rhs, typed);
    fputc(')', out);
    break;
  case ND_COND:
    fputs("(? ", out);
    print_expr(out, n->cond, typed);
    fputc(' ', out);
    print_expr(out, n->lhs, typed);
    fputc(' ', out);
    print_expr(out, n->rhs, typed);
    fputc(')', out);
    break;
  case ND_REDUCE:
    fprintf(out, "(%s ", ast_reduction_text(n->red));
    print_binders(out, n->binders, typed);
    if (n->cond) {
      fputs(" | ", out);
      print_expr(out, n->cond, typed);
    }
    fputc(' ', out);
    print_expr(out, n->lhs, typed);
    fputc(')', out);
    break;
  default:
    fputs("(?)", out);
    break;
  }
  if (typed && n->type != TY_ERROR && n->kind != ND_NUM && n->kind != ND_STR && !n->axis) {
    fprintf(out, ":%s", ast_type_text(n->type));
    if (n->vunit != UNIT_NONE)
      fprintf(out, "'%s", ast_unit_text(n->vunit));
  }
}

static void print_item(FILE *out, const Node *n, bool typed) {
  switch (n->kind) {
  case ND_PARAM:
    fprintf(out, "(param %s ", n->name);
    print_expr(out, n->lhs, typed);
    if (n->unit != UNIT_NONE)
      fprintf(out, " %s", ast_unit_text(n->unit));
    fputc(')', out);
    break;
  case ND_KEEP:
    fputs("(keep", out);
    for (const Node *r = n->list; r; r = r->next) {
      static const char *const kind[] = {"first", "last", "generated"};
      fprintf(out, " (%s", kind[r->keep]);
      if (r->lhs) {
        fputc(' ', out);
        print_expr(out, r->lhs, typed);
      }
      if (r->unit != UNIT_NONE && r->keep != KEEP_GENERATED)
        fprintf(out, " %s", ast_unit_text(r->unit));
      if (r->at_prefill)
        fputs(" at-prefill", out);
      fputc(')', out);
    }
    fputc(')', out);
    break;
  case ND_REQUIRE:
    fputs("(require ", out);
    print_expr(out, n->lhs, typed);
    fputc(')', out);
    break;
  case ND_DEF:
    if (n->is_score)
      fputs("(score ", out);
    else
      fprintf(out, "(%s %s ", ast_stage_text(n->stage), n->name);
    print_binders(out, n->binders, typed);
    if (typed && n->stage != ST_STEP)
      fprintf(out, " %s", ast_dtype_text(n->dtype));
    else if (n->dtype_name)
      fprintf(out, " %s", n->dtype_name->name);
    fputc(' ', out);
    print_expr(out, n->lhs, typed);
    fputc(')', out);
    break;
  case ND_SELECT:
    fprintf(out, "(select%s", n->per_head ? " per-head" : "");
    for (const Node *s = n->list; s; s = s->next) {
      if (s->kind == ND_ALL) {
        fputs(" (all)", out);
        continue;
      }
      fprintf(out, " (%s ", s->kind == ND_TOP ? "top" : "where");
      print_expr(out, s->lhs, typed);
      if (s->rhs) {
        fputc(' ', out);
        print_expr(out, s->rhs, typed);
      }
      if (s->unit != UNIT_NONE)
        fprintf(out, " %s", ast_unit_text(s->unit));
      fputc(')', out);
    }
    fputc(')', out);
    break;
  case ND_ATTEND:
    fprintf(out, "(attend %s ", n->name);
    print_binders(out, n->binders, typed);
    fprintf(out, " %s ", n->op == OP_ASSIGN ? "=" : n->op == OP_ADD ? "+=" : n->op == OP_SUB ? "-=" : "*=");
    print_expr(out, n->lhs, typed);
    fputc(')', out);
    break;
  case ND_LOST:
    fputs("(lost", out);
    for (const Node *m = n->list; m; m = m->next)
      fprintf(out, " %s", m->name);
    fputc(')', out);
    break;
  default:
    fputs("(?)", out);
    break;
  }
}

void ast_print(FILE *out, const Node *policy, bool typed) {
  fprintf(out, "(policy %s\n", policy->name);
  for (const Node *n = policy->list; n; n = n->next) {
    fputs("  ", out);
    print_item(out, n, typed);
    fputc('\n', out);
  }
  fputs(")\n", out);
}
