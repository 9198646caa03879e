/* cli.h - what the files of the nndc command share: the parsed command line
 * and the helpers that print diagnostics and build graphs.  nndc.c parses
 * and dispatches; run.c runs and trains; bench.c measures; emitc.c writes C;
 * import.c translates ONNX models. */
#ifndef NNDC_CLI_H
#define NNDC_CLI_H

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/runtime.h"
#include "codegen/codegen.h"

#define MAX_ITEMS 64

typedef struct Pair {
  const char *name, *path;
} Pair;

/* Everything the command line said. */
typedef struct Cli {
  const char *cmd, *model;
  Define defs[MAX_ITEMS];  int ndefs;
  Pair feeds[MAX_ITEMS];   int nfeeds;   /* --feed (run) and --data (train) */
  Pair tests[MAX_ITEMS];   int ntests;   /* --test */
  const char *load, *save, *out, *stage, *emit_dir, *weights;
  int dot, grad, train, json, no_shuffle, baseline, png;
  int64_t epochs, batch, repeats;      /* -1 / 0: not given */
  int64_t save_every;                  /* train --save-every K (0: not given) */
  int resume;                          /* train --resume */
  int64_t seed;
  int has_seed, threads;
  EngineKind engine;
  const char *prompt;                  /* generate */
  int64_t tokens, top_k;               /* generate: -1 / 0: not given */
  double temperature;                  /* generate: default 1 */
} Cli;

/* nndc.c */
void flush_diag(Diag *d);
_Noreturn void fail(Diag *d);
double now_s(void);
void compile(Cli *c, Diag *d, Graph *g, Arena *a, int training, int64_t batch, const Feed *feeds, int nfeeds);
/* The training graphs (batch > 0: --batch): one per step of the train block
 * (spec 8), or the one; each after pass_autodiff and pass_optim
 * (pass_optim_split when split).  tgs has MAX_STEPS room; returns how many. */
int compile_train(Cli *c, Diag *d, Graph *tgs, Arena *a, int64_t batch, int split);
void write_text(const char *s);
/* run.c */
int cmd_run(Cli *c, Diag *d);
int cmd_train(Cli *c, Diag *d);
/* bench.c */
int cmd_bench(Cli *c, Diag *d);
/* emitc.c */
int cmd_emit_c(Cli *c, Diag *d);
/* generate.c */
int cmd_generate(Cli *c, Diag *d);
/* import.c */
int cmd_import(Cli *c, Diag *d);

#endif
