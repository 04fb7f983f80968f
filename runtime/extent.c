/* extent.c - extent text, read (extent.h). A recursive descent over the canonical form: sum
 * of products of atoms, an atom an integer, a name or a parenthesised sum. */
#include "extent.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct Reader {
  const char *s;
  vxrt_extent_name_fn value;
  void *user;
  int ok;
} Reader;

static long sum(Reader *r);

static long atom(Reader *r) {
  if (*r->s == '(') {
    r->s++;
    long v = sum(r);
    r->ok &= *r->s == ')';
    r->s += *r->s == ')';
    return v;
  }
  if (isdigit((unsigned char)*r->s))
    return strtol(r->s, (char **)&r->s, 10);
  const char *start = r->s;
  while (isalnum((unsigned char)*r->s) || *r->s == '_')
    r->s++;
  if (r->s == start) {
    r->ok = 0;
    return 0;
  }
  int known = 1;
  long v = r->value(r->user, start, (size_t)(r->s - start), &known);
  r->ok &= known;
  return v;
}

static long product(Reader *r) {
  long v = atom(r);
  while (*r->s == '*' || *r->s == '/' || *r->s == '%') {
    char op = *r->s++;
    long x = atom(r);
    if (op != '*' && x == 0) {
      r->ok = 0;
      return 0;
    }
    v = op == '*' ? v * x : op == '/' ? v / x : v % x;
  }
  return v;
}

static long sum(Reader *r) {
  long v = product(r);
  while (*r->s == '+' || *r->s == '-') {
    char op = *r->s++;
    long x = product(r);
    v = op == '+' ? v + x : v - x;
  }
  return v;
}

long vxrt_extent_eval(const char *text, vxrt_extent_name_fn value, void *user) {
  Reader r = {text, value, user, 1};
  long v = sum(&r);
  return !r.ok || *r.s || v < 0 ? -1 : v;
}

int vxrt_extent_names(const char *text, const char *name) {
  size_t n = strlen(name);
  for (const char *s = text; *s;) {
    if (isalpha((unsigned char)*s) || *s == '_') {
      const char *start = s;
      while (isalnum((unsigned char)*s) || *s == '_')
        s++;
      if ((size_t)(s - start) == n && !strncmp(start, name, n))
        return 1;
    } else {
      s++;
    }
  }
  return 0;
}
