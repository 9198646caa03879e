/* cli.h - what the files of the nndc command share: the parsed command line
 * and the helpers that print diagnostics and build graphs.  nndc.c parses
 * and dispatches; run.c runs and trains; bench.c measures; emitc.c writes C;
 * import.c translates ONNX models; export.c writes them. */
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
  const char *grad_input;              /* run --grad-input NAME, attack --grad-input NAME */
  const char *eps;                     /* attack --eps E1,E2,... (NULL: 0,0.05,0.1,0.2) */
  const char *log, *plot;              /* train --log F.csv, --plot F.svg */
  int64_t log_every;                   /* train --log-every K (0: not given) */
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
/* The training graphs (batch > 0: --batch): one per step of the train block
 * (spec 8), or the one; each after pass_autodiff and pass_optim
 * (pass_optim_split when split).  tgs has MAX_STEPS room; returns how many. */
int compile_train(Cli *c, Diag *d, Graph *tgs, Arena *a, int64_t batch, int split);
void write_text(const char *s);
/* run.c */
int cmd_run(Cli *c, Diag *d);
int cmd_train(Cli *c, Diag *d);
void read_arrays(Diag *d, const Pair *p, int n, Array *out);
void make_dataset(Diag *d, const Graph *g, const Pair *p, int n, const Array *raw, Dataset *ds, int same_samples);
int computable(const Graph *g, Node *n, const uint8_t *fed);
EngineOpts engine_opts(const Cli *c);
void init_state(Cli *c, Diag *d, const Graph *g, ModelState *ms);
/* inspect.c */
/* Marks input `name` of g as a differentiation target (Node.wrt); fails unless it is an f32 input. */
Node *mark_target(Diag *d, Graph *g, const char *name);
Node *grad_input_prepare(Cli *c, Diag *d, Graph *g, const Dataset *ds);
void grad_input_png(Diag *d, const Node *x, const float *xv, const float *gv, const char *dir);
int cmd_attack(Cli *c, Diag *d);
/* trainlog.c */
typedef struct TrainLog TrainLog;
/* NULL when neither --log nor --plot is given, or not on rank 0; the others accept NULL. */
TrainLog *trainlog_open(Cli *c, Diag *d, const Graph *g);
void trainlog_step(TrainLog *l, const TrainProgress *p);
void trainlog_epoch(TrainLog *l, const EpochReport *r);
void trainlog_close(TrainLog *l);
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
/* export.c */
int cmd_export(Cli *c, Diag *d);

#endif
