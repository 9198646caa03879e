/* rng.c - the out-of-line draws of the counter-based RNG of support.h: the
 * key of a name and normal draws.  Every value is a pure function of its
 * arguments, so results do not depend on threads, engine or order. */
#include <math.h>
#include "support.h"

/* FNV-1a, 64-bit. */
uint64_t rng_name_key(const char *name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char *p = (const unsigned char *)name; p && *p; p++) {
    h ^= *p;
    h *= 0x100000001b3ull;
  }
  return h;
}

/* Box-Muller on draws 2i and 2i+1; u1 is moved off 0 so log stays finite. */
float rng_normal(uint64_t seed, uint64_t stream, uint64_t i) {
  double u1 = rng_uniform(seed, stream, 2 * i), u2 = rng_uniform(seed, stream, 2 * i + 1);
  if (u1 < 1e-12) u1 = 1e-12;
  return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
