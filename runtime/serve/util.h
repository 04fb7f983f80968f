/* util.h - the few helpers every part of vx-serve shares: an error message into a caller's
 * buffer, a seeded random stream, a clock, a suffix test. Sits at the bottom of
 * runtime/serve/ and includes nothing of it; never prints. */
#ifndef SERVE_UTIL_H
#define SERVE_UTIL_H

#include <stdint.h>

enum { SERVE_ERR_LEN = 512 }; /* the size of every error buffer */

/* Writes the message into err (SERVE_ERR_LEN bytes) and returns -1. */
int serve_errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* splitmix64: the next value of the stream whose state is *s. */
uint64_t serve_rand64(uint64_t *s);
/* Uniform in [0, 1) from the same stream. */
double serve_rand_unit(uint64_t *s);
/* Seconds on a monotonic clock. */
double serve_now(void);
int serve_ends_with(const char *s, const char *suffix);

#endif
