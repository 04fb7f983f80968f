/* extent.h - the runtime's one reader of extent text, the canonical form vxc writes in the
 * manifest (integers, names, + - * / % and parentheses: "P/16", "(P/16)*2", "npages"). The
 * executor evaluates extents with it and the parameter checks ask which params an extent
 * names. Internal to libvxrt; never allocates, prints or exits. */
#ifndef VX_EXTENT_H
#define VX_EXTENT_H

#include <stddef.h>

/* The value of a name; sets *ok to 0 when the caller does not know it. */
typedef long (*vxrt_extent_name_fn)(void *user, const char *name, size_t len, int *ok);

/* The extent's value, integer arithmetic as in C; -1 when the text is malformed, names
 * something `value` does not know, divides by zero or comes out negative. */
long vxrt_extent_eval(const char *text, vxrt_extent_name_fn value, void *user);
/* Whether the text names `name` (as a whole name, not inside a longer one). */
int vxrt_extent_names(const char *text, const char *name);

#endif
