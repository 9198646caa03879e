/* support.h - the layer below the IR that every stage uses and that uses no
 * stage: the arena (arena.c), internal-fault aborts, the diagnostics sink
 * (diag.c) and the counter-based RNG (rng.c).  Sections are named after the
 * files that implement them.  Nothing here includes a header of the project
 * outside this folder (tests/layers.sh checks it).
 */
#ifndef NNDC_SUPPORT_H
#define NNDC_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- arena.c */

/* A bump allocator: blocks are never freed one by one; arena_free releases all. */
typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
  ArenaBlock *head; /* newest block first */
} Arena;

void  arena_init(Arena *a);
void  arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t size);        /* zeroed, 16-byte aligned; aborts on OOM */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* Internal faults (broken invariants, never user errors) abort with the place. */
#define NNDC_ASSERT(c) \
  do { if (!(c)) nndc_fatal(__FILE__, __LINE__, #c); } while (0)
_Noreturn void nndc_fatal(const char *file, int line, const char *what);

/* ------------------------------------------------------------------ buf.c */

/* A growing NUL-terminated text (s is NULL until the first append); every
 * text the compiler builds (diagnostics, IR dumps, C source, JSON) uses it. */
typedef struct Buf {
  char *s;
  size_t len, cap;
} Buf;

void buf_put(Buf *b, const char *s, size_t n);   /* aborts on OOM */
void buf_puts(Buf *b, const char *s);
void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(Buf *b, const char *fmt, va_list ap);

/* ----------------------------------------------------------------- diag.c */

/* A source file kept for the life of a Diag, so diagnostics can quote lines. */
typedef struct Source {
  char *path;          /* as given by the user (owned) */
  char *text;          /* contents, NUL-terminated (owned) */
  size_t len;          /* bytes of text, not counting the NUL */
  struct Source *next;
} Source;

/* A position in a source file; src == NULL means "no position". */
typedef struct Loc {
  const Source *src;
  int line, col;       /* 1-based; col counts bytes */
} Loc;

/* The diagnostics sink.  Messages accumulate as text in buf; the CLI prints
 * them.  Library code reports here and returns failure; it never prints. */
typedef struct Diag {
  int nerrors, nwarnings;
  char *buf;           /* all messages so far, NUL-terminated (owned) */
  size_t len, cap;
  Source *sources;     /* every file read (owned) */
} Diag;

void diag_init(Diag *d);
void diag_free(Diag *d);
/* "FILE:LINE:COL: error: MSG\n<source line>\n<spaces>^\n" (no position: "nndc: error: MSG") */
void diag_error(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_warn(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_note(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* An error about a file with no line: "PATH: error: MSG". */
void diag_file_error(Diag *d, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_vreport(Diag *d, const char *kind, Loc loc, const char *fmt, va_list ap);
/* Registers a source text (copied) and returns it; NULL + error if unreadable. */
Source *diag_add_source(Diag *d, const char *path, const char *text, size_t len);
/* Reads a file into a new Source; on failure reports at `from` and returns NULL. */
Source *diag_read_source(Diag *d, const char *path, Loc from);
void diag_clear(Diag *d);   /* forget messages (after the CLI printed them) */

/* ------------------------------------------------------------------ rng.c */

/* Counter-based RNG: every draw is a pure function of (seed, stream, index),
 * so values do not depend on thread count, engine or order of evaluation.
 * The interpreter's dropout, the lowered dropout kernel (codegen/lower.c
 * builds the same mix in kernel IR), initializers and shuffling share it. */
static inline uint64_t rng_mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static inline uint64_t rng_bits(uint64_t seed, uint64_t stream, uint64_t i) {
  return rng_mix(rng_mix(seed ^ rng_mix(stream)) + i);
}
/* Uniform in [0, 1) with 24 random bits (exact in f32). */
static inline float rng_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
  return (float)(rng_bits(seed, stream, i) >> 40) * (1.0f / 16777216.0f);
}
/* Dropout: element i of the mask of dropout node `key` at optimizer step
 * `step` is kept when its uniform draw is >= p; kept values scale by 1/(1-p). */
static inline uint64_t rng_dropout_stream(uint64_t key, int64_t step) {
  return rng_mix(key * 0x100000001B3ull ^ (uint64_t)step) ^ 0xD50u;
}
static inline int rng_dropout_keep(uint64_t seed, uint64_t key, int64_t step, uint64_t i, float p) {
  return rng_uniform(seed, rng_dropout_stream(key, step), i) >= p;
}
/* Noise (rand, randn): node `key` at step `step` draws from its own stream;
 * RANDN's element i is sqrt(2) erfinv(2u - 1) of u = (top 24 bits + 1/2) /
 * 2^24, 2u - 1 = (2 top + 1 - 2^24) / 2^24 formed exactly (finite for every
 * draw, |randn| <= 5.42), erfinv by Giles' single-precision approximation
 * (float arithmetic; the lowering builds the same formula in kernel IR). */
static inline uint64_t rng_noise_stream(uint64_t key, int64_t step) {
  return rng_mix(key * 0x100000001B3ull ^ (uint64_t)step) ^ 0xA015Eu;
}
/* The seed of train step k (0-based, spec 8's step blocks) of an iteration:
 * every step's noise and dropout are drawn afresh; step 0 keeps the run's seed. */
static inline uint64_t rng_step_seed(uint64_t seed, int k) {
  return k ? rng_mix(seed ^ rng_mix(0x5743ull + (uint64_t)k)) : seed;
}
float rng_normal_of(uint64_t bits);
uint64_t rng_name_key(const char *name);       /* FNV-1a of a param name */
float rng_normal(uint64_t seed, uint64_t stream, uint64_t i); /* Box-Muller on draws 2i, 2i+1 */

#endif
