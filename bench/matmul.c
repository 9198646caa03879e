/* matmul.c - times OpenBLAS's cblas_sgemm on C[M,N] = A[M,K] @ B[K,N]
 * (row-major, no transposes, the layout nndc's `a @ b` uses) for the
 * shapes bench/matmul.sh lists; nndc's side is `nndc bench bench/mm.nnd`.
 *
 *   gcc -O2 bench/matmul.c -lopenblas -o matmul
 *   ./matmul M K N THREADS REPEATS
 * Prints one JSON object: median, min and max over REPEATS calls after
 * warm-up, and GFLOP/s at the median (2*M*N*K flops per call). */
#define _POSIX_C_SOURCE 199309L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void openblas_set_num_threads(int num_threads);   /* not in every cblas.h */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

static float *rand_matrix(long n, unsigned *seed) {
  float *m = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
  for (long i = 0; i < n; i++) {
    *seed = *seed * 1664525u + 1013904223u;
    m[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
  }
  return m;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s M K N THREADS REPEATS\n", argv[0]);
    return 2;
  }
  long m = atol(argv[1]), k = atol(argv[2]), n = atol(argv[3]);
  int threads = atoi(argv[4]), reps = atoi(argv[5]);
  if (m <= 0 || k <= 0 || n <= 0 || threads <= 0 || reps <= 0) {
    fprintf(stderr, "%s: sizes, threads and repeats must be positive\n", argv[0]);
    return 2;
  }
  openblas_set_num_threads(threads);
  unsigned seed = 1;
  float *a = rand_matrix(m * k, &seed), *b = rand_matrix(k * n, &seed), *c = rand_matrix(m * n, &seed);
  double *s = malloc((size_t)reps * sizeof *s);
  for (int r = -3; r < reps; r++) {
    double t0 = now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)k, b, (int)n,
                0.0f, c, (int)n);
    if (r >= 0) s[r] = now_s() - t0;
  }
  qsort(s, (size_t)reps, sizeof *s, cmp_double);
  double med = s[reps / 2], flops = 2.0 * (double)m * (double)n * (double)k;
  printf("{\"framework\":\"openblas\",\"M\":%ld,\"K\":%ld,\"N\":%ld,\"threads\":%d,\"repeats\":%d,"
         "\"step_us_min\":%.3f,\"step_us_median\":%.3f,\"step_us_max\":%.3f,\"gflops\":%.3f,\"check\":%g}\n",
         m, k, n, threads, reps, s[0] * 1e6, med * 1e6, s[reps - 1] * 1e6, flops / med * 1e-9, (double)c[m * n - 1]);
  free(a);
  free(b);
  free(c);
  free(s);
  return 0;
}
