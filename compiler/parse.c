/* parse.c - feeds the re2c lexer's tokens to the Lemon parser (grammar/parser.y) and turns
 * syntax errors into diagnostics that say what was found and, where the context makes it
 * clear, what was expected. No semantic checks here. */
#include "parse.h"

#include <stdlib.h>
#include <string.h>

#include "parser.h"

void *vxParseAlloc(void *(*alloc)(size_t), ParseCtx *ctx);
void vxParse(void *parser, int kind, Token tok, ParseCtx *ctx);
void vxParseFree(void *parser, void (*release)(void *));

static int token_text_len(const Token *t) { return t->span.len > 24 ? 24 : t->span.len; }

static bool is_text(const Token *t, const char *text, const char *word) {
  size_t n = strlen(word);
  return t->kind == TK_IDENT && (size_t)t->span.len == n && !memcmp(text + t->span.off, word, n);
}

/* The reductions, for 'maxx[c] x': a name and a subscript followed by an operand. */
static const char *const reductions[] = {"sum", "mean", "max", "min", "count", "norm", "bits",
                                         "any", "all", "softmax"};

/* Levenshtein distance of a (len bytes) and b, capped: names over 16 bytes count as far. */
static int distance(const char *a, int la, const char *b) {
  int lb = (int)strlen(b), row[17];
  if (la > 16 || lb > 16)
    return 99;
  for (int j = 0; j <= lb; j++)
    row[j] = j;
  for (int i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = i;
    for (int j = 1; j <= lb; j++) {
      int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
      best = up + 1 < best ? up + 1 : best;
      best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* A token that can begin an operand (what a reduction's brackets are followed by). */
static bool starts_operand(int kind) {
  switch (kind) {
  case TK_IDENT: case TK_INT: case TK_FLOAT: case TK_LP: case TK_SCORE: case TK_DTYPE:
  case TK_NOT: case TK_TILDE: case TK_SUM: case TK_MEAN: case TK_MAX: case TK_MIN:
  case TK_COUNT: case TK_NORM: case TK_BITS: case TK_ANY: case TK_ALL: case TK_SOFTMAX:
    return true;
  default:
    return false;
  }
}

/* tok, an operand, after NAME[...] that cannot be a misspelt reduction. */
static bool not_a_reduction(ParseCtx *ctx, Token tok, const Token *name) {
  const char *text = ctx->b.text;
  Diagnostic *d = tok.kind == TK_IDENT || tok.kind == TK_INT || tok.kind == TK_FLOAT
                      ? diag_error(ctx->diags, tok.span, "E0203", "unexpected %s '%.*s'",
                                   lex_kind_name(tok.kind), token_text_len(&tok), text + tok.span.off)
                      : diag_error(ctx->diags, tok.span, "E0203", "unexpected %s", lex_kind_name(tok.kind));
  diag_hint(ctx->diags, d, "is an operator missing after '%.*s[...]'? A reduction is written "
            "'sum[c] x' (sum, mean, max, min, count, norm, bits, any, all, softmax)",
            token_text_len(name), text + name->span.off);
  return true;
}

/* 'maxx[c] a[p, c]': tok, an operand, follows NAME[...]. When NAME is one or two edits from
 * a reduction and only names are in the brackets, reports E0205; otherwise an unexpected
 * token with the rule for reductions. Returns false when tok does not follow NAME[...]. */
static bool misspelt_reduction(ParseCtx *ctx, Token tok) {
  const Token *name = &ctx->closed;
  if (ctx->prev.kind != TK_RBRACKET || name->kind != TK_IDENT || !starts_operand(tok.kind))
    return false;
  const char *text = ctx->b.text + name->span.off, *best = NULL;
  if (!ctx->closed_names_only)
    return not_a_reduction(ctx, tok, name);
  int best_d = name->span.len <= 3 ? 2 : 3;
  for (size_t i = 0; i < sizeof reductions / sizeof reductions[0]; i++) {
    int d = distance(text, name->span.len, reductions[i]);
    if (d < best_d) {
      best_d = d;
      best = reductions[i];
    }
  }
  if (!best)
    return not_a_reduction(ctx, tok, name);
  Diagnostic *d = diag_error(ctx->diags, name->span, "E0205", "unknown reduction '%.*s'",
                             token_text_len(name), text);
  diag_hint(ctx->diags, d, "did you mean '%s'? The reductions are sum, mean, max, min, count, "
                           "norm, bits, any, all and softmax", best);
  return true;
}

/* Whether a token of this kind is followed by the name of what it defines. */
static bool names_next(int kind) {
  switch (kind) {
  case TK_POLICY: case TK_PARAM: case TK_CONST: case TK_ROW: case TK_PAGE: case TK_TOKEN:
  case TK_LET: case TK_UPDATE: case TK_ATTEND:
    return true;
  default:
    return false;
  }
}

/* The item a token starts, for messages ("in a let"). */
static const char *item_text(int kw) {
  switch (kw) {
  case TK_PARAM: return "a param";
  case TK_KEEP: return "a keep range";
  case TK_REQUIRE: return "a require";
  case TK_CONST: return "a const";
  case TK_ROW: return "a row state";
  case TK_PAGE: return "a page field";
  case TK_TOKEN: return "a token field";
  case TK_LET: return "a let";
  case TK_SCORE: return "the score";
  case TK_UPDATE: return "an update";
  case TK_ATTEND: return "an attend modifier";
  default: return NULL;
  }
}

/* 'let s = top(score, budget);': a selection where a value is computed. Reports E0203 naming
 * the item, with where selections go, and returns true. */
static bool selection_outside_select(ParseCtx *ctx, Token tok) {
  const char *item = item_text(ctx->item_kw);
  if ((tok.kind != TK_TOP && tok.kind != TK_WHERE) || !item || names_next(ctx->prev.kind))
    return false; /* 'param top = 4' is a reserved word where a name goes */
  const char *what = tok.kind == TK_TOP ? "top" : "where";
  Diagnostic *d = diag_error(ctx->diags, tok.span, "E0203",
                             "'%s(...)' in %s; selections go only in 'select'", what, item);
  diag_hint(ctx->diags, d, "top() and where() choose what is attended: 'select top(score, budget);' "
                           "after the score; %s computes a value", item);
  return true;
}

/* A keyword spelt like a name ('top', 'page', 'sum'), where a name was expected. */
static bool is_word(const Token *t, const char *text) {
  char c = text[t->span.off];
  return t->kind != TK_IDENT && t->span.len > 0 &&
         ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_');
}

void parse_syntax_error(ParseCtx *ctx, Token tok) {
  const char *text = ctx->b.text;
  ctx->item_failed = true;
  /* The lexer already reported a bad character, comment or string in this item; the
   * parser's complaint about what follows it is the same mistake. */
  if (ctx->lex_error_in_item)
    return;
  if (tok.kind == 0) {
    Span at = {ctx->prev.span.off + ctx->prev.span.len, 0};
    Diagnostic *d = diag_error(ctx->diags, at, "E0201", "unexpected end of file");
    if (ctx->prev.kind == 0)
      diag_hint(ctx->diags, d, "a .vx file holds one 'policy NAME { ... }'");
    else if (ctx->policy == NULL)
      diag_hint(ctx->diags, d, "is a ';' or the policy's closing '}' missing?");
    return;
  }
  if (misspelt_reduction(ctx, tok) || selection_outside_select(ctx, tok))
    return;
  bool after_item_end = ctx->prev.kind == TK_SEMI || ctx->prev.kind == TK_LBRACE ||
                        ctx->prev.kind == TK_RBRACE || ctx->prev.kind == 0;
  if (lex_is_item_keyword(tok.kind) && !after_item_end) {
    Span at = {ctx->prev.span.off + ctx->prev.span.len, 1};
    Diagnostic *d = diag_error(ctx->diags, at, "E0202", "expected ';' before %s",
                               lex_kind_name(tok.kind));
    diag_note(ctx->diags, d, tok.span, "the next item starts here");
    return;
  }
  Diagnostic *d;
  if (tok.kind == TK_IDENT || tok.kind == TK_INT || tok.kind == TK_FLOAT || tok.kind == TK_DTYPE)
    d = diag_error(ctx->diags, tok.span, "E0203", "unexpected %s '%.*s'", lex_kind_name(tok.kind),
                   token_text_len(&tok), text + tok.span.off);
  else
    d = diag_error(ctx->diags, tok.span, "E0203", "unexpected %s", lex_kind_name(tok.kind));
  if (ctx->prev.kind == 0 && tok.kind != TK_POLICY)
    diag_hint(ctx->diags, d, "a .vx file holds one 'policy NAME { ... }'");
  else if (tok.kind == TK_POLICY)
    diag_hint(ctx->diags, d, "a .vx file holds exactly one policy");
  else if (ctx->prev.kind == TK_RP && (tok.kind == TK_IDENT || tok.kind == TK_LP))
    diag_hint(ctx->diags, d, "reductions take their axes in brackets: 'sum[c] x', not 'sum(c) x'");
  else if (is_word(&tok, text) && names_next(ctx->prev.kind))
    diag_hint(ctx->diags, d, "'%.*s' is a reserved word; choose another name", tok.span.len,
              text + tok.span.off);
  else if ((tok.kind == TK_TOKENS || tok.kind == TK_PAGES) &&
           (ctx->prev.kind == TK_INT || ctx->prev.kind == TK_FLOAT || ctx->prev.kind == TK_IDENT))
    diag_hint(ctx->diags, d, "a unit follows a count only in 'param', 'keep' and top()'s budget; "
                             "elsewhere use a param that has one: 'param budget = 2048 tokens;'");
  else if (tok.kind == TK_LBRACKET && ctx->prev.kind == TK_RBRACKET)
    diag_hint(ctx->diags, d, "subscripts go in one bracket pair: 'k[p, t, c]'");
  else if (tok.kind == TK_RBRACE && !after_item_end)
    diag_hint(ctx->diags, d, "is a ';' missing before the '}'?");
  /* habits from other languages */
  else if (tok.kind == TK_STAR && ctx->prev.kind == TK_STAR)
    diag_hint(ctx->diags, d, "there is no '**' operator: write pow(x, 2)");
  else if (is_text(&tok, text, "if") || is_text(&tok, text, "else"))
    diag_hint(ctx->diags, d, "a conditional value is written 'c ? a : b'");
  else if (tok.kind == TK_COLON && (ctx->prev.kind == TK_COMMA || ctx->prev.kind == TK_LBRACKET))
    diag_hint(ctx->diags, d, "there are no slices: subscript with an axis and reduce over it, "
                             "e.g. 'sum[c] k[p, t, c]'");
  else if (tok.kind == TK_PLUSEQ || tok.kind == TK_MINUSEQ || tok.kind == TK_STAREQ)
    diag_hint(ctx->diags, d, "'+=', '-=' and '*=' only modify 'attend logit[g, p, t]'; an update "
                             "assigns its state: 'update acc[p, t] = acc[p, t] + ...;'");
  /* selections */
  else if (tok.kind == TK_PER)
    diag_hint(ctx->diags, d, "'per head' comes right after 'select': 'select per head top(score, budget);'");
  else if ((tok.kind == TK_TOP || tok.kind == TK_WHERE || tok.kind == TK_ALL) && ctx->prev.kind == TK_RP)
    diag_hint(ctx->diags, d, "join selections with ',': 'select top(score, budget), where(score > 4.0);'");
  else if (tok.kind == TK_IDENT && (ctx->prev.kind == TK_SELECT || ctx->prev.kind == TK_HEAD))
    diag_hint(ctx->diags, d, "a selection is top(SCORE, BUDGET), where(CONDITION) or all");
}

void parse_stack_overflow(ParseCtx *ctx) {
  Span at = ctx->prev.span;
  diag_error(ctx->diags, at, "E0204", "expression nested too deeply");
  ctx->overflow = true;
}

/* The parser's stack limits nesting, not a long chain such as 1 + 1 + ... + 1, whose tree is
 * as deep as it is long: the later stages recurse over it (see AST_MAX_DEPTH). Such an item
 * is reported and becomes an ND_LOST. */
static void check_depth(ParseCtx *ctx) {
  for (Node *item = ctx->policy->list; item; item = item->next)
    if (item->depth > AST_MAX_DEPTH) {
      Diagnostic *d = diag_error(ctx->diags, item->span, "E0204", "expression nested too deeply");
      diag_hint(ctx->diags, d, "split it into several 'let' items");
      /* the checker recurses too: it sees only what the item defines */
      bool defines = item->kind == ND_PARAM || item->kind == ND_DEF;
      item->list = defines ? ast_name(&ctx->b, ND_NAME, item->name_span) : NULL;
      item->kind = ND_LOST;
      item->lhs = item->rhs = item->cond = item->binders = NULL;
    }
}

/* Whether a name after a token of this kind is defined by the item (score is by itself). */
static bool defines_next(const ParseCtx *ctx, int prev) {
  switch (prev) {
  case TK_CONST: case TK_ROW: case TK_PAGE: case TK_TOKEN: case TK_LET: case TK_PARAM:
    return true;
  case TK_COMMA:
    return ctx->item_kw == TK_PARAM && ctx->depth == 0;
  default:
    return false;
  }
}

/* Before tok goes to the parser: notes where items start and the names they define. */
static void track_item(ParseCtx *ctx, Token tok) {
  int prev = ctx->prev.kind;
  if (prev == TK_SEMI || prev == TK_LBRACE) {
    ctx->item_kw = tok.kind;
    ctx->item_off = tok.span.off;
    ctx->depth = 0;
    ctx->nbrackets = 0;
  }
  enum { NOPENERS = sizeof ctx->opener / sizeof ctx->opener[0] };
  if (tok.kind == TK_LBRACKET) {
    if (ctx->nbrackets < NOPENERS) {
      ctx->opener[ctx->nbrackets] = ctx->prev;
      ctx->names_only[ctx->nbrackets] = true;
    }
    ctx->nbrackets++;
  } else if (tok.kind == TK_RBRACKET && ctx->nbrackets > 0) {
    ctx->nbrackets--;
    bool kept = ctx->nbrackets < NOPENERS;
    ctx->closed = kept ? ctx->opener[ctx->nbrackets] : (Token){0};
    ctx->closed_names_only = kept && ctx->names_only[ctx->nbrackets];
  } else if (tok.kind != TK_IDENT && tok.kind != TK_COMMA && ctx->nbrackets > 0 &&
             ctx->nbrackets <= NOPENERS) {
    ctx->names_only[ctx->nbrackets - 1] = false;
  }
  if (tok.kind == TK_LP || tok.kind == TK_LBRACKET)
    ctx->depth++;
  else if ((tok.kind == TK_RP || tok.kind == TK_RBRACKET) && ctx->depth > 0)
    ctx->depth--;
  bool defines = (tok.kind == TK_IDENT && defines_next(ctx, prev)) ||
                 (tok.kind == TK_SCORE && ctx->item_kw == TK_SCORE && tok.span.off == ctx->item_off);
  if (defines && ctx->npending < (int)(sizeof ctx->pending / sizeof ctx->pending[0]))
    ctx->pending[ctx->npending++] = tok.span;
}

/* After a ';' went to the parser: an item that failed to parse becomes an ND_LOST. */
static void end_item(ParseCtx *ctx, Token semi) {
  if (ctx->item_failed) {
    Span at = {ctx->item_off, semi.span.off + semi.span.len - ctx->item_off};
    Node *lost = ast_new(&ctx->b, ND_LOST, at);
    for (int i = 0; i < ctx->npending; i++)
      lost->list = ast_append(lost->list, ast_name(&ctx->b, ND_NAME, ctx->pending[i]));
    ctx->lost = ast_append(ctx->lost, lost);
  }
  ctx->item_failed = false;
  ctx->npending = 0;
}

/* Merges the ND_LOST items into the policy's items by source position. */
static void add_lost(ParseCtx *ctx) {
  Node *merged = NULL, **tail = &merged, *a = ctx->policy->list, *b = ctx->lost;
  while (a || b) {
    Node **from = a && (!b || a->span.off < b->span.off) ? &a : &b;
    *tail = *from;
    tail = &(*from)->next;
    *from = (*from)->next;
  }
  *tail = NULL;
  ctx->policy->list = merged;
}

Node *parse_source(Arena *arena, const Source *src, Diags *diags) {
  ParseCtx ctx = {0};
  ctx.b.arena = arena;
  ctx.b.text = src->text;
  ctx.diags = diags;
  Lexer lx;
  lex_init(&lx, src, diags);
  void *parser = vxParseAlloc(malloc, &ctx);
  if (!parser)
    return NULL;
  for (;;) {
    int errors_before = diags->nerrors;
    Token tok = lex_next(&lx);
    if (diags->nerrors > errors_before)
      ctx.lex_error_in_item = true;
    track_item(&ctx, tok);
    vxParse(parser, tok.kind, tok, &ctx);
    if (tok.kind == TK_SEMI) {
      ctx.lex_error_in_item = false;
      end_item(&ctx, tok);
    }
    if (tok.kind == 0 || ctx.failed || ctx.overflow)
      break;
    ctx.prev = tok;
  }
  vxParseFree(parser, free);
  if (ctx.failed || ctx.overflow)
    return NULL;
  if (ctx.policy)
    check_depth(&ctx);
  if (ctx.policy && ctx.lost)
    add_lost(&ctx);
  return ctx.policy;
}
