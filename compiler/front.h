/* front.h - one compilation's front end: read the source, lex, parse, check. vxc, the tests
 * and the fuzz target all enter here so that they exercise the same path. Owns the arena. */
#ifndef VX_FRONT_H
#define VX_FRONT_H

#include <stdbool.h>

#include "arena.h"
#include "ast.h"
#include "diag.h"

typedef struct Compilation {
  Arena arena;
  Source src;
  Diags diags;
  Node *policy;  /* NULL when the input did not parse */
  bool checked;  /* sema ran and found no error */
} Compilation;

/* Parses and checks text (len bytes, need not be NUL-terminated; it is copied). Returns the
 * number of errors. Always call front_destroy afterwards. */
int front_compile(Compilation *c, const char *path, const char *text, int len);
/* Reads path whole; returns false (and sets *error) on I/O failure. */
bool front_read_file(const char *path, char **text, int *len, const char **error);
void front_destroy(Compilation *c);

#endif
