/* parser.y - the .vx grammar, compiled by Lemon into parser.c/parser.h in the build tree.
 * Actions only call the ast_* builders (compiler/ast.c); names are resolved and everything
 * is checked later by compiler/sema.c. Syntax errors are reported by parse.c through the
 * %syntax_error hook; an item that fails to parse is skipped up to its ';'. */

%name vxParse
%token_prefix TK_
%token_type {Token}
%default_type {Node *}
%extra_argument {ParseCtx *ctx}
%stack_size 1000

%include {
#include <assert.h>
#include "parse.h"
}

%syntax_error { parse_syntax_error(ctx, TOKEN); }
%stack_overflow { parse_stack_overflow(ctx); }
%parse_failure { ctx->failed = true; }

/* Loosest first. A reduction's operand is a multiplicative term: REDUCE sits between the
 * additive and the multiplicative operators. */
%right QUESTION COLON.
%left OROR.
%left ANDAND.
%left PIPE.
%left CARET.
%left AMP.
%left EQ NE.
%left LT LE GT GE.
%left SHL SHR.
%left PLUS MINUS.
%right REDUCE.
%left STAR SLASH PERCENT.
%right NOT TILDE UMINUS.

%type stage {KwTok}
%type unit {KwTok}
%type redop {KwTok}
%type assignop {KwTok}
%type per_head {bool}

file ::= policy(P). { ctx->policy = P; }

policy(A) ::= POLICY(K) IDENT(N) LBRACE items(I) RBRACE. {
  A = ast_policy(&ctx->b, K.span, N.span, I);
}

items(A) ::= . { A = NULL; }
items(A) ::= items(L) item(I). { A = ast_append(L, I); }

item(A) ::= error SEMI. { A = NULL; }
item(A) ::= PARAM params(L) SEMI. { A = L; }
item(A) ::= KEEP(K) keeps(L) SEMI. { A = ast_item(&ctx->b, ND_KEEP, K.span, L); }
item(A) ::= REQUIRE(K) expr(E) SEMI. { A = ast_item(&ctx->b, ND_REQUIRE, K.span, E); }
item(A) ::= stage(S) IDENT(N) binders_opt(B) dtype_opt(T) ASSIGN expr(E) SEMI. {
  A = ast_def(&ctx->b, S.stage, S.span, N.span, B, T, E);
}
item(A) ::= SCORE(K) binders_opt(B) ASSIGN expr(E) SEMI. {
  A = ast_def(&ctx->b, ST_STEP, K.span, K.span, B, NULL, E);
  A->is_score = true;
}
item(A) ::= SELECT(K) per_head(H) selections(L) SEMI. { A = ast_select(&ctx->b, K.span, H, L); }
item(A) ::= ATTEND(K) IDENT(N) binders_opt(B) assignop(O) expr(E) SEMI. {
  A = ast_attend(&ctx->b, K.span, N.span, B, O.op, E);
}

stage(A) ::= CONST(K). { A.stage = ST_CONST; A.span = K.span; }
stage(A) ::= ROW(K). { A.stage = ST_ROW; A.span = K.span; }
stage(A) ::= PAGE(K). { A.stage = ST_PAGE; A.span = K.span; }
stage(A) ::= TOKEN(K). { A.stage = ST_TOKEN; A.span = K.span; }
stage(A) ::= LET(K). { A.stage = ST_STEP; A.span = K.span; }
stage(A) ::= UPDATE(K). { A.stage = ST_UPDATE; A.span = K.span; }

params(A) ::= param(P). { A = P; }
params(A) ::= params(L) COMMA param(P). { A = ast_append(L, P); }
param(A) ::= IDENT(N) ASSIGN expr(E) unit(U). { A = ast_param(&ctx->b, N.span, E, U.unit, U.span); }

unit(A) ::= . { A.unit = UNIT_NONE; A.span.off = -1; A.span.len = 0; }
unit(A) ::= TOKEN(K). { A.unit = UNIT_TOKENS; A.span = K.span; }
unit(A) ::= TOKENS(K). { A.unit = UNIT_TOKENS; A.span = K.span; }
unit(A) ::= PAGE(K). { A.unit = UNIT_PAGES; A.span = K.span; }
unit(A) ::= PAGES(K). { A.unit = UNIT_PAGES; A.span = K.span; }

keeps(A) ::= keep(K). { A = K; }
keeps(A) ::= keeps(L) COMMA keep(K). { A = ast_append(L, K); }
keep(A) ::= FIRST(K) expr(E) unit(U). { A = ast_keep_range(&ctx->b, KEEP_FIRST, K.span, E, U.unit, false, U.span); }
keep(A) ::= LAST(K) expr(E) unit(U). { A = ast_keep_range(&ctx->b, KEEP_LAST, K.span, E, U.unit, false, U.span); }
keep(A) ::= LAST(K) expr(E) unit(U) AT PREFILL(Z). {
  A = ast_keep_range(&ctx->b, KEEP_LAST, K.span, E, U.unit, true, Z.span);
}
keep(A) ::= GENERATED(K). { A = ast_keep_range(&ctx->b, KEEP_GENERATED, K.span, NULL, UNIT_TOKENS, false, K.span); }

dtype_opt(A) ::= . { A = NULL; }
dtype_opt(A) ::= COLON DTYPE(T). { A = ast_name(&ctx->b, ND_NAME, T.span); }
dtype_opt(A) ::= COLON IDENT(T). { A = ast_name(&ctx->b, ND_NAME, T.span); }

binders_opt(A) ::= . { A = NULL; }
binders_opt(A) ::= LBRACKET binders(B) RBRACKET. { A = B; }
binders(A) ::= binder(B). { A = B; }
binders(A) ::= binders(L) COMMA binder(B). { A = ast_append(L, B); }
binder(A) ::= IDENT(N). { A = ast_binder(&ctx->b, N.span, NULL); }
binder(A) ::= IDENT(N) COLON extent(E). { A = ast_binder(&ctx->b, N.span, E); }

/* Extents are integer arithmetic over names: no '|', so a reduction's filter can follow. */
extent(A) ::= INT(N). { A = ast_number(&ctx->b, N.span); }
extent(A) ::= IDENT(N). { A = ast_name(&ctx->b, ND_NAME, N.span); }
extent(A) ::= LP extent(E) RP. { A = E; }
extent(A) ::= extent(L) PLUS extent(R). { A = ast_binary(&ctx->b, OP_ADD, L, R); }
extent(A) ::= extent(L) MINUS extent(R). { A = ast_binary(&ctx->b, OP_SUB, L, R); }
extent(A) ::= extent(L) STAR extent(R). { A = ast_binary(&ctx->b, OP_MUL, L, R); }
extent(A) ::= extent(L) SLASH extent(R). { A = ast_binary(&ctx->b, OP_DIV, L, R); }
extent(A) ::= extent(L) PERCENT extent(R). { A = ast_binary(&ctx->b, OP_MOD, L, R); }

per_head(A) ::= . { A = false; }
per_head(A) ::= PER HEAD. { A = true; }

selections(A) ::= selection(S). { A = S; }
selections(A) ::= selections(L) COMMA selection(S). { A = ast_append(L, S); }
selection(A) ::= TOP(K) LP expr(X) COMMA expr(C) unit(U) RP(E). {
  A = ast_new(&ctx->b, ND_TOP, ast_join(K.span, E.span));
  A->lhs = X;
  A->rhs = C;
  A->unit = U.unit;
}
selection(A) ::= ALL(K). { A = ast_new(&ctx->b, ND_ALL, K.span); }
selection(A) ::= WHERE(K) LP expr(X) RP(E). {
  A = ast_new(&ctx->b, ND_WHERE, ast_join(K.span, E.span));
  A->lhs = X;
}

assignop(A) ::= ASSIGN(K). { A.op = OP_ASSIGN; A.span = K.span; }
assignop(A) ::= PLUSEQ(K). { A.op = OP_ADD; A.span = K.span; }
assignop(A) ::= MINUSEQ(K). { A.op = OP_SUB; A.span = K.span; }
assignop(A) ::= STAREQ(K). { A.op = OP_MUL; A.span = K.span; }

expr(A) ::= expr(C) QUESTION expr(L) COLON expr(R). { A = ast_cond(&ctx->b, C, L, R); }
expr(A) ::= expr(L) OROR expr(R). { A = ast_binary(&ctx->b, OP_OR, L, R); }
expr(A) ::= expr(L) ANDAND expr(R). { A = ast_binary(&ctx->b, OP_AND, L, R); }
expr(A) ::= expr(L) PIPE expr(R). { A = ast_binary(&ctx->b, OP_BITOR, L, R); }
expr(A) ::= expr(L) CARET expr(R). { A = ast_binary(&ctx->b, OP_BITXOR, L, R); }
expr(A) ::= expr(L) AMP expr(R). { A = ast_binary(&ctx->b, OP_BITAND, L, R); }
expr(A) ::= expr(L) EQ expr(R). { A = ast_binary(&ctx->b, OP_EQ, L, R); }
expr(A) ::= expr(L) NE expr(R). { A = ast_binary(&ctx->b, OP_NE, L, R); }
expr(A) ::= expr(L) LT expr(R). { A = ast_binary(&ctx->b, OP_LT, L, R); }
expr(A) ::= expr(L) LE expr(R). { A = ast_binary(&ctx->b, OP_LE, L, R); }
expr(A) ::= expr(L) GT expr(R). { A = ast_binary(&ctx->b, OP_GT, L, R); }
expr(A) ::= expr(L) GE expr(R). { A = ast_binary(&ctx->b, OP_GE, L, R); }
expr(A) ::= expr(L) SHL expr(R). { A = ast_binary(&ctx->b, OP_SHL, L, R); }
expr(A) ::= expr(L) SHR expr(R). { A = ast_binary(&ctx->b, OP_SHR, L, R); }
expr(A) ::= expr(L) PLUS expr(R). { A = ast_binary(&ctx->b, OP_ADD, L, R); }
expr(A) ::= expr(L) MINUS expr(R). { A = ast_binary(&ctx->b, OP_SUB, L, R); }
expr(A) ::= expr(L) STAR expr(R). { A = ast_binary(&ctx->b, OP_MUL, L, R); }
expr(A) ::= expr(L) SLASH expr(R). { A = ast_binary(&ctx->b, OP_DIV, L, R); }
expr(A) ::= expr(L) PERCENT expr(R). { A = ast_binary(&ctx->b, OP_MOD, L, R); }
expr(A) ::= MINUS(K) expr(E). [UMINUS] { A = ast_unary(&ctx->b, OP_NEG, K.span, E); }
expr(A) ::= NOT(K) expr(E). { A = ast_unary(&ctx->b, OP_NOT, K.span, E); }
expr(A) ::= TILDE(K) expr(E). { A = ast_unary(&ctx->b, OP_BITNOT, K.span, E); }
expr(A) ::= redop(R) LBRACKET binders(B) RBRACKET expr(E). [REDUCE] {
  A = ast_reduce(&ctx->b, R.red, R.span, B, NULL, E);
}
expr(A) ::= redop(R) LBRACKET binders(B) PIPE expr(F) RBRACKET expr(E). [REDUCE] {
  A = ast_reduce(&ctx->b, R.red, R.span, B, F, E);
}
expr(A) ::= primary(P). { A = P; }

redop(A) ::= SUM(K). { A.red = RED_SUM; A.span = K.span; }
redop(A) ::= MEAN(K). { A.red = RED_MEAN; A.span = K.span; }
redop(A) ::= MAX(K). { A.red = RED_MAX; A.span = K.span; }
redop(A) ::= MIN(K). { A.red = RED_MIN; A.span = K.span; }
redop(A) ::= COUNT(K). { A.red = RED_COUNT; A.span = K.span; }
redop(A) ::= NORM(K). { A.red = RED_NORM; A.span = K.span; }
redop(A) ::= BITS(K). { A.red = RED_BITS; A.span = K.span; }
redop(A) ::= ANY(K). { A.red = RED_ANY; A.span = K.span; }
redop(A) ::= ALL(K). { A.red = RED_ALL; A.span = K.span; }
redop(A) ::= SOFTMAX(K). { A.red = RED_SOFTMAX; A.span = K.span; }

primary(A) ::= INT(N). { A = ast_number(&ctx->b, N.span); }
primary(A) ::= FLOAT(N). { A = ast_number(&ctx->b, N.span); }
primary(A) ::= STRING(S). { A = ast_string(&ctx->b, S.span); }
primary(A) ::= IDENT(N). { A = ast_name(&ctx->b, ND_NAME, N.span); }
primary(A) ::= IDENT(N) LBRACKET exprs(L) RBRACKET(E). { A = ast_index(&ctx->b, N.span, L, E.span); }
/* 'score' names the score tensor wherever a name may stand */
primary(A) ::= SCORE(N). { A = ast_name(&ctx->b, ND_NAME, N.span); }
primary(A) ::= SCORE(N) LBRACKET exprs(L) RBRACKET(E). { A = ast_index(&ctx->b, N.span, L, E.span); }
primary(A) ::= IDENT(N) LP args(L) RP(E). { A = ast_call(&ctx->b, N.span, L, E.span); }
/* max(a, b), min(a, b), u32(x), sum(...) (the checker explains the bracket form) */
primary(A) ::= redop(R) LP args(L) RP(E). { A = ast_call(&ctx->b, R.span, L, E.span); }
primary(A) ::= DTYPE(N) LP args(L) RP(E). { A = ast_call(&ctx->b, N.span, L, E.span); }
primary(A) ::= LP(K) expr(E) RP(Z). { A = E; A->span = ast_join(K.span, Z.span); }

args(A) ::= . { A = NULL; }
args(A) ::= exprs(L). { A = L; }
exprs(A) ::= expr(E). { A = E; }
exprs(A) ::= exprs(L) COMMA expr(E). { A = ast_append(L, E); }
