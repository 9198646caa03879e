/* util.c - helpers shared by the Criterion tests. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ctype.h>
#include <math.h>
#include "util.h"

char *util_run(const char *cmd, int *status) {
  size_t n = strlen(cmd) + 16;
  char *full = malloc(n);
  snprintf(full, n, "(%s) 2>&1", cmd);
  FILE *p = popen(full, "r");
  free(full);
  size_t cap = 4096, len = 0;
  char *out = malloc(cap);
  size_t r;
  while (p && (r = fread(out + len, 1, cap - len - 1, p)) > 0) {
    len += r;
    if (len + 1 >= cap) out = realloc(out, cap *= 2);
  }
  out[len] = 0;
  int st = p ? pclose(p) : -1;
  *status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
  return out;
}

char *util_nndc(int *status, const char *fmt, ...) {
#ifdef NNDC_BIN
  char args[8192], cmd[9000];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "%s %s", NNDC_BIN, args);
  return util_run(cmd, status);
#else
  (void)fmt;
  *status = -1;
  return strdup("util_nndc: built without NNDC_BIN");
#endif
}

float *util_read_f32(const char *path, Shape *s) {
  Diag d;
  diag_init(&d);
  Array a;
  int rc = npy_read(&d, path, &a);
  if (rc) fprintf(stderr, "%s", d.buf ? d.buf : "npy_read failed\n");
  diag_free(&d);
  if (rc) return NULL;
  if (a.et != EL_F32) {
    fprintf(stderr, "%s: not f32\n", path);
    array_free(&a);
    return NULL;
  }
  *s = a.shape;
  return a.data;
}

char *util_tmpdir(void) {
  char *t = strdup("/tmp/nndc-test-XXXXXX");
  if (!mkdtemp(t)) abort();
  return t;
}

int util_write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fputs(text, f);
  return fclose(f);
}

int util_compile(Diag *d, Graph *g, const char *text, const BuildOpts *o) {
  BuildOpts def = {0};
  return fe_compile_string(d, g, "test.nnd", text, o ? o : &def);
}

double util_compare(const char *label, const float *a, const float *b, int64_t n, double atol, double rtol) {
  double worst = 0;
  int shown = 0;
  for (int64_t i = 0; i < n; i++) {
    double err = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
    if (isnan(a[i]) != isnan(b[i])) err = INFINITY;
    if (err > 1 && shown < 5) {
      fprintf(stderr, "%s[%lld]: got %.9g, want %.9g\n", label, (long long)i, a[i], b[i]);
      shown++;
    }
    if (err > worst) worst = err;
  }
  return worst;
}

void util_fill(float *x, int64_t n, uint64_t seed, float lo, float hi) {
  for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_uniform(seed, 77, (uint64_t)i);
}

void util_graph_init(UtilGraph *t) {
  arena_init(&t->a);
  graph_init(&t->g, &t->a);
  diag_init(&t->d);
}

void util_graph_fini(UtilGraph *t) {
  diag_free(&t->d);
  arena_free(&t->a);
}

UtilGraph *util_graph_new(void) {
  UtilGraph *t = calloc(1, sizeof *t);
  if (!t) abort();
  util_graph_init(t);
  return t;
}

void util_graph_free(UtilGraph *t) {
  util_graph_fini(t);
  free(t);
}

char *util_c_ident(const char *s) {
  static const char *const kw[] = {"int", "float", "double", "char", "for", "if", "while", "return", NULL};
  char *r = malloc(strlen(s) + 2);
  strcpy(r, s);
  for (char *c = r; *c; c++)
    if (!isalnum((unsigned char)*c)) *c = '_';
  for (int i = 0; kw[i]; i++)
    if (!strcmp(r, kw[i])) strcat(r, "_");
  return r;
}

char *util_c_upper(const char *s) {
  char *r = util_c_ident(s);
  for (char *c = r; *c; c++) *c = (char)toupper((unsigned char)*c);
  return r;
}
