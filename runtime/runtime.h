/* runtime.h - what runs a compiled model: parameter initializers (init.c),
 * data files (npy.c, idx.c, safetensors.c), batches (data.c), the engine that
 * executes a graph (engine.c: the reference interpreter of ir/ or the JIT'ed
 * program of codegen/jit.c), checkpoints (ckpt.c) and the training loop
 * (train.c).  Nothing here prints or exits: errors go to the Diag. */
#ifndef NNDC_RUNTIME_H
#define NNDC_RUNTIME_H

#include <signal.h>
#include <stdio.h>
#include "../ir/ir.h"
#include "../codegen/codegen.h"   /* KernelProf */

/* ----------------------------------------------------------------- init.c */

/* Initializers on the counter-based RNG of support.h (rng_uniform, rng_normal).
 * Fills out[numel] for PARAM p by its Init (spec 7, PyTorch fan-in/fan-out). */
void rng_init_param(const Node *p, uint64_t seed, float *out);
/* Fan-in and fan-out as torch.nn.init computes them ([in,out] matrices: fan_in = in). */
void rng_fans(const Shape *s, double *fan_in, double *fan_out);

/* ------------------------------------------------- npy.c, idx.c, data.c */

typedef enum { EL_F32, EL_I32, EL_I64, EL_U8, EL_TEXT, EL_U16 } ElemType;  /* EL_TEXT: a .txt file's bytes, [n] */

/* An n-d array read from or written to a data file (C order). */
typedef struct Array {
  ElemType et;
  Shape shape;
  void *data;          /* malloc'd, owned; numel * elem_size bytes */
} Array;

size_t el_size(ElemType et);
void array_free(Array *a);
/* .npy: little-endian f4, i4, i8, u2, u1, C order.  Truncated files, header
 * lengths that lie, absurd shapes and unsupported dtypes are errors. */
int npy_read(Diag *d, const char *path, Array *out);
int npy_read_mem(Diag *d, const char *name, const uint8_t *buf, size_t n, Array *out);
/* Atomic: temporary file, fsync, rename. */
int npy_write(Diag *d, const char *path, ElemType et, const Shape *s, const void *data);
/* Writes part[0..nparts) (len[i] bytes each) to path atomically: into
 * path.tmp.<pid>, fsync, rename over path; on failure the temporary is
 * removed, the previous file is unchanged, and -1 is returned after reporting. */
int rt_write_atomic(Diag *d, const char *path, const void *const *part, const size_t *len, int nparts);
/* fsync of a directory (0, or -1 with errno), and of the directory holding
 * path (best effort), so that a rename into it is durable (npy.c, ckpt.c). */
int rt_fsync_dir(const char *dir);
void rt_fsync_parent(const char *path);
/* The n images of v [n, c, h, w] (c 1 or 3, values in [0, 1]) as one PNG
 * grid, atomically (png.c); 0, or -1 after reporting. */
int png_write_grid(Diag *d, const char *path, const float *v, int64_t n, int64_t c, int64_t h, int64_t w);
/* Line charts as SVG (plot.c): panels stacked vertically, each with its own
 * axes and legend; written atomically.  0, or -1 after reporting. */
typedef struct PlotSeries {
  const char *label, *color;   /* legend text; an SVG colour ("#1f77b4") */
  const double *x, *y;         /* [n] points; non-finite ones are skipped */
  int n;
  int markers;                 /* 1: a circle at each point (and a thicker line) */
} PlotSeries;
typedef struct PlotPanel {
  const char *title, *xlabel;
  const PlotSeries *series;
  int nseries;
} PlotPanel;
int plot_write_svg(Diag *d, const char *path, const char *title, const PlotPanel *panels, int npanels);
/* Reads a whole regular file into a malloc'd buffer (caller frees); NULL after reporting. */
uint8_t *rt_read_file(Diag *d, const char *path, size_t *n);
/* IDX (MNIST format), optionally gzip-compressed (by content, not name). */
int idx_read(Diag *d, const char *path, Array *out);
int idx_read_mem(Diag *d, const char *name, const uint8_t *buf, size_t n, Array *out);
/* By suffix: .npy, .txt (the bytes as EL_TEXT [n]), else IDX (.gz or raw). */
int data_read(Diag *d, const char *path, Array *out);
/* Converts data fed to `input` (spec 9): per-sample element count must match;
 * u1 -> f32 divides by 255; integer -> i32 by value (range checked);
 * f32 -> i32 only for integral values.  out is [nsamples, input dims 1..].
 * Text fed to an i32 [N, L] input (L >= 2): byte tokens, sample k the
 * window bytes[k(L-1) : k(L-1) + L] (consecutive windows share a byte);
 * a 1-D integer array (a stream of token ids) fed to one is windowed alike. */
int data_convert(Diag *d, const char *path, const Array *in, const Node *input, Array *out);
/* The number of windows data_convert makes of `in` for `input` (0: too
 * short for one), or -1 if `in` is not a stream of tokens for it. */
int64_t data_windows(const Array *in, const Node *input);

/* A named set of arrays fed to a model's inputs, all with the same sample count. */
typedef struct Dataset {
  int n;               /* arrays */
  const Node **inputs; /* [n] the INPUT each feeds */
  Array *arrays;       /* [n] converted to the input's dtype */
  int64_t nsamples;
} Dataset;
void dataset_free(Dataset *ds);
/* Shuffled sample order for an epoch: a permutation of [0, n) from (seed, epoch). */
void data_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm);
/* Copies samples perm[first .. first+batch) of array a into dst (one batch). */
void data_gather(const Array *a, const int64_t *perm, int64_t first, int64_t batch, void *dst);

/* --------------------------------------------------------- safetensors.c */

/* A named f32 tensor as written to or read from a parameter set. */
typedef struct NamedTensor {
  const char *name;
  Shape shape;
  float *data;
} NamedTensor;
int st_write(Diag *d, const char *path, const NamedTensor *t, int n);  /* atomic */
/* The header's "__metadata__": string keys to string values. */
typedef struct StMeta {
  char *key, *value;
} StMeta;
int st_write_meta(Diag *d, const char *path, const NamedTensor *t, int n, const StMeta *meta, int nmeta);
/* st_read, and the metadata's string pairs (malloc'd: st_meta_free) when meta != NULL. */
int st_read_meta(Diag *d, const char *path, NamedTensor **out, int *n, StMeta **meta, int *nmeta);
int st_read_mem_meta(Diag *d, const char *name, const uint8_t *buf, size_t len, NamedTensor **out, int *n,
                     StMeta **meta, int *nmeta);
void st_meta_free(StMeta *m, int n);
/* Reads every tensor (F32 only); names and data malloc'd: free with st_free. */
int st_read(Diag *d, const char *path, NamedTensor **out, int *n);
int st_read_mem(Diag *d, const char *name, const uint8_t *buf, size_t len, NamedTensor **out, int *n);
void st_free(NamedTensor *t, int n);

/* ------------------------------------------------------------- engine.c */

typedef enum { ENGINE_JIT, ENGINE_INTERP } EngineKind;

typedef struct EngineOpts {
  EngineKind kind;
  int threads;         /* 0 = all cores */
  int profile;         /* collect per-kernel times (bench) */
} EngineOpts;

typedef struct Engine Engine;
/* Compiles g to compute roots[0..nroots) (their values stay readable after a
 * run); every F_UPDATE node among the roots runs for its side effects.
 * Returns NULL after reporting.  The graph must outlive the engine. */
Engine *engine_new(Diag *d, Graph *g, Node *const *roots, int nroots, const EngineOpts *o);
/* Binds an INPUT, PARAM or STATE leaf to caller memory (borrowed). */
void  engine_bind(Engine *e, const Node *leaf, void *data);
/* Another engine running o's compiled program (no compilation), with its own
 * memory and no bindings; o must outlive it.  threads: 0 = o's (JIT). */
Engine *engine_clone(const Engine *o, int threads);
/* Sets optimizer option `name` ("lr", "momentum", "weight_decay", "beta1",
 * "beta2", "eps", "alpha": ops.def's attribute names of the OPT_* updates)
 * of update upd (NULL: of every update that has it) for the next runs; the
 * program is not recompiled (codegen/jit.c: jit_set_hyper).  The
 * interpreter's values are its graph's attrs, shared by the engines of that
 * graph.  Returns the number of values set, or -1 when v would make zero a
 * momentum or weight_decay compiled nonzero (or the other way round). */
int   engine_set_hyper(Engine *e, const Node *upd, const char *name, double v);
int   engine_run(Engine *e, Diag *d, const RunCtx *ctx);
/* Data parallel: this process computes slice `part` of the global batch, and
 * noise and dropout draw their element i as part * numel + i, as one process
 * with the whole batch would (Interp.part; 0 by default). */
void  engine_set_part(Engine *e, int64_t part);
/* Overlap (the JIT; the interpreter never calls it): after(user, i) runs as
 * soon as step i of a run is done, and a root n's value is final after step
 * engine_ready_after(e, n) (-1: only once the run is done). */
void  engine_set_hook(Engine *e, void (*after)(void *user, int kernel), void *user);
int   engine_ready_after(Engine *e, const Node *n);
void *engine_value(Engine *e, const Node *n);  /* a root's or leaf's data after a run */
/* Profile (codegen.h's KernelProf) and timing of compilation (NULL/0 for the interpreter). */
const KernelProf *engine_profile(Engine *e, int *n);
double engine_compile_seconds(Engine *e);
size_t engine_peak_bytes(Engine *e);
void  engine_free(Engine *e);

/* ----------------------------------------------------------------- comm.c */

/* The processes of a data-parallel run: MPI_COMM_WORLD when built with MPI
 * and started by a launcher, else one process (every collective a no-op).
 * Collectives return 0, or -1 after reporting. */
#define COMM_BUCKET (1 << 22)        /* floats per MPI_Allreduce call (16 MiB) */
int  comm_launched(void);            /* started by an MPI launcher (environment) */
int  comm_init(Diag *d, int *argc, char ***argv);
void comm_finalize(void);
void comm_abort(int code);           /* MPI_Abort of the whole job (several processes) */
int  comm_rank(void);
int  comm_size(void);
int  comm_allreduce_f32(Diag *d, float *buf, int64_t n);     /* sum in place, in buckets */
int  comm_allreduce_f64(Diag *d, double *buf, int n);        /* sum in place */
int  comm_bcast(Diag *d, void *buf, int64_t bytes);          /* rank 0's bytes to every rank */
int  comm_allgather_u64(Diag *d, const uint64_t *mine, int n, uint64_t *all);
/* Nonblocking sums in place (MPI_Iallreduce), up to COMM_MAX_PENDING at a
 * time: comm_start_sum_f32 starts one, comm_progress lets the pending ones
 * advance (call it often), comm_wait_all finishes them all. */
#define COMM_MAX_PENDING 64
int  comm_start_sum_f32(Diag *d, float *buf, int64_t n);
void comm_progress(void);
int  comm_wait_all(Diag *d);
/* Fails on every rank when a rank's vals differ from rank 0's (rank 0 reports
 * the first, naming what[i] and the rank); comm_agreed_failure() is then 1:
 * every process stops there, so none needs to abort the others. */
int  comm_check_same(Diag *d, const uint64_t *vals, const char *const *what, int n);
int  comm_agreed_failure(void);

/* ---------------------------------------------------------------- train.c */

/* What a training run's data order depends on: a resumed run must match it. */
typedef struct RunKey {
  uint64_t seed;       /* shuffling and noise */
  int64_t batch;       /* samples per step and process */
  int64_t samples;     /* training samples */
  int64_t ranks;       /* processes (MPI) */
  int shuffle;
} RunKey;

/* Model state owned by the runtime: one buffer per param and per optimizer
 * state, and where training stands (saved in a training checkpoint). */
typedef struct ModelState {
  float **params;      /* [g->nparams] numel floats each */
  float **states;      /* [g->nstates] */
  int64_t step;        /* optimizer steps taken */
  int64_t epoch;       /* the epoch of the last step taken (1-based; 0: none yet) */
  int64_t batch;       /* steps taken in that epoch */
  double *sums;        /* [nsums]: that epoch's sum of batch losses (one per train step), then of each metric */
  int nsums;           /* max(1, g->train.nsteps) + g->nmetrics */
  int resumed;         /* loaded by ckpt_load_train: key holds the run it came from */
  RunKey key;
} ModelState;

int  model_state_init(Diag *d, const Graph *g, ModelState *ms, uint64_t seed); /* params by rng_init_param, states 0 */
void model_state_free(const Graph *g, ModelState *ms);
/* Parameter sets: a directory of <param>.npy or one .safetensors file (by
 * suffix).  Save is atomic as a whole; load checks names, shapes and dtypes
 * (a missing or misshapen param is an error naming it, an extra one a warning;
 * the optimizer state of a training checkpoint is skipped without one). */
int ckpt_save(Diag *d, const char *path, const Graph *g, float *const *params);
int ckpt_load(Diag *d, const char *path, const Graph *g, float **params);
/* Training checkpoints (.safetensors only): the params, every optimizer
 * state as "optim/<state name>", and in the metadata the counters of ms and
 * the RunKey.  ckpt_load_train checks and loads all of it into ms (params,
 * states, counters, key; resumed = 1), or changes nothing and reports. */
#define CKPT_STATE_PREFIX "optim/"
int ckpt_save_train(Diag *d, const char *path, const Graph *g, const ModelState *ms, const RunKey *key);
int ckpt_load_train(Diag *d, const char *path, const Graph *g, ModelState *ms);

/* Progress of a training run, reported after every batch. */
typedef struct TrainProgress {
  int64_t epoch, epochs;       /* 1-based epoch */
  int64_t batch, nbatches;     /* 1-based batch within the epoch */
  double loss;                 /* running mean of this epoch's batch losses */
  double samples_per_s;        /* this epoch so far */
  double eta_s;                /* seconds left for the whole run */
  int64_t step;                /* optimizer steps taken in all (resumed runs count on) */
  const double *metrics;       /* [g->nmetrics] running means of this epoch's batch metrics */
  const double *step_losses;   /* several train steps: [nsteps] running means of each step's loss */
  int nsteps;                  /* 0: one loss */
} TrainProgress;

/* The summary of one epoch: train loss and metrics (means over its batches),
 * and test loss and metrics (means over every test sample) when test data is given. */
typedef struct EpochReport {
  int64_t epoch, epochs;
  double train_loss, test_loss;
  const double *train_metrics, *test_metrics;  /* [g->nmetrics] */
  int has_test;
  double seconds;
  double comm_seconds;         /* several processes: time in the gradient MPI_Allreduce this epoch */
  int64_t comm_bytes;          /* bytes each process reduces per step (0: one process) */
  const double *step_losses;   /* several train steps: [nsteps] mean train loss of each */
  int nsteps;                  /* 0: one loss (train_loss) */
} EpochReport;

/* The compiled programs of a training run: the step of tg, the evaluation
 * of eg and of etail (NULL when that graph is NULL).  A sweep compiles them
 * once per shape set (rt_train_engines) and gives each trial clones
 * (engine_clone: no compilation) with its own optimizer options
 * (engine_set_hyper). */
typedef struct TrainEngines {
  Engine *step, *eval, *etail;
} TrainEngines;
/* Compiles the engines rt_train would for tg (from pass_optim, not split), eg
 * and etail (each may be NULL: no engine); 0, or -1 after reporting. */
int  rt_train_engines(Diag *d, Graph *tg, Graph *eg, Graph *etail, const EngineOpts *eo, TrainEngines *out);
void rt_train_engines_clone(const TrainEngines *o, int threads, TrainEngines *out);
void rt_train_engines_free(TrainEngines *t);

typedef struct TrainOpts {
  EngineOpts engine;
  int64_t epochs;
  int shuffle;
  uint64_t seed;
  void (*progress)(void *user, const TrainProgress *p);   /* may be NULL */
  void (*epoch_done)(void *user, const EpochReport *r);   /* may be NULL */
  void *user;
  const char *save_path;       /* training checkpoint every save_every steps (NULL: none) */
  int64_t save_every;          /* 0: never */
  int64_t max_steps;           /* stop once ms->step reaches it, as if interrupted (0: no limit) */
  const TrainEngines *engines; /* NULL: compile; else run on these (borrowed; built for these graphs) */
  int local;                   /* 1: this process alone, even under MPI (the trials of a sweep) */
  const volatile sig_atomic_t *stop;  /* non-NULL: stop between steps once *stop (Ctrl-C), as max_steps */
} TrainOpts;

/* Trains `tg` (built with training=1 and the train batch, after pass_autodiff
 * and pass_optim) on `train`, evaluating `eg` (built with training=0; its
 * batch may differ; `etail` for the last partial batch, may be NULL) on `test` after each epoch when test != NULL.  Params
 * and optimizer state live in ms.  A NaN or Inf loss stops training with an
 * error naming the first op (and its source line) that produced a
 * non-finite value.  When ms->resumed, training goes on after the position
 * ms holds (step, epoch, batch, sums), which must come from a run with the
 * same RunKey; the result is bit for bit that of an uninterrupted run.
 * Epochs run up to o->epochs in total.  Returns 0 or -1. */
int rt_train(Diag *d, Graph *tg, Graph *eg, Graph *etail, ModelState *ms,
             const Dataset *train, const Dataset *test, const TrainOpts *o);
/* Several train steps (spec 8): tgs[k] is the graph of step k + 1
 * (graph_use_step, then pass_autodiff and pass_optim); every iteration runs
 * them in order on the same batch, step k drawing its noise with
 * rng_step_seed(seed, k); their metrics are those of step 1's forward pass.
 * ms holds the params and every step's optimizer state, as made for the
 * graph graph_steps_union returns.  rt_train is the case of one step. */
int rt_train_steps(Diag *d, Graph *const *tgs, int nsteps, Graph *eg, Graph *etail, ModelState *ms,
                   const Dataset *train, const Dataset *test, const TrainOpts *o);
/* Evaluates loss and metrics of g (training=0) over every sample of ds,
 * batch by batch; a final partial batch runs on `tail` (built with N = the
 * remainder) when non-NULL, else it is dropped.  loss/metrics are means over
 * the samples evaluated. */
int rt_evaluate(Diag *d, Graph *g, Graph *tail, ModelState *ms, const Dataset *ds,
                const EngineOpts *eo, double *loss, double *metrics);

#endif
