/* peak.c - measures one core's peak single-precision FMA throughput: many
 * independent AVX-512 (or, without it, AVX2) fused multiply-adds in
 * registers, no memory traffic.  This is the "% of peak" denominator of
 * bench/matmul.sh: the nominal figure (FMA units x lanes x 2 x clock) is
 * unknown on a VM whose clock and FMA-unit count lscpu does not show.
 *
 *   gcc -O2 -march=native bench/peak.c -o peak && ./peak [threads-ignored]
 * Prints one JSON object: GFLOP/s of one core. */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
static float hsum(vec v) { return _mm512_reduce_add_ps(v); }
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
static float hsum(vec v) {
  float f[8];
  _mm256_storeu_ps(f, v);
  return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
}
#endif

/* 12 independent chains hide the 4-cycle FMA latency on two ports. */
static double run(long iters, float *sink) {
  vec a = SET1(0.999999f), b = SET1(1e-7f);
  vec c0 = SET1(0), c1 = SET1(1), c2 = SET1(2), c3 = SET1(3), c4 = SET1(4), c5 = SET1(5);
  vec c6 = SET1(6), c7 = SET1(7), c8 = SET1(8), c9 = SET1(9), c10 = SET1(10), c11 = SET1(11);
  double t0 = now_s();
  for (long i = 0; i < iters; i++) {
    c0 = FMA(c0, a, b); c1 = FMA(c1, a, b); c2 = FMA(c2, a, b); c3 = FMA(c3, a, b);
    c4 = FMA(c4, a, b); c5 = FMA(c5, a, b); c6 = FMA(c6, a, b); c7 = FMA(c7, a, b);
    c8 = FMA(c8, a, b); c9 = FMA(c9, a, b); c10 = FMA(c10, a, b); c11 = FMA(c11, a, b);
  }
  double t = now_s() - t0;
  vec s = ADD(ADD(ADD(c0, c1), ADD(c2, c3)), ADD(ADD(c4, c5), ADD(c6, c7)));
  *sink += hsum(ADD(s, ADD(ADD(c8, c9), ADD(c10, c11))));
  return t;
}

int main(void) {
  /* Best of many short runs (about 5 ms each): on a machine shared with
   * other processes some runs get the core to themselves. */
  long iters = 2000000;
  float sink = 0;
  double best = 1e30;
  run(iters * 10, &sink);                    /* warm the clock up */
  for (int r = 0; r < 60; r++) {
    double t = run(iters, &sink);
    if (t < best) best = t;
  }
  double gf = 12.0 * LANES * 2.0 * (double)iters / best * 1e-9;
  printf("{\"peak_gflops_per_core\":%.1f,\"lanes\":%d,\"sink\":%g}\n", gf, LANES, (double)sink);
  return 0;
}
