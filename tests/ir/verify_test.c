/* verify_test.c - the VIR verifier catches broken modules: quest is lowered and passed, then
 * broken in one way at a time (an operand used before its definition, a domain missing an
 * axis, a page-varying value in a row block, a store of a value from another kernel), and
 * each break must be reported while the intact module reports nothing.
 * Usage: verify_test STDLIB_DIR */
#include <stdio.h>
#include <stdlib.h>

#include "front.h"
#include "lower.h"
#include "pass.h"

static int passed, failed;

static void expect(int ok, const char *what) {
  printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  ok ? passed++ : failed++;
}

/* A fresh, verified module of the policy at path, or NULL. */
static VirModule *module(Compilation *c, const char *path) {
  char *text;
  int len;
  const char *err;
  if (!front_read_file(path, &text, &len, &err))
    return NULL;
  int n = front_compile(c, path, text, len);
  free(text);
  if (n)
    return NULL;
  VirModule *m = lower_policy(&c->arena, c->policy);
  pass_run(m, stderr);
  return m;
}

static VirKernel *kernel(VirModule *m, VirKernelKind kind) {
  for (VirKernel *k = m->kernels; k; k = k->next)
    if (k->kind == kind)
      return k;
  return NULL;
}

int main(int argc, char **argv) {
  char path[1024];
  snprintf(path, sizeof path, "%s/quest.vx", argc > 1 ? argv[1] : "stdlib");
  FILE *sink = fopen("/dev/null", "w");
  for (int breakage = 0; breakage < 5; breakage++) {
    Compilation c;
    VirModule *m = module(&c, path);
    if (!m) {
      fprintf(stderr, "cannot compile %s\n", path);
      return 1;
    }
    VirKernel *sel = kernel(m, VK_SELECT), *sum = kernel(m, VK_SUMMARISE);
    const char *what = "the intact module verifies";
    switch (breakage) {
    case 1: { /* the first per-element value moves to the end of its block: its users precede it */
      VirValue *first = sel->each.first;
      sel->each.first = first->next;
      sel->each.last->next = first;
      first->next = NULL;
      sel->each.last = first;
      what = "an operand used before its definition is reported";
      break;
    }
    case 2: /* a value forgets an axis of its domain */
      sel->each.last->ndom--;
      what = "a domain missing an axis is reported";
      break;
    case 3: { /* a page-varying value moved into the row block */
      VirValue *v = sel->each.first;
      sel->each.first = v->next;
      v->next = NULL;
      sel->row.last->next = v;
      sel->row.last = v;
      what = "a page-varying value in a row block is reported";
      break;
    }
    case 4: /* a store of the select kernel takes the summarise kernel's value */
      sel->stores->value = sum->stores->value;
      what = "a store of another kernel's value is reported";
      break;
    }
    int problems = vir_verify(m, sink);
    expect(breakage == 0 ? problems == 0 : problems > 0, what);
    front_destroy(&c);
  }
  fclose(sink);
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
