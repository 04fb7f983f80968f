/* ast.h - the syntax tree of a .vx policy, shared by the parser, the checker and the printers.
 * The parser (grammar/parser.y) only calls the ast_new_* builders; sema.c fills the typed
 * fields (marked "sema") in place. Nodes live in the compilation's arena and are never freed
 * one by one. Nothing here knows about Lemon or re2c. */
#ifndef VX_AST_H
#define VX_AST_H

#include <stdbool.h>
#include <stdio.h>

#include "../runtime/vxk.h"
#include "arena.h"

/* A byte range of the source; line/column are derived by diag.c when needed. */
typedef struct Span {
  int off;
  int len;
} Span;

typedef enum NodeKind {
  /* items */
  ND_POLICY,  /* name; items in list */
  ND_PARAM,   /* name; lhs = default value; unit */
  ND_KEEP,    /* list of ND_KEEP_RANGE */
  ND_KEEP_RANGE, /* range: first/last/generated; lhs = count (NULL for generated); unit; at_prefill */
  ND_REQUIRE, /* lhs = condition */
  ND_DEF,     /* stage; name; binders; dtype_name; lhs = body */
  ND_SELECT,  /* per_head; list of ND_TOP / ND_WHERE / ND_ALL (union) */
  ND_TOP,     /* lhs = scored tensor, rhs = count */
  ND_WHERE,   /* lhs = condition */
  ND_ALL,     /* select all: dense */
  ND_ATTEND,  /* name (= "logit"); binders; op (OP_ASSIGN/OP_ADD/...); lhs = body */
  ND_LOST,    /* an item that failed to parse: list = ND_NAME of what it seemed to define
               * (only in a tree with syntax errors, which is checked but never lowered) */
  ND_BINDER,  /* name; lhs = extent or NULL */
  /* expressions */
  ND_NUM,    /* num, is_int */
  ND_STR,    /* str */
  ND_NAME,   /* name */
  ND_INDEX,  /* name; list = subscripts */
  ND_CALL,   /* name; list = arguments */
  ND_UNARY,  /* op; lhs */
  ND_BINARY, /* op; lhs, rhs */
  ND_COND,   /* cond ? lhs : rhs */
  ND_REDUCE, /* red; binders; cond = filter or NULL; lhs = operand */
} NodeKind;

typedef enum Op {
  OP_NONE,
  OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD,
  OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE,
  OP_AND, OP_OR,                     /* && || */
  OP_BITAND, OP_BITOR, OP_BITXOR, OP_SHL, OP_SHR,
  OP_NEG, OP_NOT, OP_BITNOT,         /* unary */
  OP_ASSIGN,                         /* attend logit = ...; += -= *= use OP_ADD/SUB/MUL */
} Op;

typedef enum Reduction {
  RED_SUM, RED_MEAN, RED_MAX, RED_MIN, RED_COUNT, RED_NORM, RED_BITS, RED_ANY, RED_ALL,
  RED_SOFTMAX, /* normalising: keeps its axes */
} Reduction;

typedef enum Stage {
  ST_CONST,  /* const: load time */
  ST_ROW,    /* row: once per row at the end of prefill */
  ST_PAGE,   /* page: page fields, on append and prefill */
  ST_TOKEN,  /* token: token fields, on append and prefill */
  ST_STEP,   /* let and score: every decode step */
  ST_UPDATE, /* update: after attention, every step */
} Stage;

/* Storage dtypes: runtime/vxk.h's VXK_DTYPES (DT_F32, DT_F16, DT_BF16, DT_FP8, DT_INT8,
 * DT_U32). */
typedef enum DType {
#define AST_DTYPE(tag, name, bytes) DT_##tag,
  VXK_DTYPES(AST_DTYPE)
#undef AST_DTYPE
  DT_COUNT
} DType;
typedef enum Unit { UNIT_NONE, UNIT_TOKENS, UNIT_PAGES } Unit;
typedef enum KeepKind { KEEP_FIRST, KEEP_LAST, KEEP_GENERATED } KeepKind;

/* Scalar type of a value during computation (sema). */
typedef enum Type { TY_ERROR, TY_F32, TY_I32, TY_U32, TY_BOOL, TY_STR } Type;

typedef struct Symbol Symbol; /* sema.h */
typedef struct Node Node;

/* The role an axis plays, known from its extent (sema). */
typedef enum AxisRole { AX_OTHER, AX_PAGE, AX_TOKEN, AX_HEAD, AX_CHANNEL } AxisRole;

/* An index variable bound by a definition's left side or by a reduction (sema). */
typedef struct Axis {
  const char *name;
  const char *extent; /* canonical extent text ("D", "P/16", "L"), NULL while unknown */
  Node *extent_expr;  /* the extent as an expression over params and intrinsics */
  AxisRole role;
  Span span;          /* where it is bound */
  Span extent_span;   /* where its extent was learned */
  int uses;           /* reads inside its scope */
} Axis;

struct Node {
  NodeKind kind;
  Span span;
  Node *next; /* sibling in a list */
  Node *tail; /* on a list's head while parsing: its last node, so appending is O(1) */
  int depth;  /* height of the tree below and including this node (builders keep it) */

  const char *name;
  Span name_span; /* where name is written (the span of a definition covers all of it) */
  const char *str;
  double num;
  bool is_int;
  Op op;
  Reduction red;
  Stage stage;
  Node *dtype_name; /* ND_DEF: the written storage type (ND_NAME) or NULL */
  DType dtype;      /* sema: resolved from dtype_name, f32 by default */
  Unit unit;
  KeepKind keep;
  bool at_prefill;
  bool per_head;
  bool is_score; /* ND_DEF written with the 'score' keyword */

  Node *lhs;
  Node *rhs;
  Node *cond;
  Node *list;    /* items, subscripts, arguments, keep ranges, selections */
  Node *binders; /* ND_BINDER list */

  /* sema */
  Type type;
  Unit vunit;    /* unit of the value */
  Symbol *sym;   /* ND_NAME / ND_INDEX / ND_DEF / ND_PARAM: what the name means */
  Axis *axis;    /* ND_BINDER: the axis it binds; ND_NAME: the axis it reads */
};

/* Builders: the only functions grammar/parser.y calls. */
typedef struct AstBuilder {
  Arena *arena;
  const char *text; /* the source, to copy names from spans */
} AstBuilder;

Node *ast_new(AstBuilder *b, NodeKind kind, Span span);
Node *ast_name(AstBuilder *b, NodeKind kind, Span name);
Node *ast_number(AstBuilder *b, Span span);
Node *ast_string(AstBuilder *b, Span span);
Node *ast_unary(AstBuilder *b, Op op, Span op_span, Node *operand);
Node *ast_binary(AstBuilder *b, Op op, Node *lhs, Node *rhs);
Node *ast_cond(AstBuilder *b, Node *cond, Node *then, Node *otherwise);
Node *ast_index(AstBuilder *b, Span name, Node *subscripts, Span close);
Node *ast_call(AstBuilder *b, Span name, Node *args, Span close);
Node *ast_reduce(AstBuilder *b, Reduction red, Span kw, Node *binders, Node *filter, Node *operand);
Node *ast_binder(AstBuilder *b, Span name, Node *extent);
Node *ast_param(AstBuilder *b, Span name, Node *value, Unit unit, Span end);
Node *ast_keep_range(AstBuilder *b, KeepKind keep, Span kw, Node *count, Unit unit, bool at_prefill, Span end);
Node *ast_def(AstBuilder *b, Stage stage, Span kw, Span name, Node *binders, Node *dtype, Node *body);
Node *ast_select(AstBuilder *b, Span kw, bool per_head, Node *selections);
Node *ast_attend(AstBuilder *b, Span kw, Span name, Node *binders, Op op, Node *body);
Node *ast_item(AstBuilder *b, NodeKind kind, Span kw, Node *list_or_expr);
Node *ast_policy(AstBuilder *b, Span kw, Span name, Node *items);
/* The deepest tree the later stages accept: they recurse over expressions, and a long
 * chain such as 1 + 1 + ... + 1 (which the parser's stack does not limit) must not overflow
 * the C stack. parse.c reports deeper items (E0204). */
enum { AST_MAX_DEPTH = 1000 };

/* Appends item to the list whose head is list; returns the head. */
Node *ast_append(Node *list, Node *item);
Span ast_join(Span a, Span b);

const char *ast_op_text(Op op);
const char *ast_reduction_text(Reduction red);
const char *ast_stage_text(Stage stage);
const char *ast_dtype_text(DType dtype);
const char *ast_unit_text(Unit unit);
const char *ast_type_text(Type type);
bool ast_is_expr(const Node *n);

/* --emit=ast: an S-expression per node, one item per line; typed if sema ran. */
void ast_print(FILE *out, const Node *policy, bool typed);

#endif
