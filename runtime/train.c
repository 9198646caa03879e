/* train.c - the training loop: batches from a Dataset, one compiled training
 * step (forward, backward, update) per batch, or with a train block's steps
 * (spec 8) one compiled step per step block, run in order on each batch,
 * per-epoch evaluation on test data, progress reports through callbacks, and
 * the diagnosis of a loss that turns NaN or Inf.  Params and optimizer state are the caller's ModelState;
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
  int borrowed;        /* e is the caller's (TrainEngines) */
} Eval;

/* The roots of an evaluation engine: loss and metrics. */
static int eval_roots(const Graph *g, Node **roots) {
  int n = 0;
  if (g->loss) roots[n++] = g->loss;
  for (int i = 0; i < g->nmetrics && n < 64; i++) roots[n++] = g->metrics[i].node;
  return n;
}

/* pre: an engine compiled for g's eval_roots (borrowed), or NULL: compile one. */
static int eval_open(Diag *d, Eval *ev, Graph *g, ModelState *ms, const Dataset *ds, const EngineOpts *eo,
                     Engine *pre) {
  memset(ev, 0, sizeof *ev);
  ev->g = g;
  Node *roots[64];
  int n = eval_roots(g, roots);
  if (batch_init(d, &ev->b, g, ds) || check_fed(d, g, roots, n, &ev->b)) return -1;
  ev->e = pre ? pre : engine_new(d, g, roots, n, eo);
  ev->borrowed = pre != NULL;
  if (!ev->e) return -1;
  bind_all(ev->e, g, ms, &ev->b, 0);
  return 0;
}

static void eval_close(Eval *ev) {
  if (!ev->borrowed) engine_free(ev->e);
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

/* The batches of ds (bs samples each, the last `tail` samples on its own
 * graph) are shared among the processes round robin; each adds the
 * count-weighted loss and metrics of its own into sums[0..nm), and the
 * samples it evaluated into sums[nm + 1]. */
static int eval_share(Diag *d, Eval *ev, Graph *tail, ModelState *ms, const Dataset *ds, const EngineOpts *eo,
                      const int64_t *perm, double *sums, int nm, const TrainEngines *pre, int local) {
  int64_t bs = ev->b.size, nfull = bs > 0 ? ds->nsamples / bs : 0;
  int rank = local ? 0 : comm_rank(), K = local ? 1 : comm_size();
  int rc = 0;
  for (int64_t j = rank; !rc && j < nfull; j += K, sums[nm + 1] += (double)bs)
    rc = eval_batch(d, ev, ds, perm, j * bs, &sums[0], &sums[1]);
  int64_t done = nfull * bs;
  if (rc || !tail || done >= ds->nsamples || nfull % K != rank) return rc;
  Eval et;
  rc = eval_open(d, &et, tail, ms, ds, eo, pre ? pre->etail : NULL);
  if (!rc && et.b.size != ds->nsamples - done) {
    diag_error(d, (Loc){0}, "internal: tail batch %lld != %lld", (long long)et.b.size,
               (long long)(ds->nsamples - done));
    rc = -1;
  }
  if (!rc) rc = eval_batch(d, &et, ds, perm, done, &sums[0], &sums[1]);
  if (!rc) sums[nm + 1] += (double)et.b.size;
  if (et.e || et.b.buf) eval_close(&et);
  return rc;
}

/* rt_evaluate on the engines of pre (NULL: compiled here); local: this
 * process alone, even under MPI. */
static int evaluate(Diag *d, Graph *g, Graph *tail, ModelState *ms, const Dataset *ds, const EngineOpts *eo,
                    const TrainEngines *pre, int local, double *loss, double *metrics) {
  int64_t *perm = malloc((size_t)ds->nsamples * sizeof *perm);
  double *sums = calloc((size_t)g->nmetrics + 2, sizeof *sums);   /* loss, metrics, samples */
  if (!perm || !sums) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int64_t i = 0; i < ds->nsamples; i++) perm[i] = i;
  int nm = g->nmetrics;
  Eval ev;
  int rc = eval_open(d, &ev, g, ms, ds, eo, pre ? pre->eval : NULL);
  int64_t bs = ev.b.size;
  if (!rc) rc = eval_share(d, &ev, tail, ms, ds, eo, perm, sums, nm, pre, local);
  eval_close(&ev);
  free(perm);
  if (!rc && !local) rc = comm_allreduce_f64(d, sums, nm + 2);
  double done = sums[nm + 1];
  *loss = sums[0];
  for (int i = 0; i < nm; i++) metrics[i] = sums[1 + i];
  free(sums);
  if (rc) return -1;
  if (done == 0) {
    diag_error(d, (Loc){0}, "no complete batch of %lld samples in %lld test samples", (long long)bs,
               (long long)ds->nsamples);
    return -1;
  }
  *loss /= done;
  for (int i = 0; i < nm; i++) metrics[i] /= done;
  return 0;
}

int rt_evaluate(Diag *d, Graph *g, Graph *tail, ModelState *ms, const Dataset *ds,
                const EngineOpts *eo, double *loss, double *metrics) {
  return evaluate(d, g, tail, ms, ds, eo, NULL, 0, loss, metrics);
}

/* After a non-finite loss: re-runs the batch's forward pass in the reference
 * interpreter on the params from before the step and reports the first op
 * whose f32 result is non-finite although its operands are finite. */
static void diagnose_nonfinite(Diag *d, Graph *g, float **params, const Batch *b,
                               const RunCtx *ctx, double loss, int64_t epoch, int64_t batch) {
  Interp it;
  interp_init(&it, g);
  it.part = comm_rank();   /* the same noise as the step drew */
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

/* The training step engine and what it needs per batch.  One process runs
 * the whole step graph (pass_optim) as one program.  A graph made by
 * pass_optim_split runs in two: `e` computes the loss, metrics and gradients
 * (and batch_norm's running statistics), which are copied into `flat`,
 * summed across the processes and divided by their number; `upd` then runs
 * the optimizer updates on the averaged gradients, which its gradient leaves
 * are bound to.
 *
 * Overlap: flat holds the gradients in the order the backward pass completes
 * them (engine_ready_after), cut into buckets of about OVERLAP_BUCKET floats;
 * the hook after each kernel copies the gradients that kernel completed and
 * starts the reduction of every bucket that is then full, so the reduction
 * of the last layers' gradients runs while the first layers' are computed. */
enum { OVERLAP_BUCKET = 1 << 16 };   /* floats (256 KiB); a larger gradient has a bucket of its own */

typedef struct Stepper {
  Engine *e;
  Engine *upd;         /* split: the optimizer updates (NULL: e does everything) */
  int borrowed;        /* e is the caller's (TrainEngines) */
  Batch b;
  float **snapshot;    /* [nparams] params before the step, for diagnosis */
  float *flat;         /* split: [nflat] the gradients, then the loss and each metric */
  int64_t nflat, ngrad;/* ngrad: floats of gradients in flat */
  int nupd;            /* split: optimizer updates */
  const Node **gsrc;   /* [nupd] the gradient computed for each */
  int64_t *goff;       /* [nupd] its offset in flat */
  double comm_s;       /* seconds spent waiting for the reductions, in all */
  int *ready;          /* [nupd] the kernel after which gsrc[j] is final (-1: after the run) */
  int *bucket;         /* [nupd] the bucket gradient j belongs to */
  uint8_t *sent;       /* [nupd] copied into flat this step */
  int nbuckets;
  int64_t *bstart, *blen;  /* [nbuckets] each bucket's floats in flat */
  int *bcount, *bleft; /* [nbuckets] its gradients; those still to come this step */
  Diag *d;             /* for the hook's errors */
  int failed;          /* a reduction could not start this step */
} Stepper;

static int is_optimizer_update(const Node *u) { return u->op != OP_RUNNING_STATS; }

static int param_of(const Graph *g, const Node *p) {
  for (int i = 0; i < g->nparams; i++)
    if (g->params[i].node == p) return i;
  return -1;
}

/* Whether tg came from pass_optim_split (its updates read gradient leaves). */
static int graph_is_split(const Graph *tg) {
  for (int i = 0; i < tg->nupdates; i++)
    if (is_optimizer_update(tg->updates[i])) return tg->updates[i]->in[1]->op == OP_STATE;
  return 0;
}

/* Gradient j is complete: into flat, and its bucket's reduction starts when it is full. */
static void send_grad(Stepper *s, int j) {
  if (s->sent[j]) return;
  s->sent[j] = 1;
  memcpy(s->flat + s->goff[j], engine_value(s->e, s->gsrc[j]), (size_t)shape_numel(&s->gsrc[j]->shape) * 4);
  int b = s->bucket[j];
  if (--s->bleft[b] == 0 && comm_size() > 1 && comm_start_sum_f32(s->d, s->flat + s->bstart[b], s->blen[b]))
    s->failed = 1;
}

static void grad_hook(void *user, int kernel) {
  Stepper *s = user;
  for (int j = 0; j < s->nupd; j++)
    if (s->ready[j] == kernel) send_grad(s, j);
  comm_progress();
}

/* Lays the gradients out in flat in the order they are completed, in buckets. */
static void plan_buckets(Stepper *s) {
  int *ord = malloc(((size_t)s->nupd + 1) * sizeof *ord);
  s->bucket = calloc((size_t)s->nupd + 1, sizeof *s->bucket);
  s->bstart = calloc((size_t)s->nupd + 1, sizeof *s->bstart);
  s->blen = calloc((size_t)s->nupd + 1, sizeof *s->blen);
  s->bcount = calloc((size_t)s->nupd + 1, sizeof *s->bcount);
  s->bleft = calloc((size_t)s->nupd + 1, sizeof *s->bleft);
  s->sent = calloc((size_t)s->nupd + 1, 1);
  if (!ord || !s->bucket || !s->bstart || !s->blen || !s->bcount || !s->bleft || !s->sent)
    nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int j = 0; j < s->nupd; j++) {   /* insertion sort by readiness, -1 last */
    int k = j;
    for (; k > 0; k--) {
      int a = s->ready[ord[k - 1]], b = s->ready[j];
      if ((unsigned)a <= (unsigned)b) break;
      ord[k] = ord[k - 1];
    }
    ord[k] = j;
  }
  int64_t at = 0;
  s->nbuckets = 0;
  for (int k = 0; k < s->nupd; k++) {
    int j = ord[k], b = s->nbuckets ? s->nbuckets - 1 : 0;
    int64_t n = shape_numel(&s->gsrc[j]->shape);
    if (s->nbuckets == 0 || (s->blen[b] > 0 && s->blen[b] + n > OVERLAP_BUCKET)) {
      b = s->nbuckets++;
      s->bstart[b] = at;
    }
    s->goff[j] = at;
    s->bucket[j] = b;
    s->bcount[b]++;
    s->blen[b] += n;
    at += n;
  }
  free(ord);
}

/* The split stepper's gradient bookkeeping and its update engine. */
static int stepper_split(Diag *d, Stepper *s, Graph *tg, ModelState *ms, const EngineOpts *eo) {
  Node **roots = malloc(((size_t)tg->nupdates + 1) * sizeof *roots);
  s->gsrc = calloc((size_t)tg->nupdates + 1, sizeof *s->gsrc);
  s->goff = calloc((size_t)tg->nupdates + 1, sizeof *s->goff);
  s->ready = calloc((size_t)tg->nupdates + 1, sizeof *s->ready);
  if (!roots || !s->gsrc || !s->goff || !s->ready) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i < tg->nupdates; i++) {
    Node *u = tg->updates[i];
    if (!is_optimizer_update(u)) continue;
    int k = param_of(tg, u->in[0]);
    if (k < 0 || !tg->grads[k]) nndc_fatal(__FILE__, __LINE__, "update of a param without a gradient");
    roots[s->nupd] = u;
    s->ready[s->nupd] = engine_ready_after(s->e, tg->grads[k]);
    s->gsrc[s->nupd++] = tg->grads[k];
    s->ngrad += shape_numel(&u->in[1]->shape);
  }
  plan_buckets(s);
  s->d = d;
  s->nflat = s->ngrad + 1 + tg->nmetrics;
  s->flat = calloc((size_t)s->nflat, sizeof *s->flat);
  if (!s->flat) nndc_fatal(__FILE__, __LINE__, "out of memory");
  s->upd = engine_new(d, tg, roots, s->nupd, eo);
  free(roots);
  if (!s->upd) return -1;
  for (int i = 0; i < tg->nparams; i++) engine_bind(s->upd, tg->params[i].node, ms->params[i]);
  for (int i = 0; i < tg->nstates; i++) engine_bind(s->upd, tg->states[i].node, ms->states[i]);
  int j = 0;
  for (int i = 0; i < tg->nupdates; i++)
    if (is_optimizer_update(tg->updates[i])) engine_bind(s->upd, tg->updates[i]->in[1], s->flat + s->goff[j++]);
  if (comm_size() > 1) engine_set_hook(s->e, grad_hook, s);
  return 0;
}

/* The roots of the training step's engine into a malloc'd *roots. */
static int step_roots(const Graph *tg, Node ***roots) {
  int split = graph_is_split(tg);
  int n = 0, cap = 1 + tg->nmetrics + tg->nupdates + tg->nparams;
  Node **r = *roots = malloc((size_t)cap * sizeof *r);
  if (!r) nndc_fatal(__FILE__, __LINE__, "out of memory");
  r[n++] = tg->loss;
  for (int i = 0; i < tg->nmetrics; i++) r[n++] = tg->metrics[i].node;
  for (int i = 0; i < tg->nupdates; i++)
    if (!split || !is_optimizer_update(tg->updates[i])) r[n++] = tg->updates[i];
  for (int i = 0; split && i < tg->nupdates; i++)
    if (is_optimizer_update(tg->updates[i])) r[n++] = tg->grads[param_of(tg, tg->updates[i]->in[0])];
  return n;
}

/* pre: an engine compiled for tg's step_roots (borrowed; tg not split), or NULL. */
static int stepper_open(Diag *d, Stepper *s, Graph *tg, ModelState *ms, const Dataset *ds,
                        const EngineOpts *eo, Engine *pre, int rank) {
  memset(s, 0, sizeof *s);
  int split = graph_is_split(tg);
  Node **roots;
  int n = step_roots(tg, &roots);
  int rc = batch_init(d, &s->b, tg, ds);
  if (!rc) rc = check_fed(d, tg, roots, n, &s->b);
  if (!rc) {
    s->e = pre ? pre : engine_new(d, tg, roots, n, eo);
    s->borrowed = pre != NULL;
    rc = s->e ? 0 : -1;
  }
  free(roots);
  if (!rc && split) rc = stepper_split(d, s, tg, ms, eo);
  if (rc) return -1;
  bind_all(s->e, tg, ms, &s->b, 1);
  engine_set_part(s->e, rank);
  s->snapshot = calloc((size_t)tg->nparams + 1, sizeof *s->snapshot);
  if (!s->snapshot) nndc_fatal(__FILE__, __LINE__, "out of memory");
  for (int i = 0; i < tg->nparams; i++) {
    s->snapshot[i] = malloc((size_t)shape_numel(&tg->params[i].node->shape) * 4);
    if (!s->snapshot[i]) nndc_fatal(__FILE__, __LINE__, "out of memory");
  }
  return 0;
}

static void stepper_close(Stepper *s, const Graph *tg) {
  if (!s->borrowed) engine_free(s->e);
  engine_free(s->upd);
  batch_free(&s->b);
  for (int i = 0; s->snapshot && i < tg->nparams; i++) free(s->snapshot[i]);
  free(s->snapshot);
  free(s->flat);
  free(s->gsrc);
  free(s->goff);
  free(s->ready);
  free(s->bucket);
  free(s->sent);
  free(s->bstart);
  free(s->blen);
  free(s->bcount);
  free(s->bleft);
}

/* One step on the batch in s->b; the batch's loss and metrics (averaged over
 * the processes when split) into out[0 .. 1 + nmetrics).  A non-finite loss
 * is returned in out[0] with 0: the caller diagnoses it. */
static int stepper_run(Diag *d, Stepper *s, Graph *tg, const RunCtx *ctx, double *out) {
  if (s->upd) {   /* a new step: nothing sent yet */
    memset(s->sent, 0, (size_t)s->nupd);
    memcpy(s->bleft, s->bcount, (size_t)s->nbuckets * sizeof *s->bleft);
    s->failed = 0;
  }
  if (engine_run(s->e, d, ctx)) return -1;
  if (!s->upd) {
    out[0] = *(float *)engine_value(s->e, tg->loss);
    for (int i = 0; i < tg->nmetrics; i++) out[1 + i] = *(float *)engine_value(s->e, tg->metrics[i].node);
    return 0;
  }
  for (int j = 0; j < s->nupd; j++) send_grad(s, j);   /* those no kernel completed (or no hook) */
  s->flat[s->ngrad] = *(float *)engine_value(s->e, tg->loss);
  for (int i = 0; i < tg->nmetrics; i++) s->flat[s->ngrad + 1 + i] = *(float *)engine_value(s->e, tg->metrics[i].node);
  int K = comm_size();
  if (K > 1) {
    double t0 = now_s();
    if (s->failed || comm_start_sum_f32(d, s->flat + s->ngrad, s->nflat - s->ngrad) || comm_wait_all(d))
      return -1;
    float inv = 1.0f / (float)K;
    for (int64_t i = 0; i < s->nflat; i++) s->flat[i] *= inv;
    s->comm_s += now_s() - t0;
  }
  for (int i = 0; i <= tg->nmetrics; i++) out[i] = s->flat[s->ngrad + i];
  if (!isfinite(out[0])) return 0;
  return engine_run(s->upd, d, ctx);
}

static int evaluate_epoch(Diag *d, Graph *eg, Graph *etail, ModelState *ms, const Dataset *test,
                          const TrainOpts *o, EpochReport *r, double *test_metrics) {
  if (!test) return 0;
  r->has_test = 1;
  r->test_metrics = test_metrics;
  return evaluate(d, eg, etail, ms, test, &o->engine, o->engines, o->local, &r->test_loss, test_metrics);
}

/* FNV-1a over the graph's structure: ops, types, shapes, operands and
 * attributes of every node, and the names of params (processes must agree). */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

static uint64_t graph_hash(const Graph *g) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    int64_t v[4 + MAX_RANK] = {n->op, n->dt, n->shape.rank, n->nin};
    for (int k = 0; k < n->shape.rank; k++) v[4 + k] = n->shape.dim[k];
    h = fnv(h, v, sizeof v);
    for (int k = 0; k < n->nin; k++) h = fnv(h, &n->in[k]->id, sizeof n->in[k]->id);
    h = fnv(h, n->a.i, sizeof n->a.i);
    h = fnv(h, n->a.f, sizeof n->a.f);
    if (n->name) h = fnv(h, n->name, strlen(n->name));
  }
  return h;
}

/* Every process must train the same model on data of the same size; then
 * they all start from rank 0's params, optimizer state and position. */
static int sync_processes(Diag *d, const Graph *tg, ModelState *ms, const Dataset *train, const Dataset *test,
                          int64_t bs) {
  if (comm_size() == 1) return 0;
  uint64_t v[4] = {graph_hash(tg), (uint64_t)train->nsamples, (uint64_t)bs, test ? (uint64_t)test->nsamples : 0};
  static const char *const what[4] = {"a model of graph hash", "training samples", "batch", "test samples"};
  if (comm_check_same(d, v, what, 4)) return -1;
  for (int i = 0; i < tg->nparams; i++)
    if (comm_bcast(d, ms->params[i], shape_numel(&tg->params[i].node->shape) * 4)) return -1;
  for (int i = 0; i < tg->nstates; i++)
    if (comm_bcast(d, ms->states[i], shape_numel(&tg->states[i].node->shape) * 4)) return -1;
  int64_t c[9] = {ms->step, ms->epoch, ms->batch, ms->resumed, (int64_t)ms->key.seed, ms->key.batch,
                  ms->key.samples, ms->key.ranks, ms->key.shuffle};
  if (comm_bcast(d, c, sizeof c) || comm_bcast(d, ms->sums, (int64_t)ms->nsums * 8)) return -1;
  ms->step = c[0], ms->epoch = c[1], ms->batch = c[2], ms->resumed = (int)c[3];
  ms->key = (RunKey){(uint64_t)c[4], c[5], c[6], c[7], (int)c[8]};
  return 0;
}

/* A resumed run must order its data as the run it continues did. */
static int check_key(Diag *d, const RunKey *was, const RunKey *now) {
  const char *what = was->seed != now->seed ? "seed" : was->batch != now->batch ? "batch"
                   : was->samples != now->samples ? "number of training samples"
                   : was->ranks != now->ranks ? "number of processes"
                   : was->shuffle != now->shuffle ? "shuffling" : NULL;
  if (!what) return 0;
  diag_error(d, (Loc){0}, "--resume: the checkpoint's run had another %s (seed %llu, batch %lld, %lld samples, "
             "%lld processes, shuffle %s; this run: seed %llu, batch %lld, %lld samples, %lld processes, "
             "shuffle %s); continue it with the same settings", what, (unsigned long long)was->seed,
             (long long)was->batch, (long long)was->samples, (long long)was->ranks, was->shuffle ? "on" : "off",
             (unsigned long long)now->seed, (long long)now->batch, (long long)now->samples, (long long)now->ranks,
             now->shuffle ? "on" : "off");
  return -1;
}

/* Opens one stepper per step graph; step k's optimizer state follows the
 * earlier steps' in ms->states; pre: a prebuilt engine for the first. */
static int steppers_open(Diag *d, Stepper *s, Graph *const *tgs, int nsteps, ModelState *ms, const Dataset *ds,
                         const EngineOpts *eo, Engine *pre, int rank) {
  int64_t off = 0;
  for (int k = 0; k < nsteps; k++) {
    ModelState sub = *ms;
    sub.states = ms->states + off;
    if (stepper_open(d, &s[k], tgs[k], &sub, ds, eo, k == 0 ? pre : NULL, rank)) return -1;
    off += tgs[k]->nstates;
  }
  return 0;
}

static void steppers_close(Stepper *s, Graph *const *tgs, int nsteps) {
  for (int k = 0; k < nsteps; k++) stepper_close(&s[k], tgs[k]);
  free(s);
}

/* One iteration: every step in order on batch `first`; each step's loss into
 * sums[k], step 1's metrics after them.  A non-finite loss is diagnosed. */
static int run_steps(Diag *d, Stepper *s, Graph *const *tgs, int nsteps, ModelState *ms, const Dataset *train,
                     const int64_t *perm, int64_t first, uint64_t seed, double *vals, double *out, int64_t ep,
                     int64_t bi) {
  for (int k = 0; k < nsteps; k++) {
    Graph *tg = tgs[k];
    batch_fill(&s[k].b, train, perm, first);
    for (int i = 0; i < tg->nparams; i++)
      memcpy(s[k].snapshot[i], ms->params[i], (size_t)shape_numel(&tg->params[i].node->shape) * 4);
    RunCtx ctx = {rng_step_seed(seed, k), ms->step + 1, 1};
    if (stepper_run(d, &s[k], tg, &ctx, vals)) return -1;
    if (!isfinite(vals[0])) {
      diagnose_nonfinite(d, tg, s[k].snapshot, &s[k].b, &ctx, vals[0], ep, bi + 1);
      return -1;
    }
    out[k] = vals[0];
    for (int i = 0; k == 0 && i < tg->nmetrics; i++) out[nsteps + i] = vals[1 + i];
  }
  return 0;
}

int rt_train(Diag *d, Graph *tg, Graph *eg, Graph *etail, ModelState *ms, const Dataset *train,
             const Dataset *test, const TrainOpts *o) {
  return rt_train_steps(d, &tg, 1, eg, etail, ms, train, test, o);
}

int rt_train_steps(Diag *d, Graph *const *tgs, int S, Graph *eg, Graph *etail, ModelState *ms,
                   const Dataset *train, const Dataset *test, const TrainOpts *o) {
  Graph *tg = tgs[0];
  for (int k = 0; k < S; k++)
    if (!tgs[k]->loss || !tgs[k]->grads || !tgs[k]->updates) {
      diag_error(d, (Loc){0}, "the model has no loss to train");
      return -1;
    }
  int K = o->local ? 1 : comm_size(), rank = o->local ? 0 : comm_rank();
  if (o->engines && (S > 1 || graph_is_split(tg))) {
    diag_error(d, (Loc){0}, "internal: prebuilt engines need one graph from pass_optim");
    return -1;
  }
  for (int k = 0; k < S; k++)
    if (K > 1 && !graph_is_split(tgs[k]) && tgs[k]->nupdates > 0) {
      diag_error(d, (Loc){0}, "internal: training on %d processes needs a graph from pass_optim_split", K);
      return -1;
    }
  Graph all = S > 1 ? graph_steps_union((const Graph *const *)tgs, S) : *tg;
  Stepper *s = calloc((size_t)S, sizeof *s);
  if (!s) nndc_fatal(__FILE__, __LINE__, "out of memory");
  if (steppers_open(d, s, tgs, S, ms, train, &o->engine, o->engines ? o->engines->step : NULL, rank)) {
    steppers_close(s, tgs, S);
    return -1;
  }
  int64_t bs = s[0].b.size, gb = bs * K, n = train->nsamples, nb = gb > 0 ? n / gb : 0;
  RunKey key = {o->seed, bs, n, K, o->shuffle};
  if ((K > 1 && sync_processes(d, &all, ms, train, test, bs)) || (ms->resumed && check_key(d, &ms->key, &key))) {
    steppers_close(s, tgs, S);
    return -1;
  }
  ms->key = key;   /* the run that makes the state from here on */
  if (nb == 0) {
    diag_error(d, tg->inputs[0].node->loc, "%lld training samples make no complete batch of %lld%s",
               (long long)n, (long long)gb, K > 1 ? " (the batch times the processes)" : "");
    steppers_close(s, tgs, S);
    return -1;
  }
  int64_t ep0 = 1, b0 = 0;
  if (ms->resumed && ms->epoch > 0) {
    ep0 = ms->epoch, b0 = ms->batch;
    if (b0 >= nb) ep0++, b0 = 0;
  }
  int nm = tg->nmetrics;
  int64_t *perm = malloc((size_t)n * sizeof *perm);
  double *vals = calloc((size_t)nm + 1, sizeof *vals);
  double *out = calloc((size_t)(S + nm), sizeof *out);
  double *losses = calloc((size_t)S, sizeof *losses);
  double *metrics = calloc((size_t)nm + 1, sizeof *metrics);
  double *test_metrics = calloc((size_t)nm + 1, sizeof *test_metrics);
  if (!perm || !vals || !out || !losses || !metrics || !test_metrics) nndc_fatal(__FILE__, __LINE__, "out of memory");
  int rc = 0, stop = 0;
  double t_start = now_s();
  int64_t steps0 = ms->step;
  for (int64_t ep = ep0; ep <= o->epochs && !rc && !stop; ep++) {
    if (o->shuffle) data_permutation(o->seed, ep, n, perm);
    else
      for (int64_t i = 0; i < n; i++) perm[i] = i;
    double t0 = now_s(), c0 = s[0].comm_s;
    int64_t first = ep == ep0 ? b0 : 0;
    if (first == 0)
      for (int i = 0; i < ms->nsums; i++) ms->sums[i] = 0;
    for (int64_t bi = first; bi < nb && !rc; bi++) {
      if ((o->max_steps > 0 && ms->step >= o->max_steps) || (o->stop && *o->stop)) {
        stop = 1;
        break;
      }
      if (run_steps(d, s, tgs, S, ms, train, perm, bi * gb + rank * bs, o->seed, vals, out, ep, bi)) {
        rc = -1;
        break;
      }
      ms->step++;
      ms->epoch = ep;
      ms->batch = bi + 1;
      for (int i = 0; i < S + nm; i++) ms->sums[i] += out[i];
      if (o->save_path && o->save_every > 0 && ms->step % o->save_every == 0 && rank == 0 &&
          ckpt_save_train(d, o->save_path, &all, ms, &key)) {
        rc = -1;
        break;
      }
      if (o->progress && rank == 0) {
        double el = now_s() - t0, tot = now_s() - t_start;
        double done = (double)(ms->step - steps0), left = (double)(o->epochs * nb - ms->step);
        for (int i = 0; i < nm; i++) metrics[i] = ms->sums[S + i] / (double)(bi + 1);
        for (int k = 0; k < S; k++) losses[k] = ms->sums[k] / (double)(bi + 1);
        TrainProgress p = {ep, o->epochs, bi + 1, nb, ms->sums[0] / (double)(bi + 1),
                           el > 0 ? (double)((bi + 1 - first) * gb) / el : 0, tot / done * left, ms->step, metrics,
                           S > 1 ? losses : NULL, S > 1 ? S : 0};
        o->progress(o->user, &p);
      }
    }
    if (rc || stop) break;
    EpochReport r = {0};
    r.epoch = ep;
    r.epochs = o->epochs;
    r.train_loss = ms->sums[0] / (double)nb;
    for (int k = 0; k < S; k++) losses[k] = ms->sums[k] / (double)nb;
    r.step_losses = S > 1 ? losses : NULL;
    r.nsteps = S > 1 ? S : 0;
    for (int i = 0; i < nm; i++) metrics[i] = ms->sums[S + i] / (double)nb;
    r.train_metrics = metrics;
    rc = evaluate_epoch(d, eg, etail, ms, test, o, &r, test_metrics);
    r.seconds = now_s() - t0;
    r.comm_seconds = s[0].comm_s - c0;
    r.comm_bytes = K > 1 ? s[0].nflat * 4 : 0;
    if (!rc && o->epoch_done && rank == 0) o->epoch_done(o->user, &r);
  }
  free(perm);
  free(vals);
  free(out);
  free(losses);
  free(metrics);
  free(test_metrics);
  steppers_close(s, tgs, S);
  return rc;
}

int rt_train_engines(Diag *d, Graph *tg, Graph *eg, Graph *etail, const EngineOpts *eo, TrainEngines *out) {
  memset(out, 0, sizeof *out);
  if (tg && (!tg->loss || !tg->updates || graph_is_split(tg))) {
    diag_error(d, (Loc){0}, "the model has no loss to train");
    return -1;
  }
  Node **roots, *er[64];
  if (tg) {
    int n = step_roots(tg, &roots);
    out->step = engine_new(d, tg, roots, n, eo);
    free(roots);
    if (!out->step) return -1;
  }
  if (eg) out->eval = engine_new(d, eg, er, eval_roots(eg, er), eo);
  if (etail && (!eg || out->eval)) out->etail = engine_new(d, etail, er, eval_roots(etail, er), eo);
  if ((eg && !out->eval) || (etail && !out->etail)) {
    rt_train_engines_free(out);
    return -1;
  }
  return 0;
}

void rt_train_engines_clone(const TrainEngines *o, int threads, TrainEngines *out) {
  out->step = o->step ? engine_clone(o->step, threads) : NULL;
  out->eval = o->eval ? engine_clone(o->eval, threads) : NULL;
  out->etail = o->etail ? engine_clone(o->etail, threads) : NULL;
}

void rt_train_engines_free(TrainEngines *t) {
  engine_free(t->etail);
  engine_free(t->eval);
  engine_free(t->step);
  memset(t, 0, sizeof *t);
}
