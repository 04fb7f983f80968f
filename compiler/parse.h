/* parse.h - drives the re2c lexer into the Lemon parser and returns the policy's AST.
 * Included by the generated parser.c for the context type; holds no grammar itself. */
#ifndef VX_PARSE_H
#define VX_PARSE_H

#include <stdbool.h>

#include "ast.h"
#include "diag.h"
#include "lex.h"

/* A keyword token with what the grammar learned from it. */
typedef struct KwTok {
  Span span;
  Stage stage;
  Unit unit;
  Reduction red;
  Op op;
} KwTok;

typedef struct ParseCtx {
  AstBuilder b;
  Diags *diags;
  Node *policy;
  Token prev;     /* the last token handed to the parser before the current one */
  bool failed;    /* the parser gave up */
  bool overflow;  /* nesting beyond the parser's stack */
  bool lex_error_in_item; /* the lexer reported an error since the last ';' */
  /* Items that fail to parse are skipped to their ';'; what they seemed to define is kept
   * (ND_LOST) so that the checker can check the rest without calling those names unknown. */
  bool item_failed;       /* a syntax error since the last ';' */
  int item_kw, item_off;  /* the first token of the current item, and its offset */
  int depth;              /* ( and [ open in the current item */
  int npending;           /* names the current item defines, if it is a definition */
  Span pending[32];
  Node *lost;             /* ND_LOST items, in source order */
  int nbrackets;          /* '[' open in the current item */
  Token opener[16];       /* the token before each open '[' (the innermost 16) */
  bool names_only[16];    /* and whether only names and commas followed it, as binders */
  Token closed;           /* the token before the '[' that the last ']' closed */
  bool closed_names_only;
} ParseCtx;

/* Parses src; returns the policy, or NULL when the input has no usable policy. Errors go to
 * diags. Nodes are allocated in arena. */
Node *parse_source(Arena *arena, const Source *src, Diags *diags);

void parse_syntax_error(ParseCtx *ctx, Token tok);
void parse_stack_overflow(ParseCtx *ctx);

#endif
