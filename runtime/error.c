/* error.c - status names and the thread-local last-error message of libvxrt.
 *
 * Every failing vxrt_* call records its message here through vxrt_fail(); callers read it
 * with vxrt_last_error(). Thread-local so that threads driving different caches do not
 * overwrite each other's messages. Must never print or exit.
 */
#include "vxrt_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[4096]; /* room for a PTX JIT log */

vxrt_status vxrt_fail(vxrt_status st, const char *fmt, ...) {
  /* Formatted aside first: callers may pass vxrt_last_error() itself as an argument to wrap
   * an earlier message, and vsnprintf's source and destination must not overlap. */
  char msg[sizeof last_error];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  memcpy(last_error, msg, sizeof msg);
  return st;
}

const char *vxrt_last_error(void) { return last_error; }

const char *vxrt_status_name(vxrt_status st) {
  switch (st) {
  case VXRT_OK: return "VXRT_OK";
  case VXRT_ERR_INVALID_ARG: return "VXRT_ERR_INVALID_ARG";
  case VXRT_ERR_NO_DEVICE: return "VXRT_ERR_NO_DEVICE";
  case VXRT_ERR_DEVICE: return "VXRT_ERR_DEVICE";
  case VXRT_ERR_OUT_OF_MEMORY: return "VXRT_ERR_OUT_OF_MEMORY";
  case VXRT_ERR_IO: return "VXRT_ERR_IO";
  case VXRT_ERR_FORMAT: return "VXRT_ERR_FORMAT";
  case VXRT_ERR_VERSION: return "VXRT_ERR_VERSION";
  case VXRT_ERR_CORRUPT: return "VXRT_ERR_CORRUPT";
  case VXRT_ERR_TARGET: return "VXRT_ERR_TARGET";
  case VXRT_ERR_LOAD: return "VXRT_ERR_LOAD";
  case VXRT_ERR_PARAM: return "VXRT_ERR_PARAM";
  case VXRT_ERR_POOL_FULL: return "VXRT_ERR_POOL_FULL";
  case VXRT_ERR_STATE: return "VXRT_ERR_STATE";
  case VXRT_ERR_UNSUPPORTED: return "VXRT_ERR_UNSUPPORTED";
  }
  return "VXRT_ERR_?";
}
