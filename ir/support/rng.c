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

float rng_normal_of(uint64_t bits) {
  static const float lo[] = {2.81022636e-08f, 3.43273939e-07f, -3.5233877e-06f, -4.39150654e-06f, 0.00021858087f,
                             -0.00125372503f, -0.00417768164f, 0.246640727f, 1.50140941f};
  static const float hi[] = {-0.000200214257f, 0.000100950558f, 0.00134934322f, -0.00367342844f, 0.00573950773f,
                             -0.0076224613f, 0.00943887047f, 1.00167406f, 2.83297682f};
  /* x = 2u - 1 = (2 top + 1 - 2^24) / 2^24: an odd integer over 2^24, exact
   * in float for every top (u itself is not: (2^24 - 1/2) / 2^24 rounds to
   * 1, and erfinv(1) is infinite) */
  float x = (float)(2 * (int64_t)(bits >> 40) + 1 - 16777216) * (1.0f / 16777216.0f);
  float w = -logf((1.0f - x) * (1.0f + x));
  float wl = w - 2.5f, wh = sqrtf(w) - 3.0f, pl = lo[0], ph = hi[0];
  for (int k = 1; k < 9; k++) pl = lo[k] + pl * wl, ph = hi[k] + ph * wh;
  return (w < 5.0f ? pl : ph) * x * 1.41421356237309504880f;
}
