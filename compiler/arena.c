/* arena.c - bump allocation in growing blocks for one compilation (see arena.h). */
#include "arena.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Blocks double from 64 KiB to 8 MiB, so a large compilation makes few calls to the system.
 * They are mapped with MAP_POPULATE: the kernel hands them over zeroed and faulted in in one
 * call, where touching fresh pages one by one cost a fifth of checking a large policy. A bump
 * allocator never hands out the same bytes twice, so every allocation is zero as it is. */
enum { ARENA_FIRST_BLOCK = 64 * 1024, ARENA_MAX_BLOCK = 8 * 1024 * 1024, ARENA_ALIGN = 16 };

struct ArenaBlock {
  ArenaBlock *next;
  size_t used, size;
  _Alignas(ARENA_ALIGN) unsigned char data[];
};

void arena_init(Arena *a) { a->head = NULL; }

void arena_destroy(Arena *a) {
  ArenaBlock *b = a->head;
  while (b) {
    ArenaBlock *next = b->next;
    munmap(b, sizeof(ArenaBlock) + b->size);
    b = next;
  }
  a->head = NULL;
}

void *arena_alloc(Arena *a, size_t size) {
  size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
  ArenaBlock *b = a->head;
  if (!b || b->size - b->used < size) {
    size_t cap = !b ? ARENA_FIRST_BLOCK : b->size < ARENA_MAX_BLOCK ? 2 * b->size : ARENA_MAX_BLOCK;
    if (cap < size)
      cap = size;
    b = mmap(NULL, sizeof(ArenaBlock) + cap, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (b == MAP_FAILED) {
      /* A compiler that cannot allocate a few kilobytes has no useful way to go on. */
      fputs("vx: out of memory\n", stderr);
      abort();
    }
    b->size = cap;
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += size;
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = arena_alloc(a, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}
