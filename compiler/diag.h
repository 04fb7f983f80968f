/* diag.h - diagnostics: errors with file:line:col, the source line and a caret, notes and
 * hints, rendered as text or as JSON lines. Stages report through here and never print;
 * nothing here stops a compilation — callers count errors and decide.
 *
 * Stable codes (the JSON "code" field), by family:
 *   E01xx lexical   E02xx syntax        E03xx names     E04xx axes and extents
 *   E05xx types     E06xx stages        E07xx score and select
 *   E08xx params, units, keep ranges    E09xx constants and files */
#ifndef VX_DIAG_H
#define VX_DIAG_H

#include <stdio.h>

#include "arena.h"
#include "ast.h"

typedef struct Source {
  const char *path;
  const char *text; /* NUL-terminated; len bytes */
  int len;
  int *line_start;  /* byte offset of each line */
  int nlines;
} Source;

typedef enum Severity { SEV_ERROR, SEV_WARNING, SEV_NOTE } Severity;
typedef enum DiagFormat { DIAG_TEXT, DIAG_JSON } DiagFormat;

typedef struct Diagnostic Diagnostic;
struct Diagnostic {
  Severity severity;
  const char *code;
  Span span;
  int line, column;         /* 1-based, where the span starts */
  int end_line, end_column; /* the line of the span's last byte, and one past its column */
  const char *message;
  const char *hint;  /* or NULL */
  Diagnostic *notes; /* SEV_NOTE entries attached to this one */
  Diagnostic *next;
};

/* Errors beyond this many are counted but not kept: a broken generated file must not turn
 * into hundreds of megabytes of output. */
enum { DIAG_MAX_KEPT = 200 };

typedef struct Diags {
  Arena *arena;
  const Source *src;
  Diagnostic *first, *last;
  int nerrors;  /* all errors, kept or not */
  int dropped;  /* errors beyond DIAG_MAX_KEPT */
} Diags;

void source_init(Source *s, Arena *a, const char *path, const char *text, int len);
void source_position(const Source *s, int off, int *line, int *column);

void diag_init(Diags *d, Arena *a, const Source *src);
Diagnostic *diag_error(Diags *d, Span at, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_note(Diags *d, Diagnostic *parent, Span at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_hint(Diags *d, Diagnostic *parent, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_render(const Diags *d, FILE *out, DiagFormat format);

#endif
