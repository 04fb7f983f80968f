/* front.c - runs lexer+parser then the checker over one source (see front.h). The checker
 * also runs on a tree with syntax errors, so that one run reports them and the semantic
 * errors of the items that did parse: an item that failed to parse is an ND_LOST there, and
 * the names it seemed to define are known to the checker, never reported as unknown. */
#include "front.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "sema.h"

int front_compile(Compilation *c, const char *path, const char *text, int len) {
  memset(c, 0, sizeof *c);
  arena_init(&c->arena);
  char *copy = arena_strndup(&c->arena, text, (size_t)len);
  source_init(&c->src, &c->arena, arena_strndup(&c->arena, path, strlen(path)), copy, len);
  diag_init(&c->diags, &c->arena, &c->src);
  c->policy = parse_source(&c->arena, &c->src, &c->diags);
  if (c->policy) {
    bool parsed = c->diags.nerrors == 0;
    c->checked = sema_check(&c->arena, c->policy, &c->diags) && parsed;
  }
  return c->diags.nerrors;
}

bool front_read_file(const char *path, char **text, int *len, const char **error) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    *error = strerror(errno);
    return false;
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) {
      fclose(f);
      *error = "out of memory";
      return false;
    }
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap)
      break;
    if (cap >= (size_t)1 << 30) {
      free(buf);
      fclose(f);
      *error = "file too large (over 1 GiB)";
      return false;
    }
    cap *= 2;
    buf = realloc(buf, cap);
  }
  bool failed = ferror(f);
  fclose(f);
  if (failed) {
    free(buf);
    *error = "read error";
    return false;
  }
  *text = buf;
  *len = (int)n;
  return true;
}

void front_destroy(Compilation *c) { arena_destroy(&c->arena); }
