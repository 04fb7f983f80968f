/* util.c - vx-serve's shared helpers (util.h). Sits at the bottom of runtime/serve/; no
 * I/O besides formatting into the caller's buffer. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

int serve_errf(char *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, SERVE_ERR_LEN, fmt, ap);
  va_end(ap);
  return -1;
}

uint64_t serve_rand64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double serve_rand_unit(uint64_t *s) { return (double)(serve_rand64(s) >> 11) / 9007199254740992.0; }

double serve_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int serve_ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}
