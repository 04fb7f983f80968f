/* arena.h - the bump allocator that owns everything one compilation creates (tokens, nodes,
 * symbols, strings). Freed all at once by arena_destroy; there is no per-object free. */
#ifndef VX_ARENA_H
#define VX_ARENA_H

#include <stddef.h>

typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
  ArenaBlock *head;
} Arena;

void arena_init(Arena *a);
void arena_destroy(Arena *a);
/* Zeroed memory, aligned for any object; aborts only if the system is out of memory. */
void *arena_alloc(Arena *a, size_t size);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
