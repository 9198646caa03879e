/* frontend.h - from .nnd text to a tensor Graph: lexer.c, parser.c (AST),
 * sema.c (names, imports, inlining, unrolling, constants, shapes -> IR). */
#ifndef NNDC_FRONTEND_H
#define NNDC_FRONTEND_H

#include "../ir/ir.h"

/* A `-D NAME=VALUE` definition: overrides a file-level const or binds a
 * symbolic dimension. */
typedef struct Define {
  const char *name;
  double value;
  int is_int;          /* VALUE was written as an integer */
} Define;

/* The number of samples in the data fed to an input (binds the symbolic
 * name of its first dimension). */
typedef struct Feed {
  const char *name;
  int64_t nsamples;
} Feed;

typedef struct BuildOpts {
  const Define *defs;  int ndefs;
  const Feed *feeds;   int nfeeds;
  int training;        /* dropout active; the train block's batch binds the first dim */
  int64_t batch;       /* > 0: overrides the train block's batch (--batch) */
} BuildOpts;

/* Parses `path` (and its imports) and builds the graph into `g`.
 * Symbolic dims are bound, in order, by: defs; feeds (first dim of an input);
 * opts->batch or the train block's batch (first dim of an input; default 32).
 * Returns 0, or -1 with errors in d (the graph is then unusable). */
int fe_compile_file(Diag *d, Graph *g, const char *path, const BuildOpts *opts);
/* Same for source text (the path names it in diagnostics; imports resolve
 * relative to the path's directory). */
int fe_compile_string(Diag *d, Graph *g, const char *path, const char *text, const BuildOpts *opts);
/* Parse only (`nndc ir --stage parsed` prints the AST back as text). */
char *fe_dump_parsed(Diag *d, Arena *a, const char *path);

#endif
