/* diag.c - records diagnostics and renders them (see diag.h). Positions are computed from
 * byte offsets with the source's line table; columns count bytes, tabs kept in the caret line
 * so the caret lines up in any terminal. JSON goes through cJSON. */
#include "diag.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void source_init(Source *s, Arena *a, const char *path, const char *text, int len) {
  s->path = path;
  s->text = text;
  s->len = len;
  int n = 1;
  for (int i = 0; i < len; i++)
    n += text[i] == '\n';
  s->line_start = arena_alloc(a, sizeof(int) * (size_t)n);
  s->nlines = 0;
  s->line_start[s->nlines++] = 0;
  for (int i = 0; i < len; i++)
    if (text[i] == '\n')
      s->line_start[s->nlines++] = i + 1;
}

void source_position(const Source *s, int off, int *line, int *column) {
  if (off > s->len)
    off = s->len;
  int lo = 0, hi = s->nlines - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (s->line_start[mid] <= off)
      lo = mid;
    else
      hi = mid - 1;
  }
  *line = lo + 1;
  *column = off - s->line_start[lo] + 1;
}

void diag_init(Diags *d, Arena *a, const Source *src) {
  memset(d, 0, sizeof *d);
  d->arena = a;
  d->src = src;
}

static int line_end(const Source *s, int line) {
  int end = line < s->nlines ? s->line_start[line] - 1 : s->len;
  return end;
}

static Diagnostic *make(Diags *d, Severity sev, Span at, const char *code, const char *fmt,
                        va_list ap) {
  Diagnostic *g = arena_alloc(d->arena, sizeof *g);
  g->severity = sev;
  g->code = code;
  g->span = at;
  source_position(d->src, at.off, &g->line, &g->column);
  if (at.len > 0) {
    source_position(d->src, at.off + at.len - 1, &g->end_line, &g->end_column);
    g->end_column++;
  } else {
    g->end_line = g->line;
    g->end_column = g->column + 1;
  }
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(NULL, 0, fmt, copy);
  va_end(copy);
  char *msg = arena_alloc(d->arena, (size_t)n + 1);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  g->message = msg;
  return g;
}

Diagnostic *diag_error(Diags *d, Span at, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Diagnostic *g = make(d, SEV_ERROR, at, code, fmt, ap);
  va_end(ap);
  d->nerrors++;
  if (d->nerrors > DIAG_MAX_KEPT) {
    d->dropped++;
    return g; /* the caller may still attach notes; nobody renders them */
  }
  if (d->last)
    d->last->next = g;
  else
    d->first = g;
  d->last = g;
  return g;
}

void diag_note(Diags *d, Diagnostic *parent, Span at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Diagnostic *g = make(d, SEV_NOTE, at, parent->code, fmt, ap);
  va_end(ap);
  Diagnostic **tail = &parent->notes;
  while (*tail)
    tail = &(*tail)->next;
  *tail = g;
}

void diag_hint(Diags *d, Diagnostic *parent, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *msg = arena_alloc(d->arena, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  va_end(ap);
  parent->hint = msg;
}

static const char *severity_text(Severity s) {
  return s == SEV_ERROR ? "error" : s == SEV_WARNING ? "warning" : "note";
}

static void render_excerpt(const Source *s, const Diagnostic *g, FILE *out) {
  int start = s->line_start[g->line - 1];
  int end = line_end(s, g->line);
  fprintf(out, "%5d | %.*s\n      | ", g->line, end - start, s->text + start);
  for (int i = start; i < start + g->column - 1; i++)
    fputc(s->text[i] == '\t' ? '\t' : ' ', out);
  fputc('^', out);
  /* a span over several lines is underlined to the end of its first */
  int last = g->end_line > g->line ? end - start + 2 : g->end_column;
  for (int i = g->column + 1; i < last; i++)
    fputc('~', out);
  fputc('\n', out);
}

static void render_text(const Source *s, const Diagnostic *g, FILE *out) {
  fprintf(out, "%s:%d:%d: %s: %s\n", s->path, g->line, g->column, severity_text(g->severity),
          g->message);
  render_excerpt(s, g, out);
  for (const Diagnostic *n = g->notes; n; n = n->next)
    render_text(s, n, out);
  if (g->hint)
    fprintf(out, "      = hint: %s\n", g->hint);
}

static void render_json(const Source *s, const Diagnostic *g, FILE *out) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "file", s->path);
  cJSON_AddNumberToObject(o, "line", g->line);
  cJSON_AddNumberToObject(o, "column", g->column);
  cJSON_AddNumberToObject(o, "end_line", g->end_line);
  cJSON_AddNumberToObject(o, "end_column", g->end_column);
  cJSON_AddStringToObject(o, "severity", severity_text(g->severity));
  cJSON_AddStringToObject(o, "code", g->code);
  cJSON_AddStringToObject(o, "message", g->message);
  if (g->hint)
    cJSON_AddStringToObject(o, "hint", g->hint);
  if (g->notes) {
    cJSON *notes = cJSON_AddArrayToObject(o, "notes");
    for (const Diagnostic *n = g->notes; n; n = n->next) {
      cJSON *j = cJSON_CreateObject();
      cJSON_AddNumberToObject(j, "line", n->line);
      cJSON_AddNumberToObject(j, "column", n->column);
      cJSON_AddNumberToObject(j, "end_line", n->end_line);
      cJSON_AddNumberToObject(j, "end_column", n->end_column);
      cJSON_AddStringToObject(j, "message", n->message);
      cJSON_AddItemToArray(notes, j);
    }
  }
  char *text = cJSON_PrintUnformatted(o);
  if (text) {
    fprintf(out, "%s\n", text);
    free(text);
  }
  cJSON_Delete(o);
}

void diag_render(const Diags *d, FILE *out, DiagFormat format) {
  for (const Diagnostic *g = d->first; g; g = g->next) {
    if (format == DIAG_JSON)
      render_json(d->src, g, out);
    else
      render_text(d->src, g, out);
  }
  if (!d->dropped)
    return;
  if (format == DIAG_JSON) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", d->src->path);
    cJSON_AddStringToObject(o, "severity", "note");
    cJSON_AddStringToObject(o, "code", "N0001");
    cJSON_AddNumberToObject(o, "dropped", d->dropped);
    cJSON_AddStringToObject(o, "message", "further errors not shown");
    char *text = cJSON_PrintUnformatted(o);
    if (text)
      fprintf(out, "%s\n", text);
    free(text);
    cJSON_Delete(o);
  } else
    fprintf(out, "%s: note: %d further errors not shown\n", d->src->path, d->dropped);
}
