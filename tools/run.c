/* run.c - `nndc run` (one forward pass, optionally with gradients) and
 * `nndc train` (the training loop with live progress and epoch summaries). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"

/* Reads every NAME=FILE pair; the arrays keep the file's element type. */
void read_arrays(Diag *d, const Pair *p, int n, Array *out) {
  for (int i = 0; i < n; i++)
    if (data_read(d, p[i].path, &out[i])) fail(d);
}

static const Node *input_named(const Graph *g, const char *name) {
  for (int i = 0; i < g->ninputs; i++)
    if (!strcmp(g->inputs[i].name, name)) return g->inputs[i].node;
  return NULL;
}

/* Converts the arrays fed to g's inputs into a Dataset; every array must
 * feed a declared input and, with same_samples (training data), all must
 * hold the same number of samples.  `run` feeds each array whole: the
 * frontend has bound the symbolic dims from the feeds (inputs sharing one
 * must agree) and every array must then have its input's shape. */
void make_dataset(Diag *d, const Graph *g, const Pair *p, int n, const Array *raw, Dataset *ds,
                  int same_samples) {
  memset(ds, 0, sizeof *ds);
  ds->n = n;
  ds->inputs = calloc((size_t)n + 1, sizeof *ds->inputs);
  ds->arrays = calloc((size_t)n + 1, sizeof *ds->arrays);
  if (!ds->inputs || !ds->arrays) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i < n; i++) {
    const Node *in = input_named(g, p[i].name);
    if (!in) {
      diag_file_error(d, p[i].path, "the model has no input named '%s'", p[i].name);
      fail(d);
    }
    for (int k = 0; k < i; k++)
      if (ds->inputs[k] == in) {
        diag_file_error(d, p[i].path, "input '%s' is fed twice", p[i].name);
        fail(d);
      }
    ds->inputs[i] = in;
    if (data_convert(d, p[i].path, &raw[i], in, &ds->arrays[i])) fail(d);
    int64_t ns = ds->arrays[i].shape.dim[0];
    if (same_samples && i > 0 && ns != ds->nsamples) {
      diag_file_error(d, p[i].path, "holds %lld samples but '%s' (%s) holds %lld", (long long)ns,
                      p[0].name, p[0].path, (long long)ds->nsamples);
      fail(d);
    }
    ds->nsamples = ns;
  }
}

static void make_dir(Diag *d, const char *dir) {
  if (mkdir(dir, 0777) && errno != EEXIST) {
    diag_file_error(d, dir, "cannot create the output directory: %s", strerror(errno));
    fail(d);
  }
}

static void write_value(Diag *d, const char *dir, const char *name, const Node *n, const void *data) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.npy", dir, name);
  if (npy_write(d, path, n->dt == DT_I32 ? EL_I32 : EL_F32, &n->shape, data)) fail(d);
}

/* run --png: every output shaped [N, 1, H, W], [N, 3, H, W] or [N, H, W]
 * also as DIR/NAME.png, a grid of its N images (spec 9). */
static void write_images(Diag *d, const Graph *g, Engine *e, const char *dir, int quiet) {
  int n = 0;
  for (int i = 0; i < g->noutputs; i++) {
    const Node *o = g->outputs[i].node;
    const Shape *s = &o->shape;
    int img = o->dt == DT_F32 && ((s->rank == 4 && (s->dim[1] == 1 || s->dim[1] == 3)) || s->rank == 3);
    if (!img) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.png", dir, g->outputs[i].name);
    int64_t c = s->rank == 4 ? s->dim[1] : 1;
    if (png_write_grid(d, path, engine_value(e, o), s->dim[0], c, s->dim[s->rank - 2], s->dim[s->rank - 1])) fail(d);
    n++;
  }
  if (n) printf("wrote %d image%s to %s/\n", n, n == 1 ? "" : "s", dir);
  else if (!quiet) fprintf(stderr, "nndc: note: --png: no output is shaped [N, 1, H, W], [N, 3, H, W] or [N, H, W]\n");
}

/* Whether every input that node n depends on is fed. */
int computable(const Graph *g, Node *n, const uint8_t *fed) {
  uint8_t *mask = calloc((size_t)g->nnodes + 1, 1);
  if (!mask) nndc_fatal(__FILE__, __LINE__, "out of memory");
  ir_mark_deps(g, &n, 1, mask);
  int ok = 1;
  for (int i = 0; i < g->ninputs; i++)
    if (mask[g->inputs[i].node->id] && !fed[g->inputs[i].node->id]) ok = 0;
  free(mask);
  return ok;
}

EngineOpts engine_opts(const Cli *c) {
  EngineOpts o = {c->engine, c->threads, 0};
  return o;
}

void init_state(Cli *c, Diag *d, const Graph *g, ModelState *ms) {
  if (model_state_init(d, g, ms, g->train.seed)) fail(d);
  if (c->load && ckpt_load(d, c->load, g, ms->params)) fail(d);
  flush_diag(d);   /* warnings about extra params */
}

/* A root to compute and the file name it is written to. */
typedef struct Want {
  Node *node;
  const char *file;
} Want;

static int add_want(const Graph *g, Want *w, int n, Node *node, const char *file, const uint8_t *fed,
                    const char *what) {
  if (computable(g, node, fed)) {
    w[n].node = node;
    w[n].file = file;
    return n + 1;
  }
  fprintf(stderr, "nndc: note: %s '%s' skipped: it needs an input that was not fed\n", what, file);
  return n;
}

int cmd_run(Cli *c, Diag *d) {
  Array raw[MAX_ITEMS];
  memset(raw, 0, sizeof raw);
  read_arrays(d, c->feeds, c->nfeeds, raw);
  Feed feeds[MAX_ITEMS];
  int stream = 0;
  for (int i = 0; i < c->nfeeds; i++) {
    feeds[i].name = c->feeds[i].name;
    feeds[i].nsamples = raw[i].shape.rank ? raw[i].shape.dim[0] : 1;
    stream |= raw[i].et == EL_TEXT || (raw[i].shape.rank == 1 && raw[i].et != EL_F32);
  }
  Arena a;
  arena_init(&a);
  Graph g;
  compile(c, d, &g, &a, 0, 0, feeds, c->nfeeds);
  if (stream) {  /* a stream's samples are its windows: their count needs the input's L, so compile again */
    for (int i = 0; i < c->nfeeds; i++) {
      const Node *in = input_named(&g, c->feeds[i].name);
      int64_t nw = in ? data_windows(&raw[i], in) : -1;
      if (nw > 0) feeds[i].nsamples = nw;
    }
    arena_free(&a);
    arena_init(&a);
    compile(c, d, &g, &a, 0, 0, feeds, c->nfeeds);
  }
  Dataset ds;
  make_dataset(d, &g, c->feeds, c->nfeeds, raw, &ds, 0);
  for (int i = 0; i < c->nfeeds; i++) array_free(&raw[i]);
  for (int i = 0; i < ds.n; i++)
    if (ds.arrays[i].shape.dim[0] != ds.inputs[i]->shape.dim[0]) {
      diag_file_error(d, c->feeds[i].path, "its first dimension is %lld but input '%s' declares %lld",
                      (long long)ds.arrays[i].shape.dim[0], ds.inputs[i]->name,
                      (long long)ds.inputs[i]->shape.dim[0]);
      fail(d);
    }
  if (c->grad && !g.loss) {
    diag_error(d, (Loc){0}, "--grad needs a model with a loss");
    fail(d);
  }
  Node *objective = g.loss;   /* --grad-input without labels: the top logit (inspect.c) */
  if (c->grad_input) objective = grad_input_prepare(c, d, &g, &ds);
  if ((c->grad || c->grad_input) && pass_autodiff_of(d, &g, objective)) fail(d);
  uint8_t *fed = calloc((size_t)g.nnodes + 1, 1);
  for (int i = 0; i < ds.n; i++) fed[ds.inputs[i]->id] = 1;
  Want *w = calloc((size_t)(g.noutputs + g.nlosses + g.nmetrics + g.nparams + 3), sizeof *w);
  int nw = 0;
  for (int i = 0; i < g.noutputs; i++) nw = add_want(&g, w, nw, g.outputs[i].node, g.outputs[i].name, fed, "output");
  if (g.loss) nw = add_want(&g, w, nw, g.loss, "loss", fed, "loss");
  for (int i = 0; i < g.nlosses; i++) nw = add_want(&g, w, nw, g.losses[i].node, g.losses[i].name, fed, "loss");
  for (int i = 0; i < g.nmetrics; i++) nw = add_want(&g, w, nw, g.metrics[i].node, g.metrics[i].name, fed, "metric");
  if (c->grad && computable(&g, g.loss, fed))
    for (int i = 0; i < g.nparams; i++)
      w[nw++] = (Want){g.grads[i], arena_printf(&a, "grad.%s", g.params[i].name)};
  else if (c->grad) {
    diag_error(d, g.loss->loc, "--grad: the loss needs an input that was not fed");
    fail(d);
  }
  const Node *gx = c->grad_input ? input_named(&g, c->grad_input) : NULL;
  for (int i = 0; gx && i < g.ninputs; i++)
    if (g.inputs[i].node == gx) w[nw++] = (Want){g.input_grads[i], arena_printf(&a, "grad.%s", c->grad_input)};
  if (nw == 0) {
    diag_error(d, (Loc){0}, "nothing to compute: every output, loss and metric needs an input that was not fed");
    fail(d);
  }
  ModelState ms;
  init_state(c, d, &g, &ms);
  Node **roots = calloc((size_t)nw, sizeof *roots);
  for (int i = 0; i < nw; i++) roots[i] = w[i].node;
  EngineOpts eo = engine_opts(c);
  Engine *e = engine_new(d, &g, roots, nw, &eo);
  if (!e) fail(d);
  for (int i = 0; i < g.nparams; i++) engine_bind(e, g.params[i].node, ms.params[i]);
  for (int i = 0; i < ds.n; i++) engine_bind(e, ds.inputs[i], ds.arrays[i].data);
  RunCtx ctx = {c->has_seed ? c->seed : 0, 1, 0};   /* noise draws with --seed, default 0 (spec 6) */
  if (engine_run(e, d, &ctx)) fail(d);
  const char *dir = c->out ? c->out : ".";
  make_dir(d, dir);
  for (int i = 0; i < nw; i++) write_value(d, dir, w[i].file, w[i].node, engine_value(e, w[i].node));
  for (int i = 0; i < nw; i++)
    if (shape_numel(&w[i].node->shape) == 1 && w[i].node->dt == DT_F32)
      printf("%s = %.6g\n", w[i].file, *(float *)engine_value(e, w[i].node));
  printf("wrote %d arrays to %s/\n", nw, dir);
  if (c->png) write_images(d, &g, e, dir, c->grad_input != NULL);   /* quiet: a saliency map follows */
  for (int i = 0; c->png && gx && i < ds.n; i++)
    if (ds.inputs[i] == gx) grad_input_png(d, gx, ds.arrays[i].data, engine_value(e, w[nw - 1].node), dir);
  engine_free(e);
  model_state_free(&g, &ms);
  dataset_free(&ds);
  free(roots);
  free(w);
  free(fed);
  arena_free(&a);
  return 0;
}

/* ------------------------------------------------------------------ train */

typedef struct Show {
  const Graph *g;      /* the first step's graph: metrics, and the steps' names */
  int nsteps;          /* several train steps: each loss is shown by name */
  int tty;
  int64_t last_line;   /* batch of the last plain progress line */
  TrainLog *log;       /* --log, --plot (trainlog.c); NULL: neither */
} Show;

static void fmt_time(double s, char *buf, size_t n) {
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* "loss 0.1234", or with several steps "d_loss 0.6931 g_loss 0.6931". */
static void fmt_losses(const Show *s, double loss, const double *step_losses, char *buf, size_t n) {
  if (!step_losses) {
    snprintf(buf, n, "loss %.4f", loss);
    return;
  }
  size_t at = 0;
  for (int k = 0; k < s->nsteps && at < n; k++)
    at += (size_t)snprintf(buf + at, n - at, "%s%s %.4f", k ? " " : "", s->g->train.steps[k].loss, step_losses[k]);
}

/* Decimals for a rate: a model that trains a few samples a second shows them. */
static int sps_digits(double sps) { return sps < 10 ? 2 : 0; }

static void on_progress(void *user, const TrainProgress *p) {
  Show *s = user;
  trainlog_step(s->log, p);
  char eta[32], loss[256];
  fmt_time(p->eta_s, eta, sizeof eta);
  fmt_losses(s, p->loss, p->step_losses, loss, sizeof loss);
  if (s->tty) {
    fprintf(stderr, "\r\033[Kepoch %lld/%lld  batch %lld/%lld  %s  %.*f samples/s  ETA %s", (long long)p->epoch,
            (long long)p->epochs, (long long)p->batch, (long long)p->nbatches, loss, sps_digits(p->samples_per_s),
            p->samples_per_s, eta);
    fflush(stderr);
    return;
  }
  int64_t every = p->nbatches / 4 > 0 ? p->nbatches / 4 : 1;
  if (p->batch % every == 0 && p->batch != p->nbatches)
    fprintf(stderr, "epoch %lld/%lld  batch %lld/%lld  %s  %.*f samples/s  ETA %s\n", (long long)p->epoch,
            (long long)p->epochs, (long long)p->batch, (long long)p->nbatches, loss, sps_digits(p->samples_per_s),
            p->samples_per_s, eta);
}

static void on_epoch(void *user, const EpochReport *r) {
  Show *s = user;
  trainlog_epoch(s->log, r);
  if (s->tty) fputs("\r\033[K", stderr);
  char loss[256];
  fmt_losses(s, r->train_loss, r->step_losses, loss, sizeof loss);
  printf("epoch %lld/%lld: train %s", (long long)r->epoch, (long long)r->epochs, loss);
  for (int i = 0; i < s->g->nmetrics; i++) printf(" %s %.4f", s->g->metrics[i].name, r->train_metrics[i]);
  if (r->has_test) {
    printf(" |");
    if (!s->nsteps) printf(" test loss %.4f", r->test_loss);  /* steps: the eval graph has no unnamed loss */
    for (int i = 0; i < s->g->nmetrics; i++) printf(" %s %.4f", s->g->metrics[i].name, r->test_metrics[i]);
  }
  if (r->comm_bytes)
    printf("  (%.1f s; allreduce %.2f MB per step, %.2f s)\n", r->seconds, (double)r->comm_bytes / 1e6,
           r->comm_seconds);
  else
    printf("  (%.1f s)\n", r->seconds);
  fflush(stdout);
}

int cmd_train(Cli *c, Diag *d) {
  if (c->nfeeds == 0) {
    fputs("nndc: usage error: train needs --data NAME=FILE for the model's inputs\n", stderr);
    return 2;
  }
  Array raw[MAX_ITEMS], rawt[MAX_ITEMS];
  read_arrays(d, c->feeds, c->nfeeds, raw);
  read_arrays(d, c->tests, c->ntests, rawt);
  Arena a;
  arena_init(&a);
  Graph tgs[MAX_STEPS], eg, etail, *tgp[MAX_STEPS];
  int procs = comm_size(), rank0 = comm_rank() == 0;
  int nsteps = compile_train(c, d, tgs, &a, c->batch, procs > 1);
  for (int k = 0; k < nsteps; k++) tgp[k] = &tgs[k];
  Dataset train, test;
  make_dataset(d, &tgs[0], c->feeds, c->nfeeds, raw, &train, 1);
  Graph tg = nsteps > 1 ? graph_steps_union((const Graph *const *)tgp, nsteps) : tgs[0];   /* params and every step's state */
  Graph *egp = NULL, *etp = NULL;
  if (c->ntests) {
    int64_t ntest = rawt[0].shape.rank ? rawt[0].shape.dim[0] : 1;
    int64_t eb = ntest < 1000 ? ntest : 1000;
    compile(c, d, &eg, &a, 0, eb, NULL, 0);
    make_dataset(d, &eg, c->tests, c->ntests, rawt, &test, 1);
    egp = &eg;
    int64_t rem = test.nsamples % eb;
    if (rem && eg.ninputs && eg.inputs[0].node->shape.dim[0] == eb) {
      compile(c, d, &etail, &a, 0, rem, NULL, 0);
      etp = &etail;
    }
  }
  for (int i = 0; i < c->nfeeds; i++) array_free(&raw[i]);
  for (int i = 0; i < c->ntests; i++) array_free(&rawt[i]);
  ModelState ms;
  if (model_state_init(d, &tg, &ms, tg.train.seed)) fail(d);
  if (c->load && rank0 &&   /* the other processes get rank 0's state */
      (c->resume ? ckpt_load_train(d, c->load, &tg, &ms) : ckpt_load(d, c->load, &tg, ms.params)))
    fail(d);
  flush_diag(d);   /* warnings about extra params */
  Show show = {&tg, nsteps > 1 ? nsteps : 0, isatty(2) && rank0, 0, trainlog_open(c, d, &tg)};
  TrainOpts o = {engine_opts(c), c->epochs >= 0 ? c->epochs : tg.train.epochs,
                 c->no_shuffle ? 0 : tg.train.shuffle, tg.train.seed, on_progress, on_epoch, &show,
                 c->save, c->save_every, 0, NULL, 0, NULL};
  if (rank0) {
    printf("training %s: %lld samples, batch %lld", c->model, (long long)train.nsamples,
           (long long)tg.inputs[0].node->shape.dim[0]);
    if (procs > 1) printf(" x %d processes", procs);
    printf(", %lld epochs, %s engine", (long long)o.epochs, c->engine == ENGINE_JIT ? "jit" : "interp");
    if (ms.resumed) printf(", resuming after step %lld (epoch %lld)", (long long)ms.step, (long long)ms.epoch);
    printf("\n");
    fflush(stdout);
  }
  int rc = rt_train_steps(d, tgp, nsteps, egp, etp, &ms, &train, c->ntests ? &test : NULL, &o);
  trainlog_close(show.log);
  if (show.tty) fputs("\r\033[K", stderr);
  if (rc) fail(d);
  size_t sl = c->save ? strlen(c->save) : 0;
  if (c->save && rank0 && sl >= 12 && !strcmp(c->save + sl - 12, ".safetensors")) {
    if (ckpt_save_train(d, c->save, &tg, &ms, &ms.key)) fail(d);
    printf("saved %d params and the optimizer state (step %lld) to %s\n", tg.nparams, (long long)ms.step, c->save);
  } else if (c->save && rank0) {
    if (ckpt_save(d, c->save, &tg, ms.params)) fail(d);
    printf("saved %d params to %s\n", tg.nparams, c->save);
  }
  model_state_free(&tg, &ms);
  dataset_free(&train);
  if (c->ntests) dataset_free(&test);
  arena_free(&a);
  return 0;
}
