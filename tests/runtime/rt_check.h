/* rt_check.h - the tiny check harness of the runtime tests (tests/runtime).
 *
 * Each test counts checks, reports every failure with file:line and the failed expression,
 * and ends with the line "N passed, M failed" (what CTest logs show); the exit status is 0
 * only when nothing failed. Header-only, for test programs only; not part of libvxrt.
 */
#ifndef RT_CHECK_H
#define RT_CHECK_H

#include <stdio.h>
#include <string.h>

#include "vxrt.h"

static int rt_passed, rt_failed;

/* RT_CHECK(cond, fmt, ...): counts a check; on failure prints the expression and message. */
#define RT_CHECK(cond, ...)                                                    \
  do {                                                                         \
    if (cond) {                                                                \
      rt_passed++;                                                             \
    } else {                                                                   \
      rt_failed++;                                                             \
      fprintf(stderr, "%s:%d: FAIL: %s: ", __FILE__, __LINE__, #cond);         \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
    }                                                                          \
  } while (0)

/* A call's status must be `want` and, unless `needle` is NULL, vxrt_last_error() must contain
 * `needle`. Returns whether both held. */
#define RT_EXPECT(call, want, needle) rt_expect_at(__FILE__, __LINE__, #call, (call), (want), (needle))

static inline int rt_expect_at(const char *file, int line, const char *what, vxrt_status got,
                        vxrt_status want, const char *needle) {
  int ok = got == want && (!needle || got == VXRT_OK || strstr(vxrt_last_error(), needle));
  if (ok) {
    rt_passed++;
  } else {
    rt_failed++;
    fprintf(stderr, "%s:%d: FAIL: %s: got %s (\"%s\"), want %s%s%s%s\n", file, line, what,
            vxrt_status_name(got), got ? vxrt_last_error() : "", vxrt_status_name(want),
            needle ? " with \"" : "", needle ? needle : "", needle ? "\"" : "");
  }
  return ok;
}

static inline int rt_finish(void) {
  printf("%d passed, %d failed\n", rt_passed, rt_failed);
  return rt_failed ? 1 : 0;
}

/* Skipped (CTest SKIP_RETURN_CODE 77): says why, then the summary line. */
static inline int rt_skip(const char *why) {
  printf("SKIP: %s\n%d passed, %d failed\n", why, rt_passed, rt_failed);
  return 77;
}

#endif /* RT_CHECK_H */
