/* aot_driver.c - times the train_step (or forward) of C written by
 * `nndc emit-c`, for bench/aot.sh.  Built once per model:
 *
 *   gcc -O3 -march=native -DMODEL=mlp -DMODEL_H='"mlp.h"' -I GEN -I BUILD \
 *       bench/aot_driver.c GEN/mlp.c -lm
 *
 * where BUILD/aot_fill.inc (written by aot.sh from the header) points every
 * field of p (params), in (inputs), out (outputs) and s (optimizer state)
 * at a buffer of the right size.  Params are uniform in [-0.05, 0.05),
 * f32 inputs uniform in [0, 1), i32 inputs the labels k % 10, the state
 * zero.  Prints one JSON object: min/median/max microseconds per step over
 * REPEATS steps after warm-up. */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include MODEL_H

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define M(x) CAT(MODEL, x)
#define STR2(x) #x
#define STR(x) STR2(x)

static unsigned seed = 1;

static float uniform01(void) {
  seed = seed * 1664525u + 1013904223u;
  return (float)(seed >> 8) / 16777216.0f;
}

static void *block(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "aot_driver: out of memory\n");
    exit(1);
  }
  memset(p, 0, bytes);
  return p;
}

static float *param(size_t n) {
  float *x = block(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = uniform01() * 0.1f - 0.05f;
  return x;
}

static float *fin(size_t n) {
  float *x = block(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = uniform01();
  return x;
}

static int32_t *iin(size_t n) {
  int32_t *x = block(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = (int32_t)(i % 10);
  return x;
}

static float *zeros(size_t n) { return block(n * sizeof(float)); }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 50;
  if (reps <= 0) reps = 50;
  M(params) p;
  M(inputs) in;
  M(outputs) out;
#ifdef TRAIN
  M(state) s;
  memset(&s, 0, sizeof s);
#endif
  memset(&p, 0, sizeof p);
  memset(&in, 0, sizeof in);
  memset(&out, 0, sizeof out);
#include "aot_fill.inc"
  void *ws = block(M(workspace_size)());
  double *t = malloc((size_t)reps * sizeof *t);
  for (int r = -3; r < reps; r++) {
    double t0 = now_s();
#ifdef TRAIN
    M(train_step)(&p, &s, &in, &out, ws);
#else
    M(forward)(&p, &in, &out, ws);
#endif
    if (r >= 0) t[r] = now_s() - t0;
  }
  qsort(t, (size_t)reps, sizeof *t, cmp_double);
  printf("{\"framework\":\"aot\",\"model\":\"%s\",\"repeats\":%d,\"step_us_min\":%.3f,\"step_us_median\":%.3f,"
         "\"step_us_max\":%.3f}\n", STR(MODEL), reps, t[0] * 1e6, t[reps / 2] * 1e6, t[reps - 1] * 1e6);
  free(t);
  return 0;
}
