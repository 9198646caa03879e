/* arena.c - the bump allocator that owns all IR of one compilation.
 * Blocks grow geometrically; nothing is freed until arena_free. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "support.h"

struct ArenaBlock {
  ArenaBlock *next;
  size_t used, cap;
  _Alignas(16) unsigned char mem[];
};

void arena_init(Arena *a) { a->head = NULL; }

void arena_free(Arena *a) {
  ArenaBlock *b = a->head;
  while (b) {
    ArenaBlock *n = b->next;
    free(b);
    b = n;
  }
  a->head = NULL;
}

_Noreturn void nndc_fatal(const char *file, int line, const char *what) {
  fprintf(stderr, "%s:%d: internal error: %s\n", file, line, what);
  abort();
}

void *arena_alloc(Arena *a, size_t size) {
  size = (size + 15) & ~(size_t)15;
  ArenaBlock *b = a->head;
  if (!b || b->cap - b->used < size) {
    size_t cap = b ? b->cap * 2 : 64 * 1024;
    if (cap < size) cap = size;
    if (cap > ((size_t)256 << 20) && size < ((size_t)256 << 20)) cap = (size_t)256 << 20;
    b = malloc(sizeof(ArenaBlock) + cap);
    if (!b) nndc_fatal(__FILE__, __LINE__, "out of memory");
    b->next = a->head;
    b->used = 0;
    b->cap = cap;
    a->head = b;
  }
  void *p = b->mem + b->used;
  b->used += size;
  memset(p, 0, size);
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap, aq;
  va_start(ap, fmt);
  va_copy(aq, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = arena_alloc(a, (size_t)n + 1);
  vsnprintf(p, (size_t)n + 1, fmt, aq);
  va_end(aq);
  return p;
}
