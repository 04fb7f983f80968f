/* lexer.re - the .vx lexer, compiled by re2c into lexer.c in the build tree. Only token
 * shapes live here; keywords are matched as whole words so that identifiers such as
 * "pages_kept" stay identifiers. Must not allocate or build AST nodes. The input must be
 * NUL-terminated; a NUL before the end is reported as a bad character. */
#include "lex.h"
#include "parser.h"

void lex_init(Lexer *lx, const Source *src, Diags *diags) {
  lx->src = src;
  lx->diags = diags;
  lx->cursor = (const unsigned char *)src->text;
}

static Span span_from(const Lexer *lx, const unsigned char *start) {
  Span s;
  s.off = (int)(start - (const unsigned char *)lx->src->text);
  s.len = (int)(lx->cursor - start);
  return s;
}

Token lex_next(Lexer *lx) {
  const unsigned char *YYMARKER;
  for (;;) {
    const unsigned char *start = lx->cursor;
#define TOKEN(k) return (Token){(k), span_from(lx, start)}
    /*!re2c
      re2c:define:YYCTYPE = "unsigned char";
      re2c:define:YYCURSOR = "lx->cursor";
      re2c:yyfill:enable = 0;

      digit = [0-9];
      exp = [eE] [+-]? digit+;
      ident = [A-Za-z_] [A-Za-z0-9_]*;

      "\x00" {
        if (start - (const unsigned char *)lx->src->text >= lx->src->len) {
          lx->cursor = start;
          TOKEN(0);
        }
        diag_error(lx->diags, span_from(lx, start), "E0101", "unexpected NUL byte in source");
        continue;
      }
      [ \t\r\n\f\v]+ { continue; }
      "//" [^\n\x00]* { continue; }
      "/*" {
        for (;;) {
          if (lx->cursor[0] == '*' && lx->cursor[1] == '/') { lx->cursor += 2; break; }
          if (lx->cursor - (const unsigned char *)lx->src->text >= lx->src->len) {
            Span s = {(int)(start - (const unsigned char *)lx->src->text), 2};
            diag_error(lx->diags, s, "E0102", "unterminated comment");
            break;
          }
          lx->cursor++;
        }
        continue;
      }
      ["] ([^"\\\n\x00] | [\\] [^\n\x00])* ["] { TOKEN(TK_STRING); }
      ["] ([^"\\\n\x00] | [\\] [^\n\x00])* {
        diag_error(lx->diags, span_from(lx, start), "E0103", "unterminated string literal");
        TOKEN(TK_STRING);
      }

      digit+ "." digit* exp? | "." digit+ exp? | digit+ exp { TOKEN(TK_FLOAT); }
      digit+ | "0" [xX] [0-9a-fA-F]+ { TOKEN(TK_INT); }
      digit+ [A-Za-z_] [A-Za-z0-9_]* {
        diag_error(lx->diags, span_from(lx, start), "E0104",
                   "malformed number '%.*s'", (int)(lx->cursor - start), (const char *)start);
        TOKEN(TK_INT);
      }

      "policy" { TOKEN(TK_POLICY); }
      "param" { TOKEN(TK_PARAM); }
      "keep" { TOKEN(TK_KEEP); }
      "first" { TOKEN(TK_FIRST); }
      "last" { TOKEN(TK_LAST); }
      "generated" { TOKEN(TK_GENERATED); }
      "at" { TOKEN(TK_AT); }
      "prefill" { TOKEN(TK_PREFILL); }
      "require" { TOKEN(TK_REQUIRE); }
      "const" { TOKEN(TK_CONST); }
      "page" { TOKEN(TK_PAGE); }
      "pages" { TOKEN(TK_PAGES); }
      "token" { TOKEN(TK_TOKEN); }
      "tokens" { TOKEN(TK_TOKENS); }
      "row" { TOKEN(TK_ROW); }
      "let" { TOKEN(TK_LET); }
      "score" { TOKEN(TK_SCORE); }
      "select" { TOKEN(TK_SELECT); }
      "per" { TOKEN(TK_PER); }
      "head" { TOKEN(TK_HEAD); }
      "top" { TOKEN(TK_TOP); }
      "where" { TOKEN(TK_WHERE); }
      "attend" { TOKEN(TK_ATTEND); }
      "update" { TOKEN(TK_UPDATE); }
      "sum" { TOKEN(TK_SUM); }
      "mean" { TOKEN(TK_MEAN); }
      "max" { TOKEN(TK_MAX); }
      "min" { TOKEN(TK_MIN); }
      "count" { TOKEN(TK_COUNT); }
      "norm" { TOKEN(TK_NORM); }
      "bits" { TOKEN(TK_BITS); }
      "any" { TOKEN(TK_ANY); }
      "all" { TOKEN(TK_ALL); }
      "softmax" { TOKEN(TK_SOFTMAX); }
      "f32" | "f16" | "bf16" | "fp8" | "int8" | "u32" { TOKEN(TK_DTYPE); }
      ident { TOKEN(TK_IDENT); }

      "{" { TOKEN(TK_LBRACE); }
      "}" { TOKEN(TK_RBRACE); }
      "[" { TOKEN(TK_LBRACKET); }
      "]" { TOKEN(TK_RBRACKET); }
      "(" { TOKEN(TK_LP); }
      ")" { TOKEN(TK_RP); }
      "," { TOKEN(TK_COMMA); }
      ";" { TOKEN(TK_SEMI); }
      ":" { TOKEN(TK_COLON); }
      "?" { TOKEN(TK_QUESTION); }
      "=" { TOKEN(TK_ASSIGN); }
      "+=" { TOKEN(TK_PLUSEQ); }
      "-=" { TOKEN(TK_MINUSEQ); }
      "*=" { TOKEN(TK_STAREQ); }
      "+" { TOKEN(TK_PLUS); }
      "-" { TOKEN(TK_MINUS); }
      "*" { TOKEN(TK_STAR); }
      "/" { TOKEN(TK_SLASH); }
      "%" { TOKEN(TK_PERCENT); }
      "==" { TOKEN(TK_EQ); }
      "!=" { TOKEN(TK_NE); }
      "<" { TOKEN(TK_LT); }
      "<=" { TOKEN(TK_LE); }
      ">" { TOKEN(TK_GT); }
      ">=" { TOKEN(TK_GE); }
      "&&" { TOKEN(TK_ANDAND); }
      "||" { TOKEN(TK_OROR); }
      "!" { TOKEN(TK_NOT); }
      "&" { TOKEN(TK_AMP); }
      "|" { TOKEN(TK_PIPE); }
      "^" { TOKEN(TK_CARET); }
      "~" { TOKEN(TK_TILDE); }
      "<<" { TOKEN(TK_SHL); }
      ">>" { TOKEN(TK_SHR); }

      [\x80-\xff]+ {
        diag_error(lx->diags, span_from(lx, start), "E0105",
                   "non-ASCII characters are only allowed in comments and strings");
        continue;
      }
      * {
        diag_error(lx->diags, span_from(lx, start), "E0106",
                   "unexpected character '%c'", start[0] >= 32 && start[0] < 127 ? start[0] : '?');
        continue;
      }
    */
#undef TOKEN
  }
}

void lex_dump(const Source *src, FILE *out) {
  /* lexical errors were reported when the source was compiled: collect them aside */
  Arena scratch_arena;
  arena_init(&scratch_arena);
  Diags scratch;
  diag_init(&scratch, &scratch_arena, src);
  Lexer lx;
  lex_init(&lx, src, &scratch);
  for (;;) {
    Token t = lex_next(&lx);
    if (t.kind == 0)
      break;
    int line, col;
    source_position(src, t.span.off, &line, &col);
    fprintf(out, "%d:%d %s %.*s\n", line, col, lex_kind_name(t.kind), t.span.len, src->text + t.span.off);
  }
  arena_destroy(&scratch_arena);
}

const char *lex_kind_name(int kind) {
  switch (kind) {
  case 0: return "end of file";
  case TK_IDENT: return "identifier";
  case TK_INT: return "integer";
  case TK_FLOAT: return "number";
  case TK_STRING: return "string";
  case TK_DTYPE: return "dtype";
  case TK_POLICY: return "'policy'";
  case TK_PARAM: return "'param'";
  case TK_KEEP: return "'keep'";
  case TK_FIRST: return "'first'";
  case TK_LAST: return "'last'";
  case TK_GENERATED: return "'generated'";
  case TK_AT: return "'at'";
  case TK_PREFILL: return "'prefill'";
  case TK_REQUIRE: return "'require'";
  case TK_CONST: return "'const'";
  case TK_PAGE: return "'page'";
  case TK_PAGES: return "'pages'";
  case TK_TOKEN: return "'token'";
  case TK_TOKENS: return "'tokens'";
  case TK_ROW: return "'row'";
  case TK_LET: return "'let'";
  case TK_SCORE: return "'score'";
  case TK_SELECT: return "'select'";
  case TK_PER: return "'per'";
  case TK_HEAD: return "'head'";
  case TK_TOP: return "'top'";
  case TK_WHERE: return "'where'";
  case TK_ATTEND: return "'attend'";
  case TK_UPDATE: return "'update'";
  case TK_SUM: return "'sum'";
  case TK_MEAN: return "'mean'";
  case TK_MAX: return "'max'";
  case TK_MIN: return "'min'";
  case TK_COUNT: return "'count'";
  case TK_NORM: return "'norm'";
  case TK_BITS: return "'bits'";
  case TK_ANY: return "'any'";
  case TK_ALL: return "'all'";
  case TK_SOFTMAX: return "'softmax'";
  case TK_LBRACE: return "'{'";
  case TK_RBRACE: return "'}'";
  case TK_LBRACKET: return "'['";
  case TK_RBRACKET: return "']'";
  case TK_LP: return "'('";
  case TK_RP: return "')'";
  case TK_COMMA: return "','";
  case TK_SEMI: return "';'";
  case TK_COLON: return "':'";
  case TK_QUESTION: return "'?'";
  case TK_ASSIGN: return "'='";
  case TK_PLUSEQ: return "'+='";
  case TK_MINUSEQ: return "'-='";
  case TK_STAREQ: return "'*='";
  case TK_PLUS: return "'+'";
  case TK_MINUS: return "'-'";
  case TK_STAR: return "'*'";
  case TK_SLASH: return "'/'";
  case TK_PERCENT: return "'%'";
  case TK_EQ: return "'=='";
  case TK_NE: return "'!='";
  case TK_LT: return "'<'";
  case TK_LE: return "'<='";
  case TK_GT: return "'>'";
  case TK_GE: return "'>='";
  case TK_ANDAND: return "'&&'";
  case TK_OROR: return "'||'";
  case TK_NOT: return "'!'";
  case TK_AMP: return "'&'";
  case TK_PIPE: return "'|'";
  case TK_CARET: return "'^'";
  case TK_TILDE: return "'~'";
  case TK_SHL: return "'<<'";
  case TK_SHR: return "'>>'";
  default: return "token";
  }
}

bool lex_is_item_keyword(int kind) {
  switch (kind) {
  case TK_PARAM: case TK_KEEP: case TK_REQUIRE: case TK_CONST: case TK_PAGE: case TK_TOKEN:
  case TK_ROW: case TK_LET: case TK_SCORE: case TK_SELECT: case TK_ATTEND: case TK_UPDATE:
    return true;
  default:
    return false;
  }
}
