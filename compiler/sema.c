/* sema.c - the checker (see sema.h). One pass over the items in source order: each item
 * resolves its names against what was defined before it, binds its axes, learns their
 * extents by unification with the tensors they subscript, types its expressions, and checks
 * what its stage may read. An error marks the expression TY_ERROR, and operations on such a
 * value stay silent, so one mistake is reported once and independent mistakes all are. */
#include "sema.h"

#include "builtins.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where an expression is evaluated: the stage of its item, plus the contexts that are not
 * stages (a param default, a keep count, a require, a selection, an attend modifier). */
typedef enum Ctx {
  CX_PARAM, CX_KEEP, CX_REQUIRE, CX_CONST, CX_ROW, CX_PAGE, CX_TOKEN, CX_STEP, CX_SELECT,
  CX_ATTEND, CX_UPDATE,
} Ctx;
#define BIT(c) (1u << (c))
#define ANYWHERE 0xffffu
#define DECODE (BIT(CX_STEP) | BIT(CX_SELECT) | BIT(CX_ATTEND) | BIT(CX_UPDATE))
#define KV (BIT(CX_ROW) | BIT(CX_PAGE) | BIT(CX_TOKEN) | BIT(CX_STEP) | BIT(CX_ATTEND) | BIT(CX_UPDATE))
#define SHAPE (BIT(CX_CONST) | BIT(CX_REQUIRE) | KV | BIT(CX_SELECT) | BIT(CX_KEEP))

static const char *const ctx_text[] = {
    "a param default", "a keep range", "a require", "a const", "a row state", "a page field",
    "a token field", "a let or score", "a select", "an attend modifier", "an update",
};

typedef enum Intrinsic {
  IN_D, IN_G, IN_P, IN_LAYER, IN_LEN, IN_NPAGES, IN_PREFILL_LEN, IN_PI, IN_INF,
  IN_POS, IN_FROM_END, IN_KEPT, IN_Q, IN_K, IN_V, IN_LOGIT, IN_PROB,
} Intrinsic;

typedef struct IntrinsicInfo {
  const char *name;
  Type type;
  const char *extents[3];
  unsigned readable;  /* BIT(CX_...) */
  const char *where;  /* why it is unavailable elsewhere */
} IntrinsicInfo;

static const IntrinsicInfo intrinsics[] = {
    [IN_D] = {"D", TY_I32, {0}, ANYWHERE & ~BIT(CX_PARAM), "D is known once the policy is loaded"},
    [IN_G] = {"G", TY_I32, {0}, ANYWHERE & ~BIT(CX_PARAM), "G is known once the policy is loaded"},
    [IN_P] = {"P", TY_I32, {0}, ANYWHERE & ~BIT(CX_PARAM), "P is known once the policy is loaded"},
    [IN_LAYER] = {"layer", TY_I32, {0}, KV, "the layer index exists only where keys do"},
    [IN_LEN] = {"len", TY_I32, {0}, BIT(CX_ROW) | DECODE | BIT(CX_KEEP),
                "the row length changes every step; fields and consts cannot depend on it"},
    [IN_NPAGES] = {"npages", TY_I32, {0}, BIT(CX_ROW) | DECODE | BIT(CX_KEEP),
                   "the page count changes every step; fields and consts cannot depend on it"},
    [IN_PREFILL_LEN] = {"prefill_len", TY_I32, {0}, BIT(CX_ROW) | DECODE | BIT(CX_KEEP),
                        "the prefill length is known only once the row is prefilled"},
    [IN_PI] = {"pi", TY_F32, {0}, ANYWHERE, ""},
    [IN_INF] = {"inf", TY_F32, {0}, ANYWHERE, ""},
    [IN_POS] = {"pos", TY_I32, {"npages", "P"}, KV, "positions exist only where keys do"},
    [IN_FROM_END] = {"from_end", TY_I32, {"npages"}, BIT(CX_ROW) | BIT(CX_STEP) | BIT(CX_ATTEND) | BIT(CX_UPDATE),
                     "pages from the end change every step; fields cannot depend on them"},
    [IN_KEPT] = {"kept", TY_BOOL, {"npages", "P"}, BIT(CX_ROW) | BIT(CX_STEP) | BIT(CX_ATTEND) | BIT(CX_UPDATE),
                 "the always-kept set moves with the row length; fields cannot depend on it"},
    [IN_Q] = {"q", TY_F32, {"G", "D"}, BIT(CX_STEP) | BIT(CX_ATTEND) | BIT(CX_UPDATE),
              "the query exists only in a decode step (let, score, attend, update)"},
    [IN_K] = {"k", TY_F32, {"npages", "P", "D"}, KV, "keys are not visible here"},
    [IN_V] = {"v", TY_F32, {"npages", "P", "D"}, KV, "values are not visible here"},
    [IN_LOGIT] = {"logit", TY_F32, {"G", "npages", "P"}, BIT(CX_ATTEND),
                  "'logit' exists only in an attend modifier"},
    [IN_PROB] = {"prob", TY_F32, {"G", "npages", "P"}, BIT(CX_UPDATE),
                 "'prob' (this step's attention weights) exists only in an update"},
};

typedef struct FnInfo {
  const char *name;
  FnClass cls;
  int nargs;
} FnInfo;

static const FnInfo functions[] = {
#define FN_INFO(name, cls, nargs, ops, intrinsic, fold1, fold2) {#name, cls, nargs},
    VX_BUILTINS(FN_INFO)
#undef FN_INFO
};

enum { MAX_AXES_IN_SCOPE = 256, MAX_TENSOR_RANK = 8 };

typedef struct SymSlot {
  uint32_t hash; /* of sym->name */
  Symbol *sym;   /* NULL: an empty slot */
} SymSlot;

typedef struct Sema {
  Arena *arena;
  Diags *diags;
  SymSlot *table;  /* open addressing, power-of-two capacity */
  int cap, count;
  Ctx ctx;
  Node *item;      /* the item being checked */
  Axis *scope[MAX_AXES_IN_SCOPE];
  int nscope;
  bool too_many_axes; /* E0410 reported for this statement */
  Axis *own_page;  /* page/token field: its page axis */
  Axis *own_token; /* token field: its token axis */
  Node *keep;
  Node *select;
  Node *score;
  Node *update_targets; /* ND_DEF list of update items, found before the main pass */
  bool keeps_tokens;    /* keep ranges exist (the selection is not empty without select) */
  bool lost;            /* an item failed to parse (ND_LOST): what it defined is unknown */
} Sema;

/* ---- symbols ---- */

/* A name defined by an item that failed to parse: known, but nothing about it is, and its
 * uses are not reported (the syntax error was). */
static bool is_lost(const Symbol *sym) { return sym && sym->def && sym->def->kind == ND_LOST; }

static uint32_t hash_name(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* Two names are the same when their first bytes and then their texts agree; the first-byte
 * test settles most mismatches without a call. */
static bool same_name(const char *a, const char *b) { return a[0] == b[0] && !strcmp(a, b); }

/* Open addressing over (hash, symbol) slots: probing past other names reads only the table,
 * never the symbols (a lookup costs one cache line, not one per probe), and growing the
 * table rehashes nothing. */
static Symbol *lookup(Sema *s, const char *name) {
  uint32_t h = hash_name(name), mask = (uint32_t)(s->cap - 1);
  for (uint32_t i = h & mask;; i = (i + 1) & mask) {
    SymSlot *slot = &s->table[i];
    if (!slot->sym || (slot->hash == h && same_name(slot->sym->name, name)))
      return slot->sym;
  }
}

static void place(SymSlot *table, int cap, uint32_t hash, Symbol *sym) {
  uint32_t mask = (uint32_t)(cap - 1), j = hash & mask;
  while (table[j].sym)
    j = (j + 1) & mask;
  table[j] = (SymSlot){hash, sym};
}

static void insert(Sema *s, Symbol *sym) {
  if (2 * (s->count + 1) > s->cap) {
    SymSlot *old = s->table;
    int oldcap = s->cap;
    s->cap = oldcap ? oldcap * 2 : 64;
    s->table = arena_alloc(s->arena, sizeof(SymSlot) * (size_t)s->cap);
    for (int i = 0; i < oldcap; i++)
      if (old[i].sym)
        place(s->table, s->cap, old[i].hash, old[i].sym);
  }
  place(s->table, s->cap, hash_name(sym->name), sym);
  s->count++;
}

/* The extent of an axis whose extent could not be learned because of an error that was
 * already reported: it unifies with anything and is never reported again. */
static const char UNKNOWN_EXTENT[] = "?";

static bool extent_known(const char *extent) { return extent && strcmp(extent, UNKNOWN_EXTENT); }

static void set_extent(Axis *a, const char *extent, Span at) {
  a->extent = extent;
  a->role = !strcmp(extent, "npages") ? AX_PAGE
            : !strcmp(extent, "P")    ? AX_TOKEN
            : !strcmp(extent, "G")    ? AX_HEAD
            : !strcmp(extent, "D")    ? AX_CHANNEL
                                      : AX_OTHER;
  a->extent_span = at;
}

static Axis *new_axis(Sema *s, const char *name, const char *extent, Span span) {
  Axis *a = arena_alloc(s->arena, sizeof *a);
  a->name = name;
  a->span = span;
  a->extent_span = span;
  if (extent)
    set_extent(a, extent, span);
  return a;
}

static void add_intrinsics(Sema *s) {
  Span none = {0, 0};
  for (int i = 0; i < (int)(sizeof intrinsics / sizeof intrinsics[0]); i++) {
    const IntrinsicInfo *in = &intrinsics[i];
    Symbol *sym = arena_alloc(s->arena, sizeof *sym);
    sym->name = in->name;
    sym->kind = SYM_INTRINSIC;
    sym->intrinsic = i;
    sym->type = in->type;
    while (sym->rank < 3 && in->extents[sym->rank])
      sym->rank++;
    sym->axes = arena_alloc(s->arena, sizeof(Axis *) * 3);
    for (int d = 0; d < sym->rank; d++)
      sym->axes[d] = new_axis(s, "", in->extents[d], none);
    insert(s, sym);
  }
}

/* ---- helpers for messages ---- */

static int edit_distance(const char *a, const char *b) {
  int la = (int)strlen(a), lb = (int)strlen(b);
  if (la > 32 || lb > 32)
    return 99;
  int row[33];
  for (int j = 0; j <= lb; j++)
    row[j] = j;
  for (int i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = i;
    for (int j = 1; j <= lb; j++) {
      int up = row[j];
      int best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* The letters, digits and '_' a name contains, one bit each (a-z, 0-9 folded onto them): an
 * edit changes at most two bits, so names whose sets differ in more bits than twice the
 * distance allowed need no edit distance computed. */
static uint64_t name_chars(const char *name) {
  uint64_t m = 0;
  for (; *name; name++)
    m |= (uint64_t)1 << ((unsigned char)*name & 63);
  return m;
}

/* One candidate for suggest(): keeps it when it is closer than the best so far. */
static void suggest_try(const char *name, int len, uint64_t chars, const char *cand,
                        const char **best, int *best_d) {
  int lc = (int)strlen(cand), diff = lc > len ? lc - len : len - lc;
  if (diff >= *best_d || __builtin_popcountll(chars ^ name_chars(cand)) > 2 * (*best_d - 1))
    return;
  int d = edit_distance(name, cand);
  if (d < *best_d) {
    *best_d = d;
    *best = cand;
  }
}

/* The closest visible name (symbol or axis in scope) to a misspelt one, or NULL. Only for an
 * error that will be shown: past DIAG_MAX_KEPT the hint would be dropped, and searching for
 * it anyway made checking quadratic in the number of unknown names. */
static const char *suggest(Sema *s, const char *name) {
  const char *best = NULL;
  if (!name[0] || !name[1] || s->diags->nerrors > DIAG_MAX_KEPT)
    return NULL; /* every short name is one edit from a one-letter name: no signal */
  int len = (int)strlen(name);
  int best_d = len <= 3 ? 1 : 2;
  best_d++;
  uint64_t chars = name_chars(name);
  for (int i = 0; i < s->nscope; i++)
    suggest_try(name, len, chars, s->scope[i]->name, &best, &best_d);
  for (int i = 0; i < s->cap; i++)
    if (s->table[i].sym)
      suggest_try(name, len, chars, s->table[i].sym->name, &best, &best_d);
  return best;
}

static const char *axes_text(Sema *s, Symbol *sym) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "[");
  for (int i = 0; i < sym->rank && n < (int)sizeof buf - 40; i++) {
    const char *nm = sym->axes[i]->name;
    const char *ex = sym->axes[i]->extent ? sym->axes[i]->extent : "?";
    if (nm && nm[0])
      n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%s: %s", i ? ", " : "", nm, ex);
    else
      n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%s", i ? ", " : "", ex);
  }
  snprintf(buf + n, sizeof buf - (size_t)n, "]");
  return arena_strndup(s->arena, buf, strlen(buf));
}

static bool is_numeric(Type t) { return t == TY_F32 || t == TY_I32 || t == TY_U32; }
static bool is_integer(Type t) { return t == TY_I32 || t == TY_U32; }

static Type promote(Type a, Type b) {
  if (a == TY_F32 || b == TY_F32)
    return TY_F32;
  if (a == TY_U32 || b == TY_U32)
    return TY_U32;
  return TY_I32;
}

/* ---- extents ---- */

/* Canonical text of an extent expression, so that "P / 16" and "P/16" compare equal. */
static const char *extent_text(Sema *s, const Node *e, bool top) {
  if (e->kind == ND_NUM)
    return arena_printf(s->arena, "%lld", (long long)e->num);
  if (e->kind == ND_NAME)
    return e->name;
  const char *l = extent_text(s, e->lhs, false), *r = extent_text(s, e->rhs, false);
  return arena_printf(s->arena, top ? "%s%s%s" : "(%s%s%s)", l, ast_op_text(e->op), r);
}

static bool check_extent(Sema *s, Node *e) {
  switch (e->kind) {
  case ND_NUM:
    if (!e->is_int || e->num < 1 || e->num > INT32_MAX) {
      diag_error(s->diags, e->span, "E0408", "an extent must be a positive 32-bit integer");
      return false;
    }
    return true;
  case ND_NAME: {
    Symbol *sym = lookup(s, e->name);
    if (is_lost(sym))
      return false;
    bool ok = sym && ((sym->kind == SYM_PARAM && sym->type == TY_I32) ||
                      (sym->kind == SYM_INTRINSIC &&
                       (sym->intrinsic == IN_D || sym->intrinsic == IN_G ||
                        sym->intrinsic == IN_P || sym->intrinsic == IN_NPAGES)));
    if (!ok) {
      Diagnostic *d = diag_error(s->diags, e->span, "E0408",
                                 "extent '%s' is not an integer param, D, G, P or npages", e->name);
      if (!sym) {
        const char *alt = suggest(s, e->name);
        if (alt)
          diag_hint(s->diags, d, "did you mean '%s'?", alt);
      }
    }
    if (ok && s->ctx == CX_CONST && sym->kind == SYM_INTRINSIC && sym->intrinsic == IN_NPAGES) {
      /* a const is made at load time, when there is no row and no page count */
      Diagnostic *d = diag_error(s->diags, e->span, "E0408",
                                 "a const cannot have extent npages: it is made when the policy "
                                 "is loaded, before any row exists");
      diag_hint(s->diags, d, "per-page values belong in a page field or a let");
      ok = false;
    }
    e->sym = sym;
    e->type = TY_I32;
    return ok;
  }
  default: {
    bool l = check_extent(s, e->lhs);
    bool r = check_extent(s, e->rhs);
    return l && r;
  }
  }
}

/* Evaluates an extent from literals and param defaults; false if it needs D, G, P or npages. */
static bool eval_extent(const Node *e, long long *out) {
  long long l, r;
  switch (e->kind) {
  case ND_NUM:
    *out = (long long)e->num;
    return true;
  case ND_NAME:
    if (e->sym && e->sym->kind == SYM_PARAM && e->sym->def->lhs) {
      const Node *v = e->sym->def->lhs;
      bool neg = v->kind == ND_UNARY;
      if (neg)
        v = v->lhs;
      if (v->kind != ND_NUM)
        return false;
      *out = neg ? -(long long)v->num : (long long)v->num;
      return true;
    }
    return false;
  case ND_BINARY:
    if (!eval_extent(e->lhs, &l) || !eval_extent(e->rhs, &r))
      return false;
    switch (e->op) {
    case OP_ADD: *out = l + r; return true;
    case OP_SUB: *out = l - r; return true;
    case OP_MUL: *out = l * r; return true;
    case OP_DIV: if (!r) return false; *out = l / r; return true;
    case OP_MOD: if (!r) return false; *out = l % r; return true;
    default: return false;
    }
  default:
    return false;
  }
}

/* Learns or checks an axis's extent from a tensor dimension it subscripts. */
static void unify(Sema *s, Axis *a, const Axis *dim, Span at) {
  if (!extent_known(dim->extent))
    return;
  if (!extent_known(a->extent)) {
    set_extent(a, dim->extent, at);
    a->extent_expr = dim->extent_expr;
    return;
  }
  if (strcmp(a->extent, dim->extent)) {
    Diagnostic *d = diag_error(s->diags, at, "E0402",
                               "axis '%s' has extent %s here but %s before", a->name,
                               dim->extent, a->extent);
    diag_note(s->diags, d, a->extent_span, "'%s' got extent %s here", a->name, a->extent);
  }
}

/* ---- scope of axes ---- */

static Axis *find_axis(Sema *s, const char *name) {
  for (int i = s->nscope - 1; i >= 0; i--)
    if (same_name(s->scope[i]->name, name))
      return s->scope[i];
  return NULL;
}

/* Why an axis has a fixed extent (E0405), for the item that binds it. */
static const char *implicit_extent_hint(const Node *item) {
  if (item->kind == ND_ATTEND)
    return "logit's axes are [G, npages, P]: write 'attend logit[g, p, t]' without extents";
  if (item->stage == ST_UPDATE)
    return "an update binds the axes of its state, which have their extents already";
  if (item->stage == ST_TOKEN)
    return "a token field starts with its page and token axes (npages, P)";
  return "the first axis of a page field is its page (npages)";
}

/* Binds a new axis named by binder b (with an optional extent annotation). */
static Axis *bind(Sema *s, Node *b, const char *implicit_extent) {
  Axis *a = new_axis(s, b->name, NULL, b->span);
  b->axis = a;
  Symbol *sym = lookup(s, b->name);
  Axis *outer = find_axis(s, b->name);
  if (outer) {
    Diagnostic *d = diag_error(s->diags, b->span, "E0409", "axis '%s' is already bound", b->name);
    diag_note(s->diags, d, outer->span, "'%s' is bound here", b->name);
    diag_hint(s->diags, d, "give the inner axis another name");
    /* reads of the name go to the axis in scope; bind nothing new, so that the duplicate is
     * not reported again as unused or uninferable */
    b->axis = outer;
    return outer;
  } else if (sym) {
    Diagnostic *d = diag_error(s->diags, b->span, "E0304", "axis '%s' would hide %s '%s'", b->name,
                               sym->kind == SYM_INTRINSIC ? "the built-in" : "the definition",
                               b->name);
    if (sym->def)
      diag_note(s->diags, d, sym->def->span, "'%s' is defined here", b->name);
  }
  if (implicit_extent)
    set_extent(a, implicit_extent, b->span);
  bool extent_ok = b->lhs && check_extent(s, b->lhs);
  if (b->lhs && !extent_ok && !a->extent)
    a->extent = UNKNOWN_EXTENT; /* reported; not "cannot infer" as well */
  if (extent_ok) {
    const char *text = extent_text(s, b->lhs, true);
    if (a->extent && strcmp(a->extent, text)) {
      Diagnostic *d = diag_error(s->diags, b->lhs->span, "E0405",
                                 "axis '%s' must have extent %s here, not %s", b->name, a->extent,
                                 text);
      diag_hint(s->diags, d, "%s", implicit_extent_hint(s->item));
    } else {
      set_extent(a, text, b->lhs->span);
      a->extent_expr = b->lhs;
    }
  }
  if (s->nscope < MAX_AXES_IN_SCOPE)
    s->scope[s->nscope++] = a;
  else if (!s->too_many_axes) { /* once per statement, not once per extra axis */
    diag_error(s->diags, b->span, "E0410", "too many axes in one statement (limit %d)",
               MAX_AXES_IN_SCOPE);
    s->too_many_axes = true;
  }
  return a;
}

/* Reports an axis whose extent is still unknown once its scope is checked. When the scope
 * had an error (quiet), the axis may have missed its subscript because of it: mark it
 * without a second report. */
static void require_extent(Sema *s, Axis *a, bool quiet) {
  if (a->extent)
    return;
  if (quiet) {
    a->extent = UNKNOWN_EXTENT;
    return;
  }
  Diagnostic *d = diag_error(s->diags, a->span, "E0401", "cannot infer the extent of axis '%s'",
                             a->name);
  diag_hint(s->diags, d, "use it to subscript a tensor, or annotate it: '%s: N'", a->name);
  a->extent = UNKNOWN_EXTENT;
}

/* ---- expressions ---- */

static Type check_expr(Sema *s, Node *n);

/* What a definition is called in messages: "the page field 'kmax'", not "the page 'kmax'". */
static const char *def_noun(const Symbol *sym) {
  static const char *const noun[] = {
      [ST_CONST] = "const", [ST_ROW] = "row state", [ST_PAGE] = "page field",
      [ST_TOKEN] = "token field", [ST_STEP] = "let", [ST_UPDATE] = "update",
  };
  return sym->def->is_score ? "score" : noun[sym->stage];
}

static bool readable(Sema *s, Symbol *sym, Span at) {
  if (sym->kind == SYM_INTRINSIC) {
    const IntrinsicInfo *in = &intrinsics[sym->intrinsic];
    if (in->readable & BIT(s->ctx))
      return true;
    Diagnostic *d = diag_error(s->diags, at, "E0601", "'%s' cannot be read in %s", sym->name,
                               ctx_text[s->ctx]);
    diag_hint(s->diags, d, "%s", in->where);
    return false;
  }
  if (sym->kind == SYM_PARAM)
    return s->ctx != CX_PARAM || (diag_error(s->diags, at, "E0803",
                                             "a param default must be a number literal"),
                                  false);
  /* definitions: what each stage may see */
  Stage st = sym->stage;
  const char *why = NULL;
  switch (s->ctx) {
  case CX_PARAM:
  case CX_KEEP:
  case CX_REQUIRE:
    why = "only params, literals, D, G and P are known here";
    break;
  case CX_CONST:
    if (st != ST_CONST)
      why = "a const is made when the policy is loaded, before any key exists";
    break;
  case CX_ROW:
    if (st == ST_PAGE || st == ST_TOKEN)
      why = "row state is computed at the end of prefill, before the fields";
    else if (st == ST_STEP)
      why = "row state is computed at prefill, not in a decode step";
    break;
  case CX_PAGE:
  case CX_TOKEN:
    if (st == ST_STEP)
      why = "fields are computed when tokens are appended, not in a decode step";
    else if (st == ST_ROW && sym->updated)
      why = "this row state changes every step (it has an 'update'); fields are fixed at append";
    else if (st == ST_TOKEN && sym->updated)
      why = "this token field changes every step (it has an 'update'); fields are fixed at append";
    else if (s->ctx == CX_TOKEN && st == ST_PAGE)
      why = "a page field changes while its page fills; a token field cannot depend on it";
    break;
  case CX_SELECT:
    if (st != ST_STEP && st != ST_CONST)
      why = "a selection reads scores: let or score tensors, params and literals";
    break;
  default:
    break;
  }
  if (!why)
    return true;
  Diagnostic *d = diag_error(s->diags, at, "E0602", "the %s '%s' cannot be read in %s",
                             def_noun(sym), sym->name, ctx_text[s->ctx]);
  diag_note(s->diags, d, sym->def->span, "'%s' is defined here", sym->name);
  diag_hint(s->diags, d, "%s", why);
  return false;
}

static Symbol *resolve(Sema *s, Node *n) {
  if (s->item && s->item->kind == ND_DEF && s->item->stage != ST_UPDATE &&
      !strcmp(n->name, s->item->name) && !lookup(s, n->name)) {
    diag_error(s->diags, n->span, "E0307", "'%s' is used in its own definition", n->name);
    return NULL;
  }
  Symbol *sym = lookup(s, n->name);
  if (is_lost(sym))
    return NULL;
  if (!sym) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0302", "unknown name '%s'", n->name);
    const char *alt = suggest(s, n->name);
    if (!strcmp(n->name, "true") || !strcmp(n->name, "false"))
      diag_hint(s->diags, d, "there are no boolean literals: drop it, or write a comparison");
    else if (alt)
      diag_hint(s->diags, d, "did you mean '%s'?", alt);
  }
  return sym;
}

/* Subscripts that must index the field's own page (and token): the stage rule that a field
 * is computed from its own page or token only. */
static void check_own_page(Sema *s, Node *n, Symbol *sym) {
  if (s->ctx != CX_PAGE && s->ctx != CX_TOKEN)
    return;
  Node *sub = n->list;
  Axis *own[2] = {s->own_page, s->ctx == CX_TOKEN ? s->own_token : NULL};
  for (int d = 0; d < 2 && d < sym->rank && sub; d++, sub = sub->next) {
    AxisRole role = sym->axes[d]->role;
    if (!own[d] || (d == 0 && role != AX_PAGE) || (d == 1 && role != AX_TOKEN))
      return;
    if (sub->kind == ND_NAME && sub->axis == own[d])
      continue;
    Diagnostic *d2 = diag_error(s->diags, sub->span, "E0603",
                                "%s may only read its own %s: index '%s' with '%s' here",
                                ctx_text[s->ctx], d == 0 ? "page" : "token", sym->name,
                                own[d]->name);
    diag_note(s->diags, d2, own[d]->span, "'%s' is the field's %s axis", own[d]->name,
              d == 0 ? "page" : "token");
    return;
  }
}

/* A subscript. An unknown plain name there is almost always an axis that nothing bound. */
static Type check_subscript(Sema *s, Node *a) {
  if (a->kind != ND_NAME || find_axis(s, a->name) || lookup(s, a->name) ||
      (s->item && s->item->name && !strcmp(s->item->name, a->name)))
    return check_expr(s, a);
  Diagnostic *d = diag_error(s->diags, a->span, "E0302", "unknown name '%s'", a->name);
  const char *alt = suggest(s, a->name);
  if (alt)
    diag_hint(s->diags, d, "did you mean '%s'?", alt);
  else
    diag_hint(s->diags, d, "bind the axis on the left side ('x[..., %s] = ...') or with a "
                           "reduction ('sum[%s] ...')", a->name, a->name);
  a->type = TY_ERROR;
  return TY_ERROR;
}

/* The subscripts of a tensor that cannot be read at all (unknown name, scalar, wrong rank):
 * their axes learn nothing here and are marked unknown, so that the mistake already reported
 * is not reported again as "cannot infer the extent". */
static void check_unusable_subscripts(Sema *s, Node *n) {
  for (Node *a = n->list; a; a = a->next) {
    Axis *ax = a->kind == ND_NAME ? find_axis(s, a->name) : NULL;
    if (!ax) {
      check_subscript(s, a);
      continue;
    }
    a->axis = ax;
    a->type = TY_I32;
    ax->uses++;
    if (!ax->extent)
      ax->extent = UNKNOWN_EXTENT;
  }
}

static Type check_name(Sema *s, Node *n);

static Type check_index(Sema *s, Node *n) {
  if (s->ctx == CX_SELECT) {
    /* select binds no axes: 'top(score[p, t], budget)' would otherwise report p and t as
     * unknown and the selection as reading no score */
    Diagnostic *d = diag_error(s->diags, n->span, "E0713",
                               "a selection names tensors without subscripts");
    diag_hint(s->diags, d, "write '%s', not '%s[...]'", n->name, n->name);
    n->kind = ND_NAME; /* recover as the bare name: its own errors are still reported */
    n->list = NULL;
    check_name(s, n);
    return TY_ERROR;
  }
  if (find_axis(s, n->name)) {
    diag_error(s->diags, n->span, "E0411", "'%s' is an axis, not a tensor; it cannot be subscripted",
               n->name);
    for (Node *a = n->list; a; a = a->next)
      check_expr(s, a);
    return TY_ERROR;
  }
  Symbol *sym = resolve(s, n);
  bool can_read = sym && readable(s, sym, n->span);
  if (sym && (sym->kind == SYM_PARAM || sym->rank == 0)) {
    if (can_read)
      diag_error(s->diags, n->span, "E0404", "'%s' is a scalar; it takes no subscripts", n->name);
    sym = NULL;
  }
  int count = 0;
  for (Node *a = n->list; a; a = a->next)
    count++;
  if (sym && count != sym->rank) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0404", "'%s' has %d ax%s %s but %d subscript%s given",
                               n->name, sym->rank, sym->rank == 1 ? "is" : "es", axes_text(s, sym),
                               count, count == 1 ? " is" : "s are");
    if (sym->def)
      diag_note(s->diags, d, sym->def->span, "'%s' is defined here", n->name);
    sym = NULL;
  }
  if (!sym) {
    check_unusable_subscripts(s, n);
    return TY_ERROR;
  }
  n->sym = sym;
  int dim = 0;
  bool ok = true;
  for (Node *a = n->list; a; a = a->next, dim++) {
    Axis *ax = a->kind == ND_NAME ? find_axis(s, a->name) : NULL;
    if (ax) {
      a->axis = ax;
      a->type = TY_I32;
      ax->uses++;
      unify(s, ax, sym->axes[dim], a->span);
      continue;
    }
    Type t = check_subscript(s, a);
    if (t != TY_ERROR && !is_integer(t)) {
      diag_error(s->diags, a->span, "E0504", "a subscript must be an integer, not %s",
                 ast_type_text(t));
      ok = false;
    }
  }
  /* an unreadable tensor still teaches its subscripts their extents (above), so that the
   * one mistake is not reported again as uninferable axes */
  if (ok && can_read)
    check_own_page(s, n, sym);
  return ok && can_read ? sym->type : TY_ERROR;
}

static Type check_name(Sema *s, Node *n) {
  Axis *ax = find_axis(s, n->name);
  if (ax) {
    n->axis = ax;
    ax->uses++;
    n->vunit = UNIT_NONE;
    return TY_I32;
  }
  Symbol *sym = resolve(s, n);
  if (!sym || !readable(s, sym, n->span))
    return TY_ERROR;
  n->sym = sym;
  if (sym->rank > 0 && s->ctx != CX_SELECT) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0412", "'%s' is a tensor with axes %s; subscript it",
                               n->name, axes_text(s, sym));
    diag_hint(s->diags, d, "for example '%s[...]' with one axis name per dimension", n->name);
    return TY_ERROR;
  }
  n->vunit = sym->unit;
  return sym->type;
}

static Type check_call(Sema *s, Node *n) {
  const FnInfo *fn = NULL;
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++)
    if (same_name(functions[i].name, n->name)) {
      fn = &functions[i];
      break;
    }
  Type args[3] = {TY_ERROR, TY_ERROR, TY_ERROR};
  int count = 0;
  for (Node *a = n->list; a; a = a->next, count++) {
    if (fn && fn->cls == FN_LOAD) {
      /* a file name, checked below: 'load(channels)' is not an unknown name 'channels' */
      a->type = a->kind == ND_STR ? TY_STR : TY_ERROR;
      if (count < 3)
        args[count] = TY_STR;
      continue;
    }
    Type t = check_expr(s, a);
    if (count < 3)
      args[count] = t;
  }
  if (!fn) {
    static const char *const reductions[] = {"sum", "mean", "count", "norm", "bits", "any", "all", "softmax"};
    for (size_t i = 0; i < sizeof reductions / sizeof reductions[0]; i++)
      if (!strcmp(reductions[i], n->name)) {
        Diagnostic *d = diag_error(s->diags, n->span, "E0306",
                                   "'%s' is a reduction; its axes go in brackets", n->name);
        diag_hint(s->diags, d, "write '%s[axis] expression'", n->name);
        return TY_ERROR;
      }
    if (find_axis(s, n->name) || lookup(s, n->name)) {
      diag_error(s->diags, n->span, "E0305", "'%s' is not a function", n->name);
      return TY_ERROR;
    }
    Diagnostic *d = diag_error(s->diags, n->span, "E0305", "unknown function '%s'", n->name);
    const char *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
      int dd = edit_distance(n->name, functions[i].name);
      if (dd < best_d) {
        best_d = dd;
        best = functions[i].name;
      }
    }
    if (best)
      diag_hint(s->diags, d, "did you mean '%s'?", best);
    return TY_ERROR;
  }
  if (count != fn->nargs) {
    diag_error(s->diags, n->span, "E0507", "%s() takes %d argument%s, %d given", fn->name,
               fn->nargs, fn->nargs == 1 ? "" : "s", count);
    return TY_ERROR;
  }
  for (int i = 0; i < count; i++)
    if (args[i] == TY_ERROR)
      return TY_ERROR;
  if ((fn->cls == FN_GAUSSIAN || fn->cls == FN_LOAD) &&
      !(s->ctx == CX_CONST && s->item && s->item->lhs == n)) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0903",
                               "%s() can only be the whole value of a const", fn->name);
    diag_hint(s->diags, d, "define it once: 'const W[...] = %s(...);' and read W", fn->name);
    return TY_ERROR;
  }
  Node *a0 = n->list;
  switch (fn->cls) {
  case FN_FLOAT1:
  case FN_FLOAT2:
  case FN_MINMAX:
  case FN_CLAMP:
  case FN_SAME1: {
    Type t = TY_I32;
    int i = 0;
    for (Node *a = a0; a; a = a->next, i++) {
      if (!is_numeric(args[i])) {
        diag_error(s->diags, a->span, "E0508", "%s() needs a number, not %s", fn->name,
                   ast_type_text(args[i]));
        return TY_ERROR;
      }
      t = i ? promote(t, args[i]) : args[i];
    }
    if (fn->cls == FN_FLOAT1 || fn->cls == FN_FLOAT2)
      return TY_F32;
    n->vunit = a0->vunit;
    if (fn->cls == FN_MINMAX || fn->cls == FN_CLAMP) {
      /* as for '+': one unit, which a unitless argument adopts */
      for (Node *a = a0->next; a; a = a->next) {
        if (n->vunit != UNIT_NONE && a->vunit != UNIT_NONE && a->vunit != n->vunit) {
          diag_error(s->diags, n->span, "E0801", "'%s' mixes %s and %s", fn->name,
                     ast_unit_text(n->vunit), ast_unit_text(a->vunit));
          return TY_ERROR;
        }
        if (n->vunit == UNIT_NONE)
          n->vunit = a->vunit;
      }
    }
    return t;
  }
  case FN_POPCOUNT:
    if (!is_integer(args[0])) {
      diag_error(s->diags, a0->span, "E0502", "popcount() needs an integer, not %s",
                 ast_type_text(args[0]));
      return TY_ERROR;
    }
    return TY_I32;
  case FN_TO_F32:
  case FN_TO_I32:
  case FN_TO_U32:
    if (!is_numeric(args[0]) && args[0] != TY_BOOL) {
      diag_error(s->diags, a0->span, "E0508", "%s() needs a number or a condition", fn->name);
      return TY_ERROR;
    }
    return fn->cls == FN_TO_F32 ? TY_F32 : fn->cls == FN_TO_I32 ? TY_I32 : TY_U32;
  case FN_GAUSSIAN:
    if (args[0] != TY_I32) {
      diag_error(s->diags, a0->span, "E0901", "gaussian() needs an integer seed");
      return TY_ERROR;
    }
    return TY_F32;
  case FN_LOAD:
    if (a0->kind != ND_STR || !a0->str[0]) {
      diag_error(s->diags, a0->span, "E0902", "load() needs a file name in quotes");
      return TY_ERROR;
    }
    /* the file holds raw values of the const's own dtype (the E0903 check above makes
     * s->item that const): u32 and int8 files hold integers */
    return s->item->dtype == DT_U32 ? TY_U32 : s->item->dtype == DT_INT8 ? TY_I32 : TY_F32;
  }
  return TY_ERROR;
}

static Type check_reduce(Sema *s, Node *n) {
  int mark = s->nscope;
  bool bad = false;
  if (n->red == RED_SOFTMAX) {
    /* softmax normalises along one axis already bound outside it; it binds nothing */
    if (n->binders && n->binders->next) {
      int count = 0;
      char names[160] = "";
      for (Node *b = n->binders; b; b = b->next, count++)
        if (strlen(names) + strlen(b->name) + 8 < sizeof names)
          snprintf(names + strlen(names), sizeof names - strlen(names), "%s'%s'", count ? ", " : "", b->name);
      Diagnostic *d = diag_error(s->diags, n->span, "E0416",
                                 "softmax[] normalises along one axis, not %d (%s)", count, names);
      diag_hint(s->diags, d, "normalise along one axis at a time, e.g. 'softmax[t] s[p, t]'; top() and "
                             "where() need no normalised score");
      bad = true;
    }
    for (Node *b = n->binders; b; b = b->next) {
      Axis *a = find_axis(s, b->name);
      if (!a || b->lhs) {
        Diagnostic *d = diag_error(s->diags, b->span, "E0407",
                                   a ? "softmax[] names an axis bound outside it; it takes no extent"
                                     : "softmax[] normalises along an axis bound outside it; '%s' is not bound",
                                   b->name);
        diag_hint(s->diags, d, "e.g. 'score[p] = max[g] softmax[p] s[g, p];'");
        bad = true;
        if (!a) {
          /* bind it as the writer meant, so that the operand does not report it again */
          bind(s, b, NULL);
          continue;
        }
      }
      b->axis = a;
    }
  } else {
    for (Node *b = n->binders; b; b = b->next)
      bind(s, b, NULL);
  }
  Type filter = TY_BOOL;
  if (n->cond) {
    filter = check_expr(s, n->cond);
    if (filter != TY_BOOL && filter != TY_ERROR) {
      diag_error(s->diags, n->cond->span, "E0509", "a reduction filter must be a condition, not %s",
                 ast_type_text(filter));
      filter = TY_ERROR;
    }
  }
  /* an axis the operand reads adds to its uses; the filter's reads do not count */
  int uses_after_filter[MAX_AXES_IN_SCOPE];
  int nb = 0;
  for (Node *b = n->binders; b; b = b->next)
    uses_after_filter[nb++ < MAX_AXES_IN_SCOPE ? nb - 1 : 0] = b->axis->uses;
  Type t = check_expr(s, n->lhs);
  nb = 0;
  bool ok = t != TY_ERROR && filter != TY_ERROR && !bad;
  for (Node *b = n->binders; b; b = b->next, nb++) {
    Axis *a = b->axis;
    bool unused = false; /* reported: not "cannot infer" as well */
    int i = nb < MAX_AXES_IN_SCOPE ? nb : 0;
    if (ok && a->uses == uses_after_filter[i]) {
      Diagnostic *d = diag_error(s->diags, b->span, "E0403",
                                 "%s over '%s', but its operand does not depend on '%s'",
                                 ast_reduction_text(n->red), b->name, b->name);
      diag_hint(s->diags, d, "a reduction's operand is the product that follows it; "
                             "parenthesise a longer operand: %s[%s] (a + b)",
                ast_reduction_text(n->red), b->name);
      ok = false;
      unused = true;
    }
    if (n->red != RED_SOFTMAX)
      require_extent(s, a, t == TY_ERROR || filter == TY_ERROR || unused);
  }
  s->nscope = mark;
  if (!ok)
    return TY_ERROR;
  switch (n->red) {
  case RED_SUM:
  case RED_MAX:
  case RED_MIN:
  case RED_MEAN:
  case RED_NORM:
  case RED_SOFTMAX:
    if (!is_numeric(t)) {
      Diagnostic *d = diag_error(s->diags, n->lhs->span, "E0510", "%s[] needs numbers, not %s",
                                 ast_reduction_text(n->red), ast_type_text(t));
      if (t == TY_BOOL)
        diag_hint(s->diags, d, "count[] counts conditions; any[] and all[] combine them");
      return TY_ERROR;
    }
    if (n->red == RED_SUM || n->red == RED_MAX || n->red == RED_MIN)
      return t;
    return TY_F32;
  case RED_COUNT:
  case RED_BITS:
  case RED_ANY:
  case RED_ALL:
    if (t != TY_BOOL) {
      Diagnostic *d = diag_error(s->diags, n->lhs->span, "E0511", "%s[] needs a condition, not %s",
                                 ast_reduction_text(n->red), ast_type_text(t));
      diag_hint(s->diags, d, "a reduction's operand stops before comparisons: write %s[...] (x > 0)",
                ast_reduction_text(n->red));
      return TY_ERROR;
    }
    if (n->red == RED_BITS)
      for (Node *b = n->binders; b; b = b->next) {
        long long width;
        /* the extent may be written here or learned from a subscript ('W[c, l, b]') */
        if (b->axis->extent_expr && eval_extent(b->axis->extent_expr, &width) && width > 32) {
          diag_error(s->diags, b->span, "E0506", "bits[] packs at most 32 bits; '%s' has %lld",
                     b->name, width);
          return TY_ERROR;
        }
      }
    return n->red == RED_COUNT ? TY_I32 : n->red == RED_BITS ? TY_U32 : TY_BOOL;
  }
  return TY_ERROR;
}

static Type check_binary(Sema *s, Node *n) {
  Type l = check_expr(s, n->lhs);
  Type r = check_expr(s, n->rhs);
  if (l == TY_ERROR || r == TY_ERROR)
    return TY_ERROR;
  const char *op = ast_op_text(n->op);
  switch (n->op) {
  case OP_ADD:
  case OP_SUB:
  case OP_MUL:
  case OP_DIV:
  case OP_MOD:
    if (!is_numeric(l) || !is_numeric(r)) {
      Diagnostic *d = diag_error(s->diags, n->span, "E0501", "'%s' needs numbers, not %s and %s", op,
                                 ast_type_text(l), ast_type_text(r));
      if (l == TY_BOOL || r == TY_BOOL)
        diag_hint(s->diags, d, "turn a condition into a number with 'c ? 1.0 : 0.0'");
      return TY_ERROR;
    }
    if (n->op == OP_ADD || n->op == OP_SUB) {
      Unit a = n->lhs->vunit, b = n->rhs->vunit;
      if (a != UNIT_NONE && b != UNIT_NONE && a != b) {
        diag_error(s->diags, n->span, "E0801", "'%s' mixes %s and %s", op, ast_unit_text(a),
                   ast_unit_text(b));
        return TY_ERROR;
      }
      n->vunit = a != UNIT_NONE ? a : b;
    } else if (n->op == OP_MUL || n->op == OP_DIV) {
      n->vunit = n->lhs->vunit != UNIT_NONE ? n->lhs->vunit : n->rhs->vunit;
    }
    if (n->op == OP_MOD && (l == TY_F32 || r == TY_F32)) {
      diag_error(s->diags, n->span, "E0502", "'%%' needs integers");
      return TY_ERROR;
    }
    return promote(l, r);
  case OP_LT:
  case OP_LE:
  case OP_GT:
  case OP_GE:
    if (!is_numeric(l) || !is_numeric(r)) {
      diag_error(s->diags, n->span, "E0501", "'%s' compares numbers, not %s and %s", op,
                 ast_type_text(l), ast_type_text(r));
      return TY_ERROR;
    }
    return TY_BOOL;
  case OP_EQ:
  case OP_NE:
    if ((l == TY_BOOL) != (r == TY_BOOL)) {
      diag_error(s->diags, n->span, "E0501", "'%s' compares %s with %s", op, ast_type_text(l),
                 ast_type_text(r));
      return TY_ERROR;
    }
    return TY_BOOL;
  case OP_AND:
  case OP_OR:
    if (l != TY_BOOL || r != TY_BOOL) {
      diag_error(s->diags, n->span, "E0512", "'%s' needs conditions, not %s and %s", op,
                 ast_type_text(l), ast_type_text(r));
      return TY_ERROR;
    }
    return TY_BOOL;
  default: /* bit operations */
    if (!is_integer(l) || !is_integer(r)) {
      Diagnostic *d = diag_error(s->diags, n->span, "E0502", "bit operation '%s' needs integers, not %s and %s",
                                 op, ast_type_text(l), ast_type_text(r));
      if (l == TY_BOOL || r == TY_BOOL)
        diag_hint(s->diags, d, "for conditions use '%s'", n->op == OP_BITAND ? "&&" : "||");
      return TY_ERROR;
    }
    return promote(l, r);
  }
}

static Type check_expr_inner(Sema *s, Node *n) {
  switch (n->kind) {
  case ND_NUM:
    /* integers compute in 32 bits; a u32 mask such as 0xffffffff is the largest literal */
    if (n->is_int && n->num > UINT32_MAX) {
      diag_error(s->diags, n->span, "E0518", "integer literal %s does not fit in 32 bits", n->str);
      return TY_ERROR;
    }
    return n->is_int ? TY_I32 : TY_F32;
  case ND_STR:
    diag_error(s->diags, n->span, "E0505", "a string can only name a file in load(\"...\")");
    return TY_ERROR;
  case ND_NAME:
    return check_name(s, n);
  case ND_INDEX:
    return check_index(s, n);
  case ND_CALL:
    return check_call(s, n);
  case ND_REDUCE:
    return check_reduce(s, n);
  case ND_BINARY:
    return check_binary(s, n);
  case ND_UNARY: {
    Type t = check_expr(s, n->lhs);
    if (t == TY_ERROR)
      return t;
    if (n->op == OP_NOT && t != TY_BOOL) {
      diag_error(s->diags, n->span, "E0512", "'!' needs a condition, not %s", ast_type_text(t));
      return TY_ERROR;
    }
    if (n->op == OP_NEG && !is_numeric(t)) {
      diag_error(s->diags, n->span, "E0501", "'-' needs a number, not %s", ast_type_text(t));
      return TY_ERROR;
    }
    if (n->op == OP_BITNOT && !is_integer(t)) {
      diag_error(s->diags, n->span, "E0502", "'~' needs an integer, not %s", ast_type_text(t));
      return TY_ERROR;
    }
    n->vunit = n->lhs->vunit;
    return t;
  }
  case ND_COND: {
    Type c = check_expr(s, n->cond);
    Type a = check_expr(s, n->lhs);
    Type b = check_expr(s, n->rhs);
    if (c == TY_ERROR || a == TY_ERROR || b == TY_ERROR)
      return TY_ERROR;
    if (c != TY_BOOL) {
      diag_error(s->diags, n->cond->span, "E0513", "'?' needs a condition, not %s", ast_type_text(c));
      return TY_ERROR;
    }
    if (a == TY_BOOL && b == TY_BOOL)
      return TY_BOOL;
    if (!is_numeric(a) || !is_numeric(b)) {
      diag_error(s->diags, n->span, "E0513", "the branches of '?' are %s and %s", ast_type_text(a),
                 ast_type_text(b));
      return TY_ERROR;
    }
    return promote(a, b);
  }
  default:
    return TY_ERROR;
  }
}

static Type check_expr(Sema *s, Node *n) {
  n->type = check_expr_inner(s, n);
  return n->type;
}

/* ---- items ---- */

static Symbol *define(Sema *s, Node *n, SymKind kind, const char *what) {
  Symbol *old = lookup(s, n->name);
  if (is_lost(old)) { /* a definition after a lost one of the same name: this one counts */
    memset(old, 0, sizeof *old);
    old->name = n->name;
    old->kind = kind;
    old->def = n;
    n->sym = old;
    return old;
  }
  if (old) {
    Diagnostic *d;
    if (old->kind == SYM_INTRINSIC) {
      d = diag_error(s->diags, n->name_span, "E0303", "'%s' is a built-in name", n->name);
      diag_hint(s->diags, d, "choose another name for this %s", what);
    } else {
      d = diag_error(s->diags, n->name_span, "E0301", "'%s' is defined twice", n->name);
      diag_note(s->diags, d, old->def->span, "first defined here");
    }
    return NULL;
  }
  Symbol *sym = arena_alloc(s->arena, sizeof *sym);
  sym->name = n->name;
  sym->kind = kind;
  sym->def = n;
  insert(s, sym);
  n->sym = sym;
  return sym;
}

static void check_param(Sema *s, Node *n) {
  Node *v = n->lhs;
  const Node *lit = v->kind == ND_UNARY && v->op == OP_NEG ? v->lhs : v;
  Type t = TY_ERROR;
  if (lit->kind != ND_NUM) {
    Diagnostic *d = diag_error(s->diags, v->span, "E0803", "a param default must be a number literal");
    diag_hint(s->diags, d, "params are overridden when the policy is loaded; compute derived "
                           "values where they are used");
  } else {
    t = lit->is_int ? TY_I32 : TY_F32;
    v->type = t;
    if (lit->is_int && lit->num > (v == lit ? INT32_MAX : -(double)INT32_MIN)) {
      /* an integer param is an i32 kernel argument */
      diag_error(s->diags, v->span, "E0518", "param '%s' = %s%s does not fit in a 32-bit integer",
                 n->name, v == lit ? "" : "-", lit->str);
      t = TY_ERROR;
    } else if (n->unit != UNIT_NONE && (!lit->is_int || v != lit)) {
      diag_error(s->diags, v->span, "E0805", "a count of %s must be a non-negative integer",
                 ast_unit_text(n->unit));
      t = TY_ERROR;
    }
  }
  Symbol *sym = define(s, n, SYM_PARAM, "param");
  if (sym) {
    sym->type = t;
    sym->unit = n->unit;
  }
}

/* A count with a unit: a keep range's length or top()'s budget. */
static void check_count(Sema *s, Node *count, Unit written, Span unit_at, const char *what) {
  Type t = check_expr(s, count);
  if (t == TY_ERROR)
    return;
  if (!is_integer(t)) {
    diag_error(s->diags, count->span, "E0806", "%s must be an integer count, not %s", what,
               ast_type_text(t));
    return;
  }
  if (written != UNIT_NONE && count->vunit != UNIT_NONE && written != count->vunit) {
    Diagnostic *d = diag_error(s->diags, unit_at, "E0801", "%s is in %s, not %s", what,
                               ast_unit_text(count->vunit), ast_unit_text(written));
    diag_hint(s->diags, d, "drop the unit here: the param already has one");
    return;
  }
  if (written == UNIT_NONE && count->vunit == UNIT_NONE) {
    Diagnostic *d = diag_error(s->diags, count->span, "E0802", "%s needs a unit", what);
    diag_hint(s->diags, d, "write 'tokens' or 'pages' after it, or give the param a unit");
  }
}

static void check_keep(Sema *s, Node *n) {
  if (s->keep) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0804", "a second 'keep'");
    diag_note(s->diags, d, s->keep->span, "the first is here");
    diag_hint(s->diags, d, "list all ranges in one: 'keep first 1 page, last 1 page;'");
    return;
  }
  s->keep = n;
  s->ctx = CX_KEEP;
  bool generated = false;
  for (Node *r = n->list; r; r = r->next) {
    if (r->keep == KEEP_GENERATED) {
      if (generated)
        diag_error(s->diags, r->span, "E0804", "'generated' is listed twice");
      generated = true;
      continue;
    }
    check_count(s, r->lhs, r->unit, r->span, r->keep == KEEP_FIRST ? "a 'first' range" : "a 'last' range");
    if (r->unit == UNIT_NONE)
      r->unit = r->lhs->vunit;
  }
  s->keeps_tokens = true;
}

static void check_require(Sema *s, Node *n) {
  s->ctx = CX_REQUIRE;
  Type t = check_expr(s, n->lhs);
  if (t != TY_ERROR && t != TY_BOOL)
    diag_error(s->diags, n->lhs->span, "E0514", "require needs a condition, not %s", ast_type_text(t));
}

static bool resolve_dtype(Sema *s, Node *n) {
  n->dtype = DT_F32;
  if (!n->dtype_name)
    return true;
  for (int d = 0; d < DT_COUNT; d++)
    if (!strcmp(n->dtype_name->name, ast_dtype_text((DType)d))) {
      n->dtype = (DType)d;
      if (n->stage == ST_STEP) {
        Diagnostic *g = diag_error(s->diags, n->dtype_name->span, "E0515",
                                   "a let or score is not stored; it takes no dtype");
        diag_hint(s->diags, g, "store narrow values in a page or token field");
        return false;
      }
      return true;
    }
  Diagnostic *d = diag_error(s->diags, n->dtype_name->span, "E0516", "unknown dtype '%s'",
                             n->dtype_name->name);
  diag_hint(s->diags, d, "storage dtypes are f32, f16, bf16, fp8, int8 and u32");
  return false;
}

/* Whether a value of type t may be stored as dtype. */
static void check_store(Sema *s, Node *def, Type t, DType dtype) {
  if (t == TY_ERROR)
    return;
  if (t == TY_BOOL) {
    Diagnostic *d = diag_error(s->diags, def->lhs->span, "E0503",
                               "'%s' would store a condition", def->name);
    diag_hint(s->diags, d, "store a number ('c ? 1 : 0') or pack bits with bits[b] (...) into u32");
    return;
  }
  if (dtype == DT_U32 && t == TY_F32) {
    Diagnostic *d = diag_error(s->diags, def->lhs->span, "E0503",
                               "'%s' stores u32 but its value is f32", def->name);
    diag_hint(s->diags, d, "convert explicitly with u32(...) or use a float dtype");
  }
}

/* How a definition's left-side axes start: page fields with their page, token fields with
 * their page and token. */
static const char *implicit_extent(Stage st, int i) {
  if (st == ST_PAGE && i == 0)
    return "npages";
  if (st == ST_TOKEN && i == 0)
    return "npages";
  if (st == ST_TOKEN && i == 1)
    return "P";
  return NULL;
}

static Ctx stage_ctx(Stage st) {
  static const Ctx ctx[] = {CX_CONST, CX_ROW, CX_PAGE, CX_TOKEN, CX_STEP, CX_UPDATE};
  return ctx[st];
}

static bool is_update_target(Sema *s, const char *name) {
  for (Node *u = s->update_targets; u; u = u->cond)
    if (!strcmp(u->name, name))
      return true;
  return false;
}

static void check_const_value(Sema *s, Node *n, int rank) {
  Node *v = n->lhs;
  bool generator = v->kind == ND_CALL && (!strcmp(v->name, "gaussian") || !strcmp(v->name, "load"));
  if (!generator)
    return;
  if (rank == 0) {
    diag_error(s->diags, n->span, "E0904", "'%s' needs axes with extents to hold %s()", n->name,
               v->name);
    return;
  }
  for (Node *b = n->binders; b; b = b->next)
    if (!b->lhs) {
      Diagnostic *d = diag_error(s->diags, b->span, "E0904",
                                 "axis '%s' of a %s() const needs an extent", b->name, v->name);
      diag_hint(s->diags, d, "write '%s: D' or '%s: N'", b->name, b->name);
      b->axis->extent = UNKNOWN_EXTENT;
    }
}

static void check_update(Sema *s, Node *n) {
  Symbol *target = lookup(s, n->name);
  if (is_lost(target))
    return;
  if (!target || target->kind != SYM_DEF || (target->stage != ST_ROW && target->stage != ST_TOKEN)) {
    Diagnostic *d = diag_error(s->diags, n->name_span, "E0604",
                               target ? "'%s' is not a row state or token field; only those can be updated"
                                      : "update of unknown state '%s'",
                               n->name);
    if (!target)
      diag_hint(s->diags, d, "declare it first: 'token %s[p, t] = 0;' or 'row %s = 0;'", n->name, n->name);
    else if (target->kind == SYM_DEF && target->stage == ST_PAGE)
      diag_hint(s->diags, d, "'%s' is a page field, computed from its page's keys; to update it every "
                "step, make it a token field: 'token %s[p, t] = 0;'", n->name, n->name);
    else
      diag_hint(s->diags, d, "'%s' is %s; an update changes only state declared as 'row %s = ...;' "
                "or 'token %s[p, t] = ...;'", n->name,
                target->kind == SYM_INTRINSIC ? "built in" : target->kind == SYM_PARAM ? "a param"
                : target->def->is_score ? "the score" : target->stage == ST_STEP ? "a let" : "a const",
                n->name, n->name);
    return;
  }
  int count = 0;
  for (Node *b = n->binders; b; b = b->next)
    count++;
  if (count != target->rank) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0404", "'%s' has %d axes %s but the update binds %d",
                               n->name, target->rank, axes_text(s, target), count);
    diag_note(s->diags, d, target->def->span, "'%s' is defined here", n->name);
    return;
  }
  s->ctx = CX_UPDATE;
  int i = 0;
  for (Node *b = n->binders; b; b = b->next, i++)
    bind(s, b, target->axes[i]->extent);
  Type t = check_expr(s, n->lhs);
  n->sym = target;
  n->dtype = target->def->dtype;
  check_store(s, n, t, n->dtype);
}

static void check_def(Sema *s, Node *n) {
  if (n->stage == ST_UPDATE) {
    check_update(s, n);
    return;
  }
  int errors_before = s->diags->nerrors;
  resolve_dtype(s, n);
  s->ctx = stage_ctx(n->stage);
  int rank = 0;
  for (Node *b = n->binders; b; b = b->next, rank++) {
    bind(s, b, implicit_extent(n->stage, rank));
    if (rank == MAX_TENSOR_RANK) /* the artifact and the kernels address at most this many */
      diag_error(s->diags, b->span, "E0414", "'%s' has more than %d axes", n->name, MAX_TENSOR_RANK);
  }
  if (n->stage == ST_PAGE && rank < 1) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0413", "page field '%s' needs its page axis", n->name);
    diag_hint(s->diags, d, "write 'page %s[p, ...] = ...;'", n->name);
  } else if (n->stage == ST_TOKEN && rank < 2) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0413",
                               "token field '%s' needs its page and token axes", n->name);
    diag_hint(s->diags, d, "write 'token %s[p, t, ...] = ...;'", n->name);
  }
  s->own_page = (n->stage == ST_PAGE || n->stage == ST_TOKEN) && n->binders ? n->binders->axis : NULL;
  s->own_token = n->stage == ST_TOKEN && n->binders && n->binders->next ? n->binders->next->axis : NULL;
  if (n->stage == ST_CONST)
    check_const_value(s, n, rank);
  Type t = check_expr(s, n->lhs);
  Axis **axes = arena_alloc(s->arena, sizeof(Axis *) * (size_t)(rank ? rank : 1));
  int i = 0;
  for (Node *b = n->binders; b; b = b->next, i++) {
    require_extent(s, b->axis, t == TY_ERROR);
    axes[i] = b->axis;
    if (n->stage == ST_ROW && b->axis->role == AX_PAGE) {
      /* a row is computed once at prefill: pages that decode adds would have no value */
      Diagnostic *d = diag_error(s->diags, b->span, "E0415", "row state '%s' cannot have a page axis", n->name);
      diag_hint(s->diags, d, "state per page or token goes in a token field, e.g. 'token %s[p, t] = ...;', "
                "which an update may change; a page field is a summary of its keys that no update changes",
                n->name);
    }
  }
  bool loaded = n->stage == ST_CONST && n->lhs->kind == ND_CALL && !strcmp(n->lhs->name, "load");
  if (loaded && t != TY_ERROR)
    t = n->dtype == DT_U32 ? TY_U32 : n->dtype == DT_INT8 ? TY_I32 : TY_F32; /* the file holds the dtype */
  else if (n->stage != ST_STEP)
    check_store(s, n, t, n->dtype);
  if (n->is_score && s->score) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0701", "a second 'score'");
    diag_note(s->diags, d, s->score->span, "the first is here");
    diag_hint(s->diags, d, "name intermediate tensors with 'let'");
    return;
  }
  Symbol *sym = define(s, n, SYM_DEF, ast_stage_text(n->stage));
  if (!sym)
    return;
  sym->stage = n->stage;
  /* a definition with an error reads as TY_ERROR, so its uses stay silent */
  sym->type = t == TY_ERROR ? TY_ERROR : n->stage == ST_STEP ? t
              : n->dtype == DT_U32 ? TY_U32 : n->dtype == DT_INT8 && t != TY_F32 ? TY_I32 : TY_F32;
  sym->unit = n->lhs->vunit;
  sym->rank = rank;
  sym->axes = axes;
  sym->updated = (n->stage == ST_ROW || n->stage == ST_TOKEN) && is_update_target(s, n->name);
  sym->broken = s->diags->nerrors > errors_before;
  if (n->is_score)
    s->score = n;
}

/* The role pattern a selection needs: [head?, page, token?]. */
static bool score_shape(Symbol *sym, bool *per_head, bool *tokens) {
  int i = 0;
  *per_head = i < sym->rank && sym->axes[i]->role == AX_HEAD;
  if (*per_head)
    i++;
  if (i >= sym->rank || sym->axes[i]->role != AX_PAGE)
    return false;
  i++;
  *tokens = i < sym->rank && sym->axes[i]->role == AX_TOKEN;
  if (*tokens)
    i++;
  return i == sym->rank;
}

/* A let or score: in a selection, one without axes is a misshapen score, not a number. */
static bool is_step_value(const Symbol *sym) { return sym->kind == SYM_DEF && sym->stage == ST_STEP; }

/* Collects the tensors a selection expression reads and checks they share one score shape. */
static bool check_selection_tensors(Sema *s, Node *e, Symbol **shape_of) {
  bool ok = true;
  if (e->kind == ND_NAME && e->sym && (e->sym->rank > 0 || is_step_value(e->sym))) {
    Symbol *sym = e->sym;
    bool head, tokens;
    if (sym->broken)
      return false; /* its definition had an error, already reported */
    if (!score_shape(sym, &head, &tokens)) {
      Diagnostic *d = diag_error(s->diags, e->span, "E0705",
                                 "'%s' has axes %s and cannot feed a selection", sym->name,
                                 axes_text(s, sym));
      diag_note(s->diags, d, sym->def->span, "'%s' is defined here", sym->name);
      diag_hint(s->diags, d, "a score has axes [page], [page, token], or either with the head "
                             "axis first; reduce the others (e.g. max[g] or sum[c])");
      return false;
    }
    if (*shape_of && (*shape_of)->rank != sym->rank) {
      diag_error(s->diags, e->span, "E0709", "'%s' has axes %s but '%s' has %s", sym->name,
                 axes_text(s, sym), (*shape_of)->name, axes_text(s, *shape_of));
      return false;
    }
    if (!*shape_of)
      *shape_of = sym;
    return true;
  }
  if (e->lhs)
    ok &= check_selection_tensors(s, e->lhs, shape_of);
  if (e->rhs)
    ok &= check_selection_tensors(s, e->rhs, shape_of);
  if (e->cond)
    ok &= check_selection_tensors(s, e->cond, shape_of);
  for (Node *a = e->kind == ND_CALL ? e->list : NULL; a; a = a->next)
    ok &= check_selection_tensors(s, a, shape_of);
  return ok;
}

static void check_select(Sema *s, Node *n) {
  if (s->select) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0703", "a second 'select'");
    diag_note(s->diags, d, s->select->span, "the first is here");
    diag_hint(s->diags, d, "join selections with ',' in one select: their union is attended");
    return;
  }
  s->select = n;
  s->ctx = CX_SELECT;
  for (Node *sel = n->list; sel; sel = sel->next) {
    if (sel->kind == ND_ALL)
      continue;
    Type t = check_expr(s, sel->lhs);
    /* the budget is independent of the ranked tensor: check it whatever that is */
    if (sel->kind == ND_TOP)
      check_count(s, sel->rhs, sel->unit, sel->rhs->span, "the budget of top()");
    if (t == TY_ERROR)
      continue;
    if (sel->kind == ND_TOP) {
      if (sel->lhs->kind != ND_NAME || !sel->lhs->sym ||
          (sel->lhs->sym->rank == 0 && !is_step_value(sel->lhs->sym))) {
        Diagnostic *d = diag_error(s->diags, sel->lhs->span, "E0704",
                                   "top() ranks a score tensor named by itself");
        diag_hint(s->diags, d, "define it first: 'let s[p] = ...;' then 'top(s, budget)'");
        continue;
      }
      if (!is_numeric(t)) {
        diag_error(s->diags, sel->lhs->span, "E0706", "top() ranks numbers; '%s' is %s",
                   sel->lhs->name, ast_type_text(t));
        continue;
      }
    } else if (t != TY_BOOL) {
      Diagnostic *d = diag_error(s->diags, sel->lhs->span, "E0707", "where() needs a condition, not %s",
                                 ast_type_text(t));
      diag_hint(s->diags, d, "e.g. 'where(score >= 2)'");
      continue;
    }
    Symbol *shape = NULL;
    if (!check_selection_tensors(s, sel->lhs, &shape))
      continue;
    if (!shape) {
      diag_error(s->diags, sel->lhs->span, "E0708", "this selection reads no score tensor");
      continue;
    }
    bool head, tokens;
    score_shape(shape, &head, &tokens);
    if (head && !n->per_head) {
      Diagnostic *d = diag_error(s->diags, sel->lhs->span, "E0710",
                                 "'%s' keeps the head axis '%s', so the selection is per head",
                                 shape->name, shape->axes[0]->name);
      diag_hint(s->diags, d, "write 'select per head ...', or reduce over the head axis "
                             "(mean[g] or max[g]) for one selection shared by the group");
    } else if (!head && n->per_head) {
      Diagnostic *d = diag_error(s->diags, sel->lhs->span, "E0711",
                                 "'select per head' but '%s' has no head axis", shape->name);
      diag_hint(s->diags, d, "keep the head axis in the score ('score[g, p] = ...') or drop 'per head'");
    }
  }
}

static void check_attend(Sema *s, Node *n) {
  s->ctx = CX_ATTEND;
  if (strcmp(n->name, "logit")) {
    Diagnostic *d = diag_error(s->diags, n->name_span, "E0712", "attend modifies 'logit', not '%s'", n->name);
    diag_hint(s->diags, d, "write 'attend logit[g, p, t] -= ...;'");
    return;
  }
  static const char *const extents[] = {"G", "npages", "P"};
  int count = 0;
  for (Node *b = n->binders; b; b = b->next)
    count++;
  if (count != 3) {
    Diagnostic *d = diag_error(s->diags, n->span, "E0404",
                               "'logit' has 3 axes [G, npages, P] but the modifier binds %d", count);
    diag_hint(s->diags, d, "write 'attend logit[g, p, t] ...'");
    return;
  }
  int i = 0;
  for (Node *b = n->binders; b; b = b->next, i++)
    bind(s, b, extents[i]);
  Type t = check_expr(s, n->lhs);
  if (t != TY_ERROR && !is_numeric(t))
    diag_error(s->diags, n->lhs->span, "E0517", "an attend modifier needs a number, not %s",
               ast_type_text(t));
}

/* An item that failed to parse: the names it defined become known, with nothing known of
 * them (unless something before defined them already). */
static void check_lost(Sema *s, Node *n) {
  s->lost = true;
  for (Node *m = n->list; m; m = m->next)
    if (!lookup(s, m->name)) {
      Symbol *sym = arena_alloc(s->arena, sizeof *sym);
      sym->name = m->name;
      sym->kind = SYM_DEF;
      sym->def = n;
      sym->broken = true;
      insert(s, sym);
    }
}

static void collect_update_targets(Sema *s, Node *policy) {
  for (Node *n = policy->list; n; n = n->next)
    if (n->kind == ND_DEF && n->stage == ST_UPDATE) {
      n->cond = s->update_targets; /* chain through an unused field */
      s->update_targets = n;
    }
}

bool sema_check(Arena *arena, Node *policy, Diags *diags) {
  Sema s = {0};
  s.arena = arena;
  s.diags = diags;
  int before = diags->nerrors;
  add_intrinsics(&s);
  collect_update_targets(&s, policy);
  for (Node *n = policy->list; n; n = n->next) {
    s.item = n;
    s.nscope = 0;
    s.too_many_axes = false;
    s.own_page = s.own_token = NULL;
    switch (n->kind) {
    case ND_PARAM:
      s.ctx = CX_PARAM;
      check_param(&s, n);
      break;
    case ND_KEEP:
      check_keep(&s, n);
      break;
    case ND_REQUIRE:
      check_require(&s, n);
      break;
    case ND_DEF:
      check_def(&s, n);
      break;
    case ND_SELECT:
      check_select(&s, n);
      break;
    case ND_ATTEND:
      check_attend(&s, n);
      break;
    case ND_LOST:
      check_lost(&s, n);
      break;
    default:
      break;
    }
  }
  Node *u = s.update_targets;
  while (u) {
    Node *next = u->cond;
    u->cond = NULL;
    u = next;
  }
  if (!s.select && !s.keeps_tokens && !s.lost) {
    Span at = policy->span;
    Diagnostic *d = diag_error(diags, at, "E0702", "policy '%s' selects nothing", policy->name);
    diag_hint(diags, d, "add 'select all;' for dense attention, 'keep ...' ranges, or 'select top(score, budget);'");
  }
  return diags->nerrors == before;
}
