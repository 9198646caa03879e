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
  Pair opts[MAX_ITEMS];    int nopts;    /* train --opt KEY=VALUE (optimizer options) */
  const char *grid[MAX_ITEMS];  int ngrid;    /* sweep --grid KEY=V1,V2,... */
  const char *range[MAX_ITEMS]; int nrange;   /* sweep --range KEY=DIST */
  int64_t random;                      /* sweep --random N (0: not given) */
  int64_t parallel;                    /* sweep --parallel P (0: not given) */
  const char *csv;                     /* sweep --csv FILE */
  int verbose;                         /* -v */
} Cli;

/* nndc.c */
void flush_diag(Diag *d);
_Noreturn void fail(Diag *d);
double now_s(void);
void compile(Cli *c, Diag *d, Graph *g, Arena *a, int training, int64_t batch, const Feed *feeds, int nfeeds);
void write_text(const char *s);
/* run.c */
int cmd_run(Cli *c, Diag *d);
int cmd_train(Cli *c, Diag *d);
void read_arrays(Diag *d, const Pair *p, int n, Array *out);
void make_dataset(Diag *d, const Graph *g, const Pair *p, int n, const Array *raw, Dataset *ds, int same_samples);
EngineOpts engine_opts(const Cli *c);
/* sweep.c */
int cmd_sweep(Cli *c, Diag *d);
/* Sets optimizer option key (lr, momentum, weight_decay, beta1, beta2, eps,
 * alpha) of o; 0, or -1 when there is no such option. */
int optim_option(OptimCfg *o, const char *key, double v);
/* Whether the updates of tg (after pass_optim) have option key. */
int optim_has_option(const Graph *tg, const char *key);
/* bench.c */
int cmd_bench(Cli *c, Diag *d);
/* emitc.c */
int cmd_emit_c(Cli *c, Diag *d);
/* generate.c */
int cmd_generate(Cli *c, Diag *d);
/* import.c */
int cmd_import(Cli *c, Diag *d);

#endif
