/* filler.c - filler text for eval's generated prompts from Debian's text packages (filler.h).
 * Sits under runtime/serve/ beside eval.c. The King James text of bible-kjv-text is stored
 * compressed for its own reader (/usr/lib/bible.data) and is not decoded here: KJV lines
 * reach generated prompts only through the fixtures' filler. Never prints, never exits. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filler.h"

#define FORTUNES_DIR "/usr/share/games/fortunes"
#define JARGON_GZ "/usr/share/doc/jargon-text/jargon.txt.gz"

int filler_line_ok(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)p[i] >= 0x80)
      return 0;
    if (i + 8 <= n && !memcmp(p + i, "pass key", 8))
      return 0;
    if (i + 5 <= n && !memcmp(p + i, "key ", 4) && p[i + 4] >= '0' && p[i + 4] <= '9')
      return 0;
  }
  return 1;
}

size_t filler_keep_lines(char *text, size_t len) {
  size_t w = 0;
  for (size_t r = 0; r < len;) {
    const char *e = memchr(text + r, '\n', len - r);
    size_t n = e ? (size_t)(e - (text + r)) + 1 : len - r;
    if (e && filler_line_ok(text + r, n)) /* whole lines only */
      memmove(text + w, text + r, n), w += n;
    r += n;
  }
  return w;
}

typedef struct buf {
  char *p;
  size_t n, cap;
} buf;

static int append(buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->n + n + 1) * 2;
    char *p = realloc(b->p, cap);
    if (!p)
      return -1;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  return 0;
}

/* Appends a stream's lines; a line "%" (a fortune's end) becomes a blank line. */
static int append_stream(buf *b, FILE *f) {
  char *line = NULL;
  size_t lcap = 0;
  ssize_t n;
  int rc = 0;
  while (rc == 0 && (n = getline(&line, &lcap, f)) > 0)
    rc = !strcmp(line, "%\n") ? append(b, "\n", 1) : append(b, line, (size_t)n);
  free(line);
  return rc;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every fortunes file (not the .dat indexes nor the .u8 copies), in name order. */
static int add_fortunes(buf *b) {
  DIR *d = opendir(FORTUNES_DIR);
  if (!d)
    return 0;
  char *names[512];
  int n = 0, added = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 512)
    if (e->d_name[0] != '.' && !strchr(e->d_name, '.') && (names[n] = strdup(e->d_name)))
      n++;
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], cmp_name);
  for (int i = 0; i < n; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FORTUNES_DIR, names[i]);
    FILE *f = fopen(path, "r");
    if (f) {
      added += append_stream(b, f) == 0;
      fclose(f);
    }
    free(names[i]);
  }
  return added;
}

static int add_jargon(buf *b) {
  FILE *t = fopen(JARGON_GZ, "r");
  if (!t)
    return 0;
  fclose(t);
  FILE *f = popen("gzip -dc " JARGON_GZ " 2>/dev/null", "r");
  if (!f)
    return 0;
  size_t before = b->n;
  int rc = append_stream(b, f);
  return pclose(f) == 0 && rc == 0 && b->n > before;
}

char *filler_debian(size_t *len, char *what, size_t cap) {
  buf b = {0};
  int fortunes = add_fortunes(&b), jargon = add_jargon(&b);
  if (!fortunes && !jargon) {
    snprintf(what, cap, "none of Debian's fortunes (" FORTUNES_DIR ") or jargon-text (" JARGON_GZ
             ") is installed");
    free(b.p);
    return NULL;
  }
  snprintf(what, cap, "Debian's %s%s%s", fortunes ? "fortunes (" FORTUNES_DIR ")" : "",
           fortunes && jargon ? " and " : "", jargon ? "jargon-text (" JARGON_GZ ")" : "");
  *len = filler_keep_lines(b.p, b.n);
  return b.p;
}
