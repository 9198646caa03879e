/* util.h - helpers shared by the Criterion tests. */
#ifndef NNDC_TEST_UTIL_H
#define NNDC_TEST_UTIL_H

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/runtime.h"

/* Runs a shell command; returns its combined stdout+stderr (malloc'd) and the
 * exit status in *status. */
char *util_run(const char *cmd, int *status);
/* util_run of "NNDC_BIN ARGS" (the nndc built with the tests; the
 * arguments printf-formatted). */
char *util_nndc(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The f32 array of an .npy file (malloc'd), *s its shape; NULL (after a
 * message on stderr) if it does not read or is not f32. */
float *util_read_f32(const char *path, Shape *s);
/* Makes a fresh empty temporary directory (malloc'd path). */
char *util_tmpdir(void);
/* Writes text to path; returns 0 on success. */
int util_write_file(const char *path, const char *text);
/* Compiles .nnd source text into g (arena a, diag d); returns 0 or -1. */
int util_compile(Diag *d, Graph *g, const char *text, const BuildOpts *o);
/* Largest |a-b| / (atol + rtol*|b|) over n elements; > 1 means a mismatch.
 * Prints the first few mismatches to stderr with the label. */
double util_compare(const char *label, const float *a, const float *b, int64_t n, double atol, double rtol);
/* A graph under test with its arena and diagnostics. */
typedef struct UtilGraph {
  Arena a;
  Graph g;
  Diag d;
} UtilGraph;
UtilGraph *util_graph_new(void);
/* The same in place, for fixtures that hold a UtilGraph with more fields. */
void util_graph_init(UtilGraph *t);
void util_graph_fini(UtilGraph *t);
void util_graph_free(UtilGraph *t);
/* The C field name of a model name (codegen/c.c's rule, restated for the
 * drivers of emitted C), and its upper-case form; malloc'd. */
char *util_c_ident(const char *s);
char *util_c_upper(const char *s);
/* Fills x[n] with deterministic values in [lo, hi). */
void util_fill(float *x, int64_t n, uint64_t seed, float lo, float hi);

#endif
