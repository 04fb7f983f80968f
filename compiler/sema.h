/* sema.h - the checker: resolves names, infers axes and their extents, types, units and
 * stages, and checks that the score can feed the selection. Annotates the AST in place and
 * reports every independent error; never stops at the first. */
#ifndef VX_SEMA_H
#define VX_SEMA_H

#include <stdbool.h>

#include "arena.h"
#include "ast.h"
#include "diag.h"

typedef enum SymKind {
  SYM_PARAM,     /* param */
  SYM_DEF,       /* const/row/page/token/let/score definition */
  SYM_INTRINSIC, /* D, G, P, len, q, k, v, pos, ... */
} SymKind;

struct Symbol {
  const char *name;
  SymKind kind;
  Node *def;       /* SYM_PARAM / SYM_DEF: the defining node */
  Stage stage;     /* SYM_DEF: when it is computed */
  Type type;
  Unit unit;
  int rank;
  Axis **axes;     /* rank axes, the tensor's dimensions */
  int intrinsic;   /* SYM_INTRINSIC: which one (sema.c) */
  bool updated;    /* an 'update' rewrites it every step */
  bool broken;     /* SYM_DEF: its definition had an error; its shape is not checked again */
  Symbol *next;
};

/* Checks policy; returns true when it found no error. */
bool sema_check(Arena *arena, Node *policy, Diags *diags);

#endif
