/* train.c - the training loop: batches from a Dataset, one compiled training
 * step (forward, backward, update) per batch, per-epoch evaluation on test
 * data, progress reports through callbacks, and the diagnosis of a loss that
 * turns NaN or Inf.  Params and optimizer state are the caller's ModelState;
 * the loop never prints (the CLI renders progress). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const Node *find_input(const Graph *g, const char *name) {
  for (int i = 0; i < g->ninputs; i++)
    if (!strcmp(g->inputs[i].name, name)) return g->inputs[i].node;
  return NULL;
}

/* Per-input batch buffers for one graph: [ds->n] of batch * sample bytes. */
typedef struct Batch {
  int n;
  void **buf;
  const Node **node;   /* the graph's INPUT fed by ds->arrays[i] (NULL if unused) */
  int64_t size;        /* samples per batch */
} Batch;

static int batch_init(Diag *d, Batch *b, const Graph *g, const Dataset *ds) {
  b->n = ds->n;
  b->buf = calloc((size_t)ds->n, sizeof *b->buf);
  b->node = calloc((size_t)ds->n, sizeof *b->node);
  if (!b->buf || !b->node) nndc_fatal(__FILE__, __LINE__, "out of memory");
  b->size = 0;
  for (int i = 0; i < ds->n; i++) {
    const Node *in = find_input(g, ds->inputs[i]->name);
    b->node[i] = in;
    if (!in) continue;
    b->size = in->shape.dim[0];
    b->buf[i] = malloc((size_t)shape_numel(&in->shape) * 4);
    if (!b->buf[i]) {
      diag_error(d, in->loc, "out of memory for a batch of input '%s'", in->name);
      return -1;
    }
  }
  return 0;
}

static void batch_free(Batch *b) {
  for (int i = 0; i < b->n; i++) free(b->buf[i]);
  free(b->buf);
  free(b->node);
}

static void batch_fill(Batch *b, const Dataset *ds, const int64_t *perm, int64_t first) {
  for (int i = 0; i < b->n; i++)
    if (b->node[i]) data_gather(&ds->arrays[i], perm, first, b->size, b->buf[i]);
}

/* Checks every input the roots need is fed by the dataset. */
static int check_fed(Diag *d, const Graph *g, Node *const *roots, int nroots, const Batch *b) {
  uint8_t *mask = calloc((size_t)g->nnodes + 1, 1);
  if (!mask) nndc_fatal(__FILE__, __LINE__, "out of memory");
  ir_mark_deps(g, roots, nroots, mask);
  int bad = 0;
  for (int i = 0; i < g->ninputs; i++) {
    const Node *in = g->inputs[i].node;
    if (!mask[in->id]) continue;
    int fed = 0;
    for (int k = 0; k < b->n; k++) fed |= b->node[k] == in;
    if (!fed) {
      diag_error(d, in->loc, "input '%s' is needed but no data was given for it", in->name);
      bad = 1;
    }
  }
  free(mask);
  return bad ? -1 : 0;
}

/* Binds params (by declaration index: both graphs come from one source),
 * optimizer states and batch buffers. */
static void bind_all(Engine *e, const Graph *g, ModelState *ms, const Batch *b, int states) {
  for (int i = 0; i < g->nparams; i++) engine_bind(e, g->params[i].node, ms->params[i]);
  for (int i = 0; states && i < g->nstates; i++) engine_bind(e, g->states[i].node, ms->states[i]);
  for (int i = 0; i < b->n; i++)
    if (b->node[i]) engine_bind(e, b->node[i], b->buf[i]);
}

/* Evaluation of a graph's loss and metrics on consecutive samples. */
typedef struct Eval {
  Engine *e;
  Batch b;
  Graph *g;
} Eval;

static int eval_open(Diag *d, Eval *ev, Graph *g, ModelState *ms, const Dataset *ds, const EngineOpts *eo) {
  memset(ev, 0, sizeof *ev);
  ev->g = g;
  Node *roots[64];
  int n = 0;
  if (g->loss) roots[n++] = g->loss;
  for (int i = 0; i < g->nmetrics && n < 64; i++) roots[n++] = g->metrics[i].node;
  if (batch_init(d, &ev->b, g, ds) || check_fed(d, g, roots, n, &ev->b)) return -1;
  ev->e = engine_new(d, g, roots, n, eo);
  if (!ev->e) return -1;
  bind_all(ev->e, g, ms, &ev->b, 0);
  return 0;
}

static void eval_close(Eval *ev) {
  engine_free(ev->e);
  batch_free(&ev->b);
}

/* Runs one batch starting at sample `first`; adds count-weighted sums. */
static int eval_batch(Diag *d, Eval *ev, const Dataset *ds, const int64_t *perm, int64_t first,
                      double *loss, double *metrics) {
  batch_fill(&ev->b, ds, perm, first);
  RunCtx ctx = {0, 1, 0};
  if (engine_run(ev->e, d, &ctx)) return -1;
  double w = (double)ev->b.size;
  if (ev->g->loss) *loss += w * *(float *)engine_value(ev->e, ev->g->loss);
  for (int i = 0; i < ev->g->nmetrics; i++)
    metrics[i] += w * *(float *)engine_value(ev->e, ev->g->metrics[i].node);
  return 0;
}

int rt_evaluate(Diag *d, Graph *g, Graph *tail, ModelState *ms, const Dataset *ds,
                const EngineOpts *eo, double *loss, double *metrics) {
  int64_t *perm = malloc((size_t)ds->nsamples * sizeof *perm);
  if (!perm) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int64_t i = 0; i < ds->nsamples; i++) perm[i] = i;
  *loss = 0;
  for (int i = 0; i < g->nmetrics; i++) metrics[i] = 0;
  Eval ev, et;
  memset(&et, 0, sizeof et);
  int rc = eval_open(d, &ev, g, ms, ds, eo);
  int64_t bs = ev.b.size, done = 0;
  for (int64_t first = 0; !rc && bs > 0 && first + bs <= ds->nsamples; first += bs, done += bs)
    rc = eval_batch(d, &ev, ds, perm, first, loss, metrics);
  if (!rc && tail && done < ds->nsamples) {
    rc = eval_open(d, &et, tail, ms, ds, eo);
    if (!rc && et.b.size != ds->nsamples - done) {
      diag_error(d, (Loc){0}, "internal: tail batch %lld != %lld", (long long)et.b.size,
                 (long long)(ds->nsamples - done));
      rc = -1;
    }
    if (!rc) rc = eval_batch(d, &et, ds, perm, done, loss, metrics);
    if (!rc) done = ds->nsamples;
    if (et.e || et.b.buf) eval_close(&et);
  }
  eval_close(&ev);
  free(perm);
  if (rc) return -1;
  if (done == 0) {
    diag_error(d, (Loc){0}, "no complete batch of %lld samples in %lld test samples", (long long)bs,
               (long long)ds->nsamples);
    return -1;
  }
  *loss /= (double)done;
  for (int i = 0; i < g->nmetrics; i++) metrics[i] /= (double)done;
  return 0;
}

/* After a non-finite loss: re-runs the batch's forward pass in the reference
 * interpreter on the params from before the step and reports the first op
 * whose f32 result is non-finite although its operands are finite. */
static void diagnose_nonfinite(Diag *d, Graph *g, float **params, const Batch *b,
                               const RunCtx *ctx, double loss, int64_t epoch, int64_t batch) {
  Interp it;
  interp_init(&it, g);
  uint8_t *want = calloc((size_t)g->nnodes + 1, 1);
  if (!want) nndc_fatal(__FILE__, __LINE__, "out of memory");
  ir_mark_deps(g, &g->loss, 1, want);
  for (int i = 0; i < g->nparams; i++) it.val[g->params[i].node->id] = params[i];
  for (int i = 0; i < b->n; i++)
    if (b->node[i]) it.val[b->node[i]->id] = b->buf[i];
  const Node *culprit = NULL;
  if (interp_run(&it, d, want, ctx) == 0) {
    for (int i = 0; i < g->nnodes && !culprit; i++) {
      const Node *n = g->nodes[i];
      if (!want[i] || n->dt != DT_F32 || !it.val[i]) continue;
      const float *v = it.val[i];
      int64_t m = shape_numel(&n->shape);
      for (int64_t k = 0; k < m; k++)
        if (!isfinite(v[k])) {
          culprit = n;
          break;
        }
    }
  }
  const char *what = isnan(loss) ? "nan" : "inf";
  if (culprit)
    diag_error(d, culprit->loc,
               "loss became %s at epoch %lld, batch %lld: the first non-finite value comes from '%s'",
               what, (long long)epoch, (long long)batch, op_info[culprit->op].name);
  else
    diag_error(d, g->loss ? g->loss->loc : (Loc){0}, "loss became %s at epoch %lld, batch %lld", what,
               (long long)epoch, (long long)batch);
  interp_free(&it);
  free(want);
}

/* The training step engine and what it needs per batch. */
typedef struct Stepper {
  Engine *e;
  Batch b;
  float **snapshot;    /* [nparams] params before the step, for diagnosis */
} Stepper;

static int stepper_open(Diag *d, Stepper *s, Graph *tg, ModelState *ms, const Dataset *ds,
                        const EngineOpts *eo) {
  memset(s, 0, sizeof *s);
  int n = 0, cap = 1 + tg->nmetrics + tg->nupdates;
  Node **roots = malloc((size_t)cap * sizeof *roots);
  if (!roots) nndc_fatal(__FILE__, __LINE__, "out of memory");
  roots[n++] = tg->loss;
  for (int i = 0; i < tg->nmetrics; i++) roots[n++] = tg->metrics[i].node;
  for (int i = 0; i < tg->nupdates; i++) roots[n++] = tg->updates[i];
  int rc = batch_init(d, &s->b, tg, ds);
  if (!rc) rc = check_fed(d, tg, roots, n, &s->b);
  if (!rc) {
    s->e = engine_new(d, tg, roots, n, eo);
    rc = s->e ? 0 : -1;
  }
  free(roots);
  if (rc) return -1;
  bind_all(s->e, tg, ms, &s->b, 1);
  s->snapshot = calloc((size_t)tg->nparams + 1, sizeof *s->snapshot);
  if (!s->snapshot) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i < tg->nparams; i++) {
    s->snapshot[i] = malloc((size_t)shape_numel(&tg->params[i].node->shape) * 4);
    if (!s->snapshot[i]) nndc_fatal(__FILE__, __LINE__, "out of memory");
  }
  return 0;
}

static void stepper_close(Stepper *s, const Graph *tg) {
  engine_free(s->e);
  batch_free(&s->b);
  for (int i = 0; s->snapshot && i < tg->nparams; i++) free(s->snapshot[i]);
  free(s->snapshot);
}

static int evaluate_epoch(Diag *d, Graph *eg, Graph *etail, ModelState *ms, const Dataset *test,
                          const TrainOpts *o, EpochReport *r, double *test_metrics) {
  if (!test) return 0;
  r->has_test = 1;
  r->test_metrics = test_metrics;
  return rt_evaluate(d, eg, etail, ms, test, &o->engine, &r->test_loss, test_metrics);
}

int rt_train(Diag *d, Graph *tg, Graph *eg, Graph *etail, ModelState *ms, const Dataset *train,
             const Dataset *test, const TrainOpts *o) {
  if (!tg->loss || !tg->grads || !tg->updates) {
    diag_error(d, (Loc){0}, "the model has no loss to train");
    return -1;
  }
  Stepper s;
  if (stepper_open(d, &s, tg, ms, train, &o->engine)) {
    stepper_close(&s, tg);
    return -1;
  }
  int64_t bs = s.b.size, n = train->nsamples, nb = bs > 0 ? n / bs : 0;
  if (nb == 0) {
    diag_error(d, tg->inputs[0].node->loc, "%lld training samples make no complete batch of %lld",
               (long long)n, (long long)bs);
    stepper_close(&s, tg);
    return -1;
  }
  int64_t *perm = malloc((size_t)n * sizeof *perm);
  double *metrics = calloc((size_t)tg->nmetrics + 1, sizeof *metrics);
  double *test_metrics = calloc((size_t)tg->nmetrics + 1, sizeof *test_metrics);
  if (!perm || !metrics || !test_metrics) nndc_fatal(__FILE__, __LINE__, "out of memory");
  int rc = 0;
  double t_start = now_s();
  for (int64_t ep = 1; ep <= o->epochs && !rc; ep++) {
    if (o->shuffle) data_permutation(o->seed, ep, n, perm);
    else
      for (int64_t i = 0; i < n; i++) perm[i] = i;
    double t0 = now_s(), loss_sum = 0;
    for (int i = 0; i < tg->nmetrics; i++) metrics[i] = 0;
    for (int64_t bi = 0; bi < nb && !rc; bi++) {
      batch_fill(&s.b, train, perm, bi * bs);
      for (int i = 0; i < tg->nparams; i++)
        memcpy(s.snapshot[i], ms->params[i], (size_t)shape_numel(&tg->params[i].node->shape) * 4);
      RunCtx ctx = {o->seed, ms->step + 1, 1};
      if (engine_run(s.e, d, &ctx)) {
        rc = -1;
        break;
      }
      ms->step++;
      double loss = *(float *)engine_value(s.e, tg->loss);
      if (!isfinite(loss)) {
        diagnose_nonfinite(d, tg, s.snapshot, &s.b, &ctx, loss, ep, bi + 1);
        rc = -1;
        break;
      }
      loss_sum += loss;
      for (int i = 0; i < tg->nmetrics; i++) metrics[i] += *(float *)engine_value(s.e, tg->metrics[i].node);
      if (o->progress) {
        double el = now_s() - t0, tot = now_s() - t_start;
        double done = (double)((ep - 1) * nb + bi + 1), all = (double)(o->epochs * nb);
        TrainProgress p = {ep, o->epochs, bi + 1, nb, loss_sum / (double)(bi + 1),
                           el > 0 ? (double)((bi + 1) * bs) / el : 0, tot / done * (all - done)};
        o->progress(o->user, &p);
      }
    }
    if (rc) break;
    EpochReport r = {0};
    r.epoch = ep;
    r.epochs = o->epochs;
    r.train_loss = loss_sum / (double)nb;
    for (int i = 0; i < tg->nmetrics; i++) metrics[i] /= (double)nb;
    r.train_metrics = metrics;
    rc = evaluate_epoch(d, eg, etail, ms, test, o, &r, test_metrics);
    r.seconds = now_s() - t0;
    if (!rc && o->epoch_done) o->epoch_done(o->user, &r);
  }
  free(perm);
  free(metrics);
  free(test_metrics);
  stepper_close(&s, tg);
  return rc;
}
