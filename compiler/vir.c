/* vir.c - VIR construction helpers and the printer (vxc --emit=ir). Domains are computed
 * here, from the operation and its operands, so no builder can get them wrong; identical
 * values in one block are shared (common subexpressions are computed once). */
#include "vir.h"

#include <stdint.h>
#include <string.h>


VirModule *vir_module_new(Arena *arena, const char *name) {
  VirModule *m = arena_alloc(arena, sizeof *m);
  m->arena = arena;
  m->name = name;
  m->next_value_id = 1;
  return m;
}

VirTensor *vir_tensor_new(VirModule *m, const char *name, VirTensorKind kind, int rank) {
  if (m->ntensors == m->cap_tensors) {
    int cap = m->cap_tensors ? 2 * m->cap_tensors : 16;
    VirTensor **t = arena_alloc(m->arena, sizeof *t * (size_t)cap);
    if (m->ntensors)
      memcpy(t, m->tensors, sizeof *t * (size_t)m->ntensors);
    m->tensors = t;
    m->cap_tensors = cap;
  }
  VirTensor *t = arena_alloc(m->arena, sizeof *t);
  t->id = m->ntensors;
  t->name = name;
  t->kind = kind;
  t->rank = rank;
  t->extents = arena_alloc(m->arena, sizeof(char *) * (size_t)(rank ? rank : 1));
  t->exts = arena_alloc(m->arena, sizeof(VirExtent *) * (size_t)(rank ? rank : 1));
  m->tensors[m->ntensors++] = t;
  return t;
}

VirKernel *vir_kernel_get(VirModule *m, VirKernelKind kind) {
  VirKernel **link = &m->kernels;
  for (; *link; link = &(*link)->next) {
    if ((*link)->kind == kind)
      return *link;
    if ((*link)->kind > kind)
      break;
  }
  VirKernel *k = arena_alloc(m->arena, sizeof *k);
  k->kind = kind;
  k->next = *link;
  *link = k;
  return k;
}

VirAxis *vir_axis_new(VirModule *m, const char *name, const char *extent, AxisRole role) {
  VirAxis *a = arena_alloc(m->arena, sizeof *a);
  a->id = m->next_axis_id++;
  a->name = name;
  a->extent = extent;
  a->ext = extent ? vir_extent_parse(m->arena, extent) : NULL;
  a->role = role;
  return a;
}

void vir_tensor_set_extent(VirModule *m, VirTensor *t, int dim, const char *extent) {
  t->extents[dim] = extent;
  t->exts[dim] = vir_extent_parse(m->arena, extent);
}

bool vir_dom_has(VirAxis *const *dom, int n, const VirAxis *a) {
  for (int i = 0; i < n; i++)
    if (dom[i] == a)
      return true;
  return false;
}

/* Union of the operands' domains, sorted by axis id, less the axes a reduction removes. */
static void compute_domain(VirModule *m, VirValue *v) {
  VirAxis *tmp[256];
  int n = 0;
  if (v->op == VI_AXIS)
    tmp[n++] = v->axis;
  for (int i = 0; i < v->nargs; i++)
    for (int j = 0; j < v->args[i]->ndom; j++) {
      VirAxis *a = v->args[i]->dom[j];
      bool removed = v->op == VI_REDUCE && v->red != RED_SOFTMAX && vir_dom_has(v->axes, v->naxes, a);
      if (!removed && !vir_dom_has(tmp, n, a) && n < 256)
        tmp[n++] = a;
    }
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && tmp[j - 1]->id > tmp[j]->id; j--) {
      VirAxis *t = tmp[j];
      tmp[j] = tmp[j - 1];
      tmp[j - 1] = t;
    }
  v->ndom = n;
  v->dom = arena_alloc(m->arena, sizeof(VirAxis *) * (size_t)(n ? n : 1));
  memcpy(v->dom, tmp, sizeof(VirAxis *) * (size_t)n);
}

static bool same_value(const VirValue *a, const VirValue *b) {
  if (a->op != b->op || a->type != b->type || a->nargs != b->nargs || a->num != b->num ||
      a->is_int != b->is_int || a->param != b->param || a->opcode != b->opcode ||
      a->red != b->red || a->naxes != b->naxes || a->axis != b->axis || a->tensor != b->tensor)
    return false;
  if ((a->name == NULL) != (b->name == NULL) || (a->name && strcmp(a->name, b->name)))
    return false;
  for (int i = 0; i < a->nargs; i++)
    if (a->args[i] != b->args[i])
      return false;
  for (int i = 0; i < a->naxes; i++)
    if (a->axes[i] != b->axes[i])
      return false;
  return true;
}

static uint64_t mix(uint64_t h, uint64_t x) { return (h ^ x) * 0x100000001b3ull; }

/* A hash of everything same_value compares, plus the block. */
static uint64_t value_hash(const VirValue *v, const VirBlock *b) {
  uint64_t h = mix(0xcbf29ce484222325ull, (uintptr_t)b);
  h = mix(h, (uint64_t)v->op * 131 + (uint64_t)v->type * 17 + (uint64_t)v->opcode * 7 + (uint64_t)v->red);
  uint64_t bits;
  memcpy(&bits, &v->num, sizeof bits);
  h = mix(h, bits);
  h = mix(h, (uintptr_t)v->param ^ (uintptr_t)v->axis ^ (uintptr_t)v->tensor);
  for (const char *s = v->name; s && *s; s++)
    h = mix(h, (unsigned char)*s);
  for (int i = 0; i < v->nargs; i++)
    h = mix(h, (uintptr_t)v->args[i]);
  for (int i = 0; i < v->naxes; i++)
    h = mix(h, (uintptr_t)v->axes[i]);
  return h;
}

static void cse_insert(VirModule *m, VirValue *v) {
  if (2 * (m->cse_count + 1) > m->cse_cap) {
    int cap = m->cse_cap ? 2 * m->cse_cap : 256;
    VirValue **table = arena_alloc(m->arena, sizeof(VirValue *) * (size_t)cap);
    for (int i = 0; i < m->cse_cap; i++)
      for (VirValue *x = m->cse[i], *next; x; x = next) {
        next = x->cse_next;
        uint64_t h = value_hash(x, x->emitted_in) & (uint64_t)(cap - 1);
        x->cse_next = table[h];
        table[h] = x;
      }
    m->cse = table;
    m->cse_cap = cap;
  }
  uint64_t h = value_hash(v, v->emitted_in) & (uint64_t)(m->cse_cap - 1);
  v->cse_next = m->cse[h];
  m->cse[h] = v;
  m->cse_count++;
}

VirValue *vir_emit(VirModule *m, VirBlock *b, VirValue *proto) {
  if (m->cse_cap) {
    uint64_t h = value_hash(proto, b) & (uint64_t)(m->cse_cap - 1);
    for (VirValue *v = m->cse[h]; v; v = v->cse_next)
      if (v->emitted_in == b && same_value(v, proto))
        return v;
  }
  VirValue *v = arena_alloc(m->arena, sizeof *v);
  *v = *proto;
  v->id = m->next_value_id++;
  v->next = NULL;
  v->emitted_in = b;
  compute_domain(m, v);
  if (b->last)
    b->last->next = v;
  else
    b->first = v;
  b->last = v;
  cse_insert(m, v);
  return v;
}

void vir_store_add(VirModule *m, VirKernel *k, VirTensor *dst, VirAxis **axes, Op op,
                   VirValue *value) {
  VirStore *s = arena_alloc(m->arena, sizeof *s);
  s->dst = dst;
  s->axes = axes;
  s->op = op;
  s->value = value;
  VirStore **link = &k->stores;
  while (*link)
    link = &(*link)->next;
  *link = s;
}

const char *vir_kernel_kind_text(VirKernelKind kind) {
#define VIR_KERNEL_NAME(tag, name) #name,
  static const char *const text[] = {VXK_HOST_KERNELS(VIR_KERNEL_NAME)};
#undef VIR_KERNEL_NAME
  return text[kind];
}

/* ---- printer ---- */

#define VIR_STAGE_NAME(tag, name) #name,
static const char *const tensor_kind_text[] = {VXK_STAGES(VIR_STAGE_NAME)};
#undef VIR_STAGE_NAME

static void print_axis(FILE *out, const VirAxis *a) { fprintf(out, "%s.%d", a->name, a->id); }

static void print_domain(FILE *out, const VirValue *v) {
  fputs(" {", out);
  for (int i = 0; i < v->ndom; i++) {
    if (i)
      fputs(", ", out);
    print_axis(out, v->dom[i]);
  }
  fputc('}', out);
}

static void print_operand(FILE *out, const VirValue *v) {
  switch (v->op) {
  case VI_NUM:
    if (v->is_int)
      fprintf(out, "%lld", (long long)v->num);
    else
      fprintf(out, "%.9g", v->num);
    break;
  case VI_PARAM:
    fprintf(out, "$%s", v->param->name);
    break;
  case VI_SCALAR:
    fputs(v->name, out);
    break;
  case VI_AXIS:
    print_axis(out, v->axis);
    break;
  default:
    fprintf(out, "%%%d", v->id);
    break;
  }
}

static bool is_leaf(const VirValue *v) {
  return v->op == VI_NUM || v->op == VI_PARAM || v->op == VI_SCALAR || v->op == VI_AXIS;
}

static void print_value(FILE *out, const VirValue *v) {
  if (is_leaf(v))
    return; /* leaves print inline where they are used */
  fprintf(out, "    %%%d = ", v->id);
  switch (v->op) {
  case VI_LOAD:
    fprintf(out, "load %s[", v->tensor->name);
    for (int i = 0; i < v->nargs; i++) {
      if (i)
        fputs(", ", out);
      print_operand(out, v->args[i]);
    }
    fputc(']', out);
    break;
  case VI_UNARY:
    fprintf(out, "%s ", v->opcode == OP_NEG ? "neg" : v->opcode == OP_NOT ? "not" : "bitnot");
    print_operand(out, v->args[0]);
    break;
  case VI_BINARY:
    fprintf(out, "%s ", ast_op_text(v->opcode));
    print_operand(out, v->args[0]);
    fputs(", ", out);
    print_operand(out, v->args[1]);
    break;
  case VI_SELECT:
    fputs("select ", out);
    for (int i = 0; i < 3; i++) {
      if (i)
        fputs(", ", out);
      print_operand(out, v->args[i]);
    }
    break;
  case VI_CALL:
    fprintf(out, "call %s(", v->name);
    for (int i = 0; i < v->nargs; i++) {
      if (i)
        fputs(", ", out);
      print_operand(out, v->args[i]);
    }
    fputc(')', out);
    break;
  case VI_REDUCE:
    fprintf(out, "%s[", ast_reduction_text(v->red));
    for (int i = 0; i < v->naxes; i++) {
      if (i)
        fputs(", ", out);
      print_axis(out, v->axes[i]);
      fprintf(out, ":%s", v->axes[i]->extent);
    }
    if (v->nargs == 2) {
      fputs(" | ", out);
      print_operand(out, v->args[1]);
    }
    fputs("] ", out);
    print_operand(out, v->args[0]);
    break;
  default:
    break;
  }
  fprintf(out, " : %s", ast_type_text(v->type));
  print_domain(out, v);
  fputc('\n', out);
}

static void print_block(FILE *out, const char *label, const VirBlock *b) {
  bool any = false;
  for (const VirValue *v = b->first; v; v = v->next)
    any |= !is_leaf(v);
  if (!any)
    return;
  fprintf(out, "  %s:\n", label);
  for (const VirValue *v = b->first; v; v = v->next)
    print_value(out, v);
}

static void print_store(FILE *out, const VirStore *s) {
  fprintf(out, "    store %s[", s->dst->name);
  for (int i = 0; i < s->dst->rank; i++) {
    if (i)
      fputs(", ", out);
    print_axis(out, s->axes[i]);
  }
  fprintf(out, "] %s ", s->op == OP_ASSIGN ? "=" : s->op == OP_ADD ? "+=" : s->op == OP_SUB ? "-=" : "*=");
  print_operand(out, s->value);
  fputc('\n', out);
}

static void print_tensor(FILE *out, const VirTensor *t) {
  fprintf(out, "  tensor %s %s[", tensor_kind_text[t->kind], t->name);
  for (int i = 0; i < t->rank; i++)
    fprintf(out, "%s%s", i ? ", " : "", t->extents[i]);
  fprintf(out, "] %s", t->kind == VT_STEP ? ast_type_text(t->type) : ast_dtype_text(t->dtype));
  if (t->updated)
    fputs(" updated", out);
  if (t->init)
    fprintf(out, " = %s(...)", t->init->fn);
  fputc('\n', out);
}

void vir_print(FILE *out, const VirModule *m) {
  fprintf(out, "module %s\n", m->name);
  for (int i = 0; i < m->nparams; i++) {
    const VirParam *p = m->params[i];
    fprintf(out, "  param %s: %s = %s%s%s\n", p->name, ast_type_text(p->type), p->def_text,
            p->unit ? " " : "", ast_unit_text(p->unit));
  }
  for (int i = 0; i < m->ntensors; i++)
    if (m->tensors[i]->kind != VT_INPUT)
      print_tensor(out, m->tensors[i]);
  print_block(out, "scalars", &m->scalars);
  for (int i = 0; i < m->nrequires; i++) {
    fputs("  require ", out);
    print_operand(out, m->requires[i]);
    fputc('\n', out);
  }
  for (int i = 0; i < m->nkeeps; i++) {
    static const char *const kind[] = {"first", "last", "generated"};
    const VirKeep *k = &m->keeps[i];
    fprintf(out, "  keep %s", kind[k->kind]);
    if (k->count) {
      fputc(' ', out);
      print_operand(out, k->count);
      fprintf(out, " %s", ast_unit_text(k->unit));
    }
    fputs(k->at_prefill ? " at prefill\n" : "\n", out);
  }
  for (const VirKernel *k = m->kernels; k; k = k->next) {
    fprintf(out, "kernel %s\n", vir_kernel_kind_text(k->kind));
    print_block(out, "row", &k->row);
    print_block(out, "each", &k->each);
    if (k->stores)
      fputs("  stores:\n", out);
    for (const VirStore *s = k->stores; s; s = s->next)
      print_store(out, s);
    if (k->kind == VK_SELECT && m->nselections) {
      fprintf(out, "  select%s%s:", m->per_head ? " per-head" : "", m->token_granular ? " tokens" : " pages");
      for (int i = 0; i < m->nselections; i++) {
        const VirSelection *s = &m->selections[i];
        if (s->kind == VS_ALL)
          fputs(" all", out);
        else if (s->kind == VS_TOP) {
          fprintf(out, " top(%s, ", s->scores->name);
          print_operand(out, s->count);
          fprintf(out, " %s)", ast_unit_text(s->unit));
        } else {
          fprintf(out, " where(%s)", s->scores->name);
        }
      }
      fputc('\n', out);
    }
  }
}
