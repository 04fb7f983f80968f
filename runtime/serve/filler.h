/* filler.h - the plain English text `vx-serve eval` fills its generated retrieval prompts
 * with: from Debian's text packages (fortunes, jargon-text) when installed, else the caller
 * falls back to the fixtures' own lines. Sits under runtime/serve/ beside eval.c; reads
 * files and runs gzip, never prints, never exits. */
#ifndef SERVE_FILLER_H
#define SERVE_FILLER_H

#include <stddef.h>

/* Whether the line [p, p + n) may be filler: ASCII only, and holding no needle of the
 * fixtures ("pass key", "key N") that would plant a distractor. */
int filler_line_ok(const char *p, size_t n);
/* Keeps the whole lines of text[0..len) that filler_line_ok accepts, in place; the new length. */
size_t filler_keep_lines(char *text, size_t len);
/* The text of Debian's fortunes (every file of /usr/share/games/fortunes, "%" separators as
 * blank lines) and the Jargon File (jargon-text's jargon.txt.gz through gzip -dc), filtered
 * by filler_keep_lines; malloc'd, *len bytes, its sources named in what. NULL when none is
 * installed (what says which paths were looked at). */
char *filler_debian(size_t *len, char *what, size_t cap);

#endif
